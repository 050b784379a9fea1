"""Rows walked on their receptive fields (``bounds/op_windows.py``): the same bounds as whole-tensor walks, sampled
values inside them, a windowed transposed convolution equal to the whole one, and the margin needed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from nnverify.bounds import backward_ops, op_windows
from nnverify.bounds.adjoint import ConvMap
from nnverify.bounds.op_plan import conv_adjoint
from nnverify.graph.core import Graph
from nnverify.graph.onnx_import import load_network
from nnverify.graph.ops.base import Node

sys.path.insert(0, str(Path(__file__).parents[1] / "graph"))
from onnx_nets import build_model


def _deep_cnn(tmp_path: Path) -> Graph:
    """Gemm 3 -> 2x12x12 image, then four Conv+Relu (pads, a stride 2, groups and a dilation), Gemm to 2."""
    rng = np.random.default_rng(5)

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 0.5, shape)

    nodes = [
        helper.make_node("Gemm", ["x", "G", "g"], ["h"]),
        helper.make_node("Reshape", ["h", "s"], ["i"]),
        helper.make_node("Conv", ["i", "W1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "W2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "W3", "b3"], ["c3"], pads=[1, 0, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Conv", ["r3", "W4", "b4"], ["c4"], pads=[2, 2, 2, 2], dilations=[2, 2], group=2),
        helper.make_node("Relu", ["c4"], ["r4"]),
        helper.make_node("Flatten", ["r4"], ["f"]),
        helper.make_node("Gemm", ["f", "F", "o"], ["y"]),
    ]
    inits = {"G": w(3, 288), "g": w(288), "s": np.array([1, 2, 12, 12]), "W1": w(4, 2, 3, 3), "b1": w(4)}
    inits |= {"W2": w(4, 4, 3, 3), "b2": w(4), "W3": w(6, 4, 3, 3), "b3": w(6), "W4": w(6, 3, 3, 3), "b4": w(6)}
    inits |= {"F": w(6 * 6 * 6, 2), "o": w(2)}
    path = tmp_path / "deep_cnn.onnx"
    onnx.save(build_model(nodes, (1, 3), inits), path)
    return load_network(path)


def _box() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lb = np.array([[-0.3, 0.1, -0.2], [0.0, -0.1, 0.2]])
    return lb, lb + np.array([[0.4, 0.3, 0.5], [0.2, 0.2, 0.2]]), np.ones(3, dtype=bool)


@pytest.mark.parametrize("overhead", [0.0, 1e15], ids=["one-position-tiles", "one-group"])
def test_windows_give_the_whole_walks_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overhead: float) -> None:
    graph = _deep_cnn(tmp_path)
    plan = backward_ops.plan(graph)
    assert plan.floor == ("c1",)
    chains = {name: op_windows.chain(plan, name) for name in ("c2", "c3", "c4")}
    assert all(ch is not None and ch.floor == "c1" for ch in chains.values())
    ch = chains["c3"]
    assert ch is not None
    monkeypatch.setattr(op_windows, "OVERHEAD", overhead)
    parts = op_windows.groups(plan, ch, "c3", np.arange(6 * 6 * 6), 2, 4)
    assert (len(parts) == 36) if overhead == 0.0 else (len(parts) == 1)
    lb, ub, free = _box()
    windowed = backward_ops.op_bounds(plan, lb, ub, free)
    monkeypatch.setattr(backward_ops, "WINDOWS", False)
    whole = backward_ops.op_bounds(plan, lb, ub, free)
    opened = 0
    for name in ("c2", "c3", "c4"):
        for mine, theirs in ((windowed.lb[name], whole.lb[name]), (windowed.ub[name], whole.ub[name])):
            np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)
        opened += int(np.sum((whole.lb[name] < 0.0) & (whole.ub[name] > 0.0)))
    assert opened > 20  # many elements were walked, on both paths


def test_windowed_bounds_hold_at_sampled_points(tmp_path: Path) -> None:
    graph = _deep_cnn(tmp_path)
    lb, ub, free = _box()
    state = backward_ops.op_bounds(backward_ops.plan(graph), lb, ub, free)
    rng = np.random.default_rng(3)
    for box in range(2):
        x = np.vstack(
            [rng.uniform(lb[box], ub[box], (2000, 3)), np.where(rng.integers(0, 2, (500, 3)), ub[box], lb[box])]
        )
        env = graph.eval_all(x)
        for name in ("c2", "c3", "c4"):
            value = env[name].reshape(x.shape[0], -1)
            assert np.all(value >= state.lb[name][box].reshape(-1)) and np.all(value <= state.ub[name][box].reshape(-1))


def test_a_windowed_transposed_convolution_is_the_whole_ones_restriction() -> None:
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(6, 2, 3, 2))  # groups 2: 4 input channels
    cmap = ConvMap(kernel, 2, (2, 1), (1, 2), ((1, 0), (2, 1)), (4, 9, 8), (6, 4, 9))
    coef = rng.normal(size=(6, 4, 9, 5))
    full = conv_adjoint(cmap, coef)
    for window in (((0, 4), (0, 9)), ((1, 3), (2, 5)), ((3, 4), (8, 9))):
        part = np.zeros_like(coef)
        spatial = tuple(slice(lo, hi) for lo, hi in window)
        part[(slice(None), *spatial)] = coef[(slice(None), *spatial)]
        expected = conv_adjoint(cmap, part)
        got, below = op_windows.conv_adjoint_window(cmap, np.ascontiguousarray(coef[(slice(None), *spatial)]), window)
        inside = tuple(slice(lo, hi) for lo, hi in below)
        np.testing.assert_allclose(got, expected[(slice(None), *inside)], rtol=1e-13, atol=1e-13)
        outside = expected.copy()
        outside[(slice(None), *inside)] = 0.0
        assert not np.any(outside)  # the window below holds every coefficient the rows reach
    got, below = op_windows.conv_adjoint_window(cmap, coef, ((0, 4), (0, 9)))
    assert below == ((0, 8), (0, 8)) and np.array_equal(got, full[:, :8])  # input row 8 is never read


CONV = {"group": 1, "auto_pad": "NOTSET"}
A = 1.0 + 2.0**-30  # A * A = 1 + 2^-29 + 2^-60 exactly, which float64 rounds to 1 + 2^-29


def _margin_graph() -> Graph:
    """t = Conv([-A, 1 + 2^-29], relu(Conv(diag(A, 1), relu(x)))) on channels, at x = (1, 1): t = -2^-60 exactly.
    The floor is the reshaped (pinned) input, so only the windowed walk's margin covers the rounding of ``A * A``."""
    nodes = (
        Node("reshape", "Reshape", ("x", "s"), ("i",), {}),
        Node("relu0", "Relu", ("i",), ("r",), {}),
        Node("conv1", "Conv", ("r", "K1"), ("h",), CONV),
        Node("relu1", "Relu", ("h",), ("q",), {}),
        Node("conv2", "Conv", ("q", "K2"), ("t",), CONV),
        Node("relu2", "Relu", ("t",), ("u",), {}),
        Node("flatten", "Flatten", ("u",), ("y",), {"axis": 1}),
    )
    consts = {
        "s": np.array([1, 2, 1, 1]),
        "K1": np.array([[A, 0.0], [0.0, 1.0]]).reshape(2, 2, 1, 1),
        "K2": np.array([-A, 1.0 + 2.0**-29]).reshape(1, 2, 1, 1),
    }
    return Graph("margin", "x", (1, 2), "y", (1, 1), nodes, consts)


