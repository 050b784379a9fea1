"""Every network of the structure-heavy benchmark families loads and evaluates like onnxruntime.

The layer view is checked where its dense matrices are small (linearizenn); the CNN families' views are
large, so only the faithful graph is compared here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from benchdata import BENCHMARKS_DIR
from onnx_nets import check_net, run_ort

from nnverify.graph.onnx_import import load_network

FAMILIES = ("linearizenn_2024", "cgan_2023", "oval21_2022", "cifar_biasfield_2022", "dist_shift_2023")
NETS = sorted(path for family in FAMILIES for path in BENCHMARKS_DIR.glob(f"{family}/onnx/*.onnx"))


@pytest.mark.parametrize("net", NETS, ids=[f"{path.parts[-3]}/{path.stem}" for path in NETS])
def test_benchmark_net_loads_and_matches_onnxruntime(benchmarks_dir: Path, net: Path) -> None:
    if net.parts[-3] == "linearizenn_2024":
        check_net(net, n_points=5)
        return
    graph = load_network(net)
    x = np.random.default_rng(0).uniform(0.0, 1.0, (2, graph.n_inputs)).astype(np.float32).astype(np.float64)
    reference = run_ort(net, x, graph.input_shape)
    values = graph.eval_all(x)
    scale = max(1.0, *(float(np.abs(values[node.outputs[0]]).max()) for node in graph.nodes))
    np.testing.assert_allclose(graph.eval(x), reference, rtol=1e-4, atol=1e-5 * scale)


def test_the_families_are_all_there(benchmarks_dir: Path) -> None:
    assert {path.parts[-3] for path in NETS} == set(FAMILIES)
