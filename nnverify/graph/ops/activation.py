"""Elementwise activations the analysis understands: Relu and Sign (not affine).

Bounds and encodings treat them through ``ActKind``; ``eval`` is the concrete semantics.
"""

from __future__ import annotations

import numpy as np

from nnverify.graph.ops.base import ActKind, Node, Op, register


@register
class Relu(Op):
    """``max(x, 0)``."""

    op_type = "Relu"
    activation = ActKind.RELU

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return np.maximum(xs[0], 0)


@register
class Sign(Op):
    """``-1, 0, 1`` by the sign of ``x`` (as in ONNX, ``sign(0) = 0``)."""

    op_type = "Sign"
    activation = ActKind.SIGN

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return np.sign(xs[0])
