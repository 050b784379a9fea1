"""Decides one input box exactly: sound bounds prune disjuncts, the rest goes to a MILP/exact backend.

The backend's "feasible" is only a candidate: the caller replays it before calling anything sat.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from nnverify.backends.base import Backend, BackendResult, SolverRangeError, SolveStatus
from nnverify.bounds.backward import SLOPE_RULES, backward_rows_lower, crown_bounds
from nnverify.bounds.interval import Bounds, interval_bounds, rows_lower_bound
from nnverify.bounds.symbolic import symbolic_bounds
from nnverify.budget import Budget, BudgetExpired
from nnverify.encode.network import encode_query
from nnverify.graph.layers import LayerGraph
from nnverify.options import Options
from nnverify.spec.property import Disjunct

#: Seconds kept back from a solver call so the whole run stays inside its budget.
SOLVER_RESERVE_S = 0.25
_BOUNDING = "bounding the input box"


@dataclass(frozen=True, slots=True)
class BoxOutcome:
    """What happened to one box: ``INFEASIBLE`` (proven safe), ``FEASIBLE`` (candidate ``x``), or not decided."""

    status: SolveStatus
    x: np.ndarray | None = None
    note: str = ""
    solver_calls: int = 0


def live_disjuncts(
    disjuncts: list[Disjunct], bounds: Bounds, box: int, output: int, options: Options
) -> list[Disjunct]:
    """The disjuncts that interval bounds of box ``box`` cannot rule out."""
    x_lb, x_ub = bounds.lb[0][box : box + 1], bounds.ub[0][box : box + 1]
    y_lb, y_ub = bounds.lb[output][box : box + 1], bounds.ub[output][box : box + 1]
    live = []
    for d in disjuncts:
        if d.n_rows == 0:
            live.append(d)
            continue
        lower = rows_lower_bound(
            d.a_x, d.a_y, d.b, x_lb, x_ub, y_lb, y_ub, options.bound_margin_rel, options.bound_margin_abs
        )
        if not np.any(lower[0] > 0.0):
            live.append(d)
    return live


def solve_box(
    graph: LayerGraph,
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
    disjuncts: list[Disjunct],
    backend: Backend,
    budget: Budget,
    cancel: threading.Event | None = None,
) -> BoxOutcome:
    """Encode the box (per-layer bounds ``lbs/ubs``) with the given disjuncts and ask the backend (with a
    ``cancel`` event if its capabilities say it is ``cancellable``).

    Raises:
        SolverRangeError: the backend cannot decide at the scale of the numbers (a smaller box would not help).
    """
    time_left = budget.remaining() - SOLVER_RESERVE_S
    if time_left <= 0.0:
        return BoxOutcome(SolveStatus.TIMEOUT, note="budget spent before the solver call")
    enc = encode_query(graph, lbs, ubs, disjuncts)
    timeout_s = min(time_left, budget.remaining() - SOLVER_RESERVE_S)
    if cancel is not None and backend.capabilities.cancellable:
        result: BackendResult = backend.solve(enc.problem, timeout_s=timeout_s, cancel=cancel)  # type: ignore[call-arg]
    else:
        result = backend.solve(enc.problem, timeout_s=timeout_s)
    if result.out_of_range:
        raise SolverRangeError(result.note)
    if result.status is SolveStatus.FEASIBLE and result.values is not None:
        return BoxOutcome(SolveStatus.FEASIBLE, result.values[enc.x_idx], result.note, 1)
    return BoxOutcome(result.status, note=result.note, solver_calls=1)


@dataclass(frozen=True, slots=True)
class BoxQuery:
    """What is left of one input box after bounding: per-layer bounds ``(size,)`` and the live disjuncts."""

    lbs: list[np.ndarray]
    ubs: list[np.ndarray]
    live: list[Disjunct]


def bound_box(
    graph: LayerGraph,
    lb: np.ndarray,
    ub: np.ndarray,
    disjuncts: list[Disjunct],
    options: Options,
    budget: Budget | None = None,
) -> BoxQuery:
    """Interval, symbolic and back-substitution bounds on the box (intersected); the disjuncts they cannot
    rule out. ``budget`` is looked at between the passes (``BudgetExpired``)."""
    budget = budget or Budget.unlimited()
    margins = {"margin_rel": options.bound_margin_rel, "margin_abs": options.bound_margin_abs}
    budget.check(_BOUNDING)
    bounds = interval_bounds(graph, lb, ub, **margins)
    budget.check(_BOUNDING)
    sym = symbolic_bounds(graph, lb[None, :], ub[None, :], **margins)
    budget.check(_BOUNDING)
    tight = crown_bounds(
        graph,
        [np.maximum(a, b) for a, b in zip(bounds.lb, sym.lb, strict=True)],
        [np.minimum(a, b) for a, b in zip(bounds.ub, sym.ub, strict=True)],
        **margins,
    )
    live = []
    for d in live_disjuncts(disjuncts, Bounds(tight.lb, tight.ub), 0, graph.output, options):
        budget.check(_BOUNDING)
        lower, _ = backward_rows_lower(graph, tight.lb, tight.ub, d.a_x, d.a_y, d.b, rules=SLOPE_RULES, **margins)
        if not np.any(lower[0] > 0.0):
            live.append(d)
    return BoxQuery([v[0] for v in tight.lb], [v[0] for v in tight.ub], live)


def decide_box(
    graph: LayerGraph,
    lb: np.ndarray,
    ub: np.ndarray,
    disjuncts: list[Disjunct],
    backend: Backend,
    budget: Budget,
    options: Options,
) -> BoxOutcome:
    """``bound_box``, then one exact call on what is left."""
    try:
        query = bound_box(graph, lb, ub, disjuncts, options, budget)
    except BudgetExpired as exc:
        return BoxOutcome(SolveStatus.TIMEOUT, note=str(exc))
    if not query.live:
        return BoxOutcome(SolveStatus.INFEASIBLE, note="bounds")
    return solve_box(graph, query.lbs, query.ubs, query.live, backend, budget)
