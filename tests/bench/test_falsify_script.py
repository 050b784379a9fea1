"""``bench/falsify.py``: which instances it runs and what counts as found by the attack (no process is timed)."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "falsify.py"


@pytest.fixture(scope="module")
def falsify() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_falsify", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Family ``f``: ``a`` sat (peers 1.5 s and 0.7 s), ``b`` sat but found only after 6 s, ``c`` unsat answered
    fast, ``d`` sat whose fast peer answered unknown; instances.csv lists ``a`` after ``b``."""
    family = tmp_path / "f"
    family.mkdir()
    (family / "instances.csv").write_text(
        "n.onnx,b.vnnlib,60\nn.onnx,a.vnnlib,60\nn.onnx,c.vnnlib,60\nn.onnx,d.vnnlib,60\n"
    )
    (family / "expected.csv").write_text(
        "onnx,vnnlib,expected\nn.onnx,a.vnnlib,sat\nn.onnx,b.vnnlib,sat\nn.onnx,c.vnnlib,unsat\nn.onnx,d.vnnlib,sat\n"
    )
    (family / "peer_times.csv").write_text(
        "onnx,vnnlib,tool,result,time_s\n"
        "n.onnx,a.vnnlib,p,sat,1.5\nn.onnx,a.vnnlib,q,sat,0.7\nn.onnx,b.vnnlib,p,sat,6.0\n"
        "n.onnx,c.vnnlib,p,unsat,0.1\nn.onnx,c.vnnlib,q,sat,0.2\nn.onnx,d.vnnlib,p,unknown,0.1\n"
    )
    return tmp_path


def test_targets_are_sat_instances_a_peer_found_in_time(falsify: ModuleType, root: Path) -> None:
    assert falsify.targets(root, "f", 5.0) == [falsify.Target("f", "n.onnx", "a.vnnlib", "q", 0.7)]
    assert [t.vnnlib for t in falsify.targets(root, "f", 10.0)] == ["b.vnnlib", "a.vnnlib"]


def output(verdict: str, method: str, stats: dict[str, object] | None = None) -> str:
    details = {"verdict": verdict, "method": method, "stats": {"attack_s": 0.4} if stats is None else stats}
    return verdict + "\n" + json.dumps(details) + "\n"


@pytest.mark.parametrize(
    ("verdict", "method", "wall_s", "found"),
    [
        ("sat", "attack", 1.2, True),
        ("sat", "graph-attack", 4.9, True),
        ("sat", "attack", 5.3, False),  # in time for the budget's margin, not for the target
        ("sat", "input-split+highs", 2.0, False),  # found by the search, not the attack
        ("timeout", "attack", 5.1, False),
    ],
)
def test_found_means_sat_by_the_attack_within_the_threshold(
    falsify: ModuleType, verdict: str, method: str, wall_s: float, found: bool
) -> None:
    target = falsify.Target("f", "n.onnx", "a.vnnlib", "q", 0.7)
    row = falsify.parse_row(target, output(verdict, method), "", (wall_s, 0.5), 5.0)
    assert (row.found, row.verdict, row.method, row.attack_s) == (found, verdict, method, 0.4)


def test_an_abandoned_run_names_its_phase(falsify: ModuleType) -> None:
    target = falsify.Target("f", "n.onnx", "a.vnnlib", "q", 0.7)
    stats = {"phase": "searching for a counterexample", "abandoned": 1}
    row = falsify.parse_row(target, output("timeout", "budget", stats), "", (5.1, 0.5), 5.0)
    assert (row.found, row.attack_s, row.phase) == (False, None, "searching for a counterexample")


def test_a_crash_is_a_miss_with_stderr_as_note(falsify: ModuleType) -> None:
    target = falsify.Target("f", "n.onnx", "a.vnnlib", "q", 0.7)
    row = falsify.parse_row(target, "", "Traceback …\nValueError: boom\n", (0.5, 0.5), 5.0)
    assert not row.found and row.verdict == "" and "boom" in row.note


def test_summary_counts_found_and_lists_misses(falsify: ModuleType) -> None:
    target = falsify.Target("f", "n.onnx", "a.vnnlib", "q", 0.7)
    rows = [
        falsify.parse_row(target, output("sat", "attack"), "", (1.0, 0.5), 5.0),
        falsify.parse_row(target, output("sat", "attack"), "", (3.0, 0.5), 5.0),
        falsify.parse_row(target, output("timeout", "attack"), "", (5.2, 0.5), 5.0),
    ]
    text = falsify.summary(rows, ["f", "g"], 5.0)
    assert "| f | 3 | 2 | 2.00 / 3.00 | timeout by attack in ≥ 5 s: 1 |" in text
    assert "| g | 0 | 0 | - | - |" in text
    assert "- f `n.onnx` `a.vnnlib`: timeout (attack) in 5.20 s; fastest peer q 0.70 s" in text


def test_unsat_targets_and_their_cost(falsify: ModuleType, root: Path) -> None:
    assert falsify.unsat_targets(root, "f", 5) == [falsify.Target("f", "n.onnx", "c.vnnlib", "", 0.0)]
    target = falsify.unsat_targets(root, "f", 1)[0]
    rows = [
        falsify.parse_row(target, output("unsat", "input-split+bounds"), "", (0.8, 0.6), 5.0),
        falsify.parse_row(target, output("unsat", "input-split+bounds"), "", (1.2, 1.0), 5.0),
    ]
    assert rows[0].cpu_s == 0.6 and not rows[0].found
    assert "| f | 2 | unsat 2 | 2.00 | 1.60 | 0.80 |" in falsify.cost_summary(rows, ["f"])


def test_misses_of_an_earlier_run(falsify: ModuleType, tmp_path: Path) -> None:
    target = falsify.Target("f", "n.onnx", "a.vnnlib", "q", 0.7)
    other = falsify.Target("f", "n.onnx", "b.vnnlib", "q", 0.7)
    rows = [
        falsify.parse_row(target, output("sat", "attack"), "", (1.0, 0.5), 5.0),
        falsify.parse_row(other, output("sat", "attack"), "", (5.5, 0.5), 5.0),
    ]
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    assert falsify.misses(path) == {("f", "n.onnx", "b.vnnlib")}
