"""Branching of the ReLU branch and bound: BaBSR-like intercept scores pick the candidate neurons
(``candidates``), filtered smart branching bounds both children of each and keeps the best (``choose``)."""

from __future__ import annotations

import numpy as np

from nnverify.bounds.backward import LayerBounds
from nnverify.bounds.relu_pass import Pass, relu_layers
from nnverify.bounds.trial_splits import split_lower
from nnverify.graph.layers import LayerGraph
from nnverify.search.relu_domains import Domains

#: Neurons per ReLU layer whose children are bounded before one is chosen (filtered smart branching).
FSB_PER_LAYER = 2
#: Weight of the better child when candidates' worse children tie.
TIE_WEIGHT = 0.1


def candidates(
    graph: LayerGraph,
    bounds: LayerBounds,
    lam: dict[int, np.ndarray],
    row: np.ndarray,
    splits: dict[int, np.ndarray],
    sel: np.ndarray,
) -> np.ndarray:
    """``(B, FSB_PER_LAYER * layers, 2)`` (layer, neuron) with the largest intercept scores per layer (-1: no
    neuron)."""
    scores, where = [], []
    for r in relu_layers(graph):
        s = graph.layers[r].source  # type: ignore[union-attr]
        lb, ub = bounds.lb[s][sel], bounds.ub[s][sel]
        unstable = (lb < 0.0) & (ub > 0.0) & (splits[s][sel] == 0)
        icpt = np.where(unstable, -ub * lb / np.where(unstable, ub - lb, 1.0), 0.0)
        coef = lam[r][sel, row[sel]] if r in lam else np.zeros_like(lb)
        scores.append(np.where(unstable, -np.minimum(coef, 0.0) * icpt + 1e-6 * np.minimum(ub, -lb), -1.0))
        where.append(np.stack([np.full(lb.shape[1], s), np.arange(lb.shape[1])], axis=1))
    # the best FSB_PER_LAYER of every layer: a split in an early layer can matter more (through β) than
    # its own intercept says
    picks = []
    for score, flat in zip(scores, where, strict=True):
        k = min(FSB_PER_LAYER, score.shape[1])
        top = np.argsort(-score, axis=1)[:, :k]
        picked = flat[top]
        picked[np.take_along_axis(score, top, axis=1) < 0.0] = -1
        picks.append(picked)
    return np.concatenate(picks, axis=1)


def choose(
    graph: LayerGraph,
    bounds: LayerBounds,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    dom: Domains,
    cands: np.ndarray,
    passed: Pass,
    margins: dict[str, float],
) -> np.ndarray:
    """Filtered smart branching (De Palma et al., ICLR 2021): bound both children of each candidate with
    the parent's duals and bounds, no optimisation (``split_lower``, from the parent's pass ``passed``);
    keep the candidate whose worse child is best."""
    b = cands.shape[0]
    lower = split_lower(
        graph,
        bounds,
        graph.output,
        passed,
        *rows,
        dom.duals,
        dom.splits,
        cands,
        margins["margin_rel"],
        margins["margin_abs"],
    )
    pair = np.maximum(lower.max(axis=3), dom.known[:, None, None])
    # the worse child decides; the better child breaks ties (often many splits leave the worse one unchanged)
    worse = pair.min(axis=2)
    key = worse + TIE_WEIGHT * pair.max(axis=2)
    key[cands[:, :, 0] < 0] = -np.inf
    best = np.argmax(key, axis=1)
    # Where no candidate lifts the worse child above the parent's bound, the estimate cannot tell them
    # apart (it keeps the parent's multipliers): take the earliest layer's candidate. A split there
    # tightens every layer after it once the multipliers are re-optimised; the tie-break would pick the
    # last layer over and over, peeling one child per level without ever closing the other.
    valid = cands[:, :, 0] >= 0
    stuck = np.all((worse <= dom.known[:, None] + 1e-9) | ~valid, axis=1) & valid.any(axis=1)
    best = np.where(stuck, np.argmax(valid, axis=1), best)
    return cands[np.arange(b), best]
