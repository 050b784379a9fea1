"""HiGHS-specific behaviour: status mapping and recovery from a thread pool started by someone else."""

from __future__ import annotations

import highspy
import numpy as np
import pytest

from nnverify.backends.base import SolveStatus
from nnverify.backends.highs import HighsBackend, status_from_highs
from nnverify.encode.problem import Problem


@pytest.mark.parametrize(
    ("status", "has_solution", "bounded", "expected"),
    [
        ("kOptimal", True, True, SolveStatus.FEASIBLE),
        ("kInfeasible", False, True, SolveStatus.INFEASIBLE),
        ("kUnboundedOrInfeasible", False, True, SolveStatus.INFEASIBLE),
        ("kUnboundedOrInfeasible", False, False, SolveStatus.UNKNOWN),
        ("kUnbounded", True, False, SolveStatus.UNKNOWN),
        ("kTimeLimit", False, True, SolveStatus.TIMEOUT),
        ("kTimeLimit", True, True, SolveStatus.FEASIBLE),
        ("kInterrupt", False, True, SolveStatus.TIMEOUT),  # only the deadline interrupts HiGHS
        ("kSolveError", False, True, SolveStatus.UNKNOWN),
    ],
    ids=lambda v: str(v),
)
def test_status_mapping(status: str, has_solution: bool, bounded: bool, expected: SolveStatus) -> None:
    mapped, note = status_from_highs(status, has_solution=has_solution, bounded=bounded)
    assert mapped is expected
    if expected is SolveStatus.UNKNOWN:
        assert status in note


def test_recovers_when_thread_pool_has_another_size() -> None:
    # Another highspy user in this process starts HiGHS's global thread pool with 2 threads.
    highspy.Highs.resetGlobalScheduler(True)
    other = highspy.Highs()
    other.setOptionValue("output_flag", False)
    other.setOptionValue("threads", 2)
    other.addVars(1, np.zeros(1), np.ones(1))
    other.run()
    p = Problem()
    x = p.add_var(-1.0, 1.0)
    y = p.add_var(-1.0, 1.0)
    p.add_relu(x, y)
    p.add_row(np.array([y]), np.array([1.0]), 0.5)
    result = HighsBackend().solve(p, timeout_s=30.0)
    assert result.status is SolveStatus.FEASIBLE
