"""``nnverify check QUERY --network name=file.onnx``: verdict, assignment in the 2.0 format, Error lines, exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from multi.nets import mlp
from nnverify.cli import main

QUERY = """(vnnlib-version <2.0>)
(declare-network f (declare-input X real [1,1]) (declare-output Y real [1,1]))
(declare-network g (equal-to f) (declare-input Xg real [1,1]) (declare-output Yg real [1,1]))
(assert (<= 0.0 X[0,0] 1.0))
(assert (<= 0.0 Xg[0,0] 1.0))
(assert (<= X[0,0] Xg[0,0]))
(assert (< Y[0,0] Yg[0,0]))
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    net = mlp(tmp_path / "double.onnx", [(np.array([[2.0]]), np.array([0.0]))])
    query = tmp_path / "q.vnnlib"
    query.write_text(QUERY)
    return str(query), net


def test_sat_prints_every_variable(files: tuple[str, str]) -> None:
    query, net = files
    out = CliRunner().invoke(main, ["check", query, "--network", f"f={net}", "--timeout", "30"])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0] == "sat"
    heads = [line for line in lines[1:] if " real " in line]
    assert heads == ["X real [1,1]", "Y real [1,1]", "Xg real [1,1]", "Yg real [1,1]"]
    x, y, xg, yg = (float(lines[lines.index(h) + 1]) for h in heads)
    assert x <= xg and y < yg and y == 2 * x


@pytest.mark.parametrize(
    ("edit", "args", "expected"),
    [
        (("Yg[0,0]))", "Yz[0,0]))"), ["f={net}"], ":7:19: undeclared variable 'Yz'"),
        (("X[0,0] 1.0", "X[0,3] 1.0"), ["f={net}"], ":4:17: index 3 out of range"),
        (("", ""), ["h={net}"], ":1:1: --network h: the query declares no network 'h'"),
        (("real [1,1]", "real [1,2]"), ["f={net}"], ":2:20: shape mismatch: 'X' is declared [1,2]"),
        (("(equal-to f)", "(equal-to k)"), ["f={net}"], ":3:30: unknown network 'k'"),
    ],
)
def test_bad_input_is_one_error_line_exit_3(
    files: tuple[str, str], tmp_path: Path, edit: tuple[str, str], args: list[str], expected: str
) -> None:
    query, net = files
    if edit[0]:
        Path(query).write_text(
            QUERY.replace(*edit).replace("Y real [1,2]", "Y real [1,1]").replace("Yg real [1,2]", "Yg real [1,1]")
        )
    argv = ["check", query]
    for a in args:
        argv += ["--network", a.format(net=net)]
    out = CliRunner().invoke(main, argv)
    assert out.exit_code == 3, out.output
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {query}") and expected in errors[0], out.stderr


def test_malformed_network_option_is_a_usage_error(files: tuple[str, str]) -> None:
    query, _ = files
    out = CliRunner().invoke(main, ["check", query, "--network", "f"])
    assert out.exit_code == 2
