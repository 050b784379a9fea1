"""Every relative link and every repository path named in README.md, docs/*.md and CONTRIBUTING.md exists.

Fenced code blocks are skipped (they show commands and outputs, not references); inline code that starts with
a top-level directory of the repository is read as a path.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    ROOT / "bench" / "results" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
PATH_PREFIXES = ("nnverify/", "bench/", "docs/", "properties/", "networks/", "scripts/", "tests/")

#: Paths named in the docs that are not in the repository on purpose, with the reason.
EXCEPTIONS: dict[str, str] = {}

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def _prose(text: str) -> str:
    """The text outside fenced code blocks."""
    kept: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(line)
    return "\n".join(kept)


def _slug(heading: str) -> str:
    """The anchor the code host gives a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in _prose(path.read_text()).splitlines() if re.match(r"#{1,6} ", line)}


def _expand_braces(path: str) -> list[str]:
    """`a/{b,c}.onnx` → [`a/b.onnx`, `a/c.onnx`]; a brace without a comma is a placeholder (a glob)."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if match is None:
        return [path]
    return [
        expanded
        for option in match.group(1).split(",")
        for expanded in _expand_braces(path[: match.start()] + option + path[match.end() :])
    ]


def _exists(path: str) -> bool:
    pattern = re.sub(r"<[^>]*>|\{[^}]*\}|\*", "*", path)
    if "*" in pattern:
        return any(ROOT.glob(pattern.rstrip("/")))
    return (ROOT / path).exists()


def _named_paths(text: str) -> set[str]:
    paths: set[str] = set()
    for code in INLINE_CODE.findall(_prose(text)):
        token = code.split()[0] if code.split() else ""
        if token.startswith(PATH_PREFIXES):
            token = re.sub(r"(:\d+)+$|[.,;:)]+$|::\w+$", "", token)
            paths.update(_expand_braces(token))
    return paths


def _links(text: str) -> set[str]:
    return {
        target
        for target in LINK.findall(_prose(text))
        if not re.match(r"[a-z]+:", target) and not target.startswith("#")
    }


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_exist(doc: Path) -> None:
    missing = []
    for target in sorted(_links(doc.read_text())):
        file_part, _, anchor = target.partition("#")
        resolved = (doc.parent / file_part).resolve()
        if not resolved.exists():
            missing.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            missing.append(f"{target} (no heading with that anchor)")
    assert not missing, f"{doc.name}: broken links: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_paths_exist(doc: Path) -> None:
    missing = sorted(p for p in _named_paths(doc.read_text()) if p not in EXCEPTIONS and not _exists(p))
    assert not missing, f"{doc.name}: paths that do not exist: {missing}"


def test_the_checker_notices_a_missing_path_and_link(tmp_path: Path) -> None:
    text = "See `nnverify/no_such_module.py` and [this](docs/no_such_page.md).\n```\n`bench/ignored`\n```\n"
    assert _named_paths(text) == {"nnverify/no_such_module.py"}
    assert not _exists("nnverify/no_such_module.py")
    assert _links(text) == {"docs/no_such_page.md"}
    assert _expand_braces("networks/porous_bnn_d{2,3}.onnx") == [
        "networks/porous_bnn_d2.onnx",
        "networks/porous_bnn_d3.onnx",
    ]
    assert _exists("networks/porous_bnn_d{2,3}.onnx".replace("{2,3}", "<w>"))


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme_links = _links((ROOT / "README.md").read_text())
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert pages <= readme_links, f"docs pages the README does not link: {sorted(pages - readme_links)}"


def test_the_python_api_example_runs_and_prints_what_the_page_says() -> None:
    page = (ROOT / "docs" / "python-api.md").read_text().split("## A runnable example")[1]
    blocks = re.findall(r"```(\w*)\n(.*?)```", page, flags=re.DOTALL)
    code = next(body for lang, body in blocks if lang == "python")
    shown = next(body for lang, body in blocks if lang == "").splitlines()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.splitlines()
    assert [line.split()[:2] for line in printed[:1]] == [shown[0].split()[:2]]  # verdict and method; time varies
    assert printed[1:] == shown[1:]
