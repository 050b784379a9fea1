"""Discrete queries: a documented VNN-LIB 1.0 extension with Boolean and integer variables and clauses.

An existential query "find inputs (and auxiliary values) such that every assertion holds", as in VNN-LIB,
with three additions (``nnverify generate`` writes such files; ``parse_discrete`` reads them):

- ``(declare-const X_i Bool)`` restricts network input ``i`` to {0, 1}; ``(declare-const X_i Int)`` to the
  integers (bounded by assertions). Every input must be declared Bool or Int in a discrete query.
- ``(declare-const A_name Bool|Int)`` declares an auxiliary variable, not a network input (names: ``A_`` then
  letters, digits and ``_``). Int variables need finite bounds: ``(assert (>= A_n 0))``, ``(assert (<= A_n 9))``.
- ``(assert (or l1 l2 ...))`` where each literal is a Bool variable or ``(not v)``: a clause.

Everything else is VNN-LIB 1.0: ``(declare-const Y_j Real)`` for outputs, and assertions ``(<= e1 e2)``,
``(>= e1 e2)``, ``(= e1 e2)`` (``<`` and ``>`` read as non-strict) over linear expressions built from numbers,
variables, ``+``, ``-`` and ``*`` by a number. ``(and ...)`` inside ``assert`` is a conjunction. In a linear
expression a Bool variable is its value 0 or 1.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from nnverify.errors import PropertyError
from nnverify.spec.sexpr import Atom, Node, SList, Source, describe, parse_number, read_sexprs, read_text

COMPARISONS = {"<=": (None, 0), ">=": (0, None), "=": (0, 0), "<": (None, 0), ">": (0, None)}


@dataclass(frozen=True, slots=True)
class DiscreteVar:
    name: str
    kind: str  # "Bool", "Int" or "Real" (outputs)
    lb: float
    ub: float


@dataclass(frozen=True, slots=True)
class DiscreteRow:
    """``lo <= sum(coef * var) <= hi`` over named variables (``X_i``, ``A_*``, ``Y_j``)."""

    terms: tuple[tuple[str, float], ...]
    lo: float
    hi: float


@dataclass(frozen=True, slots=True)
class DiscreteQuery:
    """Inputs ``X_0..X_{n-1}``, auxiliaries, outputs ``Y_0..Y_{m-1}``, and the rows that must all hold."""

    n_inputs: int
    n_outputs: int
    variables: tuple[DiscreteVar, ...]
    rows: tuple[DiscreteRow, ...]
    path: str = ""

    def var(self, name: str) -> DiscreteVar:
        return next(v for v in self.variables if v.name == name)


# --- writing ------------------------------------------------------------------------------------------------


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def _expr(terms: Iterable[tuple[str, float]]) -> str:
    parts = [name if coef == 1 else f"(* {_num(coef)} {name})" for name, coef in terms]
    return parts[0] if len(parts) == 1 else "(+ " + " ".join(parts) + ")" if parts else "0"


def write_discrete(
    variables: Iterable[DiscreteVar],
    rows: Iterable[DiscreteRow],
    clauses: Iterable[tuple[tuple[tuple[str, bool], ...], str]],
    header: Iterable[str] = (),
) -> Iterator[str]:
    """The query's lines. ``clauses`` are ``(literals, comment)`` with literals ``(name, positive)``."""
    yield "; A discrete query (nnverify's VNN-LIB extension: Bool/Int variables, clauses): nnverify/spec/discrete.py\n"
    for line in header:
        yield f"; {line}\n"
    for v in variables:
        yield f"(declare-const {v.name} {v.kind})\n"
        if v.kind == "Int":
            yield f"(assert (>= {v.name} {_num(v.lb)}))\n(assert (<= {v.name} {_num(v.ub)}))\n"
    for row in rows:
        expr = _expr(row.terms)
        if row.lo == row.hi:
            yield f"(assert (= {expr} {_num(row.lo)}))\n"
            continue
        if math.isfinite(row.lo):
            yield f"(assert (>= {expr} {_num(row.lo)}))\n"
        if math.isfinite(row.hi):
            yield f"(assert (<= {expr} {_num(row.hi)}))\n"
    for literals, comment in clauses:
        lits = " ".join(name if positive else f"(not {name})" for name, positive in literals)
        yield f"(assert (or {lits}))" + (f" ; {comment}" if comment else "") + "\n"


