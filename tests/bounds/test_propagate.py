"""Constraint propagation on a domain's bounds (``bounds/propagate.py``): sound on the points the domain
holds, never looser, finds domains whose splits contradict each other, and keeps its floating-point margin."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from netgen import random_net

from nnverify.bounds.backward import LayerBounds, crown_bounds
from nnverify.bounds.interval import affine_interval, interval_bounds
from nnverify.bounds.propagate import _affine_interval, _row_products, propagate
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind


def _domain(seed: int) -> tuple[np.random.Generator, LayerGraph, LayerBounds, np.ndarray]:
    """A random net, CROWN bounds on a box, then "splits": three of the last hidden layer's unstable neurons
    clamped at 0, as the ReLU search does; the sampled points of the box the domain holds."""
    rng = np.random.default_rng(seed)
    net = random_net(rng, [5, 16, 16, 16, 3])
    lb, ub = -np.ones(5), np.ones(5)
    ib = interval_bounds(net, lb, ub)
    b = crown_bounds(net, ib.lb, ib.ub)
    lbs, ubs = [np.array(v) for v in b.lb], [np.array(v) for v in b.ub]
    pre = [k for k, layer in enumerate(net.layers) if isinstance(layer, ActivationLayer)]
    last = net.layers[pre[-1]].source  # type: ignore[union-attr]
    unstable = np.nonzero((lbs[last][0] < 0) & (ubs[last][0] > 0))[0][:3]
    x = rng.uniform(-1.0, 1.0, size=(20000, 5))
    z0 = net.eval_all(x[:1])[last][0]  # split on the side of the first point: the domain is not empty
    for j in unstable:
        if z0[j] >= 0.0:
            lbs[last][0, j] = 0.0
        else:
            ubs[last][0, j] = 0.0
    for k, layer in enumerate(net.layers):
        if isinstance(layer, ActivationLayer):
            lbs[k], ubs[k] = np.maximum(lbs[layer.source], 0.0), np.maximum(ubs[layer.source], 0.0)
    values = net.eval_all(x)
    held = [np.all((v >= lo) & (v <= hi), axis=1) for v, lo, hi in zip(values, lbs, ubs, strict=True)]
    inside = np.all(held, axis=0)
    return rng, net, LayerBounds(lbs, ubs), x[inside]


@pytest.mark.parametrize("seed", range(8))
def test_propagated_bounds_hold_on_the_domain_and_are_never_looser(seed: int) -> None:
    _, net, bounds, x = _domain(seed)
    tight, empty = propagate(net, bounds)
    assert x.shape[0] > 0 and not empty[0]
    for k, v in enumerate(net.eval_all(x)):
        assert np.all(v >= tight.lb[k][0]) and np.all(v <= tight.ub[k][0]), f"layer {k}"
        assert np.all(tight.lb[k] >= bounds.lb[k]) and np.all(tight.ub[k] <= bounds.ub[k])


def test_a_split_tightens_the_layer_before_it_somewhere() -> None:
    gained = 0.0
    for seed in range(8):
        _, net, bounds, _ = _domain(seed)
        tight, _ = propagate(net, bounds)
        gained += sum(float(np.sum(tight.lb[k] - bounds.lb[k])) for k in range(1, len(net.layers) - 2))
    assert gained > 0.0


def _two_layer(u_first: float) -> tuple[LayerGraph, LayerBounds]:
    """``z2 = relu(x1) + relu(x2) - 1.5`` on ``x`` in [-1, 1]^2, split ``z2 >= 0``: then both ReLUs are at
    least 0.5, which contradicts ``x1 <= u_first`` when ``u_first < 0.5``."""
    net = LayerGraph(
        (
            InputLayer(2),
            AffineLayer("fc1", (0,), (np.eye(2),), np.zeros(2)),
            ActivationLayer("relu", 1, ActKind.RELU, 2),
            AffineLayer("fc2", (2,), (np.array([[1.0, 1.0]]),), np.array([-1.5])),
        ),
        3,
    )
    lbs = [np.full((1, 2), -1.0), np.array([[-1.0, -1.0]]), np.zeros((1, 2)), np.array([[0.0]])]
    ubs = [np.ones((1, 2)), np.array([[u_first, 1.0]]), np.array([[u_first, 1.0]]), np.array([[0.5]])]
    return net, LayerBounds(lbs, ubs)


def test_contradicting_splits_are_found_empty() -> None:
    net, bounds = _two_layer(0.3)
    _, empty = propagate(net, bounds)
    assert empty[0]
    net, bounds = _two_layer(0.6)
    tight, empty = propagate(net, bounds)
    assert not empty[0]
    assert tight.lb[1][0, 0] > 0.4 and tight.lb[1][0, 1] > 0.4


def test_derived_bounds_keep_their_margin() -> None:
    """Exact arithmetic gives ``relu(x1) >= 0.5``; the derived bound must sit below what the same sweep gives
    without margins, by about the margin (``1e-9`` of the row's magnitude, 3.6 here) and no more."""
    net, bounds = _two_layer(0.6)
    tight, _ = propagate(net, bounds)
    bare, _ = propagate(net, bounds, margin_rel=0.0, margin_abs=0.0)
    assert abs(bare.lb[1][0, 0] - 0.5) < 1e-12
    assert bare.lb[1][0, 0] - 1e-6 < tight.lb[1][0, 0] < bare.lb[1][0, 0] - 1e-9


def test_conv_rows_through_kernels_equal_the_dense_products_and_stay_sound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Conv layer's rows go through its kernel (``max(k, 0)``, ``min(k, 0)``, ``|k|``, ``k^2``): the same
    bounds as the dense matrix's to rounding, and every sampled point the domain holds stays inside them."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "graph"))
    from onnx_nets import small_cnn_layers

    from nnverify.graph.ops import conv_kernels

    monkeypatch.setattr(conv_kernels, "PAYS_FACTOR", 0)  # the kernel route even on these small convs
    net = small_cnn_layers(tmp_path / "cnn.onnx")
    convs = [k for k, layer in enumerate(net.layers) if isinstance(layer, AffineLayer) and layer.map_of(0)]
    assert len(convs) == 2
    dense = LayerGraph(
        tuple(
            AffineLayer(la.name, la.sources, la.weights, la.bias) if isinstance(la, AffineLayer) else la
            for la in net.layers
        ),
        net.output,
    )
    rng = np.random.default_rng(7)
    lb, ub = rng.uniform(-1, 0, net.n_inputs), rng.uniform(0, 1, net.n_inputs)
    b = crown_bounds(net, *(interval_bounds(net, lb, ub).lb, interval_bounds(net, lb, ub).ub))
    lbs, ubs = [np.array(v) for v in b.lb], [np.array(v) for v in b.ub]
    x = rng.uniform(lb, ub, size=(20000, net.n_inputs))
    values = net.eval_all(x)
    k = convs[1]  # split the second Conv's unstable neurons the way the first point goes
    unstable = np.nonzero((lbs[k][0] < 0) & (ubs[k][0] > 0))[0][:6]
    for j in unstable:
        if values[k][0, j] >= 0.0:
            lbs[k][0, j] = 0.0
        else:
            ubs[k][0, j] = 0.0
    for i, layer in enumerate(net.layers):
        if isinstance(layer, ActivationLayer):
            lbs[i], ubs[i] = np.maximum(lbs[layer.source], 0.0), np.maximum(ubs[layer.source], 0.0)
    bounds = LayerBounds(lbs, ubs)
    for c in convs:  # the four products over all rows, kernel route against the dense matrix
        s = net.layers[c].sources[0]  # type: ignore[union-attr]
        got = _row_products(net.layers[c].weights[0], net.layers[c].map_of(0), lbs[s], ubs[s])  # type: ignore[union-attr]
        want = _row_products(net.layers[c].weights[0], None, lbs[s], ubs[s])  # type: ignore[union-attr]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
        got = _affine_interval([lbs[s]], [ubs[s]], net.layers[c], 1e-9, 1e-12)  # type: ignore[arg-type]
        want = affine_interval([lbs[s]], [ubs[s]], dense.layers[c], 1e-9, 1e-12)  # type: ignore[arg-type]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    tight, empty = propagate(net, bounds)
    ref, empty_ref = propagate(dense, bounds)
    assert not empty[0] and not empty_ref[0]
    moved = 0
    for a, r, old in zip(tight.lb + tight.ub, ref.lb + ref.ub, lbs + ubs, strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)
        moved += int(np.sum(np.abs(a - old) > 1e-9))
    assert moved > 0  # the sweep tightened something: the comparison covers derived bounds
    held = np.all([np.all((v >= lo) & (v <= hi), axis=1) for v, lo, hi in zip(values, lbs, ubs, strict=True)], 0)
    assert held.sum() > 10
    for v, lo, hi in zip(values, tight.lb, tight.ub, strict=True):
        assert np.all(v[held] >= lo[0] - 1e-12) and np.all(v[held] <= hi[0] + 1e-12)
