"""The witness checker agrees with the benchmark index on every competitor's counterexample file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from benchdata import BENCHMARKS_DIR, onnx_io_sizes

from nnverify.spec.vnnlib import load_property
from nnverify.witness import OnnxRunner, check_counterexample, check_witness_file

BENCH = BENCHMARKS_DIR


#: Invalid witness files per set, as the benchmark README documents them: two alpha-beta-CROWN files in mnistfc,
#: all 35 NeuralSAT files in traffic_signs_recognition_2023.
DOCUMENTED_INVALID = {"mnistfc": 2, "traffic_signs_recognition_2023": 35}


def witness_cases() -> list[tuple[Path, Path, Path, bool]]:
    """(network, property, witness, valid) for every indexed witness.

    ``valid`` is what nnverify's checker must say: the index's X verdict (``helper_check``), and also a Y that
    matches onnxruntime (``y_check`` other than ``mismatch``), because the checker holds a witness to the Y it
    states (the 2022-2025 rule).
    """
    cases = []
    for index in sorted(BENCH.glob("*/counterexamples/index.csv")):
        root = index.parent.parent
        with index.open() as handle:
            for row in csv.DictReader(handle):
                valid = row["helper_check"] == "valid" and row.get("y_check", "match") != "mismatch"
                cases.append((root / row["onnx"], root / row["vnnlib"], root / row["file"], valid))
    test_dir = BENCH / "test"
    for path in sorted(test_dir.glob("counterexamples/*/test_sat_test_prop.counterexample.gz")):
        cases.append((test_dir / "test_sat.onnx", test_dir / "test_prop.vnnlib", path, True))
    return cases


CASES = witness_cases()
_PROPS: dict[tuple[Path, Path], object] = {}


def _prop(onnx: Path, vnnlib: Path):
    """The property, sized by the network's declared input and output shapes (the checker replays on
    onnxruntime, so a network whose operators nnverify does not support yet is still checked)."""
    key = (onnx, vnnlib)
    if key not in _PROPS:
        _PROPS[key] = load_property(vnnlib, *onnx_io_sizes(onnx))
    return _PROPS[key]


def test_benchmark_has_both_kinds_of_witness() -> None:
    assert len(CASES) > 200
    invalid: dict[str, int] = {}
    for index in sorted(BENCH.glob("*/counterexamples/index.csv")):
        with index.open() as handle:
            count = sum(row["helper_check"] != "valid" for row in csv.DictReader(handle))
        if count:
            invalid[index.parent.parent.name] = count
    assert invalid == DOCUMENTED_INVALID


@pytest.mark.parametrize(
    ("onnx", "vnnlib", "witness", "valid"),
    CASES,
    ids=[f"{c[2].parent.name}/{c[2].name.removesuffix('.counterexample.gz')}" for c in CASES],
)
def test_checker_agrees_with_index(onnx: Path, vnnlib: Path, witness: Path, valid: bool) -> None:
    verdict = check_witness_file(onnx, _prop(onnx, vnnlib), witness)
    assert verdict.valid is valid, verdict.reason


def test_perturbed_output_is_rejected(tmp_path: Path) -> None:
    onnx, vnnlib, witness, _ = next(c for c in CASES if c[3] and "acasxu" in str(c[0]))
    text = witness.read_bytes()
    import gzip

    lines = gzip.decompress(text).decode().splitlines()
    y_line = next(i for i, line in enumerate(lines) if "Y_0" in line)
    value = float(lines[y_line].strip("()").split()[1])
    lines[y_line] = lines[y_line].replace(lines[y_line].strip("()").split()[1], repr(value + 0.5))
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(lines))
    verdict = check_witness_file(onnx, _prop(onnx, vnnlib), bad)
    assert not verdict.valid
    assert "Y_0" in verdict.reason


def test_point_outside_the_region_is_rejected() -> None:
    onnx = BENCH / "test" / "test_sat.onnx"
    prop = _prop(onnx, BENCH / "test" / "test_prop.vnnlib")
    x = prop.disjuncts[0].ub + 1.0
    verdict = check_counterexample(OnnxRunner(onnx), prop, x)
    assert not verdict.valid
    assert "outside" in verdict.reason


def test_safe_point_is_rejected() -> None:
    onnx = BENCH / "test" / "test_unsat.onnx"
    prop = _prop(onnx, BENCH / "test" / "test_prop.vnnlib")
    x = (prop.disjuncts[0].lb + prop.disjuncts[0].ub) / 2
    verdict = check_counterexample(OnnxRunner(onnx), prop, x, np.zeros(5) + 100.0)
    assert not verdict.valid
