"""Input splitting over the free inputs only: fixed inputs (lb == ub) folded exactly into the first layer."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from netgen import random_net

from nnverify.backends import get_backend
from nnverify.backends.base import SolveStatus
from nnverify.budget import Budget
from nnverify.graph.layers import exact_dot_plus
from nnverify.options import Options
from nnverify.search.bab import input_split_search
from nnverify.search.exact import decide_box
from nnverify.spec.property import Disjunct


def test_exact_dot_plus_is_correctly_rounded() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(300, 40)).astype(np.float32).astype(np.float64)
    x, b = rng.uniform(-5, 5, 40), rng.normal(size=300) * 1e3
    w[:, 0], x[0] = 1e8, 1e8 * (1 + 2**-40)  # a large term that cancels against the bias
    b[:] = -1e16
    exact = [float(Fraction(b[i]) + sum(Fraction(w[i, j]) * Fraction(x[j]) for j in range(40))) for i in range(300)]
    assert np.array_equal(exact_dot_plus(w, x, b), np.array(exact))


def test_search_over_free_inputs_agrees_with_the_exact_query() -> None:
    """ReLU nets with two of five inputs pinned: the input-split search (reduced space, exact leaves given the
    full input box) and one exact query on the whole box reach the same status."""
    rng = np.random.default_rng(5)
    options = Options()
    backend = get_backend("highs", options)
    seen = set()
    for _ in range(12):
        net = random_net(rng, [5, 10, 8, 2])
        centre, radius = rng.uniform(-1, 1, 5), rng.uniform(0.1, 0.8, 5)
        radius[[1, 3]] = 0.0
        lb, ub = centre - radius, centre + radius
        d = Disjunct(lb, ub, np.zeros((1, 5)), rng.normal(size=(1, 2)), rng.normal(size=1) * 0.5)
        reference = decide_box(net, lb, ub, [d], backend, Budget.starting_now(30), options)
        out = input_split_search(net, [d], lb, ub, backend, Budget.starting_now(30), options, lambda x: True)
        assert out.status is reference.status
        if out.x is not None:
            assert np.array_equal(out.x[[1, 3]], lb[[1, 3]])
        seen.add(out.status)
    assert seen == {SolveStatus.FEASIBLE, SolveStatus.INFEASIBLE}
