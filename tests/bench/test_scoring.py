"""Scoring against ``expected.csv``, witness checks of ``sat`` rows, peer tables and cactus plots."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import pytest
from benchdata import BENCHMARKS_DIR

from nnverify.bench.plots import cactus_plot, solved_times
from nnverify.bench.scoring import (
    POINTS_CORRECT,
    POINTS_WRONG,
    Outcome,
    format_table,
    load_expected,
    peer_reports,
    read_csv_rows,
    score,
    witness_checker,
    witness_path,
    wrong_lines,
)

BENCHMARKS = BENCHMARKS_DIR
FIELDS = ["category", "onnx", "vnnlib", "prepare_time", "result", "run_time", "method", "peak_mem_mb", "note"]
SAT_ONNX, SAT_PROP = "test_sat.onnx", "test_prop.vnnlib"


@pytest.fixture(scope="module")
def bench() -> Path:
    """The ``test`` benchmark set (skips without the shared data)."""
    if not (BENCHMARKS / "test" / "expected.csv").is_file():
        pytest.skip(f"benchmark data not found at {BENCHMARKS}")
    return BENCHMARKS / "test"


def write_results(path: Path, verdicts: dict[tuple[str, str], str]) -> Path:
    """A results CSV in the runner's format, one row per instance."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for i, ((onnx, vnnlib), verdict) in enumerate(verdicts.items()):
            row = {"category": "test", "onnx": onnx, "vnnlib": vnnlib, "prepare_time": "0.1", "result": verdict}
            writer.writerow({**row, "run_time": f"{0.5 + i:.3f}", "method": "bab", "peak_mem_mb": "80", "note": ""})
    return path


def copy_peer_witness(bench: Path, witness_dir: Path) -> None:
    """Put alpha-beta-CROWN's valid witness for the sat instance where the checker looks for ours."""
    src = bench / "counterexamples" / "2025_alpha_beta_crown" / "test_sat_test_prop.counterexample.gz"
    witness_dir.mkdir(exist_ok=True)
    witness_path(witness_dir, SAT_ONNX, SAT_PROP).write_bytes(gzip.decompress(src.read_bytes()))


def test_all_correct_scores_fifty(bench: Path, tmp_path: Path) -> None:
    expected = load_expected(bench / "expected.csv")
    results = write_results(tmp_path / "results.csv", dict(expected))
    copy_peer_witness(bench, tmp_path / "witnesses")
    checker = witness_checker(bench, tmp_path / "witnesses")
    report = score(read_csv_rows(results), expected, witness_ok=checker)
    assert report.count(Outcome.CORRECT) == 5
    assert report.points == 5 * POINTS_CORRECT == 50
    assert report.wrong == () and report.missing == () and wrong_lines(report) == []
    assert report.solved_time_s == pytest.approx(0.5 + 1.5 + 2.5 + 3.5 + 4.5)
    assert report.median_solved_time_s == pytest.approx(2.5)


def test_wrong_verdict_and_invalid_witness(bench: Path, tmp_path: Path) -> None:
    # A copy of the test set with a second sat instance (the sat property again under another name).
    copy = tmp_path / "bench"
    shutil.copytree(bench, copy, ignore=shutil.ignore_patterns("counterexamples"))
    shutil.copy(copy / SAT_PROP, copy / "test_prop_b.vnnlib")
    with (copy / "expected.csv").open("a", encoding="utf-8") as handle:
        handle.write(f"{SAT_ONNX},test_prop_b.vnnlib,sat,,,,60,\n")
    expected = load_expected(copy / "expected.csv")
    verdicts = dict(expected)
    verdicts[(SAT_ONNX, SAT_PROP)] = "unsat"  # wrong verdict: the ground truth is sat
    results = write_results(tmp_path / "results.csv", verdicts)
    witnesses = tmp_path / "witnesses"
    witnesses.mkdir()
    xs = "\n".join(f"(X_{i} 100.0)" for i in range(5))  # far outside the input box
    witness_path(witnesses, SAT_ONNX, "test_prop_b.vnnlib").write_text(f"sat\n({xs})\n")
    report = score(read_csv_rows(results), expected, witness_ok=witness_checker(copy, witnesses))
    reasons = {(i.onnx, i.vnnlib): i.reason for i in report.wrong}
    assert reasons[(SAT_ONNX, SAT_PROP)] == "unsat but expected sat"
    assert reasons[(SAT_ONNX, "test_prop_b.vnnlib")].startswith("sat without a valid witness: X lies outside")
    assert len(reasons) == report.count(Outcome.WRONG) == 2
    assert report.count(Outcome.CORRECT) == 4
    assert report.points == 4 * POINTS_CORRECT + 2 * POINTS_WRONG == -260
    lines = wrong_lines(report)
    assert f"WRONG: {SAT_ONNX} {SAT_PROP}: unsat but expected sat" in lines and len(lines) == 2


