"""The search loop of the ReLU branch and bound: search threads share a stack of open domains (``run_search``),
bound and split them, try their minimisers, send exhausted ones to the exact backend, while the calling thread
watches the budget and the racing MILP (``relu_race.py``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from nnverify.backends.base import Backend, SolveStatus
from nnverify.backends.pool import SolverPool, default_pool
from nnverify.budget import Budget
from nnverify.graph.layers import LayerGraph
from nnverify.search.bab import SearchOutcome, SearchStats, replay_best, settle_leaf
from nnverify.search.exact import solve_box
from nnverify.search.relu_domains import Domains
from nnverify.search.relu_race import RacingMilp
from nnverify.search.relu_search import BRANCH_ITERATIONS, ROOT_ITERATIONS, ReluSearch, root_domains
from nnverify.spec.property import Disjunct

#: Domains taken from the stack per step (each gives two children).
BATCH = 64


@dataclass(slots=True)
class _Frontier:
    """The domains waiting to be split, shared by the search threads (every field under ``cond``): ``busy``
    counts the batches being expanded, ``outcome`` is set by whichever thread decides first."""

    stack: list[tuple[Domains, np.ndarray]]
    cond: threading.Condition
    busy: int = 0
    outcome: SearchOutcome | None = None
    undecided: str = ""
    stopped: bool = False
    error: BaseException | None = None

    def exhausted(self) -> bool:
        return not self.stack and self.busy == 0


def _expand(
    search: ReluSearch,
    dom: Domains,
    iterations: int,
    backend: Backend,
    budget: Budget,
    is_counterexample: Callable[[np.ndarray], bool],
    stats: SearchStats,
    leaf_lock: AbstractContextManager[object],
) -> tuple[SearchOutcome | None, list[tuple[Domains, np.ndarray]], str]:
    """Bound a batch of domains, try their minimisers, send exhausted ones to the exact backend: a decided
    outcome (a replayed counterexample, or the budget spent in a leaf), else the open domains to split, in
    stack entries of at most ``BATCH``, and why the search may end undecided (empty: no reason)."""
    stats.boxes += len(dom)
    lower, duals, choice, x_star = search.evaluate(dom, iterations)
    dom.duals, dom.known = duals, lower
    open_ = lower <= 0.0
    if not np.any(open_):
        return None, [], ""
    found = _try_points(search.graph, search.disjuncts, x_star[open_], dom.disjunct[open_], is_counterexample, stats)
    if found is not None:
        return SearchOutcome(SolveStatus.FEASIBLE, found, stats=stats), [], ""
    undecided = ""
    leaf = open_ & (choice[:, 0] < 0)
    for i in np.nonzero(leaf)[0]:
        with leaf_lock:  # ``SolverPool.serial``: one at a time unless the backend is thread-safe
            status, x, note = _exact_leaf(search, dom.take(np.array([i])), backend, budget, stats)
        done, undecided = settle_leaf(status, x, note, undecided, is_counterexample, stats)
        if done is not None:
            return done, [], undecided
    grow = np.nonzero(open_ & ~leaf)[0]
    stats.max_depth = max(stats.max_depth, int(dom.depth.max()) + 1)
    parts = np.array_split(grow, -(-grow.size // BATCH)) if grow.size else []
    entries = [(dom.take(sel), choice[sel]) for sel in parts]
    return None, entries, undecided


def _worker(
    search: ReluSearch,
    frontier: _Frontier,
    backend: Backend,
    budget: Budget,
    is_counterexample: Callable[[np.ndarray], bool],
    stats: SearchStats,
    leaf_lock: AbstractContextManager[object],
) -> None:
    """One search thread: pop a stack entry, expand its children, push what stays open, until the frontier
    is exhausted, decided or stopped. numpy releases the GIL in its array loops and matrix products, so
    threads bound different batches side by side."""
    cond = frontier.cond
    while True:
        with cond:
            while not frontier.stack and frontier.busy and not frontier.stopped and frontier.outcome is None:
                cond.wait(0.2)
            if frontier.stopped or frontier.outcome is not None or not frontier.stack:
                cond.notify_all()
                return
            dom, choice = frontier.stack.pop()
            generation = search.generation
            frontier.busy += 1
        outcome: SearchOutcome | None = None
        entries: list[tuple[Domains, np.ndarray]] = []
        undecided = ""
        try:
            outcome, entries, undecided = _expand(
                search, search.children(dom, choice), BRANCH_ITERATIONS, backend, budget, is_counterexample, stats,
                leaf_lock,
            )  # fmt: skip
        except BaseException as exc:  # handed to the main thread, which raises it
            with cond:
                frontier.error = frontier.error or exc
        with cond:
            frontier.busy -= 1
            if outcome is not None and frontier.outcome is None:
                frontier.outcome = outcome
            if entries and search.generation != generation:  # refined bounds arrived while it was bounded
                search.intersect([d for d, _ in entries])
            frontier.stack.extend(entries)
            frontier.undecided = undecided or frontier.undecided
            cond.notify_all()


def run_search(
    search: ReluSearch,
    backend: Backend,
    budget: Budget,
    is_counterexample: Callable[[np.ndarray], bool],
    start_race: Callable[[list[Disjunct]], RacingMilp | None],
    threads: int = 1,
    pool: SolverPool | None = None,
) -> SearchOutcome:
    """The search: bound the root, start the racing thread, then ``threads`` search threads share the stack
    of open domains while this thread watches the budget and the racing thread (its refined bounds go into
    every domain on the stack, its MILP answer can end the search)."""
    stats = search.stats
    if budget.expired():
        return SearchOutcome(SolveStatus.TIMEOUT, note="budget spent during ReLU splitting", stats=stats)
    leaf_lock = (pool or default_pool()).serial(backend.capabilities)
    root = root_domains(search)
    outcome, entries, undecided = _expand(
        search, root, ROOT_ITERATIONS, backend, budget, is_counterexample, stats, leaf_lock
    )
    if outcome is not None:
        return outcome
    if not entries:
        return _exhausted(undecided, stats)
    race = start_race([search.disjuncts[i] for i in np.unique(np.concatenate([d.disjunct for d, _ in entries]))])
    frontier = _Frontier(entries, threading.Condition(), undecided=undecided)
    per_thread = [SearchStats() for _ in range(max(1, threads))]
    workers = [
        threading.Thread(
            target=_worker,
            args=(search, frontier, backend, budget, is_counterexample, s, leaf_lock),
            name=f"nnverify-search-{i}",
            daemon=True,
        )
        for i, s in enumerate(per_thread)
    ]
    for w in workers:
        w.start()
    try:
        outcome = _watch(search, frontier, budget, race, is_counterexample, stats)
    finally:
        with frontier.cond:
            frontier.stopped = True
            frontier.cond.notify_all()
        for w in workers:
            w.join()
    for s in per_thread:
        _merge_stats(stats, s)
    if frontier.error is not None:
        raise frontier.error
    if outcome is not None:
        return outcome
    return _exhausted(frontier.undecided, stats)


def _watch(
    search: ReluSearch,
    frontier: _Frontier,
    budget: Budget,
    race: RacingMilp | None,
    is_counterexample: Callable[[np.ndarray], bool],
    stats: SearchStats,
) -> SearchOutcome | None:
    """Wait until the search threads decide or run out of domains (None), the budget is spent, or the racing
    MILP decides; meanwhile hand its refined bounds to the domains on the stack."""
    cond = frontier.cond
    while True:
        with cond:
            cond.wait(0.1)
            if frontier.error is not None:
                return None
            if frontier.outcome is not None:
                return frontier.outcome
            if frontier.exhausted():
                return None
            if budget.expired():
                note = "budget spent during ReLU splitting"
                if frontier.undecided:
                    note += f" ({frontier.undecided})"
                return SearchOutcome(SolveStatus.TIMEOUT, note=note, stats=stats)
            if race is not None and (refined := race.take_refined()) is not None:
                search.absorb(*refined, [d for d, _ in frontier.stack])
        if race is not None and (milp := race.result()) is not None:
            race = None
            if milp.status is SolveStatus.INFEASIBLE:
                return SearchOutcome(SolveStatus.INFEASIBLE, note="MILP", stats=stats)
            if milp.status is SolveStatus.FEASIBLE and milp.x is not None:
                stats.candidates += 1
                if is_counterexample(milp.x):
                    return SearchOutcome(SolveStatus.FEASIBLE, milp.x, stats=stats)


def _exhausted(undecided: str, stats: SearchStats) -> SearchOutcome:
    """Every domain closed: proven, unless an exact leaf was left undecided."""
    if undecided:
        return SearchOutcome(SolveStatus.UNKNOWN, note=undecided, stats=stats)
    return SearchOutcome(SolveStatus.INFEASIBLE, stats=stats)


def _merge_stats(into: SearchStats, part: SearchStats) -> None:
    into.boxes += part.boxes
    into.leaves_exact += part.leaves_exact
    into.candidates += part.candidates
    into.max_depth = max(into.max_depth, part.max_depth)


def _exact_leaf(
    search: ReluSearch, dom: Domains, backend: Backend, budget: Budget, stats: SearchStats
) -> tuple[SolveStatus, np.ndarray | None, str]:
    """The domain (no unstable neuron left unsplit) decided by the exact backend with its clamped bounds."""
    stats.leaves_exact += 1
    bounds = search.bounds_of(dom)
    lbs = [np.array(v[0]) for v in bounds.lb]
    ubs = [np.array(v[0]) for v in bounds.ub]
    out = solve_box(search.graph, lbs, ubs, [search.disjuncts[int(dom.disjunct[0])]], backend, budget)
    return out.status, out.x, out.note


def _try_points(
    graph: LayerGraph,
    disjuncts: list[Disjunct],
    pts: np.ndarray,
    owner: np.ndarray,
    is_counterexample: Callable[[np.ndarray], bool],
    stats: SearchStats,
) -> np.ndarray | None:
    """Evaluate the domains' minimisers; replay the ones that reach their disjunct (best first, at most 3)."""
    y = graph.eval(pts)
    slack = np.full(pts.shape[0], np.inf)
    for i, d in enumerate(disjuncts):
        mine = owner == i
        if np.any(mine):
            slack[mine] = d.slack(pts[mine], y[mine])
    return replay_best(pts, slack, is_counterexample, stats)
