"""Cheap counterexample search by random sampling inside each disjunct's input box.

It only proposes candidates (ordered by how deeply they violate the property on our own float64
evaluator); ``witness.py`` decides. Gradient attacks (PGD) belong to the search issue.
"""

from __future__ import annotations

import numpy as np

from nnverify.graph.layers import LayerGraph
from nnverify.spec.property import Disjunct


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
) -> list[np.ndarray]:
    """Up to ``keep`` inputs per disjunct whose float64 output satisfies the disjunct's rows, best first."""
    rng = np.random.default_rng(seed)
    found: list[tuple[float, np.ndarray]] = []
    per = max(1, samples // max(1, len(disjuncts)))
    for d in disjuncts:
        x = sample_box(rng, d.lb, d.ub, per)
        slack = d.slack(x, graph.eval(x))
        order = np.argsort(slack)[:keep]
        found.extend((float(slack[i]), x[i]) for i in order if slack[i] <= 0.0)
    found.sort(key=lambda item: item[0])
    return [x for _, x in found]