# --- reading ------------------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, src: Source) -> None:
        self.src = src
        self.vars: dict[str, DiscreteVar] = {}
        self.rows: list[DiscreteRow] = []

    def read(self) -> DiscreteQuery:
        asserts: list[Node] = []
        for node in read_sexprs(self.src):
            if not isinstance(node, SList) or not node.items or not isinstance(node.items[0], Atom):
                raise self.src.error(f"expected (declare-const …) or (assert …), found {describe(node)}", node.offset)
            head = node.items[0].text
            if head == "declare-const":
                self._declare(node)
            elif head == "assert" and len(node.items) == 2:
                asserts.append(node.items[1])
            else:
                raise self.src.error(f"expected (declare-const …) or (assert …), found {describe(node)}", node.offset)
        for node in asserts:
            self._assert(node)
        return self._query()

    def _declare(self, node: SList) -> None:
        if len(node.items) != 3 or not all(isinstance(item, Atom) for item in node.items[1:]):
            raise self.src.error(f"expected (declare-const NAME Bool|Int|Real), found {describe(node)}", node.offset)
        name, kind = node.items[1], node.items[2]
        assert isinstance(name, Atom) and isinstance(kind, Atom)
        ok = (name.text[:2] in ("X_", "A_") and kind.text in ("Bool", "Int")) or (
            name.text[:2] == "Y_" and kind.text == "Real"
        )
        if not ok or not name.text[2:].replace("_", "").isalnum():
            raise self.src.error(
                f"expected X_i or A_name declared Bool or Int, or Y_j declared Real; found {name.text} {kind.text}",
                name.offset,
            )
        if name.text in self.vars:
            raise self.src.error(f"'{name.text}' is already declared", name.offset)
        lb, ub = (0.0, 1.0) if kind.text == "Bool" else (-math.inf, math.inf)
        self.vars[name.text] = DiscreteVar(name.text, kind.text, lb, ub)

    def _assert(self, node: Node) -> None:
        if isinstance(node, SList) and node.items and isinstance(node.items[0], Atom):
            head = node.items[0].text
            if head == "and":
                for part in node.items[1:]:
                    self._assert(part)
                return
            if head == "or":
                self.rows.append(self._clause(node))
                return
            if head in COMPARISONS and len(node.items) == 3:
                self._comparison(head, node)
                return
        raise self.src.error(f"expected a comparison, (and …) or a clause (or …), found {describe(node)}", node.offset)

    def _clause(self, node: SList) -> DiscreteRow:
        terms: dict[str, float] = {}
        negated = 0
        for lit in node.items[1:]:
            positive = isinstance(lit, Atom)
            if not positive:
                ok = isinstance(lit, SList) and len(lit.items) == 2 and isinstance(lit.items[0], Atom)
                if not ok or lit.items[0].text != "not" or not isinstance(lit.items[1], Atom):  # type: ignore[union-attr]
                    raise self.src.error(f"expected a literal v or (not v), found {describe(lit)}", lit.offset)
                lit = lit.items[1]  # type: ignore[union-attr]
            assert isinstance(lit, Atom)
            var = self._bool(lit)
            terms[var] = terms.get(var, 0.0) + (1.0 if positive else -1.0)
            negated += 0 if positive else 1
        # OR of literals: sum(positive) + sum(1 - negated) >= 1.
        return DiscreteRow(tuple(terms.items()), 1.0 - negated, math.inf)

    def _bool(self, atom: Atom) -> str:
        var = self.vars.get(atom.text)
        if var is None or var.kind != "Bool":
            raise self.src.error(f"expected a declared Bool variable in a clause, found '{atom.text}'", atom.offset)
        return atom.text

    def _comparison(self, op: str, node: SList) -> None:
        left, lc = self._linear(node.items[1])
        right, rc = self._linear(node.items[2])
        terms = dict(left)
        for name, coef in right.items():
            terms[name] = terms.get(name, 0.0) - coef
        rhs = rc - lc
        lo_side, hi_side = COMPARISONS[op]
        lo = rhs if lo_side is not None else -math.inf
        hi = rhs if hi_side is not None else math.inf
        terms = {k: v for k, v in terms.items() if v != 0.0}
        if len(terms) == 1 and next(iter(terms.values())) == 1.0:  # a bound on one variable
            name = next(iter(terms))
            var = self.vars[name]
            if var.kind == "Int":
                new_lb = max(var.lb, math.ceil(lo)) if math.isfinite(lo) else var.lb
                new_ub = min(var.ub, math.floor(hi)) if math.isfinite(hi) else var.ub
                self.vars[name] = DiscreteVar(name, "Int", new_lb, new_ub)
                return
        self.rows.append(DiscreteRow(tuple(terms.items()), lo, hi))

    def _linear(self, node: Node) -> tuple[dict[str, float], float]:
        if isinstance(node, Atom):
            value = parse_number(node.text)
            if value is not None:
                return {}, value
            if node.text not in self.vars:
                raise self.src.error(f"unknown variable '{node.text}' (declare it first)", node.offset)
            return {node.text: 1.0}, 0.0
        if not node.items or not isinstance(node.items[0], Atom):
            raise self.src.error(f"expected a linear expression, found {describe(node)}", node.offset)
        head, args = node.items[0].text, [self._linear(a) for a in node.items[1:]]
        if head in ("+", "-") and args:
            terms: dict[str, float] = {}
            const = 0.0
            for k, (t, c) in enumerate(args):
                sign = -1.0 if head == "-" and (k > 0 or len(args) == 1) else 1.0
                const += sign * c
                for name, coef in t.items():
                    terms[name] = terms.get(name, 0.0) + sign * coef
            return terms, const
        if head == "*" and len(args) == 2 and (not args[0][0] or not args[1][0]):
            (t1, c1), (t2, c2) = args
            factor, (terms, const) = (c1, (t2, c2)) if not t1 else (c2, (t1, c1))
            return {k: factor * v for k, v in terms.items()}, factor * const
        raise self.src.error(f"expected a linear expression (+, -, * by a number), found {describe(node)}", node.offset)

    def _query(self) -> DiscreteQuery:
        xs = sorted((v for v in self.vars.values() if v.name.startswith("X_")), key=lambda v: int(v.name[2:]))
        ys = sorted((v for v in self.vars.values() if v.name.startswith("Y_")), key=lambda v: int(v.name[2:]))
        if [v.name for v in xs] != [f"X_{i}" for i in range(len(xs))] or not xs:
            raise self.src.error("the inputs must be declared as X_0, X_1, … without gaps", 0)
        if [v.name for v in ys] != [f"Y_{i}" for i in range(len(ys))]:
            raise self.src.error("the outputs must be declared as Y_0, Y_1, … without gaps", 0)
        for v in self.vars.values():
            if v.kind == "Int" and not (math.isfinite(v.lb) and math.isfinite(v.ub)):
                raise self.src.error(f"Int variable {v.name} needs finite bounds, e.g. (assert (<= {v.name} 9))", 0)
        aux = [v for v in self.vars.values() if v.name.startswith("A_")]
        return DiscreteQuery(len(xs), len(ys), (*xs, *aux, *ys), tuple(self.rows), self.src.path)


def parse_discrete(text: str, path: str = "<query>") -> DiscreteQuery:
    """Read a discrete query. Raises ``PropertyError`` (``file:line:col``) on anything else."""
    return _Reader(Source(text, path, PropertyError)).read()


def load_discrete(path: str | os.PathLike[str]) -> DiscreteQuery:
    return parse_discrete(read_text(path, PropertyError), str(path))
