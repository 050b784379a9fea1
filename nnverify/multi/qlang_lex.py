"""Tokens and exact linear terms of the ``find … where … return`` language (``multi/qlang.py``)."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import NamedTuple

from nnverify.spec.sexpr import Source
from nnverify.spec.vnnlib2_types import Constraint, Rel, Scalar

TOKEN_RE = re.compile(
    r"(?P<skip>\s+|#[^\n]*)|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|!=|==|[-+*()\[\],.:=<>])|(?P<bad>.)"
)
CMP = {"<": Rel.LT, "<=": Rel.LE, ">": Rel.LT, ">=": Rel.LE, "=": Rel.EQ, "==": Rel.EQ}
KEYWORDS = frozenset({"find", "where", "return", "in", "or", "class", "linf", "l1", "l2"})

Lin = tuple[dict[Scalar, Fraction], Fraction]
Dnf = list[tuple[Constraint, ...]]


class Tok(NamedTuple):
    kind: str
    text: str
    offset: int


def tokens(src: Source) -> list[Tok]:
    """The tokens of ``src`` (comments ``# …`` and whitespace dropped), ending with an ``end`` token."""
    out = []
    for m in TOKEN_RE.finditer(src.text):
        kind = m.lastgroup or "bad"
        if kind == "bad":
            raise src.error(f"unexpected character {m.group()!r}", m.start())
        if kind != "skip":
            out.append(Tok(kind, m.group(), m.start()))
    out.append(Tok("end", "end of file", len(src.text)))
    return out


def lin(s: Scalar) -> Lin:
    return {s: Fraction(1)}, Fraction(0)


def neg(a: Lin) -> Lin:
    return {v: -c for v, c in a[0].items()}, -a[1]


def add(a: Lin, b: Lin, sign: int = 1) -> Lin:
    coefs = dict(a[0])
    for v, c in b[0].items():
        coefs[v] = coefs.get(v, Fraction(0)) + sign * c
    return coefs, a[1] + sign * b[1]


def sub(a: Lin, b: Lin) -> Lin:
    return add(a, b, -1)


def constraint(left: Lin, right: Lin, rel: Rel, offset: int) -> Constraint:
    """``left REL right`` as ``a @ v REL b``."""
    diff = sub(left, right)
    items = tuple(sorted((v, c) for v, c in diff[0].items() if c != 0))
    return Constraint(items, rel, -diff[1], offset)
