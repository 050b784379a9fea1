"""The CP-SAT backend (Google OR-Tools): exact integer feasibility for pure integer problems (BNN queries).

It takes problems whose variables are all integer and whose rows have rational coefficients that scale
exactly to int64 (``encode/bnn.py`` writes such problems); disjunctions become enforced linear constraints
with one Boolean per disjunct. ReLU/Sign constraints over continuous variables are not its business: it answers
UNKNOWN for them and the MILP backends take those. Integer arithmetic is exact, so INFEASIBLE is exact.
"""

from __future__ import annotations

import importlib.util
import math
import time
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nnverify.backends.base import BackendResult, Capabilities, SolveStatus
from nnverify.backends.pool import SolverPool
from nnverify.encode.problem import Problem, Row
from nnverify.options import Options

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

#: Parallel CP-SAT workers (a portfolio of strategies; more than the cores is deliberate).
DEFAULT_WORKERS = 8

#: Largest |coefficient| or bound handed to CP-SAT (it works in int64 and checks sums for overflow).
MAX_INT = 2**53


class UnsupportedProblem(ValueError):
    """The problem is not a pure integer program with exactly scalable rows."""


class CpSatBackend:
    """Exact integer feasibility with OR-Tools CP-SAT."""

    #: Integer arithmetic is exact; each solve builds its own CP-SAT model and solver (thread-safe).
    capabilities: ClassVar[Capabilities] = Capabilities(exact=True, incumbents=True, thread_safe=True)
    exact: ClassVar[bool] = capabilities.exact
    name: ClassVar[str] = "cpsat"

    def __init__(self, *, seed: int = 0, workers: int | None = None) -> None:
        self.seed = seed
        # CP-SAT's portfolio of 8 differently configured workers pays even on 2 cores: on the porous-media
        # queries (7b9a040:bench/results/2026-11-23-bnn) 8 workers solved in 8.5 s what 2 left open after 90 s.
        self.workers = workers or DEFAULT_WORKERS

    @classmethod
    def from_options(cls, options: Options, pool: SolverPool | None = None) -> CpSatBackend:
        return cls(seed=options.seed)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("ortools") is None:
            return "pip install ortools"
        return None

    def solve(self, problem: Problem, *, timeout_s: float) -> BackendResult:
        """Decide feasibility (or minimise the objective) of a pure integer ``problem``."""
        from ortools.sat.python import cp_model

        start = time.perf_counter()
        if timeout_s <= 0:
            return BackendResult(SolveStatus.TIMEOUT, note="no time left to solve")
        try:
            model, variables = to_cpsat(problem)
        except UnsupportedProblem as err:
            return BackendResult(SolveStatus.UNKNOWN, note=f"cpsat: {err}", seconds=time.perf_counter() - start)
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(1e-3, timeout_s - (time.perf_counter() - start))
        solver.parameters.num_workers = self.workers
        solver.parameters.random_seed = self.seed
        solver.parameters.log_search_progress = False
        status = solver.solve(model)
        seconds = time.perf_counter() - start
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            values = np.array([float(solver.value(v)) for v in variables])
            return BackendResult(SolveStatus.FEASIBLE, values, "cpsat", seconds)
        if status == cp_model.INFEASIBLE:
            return BackendResult(SolveStatus.INFEASIBLE, None, "cpsat", seconds)
        if status == cp_model.UNKNOWN:
            return BackendResult(SolveStatus.TIMEOUT, None, "cpsat: time limit", seconds)
        return BackendResult(SolveStatus.UNKNOWN, None, f"cpsat: {solver.status_name(status)}", seconds)


def _integer_row(idx: np.ndarray, coef: np.ndarray, lo: float, hi: float) -> tuple[list[int], list[int], int, int]:
    """The row scaled exactly to integer coefficients; bounds rounded inwards (the left side is an integer)."""
    if np.all(np.abs(coef) <= MAX_INT) and np.all(coef == np.round(coef)):  # integral already: no scaling
        lo_i = -MAX_INT if not math.isfinite(lo) else math.ceil(lo)
        hi_i = MAX_INT if not math.isfinite(hi) else math.floor(hi)
        if abs(lo_i) <= MAX_INT and abs(hi_i) <= MAX_INT:
            return idx.tolist(), coef.astype(np.int64).tolist(), lo_i, hi_i
    fracs = [Fraction(*float(c).as_integer_ratio()) for c in coef]
    scale = 1
    for f in fracs:
        scale = scale * f.denominator // math.gcd(scale, f.denominator)
    ints = [int(f * scale) for f in fracs]
    lo_i = -MAX_INT if not math.isfinite(lo) else math.ceil(Fraction(lo) * scale)
    hi_i = MAX_INT if not math.isfinite(hi) else math.floor(Fraction(hi) * scale)
    if max((abs(c) for c in ints), default=0) > MAX_INT or abs(lo_i) > MAX_INT or abs(hi_i) > MAX_INT:
        raise UnsupportedProblem("a row's coefficients do not scale to int64 exactly")
    return [int(i) for i in idx], ints, lo_i, hi_i


def _linear(model: cp_model.CpModel, variables: list[Any], row: Row) -> Any:
    import ortools.sat.python.cp_model as cp

    idx, ints, lo, hi = _integer_row(row.idx, row.coef, row.lo, row.hi)
    expr = cp.LinearExpr.weighted_sum([variables[i] for i in idx], ints)
    return model.add_linear_constraint(expr, lo, hi)


def to_cpsat(problem: Problem) -> tuple[cp_model.CpModel, list[Any]]:
    """The CP-SAT model of a pure integer problem and its variables (in problem order).

    Raises:
        UnsupportedProblem: a continuous variable, a ReLU/Sign constraint, or a row that does not scale exactly.
    """
    from ortools.sat.python import cp_model

    if problem.relus or problem.signs:
        raise UnsupportedProblem("ReLU/Sign constraints over continuous variables (use a MILP backend)")
    if not all(problem.integer):
        raise UnsupportedProblem("continuous variables (use a MILP backend)")
    model = cp_model.CpModel()
    variables = []
    for lb, ub, name in zip(problem.lb, problem.ub, problem.names, strict=True):
        lo = -MAX_INT if not math.isfinite(lb) else math.ceil(lb)
        hi = MAX_INT if not math.isfinite(ub) else math.floor(ub)
        variables.append(model.new_int_var(lo, hi, name))
    for row in problem.rows:
        _linear(model, variables, row)
    for disjunction in problem.disjunctions:
        chosen = []
        for term in disjunction.terms:
            b = model.new_bool_var("disjunct")
            for row in term:
                _linear(model, variables, row).only_enforce_if(b)
            chosen.append(b)
        model.add_bool_or(chosen)
    if problem.objective is not None:
        idx, ints, _, _ = _integer_row(problem.objective[0], problem.objective[1], -np.inf, np.inf)
        model.minimize(cp_model.LinearExpr.weighted_sum([variables[i] for i in idx], ints))
    return model, variables
