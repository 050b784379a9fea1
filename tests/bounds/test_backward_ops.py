"""CROWN on the op graph (``bounds/backward_ops.py``): sampled values stay inside every tensor's bounds and above
the rows' lower functions, the dense-view CROWN cannot tighten its bounds, and the margin is needed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from nnverify.bounds import backward_ops
from nnverify.bounds.backward import backward_rows_lower, crown_bounds
from nnverify.bounds.forward_ops import input_form
from nnverify.graph.core import Graph
from nnverify.graph.ops.base import Node
from nnverify.graph.passes import to_layers

sys.path.insert(0, str(Path(__file__).parent))
import test_forward_ops as fw

NETS = ["conv_relu", "generator"]


def _rows(graph: Graph, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(4, graph.n_inputs)), rng.normal(size=(4, graph.n_outputs)), rng.normal(size=4)


@pytest.mark.parametrize("pinned", [False, True], ids=["all-free", "one-pinned"])
@pytest.mark.parametrize("name", NETS)
def test_bounds_and_rows_hold_at_sampled_points(tmp_path: Path, name: str, pinned: bool) -> None:
    graph = fw._load(tmp_path, name)
    plan = backward_ops.plan(graph)
    assert backward_ops.unsupported(plan) is None
    lb, ub, free = fw._boxes(graph.n_inputs, pinned)
    state = backward_ops.op_bounds(plan, lb, ub, free)
    a_x, a_y, b = _rows(graph, 1)
    lower, funcs = backward_ops.rows_lower(plan, state, a_x, a_y, b, input_form(lb, ub, free, (lb.shape[1],)))
    for box in range(3):
        x = fw._samples(lb[box], ub[box])
        env = graph.eval_all(x)
        for tensor, low in state.lb.items():
            value = env[tensor].reshape(x.shape[0], -1)
            assert np.all(value >= low[box].reshape(-1)) and np.all(value <= state.ub[tensor][box].reshape(-1))
        rows = x @ a_x.T + graph.eval(x) @ a_y.T - b
        assert np.all(rows >= lower[box])
        e = (x[:, free] - (lb[box] + ub[box])[free] / 2.0) / ((ub[box] - lb[box])[free] / 2.0)
        assert np.all(rows >= e @ funcs[box, :, :-1].T + funcs[box, :, -1])


def test_the_dense_view_crown_agrees(tmp_path: Path) -> None:
    """Given the op-graph bounds, CROWN on the dense view tightens none of them beyond the margin, and its row
    bounds equal the op graph's (the floor's functions are exact, so concretising there is the input box's)."""
    graph = fw._load(tmp_path, "conv_relu")
    plan = backward_ops.plan(graph)
    lb, ub, free = fw._boxes(graph.n_inputs, False)
    state = backward_ops.op_bounds(plan, lb, ub, free)
    view = to_layers(graph)
    tensor = {node.name: node.outputs[0] for node in graph.nodes} | {graph.input_name: graph.input_name}
    lbs = [state.lb[tensor[layer.name]].reshape(3, -1) for layer in view.layers]
    ubs = [state.ub[tensor[layer.name]].reshape(3, -1) for layer in view.layers]
    dense = crown_bounds(view, lbs, ubs)
    opened = 0
    for k in range(len(view.layers)):
        scale = 1e-6 * (1.0 + np.abs(lbs[k]) + np.abs(ubs[k]))  # the two passes round differently
        assert np.all(dense.lb[k] <= lbs[k] + scale) and np.all(dense.ub[k] >= ubs[k] - scale)
        opened += int(np.sum((lbs[k] < 0.0) & (ubs[k] > 0.0)))
    assert opened > 0  # the nets have unstable neurons: the comparison is not between exact bounds
    a_x, a_y, b = _rows(graph, 2)
    x_form = input_form(lb, ub, free, (lb.shape[1],))
    for rules in (("adaptive",), backward_ops.ROW_RULES):
        mine, _ = backward_ops.rows_lower(plan, state, a_x, a_y, b, x_form, rules=rules, alpha_steps=0)
        theirs, _ = backward_rows_lower(view, lbs, ubs, a_x, a_y, b, rules=rules)
        np.testing.assert_allclose(mine, theirs, rtol=1e-7, atol=1e-7)


