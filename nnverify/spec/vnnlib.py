"""VNN-LIB 1.0 parser: declarations and assertions over X_i/Y_j -> ``Property`` (OR of box + linear rows).

Accepts the linear fragment used by VNN-COMP (and/or of comparisons between linear terms). Every problem in
the text is a ``PropertyError`` at its ``line:col``; nothing else escapes for any input text.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from nnverify.budget import CHECK_EVERY, Budget
from nnverify.errors import PropertyError
from nnverify.spec import sexpr
from nnverify.spec.property import Disjunct, Property
from nnverify.spec.sexpr import Atom, Node, Source, describe

#: Largest accepted disjunctive normal form (number of disjuncts).
MAX_DISJUNCTS = 100_000
#: Largest accepted normal form in numbers stored (about 400 MB of float64).
MAX_NUMBERS = 50_000_000

_LETTER = ("X", "Y")
_WHAT = ("inputs", "outputs")
_COMPARISONS = frozenset({"<=", ">=", "<", ">", "="})
_IGNORED = frozenset({"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"})
_FORMULA = "a formula (and, or, <=, >=, <, >, =)"
_TERM = "a term (number, variable, +, -, *, /)"
_PHASE = "parsing the property"

Var = tuple[int, int]  # (0 for X / 1 for Y, index)


@dataclass(slots=True)
class _Lin:
    """A linear term ``sum(coefs[v] * v) + const``."""

    coefs: dict[Var, float]
    const: float

    def scaled(self, factor: float) -> _Lin:
        return _Lin({v: c * factor for v, c in self.coefs.items()}, self.const * factor)

    def add(self, other: _Lin, sign: float = 1.0) -> None:
        for v, c in other.coefs.items():
            self.coefs[v] = self.coefs.get(v, 0.0) + sign * c
        self.const += sign * other.const


class _Constraint(NamedTuple):
    """``sum(coefs[v] * v) <= b`` with only nonzero coefficients."""

    coefs: dict[Var, float]
    b: float


Conj = tuple[_Constraint, ...]
Dnf = list[Conj]


def _var_range(kind: int, count: int) -> str:
    letter = _LETTER[kind]
    if count <= 0:
        return "none"
    return f"{letter}_0" if count == 1 else f"{letter}_0 … {letter}_{count - 1}"


class _Parser:
    """One parse of one text; holds the declarations and the network sizes to check against."""

    def __init__(self, src: Source, n_inputs: int | None, n_outputs: int | None, budget: Budget) -> None:
        self.src = src
        self.budget = budget
        self.network = (n_inputs, n_outputs)
        self.declared: dict[Var, int] = {}
        self.first_assert: int | None = None
        self.atoms: dict[str, float | Var] = {}  # memo of atoms already parsed and checked

    def parse(self) -> Property:
        asserts: list[tuple[int, Dnf]] = []
        for count, node in enumerate(sexpr.read_sexprs(self.src, self.budget)):
            if not count % CHECK_EVERY:
                self.budget.check(_PHASE)
            head, args = self._head(node, "a command like (declare-const X_0 Real) or (assert …)")
            if head.text == "declare-const":
                self._declare(node, args)
            elif head.text == "assert":
                if len(args) != 1:
                    raise self.src.error(f"'assert' takes 1 formula, found {len(args)}", node.offset)
                if self.first_assert is None:
                    self.first_assert = node.offset
                asserts.append((node.offset, self._formula(args[0])))
            elif count == 0 and head.text in ("vnnlib-version", "declare-network"):  # a 2.x file given the 1.0 way
                raise self.src.error(
                    f"this is a VNN-LIB 2.x file ('{head.text}'); run `nnverify check {self.src.path} "
                    "--network NAME=net.onnx …` (one --network per declare-network)",
                    head.offset,
                )
            elif head.text not in _IGNORED:
                raise self.src.error(f"expected 'declare-const' or 'assert', found {describe(head)}", head.offset)
        n, m = self._counts()
        common, alternatives = self._top_level(asserts)
        builder = _Builder(n, m, self.src, self.first_assert or 0, self.budget)
        return Property(n, m, builder.disjuncts(common, alternatives), self.src.path)

    def _head(self, node: Node, expected: str) -> tuple[Atom, tuple[Node, ...]]:
        if isinstance(node, Atom) or not node.items or not isinstance(node.items[0], Atom):
            raise self.src.error(f"expected {expected}, found {describe(node)}", node.offset)
        return node.items[0], node.items[1:]

    def _declare(self, node: Node, args: tuple[Node, ...]) -> None:
        name = args[0] if len(args) == 2 else None
        if not isinstance(name, Atom):
            raise self.src.error(f"expected (declare-const <X_i or Y_j> Real), found {describe(node)}", node.offset)
        typ = args[1]
        var = sexpr.parse_var_name(name.text)
        if var is None:
            raise self.src.error(f"expected a variable name X_<i> or Y_<j>, found {describe(name)}", name.offset)
        self._check_network(var, name)
        if var in self.declared:
            first = self.src.where(self.declared[var])
            raise self.src.error(f"'{name.text}' is already declared at {first}", name.offset)
        if not isinstance(typ, Atom) or typ.text != "Real":
            raise self.src.error(f"expected type 'Real' for {name.text}, found {describe(typ)}", typ.offset)
        self.declared[var] = node.offset

    def _check_network(self, var: Var, atom: Atom) -> None:
        kind, index = var
        limit = self.network[kind]
        if limit is not None and index >= limit:
            what = _WHAT[kind] if limit != 1 else _WHAT[kind][:-1]
            have = f"{limit} {what} ({_var_range(kind, limit)})"
            raise self.src.error(f"unknown variable '{atom.text}'; the network has {have}", atom.offset)

    def _variable(self, atom: Atom) -> Var:
        var = sexpr.parse_var_name(atom.text)
        if var is None:
            raise self.src.error(f"expected a number or a variable X_<i> / Y_<j>, found {describe(atom)}", atom.offset)
        self._check_network(var, atom)
        if var not in self.declared:
            raise self.src.error(
                f"unknown variable '{atom.text}'; expected (declare-const {atom.text} Real) before its use",
                atom.offset,
            )
        return var

    def _counts(self) -> tuple[int, int]:
        counts = []
        for kind in (0, 1):
            letter, what = _LETTER[kind], _WHAT[kind]
            indices = sorted(i for k, i in self.declared if k == kind)
            if not indices:
                raise self.src.error(f"the property declares no {what} (expected {letter}_0, {letter}_1, …)", 0)
            top = indices[-1]
            if top != len(indices) - 1:
                missing = next(i for i, j in enumerate(indices) if i != j)
                raise self.src.error(
                    f"{letter}_{missing} is not declared, but {letter}_{top} is; "
                    f"{what} must be {letter}_0 … {letter}_{top} without gaps",
                    self.declared[(kind, top)],
                )
            net = self.network[kind]
            if net is not None and len(indices) != net:
                raise self.src.error(
                    f"the network has {net} {what} but the property declares {len(indices)} "
                    f"({_var_range(kind, len(indices))})",
                    0,
                )
            counts.append(len(indices))
        return counts[0], counts[1]

    def _formula(self, node: Node) -> Dnf:
        head, args = self._head(node, _FORMULA)
        op = head.text
        if op == "and":
            return self._conjoin([self._formula(a) for a in args], node.offset)
        if op == "or":
            out: Dnf = []
            for a in args:
                out.extend(self._formula(a))
                self._check_size(len(out), node.offset)
            return out
        if op in _COMPARISONS:
            return [self._comparison(op, args, node.offset)]
        raise self.src.error(f"expected {_FORMULA}, found {describe(node)}", node.offset)

    def _conjoin(self, parts: Iterable[Dnf], offset: int) -> Dnf:
        """AND of DNFs: the cross product (single-conjunct parts are simply appended)."""
        common: list[_Constraint] = []
        multi: list[Dnf] = []
        for part in parts:
            if not part:
                return []
            if len(part) == 1:
                common.extend(part[0])
            else:
                multi.append(part)
        result: Dnf = [tuple(common)]
        for part in multi:
            self.budget.check(_PHASE)
            width = max(map(len, result)) + max(map(len, part))
            self._check_size(len(result) * len(part), offset, width)
            result = [r + c for r in result for c in part]
        return result

    def _check_size(self, count: int, offset: int, width: int = 0) -> None:
        """Refuse a DNF of more than ``MAX_DISJUNCTS`` disjuncts, or too many comparisons in all."""
        size = f"the disjunctive normal form has {count:,} disjuncts"
        if count > MAX_DISJUNCTS:
            raise self.src.error(f"{size} here; at most {MAX_DISJUNCTS:,} are supported", offset)
        if count * width > MAX_NUMBERS:
            raise self.src.error(
                f"{size} of up to {width:,} comparisons here; at most {MAX_NUMBERS:,} comparisons in all are supported",
                offset,
            )

    def _top_level(self, asserts: list[tuple[int, Dnf]]) -> tuple[Conj, Dnf]:
        """The conjunction of all asserts as (constraints shared by all disjuncts, per-disjunct extras)."""
        common: list[_Constraint] = []
        multi: list[tuple[int, Dnf]] = []
        for count, (offset, dnf) in enumerate(asserts):
            if not count % CHECK_EVERY:
                self.budget.check(_PHASE)
            if not dnf:
                return (), []
            if len(dnf) == 1:
                common.extend(dnf[0])
            else:
                multi.append((offset, dnf))
        alternatives: Dnf = [()]
        for offset, dnf in multi:
            alternatives = self._conjoin([alternatives, dnf], offset)
        return tuple(common), alternatives

    def _comparison(self, op: str, args: tuple[Node, ...], offset: int) -> Conj:
        if len(args) < 2:
            raise self.src.error(f"'{op}' needs at least 2 terms, found {len(args)}", offset)
        terms = [self._term(a) for a in args]
        out: list[_Constraint] = []
        for left, right in itertools.pairwise(terms):
            if op in ("<=", "<", "="):
                out.append(self._constraint(left, right, offset))
            if op in (">=", ">", "="):
                out.append(self._constraint(right, left, offset))
        return tuple(out)

    def _constraint(self, left: _Lin, right: _Lin, offset: int) -> _Constraint:
        """``left <= right`` moved to ``a @ v <= b``."""
        coefs = dict(left.coefs)
        for v, c in right.coefs.items():
            coefs[v] = coefs.get(v, 0.0) - c
        coefs = {v: c for v, c in coefs.items() if c != 0.0}
        b = right.const - left.const + 0.0  # + 0.0 turns -0.0 into 0.0
        if not (math.isfinite(b) and all(map(math.isfinite, coefs.values()))):
            raise self.src.error("a coefficient or constant of this comparison overflows float64", offset)
        return _Constraint(coefs, b)

    def _term(self, node: Node) -> _Lin:
        if isinstance(node, Atom):
            known = self.atoms.get(node.text)
            if known is None:
                known = self._atom(node)
                self.atoms[node.text] = known  # only valid atoms are remembered
            return _Lin({}, known) if isinstance(known, float) else _Lin({known: 1.0}, 0.0)
        head, args = self._head(node, _TERM)
        op = head.text
        if op not in ("+", "-", "*", "/"):
            raise self.src.error(f"expected {_TERM}, found {describe(node)}", node.offset)
        if not args:
            raise self.src.error(f"'{op}' needs at least 1 argument, found 0", node.offset)
        terms = [self._term(a) for a in args]
        if op == "*":
            return self._product(terms, node.offset)
        if op == "/":
            return self._quotient(terms, node.offset)
        if op == "-" and len(terms) == 1:
            return terms[0].scaled(-1.0)
        result = _Lin(dict(terms[0].coefs), terms[0].const)
        for t in terms[1:]:
            result.add(t, -1.0 if op == "-" else 1.0)
        return result

    def _atom(self, atom: Atom) -> float | Var:
        """A number's value, or the (declared) variable an atom names."""
        value = sexpr.parse_number(atom.text)
        if value is None:
            return self._variable(atom)
        if not math.isfinite(value):
            raise self.src.error(f"number {describe(atom)} is outside the float64 range", atom.offset)
        return value

    def _product(self, terms: list[_Lin], offset: int) -> _Lin:
        linear = [t for t in terms if t.coefs]
        if len(linear) > 1:
            raise self.src.error(
                f"non-linear product: expected at most one factor of '*' with variables, found {len(linear)}",
                offset,
            )
        factor = 1.0
        for t in terms:
            if not t.coefs:
                factor *= t.const
        return linear[0].scaled(factor) if linear else _Lin({}, factor)

    def _quotient(self, terms: list[_Lin], offset: int) -> _Lin:
        divisor = 1.0
        for t in terms[1:]:
            if t.coefs or t.const == 0.0:
                raise self.src.error("expected nonzero constant divisors in '/', found a variable or 0", offset)
            divisor *= t.const
        return terms[0].scaled(1.0 / divisor)


