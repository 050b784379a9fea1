"""The VNN-COMP harness scripts (vnncomp_scripts/*.sh), driven exactly as the competition harness drives them.

The tests need the repository's own ``.venv`` (``make test`` creates it, as ``install_tool.sh v1`` would); they
never run ``install_tool.sh`` itself.
"""

from __future__ import annotations

import csv
import os
import subprocess
import time
from pathlib import Path

import pytest
from benchdata import BENCHMARKS_DIR

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "vnncomp_scripts"
TEST_SET = BENCHMARKS_DIR / "test"
SCRIPT_NAMES = ("install_tool.sh", "prepare_instance.sh", "run_instance.sh")
SAT_NET, PROP = TEST_SET / "test_sat.onnx", TEST_SET / "test_prop.vnnlib"


def _instances() -> list[tuple[str, str, str]]:
    """(onnx, vnnlib, expected) for every row of the test set's instances.csv."""
    if not TEST_SET.is_dir():
        return []
    with (TEST_SET / "expected.csv").open(newline="") as f:
        expected = {(row["onnx"], row["vnnlib"]): row["expected"] for row in csv.DictReader(f)}
    with (TEST_SET / "instances.csv").open(newline="") as f:
        return [(onnx, vnnlib, expected[(onnx, vnnlib)]) for onnx, vnnlib, _timeout in csv.reader(f)]


INSTANCES = _instances()


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    nnverify = REPO / ".venv" / "bin" / "nnverify"
    assert nnverify.is_file(), f"{nnverify} missing: run `make setup` (what install_tool.sh v1 does) first"
    if not TEST_SET.is_dir():
        pytest.skip(f"benchmark data not found at {TEST_SET}")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment for the scripts, with a private pid file (never touches other runs' processes)."""
    return {**os.environ, "NNVERIFY_VNNCOMP_PID_FILE": str(tmp_path / "nnverify.pid")}


def script(name: str, *args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", f"vnncomp_scripts/{name}", *(str(a) for a in args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_scripts_are_executable_bash(name: str) -> None:
    path = SCRIPTS / name
    assert os.access(path, os.X_OK), f"{path} lacks the executable bit"
    assert path.read_text().splitlines()[0] == "#!/usr/bin/env bash"


@pytest.mark.parametrize(("onnx", "vnnlib", "expected"), INSTANCES, ids=[f"{o}+{v}" for o, v, _ in INSTANCES])
def test_prepare_then_run_gives_expected_verdict(
    onnx: str, vnnlib: str, expected: str, tmp_path: Path, env: dict[str, str]
) -> None:
    net, prop, results = TEST_SET / onnx, TEST_SET / vnnlib, tmp_path / "results.txt"
    prepared = script("prepare_instance.sh", "v1", "test", net, prop, env=env)
    assert prepared.returncode == 0, prepared.stderr
    ran = script("run_instance.sh", "v1", "test", net, prop, results, 60, env=env)
    assert ran.returncode == 0, ran.stderr
    text = results.read_text()
    assert text.splitlines()[0] == expected, ran.stderr
    if expected == "sat":
        assert "(X_0 " in text and "(Y_4 " in text
    assert not Path(env["NNVERIFY_VNNCOMP_PID_FILE"]).exists(), "run_instance.sh left its pid file behind"


def test_malformed_vnnlib_gives_error(tmp_path: Path, env: dict[str, str]) -> None:
    prop, results = tmp_path / "bad.vnnlib", tmp_path / "results.txt"
    prop.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1.0)\n")
    ran = script("run_instance.sh", "v1", "test", SAT_NET, prop, results, 60, env=env)
    assert ran.returncode == 0, ran.stderr
    assert results.read_text() == "error\n"
    assert "Error: " in ran.stderr and "bad.vnnlib" in ran.stderr


def test_missing_network_gives_error_and_replaces_stale_result(tmp_path: Path, env: dict[str, str]) -> None:
    results = tmp_path / "results.txt"
    results.write_text("unsat\n")  # left over from an earlier run: must not survive
    ran = script("run_instance.sh", "v1", "test", tmp_path / "nope.onnx", PROP, results, 60, env=env)
    assert results.read_text() == "error\n"
    assert "nope.onnx" in ran.stderr


def test_bad_timeout_gives_error(tmp_path: Path, env: dict[str, str]) -> None:
    results = tmp_path / "results.txt"
    ran = script("run_instance.sh", "v1", "test", SAT_NET, PROP, results, "soon", env=env)
    assert results.read_text() == "error\n"
    assert "timeout" in ran.stderr


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("install_tool.sh", ()),
        ("prepare_instance.sh", ("test", "net.onnx", "prop.vnnlib")),
        ("run_instance.sh", ("test", "net.onnx", "prop.vnnlib", "results.txt", "60")),
    ],
)
def test_wrong_version_exits_nonzero(name: str, args: tuple[str, ...], tmp_path: Path, env: dict[str, str]) -> None:
    args = tuple(str(tmp_path / a) if a.endswith((".onnx", ".vnnlib", ".txt")) else a for a in args)
    ran = script(name, "v2", *args, env=env)
    assert ran.returncode != 0
    assert "v1" in ran.stderr
    assert not (tmp_path / "results.txt").exists()


def test_wrong_argument_count_exits_nonzero(env: dict[str, str]) -> None:
    for name in SCRIPT_NAMES:
        ran = script(name, env=env)
        assert ran.returncode != 0 and "usage" in ran.stderr, name


def test_prepare_rejects_missing_files(tmp_path: Path, env: dict[str, str]) -> None:
    ran = script("prepare_instance.sh", "v1", "test", tmp_path / "nope.onnx", PROP, env=env)
    assert ran.returncode != 0
    assert "nope.onnx" in ran.stderr and "not found" in ran.stderr


def test_prepare_stops_leftover_run(env: dict[str, str]) -> None:
    # A process standing in for an nnverify run that the harness abandoned (its command line names nnverify).
    leftover = subprocess.Popen(["bash", "-c", "exec -a nnverify-leftover sleep 60"])
    try:
        _wait_for_cmdline(leftover.pid, "nnverify-leftover")
        Path(env["NNVERIFY_VNNCOMP_PID_FILE"]).write_text(f"{leftover.pid}\n")
        ran = script("prepare_instance.sh", "v1", "test", SAT_NET, PROP, env=env)
        assert ran.returncode == 0, ran.stderr
        assert leftover.wait(timeout=10) != 0
        assert not Path(env["NNVERIFY_VNNCOMP_PID_FILE"]).exists()
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()


def test_prepare_leaves_unrelated_process_alone(env: dict[str, str]) -> None:
    # A stale pid file whose pid now belongs to some other program: it must not be killed.
    other = subprocess.Popen(["sleep", "60"])
    try:
        Path(env["NNVERIFY_VNNCOMP_PID_FILE"]).write_text(f"{other.pid}\n")
        ran = script("prepare_instance.sh", "v1", "test", SAT_NET, PROP, env=env)
        assert ran.returncode == 0, ran.stderr
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def _wait_for_cmdline(pid: int, needle: str) -> None:
    cmdline = Path(f"/proc/{pid}/cmdline")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if cmdline.exists() and needle in cmdline.read_bytes().decode(errors="replace"):
            return
        time.sleep(0.02)
    pytest.fail(f"process {pid} never showed {needle!r} in its command line")
