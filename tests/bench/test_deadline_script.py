"""``bench/deadline.py``'s choice of instances (``--slowest N --from CSV``); no process is timed here."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "deadline.py"
FIELDS = ["family", "onnx", "vnnlib", "timeout_s", "wall_s", "overrun_s", "exit_code", "verdict", "peak_mem_mb"]


@pytest.fixture(scope="module")
def deadline() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_deadline", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def write_results(path: Path, rows: list[tuple[str, str, float, str, str]]) -> None:
    """``(family, vnnlib, wall_s, verdict, killed)`` rows of an earlier 5 s run (paths as the script stores them:
    relative to the family directory)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*FIELDS, "killed", "stderr_tail"])
        writer.writeheader()
        for family, vnnlib, wall, verdict, killed in rows:
            writer.writerow(
                {
                    "family": family,
                    "onnx": "onnx/n.onnx",
                    "vnnlib": f"vnnlib/{vnnlib}",
                    "timeout_s": 5.0,
                    "wall_s": wall,
                }
                | {"overrun_s": wall - 5, "exit_code": 0, "verdict": verdict, "peak_mem_mb": 100.0}
                | {"killed": killed, "stderr_tail": ""}
            )


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    """Family ``a``: two timeouts (the faster one listed first), a killed run, three decided runs; ``b``: two."""
    path = tmp_path / "results.csv"
    write_results(
        path,
        [
            ("a", "fast.vnnlib", 0.5, "unsat", "False"),
            ("a", "t1.vnnlib", 5.1, "timeout", "False"),
            ("a", "slow.vnnlib", 4.9, "sat", "False"),
            ("a", "mid.vnnlib", 2.0, "unsat", "False"),
            ("a", "killed.vnnlib", 35.0, "", "True"),
            ("a", "t2.vnnlib", 5.3, "timeout", "False"),
            ("b", "x.vnnlib", 1.0, "unsat", "False"),
            ("b", "y.vnnlib", 0.2, "sat", "False"),
        ],
    )
    return path


def test_slowest_takes_timeouts_and_killed_first_then_longest_wall(deadline: ModuleType, previous: Path) -> None:
    picked = deadline.slowest(previous, 4)
    assert {Path(v).name for f, _, v in picked if f == "a"} == {
        "t1.vnnlib",
        "t2.vnnlib",
        "killed.vnnlib",
        "slow.vnnlib",
    }
    assert {Path(v).name for f, _, v in picked if f == "b"} == {"x.vnnlib", "y.vnnlib"}  # fewer than N: all of them


def test_slowest_one_per_family_prefers_a_timeout_over_a_longer_decided_run(
    deadline: ModuleType, tmp_path: Path
) -> None:
    path = tmp_path / "results.csv"
    write_results(path, [("a", "decided.vnnlib", 5.2, "unsat", "False"), ("a", "t.vnnlib", 5.0, "timeout", "False")])
    assert deadline.slowest(path, 1) == {("a", "onnx/n.onnx", "vnnlib/t.vnnlib")}


def test_main_runs_only_the_slowest(
    deadline: ModuleType, previous: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "benchmarks"
    for family, names in {"a": ["fast", "t1", "slow", "mid", "killed", "t2"], "b": ["x", "y"]}.items():
        (root / family).mkdir(parents=True)
        (root / family / "instances.csv").write_text("".join(f"onnx/n.onnx,vnnlib/{n}.vnnlib,60\n" for n in names))
    ran: list[tuple[str, str]] = []

    def fake_run(family: str, onnx: str, vnnlib: str, timeout_s: float, exe: str) -> object:
        ran.append((family, Path(vnnlib).name))
        name = Path(vnnlib).name
        return deadline.Row(family, "onnx/n.onnx", name, timeout_s, 1.0, 1.0 - timeout_s, 0, "unsat", 1.0, False, "")

    monkeypatch.setattr(deadline, "run_one", fake_run)
    out = tmp_path / "out"
    argv = ["--timeout", "30", "--slowest", "2", "--from", str(previous), "--benchmarks", str(root), "--out", str(out)]
    assert deadline.main(argv) == 0
    assert ran == [("a", "killed.vnnlib"), ("a", "t2.vnnlib"), ("b", "x.vnnlib"), ("b", "y.vnnlib")]
    assert "| all | 4 |" in (out / "summary.md").read_text()
    ran.clear()
    assert deadline.main([*argv, "--families", "b"]) == 0
    assert ran == [("b", "x.vnnlib"), ("b", "y.vnnlib")]


def test_slowest_needs_from(deadline: ModuleType) -> None:
    with pytest.raises(SystemExit):
        deadline.main(["--slowest", "3"])
