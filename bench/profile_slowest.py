"""Profiles of the slowest instance of each benchmark set (issue 25): cProfile over every thread, by phase.

For each set's ``bench/results/<set>/results.csv``, the slowest solved row and the slowest timeout run again as
``nnverify check`` in a fresh process under cProfile (the main thread and every thread it starts), one at a time.

    .venv/bin/python bench/profile_slowest.py --out bench/results/profiles [--cap 150] [--timeout-cap 60]
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import os
import pstats
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BENCHMARKS = REPO.parent / "shared" / "benchmarks"
SETS = (
    "acasxu",
    "cgan_2023",
    "cifar_biasfield_2022",
    "dist_shift_2023",
    "linearizenn_2024",
    "mnistfc",
    "oval21_2022",
    "test",
    "traffic_signs_recognition_2023",
)
SOLVED = frozenset({"sat", "unsat"})
#: Module-path prefixes (inside ``nnverify/``) and the phase each belongs to; the first match wins.
PHASES = (
    ("graph/ops/", "network eval/ops"),  # op math and evaluation, called by the attack, bounds and replay
    ("graph/layers", "network eval/ops"),
    ("graph/core", "network eval/ops"),
    ("graph/", "load/convert"),
    ("spec/", "load/convert"),
    ("attack", "attack"),
    ("bounds/", "bounds"),
    ("search/", "search"),
    ("backends/", "backends/encode"),
    ("encode/", "backends/encode"),
    ("witness", "replay"),
)
STARTUP, WAITING, OUTSIDE = "(imports)", "(waiting)", "(outside nnverify)"
#: Builtins whose self time is a thread waiting (a join, a lock, a sleep), not work.
WAIT_MARKS = ("of '_thread.lock' objects", "of '_thread.RLock' objects", "time.sleep", "select.")
PROF_KEEP_BYTES = 1 << 20
RUNS_HEADER = (
    *("set", "kind", "onnx", "vnnlib", "recorded", "recorded_s", "timeout_s"),
    *("verdict", "method", "wall_s", "cpu_s"),
)

FuncKey = tuple[str, int, str]
#: ``pstats.Stats.stats``: function -> (primitive calls, calls, self s, cumulative s, {caller: (cc, nc, tt, ct)}).
RawStats = dict[FuncKey, tuple[int, int, float, float, dict[FuncKey, tuple[int, int, float, float]]]]


# ---- which instances -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pick:
    """One instance to profile: its set, ``solved`` or ``timeout``, its files and its recorded run."""

    set: str
    kind: str
    onnx: str
    vnnlib: str
    recorded: str
    recorded_s: float
    timeout_s: float


def pick_slowest(results_csv: Path, instances_csv: Path, cap_s: float, timeout_cap_s: float) -> list[Pick]:
    """The slowest solved row and the slowest other row (timeout, unknown) of a ``results.csv``.

    The timeout is the row's ``instances.csv`` timeout, lowered to the run's own (the longest ``timeout`` row,
    rounded down) when the set has timeouts, then capped by ``cap_s`` (solved) or ``timeout_cap_s`` (others).
    """
    with open(results_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(instances_csv, newline="") as handle:
        limits = {(r[0], r[1]): float(r[2]) for r in csv.reader(handle) if len(r) >= 3}
    timeouts = [float(r["run_time"]) for r in rows if r["result"] == "timeout"]
    run_limit = float(int(max(timeouts))) if timeouts else float("inf")
    picks: list[Pick] = []
    for kind, cap, chosen in (
        ("solved", cap_s, [r for r in rows if r["result"] in SOLVED]),
        ("timeout", timeout_cap_s, [r for r in rows if r["result"] not in SOLVED]),
    ):
        if not chosen:
            continue
        row = max(chosen, key=lambda r: float(r["run_time"]))
        limit = min(limits.get((row["onnx"], row["vnnlib"]), float("inf")), run_limit, cap)
        set_name = results_csv.parent.name
        picks.append(Pick(set_name, kind, row["onnx"], row["vnnlib"], row["result"], float(row["run_time"]), limit))
    return picks


# ---- the profiled process --------------------------------------------------------------------------------------


@dataclass(slots=True)
class ThreadProfiles:
    """cProfile for the thread that creates it and for every thread started after :meth:`start`."""

    main: cProfile.Profile = field(default_factory=cProfile.Profile)
    threads: list[tuple[str, cProfile.Profile]] = field(default_factory=list)

    def start(self) -> None:
        threading.setprofile(self._hook)
        self.main.enable()

    def _hook(self, frame: object, event: str, arg: object) -> None:
        """A new thread's first event: give it its own profiler (``enable`` replaces this hook there)."""
        profile = cProfile.Profile()
        self.threads.append((threading.current_thread().name, profile))
        profile.enable()

    def stop(self) -> pstats.Stats:
        """Every thread's statistics merged (threads still running contribute what they did so far)."""
        self.main.disable()
        threading.setprofile(None)
        merged = pstats.Stats(self.main, stream=io.StringIO())
        for _, profile in list(self.threads):
            merged.add(profile)
        return merged


