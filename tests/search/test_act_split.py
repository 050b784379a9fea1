"""Activation splitting (GenBaB-style) on Tanh/Sigmoid nets: every domain's bounds sound by sampling (and not
without the margin), proofs the root bound cannot give, replayed witnesses, the budget and the memory cap."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnverify
from nnverify.backends.base import SolveStatus
from nnverify.budget import Budget, ResourceLimitError
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph, backpropagate, point_slopes
from nnverify.graph.ops.base import ActKind
from nnverify.options import Options
from nnverify.search import act_split
from nnverify.search.act_split import act_split_search
from nnverify.search.rows import StackedRows
from nnverify.spec.property import Disjunct


def _net(rng: np.random.Generator, widths: list[int], kinds: list[ActKind], scale: float = 1.5) -> LayerGraph:
    layers: list = [InputLayer(widths[0])]
    for k in range(len(widths) - 1):
        w = rng.normal(0.0, scale / np.sqrt(widths[k]), (widths[k + 1], widths[k])).astype(np.float32)
        bias = rng.normal(0.0, 0.5, widths[k + 1]).astype(np.float32)
        layers.append(AffineLayer(f"fc{k}", (len(layers) - 1,), (w.astype(np.float64),), bias.astype(np.float64)))
        if k < len(kinds):
            layers.append(ActivationLayer(f"act{k}", len(layers) - 1, kinds[k], widths[k + 1]))
    return LayerGraph(tuple(layers), len(layers) - 1)


def _expand(net: LayerGraph, d: Disjunct, options: Options, levels: int) -> list[tuple]:
    """Domains of the first ``levels`` levels: (given bounds, tightened bounds, rows' lower bounds, empty)."""
    rows = StackedRows.of([d])
    dom = act_split._root(net, rows, options, d.lb, d.ub)
    out = []
    for _ in range(levels):
        tight, lower, _, empty = act_split._bound(net, rows, dom, options, lambda: None)
        out.append((dom, tight, lower, empty))
        pick = rows.binding(lower, np.ones((len(dom), 1), dtype=bool))
        dom, _ = act_split._children(net, rows, (tight, lower, rows.a_y[None] * pick[:, :, None]), dom, options)
    return out


def test_every_domain_bound_contains_its_sampled_points() -> None:
    """Three levels of splits on random Sigmoid/Tanh/ReLU nets: for each domain, the sampled inputs whose layer
    values lie in the domain's given bounds (its region) stay inside its tightened bounds and above its rows'
    lower bounds; a domain found empty has no such point."""
    rng = np.random.default_rng(0)
    options = Options()
    checked = 0
    for _ in range(6):
        net = _net(rng, [20, 12, 10, 3], [ActKind.SIGMOID, ActKind.TANH])
        centre = rng.uniform(-1.0, 1.0, 20)
        lb, ub = centre - 0.3, centre + 0.3
        d = Disjunct(lb, ub, np.zeros((2, 20)), rng.normal(size=(2, 3)), rng.normal(size=2))
        x = rng.uniform(lb, ub, (4000, 20))
        values = net.eval_all(x)
        rows = x @ d.a_x.T + values[net.output] @ d.a_y.T - d.b
        for dom, tight, lower, empty in _expand(net, d, options, 3):
            for i in range(len(dom)):
                inside = np.ones(x.shape[0], dtype=bool)
                for k, v in enumerate(values):
                    inside &= np.all((v >= dom.lb[k][i]) & (v <= dom.ub[k][i]), axis=1)
                if empty[i]:
                    assert not np.any(inside)
                    continue
                for k, v in enumerate(values):
                    assert np.all(v[inside] >= tight.lb[k][i]) and np.all(v[inside] <= tight.ub[k][i])
                assert np.all(rows[inside] >= lower[i])
                checked += int(inside.sum())
    assert checked > 10_000


def _tiny(w1: float, b1: float, w2: float, kind: ActKind) -> LayerGraph:
    layers = (
        InputLayer(1),
        AffineLayer("fc0", (0,), (np.array([[w1]]),), np.array([b1])),
        ActivationLayer("act0", 1, kind, 1),
        AffineLayer("out", (2,), (np.array([[w2]]),), np.zeros(1)),
    )
    return LayerGraph(layers, 3)


def _child_violations(margins: tuple[float, float], kind: ActKind) -> int:
    """Children of one split of ``w2 f(w1 x + b1)`` on random intervals: the child bounds above the true
    minimum (extended precision at the child's end points and samples)."""
    rng = np.random.default_rng(1)
    options = Options(bound_margin_rel=margins[0], bound_margin_abs=margins[1])
    f = {ActKind.TANH: np.tanh, ActKind.SIGMOID: lambda v: 1 / (1 + np.exp(-v))}[kind]
    bad = 0
    for _ in range(80):
        w1, b1, w2 = rng.uniform(0.5, 2.0), rng.normal(), rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 2.0)
        net = _tiny(w1, b1, w2, kind)
        c = rng.uniform(-2.0, 2.0)
        lb, ub = np.array([c]), np.array([c + 10.0 ** rng.uniform(-6, 0)])
        d = Disjunct(lb, ub, np.zeros((1, 1)), np.ones((1, 1)), np.zeros(1))
        (_, _, _, _), (dom, _, lower, _) = _expand(net, d, options, 2)
        x = np.concatenate([lb, ub, rng.uniform(lb, ub, 200)]).astype(np.longdouble)
        z = np.longdouble(w1) * x + np.longdouble(b1)
        y = np.longdouble(w2) * f(z)
        for i in range(len(dom)):
            region = (z >= dom.lb[1][i, 0]) & (z <= dom.ub[1][i, 0])
            bad += int(np.any(region & (y < np.longdouble(lower[i, 0]))))
    return bad


