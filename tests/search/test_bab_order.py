"""Input splitting searches the children of the most promising boxes first (``_Rows.promise``)."""

from __future__ import annotations

import numpy as np
from netgen import random_net

from nnverify.bounds.backward import LayerBounds
from nnverify.search.bab import _Boxes, _children, _Rows
from nnverify.spec.property import Disjunct


def _rows() -> _Rows:
    """Disjunct 0 with rows 0 and 1, disjunct 1 with row 2 (two outputs, two inputs)."""
    box = (np.zeros(2), np.ones(2))
    return _Rows.of(
        [
            Disjunct(*box, np.zeros((2, 2)), np.eye(2), np.zeros(2)),
            Disjunct(*box, np.zeros((1, 2)), np.ones((1, 2)), np.zeros(1)),
        ]
    )


def test_promise_is_the_smallest_largest_row_bound_of_the_live_disjuncts() -> None:
    rows = _rows()
    lower = np.array([[-3.0, -1.0, -2.0], [-3.0, -1.0, 0.5], [-3.0, -5.0, 0.5]])
    dead = rows.dead_disjuncts(lower, 2)
    assert dead.tolist() == [[False, False], [False, True], [False, True]]
    # box 0: disjunct 0 reaches -1, disjunct 1 -2 -> -2; boxes 1 and 2: only disjunct 0 is live
    assert rows.promise(lower, dead).tolist() == [-2.0, -1.0, -3.0]


def test_children_of_the_most_promising_box_come_first() -> None:
    graph = random_net(np.random.default_rng(0), [2, 4, 2])
    lb = np.array([[0.0, 0.0], [2.0, 2.0], [4.0, 4.0]])
    boxes = _Boxes(lb, lb + 1.0, np.zeros(3, dtype=np.int64))
    bounds = LayerBounds(
        [np.tile(v, (3, 1)) for v in (np.zeros(2), -np.ones(4), np.zeros(4), -np.ones(2))],
        [np.tile(v, (3, 1)) for v in (np.ones(2), np.ones(4), np.ones(4), np.ones(2))],
    )
    live = np.ones((3, 3), dtype=bool)
    kids = _children(graph, _rows(), boxes, bounds, live, np.array([0.5, -4.0, -1.0]))
    # the halves of box 1 (promise -4), then box 2 (-1), then box 0 (0.5); each pair covers its parent
    parents = np.floor(kids.lb[:, 0] / 2.0).astype(int)
    assert parents.tolist() == [1, 1, 2, 2, 0, 0]
    assert np.all(kids.depth == 1)
