"""Proposals for generation queries: random grains grown from the query's seeds, filtered by the network.

Generation (``generate.py``) is an existential query, so a good guess settles it as well as a search does, the
way an attack settles a falsifiable robustness property. ``propose`` grows batches of random unit cells that obey
the shape rules of ``shapes.py`` by construction (same seeds, rings, separation, void border) and keeps those
that also pass the rules checked afterwards (connected void, compactness ``s``, solid fraction) and whose
network output, computed in float64 by ``LayerGraph.eval``, lies in the asked interval. Nothing here is trusted:
``solve_query`` hands each proposal to the exact backend with the pixels fixed, so a proposal becomes an answer
only when the exact encoding (network and every row of the query) accepts it, and the independent checks
(``check_image``) run on it as on any other answer.

Growth, in numpy over a batch of cells at once: every grain starts at its seed and has a drawn target area; at
each step every grain below its target takes one free interior cell that (a) has a 4-neighbour in the grain one
ring closer to the seed (the parent rule of ``shapes._grain_rings``) and (b) touches no other grain. Among those
cells the choice is a Gumbel-max draw with log-weight ``bias * (grain neighbours)``, ``bias`` drawn per cell
image: large biases fill concavities first and give blob-like grains like the training data's (``cells.py``),
small ones give branched grains. Target areas are drawn per image between one pixel and a drawn maximum, so
the batch spans small and large solid fractions, and hence the network's output range; with a solid-fraction
bound the total is drawn inside it and split at random between the grains (a grain that runs out of room
leaves the total short, and ``admissible`` drops the cell).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from nnverify.bnn.shapes import ShapeParams
from nnverify.budget import Budget
from nnverify.graph.layers import LayerGraph

#: Cells grown per batch.
BATCH = 256
#: Largest grain-neighbour bias (log-weight per grain neighbour) of the growth draw.
MAX_BIAS = 3.0


@dataclass(frozen=True, slots=True)
class Proposal:
    """A label image (``int8``, 0 void, ``1 ..`` grains), its pixels (row-major, 1 = solid) and the network's output."""

    labels: np.ndarray
    pixels: np.ndarray
    output: float


