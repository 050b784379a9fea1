"""Input-box shrinking: the part of a box where a conjunctive disjunct can hold, from its rows' linear lower bounds.

A counterexample in disjunct ``d`` makes every row ``r`` of ``d`` at most 0, and ``f_r(x) <= r(x)`` on the box,
so it lies in ``{x in box : f_r(x) <= 0 for every row r of d}``; a box around that set (``PASSES`` rounds of
interval constraint propagation over the rows) replaces the box before it is split. No point of any live disjunct is
lost, so the search stays complete; a disjunct whose set is empty is ruled out in the box.
"""

from __future__ import annotations

import numpy as np

from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL

#: Rounds of propagation over a disjunct's rows (all rows at once in each round; a second round lets one
#: dimension's new face tighten the others).
PASSES = 2


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
        idx = np.nonzero(owner == d)[0]
        for _ in range(PASSES if idx.size else 0):  # a disjunct without rows holds in the whole box
            gone |= _shrink_rows(coef[:, idx, :-1], coef[:, idx, -1], lo, hi, margin_rel, margin_abs)
        empty[:, d] = gone
        keep = ~gone
        out_lb[keep] = np.minimum(out_lb[keep], lo[keep])
        out_ub[keep] = np.maximum(out_ub[keep], hi[keep])
    none = np.all(empty, axis=1)
    out_lb[none], out_ub[none] = lb[none], ub[none]
    return out_lb, out_ub, empty


def _shrink_rows(
    c: np.ndarray, c0: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin_rel: float, margin_abs: float
) -> np.ndarray:
    """Shrink ``[lo, hi]`` ``(B, n)`` in place to the smallest box holding its points with ``c_r x + c0_r <= 0``
    for each row ``r`` (``c`` ``(B, R, n)``: each row from the same box, the results intersected); the boxes
    where no point is left ``(B,)`` (some row's lower bound over the box is positive)."""
    low = np.minimum(c * lo[:, None], c * hi[:, None])  # (B, R, n)
    total = low.sum(axis=2) + c0
    scale = np.abs(c0) + (np.abs(c) * np.maximum(np.abs(lo), np.abs(hi))[:, None]).sum(axis=2)
    slack = (margin_rel * scale + margin_abs)[:, :, None]
    room = slack - (total[:, :, None] - low)  # c_i x_i <= room_i: each other dimension at its term's minimum
    q = room / np.where(c != 0.0, c, 1.0)
    widen = margin_rel * np.abs(q) + margin_abs
    up = np.where(c > 0.0, q + widen, np.inf).min(axis=1)
    down = np.where(c < 0.0, q - widen, -np.inf).max(axis=1)
    np.minimum(hi, up, out=hi)
    np.maximum(lo, down, out=lo)
    return np.any(total - slack[:, :, 0] > 0.0, axis=1) | np.any(lo > hi, axis=1)
