"""Input splitting on the op graph for networks whose dense layer view is too large, with few free inputs.

Each box is bounded by ``bounds/backward_ops.py`` (CROWN on the op graph down to the free inputs) where every node
allows it, else by ``bounds/forward_cut.py`` or ``bounds/forward_ops.py``; open boxes offer attack points and are
halved (``forward_boxes.py``). On two cores the root box is halved unbounded and the halves searched in two
processes (``parallel.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nnverify.attack_graph import DENSE_VIEW_MAX_MB, OnnxReplay, dense_view_mb, search, unsupported_by_analysis
from nnverify.backends.base import SolveStatus
from nnverify.bounds.backward import LayerBounds
from nnverify.bounds.forward_ops import forward_forms, input_form, rows_lower, unsupported
from nnverify.budget import Budget, peak_mb, resident_mb
from nnverify.graph.core import Graph
from nnverify.options import Options
from nnverify.result import Result, Verdict
from nnverify.search.bab import SMOOTH_DEPTH_PER_INPUT, TIMEOUT_NOTE, SearchOutcome, SearchStats, try_points
from nnverify.search.forward_boxes import SplitBoxes, bisect, halves, points, twice_bounds
from nnverify.search.rows import StackedRows
from nnverify.spec.property import Disjunct, Property

if TYPE_CHECKING:  # imported where used: forward_reason runs on every check and needs neither
    from nnverify.bounds.backward_ops import OpBounds, OpPlan
    from nnverify.bounds.forward_cut import CutPlan

#: Boxes bounded together (``SHARED_BATCH`` once two processes share the boxes: a batch costs seconds to minutes,
#: and the other process may run dry meanwhile).
BATCH = 4
SHARED_BATCH = 2
#: Seconds of searching before the open boxes are shared with a second process (``parallel.py``; every batch of
#: the cGAN and bias-field nets takes longer, so they share from the second batch on), and the budget that must
#: be left then.
SHARE_AFTER_S = 0.5
SHARE_MIN_LEFT_S = 1.0
#: Largest view of the part after the cut (MB, estimated from the shapes; a dense one's build takes several times
#: that); never more than a quarter of the memory cap. The cGAN 64x64 nets' sparse view after their second
#: ConvTranspose takes 449 MB (the one after their third, 302 MB, leaves the root box's rows at -0.029, not -0.002).
CUT_MAX_MB = 512.0
#: Share of the budget the graph attack gets before the search, and its cap in seconds (every cGAN sat instance
#: fell in < 1 s; the search replays its own candidates too). Each `unsat` instance spends the whole slice: 10 s
#: was the largest share of the bias-field nets' `unsat` runs (cifar_bias_field_53: 9.9 of 34 s).
ATTACK_SHARE = 0.05
ATTACK_MAX_S = 3.0
#: While the search is open, the attack goes on after each of the main process's batches for ``ATTACK_LATER_SHARE``
#: of that batch's time, up to ``ATTACK_TOTAL_S`` of attack in all (a ``sat`` that needs a longer attack is still
#: found; an ``unsat`` search pays 2 % of the main process's time: at 5 %, ``imgSz64_nCh_3`` prop 1 spent 7 s more).
ATTACK_LATER_SHARE = 0.02
ATTACK_TOTAL_S = 10.0


def _bound(
    graph: Graph, plan: CutPlan | OpPlan | None, rows: StackedRows, boxes: SplitBoxes, free: np.ndarray, budget: Budget
) -> tuple[np.ndarray, np.ndarray, LayerBounds | OpBounds | None]:
    """Row lower bounds ``(B, K)``, their lower functions ``(B, K, n_free + 1)`` of normalised coordinates, and
    the bounds of the tensors or layers the children inherit (None without a plan)."""
    from nnverify.bounds import backward_ops
    from nnverify.bounds.backward_ops import OpBounds, OpPlan
    from nnverify.bounds.forward_cut import cut_rows_lower

    lb, ub = boxes.lb, boxes.ub
    x_form = input_form(lb, ub, free, (lb.shape[1],))
    if isinstance(plan, OpPlan):
        parent = boxes.parent if isinstance(boxes.parent, OpBounds) else None
        state = backward_ops.op_bounds(plan, lb, ub, free, parent=parent, budget=budget)
        lower, func = backward_ops.rows_lower(plan, state, rows.a_x, rows.a_y, rows.b, x_form)
        return lower, func, state
    if plan is not None:
        assert not isinstance(boxes.parent, OpBounds)
        return cut_rows_lower(plan, lb, ub, free, rows.a_x, rows.a_y, rows.b, parent=boxes.parent, budget=budget)
    out = forward_forms(graph, lb, ub, free, budget=budget)
    lower, func = rows_lower(out, rows.a_x, rows.a_y, rows.b, x_form)
    return lower, func, None


@dataclass(slots=True)
class _Search:
    """One forward-split search (the interface ``parallel.shared_search`` drives): bounds the top batch of a stack
    of boxes and pushes both halves of each open one; it has no exact leaves."""

    graph: Graph
    plan: CutPlan | OpPlan | None
    disjuncts: list[Disjunct]
    budget: Budget
    batch: int = BATCH
    #: Called after each batch with its seconds, in the main process only: more attack; a replayed point or None.
    between: Callable[[float], np.ndarray | None] | None = None
    stats: SearchStats = field(default_factory=SearchStats)
    note: str = ""
    rows: StackedRows = field(init=False)
    free: np.ndarray = field(init=False)
    index: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.rows = StackedRows.of(self.disjuncts)
        self.free = self.disjuncts[0].lb < self.disjuncts[0].ub
        self.index = np.flatnonzero(self.free)

    def use(self, budget: Budget) -> None:
        """Bound with ``budget`` from now on (the worker process's memory cap), without ``between``."""
        self.budget, self.between = budget, None

    def run_batch(
        self, stack: list[SplitBoxes], is_counterexample: Callable[[np.ndarray], bool]
    ) -> tuple[np.ndarray | None, list[Any]]:
        """Bound the top batch of ``stack``: a replayed counterexample among its points or from ``between``, else
        None (and no leaves); the halves of its open boxes are pushed onto ``stack``."""
        started = time.monotonic()
        found = self._bound_batch(stack, is_counterexample)
        if found is None and self.between is not None:
            found = self.between(time.monotonic() - started)
        return found, []

    def _bound_batch(
        self, stack: list[SplitBoxes], is_counterexample: Callable[[np.ndarray], bool]
    ) -> np.ndarray | None:
        boxes = stack.pop()
        if len(boxes) > self.batch:
            stack.append(boxes.part(slice(self.batch, None)))
            boxes = boxes.part(slice(0, self.batch))
        lb, ub, depth, index, stats = boxes.lb, boxes.ub, boxes.depth, self.index, self.stats
        stats.boxes += len(boxes)
        lower, func, bounds = _bound(self.graph, self.plan, self.rows, boxes, self.free, self.budget)
        dead = self.rows.dead(lower)
        live = ~dead[:, self.rows.owner]
        open_box = np.any(live, axis=1)
        if not np.any(open_box):
            return None
        pts = points(func, lower, live, lb, ub, index)[np.concatenate([open_box, open_box])]
        found = try_points(self.graph, self.disjuncts, pts, is_counterexample, stats)
        if found is not None:
            return found
        max_depth = SMOOTH_DEPTH_PER_INPUT * index.size
        deep = open_box & (depth >= max_depth)
        if np.any(deep):
            self.note = f"the relaxation left a box open after {max_depth} splits"
        grow = open_box & ~deep
        if np.any(grow):
            root = (self.disjuncts[0].ub - self.disjuncts[0].lb)[index]
            kids = halves(func[grow], live[grow], lb[grow], ub[grow], depth[grow], index, root)
            stack.append(SplitBoxes(*kids, twice_bounds(bounds, grow)))
            stats.max_depth = max(stats.max_depth, int(depth[grow].max()) + 1)
        return None

    def settle(
        self, leaves: list[Any], backend: Any, budget: Budget, is_counterexample: Callable[[np.ndarray], bool]
    ) -> SearchOutcome | None:
        """No exact leaves here: nothing to decide."""
        return None

    def outcome(self) -> SearchOutcome:
        """The answer once every box is closed: proven, or undecided with the note."""
        if self.note:
            return SearchOutcome(SolveStatus.UNKNOWN, note=self.note, stats=self.stats)
        return SearchOutcome(SolveStatus.INFEASIBLE, stats=self.stats)


def forward_split_search(
    graph: Graph,
    plan: CutPlan | OpPlan | None,
    disjuncts: list[Disjunct],
    budget: Budget,
    is_counterexample: Callable[[np.ndarray], bool],
    cores: int = 1,
    between: Callable[[float], np.ndarray | None] | None = None,
) -> SearchOutcome:
    """Decide "some x in the disjuncts' common box reaches one of them" by bisecting the free inputs; with
    ``cores`` >= 2 and if two processes fit the memory cap (``fits_twice``), the root box is halved unbounded and
    the halves shared with a second process at once (``PRESPLIT``; else the boxes are shared once the search is
    open after ``SHARE_AFTER_S``); ``between``: see ``_Search``."""
    search = _Search(graph, plan, disjuncts, budget, between=between)
    lb0, ub0, depth0 = disjuncts[0].lb[None, :], disjuncts[0].ub[None, :], np.zeros(1, dtype=np.int64)
    share_at = time.monotonic() + SHARE_AFTER_S if cores >= 2 else math.inf
    if PRESPLIT and cores >= 2 and np.any(lb0 < ub0) and fits_twice(budget):
        dim = sensitive_input(graph, disjuncts)
        stack = [SplitBoxes(*bisect(lb0, ub0, depth0, np.array([dim])))]
        share_at = -math.inf
    else:
        stack = [SplitBoxes(lb0, ub0, depth0)]
    while stack:
        if budget.expired():
            return SearchOutcome(SolveStatus.TIMEOUT, note=TIMEOUT_NOTE, stats=search.stats)
        if time.monotonic() >= share_at and budget.remaining() > SHARE_MIN_LEFT_S:
            if fits_twice(budget):
                from nnverify.search.parallel import shared_search

                search.batch = SHARED_BATCH
                return shared_search(search, stack, None, budget, is_counterexample, search.use)
            share_at = math.inf
        found, _ = search.run_batch(stack, is_counterexample)
        if found is not None:
            return SearchOutcome(SolveStatus.FEASIBLE, found, stats=search.stats)
    return search.outcome()


def fits_twice(budget: Budget) -> bool:
    """Whether a second process fits the memory cap: it starts at this process's resident memory (shared pages
    count in both) and may grow to this process's peak so far (its boxes are like this one's)."""
    return resident_mb() + peak_mb() <= budget.memory_limit_mb


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


def _plan(analysis: Graph, budget: Budget, disjuncts: list[Disjunct] | None = None) -> CutPlan | OpPlan | None:
    """The bounds a box gets: CROWN on the op graph down to the free inputs where every node allows it, else
    forward functions up to a cut and CROWN on the dense view after it (or forward functions alone): the cheap cut,
    or the deep one where the cheap one leaves ``disjuncts``' root box loose (``ROOT_LOOSE``)."""
    from nnverify.bounds import backward_ops
    from nnverify.bounds.forward_cut import DEEP_CUT_COST_MAX, plan_cut, prefers_cut

    ops = backward_ops.plan(analysis)
    if backward_ops.unsupported(ops) is None and OP_BACKWARD and not prefers_cut(analysis):
        return ops
    cap = getattr(budget, "memory_limit_mb", math.inf)
    limit = min(CUT_MAX_MB, (DENSE_VIEW_MAX_MB if math.isinf(cap) else cap) / 4)
    plan = plan_cut(analysis, limit, budget)
    if plan is None or not disjuncts or not _loose(plan, disjuncts, budget):
        return plan
    return plan_cut(analysis, limit, budget, DEEP_CUT_COST_MAX) or plan


#: A cheap cut whose root box leaves some row below ``-ROOT_LOOSE`` is replaced by the deep cut (CROWN rows walk
#: their receptive fields, so an earlier cut costs a few times more per box and may save thousands of boxes). Root
#: rows at the cheap cut: cGAN 64x64 nets -8.6 (``imgSz64_nCh_1`` prop 1; -0.002 at the deep cut, 70 s CPU), -70
#: (prop 0); the upsample cGAN -0.084 (its deep cut: -0.002 but 55 s CPU against 9.7 s).
ROOT_LOOSE = 1.0


def _loose(plan: CutPlan, disjuncts: list[Disjunct], budget: Budget) -> bool:
    """Whether the root box of ``disjuncts`` (sharing one box) leaves some row below ``-ROOT_LOOSE`` at ``plan``."""
    from nnverify.bounds.forward_cut import cut_rows_lower

    rows = StackedRows.of(disjuncts)
    lb, ub = disjuncts[0].lb[None, :], disjuncts[0].ub[None, :]
    lower, _, _ = cut_rows_lower(plan, lb, ub, lb[0] < ub[0], rows.a_x, rows.a_y, rows.b, budget=budget)
    return bool(np.min(lower) < -ROOT_LOOSE)


#: On two processes the root box is halved before it is bounded, one half per process (``sensitive_input``
#: chooses the input). In one process, CPU s: cGAN ``imgSz64_nCh_1`` prop 0 (deep cut) root 67.5 then halves 21 +
#: 20 (inheriting the root's bounds), or halves 58.5 and 55.6 without it (the same rows): 88 s to the depth-2 boxes
#: on the critical path against 59; ``imgSz32_nCh_1`` prop 3 (op graph) root 17.8 then halves 4.7 + 4.4, or halves
#: 12.6 and 10.6 without it: 22.5 s against 12.6. A root box that would be proven alone costs more CPU this way.
PRESPLIT = True
#: Points (the centre and random ones) at which ``sensitive_input`` compares each input's two faces.
SENSITIVITY_POINTS = 8


def sensitive_input(graph: Graph, disjuncts: list[Disjunct], seed: int = 0) -> int:
    """The free input along which the disjuncts' rows change most, sampled: at ``SENSITIVITY_POINTS`` points of
    the box, the row values at the input's lower and upper face (the root box's bounds would cost up to a minute;
    the cheap cut's rows chose another input than the deep cut's on ``imgSz64_nCh_1`` prop 1, where sampling
    agrees with the deep cut's rows: input 0, weights 0.0042 against <= 8e-5)."""
    rows = StackedRows.of(disjuncts)
    lb, ub = disjuncts[0].lb, disjuncts[0].ub
    free = np.flatnonzero(lb < ub)
    base = np.vstack([(lb + ub) / 2.0, np.random.default_rng(seed).uniform(lb, ub, (SENSITIVITY_POINTS - 1, lb.size))])
    faces = np.repeat(base[None], 2 * free.size, axis=0)
    faces[0::2, :, free] = np.where(np.eye(free.size, dtype=bool)[:, None, :], lb[free], faces[0::2][:, :, free])
    faces[1::2, :, free] = np.where(np.eye(free.size, dtype=bool)[:, None, :], ub[free], faces[1::2][:, :, free])
    x = faces.reshape(-1, lb.size)
    value = (x @ rows.a_x.T + graph.eval(x) @ rows.a_y.T).reshape(2 * free.size, base.shape[0], -1)
    change = np.abs(value[1::2] - value[0::2]).mean(axis=1).sum(axis=1)
    return int(free[np.argmax(np.nan_to_num(change))])


#: Whether the op-graph back-substitution (``bounds/backward_ops.py``) is used where it applies.
OP_BACKWARD = True


def forward_route(
    graph: Graph, analysis: Graph, prop: Property, options: Options, budget: Budget, notes: list[str]
) -> Result:
    """The whole run for a network whose dense view is too large: a short graph attack, then input splitting
    with forward bounds on ``analysis``; every candidate is replayed on ``graph``'s ONNX file."""
    from nnverify.bounds.backward_ops import OpPlan
    from nnverify.bounds.forward_cut import CutPlan

    started = time.monotonic()
    replay = OnnxReplay(graph, prop, options)
    found = replay.found

    def accept(x: np.ndarray, box: Disjunct) -> bool:
        return replay.accept(x, box) or bool(found)

    slice_end = min(budget.deadline, started + max(1.0, min(ATTACK_MAX_S, ATTACK_SHARE * budget.remaining())))
    attack = search(analysis, prop, dataclasses.replace(budget, deadline=slice_end), accept, options.seed)
    stats: dict[str, float | int | str] = {"graph_points": attack.points, "attack_s": round(attack.seconds, 4)}

    def between(batch_s: float) -> np.ndarray | None:
        """More attack after a batch (``ATTACK_TOTAL_S``), from another seed each time."""
        spent, rounds = float(stats["attack_s"]), int(stats.get("attack_slices", 1))
        seconds = min(ATTACK_LATER_SHARE * batch_s, ATTACK_TOTAL_S - spent)
        if seconds > 0.0 and not found:
            end = min(budget.deadline, time.monotonic() + seconds)
            more = search(analysis, prop, dataclasses.replace(budget, deadline=end), accept, options.seed + rounds)
            stats["attack_s"] = round(spent + more.seconds, 4)
            stats["graph_points"] = int(stats["graph_points"]) + more.points
            stats["attack_slices"] = rounds + 1
        return found[0].x if found else None

    if found:
        return Result(Verdict.SAT, found[0], "graph-attack", time.monotonic() - started, "; ".join(notes), stats)
    groups: dict[bytes, list[Disjunct]] = {}
    for d in prop.disjuncts:
        groups.setdefault(d.lb.tobytes() + d.ub.tobytes(), []).append(d)
    plan = _plan(analysis, budget, next(iter(groups.values())))
    cores = options.cores()
    stats["cut"] = plan.cut if isinstance(plan, CutPlan) else ""
    stats["bounds"] = "backward-ops" if isinstance(plan, OpPlan) else "forward-cut" if plan is not None else "forward"
    undecided: list[str] = []
    timed_out = False
    for group in groups.values():
        accept_group = functools.partial(accept, box=group[0])
        out = forward_split_search(analysis, plan, group, budget, accept_group, cores, between)
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
