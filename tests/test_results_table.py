"""The results table of README.md and bench/results/README.md is generated from the sets' CSVs
(``bench/results_table.py``) and must not drift from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from benchdata import BENCHMARKS_DIR

from nnverify.bench.table import BEGIN, END, current_block, markdown_table, replace_block, set_rows

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def fake_sets(tmp_path: Path) -> tuple[Path, Path]:
    """A set ``toy`` of 3 instances: one correct, one wrong, one timeout; a peer with 2 correct; a topic folder;
    a run in progress."""
    data, results = tmp_path / "benchmarks", tmp_path / "results"
    write(data / "toy" / "instances.csv", "n.onnx,a.vnnlib,100\nn.onnx,b.vnnlib,100\nn.onnx,c.vnnlib,100\n")
    write(
        data / "toy" / "expected.csv",
        "onnx,vnnlib,expected\nn.onnx,a.vnnlib,sat\nn.onnx,b.vnnlib,unsat\nn.onnx,c.vnnlib,unsat\n",
    )
    write(
        data / "toy" / "peer_times.csv",
        "onnx,vnnlib,tool,result,time_s\nn.onnx,a.vnnlib,p,sat,1\nn.onnx,b.vnnlib,p,unsat,2\nn.onnx,a.vnnlib,q,sat,9\n",
    )
    write(
        results / "toy" / "results.csv",
        "onnx,vnnlib,result,run_time\nn.onnx,a.vnnlib,sat,1.5\nn.onnx,b.vnnlib,sat,2.0\nn.onnx,c.vnnlib,timeout,60\n",
    )
    write(results / "toy" / "instances_60s.csv", "n.onnx,a.vnnlib,60\nn.onnx,b.vnnlib,60\nn.onnx,c.vnnlib,60\n")
    write(results / "toy" / "README.md", "# toy\n")
    write(results / "notes" / "results.csv", "onnx,vnnlib,result,run_time\n")  # no ground truth: not a set
    write(results / "notes" / "README.md", "# notes\n")
    write(data / "running" / "expected.csv", "onnx,vnnlib,expected\n")
    write(results / "running" / "results.csv", "onnx,vnnlib,result,run_time\n")  # no README yet: in progress
    return results, data


def test_table_counts_correct_wrong_time_timeout_and_best_peer(fake_sets: tuple[Path, Path]) -> None:
    rows = set_rows(*fake_sets)
    assert [r.name for r in rows] == ["toy"]
    table = markdown_table(rows).splitlines()
    assert len(table) == 3
    assert table[2] == (
        "| [toy](bench/results/toy/README.md) (3) | 1/3 | 1 | 1.5 s (median 1.50 s) | 60 s (VNN-COMP: 100 s) "
        "| p: 2 in 3.0 s |"
    )


def test_replace_block_rewrites_only_between_the_markers() -> None:
    text = f"before\n{BEGIN}\nold\n{END}\nafter\n"
    fresh = replace_block(text, "| [a](bench/results/a/README.md) |", link_prefix="./")
    assert fresh == f"before\n{BEGIN}\n| [a](./a/README.md) |\n{END}\nafter\n"
    assert current_block(fresh) == "| [a](./a/README.md) |"
    with pytest.raises(ValueError, match="markers"):
        replace_block("no markers", "x")


@pytest.mark.skipif(not BENCHMARKS_DIR.is_dir(), reason=f"benchmark data absent ({BENCHMARKS_DIR})")
def test_readme_tables_match_the_csvs() -> None:
    table = markdown_table(set_rows(ROOT / "bench" / "results", BENCHMARKS_DIR))
    for path, prefix in ((ROOT / "README.md", ""), (ROOT / "bench" / "results" / "README.md", "./")):
        text = path.read_text(encoding="utf-8")
        assert text == replace_block(text, table, link_prefix=prefix), (
            f"{path.relative_to(ROOT)}: the results table differs from the CSVs; run "
            ".venv/bin/python bench/results_table.py"
        )


@pytest.mark.skipif(not BENCHMARKS_DIR.is_dir(), reason=f"benchmark data absent ({BENCHMARKS_DIR})")
def test_the_script_checks_without_writing() -> None:
    script = ROOT / "bench" / "results_table.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--check", "--benchmarks", str(BENCHMARKS_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
