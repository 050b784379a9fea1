"""Unit tests of the MILP lowering (no solver): structure, bound tightening, encodings checked at points."""

from __future__ import annotations

import numpy as np
import pytest

from nnverify.encode.milp import MilpModel, lower
from nnverify.encode.problem import Problem, Row


def _relu_problem(x_lb: float, x_ub: float, y_bounds: tuple[float, float] = (-10.0, 10.0)) -> tuple[Problem, int, int]:
    p = Problem()
    x = p.add_var(x_lb, x_ub, name="x")
    y = p.add_var(*y_bounds, name="y")
    p.add_relu(x, y)
    return p, x, y


def _row(idx: list[int], coef: list[float], lo: float = -np.inf, hi: float = np.inf) -> Row:
    return Row(np.array(idx, dtype=np.int64), np.array(coef), lo, hi)


@pytest.mark.parametrize(
    ("x_lb", "x_ub", "y_lb", "y_ub", "n_rows"),
    [(0.5, 2.0, 0.5, 2.0, 1), (0.0, 2.0, 0.0, 2.0, 1), (-3.0, -1.0, 0.0, 0.0, 0), (-3.0, 0.0, 0.0, 0.0, 0)],
    ids=["active", "active-at-zero", "inactive", "inactive-at-zero"],
)
def test_stable_relu_has_no_binary_and_tight_output_bounds(
    x_lb: float, x_ub: float, y_lb: float, y_ub: float, n_rows: int
) -> None:
    p, _, y = _relu_problem(x_lb, x_ub)
    model = lower(p)
    assert model.n_cols == model.n_original == 2
    assert model.n_integer == 0
    assert model.n_rows == n_rows
    assert (model.lb[y], model.ub[y]) == (y_lb, y_ub)


def test_stable_relu_allows_infinite_upper_bound() -> None:
    p, _, y = _relu_problem(1.0, np.inf, (-np.inf, np.inf))
    model = lower(p)
    assert model.n_integer == 0
    assert (model.lb[y], model.ub[y]) == (1.0, np.inf)


def test_unstable_relu_gets_one_binary_and_clipped_output_bounds() -> None:
    p, _, y = _relu_problem(-2.0, 3.0, (-10.0, 2.5))
    model = lower(p)
    assert model.n_cols == 3 and model.n_original == 2
    assert model.integrality.tolist() == [False, False, True]
    assert (model.lb[2], model.ub[2]) == (0.0, 1.0)
    assert (model.lb[y], model.ub[y]) == (0.0, 2.5)  # [max(0, l), max(0, u)] meets the given [-10, 2.5]


@pytest.mark.parametrize("bounds", [(-np.inf, 1.0), (-1.0, np.inf)], ids=["no-lower", "no-upper"])
def test_unstable_relu_without_finite_bounds_is_an_internal_error(bounds: tuple[float, float]) -> None:
    p, _, _ = _relu_problem(*bounds)
    with pytest.raises(ValueError, match="finite bounds"):
        lower(p)


def test_relu_encoding_is_exact_at_sample_points() -> None:
    model = lower(_relu_problem(-2.0, 3.0)[0])
    for x in np.linspace(-2.0, 3.0, 41):
        y, d = max(x, 0.0), float(x > 0)
        assert model.max_violation(np.array([x, y, d])) <= 1e-12
        for wrong in (y + 0.25, y - 0.25):  # no choice of the binary admits a wrong output
            assert min(model.max_violation(np.array([x, wrong, b])) for b in (0.0, 1.0)) > 1e-3


def test_thousands_of_relus_lower_to_arrays() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    p = Problem()
    lo = rng.uniform(-2.0, 1.0, n)
    x = p.add_vars(lo, lo + rng.uniform(0.1, 2.0, n))
    y = p.add_vars(np.full(n, -50.0), np.full(n, 50.0))
    for xi, yi in zip(x, y, strict=True):
        p.add_relu(xi, yi)
    model = lower(p)
    unstable = int(np.sum((lo < 0) & (p.ub[:n] > np.zeros(n))))
    assert model.n_integer == unstable
    assert model.n_cols == 2 * n + unstable
    assert len(model.indptr) == model.n_rows + 1 and model.indptr[-1] == len(model.data) == len(model.indices)