def run_child(prof_path: Path, argv: list[str]) -> int:
    """``nnverify`` with ``argv`` under :class:`ThreadProfiles` (imports included); writes ``prof_path``."""
    profiles = ThreadProfiles()
    profiles.start()
    import warnings

    from nnverify.cli import guard_stdout, main

    guard_stdout()
    warnings.simplefilter("ignore", RuntimeWarning)
    code = 0
    try:
        main.main(args=argv, prog_name="nnverify")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    stats = profiles.stop()
    stats.dump_stats(str(prof_path))
    sys.stdout.flush()
    sys.stderr.flush()
    return code


# ---- the summary -----------------------------------------------------------------------------------------------


def module_of(key: FuncKey) -> str | None:
    """A function's group: its ``nnverify/`` module path (``bounds/backward``), the import machinery, a wait
    builtin; ``None`` for code outside nnverify (numpy, highspy ...), whose time goes to its callers."""
    filename, _, name = key
    if filename.startswith("<frozen importlib") or name == "<module>":  # a module's execution is its import
        return STARTUP
    if filename == "~":
        return WAITING if any(mark in name for mark in WAIT_MARKS) else None
    path = filename.replace(os.sep, "/")
    if "/nnverify/" not in path:
        return None
    return path.rsplit("/nnverify/", 1)[1].removesuffix(".py")


def package_of(key: FuncKey) -> str:
    """The top-level package (or module) of a function outside nnverify: ``highspy``, ``click``, ``threading``."""
    path = key[0].replace(os.sep, "/")
    if key[0] == "~":
        return "builtins"
    path = path.rsplit("/site-packages/", 1)[1] if "/site-packages/" in path else path.rsplit("/", 1)[-1]
    return path.split("/", 1)[0].removesuffix(".py")


def phase_of(module: str) -> str:
    """The phase of a group from :func:`module_of` (``driver`` for the CLI, pipeline, budget ...)."""
    if module in (STARTUP, WAITING):
        return {STARTUP: "start-up", WAITING: "waiting"}[module]
    if module.startswith("(outside"):
        return "backends/encode" if module == "(outside: highspy)" else "outside nnverify"
    return next((phase for prefix, phase in PHASES if module.startswith(prefix)), "driver")


