"""Input-box shrinking (``search/shrink.py``) keeps every point where a live disjunct's linear lower bounds allow a
counterexample, and its margin is what keeps the points on the boundary."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from netgen import random_net

from nnverify.bounds.backward import SLOPE_RULES
from nnverify.bounds.lean import bound_chain
from nnverify.bounds.symbolic import symbolic_bounds
from nnverify.search.rows import StackedRows
from nnverify.search.shrink import shrink_boxes
from nnverify.spec.property import Disjunct


def _inside(x: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    return np.all((x >= lb) & (x <= ub), axis=-1)


def test_sampled_points_of_live_disjuncts_stay_in_the_shrunk_box() -> None:
    """Random linear rows, two disjuncts of two rows: every sampled point satisfying one disjunct's rows lies in
    the shrunk box, and no sampled point satisfies a disjunct the shrinking ruled out."""
    rng = np.random.default_rng(3)
    n, batch = 4, 64
    owner = np.array([0, 0, 1, 1])
    centre = rng.uniform(-1, 1, (batch, n))
    lb, ub = centre - 0.5, centre + 0.5
    coef = rng.normal(size=(batch, 4, n + 1))
    coef[..., -1] = rng.uniform(-1.5, 1.0, (batch, 4))
    dead = np.zeros((batch, 2), dtype=bool)
    dead[::7, 1] = True
    new_lb, new_ub, empty = shrink_boxes(coef, owner, dead, lb, ub)
    assert np.all(new_lb >= lb) and np.all(new_ub <= ub)
    shrunk = np.mean(np.prod(new_ub - new_lb, axis=1) / np.prod(ub - lb, axis=1))
    assert shrunk < 0.95  # the test exercises real shrinking
    x = rng.uniform(lb[:, None], ub[:, None], (batch, 20000, n))
    values = np.einsum("bsn,bkn->bsk", x, coef[..., :-1]) + coef[:, None, :, -1]
    for d in range(2):
        holds = np.all(values[..., owner == d] <= 0.0, axis=2) & ~dead[:, d, None]
        assert not np.any(holds & empty[:, d, None])
        assert np.all(_inside(x, new_lb[:, None], new_ub[:, None])[holds])
    assert np.any(empty & ~dead)


def test_network_counterexamples_stay_in_the_shrunk_box() -> None:
    """With a ReLU chain's linear lower bounds (``lean.bound_chain``) on random boxes: every sampled input whose
    outputs satisfy the disjunct lies in the shrunk box, and some boxes shrink."""
    rng = np.random.default_rng(5)
    net = random_net(rng, [3, 8, 8, 2])
    a_y = np.array([[1.0, -1.0], [0.0, 1.0]])
    shrunk = 0
    for _ in range(10):
        centre, radius = rng.uniform(-1, 1, 3), rng.uniform(0.05, 0.4, 3)
        lb, ub = (centre - radius)[None], (centre + radius)[None]
        x = rng.uniform(lb, ub, (20000, 3))
        y = net.eval(x)
        b = np.array([np.quantile(y @ a_y[0], 0.1), np.quantile(y @ a_y[1], 0.8)])
        rows = StackedRows.of([Disjunct(lb[0], ub[0], np.zeros((2, 3)), a_y, b)])
        first = symbolic_bounds(net, lb, ub)
        _, lower, coef = bound_chain(net, first.lb, first.ub, rows.a_x, rows.a_y, rows.b, rules=SLOPE_RULES)
        new_lb, new_ub, empty = shrink_boxes(coef, rows.owner, rows.dead(lower), lb, ub)
        holds = np.all(y @ a_y.T - b <= 0.0, axis=1)
        assert not empty[0, 0]
        assert np.all(_inside(x[holds], new_lb[0], new_ub[0]))
        shrunk += int(np.prod(new_ub - new_lb) < 0.9 * np.prod(ub - lb))
    assert shrunk >= 3


def _boundary_cases(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``c x + c0`` through a float point ``x*`` (``c0 = -fl(c x*)``, kept when ``c x* + c0 <= 0``
    exactly): ``x*`` is a counterexample of the row."""
    coefs, points = [], []
    while len(coefs) < count:
        c = rng.normal(size=3) * 10.0 ** rng.integers(-3, 3, 3)
        x = rng.uniform(-1, 1, 3) * 10.0 ** rng.integers(-2, 2, 3)
        c0 = -float(c @ x)
        if sum(Fraction(float(ci)) * Fraction(float(xi)) for ci, xi in zip(c, x, strict=True)) + Fraction(c0) <= 0:
            coefs.append(np.append(c, c0))
            points.append(x)
    return np.array(coefs)[:, None, :], np.array(points)


def test_the_margin_keeps_counterexamples_on_the_boundary() -> None:
    """Points exactly on a row's zero set are kept with the default margin and lost in some cases without it."""
    rng = np.random.default_rng(0)
    coef, x = _boundary_cases(rng, 400)
    lb, ub = x - rng.uniform(0.1, 2.0, x.shape), x + rng.uniform(0.1, 2.0, x.shape)
    c = coef[:, 0, 1:-1]  # dimensions 1, 2 at the corner minimising their terms: x* is on dimension 0's new face
    lb[:, 1:] = np.where(c > 0.0, x[:, 1:], lb[:, 1:])
    ub[:, 1:] = np.where(c < 0.0, x[:, 1:], ub[:, 1:])
    dead = np.zeros((x.shape[0], 1), dtype=bool)
    owner = np.zeros(1, dtype=np.int64)
    new_lb, new_ub, empty = shrink_boxes(coef, owner, dead, lb, ub)
    assert not np.any(empty) and np.all(_inside(x, new_lb, new_ub))
    bare_lb, bare_ub, _ = shrink_boxes(coef, owner, dead, lb, ub, margin_rel=0.0, margin_abs=0.0)
    assert not np.all(_inside(x, bare_lb, bare_ub))


def test_a_disjunct_without_rows_keeps_the_box() -> None:
    """Disjunct 1 has no rows (every point of the box is in it): the hull is the whole box, nothing ruled out."""
    lb, ub = np.zeros((2, 2)), np.ones((2, 2))
    coef = np.array([[[1.0, 0.0, -0.5]], [[0.0, 1.0, -0.25]]])  # disjunct 0: x0 <= 0.5, resp. x1 <= 0.25
    dead = np.zeros((2, 2), dtype=bool)
    new_lb, new_ub, empty = shrink_boxes(coef, np.array([0]), dead, lb, ub)
    assert not np.any(empty) and np.all(new_lb == lb) and np.all(new_ub == ub)
    one_lb, one_ub, _ = shrink_boxes(coef, np.array([0]), dead[:, :1], lb, ub)
    np.testing.assert_allclose(one_ub, [[0.5, 1.0], [1.0, 0.25]], rtol=1e-8)
    assert np.all(one_lb == lb)