def _sign_problem(x_lb: float, x_ub: float) -> Problem:
    p = Problem()
    x = p.add_var(x_lb, x_ub, name="x")
    y = p.add_var(-5.0, 5.0, name="y")
    p.add_sign(x, y)
    return p


@pytest.mark.parametrize(
    ("x_lb", "x_ub", "y_value"),
    [(0.5, 2.0, 1.0), (-2.0, -0.1, -1.0), (0.0, 0.0, 0.0)],
    ids=["pos", "neg", "zero"],
)
def test_stable_sign_is_fixed_without_binaries(x_lb: float, x_ub: float, y_value: float) -> None:
    model = lower(_sign_problem(x_lb, x_ub))
    assert model.n_integer == 0 and model.n_rows == 0
    assert model.lb[1] == model.ub[1] == y_value


def test_sign_encoding_is_exact_away_from_zero() -> None:
    model = lower(_sign_problem(-2.0, 3.0))
    assert model.n_integer == 2
    for x in [*np.linspace(-2.0, -0.05, 10), *np.linspace(0.05, 3.0, 10)]:
        y, p, n = np.sign(x), float(x > 0), float(x < 0)
        assert model.max_violation(np.array([x, y, p, n])) <= 1e-12
        others = [(yy, pp, nn) for yy in (-1, 0, 1) if yy != y for pp in (0, 1) for nn in (0, 1)]
        assert min(model.max_violation(np.array([x, *o])) for o in others) > 1e-3
    # At x = 0 the encoding admits every y (documented over-approximation).
    for y, p, n in [(0, 0, 0), (1, 1, 0), (-1, 0, 1)]:
        assert model.max_violation(np.array([0.0, y, p, n])) == 0.0


def test_sign_with_zero_lower_bound_never_gives_minus_one() -> None:
    model = lower(_sign_problem(0.0, 2.0))
    assert (model.lb[1], model.ub[1]) == (0.0, 1.0)


def _box_problem() -> Problem:
    p = Problem()
    p.add_vars(np.zeros(2), np.ones(2))
    return p


def test_single_term_disjunction_is_plain_rows() -> None:
    p = _box_problem()
    p.add_disjunction([[_row([0, 1], [1.0, 1.0], lo=0.5), _row([0], [1.0], hi=0.8)]])
    model = lower(p)
    assert model.n_integer == 0
    assert model.n_rows == 2


def test_disjunction_drops_impossible_terms() -> None:
    p = _box_problem()
    impossible = [_row([0], [1.0], lo=2.0)]
    p.add_disjunction([impossible, [_row([1], [1.0], hi=0.3)], impossible])
    model = lower(p)
    assert model.n_integer == 0 and model.n_rows == 1
    assert model.max_violation(np.array([0.5, 0.2])) == 0.0
    assert model.max_violation(np.array([0.5, 0.4])) > 0.05


def test_disjunction_of_impossible_terms_is_an_infeasible_row() -> None:
    p = _box_problem()
    p.add_disjunction([[_row([0], [1.0], lo=2.0)], [_row([0, 1], [1.0, 1.0], hi=-0.5)]])
    model = lower(p)
    assert model.n_rows == 1 and model.row_lo[0] > 0 and model.indptr[-1] == 0


def test_disjunction_with_a_term_that_always_holds_adds_nothing() -> None:
    p = _box_problem()
    p.add_disjunction([[_row([0], [1.0], lo=0.9)], [_row([0, 1], [1.0, 1.0], hi=2.0)]])
    model = lower(p)
    assert model.n_rows == 0 and model.n_cols == 2


