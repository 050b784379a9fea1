"""Tests of the benchmark runner: the ``test`` set locally and on Dask, resuming, and the hard timeout."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from benchdata import BENCHMARKS_DIR

from nnverify.bench import runner
from nnverify.bench.executors import DaskExecutor, LocalExecutor
from nnverify.bench.instances import Instance, InstancesFileError, read_instances
from nnverify.bench.runner import CSV_FIELDS, BenchResult, Row, read_rows, run_benchmark, run_instance
from nnverify.errors import InputFileError

TEST_SET = BENCHMARKS_DIR / "test"

pytestmark = pytest.mark.skipif(not TEST_SET.is_dir(), reason=f"benchmark data not found at {TEST_SET}")


def expected_verdicts() -> dict[tuple[str, str], str]:
    """``(onnx, vnnlib) -> expected`` from the test set's ``expected.csv``."""
    with (TEST_SET / "expected.csv").open(newline="") as handle:
        return {(r["onnx"], r["vnnlib"]): r["expected"] for r in csv.DictReader(handle)}


def assert_correct(rows: list[Row]) -> None:
    """Every row of the test set carries its expected verdict."""
    expected = expected_verdicts()
    assert len(rows) == len(expected) == 5
    assert {(r.onnx, r.vnnlib): r.result.value for r in rows} == expected
    assert all(r.category == "test" and r.run_time > 0 and r.peak_mem_mb > 0 for r in rows)


def slow_instance(tmp_path: Path, name: str = "slow") -> Instance:
    """An instance whose paths do not matter: the command is monkeypatched."""
    return Instance("slow", tmp_path / f"{name}.onnx", tmp_path / "p.vnnlib", f"{name}.onnx", "p.vnnlib", 1.0)


def test_read_instances() -> None:
    instances = read_instances(TEST_SET / "instances.csv")
    assert [i.onnx_rel for i in instances][:2] == ["test_nano.onnx", "test_tiny.onnx"]
    assert all(i.category == "test" and i.timeout_s == 60.0 and i.onnx.is_file() for i in instances)
    assert read_instances(TEST_SET / "instances.csv", category="x")[0].category == "x"


def test_read_instances_blank_lines_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "sub" / "instances.csv"
    good.parent.mkdir()
    good.write_text("\nnets/a.onnx,props/p.vnnlib,12.5\n\n")
    (instance,) = read_instances(good)
    assert instance == Instance("sub", good.parent / "nets/a.onnx", good.parent / "props/p.vnnlib",
                                "nets/a.onnx", "props/p.vnnlib", 12.5)  # fmt: skip
    bad = tmp_path / "bad.csv"
    bad.write_text("a.onnx,p.vnnlib,60\na.onnx,p.vnnlib,soon\n")
    with pytest.raises(InstancesFileError, match=r"bad.csv:2:17: expected a positive timeout"):
        read_instances(bad)
    bad.write_text("a.onnx,p.vnnlib\n")
    with pytest.raises(InstancesFileError, match="expected 3 fields"):
        read_instances(bad)
    with pytest.raises(InputFileError):
        read_instances(tmp_path / "missing.csv")


