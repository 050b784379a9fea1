"""AveragePool and GlobalAveragePool: eval equals onnxruntime (pads, strides, ceil_mode, count_include_pad)."""

from __future__ import annotations

import itertools
from typing import Any

import onnx
import pytest
from onnx import helper
from onnx_nets import SaveNet, check_net

from nnverify.errors import UnsupportedOpsError
from nnverify.graph.onnx_import import load_network


def pool(shape: tuple[int, ...], opset: int = 13, **attrs: Any) -> tuple[list[onnx.NodeProto], tuple[int, ...], int]:
    """One AveragePool node: (nodes, input shape, opset)."""
    return [helper.make_node("AveragePool", ["x"], ["y"], **attrs)], shape, opset


CASES = {
    "plain": pool((1, 2, 4, 4), kernel_shape=[2, 2], strides=[2, 2]),
    "pads-excluded": pool((1, 1, 5, 5), kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    "pads-included": pool((1, 1, 5, 4), kernel_shape=[3, 2], pads=[1, 0, 2, 1], count_include_pad=1),
    "ceil-mode": pool((1, 1, 6, 6), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    "ceil-mode-pads-included": pool(
        (1, 2, 6, 5), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1
    ),
    "same-upper": pool((1, 1, 5, 5), kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    "same-lower": pool((1, 1, 4, 5), kernel_shape=[3, 2], auto_pad="SAME_LOWER"),
    "1d-opset7": pool((1, 3, 7), kernel_shape=[3], strides=[2], opset=7),
    "dilations-opset19": pool((1, 1, 7, 7), kernel_shape=[2, 2], dilations=[2, 3], opset=19),
    "global": ([helper.make_node("GlobalAveragePool", ["x"], ["y"])], (2, 3, 4, 5), 13),
    "global-1d": ([helper.make_node("GlobalAveragePool", ["x"], ["y"])], (1, 3, 4), 13),
}


@pytest.mark.parametrize(("nodes", "shape", "opset"), CASES.values(), ids=CASES.keys())
def test_pool_matches_onnxruntime(save_net: SaveNet, nodes: list, shape: tuple, opset: int) -> None:
    check_net(save_net(nodes, shape, {}, opset))


def test_bad_pool_attributes_are_reported(save_net: SaveNet) -> None:
    nodes = [
        helper.make_node("AveragePool", ["x"], ["h"], name="p1", kernel_shape=[2, 2], auto_pad="FULL"),
        helper.make_node("AveragePool", ["h"], ["y"], name="p2"),
    ]
    with pytest.raises(UnsupportedOpsError) as info:
        load_network(save_net(nodes, (1, 1, 4, 4)))
    assert "AveragePool  2 nodes, first 'p1': auto_pad 'FULL' is not one of NOTSET" in str(info.value)


def test_average_pool_sweep_matches_onnxruntime(save_net: SaveNet) -> None:
    """ceil_mode with and without counted pads, strides up to the kernel and beyond, every auto_pad."""
    settings = [
        {"kernel_shape": [k], "strides": [s], "ceil_mode": c, "count_include_pad": i, **pads}
        for k, s, c, i in itertools.product([2, 3], [1, 2, 3], [0, 1], [0, 1])
        for pads in ({"pads": [1, 1]}, {"pads": [0, 1]}, {"auto_pad": "SAME_UPPER"}, {"auto_pad": "SAME_LOWER"})
    ]
    nodes = []
    for j, attrs in enumerate(settings):
        nodes.append(helper.make_node("AveragePool", ["x"], [f"p{j}"], **attrs))
        nodes.append(helper.make_node("Flatten", [f"p{j}"], [f"f{j}"], axis=0))
    nodes.append(helper.make_node("Concat", [f"f{j}" for j in range(len(settings))], ["y"], axis=1))
    check_net(save_net(nodes, (1, 1, 7), {}, 19), n_points=3)