def test_without_margin_the_windowed_walk_is_unsound() -> None:
    graph = _margin_graph()
    plan = backward_ops.plan(graph)
    ch = op_windows.chain(plan, "t")
    assert ch is not None and ch.floor == "i"
    one, free = np.ones((1, 2)), np.array([False, False])
    for margins, sound in (((0.0, 0.0), False), ((1e-9, 1e-12), True)):
        state = backward_ops.op_bounds(plan, one, one, free, margins=margins)
        low, _ = op_windows.side(plan, state, ch, "t", np.array([0]), 1.0, margins, None)
        assert bool(low[0, 0] <= -(2.0**-60)) is sound  # t = -2^-60: without the margin its lower bound is 0


def test_more_intermediate_rules_tighten_and_stay_sound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each intermediate element keeps its best bound over ``INTERMEDIATE_RULES``: its ReLUs' intervals are
    narrower in all than with the adaptive rule alone, and sampled values stay inside."""
    graph = _deep_cnn(tmp_path)
    plan = backward_ops.plan(graph)
    lb, ub, free = _box()
    one = backward_ops.op_bounds(plan, lb, ub, free)
    monkeypatch.setattr(backward_ops, "INTERMEDIATE_RULES", backward_ops.ROW_RULES)
    four = backward_ops.op_bounds(plan, lb, ub, free)
    gained = 0
    for name in ("c2", "c3", "c4"):
        # after the ReLU (an element the upper pass closes at 0 skips its lower pass, so compare relu's interval)
        lo4, hi4, lo1, hi1 = (np.maximum(v[name], 0.0) for v in (four.lb, four.ub, one.lb, one.ub))
        assert np.sum(hi4 - lo4) <= np.sum(hi1 - lo1)  # per element not always: adaptive slopes follow the bounds
        gained += int(np.sum(hi4 - lo4 < hi1 - lo1 - 1e-9))
    assert gained > 0
    rng = np.random.default_rng(4)
    for box in range(2):
        x = rng.uniform(lb[box], ub[box], (2000, 3))
        env = graph.eval_all(x)
        for name in ("c2", "c3", "c4"):
            value = env[name].reshape(x.shape[0], -1)
            assert np.all(value >= four.lb[name][box].reshape(-1)) and np.all(value <= four.ub[name][box].reshape(-1))
