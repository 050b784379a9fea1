"""GatherElements, GatherND, ScatterND and CumSum: eval equals onnxruntime, the layer view equals eval."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_nets import SaveNet, check_net

from nnverify.errors import UnsupportedOpsError
from nnverify.graph.onnx_import import load_network

RNG = np.random.default_rng(11)


def node(op_type: str, inputs: list[str], **attrs: Any) -> onnx.NodeProto:
    """A node with output ``y``."""
    return helper.make_node(op_type, inputs, ["y"], **attrs)


def ints(values: Any) -> np.ndarray:
    """An int64 initializer."""
    return np.array(values, dtype=np.int64)


# name -> (nodes, input shape, initializers, opset)
CASES: dict[str, tuple[list[onnx.NodeProto], tuple[int, ...], dict[str, np.ndarray], int]] = {
    "gather-elements-axis1": (
        [node("GatherElements", ["x", "i"], axis=1)],
        (2, 3),
        {"i": ints([[2, 0, 0], [-1, 1, 2]])},
        13,
    ),
    "gather-elements-smaller-indices": (
        [node("GatherElements", ["x", "i"], axis=0)],
        (3, 4),
        {"i": ints([[2, 0], [1, 1]])},
        11,
    ),
    "gather-nd": ([node("GatherND", ["x", "i"])], (3, 4, 2), {"i": ints([[2, 1], [0, -1]])}, 13),
    "gather-nd-batch-dims": ([node("GatherND", ["x", "i"], batch_dims=1)], (2, 3, 4), {"i": ints([[[1]], [[2]]])}, 12),
    "scatter-nd-variable-data": (
        [node("ScatterND", ["x", "i", "u"])],
        (4, 3),
        {"i": ints([[1], [3]]), "u": RNG.uniform(-1, 1, (2, 3))},
        13,
    ),
    "scatter-nd-variable-updates": (
        [helper.make_node("Neg", ["x"], ["n"]), node("ScatterND", ["c", "i", "n"])],
        (2,),
        {"c": RNG.uniform(-1, 1, (3, 2)), "i": ints([[2, 1], [0, 0]])},
        11,
    ),
    "cumsum": ([node("CumSum", ["x", "a"])], (2, 4), {"a": ints(1)}, 11),
    "cumsum-exclusive-reverse": ([node("CumSum", ["x", "a"], exclusive=1, reverse=1)], (3, 4), {"a": ints(-2)}, 14),
    "cumsum-exclusive": ([node("CumSum", ["x", "a"], exclusive=1)], (5,), {"a": ints(0)}, 14),
}


@pytest.mark.parametrize(("nodes", "shape", "inits", "opset"), CASES.values(), ids=CASES.keys())
def test_indexing_matches_onnxruntime(
    save_net: SaveNet, nodes: list[onnx.NodeProto], shape: tuple[int, ...], inits: dict[str, np.ndarray], opset: int
) -> None:
    check_net(save_net(nodes, shape, inits, opset))


def test_variable_indices_and_reductions_are_reported(save_net: SaveNet) -> None:
    nodes = [
        helper.make_node("ScatterND", ["x", "i", "x"], ["s"], name="sum", reduction="add"),
        helper.make_node("Cast", ["x"], ["xf"], to=onnx.TensorProto.FLOAT),
        helper.make_node("CumSum", ["s", "xf"], ["y"], name="cs"),
    ]
    with pytest.raises(UnsupportedOpsError) as info:
        load_network(save_net(nodes, (1,), {"i": ints([[0]])}, 16))
    assert str(info.value).splitlines()[1:] == [
        "  ScatterND  1 node   'sum': reduction 'add' is not supported (only none)",
        "  CumSum     1 node   'cs': input 1 of CumSum must be a constant, found a variable tensor",
    ]
