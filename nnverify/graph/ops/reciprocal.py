"""Reciprocal ``1 / y`` (convex on ``y > 0``, concave on ``y < 0``) and the Softmax denominator ``1 / max(y, 1)``.

Not piecewise linear: no exact encoding; bounded by the lines of ``interface.Smooth`` on an input interval of
one sign. An interval that holds 0 has no finite bound: the bound passes raise ``UnboundedError`` (the run
answers ``unknown`` naming the op) instead of answering with a wrong or infinite bound.
"""

from __future__ import annotations

import numpy as np

from nnverify.errors import UnboundedError
from nnverify.graph.ops.base import ActKind, register
from nnverify.graph.ops.interface import (
    ACTIVATIONS,
    Activation,
    ActivationOp,
    Lines,
    Smooth,
    inside,
    register_activation,
)
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL


def _one_sign(lb: np.ndarray, ub: np.ndarray) -> None:
    """Raise ``UnboundedError`` unless every interval ``[lb, ub]`` lies on one side of 0 (NaN counts as 0)."""
    lb, ub = np.broadcast_arrays(np.asarray(lb, dtype=np.float64), np.asarray(ub, dtype=np.float64))
    straddles = ~((lb > 0.0) | (ub < 0.0))
    if np.any(straddles):
        index = int(np.flatnonzero(straddles.reshape(-1))[0])
        low, high = float(lb.reshape(-1)[index]), float(ub.reshape(-1)[index])
        raise UnboundedError(
            f"Reciprocal (the divisor of a Div, or a Softmax denominator) may be 0: its input {index} lies in "
            f"[{low:.6g}, {high:.6g}] and 1/y has no bound there"
        )


@register_activation
class ReciprocalActivation(Smooth):
    """``1 / y``; ``f' = -1 / y^2 = s`` at ``y = +-sqrt(-1 / s)`` (the sign of the interval)."""

    kind = ActKind.RECIPROCAL
    increasing = False

    def eval(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.reciprocal(np.asarray(x, dtype=np.float64))

    def derivative(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", over="ignore"):
            return -np.reciprocal(np.square(np.asarray(x, dtype=np.float64)))

    def solve_slope(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            root = np.where(s < 0.0, np.sqrt(-1.0 / np.where(s < 0.0, s, -1.0)), np.nan)
        return [inside(np.where(lb > 0.0, root, -root), lb, ub)]

    def interval(self, lb: np.ndarray, ub: np.ndarray, *margins: float) -> tuple[np.ndarray, np.ndarray]:
        _one_sign(lb, ub)
        return super().interval(lb, ub, *margins)

    def relax(self, lb: np.ndarray, ub: np.ndarray, *margins: float) -> Lines:
        """The lines of ``Smooth``; where they are not finite (an infinite end), the interval's constant lines."""
        _one_sign(lb, ub)
        with np.errstate(all="ignore"):  # inf * 0 at an infinite end: replaced below
            lo_s, lo_c, up_s, up_c = super().relax(lb, ub, *margins)
        lo, hi = self.interval(lb, ub, *margins)
        bad = ~(np.isfinite(lo_s) & np.isfinite(lo_c) & np.isfinite(up_s) & np.isfinite(up_c))
        zero = np.zeros_like(lo)
        return np.where(bad, zero, lo_s), np.where(bad, lo, lo_c), np.where(bad, zero, up_s), np.where(bad, hi, up_c)


@register
class Reciprocal(ActivationOp):
    """``1 / x`` elementwise (ONNX Reciprocal); also what a Div by a variable and a Softmax are lowered to."""

    op_type = "Reciprocal"
    activation = ActKind.RECIPROCAL
    notes = "relaxed; unknown when the input's bounds hold 0"


@register_activation
class ReciprocalMax1Activation(Activation):
    """``1 / max(y, 1)``: nonincreasing, bounded on every interval. ``lowering_smooth`` uses it for a Softmax
    denominator ``sum_j exp(x_j - x_i) >= 1``, where it equals ``1 / y`` but loose bounds holding 0 do no harm.

    On ``[l, u]`` with ``l < 1 < u``: the upper line is the chord over ``[1, u]`` (above ``1`` left of 1) or the
    constant 1, whichever is lower at the middle ``m``; the lower line the tangent at ``t = max(m, 1 + sqrt(1 -
    l))`` (from ``1 + sqrt(1 - l)`` on its value at ``l`` is at most 1) when ``t <= u``, else the constant
    ``1 / u``; intercepts widened as in ``Smooth``.
    """

    kind = ActKind.RECIPROCAL_MAX1

    def eval(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / np.maximum(np.asarray(x, dtype=np.float64), 1.0)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.where(x > 1.0, -1.0 / np.square(np.maximum(x, 1.0)), 0.0)

    def slope_bound(self, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
        return np.where(ub > 1.0, 1.0 / np.square(np.maximum(lb, 1.0)), 0.0)

    def interval(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.eval(ub), self.eval(lb)
        return lo - (margin_rel * hi + margin_abs), hi + (margin_rel * hi + margin_abs)

    def relax(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> Lines:
        lb, ub = np.broadcast_arrays(np.asarray(lb, dtype=np.float64), np.asarray(ub, dtype=np.float64))
        right = lb >= 1.0
        inner = ACTIVATIONS[ActKind.RECIPROCAL].relax(
            np.where(right, lb, 1.0), np.where(right, ub, 2.0), margin_rel, margin_abs
        )
        hi_u = np.maximum(ub, 1.0)
        chord_s, chord_c = -1.0 / hi_u, 1.0 + 1.0 / hi_u
        use_chord = (lb + ub) / 2.0 > 1.0
        up_s, up_c = np.where(use_chord, chord_s, 0.0), np.where(use_chord, chord_c, 1.0)
        t = np.maximum(1.0 + np.sqrt(np.maximum(1.0 - lb, 0.0)), (lb + ub) / 2.0)  # the middle, if valid there
        tangent = t <= ub
        lo_s, lo_c = np.where(tangent, -1.0 / np.square(t), 0.0), np.where(tangent, 2.0 / t, 1.0 / hi_u)
        with np.errstate(invalid="ignore"):  # an infinite end: replaced by constant lines below
            xmag = np.maximum(np.abs(lb), np.abs(ub))
            lo_c = lo_c - (margin_rel * (1.0 + np.abs(lo_s) * xmag + np.abs(lo_c)) + margin_abs)
            up_c = up_c + (margin_rel * (1.0 + np.abs(up_s) * xmag + np.abs(up_c)) + margin_abs)
        lines = [np.where(right, a, b) for a, b in zip(inner, (lo_s, lo_c, up_s, up_c), strict=True)]
        lo, hi = self.interval(lb, ub, margin_rel, margin_abs)
        bad = ~np.all([np.isfinite(v) for v in lines], axis=0)
        zero = np.zeros_like(lo)
        return tuple(np.where(bad, c, v) for v, c in zip(lines, (zero, lo, zero, hi), strict=True))  # type: ignore[return-value]


@register
class ReciprocalMax1(ActivationOp):
    """``1 / max(x, 1)``: not an ONNX op; the Softmax lowering's denominator (``graph/lowering_smooth.py``)."""

    op_type = "nnverify.ReciprocalMax1"
    activation = ActKind.RECIPROCAL_MAX1
    notes = "internal (Softmax lowering), relaxed"
