"""Slice, Split and Gather: eval equals onnxruntime, the layer view equals eval, bad parameters are reported."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_nets import SaveNet, check_net

from nnverify.errors import ModelError, UnsupportedOpsError
from nnverify.graph.onnx_import import load_network

BIG = 2**62


def node(op_type: str, inputs: list[str], outputs: list[str] | None = None, **attrs: Any) -> onnx.NodeProto:
    """A node with output ``y`` by default."""
    return helper.make_node(op_type, inputs, outputs or ["y"], **attrs)


def ints(*values: int) -> np.ndarray:
    """An int64 initializer."""
    return np.array(values, dtype=np.int64)


# name -> (nodes, input shape, initializers, opset)
CASES: dict[str, tuple[list[onnx.NodeProto], tuple[int, ...], dict[str, np.ndarray], int]] = {
    "slice-basic": ([node("Slice", ["x", "s", "e"])], (2, 5), {"s": ints(0, 1), "e": ints(1, 4)}, 13),
    "slice-axes-steps": (
        [node("Slice", ["x", "s", "e", "a", "t"])],
        (3, 6, 4),
        {"s": ints(-1, 1), "e": ints(-BIG, BIG), "a": ints(1, -1), "t": ints(-2, 2)},
        13,
    ),
    "slice-negative-clamped": (
        [node("Slice", ["x", "s", "e", "a", "t"])],
        (7,),
        {"s": ints(BIG), "e": ints(-BIG), "a": ints(0), "t": ints(-3)},
        13,
    ),
    "slice-opset9-attrs": ([node("Slice", ["x"], starts=[1, 0], ends=[3, -1], axes=[0, 2])], (4, 2, 5), {}, 9),
    "slice-opset10": ([node("Slice", ["x", "s", "e"])], (4, 3), {"s": ints(1), "e": ints(3)}, 10),
    "split-equal-axis1": (
        [node("Split", ["x"], ["a", "b"], axis=1), node("Sub", ["b", "a"])],
        (2, 6),
        {},
        13,
    ),
    "split-sizes-input": (
        [node("Split", ["x", "s"], ["a", "b", "c"], axis=-1), node("Concat", ["c", "a"], axis=-1)],
        (3, 7),
        {"s": ints(2, 4, 1)},
        13,
    ),
    "split-attr-opset11": (
        [node("Split", ["x"], ["a", "b"], axis=0, split=[1, 3]), node("Mul", ["b", "w"])],
        (4, 2),
        {"w": np.array([2.0, -1.0])},
        11,
    ),
    "split-num-outputs-uneven-opset18": (
        [node("Split", ["x"], ["a", "b", "c"], axis=0, num_outputs=3), node("Neg", ["c"])],
        (8, 2),
        {},
        18,
    ),
    "split-one-output-used": ([node("Split", ["x"], ["a", "y"], axis=0)], (4,), {}, 13),
    "gather-scalar-index": ([node("Gather", ["x", "i"], axis=1)], (2, 3, 4), {"i": np.array(-1)}, 13),
    "gather-matrix-indices": ([node("Gather", ["x", "i"], axis=0)], (5, 2), {"i": ints(4, 0, 0, 2).reshape(2, 2)}, 13),
    "gather-opset11-axis-neg": ([node("Gather", ["x", "i"], axis=-1)], (3, 4), {"i": ints(3, -4, 1)}, 11),
}


@pytest.mark.parametrize(("nodes", "shape", "inits", "opset"), CASES.values(), ids=CASES.keys())
def test_op_matches_onnxruntime(
    save_net: SaveNet, nodes: list[onnx.NodeProto], shape: tuple[int, ...], inits: dict[str, np.ndarray], opset: int
) -> None:
    check_net(save_net(nodes, shape, inits, opset))


def test_split_outputs_become_nodes_of_their_own(save_net: SaveNet) -> None:
    nodes = [node("Split", ["x"], ["a", "b", "c"], name="sp", axis=0), node("Concat", ["c", "a"], axis=0)]
    graph, _ = check_net(save_net(nodes, (6,)))
    assert [(n.name, n.outputs) for n in graph.nodes[:2]] == [("sp[0]", ("a",)), ("sp[2]", ("c",))]


def test_variable_indices_and_bad_sizes_are_reported(save_net: SaveNet) -> None:
    nodes = [
        node("Slice", ["x", "r", "e"], ["s"], name="sl"),
        node("Relu", ["x"], ["r"]),
        node("Gather", ["s", "r"], ["y"], name="g"),
    ]
    nodes = [nodes[1], nodes[0], nodes[2]]
    path = save_net(nodes, (4,), {"e": ints(3)})
    with pytest.raises(UnsupportedOpsError) as info:
        load_network(path)
    message = str(info.value)
    assert "uses 2 ONNX operators" in message
    assert "Slice   1 node   'sl': input 1 of Slice must be a constant, found a variable tensor" in message
    assert "Gather  1 node   'g': input 1 of Gather must be a constant" in message
    path = save_net([node("Split", ["x", "s"], ["a", "y"], name="sp")], (4,), {"s": ints(1, 2)}, name="bad.onnx")
    with pytest.raises(ModelError, match=r"node 'sp\[1\]' \(Split\) cannot be evaluated: split sizes \[1, 2\]"):
        load_network(path)
