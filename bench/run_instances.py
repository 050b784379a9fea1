#!/usr/bin/env python3
"""Run `nnverify check` on rows of a VNN-COMP instances.csv, one process per instance (start-up included).

Interim benchmark driver until `nnverify bench` exists. The solver never sees expected.csv: this script
reads it only after all runs, to score.

Usage:
  bench/run_instances.py INSTANCES_CSV --out results.csv [--match REGEX] [--timeout S] [--expected expected.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

NNVERIFY = Path(sys.executable).with_name("nnverify")


def run_one(onnx: Path, vnnlib: Path, timeout_s: float) -> dict[str, str]:
    cmd = [str(NNVERIFY), "check", str(onnx), str(vnnlib), "--timeout", str(timeout_s), "--json"]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 10)
    except subprocess.TimeoutExpired:
        return {
            "result": "timeout",
            "run_time": f"{time.monotonic() - start:.3f}",
            "method": "killed",
            "note": "",
        }
    wall = time.monotonic() - start
    lines = proc.stdout.split("\n", 1)
    if proc.returncode != 0 or len(lines) < 2:
        return {
            "result": "error",
            "run_time": f"{wall:.3f}",
            "method": "",
            "note": proc.stderr.strip()[-300:],
        }
    data = json.loads(lines[1])
    stats = ";".join(f"{k}={v}" for k, v in data["stats"].items())
    return {"result": lines[0], "run_time": f"{wall:.3f}", "method": data["method"], "note": stats}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instances", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--match", default="", help="only rows whose 'onnx,vnnlib' matches this regex")
    parser.add_argument("--timeout", type=float, help="override the per-row timeout")
    parser.add_argument("--expected", type=Path, help="score against this expected.csv after the runs")
    args = parser.parse_args()
    root = args.instances.parent
    rows = [r for r in csv.reader(args.instances.open()) if r and re.search(args.match, f"{r[0]},{r[1]}")]
    results = []
    for onnx, vnnlib, timeout in rows:
        t = args.timeout or float(timeout)
        res = run_one(root / onnx, root / vnnlib, t)
        results.append({"onnx": onnx, "vnnlib": vnnlib, "timeout": t, **res})
        print(f"{onnx},{vnnlib},{res['result']},{res['run_time']},{res['method']}", flush=True)
    expected = {}
    if args.expected:
        expected = {(r["onnx"], r["vnnlib"]): r["expected"] for r in csv.DictReader(args.expected.open())}
    with args.out.open("w", newline="") as handle:
        fields = ["onnx", "vnnlib", "timeout", "result", "run_time", "method", "note", "expected", "correct"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in results:
            exp = expected.get((r["onnx"], r["vnnlib"]), "")
            correct = (
                "" if not exp else ("yes" if r["result"] == exp else ("no" if r["result"] in ("sat", "unsat") else "-"))
            )
            writer.writerow({**r, "expected": exp, "correct": correct})
    if expected:
        wrong = [
            r
            for r in results
            if r["result"] in ("sat", "unsat") and r["result"] != expected.get((r["onnx"], r["vnnlib"]))
        ]
        solved = sum(r["result"] in ("sat", "unsat") for r in results)
        total = sum(float(r["run_time"]) for r in results)
        print(f"solved {solved}/{len(results)}, wrong {len(wrong)}, total time {total:.1f} s")
        for r in wrong:
            print(f"WRONG: {r['onnx']} {r['vnnlib']}: {r['result']} (expected {expected[(r['onnx'], r['vnnlib'])]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
