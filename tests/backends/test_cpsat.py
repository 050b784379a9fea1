"""The CP-SAT backend on pure integer problems (the BNN encoding's kind)."""

from __future__ import annotations

import numpy as np

from nnverify.backends import get_backend
from nnverify.backends.base import SolveStatus
from nnverify.encode.problem import Problem, Row


def _knapsack(capacity: float, target: float) -> Problem:
    p = Problem()
    xs = [p.add_var(0, 1, integer=True, name=f"x{k}") for k in range(6)]
    weights, values = [3.0, 4.0, 5.0, 6.0, 2.5, 1.5], [4.0, 5.0, 6.0, 7.0, 3.0, 0.5]
    p.add_row(np.array(xs), np.array(weights), -np.inf, capacity)
    p.add_row(np.array(xs), np.array(values), target, np.inf)
    return p


def test_feasible_and_infeasible_integer_programs() -> None:
    backend = get_backend("cpsat")
    result = backend.solve(_knapsack(10.0, 12.0), timeout_s=10)
    assert result.status is SolveStatus.FEASIBLE and result.values is not None
    assert np.all(result.values == np.round(result.values))
    weights, values = np.array([3.0, 4.0, 5.0, 6.0, 2.5, 1.5]), np.array([4.0, 5.0, 6.0, 7.0, 3.0, 0.5])
    assert weights @ result.values <= 10.0 and values @ result.values >= 12.0
    assert backend.solve(_knapsack(10.0, 12.5), timeout_s=10).status is SolveStatus.INFEASIBLE  # best is 12


def test_disjunction_and_objective() -> None:
    p = Problem()
    x = p.add_var(0, 10, integer=True, name="x")
    p.add_disjunction(
        [[Row(np.array([x]), np.array([1.0]), -np.inf, 2.0)], [Row(np.array([x]), np.array([1.0]), 7.0, np.inf)]]
    )
    p.add_row(np.array([x]), np.array([1.0]), 3.0, np.inf)
    p.objective = (np.array([x]), np.array([1.0]))
    result = get_backend("cpsat").solve(p, timeout_s=10)
    assert result.status is SolveStatus.FEASIBLE and result.values is not None and result.values[x] == 7.0


def test_continuous_problems_are_unknown_not_wrong() -> None:
    p = Problem()
    p.add_var(0.0, 1.0, name="y")
    result = get_backend("cpsat").solve(p, timeout_s=10)
    assert result.status is SolveStatus.UNKNOWN and "continuous" in result.note


def test_time_limit_is_a_status() -> None:
    rng = np.random.default_rng(0)
    p = Problem()
    xs = [p.add_var(0, 1, integer=True) for _ in range(60)]
    for _ in range(6):
        a = rng.integers(0, 100, size=60).astype(float)
        p.add_row(np.array(xs), a, float(a.sum() // 2), float(a.sum() // 2))
    result = get_backend("cpsat").solve(p, timeout_s=0.05)
    assert result.status in (SolveStatus.TIMEOUT, SolveStatus.INFEASIBLE)
    assert result.status is SolveStatus.TIMEOUT or result.seconds < 0.5