def _shift(a: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """``out[..., r, c] = a[..., r - dr, c - dc]`` (periodic; the void border makes the wrap harmless)."""
    return np.roll(a, (dr, dc), axis=(-2, -1))


def _neighbours(a: np.ndarray) -> np.ndarray:
    """How many 4-neighbours of each cell are set."""
    b = a.astype(np.int8)
    return _shift(b, 1, 0) + _shift(b, -1, 0) + _shift(b, 0, 1) + _shift(b, 0, -1)


def grow(
    params: ShapeParams,
    seeds: tuple[tuple[int, int], ...],
    rng: np.random.Generator,
    batch: int,
    budget: Budget | None = None,
) -> np.ndarray:
    """A batch ``(batch, size, size)`` of label images grown from ``seeds`` (module docstring).

    Every image satisfies one label per cell, the void border, the seeds, separation and the ring (parent) rule;
    the void's connectivity, compactness and the solid fraction are not guaranteed (see ``admissible``).
    Raises ``BudgetExpired`` once ``budget`` runs out (checked every growth step).
    """
    size, w = params.size, params.grains
    rows, cols = np.indices((size, size))
    interior = (rows > 0) & (rows < size - 1) & (cols > 0) & (cols < size - 1)
    labels = np.zeros((batch, size, size), dtype=np.int8)
    for k, (r, c) in enumerate(seeds, start=1):
        labels[:, r, c] = k
    cap = int(interior.sum())
    if params.solid_fraction is None:
        biggest = rng.integers(1, max(2, cap // w), size=(batch, 1), endpoint=True)
        target = np.ceil(rng.random((batch, w)) * biggest).astype(np.int64)
    else:  # a total inside the asked bounds, split at random between the grains
        total = rng.integers(
            max(w, params.solid_fraction[0]), max(w, params.solid_fraction[1]), size=(batch, 1), endpoint=True
        )
        share = rng.dirichlet(np.ones(w), size=batch)
        target = np.maximum(1, np.floor(share * (total - w)).astype(np.int64) + 1)
        target[:, 0] += (total[:, 0] - target.sum(axis=1)).clip(min=0)
    bias = rng.random((batch, 1, 1)) * MAX_BIAS
    area = np.ones((batch, w), dtype=np.int64)
    flat = labels.reshape(batch, -1)
    for _ in range(cap):
        if budget is not None:
            budget.check("growing proposal cells")
        grew = False
        for k, (sr, sc) in enumerate(seeds, start=1):
            active = area[:, k - 1] < target[:, k - 1]
            if not active.any():
                continue
            grain = labels == k
            other = (labels > 0) & ~grain
            parent = (
                (_shift(grain, 1, 0) & (rows > sr))
                | (_shift(grain, -1, 0) & (rows < sr))
                | (_shift(grain, 0, 1) & (cols > sc))
                | (_shift(grain, 0, -1) & (cols < sc))
            )
            free = interior & (labels == 0) & parent & (_neighbours(other) == 0)
            score = bias * _neighbours(grain) - np.log(-np.log(rng.random(labels.shape)))
            score = np.where(free, score, -np.inf).reshape(batch, -1)
            best = score.argmax(axis=1)
            take = active & np.isfinite(score[np.arange(batch), best])
            flat[np.nonzero(take)[0], best[take]] = k
            area[take, k - 1] += 1
            grew = grew or bool(take.any())
        if not grew:
            break
    return labels


def admissible(labels: np.ndarray, params: ShapeParams) -> np.ndarray:
    """Which grown images also have a connected void, at most ``s`` runs per grain line, and the solid fraction."""
    size = params.size
    void = labels == 0
    rows, cols = np.indices((size, size))
    reach = void & ((rows == 0) | (rows == size - 1) | (cols == 0) | (cols == size - 1))
    while True:
        more = void & (reach | (_neighbours(reach) > 0))
        if np.array_equal(more, reach):
            break
        reach = more
    ok = ~(void & ~reach).any(axis=(1, 2))
    if params.compactness is not None:
        for k in range(1, params.grains + 1):
            grain = labels == k
            row_runs = (grain & ~_shift(grain, 0, 1)).sum(axis=2)  # a run starts where the left cell is not k
            col_runs = (grain & ~_shift(grain, 1, 0)).sum(axis=1)
            ok &= (row_runs.max(axis=1) <= params.compactness) & (col_runs.max(axis=1) <= params.compactness)
    if params.solid_fraction is not None:
        solid = (~void).sum(axis=(1, 2))
        ok &= (solid >= params.solid_fraction[0]) & (solid <= params.solid_fraction[1])
    return ok


def propose(
    graph: LayerGraph,
    params: ShapeParams,
    seeds: tuple[tuple[int, int], ...],
    low: float,
    high: float,
    *,
    rng: np.random.Generator,
    batches: int = 8,
    budget: Budget | None = None,
) -> Iterator[Proposal]:
    """Distinct admissible cells whose network output lies in ``[low, high]``, nearest the middle first per batch.

    Yields at most what ``batches`` batches of ``BATCH`` grown cells contain; the caller stops early as it likes.
    Raises ``BudgetExpired`` once ``budget`` runs out.
    """
    seen: set[bytes] = set()
    middle = (low + high) / 2
    for _ in range(batches):
        labels = grow(params, seeds, rng, BATCH, budget)
        labels = labels[admissible(labels, params)]
        if not len(labels):
            continue
        pixels = (labels > 0).reshape(len(labels), -1).astype(np.float64)
        out = graph.eval(pixels).reshape(len(labels), -1)[:, 0]
        inside = np.nonzero((out >= low) & (out <= high))[0]
        for i in inside[np.argsort(np.abs(out[inside] - middle))]:
            key = pixels[i].astype(np.int8).tobytes()
            if key not in seen:
                seen.add(key)
                yield Proposal(labels[i], pixels[i].astype(np.int64), float(out[i]))
