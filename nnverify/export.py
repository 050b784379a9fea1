"""``nnverify export``: the exact query of a network and property as a file other tools can run.

Formats: ``prolog`` (the very program the clpq backend runs; ``swipl query.pl`` prints ``sat``/``unsat``),
``lp`` and ``mps`` (the MILP the HiGHS backend solves, written by HiGHS). The query of each input box is the
one ``nnverify check`` would send to its exact backend: sound bounds first (interval, symbolic,
back-substitution), disjuncts they rule out dropped. A property with several input boxes gives one file per
box (``query.box1.pl``, ``query.box2.pl`` ...): the property is violated if any of them is ``sat``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from nnverify.encode.network import Encoding, encode_query
from nnverify.encode.prolog import Precision, write_program
from nnverify.errors import PropertyError
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers
from nnverify.options import Options
from nnverify.outputs import write_output
from nnverify.search.exact import bound_box
from nnverify.spec.property import Disjunct
from nnverify.spec.vnnlib import load_property


class ExportFormat(StrEnum):
    PROLOG = "prolog"
    LP = "lp"
    MPS = "mps"


@dataclass(frozen=True, slots=True)
class ExportedBox:
    """One written file and what the bounds alone said about its box."""

    path: Path
    decided_by_bounds: bool


def export_query(
    network: str | os.PathLike[str],
    prop: str | os.PathLike[str],
    out: str | os.PathLike[str],
    fmt: ExportFormat,
    precision: Precision = Precision.EXACT,
) -> list[ExportedBox]:
    """Write the exact query(ies) of ``prop`` on ``network`` to ``out`` (one file per input box).

    Raises:
        NnverifyError: bad model or property (nothing is written).
    """
    graph = load_network(network)
    prop_obj = load_property(prop, graph.n_inputs, graph.n_outputs)
    if not prop_obj.disjuncts:
        raise PropertyError("the property's input region is empty; there is nothing to export", str(prop), 1, 1)
    # Exact programs keep the network's own weights (no float64 products of layers); MILPs use the merged view.
    layers = to_layers(graph, merge=not (fmt is ExportFormat.PROLOG and precision is Precision.EXACT))
    groups: dict[bytes, list[Disjunct]] = {}
    for d in prop_obj.disjuncts:
        groups.setdefault(d.lb.tobytes() + d.ub.tobytes(), []).append(d)
    out = Path(out)
    targets = [out] if len(groups) <= 1 else [_numbered(out, k + 1) for k in range(len(groups))]
    written: list[tuple[Path, Callable[[Path], None], bool]] = []
    for target, group in zip(targets, groups.values(), strict=False):
        query = bound_box(layers, group[0].lb, group[0].ub, group, Options())
        enc = encode_query(layers, query.lbs, query.ubs, query.live)
        if not query.live:
            enc.problem.add_disjunction([])  # the bounds prove the box safe: nothing can be reached
        header = [f"network: {network}", f"property: {prop}"]
        if len(groups) > 1:
            header.append(f"input box {targets.index(target) + 1} of {len(groups)}")
        if not query.live:
            header.append("nnverify's bounds already rule out every disjunct of this box: the program says unsat.")
        written.append((target, _writer(fmt, enc, precision, header), not query.live))
    suffix = None if fmt is ExportFormat.PROLOG else f".{fmt.value}"
    for target, write, _ in written:
        _atomic(target, write, suffix or target.suffix)
    return [ExportedBox(target, decided) for target, _, decided in written]


def _numbered(path: Path, k: int) -> Path:
    return path.with_name(f"{path.stem}.box{k}{path.suffix}")


def _writer(fmt: ExportFormat, enc: Encoding, precision: Precision, header: list[str]) -> Callable[[Path], None]:
    if fmt is ExportFormat.PROLOG:
        text = write_program(enc.problem, precision, header=header, inputs=enc.x_idx).text

        def write_text(path: Path) -> None:
            path.write_text(text)

        return write_text
    from nnverify.backends.highs import write_milp

    return lambda path: write_milp(enc.problem, path, fmt.value)


def _atomic(target: Path, write: Callable[[Path], None], suffix: str) -> None:
    """Write through a temporary file in the same directory, then rename (never half-written). HiGHS picks
    the file format by the suffix, so the temporary file has the format's."""
    write_output(target, write, suffix=suffix)
