"""The part every MILP backend shares: time budget, lowering, trivial models, and the result's timing.

A backend supplies only ``run(model, time_limit_s) -> Outcome``; this module never imports a solver.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnverify.backends.base import BackendResult, SolveStatus
from nnverify.encode.milp import BigMError, MilpModel, lower
from nnverify.encode.problem import Problem


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a solver run concluded; ``values`` is the full column vector of a solution, if any."""

    status: SolveStatus
    values: np.ndarray | None = None
    note: str = ""
    out_of_range: bool = False  # see ``BackendResult.out_of_range``


def solve_milp(problem: Problem, timeout_s: float, run: Callable[[MilpModel, float], Outcome]) -> BackendResult:
    """Lower ``problem`` and call ``run`` with the time that is left of ``timeout_s``.

    A non-positive budget (before or after lowering) gives TIMEOUT without calling the solver, bounds too wide
    for a big-M constant give UNKNOWN with a note. Returned values
    are the first ``n_original`` columns, i.e. the Problem's variables.
    """
    start = time.perf_counter()
    if timeout_s <= 0:
        return BackendResult(SolveStatus.TIMEOUT, note="no time left to solve")
    try:
        model = lower(problem)
    except BigMError as exc:
        seconds = time.perf_counter() - start
        return BackendResult(SolveStatus.UNKNOWN, note=f"no MILP: {exc}", seconds=seconds, out_of_range=True)
    remaining = timeout_s - (time.perf_counter() - start)
    if remaining <= 0:
        outcome = Outcome(SolveStatus.TIMEOUT, note="time budget spent while building the model")
    elif model.n_cols == 0:
        outcome = _solve_without_columns(model)
    else:
        outcome = run(model, remaining)
    values = None if outcome.values is None else np.asarray(outcome.values, dtype=np.float64)[: model.n_original]
    return BackendResult(outcome.status, values, outcome.note, time.perf_counter() - start, outcome.out_of_range)


def _solve_without_columns(model: MilpModel) -> Outcome:
    """Solvers treat a model without columns specially ("model empty"); every row is the constant 0."""
    if np.all((model.row_lo <= 0) & (model.row_hi >= 0)):
        return Outcome(SolveStatus.FEASIBLE, np.zeros(0))
    return Outcome(SolveStatus.INFEASIBLE)