def _shares(key: FuncKey, stats: RawStats, index: int, seen: frozenset[FuncKey], memo: dict) -> dict[str, float]:
    """How a function's time splits over groups by its callers (weights: column ``index`` of the caller
    entries); callers outside nnverify pass their share on to their own callers (ct-weighted)."""
    if index == 3 and key in memo:
        return memo[key]
    callers = stats[key][4] if key in stats else {}
    total = sum(entry[index] for entry in callers.values())
    out: dict[str, float] = defaultdict(float)
    if total <= 0:  # a thread's root or the program's: named after its package (highspy starts threads)
        out[f"(outside: {package_of(key)})"] = 1.0
    for caller, entry in callers.items() if total > 0 else ():
        weight, group = entry[index] / total, module_of(caller)
        if group is not None:
            out[group] += weight
        elif caller in seen or caller not in stats or len(seen) > 60:
            out[OUTSIDE] += weight
        else:
            for name, share in _shares(caller, stats, 3, seen | {key}, memo).items():
                out[name] += weight * share
    if index == 3:
        memo[key] = dict(out)
    return out


@dataclass(frozen=True, slots=True)
class GroupTime:
    """A group's inclusive time (entered from outside it) and the self time attributed to it."""

    module: str
    phase: str
    inclusive_s: float
    self_s: float


@dataclass(frozen=True, slots=True)
class Summary:
    groups: tuple[GroupTime, ...]
    work_s: float
    wait_s: float
    top: tuple[tuple[str, int, float, float], ...]  # label, calls, self s, cumulative s


def summarise(stats: RawStats, top_n: int = 12) -> Summary:
    """Group a profile by module: inclusive seconds (calls into the group from elsewhere, nested phases
    overlap) and self seconds, where time in code outside nnverify counts for the nnverify module calling it."""
    self_s: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)
    memo: dict = {}
    for key, (_, _, tt, ct, callers) in stats.items():
        group = module_of(key)
        if group is None:
            for name, share in _shares(key, stats, 2, frozenset(), memo).items():
                self_s[name] += tt * share
            continue
        self_s[group] += tt
        if key[2] == "<module>":  # always run by the import machinery (via exec): inside an import already
            continue
        if not callers:
            inclusive[group] += ct
        inclusive[group] += sum(
            entry[3]
            for caller, entry in callers.items()
            if module_of(caller) != group and caller[2] != "<module>"  # nested imports: inside the outer one
        )
    groups = tuple(
        sorted(
            (GroupTime(m, phase_of(m), inclusive.get(m, 0.0), s) for m, s in self_s.items()),
            key=lambda g: -g.self_s,
        )
    )
    wait = self_s.get(WAITING, 0.0)
    work = sum(self_s.values()) - wait
    ranked = sorted(stats.items(), key=lambda item: -item[1][2])[:top_n]
    top = tuple((label(key), value[1], value[2], value[3]) for key, value in ranked)
    return Summary(groups, work, wait, top)


def load_summary(prof: Path) -> Summary:
    """:func:`summarise` of a ``.prof`` file."""
    return summarise(pstats.Stats(str(prof), stream=io.StringIO()).stats)  # type: ignore[attr-defined]


def label(key: FuncKey) -> str:
    """``bounds/lean.py:40(rows)``, ``numpy/core/fromnumeric.py:71(_wrapreduction)``, ``{built-in ...}``."""
    filename, line, name = key
    if filename == "~":
        return name
    path = filename.replace(os.sep, "/")
    for marker in ("/site-packages/", "/nnverify/"):
        if marker in path:
            path = path.rsplit(marker, 1)[1]
            break
    else:
        path = re.sub(r"^.*/lib/python3[.0-9]*/", "", path)
    return f"{path}:{line}({name})"


def by_phase(summary: Summary) -> list[tuple[str, float]]:
    """Each phase's share of the work (self time, waiting excluded), largest first."""
    phases: dict[str, float] = defaultdict(float)
    for g in summary.groups:
        if g.module != WAITING:
            phases[g.phase] += g.self_s / (summary.work_s or 1.0)
    return sorted(phases.items(), key=lambda item: -item[1])


