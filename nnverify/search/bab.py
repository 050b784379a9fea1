"""Branch and bound by input splitting, with forward symbolic bounds and an exact backend at the leaves.

Boxes are processed in batches, depth first (``boxes.py`` bounds, shrinks and splits them). In each box a
disjunct is ruled out when a sound lower bound of one of its rows is positive; a box with every disjunct ruled
out is proven. Each undecided box offers attack points (its centre and the vertex minimising the tightest row's
linear bound) to the caller's replay callback (when a batch's points come closer than any before, its best first
take a short descent: ``polish_best``), is shrunk to where its disjuncts' linear lower bounds allow a
counterexample (``shrink.py``), then is split in two along the dimension with the largest
``width * gradient bound`` score (ReluVal's "smear" heuristic). Boxes at ``MAX_DEPTH`` go to the exact
backend with the box's symbolic bounds as big-M constants, so the search is complete. A search still open after
``SHARE_AFTER_S`` continues in two processes (``parallel.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nnverify.backends.base import Backend, SolveStatus
from nnverify.bounds.backward import LayerBounds
from nnverify.bounds.lean import is_relu_chain
from nnverify.budget import Budget
from nnverify.graph.core import Graph
from nnverify.graph.layers import (
    LayerGraph,
    exact_dot_plus,
    is_exact,
    pin_inputs,
)
from nnverify.options import Options
from nnverify.search.boxes import Boxes, attack_points, bound_boxes, children, shrink, shrink_children
from nnverify.search.rows import StackedRows
from nnverify.spec.property import Disjunct

#: Boxes bounded together in one numpy call.
BATCH = 128
#: Splits along one path before the exact backend decides the box.
MAX_DEPTH = 48
#: Networks with smooth activations (no exact leaf): splits along one path per free input before a box is
#: given up as undecided (each halves one input's width: 2^-40 of it, far below any useful resolution).
SMOOTH_DEPTH_PER_INPUT = 40
#: Seconds of searching in one process before the open boxes are shared with a second (``parallel.py``), when the
#: run has two cores or more; nearly every ACAS Xu search ends before.
SHARE_AFTER_S = 0.5
#: ... and only while more than this many seconds of the budget are left.
SHARE_MIN_LEFT_S = 1.0
TIMEOUT_NOTE = "budget spent during input splitting"
#: When a batch's attack points come closer to the unsafe set than any before in the search, its best
#: ``POLISH_POINTS`` descend for ``POLISH_STEPS`` steps (``attack.descend_adaptive``; 0: never) before they are
#: tried (``polish_best``).
POLISH_STEPS = 60
POLISH_POINTS = 8
#: ... and in every this many-th batch with open boxes (0: only on a new record; every 4th or 8th batch cost ACAS Xu
#: `unsat` searches 10-35 % more CPU).
POLISH_EVERY = 0


@dataclass(slots=True)
class SearchStats:
    boxes: int = 0
    leaves_exact: int = 0
    candidates: int = 0
    max_depth: int = 0
    #: ReLU search only: MILP solves of the intermediate-bound refinement, neurons it stabilised, its seconds.
    refine_solves: int = 0
    stabilised: int = 0
    refine_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """``INFEASIBLE`` = proven, ``FEASIBLE`` = a replayed counterexample ``x``; otherwise undecided."""

    status: SolveStatus
    x: np.ndarray | None = None
    note: str = ""
    stats: SearchStats = field(default_factory=SearchStats)


def _exact_leaf(
    graph: LayerGraph,
    sym: LayerBounds,
    i: int,
    disjuncts: list[Disjunct],
    backend: Backend,
    budget: Budget,
) -> tuple[SolveStatus, np.ndarray | None, str]:
    lbs = [v[i] for v in sym.lb]
    ubs = [v[i] for v in sym.ub]
    from nnverify.search.exact import solve_box  # not on the path of a search without exact leaves (start-up)

    outcome = solve_box(graph, lbs, ubs, disjuncts, backend, budget)
    return outcome.status, outcome.x, outcome.note


def _pop_batch(stack: list[Boxes]) -> Boxes:
    """Take up to ``BATCH`` boxes from the top of the stack (depth first keeps the stack small)."""
    top = stack.pop()
    if len(top) > BATCH:
        stack.append(top.part(slice(BATCH, None)))
        top = top.part(slice(0, BATCH))
    return top


@dataclass(frozen=True, slots=True)
class _Space:
    """The search's input space: the free inputs of the box (``lb < ub``) when fixed inputs could be folded
    into the network (``pin_inputs``), else all of them; ``full`` maps points back to the network's input."""

    graph: LayerGraph
    rows: StackedRows
    free: np.ndarray
    value: np.ndarray

    @classmethod
    def of(cls, graph: LayerGraph, rows: StackedRows, lb: np.ndarray, ub: np.ndarray) -> _Space:
        free = lb < ub
        reduced = pin_inputs(graph, lb, free) if not np.all(free) else None
        if reduced is None:
            return cls(graph, rows, np.ones(lb.shape[0], dtype=bool), lb)
        pinned = ~free
        b = -exact_dot_plus(rows.a_x[:, pinned], lb[pinned], -rows.b)  # b - a_x x_pinned, correctly rounded
        reduced_rows = StackedRows(np.ascontiguousarray(rows.a_x[:, free]), rows.a_y, b, rows.owner, rows.n_disjuncts)
        return cls(reduced, reduced_rows, free, lb)

    def full(self, pts: np.ndarray) -> np.ndarray:
        out = np.broadcast_to(self.value, (pts.shape[0], self.value.shape[0])).copy()
        out[:, self.free] = pts
        return out


