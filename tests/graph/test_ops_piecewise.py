"""Piecewise-linear ops (LeakyRelu, PRelu, Abs, Clip, Max, Min, MaxPool) and Softmax: eval equals onnxruntime,
and the exact lowering to affine + ReLU layers equals the graph, at random points and at ties."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_nets import SaveNet, check_net, run_ort

from nnverify.errors import UnsupportedOpsError
from nnverify.graph.layers import ActivationLayer, AffineLayer
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers

RNG = np.random.default_rng(7)


def node(op_type: str, inputs: list[str], output: str = "y", **attrs: Any) -> onnx.NodeProto:
    return helper.make_node(op_type, inputs, [output], **attrs)


def maxpool(**attrs: Any) -> tuple[list[onnx.NodeProto], tuple[int, ...], dict[str, np.ndarray], int]:
    return [node("MaxPool", ["x"], **attrs)], (1, 2, 7, 6), {}, 13


CASES: dict[str, tuple[list[onnx.NodeProto], tuple[int, ...], dict[str, np.ndarray], int]] = {
    "leaky-relu": ([node("LeakyRelu", ["x"], alpha=0.2)], (2, 5), {}, 13),
    "leaky-relu-default": ([node("LeakyRelu", ["x"])], (2, 5), {}, 13),
    "prelu-channel": ([node("PRelu", ["x", "s"])], (1, 3, 2, 2), {"s": RNG.uniform(-1, 1, (3, 1, 1))}, 13),
    "prelu-scalar": ([node("PRelu", ["x", "s"])], (2, 3), {"s": np.array([0.3])}, 13),
    "abs": ([node("Abs", ["x"])], (2, 5), {}, 13),
    "clip-inputs": ([node("Clip", ["x", "lo", "hi"])], (2, 5), {"lo": np.array(-0.3), "hi": np.array(0.4)}, 13),
    "clip-max-only": ([node("Clip", ["x", "", "hi"])], (2, 5), {"hi": np.array(0.4)}, 13),
    "clip-min-above-max": ([node("Clip", ["x", "lo", "hi"])], (2, 5), {"lo": np.array(0.5), "hi": np.array(0.4)}, 13),
    "clip-attrs-opset6": ([node("Clip", ["x"], min=-0.2, max=0.5)], (2, 5), {}, 6),
    "clip-no-limits-opset6": ([node("Clip", ["x"])], (2, 5), {}, 6),
    "max-variadic-const": (
        [node("Max", ["x", "c", "x", "d"])],
        (2, 5),
        {"c": RNG.uniform(-1, 1, 5), "d": np.array(0.1)},
        13,
    ),
    "min-broadcast": ([node("Min", ["x", "c"])], (2, 5), {"c": RNG.uniform(-1, 1, (3, 1, 1))}, 13),
    "max-two-variables": (
        [node("Relu", ["x"], "r"), node("Neg", ["x"], "n"), node("Max", ["n", "r", "x"])],
        (7,),
        {},
        13,
    ),
    "min-of-branches": (
        [node("MatMul", ["x", "W"], "h"), node("Min", ["h", "x"])],
        (1, 4),
        {"W": RNG.uniform(-1, 1, (4, 4))},
        13,
    ),
    "maxpool-2x2": maxpool(kernel_shape=[2, 2]),
    "maxpool-strides-pads-ceil": maxpool(kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 1, 1], ceil_mode=1),
    "maxpool-ceil-drops-last": maxpool(kernel_shape=[3, 3], strides=[3, 3], pads=[2, 2, 2, 2], ceil_mode=1),
    "maxpool-dilations": maxpool(kernel_shape=[2, 2], dilations=[2, 2]),
    "maxpool-same-upper": maxpool(kernel_shape=[3, 3], auto_pad="SAME_UPPER", strides=[2, 2]),
    "maxpool-1d": ([node("MaxPool", ["x"], kernel_shape=[3], strides=[2], ceil_mode=1)], (1, 2, 8), {}, 13),
    "softmax": ([node("Softmax", ["x"])], (1, 7), {}, 13),
    "softmax-opset11-axis1": ([node("Softmax", ["x"], axis=1)], (2, 7), {}, 11),
}
#: Ops whose lowering is checked (Softmax has none).
LOWERED = [name for name in CASES if not name.startswith("softmax")]


@pytest.mark.parametrize("name", CASES)
def test_eval_matches_onnxruntime_and_layers_match_eval(name: str, save_net: SaveNet) -> None:
    nodes, shape, inits, opset = CASES[name]
    path = save_net(nodes, shape, inits, opset)
    if name.startswith("softmax"):  # no layer view: eval against onnxruntime only
        graph = load_network(path)
        x = RNG.uniform(-3, 3, (10, graph.n_inputs)).astype(np.float32).astype(np.float64)
        np.testing.assert_allclose(graph.eval(x), run_ort(path, x, graph.input_shape), rtol=1e-5, atol=1e-7)
        return
    check_net(path)


@pytest.mark.parametrize("name", LOWERED)
@pytest.mark.parametrize("merge", [True, False], ids=["merged", "exact"])
def test_lowering_equals_eval_at_ties(name: str, merge: bool, save_net: SaveNet) -> None:
    nodes, shape, inits, opset = CASES[name]
    graph = load_network(save_net(nodes, shape, inits, opset))
    layers = to_layers(graph, merge=merge)
    assert all(isinstance(layer, AffineLayer | ActivationLayer) for layer in layers.layers[1:])
    grid = RNG.integers(-2, 3, (200, graph.n_inputs)) / 4.0  # many equal inputs: ties of max/min, points at kinks
    np.testing.assert_allclose(layers.eval(grid), graph.eval(grid), rtol=0, atol=1e-12)
    wide = RNG.uniform(-5, 5, (50, graph.n_inputs))
    np.testing.assert_allclose(layers.eval(wide), graph.eval(wide), rtol=1e-12, atol=1e-12)


def test_maxpool_indices_output_is_refused(save_net: SaveNet) -> None:
    nodes = [helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2])]
    with pytest.raises(UnsupportedOpsError, match="Indices output"):
        load_network(save_net(nodes, (1, 1, 4, 4)))


def test_maxpool_storage_order_is_refused(save_net: SaveNet) -> None:
    with pytest.raises(UnsupportedOpsError, match="storage_order"):
        load_network(save_net([node("MaxPool", ["x"], kernel_shape=[2, 2], storage_order=1)], (1, 1, 4, 4)))


def test_leaky_relu_with_rounding_one_minus_slope_uses_two_relus(save_net: SaveNet, tmp_path: Path) -> None:
    slope = np.float32(1e-30)  # 1 - 1e-30 rounds in float64: relu(x) - a relu(-x) instead
    graph = load_network(save_net([node("LeakyRelu", ["x"], alpha=float(slope))], (3,)))
    layers = to_layers(graph, merge=False)
    assert sum(isinstance(layer, ActivationLayer) for layer in layers.layers) == 2
    x = RNG.uniform(-1, 1, (20, 3))
    np.testing.assert_array_equal(layers.eval(x), graph.eval(x))


@pytest.mark.parametrize("opset", [11, 13])
def test_softmax_over_several_axes_follows_the_opset(save_net: SaveNet, opset: int) -> None:
    """Opset 11 normalises the coerced 2-D (axes 1 and 2 here), 13 axis 1 alone: as onnxruntime (the relaxed
    lowering of ``graph/lowering_smooth.py`` then equals eval too)."""
    check_net(save_net([node("Softmax", ["x"], axis=1)], (1, 3, 4), {}, opset), low=-3.0, high=3.0)
