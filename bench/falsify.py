"""Does the attack find what the field finds fast? Issue 25's falsification target, measured per family.

Scoring script (it reads ``expected.csv`` and ``peer_times.csv``; the solver never does): every ``sat`` instance
that some peer answered ``sat`` in under ``--under`` seconds is run as ``nnverify check --timeout T --json``, one
process at a time. ``found`` = ``sat`` by the attack phase (method ``attack`` or ``graph-attack``) within ``--under``
seconds of wall time, start-up included. Writes ``results.csv`` and ``summary.md`` to ``--out``.

    .venv/bin/python bench/falsify.py --out bench/results/falsify
    .venv/bin/python bench/falsify.py --timeout 30 --misses-of bench/results/falsify/results.csv --out D
    .venv/bin/python bench/falsify.py --families acasxu --unsat 20 --timeout 116 --out D   # the attack's cost

``--unsat N`` runs N ``unsat`` instances per family instead (evenly spread over ``instances.csv``), to measure
what the attack costs where there is nothing to find: CPU seconds (user + sys of the process) and ``attack_s``.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median

DEFAULT_BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
#: The target's families first (low-dimensional inputs), then the extra rows.
FAMILIES = (
    "acasxu",
    "linearizenn_2024",
    "cgan_2023",
    "cifar_biasfield_2022",
    "dist_shift_2023",
    "traffic_signs_recognition_2023",
    "mnistfc",
)
#: The methods (``--json``'s ``method``) of a ``sat`` the attack phase found before any search.
ATTACK_METHODS = frozenset({"attack", "graph-attack"})


@dataclass(frozen=True, slots=True)
class Target:
    """A ``sat`` instance a peer found fast: its files (relative to the family) and the fastest peer."""

    family: str
    onnx: str
    vnnlib: str
    peer: str
    peer_s: float


@dataclass(frozen=True, slots=True)
class Row:
    family: str
    onnx: str
    vnnlib: str
    peer: str
    peer_s: float
    wall_s: float
    cpu_s: float
    verdict: str
    method: str
    attack_s: float | None
    phase: str
    found: bool
    note: str


def targets(root: Path, family: str, under_s: float) -> list[Target]:
    """The instances of ``family`` that ``expected.csv`` calls ``sat`` and some peer answered ``sat`` in under
    ``under_s`` seconds (in ``instances.csv`` order), each with its fastest such peer."""
    with open(root / family / "expected.csv", newline="") as handle:
        sat = {(r["onnx"], r["vnnlib"]) for r in csv.DictReader(handle) if r["expected"] == "sat"}
    fastest: dict[tuple[str, str], tuple[float, str]] = {}
    with open(root / family / "peer_times.csv", newline="") as handle:
        for r in csv.DictReader(handle):
            key, seconds = (r["onnx"], r["vnnlib"]), float(r["time_s"])
            if r["result"] == "sat" and key in sat and seconds < under_s:
                fastest[key] = min(fastest.get(key, (seconds, r["tool"])), (seconds, r["tool"]))
    with open(root / family / "instances.csv", newline="") as handle:
        order = [(r[0], r[1]) for r in csv.reader(handle) if len(r) >= 2]
    return [Target(family, o, v, fastest[o, v][1], fastest[o, v][0]) for o, v in order if (o, v) in fastest]


def unsat_targets(root: Path, family: str, count: int) -> list[Target]:
    """``count`` instances of ``family`` that ``expected.csv`` calls ``unsat``, evenly spread over
    ``instances.csv`` (peer and peer time left empty)."""
    with open(root / family / "expected.csv", newline="") as handle:
        unsat = {(r["onnx"], r["vnnlib"]) for r in csv.DictReader(handle) if r["expected"] == "unsat"}
    with open(root / family / "instances.csv", newline="") as handle:
        order = [(r[0], r[1]) for r in csv.reader(handle) if len(r) >= 2 and (r[0], r[1]) in unsat]
    step = max(1, len(order) // max(1, count))
    return [Target(family, o, v, "", 0.0) for o, v in order[::step][:count]]


def misses(previous: Path) -> set[tuple[str, str, str]]:
    """``(family, onnx, vnnlib)`` of the rows of an earlier ``results.csv`` that the attack did not find."""
    with open(previous, newline="") as handle:
        return {(r["family"], r["onnx"], r["vnnlib"]) for r in csv.DictReader(handle) if r["found"] != "True"}


def run_one(root: Path, target: Target, timeout_s: float, under_s: float, exe: str) -> Row:
    """One ``nnverify check --json`` process on ``target``; wall time from spawn to exit."""
    family_dir = root / target.family
    command = [exe, "check", str(family_dir / target.onnx), str(family_dir / target.vnnlib)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(
        [*command, "--timeout", str(timeout_s), "--json"], capture_output=True, text=True, check=False
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return parse_row(target, proc.stdout, proc.stderr, (wall, cpu), under_s)


def parse_row(target: Target, stdout: str, stderr: str, seconds: tuple[float, float], under_s: float) -> Row:
    """A row from ``check --json``'s output: the verdict line, then the JSON details; ``seconds`` = (wall, CPU)."""
    wall_s, cpu_s = seconds
    verdict, _, rest = stdout.partition("\n")
    try:
        details = json.loads(rest)
    except json.JSONDecodeError:
        details = {"note": " | ".join(stderr.strip().splitlines()[-2:])[-300:]}
    method = str(details.get("method", ""))
    found = verdict.strip() == "sat" and method in ATTACK_METHODS and wall_s < under_s
    stats = details.get("stats", {})
    attack_s = stats.get("attack_s")  # absent when the attack did not finish (or the op-graph routes ran)
    return Row(
        **asdict(target),
        wall_s=round(wall_s, 3),
        cpu_s=round(cpu_s, 3),
        verdict=verdict.strip(),
        method=method,
        attack_s=None if attack_s is None else round(float(attack_s), 3),
        phase=str(stats.get("phase", "")),
        found=found,
        note=str(details.get("note", ""))[:300],
    )


