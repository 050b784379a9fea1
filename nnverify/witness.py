"""Replays counterexamples on the original ONNX model with onnxruntime (in its input type), the VNN-COMP way.

A witness is valid when (1) it names every X_i and Y_j of the network, (2) X lies in the input region of
some disjunct of the property, (3) onnxruntime's output on X matches the claimed Y within relative
error ``output_rtol`` (when a Y is claimed), and (4) onnxruntime's output violates the property (lies in the
unsafe set) with absolute tolerance ``violation_atol``, every output being finite (a witness line ``(Y_0 inf)`` is
not one every checker parses, and an overflowed output proves nothing about the real network). Nothing is
reported ``sat`` unless this says valid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnverify.errors import ModelError
from nnverify.graph.model_checks import one_line
from nnverify.spec.property import Property
from nnverify.spec.witness_format import WitnessValues, load_witness

#: onnxruntime's input type names -> the numpy type fed to the session.
_ORT_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}
#: Absolute floor of the output comparison, so that outputs at 0 compare sensibly (VNN-COMP uses rtol only).
OUTPUT_ATOL_FLOOR = 1e-6


@dataclass(frozen=True, slots=True)
class WitnessCheck:
    """The replay verdict: ``valid``, onnxruntime's output, and why not when invalid."""

    valid: bool
    y: np.ndarray | None
    reason: str


class OnnxRunner:
    """An onnxruntime session on the original model; ``run`` takes flat float inputs ``(B, n)`` and feeds
    them in the model's own element type (float32, float64 or float16)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import onnxruntime as ort  # lazy: start-up time matters

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        self._path = str(path)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"{path}: onnxruntime cannot load the model ({one_line(exc)})") from exc
        node = self._session.get_inputs()[0]
        self._input_name = node.name
        self._shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in node.shape)
        dtype = _ORT_INPUT_TYPES.get(str(node.type))
        if dtype is None:
            raise ModelError(f"{path}: input '{node.name}' has type {node.type}; expected a float tensor")
        self.dtype: np.dtype = np.dtype(dtype)

    def rounded(self, x: np.ndarray) -> np.ndarray:
        """``x`` as the model's input type sees it (rounded to nearest), back in float64."""
        with np.errstate(over="ignore"):
            return np.asarray(x, dtype=np.float64).astype(self.dtype).astype(np.float64)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``(B, m)`` in float64 of the evaluation in the model's type, one point at a time."""
        outs = []
        for row in np.atleast_2d(x):
            with np.errstate(over="ignore"):
                feed = {self._input_name: row.astype(self.dtype).reshape(self._shape)}
            try:
                out = self._session.run(None, feed)[0]
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ModelError(f"{self._path}: onnxruntime cannot run the model ({one_line(exc)})") from exc
            outs.append(np.asarray(out, dtype=np.float64).ravel())
        return np.stack(outs)


def check_counterexample(
    runner: OnnxRunner,
    prop: Property,
    x: np.ndarray,
    y_claimed: np.ndarray | None = None,
    *,
    output_rtol: float = 1e-3,
    violation_atol: float = 1e-4,
) -> WitnessCheck:
    """Replay one flat input ``x`` and decide whether it is a valid counterexample for ``prop``."""
    x = np.asarray(x, dtype=np.float64).reshape(1, -1)
    x32 = runner.rounded(x)
    if not np.all(np.isfinite(x32)):
        return WitnessCheck(False, None, f"X is not finite in the model's input type ({runner.dtype})")
    if not any(d.contains_input(x32, violation_atol)[0] for d in prop.disjuncts):
        return WitnessCheck(False, None, "X lies outside every input region of the property")
    y = runner.run(x32)
    if not np.all(np.isfinite(y)):
        j = int(np.argmin(np.isfinite(y[0])))
        return WitnessCheck(False, y[0], f"onnxruntime's output is not finite (Y_{j} = {float(y[0, j])})")
    if y_claimed is not None:
        claimed = np.asarray(y_claimed, dtype=np.float64).reshape(1, -1)
        if claimed.shape != y.shape:
            return WitnessCheck(False, y[0], f"{claimed.shape[1]} outputs claimed, the network has {y.shape[1]}")
        err = np.where(np.isnan(claimed), 0.0, np.abs(claimed - y))
        if np.any(err > output_rtol * np.abs(y) + OUTPUT_ATOL_FLOOR):
            j = int(np.argmax(err - output_rtol * np.abs(y)))
            return WitnessCheck(
                False, y[0], f"onnxruntime gives Y_{j} = {y[0, j]!r}, the witness claims {claimed[0, j]!r}"
            )
    if not prop.violated_by(x32, y, atol=violation_atol)[0]:
        return WitnessCheck(False, y[0], "onnxruntime's output does not violate the property")
    return WitnessCheck(True, y[0], "valid")


def witness_arrays(values: WitnessValues, n_inputs: int, n_outputs: int) -> tuple[np.ndarray, np.ndarray] | str:
    """Dense X and claimed Y (NaN where the witness gives no value) or why they do not fit the network.

    Every X_i must be present. Y is compared with onnxruntime only when the witness gives all ``n_outputs``
    values; a partial list (PyRAT writes the property's terms ``y_j - y_label`` as 9 "Y" values for a
    10-output net) is not the network's output, so it is ignored and Y is recomputed (the benchmark index
    counts such witnesses valid). Y indices beyond the network's outputs are an error.
    """
    if sorted(values.x) != list(range(n_inputs)):
        return f"the witness gives {len(values.x)} X values, the network has {n_inputs} inputs (X_0 … X_{n_inputs - 1})"
    extra = [j for j in values.y if j >= n_outputs]
    if extra:
        return f"the witness gives Y_{max(extra)}; the network has {n_outputs} outputs (Y_0 … Y_{n_outputs - 1})"
    x = np.array([values.x[i] for i in range(n_inputs)])
    if sorted(values.y) != list(range(n_outputs)):
        return x, np.full(n_outputs, np.nan)
    y = np.array([values.y[j] for j in range(n_outputs)])
    return x, y


def check_witness_file(
    onnx_path: str | os.PathLike[str],
    prop: Property,
    witness_path: str | os.PathLike[str],
    *,
    output_rtol: float = 1e-3,
    violation_atol: float = 1e-4,
) -> WitnessCheck:
    """Check a VNN-COMP witness file (plain or gzip) against the model and property."""
    runner = OnnxRunner(onnx_path)
    arrays = witness_arrays(load_witness(Path(witness_path)), prop.n_inputs, prop.n_outputs)
    if isinstance(arrays, str):
        return WitnessCheck(False, None, arrays)
    x, y = arrays
    return check_counterexample(runner, prop, x, y, output_rtol=output_rtol, violation_atol=violation_atol)
