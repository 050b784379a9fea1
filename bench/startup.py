#!/usr/bin/env python3
"""Measure what every `nnverify check` pays before and around its work: interpreter start-up plus imports, and
a whole check on the shipped ACAS Xu example (``networks/``, ``properties/``), each as the median of fresh
processes; then the slowest imports of one check (``python -X importtime``) and the installed versions of the
packages on that path. Start-up is part of every instance's time (VNN-COMP counts it), so a dependency that
gets slow to import shows up here first.

Usage (from the repository root): ``.venv/bin/python bench/startup.py [--runs 9] [--out report.txt]``
"""

from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECK = [
    "check",
    str(ROOT / "networks" / "ACASXU_run2a_1_1_batch_2000.onnx"),
    str(ROOT / "properties" / "prop_1.vnnlib"),
    "--timeout",
    "116",
]
RUN_CLI = "import sys; from nnverify.cli import entry; sys.argv[0] = 'nnverify'; entry()"
PACKAGES = ("numpy", "onnx", "ml_dtypes", "onnxruntime", "click", "highspy")


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def median_wall(cmd: list[str], runs: int) -> float:
    wall(cmd)  # warm the file cache
    return statistics.median(wall(cmd) for _ in range(runs))


def slowest_imports(count: int) -> list[tuple[float, str]]:
    """The ``count`` imports with the largest own time (seconds) during one check."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", RUN_CLI, *CHECK], capture_output=True, text=True, check=True
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _cumulative, name = line[len("import time:") :].split("|")
        rows.append((int(own) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = [
        f"python: {sys.version.split()[0]}",
        *(f"{p}: {importlib.metadata.version(p)}" for p in PACKAGES),
        f"median of {args.runs} fresh processes:",
        f"  interpreter only:           {median_wall([sys.executable, '-c', 'pass'], args.runs):.3f} s",
        f"  import nnverify.cli:        {median_wall([sys.executable, '-c', 'import nnverify.cli'], args.runs):.3f} s",
        f"  nnverify --help:            {median_wall([sys.executable, '-c', RUN_CLI, '--help'], args.runs):.3f} s",
        f"  check ACAS Xu 1_1 prop_1:   {median_wall([sys.executable, '-c', RUN_CLI, *CHECK], args.runs):.3f} s",
        "slowest imports of one check (own time):",
        *(f"  {s:.3f} s  {name}" for s, name in slowest_imports(8)),
    ]
    report = "\n".join(lines) + "\n"
    sys.stdout.write(report)
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
