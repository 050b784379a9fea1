"""The ``find … where … return`` query language (DL2 style), translated to a VNN-LIB 2 ``Query``.

``find i[1,5] where i in [-1, 1], class(N(i)) = 0, N(i)[1] > M(i)[1] + 0.5, linf(i - x0) < 0.1 return N(i)``.
Every ``N(v)`` is a network declaration (a second use of ``N`` is ``equal-to`` it, its input substituted by
``v``); ``N(v).t[k]`` is the ONNX tensor ``t`` as a hidden variable. Errors are ``file:line:col``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from nnverify.errors import PropertyError
from nnverify.multi.qlang_calls import Call, CallsMixin
from nnverify.multi.qlang_lex import CMP, KEYWORDS, Dnf, Lin, Tok, add, constraint, lin, neg, sub, tokens
from nnverify.multi.qlang_norms import L1_EXACT_MAX, NormCheck, Operand, l1_lifted_rows, norm_rows
from nnverify.multi.qlang_slices import SlicesMixin
from nnverify.multi.qlang_softmax import SoftmaxCheck, softmax_rows
from nnverify.spec.sexpr import Source
from nnverify.spec.vnnlib import MAX_DISJUNCTS
from nnverify.spec.vnnlib2_types import Constraint, NetworkDecl, Query, Rel, Scalar, TensorVar, VarKind


@dataclass(frozen=True, slots=True)
class Program:
    """A translated query: the VNN-LIB 2 ``Query`` and what to print after ``sat`` (text, variable name)."""

    query: Query
    returns: tuple[tuple[str, str], ...]
    checks: tuple[SoftmaxCheck | NormCheck, ...] = ()

    def failed_check(self, values: dict[str, np.ndarray]) -> str | None:
        """The first softmax threshold a replayed assignment misses, else None."""
        return next((c.text for c in self.checks if not c.holds(values)), None)


def program_files(program: Program, files: dict[str, str]) -> dict[str, str]:
    """The ``--net`` files the program's networks use (others are ignored, not an error)."""
    used = {n.name for n in program.query.networks if n.equal_to is None}
    return {name: path for name, path in files.items() if name in used}


def translate(
    text: str,
    path: str,
    files: dict[str, str],
    consts: dict[str, np.ndarray] | None = None,
    labels: dict[str, int] | None = None,
) -> Program:
    """Translate query-language ``text`` (networks named as in ``files``).

    Raises:
        PropertyError: At the ``line:col`` of the first problem.
        InputFileError, ModelError: A network file cannot be read.
    """
    return _Translator(Source(text, path, PropertyError), files, consts or {}, labels or {}).run()