def render(summary: Summary, wall_s: float, min_share: float = 0.005) -> str:
    """Markdown: the phase table (groups under ``min_share`` of the work folded into one row) and the top list."""
    work = summary.work_s or 1.0
    rollup = ", ".join(f"{phase} {100 * share:.0f} %" for phase, share in by_phase(summary))
    lines = [
        f"work {summary.work_s:.1f} thread-s, waiting {summary.wait_s:.1f} thread-s, wall {wall_s:.1f} s",
        "",
        f"self time by phase (share of work): {rollup}",
        "",
        "| phase | module | inclusive s | % of wall | self s (+ callees outside nnverify) | % of work |",
        "|---|---|---|---|---|---|",
    ]
    small = [g for g in summary.groups if g.module != WAITING and g.self_s < min_share * work]
    for g in summary.groups:
        if g in small:
            continue
        share = "" if g.module == WAITING else f"{100 * g.self_s / work:.1f}"
        lines.append(
            f"| {g.phase} | `{g.module}` | {g.inclusive_s:.2f} | {100 * g.inclusive_s / (wall_s or 1.0):.0f} | "
            f"{g.self_s:.2f} | {share} |"
        )
    if small:
        rest = sum(g.self_s for g in small)
        lines.append(f"| | {len(small)} others | | | {rest:.2f} | {100 * rest / work:.1f} |")
    lines += ["", "| function (top by self time) | calls | self s | cumulative s |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {calls} | {tt:.2f} | {ct:.2f} |" for name, calls, tt, ct in summary.top]
    return "\n".join(lines) + "\n"


# ---- the runs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    pick: Pick
    wall_s: float
    cpu_s: float
    verdict: str
    method: str
    note: str


def run_pick(pick: Pick, family_dir: Path, out: Path) -> tuple[Run, Path]:
    """Profile one instance in a fresh process (killed 60 s after its timeout); returns the run and the .prof."""
    prof = out / f"{pick.set}.{pick.kind}.prof"
    argv = ["check", str(family_dir / pick.onnx), str(family_dir / pick.vnnlib)]
    argv += ["--timeout", repr(pick.timeout_s), "--json"]
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **os.environ}
    command = [sys.executable, str(Path(__file__).resolve()), "child", str(prof), *argv]
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    timer = threading.Timer(pick.timeout_s + 60, proc.kill)
    timer.start()
    stdout = proc.stdout.read() if proc.stdout else ""
    _, _, usage = os.wait4(proc.pid, 0)
    timer.cancel()
    proc.returncode = 0  # reaped by wait4
    wall = time.monotonic() - started
    verdict, _, rest = stdout.partition("\n")
    try:
        details = json.loads(rest)
    except json.JSONDecodeError:
        details = {}
    cpu = usage.ru_utime + usage.ru_stime
    note = str(details.get("note", ""))[:200]
    return Run(pick, wall, cpu, verdict.strip() or "(none)", str(details.get("method", "")), note), prof


def section(run: Run, summary: Summary) -> str:
    """One instance's markdown section."""
    p = run.pick
    head = (
        f"### {p.set}: slowest {p.kind} (recorded {p.recorded} in {p.recorded_s:.1f} s)\n\n"
        f"`{p.onnx}` `{p.vnnlib}`, timeout {p.timeout_s:g} s: **{run.verdict}** ({run.method or '-'}), "
        f"wall {run.wall_s:.1f} s, CPU {run.cpu_s:.1f} s" + (f"; note: {run.note}" if run.note else "") + "\n\n"
    )
    return head + render(summary, run.wall_s)


