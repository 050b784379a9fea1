"""ConvTranspose: eval equals onnxruntime for strides, pads, output_padding, output_shape, groups, dilations."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from onnx import helper
from onnx_nets import SaveNet, check_net

from nnverify.errors import UnsupportedOpsError
from nnverify.graph.onnx_import import load_network

RNG = np.random.default_rng(5)


def case(shape: tuple[int, ...], w_shape: tuple[int, ...], bias: bool = True, opset: int = 13, **attrs: Any) -> tuple:
    """A ConvTranspose of the input with random weights (and bias): (nodes, shape, initializers, opset)."""
    inits = {"W": RNG.uniform(-1, 1, w_shape)}
    if bias:
        groups = attrs.get("group", 1)
        inits["B"] = RNG.uniform(-1, 1, w_shape[1] * groups)
    node = helper.make_node("ConvTranspose", ["x", "W", *(["B"] if bias else [])], ["y"], **attrs)
    return [node], shape, inits, opset


CASES = {
    "plain": case((1, 2, 3, 3), (2, 3, 3, 3)),
    "cgan-stride2-pads1": case((1, 4, 4, 4), (4, 2, 4, 4), strides=[2, 2], pads=[1, 1, 1, 1], opset=9),
    "output-padding": case((1, 2, 3, 4), (2, 1, 3, 3), strides=[2, 3], pads=[1, 0, 0, 1], output_padding=[1, 2]),
    "output-shape": case((1, 2, 3, 3), (2, 2, 3, 3), bias=False, strides=[2, 2], output_shape=[6, 7]),
    "group-dilation": case((1, 4, 3, 3), (4, 1, 2, 2), group=2, dilations=[2, 1]),
    "same-upper": case((1, 1, 3, 3), (1, 2, 3, 3), strides=[2, 2], auto_pad="SAME_UPPER"),
    "same-lower": case((1, 1, 3, 2), (1, 2, 2, 3), strides=[2, 2], auto_pad="SAME_LOWER"),
    "output-shape-larger-than-full": case((1, 1, 3, 3), (1, 2, 2, 2), strides=[2, 2], output_shape=[7, 6]),
    "same-upper-stride-above-kernel": case((1, 1, 3, 4), (1, 2, 2, 2), strides=[3, 3], auto_pad="SAME_UPPER"),
    "1d-valid": case((1, 3, 5), (3, 2, 3), strides=[2], auto_pad="VALID", opset=11),
    "batch-2": case((2, 2, 2, 2), (2, 3, 2, 2), strides=[2, 2]),
}


@pytest.mark.parametrize(("nodes", "shape", "inits", "opset"), CASES.values(), ids=CASES.keys())
def test_conv_transpose_matches_onnxruntime(
    save_net: SaveNet, nodes: list, shape: tuple, inits: dict, opset: int
) -> None:
    check_net(save_net(nodes, shape, inits, opset))


def test_conv_transpose_is_the_adjoint_of_conv(save_net: SaveNet) -> None:
    w = RNG.uniform(-1, 1, (3, 2, 3, 3))
    attrs = {"strides": [2, 2], "pads": [1, 1, 1, 1]}
    _, conv = check_net(save_net([helper.make_node("Conv", ["x", "W"], ["y"], **attrs)], (1, 2, 5, 5), {"W": w}))
    nodes = [helper.make_node("ConvTranspose", ["x", "W"], ["y"], **attrs)]
    _, transposed = check_net(save_net(nodes, (1, 3, 3, 3), {"W": w}, name="t.onnx"))
    np.testing.assert_allclose(transposed.layers[1].weights[0], conv.layers[1].weights[0].T, atol=1e-12)


def test_bad_auto_pad_and_variable_weights_are_reported(save_net: SaveNet) -> None:
    nodes = [
        helper.make_node("ConvTranspose", ["x", "W"], ["h"], name="ct", auto_pad="FULL"),
        helper.make_node("ConvTranspose", ["h", "h"], ["y"], name="vw"),
    ]
    path = save_net(nodes, (1, 1, 2, 2), {"W": RNG.uniform(-1, 1, (1, 1, 2, 2))})
    with pytest.raises(UnsupportedOpsError) as info:
        load_network(path)
    assert str(info.value).splitlines()[1:] == [
        "  ConvTranspose  2 nodes, first 'ct': auto_pad 'FULL' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"
    ]


def sweep(kernel: int, size: int) -> list[dict[str, Any]]:
    """Attribute settings onnxruntime accepts: output_shape one below the full output, and one above it where the
    stride leaves room (onnxruntime then adds zeros at the end)."""
    settings = []
    for s, d, p in itertools.product([1, 2, 3], [1, 2], [0, 1]):
        if p >= s:
            continue
        full = s * (size - 1) + p + d * (kernel - 1) + 1
        shapes = [[full - 1]] + ([[full + 1]] if s > 1 and p == 0 else [])
        base = {"strides": [s], "dilations": [d], "output_padding": [p], "kernel_shape": [kernel]}
        settings += [{**base, "pads": [1, 0]}, {**base, "auto_pad": "SAME_UPPER"}, {**base, "auto_pad": "VALID"}]
        settings += [{**base, "output_shape": shape} for shape in shapes]
        settings += [{**base, "auto_pad": "SAME_LOWER", "output_shape": shape} for shape in shapes]
    return settings


@pytest.mark.parametrize("kernel", [2, 3])
def test_conv_transpose_sweep_matches_onnxruntime(save_net: SaveNet, kernel: int) -> None:
    """Strides, dilations, output_padding, pads and output_shape (smaller and larger than the full output)."""
    settings = sweep(kernel, 4)
    nodes, inits = [], {}
    for j, attrs in enumerate(settings):
        inits[f"W{j}"] = RNG.uniform(-1, 1, (1, 2, kernel))
        nodes.append(helper.make_node("ConvTranspose", ["x", f"W{j}"], [f"c{j}"], **attrs))
        nodes.append(helper.make_node("Flatten", [f"c{j}"], [f"f{j}"], axis=0))
    nodes.append(helper.make_node("Concat", [f"f{j}" for j in range(len(settings))], ["y"], axis=1))
    check_net(save_net(nodes, (1, 1, 4), inits), n_points=3)
