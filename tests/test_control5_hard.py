"""The shipped set ``properties/control5_hard``: every file exists, parses and loads (5 free inputs, all 5 outputs
bounded), and a ``sat`` instance is decided end to end with a witness that replays."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

import nnverify
from nnverify.witness import OnnxRunner, check_counterexample

ROOT = Path(__file__).resolve().parent.parent / "properties" / "control5_hard"


def rows() -> list[dict[str, str]]:
    with (ROOT / "expected.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_generator_outputs_exist_and_match() -> None:
    assert (ROOT / "make_control5_hard.py").is_file() and (ROOT / "metrics.json").is_file()
    with (ROOT / "instances.csv").open() as handle:
        instances = [tuple(r[:2]) for r in csv.reader(handle)]
    expected = rows()
    assert len(expected) == 20 and instances == [(r["onnx"], r["vnnlib"]) for r in expected]
    assert {r["expected"] for r in expected} <= {"sat", "unsat", "unknown"}
    assert sum(r["expected"] == "sat" for r in expected) == 10


def test_every_property_parses_with_all_outputs_bounded() -> None:
    for row in rows():
        net = nnverify.load_network(ROOT / row["onnx"])
        prop = nnverify.load_property(ROOT / row["vnnlib"], net.n_inputs, net.n_outputs)
        (box,) = prop.disjuncts
        assert int(np.sum(box.lb < box.ub)) == 5
        assert box.n_rows == 5 and np.all(np.count_nonzero(box.a_y, axis=0) == 1)


def test_a_sat_instance_end_to_end() -> None:
    row = next(r for r in rows() if r["vnnlib"].endswith("ctrl_64x4_prop4.vnnlib"))
    result = nnverify.verify(ROOT / row["onnx"], ROOT / row["vnnlib"], nnverify.Options(timeout_s=30.0))
    assert result.verdict.value == "sat", result
    cex = result.counterexample
    assert cex is not None
    prop = nnverify.load_property(ROOT / row["vnnlib"], cex.x.size, cex.y.size)
    assert check_counterexample(OnnxRunner(ROOT / row["onnx"]), prop, cex.x, cex.y).valid
