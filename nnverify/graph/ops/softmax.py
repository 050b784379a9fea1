"""Softmax along one axis (normalised exponentials).

Not piecewise linear: a trailing Softmax under a property that only compares outputs with each other is
removed before the analysis (``graph/tail.py``, Softmax keeps order); elsewhere the analysis refuses it.
"""

from __future__ import annotations

import math

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, register


@register
class Softmax(Op):
    """``exp(x_i) / sum_j exp(x_j)`` along ``axis``.

    Opsets before 13 normalise over all axes from ``axis`` on; 13 and later over ``axis`` alone. Both agree
    when the axes after ``axis`` have size 1, the only case supported (the node does not carry its opset).
    """

    op_type = "Softmax"
    notes = "removed at the output when the property compares outputs only (else attack only)"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        axis = int(node.attrs["axis"])
        axis = axis + x.ndim if axis < 0 else axis + 1
        if not 1 <= axis < x.ndim:
            raise ValueError(f"axis {node.attrs['axis']} out of range for rank {x.ndim - 1}")
        if math.prod(x.shape[axis + 1 :]) != 1:
            raise ValueError("Softmax with non-unit axes after 'axis' is not supported (opset-dependent)")
        shifted = np.exp(x - x.max(axis=axis, keepdims=True))
        return shifted / shifted.sum(axis=axis, keepdims=True)

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        y = self.eval(node, xs[0])
        axis = int(node.attrs["axis"])
        axis = axis + y.ndim if axis < 0 else axis + 1
        return [y * (g - (g * y).sum(axis=axis, keepdims=True))]
