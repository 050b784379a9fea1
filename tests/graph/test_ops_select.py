"""Where (constant condition) and Equal (constants): eval equals onnxruntime; a variable condition is reported."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_nets import SaveNet, check_net

from nnverify.errors import UnsupportedOpsError
from nnverify.graph.onnx_import import load_network


def test_where_with_constant_condition_matches_onnxruntime(save_net: SaveNet) -> None:
    nodes = [
        helper.make_node("Cast", ["c"], ["cb"], to=TensorProto.BOOL),
        helper.make_node("Cast", ["c2"], ["c2b"], to=TensorProto.BOOL),
        helper.make_node("Neg", ["x"], ["n"]),
        helper.make_node("Where", ["cb", "x", "n"], ["w"]),
        helper.make_node("Where", ["c2b", "w", "k"], ["y"]),
    ]
    inits = {"c": np.array([[1], [0]], dtype=np.int64), "c2": np.array([1, 0, 1], dtype=np.int64), "k": np.array(3.0)}
    graph, _ = check_net(save_net(nodes, (2, 3), inits))
    assert [n.op_type for n in graph.nodes] == ["Neg", "Where", "Where"]


def test_where_of_equal_on_shapes_folds(save_net: SaveNet) -> None:
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Equal", ["s", "one"], ["e"]),
        helper.make_node("Where", ["e", "minus1", "s"], ["t"]),
        helper.make_node("Reshape", ["x", "t"], ["y"]),
    ]
    inits = {"one": np.array(1, dtype=np.int64), "minus1": np.array(-1, dtype=np.int64)}
    graph, _ = check_net(save_net(nodes, (1, 4, 3), inits))
    assert [n.op_type for n in graph.nodes] == ["Reshape"]
    assert graph.output_shape == (1, 4, 3)


def test_variable_condition_is_reported(save_net: SaveNet) -> None:
    nodes = [
        helper.make_node("Equal", ["x", "z"], ["e"], name="eq"),
        helper.make_node("Where", ["e", "x", "z"], ["y"], name="wh"),
    ]
    with pytest.raises(UnsupportedOpsError) as info:
        load_network(save_net(nodes, (3,), {"z": np.zeros(3)}))
    assert str(info.value).splitlines()[1:] == [
        "  Equal  1 node   'eq': input 0 of Equal must be a constant, found a variable tensor",
        "  Where  1 node   'wh': input 0 of Where must be a constant, found a variable tensor",
    ]


def test_comparisons_and_logic_on_constants_fold(save_net: SaveNet) -> None:
    nodes = [
        helper.make_node("Greater", ["a", "b"], ["g"]),
        helper.make_node("Less", ["a", "b"], ["l"]),
        helper.make_node("Not", ["l"], ["nl"]),
        helper.make_node("And", ["g", "nl"], ["both"]),
        helper.make_node("Or", ["both", "l"], ["either"]),
        helper.make_node("Equal", ["a", "b"], ["e"]),
        helper.make_node("Where", ["either", "x", "b"], ["w"]),
        helper.make_node("Where", ["e", "a", "w"], ["y"]),
    ]
    inits = {"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([2.0, 2.0, 1.0, 5.0])}
    graph, _ = check_net(save_net(nodes, (4,), inits))
    assert [n.op_type for n in graph.nodes] == ["Where", "Where"]
