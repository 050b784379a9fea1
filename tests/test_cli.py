"""The command line: verdict line first, VNN-COMP files, exit codes and `Error:` messages on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from benchdata import BENCHMARKS_DIR
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from nnverify.cli import main
from nnverify.spec.witness_format import load_witness
from nnverify.witness import OnnxRunner

BENCH = BENCHMARKS_DIR
TEST = BENCH / "test"
SAT_NET, UNSAT_NET, PROP = TEST / "test_sat.onnx", TEST / "test_unsat.onnx", TEST / "test_prop.vnnlib"


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_sat_prints_verdict_then_witness_and_writes_files(tmp_path: Path) -> None:
    results, cex = tmp_path / "out.txt", tmp_path / "cex.txt"
    res = invoke("check", SAT_NET, PROP, "--results-file", results, "--counterexample", cex)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "sat"
    text = results.read_text()
    assert text.startswith("sat\n((X_0 ")
    witness = load_witness(results)
    assert sorted(witness.x) == list(range(5)) and sorted(witness.y) == list(range(5))
    assert load_witness(cex) == witness
    x = np.array([witness.x[i] for i in range(5)])
    y_ort = OnnxRunner(SAT_NET).run(x)[0]
    np.testing.assert_allclose([witness.y[j] for j in range(5)], y_ort, rtol=1e-6)
    # property 3 is violated when Y_0 is minimal: the replayed witness must show it
    assert y_ort[0] <= y_ort[1:].min() + 1e-4
    assert invoke("witness", SAT_NET, PROP, results).stdout.strip() == "valid"


def test_unsat_writes_only_the_verdict(tmp_path: Path) -> None:
    results, cex = tmp_path / "out.txt", tmp_path / "cex.txt"
    res = invoke("check", UNSAT_NET, PROP, "--results-file", results, "--counterexample", cex, "--timeout", "60")
    assert res.exit_code == 0
    assert res.stdout.splitlines() == ["unsat"]
    assert results.read_text() == "unsat\n"
    assert not cex.exists()


def test_json_output() -> None:
    res = invoke("check", TEST / "test_tiny.onnx", TEST / "test_tiny.vnnlib", "--json")
    lines = res.stdout.split("\n", 1)
    assert lines[0] == "unsat"
    data = json.loads(lines[1])
    assert data["verdict"] == "unsat" and data["method"] and data["seconds"] >= 0


def test_zero_timeout_gives_timeout_not_a_verdict() -> None:
    res = invoke("check", UNSAT_NET, PROP, "--timeout", "0")
    assert res.exit_code == 0
    assert res.stdout.splitlines()[0] == "timeout"


def two_unsupported_ops(path: Path) -> Path:
    """Hardmax (twice) and Einsum: both must be named in one error."""
    idx = numpy_helper.from_array(np.array([0, 1], dtype=np.int64), "idx")
    nodes = [
        helper.make_node("Hardmax", ["x"], ["g1"], name="/model/Hardmax_1", axis=1),
        helper.make_node("Hardmax", ["g1"], ["g2"], name="/model/Hardmax_2", axis=1),
        helper.make_node("Einsum", ["g2"], ["y"], name="/head/Einsum", equation="ij->ij"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[idx],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def vnnlib_variant(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "prop.vnnlib"
    text = PROP.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


BAD_INPUTS = {
    "missing-network": (lambda t: (t / "nope.onnx", PROP), "Error: {t}/nope.onnx: no such file"),
    "missing-property": (lambda t: (SAT_NET, t / "nope.vnnlib"), "Error: {t}/nope.vnnlib: no such file"),
    "not-onnx": (
        lambda t: ((t / "x.onnx").write_text("hello") and t / "x.onnx", PROP),
        "Error: {t}/x.onnx: not an ONNX model (",
    ),
    "two-unsupported-ops": (
        lambda t: (two_unsupported_ops(t / "ops.onnx"), PROP),
        "Error: {t}/ops.onnx uses 2 ONNX operators that nnverify does not support:\n"
        "  Hardmax  2 nodes, first '/model/Hardmax_1'\n"
        "  Einsum   1 node   '/head/Einsum'",
    ),
    "unbalanced-parens": (
        lambda t: (SAT_NET, vnnlib_variant(t, "(assert (<= Y_0 Y_4))", "(assert (<= Y_0 Y_4)")),
        "Error: {t}/prop.vnnlib:41:1: expected ')' to close '(' opened at 40:1, found end of file",
    ),
    "unknown-variable": (
        lambda t: (SAT_NET, vnnlib_variant(t, "(assert (<= Y_0 Y_4))", "(assert (<= Y_0 X_7))")),
        "Error: {t}/prop.vnnlib:40:17: unknown variable 'X_7'",
    ),
    "Y_10-on-5-outputs": (
        lambda t: (SAT_NET, vnnlib_variant(t, "(assert (<= Y_0 Y_4))", "(assert (<= Y_0 Y_10))")),
        "Error: {t}/prop.vnnlib:40:17: unknown variable 'Y_10'; the network has 5 outputs (Y_0 … Y_4)",
    ),
    "non-numeric-constant": (
        lambda t: (SAT_NET, vnnlib_variant(t, "(assert (<= X_3 0.5))", "(assert (<= X_3 0.5x))")),
        "Error: {t}/prop.vnnlib:29:17: expected a number or a variable X_<i> / Y_<j>, found '0.5x'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_gives_error_line_and_exit_3(tmp_path: Path, case: str) -> None:
    make, expected = BAD_INPUTS[case]
    net, prop = make(tmp_path)
    results = tmp_path / "results.txt"
    res = invoke("check", net, prop, "--results-file", results)
    assert res.exit_code == 3, res.output
    assert res.stdout == ""
    first_lines = expected.format(t=tmp_path)
    assert res.stderr.startswith(first_lines), res.stderr
    assert "Traceback" not in res.stderr
    assert not results.exists()  # nothing half-written


def test_unknown_backend_is_a_usage_error() -> None:
    res = invoke("check", SAT_NET, PROP, "--backend", "foo")
    assert res.exit_code == 2
    assert "foo" in res.stderr


def test_witness_command_rejects_with_exit_5(tmp_path: Path) -> None:
    bad = tmp_path / "w.txt"
    bad.write_text("(" + "\n".join(f"(X_{i} 5.0)" for i in range(5)) + "\n(Y_0 0.0))")
    res = invoke("witness", SAT_NET, PROP, bad)
    assert res.exit_code == 5
    assert res.stdout.startswith("invalid: X lies outside")


def test_witness_command_malformed_file(tmp_path: Path) -> None:
    bad = tmp_path / "w.txt"
    bad.write_text("((X_0 1.0)\n(X_1 oops))")
    res = invoke("witness", SAT_NET, PROP, bad)
    assert res.exit_code == 3
    assert res.stderr.startswith(f"Error: {bad}:2:")


def test_ops_lists_the_required_operators() -> None:
    out = invoke("ops").stdout
    listed = {line.split()[0] for line in out.splitlines()}
    required = "Gemm MatMul Add Sub Mul Div Neg Relu Flatten Reshape Squeeze Unsqueeze Transpose Identity Dropout"
    required += " Constant BatchNormalization Conv Sign"
    assert set(required.split()) <= listed


def test_console_script_runs_as_a_process(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("nnverify")
    proc = subprocess.run(
        [str(exe), "check", str(SAT_NET), str(PROP), "--timeout", "30"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == "sat"


def test_native_writes_to_stdout_never_come_before_the_verdict() -> None:
    """HiGHS prints some debug lines with printf on descriptor 1; the program moves them to stderr so that
    stdout holds only what nnverify writes (its first line is the verdict)."""
    code = (
        "import os, sys; from nnverify.cli import guard_stdout; guard_stdout(); os.write(1, b'native\\n'); "
        "print('unsat'); os.write(1, b'native again\\n'); print('{}')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout == "unsat\n{}\n"
    assert proc.stderr.splitlines() == ["native", "native again"]


def test_readme_ops_table_matches_registry() -> None:
    """The ops table (docs/operators.md, linked from the README) lists exactly the registry."""
    from nnverify.graph.ops import supported_ops_table

    readme = (Path(__file__).resolve().parents[1] / "docs" / "operators.md").read_text()
    table = readme.split("<!-- ops-table -->")[1].split("<!-- /ops-table -->")[0]
    listed = [line.split("|")[1].strip().strip("`") for line in table.strip().splitlines()[2:]]
    assert listed == [op for op, _, _ in supported_ops_table()]


def test_abandoned_solver_threads_end_the_program_without_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    import nnverify.backends.pool as pool_module
    from nnverify import cli

    exits: list[int] = []
    real_main = cli.main
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    monkeypatch.setattr(cli, "main", lambda: sys.exit(0))
    monkeypatch.setattr(cli, "guard_stdout", lambda: None)  # it would move this test process's descriptors
    monkeypatch.setattr(pool_module, "work_remains", lambda: False)  # earlier tests may have abandoned solves
    with pytest.raises(SystemExit):
        cli.entry()
    assert exits == []  # nothing abandoned: the normal exit
    monkeypatch.setattr(pool_module, "work_remains", lambda: True)  # the solver pool's answer
    with pytest.raises(SystemExit):  # os._exit is patched out, so the SystemExit goes on
        cli.entry()
    assert exits == [0]
    # main itself (what CliRunner and any host process call) never ends the process
    result = CliRunner().invoke(real_main, ["ops"])
    assert result.exit_code == 0 and exits == [0]


@pytest.mark.parametrize("flags", [("--threads", "1"), ("--threads", "2", "--no-refine-bounds"), ("--refine-bounds",)])
def test_threads_and_refinement_flags(flags: tuple[str, ...]) -> None:
    res = invoke("check", UNSAT_NET, PROP, "--timeout", "60", *flags)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "unsat"


def test_negative_threads_is_a_usage_error() -> None:
    res = invoke("check", SAT_NET, PROP, "--threads", "-1")
    assert res.exit_code == 2 and "--threads" in res.output
