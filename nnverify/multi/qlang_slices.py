"""Slices of the query language: ``i[:2, :2] = image[:2, :2]``, ``i[0, 2:5] in [0, 1]`` (``multi/qlang.py``).

A slice has one part per dimension (leading size-1 dimensions may be left out, trailing ones are whole): an
index ``k`` or a range ``a:b`` (either end optional). Both sides of a comparison must select the same shape;
a number on the right is compared with every element. The comparison holds element by element.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from nnverify.multi.qlang_lex import CMP, Dnf, Lin, Tok, constraint, lin
from nnverify.spec.sexpr import Source
from nnverify.spec.vnnlib2_types import Rel, TensorVar

#: A selection: the selected elements' flat indices (row-major) and the selected shape.
Selection = tuple[list[int], tuple[int, ...]]


def select(shape: tuple[int, ...], parts: list[int | tuple[int | None, int | None]]) -> Selection | str:
    """The flat indices ``parts`` select from a tensor of ``shape``, or why they cannot."""
    dims = list(shape)
    while len(dims) > len(parts) and dims and dims[0] == 1:
        dims.pop(0)
    if len(parts) > len(dims):
        return f"{len(parts)} indices for shape {list(shape)}"
    ranges: list[range] = []
    out_shape = []
    for dim, part in zip(dims, parts + [(None, None)] * (len(dims) - len(parts)), strict=True):
        if isinstance(part, int):
            if part >= dim:
                return f"index {part} out of range for shape {list(shape)}"
            ranges.append(range(part, part + 1))
            continue
        lo, hi = part
        r = range(*slice(lo, hi).indices(dim))
        if len(r) == 0:
            return f"the range {lo if lo is not None else ''}:{hi if hi is not None else ''} selects nothing"
        ranges.append(r)
        out_shape.append(len(r))
    grid = np.ravel_multi_index(np.meshgrid(*ranges, indexing="ij"), dims) if ranges else np.zeros(1, dtype=int)
    return [int(k) for k in np.asarray(grid).ravel()], tuple(out_shape)


class SlicesMixin:
    """The slice comparisons of the translator (``qlang._Translator``)."""

    src: Source
    finds: dict[str, TensorVar]
    consts: dict[str, np.ndarray]
    const_shapes: dict[str, tuple[int, ...]]

    if TYPE_CHECKING:  # the token methods of the translator

        def peek(self, ahead: int = 0) -> Tok: ...
        def take(self) -> Tok: ...
        def expect(self, text: str, what: str | None = None) -> Tok: ...
        def accept(self, text: str) -> bool: ...
        def integer(self) -> int: ...
        def number(self) -> Fraction: ...
        def _interval(self) -> tuple[Fraction, Fraction]: ...

    def slice_ahead(self) -> bool:
        """Whether the next tokens are a variable or constant with a ``[…:…]`` slice."""
        tok = self.peek()
        if tok.kind != "name" or (tok.text not in self.finds and tok.text not in self.consts):
            return False
        if self.peek(1).text != "[":
            return False
        k = 2
        while self.peek(k).text not in ("]", "end of file"):
            if self.peek(k).text == ":":
                return True
            k += 1
        return False

    def slice_atom(self) -> Dnf:
        """``a[slice] OP b[slice]``, ``a[slice] OP number`` or ``a[slice] in [lo, hi]``."""
        left, shape = self.sliced()[:2]
        op = self.take()
        if op.text == "in":
            lo, hi = self._interval()
            rows = [constraint(({}, lo), x, Rel.LE, op.offset) for x in left]
            return [tuple(rows + [constraint(x, ({}, hi), Rel.LE, op.offset) for x in left])]
        if op.text not in CMP:
            raise self.src.error(f"expected a comparison (<, <=, >, >=, =) or 'in', found {op.text!r}", op.offset)
        right: list[Lin]
        if self.peek().kind == "num" or self.peek().text == "-":
            right = [({}, self.number())] * len(left)
        else:
            tok = self.peek()
            right, other, _, _ = self.sliced()
            if other != shape:
                raise self.src.error(f"slices of shapes {list(shape)} and {list(other)} differ", tok.offset)
        pairs = [(r, x) if op.text in (">", ">=") else (x, r) for x, r in zip(left, right, strict=True)]
        return [tuple(constraint(a, b, CMP[op.text], op.offset) for a, b in pairs)]

    def sliced(self) -> tuple[list[Lin], tuple[int, ...], Tok, list[int]]:
        """A variable or constant with an optional slice: its terms, selected shape, token and flat indices."""
        tok = self.take()
        if tok.kind != "name" or (tok.text not in self.finds and tok.text not in self.consts):
            raise self.src.error(f"expected a variable or constant, found {tok.text!r}", tok.offset)
        shape = self.finds[tok.text].shape if tok.text in self.finds else self.const_shapes[tok.text]
        parts: list[int | tuple[int | None, int | None]] = []
        if self.peek().text == "[":
            open_ = self.take()
            while True:
                parts.append(self._part())
                if not self.accept(","):
                    break
            self.expect("]", "',' or ']'")
            chosen = select(shape, parts)
            if isinstance(chosen, str):
                raise self.src.error(f"'{tok.text}': {chosen}", open_.offset)
        else:
            chosen = list(range(int(np.prod(shape)))), tuple(d for d in shape if d != 1)
        flat, out_shape = chosen
        if tok.text in self.finds:
            return [lin((tok.text, k)) for k in flat], out_shape, tok, flat
        values = self.consts[tok.text]
        return [({}, Fraction(float(values[k]))) for k in flat], out_shape, tok, flat

    def _part(self) -> int | tuple[int | None, int | None]:
        lo = self.integer() if self.peek().kind == "num" else None
        if not self.accept(":"):
            if lo is None:
                tok = self.peek()
                raise self.src.error(f"expected an index or a range a:b, found {tok.text!r}", tok.offset)
            return lo
        hi = self.integer() if self.peek().kind == "num" else None
        return lo, hi
