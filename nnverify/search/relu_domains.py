"""The domains of the ReLU branch and bound: the disjuncts' rows padded to one width (``Rows``), a batch of
domains with their splits, own bounds and duals (``Domains``), and both children of each on a chosen neuron."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.bounds.relu_pass import Duals
from nnverify.spec.property import Disjunct

#: Right-hand side of the padding rows of disjuncts with fewer rows than the widest (never provable).
PAD_B = 1e30


@dataclass(frozen=True, slots=True)
class Rows:
    """Every live disjunct's rows padded to ``K``: ``a_y (D, K, m)``, ``a_x (D, K, n)``, ``b (D, K)``."""

    a_y: np.ndarray
    a_x: np.ndarray
    b: np.ndarray

    @classmethod
    def of(cls, disjuncts: list[Disjunct]) -> Rows:
        k = max(1, max(d.n_rows for d in disjuncts))
        m, n = disjuncts[0].a_y.shape[1], disjuncts[0].a_x.shape[1]
        a_y, a_x, b = (
            np.zeros((len(disjuncts), k, m)),
            np.zeros((len(disjuncts), k, n)),
            np.full((len(disjuncts), k), PAD_B),
        )
        for i, d in enumerate(disjuncts):
            a_y[i, : d.n_rows], a_x[i, : d.n_rows], b[i, : d.n_rows] = d.a_y, d.a_x, d.b
        if all(d.n_rows == 0 for d in disjuncts):
            b[:] = 0.0  # a disjunct without rows is the whole box: never provable, as it should be
        return cls(a_y, a_x, b)

    def take(self, disjunct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(a_y, a_x, b)`` of each domain's disjunct: ``(B, K, m)``, ``(B, K, n)``, ``(B, K)``."""
        return self.a_y[disjunct], self.a_x[disjunct], self.b[disjunct]


#: ``Domains.since`` of a domain whose bounds already account for all its splits.
CLEAN = np.iinfo(np.int64).max


@dataclass(slots=True)
class Domains:
    """A batch of domains: split signs per pre-activation layer ``(B, size)`` in {-1, 0, +1}, the domain's own
    bounds of every pre-activation layer ``lb``, ``ub`` ``(B, size)`` (split neurons clamped at 0), the
    earliest layer split since the bounds of the layers after it were last recomputed (``since``, ``CLEAN``
    when none), duals, the disjunct each belongs to, its depth, and the best lower bound known for it (its
    parent's: a child's region lies inside its parent's, so the parent's bound holds for the child too)."""

    splits: dict[int, np.ndarray]
    lb: dict[int, np.ndarray]
    ub: dict[int, np.ndarray]
    since: np.ndarray
    duals: Duals
    disjunct: np.ndarray
    depth: np.ndarray
    known: np.ndarray

    def __len__(self) -> int:
        return int(self.disjunct.shape[0])

    def take(self, sel: np.ndarray) -> Domains:
        """The selected domains (fancy indexing: every array is a copy)."""
        return Domains(
            {k: v[sel] for k, v in self.splits.items()},
            {k: v[sel] for k, v in self.lb.items()},
            {k: v[sel] for k, v in self.ub.items()},
            self.since[sel],
            self.duals.take(sel),
            self.disjunct[sel],
            self.depth[sel],
            self.known[sel],
        )


def children(dom: Domains, choice: np.ndarray, relu_of: dict[int, int]) -> Domains:
    """Both branches of every domain on its chosen neuron ``choice`` ``(B, 2)`` (layer, neuron); ``relu_of``:
    the ReLU layer after each pre-activation layer."""
    both = dom.take(np.concatenate([np.arange(len(dom)), np.arange(len(dom))]))
    half = len(dom)
    for i in range(2 * half):
        s, j = choice[i % half]
        split(both, i, int(s), int(j), i < half, relu_of[int(s)])
    both.depth = both.depth + 1
    return both


def split(dom: Domains, i: int, s: int, j: int, active: bool, r: int) -> None:
    """Split neuron ``j`` of layer ``s`` (ReLU ``r`` after it) in domain ``i`` (whose split arrays are its own copies).

    The new multiplier starts where the parent's line is kept: with ``c = max(lam, 0)`` (seeded in the β
    slot by ``evaluate``) and the parent's slope ``a``, the active child (``y = z``) gets ``β = c (1 - a)``
    and the inactive one (``y = 0``) ``β = c a``, so the child's coefficient on ``z`` is the parent's ``c a``:
    with β at 0 instead, the child's first bound is often below its parent's.
    """
    dom.splits[s][i, j] = 1 if active else -1
    if active:
        dom.lb[s][i, j] = max(dom.lb[s][i, j], 0.0)
    else:
        dom.ub[s][i, j] = min(dom.ub[s][i, j], 0.0)
    dom.since[i] = min(int(dom.since[i]), s)
    slot = dom.duals.beta[s][i, :, j]
    slope = dom.duals.alpha[r][i, :, j]
    dom.duals.beta[s][i, :, j] = slot * (1.0 - slope) if active else slot * slope
