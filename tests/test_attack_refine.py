"""The attack's descent from the best samples (``attack.refine_samples``) finds a counterexample in a sliver
of the box that sampling and the descent from random points miss."""

from __future__ import annotations

import time

import numpy as np
import pytest

from nnverify import attack
from nnverify.budget import Budget, BudgetExpired
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.spec.property import Disjunct

#: The sliver: x0 within 3/4 WIDTH of CENTRE.
CENTRE, WIDTH = 0.3, 1e-4


def _funnel() -> LayerGraph:
    """``y = 1 + 0.1 |x0 - c| - 2 hat(x0) / w`` on two inputs (x1 unused): a gentle funnel towards ``c`` with a
    hat of height ``w`` and half-width ``w`` at its bottom, so ``y <= 0.5`` only where ``|x0 - c| < 3 w / 4``."""
    c, w = CENTRE, WIDTH
    first = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    bias = np.array([-c, c, -c + w, -c, -c - w])
    out = np.array([[0.1, 0.1, -2.0 / w, 4.0 / w, -2.0 / w]])
    return LayerGraph(
        (
            InputLayer(2),
            AffineLayer("fc0", (0,), (first,), bias),
            ActivationLayer("relu", 1, ActKind.RELU, 5),
            AffineLayer("fc1", (2,), (out,), np.array([1.0])),
        ),
        3,
    )


def test_descent_from_the_best_samples_finds_the_sliver() -> None:
    graph = _funnel()
    d = Disjunct(np.zeros(2), np.ones(2), np.zeros((1, 2)), np.ones((1, 1)), np.array([0.5]))  # y <= 0.5
    ranked = attack.ranked_samples(graph, [d], samples=2000, seed=0, keep=attack.REFINE_STARTS)
    assert not attack.violating(ranked)
    assert not attack.pgd_candidates(graph, [d], seed=0)
    found = attack.refine_samples(graph, [d], ranked)
    assert found
    assert np.all(d.slack(np.array(found), graph.eval(np.array(found))) <= 0.0)
    assert abs(found[0][0] - CENTRE) < 0.75 * WIDTH


def test_candidates_are_the_violating_ranked_samples() -> None:
    graph = _funnel()
    d = Disjunct(np.zeros(2), np.ones(2), np.zeros((1, 2)), np.ones((1, 1)), np.array([1.05]))  # y <= 1.05
    ranked = attack.ranked_samples(graph, [d], samples=400, seed=3, keep=5)
    x, slack = ranked[0]
    assert np.all(np.diff(slack) >= 0.0) and np.all(slack <= 0.0)
    assert np.array_equal(np.array(attack.candidates(graph, [d], samples=400, seed=3)), x)


def test_the_descent_looks_at_the_budget() -> None:
    graph = _funnel()
    d = Disjunct(np.zeros(2), np.ones(2), np.zeros((1, 2)), np.ones((1, 1)), np.array([0.5]))
    ranked = attack.ranked_samples(graph, [d], samples=200, seed=0, keep=4)
    with pytest.raises(BudgetExpired, match="gradient descent"):
        attack.refine_samples(graph, [d], ranked, budget=Budget(time.monotonic() - 1.0, float("inf")))
