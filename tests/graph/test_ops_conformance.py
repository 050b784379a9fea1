"""The ONNX backend node tests of the structure ops: the first input variable, the others constants; each case
either evaluates like the reference output or is refused with an ``NnverifyError`` (slow: collecting the cases
runs every snippet of the ONNX test suite, ~25 s)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx_nets import run_ort

from nnverify.errors import NnverifyError
from nnverify.graph.onnx_import import load_network

OPS = [
    "Slice",
    "Split",
    "Gather",
    "GatherElements",
    "GatherND",
    "ScatterND",
    "Concat",
    "Pad",
    "Expand",
    "Tile",
    "ReduceSum",
    "ReduceMean",
    "AveragePool",
    "GlobalAveragePool",
    "ConvTranspose",
    "Upsample",
    "Resize",
    "Where",
    "CumSum",
    "DepthToSpace",
    "SpaceToDepth",
    "Sum",
    "Mean",
    "Conv",
    "Gemm",
    "MatMul",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "BatchNormalization",
    "Dropout",
]
#: Cases whose reference output differs from onnxruntime's (rounded expected values; a linear downsampling the
#: reference computes with antialiasing): compared with onnxruntime instead.
ORT_CASES = {"test_averagepool_2d_ceil_last_window_starts_on_pad", "test_resize_downsample_scales_linear_align_corners"}


def single_input_models(op_type: str, tmp_path: Path) -> list[tuple[str, Path, np.ndarray, np.ndarray]]:
    """(case name, model with its other inputs as initializers, float input, expected first output) per case."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(op_type)
    models = []
    for case in cases:
        graph = case.model.graph
        for k, (inputs, outputs) in enumerate(case.data_sets or []):
            if not graph.input or np.asarray(inputs[0]).dtype.kind != "f":
                continue
            names = [value.name for value in graph.input]
            inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in zip(names[1:], inputs[1:], strict=True)]
            single = helper.make_graph(
                list(graph.node), "g", [graph.input[0]], [graph.output[0]], initializer=[*graph.initializer, *inits]
            )
            model = helper.make_model(single, opset_imports=case.model.opset_import)
            model.ir_version = case.model.ir_version
            path = tmp_path / f"{case.name}_{k}.onnx"
            onnx.save(model, path)
            models.append((case.name, path, np.asarray(inputs[0]), np.asarray(outputs[0])))
    return models


@pytest.mark.slow
@pytest.mark.parametrize("op_type", OPS)
def test_backend_node_cases_agree_or_are_refused(op_type: str, tmp_path: Path) -> None:
    agreed = 0
    for name, path, x, expected in single_input_models(op_type, tmp_path):
        try:
            graph = load_network(path)
        except NnverifyError:
            continue
        flat = x.astype(np.float64).reshape(1, -1)
        if name in ORT_CASES:
            expected = run_ort(path, flat, x.shape).reshape(expected.shape)
        ours = graph.eval(flat).reshape(expected.shape)
        np.testing.assert_allclose(ours, expected.astype(np.float64), rtol=1e-4, atol=1e-5, err_msg=name)
        agreed += 1
    assert agreed > 0
