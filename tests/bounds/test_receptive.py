"""Rows walked on their receptive fields (``bounds/receptive.py``): the same bounds as the walk over whole layers
(with and without the margin), windows that hold every nonzero, and sound bounds at sampled points."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import nnverify.bounds.forward_cut as forward_cut
from nnverify.bounds import receptive
from nnverify.bounds.forward_cut import CutPlan, _after, cut_rows_lower
from nnverify.bounds.sparse_view import sparse_view
from nnverify.graph.core import Graph
from nnverify.graph.layers import AffineLayer
from nnverify.graph.onnx_import import load_network

sys.path.insert(0, str(Path(__file__).parents[1] / "graph"))
from onnx_nets import build_model

RNG = np.random.default_rng(11)


def _net(tmp_path: Path) -> Graph:
    """Gemm to an 8x8 image, Conv 3x3 (3 channels), Relu, Conv 3x3 stride 2 (4 channels), Relu, Gemm to one."""
    nodes = [
        helper.make_node("Gemm", ["x", "G", "g"], ["h"]),
        helper.make_node("Reshape", ["h", "s"], ["img"]),
        helper.make_node("Conv", ["img", "C1", "c1"], ["d1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d1"], ["e1"]),
        helper.make_node("Conv", ["e1", "C2", "c2"], ["d2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["d2"], ["e2"]),
        helper.make_node("Flatten", ["e2"], ["f"]),
        helper.make_node("Gemm", ["f", "F", "o"], ["y"]),
    ]
    inits = {"G": RNG.normal(0, 0.6, (4, 64)), "g": RNG.normal(0, 0.3, 64), "s": np.array([1, 1, 8, 8])}
    inits |= {"C1": RNG.normal(0, 0.5, (3, 1, 3, 3)), "c1": RNG.normal(0, 0.2, 3)}
    inits |= {"C2": RNG.normal(0, 0.5, (4, 3, 3, 3)), "c2": RNG.normal(0, 0.2, 4)}
    inits |= {"F": RNG.normal(0, 0.5, (64, 1)), "o": RNG.normal(0, 0.1, 1)}
    path = tmp_path / "conv.onnx"
    onnx.save(build_model(nodes, (1, 4), inits), path)
    return load_network(path)


def _plan(graph: Graph) -> CutPlan:
    shapes = {name: value.shape[1:] for name, value in graph.eval_all(np.zeros((1, 4))).items()}
    view = sparse_view(_after(graph, "img", shapes))
    assert view is not None
    return CutPlan(graph, "img", view)


def _boxes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centre = RNG.normal(0.0, 0.5, (3, 4))
    lb, ub = centre - 0.3, centre + 0.3
    ub[:, 2] = lb[:, 2]  # one input pinned
    return lb, ub, lb[0] < ub[0]


@pytest.mark.parametrize("margins", [{"margin_rel": 0.0, "margin_abs": 0.0}, {}])
def test_windows_give_the_whole_layer_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, margins: dict) -> None:
    plan = _plan(_net(tmp_path))
    lb, ub, free = _boxes()
    a_x, a_y, b = np.zeros((2, 4)), np.array([[1.0], [-1.0]]), np.array([-3.0, -3.0])
    used: list[bool] = []
    groups = forward_cut._Suffix.groups

    def spy(self: forward_cut._Suffix, k: int, idx: np.ndarray, sides: int) -> Iterator[tuple[np.ndarray, object]]:
        for group, support in groups(self, k, idx, sides):
            used.append(support is not None)
            yield group, support

    monkeypatch.setattr(forward_cut._Suffix, "groups", spy)
    monkeypatch.setattr(forward_cut, "GROUP", 4)
    low_w, func_w, bounds_w = cut_rows_lower(plan, lb, ub, free, a_x, a_y, b, **margins)
    assert any(used)  # some groups were walked on their windows
    monkeypatch.setattr(forward_cut, "RECEPTIVE", False)
    low, func, bounds = cut_rows_lower(plan, lb, ub, free, a_x, a_y, b, **margins)
    np.testing.assert_allclose(low_w, low, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(func_w, func, rtol=1e-12, atol=1e-12)
    for got, want in zip([*bounds_w.lb, *bounds_w.ub], [*bounds.lb, *bounds.ub], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_windows_hold_every_nonzero_of_the_rows(tmp_path: Path) -> None:
    view = _plan(_net(tmp_path)).suffix
    k = next(j for j, la in enumerate(view.layers) if isinstance(la, AffineLayer) and la.size == 16 * 4)
    idx = np.array([5, 21])  # position (1, 1) of channels 0 and 1
    support = receptive.supports(view, k, idx)
    assert receptive.pays(view, support)
    dense = [receptive._csr(la.weights[0]).toarray() for la in view.layers if isinstance(la, AffineLayer)]
    reach = np.abs(dense[-2][idx]).sum(axis=0)  # through the second Conv, then (ReLU keeps the pattern) the first
    assert set(np.flatnonzero(reach)) <= set(support[k - 2])
    assert set(np.flatnonzero(np.abs(reach) @ np.abs(dense[-3]))) <= set(support[0])
    assert support[0].size < 64


def test_window_bounds_hold_at_sampled_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = _net(tmp_path)
    plan = _plan(graph)
    monkeypatch.setattr(forward_cut, "GROUP", 4)
    lb, ub, free = _boxes()
    a_x, a_y = np.zeros((2, 4)), np.array([[1.0], [-1.0]])
    for k in range(3):  # rows y - min and max - y: their true minimum is about 0, so the bound must be <= 0
        y = graph.eval(lb[k] + (ub[k] - lb[k]) * RNG.random((4000, 4)))
        b = np.array([y.min(), -y.max()])
        lower, _, _ = cut_rows_lower(plan, lb[k : k + 1], ub[k : k + 1], free, a_x, a_y, b)
        assert np.all(lower <= 0.0) and np.all(y @ a_y.T - b >= lower)


def test_walk_cost_is_below_the_whole_layer_cost(tmp_path: Path) -> None:
    from nnverify.bounds.sparse_view import backsub_cost

    graph = _net(tmp_path)
    shapes = {name: value.shape[1:] for name, value in graph.eval_all(np.zeros((1, 4))).items()}
    view = _plan(graph).suffix
    assert 0.0 < receptive.walk_cost(view) < backsub_cost(graph, "img", shapes)


def test_a_loose_root_box_at_the_cheap_cut_takes_the_deep_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nnverify.budget import Budget
    from nnverify.search import forward_split
    from nnverify.spec.property import Disjunct

    graph = _net(tmp_path)
    monkeypatch.setattr(forward_split, "OP_BACKWARD", False)  # the cut route, as for the 64x64 cGANs
    from nnverify.bounds.sparse_view import backsub_cost

    shapes = {name: value.shape[1:] for name, value in graph.eval_all(np.zeros((1, 4))).items()}
    monkeypatch.setattr(forward_cut, "CUT_COST_MAX", backsub_cost(graph, "e1", shapes))  # cheap: after the 1st ReLU
    lb, ub, _ = _boxes()
    disjuncts = [Disjunct(lb[0], ub[0], np.zeros((1, 4)), np.array([[1.0]]), np.array([-3.0]))]
    cuts = {}
    for loose in (np.inf, -np.inf):
        monkeypatch.setattr(forward_split, "ROOT_LOOSE", loose)
        plan = forward_split._plan(graph, Budget.unlimited(), disjuncts)
        assert isinstance(plan, CutPlan)
        cuts[loose] = plan.cut
    assert cuts[-np.inf] != cuts[np.inf]  # every root counts as loose: the deep (earlier) cut
    order = forward_cut._cut_candidates(graph)
    assert order.index(cuts[-np.inf]) < order.index(cuts[np.inf])
