"""``nnverify generate``: exact constrained generation on a BNN, independent checks, unsat by bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from nnverify.cli import main
from nnverify.spec.discrete import parse_discrete


def _bnn_onnx(path: Path, seed: int = 0, hidden: int = 16) -> Path:
    """256 binary pixels -> two blocks (±1 Gemm, BatchNormalization, Sign) -> a linear output around 70."""
    rng = np.random.default_rng(seed)
    nodes, inits, name, width = [], [], "x", 256
    for k in range(2):
        w = rng.choice([-1.0, 1.0], size=(hidden, width)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{k}")]
        nodes.append(helper.make_node("Gemm", [name, f"W{k}"], [f"g{k}"], transB=1))
        bn = {
            "scale": rng.uniform(0.5, 1.5, hidden),
            "bias": rng.normal(0, 1, hidden),
            "mean": rng.normal(0, 3, hidden),
            "var": rng.uniform(4, 16, hidden),
        }
        for key, value in bn.items():
            inits.append(numpy_helper.from_array(value.astype(np.float32), f"{key}{k}"))
        nodes.append(
            helper.make_node("BatchNormalization", [f"g{k}", f"scale{k}", f"bias{k}", f"mean{k}", f"var{k}"], [f"b{k}"])
        )
        nodes.append(helper.make_node("Sign", [f"b{k}"], [f"s{k}"]))
        name, width = f"s{k}", hidden
    inits += [
        numpy_helper.from_array(rng.normal(0, 2, (1, hidden)).astype(np.float32), "Wo"),
        numpy_helper.from_array(np.array([70.0], dtype=np.float32), "Bo"),
    ]
    nodes.append(helper.make_node("Gemm", [name, "Wo", "Bo"], ["y"], transB=1))
    graph = helper.make_graph(
        nodes,
        "bnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def bnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bnn_onnx(tmp_path_factory.mktemp("bnn") / "bnn.onnx")


def test_generate_finds_checked_images_in_the_interval(bnn: Path, tmp_path: Path) -> None:
    png, query = tmp_path / "cells.png", tmp_path / "query.vnnlib"
    args = ["generate", "--network", str(bnn), "--grains", "2", "--interval", "65", "75", "--count", "3"]
    result = CliRunner().invoke(main, [*args, "--image", str(png), "--query", str(query), "--seed", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "sat"
    images = [line for line in lines if line.startswith("image ")]
    assert len(images) == 3
    for line in images:
        predicted = float(line.split("BNN ")[1].split(",")[0])
        assert 65.0 - 1e-2 <= predicted <= 75.0 + 1e-2
    grids = ["".join(lines[1 + k * 17 + 1 : 1 + (k + 1) * 17]) for k in range(3)]
    assert len(set(grids)) == 3  # distinct images
    assert png.stat().st_size > 1000
    parsed = parse_discrete(query.read_text())
    assert parsed.n_inputs == 256 and parsed.n_outputs == 1


def test_an_interval_the_network_never_outputs_is_unsat_by_bounds(bnn: Path) -> None:
    result = CliRunner().invoke(main, ["generate", "--network", str(bnn), "--interval", "1000", "1001"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["unsat"]
    assert "bounds" in result.output


def test_bad_generate_arguments_are_usage_errors(bnn: Path) -> None:
    result = CliRunner().invoke(main, ["generate", "--network", str(bnn), "--interval", "60", "70", "--seeds", "x"])
    assert result.exit_code == 2 and "--seeds" in result.output


def test_a_network_that_is_not_a_porous_media_bnn_is_a_clear_error() -> None:
    net = "networks/ACASXU_run2a_1_1_batch_2000.onnx"
    result = CliRunner().invoke(main, ["generate", "--network", net, "--interval", "60", "70"])
    assert result.exit_code == 3
    assert result.output.startswith(f"Error: {net}: expected a binarized network")
