"""Boxes of the input-split search: a batch with its parents' layer bounds, its bounds and rows' lower bounds
(``lean.py`` on ReLU chains, else forward symbolic and ``backward.py``), shrinking and splitting."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.bounds.backward import SLOPE_RULES, LayerBounds, backward_rows_lower, crown_bounds
from nnverify.bounds.interval import affine_interval
from nnverify.bounds.lean import bound_chain
from nnverify.bounds.symbolic import rows_lower_bound_symbolic, symbolic_bounds
from nnverify.graph.layers import AffineLayer, LayerGraph, backpropagate, box_slopes
from nnverify.options import Options
from nnverify.search.rows import StackedRows
from nnverify.search.shrink import shrink_boxes

#: Child boxes of a ReLU chain are bounded in groups of about this many with similar numbers of unstable neurons
#: in the parent (``lean.py`` pads each box's rows and neurons to the group's largest count).
GROUP = 32


def attack_points(
    coef: np.ndarray, lower: np.ndarray, live_rows: np.ndarray, lb: np.ndarray, ub: np.ndarray
) -> np.ndarray:
    """Per box: the centre and the vertex minimising the live row with the largest lower bound."""
    masked = np.where(live_rows, lower, -np.inf)
    row = np.argmax(masked, axis=1)
    w = coef[np.arange(coef.shape[0]), row, :-1]
    vertex = np.where(w > 0.0, lb, ub)
    return np.vstack([(lb + ub) / 2.0, vertex])


def split_boxes(lb: np.ndarray, ub: np.ndarray, smear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of each box along the dimension with the largest smear ``width * gradient bound``."""
    score = (ub - lb) * (smear + 1e-12)
    dim = np.argmax(score, axis=1)
    rows = np.arange(lb.shape[0])
    mid = (lb[rows, dim] + ub[rows, dim]) / 2.0
    left_ub, right_lb = ub.copy(), lb.copy()
    left_ub[rows, dim] = mid
    right_lb[rows, dim] = mid
    return np.vstack([lb, right_lb]), np.vstack([left_ub, ub])


@dataclass(frozen=True, slots=True)
class Boxes:
    """A batch of boxes, their depths, and sound bounds of every layer inherited from their parents."""

    lb: np.ndarray
    ub: np.ndarray
    depth: np.ndarray
    layer_lb: list[np.ndarray] | None = None
    layer_ub: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.lb.shape[0])

    def part(self, sel: slice | np.ndarray) -> Boxes:
        lbs = None if self.layer_lb is None else [v[sel] for v in self.layer_lb]
        ubs = None if self.layer_ub is None else [v[sel] for v in self.layer_ub]
        return Boxes(self.lb[sel], self.ub[sel], self.depth[sel], lbs, ubs)


def bound_boxes(
    graph: LayerGraph, rows: StackedRows, boxes: Boxes, options: Options, lean: bool = False
) -> tuple[LayerBounds, np.ndarray, np.ndarray]:
    """Layer bounds (forward symbolic, intersected with the parents', tightened by back-substitution) and the
    rows' lower bounds ``(B, K)`` with their linear functions ``(B, K, n + 1)``; ``lean``: the graph is a ReLU
    chain and the back-substitution is ``bounds/lean.py``'s."""
    margins = {"margin_rel": options.bound_margin_rel, "margin_abs": options.bound_margin_abs}
    if lean and boxes.layer_lb is not None and boxes.layer_ub is not None:
        return bound_children(graph, rows, boxes, boxes.layer_lb, boxes.layer_ub, margins)
    sym = symbolic_bounds(graph, boxes.lb, boxes.ub, **margins)
    lbs, ubs = sym.lb, sym.ub
    if boxes.layer_lb is not None and boxes.layer_ub is not None:  # a child box lies inside its parent
        lbs = [np.maximum(a, b) for a, b in zip(lbs, boxes.layer_lb, strict=True)]
        ubs = [np.minimum(a, b) for a, b in zip(ubs, boxes.layer_ub, strict=True)]
    fwd_lower, _ = rows_lower_bound_symbolic(
        sym, graph.output, rows.a_x, rows.a_y, rows.b, boxes.lb, boxes.ub, **margins
    )
    if lean:
        tight, lower, coef = bound_chain(
            graph, lbs, ubs, rows.a_x, rows.a_y, rows.b, rules=SLOPE_RULES, every_rule=True, **margins
        )
    else:
        tight = crown_bounds(graph, lbs, ubs, **margins)
        lower, coef = backward_rows_lower(
            graph, tight.lb, tight.ub, rows.a_x, rows.a_y, rows.b, rules=SLOPE_RULES, **margins
        )
    return tight, np.maximum(lower, fwd_lower), coef


