"""The MILP encoding of lowered piecewise-linear ops is exact: with the input fixed, every solution's outputs
equal the graph's evaluation (feasible region is exactly the function's graph, at kinks and ties too)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from nnverify.backends.base import SolveStatus
from nnverify.backends.highs import HighsBackend
from nnverify.bounds.interval import interval_bounds
from nnverify.encode.network import encode_network
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers

sys.path.insert(0, str(Path(__file__).parents[1] / "graph"))
from onnx_nets import build_model

RNG = np.random.default_rng(3)
NETS = {
    "maxpool-leaky": (
        [
            helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("MaxPool", ["c"], ["m"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
            helper.make_node("LeakyRelu", ["m"], ["y"], alpha=0.25),
        ],
        (1, 1, 3, 3),
        {"W": RNG.uniform(-1, 1, (2, 1, 2, 2))},
    ),
    "abs-clip-min-max": (
        [
            helper.make_node("Abs", ["x"], ["a"]),
            helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
            helper.make_node("Max", ["a", "c", "k"], ["m"]),
            helper.make_node("Min", ["m", "x"], ["y"]),
        ],
        (1, 4),
        {"lo": np.array(-0.25), "hi": np.array(0.5), "k": np.array([0.1, -0.5, 0.3, 0.0])},
    ),
}


@pytest.mark.parametrize("name", NETS)
def test_fixed_input_solutions_equal_eval(name: str, tmp_path: Path) -> None:
    nodes, shape, inits = NETS[name]
    path = tmp_path / "net.onnx"
    onnx.save(build_model(nodes, shape, inits), path)
    graph = load_network(path)
    layers = to_layers(graph, merge=False)
    n = graph.n_inputs
    bounds = interval_bounds(layers, -np.ones(n), np.ones(n))  # sound for every fixed point below
    lbs, ubs = bounds.box(0)
    points = [RNG.uniform(-1, 1, n), RNG.integers(-2, 3, n) / 4.0, np.zeros(n)]  # ties and kinks too
    for x in points:
        problem, var = encode_network(layers, [x, *lbs[1:]], [x, *ubs[1:]])
        for objective in (1.0, -1.0):  # both extremes of every output: the feasible output set is one point
            out = var[layers.output]
            problem.objective = (np.asarray(out), np.full(len(out), objective))
            result = HighsBackend().solve(problem, timeout_s=30)
            assert result.status is SolveStatus.FEASIBLE and result.values is not None
            np.testing.assert_allclose(result.values[var[layers.output]], graph.eval(x[None, :])[0], atol=1e-6)
