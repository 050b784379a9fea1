"""The boxes of ``forward_split``'s search: batches of boxes with the bounds their parents pass on, the points
each box offers to replay, and how a box is halved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nnverify.bounds.backward import LayerBounds

if TYPE_CHECKING:
    from nnverify.bounds.backward_ops import OpBounds


@dataclass(frozen=True, slots=True)
class SplitBoxes:
    """A batch of boxes, their depths, and the bounds after the cut inherited from their parents (or None)."""

    lb: np.ndarray
    ub: np.ndarray
    depth: np.ndarray
    parent: LayerBounds | OpBounds | None = None

    def __len__(self) -> int:
        return int(self.lb.shape[0])

    def part(self, sel: slice | np.ndarray) -> SplitBoxes:
        return SplitBoxes(self.lb[sel], self.ub[sel], self.depth[sel], part_bounds(self.parent, sel))


def part_bounds(bounds: LayerBounds | OpBounds | None, sel: slice | np.ndarray) -> LayerBounds | OpBounds | None:
    from nnverify.bounds.backward_ops import OpBounds

    if bounds is None or isinstance(bounds, OpBounds):
        return None if bounds is None else bounds.part(sel)
    return LayerBounds([v[sel] for v in bounds.lb], [v[sel] for v in bounds.ub])


def twice_bounds(bounds: LayerBounds | OpBounds | None, sel: np.ndarray) -> LayerBounds | OpBounds | None:
    """The bounds of the boxes ``sel`` for both halves of each (stacked as ``halves`` stacks them)."""
    from nnverify.bounds.backward_ops import OpBounds

    if bounds is None or isinstance(bounds, OpBounds):
        return None if bounds is None else bounds.part(sel).twice()
    return LayerBounds(*([np.vstack([v[sel], v[sel]]) for v in side] for side in (bounds.lb, bounds.ub)))


def points(
    func: np.ndarray, lower: np.ndarray, live: np.ndarray, lb: np.ndarray, ub: np.ndarray, index: np.ndarray
) -> np.ndarray:
    """Per box: the centre, and the vertex minimising the live row with the largest lower bound."""
    row = np.argmax(np.where(live, lower, -np.inf), axis=1)
    coef = func[np.arange(func.shape[0]), row, :-1]
    vertex = (lb + ub) / 2.0
    vertex[:, index] = np.where(coef > 0.0, lb[:, index], ub[:, index])
    return np.vstack([(lb + ub) / 2.0, vertex])


def halves(
    func: np.ndarray,
    live: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    depth: np.ndarray,
    index: np.ndarray,
    root: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both halves of every box, split along the free input with the largest weight in its live rows' lower
    functions (the coordinates are normalised, so the weight already includes the width); ``root``: the root box's
    widths of the free inputs (``split_dims``)."""
    width = None if root is None else (ub - lb)[:, index] / root
    return bisect(lb, ub, depth, split_dims(func, live, index, width))


def split_dims(func: np.ndarray, live: np.ndarray, index: np.ndarray, width: np.ndarray | None = None) -> np.ndarray:
    """Per box, the free input with the largest weight in its live rows' lower functions; where every weight is
    0 (constant lower functions: the weights tell nothing, and the first input would be halved ever again), the
    input of largest ``width`` (per box and free input, a share of the root box's width)."""
    weight = np.einsum("bk,bki->bi", live.astype(np.float64), np.abs(func[..., :-1]))
    if width is not None:
        flat = ~np.any(weight > 0.0, axis=1)
        weight[flat] = width[flat]
    return index[np.argmax(weight, axis=1)]


def bisect(
    lb: np.ndarray, ub: np.ndarray, depth: np.ndarray, dim: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both halves of every box along its input ``dim``: lower halves first, then upper halves."""
    rows = np.arange(lb.shape[0])
    mid = (lb[rows, dim] + ub[rows, dim]) / 2.0
    left_ub, right_lb = ub.copy(), lb.copy()
    left_ub[rows, dim] = mid
    right_lb[rows, dim] = mid
    return np.vstack([lb, right_lb]), np.vstack([left_ub, ub]), np.concatenate([depth + 1, depth + 1])