def test_intermediate_bounds_are_tighter_than_forward_functions(tmp_path: Path) -> None:
    graph = fw._load(tmp_path, "conv_relu")
    lb, ub, free = fw._boxes(graph.n_inputs, False)
    state = backward_ops.op_bounds(backward_ops.plan(graph), lb, ub, free)
    form = fw.forward_forms(graph, lb, ub, free, target="c2")
    lo, hi = form.interval()
    assert np.all(state.lb["c2"] >= lo - 1e-9) and np.all(state.ub["c2"] <= hi + 1e-9)
    assert np.sum(state.ub["c2"] - state.lb["c2"]) < np.sum(hi - lo)


A = 1.0 + 2.0**-30  # A * A = 1 + 2^-29 + 2^-60 exactly, which float64 rounds to 1 + 2^-29


def _margin_graph() -> Graph:
    """r = relu(x), h = (A r0, r1), y = (A h0, (1 + 2^-29) h1) at x = (1, 1): y1 - y0 = -2^-60 in exact arithmetic.
    The floor is the input itself (pinned: no margin there), so only the walk's own margin covers the rounding
    of ``A * A`` in the second Gemm's adjoint."""
    attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
    nodes = (
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Gemm", ["r", "W1"], ["h"]),
        helper.make_node("Gemm", ["h", "W2"], ["y"]),
    )
    consts = {"W1": np.array([[A, 0.0], [0.0, 1.0]]), "W2": np.array([[A, 0.0], [0.0, 1.0 + 2.0**-29]])}
    typed = tuple(
        Node(n.name or n.op_type, n.op_type, tuple(n.input), tuple(n.output), attrs if n.op_type == "Gemm" else {})
        for n in nodes
    )
    return Graph("margin", "x", (1, 2), "y", (1, 2), typed, consts)


def test_without_margin_rounding_gives_a_wrong_proof() -> None:
    graph = _margin_graph()
    plan = backward_ops.plan(graph)
    assert plan.floor == ("x",)
    one, free = np.ones((1, 2)), np.array([False, False])
    a_x, a_y, b = np.zeros((1, 2)), np.array([[-1.0, 1.0]]), np.array([-(2.0**-61)])
    for margins, proves in (((0.0, 0.0), True), ((1e-9, 1e-12), False)):
        state = backward_ops.op_bounds(plan, one, one, free, margins=margins)
        lower, _ = backward_ops.rows_lower(plan, state, a_x, a_y, b, input_form(one, one, free, (2,)), margins)
        assert bool(lower[0, 0] > 0.0) is proves  # without the margin: the unsound "proof" the margin prevents


def test_children_inherit_the_parent_bounds(tmp_path: Path) -> None:
    """A half box bounded with its parent's bounds is at least as tight as the parent, and still sound."""
    graph = fw._load(tmp_path, "conv_relu")
    plan = backward_ops.plan(graph)
    lb, ub, free = fw._boxes(graph.n_inputs, False)
    parent = backward_ops.op_bounds(plan, lb[:1], ub[:1], free)
    mid = (lb[0, 0] + ub[0, 0]) / 2.0
    c_lb, c_ub = lb[:1].copy(), ub[:1].copy()
    c_ub[0, 0] = mid
    child = backward_ops.op_bounds(plan, c_lb, c_ub, free, parent=parent.part(np.array([0])))
    x = fw._samples(c_lb[0], c_ub[0])
    env = graph.eval_all(x)
    for tensor in parent.lb:
        assert np.all(child.lb[tensor] >= parent.lb[tensor]) and np.all(child.ub[tensor] <= parent.ub[tensor])
        value = env[tensor].reshape(x.shape[0], -1)
        assert np.all(value >= child.lb[tensor].reshape(-1)) and np.all(value <= child.ub[tensor].reshape(-1))


