"""The HiGHS backend (``highspy``, a core dependency): lowers the Problem to a MILP and solves it.

It passes the whole model in one ``passModel`` call (row-wise CSR arrays) and reads the *model status*, not
just the return code of ``run()``. HiGHS is silenced before it sees the model.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from nnverify.backends.base import BackendResult, Capabilities, SolveStatus
from nnverify.backends.pool import SolverPool, default_pool
from nnverify.errors import BackendError
from nnverify.options import Options

if TYPE_CHECKING:  # the MILP modules are imported by the first solve: a run decided by bounds never loads them
    import highspy

    from nnverify.backends._milp_solve import Outcome
    from nnverify.encode.milp import MilpModel
    from nnverify.encode.problem import Problem
    from nnverify.encode.scaling import ScaledModel


class HighsBackend:
    """MILP feasibility with HiGHS: single-threaded, fixed seed, silent."""

    #: Not exact (MILP tolerances: see README "Backends"); ``solve`` accepts a ``cancel`` event (the MILP races
    #: the ReLU search); solves share HiGHS's process-wide scheduler, so they are not thread-safe.
    capabilities: ClassVar[Capabilities] = Capabilities(cancellable=True, incumbents=True)
    exact: ClassVar[bool] = capabilities.exact
    name: ClassVar[str] = "highs"

    def __init__(self, *, seed: int = 0, pool: SolverPool | None = None) -> None:
        self.seed = seed
        self.pool = pool or default_pool()

    @classmethod
    def from_options(cls, options: Options, pool: SolverPool | None = None) -> HighsBackend:
        return cls(seed=options.seed, pool=pool)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None if ``highspy`` can be imported, else the install hint."""
        if importlib.util.find_spec("highspy") is None:
            return "pip install highspy"
        return None

    def solve(self, problem: Problem, *, timeout_s: float, cancel: threading.Event | None = None) -> BackendResult:
        """Decide feasibility of ``problem``; a solution's values are the Problem's variables. Setting
        ``cancel`` (from another thread), or closing the pool, stops the solve within about 0.1 s with status
        TIMEOUT."""
        from nnverify.backends._milp_solve import solve_milp

        return solve_milp(problem, timeout_s, lambda model, limit: self._run(model, limit, cancel))

    def _run(self, model: MilpModel, time_limit_s: float, cancel: threading.Event | None = None) -> Outcome:
        import highspy

        from nnverify.backends._milp_solve import Outcome
        from nnverify.encode.scaling import equilibrate

        highs = highspy.Highs()
        # Silence first: passModel itself may log (e.g. about tiny or huge coefficients).
        for option, value in (
            ("output_flag", False),
            ("log_to_console", False),
            ("threads", 1),
            ("random_seed", self.seed),
            ("time_limit", float(time_limit_s)),
        ):
            highs.setOptionValue(option, value)
        highs.HandleUserInterrupt = True
        scaled = equilibrate(model) if _too_large(model) else None
        refused = pass_model(highs, scaled.model if scaled else model)
        if refused:
            return Outcome(SolveStatus.UNKNOWN, None, f"HiGHS cannot take the MILP: {refused}", out_of_range=True)
        if not self.pool.run_highs(highs, time_limit_s, cancel):
            return Outcome(SolveStatus.TIMEOUT, None, "HiGHS overran its time limit (in presolve); abandoned")
        if self.pool.stopping(cancel):
            return Outcome(SolveStatus.TIMEOUT, None, "cancelled")
        outcome = _outcome(highs, scaled.model if scaled else model)
        return outcome if scaled is None else _unscaled(outcome, scaled, model)


