"""VNN-LIB 2.0/2.1 reader: networks, typed tensor variables and assertions -> ``Query`` (exact rationals).

Knows nothing of ONNX (``multi/bind.py`` checks the declarations against the models). Every problem in the text
is a ``PropertyError`` at its ``line:col``; 1.0 files are recognised by ``is_vnnlib2`` and left to ``vnnlib.py``.
"""

from __future__ import annotations

import os
import re

from nnverify.errors import PropertyError
from nnverify.spec import sexpr
from nnverify.spec.sexpr import Atom, Node, Source, describe
from nnverify.spec.vnnlib2_expr import FormulaReader, merge_atoms
from nnverify.spec.vnnlib2_types import Constraint, NetworkDecl, Query, Rel, TensorVar, VarKind

__all__ = ["Constraint", "NetworkDecl", "Query", "Rel", "TensorVar", "VarKind", "is_vnnlib2", "load_query"]

_V2_RE = re.compile(r"^[^;\n]*\(\s*(?:vnnlib-version|declare-network)\b", re.MULTILINE)
_VERSION_RE = re.compile(r"<(\d+)\.(\d+)>")
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: Element types accepted as real-valued (proofs are over the reals whatever the declared float type).
REAL_TYPES = frozenset(
    {"real", "Real", "float", "float16", "float32", "float64", "double", "bfloat16", "Float", "Double"}
)
_KINDS = {"declare-input": VarKind.INPUT, "declare-hidden": VarKind.HIDDEN, "declare-output": VarKind.OUTPUT}


def is_vnnlib2(text: str) -> bool:
    """Whether ``text`` is a VNN-LIB 2.x query (it has ``vnnlib-version`` or ``declare-network`` commands)."""
    return _V2_RE.search(text) is not None


