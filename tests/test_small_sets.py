"""The shipped sets ``properties/small_cnn`` and ``properties/control5``: every file exists, parses and loads, and
one small ``sat`` and one small ``unsat`` instance of each are decided end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import nnverify
from nnverify.witness import OnnxRunner, check_counterexample

ROOT = Path(__file__).resolve().parent.parent / "properties"
SETS = ("small_cnn", "control5")


def rows(name: str) -> list[dict[str, str]]:
    with (ROOT / name / "expected.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("name", SETS)
def test_generator_outputs_exist_and_match(name: str) -> None:
    root = ROOT / name
    assert (root / f"make_{name}.py").is_file()
    assert (root / "metrics.json").is_file()
    with (root / "instances.csv").open() as handle:
        instances = [tuple(r[:2]) for r in csv.reader(handle)]
    expected = rows(name)
    assert instances == [(r["onnx"], r["vnnlib"]) for r in expected]
    verdicts = {r["expected"] for r in expected}  # unknown: neither the MILP nor the construction decides it
    assert {"sat", "unsat"} <= verdicts <= {"sat", "unsat", "unknown"}
    for onnx, vnnlib in instances:
        assert (root / onnx).is_file() and (root / vnnlib).is_file()


@pytest.mark.parametrize("name", SETS)
def test_every_property_parses_and_loads(name: str) -> None:
    root = ROOT / name
    networks: dict[str, tuple[int, int]] = {}
    for row in rows(name):
        if row["onnx"] not in networks:
            net = nnverify.load_network(root / row["onnx"])
            networks[row["onnx"]] = (net.n_inputs, net.n_outputs)
        n_in, n_out = networks[row["onnx"]]
        prop = nnverify.load_property(root / row["vnnlib"], n_in, n_out)
        assert len(prop.disjuncts) == 1
        box = prop.disjuncts[0]
        free = int(np.sum(box.lb < box.ub))
        assert 1 <= free <= (5 if name == "control5" else 200)


def smallest(name: str, verdict: str) -> dict[str, str]:
    """The instance of ``verdict`` with the fewest free inputs / constrained outputs (the first such row)."""
    key = "outputs" if name == "control5" else "vnnlib"
    candidates = [r for r in rows(name) if r["expected"] == verdict]
    if name == "small_cnn":
        candidates = [r for r in candidates if "_free2_" in r["vnnlib"]]
    return min(candidates, key=lambda r: (len(r[key]) if key == "vnnlib" else int(r[key]), r["vnnlib"]))


@pytest.mark.parametrize("verdict", ["sat", "unsat"])
@pytest.mark.parametrize("name", SETS)
def test_small_instance_end_to_end(name: str, verdict: str) -> None:
    root = ROOT / name
    row = smallest(name, verdict)
    result = nnverify.verify(root / row["onnx"], root / row["vnnlib"], nnverify.Options(timeout_s=30.0))
    assert result.verdict.value == verdict, result
    if verdict == "sat":
        cex = result.counterexample
        assert cex is not None
        prop = nnverify.load_property(root / row["vnnlib"], cex.x.size, cex.y.size)
        assert check_counterexample(OnnxRunner(root / row["onnx"]), prop, cex.x, cex.y).valid
    else:
        assert result.counterexample is None