@dataclass(frozen=True, slots=True)
class Leaf:
    """A box at the depth limit for the exact backend: its live disjuncts (indices) and layer bounds (one row,
    in the network's full input space)."""

    live: list[int]
    bounds: LayerBounds


@dataclass(slots=True)
class Search:
    """One input-split search: bounds batches from a stack of boxes, pushes the children of the open ones and
    hands back the exact leaves (``run_batch``); the parent process settles the leaves (``settle``)."""

    graph: LayerGraph
    disjuncts: list[Disjunct]
    space: _Space
    options: Options
    max_depth: int
    exact: bool
    lean: bool
    stats: SearchStats = field(default_factory=SearchStats)
    #: Why the search may end undecided (a smooth box open at the depth limit, a leaf that did not replay).
    note: str = ""
    #: The smallest slack of any attack point so far (``polish_best``'s record).
    record: float = math.inf
    #: Batches with open boxes so far (``POLISH_EVERY``).
    batches: int = 0

    def run_batch(
        self, stack: list[Boxes], is_counterexample: Callable[[np.ndarray], bool]
    ) -> tuple[np.ndarray | None, list[Leaf]]:
        """Bound the top batch of ``stack``; a replayed counterexample among its attack points, else None and
        the batch's exact leaves (its other open boxes' children are pushed onto ``stack``)."""
        rows, stats = self.space.rows, self.stats
        boxes = _pop_batch(stack)
        stats.boxes += len(boxes)
        tight, lower, coef = bound_boxes(self.space.graph, rows, boxes, self.options, self.lean)
        dead = rows.dead(lower)
        open_box = ~np.all(dead, axis=1)
        if not np.any(open_box):
            return None, []
        live_rows = ~dead[:, rows.owner] & open_box[:, None]
        funcs = coef[:, :, None] if coef.ndim == 3 else coef  # (B, K, m, n + 1): the best rule's first
        pts = attack_points(funcs[:, :, 0], lower, live_rows, boxes.lb, boxes.ub)[np.concatenate([open_box] * 2)]
        found = try_points(self.graph, self.disjuncts, self.space.full(pts), is_counterexample, stats)
        if found is None and POLISH_STEPS:
            self.batches += 1
            record = math.inf if POLISH_EVERY and self.batches % POLISH_EVERY == 0 else self.record
            full = self.space.full(pts)
            found, best = polish_best(self.graph, self.disjuncts, full, is_counterexample, stats, record)
            self.record = min(self.record, best)
        if found is not None:
            return found, []
        shrink_funcs = funcs[:, :, 1:] if funcs.shape[2] > 1 else funcs  # every rule's functions, if given
        boxes, empty = shrink(boxes, shrink_funcs, rows, dead, self.options)
        open_box &= ~np.all(empty, axis=1)
        live_rows = ~empty[:, rows.owner] & open_box[:, None]
        deep = open_box & (boxes.depth >= self.max_depth)
        leaves = []
        for i in np.nonzero(deep)[0]:
            if not self.exact:
                self.note = f"the relaxation of the smooth activations left a box open at depth {self.max_depth}"
                continue
            leaf_lbs = [self.space.full(tight.lb[0][i : i + 1])] + [v[i : i + 1] for v in tight.lb[1:]]
            leaf_ubs = [self.space.full(tight.ub[0][i : i + 1])] + [v[i : i + 1] for v in tight.ub[1:]]
            leaves.append(Leaf([k for k in range(rows.n_disjuncts) if not dead[i, k]], LayerBounds(leaf_lbs, leaf_ubs)))
        grow = open_box & ~deep
        if np.any(grow):
            grow_bounds = LayerBounds([v[grow] for v in tight.lb], [v[grow] for v in tight.ub])
            kids = children(self.space.graph, rows, boxes.part(grow), grow_bounds, live_rows[grow])
            kids = shrink_children(kids, shrink_funcs[grow], empty[grow], rows, self.options)
            if len(kids):
                stack.append(kids)
            stats.max_depth = max(stats.max_depth, int(boxes.depth[grow].max()) + 1)
        return None, leaves

    def settle(
        self, leaves: list[Leaf], backend: Backend, budget: Budget, is_counterexample: Callable[[np.ndarray], bool]
    ) -> SearchOutcome | None:
        """Decide the exact leaves; an outcome to return now (a replayed counterexample, the budget spent)."""
        for leaf in leaves:
            self.stats.leaves_exact += 1
            live = [self.disjuncts[k] for k in leaf.live]
            status, x, note = _exact_leaf(self.graph, leaf.bounds, 0, live, backend, budget)
            done, self.note = settle_leaf(status, x, note, self.note, is_counterexample, self.stats)
            if done is not None:
                return done
        return None

    def outcome(self) -> SearchOutcome:
        """The answer once every box is closed: proven, or undecided with the note."""
        if self.note:
            return SearchOutcome(SolveStatus.UNKNOWN, note=self.note, stats=self.stats)
        return SearchOutcome(SolveStatus.INFEASIBLE, stats=self.stats)


