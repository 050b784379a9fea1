"""Piecewise-linear elementwise ops: LeakyRelu, PRelu, Abs, Clip, Max and Min.

None is affine or a native activation: ``graph/lowering.py`` rewrites each exactly into affine layers and
ReLUs for the analysis, so bounds, encodings and the search handle them without op-specific code.
"""

from __future__ import annotations

from functools import reduce
from typing import ClassVar

import numpy as np

from nnverify.graph.ops.base import Node, Op, align_ranks, const_value, has_input, register

#: Note shown in the ``nnverify ops`` table for the ops ``graph/lowering.py`` rewrites.
LOWERED_NOTE = "exact: lowered to affine + ReLU"


class Lowered(Op):
    """An op the analysis sees through its exact affine + ReLU lowering (``graph/lowering.py``)."""

    lowered: ClassVar[bool] = True
    notes = LOWERED_NOTE


@register
class LeakyRelu(Lowered):
    """``x`` where ``x >= 0``, else ``alpha * x``."""

    op_type = "LeakyRelu"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        return np.where(x >= 0, x, float(node.attrs["alpha"]) * x)


@register
class PRelu(Lowered):
    """``x`` where ``x >= 0``, else ``slope * x`` (a constant slope, broadcast to ``x``)."""

    op_type = "PRelu"
    notes = f"{LOWERED_NOTE}; constant slope"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x, slope = align_ranks(xs[0], xs[1])
        return np.where(x >= 0, x, slope * x)


@register
class Abs(Lowered):
    """``|x|``."""

    op_type = "Abs"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return np.abs(xs[0])


def clip_limits(node: Node, *xs: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of a Clip node: the inputs 1 and 2 (opset 11+) or the attributes (older opsets)."""
    low = float(const_value(xs[1])) if has_input(node, 1) else float(node.attrs.get("min", -np.inf))
    high = float(const_value(xs[2])) if has_input(node, 2) else float(node.attrs.get("max", np.inf))
    return low, high


@register
class Clip(Lowered):
    """``min(max(x, min), max)``; a ``min`` above ``max`` gives ``max`` everywhere, as in onnxruntime."""

    op_type = "Clip"
    notes = f"{LOWERED_NOTE}; constant min/max"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        low, high = clip_limits(node, *xs)
        return np.minimum(np.maximum(xs[0], low), high)


@register
class Max(Lowered):
    """Elementwise maximum of any number of tensors (broadcast as in ONNX)."""

    op_type = "Max"
    variable_inputs = None

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return reduce(np.maximum, align_ranks(*xs))


@register
class Min(Lowered):
    """Elementwise minimum of any number of tensors (broadcast as in ONNX)."""

    op_type = "Min"
    variable_inputs = None

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return reduce(np.minimum, align_ranks(*xs))
