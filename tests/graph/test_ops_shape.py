"""DepthToSpace and SpaceToDepth: eval equals onnxruntime, and the layer view is a permutation."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_nets import SaveNet, check_net

from nnverify.errors import UnsupportedOpsError
from nnverify.graph.onnx_import import load_network

CASES = {
    "depth-to-space-dcr": (helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2), (1, 8, 2, 3), 13),
    "depth-to-space-crd": (helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="CRD"), (2, 8, 3, 2), 13),
    "depth-to-space-opset1": (helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=3), (1, 9, 2, 2), 1),
    "space-to-depth": (helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2), (1, 3, 4, 6), 13),
    "space-to-depth-crd-opset28": (
        helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2, mode="CRD"),
        (1, 3, 4, 6),
        28,
    ),
}


@pytest.mark.parametrize(("node", "shape", "opset"), CASES.values(), ids=CASES.keys())
def test_block_permutations_match_onnxruntime(save_net: SaveNet, node: object, shape: tuple, opset: int) -> None:
    _, layers = check_net(save_net([node], shape, {}, max(opset, 7)))
    weight = layers.layers[layers.output].weights[0]
    assert set(np.unique(weight)) == {0.0, 1.0}  # a permutation matrix
    np.testing.assert_array_equal(weight.sum(axis=0), 1.0)
    np.testing.assert_array_equal(weight.sum(axis=1), 1.0)


def test_unknown_block_mode_is_reported(save_net: SaveNet) -> None:
    nodes = [helper.make_node("DepthToSpace", ["x"], ["y"], name="d2s", blocksize=2, mode="RDC")]
    with pytest.raises(UnsupportedOpsError, match="'d2s': mode 'RDC' is not one of DCR, CRD"):
        load_network(save_net(nodes, (1, 4, 2, 2)))
