"""Norm constraints of the query language: ``linf``, ``l1`` and ``l2`` of a difference against a bound.

``linf`` is exact (one row per element and side). ``l1`` is exact up to 8 elements (one row per sign vector);
beyond, ``l1 < eps`` is lifted (``l1_lifted_rows``: auxiliary ``t >= |d|``, ``sum(t) <= eps``), exact but for the
strictness, which the replay check decides. ``l1 > eps`` beyond 8 elements and ``l2`` always are a necessary
condition (the L∞ box of the ball for ``<``; some element above ``eps/n``, resp. ``eps/√n``, for ``>``): an
``unsat`` stands, and a ``sat`` candidate must pass the norm itself, computed in float64 from the replayed
values (``NormCheck``), or the answer is ``unknown``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from nnverify.multi.qlang_lex import Dnf, Lin, constraint, neg
from nnverify.spec.vnnlib2_types import Rel

#: Largest difference whose L1 ball is written exactly (2^n rows).
L1_EXACT_MAX = 8

#: A norm operand: a find variable's name (whole) or name and flat indices (a slice), or constant values (flat).
Operand = str | tuple[str, tuple[int, ...]] | np.ndarray


@dataclass(frozen=True, slots=True)
class NormCheck:
    """``norm(a - b) OP eps`` evaluated on a replayed assignment (float64)."""

    kind: str
    a: Operand
    b: Operand
    op: str
    eps: float
    text: str

    def holds(self, values: dict[str, np.ndarray]) -> bool:
        def value(x: Operand) -> np.ndarray:
            if isinstance(x, tuple):
                return np.asarray(values[x[0]], dtype=np.float64).ravel()[list(x[1])]
            return np.asarray(values[x] if isinstance(x, str) else x, dtype=np.float64).ravel()

        d = value(self.a) - value(self.b)
        norm = float({"linf": np.max(np.abs(d)), "l1": np.sum(np.abs(d)), "l2": np.sqrt(np.sum(d * d))}[self.kind])
        return {"<": norm < self.eps, "<=": norm <= self.eps, ">": norm > self.eps, ">=": norm >= self.eps}[self.op]


def _below(c: float) -> Fraction:
    """An exact value at most ``c`` after the rounding of ``sqrt`` or a division (two ulps down)."""
    return Fraction(math.nextafter(math.nextafter(c, -math.inf), -math.inf))


def l1_lifted_rows(diffs: list[Lin], op: str, eps: Fraction, aux: str, offset: int) -> Dnf:
    """``l1(diffs) <= eps`` over auxiliary scalars ``(aux, j)``: ``|d_j| <= t_j <= eps`` and ``sum(t) <= eps``
    (with the L∞ box ``|d_j| <= eps`` it implies, for the input box). A strict ``<`` is read as ``<=`` here:
    a superset, so ``unsat`` stands; a ``sat`` candidate is checked strictly by the ``NormCheck``."""
    rows = []
    for j, d in enumerate(diffs):
        t = ({(aux, j): Fraction(1)}, Fraction(0))
        rows += [constraint(d, t, Rel.LE, offset), constraint(neg(d), t, Rel.LE, offset)]
        rows += [constraint(d, ({}, eps), Rel.LE, offset), constraint(neg(d), ({}, eps), Rel.LE, offset)]
        rows += [constraint(({}, Fraction(0)), t, Rel.LE, offset), constraint(t, ({}, eps), Rel.LE, offset)]
    total = ({(aux, j): Fraction(1) for j in range(len(diffs))}, Fraction(0))
    rows.append(constraint(total, ({}, eps), Rel.LE, offset))
    return [tuple(rows)]


def norm_rows(kind: str, diffs: list[Lin], op: str, eps: Fraction, offset: int) -> tuple[Dnf, bool]:
    """The rows of ``norm(diffs) OP eps`` and whether they are exact (else a ``NormCheck`` must confirm)."""
    rel = Rel.LT if op in ("<", ">") else Rel.LE
    n = len(diffs)
    inside = op in ("<", "<=")
    sides = [side for d in diffs for side in (d, neg(d))]
    if kind == "l1" and n <= L1_EXACT_MAX:
        sums = []
        for signs in itertools.product((1, -1), repeat=n):
            coefs: dict = {}
            const = Fraction(0)
            for s, (d_coefs, d_const) in zip(signs, diffs, strict=True):
                for v, c in d_coefs.items():
                    coefs[v] = coefs.get(v, Fraction(0)) + s * c
                const += s * d_const
            sums.append((coefs, const))
        if inside:  # the element bounds are implied by the ball; they give the search its input box
            box = [constraint(side, ({}, eps), rel, offset) for side in sides]
            return [tuple(box + [constraint(s, ({}, eps), rel, offset) for s in sums])], True
        return [(constraint(({}, eps), s, rel, offset),) for s in sums], True
    if inside or kind == "linf":
        bound = eps
    else:  # some element above eps/n (l1) or eps/sqrt(n) (l2): necessary for the norm to exceed eps
        bound = _below(float(eps) / (n if kind == "l1" else math.sqrt(n))) if n > 1 else eps
    exact = kind == "linf" or n == 1
    if inside:
        return [tuple(constraint(side, ({}, bound), rel, offset) for side in sides)], exact
    return [(constraint(({}, bound), side, rel, offset),) for side in sides], exact
