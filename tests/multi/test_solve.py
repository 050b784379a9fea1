"""Deciding queries: sat replayed on every original model, unsat, strictness, and the single-network cross-check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from multi.nets import mlp, random_mlp
from nnverify.multi.solve import verify_query
from nnverify.options import Options
from nnverify.pipeline import verify
from nnverify.result import Verdict
from nnverify.spec.vnnlib import parse_vnnlib

PAIR = """(vnnlib-version <2.0>)
(declare-network f
    (declare-input A real [1,3])
    (declare-hidden H real [1,8] "h1")
    (declare-output B real [1,2])
)
(declare-network g
    (declare-input C real [1,3])
    (declare-output D real [1,2])
)
"""
SHARED = "".join(f"(assert (<= -1.0 A[0,{i}] 1.0))(assert (== A[0,{i}] C[0,{i}]))" for i in range(3))


def _outputs(path: str, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x.astype(np.float32).reshape(1, -1)})[0].ravel()


@pytest.fixture
def two(tmp_path: Path) -> dict[str, str]:
    rng = np.random.default_rng(7)
    return {"f": random_mlp(tmp_path / "f.onnx", rng, [3, 8, 2]), "g": random_mlp(tmp_path / "g.onnx", rng, [3, 8, 2])}


def _query(tmp_path: Path, text: str) -> str:
    path = tmp_path / "q.vnnlib"
    path.write_text(text)
    return str(path)


def test_sat_witness_replays_on_each_network(two: dict[str, str], tmp_path: Path) -> None:
    """f and g disagree on the larger logit somewhere in the box; the printed values are each model's own."""
    text = PAIR + SHARED + "(assert (< B[0,0] B[0,1]))(assert (> D[0,0] D[0,1]))"
    result = verify_query(_query(tmp_path, text), two, Options(timeout_s=30))
    assert result.verdict is Verdict.SAT and result.values is not None
    a, b, c, d = (result.values[k] for k in "ABCD")
    assert np.array_equal(a, c) and np.all(np.abs(a) <= 1.0)
    assert np.array_equal(b, _outputs(two["f"], a)) and np.array_equal(d, _outputs(two["g"], c))
    assert b[0] < b[1] and d[0] > d[1]
    assert result.values["H"].shape == (8,)
    lines = result.assignment_text().splitlines()
    assert lines[0] == "A real [1,3]" and "H real [1,8]" in lines and lines.count("D real [1,2]") == 1


def test_vacuous_constraints_are_unsat_without_networks(two: dict[str, str], tmp_path: Path) -> None:
    text = PAIR + SHARED + "(assert (>= A[0,0] 2.0))(assert (<= B[0,0] 0))"
    result = verify_query(_query(tmp_path, text), two, Options(timeout_s=30))
    assert result.verdict is Verdict.UNSAT and result.method == "spec"