def input_split_search(
    graph: LayerGraph,
    disjuncts: list[Disjunct],
    lb: np.ndarray,
    ub: np.ndarray,
    backend: Backend,
    budget: Budget,
    options: Options,
    is_counterexample: Callable[[np.ndarray], bool],
) -> SearchOutcome:
    """Decide "some x in [lb, ub] reaches one of ``disjuncts``" (all sharing that box).

    Only the free inputs (``lb < ub``) are split. A network with a smooth activation has no exact leaf: its
    boxes are split down to ``SMOOTH_DEPTH_PER_INPUT`` splits per free input, and a box still open there
    leaves the search ``unknown``. A search still open after ``SHARE_AFTER_S`` on a run with two cores or more
    (``Options.cores``) continues in two processes (``parallel.py``)."""
    space = _Space.of(graph, StackedRows.of(disjuncts), lb, ub)
    n_free = int(space.free.sum())
    exact = is_exact(graph)
    max_depth = MAX_DEPTH if exact else max(MAX_DEPTH, SMOOTH_DEPTH_PER_INPUT * n_free)
    search = Search(graph, disjuncts, space, options, max_depth, exact, is_relu_chain(space.graph))
    stack = [Boxes(lb[None, space.free], ub[None, space.free], np.zeros(1, dtype=np.int64))]
    share_at = time.monotonic() + SHARE_AFTER_S if options.cores() >= 2 else math.inf
    while stack:
        if budget.expired():
            return SearchOutcome(SolveStatus.TIMEOUT, note=TIMEOUT_NOTE, stats=search.stats)
        if time.monotonic() >= share_at and budget.remaining() > SHARE_MIN_LEFT_S:
            from nnverify.search.parallel import shared_search

            return shared_search(search, stack, backend, budget, is_counterexample)
        found, leaves = search.run_batch(stack, is_counterexample)
        if found is not None:
            return SearchOutcome(SolveStatus.FEASIBLE, found, stats=search.stats)
        done = search.settle(leaves, backend, budget, is_counterexample)
        if done is not None:
            return done
    return search.outcome()


