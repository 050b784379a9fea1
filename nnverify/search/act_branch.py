"""Branching for activation splitting: a BaBSR-like score generalised to any activation (coefficient times the
relaxation gap a split removes), at 0 or the middle; heuristic only, nothing here is sound or unsound."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.bounds.backward import LayerBounds, back_through
from nnverify.graph.layers import ActivationLayer, AffineLayer, LayerGraph
from nnverify.graph.ops.interface import Activation

#: Points of an interval (as fractions of its width) where the gap between curve and line is sampled.
_GAP_POINTS = np.array([0.0, 0.125, 0.25, 0.5, 0.75, 0.875, 1.0])


@dataclass(frozen=True, slots=True)
class Choice:
    """Per domain and candidate ``(B, count)``: the pre-activation layer and neuron to split, the split point,
    and its score (0 where no neuron can be split: every interval is a point or no row depends on it)."""

    layer: np.ndarray
    neuron: np.ndarray
    point: np.ndarray
    score: np.ndarray


def output_coefficients(graph: LayerGraph, bounds: LayerBounds, seed: np.ndarray) -> dict[int, np.ndarray]:
    """Per activation layer ``j``, the coefficients ``(B, K, size)`` of its output in the rows ``seed``
    ``(B, K, m)`` of the network's output, pushed back along the lower line where a coefficient is positive
    and the upper line where it is negative (the lines CROWN's bound uses)."""
    lam: dict[int, np.ndarray] = {graph.output: seed}
    out: dict[int, np.ndarray] = {}
    for j in range(graph.output, 0, -1):
        if j not in lam:
            continue
        coef = lam.pop(j)
        layer = graph.layers[j]
        parts: list[tuple[int, np.ndarray]] = []
        if isinstance(layer, AffineLayer):
            parts = [(src, back_through(layer, i, coef)) for i, src in enumerate(layer.sources)]
        elif isinstance(layer, ActivationLayer):
            out[j] = coef
            with np.errstate(all="ignore"):
                lo_s, _, up_s, _ = layer.act.relax(bounds.lb[layer.source], bounds.ub[layer.source])
            parts = [
                (layer.source, np.maximum(coef, 0.0) * lo_s[:, None, :] + np.minimum(coef, 0.0) * up_s[:, None, :])
            ]
        for src, part in parts:
            lam[src] = lam[src] + part if src in lam else part
    return out


def _gaps(act: Activation, lb: np.ndarray, ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """About the largest ``f - lower line`` and ``upper line - f`` over ``[lb, ub]`` (sampled, with 0 if inside)."""
    with np.errstate(all="ignore"):
        lo_s, lo_c, up_s, up_c = act.relax(lb, ub, 0.0, 0.0)
        width = ub - lb
        pts = [lb + t * width for t in _GAP_POINTS] + [np.clip(0.0, lb, ub)]
        below = np.max([act.eval(z) - (lo_s * z + lo_c) for z in pts], axis=0)
        above = np.max([(up_s * z + up_c) - act.eval(z) for z in pts], axis=0)
    clean = np.isfinite(below) & np.isfinite(above)
    return np.where(clean, np.maximum(below, 0.0), 0.0), np.where(clean, np.maximum(above, 0.0), 0.0)


def _layer_scores(
    act: Activation, lb: np.ndarray, ub: np.ndarray, pos: np.ndarray, neg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron ``(B, size)``: the best score and its split point (0 or the middle). The gaps of the parent
    and of both children at both points come from one ``relax`` call on the stacked intervals."""
    mid = (lb + ub) / 2.0
    zero = np.where((lb < 0.0) & (ub > 0.0), 0.0, mid)
    below, above = _gaps(act, np.stack([lb, lb, mid, lb, zero]), np.stack([ub, mid, ub, zero, ub]))
    best, point = np.zeros_like(lb), mid
    for k, s in ((1, mid), (3, zero)):
        gain = pos * (below[0] - np.maximum(below[k], below[k + 1]))
        gain += neg * (above[0] - np.maximum(above[k], above[k + 1]))
        gain = np.where(ub > lb, gain, 0.0)
        take = gain > best
        best, point = np.where(take, gain, best), np.where(take, s, point)
    return best, point


def choose(graph: LayerGraph, bounds: LayerBounds, seed: np.ndarray, count: int = 1) -> Choice:
    """The ``count`` best splits of each domain: arrays ``(B, count)``, the neurons with the best scores over
    every activation layer, best first. Where no split shrinks a sampled gap, the first is the widest interval
    weighted by its coefficients (split in the middle)."""
    lam = output_coefficients(graph, bounds, seed)
    parts: list[tuple[np.ndarray, ...]] = []
    for j, coef in lam.items():
        layer = graph.layers[j]
        assert isinstance(layer, ActivationLayer)
        lb, ub = bounds.lb[layer.source], bounds.ub[layer.source]
        pos, neg = np.maximum(coef, 0.0).sum(axis=1), np.maximum(-coef, 0.0).sum(axis=1)
        score, point = _layer_scores(layer.act, lb, ub, pos, neg)
        wide = (pos + neg) * np.maximum(ub - lb, 0.0)
        layer_of = np.full(lb.shape, layer.source, dtype=np.int64)
        neuron = np.broadcast_to(np.arange(lb.shape[1]), lb.shape)
        parts.append((np.where(np.isfinite(score), score, 0.0), point, layer_of, neuron, wide, (lb + ub) / 2.0))
    score, point, layer_of, neuron, wide, mid = (np.concatenate(v, axis=1) for v in zip(*parts, strict=True))
    rows = np.arange(score.shape[0])[:, None]
    top = np.argsort(-score, axis=1, kind="stable")[:, :count]
    fall = score[rows[:, 0], top[:, 0]] <= 0.0
    widest = np.argmax(np.where(np.isfinite(wide), wide, 0.0), axis=1)
    top[fall, 0] = widest[fall]
    chosen = Choice(layer_of[rows, top], neuron[rows, top], point[rows, top], score[rows, top])
    chosen.point[fall, 0] = mid[fall, widest[fall]]
    chosen.score[fall, 0] = wide[fall, widest[fall]]
    return chosen
