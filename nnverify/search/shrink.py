"""Input-box shrinking: the part of a box where a conjunctive disjunct can hold, from its rows' linear lower bounds.

A counterexample in disjunct ``d`` makes every row ``r`` of ``d`` at most 0, and ``f_r(x) <= r(x)`` on the box,
so it lies in ``{x in box : f_r(x) <= 0 for every row r of d}``; the smallest box around that set (one pass of
interval constraint propagation per row) replaces the box before it is split. No point of any live disjunct is
lost, so the search stays complete; a disjunct whose set is empty is ruled out in the box.
"""

from __future__ import annotations

import numpy as np

from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL


def shrink_boxes(
    coef: np.ndarray,
    owner: np.ndarray,
    dead: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    *,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hull over the live disjuncts of each box's shrunk parts.

    Args:
        coef: ``(B, K, n + 1)``: per box and row, ``c`` and ``c0`` with ``c x + c0 <= row(x)`` on the box.
        owner: ``(K,)``: the disjunct of each row.
        dead: ``(B, D)``: disjuncts already ruled out in the box.
        lb: ``(B, n)`` lower corners.
        ub: ``(B, n)`` upper corners.
        margin_rel: Relative outward margin on each new bound (rounding of the sums and the division).
        margin_abs: Absolute outward margin.

    Returns:
        ``(new_lb, new_ub, empty)``: the shrunk boxes (inside the given ones) and ``(B, D)`` the disjuncts ruled
        out by the shrinking (with ``dead``). A box with every disjunct ruled out keeps its corners.
    """
    n_disj = dead.shape[1]
    out_lb, out_ub = np.full(lb.shape, np.inf), np.full(ub.shape, -np.inf)
    empty = dead.copy()
    for d in range(n_disj):
        lo, hi = lb.copy(), ub.copy()
        gone = dead[:, d].copy()
        for r in np.nonzero(owner == d)[0]:
            gone |= _shrink_row(coef[:, r, :-1], coef[:, r, -1], lo, hi, margin_rel, margin_abs)
        empty[:, d] = gone
        keep = ~gone
        out_lb[keep] = np.minimum(out_lb[keep], lo[keep])
        out_ub[keep] = np.maximum(out_ub[keep], hi[keep])
    none = np.all(empty, axis=1)
    out_lb[none], out_ub[none] = lb[none], ub[none]
    return out_lb, out_ub, empty


def _shrink_row(
    c: np.ndarray, c0: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin_rel: float, margin_abs: float
) -> np.ndarray:
    """Shrink ``[lo, hi]`` ``(B, n)`` in place to the hull of its points with ``c x + c0 <= 0``; the boxes where
    none is left (``(B,)``, the lower bound of ``c x + c0`` over the box is positive)."""
    low = np.minimum(c * lo, c * hi)  # (B, n): each term's minimum over the box
    total = low.sum(axis=1) + c0
    scale = np.abs(c0) + (np.abs(c) * np.maximum(np.abs(lo), np.abs(hi))).sum(axis=1)
    slack = (margin_rel * scale + margin_abs)[:, None]
    # c_i x_i <= -(total - low_i) + slack: each dimension with the others at their minimum
    room = slack - (total[:, None] - low)
    nz = c != 0.0
    q = room / np.where(nz, c, 1.0)
    widen = margin_rel * np.abs(q) + margin_abs
    pos, neg = c > 0.0, c < 0.0
    np.minimum(hi, q + widen, out=hi, where=pos)
    np.maximum(lo, q - widen, out=lo, where=neg)
    return (total - slack[:, 0] > 0.0) | np.any(lo > hi, axis=1)
