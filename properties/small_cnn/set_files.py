"""Write a generated property set's files: each row's VNN-LIB text, instances.csv, expected.csv, metrics.json
(shared by the small_cnn, control5 and control5_hard generators)."""

from __future__ import annotations

import json
from pathlib import Path


def write_set(here: Path, rows: list[dict], metrics: dict[str, float], timeout_s: float) -> None:
    """Write ``rows`` (each with ``onnx``, ``vnnlib``, ``text`` and the expected.csv columns) under ``here``; the
    ``text`` of each row is written to its ``vnnlib`` path and left out of expected.csv."""
    for r in rows:
        (here / r["vnnlib"]).write_text(r.pop("text"))
    (here / "instances.csv").write_text("".join(f"{r['onnx']},{r['vnnlib']},{timeout_s}\n" for r in rows))
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]
    (here / "expected.csv").write_text("\n".join(lines) + "\n")
    (here / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))
