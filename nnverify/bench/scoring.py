"""Scoring of benchmark results against the ground truth, VNN-COMP 2025 style, and comparison with peers.

Every instance is classified as one ``Outcome``: a ``sat``/``unsat`` answer that matches ``expected.csv``
is correct (+10 points), one that contradicts it is wrong (-150 points); a ``sat`` answer counts only with a
valid witness, so a ``sat`` without one is wrong as well. Timeouts, ``unknown`` and ``error`` score 0, and so do
answers on instances without ground truth (``unscored``). Nothing here prints; ``format_table`` and
``wrong_lines`` return text for the caller to show.
"""

from __future__ import annotations

import csv
import os
import posixpath
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from nnverify.errors import InputFileError, NnverifyError

#: A results row (``csv.DictReader`` style): at least ``onnx``, ``vnnlib``, ``result``, ``run_time``.
Row = Mapping[str, str]
#: Instance key: the ``(onnx, vnnlib)`` paths as written in ``instances.csv`` (normalised).
Key = tuple[str, str]

#: VNN-COMP 2025 points.
POINTS_CORRECT = 10
POINTS_WRONG = -150

#: The tool name our own report carries in tables and plots.
OURS = "nnverify"

_SOLVED_VERDICTS = frozenset({"sat", "unsat"})


class Outcome(StrEnum):
    """How one answer scores against the ground truth."""

    CORRECT = "correct"
    WRONG = "wrong"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"
    ERROR = "error"
    UNSCORED = "unscored"


class WitnessVerdict(Protocol):
    """What a witness hook may return besides a plain ``bool``: truthiness plus a ``reason``."""

    @property
    def reason(self) -> str:
        """Why the witness is (in)valid."""
        ...

    def __bool__(self) -> bool:
        """Truthy exactly when the witness is valid."""
        ...


#: A witness hook: is the ``sat`` row's counterexample valid (a ``bool``, or a ``WitnessVerdict`` with a reason)?
WitnessOk = Callable[[Row], "bool | WitnessVerdict"]


@dataclass(frozen=True, slots=True)
class WitnessResult:
    """A witness hook's answer: ``valid`` and why (``"valid"`` or the reason it is not)."""

    valid: bool
    reason: str

    def __bool__(self) -> bool:
        """Truthy exactly when the witness is valid."""
        return self.valid


@dataclass(frozen=True, slots=True)
class InstanceScore:
    """One instance's answer and how it scores.

    Attributes:
        onnx: Network path as in ``instances.csv``.
        vnnlib: Property path as in ``instances.csv``.
        verdict: The answer (``sat``, ``unsat``, ``timeout``, ``unknown``, ``error``).
        expected: Ground truth (``sat``, ``unsat``, ``unknown``; ``unknown`` when the instance is not listed).
        outcome: The classification.
        time_s: Run time in seconds (NaN when the row has none).
        reason: Why the answer is wrong (empty otherwise).
    """

    onnx: str
    vnnlib: str
    verdict: str
    expected: str
    outcome: Outcome
    time_s: float
    reason: str = ""

    @property
    def points(self) -> int:
        """VNN-COMP points of this answer."""
        return {Outcome.CORRECT: POINTS_CORRECT, Outcome.WRONG: POINTS_WRONG}.get(self.outcome, 0)


@dataclass(frozen=True, slots=True)
class ScoreReport:
    """The score of one tool on one benchmark set.

    Attributes:
        tool: Tool name (``nnverify`` for ours).
        instances: Every scored answer, in input order.
        missing: Instances of ``expected.csv`` without an answer.
    """

    tool: str
    instances: tuple[InstanceScore, ...]
    missing: tuple[Key, ...] = ()

    def count(self, outcome: Outcome) -> int:
        """Number of instances with this outcome."""
        return sum(1 for inst in self.instances if inst.outcome is outcome)

    @property
    def counts(self) -> dict[Outcome, int]:
        """Number of instances per outcome (every outcome present, zeros included)."""
        return {outcome: self.count(outcome) for outcome in Outcome}

    @property
    def points(self) -> int:
        """Total VNN-COMP points."""
        return sum(inst.points for inst in self.instances)

    @property
    def solved(self) -> tuple[InstanceScore, ...]:
        """Accepted answers: correct, plus ``sat``/``unsat`` on instances without ground truth."""
        return tuple(i for i in self.instances if i.outcome in (Outcome.CORRECT, Outcome.UNSCORED))

    @property
    def solved_time_s(self) -> float:
        """Total run time of the solved instances."""
        return sum(i.time_s for i in self.solved if i.time_s == i.time_s)

    @property
    def median_solved_time_s(self) -> float | None:
        """Median run time of the solved instances (``None`` when nothing was solved)."""
        times = [i.time_s for i in self.solved if i.time_s == i.time_s]
        return statistics.median(times) if times else None

    @property
    def wrong(self) -> tuple[InstanceScore, ...]:
        """The wrong answers, with their reasons."""
        return tuple(i for i in self.instances if i.outcome is Outcome.WRONG)


