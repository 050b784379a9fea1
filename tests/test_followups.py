"""Follow-ups: ``generate`` keeps its budget in every phase, multi-network results go through ``outputs.py``,
a VNN-LIB 2 file given the 1.0 way gets a hint, repeated notes are collapsed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from multi.nets import mlp
from test_reliability import _unwritable_dir

from nnverify.bnn import sampling
from nnverify.bnn.generate import GenerateParams, build_query, shape_proposals
from nnverify.bnn.shapes import ShapeParams
from nnverify.budget import Budget, BudgetExpired
from nnverify.cli import main
from nnverify.encode.bnn import encode_bnn
from nnverify.errors import ExitCode
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers

D3 = "networks/porous_bnn_d3.onnx"
#: An interval inside the network's output range that the proposals never hit: they grow all their batches.
NARROW = ("70.5", "70.51")


@pytest.fixture
def grow_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the batches of proposal cells grown (``sampling.grow`` calls)."""
    calls: list[int] = []
    real = sampling.grow

    def counting(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sampling, "grow", counting)
    return calls


@pytest.mark.parametrize("timeout", ["0", "1"])
def test_generate_answers_timeout_within_its_budget(timeout: str, grow_calls: list[int]) -> None:
    start = time.monotonic()
    args = ["generate", "--network", D3, "--grains", "3", "--interval", *NARROW, "--timeout", timeout]
    result = CliRunner().invoke(main, args)
    elapsed = time.monotonic() - start
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["timeout"]
    assert "note: the time budget ran out while" in result.stderr
    assert len(grow_calls) <= 1  # it grew all 8 batches of proposals before it looked at the budget
    assert elapsed < float(timeout) + 6.0  # a generous slack (it took 10-13 s)


def test_an_expired_budget_stops_encoding_and_proposals() -> None:
    layers = to_layers(load_network(D3))
    spent = Budget(time.monotonic() - 1.0)
    with pytest.raises(BudgetExpired, match="encoding the network"):
        encode_bnn(layers, np.zeros(256), np.ones(256), budget=spent)
    params = GenerateParams(ShapeParams(3), float(NARROW[0]), float(NARROW[1]))
    _, model = build_query(params)
    with pytest.raises(BudgetExpired, match="growing proposal cells"):
        next(shape_proposals(layers, model, params, budget=spent))


QUERY2 = """(vnnlib-version <2.0>)
(declare-network f (declare-input X real [1,1]) (declare-output Y real [1,1]))
(assert (<= 0.0 X[0,0] 1.0))
(assert (>= Y[0,0] 1.0))
"""


def test_a_query_result_file_is_written_after_the_verdict(tmp_path: Path) -> None:
    net = mlp(tmp_path / "double.onnx", [(np.array([[2.0]]), np.array([0.0]))])
    query = tmp_path / "q.vnnlib"
    query.write_text(QUERY2)
    out = tmp_path / "result.txt"
    res = CliRunner().invoke(main, ["check", str(query), "--network", f"f={net}", "--results-file", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("sat\n") and not list(tmp_path.glob(".*.tmp"))  # via outputs.py
    target = _unwritable_dir() / "result.txt"
    res = CliRunner().invoke(main, ["check", str(query), "--network", f"f={net}", "--results-file", str(target)])
    assert res.stdout.splitlines()[0] == "sat"
    assert res.exit_code == ExitCode.OUTPUT_FAILED
    assert res.stderr.splitlines()[-1].startswith(f"Error: {target}: cannot write (")


def test_query_outputs_that_cannot_be_written_cost_neither_the_verdict_nor_the_returns(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    net = mlp(tmp_path / "img.onnx", [(rng.normal(size=(2, 64)) / 8, np.zeros(2))], in_shape=(1, 1, 8, 8))
    program = tmp_path / "q.dl2"
    program.write_text("find x[1,1,8,8] where x in [0, 1], N(x)[0] >= N(x)[1] return x, N(x)\n")
    emit, pngs = _unwritable_dir() / "q.vnnlib", _unwritable_dir() / "pngs"
    args = ["query", str(program), "--net", f"N={net}", "--emit-vnnlib", str(emit), "--png-dir", str(pngs)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == ExitCode.OUTPUT_FAILED, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "sat" and lines[1].startswith("x = [[") and any(line.startswith("N(x) = ") for line in lines)
    errors = [line.split(" (")[0] for line in res.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: {pngs / 'x.png'}: cannot write", f"Error: {emit}: cannot write"]
    res = CliRunner().invoke(main, [*args[:4], "--emit-vnnlib", str(tmp_path / "q.vnnlib"), "--png-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "q.vnnlib").read_text().startswith("(vnnlib-version <2.0>)")
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob(".*.tmp*"))


@pytest.mark.parametrize("first", ["(vnnlib-version <2.0>)\n", ""])
def test_a_vnnlib2_file_given_the_one_zero_way_gets_a_hint(first: str, tmp_path: Path) -> None:
    query = tmp_path / "q2.vnnlib"
    query.write_text(first + QUERY2.split("\n", 1)[1])
    res = CliRunner().invoke(main, ["check", "networks/ACASXU_run2a_1_1_batch_2000.onnx", str(query)])
    assert res.exit_code == 3, res.output
    head = "vnnlib-version" if first else "declare-network"
    assert res.stderr == (
        f"Error: {query}:1:2: this is a VNN-LIB 2.x file ('{head}'); run `nnverify check {query} "
        "--network NAME=net.onnx …` (one --network per declare-network)\n"
    )


def test_repeated_notes_are_collapsed_with_their_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nnverify import pipeline
    from nnverify.options import Options
    from nnverify.witness import WitnessCheck

    net = mlp(tmp_path / "double.onnx", [(np.array([[2.0]]), np.array([0.0]))])
    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= 0 X_0 1))\n(assert (>= Y_0 1))\n")
    real, failed = pipeline.check_counterexample, []

    def first_six_fail(*args: object, **kwargs: object) -> WitnessCheck:
        failed.append(1)
        if len(failed) <= 6:  # three candidates, each replayed twice (polished, then as found)
            return WitnessCheck(False, None, "onnxruntime's output does not violate the property")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "check_counterexample", first_six_fail)
    result = pipeline.verify(net, prop, Options(timeout_s=30))
    assert result.verdict.value == "sat"
    assert result.note == "a candidate failed replay: onnxruntime's output does not violate the property (×3)"
