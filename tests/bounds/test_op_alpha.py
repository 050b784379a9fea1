"""Optimised ReLU slopes for the property rows (``bounds/op_alpha.py``): the rows' bounds hold at sampled points and
never fall below the slope rules', the gradient matches finite differences, and the margin is needed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nnverify.bounds import backward_ops, op_alpha
from nnverify.bounds.forward_ops import input_form

sys.path.insert(0, str(Path(__file__).parent))
import test_backward_ops as bw
import test_forward_ops as fw
import test_op_windows as ow


def _setup(tmp_path: Path, name: str) -> tuple:
    graph = ow._deep_cnn(tmp_path) if name == "deep_cnn" else fw._load(tmp_path, name)
    plan = backward_ops.plan(graph)
    lb, ub, free = ow._box() if name == "deep_cnn" else fw._boxes(graph.n_inputs, False)
    state = backward_ops.op_bounds(plan, lb, ub, free)
    rng = np.random.default_rng(7)
    a_x, a_y = 0.1 * rng.normal(size=(6, graph.n_inputs)), rng.normal(size=(6, graph.n_outputs))
    return graph, plan, state, (lb, ub, free), (a_x, a_y, rng.normal(size=6))


@pytest.mark.parametrize("funcs", [False, True], ids=["rule-functions", "optimised-functions"])
@pytest.mark.parametrize("name", ["conv_relu", "deep_cnn"])
def test_optimised_rows_hold_at_sampled_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, funcs: bool
) -> None:
    monkeypatch.setattr(backward_ops, "ALPHA_FUNCS", funcs)
    graph, plan, state, (lb, ub, free), (a_x, a_y, _) = _setup(tmp_path, name)
    x_form = input_form(lb, ub, free, (lb.shape[1],))
    centre = graph.eval((lb + ub) / 2.0) @ a_y.T + ((lb + ub) / 2.0) @ a_x.T
    b = centre.mean(axis=0) + 0.5  # rows open in some box: the optimisation runs
    rules, _ = backward_ops.rows_lower(plan, state, a_x, a_y, b, x_form, alpha_steps=0)
    lower, funcs = backward_ops.rows_lower(plan, state, a_x, a_y, b, x_form, alpha_steps=8)
    assert np.all(lower >= rules) and np.any(lower > rules + 1e-9)  # some open row gained
    rng = np.random.default_rng(11)
    for box in range(lb.shape[0]):
        x = np.vstack([rng.uniform(lb[box], ub[box], (2000, lb.shape[1]))])
        rows = x @ a_x.T + graph.eval(x) @ a_y.T - b
        assert np.all(rows >= lower[box])
        e = (x[:, free] - (lb[box] + ub[box])[free] / 2.0) / ((ub[box] - lb[box])[free] / 2.0)
        assert np.all(rows >= e @ funcs[box, :, :-1].T + funcs[box, :, -1])


def test_the_gradient_matches_finite_differences(tmp_path: Path) -> None:
    _, plan, state, _, (_, a_y, b) = _setup(tmp_path, "deep_cnn")
    batch, k = state.lb[plan.graph.input_name].shape[0], a_y.shape[0]
    out = plan.graph.output_name
    seed = np.ascontiguousarray(np.broadcast_to(a_y.T.reshape(*plan.shapes[out], 1, k), (*plan.shapes[out], batch, k)))
    const, scale, margins = np.zeros((batch, k)) - b, np.zeros((batch, k)), (0.0, 0.0)
    alpha = op_alpha.initial(plan, state, np.zeros((batch, k), dtype=np.int64), ("adaptive",), margins)
    alpha = {name: np.where(a > 0.5, 0.7, 0.3) for name, a in alpha.items()}  # inside (0, 1): both directions
    record: dict[str, np.ndarray] = {}
    low, func = op_alpha._walk(plan, state, seed, const, scale, alpha, margins, record)
    grads = op_alpha._gradients(plan, state, func, alpha, record, margins)
    checked = 0
    for name, g in grads.items():
        for flat in np.flatnonzero(np.abs(g) > 1e-3)[:4]:
            moved = {n: a.copy() for n, a in alpha.items()}
            moved[name].reshape(-1)[flat] += 1e-7
            low2, _ = op_alpha._walk(plan, state, seed, const, scale, moved, margins, {})
            b_idx, r_idx = np.unravel_index(flat % (batch * k), (batch, k))
            assert (low2 - low)[b_idx, r_idx] / 1e-7 == pytest.approx(g.reshape(-1)[flat], rel=1e-3, abs=1e-6)
            checked += 1
    assert checked >= 4


def test_without_margin_the_optimised_walk_is_unsound() -> None:
    """``test_backward_ops``' margin net (its rounding only in the walk): the row ``y1 - y0 + 2^-61`` is
    ``-2^-61`` exactly; the slope walk without the margin rounds it to ``+2^-61``."""
    graph = bw._margin_graph()
    plan = backward_ops.plan(graph)
    one, free = np.ones((1, 2)), np.array([False, False])
    seed = np.array([-1.0, 1.0]).reshape(1, 2, 1, 1)
    for margins, sound in (((0.0, 0.0), False), ((1e-9, 1e-12), True)):
        state = backward_ops.op_bounds(plan, one, one, free, margins=margins)
        alpha = op_alpha.initial(plan, state, np.zeros((1, 1), dtype=np.int64), ("adaptive",), margins)
        lower, _ = op_alpha.optimise(plan, state, seed, np.full((1, 1), 2.0**-61), np.zeros((1, 1)), alpha, margins, 3)
        assert bool(lower[0, 0] <= -(2.0**-61)) is sound
