"""The budget holds in every phase: a slow step there still ends at the deadline with ``timeout``.

Each phase test fails if that phase stopped looking at the budget: with a spent budget the phase must raise
``BudgetExpired`` naming itself, and through ``verify()`` the note must name the phase without "abandoned"
(the run stopped itself rather than being left behind by ``verify()``'s wait). No wall-clock assertions beyond
"within the budget plus a generous slack".
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import nnverify
import nnverify.pipeline as pipeline
from nnverify import attack
from nnverify.backends import pool as solver_pool
from nnverify.backends.base import BackendResult, Capabilities, SolveStatus
from nnverify.budget import Budget, BudgetExpired
from nnverify.cli import main
from nnverify.encode.problem import Problem
from nnverify.graph import onnx_import, passes
from nnverify.graph.onnx_import import load_network
from nnverify.graph.ops.base import Node
from nnverify.graph.passes import to_layers
from nnverify.search import exact, polish
from nnverify.spec import sexpr, vnnlib
from nnverify.spec.vnnlib import load_property, parse_vnnlib

SLACK_S = 3.0  # generous: the machine may be busy; the contract is budget + 1 s on an idle one


def spent() -> Budget:
    return Budget(time.monotonic() - 1.0)


def gemm_net(path: Path, sizes: list[int], relu: bool = True) -> Path:
    """A fully connected net ``sizes[0] -> ... -> sizes[-1]`` with ReLUs between (random weights)."""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for k, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        w = (rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(np.zeros(n_out, np.float32), f"b{k}")]
        last = k == len(sizes) - 2
        gemm_out = "y" if last else f"g{k}" if relu else f"h{k}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{k}", f"b{k}"], [gemm_out], transB=1))
        if relu and not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"h{k}"]))
        prev = "y" if last else f"h{k}"
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, sizes[-1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def box_property(n: int, m: int, extra_asserts: int = 0) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(n)] + [f"(declare-const Y_{j} Real)" for j in range(m)]
    lines += [f"(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))" for i in range(n)]
    lines.append("(assert (>= Y_0 1000))")
    lines += ["(assert (<= X_0 1e6))"] * extra_asserts
    return "\n".join(lines) + "\n"


# --- property parsing ------------------------------------------------------------------------------------


def test_reading_a_property_looks_at_the_budget() -> None:
    with pytest.raises(BudgetExpired, match="reading the property"):
        parse_vnnlib(box_property(2, 1, 10), budget=spent())


def test_a_slow_tokenizer_stops_at_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    real = sexpr._TOKEN_RE

    class SlowTokens:
        def finditer(self, text: str, *args: int) -> Iterator[re.Match[str]]:
            for m in real.finditer(text, *args):
                time.sleep(0.001)
                yield m

    monkeypatch.setattr(sexpr, "_TOKEN_RE", SlowTokens())
    monkeypatch.setattr(sexpr, "CHECK_EVERY", 1)  # look every 16 characters
    started = time.monotonic()
    with pytest.raises(BudgetExpired, match="reading the property"):
        parse_vnnlib(box_property(2, 1, 5000), budget=Budget.starting_now(0.2))  # ~25,000 tokens: 25 s unchecked
    assert time.monotonic() - started < 0.2 + SLACK_S


def test_slow_assertions_stop_at_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    real = vnnlib._Parser._formula

    def slow(self: vnnlib._Parser, node: sexpr.Node) -> vnnlib.Dnf:
        time.sleep(0.005)
        return real(self, node)

    monkeypatch.setattr(vnnlib._Parser, "_formula", slow)
    monkeypatch.setattr(vnnlib, "CHECK_EVERY", 8)
    started = time.monotonic()
    # A budget long enough that reading the text (tokenising, unslowed) ends first even on a loaded machine: the
    # budget must run out in the loop over assertions (0.2 s let a busy machine's tokeniser spend it first).
    with pytest.raises(BudgetExpired, match="parsing the property"):
        parse_vnnlib(box_property(2, 1, 3000), budget=Budget.starting_now(2.0))  # 15 s unchecked
    assert time.monotonic() - started < 2.0 + SLACK_S  # stopped in the loop over assertions, not after it


def test_normal_form_looks_at_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    text = box_property(1, 1) + "(assert (or " + " ".join(f"(<= Y_0 {k})" for k in range(500)) + "))\n"
    calls = []
    real = vnnlib._Builder.disjuncts

    def watched(self: vnnlib._Builder, common: vnnlib.Conj, alternatives: vnnlib.Dnf) -> tuple:
        self.budget = spent()  # the parse itself went through; the budget runs out while building
        calls.append(1)
        return real(self, common, alternatives)

    monkeypatch.setattr(vnnlib._Builder, "disjuncts", watched)
    with pytest.raises(BudgetExpired, match="parsing the property"):
        parse_vnnlib(text, budget=Budget.starting_now(60))
    assert calls


def test_verify_of_a_million_line_property_answers_timeout(tmp_path: Path) -> None:
    net = gemm_net(tmp_path / "net.onnx", [2, 3, 1])
    prop = tmp_path / "big.vnnlib"
    prop.write_text(box_property(2, 1, 300_000))
    started = time.monotonic()
    before = set(threading.enumerate())
    result = nnverify.verify(net, prop, nnverify.Options(timeout_s=0.5))
    assert result.verdict is nnverify.Verdict.TIMEOUT
    assert "property" in result.note
    assert time.monotonic() - started < 0.5 + SLACK_S
    if "abandoned" in result.note:  # a loaded machine: verify()'s 0.3 s grace came first; the parse still stops
        workers = [t for t in threading.enumerate() if t not in before and t.name == "nnverify-verify"]
        for worker in workers:
            worker.join(5.0)  # unchecked, the rest of the 300,000 assertions takes ~10 s
            assert not worker.is_alive()


# --- model reading and the analysis view -----------------------------------------------------------------


def test_loading_looks_at_the_budget(tmp_path: Path) -> None:
    net = gemm_net(tmp_path / "net.onnx", [2, 3, 1])
    with pytest.raises(BudgetExpired, match="loading the network"):
        load_network(net, spent())


def test_a_slow_node_import_stops_at_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = gemm_net(tmp_path / "net.onnx", [2] * 40)  # 78 nodes
    real = onnx_import._Importer._visit

    def slow(self: onnx_import._Importer, *args: object) -> None:
        time.sleep(0.05)
        real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx_import._Importer, "_visit", slow)
    result = nnverify.verify(net, _prop_file(tmp_path, 2, 2), nnverify.Options(timeout_s=0.3))
    assert result.verdict is nnverify.Verdict.TIMEOUT
    assert "loading the network" in result.note and "abandoned" not in result.note


def test_building_the_view_looks_at_the_budget_per_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = load_network(gemm_net(tmp_path / "net.onnx", [2048, 4, 1]))
    monkeypatch.setattr(passes, "_BLOCK", 16)  # 128 blocks for the first layer
    op = passes.REGISTRY["Gemm"]
    real = op.eval

    def slow(node: Node, *args: np.ndarray) -> np.ndarray:
        time.sleep(0.02)
        return real(node, *args)

    monkeypatch.setattr(op, "eval", slow)
    with pytest.raises(BudgetExpired, match="building the analysis view"):
        to_layers(graph, budget=Budget.starting_now(0.3))  # 2.6 s unchecked


# --- the attack, bounds, the solver, polishing -----------------------------------------------------------


def test_the_attack_looks_at_the_budget(tmp_path: Path) -> None:
    layers = to_layers(load_network(gemm_net(tmp_path / "net.onnx", [2, 3, 1])))
    prop = parse_vnnlib(box_property(2, 1), n_inputs=2, n_outputs=1)
    with pytest.raises(BudgetExpired, match="sampling"):
        attack.candidates(layers, list(prop.disjuncts), samples=100, seed=0, budget=spent())
    with pytest.raises(BudgetExpired, match="gradient descent"):
        attack.pgd_candidates(layers, list(prop.disjuncts), budget=spent())


def test_a_slow_attack_stops_at_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = gemm_net(tmp_path / "net.onnx", [2, 8, 1])
    real = attack._slack

    def slow(*args: object) -> np.ndarray:
        time.sleep(0.05)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(attack, "_slack", slow)
    monkeypatch.setattr(attack, "CHUNK_BYTES", 8 * 19 * 10)  # 10 samples per evaluation: 250 chunks, 12 s
    result = nnverify.verify(net, _prop_file(tmp_path, 2, 1), nnverify.Options(timeout_s=0.5))
    assert result.verdict is nnverify.Verdict.TIMEOUT
    assert "sampling" in result.note and "abandoned" not in result.note


def test_bounding_looks_at_the_budget(tmp_path: Path) -> None:
    layers = to_layers(load_network(gemm_net(tmp_path / "net.onnx", [2, 3, 1])))
    d = parse_vnnlib(box_property(2, 1), n_inputs=2, n_outputs=1).disjuncts[0]
    with pytest.raises(BudgetExpired, match="bounding"):
        exact.bound_box(layers, d.lb, d.ub, [d], nnverify.Options(), spent())


class SlowBackend:
    """Ignores its time limit: sleeps far past it (the run must still answer at the deadline)."""

    name = "slow"
    exact = False
    capabilities = Capabilities()

    def __init__(self) -> None:
        self.limits: list[float] = []

    def solve(self, problem: Problem, *, timeout_s: float) -> BackendResult:
        self.limits.append(timeout_s)
        time.sleep(8.0)
        return BackendResult(SolveStatus.TIMEOUT)


def test_a_solver_that_overruns_is_abandoned_at_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = gemm_net(tmp_path / "net.onnx", [20, 8, 1])
    backend = SlowBackend()
    monkeypatch.setattr(pipeline, "get_backend", lambda name, options=None, pool=None: backend)
    monkeypatch.setattr(pipeline, "uses_relu_splitting", lambda graph: False)
    monkeypatch.setattr(pipeline, "_attack", lambda run: None)
    started = time.monotonic()
    result = nnverify.verify(net, _prop_file(tmp_path, 20, 1, y_min=-1000), nnverify.Options(timeout_s=1.0))
    assert result.verdict is nnverify.Verdict.TIMEOUT
    assert "abandoned" in result.note  # verify()'s own wait answered: the solver call cannot be interrupted
    assert backend.limits and all(0 < limit <= 1.0 for limit in backend.limits)  # from what was left
    assert time.monotonic() - started < 1.0 + SLACK_S
    assert result.stats["abandoned"] == 1  # the run's pool reports the worker it left behind
    assert solver_pool.work_remains()  # so the program would leave without interpreter teardown


def test_polishing_gets_what_is_left(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import highspy

    layers = to_layers(load_network(gemm_net(tmp_path / "net.onnx", [2, 3, 1])))
    d = parse_vnnlib(box_property(2, 1), n_inputs=2, n_outputs=1).disjuncts[0]
    limits: list[float] = []
    real = highspy.Highs.setOptionValue

    def spy(self: highspy.Highs, name: str, value: object) -> object:
        if name == "time_limit":
            limits.append(float(value))  # type: ignore[arg-type]
        return real(self, name, value)

    monkeypatch.setattr(highspy.Highs, "setOptionValue", spy)
    x = np.zeros(2)
    polish.polish(layers, d, x, Budget.starting_now(1.0))
    assert limits and limits[-1] <= 1.0
    limits.clear()
    assert polish.polish(layers, d, x, spent()) is x  # no time left: replayed as it is
    assert not limits


# --- the CLI ---------------------------------------------------------------------------------------------


def test_cli_prints_timeout_and_writes_the_results_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = gemm_net(tmp_path / "net.onnx", [20, 8, 1])
    monkeypatch.setattr(pipeline, "get_backend", lambda name, options=None, pool=None: SlowBackend())
    monkeypatch.setattr(pipeline, "uses_relu_splitting", lambda graph: False)
    monkeypatch.setattr(pipeline, "_attack", lambda run: None)
    results = tmp_path / "results.txt"
    prop = _prop_file(tmp_path, 20, 1, y_min=-1000)
    args = ["check", str(net), str(prop), "--timeout", "1", "--results-file", str(results), "--json"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "timeout"
    assert '"peak_mem_mb"' in out.output
    assert results.read_text().strip() == "timeout"


def _prop_file(tmp_path: Path, n: int, m: int, y_min: float = 1000) -> Path:
    path = tmp_path / "prop.vnnlib"
    path.write_text(box_property(n, m).replace("(>= Y_0 1000)", f"(>= Y_0 {y_min})"))
    load_property(path, n, m)
    return path
