"""Where the VNN-COMP benchmark sets with ground truth live: ``$NNVERIFY_BENCHMARKS`` if set, else
``../shared/benchmarks`` next to the repository. Tests that read them are skipped (with this path in the reason)
when the directory is missing, e.g. in a clone made elsewhere.

The sizes of each set's networks are read from the data itself (each instance's ONNX graph), not from a table of
set names, so a new set is covered by every test that iterates over the sets.
"""

from __future__ import annotations

import csv
import math
import os
from functools import cache
from pathlib import Path

import onnx

BENCHMARKS_DIR = Path(
    os.environ.get("NNVERIFY_BENCHMARKS") or Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
)


def _declared_size(value: onnx.ValueInfoProto) -> int:
    """Number of elements of a graph input or output as declared (a dynamic or zero batch dimension counts 1)."""
    dims = value.type.tensor_type.shape.dim
    return math.prod(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims)


@cache
def onnx_io_sizes(path: Path) -> tuple[int, int]:
    """(inputs, outputs) of an ONNX network, read from its declared graph input and output shapes.

    Only the graph's declarations are read (no operator support needed), so networks that nnverify cannot load
    yet still give their sizes.
    """
    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    return _declared_size(inputs[0]), _declared_size(model.graph.output[0])


@cache
def property_sizes() -> dict[Path, tuple[int, int]]:
    """(inputs, outputs) of every VNN-LIB file named in a set's ``instances.csv``, from the instance's network."""
    sizes: dict[Path, tuple[int, int]] = {}
    for listing in sorted(BENCHMARKS_DIR.glob("*/instances.csv")):
        root = listing.parent
        with listing.open() as handle:
            for row in csv.reader(handle):
                if len(row) >= 2:
                    sizes[(root / row[1].strip()).resolve()] = onnx_io_sizes((root / row[0].strip()).resolve())
    return sizes


@cache
def witness_index() -> dict[Path, dict[str, str]]:
    """The ``counterexamples/index.csv`` row of every indexed witness file (``onnx`` made absolute); the ``test``
    set's witnesses, which have no index, all belong to ``test_sat.onnx`` and list every output."""
    rows: dict[Path, dict[str, str]] = {}
    for index in sorted(BENCHMARKS_DIR.glob("*/counterexamples/index.csv")):
        root = index.parent.parent
        with index.open() as handle:
            for row in csv.DictReader(handle):
                rows[(root / row["file"]).resolve()] = row | {"onnx": str((root / row["onnx"]).resolve())}
    test_dir = BENCHMARKS_DIR / "test"
    for path in sorted(test_dir.glob("counterexamples/*/test_sat_test_prop.counterexample.gz")):
        rows[path.resolve()] = {"onnx": str((test_dir / "test_sat.onnx").resolve()), "helper_check": "valid"}
    return rows
