"""Shape subgraphs fold to constants at import (Shape of a variable tensor included); Cast is the identity."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_nets import SaveNet, check_net


def node(op_type: str, inputs: list[str], output: str = "y", **attrs: Any) -> onnx.NodeProto:
    """A node with output ``y`` by default."""
    return helper.make_node(op_type, inputs, [output], **attrs)


def ints(*values: int) -> np.ndarray:
    """An int64 initializer."""
    return np.array(values, dtype=np.int64)


#: PyTorch's flatten as exported with dynamic shapes: Shape, Gather, Unsqueeze, Concat, Reshape.
TORCH_FLATTEN = [
    node("Shape", ["x"], "s"),
    node("Gather", ["s", "zero"], "n", axis=0),
    node("Unsqueeze", ["n", "axes"], "n1"),
    node("Concat", ["n1", "minus1"], "shape", axis=0),
    node("Reshape", ["x", "shape"]),
]

# name -> (nodes, input shape, initializers, opset, op types left after folding)
CASES: dict[str, tuple[list[onnx.NodeProto], tuple[int | str, ...], dict[str, np.ndarray], int, list[str]]] = {
    "torch-flatten": (
        TORCH_FLATTEN,
        (1, 3, 2, 2),
        {"zero": np.array(0), "axes": ints(0), "minus1": ints(-1)},
        13,
        ["Reshape"],
    ),
    "torch-flatten-dynamic-batch": (
        TORCH_FLATTEN,
        ("N", 3, 2),
        {"zero": np.array(0), "axes": ints(0), "minus1": ints(-1)},
        13,
        ["Reshape"],
    ),
    "constant-of-shape": (
        [
            node("Shape", ["x"], "s"),
            node("ConstantOfShape", ["s"], "c", value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.25])),
            node("Add", ["x", "c"]),
        ],
        (2, 3),
        {},
        13,
        ["Add"],
    ),
    "shape-start-end-size-range-cast": (
        [
            node("Shape", ["x"], "s", start=-1),
            node("Size", ["x"], "n"),
            node("Squeeze", ["s"], "last"),
            node("Range", ["zero", "last", "one"], "r"),
            node("Cast", ["r"], "rf", to=TensorProto.FLOAT),
            node("Cast", ["n"], "nf", to=TensorProto.DOUBLE),
            node("Cast", ["nf"], "nf32", to=TensorProto.FLOAT),
            node("Mul", ["x", "rf"], "m"),
            node("Cast", ["m"], "m2", to=TensorProto.FLOAT),
            node("Div", ["m2", "nf32"]),
        ],
        (2, 4),
        {"zero": np.array(0), "one": np.array(1)},
        15,
        ["Mul", "Cast", "Div"],
    ),
    "expand-to-shape-of-input": (
        [node("Shape", ["x"], "s"), node("Expand", ["c", "s"], "e"), node("Sub", ["x", "e"])],
        (2, 3),
        {"c": np.array([[1.0], [2.0]])},
        13,
        ["Sub"],
    ),
}


@pytest.mark.parametrize(("nodes", "shape", "inits", "opset", "kept"), CASES.values(), ids=CASES.keys())
def test_shape_subgraphs_fold(
    save_net: SaveNet,
    nodes: list[onnx.NodeProto],
    shape: tuple[int | str, ...],
    inits: dict[str, np.ndarray],
    opset: int,
    kept: list[str],
) -> None:
    path = save_net(nodes, shape, inits, opset)
    if "N" in shape:  # onnxruntime needs the same batch size as the import (dynamic dimensions become 1)
        from nnverify.graph.onnx_import import load_network

        graph = load_network(path)
        assert graph.input_shape == (1, 3, 2)
        assert graph.output_shape == (1, 6)
    else:
        graph, _ = check_net(path)
    assert [n.op_type for n in graph.nodes] == kept


def test_range_float_and_empty() -> None:
    from nnverify.graph.ops import REGISTRY
    from nnverify.graph.ops.base import Node

    range_op = REGISTRY["Range"]
    args = (np.array([1.0]), np.array([2.0]), np.array([0.25]))
    np.testing.assert_array_equal(range_op.eval(Node("r", "Range", (), ()), *args), [[1.0, 1.25, 1.5, 1.75]])
    args = (np.array([5]), np.array([2]), np.array([1]))
    assert range_op.eval(Node("r", "Range", (), ()), *args).shape == (1, 0)


def test_nodes_read_only_by_shapes_are_dropped(save_net: SaveNet) -> None:
    nodes = [
        node("Relu", ["x"], "r"),
        node("Shape", ["r"], "s"),
        node("Reshape", ["x", "s"], "same"),
        node("Neg", ["same"]),
    ]
    graph, layers = check_net(save_net(nodes, (2, 3)))
    assert [n.op_type for n in graph.nodes] == ["Reshape", "Neg"]
    assert len(layers.layers) == 2  # input, one affine layer: no ReLU left behind
