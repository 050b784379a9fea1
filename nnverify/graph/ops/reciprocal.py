"""Reciprocal ``1 / y``: convex and decreasing on ``y > 0``, concave and decreasing on ``y < 0``.

Not piecewise linear: no exact encoding; bounded by the lines of ``interface.Smooth`` on an input interval of
one sign. An interval that holds 0 has no finite bound: the bound passes raise ``UnboundedError`` (the run
answers ``unknown`` naming the op) instead of answering with a wrong or infinite bound. A divisor whose sign the
pipeline proves on the property's region (``bounds/divisors.py``) never gets here: ``lower_smooth`` rewrites its
``1 / y`` to ``k / max(k y, 1)``, bounded on every interval.
"""

from __future__ import annotations

import numpy as np

from nnverify.errors import UnboundedError
from nnverify.graph.ops.base import ActKind, register
from nnverify.graph.ops.interface import ActivationOp, Lines, Smooth, inside, register_activation


def _one_sign(lb: np.ndarray, ub: np.ndarray) -> None:
    """Raise ``UnboundedError`` unless every interval ``[lb, ub]`` lies on one side of 0 (NaN counts as 0)."""
    lb, ub = np.broadcast_arrays(np.asarray(lb, dtype=np.float64), np.asarray(ub, dtype=np.float64))
    straddles = ~((lb > 0.0) | (ub < 0.0))
    if np.any(straddles):
        index = int(np.flatnonzero(straddles.reshape(-1))[0])
        low, high = float(lb.reshape(-1)[index]), float(ub.reshape(-1)[index])
        raise UnboundedError(
            f"Reciprocal (an ONNX Reciprocal or the divisor of a Div) may be 0: its input {index} lies in "
            f"[{low:.6g}, {high:.6g}] and 1/y has no bound there (interval arithmetic on the property's region, "
            "bisected, did not prove its sign)"
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
    notes = "relaxed; unknown when the input's sign is not proved on the region"