class _Reader:
    """One read of one text."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.networks: list[NetworkDecl] = []
        self.variables: dict[str, TensorVar] = {}
        self.names: dict[str, int] = {}  # every declared name -> offset of its declaration
        self.version: tuple[int, int] | None = None

    def read(self) -> Query:
        formulas = FormulaReader(self.src, self.variables)
        nodes = sexpr.read_sexprs(self.src)
        for node in nodes:
            head, args = self._head(node, "a command (vnnlib-version, declare-network or assert)")
            if head.text == "vnnlib-version":
                self._version(node, args)
            elif head.text == "declare-network":
                self._network(node, args)
            elif head.text == "assert":
                if not self.networks:
                    raise self.src.error("expected (declare-network …) before the first assert", node.offset)
                if len(args) != 1:
                    raise self.src.error(f"'assert' takes 1 formula, found {len(args)}", node.offset)
                formulas.add_assert(args[0], node.offset)
            else:
                raise self.src.error(
                    f"expected 'vnnlib-version', 'declare-network' or 'assert', found {describe(head)}", head.offset
                )
        if self.version is None:
            raise self.src.error("expected (vnnlib-version <2.0>) first, found none", 0)
        if not self.networks:
            raise self.src.error("the query declares no network (expected (declare-network …))", 0)
        common, alternatives = formulas.result()
        return Query(self.src.path, self.version, tuple(self.networks), common, alternatives, self.src.text)

    def _head(self, node: Node, expected: str) -> tuple[Atom, tuple[Node, ...]]:
        if isinstance(node, Atom) or not node.items or not isinstance(node.items[0], Atom):
            raise self.src.error(f"expected {expected}, found {describe(node)}", node.offset)
        return node.items[0], merge_atoms(self.src, node.items[1:])

    def _version(self, node: Node, args: tuple[Node, ...]) -> None:
        if self.version is not None or self.networks:
            raise self.src.error("'vnnlib-version' must come once, first", node.offset)
        arg = args[0] if len(args) == 1 else None
        m = _VERSION_RE.fullmatch(arg.text) if isinstance(arg, Atom) else None
        if arg is None or m is None:
            raise self.src.error(f"expected a version like <2.0>, found {describe(arg)}", (arg or node).offset)
        version = (int(m[1]), int(m[2]))
        if version[0] != 2:
            raise self.src.error(f"expected VNN-LIB version <2.x>, found <{m[1]}.{m[2]}>", arg.offset)
        self.version = version

    def _name(self, node: Node | None, what: str, anchor: int) -> Atom:
        if not isinstance(node, Atom) or _NAME_RE.fullmatch(node.text) is None:
            raise self.src.error(f"expected {what} (a letter, then letters, digits, _), found {describe(node)}", anchor)
        return node

    def _declare_name(self, atom: Atom) -> None:
        if atom.text in self.names:
            first = self.src.where(self.names[atom.text])
            raise self.src.error(f"'{atom.text}' is already declared at {first}", atom.offset)
        self.names[atom.text] = atom.offset

    def _network(self, node: Node, args: tuple[Node, ...]) -> None:
        if self.version is None:
            raise self.src.error("expected (vnnlib-version <2.0>) before the first declare-network", node.offset)
        name = self._name(args[0] if args else None, "a network name", (args[0] if args else node).offset)
        self._declare_name(name)
        relation: tuple[str, Atom] | None = None
        tensors: dict[VarKind, list[TensorVar]] = {kind: [] for kind in VarKind}
        for item in args[1:]:
            head, rest = self._head(item, "(declare-input …), (declare-hidden …), (declare-output …) or (equal-to …)")
            if head.text in ("equal-to", "isomorphic-to"):
                if relation is not None:
                    raise self.src.error("a network takes at most one equal-to or isomorphic-to", item.offset)
                target = self._name(rest[0] if len(rest) == 1 else None, "one network name", item.offset)
                relation = (head.text, target)
            elif head.text in _KINDS:
                kind = _KINDS[head.text]
                tensors[kind].append(self._tensor(item, kind, rest, name.text))
            else:
                raise self.src.error(
                    f"expected declare-input, declare-hidden, declare-output, equal-to or isomorphic-to, "
                    f"found {describe(head)}",
                    head.offset,
                )
        for kind in (VarKind.INPUT, VarKind.OUTPUT):
            if not tensors[kind]:
                raise self.src.error(f"network '{name.text}' declares no {kind.value}", node.offset)
        equal_to: str | None = None
        isomorphic_to: str | None = None
        if relation is not None:
            related = self._related(relation[1], tensors, relation[0] == "equal-to")
            equal_to, isomorphic_to = (related, None) if relation[0] == "equal-to" else (None, related)
        self.networks.append(
            NetworkDecl(
                name.text,
                node.offset,
                tuple(tensors[VarKind.INPUT]),
                tuple(tensors[VarKind.HIDDEN]),
                tuple(tensors[VarKind.OUTPUT]),
                equal_to,
                isomorphic_to,
                relation[1].offset if relation else node.offset,
            )
        )

    def _related(self, target: Atom, tensors: dict[VarKind, list[TensorVar]], equal: bool) -> str:
        """Check an equal-to/isomorphic-to target: declared before, itself unrelated, same inputs and outputs."""
        other = next((n for n in self.networks if n.name == target.text), None)
        if other is None:
            known = ", ".join(n.name for n in self.networks) or "none"
            raise self.src.error(f"unknown network '{target.text}' (declared before this: {known})", target.offset)
        if other.equal_to or other.isomorphic_to:
            raise self.src.error(f"network '{target.text}' is itself declared equal-to/isomorphic-to", target.offset)
        for kind, theirs in ((VarKind.INPUT, other.inputs), (VarKind.OUTPUT, other.outputs)):
            mine = tensors[kind]
            shapes = [t.shape for t in mine] == [t.shape for t in theirs]
            types = not equal or [t.elem_type for t in mine] == [t.elem_type for t in theirs]
            if not (shapes and types):
                raise self.src.error(
                    f"the {kind.value}s differ from those of '{target.text}' (shapes{' and types' if equal else ''} "
                    "must match)",
                    target.offset,
                )
        return other.name

    def _tensor(self, node: Node, kind: VarKind, rest: tuple[Node, ...], network: str) -> TensorVar:
        expected = 4 if kind is VarKind.HIDDEN else 3
        onnx = ' "<onnx name>"' if expected == 4 else ""
        usage = f"(declare-{kind.value} <name> <type> [<shape>]{onnx})"
        initialized = (
            kind is VarKind.INPUT and len(rest) == 4 and isinstance(rest[3], Atom) and rest[3].text == "initialized"
        )
        if len(rest) != expected + initialized:
            raise self.src.error(f"expected {usage}, found {len(rest)} arguments", node.offset)
        name = self._name(rest[0], "a variable name", rest[0].offset)
        typ = rest[1]
        if not isinstance(typ, Atom) or _NAME_RE.fullmatch(typ.text) is None:
            raise self.src.error(f"expected an element type (real, float32, …), found {describe(typ)}", typ.offset)
        if typ.text not in REAL_TYPES:
            raise self.src.error(
                f"element type '{typ.text}' is not supported: nnverify decides over the reals "
                "(real, float16, float32, float64)",
                typ.offset,
            )
        shape = self._shape(rest[2])
        onnx_name = None
        if kind is VarKind.HIDDEN:
            quoted = rest[3]
            if not isinstance(quoted, Atom) or len(quoted.text) < 2 or quoted.text[0] != '"' or quoted.text[-1] != '"':
                raise self.src.error(
                    f"expected the ONNX tensor name in quotes, found {describe(quoted)}", quoted.offset
                )
            onnx_name = quoted.text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        self._declare_name(name)
        var = TensorVar(name.text, kind, typ.text, shape, network, node.offset, onnx_name, bool(initialized))
        self.variables[name.text] = var
        return var

    def _shape(self, node: Node) -> tuple[int, ...]:
        text = node.text if isinstance(node, Atom) else ""
        if not (text.startswith("[") and text.endswith("]")):
            raise self.src.error(f"expected a shape like [1,5] or [], found {describe(node)}", node.offset)
        inner = text[1:-1]
        if not inner:
            return ()
        dims = inner.split(",")
        if not all(re.fullmatch(r"[0-9]+", d) for d in dims) or any(int(d) < 1 for d in dims):
            raise self.src.error(f"expected positive integer dimensions, found {describe(node)}", node.offset)
        return tuple(int(d) for d in dims)


def parse_query(text: str, path: str = "<string>") -> Query:
    """Parse VNN-LIB 2.x text.

    Raises:
        PropertyError: At the ``line:col`` of the first problem.
    """
    return _Reader(Source(text, path, PropertyError)).read()


def load_query(path: str | os.PathLike[str]) -> Query:
    """Read and parse a VNN-LIB 2.x file (plain or gzip-compressed); see ``parse_query``.

    Raises:
        InputFileError: The file is missing or unreadable.
        PropertyError: The file is not a valid query.
    """
    return parse_query(sexpr.read_text(path, PropertyError), os.fspath(path))