def _unscaled(outcome: Outcome, scaled: ScaledModel, model: MilpModel) -> Outcome:
    """The outcome of the equilibrated ``scaled`` model in ``model``'s units: a point that satisfies the original
    model (a candidate, replayed later), else ``out_of_range``. HiGHS's tolerances act on the scaled rows, so an
    answer without a point (infeasible) is no proof at this scale, and smaller boxes meet the same numbers."""
    from nnverify.backends._milp_solve import Outcome

    big = f"coefficients up to {np.max(np.abs(model.data)):.1e}"
    if outcome.values is None:
        if outcome.status is SolveStatus.TIMEOUT:
            return outcome
        note = f"HiGHS answered {outcome.status.value} on the equilibrated MILP ({big}): no proof at this scale"
        return Outcome(outcome.status, None, note, out_of_range=True)
    values = scaled.unscale(outcome.values)
    residual = relative_residual(model, values)
    if residual > SCALED_RESIDUAL_TOL:
        return Outcome(
            SolveStatus.UNKNOWN,
            None,
            f"HiGHS's point of the equilibrated MILP ({big}) misses the original model by a relative "
            f"{residual:.1e}: its tolerances are too coarse at this scale",
            out_of_range=True,
        )
    return Outcome(outcome.status, values, outcome.note)


#: HiGHS's ``large_matrix_value``: ``passModel`` rejects a model with a larger matrix coefficient.
LARGE_MATRIX_VALUE = 1e15
#: HiGHS's ``infinite_cost``: larger objective coefficients are rejected.
INFINITE_COST = 1e20


def numeric_trouble(matrix: np.ndarray, bounds: tuple[np.ndarray, ...] = (), costs: np.ndarray | None = None) -> str:
    """Why HiGHS cannot be given these numbers, or ``""``.

    NaN anywhere and infinite or huge (> ``LARGE_MATRIX_VALUE``) matrix coefficients are refused: HiGHS
    rejects the latter, and NaN/inf coefficients have crashed it (a segmentation fault inside ``passModel``).
    Infinite bounds are fine (no bound); huge finite ones HiGHS reads as infinite, which only relaxes.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.size and not np.all(np.isfinite(matrix)):
        return "a matrix coefficient is NaN or infinite (huge weights or bounds)"
    biggest = float(np.max(np.abs(matrix))) if matrix.size else 0.0
    if biggest > LARGE_MATRIX_VALUE:
        return f"a matrix coefficient of magnitude {biggest:.3g} (HiGHS accepts up to {LARGE_MATRIX_VALUE:.0e})"
    if any(np.isnan(np.asarray(b, dtype=np.float64)).any() for b in bounds):
        return "a bound is NaN"
    if costs is not None and costs.size and not np.all(np.abs(costs) < INFINITE_COST):
        return "an objective coefficient is NaN or beyond HiGHS's infinite_cost"
    return ""


def _too_large(model: MilpModel) -> bool:
    """Coefficients HiGHS would refuse (finite ones: ``equilibrate`` may bring them into range)."""
    finite = model.data[np.isfinite(model.data)]
    return bool(finite.size and np.max(np.abs(finite)) > LARGE_MATRIX_VALUE)


#: Largest relative residual (``relative_residual``) of an equilibrated model's solution on the original model.
SCALED_RESIDUAL_TOL = 1e-6


def relative_residual(model: MilpModel, x: np.ndarray) -> float:
    """The largest violation of a row or column bound by ``x``, each relative to ``1 + |bound| + sum |a_ij x_j|``
    (row) or ``1 + |bound|`` (column): what a solution found in scaled units misses by in the model's own."""
    x = np.asarray(x, dtype=np.float64)
    rows = np.repeat(np.arange(model.n_rows), np.diff(model.indptr))
    with np.errstate(over="ignore", invalid="ignore"):
        act = model.activity(x)
        size = np.bincount(rows, weights=np.abs(model.data * x[model.indices]), minlength=model.n_rows)
        parts = [
            np.maximum(model.row_lo - act, 0.0) / (1.0 + np.abs(np.nan_to_num(model.row_lo)) + size),
            np.maximum(act - model.row_hi, 0.0) / (1.0 + np.abs(np.nan_to_num(model.row_hi)) + size),
            np.maximum(model.lb - x, 0.0) / (1.0 + np.abs(np.nan_to_num(model.lb))),
            np.maximum(x - model.ub, 0.0) / (1.0 + np.abs(np.nan_to_num(model.ub))),
        ]
    worst = max((float(np.max(p)) for p in parts if p.size), default=0.0)
    return worst if np.isfinite(worst) else float("inf")


def model_trouble(model: MilpModel) -> str:
    """``numeric_trouble`` of a lowered model (see there), or ``""``."""
    return numeric_trouble(model.data, (model.lb, model.ub, model.row_lo, model.row_hi), model.c)


