"""Cheap counterexample search by random sampling inside each disjunct's input box.

It only proposes candidates (ordered by how deeply they violate the property on our own float64
evaluator); ``witness.py`` decides. Random sampling first, then projected gradient descent on the network's own
gradients.
"""

from __future__ import annotations

import numpy as np

from nnverify.budget import Budget
from nnverify.graph.layers import LayerGraph, backpropagate, point_slopes
from nnverify.spec.property import Disjunct

#: Bytes of layer values one evaluation batch may hold; bigger batches of samples are evaluated in chunks.
CHUNK_BYTES = 64 * 2**20
_PHASE = "searching for a counterexample by sampling"


def sample_box(rng: np.random.Generator, lb: np.ndarray, ub: np.ndarray, count: int) -> np.ndarray:
    """``count`` points: the centre, the corners' extremes along each axis pair, and uniform samples."""
    uniform = rng.uniform(size=(count, lb.shape[0])) * (ub - lb) + lb
    vertices = np.where(rng.integers(0, 2, size=(count // 4, lb.shape[0])).astype(bool), ub, lb)
    return np.vstack([(lb + ub) / 2.0, vertices, uniform])


def candidates(
    graph: LayerGraph,
    disjuncts: list[Disjunct],
    *,
    samples: int,
    seed: int,
    keep: int = 5,
    budget: Budget | None = None,
) -> list[np.ndarray]:
    """Up to ``keep`` inputs per disjunct whose float64 output satisfies the disjunct's rows, best first.

    Samples are evaluated in chunks of at most ``CHUNK_BYTES`` of layer values; ``budget`` is looked at before
    each chunk (``BudgetExpired``) and the samples of a disjunct must fit its memory cap (``ResourceLimitError``).
    """
    budget = budget or Budget.unlimited()
    rng = np.random.default_rng(seed)
    found: list[tuple[float, np.ndarray]] = []
    per = max(1, samples // max(1, len(disjuncts)))
    width = sum(layer.size for layer in graph.layers)
    chunk = max(1, CHUNK_BYTES // (8 * width))
    for d in disjuncts:
        budget.check(_PHASE)
        rows = per + per // 4 + 1  # sample_box's points; their layer values are held a chunk at a time
        budget.check_alloc(8.0 * (3 * rows * d.lb.shape[0] + min(rows, chunk) * width), _PHASE)
        x = sample_box(rng, d.lb, d.ub, per)
        slack = np.concatenate([_slack(graph, d, x[k : k + chunk], budget) for k in range(0, x.shape[0], chunk)])
        order = np.argsort(slack)[:keep]
        found.extend((float(slack[i]), x[i]) for i in order if slack[i] <= 0.0)
    found.sort(key=lambda item: item[0])
    return [x for _, x in found]


def _slack(graph: LayerGraph, d: Disjunct, x: np.ndarray, budget: Budget) -> np.ndarray:
    budget.check(_PHASE)
    return d.slack(x, graph.eval(x))


def pgd_candidates(
    graph: LayerGraph,
    disjuncts: list[Disjunct],
    *,
    restarts: int = 8,
    steps: int = 40,
    seed: int = 0,
    budget: Budget | None = None,
) -> list[np.ndarray]:
    """Projected sign-gradient descent on the most violated row of each disjunct (Madry et al., ICLR 2018).

    Starts from random points of the box; returns the points whose own-evaluator output satisfies the disjunct.
    ``budget`` is looked at before every step (``BudgetExpired``).
    """
    budget = budget or Budget.unlimited()
    rng = np.random.default_rng(seed)
    found: list[tuple[float, np.ndarray]] = []
    for d in disjuncts:
        if d.n_rows == 0:
            continue
        # not rng.uniform(lb, ub): it raises OverflowError when ub - lb exceeds the float range (a 1e308 box)
        half, mid = 0.5 * d.ub - 0.5 * d.lb, 0.5 * d.lb + 0.5 * d.ub
        x = np.clip(mid + (2.0 * rng.uniform(size=(restarts, d.lb.shape[0])) - 1.0) * half, d.lb, d.ub)
        width = d.ub - d.lb
        for step in range(steps):
            budget.check("searching for a counterexample by gradient descent")
            y = graph.eval(x)
            rows = x @ d.a_x.T + y @ d.a_y.T - d.b
            if np.any(np.max(rows, axis=1) <= 0.0):
                break
            worst = np.argmax(rows, axis=1)
            grad = backpropagate(graph, d.a_y[worst], point_slopes(graph, graph.eval_all(x))) + d.a_x[worst]
            x = np.clip(x - (0.25 * (1.0 - step / steps) + 0.01) * width * np.sign(grad), d.lb, d.ub)
        slack = d.slack(x, graph.eval(x))
        found.extend((float(slack[i]), x[i]) for i in np.nonzero(slack <= 0.0)[0])
        if found:
            break
    found.sort(key=lambda item: item[0])
    return [x for _, x in found[:5]]
