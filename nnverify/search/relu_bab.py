"""Branch and bound on ReLU splits for wide inputs (MNIST: 784), with α/β-CROWN bounds and exact leaves.

The input box stays whole; a *domain* is a disjunct plus a set of split constraints (``z >= 0`` or ``z <= 0``)
on unstable ReLU inputs. At the root the intermediate bounds are tightened (interval, forward symbolic,
CROWN, then α-CROWN per layer). Each domain keeps its own intermediate bounds: its parent's with the split
neuron clamped at 0, the layers after the split recomputed by CROWN (``_Search.tighten``); the property's
rows are bounded with those and the split constraints through β multipliers (``bounds/optimized.py``), as
β-CROWN does. Domains are bounded in batches, depth first; a domain is proven when a row of its disjunct has a
positive sound lower bound, or when its bounds cross (an empty region).

Branching (a BaBSR-like score, Bunel et al., JMLR 2020): the unstable, unsplit neuron whose upper-line
intercept costs the bound most, ``-min(lam_i, 0) * (-u_i l_i / (u_i - l_i))`` with ``lam`` the coefficient of
the neuron in the domain's best row; the best two per layer are bounded one-shot and the one whose worse
child is best is split (filtered smart branching), the earliest layer's when none lifts the worse child. Each
domain's multipliers are optimised for ``BRANCH_ITERATIONS`` steps, a domain leaving as soon as a row is
positive (30 steps closed prop_3 at eps 0.05 of MNIST 256x4 in 126 s where 10 and 20 did not in 150 s; with
the earliest-layer rule, 42 s). A domain with no unstable neuron left is an LP, handed to the exact
backend with the domain's bounds (so the search is complete). Every domain's relaxed minimiser (an input
vertex) is evaluated as a candidate counterexample; candidates go to the caller's replay callback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from nnverify.backends.base import Backend, SolverRangeError, SolveStatus
from nnverify.backends.pool import SolverPool, default_pool
from nnverify.bounds.backward import SLOPE_RULES, LayerBounds, backward_rows_lower, crown_bounds_checked
from nnverify.bounds.interval import Bounds, interval_bounds
from nnverify.bounds.optimized import Slopes, neuron_bounds, optimize, optimized_layer_bounds
from nnverify.bounds.propagate import propagate
from nnverify.bounds.refine import RefineStats, refinable_layers, refine_bounds
from nnverify.bounds.relu_pass import Duals, Pass, relu_layers, supports
from nnverify.bounds.trial_splits import split_lower
from nnverify.budget import Budget, BudgetExpired
from nnverify.graph.layers import ActivationLayer, AffineLayer, LayerGraph
from nnverify.options import Options
from nnverify.search.bab import SearchOutcome, SearchStats, replay_best, settle_leaf
from nnverify.search.exact import BoxOutcome, BoxQuery, bound_box, live_disjuncts, solve_box
from nnverify.spec.property import Disjunct

#: α-CROWN iterations per pre-activation layer at the root, for the rows at the root, and per branching step.
ROOT_LAYER_ITERATIONS = 20
ROOT_ITERATIONS = 50
BRANCH_ITERATIONS = 30
#: The racing thread refines the intermediate bounds by MILPs for this share of the budget left when the root
#: stays open, at most ``REFINE_SOLVE_S`` per bound (``bounds/refine.py``), before its whole-box MILP.
REFINE_SHARE = 0.6
REFINE_SOLVE_S = 1.0
#: Seconds beyond one refinement solve that stopping the racing thread may wait (a whole-box MILP stops on
#: cancel within about 0.1 s).
STOP_GRACE_S = 4.0
#: Domains taken from the stack per step (each gives two children).
BATCH = 64
#: Domains whose intermediate bounds are recomputed together (memory: rows x inputs per domain).
TIGHTEN_CHUNK = 32
#: Domains propagated together (memory: the rows that can tighten something, x their width).
PROPAGATE_CHUNK = 16
#: Neurons per ReLU layer whose children are bounded before one is chosen (filtered smart branching).
FSB_PER_LAYER = 2
#: Weight of the better child when candidates' worse children tie.
TIE_WEIGHT = 0.1
#: Right-hand side of the padding rows of disjuncts with fewer rows than the widest (never provable).
_PAD_B = 1e30


def uses_relu_splitting(graph: LayerGraph) -> bool:
    """Whether this search applies: affine layers and at least one ReLU, nothing else."""
    return supports(graph) and bool(relu_layers(graph))


@dataclass(frozen=True, slots=True)
class _Rows:
    """Every live disjunct's rows padded to ``K``: ``a_y (D, K, m)``, ``a_x (D, K, n)``, ``b (D, K)``."""

    a_y: np.ndarray
    a_x: np.ndarray
    b: np.ndarray

    @classmethod
    def of(cls, disjuncts: list[Disjunct]) -> _Rows:
        k = max(1, max(d.n_rows for d in disjuncts))
        m, n = disjuncts[0].a_y.shape[1], disjuncts[0].a_x.shape[1]
        a_y, a_x, b = (
            np.zeros((len(disjuncts), k, m)),
            np.zeros((len(disjuncts), k, n)),
            np.full((len(disjuncts), k), _PAD_B),
        )
        for i, d in enumerate(disjuncts):
            a_y[i, : d.n_rows], a_x[i, : d.n_rows], b[i, : d.n_rows] = d.a_y, d.a_x, d.b
        if all(d.n_rows == 0 for d in disjuncts):
            b[:] = 0.0  # a disjunct without rows is the whole box: never provable, as it should be
        return cls(a_y, a_x, b)

    def take(self, disjunct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(a_y, a_x, b)`` of each domain's disjunct: ``(B, K, m)``, ``(B, K, n)``, ``(B, K)``."""
        return self.a_y[disjunct], self.a_x[disjunct], self.b[disjunct]


#: ``_Domains.since`` of a domain whose bounds already account for all its splits.
_CLEAN = np.iinfo(np.int64).max


@dataclass(slots=True)
class _Domains:
    """A batch of domains: split signs per pre-activation layer ``(B, size)`` in {-1, 0, +1}, the domain's own
    bounds of every pre-activation layer ``lb``, ``ub`` ``(B, size)`` (split neurons clamped at 0), the
    earliest layer split since the bounds of the layers after it were last recomputed (``since``, ``_CLEAN``
    when none), duals, the disjunct each belongs to, its depth, and the best lower bound known for it (its
    parent's: a child's region lies inside its parent's, so the parent's bound holds for the child too)."""

    splits: dict[int, np.ndarray]
    lb: dict[int, np.ndarray]
    ub: dict[int, np.ndarray]
    since: np.ndarray
    duals: Duals
    disjunct: np.ndarray
    depth: np.ndarray
    known: np.ndarray

    def __len__(self) -> int:
        return int(self.disjunct.shape[0])

    def take(self, sel: np.ndarray) -> _Domains:
        """The selected domains (fancy indexing: every array is a copy)."""
        return _Domains(
            {k: v[sel] for k, v in self.splits.items()},
            {k: v[sel] for k, v in self.lb.items()},
            {k: v[sel] for k, v in self.ub.items()},
            self.since[sel],
            self.duals.take(sel),
            self.disjunct[sel],
            self.depth[sel],
            self.known[sel],
        )


class _Search:
    """State of one ReLU branch and bound over one input box."""

    def __init__(
        self,
        graph: LayerGraph,
        root: LayerBounds,
        rows: _Rows,
        disjuncts: list[Disjunct],
        options: Options,
        slopes: dict[int, Slopes] | None = None,
    ) -> None:
        self.graph, self.root, self.rows, self.disjuncts = graph, root, rows, disjuncts
        self.slopes = slopes or {}
        self.margins = {"margin_rel": options.bound_margin_rel, "margin_abs": options.bound_margin_abs}
        self.relu = {r: graph.layers[r].source for r in relu_layers(graph)}  # type: ignore[union-attr]
        self.relu_of = {src: r for r, src in self.relu.items()}
        self.pre = list(self.relu.values())
        self.stats = SearchStats()
        #: How many times refined root bounds were absorbed (a batch taken before the last one catches up).
        self.generation = 0

    def bounds_of(self, dom: _Domains, sel: np.ndarray | None = None) -> LayerBounds:
        """Every layer's bounds for a batch of domains (or the ``sel`` ones): the input box, the domains' own
        pre-activation bounds, and the ReLU outputs of those."""
        batch = len(dom) if sel is None else sel.size
        lbs = [np.broadcast_to(v, (batch, v.shape[1])) for v in self.root.lb]
        ubs = [np.broadcast_to(v, (batch, v.shape[1])) for v in self.root.ub]
        for k, layer in enumerate(self.graph.layers):
            if k in dom.lb:
                lbs[k], ubs[k] = (dom.lb[k], dom.ub[k]) if sel is None else (dom.lb[k][sel], dom.ub[k][sel])
            elif isinstance(layer, ActivationLayer):
                lbs[k], ubs[k] = np.maximum(lbs[layer.source], 0.0), np.maximum(ubs[layer.source], 0.0)
        return LayerBounds(lbs, ubs)

    def tighten(self, dom: _Domains) -> np.ndarray:
        """Recompute the bounds of the domains with new splits, in place; ``(B,)`` mask of the domains found
        empty.

        A split clamps its neuron's bound at 0, which tightens every later layer: the bounds of the layers
        after ``since`` are back-substituted again through the domain's bounds and intersected with the ones
        it had (both hold on the domain's region). On MNIST 256x4 prop_3 at eps 0.05 this took the search from
        4,761 domains to 577. Then constraint propagation (``bounds/propagate.py``) carries the splits back to
        the earlier layers and forward again (491 domains to 117)."""
        todo = dom.since < _CLEAN
        empty = np.zeros(len(dom), dtype=bool)
        if not np.any(todo):
            return empty
        for k in self.pre:
            sel = np.nonzero(dom.since < k)[0]
            for start in range(0, sel.size, TIGHTEN_CHUNK):
                part = sel[start : start + TIGHTEN_CHUNK]
                lb, ub = dom.lb[k][part], dom.ub[k][part]
                idx = np.nonzero(np.any((lb < 0.0) & (ub > 0.0), axis=0))[0]
                if idx.size == 0:
                    continue
                alpha = self.slopes[k].rows(idx) if k in self.slopes else None
                lower, upper, _ = neuron_bounds(
                    self.graph, self.bounds_of(dom, part), k, idx, iterations=0, alpha=alpha, **self.margins
                )
                dom.lb[k][part[:, None], idx] = np.maximum(lb[:, idx], lower)
                dom.ub[k][part[:, None], idx] = np.minimum(ub[:, idx], upper)
        sel = np.nonzero(todo)[0]
        for start in range(0, sel.size, PROPAGATE_CHUNK):
            part = sel[start : start + PROPAGATE_CHUNK]
            tight, crossed = propagate(self.graph, self.bounds_of(dom, part), **self.margins)
            for s in self.pre:
                dom.lb[s][part], dom.ub[s][part] = tight.lb[s], tight.ub[s]
            empty[part] = crossed
        dom.since[todo] = _CLEAN
        return empty

    def absorb(self, refined: LayerBounds, slopes: dict[int, Slopes], domains: list[_Domains]) -> None:
        """Take tighter root bounds (MILP-refined, valid on the whole box, so on every domain) and the
        α-CROWN slopes optimised for them: intersect the bounds into every open domain's and have the layers
        after the first recomputed when each is next bounded. The tree so far is kept (restarting from the
        root threw away up to a publishing period of search each time the refinement published). Domains
        being bounded meanwhile catch up through ``generation`` (``catch_up``)."""
        self.root = refined
        if slopes:
            self.slopes = slopes
        self.generation += 1
        self.intersect(domains)

    def intersect(self, domains: list[_Domains]) -> None:
        """The root's bounds intersected into ``domains``' own (in place), later layers to be recomputed."""
        for dom in domains:
            for s in self.pre:
                np.maximum(dom.lb[s], self.root.lb[s], out=dom.lb[s])
                np.minimum(dom.ub[s], self.root.ub[s], out=dom.ub[s])
            dom.since[:] = self.pre[0]

    def evaluate(self, dom: _Domains, iterations: int) -> tuple[np.ndarray, Duals, np.ndarray, np.ndarray]:
        """Optimised sound lower bound per domain ``(B,)`` (best row), the duals, the branching choice
        ``(B, 2)`` (layer, neuron; -1 when none is left) and the relaxed minimiser ``(B, n)``."""
        # bounds that cross (lb > ub) prove the domain's region empty: nothing in it can be a counterexample
        empty = self.tighten(dom)
        for s in self.pre:
            empty |= np.any(dom.lb[s] > dom.ub[s], axis=1)
        bounds = self.bounds_of(dom)
        lower, duals, passed, coef_x = optimize(
            self.graph,
            bounds,
            self.graph.output,
            *self.rows.take(dom.disjunct),
            dom.duals,
            dom.splits,
            iterations=iterations,
            margin_rel=self.margins["margin_rel"],
            margin_abs=self.margins["margin_abs"],
            stop_proven=True,
        )
        # Seed the β slot of every unsplit neuron (where it has no effect) with its positive coefficient, so
        # that a split can start from the parent's own line (``_split``).
        for r, src in self.relu.items():
            if r in passed.lam:
                free = dom.splits[src][:, None, :] == 0
                duals.beta[src] = np.where(free, np.maximum(passed.lam[r], 0.0), duals.beta[src])
        best_row = np.argmax(lower, axis=1)
        at = np.arange(len(dom))
        x_star = np.where(coef_x[at, best_row] >= 0.0, bounds.lb[0], bounds.ub[0])
        best = np.where(empty, np.inf, np.maximum(lower.max(axis=1), dom.known))
        choice = np.full((len(dom), 2), -1, dtype=np.int64)
        open_ = np.nonzero(best <= 0.0)[0]
        if open_.size:
            cands = self._candidates(bounds, passed.lam, best_row, dom.splits, open_)
            dom_open = dom.take(open_)
            dom_open.duals, dom_open.known = duals.take(open_), best[open_]
            choice[open_] = self._filter(dom_open, cands, passed.take(open_))
        return best, duals, choice, x_star

    def _candidates(
        self,
        bounds: LayerBounds,
        lam: dict[int, np.ndarray],
        row: np.ndarray,
        splits: dict[int, np.ndarray],
        sel: np.ndarray,
    ) -> np.ndarray:
        """``(B, FSB_PER_LAYER * layers, 2)`` (layer, neuron) with the largest intercept scores per layer (-1: no
        neuron)."""
        scores, where = [], []
        for r in relu_layers(self.graph):
            s = self.graph.layers[r].source  # type: ignore[union-attr]
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

    def _filter(self, dom: _Domains, cands: np.ndarray, passed: Pass) -> np.ndarray:
        """Filtered smart branching (De Palma et al., ICLR 2021): bound both children of each candidate with
        the parent's duals and bounds, no optimisation (``split_lower``, from the parent's pass ``passed``);
        keep the candidate whose worse child is best."""
        b = cands.shape[0]
        lower = split_lower(
            self.graph,
            self.bounds_of(dom),
            self.graph.output,
            passed,
            *self.rows.take(dom.disjunct),
            dom.duals,
            dom.splits,
            cands,
            self.margins["margin_rel"],
            self.margins["margin_abs"],
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

    def children(self, dom: _Domains, choice: np.ndarray) -> _Domains:
        """Both branches of every domain on its chosen neuron."""
        both = dom.take(np.concatenate([np.arange(len(dom)), np.arange(len(dom))]))
        half = len(dom)
        for i in range(2 * half):
            s, j = choice[i % half]
            self._split(both, i, int(s), int(j), i < half)
        both.depth = both.depth + 1
        return both

    def _split(self, dom: _Domains, i: int, s: int, j: int, active: bool) -> None:
        """Split neuron ``j`` of layer ``s`` in domain ``i`` (whose split arrays are its own copies).

        The new multiplier starts where the parent's line is kept: with ``c = max(lam, 0)`` (seeded in the β
        slot by ``evaluate``) and the parent's slope ``a``, the active child (``y = z``) gets ``β = c (1 - a)``
        and the inactive one (``y = 0``) ``β = c a``, so the child's coefficient on ``z`` is the parent's ``c a``:
        with β at 0 instead, the child's first bound is often below its parent's.
        """
        dom.splits[s][i, j] = 1 if active else -1
        if active:
            dom.lb[s][i, j] = max(dom.lb[s][i, j], 0.0)
        else:
            dom.ub[s][i, j] = min(dom.ub[s][i, j], 0.0)
        dom.since[i] = min(int(dom.since[i]), s)
        r = self.relu_of[s]
        slot = dom.duals.beta[s][i, :, j]
        slope = dom.duals.alpha[r][i, :, j]
        dom.duals.beta[s][i, :, j] = slot * (1.0 - slope) if active else slot * slope


class _RacingMilp:
    """A second thread beside the search: first MILP-refined intermediate bounds (``bounds/refine.py``, for
    ``REFINE_SHARE`` of the budget left, when ``refine``), then the whole box as one MILP with those bounds.

    Used only with a ``cancellable`` backend: HiGHS releases the GIL while it solves, so on two cores the
    MILPs and the numpy bounding run side by side. The search intersects the refined bounds into its open
    domains when they arrive (``refined``); whichever of the search and the MILP decides first wins and the
    other stops.
    """

    def __init__(
        self,
        graph: LayerGraph,
        root: LayerBounds,
        disjuncts: list[Disjunct],
        backend: Backend,
        budget: Budget,
        refine: bool,
        margins: dict[str, float],
        workers: int = 1,
        pool: SolverPool | None = None,
    ) -> None:
        self.cancel = threading.Event()
        self.pool = pool or default_pool()
        self.outcome: BoxOutcome | None = None
        self.refined: tuple[LayerBounds, dict[int, Slopes]] | None = None
        self.refine_stats = RefineStats()
        self.refine_started: float | None = None
        lbs, ubs = [np.array(v[0]) for v in root.lb], [np.array(v[0]) for v in root.ub]

        slopes: dict[int, Slopes] = {}

        def reoptimise(lo: list[np.ndarray], hi: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
            nonlocal slopes
            slopes = {}
            b = LayerBounds([v[None] for v in lo], [v[None] for v in hi])
            b = optimized_layer_bounds(graph, b, iterations=ROOT_LAYER_ITERATIONS, slopes=slopes, **margins)
            return [v[0] for v in b.lb], [v[0] for v in b.ub]

        def publish(lo: list[np.ndarray], hi: list[np.ndarray]) -> None:
            # one assignment, so the search never sees bounds with the slopes of other bounds
            self.refined = (LayerBounds([v[None] for v in lo], [v[None] for v in hi]), slopes)

        def run() -> None:
            nonlocal lbs, ubs
            if refine and refinable_layers(graph):
                self.refine_started = time.monotonic()
                lbs, ubs, _ = refine_bounds(
                    graph,
                    lbs,
                    ubs,
                    deadline=time.monotonic() + REFINE_SHARE * budget.remaining(),
                    per_solve_s=REFINE_SOLVE_S,
                    reoptimise=reoptimise,
                    cancel=self.cancel,
                    workers=workers,
                    publish=publish,
                    stats=self.refine_stats,
                    pool=self.pool,
                )
            if not self.cancel.is_set():
                try:
                    self.outcome = solve_box(graph, lbs, ubs, disjuncts, backend, budget, self.cancel)
                except SolverRangeError as exc:  # the search goes on; its own leaves will say so
                    self.outcome = BoxOutcome(SolveStatus.UNKNOWN, note=str(exc))

        self.thread = threading.Thread(target=run, name="nnverify-milp", daemon=True)
        self.thread.start()

    def result(self) -> BoxOutcome | None:
        """The MILP's outcome once it has finished, else None."""
        return None if self.thread.is_alive() else self.outcome

    def refine_seconds(self) -> float:
        """Seconds the refinement ran (so far, when it was stopped before it returned)."""
        if self.refine_stats.seconds or self.refine_started is None:
            return self.refine_stats.seconds
        return time.monotonic() - self.refine_started

    def take_refined(self) -> tuple[LayerBounds, dict[int, Slopes]] | None:
        """The refined root bounds and the α-CROWN slopes behind them, once (None before they are ready and
        after they were taken)."""
        refined, self.refined = self.refined, None
        return refined

    def stop(self) -> None:
        """Cancel and wait for the thread: a refinement solve stops at its own time limit, and a process
        must not exit while HiGHS runs in one of its threads (the process aborts)."""
        self.cancel.set()
        self.thread.join(REFINE_SOLVE_S + STOP_GRACE_S)
        if self.thread.is_alive():  # the pool keeps it: the program then leaves without interpreter teardown
            self.pool.abandon(self.thread)


def relu_split_search(
    graph: LayerGraph,
    disjuncts: list[Disjunct],
    lb: np.ndarray,
    ub: np.ndarray,
    backend: Backend,
    budget: Budget,
    options: Options,
    is_counterexample: Callable[[np.ndarray], bool],
    *,
    race_milp: bool = True,
    refine: bool = False,
    refine_workers: int = 1,
    search_threads: int = 1,
    pool: SolverPool | None = None,
) -> SearchOutcome:
    """Decide "some x in [lb, ub] reaches one of ``disjuncts``" (all sharing that box) by ReLU splitting in
    ``search_threads`` threads, raced against MILP refinement and one MILP of the box when the backend can be
    cancelled (and ``race_milp``; the refinement only with ``refine``, solving ``refine_workers`` bounds at a
    time). Native solves go through ``pool`` (the process's default pool if None). Networks too wide for
    the forward symbolic pass (``SYMBOLIC_MAX_MULADDS``: the CIFAR CNNs) race no MILP and search in
    ``max(search_threads, refine_workers)`` threads: on oval21's cifar_base img2578 in 150 s, the refinement
    stabilised none of 121 neurons while the search bounded 496 domains beside it and 1,066 alone."""
    pool = pool or default_pool()
    if _symbolic_muladds(graph) > SYMBOLIC_MAX_MULADDS:
        race_milp, search_threads = False, max(search_threads, refine_workers)
    try:
        query = _root_query(graph, lb, ub, disjuncts, options, budget)
    except BudgetExpired as exc:
        return SearchOutcome(SolveStatus.TIMEOUT, note=str(exc))
    if not query.live:
        return SearchOutcome(SolveStatus.INFEASIBLE, note="bounds")
    margins = {"margin_rel": options.bound_margin_rel, "margin_abs": options.bound_margin_abs}
    slopes: dict[int, Slopes] = {}
    root = optimized_layer_bounds(
        graph,
        LayerBounds([v[None, :] for v in query.lbs], [v[None, :] for v in query.ubs]),
        iterations=ROOT_LAYER_ITERATIONS,
        slopes=slopes,
        **margins,
    )
    live = query.live
    search = _Search(graph, root, _Rows.of(live), live, options, slopes)
    races: list[_RacingMilp] = []

    def start_race(open_disjuncts: list[Disjunct]) -> _RacingMilp | None:
        if not backend.capabilities.cancellable or not race_milp:
            return None
        races.append(_RacingMilp(graph, root, open_disjuncts, backend, budget, refine, margins, refine_workers, pool))
        return races[-1]

    try:
        out = _run(search, backend, budget, is_counterexample, start_race, search_threads, pool)
    finally:
        for race in races:
            race.stop()
    for race in races:
        out.stats.refine_solves += race.refine_stats.solves
        out.stats.stabilised += race.refine_stats.stabilised
        out.stats.refine_s += race.refine_seconds()
    return out


#: Multiply-adds of the forward symbolic pass above which the root skips it and starts CROWN from interval
#: bounds: a CIFAR CNN over 3,072 inputs costs ~100 G there (20 s); MNIST-FC 256x6 about 1.2 G keeps it.
SYMBOLIC_MAX_MULADDS = 1 << 33


def _symbolic_muladds(graph: LayerGraph) -> int:
    n = graph.n_inputs + 1
    return sum(
        4 * layer.size * sum(graph.layers[s].size for s in layer.sources) * n
        for layer in graph.layers
        if isinstance(layer, AffineLayer)
    )


def _root_query(
    graph: LayerGraph, lb: np.ndarray, ub: np.ndarray, disjuncts: list[Disjunct], options: Options, budget: Budget
) -> BoxQuery:
    """``bound_box``, or for wide inputs (``SYMBOLIC_MAX_MULADDS``) the same without its forward symbolic pass:
    interval bounds, CROWN, then the disjuncts' rows by back-substitution (convolutions through their kernels)."""
    if _symbolic_muladds(graph) <= SYMBOLIC_MAX_MULADDS:
        return bound_box(graph, lb, ub, disjuncts, options, budget)
    margins = {"margin_rel": options.bound_margin_rel, "margin_abs": options.bound_margin_abs}

    def check() -> None:
        budget.check("bounding the input box")

    check()
    bounds = interval_bounds(graph, lb, ub, **margins)
    tight = crown_bounds_checked(graph, bounds.lb, bounds.ub, check, **margins)
    live = []
    for d in live_disjuncts(disjuncts, Bounds(tight.lb, tight.ub), 0, graph.output, options):
        check()
        lower, _ = backward_rows_lower(graph, tight.lb, tight.ub, d.a_x, d.a_y, d.b, rules=SLOPE_RULES, **margins)
        if not np.any(lower[0] > 0.0):
            live.append(d)
    return BoxQuery([v[0] for v in tight.lb], [v[0] for v in tight.ub], live)


def _root_domains(search: _Search) -> _Domains:
    """One domain per live disjunct, nothing split, duals at their start values."""
    n = len(search.disjuncts)
    first = _Domains(
        {s: np.zeros((n, search.root.lb[s].shape[1]), dtype=np.int8) for s in search.pre},
        {s: np.repeat(search.root.lb[s], n, axis=0) for s in search.pre},
        {s: np.repeat(search.root.ub[s], n, axis=0) for s in search.pre},
        np.full(n, _CLEAN, dtype=np.int64),
        Duals({}, {}),
        np.arange(n),
        np.zeros(n, dtype=np.int64),
        np.full(n, -np.inf),
    )
    first.duals = Duals.initial(search.graph, search.bounds_of(first), search.rows.b.shape[1], first.splits)
    return first


@dataclass(slots=True)
class _Frontier:
    """The domains waiting to be split, shared by the search threads (every field under ``cond``): ``busy``
    counts the batches being expanded, ``outcome`` is set by whichever thread decides first."""

    stack: list[tuple[_Domains, np.ndarray]]
    cond: threading.Condition
    busy: int = 0
    outcome: SearchOutcome | None = None
    undecided: str = ""
    stopped: bool = False
    error: BaseException | None = None

    def exhausted(self) -> bool:
        return not self.stack and self.busy == 0


def _expand(
    search: _Search,
    dom: _Domains,
    iterations: int,
    backend: Backend,
    budget: Budget,
    is_counterexample: Callable[[np.ndarray], bool],
    stats: SearchStats,
    leaf_lock: AbstractContextManager[object],
) -> tuple[SearchOutcome | None, list[tuple[_Domains, np.ndarray]], str]:
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
    search: _Search,
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
        entries: list[tuple[_Domains, np.ndarray]] = []
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


def _run(
    search: _Search,
    backend: Backend,
    budget: Budget,
    is_counterexample: Callable[[np.ndarray], bool],
    start_race: Callable[[list[Disjunct]], _RacingMilp | None],
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
    root = _root_domains(search)
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
    search: _Search,
    frontier: _Frontier,
    budget: Budget,
    race: _RacingMilp | None,
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
    search: _Search, dom: _Domains, backend: Backend, budget: Budget, stats: SearchStats
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
