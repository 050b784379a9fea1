"""ReduceSum and ReduceMean: eval equals onnxruntime for axes as attributes (old opsets) and inputs (new)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_nets import SaveNet, check_net

from nnverify.errors import ModelError
from nnverify.graph.onnx_import import load_network


def reduce(op: str, shape: tuple[int, ...], opset: int, axes: list[int] | None = None, **attrs: Any) -> tuple:
    """One reduction node: (nodes, input shape, initializers, opset); axes as an input or an attribute."""
    as_input = opset >= (13 if op == "ReduceSum" else 18)
    inits = {"a": np.array(axes, dtype=np.int64)} if as_input and axes is not None else {}
    if not as_input and axes is not None:
        attrs["axes"] = axes
    node = helper.make_node(op, ["x", "a"] if inits else ["x"], ["y"], **attrs)
    return [node], shape, inits, opset


CASES: dict[str, tuple[list[onnx.NodeProto], tuple[int, ...], dict[str, np.ndarray], int]] = {
    "sum-axes-input": reduce("ReduceSum", (2, 3, 4), 13, [1, -1]),
    "sum-no-keepdims": reduce("ReduceSum", (2, 3, 4), 13, [0], keepdims=0),
    "sum-all": reduce("ReduceSum", (2, 3), 13),
    "sum-noop": reduce("ReduceSum", (2, 3), 13, noop_with_empty_axes=1),
    "sum-opset11-attr": reduce("ReduceSum", (3, 4), 11, [-2], keepdims=0),
    "mean-opset13-attr": reduce("ReduceMean", (2, 3, 4), 13, [2]),
    "mean-all-opset11": reduce("ReduceMean", (2, 3), 11, keepdims=0),
    "mean-opset18-input": reduce("ReduceMean", (2, 5), 18, [1], keepdims=0),
}


@pytest.mark.parametrize(("nodes", "shape", "inits", "opset"), CASES.values(), ids=CASES.keys())
def test_reduce_matches_onnxruntime(
    save_net: SaveNet, nodes: list[onnx.NodeProto], shape: tuple[int, ...], inits: dict[str, np.ndarray], opset: int
) -> None:
    check_net(save_net(nodes, shape, inits, opset))


def test_axis_out_of_range_names_the_node(save_net: SaveNet) -> None:
    path = save_net(*reduce("ReduceSum", (2, 3), 11, [2]))
    with pytest.raises(ModelError, match=r"'ReduceSum_0' \(ReduceSum\) cannot be evaluated: axis 2 is out of range"):
        load_network(path)