class _Translator(CallsMixin, SlicesMixin):
    def __init__(self, src: Source, files: dict[str, str], consts: dict[str, np.ndarray], labels: dict[str, int]):
        self.src, self.files, self.labels = src, files, labels
        self.consts = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in consts.items()}
        self.const_shapes = {k: np.shape(v) for k, v in consts.items()}
        self.toks = tokens(self.src)
        self.pos = 0
        self.finds: dict[str, TensorVar] = {}
        self.owner: dict[str, str] = {}  # find variable -> the call whose input it is
        self.calls: dict[tuple[str, tuple[str, ...]], Call] = {}
        self.common: list[Constraint] = []
        self.multi: list[Dnf] = []
        self.checks: list[SoftmaxCheck | NormCheck] = []
        self.auxiliary: list[TensorVar] = []

    # -- tokens -------------------------------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Tok:
        return self.toks[min(self.pos + ahead, len(self.toks) - 1)]

    def take(self) -> Tok:
        tok = self.peek()
        self.pos = min(self.pos + 1, len(self.toks) - 1)
        return tok

    def expect(self, text: str, what: str | None = None) -> Tok:
        tok = self.take()
        if tok.text != text:
            raise self.src.error(f"expected {what or repr(text)}, found {tok.text!r}", tok.offset)
        return tok

    def accept(self, text: str) -> bool:
        if self.peek().text == text and self.peek().kind != "end":
            self.take()
            return True
        return False

    def name(self, what: str) -> Tok:
        tok = self.take()
        if tok.kind != "name" or tok.text in KEYWORDS:
            raise self.src.error(f"expected {what}, found {tok.text!r}", tok.offset)
        return tok

    def integer(self) -> int:
        tok = self.take()
        if tok.kind != "num" or not tok.text.isdigit():
            raise self.src.error(f"expected an integer, found {tok.text!r}", tok.offset)
        return int(tok.text)

    def number(self) -> Fraction:
        sign = -1 if self.accept("-") else 1
        tok = self.take()
        if tok.kind != "num":
            raise self.src.error(f"expected a number, found {tok.text!r}", tok.offset)
        value = Fraction(tok.text)
        if value > Fraction(sys.float_info.max):
            raise self.src.error(f"number {tok.text!r} is outside the float64 range", tok.offset)
        return sign * value

    # -- the query ----------------------------------------------------------------------------------------------
    def run(self) -> Program:
        self.expect("find")
        while True:
            self._find()
            if not self.accept(","):
                break
        self.expect("where", "',' or 'where'")
        while True:
            dnf = self._item()
            if len(dnf) == 1:
                self.common.extend(dnf[0])
            else:
                self.multi.append(dnf)
            if not self.accept(","):
                break
        returns = []
        if self.accept("return"):
            while True:
                returns.append(self._return_ref())
                if not self.accept(","):
                    break
        tok = self.peek()
        if tok.kind != "end":
            raise self.src.error(f"expected ',', 'return' or end of file, found {tok.text!r}", tok.offset)
        for var in self.finds.values():
            if var.name not in self.owner:
                raise self.src.error(f"'{var.name}' is not the input of any network", var.offset)
        return Program(self._query(), tuple(returns), tuple(self.checks))

    def _find(self) -> None:
        tok = self.name("a variable name")
        if tok.text in self.finds or tok.text in self.files or tok.text in self.consts:
            raise self.src.error(f"'{tok.text}' is already a variable, network or constant name", tok.offset)
        self.expect("[", "a shape like [1,5]")
        shape = [self.integer()]
        while self.accept(","):
            shape.append(self.integer())
        self.expect("]")
        self.finds[tok.text] = TensorVar(tok.text, VarKind.INPUT, "real", tuple(shape), "", tok.offset)

    def _query(self) -> Query:
        networks = []
        for call in self.calls.values():
            hidden = tuple(call.hidden.values())
            networks.append(
                NetworkDecl(
                    call.name,
                    call.offset,
                    call.inputs,
                    hidden,
                    (call.output,),
                    call.equal_to,
                    None,
                    call.offset,
                    call.fed_by if any(call.fed_by) else (),
                )
            )
        alternatives: Dnf = [()]
        for dnf in self.multi:
            if len(alternatives) * len(dnf) > MAX_DISJUNCTS:
                raise self.src.error(f"more than {MAX_DISJUNCTS:,} alternatives ('or' combinations)", 0)
            alternatives = [a + b for a in alternatives for b in dnf]
        return Query(
            self.src.path,
            (2, 0),
            tuple(networks),
            tuple(self.common),
            tuple(alternatives),
            self.src.text,
            tuple(self.auxiliary),
        )

    # -- constraints --------------------------------------------------------------------------------------------
    def _item(self) -> Dnf:
        checks = len(self.checks)
        out = self._atom()
        while self.peek().text == "or":
            tok = self.take()
            out = out + self._atom()
            if len(self.checks) > checks:
                raise self.src.error("a softmax threshold or an inexact norm cannot be part of an 'or'", tok.offset)
        return out

    def _softmax(self) -> Dnf:
        start = self.peek().offset
        call = self.call()
        self.expect(".")
        self.expect("p")
        k = self._index(call.output)
        op = self.take()
        if op.text not in ("<", "<=", ">", ">="):
            raise self.src.error(f"expected <, <=, > or >= after N(x).p[k], found {op.text!r}", op.offset)
        t = self.number()
        if not 0 < t < 1 or call.output.size < 2:
            raise self.src.error("expected a threshold strictly between 0 and 1 on a network of 2+ classes", op.offset)
        text = self.src.text[start : self.peek().offset].strip()
        self.checks.append(SoftmaxCheck(call.output.name, k, op.text, float(t), text))
        return softmax_rows(call.output, k, op.text, t, op.offset)

    def _atom(self) -> Dnf:
        tok = self.peek()
        if tok.text == "class":
            return self._class()
        if tok.text in ("linf", "l1", "l2"):
            return self._norm()
        if tok.text in self.files and self.peek(self.call_end(self.pos) - self.pos).text == ".":
            after = self.call_end(self.pos) - self.pos
            if self.peek(after + 1).text == "p" and self.peek(after + 2).text == "[":
                return self._softmax()
        if self.slice_ahead():
            return self.slice_atom()
        if tok.kind == "name" and tok.text in self.finds:
            start = self.pos
            scalars = self._find_scalars()
            if self.accept("in"):
                lo, hi = self._interval()
                return [tuple(c for s in scalars for c in self._between(s, lo, hi, tok.offset))]
            self.pos = start
        left = self._expr()
        op = self.take()
        if op.text not in CMP and op.text != "!=":
            raise self.src.error(f"expected a comparison (<, <=, >, >=, =, !=), found {op.text!r}", op.offset)
        right = self._expr()
        if op.text == "!=":
            return [(constraint(left, right, Rel.LT, op.offset),), (constraint(right, left, Rel.LT, op.offset),)]
        if op.text in (">", ">="):
            left, right = right, left
        return [(constraint(left, right, CMP[op.text], op.offset),)]

    def _find_scalars(self) -> list[Scalar]:
        var = self.finds[self.take().text]
        if self.peek().text == "[":
            return [(var.name, self._index(var))]
        return [(var.name, k) for k in range(var.size)]

    def _interval(self) -> tuple[Fraction, Fraction]:
        self.expect("[", "an interval like [0, 1]")
        lo = self.number()
        self.expect(",")
        hi = self.number()
        self.expect("]")
        return lo, hi

    @staticmethod
    def _between(s: Scalar, lo: Fraction, hi: Fraction, offset: int) -> tuple[Constraint, Constraint]:
        return Constraint(((s, Fraction(-1)),), Rel.LE, -lo, offset), Constraint(
            ((s, Fraction(1)),), Rel.LE, hi, offset
        )

    def _class(self) -> Dnf:
        """``class(N(x)) = c``, ``!= c``, or DL2's ``class(N(x), c)`` (the same as ``= c``)."""
        start = self.expect("class")
        self.expect("(")
        call = self.call()
        if self.accept(","):
            op, tok = Tok("op", "=", start.offset), self.take()
            self.expect(")")
        else:
            self.expect(")", "')' or ', CLASS'")
            op = self.take()
            if op.text not in ("=", "==", "!="):
                raise self.src.error(f"expected '=' or '!=' after class(…), found {op.text!r}", op.offset)
            tok = self.take()
        label = int(tok.text) if tok.kind == "num" and tok.text.isdigit() else self.labels.get(tok.text)
        size = call.output.size
        if label is None or not 0 <= label < size:
            raise self.src.error(f"expected a class 0 … {size - 1} or a --labels name, found {tok.text!r}", tok.offset)
        y = call.output.name
        rows = [constraint(lin((y, j)), lin((y, label)), Rel.LT, op.offset) for j in range(size) if j != label]
        if op.text == "!=":
            return [(constraint(lin((y, label)), lin((y, j)), Rel.LT, op.offset),) for j in range(size) if j != label]
        return [tuple(rows)]

    def _norm(self) -> Dnf:
        """``linf|l1|l2(a - b) OP eps`` (see ``qlang_norms.py`` for what is exact)."""
        kind = self.take()
        self.expect("(")
        a, a_op = self._tensor_operand()
        self.expect("-", f"'-' ({kind.text} takes a difference)")
        b, b_op = self._tensor_operand()
        self.expect(")")
        if len(a) != len(b):
            raise self.src.error(f"{kind.text} of tensors of {len(a)} and {len(b)} elements", kind.offset)
        op = self.take()
        if op.text not in ("<", "<=", ">", ">="):
            raise self.src.error(f"expected <, <=, > or >= after {kind.text}(…), found {op.text!r}", op.offset)
        eps = self.number()
        diffs = [sub(x, y) for x, y in zip(a, b, strict=True)]
        if kind.text == "l1" and op.text in ("<", "<=") and len(diffs) > L1_EXACT_MAX:
            aux = TensorVar(f"__l1_{len(self.auxiliary)}", VarKind.INPUT, "real", (len(diffs),), "", kind.offset)
            self.auxiliary.append(aux)
            rows, exact = l1_lifted_rows(diffs, op.text, eps, aux.name, op.offset), op.text == "<="
        else:
            rows, exact = norm_rows(kind.text, diffs, op.text, eps, op.offset)
        if not exact:
            text = self.src.text[kind.offset : self.peek().offset].strip()
            self.checks.append(NormCheck(kind.text, a_op, b_op, op.text, float(eps), text))
        return rows

    def _tensor_operand(self) -> tuple[list[Lin], Operand]:
        """A variable or constant, whole or sliced (``i[:2, :]``), as terms and as a ``NormCheck`` operand."""
        tok = self.peek()
        if tok.kind != "name" or (tok.text not in self.finds and tok.text not in self.consts):
            self.take()
            raise self.src.error(f"unknown variable or constant '{tok.text}' (constants come from --const)", tok.offset)
        terms, _, _, flat = self.sliced()
        if tok.text in self.finds:
            return terms, (tok.text, tuple(flat))
        return terms, self.consts[tok.text][flat]

    # -- terms --------------------------------------------------------------------------------------------------
    def _expr(self) -> Lin:
        out = self._term()
        while self.peek().text in ("+", "-"):
            sign = -1 if self.take().text == "-" else 1
            right = self._term()
            out = add(out, right, sign)
        return out

    def _term(self) -> Lin:
        out = self._factor()
        while self.peek().text == "*":
            tok = self.take()
            right = self._factor()
            if out[0] and right[0]:
                raise self.src.error("non-linear product: at most one factor of '*' may hold variables", tok.offset)
            if out[0]:
                out, right = right, out
            out = ({v: c * out[1] for v, c in right[0].items()}, right[1] * out[1])
        return out

    def _factor(self) -> Lin:
        tok = self.peek()
        if tok.text == "-":
            self.take()
            return neg(self._factor())
        if tok.text == "(":
            self.take()
            inner = self._expr()
            self.expect(")")
            return inner
        if tok.kind == "num":
            return {}, self.number()
        name = self.name("a number, variable, constant or network call")
        if name.text in self.finds:
            var = self.finds[name.text]
            if self.peek().text != "[" and var.shape:
                raise self.src.error(f"'{var.name}' is a tensor; expected an element like {var.name}[0]", name.offset)
            return lin((var.name, self._index(var) if var.shape else 0))
        if name.text in self.consts:
            values = self.consts[name.text]
            self.expect("[")
            k = self.integer()
            self.expect("]")
            if k >= values.size:
                raise self.src.error(f"index {k} out of range for '{name.text}' ({values.size} values)", name.offset)
            return {}, Fraction(float(values[k]))
        self.pos -= 1
        var = self.call_tensor()
        if self.peek().text != "[" and var.shape:
            raise self.src.error("expected an element like N(x)[0] of the network's tensor", name.offset)
        return lin((var.name, self._index(var) if var.shape else 0))

    def _index(self, var: TensorVar) -> int:
        """``[k]`` (flat) or ``[i,j,…]`` (one per dimension) into ``var``; the flat index."""
        open_ = self.expect("[")
        index = [self.integer()]
        while self.accept(","):
            index.append(self.integer())
        self.expect("]")
        dims = var.shape if len(index) == len(var.shape) else (var.size,) if len(index) == 1 else None
        if dims is None:
            raise self.src.error(
                f"'{var.name}' has {len(var.shape)} dimensions; found {len(index)} indices", open_.offset
            )
        flat = 0
        for k, dim in zip(index, dims, strict=True):
            if k >= dim:
                raise self.src.error(f"index {k} out of range for '{var.name}' (shape {list(var.shape)})", open_.offset)
            flat = flat * dim + k
        return flat

    def _return_ref(self) -> tuple[str, str]:
        start = self.peek().offset
        tok = self.peek()
        if tok.kind == "name" and tok.text in self.finds:
            self.take()
            name = tok.text
        else:
            name = self.call_tensor().name
        return self.src.text[start : self.peek().offset].strip(), name
