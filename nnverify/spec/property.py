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

    def to_vnnlib(self) -> str:
        """The property as VNN-LIB text: declarations, then one ``(assert (or (and …) …))``.

        Numbers are written with ``repr(float)``, so ``parse_vnnlib(p.to_vnnlib())`` gives back the same
        arrays for any property the parser produced. (A hand-built row over a single input comes back as a
        box bound, and an all-zero row as nothing or an empty disjunct: the same set, other arrays.)
        """
        lines = [f"(declare-const X_{i} Real)" for i in range(self.n_inputs)]
        lines += [f"(declare-const Y_{j} Real)" for j in range(self.n_outputs)]
        lines.append("(assert (or")
        lines += [f"    (and {' '.join(_disjunct_atoms(d))})" for d in self.disjuncts]
        lines.append("))")
        return "\n".join(lines) + "\n"


def _disjunct_atoms(d: Disjunct) -> list[str]:
    """The comparisons of one disjunct: box bounds first, then ``(<= (+ (* c X_i) …) b)`` per row."""
    atoms = []
    for i, (lo, hi) in enumerate(zip(d.lb.tolist(), d.ub.tolist(), strict=True)):
        atoms.append(f"(>= X_{i} {lo!r}) (<= X_{i} {hi!r})")
    for r in range(d.n_rows):
        terms = [f"(* {c!r} X_{i})" for i, c in enumerate(d.a_x[r].tolist()) if c != 0.0]
        terms += [f"(* {c!r} Y_{j})" for j, c in enumerate(d.a_y[r].tolist()) if c != 0.0]
        lhs = f"(+ {' '.join(terms)})" if terms else "0.0"
        atoms.append(f"(<= {lhs} {float(d.b[r])!r})")
    return atoms
