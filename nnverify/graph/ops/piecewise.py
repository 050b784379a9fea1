"""Piecewise-linear elementwise ops: LeakyRelu, PRelu, Abs, Clip, Max and Min.

None is affine or a native activation: ``graph/lowering.py`` rewrites each exactly into affine layers and
ReLUs for the analysis, so bounds, encodings and the search handle them without op-specific code.
"""

from __future__ import annotations

from functools import reduce
from typing import ClassVar

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, align_ranks, const_value, has_input, register
from nnverify.graph.ops.pullback import first, unbroadcast

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

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return first(xs, g * np.where(xs[0] >= 0, 1.0, float(node.attrs["alpha"])))


@register
class PRelu(Lowered):
    """``x`` where ``x >= 0``, else ``slope * x`` (a constant slope, broadcast to ``x``)."""

    op_type = "PRelu"
    notes = f"{LOWERED_NOTE}; constant slope"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x, slope = align_ranks(xs[0], xs[1])
        return np.where(x >= 0, x, slope * x)

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        x, slope = align_ranks(xs[0], xs[1])
        return first(xs, unbroadcast(g * np.where(x >= 0, 1.0, slope), xs[0].shape))


@register
class Abs(Lowered):
    """``|x|``."""

    op_type = "Abs"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return np.abs(xs[0])

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return first(xs, g * np.sign(xs[0]))


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

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """``g`` inside the clip range, 0 outside (and at its ends)."""
        low, high = clip_limits(node, *xs)
        return first(xs, g * ((xs[0] > low) & (xs[0] < high)))


def _extreme_vjp(op: Op, xs: Tensors, g: np.ndarray, variable: Flags, reached: np.ndarray) -> Parts:
    """``g`` to the first input that reaches the extreme ``reached`` at each entry (a subgradient at ties)."""
    aligned = align_ranks(*xs)
    free = np.ones(np.broadcast_shapes(g.shape, reached.shape), dtype=bool)
    out: Parts = []
    for x, a, want in zip(xs, aligned, op.wanted(xs, variable), strict=True):
        hit = free & (a == reached)
        free &= ~hit
        out.append(unbroadcast(g * hit, x.shape) if want else None)
    return out


@register
class Max(Lowered):
    """Elementwise maximum of any number of tensors (broadcast as in ONNX)."""

    op_type = "Max"
    variable_inputs = None

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return reduce(np.maximum, align_ranks(*xs))

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return _extreme_vjp(self, xs, g, variable, self.eval(node, *xs))


@register
class Min(Lowered):
    """Elementwise minimum of any number of tensors (broadcast as in ONNX)."""

    op_type = "Min"
    variable_inputs = None

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return reduce(np.minimum, align_ranks(*xs))

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return _extreme_vjp(self, xs, g, variable, self.eval(node, *xs))
