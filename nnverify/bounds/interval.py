"""Interval bound propagation over a ``LayerGraph``, batched over many input boxes.

Soundness in floating point: every affine layer's bounds are widened outward by
``margin_rel * (|W| |x|max + |b|) + margin_abs`` (``Options.bound_margin_rel/abs``), which dominates the
rounding error of a float64 dot product (at most ``n * 2^-53`` relative to ``sum |w_i x_i|`` for ``n``
terms, i.e. < 1e-12 for the layer widths we meet) and the float32 -> float64 conversion of the weights
is exact. The margin therefore makes the computed bounds contain the bounds of the network evaluated in
exact real arithmetic; ``tests/bounds/test_interval.py`` has a network on which dropping it gives a wrong
proof. This module does not decide anything; ``verify`` uses the bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL


@dataclass(frozen=True, slots=True)
class Bounds:
    """Per layer, lower and upper bounds of shape ``(B, size)`` (one row per input box)."""

    lb: list[np.ndarray]
    ub: list[np.ndarray]

    def box(self, b: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The bounds of box ``b`` alone, per layer ``(size,)``."""
        return [v[b] for v in self.lb], [v[b] for v in self.ub]


def affine_interval(
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
    layer: AffineLayer,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> tuple[np.ndarray, np.ndarray]:
    """Sound interval image of an affine layer given the bounds of its sources (batched)."""
    mid = np.broadcast_to(layer.bias, (lbs[0].shape[0], layer.size)).copy()
    rad = np.zeros_like(mid)
    scale = np.broadcast_to(np.abs(layer.bias), mid.shape).copy()
    for lb, ub, w, abs_w in zip(lbs, ubs, layer.weights, layer.abs_weights, strict=True):
        abs_w_t = abs_w.T
        center = (lb + ub) / 2.0
        half = (ub - lb) / 2.0
        mid += center @ w.T
        rad += half @ abs_w_t
        scale += np.maximum(np.abs(lb), np.abs(ub)) @ abs_w_t
    slack = margin_rel * scale + margin_abs
    return mid - rad - slack, mid + rad + slack


def activation_interval(
    layer: ActivationLayer,
    lb: np.ndarray,
    ub: np.ndarray,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> tuple[np.ndarray, np.ndarray]:
    """Sound interval image of an activation: ReLU's is exact (no rounding involved), the others come from
    their ``Activation.interval`` (end points and critical points, widened by the margin where ``f`` rounds)."""
    if layer.kind is ActKind.RELU:
        return np.maximum(lb, 0.0), np.maximum(ub, 0.0)
    return layer.act.interval(lb, ub, margin_rel, margin_abs)


def interval_bounds(
    graph: LayerGraph,
    lb: np.ndarray,
    ub: np.ndarray,
    *,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> Bounds:
    """Bounds of every layer over the boxes ``lb <= x <= ub`` (each ``(B, n)`` or ``(n,)``)."""
    lb = np.atleast_2d(np.asarray(lb, dtype=np.float64))
    ub = np.atleast_2d(np.asarray(ub, dtype=np.float64))
    lbs: list[np.ndarray] = []
    ubs: list[np.ndarray] = []
    for layer in graph.layers:
        if isinstance(layer, InputLayer):
            lo, hi = lb, ub
        elif isinstance(layer, AffineLayer):
            src_lb = [lbs[s] for s in layer.sources]
            src_ub = [ubs[s] for s in layer.sources]
            lo, hi = affine_interval(src_lb, src_ub, layer, margin_rel, margin_abs)
        else:
            lo, hi = activation_interval(layer, lbs[layer.source], ubs[layer.source], margin_rel, margin_abs)
        lbs.append(lo)
        ubs.append(hi)
    return Bounds(lbs, ubs)


def rows_lower_bound(
    a_x: np.ndarray,
    a_y: np.ndarray,
    b: np.ndarray,
    x_lb: np.ndarray,
    x_ub: np.ndarray,
    y_lb: np.ndarray,
    y_ub: np.ndarray,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> np.ndarray:
    """Sound lower bound of ``a_x x + a_y y - b`` per row and box: ``(B, k)``.

    A positive entry proves that row cannot hold anywhere in the box, so the disjunct is infeasible there.
    """
    lo = np.zeros((x_lb.shape[0], b.shape[0]))
    scale = np.broadcast_to(np.abs(b), lo.shape).copy()
    for a, vl, vu in ((a_x, x_lb, x_ub), (a_y, y_lb, y_ub)):
        pos, neg = np.maximum(a, 0.0), np.minimum(a, 0.0)
        lo += vl @ pos.T + vu @ neg.T
        scale += np.maximum(np.abs(vl), np.abs(vu)) @ np.abs(a).T
    return lo - b - margin_rel * scale - margin_abs
