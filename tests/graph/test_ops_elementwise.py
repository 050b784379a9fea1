"""Sum and Mean of several tensors: eval equals onnxruntime, the layer view keeps every source."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx_nets import SaveNet, check_net

from nnverify.errors import ModelError
from nnverify.graph.onnx_import import load_network

RNG = np.random.default_rng(9)


@pytest.mark.parametrize("op", ["Sum", "Mean"])
@pytest.mark.parametrize("opset", [8, 13])
def test_variadic_sum_and_mean_match_onnxruntime(save_net: SaveNet, op: str, opset: int) -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node(op, ["x", "r", "c"], ["y"]),
    ]
    _, layers = check_net(save_net(nodes, (2, 3), {"W": RNG.uniform(-1, 1, (3, 3)), "c": RNG.uniform(size=3)}, opset))
    assert sorted(layers.layers[layers.output].sources) == [0, 2]


def test_single_input_sum_is_the_identity(save_net: SaveNet) -> None:
    _, layers = check_net(save_net([helper.make_node("Sum", ["x"], ["y"])], (4,)))
    assert len(layers.layers) == 1  # the identity layer is dropped


def test_training_mode_dropout_is_a_model_error(save_net: SaveNet) -> None:
    """onnxruntime drops entries at random then; inference-mode Dropout (the identity) is fine."""

    def dropout(training: bool) -> list:
        flag = helper.make_node("Constant", [], ["t"], value=numpy_helper.from_array(np.array(training), "t"))
        return [flag, helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="drop")]

    with pytest.raises(ModelError, match=r"'drop' \(Dropout\) cannot be evaluated: training_mode is true"):
        load_network(save_net(dropout(True), (3,), {"r": np.array(0.5)}, 13))
    check_net(save_net(dropout(False), (3,), {"r": np.array(0.5)}, 13, name="inference.onnx"))
