"""Formulas and terms of VNN-LIB 2.x assertions -> exact linear constraints in disjunctive normal form.

Terms are linear over tensor elements (``V[i,j]``) with rational constants; ``n-ary + - *``, comparisons
``<= >= < > == !=`` and ``and``/``or``. Strict comparisons stay strict (``Rel.LT``).
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from nnverify.spec.sexpr import Atom, Node, Source, describe
from nnverify.spec.vnnlib import MAX_DISJUNCTS
from nnverify.spec.vnnlib2_types import Constraint, Rel, Scalar, TensorVar, VarKind

__all__ = ["Constraint", "FormulaReader", "Rel", "TensorVar", "VarKind", "merge_atoms"]

_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_REF_RE = re.compile(r"([A-Za-z][A-Za-z0-9_]*)(?:\[([^\]]*)\])?")
_FLOAT_MAX = Fraction(sys.float_info.max)
_FORMULA = "a formula (and, or, <=, >=, <, >, ==, !=)"
_TERM = "a term (number, variable, V[i], +, -, *)"

Lin = tuple[dict[Scalar, Fraction], Fraction]
Dnf = list[tuple[Constraint, ...]]


def merge_atoms(src: Source, items: tuple[Node, ...]) -> tuple[Node, ...]:
    """Re-join atoms split by whitespace inside ``[...]`` or ``"..."`` (``X[0, 1]``, ``[1, 5]``)."""
    out: list[Node] = []
    i = 0
    while i < len(items):
        node = items[i]
        if isinstance(node, Atom) and _open(node.text):
            for j in range(i + 1, len(items)):
                last = items[j]
                if not isinstance(last, Atom):
                    break
                text = src.text[node.offset : last.offset + len(last.text)]
                if not _open(text):
                    node = Atom(text if '"' in text else re.sub(r"\s+", "", text), node.offset)
                    i = j
                    break
        out.append(node)
        i += 1
    return tuple(out)


def _open(text: str) -> bool:
    return text.count("[") > text.count("]") or text.count('"') % 2 == 1


def parse_number(text: str) -> Fraction | None:
    """The exact value of a decimal or scientific literal, None if ``text`` is not one."""
    if _NUMBER_RE.fullmatch(text) is None:
        return None
    try:
        return Fraction(Decimal(text))
    except (InvalidOperation, ValueError, OverflowError):
        return None


class FormulaReader:
    """Reads the asserts of one query into (common constraints, alternatives)."""

    def __init__(self, src: Source, variables: dict[str, TensorVar]) -> None:
        self.src = src
        self.variables = variables
        self.common: list[Constraint] = []
        self.multi: list[tuple[int, Dnf]] = []
        self.empty = False

    def add_assert(self, node: Node, offset: int) -> None:
        dnf = self.formula(node)
        if not dnf:
            self.empty = True
        elif len(dnf) == 1:
            self.common.extend(dnf[0])
        else:
            self.multi.append((offset, dnf))

    def result(self) -> tuple[tuple[Constraint, ...], tuple[tuple[Constraint, ...], ...]]:
        if self.empty:
            return tuple(self.common), ()
        alternatives: Dnf = [()]
        for offset, dnf in self.multi:
            alternatives = self._conjoin([alternatives, dnf], offset)
        return tuple(self.common), tuple(alternatives)

    def _head(self, node: Node, expected: str) -> tuple[Atom, tuple[Node, ...]]:
        if isinstance(node, Atom) or not node.items or not isinstance(node.items[0], Atom):
            raise self.src.error(f"expected {expected}, found {describe(node)}", node.offset)
        return node.items[0], merge_atoms(self.src, node.items[1:])

    def formula(self, node: Node) -> Dnf:
        head, args = self._head(node, _FORMULA)
        op = head.text
        if op in ("and", "or") and not args:
            raise self.src.error(f"'{op}' needs at least 1 formula, found 0", node.offset)
        if op == "and":
            return self._conjoin([self.formula(a) for a in args], node.offset)
        if op == "or":
            out: Dnf = []
            for a in args:
                out.extend(self.formula(a))
                self._check_size(len(out), node.offset)
            return out
        if op in ("<=", ">=", "<", ">", "==", "=", "!="):
            return self._comparison(op, args, node.offset)
        raise self.src.error(f"expected {_FORMULA}, found {describe(node)}", node.offset)

    def _conjoin(self, parts: Iterable[Dnf], offset: int) -> Dnf:
        result: Dnf = [()]
        for part in parts:
            self._check_size(len(result) * len(part), offset)
            result = [r + c for r in result for c in part]
        return result

    def _check_size(self, count: int, offset: int) -> None:
        if count > MAX_DISJUNCTS:
            raise self.src.error(
                f"the disjunctive normal form has {count:,} disjuncts here; at most {MAX_DISJUNCTS:,} are supported",
                offset,
            )

    def _comparison(self, op: str, args: tuple[Node, ...], offset: int) -> Dnf:
        if len(args) < 2:
            raise self.src.error(f"'{op}' needs 2 terms, found {len(args)}", offset)
        terms = [self.term(a) for a in args]
        if op == "!=":
            if len(terms) != 2:
                raise self.src.error(f"'!=' takes 2 terms, found {len(terms)}", offset)
            left, right = terms
            return [(self._constraint(left, right, Rel.LT, offset),), (self._constraint(right, left, Rel.LT, offset),)]
        out = []
        for left, right in itertools.pairwise(terms):
            if op in (">=", ">"):
                left, right = right, left
            rel = {"<=": Rel.LE, ">=": Rel.LE, "<": Rel.LT, ">": Rel.LT}.get(op, Rel.EQ)
            out.append(self._constraint(left, right, rel, offset))
        return [tuple(out)]

    @staticmethod
    def _constraint(left: Lin, right: Lin, rel: Rel, offset: int) -> Constraint:
        """``left REL right`` moved to ``a @ v REL b``."""
        coefs = dict(left[0])
        for v, c in right[0].items():
            coefs[v] = coefs.get(v, Fraction(0)) - c
        items = tuple(sorted((v, c) for v, c in coefs.items() if c != 0))
        return Constraint(items, rel, right[1] - left[1], offset)

    def term(self, node: Node) -> Lin:
        if isinstance(node, Atom):
            value = parse_number(node.text)
            if value is not None:
                if abs(value) > _FLOAT_MAX:
                    raise self.src.error(f"number {describe(node)} is outside the float64 range", node.offset)
                return {}, value
            return {self._scalar(node): Fraction(1)}, Fraction(0)
        head, args = self._head(node, _TERM)
        op = head.text
        if op not in ("+", "-", "*"):
            raise self.src.error(f"expected {_TERM}, found {describe(node)}", node.offset)
        if not args:
            raise self.src.error(f"'{op}' needs at least 1 argument, found 0", node.offset)
        terms = [self.term(a) for a in args]
        if op == "*":
            return self._product(terms, node.offset)
        if op == "-" and len(terms) == 1:
            return {v: -c for v, c in terms[0][0].items()}, -terms[0][1]
        coefs, const = dict(terms[0][0]), terms[0][1]
        sign = -1 if op == "-" else 1
        for t_coefs, t_const in terms[1:]:
            for v, c in t_coefs.items():
                coefs[v] = coefs.get(v, Fraction(0)) + sign * c
            const += sign * t_const
        return coefs, const

    def _product(self, terms: list[Lin], offset: int) -> Lin:
        linear = [t for t in terms if t[0]]
        if len(linear) > 1:
            raise self.src.error(
                f"non-linear product: expected at most one factor of '*' with variables, found {len(linear)}", offset
            )
        factor = Fraction(1)
        for t in terms:
            if not t[0]:
                factor *= t[1]
        if not linear:
            return {}, factor
        coefs, const = linear[0]
        return {v: c * factor for v, c in coefs.items()}, const * factor

    def _scalar(self, atom: Atom) -> Scalar:
        """The scalar an atom like ``Y``, ``X[3]`` or ``X[0,2]`` names (declared, indices in range)."""
        m = _REF_RE.fullmatch(atom.text)
        if m is None:
            raise self.src.error(f"expected a number or a variable like X[0], found {describe(atom)}", atom.offset)
        var = self.variables.get(m[1])
        if var is None:
            raise self.src.error(f"undeclared variable '{m[1]}'", atom.offset)
        if m[2] is None:
            if var.shape:
                element = f"{var.name}[{_zeros(var.shape)}]"
                raise self.src.error(
                    f"'{var.name}' has shape {_shape(var.shape)}; expected an element like {element}",
                    atom.offset,
                )
            return var.name, 0
        parts = m[2].split(",") if m[2] else []
        if not all(re.fullmatch(r"[0-9]+", p) for p in parts):
            raise self.src.error(f"expected integer indices in {describe(atom)}", atom.offset)
        index = [int(p) for p in parts]
        if len(index) != len(var.shape):
            raise self.src.error(
                f"'{var.name}' has shape {_shape(var.shape)}: expected {len(var.shape)} indices, found {len(index)}",
                atom.offset,
            )
        flat = 0
        for i, (k, dim) in enumerate(zip(index, var.shape, strict=True)):
            if k >= dim:
                raise self.src.error(
                    f"index {k} out of range for dimension {i} of '{var.name}' (shape {_shape(var.shape)})",
                    atom.offset,
                )
            flat = flat * dim + k
        return var.name, flat


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def _zeros(shape: tuple[int, ...]) -> str:
    return ",".join("0" * len(shape))
