"""The ReLU branch and bound's decisions on a tiny net, pinned: a refactor of ``search/relu_*.py`` or of the
α/β-CROWN bounds that changes a bound or a branching choice fails here (``bench/refactor_trace.py`` is the
MNIST-FC version, compared before/after a change)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from netgen import random_net

from nnverify.backends import get_backend
from nnverify.budget import Budget
from nnverify.options import Options
from nnverify.search import relu_search
from nnverify.search.relu_bab import relu_split_search
from nnverify.spec.property import Disjunct

#: Domains traced (the search is stopped after the batch that reaches it).
DOMAINS = 60
#: ``depth:layer:neuron`` of every domain bounded, in order (layer -1: proven, nothing to split).
EXPECTED = (
    "0:5:0 0:5:2 1:5:11 1:5:14 1:5:11 1:5:11 2:5:21 2:3:16 2:5:21 2:1:8 2:5:21 2:5:7 2:5:2 2:5:14 3:5:3 "
    "3:5:11 3:3:10 3:5:14 3:5:3 3:3:13 3:5:21 3:5:7 3:5:3 3:3:7 3:5:3 3:5:14 3:5:3 3:3:7 3:5:3 3:5:7 "
    "4:3:21 4:1:11 4:3:21 4:3:10 4:3:7 4:3:7 4:3:7 4:5:21 4:3:16 4:5:11 4:5:2 4:5:7 4:5:2 4:5:11 4:5:21 "
    "4:3:7 4:3:21 4:3:7 4:3:21 4:5:7 4:3:7 4:3:7 4:3:5 4:5:21 4:5:2 4:5:11 4:5:2 4:5:7 4:5:2 4:5:21 4:3:8 "
    "4:3:7"
)
#: Sum of the finite lower bounds of those domains.
EXPECTED_SUM = -19.728592520006462


class _Enough(Exception):
    pass


def _trace() -> list[tuple[int, float, int, int]]:
    """(depth, lower bound, split layer, split neuron) per domain, from a search with one thread and no MILP."""
    rng = np.random.default_rng(2)
    net = random_net(rng, [8, 24, 24, 24, 3])
    centre = rng.uniform(-1, 1, 8)
    lb, ub = centre - 0.2, centre + 0.2
    top = int(np.argmax(net.eval(centre[None])[0]))
    disjuncts = []
    for other in (o for o in range(3) if o != top):
        a_y = np.zeros((1, 3))
        a_y[0, top], a_y[0, other] = -1.0, 1.0
        disjuncts.append(Disjunct(lb, ub, np.zeros((1, 8)), a_y, np.zeros(1)))
    steps: list[tuple[int, float, int, int]] = []
    evaluate = relu_search.ReluSearch.evaluate

    def traced(self, dom, iterations):  # type: ignore[no-untyped-def]
        if len(steps) >= DOMAINS:
            raise _Enough
        best, duals, choice, x = evaluate(self, dom, iterations)
        steps.extend((int(d), float(b), int(c[0]), int(c[1])) for d, b, c in zip(dom.depth, best, choice, strict=True))
        return best, duals, choice, x

    options = Options()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(relu_search.ReluSearch, "evaluate", traced)
        with contextlib.suppress(_Enough):
            relu_split_search(
                net, disjuncts, lb, ub, get_backend("highs", options), Budget.starting_now(600), options,
                lambda x: False, race_milp=False, search_threads=1,
            )  # fmt: skip
    return steps


def test_the_search_makes_the_recorded_choices() -> None:
    steps = _trace()
    assert " ".join(f"{d}:{s}:{j}" for d, _, s, j in steps) == EXPECTED
    assert sum(b for _, b, _, _ in steps if np.isfinite(b)) == pytest.approx(EXPECTED_SUM, rel=1e-9, abs=1e-9)
