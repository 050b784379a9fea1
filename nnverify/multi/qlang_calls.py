"""Network calls of the query language: ``N(x)``, ``G(z, 3)``, ``N(G(z, c))``, ``N(x).l1`` (``multi/qlang.py``).

An argument is a ``find`` variable, another call (composition: the output tensor is wired in), a ``--const``
name, or a number / ``--labels`` name: a number on a one-element input is that value, on a larger input a class
index read as its one-hot vector. Constant arguments become inputs pinned to their value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from nnverify.multi.bind import dims_of, inferred_infos, read_model
from nnverify.multi.qlang_lex import Tok, constraint, lin
from nnverify.spec.sexpr import Source
from nnverify.spec.vnnlib2_types import Constraint, Rel, TensorVar, VarKind


@dataclass(slots=True)
class Call:
    """One network application ``net(args)``: its declaration being built."""

    name: str
    net: str
    offset: int
    equal_to: str | None
    inputs: tuple[TensorVar, ...]
    output: TensorVar
    fed_by: tuple[str | None, ...] = (None,)
    hidden: dict[str, TensorVar] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Arg:
    """A parsed argument: a variable (``fed``: another call's output) or constant ``values`` (flat)."""

    tok: Tok
    var: TensorVar | None = None
    fed: bool = False
    values: np.ndarray | None = None
    label: int | None = None

    def key(self) -> str:
        if self.var is not None:
            return self.var.name
        return f"#{self.label}" if self.label is not None else "=" + ",".join(map(repr, self.values.tolist()))  # type: ignore[union-attr]


def _ident(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


class CallsMixin:
    """The network-call part of the translator (``qlang._Translator``)."""

    src: Source
    files: dict[str, str]
    labels: dict[str, int]
    consts: dict[str, np.ndarray]
    finds: dict[str, TensorVar]
    owner: dict[str, str]
    calls: dict[tuple[str, tuple[str, ...]], Call]
    common: list[Constraint]

    if TYPE_CHECKING:  # the token methods of the translator

        def peek(self, ahead: int = 0) -> Tok: ...
        def take(self) -> Tok: ...
        def expect(self, text: str, what: str | None = None) -> Tok: ...
        def accept(self, text: str) -> bool: ...
        def name(self, what: str) -> Tok: ...
        def number(self) -> Fraction: ...

    def call_tensor(self) -> TensorVar:
        """``N(args)`` (its output) or ``N(args).tensor`` (a hidden ONNX tensor, any name, ``l1`` included)."""
        call = self.call()
        if not self.accept("."):
            return call.output
        tok = self.take()
        if tok.kind != "name":
            raise self.src.error(f"expected an ONNX tensor name, found {tok.text!r}", tok.offset)
        if tok.text == "p":
            raise self.src.error("N(x).p[k] (softmax) only as a threshold 'N(x).p[k] > t'", tok.offset)
        if tok.text not in call.hidden:
            info = inferred_infos(read_model(self.files[call.net])).get(tok.text)
            if info is None:
                raise self.src.error(f"network '{call.net}' has no tensor '{tok.text}' of known shape", tok.offset)
            shape = tuple(d or 1 for d in dims_of(info))
            name = f"{call.name}__{tok.text}"
            call.hidden[tok.text] = TensorVar(name, VarKind.HIDDEN, "real", shape, call.name, tok.offset, tok.text)
        return call.hidden[tok.text]

    def call_end(self, pos: int) -> int:
        """The token position after the call starting at ``pos`` (``N`` ``(`` … ``)``), for look-ahead."""
        depth, k = 0, pos + 1
        while self.peek(k - pos).kind != "end":
            text = self.peek(k - pos).text
            depth += {"(": 1, ")": -1}.get(text, 0)
            k += 1
            if depth == 0:
                break
        return k

    def call(self) -> Call:
        net = self.name("a network name")
        if net.text not in self.files:
            known = ", ".join(self.files) or "none"
            raise self.src.error(f"unknown network '{net.text}' (given with --net: {known})", net.offset)
        self.expect("(")
        args = [self._arg()]
        while self.accept(","):
            args.append(self._arg())
        self.expect(")")
        key = (net.text, tuple(a.key() for a in args))
        if key not in self.calls:
            self.calls[key] = self._new_call(net, args)
        return self.calls[key]

    def _arg(self) -> _Arg:
        tok = self.peek()
        if tok.kind == "name" and tok.text in self.files:  # composition N(G(z))
            return _Arg(tok, self.call().output, fed=True)
        if tok.kind == "num" or tok.text == "-":
            value = self.number()
            return _Arg(tok, values=np.array([float(value)]), label=int(value) if value.denominator == 1 else None)
        self.take()
        if tok.kind == "name" and tok.text in self.finds:
            return _Arg(tok, self.finds[tok.text])
        if tok.kind == "name" and tok.text in self.consts:
            return _Arg(tok, values=self.consts[tok.text])
        if tok.kind == "name" and tok.text in self.labels:
            return _Arg(tok, values=np.array([float(self.labels[tok.text])]), label=self.labels[tok.text])
        raise self.src.error(
            f"expected a variable declared by find, a constant, a class or a network call, found {tok.text!r}",
            tok.offset,
        )

    def _new_call(self, net: Tok, args: list[_Arg]) -> Call:
        first = next((c for c in self.calls.values() if c.net == net.text and c.equal_to is None), None)
        name = net.text if first is None else f"{net.text}__{'_'.join(_ident(a.tok.text) for a in args)}"
        taken = {c.name for c in self.calls.values()}
        name = next(n for n in [name, *(f"{name}_{k}" for k in range(2, len(taken) + 3))] if n not in taken)
        model = read_model(self.files[net.text])
        init_names = {t.name for t in model.graph.initializer}
        model_inputs = [i for i in model.graph.input if i.name not in init_names]
        if len(model_inputs) != len(args):
            names = ", ".join(i.name for i in model_inputs)
            raise self.src.error(
                f"network '{net.text}' takes {len(model_inputs)} inputs ({names}); found {len(args)} arguments",
                net.offset,
            )
        if len(model.graph.output) != 1:
            raise self.src.error(f"network '{net.text}' has {len(model.graph.output)} outputs; expected 1", net.offset)
        inputs, fed_by = [], []
        for k, (arg, info) in enumerate(zip(args, model_inputs, strict=True)):
            in_name = f"{name}__in" if k == 0 else f"{name}__in{k}"
            inputs.append(self._input(arg, in_name, name, tuple(d or 1 for d in dims_of(info))))
            fed_by.append(arg.var.name if arg.fed and arg.var is not None else None)
        shape = tuple(d or 1 for d in dims_of(model.graph.output[0]))
        out = TensorVar(f"{name}__out", VarKind.OUTPUT, "real", shape, name, net.offset)
        return Call(
            name, net.text, net.offset, None if first is None else first.name, tuple(inputs), out, tuple(fed_by)
        )

    def _input(self, arg: _Arg, in_name: str, call: str, shape: tuple[int, ...]) -> TensorVar:
        """The input variable of one argument (constraints for a shared variable or a constant added)."""
        var = arg.var
        if arg.fed and var is not None:
            return TensorVar(in_name, VarKind.INPUT, "real", var.shape, call, arg.tok.offset)
        if var is not None and var.name not in self.owner:
            self.owner[var.name] = call
            return TensorVar(var.name, VarKind.INPUT, "real", var.shape, call, var.offset)
        if var is not None:  # a second network on the same variable: equal inputs (a substitution)
            inp = TensorVar(in_name, VarKind.INPUT, "real", var.shape, call, arg.tok.offset)
            self.common.extend(
                constraint(lin((var.name, k)), lin((inp.name, k)), Rel.EQ, arg.tok.offset) for k in range(var.size)
            )
            return inp
        values = self._constant(arg, shape)
        inp = TensorVar(in_name, VarKind.INPUT, "real", shape, call, arg.tok.offset)
        for k, v in enumerate(values):
            value = Fraction(float(v))
            self.common.append(constraint(lin((inp.name, k)), ({}, value), Rel.LE, arg.tok.offset))
            self.common.append(constraint(({}, value), lin((inp.name, k)), Rel.LE, arg.tok.offset))
        return inp

    def _constant(self, arg: _Arg, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        assert arg.values is not None
        if arg.values.size == size:
            return arg.values
        if arg.values.size == 1 and arg.label is not None and 0 <= arg.label < size:
            return np.eye(size)[arg.label]
        what = f"class {arg.tok.text} (one-hot of {size})" if arg.label is not None else f"{arg.values.size} values"
        raise self.src.error(
            f"argument {arg.tok.text!r} does not fit an input of shape {list(shape)} ({what})", arg.tok.offset
        )
