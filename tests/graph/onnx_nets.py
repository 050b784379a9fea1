"""Helpers for the graph tests: build small ONNX models with ``onnx.helper`` and compare with onnxruntime."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from nnverify.graph.core import Graph
from nnverify.graph.layers import LayerGraph
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers

IR_VERSION = 8  # understood by every onnxruntime we support, and enough for opset 17

#: ``save_net(nodes, input_shape, initializers=None, opset=13, name="net.onnx") -> path`` (a fixture).
SaveNet = Callable[..., Path]


def build_model(
    nodes: Sequence[onnx.NodeProto],
    input_shape: Sequence[int | str],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 13,
) -> onnx.ModelProto:
    """A model with input ``x`` (float, ``input_shape``) and output ``y``; integer initializers stay int64."""
    inits = []
    for name, value in (initializers or {}).items():
        array = np.asarray(value)
        dtype = np.int64 if np.issubdtype(array.dtype, np.integer) else np.float32
        inits.append(numpy_helper.from_array(array.astype(dtype), name))
    graph = helper.make_graph(
        list(nodes),
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    return model


def run_ort(path: Path, x: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """onnxruntime's outputs (flattened, float64) for each row of ``x``, fed as float32 one at a time."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rows = [session.run(None, {name: row.reshape(input_shape).astype(np.float32)})[0] for row in x]
    return np.stack([np.asarray(row, dtype=np.float64).reshape(-1) for row in rows])


def check_net(path: Path, n_points: int = 20, low: float = -1.0, high: float = 1.0) -> tuple[Graph, LayerGraph]:
    """Load ``path``; assert eval equals onnxruntime and the layer view equals eval at random points."""
    graph = load_network(path)
    rng = np.random.default_rng(0)
    x = rng.uniform(low, high, (n_points, graph.n_inputs)).astype(np.float32).astype(np.float64)
    reference = run_ort(path, x, graph.input_shape)
    ours = graph.eval(x)
    # onnxruntime computes in float32: its rounding error grows with the largest intermediate value
    values = graph.eval_all(x)
    scale = max(1.0, *(float(np.abs(values[node.outputs[0]]).max()) for node in graph.nodes))
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6 * scale)
    layers = to_layers(graph)
    np.testing.assert_allclose(layers.eval(x), ours, rtol=1e-9, atol=1e-9 * scale)
    return graph, layers


def small_cnn_layers(path: Path) -> LayerGraph:
    """Conv(stride 2) -> ReLU -> Conv -> ReLU -> Flatten -> Gemm on a 2x8x8 input (seeded), saved at ``path`` and
    read into the layer view (``merge=False``): the CNN of the kernel-route and ReLU-chain tests."""
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("Gemm", ["f", "G", "C"], ["y"], transB=1),
    ]
    inits = {
        "W1": rng.uniform(-1, 1, (4, 2, 3, 3)),
        "B1": rng.uniform(-0.3, 0.3, 4),
        "W2": rng.uniform(-0.5, 0.5, (3, 4, 3, 3)),
        "B2": rng.uniform(-0.3, 0.3, 3),
        "G": rng.uniform(-1, 1, (3, 48)),
        "C": rng.uniform(-0.3, 0.3, 3),
    }
    onnx.save(build_model(nodes, (1, 2, 8, 8), inits), path)
    return to_layers(load_network(path), merge=False)
