"""``nnverify export``: programs that SWI-Prolog runs by hand, MILPs that HiGHS reads back, clear errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nnverify
from nnverify.backends.clpq import swipl_executable
from nnverify.cli import main
from nnverify.encode.prolog import SCRIPT_ENTRY

TEST_SET = [
    ("test_nano.onnx", "test_nano.vnnlib"),
    ("test_tiny.onnx", "test_tiny.vnnlib"),
    ("test_small.onnx", "test_small.vnnlib"),
    ("test_sat.onnx", "test_prop.vnnlib"),
    ("test_unsat.onnx", "test_prop.vnnlib"),
]


def _swipl(program: Path) -> list[str]:
    exe = swipl_executable()
    assert exe is not None
    done = subprocess.run([exe, str(program)], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.splitlines()


@pytest.mark.usefixtures("clpq_ready")
@pytest.mark.parametrize(("onnx", "vnnlib"), TEST_SET, ids=[n for n, _ in TEST_SET])
def test_swipl_on_the_exported_program_agrees_with_check(
    benchmarks_dir: Path, tmp_path: Path, onnx: str, vnnlib: str
) -> None:
    net, prop = benchmarks_dir / "test" / onnx, benchmarks_dir / "test" / vnnlib
    out = tmp_path / "query.pl"
    result = CliRunner().invoke(main, ["export", str(net), str(prop), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(str(out))
    assert out.read_text().endswith(SCRIPT_ENTRY)
    lines = _swipl(out)
    check = CliRunner().invoke(main, ["check", str(net), str(prop), "--backend", "clpq", "--timeout", "300"])
    assert check.exit_code == 0
    assert lines[0] == check.output.splitlines()[0]
    if lines[0] == "sat":  # the script's witness (inputs only) is a real counterexample
        witness = tmp_path / "witness.txt"
        witness.write_text("\n".join(lines[1:]) + "\n")
        replay = CliRunner().invoke(main, ["witness", str(net), str(prop), str(witness)])
        assert replay.exit_code == 0, replay.output


@pytest.mark.usefixtures("clpq_ready")
def test_exported_seed004_program_decides_by_hand(tmp_path: Path) -> None:
    net = Path("networks/seed004_h512.onnx")
    for prop, verdict in (("properties/seed004_h512_p1.vnnlib", "sat"), ("properties/seed004_h512_p4.vnnlib", "unsat")):
        out = tmp_path / f"{Path(prop).stem}.pl"
        assert CliRunner().invoke(main, ["export", str(net), prop, "-o", str(out)]).exit_code == 0
        assert _swipl(out)[0] == verdict


@pytest.mark.parametrize("fmt", ["lp", "mps"])
def test_milp_export_reads_back_into_highs(benchmarks_dir: Path, tmp_path: Path, fmt: str) -> None:
    import highspy

    net, prop = benchmarks_dir / "test" / "test_sat.onnx", benchmarks_dir / "test" / "test_prop.vnnlib"
    out = tmp_path / f"query.{fmt}"
    result = CliRunner().invoke(main, ["export", str(net), str(prop), "--format", fmt, "-o", str(out)])
    assert result.exit_code == 0, result.output
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    assert highs.readModel(str(out)) != highspy.HighsStatus.kError
    highs.run()
    assert highs.getModelStatus() == highspy.HighsModelStatus.kOptimal  # feasible: the instance is sat
    names = [highs.getColName(k)[1] for k in range(5)]
    assert names == [f"l0_{k}" for k in range(5)]


def test_one_file_per_input_box(tmp_path: Path) -> None:
    prop = tmp_path / "two_boxes.vnnlib"
    header = "".join(f"(declare-const X_{k} Real)\n" for k in range(5)) + "".join(
        f"(declare-const Y_{k} Real)\n" for k in range(5)
    )
    box = " ".join(f"(>= X_{k} -0.01) (<= X_{k} 0.01)" for k in range(1, 5))
    prop.write_text(
        header + f"(assert (or (and (>= X_0 0.6) (<= X_0 0.61) {box}) (and (>= X_0 0.62) (<= X_0 0.63) {box})))\n"
        "(assert (<= Y_0 Y_1))\n"
    )
    out = tmp_path / "q.pl"
    result = CliRunner().invoke(
        main, ["export", "networks/ACASXU_run2a_1_1_batch_2000.onnx", str(prop), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("q*.pl")) == ["q.box1.pl", "q.box2.pl"]
    assert "input box 2 of 2" in (tmp_path / "q.box2.pl").read_text()


def test_bad_input_is_a_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 oops))\n")
    out = tmp_path / "q.pl"
    net = "networks/ACASXU_run2a_1_1_batch_2000.onnx"
    result = CliRunner().invoke(main, ["export", net, str(bad), "-o", str(out)])
    assert result.exit_code == 3 and result.output.startswith(f"Error: {bad}:2:")
    result = CliRunner().invoke(main, ["export", net, "properties/prop_3.vnnlib", "--format", "lp", "-o", str(out)])
    assert result.exit_code == 2 and "must end in .lp" in result.output
    result = CliRunner().invoke(main, ["export", net, "properties/prop_3.vnnlib", "-o", str(tmp_path / "no" / "q.pl")])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert list(tmp_path.iterdir()) == [bad]


def _narrow_prop_3(tmp_path: Path) -> Path:
    """The shipped ACAS Xu property 3 on a tenth of its X_3, X_4 ranges: unsat, decided in a few seconds."""
    text = Path("properties/prop_3.vnnlib").read_text()
    text = text.replace("(assert (<= X_3 0.5))", "(assert (<= X_3 0.33))")
    text = text.replace("(assert (<= X_4 0.5))", "(assert (<= X_4 0.33))")
    path = tmp_path / "prop_3_narrow.vnnlib"
    path.write_text(text)
    return path


@pytest.mark.usefixtures("clpq_ready")
def test_an_unsat_proven_by_bounds_alone_does_not_name_the_backend(tmp_path: Path) -> None:
    """No clpq leaf runs on this box (the bounds close every sub-box), so the method must not claim clpq."""
    result = nnverify.verify(
        "networks/ACASXU_run2a_1_1_batch_2000.onnx",
        _narrow_prop_3(tmp_path),
        nnverify.Options(backend="clpq", timeout_s=120),
    )
    assert result.verdict is nnverify.Verdict.UNSAT
    assert result.stats["leaves_exact"] == 0 and result.method == "input-split+bounds"


@pytest.mark.slow
@pytest.mark.usefixtures("clpq_ready")
def test_check_with_clpq_decides_acas_leaves_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Splitting stops at depth 8, so exact clpq leaves must decide the rest (12 leaves, ~70 s on 2 cores)."""
    monkeypatch.setattr("nnverify.search.bab.MAX_DEPTH", 8)
    result = nnverify.verify(
        "networks/ACASXU_run2a_1_1_batch_2000.onnx",
        _narrow_prop_3(tmp_path),
        nnverify.Options(backend="clpq", timeout_s=600),
    )
    assert result.verdict is nnverify.Verdict.UNSAT
    assert result.method.endswith("clpq:exact") and result.stats["leaves_exact"] > 0
    assert np.isfinite(result.seconds)
