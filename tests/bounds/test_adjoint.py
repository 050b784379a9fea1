"""Convolutions through their kernels (``bounds/adjoint.py``): the operator equals the dense matrix both ways,
bounds computed through it equal the dense ones and contain sampled outputs, and the margin is still needed."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from nnverify.bounds import adjoint
from nnverify.bounds.adjoint import ConvMap
from nnverify.bounds.backward import backward_rows_lower, crown_bounds
from nnverify.bounds.interval import interval_bounds
from nnverify.bounds.optimized import optimized_layer_bounds
from nnverify.graph.layers import AffineLayer, InputLayer, LayerGraph
from nnverify.graph.onnx_import import load_network
from nnverify.graph.ops import conv_kernels  # ConvMap lives in the op layer; adjoint re-exports it
from nnverify.graph.passes import to_layers

sys.path.insert(0, str(Path(__file__).parent.parent / "graph"))
from onnx_nets import build_model, small_cnn_layers

CONVS = {
    "plain": ((1, 2, 5, 5), (3, 2, 3, 3), {}),
    "stride-pad": ((1, 3, 8, 8), (4, 3, 4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "uneven": ((1, 2, 7, 6), (3, 2, 3, 2), {"strides": [2, 1], "pads": [1, 0, 0, 1], "dilations": [1, 2]}),
    "groups": ((1, 4, 6, 6), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    "same": ((1, 2, 5, 5), (2, 2, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "1d": ((1, 2, 9), (3, 2, 3), {"strides": [2], "pads": [1, 1]}),
    "3d": ((1, 1, 4, 4, 4), (2, 1, 2, 2, 2), {"pads": [1, 0, 1, 0, 1, 0]}),
}


def _conv_layers(tmp_path: Path, name: str) -> tuple[LayerGraph, AffineLayer]:
    shape, wshape, attrs = CONVS[name]
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["y"], **attrs)]
    inits = {"W": rng.uniform(-1, 1, wshape), "B": rng.uniform(-0.5, 0.5, wshape[0])}
    path = tmp_path / f"{name}.onnx"
    onnx.save(build_model(nodes, shape, inits), path)
    layers = to_layers(load_network(path), merge=False)
    conv = next(layer for layer in layers.layers if isinstance(layer, AffineLayer))
    return layers, conv


@pytest.mark.parametrize("name", list(CONVS))
def test_kernel_route_equals_the_dense_matrix(tmp_path: Path, name: str) -> None:
    """Forward, adjoint and their absolute versions equal ``x W^T``, ``lam W``, ``x |W|^T``, ``lam |W|``."""
    _, conv = _conv_layers(tmp_path, name)
    op = conv.maps[0]
    assert isinstance(op, ConvMap)
    w = conv.weights[0]
    rng = np.random.default_rng(2)
    x, lam = rng.normal(size=(3, 2, w.shape[1])), rng.normal(size=(3, 2, w.shape[0]))
    np.testing.assert_allclose(op.forward(x), x @ w.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(op.adjoint(lam), lam @ w, rtol=0, atol=1e-12)
    np.testing.assert_allclose(op.forward(x, absolute=True), x @ np.abs(w).T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(op.adjoint(lam, absolute=True), lam @ np.abs(w), rtol=0, atol=1e-12)


def test_chunked_rows_give_the_same_products(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, conv = _conv_layers(tmp_path, "stride-pad")
    op, w = conv.maps[0], conv.weights[0]
    assert op is not None
    monkeypatch.setattr(conv_kernels, "CHUNK_ELEMENTS", 1)  # one row per chunk
    lam = np.random.default_rng(3).normal(size=(5, w.shape[0]))
    np.testing.assert_allclose(op.adjoint(lam), lam @ w, rtol=0, atol=1e-12)


def test_a_map_that_disagrees_with_its_matrix_is_refused(tmp_path: Path) -> None:
    _, conv = _conv_layers(tmp_path, "plain")
    op = conv.maps[0]
    assert isinstance(op, ConvMap)
    assert adjoint.checked_map(op, conv.weights[0]) is op
    assert adjoint.checked_map(op, conv.weights[0] * 1.001) is None
    assert adjoint.checked_map(replace(op, strides=(1, 2)), conv.weights[0]) is None


def _cnn(tmp_path: Path) -> LayerGraph:
    return small_cnn_layers(tmp_path / "cnn.onnx")


def _dense(net: LayerGraph) -> LayerGraph:
    layers = tuple(
        AffineLayer(layer.name, layer.sources, layer.weights, layer.bias) if isinstance(layer, AffineLayer) else layer
        for layer in net.layers
    )
    return LayerGraph(layers, net.output)


def test_bounds_through_kernels_equal_the_dense_ones_and_contain_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conv_kernels, "PAYS_FACTOR", 0)  # the kernel route even on these small convs
    net = _cnn(tmp_path)
    assert sum(1 for layer in net.layers if isinstance(layer, AffineLayer) and layer.map_of(0) is not None) == 2
    rng = np.random.default_rng(5)
    centre = rng.uniform(-1, 1, net.n_inputs)
    lb, ub = centre - 0.15, centre + 0.15
    margins = {"margin_rel": 1e-9, "margin_abs": 1e-12}
    results = []
    for graph in (net, _dense(net)):
        itv = interval_bounds(graph, lb, ub, **margins)
        crown = crown_bounds(graph, itv.lb, itv.ub, **margins)
        alpha = optimized_layer_bounds(graph, crown, iterations=5, **margins)
        a_y = np.array([[-1.0, 1.0, 0.0], [0.0, 1.0, -1.0]])
        rows, _ = backward_rows_lower(graph, alpha.lb, alpha.ub, np.zeros((2, net.n_inputs)), a_y, np.zeros(2))
        results.append((crown, alpha, rows))
    (crown, alpha, rows), (crown_d, alpha_d, rows_d) = results
    mine, dense = crown.lb + crown.ub + alpha.lb + alpha.ub, crown_d.lb + crown_d.ub + alpha_d.lb + alpha_d.ub
    for a, b in zip(mine, dense, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rows, rows_d, rtol=1e-9, atol=1e-9)
    x = rng.uniform(lb, ub, size=(4000, net.n_inputs))
    x[:8] = np.where(rng.integers(0, 2, size=(8, net.n_inputs)) > 0, ub, lb)
    values = net.eval_all(x)
    for k, v in enumerate(values):
        assert np.all(v >= alpha.lb[k] - 1e-12) and np.all(v <= alpha.ub[k] + 1e-12)
    y = values[net.output]
    assert np.all(y @ np.array([[-1.0, 1.0, 0.0], [0.0, 1.0, -1.0]]).T >= rows - 1e-12)


A = 1.0 + 2.0**-30  # A * A rounds to 1 + 2^-29 in float64 (see tests/bounds/test_bounds.py)


def _margin_net() -> LayerGraph:
    """``test_bounds.margin_net`` with both layers as 1x1 convolutions applied through their kernels."""
    k1 = np.array([A, 1.0]).reshape(2, 1, 1, 1)
    k2 = np.array([[A, 0.0], [0.0, 1.0 + 2.0**-29]]).reshape(2, 2, 1, 1)
    one = ((0, 0), (0, 0))
    m1 = ConvMap(k1, 1, (1, 1), (1, 1), one, (1, 1, 1), (2, 1, 1))
    m2 = ConvMap(k2, 1, (1, 1), (1, 1), one, (2, 1, 1), (2, 1, 1))
    fc1 = AffineLayer("c1", (0,), (k1.reshape(2, 1),), np.zeros(2), (m1,))
    fc2 = AffineLayer("c2", (1,), (k2.reshape(2, 2),), np.zeros(2), (m2,))
    return LayerGraph((InputLayer(1), fc1, fc2), 2)


@pytest.mark.parametrize("margin", [0.0, 1e-9], ids=["removed", "default"])
def test_margin_is_still_needed_through_kernels(margin: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the margin the rounding of ``A * A`` gives an unsound proof of the feasible row
    ``y1 - y0 <= -2^-61``; with it the row stays open."""
    monkeypatch.setattr(conv_kernels, "PAYS_FACTOR", 0)
    net = _margin_net()
    assert all(layer.map_of(0) is not None for layer in net.layers[1:] if isinstance(layer, AffineLayer))
    lb = np.array([[1.0]])
    zero = {"margin_rel": margin, "margin_abs": 1e-12 if margin else 0.0}
    itv = interval_bounds(net, lb, lb, **zero)
    lower, _ = backward_rows_lower(
        net, itv.lb, itv.ub, np.zeros((1, 1)), np.array([[-1.0, 1.0]]), np.array([-(2.0**-61)]), **zero
    )
    assert (lower[0, 0] > 0.0) == (margin == 0.0)


def test_a_composed_layer_drops_the_map(tmp_path: Path) -> None:
    """Conv then Mul by a constant merges into one layer whose weights are no longer the kernel's: no map."""
    rng = np.random.default_rng(6)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "s"], ["y"]),
    ]
    inits = {"W": rng.uniform(-1, 1, (2, 1, 3, 3)), "s": np.array(3.0)}
    path = tmp_path / "scaled.onnx"
    onnx.save(build_model(nodes, (1, 1, 4, 4), inits), path)
    graph = load_network(path)
    merged = to_layers(graph, merge=True)
    affine = [layer for layer in merged.layers if isinstance(layer, AffineLayer)]
    assert len(affine) == 1 and all(m is None for m in affine[0].maps)
    x = rng.uniform(-1, 1, size=(5, 16))
    np.testing.assert_allclose(merged.eval(x), graph.eval(x), rtol=1e-6, atol=1e-6)
    unmerged = to_layers(graph, merge=False)
    assert any(isinstance(layer, AffineLayer) and layer.maps and layer.maps[0] is not None for layer in unmerged.layers)
