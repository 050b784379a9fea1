"""A property in normal form: the unsafe set as an OR of (input box, conjunction of linear constraints).

A VNN-LIB file describes the *unsafe* set: the property is violated (``sat``) iff some input ``x`` and its
output ``y = f(x)`` satisfy one disjunct. Strict inequalities are read as non-strict (over-approximating the
unsafe set, which keeps ``unsat`` sound; ``sat`` is always confirmed by replay).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Disjunct:
    """One disjunct of the unsafe set: ``lb <= x <= ub`` and ``a_x @ x + a_y @ y <= b`` (row-wise).

    Attributes:
        lb: Input lower bounds, shape ``(n,)``, finite.
        ub: Input upper bounds, shape ``(n,)``, finite, ``lb <= ub``.
        a_x: Input coefficients of the linear rows, shape ``(k, n)`` (mostly zero in VNN-COMP files).
        a_y: Output coefficients, shape ``(k, m)``.
        b: Right-hand sides, shape ``(k,)``.
    """

    lb: np.ndarray
    ub: np.ndarray
    a_x: np.ndarray
    a_y: np.ndarray
    b: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.b.shape[0])

    def slack(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per point, the largest row violation ``max_r (a_x x + a_y y - b)_r`` (<= 0 means all rows hold).

        ``x`` is ``(B, n)``, ``y`` is ``(B, m)``; returns ``(B,)``. A disjunct with no rows gives ``-inf``.
        """
        if self.n_rows == 0:
            return np.full(x.shape[0], -np.inf)
        lhs = x @ self.a_x.T + y @ self.a_y.T
        return np.max(lhs - self.b, axis=1)

    def contains_input(self, x: np.ndarray, atol: float = 0.0) -> np.ndarray:
        """Per point, whether ``x`` (``(B, n)``) lies in the input box (with absolute tolerance)."""
        return np.all((x >= self.lb - atol) & (x <= self.ub + atol), axis=1)


@dataclass(frozen=True, slots=True)
class Property:
    """The unsafe set ``OR_i disjuncts[i]`` over ``n_inputs`` X variables and ``n_outputs`` Y variables."""

    n_inputs: int
    n_outputs: int
    disjuncts: tuple[Disjunct, ...]
    path: str = ""

    def violated_by(self, x: np.ndarray, y: np.ndarray, atol: float = 0.0) -> np.ndarray:
        """Per point, whether ``(x, y)`` lies in the unsafe set: in some disjunct's box (tolerance ``atol``)
        with all its rows holding within ``atol``. Shapes ``(B, n)``, ``(B, m)``; returns ``(B,)`` bools."""
        hit = np.zeros(x.shape[0], dtype=bool)
        for d in self.disjuncts:
            hit |= d.contains_input(x, atol) & (d.slack(x, y) <= atol)
        return hit