@pytest.mark.parametrize(("shift", "proved"), [(0.01, True), (-0.01, False)], ids=["unsat", "sat"])
def test_input_splitting_on_op_graph_bounds(tmp_path: Path, shift: float, proved: bool) -> None:
    """The forward route's search with these bounds proves a bound just above a fine grid's top, and finds a
    point below it (the grid's best point is a counterexample)."""
    from nnverify.backends.base import SolveStatus
    from nnverify.budget import Budget
    from nnverify.search.forward_split import forward_split_search
    from nnverify.spec.property import Disjunct

    graph = fw._load(tmp_path, "conv_relu")
    lb, ub = np.array([-1.5, 0.1, -1.0]), np.array([1.5, 0.1, 1.5])
    g0, g2 = np.meshgrid(np.linspace(lb[0], ub[0], 301), np.linspace(lb[2], ub[2], 301))
    top = float(graph.eval(np.stack([g0.ravel(), np.full(g0.size, 0.1), g2.ravel()], axis=1))[:, 0].max())
    d = Disjunct(lb, ub, np.zeros((1, 3)), np.array([[-1.0, 0.0]]), np.array([-(top + shift)]))
    found: list[np.ndarray] = []

    def accept(point: np.ndarray) -> bool:
        if d.slack(point[None], graph.eval(point[None]))[0] <= 0.0:
            found.append(point)
        return bool(found)

    out = forward_split_search(graph, backward_ops.plan(graph), [d], Budget.starting_now(60.0), accept)
    if proved:
        assert out.status is SolveStatus.INFEASIBLE and not found and out.stats.boxes > 1
    else:
        assert out.status is SolveStatus.FEASIBLE and found


def test_verify_bounds_the_forward_route_on_the_op_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conv net whose every node has an adjoint takes these bounds in the forward route (no cut is planned);
    with ``OP_BACKWARD`` off it falls back to the cut."""
    from nnverify import pipeline
    from nnverify.options import Options
    from nnverify.result import Verdict
    from nnverify.search import forward_split
    from nnverify.spec.property import Disjunct, Property

    graph = fw._load(tmp_path, "conv_relu")
    lb, ub = np.array([-1.5, 0.1, -1.0]), np.array([1.5, 0.1, 1.5])
    g0, g2 = np.meshgrid(np.linspace(lb[0], ub[0], 301), np.linspace(lb[2], ub[2], 301))
    top = float(graph.eval(np.stack([g0.ravel(), np.full(g0.size, 0.1), g2.ravel()], axis=1))[:, 0].max())
    prop = Property(3, 2, (Disjunct(lb, ub, np.zeros((1, 3)), np.array([[-1.0, 0.0]]), np.array([-(top + 0.01)])),))
    monkeypatch.setattr(forward_split, "FORWARD_DENSE_MB", 0.0)
    for enabled, bounds in ((True, "backward-ops"), (False, "forward-cut")):
        monkeypatch.setattr(forward_split, "OP_BACKWARD", enabled)
        result = pipeline.verify(graph, prop, Options(timeout_s=60.0))
        assert result.verdict is Verdict.UNSAT and result.stats["bounds"] == bounds


def test_a_parent_narrowed_to_one_float_passes_nothing_on(tmp_path: Path) -> None:
    """A parent box whose free input has no width left (deep splits) gives its children no functions (no
    normalised coordinates to re-express them in; no division by zero), only its bounds."""
    graph = fw._load(tmp_path, "conv_relu")
    plan = backward_ops.plan(graph)
    lb, ub, free = fw._boxes(graph.n_inputs, False)
    lb, ub = lb[:1].copy(), ub[:1].copy()
    ub[0, 0] = lb[0, 0]
    parent = backward_ops.op_bounds(plan, lb, ub, free)
    child = backward_ops.op_bounds(plan, lb, ub, free, parent=parent.part(np.array([0])))
    x = fw._samples(lb[0], ub[0])
    env = graph.eval_all(x)
    for tensor in parent.lb:
        value = env[tensor].reshape(x.shape[0], -1)
        assert np.all(value >= child.lb[tensor].reshape(-1)) and np.all(value <= child.ub[tensor].reshape(-1))