@pytest.mark.parametrize("kind", [ActKind.TANH, ActKind.SIGMOID], ids=str)
def test_child_bounds_need_the_margin(kind: ActKind) -> None:
    """Split children of one-neuron nets: sound against extended precision with the margin, not without it."""
    assert _child_violations((0.0, 0.0), kind) > 0
    assert _child_violations((Options().bound_margin_rel, Options().bound_margin_abs), kind) == 0


def _lowest(net: LayerGraph, lb: np.ndarray, ub: np.ndarray, rng: np.random.Generator) -> float:
    """About the minimum of the (single) output over the box: signed gradient descent from 100 random starts."""
    x = rng.uniform(lb, ub, (100, lb.size))
    for _ in range(60):
        grad = backpropagate(net, np.ones((100, 1)), point_slopes(net, net.eval_all(x)))
        x = np.clip(x - 0.05 * (ub - lb) * np.sign(grad), lb, ub)
    return float(net.eval(x).min())


def _hard_case() -> tuple[LayerGraph, Disjunct, float]:
    """A Tanh net (float32 weights), the unsafe set ``y <= t`` with ``t`` a tenth of the way from the root's
    lower bound of ``y`` up to the lowest ``y`` gradient descent finds (the root bound cannot rule it out), and
    that lowest ``y``."""
    rng = np.random.default_rng(2)
    net = _net(rng, [20, 10, 8, 1], [ActKind.TANH, ActKind.TANH], scale=2.0)
    centre = rng.uniform(-1.0, 1.0, 20)
    lb, ub = centre - 0.15, centre + 0.15
    low = _lowest(net, lb, ub, rng)
    root = _expand(net, Disjunct(lb, ub, np.zeros((1, 20)), np.ones((1, 1)), np.zeros(1)), Options(), 1)[0][2][0, 0]
    assert root < low - 0.2
    return net, Disjunct(lb, ub, np.zeros((1, 20)), np.ones((1, 1)), np.array([root + 0.1 * (low - root)])), low


def test_activation_splitting_proves_what_the_root_bound_cannot() -> None:
    net, d, _ = _hard_case()
    out = act_split_search(net, [d], d.lb, d.ub, Budget.starting_now(60), Options(), lambda x: True)
    assert out.status is SolveStatus.INFEASIBLE
    assert out.stats.boxes > 1 and out.stats.max_depth >= 1


def test_a_reachable_row_gives_the_point_the_callback_accepted() -> None:
    net, d, low = _hard_case()
    unsafe = Disjunct(d.lb, d.ub, d.a_x, d.a_y, np.array([low + 0.05]))  # gradient descent reached below
    seen: list[np.ndarray] = []

    def accept(x: np.ndarray) -> bool:
        seen.append(x)
        return True

    out = act_split_search(net, [unsafe], d.lb, d.ub, Budget.starting_now(60), Options(), accept)
    assert out.status is SolveStatus.FEASIBLE and out.x is not None
    assert np.array_equal(out.x, seen[-1])
    assert unsafe.slack(out.x[None], net.eval(out.x[None]))[0] <= 0.0


@dataclass(frozen=True)
class _Countdown(Budget):
    """A budget whose deadline passes after ``left[0]`` looks at it (a stubbed clock: no wall-clock asserts)."""

    left: list[int] = field(default_factory=lambda: [0])

    def expired(self) -> bool:
        self.left[0] -= 1
        return self.left[0] < 0

    def check(self, phase: str) -> None:
        if self.expired():
            from nnverify.budget import BudgetExpired

            raise BudgetExpired(phase)


def test_the_budget_stops_the_search_at_its_checks() -> None:
    net, d, _ = _hard_case()
    for looks in (0, 1, 5):
        budget = _Countdown(math.inf, left=[looks])
        out = act_split_search(net, [d], d.lb, d.ub, budget, Options(), lambda x: True)
        assert out.status is SolveStatus.TIMEOUT and "activation splitting" in out.note
        assert out.stats.boxes <= max(1, looks) * act_split.batch_size(net)


def test_the_memory_cap_refuses_the_search() -> None:
    net, d, _ = _hard_case()
    with pytest.raises(ResourceLimitError, match="activation splitting"):
        act_split_search(net, [d], d.lb, d.ub, Budget(math.inf, 1.0), Options(), lambda x: True)


