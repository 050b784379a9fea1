"""The input-split search's polishing of its attack points (``bab.polish_best``, ``attack.descend_adaptive``):
it reaches a narrow unsafe cap near the network's maximum that the raw points miss, stays in the box, and runs
only when a batch beats the search's record."""

from __future__ import annotations

import numpy as np
from netgen import random_net

from nnverify.attack import descend_adaptive
from nnverify.budget import Budget
from nnverify.search.bab import SearchStats, polish_best
from nnverify.spec.property import Disjunct


def _cap(seed: int) -> tuple[object, Disjunct, np.ndarray]:
    """A random 2-input ReLU net and the disjunct ``y0 >= t``, ``t`` a hair below the best of a fine grid and an
    ascent; the start points: a coarse grid inside the box."""
    rng = np.random.default_rng(seed)
    net = random_net(rng, [2, 16, 16, 1])
    lb, ub = -np.ones(2), np.ones(2)
    g = np.linspace(-1.0, 1.0, 801)
    grid = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    top = float(net.eval(grid)[:, 0].max())
    d = Disjunct(lb, ub, np.zeros((1, 2)), -np.ones((1, 1)), np.array([-(top - 1e-4 * (1.0 + abs(top)))]))
    coarse = np.stack(np.meshgrid(*[np.linspace(-0.75, 0.75, 4)] * 2), axis=-1).reshape(-1, 2)
    return net, d, coarse


def test_descent_reaches_a_narrow_cap_inside_the_box() -> None:
    found, tried = 0, 0
    for seed in range(8):
        net, d, start = _cap(seed)
        if np.any(d.slack(start, net.eval(start)) <= 0.0):
            continue
        tried += 1
        x = descend_adaptive(net, d, start, Budget.unlimited(), 60)
        assert np.all((x >= d.lb) & (x <= d.ub))
        found += int(np.any(d.slack(x, net.eval(x)) <= 0.0))
    assert tried >= 6 and found >= tried - 2


def test_polish_replays_only_on_a_new_record() -> None:
    net, d, start = _cap(0)
    calls: list[np.ndarray] = []

    def replay(x: np.ndarray) -> bool:
        calls.append(x)
        return bool(d.slack(x[None], net.eval(x[None]))[0] <= 0.0)

    best_raw = float(d.slack(start, net.eval(start)).min())
    x, record = polish_best(net, [d], start, replay, SearchStats(), best_raw)  # not better than the record
    assert x is None and record == best_raw and not calls
    x, record = polish_best(net, [d], start, replay, SearchStats(), np.inf)
    assert record == best_raw
    assert x is not None and calls and d.slack(x[None], net.eval(x[None]))[0] <= 0.0