def bound_children(
    graph: LayerGraph,
    rows: StackedRows,
    boxes: Boxes,
    parent_lb: list[np.ndarray],
    parent_ub: list[np.ndarray],
    margins: dict[str, float],
) -> tuple[LayerBounds, np.ndarray, np.ndarray]:
    """``bound_boxes`` of child boxes of a ReLU chain without forward symbolic bounds: the parent's layer bounds
    (valid in the child), the first layer's interval image of the child's box, then ``lean.bound_chain``
    (which also intersects each layer with the interval image of the tightened layer below it). Large batches go
    in groups of ``GROUP`` boxes sorted by their parent's count of unstable neurons."""
    if GROUP and len(boxes) >= 2 * GROUP:
        key = sum(((lo < 0.0) & (hi > 0.0)).sum(axis=1) for lo, hi in zip(parent_lb, parent_ub, strict=True))
        order = np.argsort(key, kind="stable")
        parts = [
            bound_children(graph, rows, boxes.part(p), [v[p] for v in parent_lb], [v[p] for v in parent_ub], margins)
            for p in np.array_split(order, len(boxes) // GROUP)
        ]
        inv = np.argsort(order)
        n_layers = len(parent_lb)
        tight = LayerBounds(
            [np.concatenate([r[0].lb[k] for r in parts])[inv] for k in range(n_layers)],
            [np.concatenate([r[0].ub[k] for r in parts])[inv] for k in range(n_layers)],
        )
        return tight, np.concatenate([r[1] for r in parts])[inv], np.concatenate([r[2] for r in parts])[inv]
    lbs, ubs = list(parent_lb), list(parent_ub)
    lbs[0], ubs[0] = boxes.lb, boxes.ub
    first = graph.layers[1]
    assert isinstance(first, AffineLayer)
    lo, hi = affine_interval([boxes.lb], [boxes.ub], first, **margins)
    lbs[1], ubs[1] = np.maximum(lo, lbs[1]), np.minimum(hi, ubs[1])
    return bound_chain(graph, lbs, ubs, rows.a_x, rows.a_y, rows.b, rules=SLOPE_RULES, every_rule=True, **margins)


def shrink(
    boxes: Boxes, coef: np.ndarray, rows: StackedRows, dead: np.ndarray, options: Options
) -> tuple[Boxes, np.ndarray]:
    """The boxes shrunk to the hull of where their live disjuncts' linear lower bounds ``coef`` ``(B, K, m, n + 1)``
    (``m`` per row: each slope rule's) allow a counterexample (``shrink.py``; the layer bounds stay valid in a
    smaller box), and the disjuncts ruled out ``(B, D)``."""
    batch, k, m, n = coef.shape
    lb, ub, empty = shrink_boxes(
        coef.reshape(batch, k * m, n),
        np.repeat(rows.owner, m),
        dead,
        boxes.lb,
        boxes.ub,
        margin_rel=options.bound_margin_rel,
        margin_abs=options.bound_margin_abs,
    )
    return Boxes(lb, ub, boxes.depth, boxes.layer_lb, boxes.layer_ub), empty


def shrink_children(kids: Boxes, coef: np.ndarray, empty: np.ndarray, rows: StackedRows, options: Options) -> Boxes:
    """Both halves of each box shrunk again with their parent's functions ``coef`` (valid in each half; with one
    input narrower the others can shrink further), without the halves left empty (never bounded)."""
    kids, kid_empty = shrink(kids, np.concatenate([coef, coef]), rows, np.vstack([empty, empty]), options)
    keep = ~np.all(kid_empty, axis=1)
    return kids if np.all(keep) else kids.part(keep)


def children(graph: LayerGraph, rows: StackedRows, boxes: Boxes, tight: LayerBounds, live_rows: np.ndarray) -> Boxes:
    """Both halves of every box, carrying the parent's layer bounds."""
    row_weights = np.abs(live_rows.astype(np.float64) @ np.abs(rows.a_y))
    smear = backpropagate(graph, row_weights, box_slopes(graph, tight.lb, tight.ub), absolute=True) + np.abs(
        live_rows @ np.abs(rows.a_x)
    )
    new_lb, new_ub = split_boxes(boxes.lb, boxes.ub, smear)
    return Boxes(
        new_lb,
        new_ub,
        np.concatenate([boxes.depth + 1, boxes.depth + 1]),
        [np.vstack([v, v]) for v in tight.lb],
        [np.vstack([v, v]) for v in tight.ub],
    )
