"""Input splitting on the op graph for networks whose dense layer view is too large, with few free inputs.

Each box is bounded by ``bounds/forward_cut.py`` (forward functions of the free inputs up to a cut, CROWN after
it) or, with no cut, by ``bounds/forward_ops.py`` alone; undecided boxes offer attack points and are halved.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnverify.attack_graph import DENSE_VIEW_MAX_MB, OnnxReplay, dense_view_mb, search, unsupported_by_analysis
from nnverify.backends.base import SolveStatus
from nnverify.bounds.backward import LayerBounds
from nnverify.bounds.forward_cut import CutPlan, cut_rows_lower, plan_cut
from nnverify.bounds.forward_ops import forward_forms, input_form, rows_lower, unsupported
from nnverify.budget import Budget
from nnverify.graph.core import Graph
from nnverify.options import Options
from nnverify.result import Result, Verdict
from nnverify.search.bab import SMOOTH_DEPTH_PER_INPUT, SearchOutcome, SearchStats, try_points
from nnverify.spec.property import Disjunct, Property

#: Boxes bounded together.
BATCH = 4
#: Largest dense view of the part after the cut (MB, estimated from the shapes; its build takes several times
#: that); never more than an eighth of the memory cap.
CUT_MAX_MB = 256.0
#: Share of the budget the graph attack gets before the search, and its cap in seconds (every cGAN sat instance
#: fell in < 1 s; the search replays its own candidates too).
ATTACK_SHARE = 0.05
ATTACK_MAX_S = 10.0


@dataclass(frozen=True, slots=True)
class _Rows:
    """All rows of all disjuncts stacked, with the disjunct each row belongs to."""

    a_x: np.ndarray
    a_y: np.ndarray
    b: np.ndarray
    owner: np.ndarray

    @classmethod
    def of(cls, disjuncts: list[Disjunct]) -> _Rows:
        owner = np.concatenate([np.full(d.n_rows, i) for i, d in enumerate(disjuncts)]).astype(np.int64)
        a_x, a_y = np.vstack([d.a_x for d in disjuncts]), np.vstack([d.a_y for d in disjuncts])
        return cls(a_x, a_y, np.concatenate([d.b for d in disjuncts]), owner)


@dataclass(frozen=True, slots=True)
class _Boxes:
    """A batch of boxes, their depths, and the bounds after the cut inherited from their parents (or None)."""

    lb: np.ndarray
    ub: np.ndarray
    depth: np.ndarray
    parent: LayerBounds | None = None

    def part(self, sel: slice | np.ndarray) -> _Boxes:
        parent = (
            None
            if self.parent is None
            else LayerBounds([v[sel] for v in self.parent.lb], [v[sel] for v in self.parent.ub])
        )
        return _Boxes(self.lb[sel], self.ub[sel], self.depth[sel], parent)


def _bound(
    graph: Graph, plan: CutPlan | None, rows: _Rows, boxes: _Boxes, free: np.ndarray, budget: Budget
) -> tuple[np.ndarray, np.ndarray, LayerBounds | None]:
    """Row lower bounds ``(B, K)``, their lower functions ``(B, K, n_free + 1)`` of normalised coordinates, and
    the bounds after the cut (None without a cut)."""
    lb, ub = boxes.lb, boxes.ub
    if plan is not None:
        return cut_rows_lower(plan, lb, ub, free, rows.a_x, rows.a_y, rows.b, parent=boxes.parent, budget=budget)
    out = forward_forms(graph, lb, ub, free, budget=budget)
    lower, func = rows_lower(out, rows.a_x, rows.a_y, rows.b, input_form(lb, ub, free, (lb.shape[1],)))
    return lower, func, None


def forward_split_search(
    graph: Graph,
    plan: CutPlan | None,
    disjuncts: list[Disjunct],
    budget: Budget,
    is_counterexample: Callable[[np.ndarray], bool],
) -> SearchOutcome:
    """Decide "some x in the disjuncts' common box reaches one of them" by bisecting the free inputs."""
    rows = _Rows.of(disjuncts)
    lb0, ub0 = disjuncts[0].lb, disjuncts[0].ub
    free = lb0 < ub0
    index = np.flatnonzero(free)
    max_depth = SMOOTH_DEPTH_PER_INPUT * index.size
    stats = SearchStats()
    stack = [_Boxes(lb0[None, :], ub0[None, :], np.zeros(1, dtype=np.int64))]
    note = ""
    while stack:
        if budget.expired():
            return SearchOutcome(SolveStatus.TIMEOUT, note="budget spent during input splitting", stats=stats)
        boxes = stack.pop()
        if len(boxes.lb) > BATCH:
            stack.append(boxes.part(slice(BATCH, None)))
            boxes = boxes.part(slice(0, BATCH))
        lb, ub, depth = boxes.lb, boxes.ub, boxes.depth
        stats.boxes += lb.shape[0]
        lower, func, bounds = _bound(graph, plan, rows, boxes, free, budget)
        dead = np.zeros((lb.shape[0], len(disjuncts)), dtype=bool)
        np.logical_or.at(dead.T, rows.owner, (lower > 0.0).T)
        live = ~dead[:, rows.owner]
        open_box = np.any(live, axis=1)
        if not np.any(open_box):
            continue
        pts = _points(func, lower, live, lb, ub, index)[np.concatenate([open_box, open_box])]
        found = try_points(graph, disjuncts, pts, is_counterexample, stats)
        if found is not None:
            return SearchOutcome(SolveStatus.FEASIBLE, found, stats=stats)
        deep = open_box & (depth >= max_depth)
        if np.any(deep):
            note = f"the relaxation left a box open after {max_depth} splits"
        grow = open_box & ~deep
        if np.any(grow):
            halves = _halves(func[grow], live[grow], lb[grow], ub[grow], depth[grow], index)
            twice = (
                None
                if bounds is None
                else LayerBounds(*([np.vstack([v[grow], v[grow]]) for v in side] for side in (bounds.lb, bounds.ub)))
            )
            stack.append(_Boxes(*halves, twice))
            stats.max_depth = max(stats.max_depth, int(depth[grow].max()) + 1)
    if note:
        return SearchOutcome(SolveStatus.UNKNOWN, note=note, stats=stats)
    return SearchOutcome(SolveStatus.INFEASIBLE, stats=stats)


def _points(
    func: np.ndarray, lower: np.ndarray, live: np.ndarray, lb: np.ndarray, ub: np.ndarray, index: np.ndarray
) -> np.ndarray:
    """Per box: the centre, and the vertex minimising the live row with the largest lower bound."""
    row = np.argmax(np.where(live, lower, -np.inf), axis=1)
    coef = func[np.arange(func.shape[0]), row, :-1]
    vertex = (lb + ub) / 2.0
    vertex[:, index] = np.where(coef > 0.0, lb[:, index], ub[:, index])
    return np.vstack([(lb + ub) / 2.0, vertex])


def _halves(
    func: np.ndarray, live: np.ndarray, lb: np.ndarray, ub: np.ndarray, depth: np.ndarray, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both halves of every box, split along the free input with the largest weight in its live rows' lower
    functions (the coordinates are normalised, so the weight already includes the width)."""
    weight = np.einsum("bk,bki->bi", live.astype(np.float64), np.abs(func[..., :-1]))
    dim = index[np.argmax(weight, axis=1)]
    rows = np.arange(lb.shape[0])
    mid = (lb[rows, dim] + ub[rows, dim]) / 2.0
    left_ub, right_lb = ub.copy(), lb.copy()
    left_ub[rows, dim] = mid
    right_lb[rows, dim] = mid
    return np.vstack([lb, right_lb]), np.vstack([left_ub, ub]), np.concatenate([depth + 1, depth + 1])


