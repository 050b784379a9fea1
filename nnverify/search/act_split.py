"""Branch and bound over activation input intervals (GenBaB-style) for networks that are not piecewise linear and
have too many free inputs to split the input box; design and soundness argument: docs/engine.md, "Branch and
bound over activation splits"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnverify.backends.base import SolveStatus
from nnverify.bounds.backward import SLOPE_RULES, LayerBounds, backward_rows_lower, crown_bounds_checked
from nnverify.bounds.symbolic import symbolic_bounds
from nnverify.budget import Budget, BudgetExpired
from nnverify.graph.layers import ActivationLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.options import Options
from nnverify.search.act_branch import Choice, choose
from nnverify.search.act_lines import point_lines
from nnverify.search.bab import SearchOutcome, SearchStats, try_points
from nnverify.search.rows import StackedRows
from nnverify.spec.property import Disjunct

#: Splits along one path before a domain is given up as undecided.
MAX_DEPTH = 40
#: Passes per domain with lines chosen at the weakest row's minimiser (``act_lines.py``) after the first.
LINE_PASSES = 1
#: Candidate splits per domain whose children are bounded before one is chosen (1: the best score, no bounding).
FSB_CANDIDATES = 3
#: One search tree per disjunct (True) or one tree whose domains must rule out every disjunct (False).
PER_DISJUNCT = True
#: Domains bounded together in one numpy call, at most; fewer on large networks (``batch_size``).
BATCH = 32
#: Elements (domains x neurons x inputs) of one batch's bounds: large networks bound fewer domains at a time.
BATCH_ELEMENTS = 1 << 23
#: The phase named by the budget's checks and memory estimates.
PHASE = "activation splitting"


@dataclass(frozen=True, slots=True)
class _Domains:
    """A batch of domains: bounds ``(B, size)`` of every layer, split depth, disjuncts already ruled out."""

    lb: list[np.ndarray]
    ub: list[np.ndarray]
    depth: np.ndarray
    dead: np.ndarray
    #: The parent's lower bounds of the rows ``(B, K)``: they hold on the child's region too.
    parent: np.ndarray

    def __len__(self) -> int:
        return int(self.depth.shape[0])

    def part(self, sel: slice | np.ndarray) -> _Domains:
        lbs, ubs = [v[sel] for v in self.lb], [v[sel] for v in self.ub]
        return _Domains(lbs, ubs, self.depth[sel], self.dead[sel], self.parent[sel])

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.lb) * 2


def batch_size(graph: LayerGraph) -> int:
    """Domains per batch: ``BATCH``, or fewer where one domain's back-substitutions are large."""
    neurons = sum(layer.size for layer in graph.layers)
    return max(1, min(BATCH, BATCH_ELEMENTS // max(1, neurons * graph.n_inputs)))


def _pop_batch(stack: list[_Domains], size: int) -> _Domains:
    """Up to ``size`` domains from the top of the stack (depth first keeps the stack small)."""
    top = stack.pop()
    if len(top) > size:
        stack.append(top.part(slice(size, None)))
        top = top.part(slice(0, size))
    return top


def _bound(
    graph: LayerGraph, rows: StackedRows, dom: _Domains, options: Options, check: Callable[[], None]
) -> tuple[LayerBounds, np.ndarray, np.ndarray, np.ndarray]:
    """Tightened bounds of every layer, the rows' lower bounds ``(B, K)`` and linear functions
    ``(B, K, n + 1)``, and which domains are empty (bounds crossed). An empty domain's bounds may hold NaN or
    garbage (relaxations of crossed intervals): hence the silenced floating-point warnings, and its rows are
    never read."""
    margins = {"margin_rel": options.bound_margin_rel, "margin_abs": options.bound_margin_abs}
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        tight = crown_bounds_checked(graph, dom.lb, dom.ub, check, **margins)
        empty = np.zeros(len(dom), dtype=bool)
        for lo, hi in zip(tight.lb, tight.ub, strict=True):
            empty |= np.any(lo > hi, axis=1)
        lower, coef = backward_rows_lower(
            graph, tight.lb, tight.ub, rows.a_x, rows.a_y, rows.b, rules=_rules(graph), **margins
        )
        for _ in range(LINE_PASSES):
            weakest = _weakest_vertex(rows, coef, lower, dom.dead, dom.lb[0], dom.ub[0])
            lines = point_lines(graph, tight, weakest, options.bound_margin_rel, options.bound_margin_abs)
            again, funcs = backward_rows_lower(
                graph, tight.lb, tight.ub, rows.a_x, rows.a_y, rows.b, lines, rules=_rules(graph), **margins
            )
            better = again > lower
            lower, coef = np.where(better, again, lower), np.where(better[..., None], funcs, coef)
    return tight, np.maximum(lower, dom.parent), coef, empty


def _weakest_vertex(
    rows: StackedRows, coef: np.ndarray, lower: np.ndarray, dead: np.ndarray, lb: np.ndarray, ub: np.ndarray
) -> np.ndarray:
    """Per domain ``(B, n)``: the input vertex minimising the binding row of its live disjunct furthest from
    ruled out (where the relaxation lines matter most)."""
    live = ~(dead | rows.dead(lower))
    pick = rows.binding(lower, live)
    row = np.argmin(np.where(pick, lower, np.inf), axis=1)
    w = coef[np.arange(coef.shape[0]), row, :-1]
    return np.where(w > 0.0, lb, ub)


def _rules(graph: LayerGraph) -> tuple[str, ...]:
    """The ReLU lower-slope rules worth a pass each: all of them when a ReLU is present, else one (the rules
    change nothing else, and each pass recomputes every smooth relaxation)."""
    relu = any(isinstance(layer, ActivationLayer) and layer.kind is ActKind.RELU for layer in graph.layers)
    return SLOPE_RULES if relu else SLOPE_RULES[:1]


def _attack_points(coef: np.ndarray, pick: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """The input box vertex minimising each picked row's linear function (``pick`` ``(B, K)``)."""
    dom, row = np.nonzero(pick)
    w = coef[dom, row, :-1]
    return np.where(w > 0.0, lb, ub)


def _clamp(bounds: LayerBounds, layer: np.ndarray, neuron: np.ndarray, point: np.ndarray) -> LayerBounds:
    """Both children of each domain ``(B,)`` split at ``point``: the left ones (upper bound clamped) first."""
    lbs = [np.vstack([v, v]) for v in bounds.lb]
    ubs = [np.vstack([v, v]) for v in bounds.ub]
    batch = layer.shape[0]
    for k in np.unique(layer):
        at = np.nonzero(layer == k)[0]
        ubs[k][at, neuron[at]] = point[at]
        lbs[k][batch + at, neuron[at]] = point[at]
    return LayerBounds(lbs, ubs)


def _filter(
    graph: LayerGraph, rows: StackedRows, tight: LayerBounds, seed: np.ndarray, choice: Choice, options: Options
) -> np.ndarray:
    """Per domain, the candidate whose worse child has the best bound (filtered smart branching): the children
    of every candidate bounded by one back-substitution with the parent's other bounds (``relax``'s lines)."""
    batch, count = choice.score.shape
    if count == 1:
        return np.zeros(batch, dtype=np.int64)
    kids = [_clamp(tight, choice.layer[:, c], choice.neuron[:, c], choice.point[:, c]) for c in range(count)]
    lbs = [np.vstack([kid.lb[k] for kid in kids]) for k in range(len(tight.lb))]
    ubs = [np.vstack([kid.ub[k] for kid in kids]) for k in range(len(tight.ub))]
    margins = {"margin_rel": options.bound_margin_rel, "margin_abs": options.bound_margin_abs}
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        low, _ = backward_rows_lower(graph, lbs, ubs, rows.a_x, rows.a_y, rows.b, rules=_rules(graph), **margins)
    binding = np.any(seed != 0.0, axis=2)
    weakest = np.where(np.tile(binding, (2 * count, 1)), low, np.inf).min(axis=1).reshape(count, 2, batch)
    worse = np.where(choice.score.T > 0.0, np.nan_to_num(weakest.min(axis=1), nan=-np.inf), -np.inf)
    return np.argmax(worse, axis=0)


def _children(
    graph: LayerGraph,
    rows: StackedRows,
    parent: tuple[LayerBounds, np.ndarray, np.ndarray],
    dom: _Domains,
    options: Options,
) -> tuple[_Domains, np.ndarray]:
    """Both children of every domain whose branching found a neuron to split, and which domains found none.
    ``parent``: the domains' tightened bounds, their rows' lower bounds (the children's parent bounds) and the
    binding rows ``seed`` the branching serves."""
    tight, lower, seed = parent
    choice = choose(graph, tight, seed, FSB_CANDIDATES)
    best = _filter(graph, rows, tight, seed, choice, options)
    at = np.arange(best.size)
    layer, neuron, point = choice.layer[at, best], choice.neuron[at, best], choice.point[at, best]
    ok = choice.score[at, best] > 0.0
    sel = np.nonzero(ok)[0]
    kids = _clamp(
        LayerBounds([v[sel] for v in tight.lb], [v[sel] for v in tight.ub]), layer[sel], neuron[sel], point[sel]
    )
    depth = np.concatenate([dom.depth[sel] + 1, dom.depth[sel] + 1])
    dead, above = np.vstack([dom.dead[sel], dom.dead[sel]]), np.vstack([lower[sel], lower[sel]])
    return _Domains(kids.lb, kids.ub, depth, dead, above), ~ok


def _root(graph: LayerGraph, rows: StackedRows, options: Options, lb: np.ndarray, ub: np.ndarray) -> _Domains:
    """The whole box once per disjunct (the others marked ruled out: each disjunct gets its own tree, whose
    splits serve its rows only), with forward symbolic bounds of every layer."""
    margins = {"margin_rel": options.bound_margin_rel, "margin_abs": options.bound_margin_abs}
    sym = symbolic_bounds(graph, lb[None, :], ub[None, :], **margins)
    count = rows.n_disjuncts if PER_DISJUNCT else 1
    lbs = [np.repeat(v, count, axis=0) for v in (lb[None, :], *sym.lb[1:])]
    ubs = [np.repeat(v, count, axis=0) for v in (ub[None, :], *sym.ub[1:])]
    dead = ~np.eye(rows.n_disjuncts, dtype=bool) if PER_DISJUNCT else np.zeros((1, rows.n_disjuncts), dtype=bool)
    return _Domains(lbs, ubs, np.zeros(count, dtype=np.int64), dead, np.full((count, rows.b.size), -np.inf))


def act_split_search(
    graph: LayerGraph,
    disjuncts: list[Disjunct],
    lb: np.ndarray,
    ub: np.ndarray,
    budget: Budget,
    options: Options,
    is_counterexample: Callable[[np.ndarray], bool],
) -> SearchOutcome:
    """Decide "some x in [lb, ub] reaches one of ``disjuncts``" (all sharing that box) by splitting activation
    input intervals. ``INFEASIBLE`` is a proof; ``FEASIBLE`` carries a point ``is_counterexample`` accepted.

    A domain is the box with some pre-activation intervals clamped (``[l, s]`` / ``[s, u]`` after a split at
    ``s``). No split constraint enters the bound: a relaxation valid on the clamped interval holds for every
    input of the domain's region, so every bound computed from it holds there, and the minimum of its linear
    bound over the whole box is still a lower bound over the region; crossed bounds mean an empty region. No
    exact leaf: a domain open after ``MAX_DEPTH`` splits leaves the answer undecided."""
    rows, stats = StackedRows.of(disjuncts), SearchStats()

    def check() -> None:
        budget.check(PHASE)

    stack, size = [_root(graph, rows, options, lb, ub)], batch_size(graph)
    undecided = ""
    try:
        while stack:
            check()
            dom = _pop_batch(stack, size)
            stats.boxes += len(dom)
            budget.check_alloc(8.0 * len(dom) * rows.b.size * sum(v.shape[1] for v in dom.lb) * 4, PHASE)
            tight, lower, coef, empty = _bound(graph, rows, dom, options, check)
            dead = dom.dead | rows.dead(lower)
            open_dom = ~np.all(dead, axis=1) & ~empty
            if not np.any(open_dom):
                continue
            pick = rows.binding(lower, ~dead & open_dom[:, None])
            found = try_points(graph, disjuncts, _attack_points(coef, pick, lb, ub), is_counterexample, stats)
            if found is not None:
                return SearchOutcome(SolveStatus.FEASIBLE, found, stats=stats)
            deep = open_dom & (dom.depth >= MAX_DEPTH)
            if np.any(deep):
                undecided = f"the relaxation of the activations left a domain open after {MAX_DEPTH} splits"
            grow = open_dom & ~deep
            if not np.any(grow):
                continue
            parts = LayerBounds([v[grow] for v in tight.lb], [v[grow] for v in tight.ub])
            seed = rows.a_y[None, :, :] * pick[grow][:, :, None]
            now = _Domains(dom.lb, dom.ub, dom.depth, dead, dom.parent)
            kids, stuck = _children(graph, rows, (parts, lower[grow], seed), now.part(grow), options)
            if np.any(stuck):
                undecided = "a domain open with no activation interval left to split"
            budget.check_alloc(kids.nbytes, PHASE)
            stack.append(kids)
            stats.max_depth = max(stats.max_depth, int(kids.depth.max(initial=0)))
    except BudgetExpired:
        return SearchOutcome(SolveStatus.TIMEOUT, note="budget spent during activation splitting", stats=stats)
    if undecided:
        return SearchOutcome(SolveStatus.UNKNOWN, note=undecided, stats=stats)
    return SearchOutcome(SolveStatus.INFEASIBLE, stats=stats)
