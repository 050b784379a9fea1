"""Elementwise arithmetic: Add, Sub, Mul, Div, Neg, Sum, Mean and the identity-like Identity and Dropout.

All are affine as long as products and quotients have a constant on one side (the analysis lowers the others
first: ``graph/lowering_smooth.py``); operands of different ranks broadcast as in ONNX (see ``align_ranks``).
"""

from __future__ import annotations

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, align_ranks, const_value, has_input, register
from nnverify.graph.ops.pullback import first, unbroadcast


def _sums(op: Op, xs: Tensors, g: np.ndarray, variable: Flags, signs: list[float]) -> Parts:
    """The adjoint of ``sum_k signs[k] * xs[k]`` (broadcast): each wanted input gets its sign times ``g``,
    summed over the axes it was broadcast along."""
    wanted = op.wanted(xs, variable)
    return [unbroadcast(sign * g, x.shape) if w else None for x, w, sign in zip(xs, wanted, signs, strict=True)]


@register
class Add(Op):
    """Sum of two tensors (either or both may be variable, e.g. a residual connection)."""

    op_type = "Add"
    affine = True
    nonnegative = True
    variable_inputs = None

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        a, b = align_ranks(xs[0], xs[1])
        return a + b

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return _sums(self, xs, g, variable, [1.0, 1.0])


@register
class Sub(Op):
    """Difference of two tensors (either or both may be variable)."""

    op_type = "Sub"
    affine = True
    variable_inputs = None

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        a, b = align_ranks(xs[0], xs[1])
        return a - b

    def abs_eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        a, b = align_ranks(xs[0], xs[1])
        return a + b

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return _sums(self, xs, g, variable, [1.0, -1.0])


@register
class Mul(Op):
    """Product; affine with a constant factor on either side. Two variable factors are not affine: the analysis
    lowers them to squares first (``graph/lowering_smooth.py``) and never reads this node as a matrix."""

    op_type = "Mul"
    affine = True
    variable_inputs = None
    notes = "two variable factors relaxed as ((x + y)^2 - (x - y)^2) / 4"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        a, b = align_ranks(xs[0], xs[1])
        return a * b

    def abs_eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return self.eval(node, *xs)  # the constant factor arrives as its absolute value

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """Also the product rule when both factors are variable (the attack's gradient)."""
        a, b = align_ranks(xs[0], xs[1])
        wanted = self.wanted(xs, variable)
        return [
            unbroadcast(g * b, xs[0].shape) if wanted[0] else None,
            unbroadcast(g * a, xs[1].shape) if wanted[1] else None,
        ]


@register
class Div(Op):
    """Quotient (integer operands divide with truncation, as in ONNX); affine with a constant divisor. A variable
    divisor is lowered to a Reciprocal first (``graph/lowering_smooth.py``)."""

    op_type = "Div"
    affine = True
    variable_inputs = None
    notes = "variable divisor relaxed as x * (1 / y)"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        a, b = align_ranks(xs[0], xs[1])
        if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
            return np.trunc(a / b).astype(np.int64)
        return a / b

    def abs_eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return self.eval(node, *xs)  # the constant factor arrives as its absolute value

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """``g / b`` to the dividend; ``-g a / b^2`` to a variable divisor (the attack's gradient)."""
        a, b = align_ranks(xs[0], xs[1])
        wanted = self.wanted(xs, variable)
        with np.errstate(divide="ignore", invalid="ignore"):
            return [
                unbroadcast(g / b, xs[0].shape) if wanted[0] else None,
                unbroadcast(-g * a / (b * b), xs[1].shape) if wanted[1] else None,
            ]


@register
class Neg(Op):
    """``-x``."""

    op_type = "Neg"
    affine = True

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return -xs[0]

    def abs_eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return xs[0]

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return [-g]


@register
class Identity(Op):
    """``x`` unchanged."""

    op_type = "Identity"
    affine = True
    nonnegative = True

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return xs[0]

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return [g]


@register
class Dropout(Op):
    """Inference-mode dropout: the identity on the data (the optional mask output is not supported)."""

    op_type = "Dropout"
    affine = True
    nonnegative = True
    notes = "inference mode (identity)"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        if has_input(node, 2) and bool(const_value(xs[2]).reshape(-1)[0]):
            raise ValueError("training_mode is true (random dropout); only inference mode is supported")
        return xs[0]

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return first(xs, g)


@register
class Sum(Op):
    """Elementwise sum of any number of tensors (broadcast as in ONNX)."""

    op_type = "Sum"
    affine = True
    nonnegative = True
    variable_inputs = None

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        aligned = align_ranks(*xs)
        return sum(aligned[1:], start=aligned[0])

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return _sums(self, xs, g, variable, [1.0] * len(xs))


@register
class Mean(Op):
    """Elementwise mean of any number of tensors (broadcast as in ONNX)."""

    op_type = "Mean"
    affine = True
    nonnegative = True
    variable_inputs = None

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        aligned = align_ranks(*xs)
        return sum(aligned[1:], start=aligned[0]) / len(xs)

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return _sums(self, xs, g, variable, [1.0 / len(xs)] * len(xs))
