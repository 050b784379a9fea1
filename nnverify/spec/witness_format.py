"""Reader of VNN-COMP witness (counterexample) files: ``((X_0 v) … (Y_0 v) …)``, optionally after ``sat``.

Only the syntax is checked here (names, numbers, no duplicates, indices without gaps); whether the values
fit a network and violate a property is decided by ``nnverify.witness``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from nnverify.errors import WitnessFormatError
from nnverify.spec import sexpr
from nnverify.spec.sexpr import Atom, Node, SList, Source, describe

_LETTER = ("X", "Y")
_SHAPE = "'((X_0 value) … (Y_0 value) …)'"


@dataclass(frozen=True, slots=True)
class WitnessValues:
    """The values of a witness file.

    Attributes:
        x: Input values by index (``X_i``), indices ``0 … n-1``; never empty.
        y: Output values by index (``Y_j``), indices ``0 … m-1``; may be empty if the file gives none.
    """

    x: dict[int, float]
    y: dict[int, float]


def parse_witness(text: str, path: str = "<string>") -> WitnessValues:
    """Parse witness text (the VNN-COMP result-file form with a leading ``sat`` line is accepted too).

    Raises:
        WitnessFormatError: At the ``line:col`` of the first problem.
    """
    src = Source(text, path, WitnessFormatError)
    nodes = sexpr.read_sexprs(src)
    if nodes and isinstance(nodes[0], Atom) and nodes[0].text == "sat":
        nodes = nodes[1:]
    if not nodes:
        raise src.error(f"expected {_SHAPE}, found end of file", len(text))
    body = nodes[0]
    if not isinstance(body, SList):
        raise src.error(f"expected 'sat' or {_SHAPE}, found {describe(body)}", body.offset)
    if len(nodes) > 1:
        raise src.error(f"expected end of file after the witness, found {describe(nodes[1])}", nodes[1].offset)
    values: tuple[dict[int, float], dict[int, float]] = ({}, {})
    seen: dict[tuple[int, int], int] = {}
    for entry in body.items:
        kind, index, value = _entry(src, entry)
        if (kind, index) in seen:
            first = src.where(seen[(kind, index)])
            raise src.error(f"duplicate entry for {_LETTER[kind]}_{index} (first at {first})", entry.offset)
        seen[(kind, index)] = entry.offset
        values[kind][index] = value
    if not values[0]:
        raise src.error(f"expected {_SHAPE}, found no X_ entries", body.offset)
    for kind in (0, 1):
        _check_contiguous(src, values[kind], kind, body.offset)
    return WitnessValues(x=values[0], y=values[1])


def _entry(src: Source, entry: Node) -> tuple[int, int, float]:
    """``(kind, index, value)`` of one ``(X_i value)`` entry."""
    if not isinstance(entry, SList) or len(entry.items) != 2:
        raise src.error(f"expected an entry '(X_<i> value)' or '(Y_<j> value)', found {describe(entry)}", entry.offset)
    name, number = entry.items
    var = sexpr.parse_var_name(name.text) if isinstance(name, Atom) else None
    if var is None:
        raise src.error(f"expected a variable name X_<i> or Y_<j>, found {describe(name)}", name.offset)
    value = sexpr.parse_number(number.text) if isinstance(number, Atom) else None
    if value is None:
        raise src.error(f"expected a number, found {describe(number)}", number.offset)
    if not math.isfinite(value):
        raise src.error(f"number {describe(number)} is outside the float64 range", number.offset)
    return var[0], var[1], value


def _check_contiguous(src: Source, values: dict[int, float], kind: int, offset: int) -> None:
    if values and max(values) != len(values) - 1:
        letter = _LETTER[kind]
        missing = next(i for i in range(len(values)) if i not in values)
        raise src.error(
            f"expected {letter}_0 … {letter}_{max(values)} without gaps, found no {letter}_{missing}", offset
        )


def load_witness(path: str | os.PathLike[str]) -> WitnessValues:
    """Read and parse a witness file, plain or gzip-compressed (``.gz`` suffix or gzip magic bytes).

    Raises:
        InputFileError: The file is missing, unreadable or broken gzip.
        WitnessFormatError: The text is not a witness.
    """
    return parse_witness(sexpr.read_text(path, WitnessFormatError), os.fspath(path))