def test_sat_with_invalid_or_missing_witness_is_wrong(bench: Path, tmp_path: Path) -> None:
    expected = load_expected(bench / "expected.csv")
    row = {"onnx": SAT_ONNX, "vnnlib": SAT_PROP, "result": "sat", "run_time": "1.0"}
    missing = score([row], expected, witness_ok=witness_checker(bench, tmp_path))
    assert missing.wrong[0].reason == "sat without a valid witness: no witness file"
    xs = "\n".join(f"(X_{i} 100.0)" for i in range(5))
    witness_path(tmp_path, SAT_ONNX, SAT_PROP).write_text(f"sat\n({xs})\n")
    report = score([row], expected, witness_ok=witness_checker(bench, tmp_path))
    assert report.points == POINTS_WRONG
    assert report.wrong[0].reason.startswith("sat without a valid witness: X lies outside")
    assert wrong_lines(report) == [f"WRONG: {SAT_ONNX} {SAT_PROP}: {report.wrong[0].reason}"]


def test_unscored_timeout_and_error() -> None:
    expected = {("a.onnx", "p.vnnlib"): "unknown", ("b.onnx", "p.vnnlib"): "unsat"}
    rows = [
        {"onnx": "./a.onnx", "vnnlib": "p.vnnlib", "result": "sat", "run_time": "2"},
        {"onnx": "b.onnx", "vnnlib": "p.vnnlib", "result": "error", "run_time": ""},
        {"onnx": "c.onnx", "vnnlib": "p.vnnlib", "result": "timeout", "run_time": "60"},
    ]
    report = score(rows, expected, witness_ok=lambda row: True)
    assert [i.outcome for i in report.instances] == [Outcome.UNSCORED, Outcome.ERROR, Outcome.TIMEOUT]
    assert report.points == 0 and len(report.solved) == 1 and report.missing == ()


def test_peers_scored_from_acasxu() -> None:
    acas = BENCHMARKS / "acasxu"
    if not (acas / "peer_times.csv").is_file():
        pytest.skip("acasxu benchmark data not found")
    expected = load_expected(acas / "expected.csv")
    peers = peer_reports(read_csv_rows(acas / "peer_times.csv"), expected)
    assert {"nnenum", "alpha_beta_crown", "neuralsat", "pyrat"} <= set(peers)
    for report in peers.values():
        assert len(report.instances) <= 186
        assert report.points <= 186 * POINTS_CORRECT
        assert len(report.solved) + report.count(Outcome.WRONG) <= len(report.instances)
    assert peers["nnenum"].count(Outcome.CORRECT) > 150
    ours = score([], expected)
    table = format_table(ours, peers).splitlines()
    assert table[0].split()[:3] == ["tool", "solved", "correct"]
    assert table[2].startswith("nnverify")
    points = [int(line.split()[5]) for line in table[3:]]
    assert points == sorted(points, reverse=True)


def test_cactus_plot_png(bench: Path, tmp_path: Path) -> None:
    acas = BENCHMARKS / "acasxu"
    if not (acas / "peer_times.csv").is_file():
        pytest.skip("acasxu benchmark data not found")
    expected = load_expected(acas / "expected.csv")
    peers = peer_reports(read_csv_rows(acas / "peer_times.csv"), expected)
    ours_rows = [{"onnx": k[0], "vnnlib": k[1], "result": v, "run_time": "0.0"} for k, v in list(expected.items())[:40]]
    ours = score(ours_rows, expected)
    series = {"nnverify": solved_times(ours.instances)} | {t: solved_times(r.instances) for t, r in peers.items()}
    assert series["nnverify"] == [0.0] * 40
    out = tmp_path / "cactus.png"
    cactus_plot(series, out, title="ACAS Xu", timeout_s=116)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    empty = tmp_path / "empty.png"
    cactus_plot({"nnverify": []}, empty, title="nothing solved")
    assert empty.read_bytes()[:4] == b"\x89PNG"
