"""The bound-guided beam (``attack_beam.py``) finds a counterexample in a needle of the box that sampling and
descent miss, never proposes a point outside the unsafe set, and keeps to its budget and its share."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nnverify import attack, attack_beam
from nnverify.budget import Budget, BudgetExpired
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL
from nnverify.spec.property import Disjunct

sys.path.insert(0, str(Path(__file__).parent))
from netgen import random_net

#: The needle: ``y <= 0.5`` only where ``|x0 - CENTRE| < WIDTH / 2`` or so, and ``x1`` above about 0.6.
CENTRE, WIDTH = 0.3141, 2e-5
MARGINS = (BOUND_MARGIN_REL, BOUND_MARGIN_ABS)


def _needle_weights() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``y = 1 + 4 relu(0.95 - x1) - 2 hat(x0) / w``, ``hat`` a tent of height and half-width ``w`` at ``c``: flat
    (no gradient) everywhere but in the needle."""
    c, w = CENTRE, WIDTH
    first = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, -1.0]])
    bias = np.array([-c + w, -c, -c - w, 0.95])
    out = np.array([[-2.0 / w, 4.0 / w, -2.0 / w, 4.0]])
    return first, bias, out, np.array([1.0])


def _needle() -> LayerGraph:
    first, bias, out, out_bias = _needle_weights()
    return LayerGraph(
        (
            InputLayer(2),
            AffineLayer("fc0", (0,), (first,), bias),
            ActivationLayer("relu", 1, ActKind.RELU, 4),
            AffineLayer("fc1", (2,), (out,), out_bias),
        ),
        3,
    )


def _below(threshold: float) -> Disjunct:
    """``y <= threshold`` on the unit square."""
    return Disjunct(np.zeros(2), np.ones(2), np.zeros((1, 2)), np.ones((1, 1)), np.array([threshold]))


def test_the_beam_finds_the_needle_that_sampling_and_descent_miss() -> None:
    graph, d = _needle(), _below(0.5)
    ranked = attack.ranked_samples(graph, [d], samples=2000, seed=0, keep=attack.REFINE_STARTS)
    assert not attack.violating(ranked)
    assert not attack.refine_samples(graph, [d], ranked)
    assert not attack.pgd_candidates(graph, [d], seed=0)
    bound = attack_beam.layer_bound_fn(graph, [d], *MARGINS)
    found = attack_beam.beam_candidates(graph, [d], bound, seed=0)
    assert found
    x = np.array(found)
    assert np.all(d.slack(x, graph.eval(x)) <= 0.0) and np.all(d.contains_input(x))
    assert abs(found[0][0] - CENTRE) < WIDTH


def test_nothing_is_proposed_where_no_point_violates() -> None:
    graph, d = _needle(), _below(-1.01)  # y >= -1 everywhere
    bound = attack_beam.layer_bound_fn(graph, [d], *MARGINS)
    stats: dict[str, float | int | str] = {}
    assert attack_beam.beam_candidates(graph, [d], bound, seed=0, stats=stats) == []
    assert int(stats["beam_boxes"]) > 0


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"net{s}")
def test_every_proposal_lies_in_a_disjunct_of_the_property(seed: int) -> None:
    rng = np.random.default_rng(seed)
    graph = random_net(rng, [3, 8, 8, 2])
    lb = rng.uniform(-1.0, 0.0, 3)
    ub = lb + rng.uniform(0.1, 1.0, 3)
    y = graph.eval(rng.uniform(lb, ub, (200, 3)))
    disjuncts = [  # y0 <= a low quantile, and y0 - y1 >= a high one with y1 <= its median
        Disjunct(lb, ub, np.zeros((1, 3)), np.array([[1.0, 0.0]]), np.array([np.quantile(y[:, 0], 0.01)])),
        Disjunct(
            lb,
            ub,
            np.zeros((2, 3)),
            np.array([[-1.0, 1.0], [0.0, 1.0]]),
            np.array([-np.quantile(y[:, 0] - y[:, 1], 0.95), np.median(y[:, 1])]),
        ),
    ]
    bound = attack_beam.layer_bound_fn(graph, disjuncts, *MARGINS)
    found = attack_beam.beam_candidates(graph, disjuncts, bound, seed=seed, config=attack_beam.BeamConfig(levels=8))
    for x in found:
        out = graph.eval(x[None, :])
        assert any(d.contains_input(x[None, :])[0] and d.slack(x[None, :], out)[0] <= 0.0 for d in disjuncts)


def test_a_smooth_network_and_a_disjunct_without_rows() -> None:
    """A tanh layer (not a ReLU chain: ``backward_rows_lower``), and a disjunct whose box alone is unsafe."""
    rng = np.random.default_rng(7)
    w0, w1 = rng.normal(size=(6, 2)), rng.normal(size=(1, 6))
    graph = LayerGraph(
        (
            InputLayer(2),
            AffineLayer("fc0", (0,), (w0,), rng.normal(size=6)),
            ActivationLayer("tanh", 1, ActKind.TANH, 6),
            AffineLayer("fc1", (2,), (w1,), np.zeros(1)),
        ),
        3,
    )
    y = graph.eval(rng.uniform(0.0, 1.0, (500, 2)))[:, 0]
    d = _below(float(np.quantile(y, 0.001)))
    found = attack_beam.beam_candidates(graph, [d], attack_beam.layer_bound_fn(graph, [d], *MARGINS), seed=1)
    assert found and all(d.slack(x[None, :], graph.eval(x[None, :]))[0] <= 0.0 for x in found)
    free = Disjunct(np.zeros(2), np.ones(2), np.zeros((0, 2)), np.zeros((0, 1)), np.zeros(0))
    found = attack_beam.beam_candidates(graph, [free], attack_beam.layer_bound_fn(graph, [free], *MARGINS))
    assert found and free.contains_input(np.array(found)).all()


def test_the_beam_looks_at_its_budget_and_its_share() -> None:
    graph, d = _needle(), _below(0.5)
    bound = attack_beam.layer_bound_fn(graph, [d], *MARGINS)
    spent = Budget(time.monotonic() - 1.0)
    with pytest.raises(BudgetExpired, match="beam"):
        attack_beam.beam_candidates(graph, [d], bound, budget=spent)
    with pytest.raises(BudgetExpired):  # the run's budget spent: the run must stop
        attack_beam.beam_attack(graph, [d], max_free=16, margins=MARGINS, seed=0, budget=spent)
    stats: dict[str, float | int | str] = {}
    found = attack_beam.beam_attack(  # only its share spent: nothing found, and the run goes on
        graph, [d], max_free=16, margins=MARGINS, seed=0, budget=Budget.starting_now(60.0), share=0.0, stats=stats
    )
    assert found == [] and "beam_levels" not in stats
    assert attack_beam.beam_attack(graph, [d], max_free=1, margins=MARGINS, seed=0, budget=Budget.unlimited()) == []