def _side_by_side(f: str, g: str, out: Path) -> str:
    """One network x -> f(x) - g(x), built independently of ``multi/product.py``."""
    nodes, inits = [], []
    for tag, path in (("f", f), ("g", g)):
        model = onnx.load(path)
        names = {t.name for t in model.graph.initializer} | {n for node in model.graph.node for n in node.output}
        for t in model.graph.initializer:
            t.name = f"{tag}_{t.name}"
            inits.append(t)
        for node in model.graph.node:
            node.input[:] = [f"{tag}_{n}" if n in names else n for n in node.input]
            node.output[:] = [f"{tag}_{n}" for n in node.output]
            nodes.append(node)
    nodes.append(helper.make_node("Sub", ["f_y", "g_y"], ["d"]))
    graph = helper.make_graph(
        nodes,
        "diff",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("d", onnx.TensorProto.FLOAT, [1, 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, out)
    return str(out)


@pytest.mark.parametrize("eps", [0.05, 0.5, 1.5, 3.0, 6.0])
def test_agrees_with_the_single_network_path(two: dict[str, str], tmp_path: Path, eps: float) -> None:
    """Y_f - Y_g >= eps somewhere: the same verdict from the 2.0 query and from one side-by-side network."""
    text = PAIR + SHARED + f"(assert (>= (- B[0,0] D[0,0]) {eps}))"
    multi = verify_query(_query(tmp_path, text), two, Options(timeout_s=30))
    single_net = _side_by_side(two["f"], two["g"], tmp_path / "diff.onnx")
    box = "".join(f"(assert (<= -1.0 X_{i} 1.0))" for i in range(3))
    decl = "".join(f"(declare-const X_{i} Real)" for i in range(3)) + "(declare-const Y_0 Real)(declare-const Y_1 Real)"
    single = verify(single_net, parse_vnnlib(decl + box + f"(assert (>= Y_0 {eps}))"), Options(timeout_s=30))
    assert multi.verdict is single.verdict
    assert multi.verdict in (Verdict.SAT, Verdict.UNSAT)


@pytest.fixture
def doubler(tmp_path: Path) -> str:
    return mlp(tmp_path / "double.onnx", [(np.array([[2.0]]), np.array([0.0]))])


MONO = """(vnnlib-version <2.0>)
(declare-network f (declare-input X real [1,1]) (declare-output Y real [1,1]))
(declare-network g (equal-to f) (declare-input Xg real [1,1]) (declare-output Yg real [1,1]))
(assert (<= 0.0 X[0,0] 1.0))
(assert (<= 0.0 Xg[0,0] 1.0))
(assert (<= X[0,0] Xg[0,0]))
"""


@pytest.fixture
def half(tmp_path: Path) -> str:
    """y = relu(x) - 0.5 relu(x): monotone (slope 0 or 0.5), but the interval slope bound is [-0.5, 1]."""
    return mlp(
        tmp_path / "half.onnx", [(np.array([[1.0], [1.0]]), np.zeros(2)), (np.array([[1.0, -0.5]]), np.zeros(1))]
    )


HALF = MONO.replace("(<= 0.0 X[0,0] 1.0)", "(<= -1.0 X[0,0] 1.0)").replace(
    "(<= 0.0 Xg[0,0] 1.0)", "(<= -1.0 Xg[0,0] 1.0)"
)


def test_a_tie_is_never_sat(half: str, tmp_path: Path) -> None:
    """Yg < Y with X <= Xg holds only at ties, which are no witness; the slope bound cannot prove it: unknown."""
    result = verify_query(_query(tmp_path, HALF + "(assert (< Yg[0,0] Y[0,0]))"), {"f": half}, Options(timeout_s=20))
    assert result.verdict is Verdict.UNKNOWN and "tie" in result.note


def test_monotone_strict_query_is_unsat_by_the_slope_bound(doubler: str, tmp_path: Path) -> None:
    """y = 2x: the slope along X is >= 0 everywhere, so Yg < Y with X <= Xg is unsat (not a tie-only unknown)."""
    result = verify_query(_query(tmp_path, MONO + "(assert (< Yg[0,0] Y[0,0]))"), {"f": doubler}, Options(timeout_s=20))
    assert result.verdict is Verdict.UNSAT and result.method == "slope"


def test_slope_bound_does_not_refute_a_decrease(tmp_path: Path) -> None:
    """y = relu(-x) decreases on [-1, 0]: the slope bound proves nothing and the strict witness is found."""
    net = mlp(tmp_path / "dec.onnx", [(np.array([[-1.0]]), np.zeros(1)), (np.array([[1.0]]), np.zeros(1))])
    text = HALF + "(assert (< Yg[0,0] Y[0,0]))"
    result = verify_query(_query(tmp_path, text), {"f": net}, Options(timeout_s=20))
    assert result.verdict is Verdict.SAT and result.values is not None
    assert result.values["X"][0] <= result.values["Xg"][0] and result.values["Yg"][0] < result.values["Y"][0]


def test_non_strict_accepts_the_tie(doubler: str, tmp_path: Path) -> None:
    result = verify_query(
        _query(tmp_path, MONO + "(assert (<= Yg[0,0] Y[0,0]))"), {"f": doubler}, Options(timeout_s=20)
    )
    assert result.verdict is Verdict.SAT and result.values is not None
    assert result.values["Yg"][0] <= result.values["Y"][0]


def test_unsat_of_the_relaxation_proves_the_strict_query(doubler: str, tmp_path: Path) -> None:
    text = MONO + "(assert (< Yg[0,0] (- Y[0,0] 0.5)))"
    result = verify_query(_query(tmp_path, text), {"f": doubler}, Options(timeout_s=20))
    assert result.verdict is Verdict.UNSAT


def test_strict_witness_found_past_the_tie(doubler: str, tmp_path: Path) -> None:
    """Y < Yg strictly with X <= Xg: ties at X = Xg; the tightened search finds X < Xg."""
    text = MONO + "(assert (< Y[0,0] Yg[0,0]))"
    result = verify_query(_query(tmp_path, text), {"f": doubler}, Options(timeout_s=20))
    assert result.verdict is Verdict.SAT and result.values is not None
    assert result.values["Y"][0] < result.values["Yg"][0]


@pytest.mark.parametrize("eps", [0.05, 3.0])
def test_exact_backend_agrees(two: dict[str, str], tmp_path: Path, eps: float) -> None:
    """The product decided with clpq (exact rationals) gives the HiGHS verdict: sat at 0.05, unsat at 3."""
    from nnverify.backends import get_backend
    from nnverify.errors import BackendUnavailableError

    try:
        get_backend("clpq", Options())
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    text = PAIR + SHARED + f"(assert (>= (- B[0,0] D[0,0]) {eps}))"
    result = verify_query(_query(tmp_path, text), two, Options(timeout_s=60, backend="clpq", attack_samples=0))
    assert result.verdict is (Verdict.SAT if eps < 1 else Verdict.UNSAT)
    # an unsat the floating-point bounds prove alone names no backend (no clpq leaf ran)
    assert "clpq" in result.method or (result.verdict is Verdict.UNSAT and result.method.endswith("+bounds"))
