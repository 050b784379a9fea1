"""Smooth activations as ONNX ops: eval equals onnxruntime, the layer view keeps them, Pow's exponent rules."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_nets import SaveNet, check_net

from nnverify.errors import ModelError
from nnverify.graph.layers import ActivationLayer, is_exact
from nnverify.graph.onnx_import import load_network
from nnverify.graph.ops import REGISTRY, ActKind
from nnverify.graph.ops.interface import ACTIVATIONS
from nnverify.graph.passes import to_layers

SMOOTH = {
    "Sigmoid": ActKind.SIGMOID,
    "Tanh": ActKind.TANH,
    "Erf": ActKind.ERF,
    "Softplus": ActKind.SOFTPLUS,
    "Exp": ActKind.EXP,
    "Sin": ActKind.SIN,
    "Cos": ActKind.COS,
}


def _gemm_act(op_type: str, extra: list[str] | None = None) -> list:
    return [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
        helper.make_node(op_type, ["h", *(extra or [])], ["y"]),
    ]


@pytest.mark.parametrize("op_type", sorted(SMOOTH))
def test_smooth_op_matches_onnxruntime(save_net: SaveNet, op_type: str) -> None:
    rng = np.random.default_rng(1)
    inits = {"w": rng.normal(0.0, 2.0, (6, 4)), "b": rng.normal(0.0, 1.0, 6)}
    path = save_net(_gemm_act(op_type), [1, 4], inits)
    _, layers = check_net(path, n_points=50, low=-2.0, high=2.0)
    acts = [layer for layer in layers.layers if isinstance(layer, ActivationLayer)]
    assert [layer.kind for layer in acts] == [SMOOTH[op_type]]
    assert not is_exact(layers)


@pytest.mark.parametrize(("exponent", "kind"), [(2.0, ActKind.SQUARE), (3.0, ActKind.CUBE), (0.5, ActKind.SQRT)])
def test_pow_constant_exponent(save_net: SaveNet, exponent: float, kind: ActKind) -> None:
    rng = np.random.default_rng(2)
    inits = {"w": np.abs(rng.normal(0.0, 1.0, (5, 3))), "b": np.abs(rng.normal(0.0, 1.0, 5)), "e": np.array(exponent)}
    path = save_net(_gemm_act("Pow", ["e"]), [1, 3], inits)
    _, layers = check_net(path, n_points=40, low=0.0, high=2.0)  # inputs >= 0 so that x^0.5 is a number
    assert [layer.kind for layer in layers.layers if isinstance(layer, ActivationLayer)] == [kind]


def test_pow_other_exponent_is_refused_clearly(save_net: SaveNet) -> None:
    inits = {"w": np.ones((2, 2)), "b": np.zeros(2), "e": np.array(1.5)}
    graph = load_network(save_net(_gemm_act("Pow", ["e"]), [1, 2], inits))
    with pytest.raises(ModelError, match=r"Pow\): exponent 1.5 is not supported \(only 2, 3 and 0.5\)"):
        to_layers(graph)


def test_registry_covers_every_kind_and_exactness() -> None:
    assert set(ACTIVATIONS) == set(ActKind)
    assert {kind for kind, act in ACTIVATIONS.items() if act.exact} == {ActKind.RELU, ActKind.SIGN}
    for op_type in SMOOTH:
        assert REGISTRY[op_type].activation is SMOOTH[op_type]
