"""The activation interface the analysis stages ask (bounds, search, encodings), and its registry.

One ``Activation`` object per ``ActKind``: concrete semantics, sound interval bounds, lower and upper lines
valid on an input interval, derivative information for gradients and split heuristics, and, for the piecewise
linear ones, an exact encoding. ``Smooth`` derives all of it from ``f``, ``f'`` and a solver of ``f'(x) = s``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from nnverify.graph.ops.base import ActKind, Flags, Node, Op, Parts, Step, Tensors
from nnverify.graph.ops.pullback import first
from nnverify.graph.ops.registry import LazyRegistry
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL

#: Per element ``(lo_slope, lo_icpt, up_slope, up_icpt)``: ``lo_slope x + lo_icpt <= f(x) <= up_slope x + up_icpt``.
Lines = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class Activation:
    """One elementwise activation as the analysis sees it (all arrays float64, any shape, elementwise).

    Class attributes:
        kind: The ``ActKind`` this object implements.
        exact: True if piecewise linear: an exact MILP encoding exists (``encode``), so a search may hand a
            box to an exact backend. False: only the relaxation exists, boxes are decided by splitting.
    """

    kind: ClassVar[ActKind]
    exact: ClassVar[bool] = False

    def eval(self, x: np.ndarray) -> np.ndarray:
        """Concrete semantics (float64, batched)."""
        raise NotImplementedError

    def derivative(self, x: np.ndarray) -> np.ndarray:
        """``f'(x)`` (0 where undefined): the gradient a point's attack steps along."""
        raise NotImplementedError

    def slope_bound(self, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
        """About ``max |f'|`` on ``[lb, ub]``: a split heuristic's weight, never used for soundness."""
        raise NotImplementedError

    def interval(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sound bounds of ``f`` over ``[lb, ub]`` in real arithmetic."""
        raise NotImplementedError

    def relax(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> Lines:
        """Lower and upper lines valid on ``[lb, ub]`` in real arithmetic (see ``Lines``)."""
        raise NotImplementedError

    def encode(self, problem: Any, x: int, y: int) -> None:
        """Add ``y = f(x)`` exactly to an ``encode.problem.Problem`` (exact activations only)."""
        raise NotImplementedError(f"{self.kind.value} has no exact encoding")


#: ActKind -> its activation object. Filled by ``@register_activation`` as the op modules are imported (a kind
#: not yet there loads them all: ``registry.py``).
ACTIVATIONS: dict[ActKind, Activation] = LazyRegistry()


def register_activation(cls: type[Activation]) -> type[Activation]:
    """Class decorator adding an activation to ``ACTIVATIONS``; a duplicate kind fails at import."""
    registry: LazyRegistry[ActKind, Activation] = ACTIVATIONS  # type: ignore[assignment]
    registry.add(cls.kind, cls(), "activation")
    return cls


def inside(x: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """``x`` where it lies in ``[lb, ub]``, NaN elsewhere (candidate points outside the interval drop out)."""
    return np.where((x >= lb) & (x <= ub), x, np.nan)


class Smooth(Activation):
    """A differentiable activation relaxed by lines whose intercepts are exact extremes.

    For a slope ``s`` the best intercepts are the maximum and minimum of ``g(x) = f(x) - s x`` over
    ``[lb, ub]``, reached at an end point or where ``f'(x) = s`` (``solve_slope``). ``relax`` tries a few
    slopes (the chord, tangents at five points), keeps per element the upper line lowest at the interval's
    middle and the lower line highest there (the least area between line and curve), then widens the
    intercepts by ``margin_rel * M + margin_abs`` with ``M = max|f| + |s| max(|lb|, |ub|) + |icpt|``: the
    float64 values of ``exp``, ``tanh``, ``sin`` ... are within a few ulps (1e-15 relative) of the real ones, the
    products and sums add as much again, and a critical point found with error ``d`` changes ``g`` by
    ``O(d^2)`` only (``g' = 0`` there); ``margin_rel`` (1e-9) covers all of it by six orders of magnitude.
    """

    #: True if ``f`` is nondecreasing (its interval is read off the end points).
    increasing: ClassVar[bool] = True
    #: Points where ``|f'|`` peaks (inflection points), for ``slope_bound``.
    peaks: ClassVar[tuple[float, ...]] = ()

    def solve_slope(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        """Points of ``[lb, ub]`` where ``f'(x) = s``, as arrays shaped like ``s`` (NaN: no such point)."""
        raise NotImplementedError

    def slope_bound(self, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            pts = [lb, ub, (lb + ub) / 2.0, *(np.clip(p, lb, ub) for p in self.peaks)]
            return np.nan_to_num(np.max([np.abs(self.derivative(p)) for p in pts], axis=0), posinf=1e300)

    def interval(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(all="ignore"):
            pts = [lb, ub] if self.increasing else [lb, ub, *self.solve_slope(np.zeros_like(lb), lb, ub)]
            vals = [self.eval(p) for p in pts]
        lo, hi = np.fmin.reduce(vals), np.fmax.reduce(vals)
        pad = margin_rel * np.maximum(np.abs(lo), np.abs(hi)) + margin_abs
        return lo - pad, hi + pad

    def _offsets(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Min and max of ``f(x) - s x`` over ``[lb, ub]``, and the largest ``|f|`` met."""
        pts = [lb, ub, *self.solve_slope(s, lb, ub)]
        vals = [self.eval(p) for p in pts]
        g = [v - s * p for v, p in zip(vals, pts, strict=True)]
        return np.fmin.reduce(g), np.fmax.reduce(g), np.fmax.reduce([np.abs(v) for v in vals])

    def relax(
        self, lb: np.ndarray, ub: np.ndarray, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> Lines:
        with np.errstate(all="ignore"):
            width = ub - lb
            mid = (lb + ub) / 2.0
            chord = (self.eval(ub) - self.eval(lb)) / np.where(width > 0.0, width, 1.0)
            chord = np.where(width > 0.0, chord, self.derivative(lb))
            chord = np.where(np.isfinite(chord), chord, 0.0)
            best: list[np.ndarray] = []
            for k, t in enumerate((None, 0.0, 0.25, 0.5, 0.75, 1.0)):
                s = chord if t is None else self.derivative(lb + t * width)
                s = np.where(np.isfinite(s), s, chord)
                gmin, gmax, fmag = self._offsets(s, lb, ub)
                lo_val, up_val = s * mid + gmin, s * mid + gmax
                if k == 0:
                    best = [s, gmin, s, gmax, lo_val, up_val, fmag, fmag]
                    continue
                lo_better = np.isfinite(lo_val) & (lo_val > best[4])
                up_better = np.isfinite(up_val) & (up_val < best[5])
                for i, new, take in (
                    (0, s, lo_better),
                    (1, gmin, lo_better),
                    (4, lo_val, lo_better),
                    (6, fmag, lo_better),
                    (2, s, up_better),
                    (3, gmax, up_better),
                    (5, up_val, up_better),
                    (7, fmag, up_better),
                ):
                    best[i] = np.where(take, new, best[i])
        xmag = np.maximum(np.abs(lb), np.abs(ub))
        lo_s, lo_c, up_s, up_c = best[0], best[1], best[2], best[3]
        lo_c = lo_c - (margin_rel * (best[6] + np.abs(lo_s) * xmag + np.abs(lo_c)) + margin_abs)
        up_c = up_c + (margin_rel * (best[7] + np.abs(up_s) * xmag + np.abs(up_c)) + margin_abs)
        return lo_s, lo_c, up_s, up_c


def activation(kind: ActKind) -> Activation:
    """The registered activation object of ``kind``."""
    return ACTIVATIONS[kind]


class ActivationOp(Op):
    """An ONNX op that is one registered activation applied elementwise to input 0 (its ``eval``)."""

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        assert self.activation is not None
        return ACTIVATIONS[self.activation].eval(np.asarray(xs[0], dtype=np.float64))

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        assert self.activation is not None
        with np.errstate(all="ignore"):
            slope = ACTIVATIONS[self.activation].derivative(np.asarray(xs[0], dtype=np.float64))
        return first(xs, g * np.nan_to_num(slope, nan=0.0, posinf=0.0, neginf=0.0))
