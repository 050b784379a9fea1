"""Softmax along one axis (opset 13 on) or the coerced 2-D of ``axis`` and all later axes (before 13).

A trailing Softmax under a property that only compares outputs with each other is removed before the analysis
(``graph/tail.py``, Softmax keeps order); elsewhere it is lowered to Exp and Reciprocal (``lowering_smooth.py``).
"""

from __future__ import annotations

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, register


def normalised_axes(node: Node, rank: int) -> tuple[int, ...]:
    """The unbatched axes a Softmax normalises over: ``axis`` alone from opset 13 on (also when the node has no
    ``opset`` attribute, set by the importer), ``axis`` and every later axis before (ONNX's "coerced 2-D")."""
    axis = int(node.attrs["axis"])
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    axis %= rank
    return (axis,) if int(node.attrs.get("opset", 13)) >= 13 else tuple(range(axis, rank))


@register
class Softmax(Op):
    """``exp(x_i) / sum_j exp(x_j)`` over ``normalised_axes`` (opset-dependent, as onnxruntime)."""

    op_type = "Softmax"
    notes = "removed at the output when the property compares outputs only, else relaxed (Exp, Reciprocal)"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        axes = tuple(a + 1 for a in normalised_axes(node, x.ndim - 1))
        shifted = np.exp(x - x.max(axis=axes, keepdims=True))
        return shifted / shifted.sum(axis=axes, keepdims=True)

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        y = self.eval(node, xs[0])
        axes = tuple(a + 1 for a in normalised_axes(node, y.ndim - 1))
        return [y * (g - (g * y).sum(axis=axes, keepdims=True))]
