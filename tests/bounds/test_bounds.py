"""Soundness of interval and symbolic bounds: sampled points never leave them; the margin is needed."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from netgen import random_net

from nnverify.bounds.backward import SLOPE_RULES, backward_rows_lower, crown_bounds
from nnverify.bounds.interval import interval_bounds, rows_lower_bound
from nnverify.bounds.symbolic import rows_lower_bound_symbolic, symbolic_bounds
from nnverify.graph.layers import AffineLayer, InputLayer, LayerGraph

NETS = {
    "relu-3": dict(widths=[3, 8, 8, 2]),
    "relu-deep": dict(widths=[5, 12, 12, 12, 12, 5]),
    "residual": dict(widths=[4, 6, 6, 3], residual=True),
    "sign": dict(widths=[3, 6, 6, 6, 2], sign=True),
}


@pytest.mark.parametrize("name", list(NETS), ids=list(NETS))
@pytest.mark.parametrize("method", ["interval", "symbolic", "crown"], ids=["interval", "symbolic", "crown"])
def test_sampled_points_stay_inside_bounds(name: str, method: str) -> None:
    rng = np.random.default_rng(7)
    for trial in range(5):
        net = random_net(rng, **NETS[name])
        n = net.n_inputs
        centre = rng.normal(size=(3, n))
        radius = rng.uniform(0.01, 1.0, size=(3, n))
        lb, ub = centre - radius, centre + radius
        if method == "interval":
            bounds = interval_bounds(net, lb, ub)
        else:
            bounds = symbolic_bounds(net, lb, ub)
            if method == "crown":
                bounds = crown_bounds(net, bounds.lb, bounds.ub)
        for box in range(3):
            x = rng.uniform(lb[box], ub[box], size=(1000, n))
            x[:8] = np.where(rng.integers(0, 2, size=(8, n)).astype(bool), lb[box], ub[box])
            values = net.eval_all(x)
            for k, v in enumerate(values):
                assert np.all(v >= bounds.lb[k][box] - 0.0), (trial, box, k)
                assert np.all(v <= bounds.ub[k][box] + 0.0), (trial, box, k)


@pytest.mark.parametrize("name", list(NETS), ids=list(NETS))
def test_row_bounds_are_below_sampled_row_values(name: str) -> None:
    rng = np.random.default_rng(11)
    net = random_net(rng, **NETS[name])
    n, m = net.n_inputs, net.n_outputs
    lb, ub = -np.ones((2, n)), np.ones((2, n))
    ub[1] = 0.5
    a_x, a_y, b = rng.normal(size=(4, n)), rng.normal(size=(4, m)), rng.normal(size=4)
    sym = symbolic_bounds(net, lb, ub)
    itv = interval_bounds(net, lb, ub)
    lower_sym, _ = rows_lower_bound_symbolic(sym, net.output, a_x, a_y, b, lb, ub)
    lower_itv = rows_lower_bound(a_x, a_y, b, lb, ub, itv.lb[net.output], itv.ub[net.output])
    tight = crown_bounds(net, sym.lb, sym.ub)
    backward = [backward_rows_lower(net, tight.lb, tight.ub, a_x, a_y, b, rules=(rule,)) for rule in SLOPE_RULES]
    for box in range(2):
        x = rng.uniform(lb[box], ub[box], size=(1000, n))
        rows = x @ a_x.T + net.eval(x) @ a_y.T - b
        assert np.all(rows >= lower_sym[box])
        assert np.all(rows >= lower_itv[box])
        for lower, funcs in backward:
            assert np.all(rows >= lower[box])
            # the returned linear functions are themselves lower bounds at every sampled point
            assert np.all(rows >= x @ funcs[box, :, :-1].T + funcs[box, :, -1])


A = 1.0 + 2.0**-30  # A * A = 1 + 2^-29 + 2^-60 exactly, which float64 rounds to 1 + 2^-29


def margin_net() -> tuple[LayerGraph, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """y0 = A * (A * x), y1 = (1 + 2^-29) * x on x = 1: float64 rounds A * A down to 1 + 2^-29.

    The row ``y1 - y0 <= -2^-61`` holds in exact arithmetic (y0 - y1 = 2^-60), so the disjunct is feasible.
    """
    fc1 = AffineLayer("fc1", (0,), (np.array([[A], [1.0]]),), np.zeros(2))
    fc2 = AffineLayer("fc2", (1,), (np.array([[A, 0.0], [0.0, 1.0 + 2.0**-29]]),), np.zeros(2))
    net = LayerGraph((InputLayer(1), fc1, fc2), 2)
    lb = np.array([[1.0]])
    a_y = np.array([[-1.0, 1.0]])
    b = np.array([-(2.0**-61)])
    return net, lb, lb.copy(), np.zeros((1, 1)), a_y, b


def test_margin_example_is_feasible_in_exact_arithmetic() -> None:
    a = Fraction(A)
    y0 = a * a
    y1 = Fraction(1.0 + 2.0**-29)
    assert y1 - y0 <= Fraction(-(2.0**-61))


@pytest.mark.parametrize("method", ["interval", "symbolic", "backward"], ids=["interval", "symbolic", "backward"])
def test_without_margin_rounding_gives_a_wrong_proof(method: str) -> None:
    net, lb, ub, a_x, a_y, b = margin_net()
    zero = {"margin_rel": 0.0, "margin_abs": 0.0}
    if method == "interval":
        itv = interval_bounds(net, lb, ub, **zero)
        lower = rows_lower_bound(a_x, a_y, b, lb, ub, itv.lb[2], itv.ub[2], 0.0, 0.0)
    elif method == "backward":
        itv = interval_bounds(net, lb, ub, **zero)
        lower, _ = backward_rows_lower(net, itv.lb, itv.ub, a_x, a_y, b, **zero)
    else:
        lower, _ = rows_lower_bound_symbolic(symbolic_bounds(net, lb, ub, **zero), 2, a_x, a_y, b, lb, ub, 0.0, 0.0)
    assert lower[0, 0] > 0.0  # the unsound "proof" that the margin exists to prevent


@pytest.mark.parametrize("method", ["interval", "symbolic", "backward"], ids=["interval", "symbolic", "backward"])
def test_default_margin_keeps_the_disjunct_open(method: str) -> None:
    net, lb, ub, a_x, a_y, b = margin_net()
    if method == "interval":
        itv = interval_bounds(net, lb, ub)
        lower = rows_lower_bound(a_x, a_y, b, lb, ub, itv.lb[2], itv.ub[2])
    elif method == "backward":
        itv = interval_bounds(net, lb, ub)
        lower, _ = backward_rows_lower(net, itv.lb, itv.ub, a_x, a_y, b)
    else:
        lower, _ = rows_lower_bound_symbolic(symbolic_bounds(net, lb, ub), 2, a_x, a_y, b, lb, ub)
    assert lower[0, 0] <= 0.0
