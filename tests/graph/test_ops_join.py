"""Concat, Pad and Expand: eval equals onnxruntime, the layer view equals eval, bad parameters are reported."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_nets import SaveNet, check_net

from nnverify.errors import ModelError, UnsupportedOpsError
from nnverify.graph.onnx_import import load_network

RNG = np.random.default_rng(3)


def node(op_type: str, inputs: list[str], output: str = "y", **attrs: Any) -> onnx.NodeProto:
    """A node with output ``y`` by default."""
    return helper.make_node(op_type, inputs, [output], **attrs)


def ints(*values: int) -> np.ndarray:
    """An int64 initializer."""
    return np.array(values, dtype=np.int64)


# name -> (nodes, input shape, initializers, opset)
CASES: dict[str, tuple[list[onnx.NodeProto], tuple[int, ...], dict[str, np.ndarray], int]] = {
    "concat-variable-constant": (
        [node("Concat", ["x", "c", "x"], axis=1)],
        (2, 3),
        {"c": RNG.uniform(size=(2, 2))},
        13,
    ),
    "concat-two-branches": (
        [node("Gemm", ["x", "W"], "h"), node("Relu", ["h"], "r"), node("Concat", ["r", "x"], axis=-1)],
        (1, 3),
        {"W": RNG.uniform(-1, 1, (3, 4))},
        11,
    ),
    "concat-axis0-opset4": ([node("Concat", ["c", "x"], axis=0)], (2, 3), {"c": RNG.uniform(size=(1, 3))}, 4),
    "pad-constant-input-opset13": (
        [node("Pad", ["x", "p", "v"])],
        (2, 3, 4),
        {"p": ints(0, 1, 2, 1, 0, 1), "v": np.array(0.5)},
        13,
    ),
    "pad-negative-crops": ([node("Pad", ["x", "p"])], (4, 5), {"p": ints(-1, 2, 1, -2)}, 13),
    "pad-reflect": ([node("Pad", ["x", "p"], mode="reflect")], (1, 4, 5), {"p": ints(0, 2, 1, 0, 1, 3)}, 13),
    "pad-edge-opset11": ([node("Pad", ["x", "p"], mode="edge")], (3, 4), {"p": ints(2, 0, 1, 3)}, 11),
    "pad-wrap-opset19": ([node("Pad", ["x", "p"], mode="wrap")], (3, 4), {"p": ints(1, 2, 2, 1)}, 19),
    "pad-axes-opset18": ([node("Pad", ["x", "p", "", "a"])], (2, 3, 4), {"p": ints(1, 2, 3, 0), "a": ints(-1, 0)}, 18),
    "pad-attrs-opset2": ([node("Pad", ["x"], pads=[0, 1, 1, 2], value=-1.5)], (3, 2), {}, 2),
    "expand-to-larger-rank": ([node("Expand", ["x", "s"])], (3, 1), {"s": ints(2, 3, 4)}, 13),
    "tile": ([node("Tile", ["x", "r"])], (2, 3), {"r": ints(2, 3)}, 13),
    "tile-opset6-rank3": ([node("Tile", ["x", "r"])], (1, 2, 2), {"r": ints(3, 1, 2)}, 6),
    "expand-bidirectional": ([node("Expand", ["x", "s"])], (2, 1, 3), {"s": ints(4, 1)}, 8),
}


@pytest.mark.parametrize(("nodes", "shape", "inits", "opset"), CASES.values(), ids=CASES.keys())
def test_op_matches_onnxruntime(
    save_net: SaveNet, nodes: list[onnx.NodeProto], shape: tuple[int, ...], inits: dict[str, np.ndarray], opset: int
) -> None:
    check_net(save_net(nodes, shape, inits, opset))


def test_bad_mode_and_variable_pads_are_reported(save_net: SaveNet) -> None:
    nodes = [
        node("Pad", ["x", "p"], "a", name="odd", mode="mirror"),
        node("Relu", ["x"], "r"),
        node("Cast", ["r"], "ri", to=onnx.TensorProto.INT64),
        node("Expand", ["a", "ri"], name="ex"),
    ]
    path = save_net(nodes, (2,), {"p": ints(1, 1)})
    with pytest.raises(UnsupportedOpsError) as info:
        load_network(path)
    message = str(info.value)
    assert "uses 3 ONNX operators" in message
    assert (
        "Pad     1 node   'odd': mode 'mirror' is not supported (expected one of constant, reflect, edge, wrap)"
        in message
    )
    assert "Cast    1 node   'Cast_2': cast of a variable tensor to INT64 is not affine" in message
    assert "Expand  1 node   'ex': input 1 of Expand must be a constant, found a variable tensor" in message


def test_reflect_pads_as_large_as_the_axis_are_rejected(save_net: SaveNet) -> None:
    """onnxruntime refuses them (numpy would reflect repeatedly)."""
    path = save_net([node("Pad", ["x", "p"], name="r", mode="reflect")], (2, 4), {"p": ints(0, 4, 0, 0)})
    with pytest.raises(
        ModelError, match=r"'r' \(Pad\) cannot be evaluated: reflect pads \[0, 4, 0, 0\] must be smaller"
    ):
        load_network(path)