def instance_key(onnx: str, vnnlib: str) -> Key:
    """Normalised ``(onnx, vnnlib)`` key (``./a//b`` and ``a/b`` compare equal, Windows slashes too)."""
    return (posixpath.normpath(onnx.strip().replace("\\", "/")), posixpath.normpath(vnnlib.strip().replace("\\", "/")))


#: Columns each kind of CSV must have (``read_csv_rows(..., required=...)``).
RESULTS_COLUMNS = ("onnx", "vnnlib", "result")
EXPECTED_COLUMNS = ("onnx", "vnnlib", "expected")
PEER_COLUMNS = ("onnx", "vnnlib", "tool", "result")


def read_csv_rows(path: str | os.PathLike[str], required: Sequence[str] = ()) -> list[dict[str, str]]:
    """Rows of a CSV file with a header line (results, ``expected.csv``, ``peer_times.csv``).

    Raises:
        InputFileError: The file cannot be read, is not UTF-8, or its header lacks a ``required`` column
            (the message names the missing columns and the ones found).
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or ()]
            missing = [name for name in required if name not in columns]
            if missing:
                found = ", ".join(columns) or "an empty file"
                raise InputFileError(
                    f"{os.fspath(path)}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                    f"in the header line (found: {found}); expected a header with {', '.join(required)}"
                )
            return [{(k or "").strip(): (v if isinstance(v, str) else "") for k, v in row.items()} for row in reader]
    except OSError as exc:
        raise InputFileError(f"{os.fspath(path)}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"{os.fspath(path)}: not a UTF-8 CSV file ({exc})") from None


def load_expected(path: str | os.PathLike[str]) -> dict[Key, str]:
    """``expected.csv`` as ``{(onnx, vnnlib): "sat" | "unsat" | "unknown"}``.

    Raises:
        InputFileError: See ``read_csv_rows`` (``onnx``, ``vnnlib`` and ``expected`` columns are required).
    """
    rows = read_csv_rows(path, EXPECTED_COLUMNS)
    return {instance_key(r["onnx"], r["vnnlib"]): r["expected"].strip().lower() for r in rows}


def _time(text: str | None) -> float:
    """A run time cell as float, NaN when empty or not a number."""
    try:
        return float(text) if text not in (None, "") else float("nan")
    except ValueError:
        return float("nan")


def _witness_reason(verdict: bool | WitnessVerdict) -> str:
    """The reason a witness hook gave (a plain ``False`` gives a generic one)."""
    reason = getattr(verdict, "reason", "")
    return str(reason) if reason else "the witness does not replay"


def classify(verdict: str, expected: str, witness: bool | WitnessVerdict | None) -> tuple[Outcome, str]:
    """Classify one answer.

    Args:
        verdict: The answer, lower case.
        expected: The ground truth (``sat``, ``unsat`` or ``unknown``).
        witness: The witness hook's answer for a ``sat`` verdict, ``None`` when witnesses are trusted.

    Returns:
        The outcome and, for a wrong answer, the reason.
    """
    if verdict not in _SOLVED_VERDICTS:
        return {"timeout": Outcome.TIMEOUT, "unknown": Outcome.UNKNOWN}.get(verdict, Outcome.ERROR), ""
    if expected in _SOLVED_VERDICTS and verdict != expected:
        note = " (yet the witness replays as valid: check the ground truth)" if witness else ""
        return Outcome.WRONG, f"{verdict} but expected {expected}{note}"
    if verdict == "sat" and witness is not None and not witness:
        return Outcome.WRONG, f"sat without a valid witness: {_witness_reason(witness)}"
    return (Outcome.CORRECT if expected in _SOLVED_VERDICTS else Outcome.UNSCORED), ""


def score(
    results_rows: Iterable[Row],
    expected: Mapping[Key, str],
    *,
    witness_ok: WitnessOk | None = None,
    tool: str = OURS,
) -> ScoreReport:
    """Score a tool's answers against the ground truth.

    Args:
        results_rows: Rows with ``onnx``, ``vnnlib``, ``result`` and ``run_time`` (or ``time_s``) columns.
        expected: Ground truth by ``instance_key`` (see ``load_expected``).
        witness_ok: Called for each ``sat`` row; a falsy answer makes the row wrong. ``None`` trusts every ``sat``.
        tool: The name the report carries.

    Returns:
        The report; rows of instances not in ``expected`` are scored as if the ground truth were ``unknown``.
    """
    scored: list[InstanceScore] = []
    for row in results_rows:
        key = instance_key(row["onnx"], row["vnnlib"])
        verdict = row.get("result", "").strip().lower()
        truth = expected.get(key, "unknown")
        witness = witness_ok(row) if witness_ok is not None and verdict == "sat" else None
        outcome, reason = classify(verdict, truth, witness)
        time_s = _time(row.get("run_time", row.get("time_s")))
        scored.append(InstanceScore(key[0], key[1], verdict, truth, outcome, time_s, reason))
    answered = {(i.onnx, i.vnnlib) for i in scored}
    missing = tuple(key for key in expected if key not in answered)
    return ScoreReport(tool, tuple(scored), missing)


def peer_reports(peer_rows: Iterable[Row], expected: Mapping[Key, str]) -> dict[str, ScoreReport]:
    """Score every tool of ``peer_times.csv`` rows (``onnx,vnnlib,tool,result,time_s``), witnesses trusted.

    Returns:
        ``{tool: report}`` in order of first appearance; ``missing`` is relative to ``expected``.
    """
    by_tool: dict[str, list[Row]] = {}
    for row in peer_rows:
        by_tool.setdefault(row["tool"].strip(), []).append(row)
    return {tool: score(rows, expected, witness_ok=None, tool=tool) for tool, rows in by_tool.items()}


def _table_row(report: ScoreReport) -> list[str]:
    """The table cells of one report."""
    median = report.median_solved_time_s
    time_cell = f"{report.solved_time_s:.1f}" + (f" (med {median:.2f})" if median is not None else "")
    cells = [report.tool, len(report.solved), report.count(Outcome.CORRECT), report.count(Outcome.WRONG)]
    return [str(c) for c in cells] + [str(report.count(Outcome.TIMEOUT)), str(report.points), time_cell]


def format_table(ours: ScoreReport, peers: Mapping[str, ScoreReport] | Sequence[ScoreReport]) -> str:
    """A plain-text table, ours first, then the peers by points (best first).

    Columns: tool, solved, correct, wrong, timeouts, points, time on solved (s, total and median).
    """
    others = list(peers.values()) if isinstance(peers, Mapping) else list(peers)
    others.sort(key=lambda r: (-r.points, r.solved_time_s, r.tool))
    header = ["tool", "solved", "correct", "wrong", "timeouts", "points", "time on solved [s]"]
    rows = [header] + [_table_row(r) for r in [ours, *others]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule] + [line(r) for r in rows[1:]])


def wrong_lines(report: ScoreReport) -> list[str]:
    """One loud line per wrong answer: ``WRONG: onnx vnnlib: reason``."""
    return [f"WRONG: {i.onnx} {i.vnnlib}: {i.reason}" for i in report.wrong]


def witness_path(witness_dir: str | os.PathLike[str], onnx: str, vnnlib: str) -> Path:
    """Where the witness of an instance is expected: ``<onnx stem>_<vnnlib stem>.counterexample``."""
    return Path(witness_dir) / f"{Path(onnx).stem}_{Path(vnnlib).stem}.counterexample"


def witness_checker(bench_dir: str | os.PathLike[str], witness_dir: str | os.PathLike[str]) -> WitnessOk:
    """A witness hook for ``score``: replays each ``sat`` row's witness file on onnxruntime.

    Args:
        bench_dir: The benchmark directory the rows' ``onnx``/``vnnlib`` paths are relative to.
        witness_dir: Where the witness files are (``witness_path``; a ``.gz`` next to it is accepted too).

    Returns:
        A function of a row giving a ``WitnessResult``; networks and properties are loaded once each.
    """
    from nnverify.graph.onnx_import import load_network
    from nnverify.spec.vnnlib import load_property
    from nnverify.witness import check_witness_file

    bench = Path(bench_dir)
    sizes: dict[Path, tuple[int, int]] = {}

    def check(row: Row) -> WitnessResult:
        path = witness_path(witness_dir, row["onnx"], row["vnnlib"])
        if not path.is_file():
            gz = path.with_name(path.name + ".gz")
            if not gz.is_file():
                return WitnessResult(False, "no witness file")
            path = gz
        onnx_path = bench / row["onnx"]
        try:
            if onnx_path not in sizes:
                graph = load_network(onnx_path)
                sizes[onnx_path] = (graph.n_inputs, graph.n_outputs)
            prop = load_property(bench / row["vnnlib"], *sizes[onnx_path])
            result = check_witness_file(onnx_path, prop, path)
        except NnverifyError as exc:
            return WitnessResult(False, f"cannot check the witness: {exc}")
        return WitnessResult(result.valid, result.reason)

    return check
