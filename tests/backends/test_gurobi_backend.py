"""Gurobi-specific behaviour: licence errors become BackendError, and the status mapping."""

from __future__ import annotations

import numpy as np
import pytest

from nnverify.backends.base import SolveStatus
from nnverify.backends.gurobi import GurobiBackend, status_from_gurobi
from nnverify.encode.problem import Problem
from nnverify.errors import BackendError, ExitCode


def _large_lp(n: int = 2500) -> Problem:
    p = Problem()
    p.add_vars(np.zeros(n), np.ones(n))
    p.add_row(np.arange(n), np.ones(n), 1.0)
    return p


def test_size_limited_licence_gives_an_actionable_error() -> None:
    pytest.importorskip("gurobipy", reason="gurobipy is not installed (pip install 'nnverify[gurobi]')")
    try:
        result = GurobiBackend().solve(_large_lp(), timeout_s=30.0)
    except BackendError as exc:
        assert exc.exit_code is ExitCode.ENVIRONMENT
        assert str(exc) == (
            "Gurobi's size-limited licence cannot solve this model (2500 variables, 1 constraints; "
            "the limit is 2000 each): install a full licence "
            "(https://www.gurobi.com/academia/academic-program-and-licenses/) or use --backend highs."
        )
    else:
        assert result.status is SolveStatus.FEASIBLE
        pytest.skip("a full Gurobi licence is installed here: the size limit does not apply")


def test_other_gurobi_errors_become_backend_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    gp = pytest.importorskip("gurobipy", reason="gurobipy is not installed (pip install 'nnverify[gurobi]')")

    def no_licence(*args: object, **kwargs: object) -> None:
        raise gp.GurobiError(10009, "No Gurobi license found")

    monkeypatch.setattr(gp, "Env", no_licence)
    with pytest.raises(BackendError, match=r"^Gurobi failed: No Gurobi license found \(error 10009\)$"):
        GurobiBackend().solve(_large_lp(3), timeout_s=30.0)


@pytest.mark.parametrize(
    ("status", "has_solution", "bounded", "expected"),
    [
        ("OPTIMAL", True, True, SolveStatus.FEASIBLE),
        ("SUBOPTIMAL", True, True, SolveStatus.FEASIBLE),
        ("INFEASIBLE", False, True, SolveStatus.INFEASIBLE),
        ("INF_OR_UNBD", False, True, SolveStatus.INFEASIBLE),
        ("INF_OR_UNBD", False, False, SolveStatus.UNKNOWN),
        ("UNBOUNDED", False, False, SolveStatus.UNKNOWN),
        ("TIME_LIMIT", False, True, SolveStatus.TIMEOUT),
        ("TIME_LIMIT", True, True, SolveStatus.FEASIBLE),
        ("NUMERIC", False, True, SolveStatus.UNKNOWN),
        ("INTERRUPTED", False, True, SolveStatus.UNKNOWN),
    ],
    ids=lambda v: str(v),
)
def test_status_mapping(status: str, has_solution: bool, bounded: bool, expected: SolveStatus) -> None:
    mapped, note = status_from_gurobi(status, has_solution=has_solution, bounded=bounded)
    assert mapped is expected
    if expected is SolveStatus.UNKNOWN:
        assert status in note
