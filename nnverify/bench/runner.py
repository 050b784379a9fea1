"""Run benchmark instances, one ``nnverify check`` process each under a hard timeout, into a results CSV.

The CSV starts with VNN-COMP's columns (``category,onnx,vnnlib,prepare_time,result,run_time``) followed by
``method,peak_mem_mb,note``. Runs are resumable: rows already in the CSV are not run again, and every
finished row is appended at once. Scoring against ``expected.csv`` is not done here.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from nnverify.bench.executors import THREAD_PREFIX, Executor, LocalExecutor
from nnverify.bench.instances import Instance
from nnverify.options import available_cores

logger = logging.getLogger(__name__)

#: Seconds past the instance's timeout after which its process group is killed.
HARD_TIMEOUT_GRACE_S = 5.0
#: After an interrupt, how long the runner keeps killing local workers' process groups while worker threads are
#: still alive.
ABORT_REAP_S = 5.0
#: Columns of the results CSV: VNN-COMP's layout first, then ours.
CSV_FIELDS = ("category", "onnx", "vnnlib", "prepare_time", "result", "run_time", "method", "peak_mem_mb", "note")
#: Exit code of ``nnverify check`` for bad input / environment problems (an ``Error:`` line on stderr).
_USER_ERROR_CODES = (3, 4)

#: Process groups of running instances, so an interrupted benchmark can kill them (they are in their own
#: sessions and do not receive the terminal's Ctrl-C).
_live_groups: set[int] = set()
_live_lock = threading.Lock()


class BenchResult(StrEnum):
    """The ``result`` column: VNN-COMP's verdicts plus ``error`` (the run failed)."""

    SAT = "sat"
    UNSAT = "unsat"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the results CSV.

    Attributes:
        category: Benchmark category.
        onnx: Network path as written in ``instances.csv``.
        vnnlib: Property path as written in ``instances.csv``.
        prepare_time: Seconds spent preparing the instance (VNN-COMP's column; always 0.0 for now).
        result: sat / unsat / timeout / unknown / error.
        run_time: Wall seconds of the ``nnverify check`` process, start-up included.
        method: Which phase decided (from ``--json``), empty if none.
        peak_mem_mb: Peak resident memory of the process in MiB (``ru_maxrss``).
        note: Why unknown / error / timeout, one line.
    """

    category: str
    onnx: str
    vnnlib: str
    prepare_time: float
    result: BenchResult
    run_time: float
    method: str = ""
    peak_mem_mb: float = 0.0
    note: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """``(category, onnx, vnnlib)``: the same identity as ``Instance.key``."""
        return (self.category, self.onnx, self.vnnlib)

    def to_csv(self) -> list[str]:
        """The row's fields as CSV strings, in ``CSV_FIELDS`` order (times with 3 decimals)."""
        return [
            self.category,
            self.onnx,
            self.vnnlib,
            f"{self.prepare_time:.3f}",
            self.result.value,
            f"{self.run_time:.3f}",
            self.method,
            f"{self.peak_mem_mb:.1f}",
            " ".join(self.note.split()),
        ]

    @classmethod
    def from_csv(cls, record: dict[str, str]) -> Row:
        """Parse one ``csv.DictReader`` record (raises ``KeyError``/``ValueError`` if malformed)."""
        return cls(
            category=record["category"],
            onnx=record["onnx"],
            vnnlib=record["vnnlib"],
            prepare_time=float(record["prepare_time"]),
            result=BenchResult(record["result"]),
            run_time=float(record["run_time"]),
            method=record.get("method") or "",
            peak_mem_mb=float(record.get("peak_mem_mb") or 0.0),
            note=record.get("note") or "",
        )


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What happened to one worker process."""

    returncode: int
    wall_s: float
    maxrss_kib: int
    killed: bool
    stdout: str
    stderr: str


def check_command(instance: Instance, *, backend: str, results_file: Path, threads: int = 0) -> list[str]:
    """The worker command for one instance (a test may monkeypatch this to run something else).

    Args:
        instance: The instance to decide.
        backend: Exact backend name (``highs``, ``gurobi``).
        results_file: Where the VNN-COMP result file goes.
        threads: Cores the instance may use (``--threads``; 0: all the process may run on).

    Returns:
        ``argv`` of ``python -m nnverify.cli check ONNX VNNLIB --timeout T --json ...``.
    """
    return [
        sys.executable,
        "-m",
        "nnverify.cli",
        "check",
        str(instance.onnx),
        str(instance.vnnlib),
        "--timeout",
        repr(float(instance.timeout_s)),
        "--json",
        "--backend",
        backend,
        "--results-file",
        str(results_file),
        "--threads",
        str(threads),
    ]


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_live_groups() -> None:
    """Kill every instance process group started by this interpreter that is still running."""
    with _live_lock:
        groups = list(_live_groups)
    for pgid in groups:
        _kill_group(pgid)


def _run_process(cmd: list[str], limit_s: float, workdir: Path) -> _Outcome:
    """Run ``cmd`` in its own process group; kill the group after ``limit_s``; reap it with ``wait4``.

    ``wait4`` on the pid gives that child's own rusage (peak RSS), unlike ``RUSAGE_CHILDREN`` deltas,
    which mix up children of parallel jobs.
    """
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    killed = threading.Event()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
    with _live_lock:
        _live_groups.add(proc.pid)

    def on_deadline() -> None:
        killed.set()
        _kill_group(proc.pid)

    timer = threading.Timer(limit_s, on_deadline)
    timer.daemon = True
    timer.start()
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        with _live_lock:
            _live_groups.discard(proc.pid)
    wall_s = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    if killed.is_set():
        _kill_group(proc.pid)  # stragglers the worker may have started
    return _Outcome(
        returncode=proc.returncode,
        wall_s=wall_s,
        maxrss_kib=rusage.ru_maxrss,
        killed=killed.is_set(),
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


def _error_note(outcome: _Outcome) -> str:
    """One line saying why the worker failed: its ``Error:`` line, a signal, or its last stderr line."""
    lines = [line.strip() for line in outcome.stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Error:"):
            return line.removeprefix("Error:").strip()
    if outcome.returncode < 0:
        return f"worker killed by signal {signal.Signals(-outcome.returncode).name}"
    detail = f": {lines[-1]}" if lines else ""
    return f"worker exited with code {outcome.returncode}{detail}"


def _classify(outcome: _Outcome, limit_s: float) -> tuple[BenchResult, str, str]:
    """``(result, method, note)`` from a finished worker."""
    if outcome.killed:
        return BenchResult.TIMEOUT, "", f"killed at hard timeout ({limit_s:g} s)"
    if outcome.returncode != 0:
        return BenchResult.ERROR, "", _error_note(outcome)
    first, _, rest = outcome.stdout.partition("\n")
    try:
        result = BenchResult(first.strip())
    except ValueError:
        return BenchResult.ERROR, "", f"unexpected first output line {first.strip()[:80]!r}"
    if result is BenchResult.ERROR:
        return result, "", "worker reported error"
    try:
        data = json.loads(rest)
    except json.JSONDecodeError:
        return result, "", "could not parse the --json output"
    return result, str(data.get("method", "")), str(data.get("note", ""))


def _save_witness(results_file: Path, instance: Instance, witness_dir: Path) -> None:
    """Copy a sat result file to ``witness_dir/<onnx stem>_<vnnlib stem>.counterexample``."""
    witness_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(results_file, witness_dir / f"{instance.onnx.stem}_{instance.vnnlib.stem}.counterexample")


def run_instance(
    instance: Instance, *, backend: str = "highs", witness_dir: str | Path | None = None, threads: int = 0
) -> Row:
    """Decide one instance in a separate ``nnverify check`` process with a hard timeout.

    The process gets ``--timeout instance.timeout_s``; if it is still running
    ``HARD_TIMEOUT_GRACE_S`` seconds later its process group is killed and the row says ``timeout``.
    Exit codes 3/4 (bad input, environment) and crashes give ``error`` rows; this function does not raise
    for a failing instance.

    Args:
        instance: The instance.
        backend: Exact backend passed to ``nnverify check``.
        witness_dir: If given and the result is sat, the VNN-COMP result file (verdict + witness) is
            copied there as ``<onnx stem>_<vnnlib stem>.counterexample``.
        threads: Cores the instance may use (0: all its process may run on).

    Returns:
        The results row.
    """
    limit_s = instance.timeout_s + HARD_TIMEOUT_GRACE_S
    with tempfile.TemporaryDirectory(prefix="nnverify-bench-") as tmp:
        workdir = Path(tmp)
        results_file = workdir / "result.txt"
        cmd = check_command(instance, backend=backend, results_file=results_file, threads=threads)
        try:
            outcome = _run_process(cmd, limit_s, workdir)
        except OSError as exc:
            return _row(instance, BenchResult.ERROR, 0.0, note=f"cannot start worker: {exc}")
        result, method, note = _classify(outcome, limit_s)
        if result is BenchResult.SAT and witness_dir is not None and results_file.is_file():
            _save_witness(results_file, instance, Path(witness_dir))
    logger.debug("%s %s: %s in %.3f s", instance.onnx_rel, instance.vnnlib_rel, result, outcome.wall_s)
    return _row(instance, result, outcome.wall_s, method, outcome.maxrss_kib / 1024, note)


def _row(
    instance: Instance, result: BenchResult, run_time: float, method: str = "", mem_mb: float = 0.0, note: str = ""
) -> Row:
    """A row rounded as the CSV stores it, so fresh and resumed rows compare equal."""
    return Row(
        instance.category,
        instance.onnx_rel,
        instance.vnnlib_rel,
        0.0,
        result,
        round(run_time, 3),
        method,
        round(mem_mb, 1),
        " ".join(note.split()),
    )


def read_rows(out_csv: str | Path) -> list[Row]:
    """Rows of a results CSV written by ``run_benchmark``; a missing file gives ``[]``.

    A malformed line (e.g. half-written by a killed run) is skipped with a warning in the log, so its
    instance runs again.
    """
    path = Path(out_csv)
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            try:
                rows.append(Row.from_csv(record))
            except (KeyError, ValueError, TypeError):
                logger.warning("%s: skipping malformed row %r", path, record)
    return rows


def _append_row(path: Path, row: Row) -> None:
    """Append one row (and the header if the file is new or empty), flushed before returning."""
    new = not path.is_file() or path.stat().st_size == 0
    if not new:
        with path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            needs_newline = handle.read(1) not in (b"\n", b"\r")
    with path.open("a", newline="") as handle:
        if not new and needs_newline:
            handle.write("\n")  # terminate a line cut short by a killed run
        writer = csv.writer(handle)
        if new:
            writer.writerow(CSV_FIELDS)
        writer.writerow(row.to_csv())
        handle.flush()
        os.fsync(handle.fileno())


def _abort(rows: Iterator[Row]) -> None:
    """Stop an interrupted benchmark: close the executor's stream and kill the local workers' process groups,
    until no local worker thread is left (one may be between starting its process and registering it)."""
    _kill_live_groups()
    with contextlib.suppress(Exception):
        close = getattr(rows, "close", None)
        if close is not None:
            close()
    deadline = time.monotonic() + ABORT_REAP_S
    while time.monotonic() < deadline:
        _kill_live_groups()
        if not any(t.name.startswith(THREAD_PREFIX) and t.is_alive() for t in threading.enumerate()):
            break
        time.sleep(0.05)


def run_benchmark(
    instances: Iterable[Instance],
    out_csv: str | Path,
    *,
    jobs: int = 1,
    backend: str = "highs",
    executor: Executor | None = None,
    witness_dir: str | Path | None = None,
    progress: Callable[[Row, int, int], None] | None = None,
) -> list[Row]:
    """Run every instance not yet in ``out_csv``, appending each finished row to it at once.

    Args:
        instances: The instances (duplicates by ``(category, onnx, vnnlib)`` run once).
        out_csv: Results CSV; created with a header if missing, otherwise resumed.
        jobs: Parallel instances for the default ``LocalExecutor`` (ignored when ``executor`` is given); each
            instance may use ``cores // jobs`` cores (``nnverify check --threads``).
        backend: Exact backend of ``nnverify check``.
        executor: Where to run (``LocalExecutor(jobs)`` by default, or a ``DaskExecutor``).
        witness_dir: Directory for the result files of sat instances (see ``run_instance``).
        progress: Called as ``progress(row, done, total)`` after each new row; ``done`` counts the rows
            resumed from ``out_csv`` too, ``total`` is the number of distinct instances.

    Returns:
        One row per distinct instance, in input order (resumed rows are read back from ``out_csv``).
    """
    path = Path(out_csv)
    unique = list({instance.key: instance for instance in instances}.values())
    done = {row.key: row for row in read_rows(path)}
    todo = [instance for instance in unique if instance.key not in done]
    count, total = len(unique) - len(todo), len(unique)
    # local jobs share this machine's cores; a Dask worker's process sees its own
    threads = 0 if executor is not None else max(1, available_cores() // jobs)
    task = functools.partial(run_instance, backend=backend, witness_dir=witness_dir, threads=threads)
    rows = (executor or LocalExecutor(jobs)).map_unordered(task, todo)
    try:
        for row in rows:
            _append_row(path, row)
            done[row.key] = row
            count += 1
            if progress is not None:
                progress(row, count, total)
    except BaseException:
        _abort(rows)
        raise
    return [done[instance.key] for instance in unique]
