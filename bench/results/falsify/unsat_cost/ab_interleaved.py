"""Interleaved A/B of code copies on ACAS Xu: per instance, each copy's ``nnverify check --json`` in turn, with the
CPU (user + sys) of the process, so both copies see the same machine load.

    .venv/bin/python ab_interleaved.py COPY_A,COPY_B unsat 20           # every k-th unsat of instances.csv
    .venv/bin/python ab_interleaved.py COPY_A,COPY_B sat 1 1_3:2,5_3:2  # the named instances
"""

from __future__ import annotations

import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[5] / "shared" / "benchmarks" / "acasxu"
EXE = str(Path(sys.executable).with_name("nnverify"))


def instances(expected: str, count: int, named: str | None) -> list[tuple[str, str]]:
    if named:
        pairs = [item.split(":") for item in named.split(",")]
        return [(f"onnx/ACASXU_run2a_{net}_batch_2000.onnx", f"vnnlib/prop_{prop}.vnnlib") for net, prop in pairs]
    with open(ROOT / "expected.csv", newline="") as handle:
        keep = {(r["onnx"], r["vnnlib"]) for r in csv.DictReader(handle) if r["expected"] == expected}
    with open(ROOT / "instances.csv", newline="") as handle:
        order = [(r[0], r[1]) for r in csv.reader(handle) if len(r) >= 2 and (r[0], r[1]) in keep]
    return order[:: max(1, len(order) // count)][:count]


def run(copy: str, onnx: str, vnnlib: str) -> tuple[str, float, float]:
    env = dict(os.environ, PYTHONPATH=copy, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    command = [EXE, "check", str(ROOT / onnx), str(ROOT / vnnlib), "--timeout", "116", "--json"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall, after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    verdict, _, rest = proc.stdout.partition("\n")
    try:
        details = json.loads(rest)
    except json.JSONDecodeError:
        details = {"method": proc.stderr[-200:]}
    levels = details.get("stats", {}).get("beam_levels", "-")
    return f"{verdict} {details.get('method', '')} cpu {cpu:.2f} wall {wall:.2f} beam {levels}", cpu, wall


def main() -> int:
    copies = sys.argv[1].split(",")
    todo = instances(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
    totals = {copy: [0.0, 0.0] for copy in copies}
    for onnx, vnnlib in todo:
        parts = [onnx.split("run2a_")[1][:3], vnnlib.split("/")[1][:6]]
        for copy in copies:
            text, cpu, wall = run(copy, onnx, vnnlib)
            totals[copy][0] += cpu
            totals[copy][1] += wall
            parts.append(text)
        print(" ".join(parts), flush=True)
    for copy, (cpu, wall) in totals.items():
        print(f"{copy} CPU {cpu:.2f} wall {wall:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
