"""The memory cap: large allocations are estimated first and refused with a note naming the phase and size."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import nnverify
from nnverify import attack, cli
from nnverify.budget import Budget, ResourceLimitError, default_memory_limit_mb, resident_mb
from nnverify.cli import main
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers
from nnverify.spec.vnnlib import parse_vnnlib

SIDE = 64  # a 1x64x64 image through a 3x3 convolution to 4 channels: a dense 16,384 x 4,096 matrix (512 MB)


def conv_net(path: Path) -> Path:
    """Tiny weights, a big dense matrix: the analysis view reads the Conv as a 16,384 x 4,096 matrix."""
    w = np.full((4, 1, 3, 3), 0.1, np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("ReduceSum", ["r"], ["y"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, SIDE, SIDE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def conv_prop(path: Path) -> Path:
    n = SIDE * SIDE
    lines = [f"(declare-const X_{i} Real)" for i in range(n)] + ["(declare-const Y_0 Real)"]
    lines += [f"(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))" for i in range(n)]
    path.write_text("\n".join([*lines, "(assert (<= Y_0 -1))"]) + "\n")
    return path


def test_the_default_cap_is_a_share_of_the_machine() -> None:
    limit = nnverify.Options().memory_limit()
    assert limit == default_memory_limit_mb()
    total_mb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024
    assert 0 < limit < total_mb
    assert nnverify.Options(memory_limit_mb=123.0).memory_limit() == 123.0


def test_a_dense_matrix_over_the_cap_is_refused_before_it_is_allocated(tmp_path: Path) -> None:
    graph = load_network(conv_net(tmp_path / "conv.onnx"))
    with pytest.raises(ResourceLimitError, match=r"16,384 x 4,096 matrix .* about [0-9,]+ MB") as info:
        to_layers(graph, budget=Budget(math.inf, resident_mb() + 100))
    assert info.value.phase.startswith("building the analysis view")


def test_verify_takes_the_cheaper_route_with_a_note(tmp_path: Path) -> None:
    # the dense view (512 MB) would not fit the cap: the run attacks the op graph only and says why
    net, prop = conv_net(tmp_path / "conv.onnx"), conv_prop(tmp_path / "conv.vnnlib")
    options = nnverify.Options(memory_limit_mb=resident_mb() + 200, timeout_s=8)  # room to parse under load
    result = nnverify.verify(net, prop, options)
    assert result.verdict in (nnverify.Verdict.TIMEOUT, nnverify.Verdict.UNKNOWN)
    assert "the dense layer view would take about" in result.note


def test_a_sample_batch_over_the_cap_is_refused(tmp_path: Path) -> None:
    layers = to_layers(load_network(conv_net(tmp_path / "conv.onnx")))
    prop = parse_vnnlib(conv_prop(tmp_path / "conv.vnnlib").read_text(), n_inputs=SIDE * SIDE, n_outputs=1)
    budget = Budget(math.inf, resident_mb() + 50)
    with pytest.raises(ResourceLimitError, match="sampling"):
        attack.candidates(layers, list(prop.disjuncts), samples=10_000, seed=0, budget=budget)


def test_cli_memory_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_STARTUP_S", 0.0)  # the test process's age is not this run's start-up
    net, prop = conv_net(tmp_path / "conv.onnx"), conv_prop(tmp_path / "conv.vnnlib")
    runner = CliRunner()
    for bad in ("0", "nan", "inf", "-5"):
        out = runner.invoke(main, ["check", str(net), str(prop), "--memory-limit", bad])
        assert out.exit_code == 2, (bad, out.output)
    limit = str(round(resident_mb() + 200))
    args = ["check", str(net), str(prop), "--memory-limit", limit, "--timeout", "8", "--json"]  # room under load
    out = runner.invoke(main, args)
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] in ("timeout", "unknown")
    assert "the dense layer view would take about" in out.output
    assert '"peak_mem_mb"' in out.output
