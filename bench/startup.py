#!/usr/bin/env python3
"""Measure what every `nnverify check` pays before and around its work: interpreter start-up plus imports, and
a whole check on the shipped ACAS Xu example (``networks/``, ``properties/``), each as the median of fresh
processes (wall and CPU = user + system: on a shared, loaded machine CPU is the fairer figure); then the slowest
imports of one check (``python -X importtime``) and the installed versions of the packages on that path.
Start-up is part of every instance's time (VNN-COMP counts it), so a dependency that gets slow to import shows
up here first.

Usage (from the repository root): ``.venv/bin/python bench/startup.py [--runs 9] [--out report.txt]``
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import resource
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
#: Compiled bytecode is written and used (a sandbox may set PYTHONDONTWRITEBYTECODE); one BLAS thread, as the CLI.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"OPENBLAS_NUM_THREADS": "1"}
RUN_CLI = "import sys; from nnverify.cli import entry; sys.argv[0] = 'nnverify'; entry()"
PACKAGES = ("numpy", "onnx", "ml_dtypes", "onnxruntime", "click", "highspy")


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one fresh process running ``cmd``."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=ENV)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def medians(cmd: list[str], runs: int) -> str:
    """``"<wall> s wall, <cpu> s CPU"``: medians over ``runs`` fresh processes (after one that warms the cache)."""
    timed(cmd)
    walls, cpus = zip(*(timed(cmd) for _ in range(runs)), strict=True)
    return f"{statistics.median(walls):.3f} s wall, {statistics.median(cpus):.3f} s CPU"


def slowest_imports(count: int) -> list[tuple[float, str]]:
    """The ``count`` imports with the largest own time (seconds) during one check."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", RUN_CLI, *CHECK], capture_output=True, text=True, check=True, env=ENV
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
        f"load average at start: {os.getloadavg()[0]:.2f}",
        f"  interpreter only:           {medians([sys.executable, '-c', 'pass'], args.runs)}",
        f"  import nnverify.cli:        {medians([sys.executable, '-c', 'import nnverify.cli'], args.runs)}",
        f"  nnverify --help:            {medians([sys.executable, '-c', RUN_CLI, '--help'], args.runs)}",
        f"  check ACAS Xu 1_1 prop_1:   {medians([sys.executable, '-c', RUN_CLI, *CHECK], args.runs)}",
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
