"""Cheap counterexample search by random sampling inside each disjunct's input box.

It only proposes candidates (ordered by how deeply they violate the property on our own float64
evaluator); ``witness.py`` decides. Random sampling first, then descent with shrinking steps from the best
samples, then projected gradient descent from random points, on the network's own gradients.
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


def ranked_samples(
    graph: LayerGraph,
    disjuncts: list[Disjunct],
    *,
    samples: int,
    seed: int,
    keep: int = 5,
    budget: Budget | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per disjunct, its ``keep`` sampled points of smallest slack ``(keep, n)`` and their slacks, smallest first.

    Samples are evaluated in chunks of at most ``CHUNK_BYTES`` of layer values; ``budget`` is looked at before
    each chunk (``BudgetExpired``) and the samples of a disjunct must fit its memory cap (``ResourceLimitError``).
    """
    budget = budget or Budget.unlimited()
    rng = np.random.default_rng(seed)
    ranked: list[tuple[np.ndarray, np.ndarray]] = []
    per = max(1, samples // max(1, len(disjuncts)))
    width = sum(layer.size for layer in graph.layers)
    chunk = max(1, CHUNK_BYTES // (8 * width))
    for d in disjuncts:
        budget.check(_PHASE)
        rows = per + per // 4 + 1  # sample_box's points; their layer values are held a chunk at a time
        budget.check_alloc(8.0 * (3 * rows * d.lb.shape[0] + min(rows, chunk) * width), _PHASE)
        x = sample_box(rng, d.lb, d.ub, per)
        slack = np.concatenate([_slack(graph, d, x[k : k + chunk], budget) for k in range(0, x.shape[0], chunk)])
        order = np.argsort(slack, kind="stable")[:keep]
        ranked.append((x[order], slack[order]))
    return ranked


def violating(ranked: list[tuple[np.ndarray, np.ndarray]], keep: int = 5) -> list[np.ndarray]:
    """The points among each disjunct's first ``keep`` ranked samples whose own-evaluator output satisfies the
    disjunct's rows (slack <= 0), best first."""
    found = [(float(s), x) for pts, slack in ranked for x, s in zip(pts[:keep], slack[:keep], strict=True) if s <= 0.0]
    found.sort(key=lambda item: item[0])
    return [x for _, x in found]


def candidates(
    graph: LayerGraph,
    disjuncts: list[Disjunct],
    *,
    samples: int,
    seed: int,
    keep: int = 5,
    budget: Budget | None = None,
) -> list[np.ndarray]:
    """Up to ``keep`` inputs per disjunct whose float64 output satisfies the disjunct's rows, best first
    (``ranked_samples``, then ``violating``)."""
    return violating(ranked_samples(graph, disjuncts, samples=samples, seed=seed, keep=keep, budget=budget), keep)


#: Sampled near misses per disjunct that ``refine_samples`` descends from, its steps, and how many disjuncts
#: (those with the closest misses) it tries.
REFINE_STARTS = 16
REFINE_STEPS = 40
REFINE_DISJUNCTS = 4
#: ``refine_samples``' sign-gradient step, as a share of the box's width: from the first to the last step it
#: shrinks geometrically (a counterexample of ACAS Xu prop 2 lies in a sliver 1e-6 of the box wide).
REFINE_FIRST_STEP = 0.02
REFINE_LAST_STEP = 1e-5


def refine_samples(
    graph: LayerGraph,
    disjuncts: list[Disjunct],
    ranked: list[tuple[np.ndarray, np.ndarray]],
    *,
    budget: Budget | None = None,
) -> list[np.ndarray]:
    """Sign-gradient descent on each disjunct's worst row from its best samples (``ranked_samples``), the step
    shrinking geometrically from ``REFINE_FIRST_STEP`` to ``REFINE_LAST_STEP`` of the box's width, on the
    ``REFINE_DISJUNCTS`` disjuncts with the closest misses; the points whose own-evaluator output satisfies the
    disjunct, best first. ``budget`` is looked at before every step.

    Sampling lands near a thin unsafe region that a global descent from random points walks away from."""
    budget = budget or Budget.unlimited()
    found: list[tuple[float, np.ndarray]] = []
    closest = sorted(range(len(disjuncts)), key=lambda k: ranked[k][1][0] if ranked[k][1].size else np.inf)
    for k in closest[:REFINE_DISJUNCTS]:
        d, x = disjuncts[k], ranked[k][0]
        if d.n_rows == 0 or x.shape[0] == 0:
            continue
        x = _descend(graph, d, x[:REFINE_STARTS].copy(), budget)
        slack = d.slack(x, graph.eval(x))
        found.extend((float(slack[i]), x[i]) for i in np.nonzero(slack <= 0.0)[0])
        if found:
            break
    found.sort(key=lambda item: item[0])
    return [x for _, x in found[:5]]


def _descend(graph: LayerGraph, d: Disjunct, x: np.ndarray, budget: Budget) -> np.ndarray:
    width = d.ub - d.lb
    ratio = REFINE_LAST_STEP / REFINE_FIRST_STEP
    for step in range(REFINE_STEPS):
        budget.check("searching for a counterexample by gradient descent")
        values = graph.eval_all(x)
        rows = x @ d.a_x.T + values[graph.output] @ d.a_y.T - d.b
        if np.any(np.max(rows, axis=1) <= 0.0):
            break
        worst = np.argmax(rows, axis=1)
        grad = backpropagate(graph, d.a_y[worst], point_slopes(graph, values)) + d.a_x[worst]
        x = np.clip(x - REFINE_FIRST_STEP * ratio ** (step / REFINE_STEPS) * width * np.sign(grad), d.lb, d.ub)
    return x


def _worst(graph: LayerGraph, d: Disjunct, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per point its largest row ``a_x x + a_y y - b``, that row's index and the network's values."""
    values = graph.eval_all(x)
    rows = x @ d.a_x.T + values[graph.output] @ d.a_y.T - d.b
    worst = np.argmax(rows, axis=1)
    return rows[np.arange(x.shape[0]), worst], worst, values


def descend_adaptive(graph: LayerGraph, d: Disjunct, x: np.ndarray, budget: Budget, steps: int) -> np.ndarray:
    """Sign-gradient descent on the largest row with a step per point: a step that lowers the point's largest
    row is taken and the step grows by half, else the step halves (from ``REFINE_FIRST_STEP`` of the box's
    width, never below ``REFINE_LAST_STEP / 10``); ``steps`` steps, ending at the first point inside."""
    width = d.ub - d.lb
    step = np.full((x.shape[0], 1), REFINE_FIRST_STEP)
    top, worst, values = _worst(graph, d, x)
    for _ in range(steps):
        budget.check("searching for a counterexample by gradient descent")
        if np.any(top <= 0.0):
            break
        grad = backpropagate(graph, d.a_y[worst], point_slopes(graph, values)) + d.a_x[worst]
        trial = np.clip(x - step * width * np.sign(grad), d.lb, d.ub)
        t_top, t_worst, t_values = _worst(graph, d, trial)
        take = t_top < top
        x = np.where(take[:, None], trial, x)
        top, worst = np.where(take, t_top, top), np.where(take, t_worst, worst)
        values = [
            np.where(take.reshape(-1, *([1] * (a.ndim - 1))), b, a) for a, b in zip(values, t_values, strict=True)
        ]
        step = np.clip(np.where(take[:, None], 1.5 * step, 0.5 * step), REFINE_LAST_STEP / 10.0, REFINE_FIRST_STEP)
    return x


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
