"""The Gurobi backend (optional: ``pip install 'nnverify[gurobi]'``): lowers the Problem to a MILP, solves it.

``gurobipy`` is imported only when solving, so this module loads without it. The pip wheel ships a
size-limited licence (2000 variables and 2000 constraints); a larger model gives a ``BackendError`` saying so.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from nnverify.backends._milp_solve import Outcome, solve_milp
from nnverify.backends.base import BackendResult, Capabilities, SolveStatus
from nnverify.backends.pool import SolverPool
from nnverify.encode.milp import MilpModel
from nnverify.encode.problem import Problem
from nnverify.errors import BackendError
from nnverify.options import Options

if TYPE_CHECKING:
    import gurobipy

INSTALL_HINT = "pip install 'nnverify[gurobi]'"
_SIZE_LIMIT = 2000
_SIZE_LIMIT_ERRNO = 10010  # GRB_ERROR_SIZE_LIMIT_EXCEEDED


class GurobiBackend:
    """MILP feasibility with Gurobi: single-threaded, fixed seed, silent (no licence banner either)."""

    #: MILP tolerances (README "Backends"); a size-limited licence refuses models above ``_SIZE_LIMIT``.
    capabilities: ClassVar[Capabilities] = Capabilities(incumbents=True, size_limit=_SIZE_LIMIT)
    exact: ClassVar[bool] = capabilities.exact
    name: ClassVar[str] = "gurobi"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    @classmethod
    def from_options(cls, options: Options, pool: SolverPool | None = None) -> GurobiBackend:
        return cls(seed=options.seed)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None if ``gurobipy`` can be imported, else the install hint (``solve`` checks the licence)."""
        if importlib.util.find_spec("gurobipy") is None:
            return INSTALL_HINT
        return None

    def solve(self, problem: Problem, *, timeout_s: float) -> BackendResult:
        """Decide feasibility of ``problem``; a solution's values are the Problem's variables.

        Raises:
            BackendError: Gurobi refused the model (size-limited licence, no licence, other Gurobi errors).
        """
        return solve_milp(problem, timeout_s, self._run)

    def _run(self, model: MilpModel, time_limit_s: float) -> Outcome:
        import gurobipy as gp

        try:
            # An empty environment lets OutputFlag=0 take effect before start(), which prints the banner.
            with gp.Env(empty=True) as env:
                env.setParam("OutputFlag", 0)
                env.start()
                with gp.Model(env=env) as gmodel:
                    gmodel.Params.TimeLimit = min(float(time_limit_s), gp.GRB.INFINITY)
                    gmodel.Params.Threads = 1
                    gmodel.Params.Seed = self.seed
                    x = _build(gmodel, model)
                    _optimize(gmodel)
                    return _outcome(gmodel, x, model)
        except gp.GurobiError as exc:
            raise BackendError(f"Gurobi failed: {exc.message} (error {exc.errno})") from exc


def _build(gmodel: gurobipy.Model, model: MilpModel) -> list[gurobipy.Var]:
    """Add the columns (one MVar), rows (one LinExpr each; scipy is not a dependency) and objective."""
    import gurobipy as gp

    inf = gp.GRB.INFINITY
    vtype = np.where(model.integrality, gp.GRB.INTEGER, gp.GRB.CONTINUOUS)
    x: list[gp.Var] = gmodel.addMVar(
        model.n_cols, lb=np.clip(model.lb, -inf, inf), ub=np.clip(model.ub, -inf, inf), vtype=vtype
    ).tolist()
    indptr, indices, data = model.indptr, model.indices.tolist(), model.data.tolist()
    for i in range(model.n_rows):
        start, end = int(indptr[i]), int(indptr[i + 1])
        expr = gp.LinExpr(data[start:end], [x[j] for j in indices[start:end]])
        lo, hi = float(model.row_lo[i]), float(model.row_hi[i])
        if lo == hi:
            gmodel.addLConstr(expr, gp.GRB.EQUAL, lo)
            continue
        if lo > -np.inf:
            gmodel.addLConstr(expr, gp.GRB.GREATER_EQUAL, lo)
        if hi < np.inf:
            gmodel.addLConstr(expr, gp.GRB.LESS_EQUAL, hi)
    nz = np.flatnonzero(model.c)
    if nz.size:
        gmodel.setObjective(gp.LinExpr(model.c[nz].tolist(), [x[j] for j in nz]), gp.GRB.MINIMIZE)
    return x


def _optimize(gmodel: gurobipy.Model) -> None:
    """``optimize()``, turning the size-limited licence's refusal into a ``BackendError`` users can act on."""
    import gurobipy as gp

    gmodel.update()
    try:
        gmodel.optimize()
    except gp.GurobiError as exc:
        if exc.errno != _SIZE_LIMIT_ERRNO:
            raise
        raise BackendError(
            f"Gurobi's size-limited licence cannot solve this model ({gmodel.NumVars} variables, "
            f"{gmodel.NumConstrs} constraints; the limit is {_SIZE_LIMIT} each): install a full licence "
            "(https://www.gurobi.com/academia/academic-program-and-licenses/) or use --backend highs."
        ) from exc


def _outcome(gmodel: gurobipy.Model, x: list[gurobipy.Var], model: MilpModel) -> Outcome:
    import gurobipy as gp

    names = {getattr(gp.GRB.Status, n): n for n in dir(gp.GRB.Status) if n.isupper()}
    status, note = status_from_gurobi(
        names.get(gmodel.Status, str(gmodel.Status)),
        has_solution=gmodel.SolCount > 0,
        bounded=model.objective_bounded(),
    )
    values = np.array(gmodel.getAttr("X", x)) if status is SolveStatus.FEASIBLE else None
    return Outcome(status, values, note)


def status_from_gurobi(status: str, *, has_solution: bool, bounded: bool) -> tuple[SolveStatus, str]:
    """Map a ``GRB.Status`` name to a ``SolveStatus`` and a note.

    Args:
        status: e.g. ``"OPTIMAL"``.
        has_solution: Gurobi holds a feasible solution (``SolCount > 0``).
        bounded: the objective is bounded over the column box (``MilpModel.objective_bounded``).
    """
    if status in ("OPTIMAL", "SUBOPTIMAL") and has_solution:
        return SolveStatus.FEASIBLE, "" if status == "OPTIMAL" else "Gurobi: suboptimal solution"
    if status == "INFEASIBLE":
        return SolveStatus.INFEASIBLE, ""
    if status == "INF_OR_UNBD" and bounded:
        # A bounded objective cannot be unbounded: "infeasible or unbounded" means infeasible.
        return SolveStatus.INFEASIBLE, "Gurobi: infeasible or unbounded, and the objective is bounded"
    if status == "TIME_LIMIT":
        if has_solution:  # the question is feasibility: an incumbent answers it even if not optimal
            return (
                SolveStatus.FEASIBLE,
                "Gurobi reached the time limit with a feasible, maybe not optimal, point",
            )
        return SolveStatus.TIMEOUT, ""
    return SolveStatus.UNKNOWN, f"Gurobi status {status}"