#: Dense layer views above this size (MB, estimated from the shapes; building one takes 2-3 times that) are not
#: built when the forward route applies: a bias-field CIFAR net's 2.6 GB estimate peaked at 6.9 GB.
FORWARD_DENSE_MB = 1024.0


def forward_reason(analysis: Graph, prop: Property, budget: Budget, max_free: int) -> str | None:
    """Why the forward route should decide ``prop`` (the dense view is too large), or None: every op must pass the
    forward bounds and every disjunct have at most ``max_free`` free inputs."""
    if any(int(np.sum(d.lb < d.ub)) > max_free for d in prop.disjuncts):
        return None
    if unsupported_by_analysis(analysis) is not None or unsupported(analysis) is not None:
        return None
    cap = getattr(budget, "memory_limit_mb", math.inf)
    limit = min(FORWARD_DENSE_MB, DENSE_VIEW_MAX_MB if math.isinf(cap) else cap / 2)
    size = dense_view_mb(analysis)
    return f"the dense layer view would take about {size:,.0f} MB (limit {limit:,.0f} MB)" if size > limit else None


def forward_route(
    graph: Graph, analysis: Graph, prop: Property, options: Options, budget: Budget, notes: list[str]
) -> Result:
    """The whole run for a network whose dense view is too large: a short graph attack, then input splitting
    with forward bounds on ``analysis``; every candidate is replayed on ``graph``'s ONNX file."""
    started = time.monotonic()
    replay = OnnxReplay(graph, prop, options)
    found = replay.found

    def accept(x: np.ndarray, box: Disjunct) -> bool:
        return replay.accept(x, box) or bool(found)

    slice_end = min(budget.deadline, started + max(1.0, min(ATTACK_MAX_S, ATTACK_SHARE * budget.remaining())))
    attack = search(analysis, prop, dataclasses.replace(budget, deadline=slice_end), accept, options.seed)
    stats: dict[str, float | int | str] = {"graph_points": attack.points, "attack_s": round(attack.seconds, 4)}
    if found:
        return Result(Verdict.SAT, found[0], "graph-attack", time.monotonic() - started, "; ".join(notes), stats)
    cap = getattr(budget, "memory_limit_mb", math.inf)
    plan = plan_cut(analysis, min(CUT_MAX_MB, (DENSE_VIEW_MAX_MB if math.isinf(cap) else cap) / 8), budget)
    stats["cut"] = plan.cut if plan is not None else ""
    groups: dict[bytes, list[Disjunct]] = {}
    for d in prop.disjuncts:
        groups.setdefault(d.lb.tobytes() + d.ub.tobytes(), []).append(d)
    undecided: list[str] = []
    timed_out = False
    for group in groups.values():
        out = forward_split_search(analysis, plan, group, budget, functools.partial(accept, box=group[0]))
        stats["boxes"] = int(stats.get("boxes", 0)) + out.stats.boxes
        stats["max_depth"] = max(int(stats.get("max_depth", 0)), out.stats.max_depth)
        if found:
            return Result(Verdict.SAT, found[0], "forward-split", time.monotonic() - started, "; ".join(notes), stats)
        if out.status is not SolveStatus.INFEASIBLE:
            undecided.append(out.note or out.status.value)
            timed_out |= out.status is SolveStatus.TIMEOUT
            if budget.expired():
                break
    elapsed = time.monotonic() - started
    if not undecided:
        return Result(Verdict.UNSAT, None, "forward-split", elapsed, "; ".join(notes), stats)
    verdict = Verdict.TIMEOUT if timed_out else Verdict.UNKNOWN
    return Result(verdict, None, "forward-split", elapsed, "; ".join([*notes, *undecided]), stats)
