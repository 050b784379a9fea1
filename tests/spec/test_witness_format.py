"""Witness (counterexample) file reader: every shipped VNN-COMP witness, both file forms, exact errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from benchdata import BENCHMARKS_DIR, onnx_io_sizes, witness_index
from hypothesis import given, settings
from hypothesis import strategies as st

from nnverify.errors import InputFileError, WitnessFormatError
from nnverify.spec.witness_format import WitnessValues, load_witness, parse_witness


def benchmarks_dir() -> Path:
    """The shared VNN-COMP benchmark data (the repository and ``shared/`` are siblings)."""
    return BENCHMARKS_DIR


def witness_files() -> list[Path]:
    return sorted(benchmarks_dir().glob("*/counterexamples/**/*.counterexample.gz"))


def witness_id(path: Path) -> str:
    return str(path.relative_to(benchmarks_dir())).replace("/counterexamples/", "/")


def test_witness_data_present() -> None:
    assert len(witness_files()) >= 250, f"VNN-COMP witness files missing under {benchmarks_dir()}"


@pytest.mark.parametrize("path", witness_files(), ids=witness_id)
def test_benchmark_witness(path: Path) -> None:
    row = witness_index()[path.resolve()]
    n, m = onnx_io_sizes(Path(row["onnx"]))
    w = load_witness(path)
    assert sorted(w.x) == list(range(n))
    # Some writers stop early (PyRAT's 2023 MNIST and traffic-sign witnesses stop at Y_{m-2}, nnenum's 2024
    # linearizenn ones after Y_0): the index says "incomplete" (mnistfc's index predates that column, and its
    # PyRAT files stop at Y_8). Their X still replays.
    short = row.get("y_check") == "incomplete" or (path.parent.name == "2023_pyrat" and m == 10)
    if short:
        assert w.y and sorted(w.y) == list(range(len(w.y))) and len(w.y) < m
    else:
        assert sorted(w.y) == list(range(m))


def test_values_and_result_file_form() -> None:
    text = "sat\n((X_0 0.6)\n (X_1 -2e-1)\n (Y_0 -1.7E-2))\n"
    assert parse_witness(text) == WitnessValues(x={0: 0.6, 1: -0.2}, y={0: -0.017})
    assert parse_witness("((X_0 1) (Y_0 2))") == WitnessValues(x={0: 1.0}, y={0: 2.0})


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("name", ["w.counterexample.gz", "w.txt"], ids=["gz-suffix", "other-suffix"])
def test_load_plain_and_gzip(tmp_path: Path, compress: bool, name: str) -> None:
    data = b"((X_0 0.5) (Y_0 1.5))"
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if compress else data)
    if name.endswith(".gz") and not compress:
        with pytest.raises(InputFileError, match="not a valid gzip file"):
            load_witness(path)
    else:
        assert load_witness(path) == WitnessValues(x={0: 0.5}, y={0: 1.5})


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "none.counterexample"
    with pytest.raises(InputFileError) as err:
        load_witness(path)
    assert str(err.value) == f"{path}: no such file"


def test_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.counterexample"
    path.write_text("((X_0 0.5)\n (Y_0 abc))")
    with pytest.raises(WitnessFormatError) as err:
        load_witness(path)
    assert str(err.value) == f"{path}:2:7: expected a number, found 'abc'"


ERRORS = [
    ("empty", "", "1:1: expected '((X_0 value) … (Y_0 value) …)', found end of file"),
    ("sat-only", "sat\n", "2:1: expected '((X_0 value) … (Y_0 value) …)', found end of file"),
    ("unsat", "unsat\n((X_0 1))", "1:1: expected 'sat' or '((X_0 value) … (Y_0 value) …)', found 'unsat'"),
    ("unclosed", "((X_0 1)\n (Y_0 2)", "2:9: expected ')' to close '(' opened at 1:1, found end of file"),
    ("extra-close", "((X_0 1)))", "1:10: unexpected ')' with no matching '('"),
    ("trailing", "((X_0 1))\n((X_0 2))", "2:1: expected end of file after the witness, found '((…) …)'"),
    (
        "bad-entry",
        "((X_0 1 2))",
        "1:2: expected an entry '(X_<i> value)' or '(Y_<j> value)', found '(X_0 …)'",
    ),
    ("atom-entry", "(X_0 1)", "1:2: expected an entry '(X_<i> value)' or '(Y_<j> value)', found 'X_0'"),
    ("bad-name", "((Z_0 1))", "1:3: expected a variable name X_<i> or Y_<j>, found 'Z_0'"),
    ("bad-number", "((X_0 1)\n (Y_0 nan))", "2:7: expected a number, found 'nan'"),
    ("huge-number", "((X_0 1e999))", "1:7: number '1e999' is outside the float64 range"),
    ("duplicate", "((X_0 1)\n (X_0 2))", "2:2: duplicate entry for X_0 (first at 1:2)"),
    ("gap", "((X_0 1) (X_2 1))", "1:1: expected X_0 … X_2 without gaps, found no X_1"),
    ("y-gap", "((X_0 1) (Y_1 1))", "1:1: expected Y_0 … Y_1 without gaps, found no Y_0"),
    ("no-inputs", "((Y_0 1))", "1:1: expected '((X_0 value) … (Y_0 value) …)', found no X_ entries"),
]


@pytest.mark.parametrize(("text", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_error_message(text: str, message: str) -> None:
    with pytest.raises(WitnessFormatError) as err:
        parse_witness(text, "w.txt")
    assert str(err.value) == f"w.txt:{message}"


PIECES = st.sampled_from(["(", ")", "((", "))", "X_0", "X_1", "Y_0", "0.5", "-1e-3", "sat", "\n", " ", "z", "1e999"])


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.lists(PIECES, max_size=40).map("".join)))
def test_random_text_raises_only_witness_errors(text: str) -> None:
    try:
        w = parse_witness(text, "w.txt")
    except WitnessFormatError as err:
        assert err.line >= 1 and err.col >= 1
    else:
        assert sorted(w.x) == list(range(len(w.x))) and sorted(w.y) == list(range(len(w.y)))


def test_only_ascii_digits() -> None:
    with pytest.raises(WitnessFormatError, match="found 'X_١'"):
        parse_witness("((X_١ 1))")
    with pytest.raises(WitnessFormatError, match=r"expected a number, found '١\.٥'"):
        parse_witness("((X_0 ١.٥))")
