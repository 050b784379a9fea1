"""`nnverify bench run` then `nnverify bench score` on the test set, and `check --image`, through the CLI."""

from __future__ import annotations

from pathlib import Path

from benchdata import BENCHMARKS_DIR
from click.testing import CliRunner

from nnverify.cli import main

TEST = BENCHMARKS_DIR / "test"


def test_bench_run_then_score_reports_5_of_5_and_writes_a_cactus_plot(tmp_path: Path) -> None:
    runner = CliRunner()
    out, images = tmp_path / "results.csv", tmp_path / "images"
    res = runner.invoke(
        main, ["bench", "run", str(TEST / "instances.csv"), "--out", str(out), "--jobs", "2", "--images", str(images)]
    )
    assert res.exit_code == 0, res.output
    assert "sat 1, unsat 4" in res.stdout
    assert (images / "test_sat_test_prop.png").read_bytes().startswith(b"\x89PNG")
    plot = tmp_path / "cactus.png"
    res = runner.invoke(
        main,
        [
            "bench",
            "score",
            str(out),
            "--expected",
            str(TEST / "expected.csv"),
            "--peers",
            str(TEST / "peer_times.csv"),
            "--witness-dir",
            str(images / "witnesses"),
            "--plot",
            str(plot),
        ],
    )
    assert res.exit_code == 0, res.output
    ours = next(line for line in res.stdout.splitlines() if line.startswith("nnverify"))
    assert ours.split()[1:5] == ["5", "5", "0", "0"]  # solved, correct, wrong, timeouts
    assert "WRONG" not in res.stdout
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_check_image_for_a_sat_instance(tmp_path: Path) -> None:
    png = tmp_path / "cex.png"
    res = CliRunner().invoke(
        main, ["check", str(TEST / "test_sat.onnx"), str(TEST / "test_prop.vnnlib"), "--image", str(png)]
    )
    assert res.stdout.splitlines()[0] == "sat"
    assert png.read_bytes().startswith(b"\x89PNG")


def test_bench_run_bad_instances_file(tmp_path: Path) -> None:
    bad = tmp_path / "instances.csv"
    bad.write_text("a.onnx,b.vnnlib,notanumber\n")
    res = CliRunner().invoke(main, ["bench", "run", str(bad), "--out", str(tmp_path / "r.csv")])
    assert res.exit_code == 3
    assert res.stderr.startswith(f"Error: {bad}:1:")


def test_missing_inputs_and_output_directories_are_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["bench", "score", str(tmp_path / "nope.csv"), "--expected", str(TEST / "expected.csv")])
    assert res.exit_code == 2 and "does not exist" in res.stderr
    for flag in ("--image", "--results-file", "--counterexample"):
        res = runner.invoke(
            main,
            [
                "check",
                str(TEST / "test_sat.onnx"),
                str(TEST / "test_prop.vnnlib"),
                flag,
                str(tmp_path / "no_such_dir" / "f"),
            ],
        )
        assert res.exit_code == 2, flag
        assert "Traceback" not in res.output and "does not exist" in res.stderr
