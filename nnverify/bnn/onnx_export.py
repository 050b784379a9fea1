"""ONNX export of a ``BnnModel`` (opset 13) and its replay on onnxruntime; no training here.

The graph is exactly the pattern nnverify's importer and BNN encoding take: input ``x`` float ``[1, n]`` (0/1
pixels), then per block ``Gemm`` (``B`` = ±1 float32 weights, ``transB = 1``, no bias) -> ``BatchNormalization``
(``scale`` = direction ±1, ``B`` = 0, ``mean`` = half-integer threshold, ``var`` = 1, ``epsilon`` = 0) -> ``Sign``,
and a final ``Gemm`` (dyadic real weights and bias) to output ``y`` ``[1, 1]``. With ``var = 1`` and
``epsilon = 0`` each BatchNormalization is exactly ``direction * (s - threshold)``: a half-integer, never 0, so
``Sign`` returns ±1 as in training, and folding it gives small integer coefficients (2s - 2t).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nnverify.bnn.model import BnnModel

#: The opset and IR version of the exported file (IR 8 is read by every onnxruntime nnverify supports).
OPSET = 13
IR_VERSION = 8


@dataclass(frozen=True, slots=True)
class OnnxCheck:
    """onnxruntime against ``BnnModel`` on a set of inputs.

    Attributes:
        n_inputs: Number of inputs replayed.
        max_abs_diff: Largest ``|y_onnxruntime - y_model|`` (0.0 when the outputs are bit-identical).
        sign_mismatches: Hidden Sign outputs that differ from the model's ±1 activations.
        sign_zeros: Hidden Sign outputs equal to 0 (must be none).
    """

    n_inputs: int
    max_abs_diff: float
    sign_mismatches: int
    sign_zeros: int

    @property
    def exact(self) -> bool:
        """Outputs bit-identical, every Sign output ±1 and equal to the model's."""
        return self.max_abs_diff == 0.0 and self.sign_mismatches == 0 and self.sign_zeros == 0


def to_onnx(model: BnnModel, *, doc: str = "") -> onnx.ModelProto:
    """The ONNX model of ``model`` (see the module docstring); ``doc`` becomes the graph's doc string."""
    nodes, inits = [], []
    current = "x"
    for index, (weight, threshold, direction) in enumerate(
        zip(model.weights, model.thresholds, model.directions, strict=True), start=1
    ):
        width = len(threshold)
        params = {
            f"W{index}": weight.astype(np.float32),
            f"bn{index}_scale": direction.astype(np.float32),
            f"bn{index}_bias": np.zeros(width, np.float32),
            f"bn{index}_mean": threshold.astype(np.float32),
            f"bn{index}_var": np.ones(width, np.float32),
        }
        inits += [numpy_helper.from_array(value, name) for name, value in params.items()]
        s, z, a = f"s{index}", f"z{index}", f"a{index}"
        nodes.append(helper.make_node("Gemm", [current, f"W{index}"], [s], name=f"gemm{index}", transB=1))
        bn_inputs = [s, *list(params)[1:]]
        nodes.append(helper.make_node("BatchNormalization", bn_inputs, [z], name=f"bn{index}", epsilon=0.0))
        nodes.append(helper.make_node("Sign", [z], [a], name=f"sign{index}"))
        current = a
    inits.append(numpy_helper.from_array(model.out_weight.astype(np.float32).reshape(1, -1), "W_out"))
    inits.append(numpy_helper.from_array(np.array([model.out_bias], np.float32), "b_out"))
    nodes.append(helper.make_node("Gemm", [current, "W_out", "b_out"], ["y"], name="gemm_out", transB=1))
    graph = helper.make_graph(
        nodes,
        "porous_bnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, model.n_inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        initializer=inits,
        doc_string=doc,
    )
    onnx_model = helper.make_model(graph, producer_name="nnverify.bnn", opset_imports=[helper.make_opsetid("", OPSET)])
    onnx_model.ir_version = IR_VERSION
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def export_onnx(model: BnnModel, path: str | os.PathLike[str], *, doc: str = "") -> None:
    """Write ``model`` as an ONNX file (see ``to_onnx``)."""
    onnx.save_model(to_onnx(model, doc=doc), os.fspath(path))


def check_onnx(model: BnnModel, path: str | os.PathLike[str], x: np.ndarray) -> OnnxCheck:
    """Replay the file at ``path`` on onnxruntime (float32, one row at a time) and compare with ``model``.

    The hidden Sign outputs are read from a copy of the file that also declares them as graph outputs (and a
    free batch size); the final outputs come from the file itself.

    Args:
        model: The in-memory model the file was exported from.
        path: The ``.onnx`` file.
        x: Inputs ``(N, n_inputs)`` (0/1 pixels).

    Returns:
        The comparison.
    """
    import onnxruntime as ort

    inputs = np.asarray(x, dtype=np.float32)
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    y_ort = np.array([session.run(["y"], {"x": row[None, :]})[0][0, 0] for row in inputs], dtype=np.float64)
    y_model = model.predict(inputs.astype(np.float64))

    probe = onnx.load_model(os.fspath(path))
    for value in (*probe.graph.input, *probe.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    signs = [f"a{index}" for index in range(1, len(model.weights) + 1)]
    probe.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in signs)
    hidden = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        signs, {"x": inputs}
    )
    expected = [np.where(z > 0, 1.0, -1.0) for z in model.pre_activations(inputs.astype(np.float64))]
    return OnnxCheck(
        n_inputs=len(inputs),
        max_abs_diff=float(np.max(np.abs(y_ort - y_model), initial=0.0)),
        sign_mismatches=int(sum(np.count_nonzero(h != e) for h, e in zip(hidden, expected, strict=True))),
        sign_zeros=int(sum(np.count_nonzero(h == 0) for h in hidden)),
    )
