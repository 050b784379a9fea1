"""Exact elimination of defined variables: affine chains composed in rational arithmetic before clpq sees them.

A variable is *defined* by an equality row ``v = sum a_u u + c`` whose other variables all come earlier
(affine neurons), or by a stable activation (``y = x``, ``y = 0``, ``y = ±1``). Constraints that mention a
defined variable are rewritten, exactly (``fractions.Fraction`` of every float64, no rounding), in terms of
the variables that remain: the free ones (the network input), the inputs and outputs of unstable
activations, and integer variables.

Why: clpq keeps every variable of an equality as a dependent variable and updates all of them when a later
equality is posted, which costs a matrix-matrix product per layer in Prolog rational arithmetic (the seed-004
model with H = 512 took longer than 280 s just to post its layers). Expanding only the constraints that are
actually used, from the constraint back towards the input, costs vector-matrix products instead.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from nnverify.encode.problem import Problem

Form = tuple[dict[int, Fraction], Fraction]


@dataclass(frozen=True, slots=True)
class _Definition:
    idx: tuple[int, ...]
    coef: tuple[Fraction, ...]
    const: Fraction


def _fraction(value: float) -> Fraction:
    return Fraction(*float(value).as_integer_ratio())


class Eliminator:
    """Finds a problem's definitions and rewrites linear expressions exactly over the kept variables."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.defs: dict[int, _Definition] = {}
        self.defining_row: dict[int, int] = {}
        outputs = {r.y for r in problem.relus} | {s.y for s in problem.signs}
        for k, row in enumerate(problem.rows):
            if row.lo != row.hi or not len(row.idx) or row.coef[0] != 1.0:
                continue
            v = int(row.idx[0])
            rest = row.idx[1:]
            if v in self.defs or v in outputs or problem.integer[v] or np.any(rest >= v):
                continue
            self.defs[v] = _Definition(
                tuple(int(u) for u in rest), tuple(_fraction(-a) for a in row.coef[1:]), _fraction(row.lo)
            )
            self.defining_row[k] = v
        self._stable_activations()
        # Kept although defined: the inputs of unstable activations (the search branches on them).
        self.kept_defined = {
            r.x for r in problem.relus if problem.lb[r.x] < 0.0 < problem.ub[r.x] and r.x in self.defs
        } | {s.x for s in problem.signs if problem.lb[s.x] <= 0.0 <= problem.ub[s.x] and s.x in self.defs}

    def _stable_activations(self) -> None:
        p = self.problem
        for relu in p.relus:
            if relu.y in self.defs or relu.x >= relu.y:
                continue
            if p.lb[relu.x] >= 0.0:
                self.defs[relu.y] = _Definition((relu.x,), (Fraction(1),), Fraction(0))
            elif p.ub[relu.x] <= 0.0:
                self.defs[relu.y] = _Definition((), (), Fraction(0))
        for sign in p.signs:
            if sign.y in self.defs:
                continue
            if p.lb[sign.x] > 0.0:
                self.defs[sign.y] = _Definition((), (), Fraction(1))
            elif p.ub[sign.x] < 0.0:
                self.defs[sign.y] = _Definition((), (), Fraction(-1))

    def eliminated(self, v: int) -> bool:
        """True if ``v`` does not appear in the written program."""
        return v in self.defs and v not in self.kept_defined

    def kept(self) -> list[int]:
        """The variables of the written program, in index order."""
        return [v for v in range(self.problem.n_vars) if not self.eliminated(v)]

    def form(
        self, idx: np.ndarray | tuple[int, ...], coef: np.ndarray | tuple[Fraction, ...], const: float = 0.0
    ) -> Form:
        """``sum coef * x[idx] + const`` over the kept variables, exactly.

        Eliminated variables are expanded highest index first: a definition only refers to earlier variables,
        so each is expanded once, after every variable that refers to it.
        """
        terms: dict[int, Fraction] = {}
        total = _fraction(const)
        pending: list[int] = []
        for u, a in zip(idx, coef, strict=True):
            u = int(u)
            a = a if isinstance(a, Fraction) else _fraction(a)
            if u not in terms and self.eliminated(u):
                heapq.heappush(pending, -u)
            terms[u] = terms.get(u, Fraction(0)) + a
        while pending:
            v = -heapq.heappop(pending)
            c = terms.pop(v)
            if not c:
                continue
            d = self.defs[v]
            total += c * d.const
            for u, a in zip(d.idx, d.coef, strict=True):
                if u not in terms and self.eliminated(u):
                    heapq.heappush(pending, -u)
                terms[u] = terms.get(u, Fraction(0)) + c * a
        return {u: a for u, a in terms.items() if a}, total

    def definition_form(self, v: int) -> Form:
        """The definition of ``v`` rewritten over the kept variables (for kept defined variables)."""
        d = self.defs[v]
        terms, const = self.form(d.idx, d.coef, 0.0)
        return terms, const + d.const

    def fill(self, kept_values: dict[int, float]) -> np.ndarray:
        """Values of all variables (float64) from those of the kept ones, evaluating definitions in order."""
        values = np.zeros(self.problem.n_vars)
        for v in range(self.problem.n_vars):
            if not self.eliminated(v):
                values[v] = kept_values[v]
                continue
            d = self.defs[v]
            values[v] = float(d.const) + sum(float(a) * values[u] for u, a in zip(d.idx, d.coef, strict=True))
        return values
