"""Softmax thresholds ``N(x).p[k] > t`` of the query language: logit-margin rows and the replay check.

``p_k > t`` implies ``z_k - z_j > log(t / (1 - t))`` for every other class ``j`` (each ``exp(z_j - z_k)`` is below
``(1 - t) / t``); ``p_k < t`` implies ``z_j - z_k > log((1 - t) / (t (m - 1)))`` for some ``j``. With two classes
both are equivalences; with more they are necessary conditions: an ``unsat`` stands, and a candidate is kept only
if the softmax itself (float64, from the replayed logits) passes the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from nnverify.multi.qlang_lex import Dnf, constraint, lin
from nnverify.spec.vnnlib2_types import Rel, TensorVar


@dataclass(frozen=True, slots=True)
class SoftmaxCheck:
    """``softmax(values[var])[k] OP t`` with ``op`` one of ``< <= > >=``; ``text`` is the source (for notes)."""

    var: str
    k: int
    op: str
    t: float
    text: str

    def holds(self, values: dict[str, np.ndarray]) -> bool:
        z = np.asarray(values[self.var], dtype=np.float64)
        e = np.exp(z - z.max())
        p = float(e[self.k] / e.sum())
        return {"<": p < self.t, "<=": p <= self.t, ">": p > self.t, ">=": p >= self.t}[self.op]


def _below(c: float) -> Fraction:
    """An exact value at most ``c`` even after ``math.log``'s rounding (two ulps down)."""
    return Fraction(math.nextafter(math.nextafter(c, -math.inf), -math.inf))


def softmax_rows(out: TensorVar, k: int, op: str, t: Fraction, offset: int) -> Dnf:
    """The logit-margin rows implied by ``softmax(out)[k] OP t`` (exact for two classes; see the docstring)."""
    m = out.size
    rel = Rel.LT if op in ("<", ">") else Rel.LE
    others = [j for j in range(m) if j != k]
    if op in (">", ">="):
        margin = _below(math.log(t / (1 - t)))
        # z_j - z_k REL -margin for every j
        return [tuple(constraint(_diff(out, j, k), ({}, -margin), rel, offset) for j in others)]
    margin = _below(math.log((1 - t) / (t * (m - 1))))
    # some j: z_k - z_j REL -margin
    return [(constraint(_diff(out, k, j), ({}, -margin), rel, offset),) for j in others]


def _diff(out: TensorVar, a: int, b: int) -> tuple[dict[tuple[str, int], Fraction], Fraction]:
    coefs = dict(lin((out.name, a))[0])
    coefs[(out.name, b)] = Fraction(-1)
    return coefs, Fraction(0)