def _write(path: Path, net: LayerGraph) -> None:
    """The layer graph as ONNX (Gemm and activation nodes)."""
    nodes, inits, src = [], [], "x"
    names = {ActKind.TANH: "Tanh", ActKind.SIGMOID: "Sigmoid"}
    for k, layer in enumerate(net.layers[1:], start=1):
        if isinstance(layer, AffineLayer):
            inits += [numpy_helper.from_array(layer.weights[0].astype(np.float32), f"w{k}")]
            inits += [numpy_helper.from_array(layer.bias.astype(np.float32), f"b{k}")]
            nodes.append(helper.make_node("Gemm", [src, f"w{k}", f"b{k}"], [f"v{k}"], transB=1))
        else:
            assert isinstance(layer, ActivationLayer)
            nodes.append(helper.make_node(names[layer.kind], [src], [f"v{k}"]))
        src = f"v{k}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, net.n_inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, net.n_outputs])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def _write_prop(path: Path, d: Disjunct) -> None:
    lines = [f"(declare-const X_{i} Real)" for i in range(d.lb.size)] + ["(declare-const Y_0 Real)"]
    for i in range(d.lb.size):
        lines += [f"(assert (>= X_{i} {float(d.lb[i])!r}))", f"(assert (<= X_{i} {float(d.ub[i])!r}))"]
    lines.append(f"(assert (<= Y_0 {float(d.b[0])!r}))")
    path.write_text("\n".join(lines) + "\n")


def test_verify_routes_wide_smooth_nets_to_activation_splitting(tmp_path: Path) -> None:
    """20 free inputs: ``verify`` proves the hard case by activation splitting, and with the threshold above the
    lowest output found returns a witness replayed on onnxruntime without the sampling attack."""
    net, d, low = _hard_case()
    _write(tmp_path / "net.onnx", net)
    lb, ub = d.lb.astype(np.float32).astype(np.float64), d.ub.astype(np.float32).astype(np.float64)
    _write_prop(tmp_path / "unsat.vnnlib", Disjunct(lb, ub, d.a_x, d.a_y, d.b - 0.01))
    result = nnverify.verify(tmp_path / "net.onnx", tmp_path / "unsat.vnnlib", Options(timeout_s=60))
    assert result.verdict.value == "unsat" and "act-split" in result.method
    _write_prop(tmp_path / "sat.vnnlib", Disjunct(lb, ub, d.a_x, d.a_y, np.array([low + 0.05])))
    result = nnverify.verify(tmp_path / "net.onnx", tmp_path / "sat.vnnlib", Options(timeout_s=60, attack_samples=0))
    assert result.verdict.value == "sat" and result.counterexample is not None
    assert "act-split" in result.method and float(result.counterexample.y[0]) <= low + 0.05


def _mixed_net(rng: np.random.Generator) -> LayerGraph:
    """Sigmoid, ReLU and Sign layers and a residual (two-source) output layer."""
    layers: list = [InputLayer(18)]
    for k, (n_in, n_out, kind) in enumerate([(18, 10, ActKind.SIGMOID), (10, 8, ActKind.RELU), (8, 6, ActKind.SIGN)]):
        w = rng.normal(0.0, 1.5 / np.sqrt(n_in), (n_out, n_in))
        layers.append(AffineLayer(f"fc{k}", (len(layers) - 1,), (w,), rng.normal(0.0, 0.3, n_out)))
        layers.append(ActivationLayer(f"act{k}", len(layers) - 1, kind, n_out))
    w_out, w_skip = rng.normal(size=(2, 6)), rng.normal(size=(2, 10))
    layers.append(AffineLayer("out", (len(layers) - 1, 2), (w_out, w_skip), np.zeros(2)))
    return LayerGraph(tuple(layers), len(layers) - 1)


def test_mixed_activations_agree_with_sampling() -> None:
    """Random nets mixing Sigmoid, ReLU, Sign and a skip connection, thresholds around the sampled range: a proof
    is never contradicted by a sample, a counterexample always reaches its set; both answers occur."""
    rng = np.random.default_rng(6)
    seen = set()
    for _ in range(12):
        net = _mixed_net(rng)
        centre = rng.uniform(-1.0, 1.0, 18)
        lb, ub = centre - 0.2, centre + 0.2
        a_y = rng.normal(size=(1, 2))
        x = rng.uniform(lb, ub, (3000, 18))
        values = net.eval(x) @ a_y.T
        b = np.array([values.min() - rng.uniform(-0.2, 0.5)])
        d = Disjunct(lb, ub, np.zeros((1, 18)), a_y, b)
        out = act_split_search(net, [d], lb, ub, Budget.starting_now(3), Options(), lambda p: True)
        if out.status is SolveStatus.INFEASIBLE:
            assert np.all(values[:, 0] > b[0])
        if out.status is SolveStatus.FEASIBLE:
            assert out.x is not None and d.slack(out.x[None], net.eval(out.x[None]))[0] <= 0.0
        seen.add(out.status)
    assert {SolveStatus.INFEASIBLE, SolveStatus.FEASIBLE} <= seen