def test_disjunction_big_m_keeps_each_term_and_only_it() -> None:
    p = _box_problem()
    left, right = [_row([0], [1.0], hi=0.2)], [_row([0], [1.0], lo=0.8), _row([1], [1.0], lo=0.5)]
    p.add_disjunction([left, right])
    model = lower(p)
    assert model.n_integer == 2

    def best(x0: float, x1: float) -> float:
        return min(model.max_violation(np.array([x0, x1, d0, d1])) for d0 in (0, 1) for d1 in (0, 1))

    assert best(0.1, 0.0) == 0.0  # left
    assert best(0.9, 0.6) == 0.0  # right
    assert best(0.5, 0.6) > 0.05  # neither
    assert best(0.9, 0.1) > 0.05  # right's second row fails


def test_disjunction_needs_finite_bounds_for_big_m() -> None:
    p = Problem()
    p.add_var(0.0, np.inf)
    p.add_disjunction([[_row([0], [1.0], hi=1.0)], [_row([0], [1.0], hi=2.0), _row([0], [-1.0], hi=-1.5)]])
    with pytest.raises(ValueError, match="finite"):
        lower(p)


def test_rows_are_canonical_csr() -> None:
    p = _box_problem()
    p.add_row(np.array([1, 0, 1, 0]), np.array([1.0, 2.0, 3.0, -2.0]), lo=0.0)  # x1 + 3 x1 + 2 x0 - 2 x0
    model = lower(p)
    assert model.indptr.tolist() == [0, 1]
    assert model.indices.tolist() == [1] and model.data.tolist() == [4.0]


def test_objective_and_read_only_arrays() -> None:
    p = _box_problem()
    p.objective = (np.array([1, 1]), np.array([2.0, -0.5]))
    model = lower(p)
    assert model.c.tolist() == [0.0, 1.5]
    assert model.objective_bounded()
    with pytest.raises(ValueError, match="read-only"):
        model.lb[0] = 3.0


def test_unbounded_objective_direction_is_detected() -> None:
    p = Problem()
    p.add_var(-np.inf, 0.0)
    p.objective = (np.array([0]), np.array([1.0]))
    assert not lower(p).objective_bounded()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.add_row(np.array([5]), np.array([1.0]), 0.0, 1.0),
        lambda p: p.add_relu(0, 7),
        lambda p: p.ub.pop(),
    ],
    ids=["row-index", "relu-index", "ragged-lists"],
)
def test_malformed_problem_is_an_internal_error(mutate: object) -> None:
    p = _box_problem()
    assert callable(mutate)
    mutate(p)
    with pytest.raises(ValueError):
        lower(p)


def test_empty_problem() -> None:
    model = lower(Problem())
    assert isinstance(model, MilpModel)
    assert model.n_cols == model.n_rows == 0 and model.indptr.tolist() == [0]


def test_random_rows_give_the_same_matrix_in_canonical_form() -> None:
    rng = np.random.default_rng(3)
    n = 12
    p = Problem()
    p.add_vars(-np.ones(n), np.ones(n))
    dense = np.zeros((40, n))
    for i in range(40):
        width = int(rng.integers(0, 8))
        idx = np.sort(rng.choice(n, width, replace=False)) if i % 2 else rng.integers(0, n, width)
        coef = rng.choice([0.0, 1.5, -2.0, 3.0], width)
        p.add_row(idx, coef, -1.0, 1.0)
        np.add.at(dense[i], idx, coef)
    model = lower(p)
    rebuilt = np.zeros((model.n_rows, n))
    for i in range(model.n_rows):
        cols = model.indices[model.indptr[i] : model.indptr[i + 1]]
        assert np.all(np.diff(cols) > 0)
        rebuilt[i, cols] = model.data[model.indptr[i] : model.indptr[i + 1]]
    np.testing.assert_array_equal(rebuilt, dense)
    assert np.all(model.data != 0)
