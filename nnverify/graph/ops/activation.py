"""Piecewise linear activations: Relu and Sign (exact: the MILP encodings model them without error).

Each op has its ``Activation`` object (``interface.py``); the bounds keep ReLU's specialised fast paths.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnverify.graph.ops.base import ActKind, Flags, Node, Op, Parts, Step, Tensors, register
from nnverify.graph.ops.interface import Activation, Lines, register_activation
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL


@register
class Relu(Op):
    """``max(x, 0)``."""

    op_type = "Relu"
    activation = ActKind.RELU

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return np.maximum(xs[0], 0)

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return [g * (xs[0] > 0)]


@register
class Sign(Op):
    """``-1, 0, 1`` by the sign of ``x`` (as in ONNX, ``sign(0) = 0``)."""

    op_type = "Sign"
    activation = ActKind.SIGN

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return np.sign(xs[0])

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """``step``: zero (``EXACT``), straight-through, or straight-through weighted by how near the input is to
        0 compared with its spread over the batch (``exp(-(x / 2 sd)^2)``, ``WINDOW``): an input far from 0 for
        every point of the box's batch is unlikely to flip."""
        x = xs[0]
        if step == Step.EXACT:
            return [np.zeros(np.broadcast_shapes(g.shape, x.shape))]
        if step == Step.STRAIGHT or x.shape[0] < 2:
            return [g]
        spread = 2.0 * x.std(axis=0, keepdims=True) + 1e-12
        return [g * np.exp(-((x / spread) ** 2))]


@register_activation
class ReluActivation(Activation):
    """ReLU: monotone, exact interval; the triangle relaxation with CROWN's adaptive lower slope."""

    kind = ActKind.RELU
    exact = True

    def eval(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        return (x > 0.0).astype(np.float64)

    def slope_bound(self, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
        return (ub > 0.0).astype(np.float64)

    def interval(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> tuple[np.ndarray, np.ndarray]:
        return np.maximum(lb, 0.0), np.maximum(ub, 0.0)

    def relax(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> Lines:
        unstable = (lb < 0.0) & (ub > 0.0)
        up_s = np.where(lb >= 0.0, 1.0, np.where(unstable, ub / np.where(unstable, ub - lb, 1.0), 0.0))
        # the intercept -s * lb rounds; widen it like any other float64 bound
        up_c = np.where(unstable, -up_s * lb, 0.0)
        up_c = np.where(unstable, up_c + margin_rel * np.abs(up_c) + margin_abs, 0.0)
        lo_s = np.where(lb >= 0.0, 1.0, np.where(unstable, (ub > -lb).astype(np.float64), 0.0))
        return lo_s, np.zeros_like(lb), up_s, up_c

    def encode(self, problem: Any, x: int, y: int) -> None:
        problem.add_relu(x, y)


@register_activation
class SignActivation(Activation):
    """Sign: monotone step, exact interval; constant lines (its gradient is zero almost everywhere)."""

    kind = ActKind.SIGN
    exact = True

    def eval(self, x: np.ndarray) -> np.ndarray:
        return np.sign(x)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        return np.zeros_like(x)

    def slope_bound(self, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
        return np.zeros_like(lb)

    def interval(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> tuple[np.ndarray, np.ndarray]:
        return np.sign(lb), np.sign(ub)

    def relax(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> Lines:
        zero = np.zeros_like(lb)
        return zero, np.sign(lb), zero.copy(), np.sign(ub)

    def encode(self, problem: Any, x: int, y: int) -> None:
        problem.add_sign(x, y)
