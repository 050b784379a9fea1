"""BatchNormalization in inference mode: a per-channel affine map with constant statistics.

Training mode (which updates and outputs running statistics) is not supported.
"""

from __future__ import annotations

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, const_value, register
from nnverify.graph.ops.pullback import first


@register
class BatchNormalization(Op):
    """``Y = scale * (X - mean) / sqrt(var + epsilon) + B`` over channel axis 1."""

    op_type = "BatchNormalization"
    affine = True
    abs_inputs = (1,)  # |scale|; a variance may be slightly negative (variance + epsilon > 0): it stays as it is
    notes = "inference mode"

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        if node.attrs.get("training_mode", 0):
            return "training_mode=1 is not supported (inference only)"
        return super().check(node, is_const)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        scale, bias, mean, var = (const_value(v) for v in xs[1:5])
        factor = scale / np.sqrt(var + float(node.attrs["epsilon"]))
        shift = bias - mean * factor
        trailing = (1,) * (x.ndim - 3)
        return x * factor.reshape(-1, *trailing) + shift.reshape(-1, *trailing)

    def abs_eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return self.eval(node, *xs)  # |scale| arrives as such; mean and bias only move the constant term

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        scale, var = const_value(xs[1]), const_value(xs[4])
        factor = scale / np.sqrt(var + float(node.attrs["epsilon"]))
        return first(xs, g * factor.reshape(-1, *(1,) * (g.ndim - 3)))
