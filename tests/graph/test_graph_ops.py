"""Per operator: small models evaluate like onnxruntime, and their layer view like the graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_nets import SaveNet, check_net

from nnverify.graph.layers import ActivationLayer, AffineLayer
from nnverify.graph.ops import REGISTRY, supported_ops_table
from nnverify.graph.ops.base import ActKind

RNG = np.random.default_rng(42)


def rand(*shape: int) -> np.ndarray:
    """Random float weights."""
    return RNG.uniform(-1, 1, shape)


def node(op_type: str, inputs: list[str], output: str = "y", **attrs: Any) -> onnx.NodeProto:
    """A node with output ``y`` by default."""
    return helper.make_node(op_type, inputs, [output], **attrs)


@dataclass
class Case:
    """One small model: its nodes, input shape, initializers and opset."""

    nodes: list[onnx.NodeProto]
    input_shape: tuple[int, ...]
    inits: dict[str, np.ndarray] = field(default_factory=dict)
    opset: int = 13


def const(name: str, value: np.ndarray) -> onnx.NodeProto:
    """A Constant node holding ``value`` (float32 or int64)."""
    dtype = np.int64 if np.issubdtype(np.asarray(value).dtype, np.integer) else np.float32
    tensor = onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
    return helper.make_node("Constant", [], [name], value=tensor)


def conv(shape: tuple[int, ...], w_shape: tuple[int, ...], bias: bool = True, **attrs: Any) -> Case:
    """Conv of the input with random weights (and bias)."""
    inits = {"W": rand(*w_shape)} | ({"B": rand(w_shape[0])} if bias else {})
    return Case([node("Conv", ["x", "W", *(["B"] if bias else [])], **attrs)], shape, inits)


CASES: dict[str, Case] = {
    "gemm-transB-alpha-beta": Case(
        [node("Gemm", ["x", "W", "C"], transB=1, alpha=0.5, beta=2.0)],
        (1, 4),
        {"W": rand(3, 4), "C": rand(3)},
    ),
    "gemm-transA": Case([node("Gemm", ["x", "W", "C"], transA=1)], (4, 1), {"W": rand(4, 3), "C": rand(1, 3)}),
    "gemm-const-A": Case([node("Gemm", ["A", "x"], transA=1, transB=1)], (3, 4), {"A": rand(4, 2)}),
    "gemm-no-C": Case([node("Gemm", ["x", "W"])], (2, 4), {"W": rand(4, 3)}),
    "matmul-right": Case([node("MatMul", ["x", "W"])], (1, 4), {"W": rand(4, 3)}),
    "matmul-left": Case([node("MatMul", ["W", "x"])], (4, 2), {"W": rand(3, 4)}),
    "matmul-vector-left": Case([node("MatMul", ["x", "W"])], (4,), {"W": rand(4, 3)}),
    "matmul-vector-right": Case([node("MatMul", ["W", "x"])], (4,), {"W": rand(3, 4)}),
    "matmul-stacked-x": Case([node("MatMul", ["x", "W"])], (2, 3, 4), {"W": rand(4, 5)}),
    "matmul-stacked-W": Case([node("MatMul", ["W", "x"])], (3, 4), {"W": rand(2, 5, 3)}),
    "add-x-c": Case([node("Add", ["x", "c"])], (2, 3), {"c": rand(3)}),
    "add-c-x": Case([node("Add", ["c", "x"])], (2, 3), {"c": rand(4, 2, 1)}),
    "sub-x-c": Case([node("Sub", ["x", "c"])], (2, 3), {"c": rand(2, 1)}),
    "sub-c-x": Case([node("Sub", ["c", "x"])], (2, 3), {"c": rand(3)}),
    "add-residual": Case(
        [node("MatMul", ["x", "W"], "h"), node("Relu", ["h"], "r"), node("Add", ["r", "x"])],
        (1, 4),
        {"W": rand(4, 4)},
    ),
    "sub-residual": Case([node("MatMul", ["x", "W"], "h"), node("Sub", ["x", "h"])], (1, 4), {"W": rand(4, 4)}),
    "add-x-x": Case([node("Add", ["x", "x"])], (3,)),
    "mul-x-c": Case([node("Mul", ["x", "c"])], (1, 2, 3), {"c": rand(3)}),
    "mul-c-x": Case([node("Mul", ["c", "x"])], (2, 3), {"c": rand(5, 2, 1)}),
    "mul-scalar": Case([node("Mul", ["x", "c"])], (2, 3), {"c": np.array(2.5)}),
    "div-x-c": Case([node("Div", ["x", "c"])], (1, 2, 3), {"c": rand(2, 1) + 3.0}),
    "neg": Case([node("Neg", ["x"])], (2, 3)),
    "identity": Case([node("Identity", ["x"], "h"), node("Mul", ["h", "c"])], (2,), {"c": rand(2)}),
    "dropout": Case([node("Dropout", ["x"], "h"), node("Relu", ["h"])], (2, 3)),
    "dropout-opset11-ratio": Case([node("Dropout", ["x"], "h", ratio=0.3), node("Neg", ["h"])], (3,), opset=11),
    "constant-tensor": Case([const("c", rand(3)), node("Add", ["x", "c"])], (2, 3)),
    "constant-value-float": Case(
        [helper.make_node("Constant", [], ["c"], value_float=1.5), node("Mul", ["x", "c"])], (2,)
    ),
    "flatten-axis0": Case([node("Flatten", ["x"], axis=0)], (2, 3, 4)),
    "flatten-axis1": Case([node("Flatten", ["x"], axis=1)], (2, 3, 4)),
    "flatten-axis2": Case([node("Flatten", ["x"], axis=2)], (2, 3, 4)),
    "flatten-axis-neg": Case([node("Flatten", ["x"], axis=-1)], (2, 3, 4)),
    "reshape-0-minus1": Case([node("Reshape", ["x", "s"])], (2, 3, 4), {"s": np.array([0, -1])}),
    "reshape-minus1": Case([node("Reshape", ["x", "s"])], (2, 3, 4), {"s": np.array([-1, 2, 3])}),
    "reshape-allowzero": Case([node("Reshape", ["x", "s"], allowzero=1)], (2, 3, 4), {"s": np.array([4, 6])}, opset=14),
    "squeeze-opset11": Case([node("Squeeze", ["x"], axes=[0, -2])], (1, 3, 1, 2), opset=11),
    "squeeze-opset13": Case([node("Squeeze", ["x", "a"])], (1, 3, 1, 2), {"a": np.array([2])}),
    "squeeze-all": Case([node("Squeeze", ["x"])], (1, 3, 1, 2)),
    "unsqueeze-opset11": Case([node("Unsqueeze", ["x"], axes=[0, 3])], (3, 2), opset=11),
    "unsqueeze-opset13": Case([node("Unsqueeze", ["x", "a"])], (3, 2), {"a": np.array([-1, 1])}),
    "transpose": Case([node("Transpose", ["x"], perm=[0, 2, 1])], (1, 3, 4)),
    "transpose-default": Case([node("Transpose", ["x"])], (2, 3, 4)),
    "batchnorm": Case(
        [node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)],
        (1, 3, 2, 2),
        {"s": rand(3), "b": rand(3), "m": rand(3), "v": rand(3) + 1.5},
    ),
    "batchnorm-2d-opset17": Case(
        [node("BatchNormalization", ["x", "s", "b", "m", "v"])],
        (2, 3),
        {"s": rand(3), "b": rand(3), "m": rand(3), "v": rand(3) + 1.5},
        opset=17,
    ),
    "conv-plain": conv((1, 2, 5, 5), (4, 2, 3, 3)),
    "conv-strides-pads": conv((1, 2, 6, 5), (3, 2, 3, 2), strides=[2, 1], pads=[1, 0, 2, 1]),
    "conv-dilations": conv((2, 1, 7, 7), (2, 1, 3, 3), bias=False, dilations=[2, 3]),
    "conv-group": conv((1, 4, 5, 5), (6, 2, 3, 3), group=2, pads=[1, 1, 1, 1]),
    "conv-depthwise": conv((1, 3, 4, 4), (3, 1, 2, 2), group=3),
    "conv-same-upper": conv((1, 2, 6, 7), (3, 2, 3, 4), auto_pad="SAME_UPPER", strides=[2, 2]),
    "conv-same-lower": conv((1, 2, 5, 6), (3, 2, 2, 3), auto_pad="SAME_LOWER"),
    "conv-valid": conv((1, 2, 5, 5), (3, 2, 3, 3), auto_pad="VALID", strides=[2, 2]),
    "conv-large-input": conv((1, 3, 16, 16), (4, 3, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
    "conv-1d": conv((1, 2, 9), (3, 2, 3), strides=[2], pads=[1, 1]),
    "relu": Case([node("Relu", ["x"])], (2, 3)),
    "sign": Case([node("Gemm", ["x", "W"], "h"), node("Sign", ["h"])], (1, 3), {"W": rand(3, 4)}),
    "folded-chain": Case(
        [
            node("Transpose", ["Wt"], "W"),
            node("Mul", ["W", "two"], "W2"),
            node("Reshape", ["x", "s"], "flat"),
            node("MatMul", ["flat", "W2"]),
        ],
        (1, 2, 2),
        {"Wt": rand(3, 4), "two": np.array(2.0), "s": np.array([1, -1])},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_op_matches_onnxruntime(case: Case, save_net: SaveNet) -> None:
    check_net(save_net(case.nodes, case.input_shape, case.inits, case.opset))


def test_constants_are_folded(save_net: SaveNet) -> None:
    case = CASES["folded-chain"]
    graph, _ = check_net(save_net(case.nodes, case.input_shape, case.inits))
    assert [n.op_type for n in graph.nodes] == ["Reshape", "MatMul"]
    assert graph.constants["W2"].dtype == np.float64
    assert graph.constants["s"].dtype == np.int64
    assert graph.output_shape == (1, 3)


def test_conv_batchnorm_relu_fold_into_one_affine_layer(save_net: SaveNet) -> None:
    nodes = [
        node("Conv", ["x", "W", "B"], "c", pads=[1, 1, 1, 1]),
        node("BatchNormalization", ["c", "s", "b", "m", "v"], "n"),
        node("Relu", ["n"]),
    ]
    inits = {"W": rand(3, 2, 3, 3), "B": rand(3), "s": rand(3), "b": rand(3), "m": rand(3), "v": rand(3) + 1}
    _, layers = check_net(save_net(nodes, (1, 2, 4, 4), inits))
    assert [type(layer) for layer in layers.layers[1:]] == [AffineLayer, ActivationLayer]
    assert layers.layers[1].size == 3 * 4 * 4
    assert layers.output == 2


def test_residual_keeps_two_sources(save_net: SaveNet) -> None:
    case = CASES["add-residual"]
    _, layers = check_net(save_net(case.nodes, case.input_shape, case.inits))
    out = layers.layers[layers.output]
    assert isinstance(out, AffineLayer)
    assert sorted(out.sources) == [0, 2]


def test_affine_residual_merges_into_one_layer(save_net: SaveNet) -> None:
    nodes = [node("MatMul", ["x", "W1"], "h"), node("MatMul", ["h", "W2"], "a"), node("Add", ["a", "h"])]
    _, layers = check_net(save_net(nodes, (1, 3), {"W1": rand(3, 4), "W2": rand(4, 4)}))
    assert len(layers.layers) == 2
    out = layers.layers[layers.output]
    assert isinstance(out, AffineLayer)
    assert out.sources == (0,)


def test_output_relu_stays_activation(save_net: SaveNet) -> None:
    nodes = [node("Gemm", ["x", "W", "C"], "h"), node("Relu", ["h"], "r"), node("Flatten", ["r"])]
    _, layers = check_net(save_net(nodes, (1, 3), {"W": rand(3, 2), "C": rand(2)}))
    out = layers.layers[layers.output]
    assert isinstance(out, ActivationLayer)
    assert out.kind is ActKind.RELU


def test_supported_ops_table_lists_every_registered_op() -> None:
    table = supported_ops_table()
    assert {row[0] for row in table} == {op for op in REGISTRY if "." not in op}  # internal ops are not listed
    rows = {row[0]: row for row in table}
    assert rows["Relu"] == ("Relu", "activation", "activation relu")
    assert rows["Div"][1:] == ("elementwise", "affine, variable divisor relaxed as x * (1 / y)")
    folded = {op for op, impl in REGISTRY.items() if impl.shape_only or impl.variable_inputs == ()}  # Shape, Range
    folded |= {op for op in REGISTRY if getattr(REGISTRY[op], "lowered", False)} | {"Softmax"}  # graph/lowering.py
    node_kind = {"Pow"}  # the activation kind depends on the constant exponent (Op.activation_of)
    assert all(
        REGISTRY[op].affine or REGISTRY[op].activation for op in REGISTRY if op not in folded | node_kind | {"Constant"}
    )
