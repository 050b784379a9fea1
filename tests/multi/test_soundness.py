"""Sampling guards: no `unsat` of a query a sampled point satisfies; box bounds rounded outward from the exact value."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from multi.nets import random_mlp
from nnverify.multi.bind import bind
from nnverify.multi.product import build_product
from nnverify.multi.relax import to_property
from nnverify.multi.solve import verify_query
from nnverify.options import Options
from nnverify.result import Verdict
from nnverify.spec.vnnlib2 import parse_query

HEAD = """(vnnlib-version <2.0>)
(declare-network f (declare-input A real [1,2]) (declare-output B real [1,2]))
(declare-network g (declare-input C real [1,2]) (declare-output D real [1,2]))
"""


def _eval(path: str, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": row[None, :]})[0] for row in x.astype(np.float32)])


@pytest.mark.parametrize("seed", range(6))
def test_no_unsat_where_samples_satisfy(tmp_path: Path, seed: int) -> None:
    """f(a) and g(c) with c = a + shift on a shared box: B[0] - D[1] >= eps at the sampled maximum minus a bit
    must not be unsat; at the maximum plus a bit the answer may be anything but a wrong sat is caught by replay."""
    rng = np.random.default_rng(seed)
    files = {"f": random_mlp(tmp_path / "f.onnx", rng, [2, 6, 2]), "g": random_mlp(tmp_path / "g.onnx", rng, [2, 6, 2])}
    a = rng.uniform(-1, 1, size=(4000, 2))
    shift = 0.25
    gap = _eval(files["f"], a)[:, 0] - _eval(files["g"], a + shift)[:, 1]
    best = float(gap.max())
    box = "".join(f"(assert (<= -1.0 A[0,{i}] 1.0))(assert (== C[0,{i}] (+ A[0,{i}] {shift})))" for i in range(2))
    for eps, may_be_unsat in ((best - 1e-3, False), (best + 0.5, True)):
        query = tmp_path / "q.vnnlib"
        query.write_text(HEAD + box + f"(assert (>= (- B[0,0] D[0,1]) {eps!r}))")
        result = verify_query(query, files, Options(timeout_s=30))
        assert result.verdict in ((Verdict.SAT, Verdict.UNSAT) if may_be_unsat else (Verdict.SAT,))
        if result.verdict is Verdict.SAT:
            assert result.values is not None
            assert result.values["B"][0] - result.values["D"][1] >= eps - 1e-4


def test_box_bounds_round_outward(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    files = {"f": random_mlp(tmp_path / "f.onnx", rng, [2, 3, 2]), "g": random_mlp(tmp_path / "g.onnx", rng, [2, 3, 2])}
    text = HEAD + "".join(f"(assert (<= -0.1 A[0,{i}] 0.1))(assert (<= 0.3 C[0,{i}] 0.7))" for i in range(2))
    q = parse_query(text + "(assert (<= B[0,0] D[0,0]))")
    product = build_product(q, bind(q, files))
    (d,) = to_property(q, product).prop.disjuncts
    for (name, _), col in product.x_columns.items():
        lo, hi = (Fraction(-1, 10), Fraction(1, 10)) if name == "A" else (Fraction(3, 10), Fraction(7, 10))
        assert Fraction(float(d.lb[col])) <= lo and Fraction(float(d.ub[col])) >= hi
        assert float(d.lb[col]) == float(lo) or Fraction(float(d.lb[col])) < lo  # nearest or one step out


@pytest.mark.parametrize("seed", range(5))
def test_slope_bounds_contain_sampled_derivatives(seed: int) -> None:
    """The interval slope bound contains the central-difference derivative at sampled points of the box."""
    from netgen import random_net

    from nnverify.multi.slope import slope_bounds

    rng = np.random.default_rng(seed)
    graph = random_net(rng, [3, 8, 8, 2])
    lb, ub = -np.ones(3) * 0.5, np.ones(3) * 0.5
    for i in range(3):
        bounds = slope_bounds(graph, lb, ub, i)
        assert bounds is not None
        lo, hi = bounds
        x = rng.uniform(lb, ub, size=(200, 3))
        h = 1e-7
        step = np.zeros(3)
        step[i] = h
        fd = (graph.eval(x + step) - graph.eval(x - step)) / (2 * h)
        assert np.all(fd >= lo - 1e-5) and np.all(fd <= hi + 1e-5)
