"""Branch and bound on ReLU splits for wide inputs (MNIST: 784), with α/β-CROWN bounds and exact leaves.

The input box stays whole; a *domain* is a disjunct plus a set of split constraints (``z >= 0`` or ``z <= 0``)
on unstable ReLU inputs. At the root the intermediate bounds are tightened (interval, forward symbolic,
CROWN, then α-CROWN per layer). Each domain keeps its own intermediate bounds: its parent's with the split
neuron clamped at 0, the layers after the split recomputed by CROWN (``relu_search.ReluSearch.tighten``); the property's
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

from collections.abc import Callable

import numpy as np

from nnverify.backends.base import Backend, SolveStatus
from nnverify.backends.pool import SolverPool, default_pool
from nnverify.bounds.backward import SLOPE_RULES, LayerBounds, backward_rows_lower, crown_bounds_checked
from nnverify.bounds.interval import Bounds, interval_bounds
from nnverify.bounds.optimized import Slopes, optimized_layer_bounds
from nnverify.bounds.relu_pass import relu_layers, supports
from nnverify.budget import Budget, BudgetExpired
from nnverify.graph.layers import AffineLayer, LayerGraph
from nnverify.options import Options
from nnverify.search.bab import SearchOutcome
from nnverify.search.exact import BoxQuery, bound_box, live_disjuncts
from nnverify.search.relu_domains import Rows
from nnverify.search.relu_frontier import run_search
from nnverify.search.relu_race import RacingMilp
from nnverify.search.relu_search import ReluSearch, root_layer_iterations
from nnverify.spec.property import Disjunct


def uses_relu_splitting(graph: LayerGraph) -> bool:
    """Whether this search applies: affine layers and at least one ReLU, nothing else."""
    return supports(graph) and bool(relu_layers(graph))


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
    search = _root_search(graph, query, options)
    root, margins = search.root, search.margins
    races: list[RacingMilp] = []

    def start_race(open_disjuncts: list[Disjunct]) -> RacingMilp | None:
        if not backend.capabilities.cancellable or not race_milp:
            return None
        races.append(RacingMilp(graph, root, open_disjuncts, backend, budget, refine, margins, refine_workers, pool))
        return races[-1]

    try:
        out = run_search(search, backend, budget, is_counterexample, start_race, search_threads, pool)
    finally:
        for race in races:
            race.stop()
    for race in races:
        out.stats.refine_solves += race.refine_stats.solves
        out.stats.stabilised += race.refine_stats.stabilised
        out.stats.refine_s += race.refine_seconds()
    return out


def _root_search(graph: LayerGraph, query: BoxQuery, options: Options) -> ReluSearch:
    """The search over the live disjuncts of ``query``, its root bounds tightened by α-CROWN layer by layer
    (the slopes chosen for each layer kept for the domains' bounds)."""
    margins = {"margin_rel": options.bound_margin_rel, "margin_abs": options.bound_margin_abs}
    slopes: dict[int, Slopes] = {}
    root = optimized_layer_bounds(
        graph,
        LayerBounds([v[None, :] for v in query.lbs], [v[None, :] for v in query.ubs]),
        iterations=root_layer_iterations(graph),
        slopes=slopes,
        **margins,
    )
    return ReluSearch(graph, root, Rows.of(query.live), query.live, options, slopes)


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
