"""Lower a ``ShapeModel`` to OR-Tools CP-SAT, and generate distinct valid unit cells with it.

``to_cpsat`` is a one-to-one translation (a CP-SAT variable per model variable, a linear constraint per row, a
``BoolOr`` per clause), so other encodings (e.g. a BNN on the pixel variables) can be added to the returned model.
``solve_shapes`` enumerates up to ``count`` distinct pixel images by adding, after each solution, a clause that
blocks its pixels (Korneev et al., SAT 2018, generate several images per query the same way: each new image must
differ from the previous ones). The solver runs single-threaded and is seeded from ``ShapeParams.random_seed``.
This module does not add any network constraint; ``ortools`` is imported only when a function is called.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from nnverify.bnn.shapes import ShapeModel, ShapeParams, decode, shape_model

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

logger = logging.getLogger(__name__)


def to_cpsat(model: ShapeModel) -> tuple[cp_model.CpModel, dict[str, cp_model.IntVar]]:
    """Translate ``model`` into a CP-SAT model.

    Returns:
        The CP-SAT model and its variables by model variable name.
    """
    from ortools.sat.python import cp_model

    cp = cp_model.CpModel()
    variables: dict[str, cp_model.IntVar] = {}
    for var in model.variables:
        boolean = (var.lb, var.ub) == (0, 1)
        variables[var.name] = cp.new_bool_var(var.name) if boolean else cp.new_int_var(var.lb, var.ub, var.name)
    for row in model.linear:
        names, coefs = zip(*row.terms, strict=True) if row.terms else ((), ())
        expr = cp_model.LinearExpr.weighted_sum([variables[n] for n in names], list(coefs))
        lo = cp_model.INT_MIN if row.lo is None else row.lo
        hi = cp_model.INT_MAX if row.hi is None else row.hi
        cp.add_linear_constraint(expr, lo, hi)
    for clause in model.clauses:
        cp.add_bool_or([variables[n] if positive else ~variables[n] for n, positive in clause.literals])
    return cp, variables


def solve_shapes(params: ShapeParams, *, time_limit_s: float = 10, count: int = 1) -> list[np.ndarray]:
    """Up to ``count`` valid unit cells with pairwise different pixel images.

    Args:
        params: The shape parameters.
        time_limit_s: Wall-clock budget for all solver calls together.
        count: How many distinct images to look for.

    Returns:
        ``int8`` label images ``(size, size)``, in the order found; fewer than ``count`` (possibly none) when the
        rules admit fewer distinct images or the budget runs out (the log says which).

    Raises:
        ValueError: Bad parameters (see ``ShapeParams``).
    """
    from ortools.sat.python import cp_model

    model = shape_model(params)
    cp, variables = to_cpsat(model)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = params.random_seed
    deadline = time.monotonic() + time_limit_s
    images: list[np.ndarray] = []
    while len(images) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            logger.info("time limit reached after %d of %d images", len(images), count)
            break
        solver.parameters.max_time_in_seconds = remaining
        status = solver.solve(cp)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            logger.info("no further image: %s after %d of %d", solver.status_name(status), len(images), count)
            break
        values = {name: int(solver.value(variables[name])) for name in model.labels.values()}
        images.append(decode(values, model, params))
        pixels = [variables[name] for name in model.pixels]
        cp.add_bool_or([~x if solver.value(x) else x for x in pixels])
    return images
