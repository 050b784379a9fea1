"""Reading VNN-COMP ``instances.csv`` files (``onnx,vnnlib,timeout_s``, no header) into ``Instance`` objects."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from nnverify.errors import InputFileError, SourceError


class InstancesFileError(SourceError):
    """A row of an ``instances.csv`` file is malformed."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One benchmark instance: a network, a property and the per-instance time limit.

    Attributes:
        category: Benchmark category (VNN-COMP's first results column), e.g. ``acasxu``.
        onnx: Absolute path of the ONNX network.
        vnnlib: Absolute path of the VNN-LIB property.
        onnx_rel: The network path as written in ``instances.csv`` (the results CSV uses it).
        vnnlib_rel: The property path as written in ``instances.csv``.
        timeout_s: The instance's time limit in seconds.
    """

    category: str
    onnx: Path
    vnnlib: Path
    onnx_rel: str
    vnnlib_rel: str
    timeout_s: float

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the instance in a results CSV: ``(category, onnx, vnnlib)`` as written."""
        return (self.category, self.onnx_rel, self.vnnlib_rel)


def read_instances(csv_path: str | Path, category: str | None = None) -> list[Instance]:
    """Read a VNN-COMP ``instances.csv``.

    Args:
        csv_path: The file; rows ``onnx,vnnlib,timeout_s`` without header, paths relative to its directory.
            Blank lines are ignored.
        category: Category of every instance; default: the name of the CSV's directory.

    Returns:
        The instances in file order.

    Raises:
        InputFileError: The file does not exist or cannot be read.
        InstancesFileError: A row does not have three fields or its timeout is not a positive number.
    """
    path = Path(csv_path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read instances file ({exc.strerror or exc})") from exc
    base = path.resolve().parent
    name = category if category is not None else base.name
    instances = []
    for lineno, fields in enumerate(csv.reader(text.splitlines()), start=1):
        if not fields or all(not f.strip() for f in fields):
            continue
        instances.append(_parse_row(fields, base, name, str(path), lineno))
    return instances


def _parse_row(fields: list[str], base: Path, category: str, path: str, lineno: int) -> Instance:
    """One ``onnx,vnnlib,timeout_s`` row -> ``Instance`` (``SourceError`` with line:col on a bad row)."""
    if len(fields) != 3:
        raise InstancesFileError(f"expected 3 fields 'onnx,vnnlib,timeout_s', found {len(fields)}", path, lineno, 1)
    onnx_rel, vnnlib_rel, timeout_text = (f.strip() for f in fields)
    try:
        timeout_s = float(timeout_text)
    except ValueError:
        timeout_s = float("nan")
    if not timeout_s > 0 or timeout_s == float("inf"):
        col = len(fields[0]) + len(fields[1]) + 3
        raise InstancesFileError(f"expected a positive timeout in seconds, found {timeout_text!r}", path, lineno, col)
    return Instance(
        category=category,
        onnx=base / onnx_rel,
        vnnlib=base / vnnlib_rel,
        onnx_rel=onnx_rel,
        vnnlib_rel=vnnlib_rel,
        timeout_s=timeout_s,
    )