def pass_model(highs: highspy.Highs, model: MilpModel) -> str:
    """Give ``model`` to ``highs``; ``""``, or why it was not given (``highs`` then holds no model).

    Every status is checked: numbers HiGHS cannot take are never passed (``numeric_trouble``), and a
    rejected model is a reason, not an exception (callers answer UNKNOWN)."""
    import highspy

    trouble = model_trouble(model)
    if trouble:
        return trouble
    status = highs.passModel(
        model.n_cols,
        model.n_rows,
        len(model.data),
        int(highspy.MatrixFormat.kRowwise),
        int(highspy.ObjSense.kMinimize),
        0.0,
        model.c,
        model.lb,
        model.ub,
        model.row_lo,
        model.row_hi,
        model.indptr[:-1].astype(np.int32),
        model.indices.astype(np.int32),
        model.data,
        model.integrality.astype(np.int32),  # 1 = HighsVarType.kInteger
    )
    if status == highspy.HighsStatus.kError:
        highs.clearModel()
        return "HiGHS rejected the lowered model"
    return ""


def _outcome(highs: highspy.Highs, model: MilpModel) -> Outcome:
    import highspy

    from nnverify.backends._milp_solve import Outcome

    model_status = highs.getModelStatus()
    has_solution = highs.getInfo().primal_solution_status == highspy.kSolutionStatusFeasible
    status, note = status_from_highs(model_status.name, has_solution=has_solution, bounded=model.objective_bounded())
    values = np.asarray(highs.getSolution().col_value) if status is SolveStatus.FEASIBLE else None
    return Outcome(status, values, note)


def status_from_highs(model_status: str, *, has_solution: bool, bounded: bool) -> tuple[SolveStatus, str]:
    """Map a ``HighsModelStatus`` name to a ``SolveStatus`` and a note.

    Args:
        model_status: e.g. ``"kOptimal"``.
        has_solution: HiGHS holds a primal feasible solution.
        bounded: the objective is bounded over the column box (``MilpModel.objective_bounded``).
    """
    if model_status == "kOptimal":
        return SolveStatus.FEASIBLE, ""
    if model_status == "kInfeasible":
        return SolveStatus.INFEASIBLE, ""
    if model_status == "kUnboundedOrInfeasible" and bounded:
        # A model whose objective is bounded below over its column box cannot be unbounded (a pure
        # feasibility model has c = 0), so "unbounded or infeasible" can only mean infeasible.
        return SolveStatus.INFEASIBLE, "HiGHS: unbounded or infeasible, and the objective is bounded"
    if model_status in ("kTimeLimit", "kInterrupt"):
        if has_solution:  # the question is feasibility: an incumbent answers it even if not optimal
            return (
                SolveStatus.FEASIBLE,
                "HiGHS reached the time limit with a feasible, maybe not optimal, point",
            )
        return SolveStatus.TIMEOUT, ""
    return SolveStatus.UNKNOWN, f"HiGHS model status {model_status}"


def write_milp(problem: Problem, path: Path, fmt: str) -> None:
    """Write the MILP of ``problem`` (as the backend would solve it) in HiGHS's ``lp`` or ``mps`` format.

    ``path`` must end in ``.lp`` / ``.mps``: HiGHS chooses the format by the suffix. Columns keep the
    problem's variable names; the binaries added by the lowering are ``aux_<column>``.
    """
    import highspy

    from nnverify.encode.milp import BigMError, lower

    if path.suffix != f".{fmt}":
        raise ValueError(f"{path}: a {fmt} file must end in .{fmt}")
    try:
        model = lower(problem)
    except BigMError as exc:
        raise BackendError(f"no MILP to write: {exc}") from None
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("log_to_console", False)
    refused = pass_model(highs, model)
    if refused:
        raise BackendError(f"HiGHS cannot take the MILP: {refused}")
    for col in range(model.n_cols):
        highs.passColName(col, problem.names[col] if col < model.n_original else f"aux_{col}")
    for row in range(model.n_rows):
        highs.passRowName(row, f"row_{row}")
    if highs.writeModel(str(path)) == highspy.HighsStatus.kError:
        raise OSError(f"HiGHS could not write {path}")