def try_points(
    graph: LayerGraph | Graph,
    disjuncts: list[Disjunct],
    pts: np.ndarray,
    is_counterexample: Callable[[np.ndarray], bool],
    stats: SearchStats,
) -> np.ndarray | None:
    """Evaluate points on our own evaluator; replay the ones that violate a disjunct (best first, at most 3)."""
    if pts.shape[0] == 0:
        return None
    y = graph.eval(pts)
    best = np.full(pts.shape[0], np.inf)
    for d in disjuncts:
        best = np.minimum(best, np.where(d.contains_input(pts), d.slack(pts, y), np.inf))
    return replay_best(pts, best, is_counterexample, stats)


def polish_best(
    graph: LayerGraph,
    disjuncts: list[Disjunct],
    pts: np.ndarray,
    is_counterexample: Callable[[np.ndarray], bool],
    stats: SearchStats,
    record: float,
) -> tuple[np.ndarray | None, float]:
    """When the smallest own-evaluator slack of ``pts`` beats ``record``: its disjunct's ``POLISH_POINTS`` points
    of smallest slack after ``POLISH_STEPS`` steps of adaptive sign-gradient descent inside the disjunct's box,
    replayed like ``try_points``. Returns the counterexample (or None) and the new record."""
    if pts.shape[0] == 0:
        return None, record
    y = graph.eval(pts)
    slack = np.stack([np.where(d.contains_input(pts), d.slack(pts, y), np.inf) for d in disjuncts])
    k = int(np.argmin(slack.min(axis=1)))
    best = float(slack[k].min())
    if not best < record:
        return None, record
    from nnverify.attack import descend_adaptive  # not on the path of a search that never polishes (start-up)

    order = np.argsort(slack[k])[:POLISH_POINTS]
    start = pts[order[np.isfinite(slack[k][order])]]
    x = descend_adaptive(graph, disjuncts[k], start, Budget.unlimited(), POLISH_STEPS)
    return try_points(graph, disjuncts, x, is_counterexample, stats), best


def replay_best(
    pts: np.ndarray, slack: np.ndarray, is_counterexample: Callable[[np.ndarray], bool], stats: SearchStats
) -> np.ndarray | None:
    """Replay the points whose own-evaluator slack is <= 0, most violating first, at most 3; the first that
    replays."""
    for i in np.argsort(slack)[:3]:
        if slack[i] > 0.0:
            break
        stats.candidates += 1
        if is_counterexample(pts[i]):
            return pts[i]
    return None


def settle_leaf(
    status: SolveStatus,
    x: np.ndarray | None,
    note: str,
    undecided: str,
    is_counterexample: Callable[[np.ndarray], bool],
    stats: SearchStats,
) -> tuple[SearchOutcome | None, str]:
    """What an exact leaf's answer means for the search: an outcome to return now (a replayed counterexample,
    or the budget spent), else None and the updated note of why the search may end undecided."""
    if status is SolveStatus.FEASIBLE and x is not None:
        stats.candidates += 1
        if is_counterexample(x):
            return SearchOutcome(SolveStatus.FEASIBLE, x, stats=stats), undecided
        return None, "an exact-leaf solution did not replay"
    if status is SolveStatus.TIMEOUT:
        return SearchOutcome(
            SolveStatus.TIMEOUT, note=note + (f" ({undecided})" if undecided else ""), stats=stats
        ), undecided
    if status is not SolveStatus.INFEASIBLE:
        return None, note or status.value
    return None, undecided
