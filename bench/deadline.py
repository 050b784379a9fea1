"""Does every run end at its budget? ``nnverify check --timeout T`` on the instances of every benchmark set.

One instance at a time (``nice``), each its own process: wall time from spawn to exit, exit code, verdict (the
first stdout line), peak resident memory (``wait4``'s ``ru_maxrss`` of that process). A process still running
``KILL_AFTER_S`` past its budget is killed (recorded as ``killed``). Writes ``results.csv`` and ``summary.md``
(per family: instances, maximum overrun, peak memory, exit codes, verdicts) to ``--out``.

    .venv/bin/python bench/deadline.py --timeout 5 --sample 12 --out bench/results/deadline
    .venv/bin/python bench/deadline.py --timeout 30 --rerun-timeouts bench/results/deadline/results.csv --out D
    .venv/bin/python bench/deadline.py --timeout 30 --slowest 20 --from bench/results/deadline/all_5s/results.csv \
        --out bench/results/deadline/slowest20_30s
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

#: Seconds past the budget after which the script kills an instance (a breach of the contract either way).
KILL_AFTER_S = 30.0
DEFAULT_BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


@dataclass(frozen=True, slots=True)
class Row:
    family: str
    onnx: str
    vnnlib: str
    timeout_s: float
    wall_s: float
    overrun_s: float
    exit_code: int
    verdict: str
    peak_mem_mb: float
    killed: bool
    stderr_tail: str


def instances(root: Path, sample: int) -> list[tuple[str, str, str]]:
    """``(family, onnx, vnnlib)`` of every set under ``root``; ``sample`` > 0: that many per family, spread evenly
    over its ``instances.csv``."""
    out = []
    for family in sorted(p.name for p in root.iterdir() if (p / "instances.csv").is_file()):
        with open(root / family / "instances.csv", newline="") as handle:
            rows = [r for r in csv.reader(handle) if len(r) >= 2]
        if 0 < sample < len(rows):
            rows = [rows[round(k * (len(rows) - 1) / max(1, sample - 1))] for k in range(sample)]
        out += [(family, str(root / family / r[0]), str(root / family / r[1])) for r in rows]
    return out


def slowest(previous: Path, n: int) -> set[tuple[str, str, str]]:
    """The ``n`` slowest instances per family of an earlier ``results.csv``: those that timed out (or were killed)
    first, then the decided ones by decreasing wall time; a family with at most ``n`` rows gives all of them.

    Returns ``(family, onnx, vnnlib)`` with paths relative to the family directory, as ``results.csv`` stores them.
    """
    with open(previous, newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen: set[tuple[str, str, str]] = set()
    for family in sorted({r["family"] for r in rows}):
        group = [r for r in rows if r["family"] == family]
        group.sort(key=lambda r: (r["verdict"] != "timeout" and r["killed"] != "True", -float(r["wall_s"])))
        chosen |= {(r["family"], r["onnx"], r["vnnlib"]) for r in group[:n]}
    return chosen


def _rel(path: str) -> str:
    """A benchmark file relative to its family directory (as ``results.csv`` stores it)."""
    return os.path.relpath(path, Path(path).parents[1])


def run_one(family: str, onnx: str, vnnlib: str, timeout_s: float, exe: str) -> Row:
    """One ``nnverify check`` process; its wall time, exit code, verdict and peak memory."""
    command = ["nice", "-n", "10", exe, "check", onnx, vnnlib, "--timeout", str(timeout_s)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout_s + KILL_AFTER_S, kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
        tail = " | ".join(err.read().decode(errors="replace").strip().splitlines()[-2:])[-300:]
    return Row(
        family,
        _rel(onnx),
        _rel(vnnlib),
        timeout_s,
        round(wall, 3),
        round(wall - timeout_s, 3),
        proc.returncode,
        lines[0] if lines else "",
        round(usage.ru_maxrss / 1024, 1),
        killed.is_set(),
        tail,
    )


def summary(rows: list[Row], command: str) -> str:
    """The per-family table (markdown)."""
    lines = [
        f"Command: `{command}`",
        "",
        "| family | instances | max overrun (s) | max wall (s) | peak memory (MB) | exit codes | verdicts | killed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    families = sorted({r.family for r in rows})
    for family in [*families, "all"]:
        group = [r for r in rows if family in ("all", r.family)]
        codes = ", ".join(f"{c}: {n}" for c, n in sorted(Counter(r.exit_code for r in group).items()))
        verdicts = ", ".join(f"{v or '-'}: {n}" for v, n in sorted(Counter(r.verdict for r in group).items()))
        lines.append(
            f"| {family} | {len(group)} | {max(r.overrun_s for r in group):+.2f} | {max(r.wall_s for r in group):.2f}"
            f" | {max(r.peak_mem_mb for r in group):,.0f} | {codes} | {verdicts} | {sum(r.killed for r in group)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--sample", type=int, default=0, help="instances per family (0: all)")
    parser.add_argument("--benchmarks", type=Path, default=DEFAULT_BENCHMARKS)
    parser.add_argument("--out", type=Path, default=Path("bench/results/deadline"))
    parser.add_argument("--stop-after", type=float, default=float("inf"), help="start no instance after S seconds")
    parser.add_argument("--rerun-timeouts", type=Path, help="only the rows of this results.csv that timed out")
    parser.add_argument("--slowest", type=int, default=0, help="the N slowest per family of --from's results.csv")
    parser.add_argument("--from", dest="previous", type=Path, help="an earlier results.csv (for --slowest)")
    parser.add_argument("--families", nargs="+", help="only these sets (default: every set under --benchmarks)")
    args = parser.parse_args(argv)
    if (args.slowest > 0) != (args.previous is not None):
        parser.error("--slowest N and --from CSV go together")
    exe = str(Path(sys.executable).with_name("nnverify"))
    args.out.mkdir(parents=True, exist_ok=True)
    todo = instances(args.benchmarks, args.sample)
    if args.rerun_timeouts:
        with open(args.rerun_timeouts, newline="") as handle:
            again = {(r["family"], r["onnx"], r["vnnlib"]) for r in csv.DictReader(handle) if r["verdict"] == "timeout"}
        root = args.benchmarks
        todo = [(f, o, v) for f, o, v in instances(root, 0) if (f, _rel(o), _rel(v)) in again]
    if args.slowest > 0:
        picked = slowest(args.previous, args.slowest)
        todo = [(f, o, v) for f, o, v in todo if (f, _rel(o), _rel(v)) in picked]
    if args.families:
        todo = [(f, o, v) for f, o, v in todo if f in args.families]
    rows: list[Row] = []
    began = time.monotonic()
    for k, (family, onnx, vnnlib) in enumerate(todo):
        if time.monotonic() - began > args.stop_after:
            print(f"stopped after {k} of {len(todo)} instances (--stop-after)", file=sys.stderr)
            break
        rows.append(run_one(family, onnx, vnnlib, args.timeout, exe))
        r = rows[-1]
        print(
            f"[{k + 1}/{len(todo)}] {family} {Path(onnx).name} {Path(vnnlib).name}: {r.verdict or '-'} "
            f"exit {r.exit_code} wall {r.wall_s:.2f} s, {r.peak_mem_mb:.0f} MB",
            file=sys.stderr,
        )
        with open(args.out / "results.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
    command = " ".join(["python", "bench/deadline.py", *(argv if argv is not None else sys.argv[1:])])
    (args.out / "summary.md").write_text(summary(rows, command))
    print(summary(rows, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
