"""S-expression reader shared by the VNN-LIB and witness parsers: text -> positioned atoms and lists.

It knows parentheses, atoms and ``;`` comments only; what the expressions mean is decided by the callers.
Parsing uses an explicit stack, so deeply nested input cannot exhaust Python's recursion limit.
"""

from __future__ import annotations

import bisect
import gzip
import os
import re
import zlib
from pathlib import Path
from typing import NamedTuple

from nnverify.budget import CHECK_EVERY, Budget
from nnverify.errors import InputFileError, SourceError

#: Deepest accepted parenthesis nesting; callers may walk the tree recursively up to this depth.
MAX_DEPTH = 100

_TOKEN_RE = re.compile(r";[^\r\n]*|[()]|[^\s();]+")  # whitespace is skipped by finditer
#: Line ends: LF, CRLF and CR alone (old Mac files); a ``;`` comment ends at any of them.
_LINE_END_RE = re.compile(r"\r\n?|\n")
#: The UTF-8 byte-order mark some editors put first; invisible, so it is skipped rather than reported.
_BOM = "\ufeff"
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII digits only
_VAR_RE = re.compile(r"([XY])_(0|[1-9][0-9]{0,8})")
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_SHOWN = 40


class Atom(NamedTuple):
    """A symbol or number token and its character offset in the source text."""

    text: str
    offset: int


class SList(NamedTuple):
    """A parenthesised list; ``offset`` is the position of its ``(``."""

    items: tuple[Atom | SList, ...]
    offset: int


Node = Atom | SList


class Source:
    """The text being parsed, its display path, and the error class to raise, with offset -> line:col."""

    def __init__(self, text: str, path: str, error_cls: type[SourceError]) -> None:
        self.text = text
        self.path = path
        self.error_cls = error_cls
        self._line_starts = [0] + [m.end() for m in _LINE_END_RE.finditer(text)]

    def position(self, offset: int) -> tuple[int, int]:
        """The 1-based ``(line, col)`` of a character offset."""
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def error(self, message: str, offset: int) -> SourceError:
        """An error of this source's class located at ``offset`` (raise it)."""
        line, col = self.position(offset)
        return self.error_cls(message, self.path, line, col)

    def where(self, offset: int) -> str:
        """``line:col`` of an offset, for messages that point at a second place."""
        line, col = self.position(offset)
        return f"{line}:{col}"


def describe(node: Node | None) -> str:
    """A short quoted rendering of a node for "found ..." messages (never recursive)."""
    if node is None:
        return "end of list"
    if isinstance(node, Atom):
        text = node.text if len(node.text) <= _MAX_SHOWN else node.text[:_MAX_SHOWN] + "…"
        return f"'{text}'"
    if not node.items:
        return "'()'"
    head = node.items[0]
    inner = describe(head)[1:-1] if isinstance(head, Atom) else "(…)"
    return f"'({inner} …)'"


def parse_number(text: str) -> float | None:
    """The float64 nearest to a decimal/scientific literal (``inf`` if it overflows), None if not a number."""
    if _NUMBER_RE.fullmatch(text) is None:
        return None
    return float(text)


def parse_var_name(text: str) -> tuple[int, int] | None:
    """``(0, i)`` for ``X_i``, ``(1, j)`` for ``Y_j``, None if ``text`` is not such a name.

    Indices are decimal without leading zeros and below 10**9 (so ``int()`` is cheap and cannot fail).
    """
    m = _VAR_RE.fullmatch(text)
    if m is None:
        return None
    return (0 if m[1] == "X" else 1), int(m[2])


def read_sexprs(src: Source, budget: Budget | None = None) -> list[Node]:
    """Parse every top-level expression of ``src.text``; ``BudgetExpired`` once ``budget`` runs out (looked at
    every ``16 * CHECK_EVERY`` characters).

    Raises:
        SourceError: (of ``src.error_cls``) on unbalanced parentheses or nesting deeper than ``MAX_DEPTH``.
    """
    top: list[Node] = []
    stack: list[tuple[int, list[Node]]] = []  # (offset of '(', items so far)
    items = top
    next_check = 0  # text offset at which to look at the budget again
    for m in _TOKEN_RE.finditer(src.text, 1 if src.text.startswith(_BOM) else 0):
        if budget is not None and m.start() >= next_check:
            budget.check("reading the property")
            next_check = m.start() + 16 * CHECK_EVERY
        token = m.group()
        if token == "(":
            if len(stack) >= MAX_DEPTH:
                raise src.error(f"parentheses nested deeper than {MAX_DEPTH} levels", m.start())
            stack.append((m.start(), items))
            items = []
        elif token == ")":
            if not stack:
                raise src.error("unexpected ')' with no matching '('", m.start())
            start, parent = stack.pop()
            parent.append(SList(tuple(items), start))
            items = parent
        elif token[0] != ";":
            items.append(Atom(token, m.start()))
    if stack:
        start = stack[-1][0]
        raise src.error(f"expected ')' to close '(' opened at {src.where(start)}, found end of file", len(src.text))
    return top


def read_text(path: str | os.PathLike[str], error_cls: type[SourceError]) -> str:
    """Read a UTF-8 text file, gunzipping it if it is gzip-compressed (``.gz`` or by magic bytes).

    A leading byte-order mark is dropped (columns of the first line then count from the first visible character).

    Raises:
        InputFileError: The file is missing or unreadable, or not valid gzip data.
        SourceError: (of ``error_cls``) at the line:col of the first byte that is not UTF-8.
    """
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{name}: no such file") from None
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if data.startswith(_GZIP_MAGIC) or name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputFileError(f"{name}: not a valid gzip file ({exc})") from None
    try:
        return data.decode("utf-8").removeprefix(_BOM)
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", errors="replace")
        src = Source(before, name, error_cls)
        raise src.error(f"expected UTF-8 text, found byte 0x{data[exc.start]:02x}", len(before)) from None