def write_outputs(out: Path, runs: list[tuple[Run, Summary | None, str]]) -> None:
    """``summary.md`` (an overview table, then every section) and ``runs.csv``, rewritten after each instance."""
    table = [
        "| set | slowest | recorded | now (timeout) | wall s | CPU s | largest phases (share of work) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, summary, _ in runs:
        p = run.pick
        phases = ", ".join(f"{n} {100 * s:.0f} %" for n, s in by_phase(summary)[:3]) if summary else "-"
        table.append(
            f"| {p.set} | {p.kind} | {p.recorded} {p.recorded_s:.1f} s | {run.verdict} ({p.timeout_s:g} s) | "
            f"{run.wall_s:.1f} | {run.cpu_s:.1f} | {phases} |"
        )
    (out / "summary.md").write_text("\n".join(table) + "\n\n" + "\n".join(text for _, _, text in runs))
    with open(out / "runs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(RUNS_HEADER)
        for run, _, _ in runs:
            p = run.pick
            fields = (p.set, p.kind, p.onnx, p.vnnlib, p.recorded, p.recorded_s, p.timeout_s, run.verdict)
            writer.writerow([*fields, run.method, f"{run.wall_s:.2f}", f"{run.cpu_s:.2f}"])


def rerender(out: Path) -> None:
    """Summarise again the kept ``.prof`` files of an earlier run in ``out`` (after a change to the summary);
    each section keeps its heading, a run whose ``.prof`` was not kept keeps its section."""
    with open(out / "runs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    runs: list[tuple[Run, Summary | None, str]] = []
    for r in rows:
        names = (r["set"], r["kind"], r["onnx"], r["vnnlib"], r["recorded"])
        pick = Pick(*names, float(r["recorded_s"]), float(r["timeout_s"]))
        run = Run(pick, float(r["wall_s"]), float(r["cpu_s"]), r["verdict"], r["method"], "")
        md, prof = out / f"{pick.set}.{pick.kind}.md", out / f"{pick.set}.{pick.kind}.prof"
        old = md.read_text() if md.exists() else section(run, Summary((), 0.0, 0.0, ()))
        summary = load_summary(prof) if prof.exists() else None
        text = old if summary is None else old.split("\n\nwork ", 1)[0] + "\n\n" + render(summary, run.wall_s)
        md.write_text(text)
        runs.append((run, summary, text))
    write_outputs(out, runs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--benchmarks", type=Path, default=DEFAULT_BENCHMARKS)
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated set names")
    parser.add_argument("--kinds", default="solved,timeout", help="solved, timeout or both")
    parser.add_argument("--cap", type=float, default=120.0, help="timeout cap of the solved rows (s)")
    parser.add_argument("--timeout-cap", type=float, default=None, help="cap of the timeout rows (default: --cap)")
    parser.add_argument("--rerender", action="store_true", help="only summarise --out's kept .prof files again")
    args = parser.parse_args(argv)
    if args.rerender:
        rerender(args.out)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    picks = [
        pick
        for name in args.sets.split(",")
        for pick in pick_slowest(
            args.results / name / "results.csv",
            args.benchmarks / name / "instances.csv",
            args.cap,
            args.cap if args.timeout_cap is None else args.timeout_cap,
        )
        if pick.kind in args.kinds.split(",")
    ]
    picks.sort(key=lambda p: p.kind != "solved")  # every solved row first: the timeouts are the less telling
    done: list[tuple[Run, Summary | None, str]] = []
    for pick in picks:
        run, prof = run_pick(pick, args.benchmarks / pick.set, args.out)
        if not prof.exists():
            done.append((run, None, section(run, Summary((), 0.0, 0.0, ())) + "(no profile written)\n"))
        else:
            summary = load_summary(prof)
            done.append((run, summary, section(run, summary)))
            (args.out / f"{pick.set}.{pick.kind}.md").write_text(done[-1][2])
            if prof.stat().st_size > PROF_KEEP_BYTES:
                prof.unlink()
        write_outputs(args.out, done)
        print(f"{pick.set} {pick.kind}: {run.verdict} wall {run.wall_s:.1f} s cpu {run.cpu_s:.1f} s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "child":
        code = run_child(Path(sys.argv[2]), sys.argv[3:])
        os._exit(code)  # abandoned native solves may still run: no interpreter teardown (as ``nnverify`` does)
    main()
