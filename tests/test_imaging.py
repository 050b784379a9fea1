"""Counterexample pictures: real witnesses (MNIST, ACAS Xu), a synthetic RGB net, and the vector fallbacks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
import pytest
from benchdata import BENCHMARKS_DIR
from onnx import TensorProto, helper, numpy_helper

from nnverify.graph.core import Graph
from nnverify.graph.onnx_import import load_network
from nnverify.imaging import _row_texts, image_layout, save_counterexample_image
from nnverify.result import Counterexample
from nnverify.spec.property import Disjunct, Property
from nnverify.spec.vnnlib import load_property
from nnverify.spec.witness_format import load_witness

BENCH = BENCHMARKS_DIR
MNIST_WITNESS = "counterexamples/2023_nnenum/mnist-net_256x2_prop_1_0.03.counterexample.gz"
ACAS = BENCH / "acasxu"
ACAS_WITNESS = ACAS / "counterexamples/2025_nnenum/ACASXU_run2a_1_2_batch_2000_prop_2.counterexample.gz"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 5_000
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def witness_case(onnx_path: Path, vnnlib: Path, witness: Path) -> tuple[Graph, Property, Counterexample]:
    if not witness.is_file():
        pytest.skip(f"benchmark data not found at {witness}")
    graph = load_network(onnx_path)
    prop = load_property(vnnlib, graph.n_inputs, graph.n_outputs)
    values = load_witness(witness)
    x = np.array([values.x[i] for i in range(graph.n_inputs)])
    y = np.array([values.y[j] for j in range(graph.n_outputs)])
    return graph, prop, Counterexample(x, y)


def test_mnist_witness_picture(tmp_path: Path) -> None:
    root = BENCH / "mnistfc"
    if not (root / "counterexamples" / "index.csv").is_file():
        pytest.skip("MNIST benchmark data not found")
    with (root / "counterexamples" / "index.csv").open() as handle:
        row = next(r for r in csv.DictReader(handle) if r["file"] == MNIST_WITNESS)
    assert row["helper_check"] == "valid"
    graph, prop, cex = witness_case(root / row["onnx"], root / row["vnnlib"], root / row["file"])
    assert image_layout(graph.input_shape) == (1, 28, 28)
    out = tmp_path / "mnist.png"
    save_counterexample_image(graph, prop, cex, out)
    assert_png(out)


def test_acasxu_witness_picture(tmp_path: Path) -> None:
    graph, prop, cex = witness_case(
        ACAS / "onnx/ACASXU_run2a_1_2_batch_2000.onnx", ACAS / "vnnlib/prop_2.vnnlib", ACAS_WITNESS
    )
    assert image_layout(graph.input_shape) is None
    out = tmp_path / "acas.png"
    save_counterexample_image(graph, prop, cex, str(out))
    assert_png(out)
    texts = _row_texts(prop.disjuncts[0], cex.x, cex.y)
    assert texts and all(ok for _, ok in texts)
    assert texts[0][0].startswith("Y_1 <= Y_0:")


def gemm_net(path: Path, input_shape: tuple[int, ...], n_out: int, seed: int = 0) -> Graph:
    """A Flatten + Gemm network saved to ``path`` and loaded back."""
    rng = np.random.default_rng(seed)
    n_in = int(np.prod(input_shape))
    weight = numpy_helper.from_array(rng.normal(size=(n_in, n_out)).astype(np.float32) / n_in**0.5, "W")
    bias = numpy_helper.from_array(rng.normal(size=n_out).astype(np.float32), "B")
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "synthetic",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, n_out])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)
    return load_network(path)


def box_case(graph: Graph, eps: float, rows: np.ndarray, seed: int = 1) -> tuple[Property, Counterexample]:
    """A box of radius ``eps`` around a random point in [0, 1], output rows ``rows @ y <= 0``, a corner point."""
    rng = np.random.default_rng(seed)
    n, m = graph.n_inputs, graph.n_outputs
    centre = rng.uniform(0.0, 1.0, n)
    lb, ub = np.clip(centre - eps, 0.0, 1.0), np.clip(centre + eps, 0.0, 1.0)
    disjunct = Disjunct(lb, ub, np.zeros((rows.shape[0], n)), rows, np.zeros(rows.shape[0]))
    x = np.where(rng.uniform(size=n) < 0.5, lb, ub)
    return Property(n, m, (disjunct,)), Counterexample(x, graph.eval(x[None])[0])


def test_synthetic_rgb_picture(tmp_path: Path) -> None:
    graph = gemm_net(tmp_path / "rgb.onnx", (1, 3, 32, 32), 10)
    assert image_layout(graph.input_shape) == (3, 32, 32)
    rows = np.zeros((1, 10))
    rows[0, 0], rows[0, 1] = 1.0, -1.0
    prop, cex = box_case(graph, 0.05, rows)
    out = tmp_path / "rgb.png"
    save_counterexample_image(graph, prop, cex, out)
    assert_png(out)


def test_long_vector_and_missing_outputs(tmp_path: Path) -> None:
    """50 inputs take the profile plot; NaN outputs (a partial witness) are recomputed; no rows is fine."""
    graph = gemm_net(tmp_path / "vec.onnx", (1, 50), 3)
    prop, cex = box_case(graph, 0.2, np.zeros((0, 3)))
    out = tmp_path / "vec.png"
    save_counterexample_image(graph, prop, Counterexample(cex.x, np.full(3, np.nan)), out)
    assert_png(out)


def test_failing_rows_and_overwrite(tmp_path: Path) -> None:
    """A point that is not a counterexample still draws (rows marked ✗); an existing file is replaced."""
    graph = gemm_net(tmp_path / "small.onnx", (1, 5), 5)
    rows = np.array([[1.0, 0, 0, 0, -1.0], [-2.0, 1.0, 0, 0, 0]])
    prop, cex = box_case(graph, 0.1, rows)
    d = prop.disjuncts[0]
    b = np.array([float(cex.y[0] - cex.y[4]) - 1.0, 0.0])  # first row fails by 1
    prop = Property(5, 5, (Disjunct(d.lb, d.ub, d.a_x, d.a_y, b),))
    texts = _row_texts(prop.disjuncts[0], cex.x, cex.y)
    assert texts[0][0].startswith("Y_0 <= Y_4 - ") and texts[0][0].endswith("✗") and not texts[0][1]
    assert texts[1][0].startswith("Y_1 <= 2*Y_0:")
    out = tmp_path / "small.png"
    out.write_bytes(b"old")
    save_counterexample_image(graph, prop, cex, out)
    assert_png(out)


@pytest.mark.parametrize(
    ("shape", "layout"),
    [
        ((1, 784, 1), (1, 28, 28)),
        ((784,), (1, 28, 28)),
        ((1, 1, 28, 28), (1, 28, 28)),
        ((28, 28), (1, 28, 28)),
        ((1, 3, 32, 32), (3, 32, 32)),
        ((1, 1, 1, 5), None),
        ((1, 2, 16, 16), None),
        ((1, 2, 3), None),
        ((1, 100), None),
    ],
)
def test_image_layout(shape: tuple[int, ...], layout: tuple[int, int, int] | None) -> None:
    assert image_layout(shape) == layout


def test_bad_input_size_and_missing_directory(tmp_path: Path) -> None:
    graph = gemm_net(tmp_path / "small.onnx", (1, 5), 2)
    prop, cex = box_case(graph, 0.1, np.zeros((0, 2)))
    with pytest.raises(ValueError, match="6 inputs"):
        save_counterexample_image(graph, prop, Counterexample(np.zeros(6), cex.y), tmp_path / "bad.png")
    with pytest.raises(OSError):
        save_counterexample_image(graph, prop, cex, tmp_path / "missing" / "x.png")
    assert not (tmp_path / "bad.png").exists()
