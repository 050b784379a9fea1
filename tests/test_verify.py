"""Verdicts end to end through the Python API, against the benchmark ground truth."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from benchdata import BENCHMARKS_DIR

import nnverify
import nnverify.pipeline as verify_module
from nnverify.backends.base import BackendResult, Capabilities, SolveStatus
from nnverify.encode.problem import Problem
from nnverify.witness import OnnxRunner, check_counterexample

BENCH = BENCHMARKS_DIR


def expected(set_name: str) -> dict[tuple[str, str], str]:
    if not (BENCH / set_name).is_dir():  # a clone without ../shared: the data tests are skipped (empty sets)
        return {}
    with (BENCH / set_name / "expected.csv").open() as handle:
        return {(r["onnx"], r["vnnlib"]): r["expected"] for r in csv.DictReader(handle)}


def instances(set_name: str) -> list[tuple[str, str, float]]:
    if not (BENCH / set_name).is_dir():
        return []
    with (BENCH / set_name / "instances.csv").open() as handle:
        return [(r[0], r[1], float(r[2])) for r in csv.reader(handle) if r]


TEST_SET = instances("test")
# A sample of ACAS Xu that stays fast: sat by attack, sat by search, unsat by search.
ACAS_SAMPLE = [
    ("onnx/ACASXU_run2a_1_9_batch_2000.onnx", "vnnlib/prop_4.vnnlib"),
    ("onnx/ACASXU_run2a_2_9_batch_2000.onnx", "vnnlib/prop_8.vnnlib"),
    ("onnx/ACASXU_run2a_3_3_batch_2000.onnx", "vnnlib/prop_4.vnnlib"),
    ("onnx/ACASXU_run2a_3_3_batch_2000.onnx", "vnnlib/prop_3.vnnlib"),
]


def assert_verdict(root: Path, onnx: str, vnnlib: str, want: str, timeout_s: float) -> nnverify.Result:
    result = nnverify.verify(root / onnx, root / vnnlib, nnverify.Options(timeout_s=timeout_s))
    assert result.verdict.value == want, result
    if want == "sat":
        cex = result.counterexample
        assert cex is not None
        prop = nnverify.load_property(root / vnnlib, cex.x.size, cex.y.size)
        assert check_counterexample(OnnxRunner(root / onnx), prop, cex.x, cex.y).valid
    else:
        assert result.counterexample is None
    return result


@pytest.mark.parametrize(("onnx", "vnnlib", "timeout_s"), TEST_SET, ids=[f"{o}-{v}" for o, v, _ in TEST_SET])
def test_test_set_verdicts(onnx: str, vnnlib: str, timeout_s: float) -> None:
    assert_verdict(BENCH / "test", onnx, vnnlib, expected("test")[(onnx, vnnlib)], timeout_s)


@pytest.mark.parametrize(
    ("onnx", "vnnlib"), ACAS_SAMPLE, ids=[f"{Path(o).stem[13:16]}-{Path(v).stem}" for o, v in ACAS_SAMPLE]
)
def test_acasxu_sample(onnx: str, vnnlib: str) -> None:
    assert_verdict(BENCH / "acasxu", onnx, vnnlib, expected("acasxu")[(onnx, vnnlib)], 116.0)


ACAS_ALL = instances("acasxu")


@pytest.mark.slow
@pytest.mark.parametrize(("onnx", "vnnlib", "timeout_s"), ACAS_ALL, ids=[f"{o}-{v}" for o, v, _ in ACAS_ALL])
def test_acasxu_full(onnx: str, vnnlib: str, timeout_s: float) -> None:
    result = nnverify.verify(BENCH / "acasxu" / onnx, BENCH / "acasxu" / vnnlib, nnverify.Options(timeout_s=timeout_s))
    if result.verdict.value in ("sat", "unsat"):
        assert result.verdict.value == expected("acasxu")[(onnx, vnnlib)]


def test_api_accepts_loaded_objects() -> None:
    graph = nnverify.load_network(BENCH / "test" / "test_tiny.onnx")
    prop = nnverify.load_property(BENCH / "test" / "test_tiny.vnnlib", graph.n_inputs, graph.n_outputs)
    assert nnverify.verify(graph, prop).verdict is nnverify.Verdict.UNSAT


def test_zero_budget_is_a_timeout_not_a_verdict() -> None:
    result = nnverify.verify(
        BENCH / "test" / "test_unsat.onnx", BENCH / "test" / "test_prop.vnnlib", nnverify.Options(timeout_s=0.0)
    )
    assert result.verdict is nnverify.Verdict.TIMEOUT


class LyingBackend:
    """Claims every problem feasible, with a given (non-violating) input point (inside the test only)."""

    name = "liar"
    exact = False
    capabilities = Capabilities()

    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    def solve(self, problem: Problem, *, timeout_s: float) -> BackendResult:
        values = np.clip(np.zeros(problem.n_vars), problem.lb, problem.ub)
        values[: self.x.size] = self.x  # the network's input variables come first in the encoding
        return BackendResult(SolveStatus.FEASIBLE, values, "made up")


def test_unreplayable_solver_solution_gives_unknown_never_sat(monkeypatch: pytest.MonkeyPatch) -> None:
    # a sat instance (so no bound can prove it) whose input region is mostly safe
    onnx = BENCH / "acasxu" / "onnx" / "ACASXU_run2a_1_9_batch_2000.onnx"
    vnnlib = BENCH / "acasxu" / "vnnlib" / "prop_7.vnnlib"
    prop = nnverify.load_property(vnnlib, 5, 5)
    box = prop.disjuncts[0]
    points = np.random.default_rng(0).uniform(box.lb, box.ub, size=(200, 5))
    safe = points[~prop.violated_by(points, OnnxRunner(onnx).run(points), atol=1e-3)][0]
    monkeypatch.setattr(verify_module, "get_backend", lambda name, options=None, pool=None: LyingBackend(safe))
    monkeypatch.setattr(verify_module, "INPUT_SPLIT_MAX_DIM", 0)
    monkeypatch.setattr(verify_module, "uses_relu_splitting", lambda graph: False)  # straight to the backend
    result = nnverify.verify(onnx, vnnlib, nnverify.Options(attack_samples=0))
    assert result.verdict is nnverify.Verdict.UNKNOWN
    assert result.counterexample is None
    assert "replay" in result.note


def test_solver_counterexample_is_replayed_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_module, "INPUT_SPLIT_MAX_DIM", 0)
    monkeypatch.setattr(verify_module, "uses_relu_splitting", lambda graph: False)
    options = nnverify.Options(attack_samples=0)
    result = assert_verdict(BENCH / "test", "test_sat.onnx", "test_prop.vnnlib", "sat", 60.0)
    result = nnverify.verify(BENCH / "test" / "test_sat.onnx", BENCH / "test" / "test_prop.vnnlib", options)
    assert result.verdict is nnverify.Verdict.SAT
    assert result.method == "milp:highs"


def test_pgd_finds_a_counterexample_that_sampling_misses() -> None:
    from nnverify import attack
    from nnverify.graph.passes import to_layers

    root = BENCH / "mnistfc"
    graph = nnverify.load_network(root / "onnx" / "mnist-net_256x2.onnx")
    prop = nnverify.load_property(root / "vnnlib" / "prop_1_0.03.vnnlib", graph.n_inputs, graph.n_outputs)
    layers = to_layers(graph)
    assert not attack.candidates(layers, list(prop.disjuncts), samples=500, seed=0)
    found = attack.pgd_candidates(layers, list(prop.disjuncts), seed=0)
    assert found
    x = found[0]
    assert prop.violated_by(x[None, :], layers.eval(x[None, :]))[0]


def test_refinement_follows_the_cores_unless_forced() -> None:
    """MILP refinement is on by default with two or more cores (parallel solves beside the search) and off
    with one (it would take the search's time); ``refine_bounds`` forces either way."""
    from nnverify.options import Options, available_cores

    assert not Options(threads=1).refines()
    assert Options(threads=2).refines()
    assert Options(threads=1, refine_bounds=True).refines()
    assert not Options(threads=8, refine_bounds=False).refines()
    assert Options().cores() == available_cores() >= 1
