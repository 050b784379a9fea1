"""Small ONNX MLPs for the multi-network tests (``onnx.helper``; hidden tensor ``h1`` after the first ReLU)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def mlp(path: Path, weights: list[tuple[np.ndarray, np.ndarray]], in_shape: tuple[int, ...] | None = None) -> str:
    """Gemm/ReLU layers (no ReLU after the last); input ``x`` ``[1, n]`` (or ``in_shape``), output ``y``."""
    n = weights[0][0].shape[1]
    nodes, inits = [], []
    src = "x"
    if in_shape is not None:
        inits.append(numpy_helper.from_array(np.array([1, n], dtype=np.int64), "flat"))
        nodes.append(helper.make_node("Reshape", ["x", "flat"], ["x_flat"]))
        src = "x_flat"
    for k, (w, b) in enumerate(weights):
        inits += [
            numpy_helper.from_array(w.astype(np.float32), f"w{k}"),
            numpy_helper.from_array(b.astype(np.float32), f"b{k}"),
        ]
        last = k == len(weights) - 1
        out = "y" if last else f"a{k}"
        nodes.append(helper.make_node("Gemm", [src, f"w{k}", f"b{k}"], [out], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"h{k + 1}"]))
            src = f"h{k + 1}"
    m = weights[-1][0].shape[0]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(in_shape or (1, n)))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, m])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return str(path)


def random_mlp(path: Path, rng: np.random.Generator, widths: list[int], scale: float = 1.0) -> str:
    weights = [
        (rng.normal(size=(b, a)) * scale / np.sqrt(a), rng.normal(size=b) * 0.3) for a, b in itertools.pairwise(widths)
    ]
    return mlp(path, weights)
