"""Input splitting on ReLU chains (``bounds/lean.py``, child boxes without forward symbolic bounds, grouped by
unstable count) reaches the exact query's verdict."""

from __future__ import annotations

import numpy as np
import pytest
from netgen import random_net

from nnverify.backends import get_backend
from nnverify.budget import Budget
from nnverify.options import Options
from nnverify.search import bab
from nnverify.search import boxes as search_boxes
from nnverify.search.bab import input_split_search
from nnverify.search.exact import decide_box
from nnverify.spec.property import Disjunct


def test_lean_search_agrees_with_the_exact_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small batches and groups of 2 so that the grouped path runs; a conjunction of three rows per disjunct,
    the first near its minimum over the box (deep searches).
    Every ``unsat`` is also checked against 20,000 samples, and both verdicts occur."""
    monkeypatch.setattr(bab, "BATCH", 16)
    monkeypatch.setattr(search_boxes, "GROUP", 2)
    rng = np.random.default_rng(11)
    options = Options()
    backend = get_backend("highs", options)
    seen, boxes = set(), 0
    for _ in range(6):
        net = random_net(rng, [5, 10, 10, 10, 3])
        assert bab.is_relu_chain(net)
        centre, radius = rng.uniform(-1, 1, 5), rng.uniform(0.1, 0.6, 5)
        lb, ub = centre - radius, centre + radius
        a_y = rng.normal(size=(3, 3))
        rows = net.eval(rng.uniform(lb, ub, size=(4000, 5))) @ a_y.T  # right-hand sides near each row's minimum
        spread = rows.max(axis=0) - rows.min(axis=0)
        b = np.quantile(rows, 0.9, axis=0)
        b[0] = rows[:, 0].min() + rng.uniform(-0.03, 0.02) * spread[0]
        d = Disjunct(lb, ub, np.zeros((3, 5)), a_y, b)
        reference = decide_box(net, lb, ub, [d], backend, Budget.starting_now(30), options)
        out = input_split_search(net, [d], lb, ub, backend, Budget.starting_now(30), options, lambda x: True)
        assert out.status is reference.status
        if out.status.value == "infeasible":
            x = rng.uniform(lb, ub, size=(20000, 5))
            assert np.all(d.slack(x, net.eval(x)) > 0.0)
        seen.add(out.status)
        boxes = max(boxes, out.stats.boxes)
    assert len(seen) == 2
    assert boxes > 64  # some search went deep enough for grouped batches
