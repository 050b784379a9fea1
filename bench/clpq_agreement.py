#!/usr/bin/env python3
"""Random small ReLU networks through clpq (exact), clpq (float precision) and HiGHS: same verdicts? real witnesses?

The cases are those of ``tests/backends/test_clpq_agreement.py`` (the generator lives there, and this script
loads that module by its path: ``bench/`` is not a package, and the test must not depend on a script). The test
runs 200 cases of seed 20261123; this script runs ``--count`` cases of ``--seed``, one CSV row per case, and
prints a summary (Markdown) at the end. A disagreement between decided verdicts, or a witness that does not
violate the property, is printed in full (weights and property) and makes the exit code 1.

Usage:
  bench/clpq_agreement.py [--count 1000] [--seed 20261123] [--out results.csv] [--timeout 60]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from nnverify.backends import Backend, get_backend
from nnverify.backends.base import SolveStatus
from nnverify.options import Options

CASES_MODULE = Path(__file__).resolve().parents[1] / "tests" / "backends" / "test_clpq_agreement.py"


def load_cases_module() -> ModuleType:
    """``tests/backends/test_clpq_agreement.py`` as a module (it has the generator and the witness check)."""
    spec = importlib.util.spec_from_file_location("clpq_agreement_cases", CASES_MODULE)
    assert spec is not None and spec.loader is not None, CASES_MODULE
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cases = load_cases_module()

#: Column prefix, backend name, options, witness tolerance.
BACKENDS: tuple[tuple[str, str, Options, float], ...] = (
    ("clpq_exact", "clpq", Options(precision="exact"), cases.CLPQ_ATOL),
    ("clpq_float", "clpq", Options(precision="float"), cases.HIGHS_ATOL),
    ("highs", "highs", Options(), cases.HIGHS_ATOL),
)
DECIDED = {SolveStatus.FEASIBLE.value, SolveStatus.INFEASIBLE.value}
CSV_FIELDS = [
    "index",
    "widths",
    "relus",
    "unstable_relus",
    "disjuncts",
    "rows",
    "encode_s",
    *[f"{key}_{col}" for key, *_ in BACKENDS for col in ("status", "seconds", "witness", "note")],
    "verdict",
    "agree_exact_highs",
    "agree_all",
]


@dataclass
class Summary:
    """Counts and times over all cases."""

    n: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: {key: Counter() for key, *_ in BACKENDS})
    seconds: dict[str, list[float]] = field(default_factory=lambda: {key: [] for key, *_ in BACKENDS})
    bad_witness: dict[str, int] = field(default_factory=lambda: {key: 0 for key, *_ in BACKENDS})
    disagree_exact_highs: list[int] = field(default_factory=list)
    disagree_float: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def run_case(case: Any, backends: dict[str, Backend], timeout_s: float, summary: Summary) -> dict[str, object]:
    """Solve one case on every backend and check each witness; updates ``summary``, returns the CSV row."""
    start = time.perf_counter()
    enc = cases.encode_case(case)
    row: dict[str, object] = {
        "index": case.index,
        "widths": "-".join(str(w) for w in case.widths),
        "relus": len(enc.problem.relus),
        "unstable_relus": sum(enc.problem.lb[r.x] < 0.0 < enc.problem.ub[r.x] for r in enc.problem.relus),
        "disjuncts": len(case.prop.disjuncts),
        "rows": case.n_rows,
        "encode_s": f"{time.perf_counter() - start:.6f}",
    }
    status: dict[str, str] = {}
    for key, _, _, atol in BACKENDS:
        start = time.perf_counter()
        try:
            result = backends[key].solve(enc.problem, timeout_s=timeout_s)
            status[key], note = result.status.value, result.note
        except Exception as err:  # a crash is a result to record, not the end of a 1,000-case run
            result, status[key], note = None, "error", f"{type(err).__name__}: {err}"
        seconds = time.perf_counter() - start
        witness = ""
        if result is not None and result.status is SolveStatus.FEASIBLE and result.values is not None:
            problem = cases.witness_problem(case, result.values[enc.x_idx], atol)
            witness = "ok" if problem is None else "bad"
            if problem is not None:
                summary.bad_witness[key] += 1
                summary.problems.append(f"{key} witness of case {case.index}: {problem}\n{case.describe()}")
        row |= {f"{key}_status": status[key], f"{key}_seconds": f"{seconds:.6f}", f"{key}_witness": witness}
        row[f"{key}_note"] = note
        summary.statuses[key][status[key]] += 1
        summary.seconds[key].append(seconds)
    decided = {s for s in status.values() if s in DECIDED}
    pair = {status["clpq_exact"], status["highs"]}
    agree_eh = len(pair) == 1 or not pair <= DECIDED  # an undecided side is counted as a timeout, not here
    row["agree_exact_highs"] = ("yes" if agree_eh else "NO") if pair <= DECIDED else "n/a"
    row["agree_all"] = "yes" if len(decided) <= 1 else "NO"
    row["verdict"] = decided.pop() if len(decided) == 1 else ("disputed" if decided else "undecided")
    summary.verdicts[str(row["verdict"])] += 1
    summary.n += 1
    if not agree_eh:
        summary.disagree_exact_highs.append(case.index)
    if row["agree_all"] == "NO":
        summary.disagree_float.append(case.index)
        summary.problems.append(f"verdicts of case {case.index}: {status}\n{case.describe()}")
    return row


def report(summary: Summary) -> str:
    """The summary as Markdown."""
    lines = [
        f"cases: {summary.n}; verdicts (where the decided answers agree): "
        + ", ".join(f"{k} {v}" for k, v in sorted(summary.verdicts.items())),
        f"clpq exact vs HiGHS disagreements: {len(summary.disagree_exact_highs)} {summary.disagree_exact_highs}",
        f"any disagreement among the three: {len(summary.disagree_float)} {summary.disagree_float}",
        "",
        "| backend | feasible | infeasible | timeout | unknown | error | bad witness | total s | median s | max s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, *_ in BACKENDS:
        counts, secs = summary.statuses[key], summary.seconds[key]
        lines.append(
            f"| {key} | {counts['feasible']} | {counts['infeasible']} | {counts['timeout']} | {counts['unknown']} "
            f"| {counts['error']} | {summary.bad_witness[key]} | {sum(secs):.1f} | {statistics.median(secs):.4f} "
            f"| {max(secs):.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1] if __doc__ else None)
    parser.add_argument("--count", type=int, default=1000, help="number of random cases (default 1000)")
    parser.add_argument("--seed", type=int, default=cases.SEED, help=f"seed of the case stream (default {cases.SEED})")
    parser.add_argument("--out", type=Path, help="CSV file, one row per case")
    parser.add_argument("--timeout", type=float, default=cases.TIMEOUT_S, help="seconds per solver call")
    args = parser.parse_args(argv)

    backends = {key: get_backend(name, options) for key, name, options, _ in BACKENDS}
    summary = Summary()
    handle = args.out.open("w", newline="") if args.out else None
    writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS) if handle else None
    if writer:
        writer.writeheader()
    start = time.perf_counter()
    try:
        for index in range(args.count):
            case = cases.random_case(args.seed, index)
            row = run_case(case, backends, args.timeout, summary)
            if writer and handle:
                writer.writerow(row)
                handle.flush()
            if (index + 1) % 100 == 0:
                print(f"{index + 1} cases, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    finally:
        if handle:
            handle.close()
    for text in summary.problems:
        print(f"\n=== {text}\n")
    print(report(summary))
    print(f"\nwall time: {time.perf_counter() - start:.1f} s; numpy {np.__version__}")
    return 1 if summary.problems else 0


if __name__ == "__main__":
    sys.exit(main())