def _divide_outward(b: float, a: float, up: bool) -> float:
    """``b / a`` rounded up (or down) when inexact, so a scaled bound never cuts off part of the real set."""
    q = b / a + 0.0
    if a in (1.0, -1.0) or not math.isfinite(q) or Fraction(q) * Fraction(a) == Fraction(b):
        return q
    return math.nextafter(q, math.inf if up else -math.inf)


class _Builder:
    """Turns (shared constraints, per-disjunct extras) into ``Disjunct`` arrays."""

    def __init__(self, n: int, m: int, src: Source, anchor: int, budget: Budget) -> None:
        self.n, self.m, self.src, self.anchor, self.budget = n, m, src, anchor, budget

    def disjuncts(self, common: Conj, alternatives: Dnf) -> tuple[Disjunct, ...]:
        lb, ub = np.full(self.n, -np.inf), np.full(self.n, np.inf)
        rows: list[_Constraint] = []
        if not alternatives or not self._apply(common, lb, ub, rows):
            return ()
        n_rows = sum(len(rows) + sum(map(self._is_row, alt)) for alt in alternatives)
        numbers = len(alternatives) * 2 * self.n + n_rows * (self.n + self.m + 1)
        if numbers > MAX_NUMBERS:
            raise self.src.error(
                f"the normal form would store {numbers:,} numbers; at most {MAX_NUMBERS:,} are supported",
                self.anchor,
            )
        self.budget.check_alloc(8 * numbers, "building the property's normal form")
        out = []
        for count, alt in enumerate(alternatives):
            if not count % 64:
                self.budget.check(_PHASE)
            d_lb, d_ub, d_rows = lb.copy(), ub.copy(), list(rows)
            if self._apply(alt, d_lb, d_ub, d_rows) and not np.any(d_lb > d_ub):
                self._check_bounded(d_lb, d_ub)
                out.append(self._disjunct(d_lb, d_ub, d_rows))
        return tuple(out)

    @staticmethod
    def _is_row(c: _Constraint) -> bool:
        """True if the constraint becomes a row (it is neither constant nor a bound on one input)."""
        return len(c.coefs) > 1 or (len(c.coefs) == 1 and next(iter(c.coefs))[0] != 0)

    def _apply(self, conj: Conj, lb: np.ndarray, ub: np.ndarray, rows: list[_Constraint]) -> bool:
        """Intersect single-input constraints into the box, collect the rest; False if trivially false."""
        for count, c in enumerate(conj):
            if not count % CHECK_EVERY:
                self.budget.check(_PHASE)
            if not c.coefs:
                if c.b < 0.0:
                    return False
            elif len(c.coefs) == 1 and next(iter(c.coefs))[0] == 0:
                (_, i), a = next(iter(c.coefs.items()))
                if a > 0:
                    ub[i] = min(ub[i], _divide_outward(c.b, a, up=True))
                else:
                    lb[i] = max(lb[i], _divide_outward(c.b, a, up=False))
            else:
                rows.append(c)
        return True

    def _check_bounded(self, lb: np.ndarray, ub: np.ndarray) -> None:
        for values, side in ((lb, "lower"), (ub, "upper")):
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise self.src.error(f"X_{int(bad[0])} has no {side} bound", self.anchor)

    def _disjunct(self, lb: np.ndarray, ub: np.ndarray, rows: list[_Constraint]) -> Disjunct:
        k = len(rows)
        a = (np.zeros((k, self.n)), np.zeros((k, self.m)))
        b = np.empty(k)
        for r, c in enumerate(rows):
            for (kind, i), v in c.coefs.items():
                a[kind][r, i] = v
            b[r] = c.b
        return Disjunct(lb=lb, ub=ub, a_x=a[0], a_y=a[1], b=b)


