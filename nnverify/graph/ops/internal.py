"""Internal activations of the relaxed lowering (``graph/lowering_smooth.py``), not ONNX operators.

``nnverify.ExpCap`` is ``exp(min(x, CAP))`` and ``nnverify.ReciprocalMax1`` is ``1 / max(y, 1)``: a Softmax is
lowered to ``1 / max(sum_j exp_cap(x_j - x_i), 1)``, bounded by finite numbers on every input interval (a plain
``exp`` of a loose gap overflows to inf, and ``inf * 0`` turns the bound passes' numbers into NaN).
"""

from __future__ import annotations

import math

import numpy as np

from nnverify.graph.ops.base import ActKind, register
from nnverify.graph.ops.interface import ACTIVATIONS, Activation, ActivationOp, Lines, register_activation
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL

#: Where ``exp`` is capped: ``e^600`` (about 3.8e260) leaves room for sums of any realistic number of terms.
CAP = 600.0
#: ``e^-CAP``: how far a capped Softmax denominator's reciprocal can lie above the true one.
CAP_GAP = math.exp(-CAP)


def _finite_or_constant(lines: list[np.ndarray], lo: np.ndarray, hi: np.ndarray) -> Lines:
    """``lines``, with constant lines at ``lo`` and ``hi`` wherever one of them is not finite (an infinite end)."""
    bad = ~np.all([np.isfinite(v) for v in lines], axis=0)
    zero = np.zeros_like(lo)
    out = [np.where(bad, c, v) for v, c in zip(lines, (zero, lo, zero, hi), strict=True)]
    return out[0], out[1], out[2], out[3]


