"""VNN-LIB 2.1 ``initialized`` inputs: fixed to the ONNX initializer of the same name (its default value)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from nnverify.errors import PropertyError
from nnverify.multi.emit import to_vnnlib2
from nnverify.multi.solve import verify_query
from nnverify.options import Options
from nnverify.result import Verdict
from nnverify.spec.vnnlib2 import parse_query

DEFAULT = np.array([[0.5, -0.25]], dtype=np.float32)


@pytest.fixture
def net(tmp_path: Path) -> str:
    """``y = relu(x @ W + a @ V) @ U`` with ``a`` an input whose initializer is ``DEFAULT``; ``W`` is a weight
    listed as a graph input too (older exporters), which a query never declares."""
    rng = np.random.default_rng(3)
    weights = {"W": rng.normal(size=(2, 4)), "V": rng.normal(size=(2, 4)), "U": rng.normal(size=(4, 1))}
    inits = [numpy_helper.from_array(w.astype(np.float32), k) for k, w in weights.items()]
    inits.append(numpy_helper.from_array(DEFAULT, "a"))
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("MatMul", ["a", "V"], ["av"]),
            helper.make_node("Add", ["xw", "av"], ["s"]),
            helper.make_node("Relu", ["s"], ["h"]),
            helper.make_node("MatMul", ["h", "U"], ["y"]),
        ],
        "init",
        [
            helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("W", onnx.TensorProto.FLOAT, [2, 4]),
        ],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "init.onnx"
    onnx.save(model, path)
    return str(path)


def _query(tmp_path: Path, asserts: str, a_decl: str = "(declare-input A real [1,2] initialized)") -> str:
    text = f"""(vnnlib-version <2.1>)
(declare-network f (declare-input X real [1,2]) {a_decl} (declare-output Y real [1,1]))
(assert (<= -1.0 X[0,0] 1.0)) (assert (<= -1.0 X[0,1] 1.0))
{asserts}
"""
    path = tmp_path / "q.vnnlib"
    path.write_text(text)
    return str(path)


def _max_output(net: str) -> float:
    session = ort.InferenceSession(net, providers=["CPUExecutionProvider"])
    g = np.linspace(-1, 1, 81, dtype=np.float32)
    return max(float(session.run(None, {"x": np.array([[u, v]], dtype=np.float32)})[0][0, 0]) for u in g for v in g)


def test_initialized_input_takes_the_default(net: str, tmp_path: Path) -> None:
    """A sat witness shows A at its default; Y replays with it; a query that needs another A is unsat."""
    top = _max_output(net)
    result = verify_query(_query(tmp_path, f"(assert (>= Y[0,0] {top - 0.05}))"), {"f": net}, Options(timeout_s=30))
    assert result.verdict is Verdict.SAT and result.values is not None
    assert result.values["A"].tolist() == DEFAULT.ravel().astype(np.float64).tolist()
    session = ort.InferenceSession(net, providers=["CPUExecutionProvider"])
    x = result.values["X"].astype(np.float32).reshape(1, 2)
    assert session.run(None, {"x": x})[0][0, 0] == np.float32(result.values["Y"][0])
    above = verify_query(_query(tmp_path, f"(assert (>= Y[0,0] {top + 1.0}))"), {"f": net}, Options(timeout_s=30))
    assert above.verdict is Verdict.UNSAT
    fixed = verify_query(_query(tmp_path, "(assert (>= A[0,0] 0.75))"), {"f": net}, Options(timeout_s=30))
    assert fixed.verdict is Verdict.UNSAT  # A[0,0] is 0.5


def test_initialized_on_an_input_without_default_is_an_error(net: str, tmp_path: Path) -> None:
    path = Path(_query(tmp_path, "", "(declare-input A real [1,2])"))
    path.write_text(path.read_text().replace("X real [1,2])", "X real [1,2] initialized)"))
    with pytest.raises(PropertyError, match=r"ONNX input 'x' of .* has no default value"):
        verify_query(path, {"f": net}, Options(timeout_s=30))


def test_emitted_file_keeps_initialized(tmp_path: Path) -> None:
    query = parse_query(Path(_query(tmp_path, "(assert (>= Y[0,0] 0.0))")).read_text())
    assert "(declare-input A real [1,2] initialized)" in to_vnnlib2(query)


def test_standard_test_file_reads() -> None:
    """The VNNLIB-Standard grammar's test file ``syntax/test/initialized.vnnlib`` (as of its commit 654d8f6)."""
    text = "(vnnlib-version <2.1>)\n\n(declare-network AcasXu\n\t(declare-input A Real [5] initialized)\n"
    text += "\t(declare-output B Real [5])\n)\n\n(assert (<= B[3] 0.5))\n"
    query = parse_query(text)
    assert [(v.name, v.initialized) for v in query.variables] == [("A", True), ("B", False)]