def parse_vnnlib(
    text: str,
    path: str = "<string>",
    n_inputs: int | None = None,
    n_outputs: int | None = None,
    budget: Budget | None = None,
) -> Property:
    """Parse VNN-LIB text into its normal form.

    Args:
        text: The VNN-LIB source.
        path: Name used in error messages and stored in ``Property.path``.
        n_inputs: The network's input count, if known: declarations and uses are checked against it.
        n_outputs: The network's output count, if known.
        budget: The run's deadline and memory cap (``BudgetExpired``, ``ResourceLimitError``); None: no limit.

    Returns:
        The unsafe set as a ``Property`` (empty-box disjuncts dropped; strict comparisons read as non-strict).

    Raises:
        PropertyError: At the ``line:col`` of the first problem.
    """
    return _Parser(Source(text, path, PropertyError), n_inputs, n_outputs, budget or Budget.unlimited()).parse()


def load_property(
    path: str | os.PathLike[str],
    n_inputs: int | None = None,
    n_outputs: int | None = None,
    budget: Budget | None = None,
) -> Property:
    """Read and parse a VNN-LIB file (plain or gzip-compressed); see ``parse_vnnlib``.

    Raises:
        InputFileError: The file is missing or unreadable.
        PropertyError: The file is not a valid property for this network.
    """
    return parse_vnnlib(sexpr.read_text(path, PropertyError), os.fspath(path), n_inputs, n_outputs, budget)