@register_activation
class ExpCapActivation(Activation):
    """``exp(min(x, CAP))``: nondecreasing, convex up to ``CAP``, then constant.

    On ``[l, u]`` with ``l < CAP < u``: the upper line is the chord over ``[l, CAP]`` (above ``e^CAP`` right of it)
    or the constant ``e^CAP``, whichever is lower at the middle ``m``; the lower line the tangent at
    ``p = min(m, CAP)`` where its value at ``u`` stays below ``e^CAP``, else the constant ``e^l``.
    """

    kind = ActKind.EXP_CAP

    def eval(self, x: np.ndarray) -> np.ndarray:
        return np.exp(np.minimum(np.asarray(x, dtype=np.float64), CAP))

    def derivative(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.where(x < CAP, self.eval(x), 0.0)

    def slope_bound(self, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
        return self.eval(ub)

    def interval(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.eval(lb), self.eval(ub)
        return lo - (margin_rel * lo + margin_abs), hi + (margin_rel * hi + margin_abs)

    def relax(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> Lines:
        lb, ub = np.broadcast_arrays(np.asarray(lb, dtype=np.float64), np.asarray(ub, dtype=np.float64))
        below, above = ub <= CAP, lb >= CAP
        inner = ACTIVATIONS[ActKind.EXP].relax(
            np.where(below, lb, 0.0), np.where(below, ub, 1.0), margin_rel, margin_abs
        )
        top, e_l = math.exp(CAP), self.eval(lb)
        with np.errstate(all="ignore"):  # infinite ends: replaced by constant lines below
            mid = (lb + ub) / 2.0
            chord_s = (top - e_l) / (CAP - lb)
            use_chord = mid < CAP
            up_s, up_c = np.where(use_chord, chord_s, 0.0), np.where(use_chord, top - chord_s * CAP, top)
            p = np.minimum(mid, CAP)
            e_p = np.exp(p)
            tangent = e_p * (1.0 + ub - p) <= top
            lo_s, lo_c = np.where(tangent, e_p, 0.0), np.where(tangent, e_p * (1.0 - p), e_l)
            xmag = np.maximum(np.abs(lb), np.abs(ub))
            lo_c = lo_c - (margin_rel * (top + np.abs(lo_s) * xmag + np.abs(lo_c)) + margin_abs)
            up_c = up_c + (margin_rel * (top + np.abs(up_s) * xmag + np.abs(up_c)) + margin_abs)
        straddle = [lo_s, lo_c, up_s, up_c]
        pad = margin_rel * top + margin_abs
        flat = [np.zeros_like(lb), np.full_like(lb, top - pad), np.zeros_like(lb), np.full_like(lb, top + pad)]
        lines = [np.where(below, a, np.where(above, f, s)) for a, f, s in zip(inner, flat, straddle, strict=True)]
        return _finite_or_constant(lines, *self.interval(lb, ub, margin_rel, margin_abs))


@register_activation
class ReciprocalMax1Activation(Activation):
    """``1 / max(y, 1)``: nonincreasing, bounded on every interval. ``lowering_smooth`` uses it for a Softmax
    denominator ``T = sum_j exp_cap(x_j - x_i) >= 1``, where it equals ``1 / T`` but loose bounds holding 0 do no
    harm. Its lower bounds are also lowered by ``CAP_GAP``: with the true sum ``S >= T``, ``1 / max(S, 1)`` differs
    from ``1 / max(T, 1)`` only when a term was capped, and then both lie in ``[0, e^-CAP]``.

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
        return lo - (margin_rel * hi + margin_abs + CAP_GAP), hi + (margin_rel * hi + margin_abs)

    def relax(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> Lines:
        lb, ub = np.broadcast_arrays(np.asarray(lb, dtype=np.float64), np.asarray(ub, dtype=np.float64))
        right = lb >= 1.0
        inner = ACTIVATIONS[ActKind.RECIPROCAL].relax(
            np.where(right, lb, 1.0), np.where(right, ub, 2.0), margin_rel, margin_abs
        )
        with np.errstate(all="ignore"):  # huge or infinite ends: constant lines below where not finite
            hi_u = np.maximum(ub, 1.0)
            chord_s, chord_c = -1.0 / hi_u, 1.0 + 1.0 / hi_u
            use_chord = (lb + ub) / 2.0 > 1.0
            up_s, up_c = np.where(use_chord, chord_s, 0.0), np.where(use_chord, chord_c, 1.0)
            t = np.maximum(1.0 + np.sqrt(np.maximum(1.0 - lb, 0.0)), (lb + ub) / 2.0)  # the middle, if valid there
            tangent = t <= ub
            lo_s, lo_c = np.where(tangent, -1.0 / np.square(t), 0.0), np.where(tangent, 2.0 / t, 1.0 / hi_u)
            xmag = np.maximum(np.abs(lb), np.abs(ub))
            lo_c = lo_c - (margin_rel * (1.0 + np.abs(lo_s) * xmag + np.abs(lo_c)) + margin_abs)
            up_c = up_c + (margin_rel * (1.0 + np.abs(up_s) * xmag + np.abs(up_c)) + margin_abs)
        lines = [np.where(right, a, b) for a, b in zip(inner, (lo_s, lo_c, up_s, up_c), strict=True)]
        lines[1] = lines[1] - CAP_GAP
        return _finite_or_constant(lines, *self.interval(lb, ub, margin_rel, margin_abs))


@register
class ReciprocalMax1(ActivationOp):
    """``1 / max(x, 1)``: not an ONNX op; the Softmax lowering's denominator (``graph/lowering_smooth.py``)."""

    op_type = "nnverify.ReciprocalMax1"
    activation = ActKind.RECIPROCAL_MAX1
    notes = "internal (Softmax lowering), relaxed"


@register
class ExpCap(ActivationOp):
    """``exp(min(x, CAP))``: not an ONNX op; the Softmax lowering's exponentials (``graph/lowering_smooth.py``)."""

    op_type = "nnverify.ExpCap"
    activation = ActKind.EXP_CAP
    notes = "internal (Softmax lowering), relaxed"
