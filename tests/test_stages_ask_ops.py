"""The stages (bounds, search, encode, attack) and everything outside ``nnverify/graph/`` ask the op
(``graph/ops/base.py``'s ``Op`` methods), never name an op type: an AST check for ``op_type`` compared with string
constants, matched on them or tested by prefix."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "nnverify"
#: The one package that may name op types: the ops themselves, the importer, the model checks and the graph
#: rewrites (``lowering.py``, ``lowering_smooth.py``, ``tail.py``). Every stage (bounds, search, encode, attack)
#: and everything else asks the op (issue 24: "the stages must not name op types").
OP_LAYER = ROOT / "graph"
#: ``path relative to nnverify/: reason`` for a comparison that may stay outside it. Empty: none remains.
ALLOWED: dict[str, str] = {}


def _stage_files() -> list[Path]:
    return [path for path in sorted(ROOT.rglob("*.py")) if OP_LAYER not in path.parents]


def _names_op_type(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "op_type") or (
        isinstance(node, ast.Name) and node.id == "op_type"
    )


def _strings(node: ast.expr) -> bool:
    """A string constant, or a tuple/list/set of them."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(_strings(e) for e in node.elts)


def op_type_literals(source: str) -> list[int]:
    """Line numbers where ``source`` compares ``op_type`` with string constants (``==``, ``!=``, ``in``, ``not
    in``), matches it against string patterns, or calls ``startswith``/``endswith`` on it."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_names_op_type(o) for o in operands) and any(_strings(o) for o in operands):
                lines.append(node.lineno)
        elif isinstance(node, ast.Match) and _names_op_type(node.subject):
            patterns = [case.pattern for case in node.cases]
            if any(isinstance(p, (ast.MatchValue, ast.MatchOr)) for p in patterns):
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("startswith", "endswith")
            and _names_op_type(node.func.value)
        ):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize(
    "source",
    [
        'if node.op_type == "Conv": pass',
        'ok = "Gemm" != node.op_type',
        'ok = node.op_type in ("Conv", "ConvTranspose")',
        'ok = op_type not in ["Gemm", "MatMul"]',
        'match node.op_type:\n    case "Conv":\n        pass',
        'ok = node.op_type.startswith("Conv")',
    ],
)
def test_the_check_finds_each_form(source: str) -> None:
    assert op_type_literals(source) == [1]


def test_the_check_lets_the_op_be_asked() -> None:
    source = "op = REGISTRY[node.op_type]\nok = op.affine and node.op_type == other.op_type\nmsg = f'{node.op_type}'"
    assert op_type_literals(source) == []


def test_no_stage_names_an_op_type() -> None:
    found = {}
    files = _stage_files()
    names = {str(path.relative_to(ROOT)) for path in files}
    assert {"bounds/sparse_view.py", "search/bab.py", "encode/network.py", "attack.py", "pipeline.py"} <= names
    assert not any(name.startswith("graph/") for name in names)
    for path in files:
        key = str(path.relative_to(ROOT))
        lines = op_type_literals(path.read_text())
        if lines and key not in ALLOWED:
            found[key] = lines
    assert found == {}, f"stages name op types (ask the op instead, graph/ops/base.py): {found}"
    stale = [key for key in ALLOWED if not op_type_literals((ROOT / key).read_text())]
    assert stale == [], f"allowed exceptions that no longer name op types: {stale}"
