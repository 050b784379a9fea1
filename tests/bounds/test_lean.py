"""The ReLU-chain back-substitution (``bounds/lean.py``): sound on samples, as tight as ``backward.py`` up to
the margin, and wrong without the margin."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from netgen import random_net

from nnverify.bounds import lean
from nnverify.bounds.backward import SLOPE_RULES, LayerBounds, backward_rows_lower, crown_bounds
from nnverify.bounds.interval import interval_bounds
from nnverify.bounds.lean import bound_chain, crown_chain, is_relu_chain, rows_lower_chain
from nnverify.bounds.symbolic import symbolic_bounds
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops import conv_kernels
from nnverify.graph.ops.base import ActKind

sys.path.insert(0, str(Path(__file__).parent.parent / "graph"))
from onnx_nets import small_cnn_layers

CHAINS = {"relu-3": [3, 8, 8, 2], "relu-deep": [5, 12, 12, 12, 12, 5], "acas-like": [5, 20, 20, 20, 20, 20, 5]}


def _boxes(rng: np.random.Generator, n: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    centre = rng.normal(size=(count, n))
    radius = rng.uniform(0.01, 1.0, size=(count, n))
    return centre - radius, centre + radius


def test_only_dense_relu_chains_qualify() -> None:
    rng = np.random.default_rng(0)
    assert is_relu_chain(random_net(rng, [3, 8, 8, 2]))
    assert not is_relu_chain(random_net(rng, [4, 6, 6, 3], residual=True))
    assert not is_relu_chain(random_net(rng, [3, 6, 6, 6, 2], sign=True))


@pytest.mark.parametrize("name", list(CHAINS), ids=list(CHAINS))
def test_layer_bounds_contain_sampled_values(name: str) -> None:
    rng = np.random.default_rng(5)
    for _ in range(4):
        net = random_net(rng, CHAINS[name])
        lb, ub = _boxes(rng, net.n_inputs, 6)
        sym = symbolic_bounds(net, lb, ub)
        tight = crown_chain(net, sym.lb, sym.ub)
        for box in range(6):
            x = rng.uniform(lb[box], ub[box], size=(1000, net.n_inputs))
            x[:8] = np.where(rng.integers(0, 2, size=(8, net.n_inputs)).astype(bool), lb[box], ub[box])
            for k, v in enumerate(net.eval_all(x)):
                assert np.all(v >= tight.lb[k][box]) and np.all(v <= tight.ub[k][box]), (box, k)


@pytest.mark.parametrize("name", list(CHAINS), ids=list(CHAINS))
def test_as_tight_as_backward_up_to_the_margin(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each box back-substitutes only its own unstable neurons; without the interval step the bounds of those
    match ``crown_bounds``' (which takes the batch's union) up to the margin, and the rows match
    ``backward_rows_lower`` with every rule (and are no looser with the primal rule)."""
    monkeypatch.setattr(lean, "PRIMAL_RULE", 0)
    rng = np.random.default_rng(9)
    net = random_net(rng, CHAINS[name])
    lb, ub = _boxes(rng, net.n_inputs, 16)
    sym = symbolic_bounds(net, lb, ub)
    ref, new = crown_bounds(net, sym.lb, sym.ub), crown_chain(net, sym.lb, sym.ub, interval=False)
    for k in range(len(net.layers)):
        unstable = (ref.lb[k] < 0.0) & (ref.ub[k] > 0.0)
        np.testing.assert_allclose(new.lb[k][unstable], ref.lb[k][unstable], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(new.ub[k][unstable], ref.ub[k][unstable], rtol=1e-6, atol=1e-6)
    a_x, a_y, b = rng.normal(size=(4, net.n_inputs)), rng.normal(size=(4, net.n_outputs)), rng.normal(size=4)
    want, _ = backward_rows_lower(net, ref.lb, ref.ub, a_x, a_y, b, rules=SLOPE_RULES)
    got, funcs = rows_lower_chain(net, ref.lb, ref.ub, a_x, a_y, b, rules=SLOPE_RULES)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    monkeypatch.setattr(lean, "PRIMAL_RULE", 1)
    primal, _ = rows_lower_chain(net, ref.lb, ref.ub, a_x, a_y, b, rules=SLOPE_RULES)
    assert np.all(primal >= got) and np.any(primal > got + 1e-9)
    for box in range(16):
        x = rng.uniform(lb[box], ub[box], size=(1000, net.n_inputs))
        rows = x @ a_x.T + net.eval(x) @ a_y.T - b
        assert np.all(rows >= got[box])
        assert np.all(rows >= x @ funcs[box, :, :-1].T + funcs[box, :, -1])


A = 1.0 + 2.0**-30  # A * A = 1 + 2^-29 + 2^-60 exactly, which float64 rounds to 1 + 2^-29
C = 1.0 + 2.0**-29


def _margin_chain(*, tail: bool) -> LayerGraph:
    """x = 1 -> (x, x) -> (A x, C x) -> (A * A x, C x) -> z = C x - A * A x (ReLUs between, all active), then
    with ``tail`` ReLU -> identity (so that ``z`` is an intermediate layer that ``crown_chain`` tightens).

    ``z = -2^-60`` in exact arithmetic; float64 rounds the product ``A * A`` on the way back to ``C``, so the
    coefficient of ``x`` in ``z`` comes out 0 (each product has one nonzero term: no fused multiply-add helps)."""
    fc1 = AffineLayer("fc1", (0,), (np.ones((2, 1)),), np.zeros(2))
    fc2 = AffineLayer("fc2", (2,), (np.diag([A, C]),), np.zeros(2))
    fc3 = AffineLayer("fc3", (4,), (np.diag([A, 1.0]),), np.zeros(2))
    fc4 = AffineLayer("fc4", (6,), (np.array([[-1.0, 1.0]]),), np.zeros(1))
    acts = [ActivationLayer(f"r{j}", j - 1, ActKind.RELU, 2) for j in (2, 4, 6)]
    if not tail:
        return LayerGraph((InputLayer(1), fc1, acts[0], fc2, acts[1], fc3, acts[2], fc4), 7)
    out = AffineLayer("out", (8,), (np.eye(1),), np.zeros(1))
    relu = ActivationLayer("r8", 7, ActKind.RELU, 1)
    return LayerGraph((InputLayer(1), fc1, acts[0], fc2, acts[1], fc3, acts[2], fc4, relu, out), 9)


@pytest.mark.parametrize("margin", [False, True], ids=["no-margin", "margin"])
def test_the_margin_is_what_keeps_the_layer_bound_sound(margin: bool) -> None:
    net = _margin_chain(tail=True)
    assert is_relu_chain(net)
    x = np.array([[1.0]])
    kw = {} if margin else {"margin_rel": 0.0, "margin_abs": 0.0}
    itv = interval_bounds(net, x, x, **kw)
    lbs, ubs = list(itv.lb), list(itv.ub)
    lbs[7], ubs[7] = np.array([[-1.0]]), np.array([[1.0]])  # loose but sound: layer 7 is tightened
    tight = crown_chain(net, lbs, ubs, **kw)
    if margin:
        assert tight.lb[7][0, 0] <= -(2.0**-60)
    else:
        assert tight.lb[7][0, 0] > -(2.0**-60)  # the unsound bound the margin exists to prevent


@pytest.mark.parametrize("margin", [False, True], ids=["no-margin", "margin"])
def test_the_margin_is_what_keeps_the_rows_sound(margin: bool) -> None:
    """A proof that ``z + 2^-61 > 0`` would be wrong: z = -2^-60."""
    net = _margin_chain(tail=False)
    assert is_relu_chain(net)
    x = np.array([[1.0]])
    kw = {} if margin else {"margin_rel": 0.0, "margin_abs": 0.0}
    itv = interval_bounds(net, x, x, **kw)
    a_y, b = np.array([[1.0]]), np.array([-(2.0**-61)])
    lower, _ = rows_lower_chain(net, itv.lb, itv.ub, np.zeros((1, 1)), a_y, b, rules=SLOPE_RULES, **kw)
    if margin:
        assert lower[0, 0] <= 0.0
    else:
        assert lower[0, 0] > 0.0


@pytest.mark.parametrize("name", list(CHAINS), ids=list(CHAINS))
def test_every_rule_function_is_below_the_row_on_samples(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bound_chain(every_rule=True)``: the best rule's function first, then one per slope rule (and the primal
    rule's), each below the row at sampled points of its box (input-box shrinking uses them all)."""
    monkeypatch.setattr(lean, "PRIMAL_RULE", 1)
    rng = np.random.default_rng(13)
    net = random_net(rng, CHAINS[name])
    lb, ub = _boxes(rng, net.n_inputs, 8)
    sym = symbolic_bounds(net, lb, ub)
    a_x, a_y, b = rng.normal(size=(3, net.n_inputs)), rng.normal(size=(3, net.n_outputs)), rng.normal(size=3)
    _, lower, funcs = bound_chain(net, sym.lb, sym.ub, a_x, a_y, b, rules=SLOPE_RULES, every_rule=True)
    assert funcs.shape == (8, 3, 1 + len(SLOPE_RULES) + lean.PRIMAL_RULE, net.n_inputs + 1)
    _, best = rows_lower_chain(net, *_tightened(net, sym), a_x, a_y, b, rules=SLOPE_RULES)
    np.testing.assert_array_equal(funcs[:, :, 0], best)
    for box in range(8):
        x = rng.uniform(lb[box], ub[box], size=(1000, net.n_inputs))
        rows = x @ a_x.T + net.eval(x) @ a_y.T - b
        assert np.all(rows >= lower[box])
        values = np.einsum("sn,kmn->skm", x, funcs[box, :, :, :-1]) + funcs[box, :, :, -1]
        assert np.all(rows[:, :, None] >= values)


def _tightened(net: LayerGraph, sym: LayerBounds) -> tuple[list[np.ndarray], list[np.ndarray]]:
    tight = crown_chain(net, sym.lb, sym.ub)
    return tight.lb, tight.ub


@pytest.mark.parametrize("margin", [False, True], ids=["no-margin", "margin"])
def test_the_margin_is_what_keeps_every_rule_function_sound(margin: bool) -> None:
    """At x = 1 the row ``z + 2^-61`` is ``-2^-61``: no rule's function may exceed it there."""
    net = _margin_chain(tail=False)
    x = np.array([[1.0]])
    kw = {} if margin else {"margin_rel": 0.0, "margin_abs": 0.0}
    itv = interval_bounds(net, x, x, **kw)
    a_y, b = np.array([[1.0]]), np.array([-(2.0**-61)])
    _, _, funcs = bound_chain(net, itv.lb, itv.ub, np.zeros((1, 1)), a_y, b, rules=SLOPE_RULES, every_rule=True, **kw)
    at_one = funcs[0, 0, :, 0] + funcs[0, 0, :, 1]
    if margin:
        assert np.all(at_one <= -(2.0**-61))
    else:
        assert np.any(at_one > -(2.0**-61))


def _small_cnn(tmp_path: Path) -> LayerGraph:
    return small_cnn_layers(tmp_path / "cnn.onnx")


def test_a_small_cnn_with_kernel_maps_is_a_chain_whose_bounds_contain_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Conv layer keeps its kernel map for the other passes; ``lean`` uses its dense matrix while it is small."""
    monkeypatch.setattr(conv_kernels, "PAYS_FACTOR", 0)  # every conv carries a map that pays
    net = _small_cnn(tmp_path)
    assert sum(1 for layer in net.layers if isinstance(layer, AffineLayer) and layer.map_of(0) is not None) == 2
    assert is_relu_chain(net)
    rng = np.random.default_rng(6)
    lb, ub = _boxes(rng, net.n_inputs, 4)
    lb, ub = (lb + ub) / 2 - 0.1, (lb + ub) / 2 + 0.1
    sym = symbolic_bounds(net, lb, ub)
    tight = crown_chain(net, sym.lb, sym.ub)
    for box in range(4):
        x = rng.uniform(lb[box], ub[box], size=(1000, net.n_inputs))
        for k, v in enumerate(net.eval_all(x)):
            assert np.all(v >= tight.lb[k][box]) and np.all(v <= tight.ub[k][box]), (box, k)
    monkeypatch.setattr(lean, "DENSE_WITH_MAP_MAX", 10)
    assert not is_relu_chain(net)
