"""Every benchmark network loads, evaluates like onnxruntime, and its layer view evaluates like the graph."""

from __future__ import annotations

from pathlib import Path

from onnx_nets import check_net

from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer
from nnverify.graph.onnx_import import load_network
from nnverify.graph.ops.base import ActKind
from nnverify.graph.passes import to_layers


def test_benchmark_net_matches_onnxruntime(benchmark_net: Path) -> None:
    low = 0.0 if "mnist" in benchmark_net.name else -1.0
    check_net(benchmark_net, low=low)


def test_acasxu_layers(benchmarks_dir: Path) -> None:
    graph = load_network(benchmarks_dir / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx")
    assert (graph.input_shape, graph.output_shape) == ((1, 1, 1, 5), (1, 5))
    layers = to_layers(graph).layers
    assert isinstance(layers[0], InputLayer)
    assert len(layers) == 14
    for index, layer in enumerate(layers[1:], start=1):
        if index % 2:
            assert isinstance(layer, AffineLayer)
            assert layer.sources == (index - 1,)
        else:
            assert isinstance(layer, ActivationLayer)
            assert (layer.kind, layer.source, layer.size) == (ActKind.RELU, index - 1, 50)
    assert [layer.size for layer in layers[1::2]] == [50] * 6 + [5]


def test_mnist_layers(benchmarks_dir: Path) -> None:
    layers = to_layers(load_network(benchmarks_dir / "mnistfc" / "onnx" / "mnist-net_256x2.onnx"))
    assert [type(layer).__name__ for layer in layers.layers] == [
        "InputLayer",
        "AffineLayer",
        "ActivationLayer",
        "AffineLayer",
        "ActivationLayer",
        "AffineLayer",
    ]
    assert (layers.n_inputs, layers.n_outputs) == (784, 10)
