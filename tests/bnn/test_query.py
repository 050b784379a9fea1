"""``nnverify check`` on a discrete query: sat replayed on onnxruntime, unsat, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_generate import _bnn_onnx

from nnverify.backends import get_backend
from nnverify.bnn.generate import GenerateParams, build_query
from nnverify.bnn.query import decide_query, row_violations
from nnverify.bnn.shapes import ShapeParams
from nnverify.cli import main
from nnverify.options import Options
from nnverify.result import Verdict
from nnverify.spec.discrete import parse_discrete


@pytest.fixture(scope="module")
def bnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bnn_onnx(tmp_path_factory.mktemp("bnnq") / "bnn.onnx")


def _query(tmp_path: Path, low: float, high: float) -> Path:
    text, _ = build_query(GenerateParams(ShapeParams(2, random_seed=1), low, high))
    path = tmp_path / "query.vnnlib"
    path.write_text(text)
    return path


def test_check_answers_sat_with_a_replayed_assignment(bnn: Path, tmp_path: Path) -> None:
    query = _query(tmp_path, 65, 75)
    result = decide_query(bnn, query, get_backend("cpsat", Options()), 60.0)
    assert result.verdict is Verdict.SAT and result.counterexample is not None
    x = result.counterexample.x
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert 65 - 1e-4 <= result.counterexample.y[0] <= 75 + 1e-4
    cli = CliRunner().invoke(main, ["check", str(bnn), str(query), "--timeout", "60"])
    assert cli.exit_code == 0, cli.output
    assert cli.output.splitlines()[0] == "sat"
    assert "(X_255 " in cli.output and "(Y_0 " in cli.output


def test_row_violations_catch_a_wrong_assignment(tmp_path: Path, bnn: Path) -> None:
    query = parse_discrete(_query(tmp_path, 65, 75).read_text())
    values = {v.name: 0.0 for v in query.variables}
    values["Y_0"] = 10.0  # outside [65, 75]
    assert any("not in" in problem for problem in row_violations(query, values))
    values["X_0"] = 0.5
    assert any("X_0" in problem for problem in row_violations(query, values))


def test_check_answers_unsat_when_the_network_cannot_reach_the_interval(bnn: Path, tmp_path: Path) -> None:
    cli = CliRunner().invoke(main, ["check", str(bnn), str(_query(tmp_path, 1000, 1001))])
    assert cli.exit_code == 0, cli.output
    assert cli.output.splitlines()[0] == "unsat"


def test_a_discrete_query_on_a_relu_network_is_a_clear_error(tmp_path: Path) -> None:
    net = str(Path(__file__).resolve().parents[2] / "networks" / "ACASXU_run2a_1_1_batch_2000.onnx")
    cli = CliRunner().invoke(main, ["check", net, str(_query(tmp_path, 60, 70))])
    assert cli.exit_code == 3
    assert "binarized" in cli.output


def test_a_malformed_discrete_query_names_line_and_column(bnn: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Bool)\n(assert (or X_0 (nott X_1)))\n")
    cli = CliRunner().invoke(main, ["check", str(bnn), str(bad)])
    assert cli.exit_code == 3
    assert "bad.vnnlib:2:" in cli.output
