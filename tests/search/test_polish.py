"""Polishing moves a boundary candidate strictly inside the unsafe set, staying in the input box."""

from __future__ import annotations

import numpy as np

from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.search.polish import polish
from nnverify.spec.property import Disjunct


def small_net(rng: np.random.Generator) -> LayerGraph:
    layers = (
        InputLayer(4),
        AffineLayer("fc1", (0,), (rng.normal(size=(8, 4)),), rng.normal(size=8) * 0.1),
        ActivationLayer("relu", 1, ActKind.RELU, 8),
        AffineLayer("fc2", (2,), (rng.normal(size=(3, 8)),), rng.normal(size=3) * 0.1),
    )
    return LayerGraph(layers, 3)


def test_boundary_candidate_is_moved_inside() -> None:
    rng = np.random.default_rng(5)
    for _ in range(10):
        net = small_net(rng)
        lb, ub = -np.ones(4), np.ones(4)
        x = rng.uniform(lb, ub)
        y = net.eval(x[None, :])[0]
        a_y = np.array([[1.0, -1.0, 0.0]])
        d = Disjunct(lb, ub, np.zeros((1, 4)), a_y, np.array([y[0] - y[1]]))  # tight at x
        assert d.slack(x[None, :], y[None, :])[0] == 0.0
        x2 = polish(net, d, x)
        assert np.all(x2 >= lb) and np.all(x2 <= ub)
        assert d.slack(x2[None, :], net.eval(x2[None, :]))[0] <= 1e-9


def test_polish_strictly_improves_when_the_region_allows() -> None:
    rng = np.random.default_rng(9)
    net = small_net(rng)
    lb, ub = -np.ones(4), np.ones(4)
    x = np.zeros(4)
    y = net.eval(x[None, :])[0]
    d = Disjunct(lb, ub, np.zeros((1, 4)), np.array([[1.0, 0.0, 0.0]]), np.array([y[0]]))
    x2 = polish(net, d, x)
    assert d.slack(x2[None, :], net.eval(x2[None, :]))[0] < -1e-6