def summary(rows: list[Row], families: list[str], under_s: float) -> str:
    """Per family: instances, found by the attack in time, times of those found, and every miss (markdown)."""
    lines = [
        f"| family | `sat` a peer found in < {under_s:g} s | found by the attack in < {under_s:g} s "
        "| wall of those found: median / max (s) | other outcomes |",
        "|---|---|---|---|---|",
    ]
    misses: list[str] = []
    for family in [*families, "all"]:
        group = [r for r in rows if family in ("all", r.family)]
        found = [r.wall_s for r in group if r.found]
        others: defaultdict[str, int] = defaultdict(int)
        for r in group:
            if not r.found:
                others[
                    f"{r.verdict or '-'} by {r.method or '-'} in {'<' if r.wall_s < under_s else '≥'} {under_s:g} s"
                ] += 1
                if family != "all":
                    misses.append(
                        f"- {r.family} `{r.onnx}` `{r.vnnlib}`: {r.verdict or '-'} ({r.method or '-'}) in "
                        f"{r.wall_s:.2f} s{f' ({r.phase})' if r.phase else ''}; fastest peer {r.peer} {r.peer_s:.2f} s"
                    )
        times = f"{median(found):.2f} / {max(found):.2f}" if found else "-"
        other = ", ".join(f"{k}: {n}" for k, n in sorted(others.items())) or "-"
        name = f"**{family}**" if family == "all" else family
        lines.append(f"| {name} | {len(group)} | {len(found)} | {times} | {other} |")
    return "\n".join([*lines, "", "Misses:" if misses else "No misses.", *misses]) + "\n"


def cost_summary(rows: list[Row], families: list[str]) -> str:
    """Per family (``--unsat``): instances, verdicts, and the sums of wall, CPU and ``attack_s`` (markdown)."""
    lines = ["| family | instances | verdicts | wall (s) | CPU (s) | attack_s (s) |", "|---|---|---|---|---|---|"]
    for family in [*families, "all"]:
        group = [r for r in rows if family in ("all", r.family)]
        verdicts: defaultdict[str, int] = defaultdict(int)
        for r in group:
            verdicts[r.verdict or "-"] += 1
        counts = ", ".join(f"{k} {n}" for k, n in sorted(verdicts.items()))
        attack = sum(r.attack_s or 0.0 for r in group)
        wall, cpu = sum(r.wall_s for r in group), sum(r.cpu_s for r in group)
        lines.append(f"| {family} | {len(group)} | {counts} | {wall:.2f} | {cpu:.2f} | {attack:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", type=Path, default=DEFAULT_BENCHMARKS)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--timeout", type=float, default=5.0, help="nnverify's budget per instance")
    parser.add_argument("--under", type=float, default=5.0, help="the peers' and our wall-time threshold")
    parser.add_argument("--out", type=Path, default=Path("bench/results/falsify"))
    parser.add_argument("--misses-of", type=Path, help="only the rows of this results.csv that were not found")
    parser.add_argument("--unsat", type=int, default=0, help="N unsat instances per family instead (the cost)")
    args = parser.parse_args(argv)
    exe = str(Path(sys.executable).with_name("nnverify"))
    if args.unsat:
        todo = [t for family in args.families for t in unsat_targets(args.benchmarks, family, args.unsat)]
    else:
        todo = [t for family in args.families for t in targets(args.benchmarks, family, args.under)]
    if args.misses_of:
        todo = [t for t in todo if (t.family, t.onnx, t.vnnlib) in misses(args.misses_of)]
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for k, target in enumerate(todo):
        rows.append(run_one(args.benchmarks, target, args.timeout, args.under, exe))
        r = rows[-1]
        print(
            f"[{k + 1}/{len(todo)}] {r.family} {r.onnx} {r.vnnlib}: {r.verdict} {r.method} {r.wall_s:.2f} s"
            f" (CPU {r.cpu_s:.2f} s, attack {r.attack_s} s)",
            file=sys.stderr,
        )
        with open(args.out / "results.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            writer.writerows(asdict(row) for row in rows)
    text = cost_summary(rows, args.families) if args.unsat else summary(rows, args.families, args.under)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