def test_test_set_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out_csv, witnesses = tmp_path / "results.csv", tmp_path / "witnesses"
    instances = read_instances(TEST_SET / "instances.csv")
    seen: list[tuple[str, int, int]] = []
    rows = run_benchmark(
        instances, out_csv, jobs=2, witness_dir=witnesses, progress=lambda r, d, t: seen.append((r.onnx, d, t))
    )
    assert [(r.onnx, r.vnnlib) for r in rows] == [(i.onnx_rel, i.vnnlib_rel) for i in instances]
    assert_correct(rows)
    assert sorted(d for _, d, _ in seen) == [1, 2, 3, 4, 5] and {t for _, _, t in seen} == {5}
    assert [p.name for p in witnesses.iterdir()] == ["test_sat_test_prop.counterexample"]
    assert (witnesses / "test_sat_test_prop.counterexample").read_text().startswith("sat\n(")
    lines = out_csv.read_text().splitlines()
    assert lines[0] == ",".join(CSV_FIELDS) and len(lines) == 6
    assert sorted(read_rows(out_csv), key=lambda r: r.key) == sorted(rows, key=lambda r: r.key)

    # Resume: nothing runs again, no row is added, the stored rows come back in instance order.
    def must_not_run(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("an instance ran again")

    monkeypatch.setattr(runner, "check_command", must_not_run)
    again = run_benchmark(instances, out_csv, jobs=2, progress=lambda *a: pytest.fail("progress on resume"))
    assert out_csv.read_text().splitlines() == lines
    assert [(r.onnx, r.result) for r in again] == [(r.onnx, r.result) for r in rows]


def test_resume_after_half_written_line(tmp_path: Path) -> None:
    out_csv = tmp_path / "results.csv"
    (nano, *_) = read_instances(TEST_SET / "instances.csv")
    out_csv.write_text(",".join(CSV_FIELDS) + "\ntest,test_nano.onnx,test_nano.vnnlib,0.0")  # killed mid-write
    (row,) = run_benchmark([nano], out_csv)
    assert row.result is BenchResult.UNSAT
    assert [r.result for r in read_rows(out_csv)] == [BenchResult.UNSAT]


def test_hard_timeout_kills_and_continues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text("import time\ntime.sleep(60)\n")
    quick = tmp_path / "quick.py"
    quick.write_text("import json\nprint('unsat')\nprint(json.dumps({'method': 'fake', 'note': ''}))\n")

    def fake_command(instance: Instance, *, backend: str, results_file: Path, threads: int = 0) -> list[str]:
        return [sys.executable, str(sleeper if instance.onnx.stem == "slow" else quick)]

    monkeypatch.setattr(runner, "check_command", fake_command)
    monkeypatch.setattr(runner, "HARD_TIMEOUT_GRACE_S", 0.5)
    instances = [slow_instance(tmp_path), slow_instance(tmp_path, "fast")]
    rows = run_benchmark(instances, tmp_path / "results.csv", jobs=1)
    assert rows[0].result is BenchResult.TIMEOUT and "killed" in rows[0].note
    assert (rows[1].result, rows[1].method) == (BenchResult.UNSAT, "fake")
    assert [r.result for r in read_rows(tmp_path / "results.csv")] == [BenchResult.TIMEOUT, BenchResult.UNSAT]


def test_interrupted_run_kills_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text("import time\ntime.sleep(60)\n")
    quick = tmp_path / "quick.py"
    quick.write_text("print('unknown')\n")

    def fake_command(instance: Instance, *, backend: str, results_file: Path, threads: int = 0) -> list[str]:
        return [sys.executable, str(sleeper if instance.onnx.stem == "slow" else quick)]

    def interrupt(row: Row, done: int, total: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "check_command", fake_command)
    instances = [slow_instance(tmp_path), slow_instance(tmp_path, "fast"), slow_instance(tmp_path, "slow2")]
    out_csv = tmp_path / "results.csv"
    with pytest.raises(KeyboardInterrupt):  # returns at once: the 60 s sleeper is killed, slow2 never starts
        run_benchmark(instances, out_csv, jobs=2, progress=interrupt)
    # Only the finished row is kept; the killed worker is not recorded as a timeout, so a resume reruns it.
    assert [(r.onnx, r.result) for r in read_rows(out_csv)] == [("fast.onnx", BenchResult.UNKNOWN)]
    assert not runner._live_groups


def test_error_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = Instance("t", tmp_path / "none.onnx", TEST_SET / "test_prop.vnnlib", "none.onnx", "p", 10.0)
    row = run_instance(missing)
    assert row.result is BenchResult.ERROR and "none.onnx" in row.note and "Error" not in row.note

    crash = tmp_path / "crash.py"
    crash.write_text("raise SystemExit('boom')\n")
    monkeypatch.setattr(runner, "check_command", lambda *a, **k: [sys.executable, str(crash)])
    row = run_instance(slow_instance(tmp_path))
    assert row.result is BenchResult.ERROR and row.note == "worker exited with code 1: boom"


def test_local_executor_rejects_zero_jobs() -> None:
    with pytest.raises(ValueError, match="jobs"):
        LocalExecutor(0)


def test_dask_executor(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp",  # the in-process transport cannot be bound to a host
        host="127.0.0.1",
        dashboard_address=None,
    )
    try:
        rows = run_benchmark(
            read_instances(TEST_SET / "instances.csv"),
            tmp_path / "results.csv",
            executor=DaskExecutor(cluster.scheduler_address),
            witness_dir=tmp_path / "w",
        )
        assert_correct(rows)
        assert (tmp_path / "w" / "test_sat_test_prop.counterexample").is_file()
        with distributed.Client(cluster) as client:  # an existing client is used as is, not closed
            (row,) = run_benchmark([slow_instance(tmp_path)], tmp_path / "r2.csv", executor=DaskExecutor(client))
            assert row.result is BenchResult.ERROR and "slow.onnx" in row.note
            assert client.status == "running"
    finally:
        cluster.close()


@pytest.mark.parametrize("jobs", [1, 2, 4])
def test_each_local_job_gets_its_share_of_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    """``--jobs J`` passes ``--threads cores // J`` (at least 1) to every instance's ``nnverify check``, so
    instances run side by side do not each start one MILP worker per core of the machine."""
    quick = tmp_path / "quick.py"
    quick.write_text("import json\nprint('unsat')\nprint(json.dumps({'method': 'fake', 'note': ''}))\n")
    seen: list[list[str]] = []
    real = runner.check_command

    def recording(instance: Instance, *, backend: str, results_file: Path, threads: int = 0) -> list[str]:
        seen.append(real(instance, backend=backend, results_file=results_file, threads=threads))
        return [sys.executable, str(quick)]

    monkeypatch.setattr(runner, "check_command", recording)
    monkeypatch.setattr(runner, "available_cores", lambda: 4)
    run_benchmark([slow_instance(tmp_path, "a"), slow_instance(tmp_path, "b")], tmp_path / "r.csv", jobs=jobs)
    assert len(seen) == 2
    for cmd in seen:
        assert cmd[cmd.index("--threads") + 1] == str(max(1, 4 // jobs))


@pytest.mark.parametrize(("signum", "code"), [(15, 143), (2, 130)])
def test_sigterm_stops_bench_run_and_kills_its_workers(tmp_path: Path, signum: int, code: int) -> None:
    """``kill <bench pid>`` (SIGTERM) ends ``nnverify bench run`` as Ctrl-C (SIGINT) does: exit code 143 (130)
    at once, the running instance's process is killed (SIGTERM's default action left it running on its own;
    Ctrl-C waited for it), no row written."""
    import os
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "worker.pid"
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n")
    for name in ("n.onnx", "p.vnnlib"):
        (tmp_path / name).write_text("")
    (tmp_path / "instances.csv").write_text("n.onnx,p.vnnlib,60\n")
    out = tmp_path / "results.csv"
    script = (
        "import sys\nfrom nnverify.bench import runner\nfrom nnverify.cli import main\n"
        f"runner.check_command = lambda *a, **k: [sys.executable, {str(sleeper)!r}]\n"
        f"sys.argv = ['nnverify', 'bench', 'run', {str(tmp_path / 'instances.csv')!r}, '--out', {str(out)!r}]\n"
        "main()\n"
    )
    err = tmp_path / "stderr.txt"
    with err.open("wb") as handle:
        bench = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=handle)
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), err.read_text()
    worker = int(pid_file.read_text())
    sent = time.monotonic()
    bench.send_signal(signal.Signals(signum))
    assert bench.wait(timeout=20) == code, err.read_text()
    assert time.monotonic() - sent < 10
    with pytest.raises(ProcessLookupError):  # killed and reaped (it was the bench's child)
        for _ in range(100):
            os.kill(worker, 0)
            time.sleep(0.05)
    assert not out.exists() or read_rows(out) == []
