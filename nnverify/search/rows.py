"""The rows of a property's disjuncts stacked into one batch, as the searches bound them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.spec.property import Disjunct


@dataclass(frozen=True, slots=True)
class StackedRows:
    """All rows of all disjuncts stacked (``a_x x + a_y y - b``), with the disjunct each row belongs to."""

    a_x: np.ndarray
    a_y: np.ndarray
    b: np.ndarray
    owner: np.ndarray
    n_disjuncts: int

    @classmethod
    def of(cls, disjuncts: list[Disjunct]) -> StackedRows:
        owner = np.concatenate([np.full(d.n_rows, i) for i, d in enumerate(disjuncts)]).astype(np.int64)
        a_x, a_y = np.vstack([d.a_x for d in disjuncts]), np.vstack([d.a_y for d in disjuncts])
        return cls(a_x, a_y, np.concatenate([d.b for d in disjuncts]), owner, len(disjuncts))

    def dead(self, lower: np.ndarray) -> np.ndarray:
        """``(B, D)``: disjunct ruled out in the box or domain (some row's lower bound ``(B, K)`` > 0)."""
        dead = np.zeros((lower.shape[0], self.n_disjuncts), dtype=bool)
        np.logical_or.at(dead.T, self.owner, (lower > 0.0).T)
        return dead

    def binding(self, lower: np.ndarray, live: np.ndarray) -> np.ndarray:
        """``(B, K)``: per domain and live disjunct, its row with the largest lower bound (the one to lift)."""
        pick = np.zeros(lower.shape, dtype=bool)
        for d in range(self.n_disjuncts):
            idx = np.nonzero(self.owner == d)[0]
            if idx.size == 0:
                continue
            top = idx[np.argmax(lower[:, idx], axis=1)]
            pick[np.arange(lower.shape[0]), top] = live[:, d]
        return pick
