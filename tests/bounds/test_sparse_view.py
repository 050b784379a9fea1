"""The sparse layer view (``bounds/sparse_view.py``): each matrix equals the op's dense read-off, the kernel
operators equal the matrices, and CROWN after a cut gives the same bounds on the sparse and the dense suffix (the
margin test of the cut route, ``test_forward_ops.py``, runs through the sparse view too)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from nnverify.bounds.forward_cut import CutPlan, _after, _sparse, cut_rows_lower, plan_cut
from nnverify.bounds.sparse_view import _kernel_csr, _kernel_map, backsub_cost, sparse_view
from nnverify.graph.core import Graph
from nnverify.graph.layers import AffineLayer
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers

sys.path.insert(0, str(Path(__file__).parents[1] / "graph"))
from onnx_nets import build_model

RNG = np.random.default_rng(7)

CONVS = [
    ("Conv", (1, 2, 6, 5), (4, 2, 3, 3), {"pads": [1, 0, 2, 1], "strides": [2, 1]}),
    ("Conv", (1, 4, 7, 7), (6, 2, 3, 2), {"group": 2, "dilations": [2, 1], "strides": [1, 2]}),
    ("Conv", (1, 3, 9), (2, 3, 4), {"pads": [2, 1], "strides": [3]}),
    ("ConvTranspose", (1, 3, 2, 3), (3, 2, 4, 4), {"strides": [2, 2]}),
    ("ConvTranspose", (1, 2, 4, 4), (2, 3, 4, 3), {"strides": [2, 1], "pads": [1, 0, 1, 1]}),
    ("ConvTranspose", (1, 4, 3, 3), (4, 1, 3, 3), {"group": 2, "strides": [2, 2], "output_padding": [1, 0]}),
    ("ConvTranspose", (1, 2, 5), (2, 2, 3), {"dilations": [2], "pads": [1, 2]}),
]


def _single(op: str, in_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict, tmp_path: Path) -> Graph:
    """A net of one convolution (with a bias) on a flat input reshaped to ``in_shape``."""
    out_channels = w_shape[0] if op == "Conv" else w_shape[1] * attrs.get("group", 1)
    nodes = [
        helper.make_node("Reshape", ["x", "s"], ["i"]),
        helper.make_node(op, ["i", "W", "b"], ["c"], **attrs),
        helper.make_node("Flatten", ["c"], ["y"]),
    ]
    inits = {"s": np.array(in_shape), "W": RNG.normal(size=w_shape), "b": RNG.normal(size=out_channels)}
    path = tmp_path / "conv.onnx"
    onnx.save(build_model(nodes, (1, math.prod(in_shape)), inits), path)
    return load_network(path)


def _dense(graph: Graph, node_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The node's matrix and bias read off its ``eval`` at unit vectors."""
    node = graph.nodes[node_index]
    env = graph.eval_all(np.zeros((1, graph.n_inputs)))
    data = env[node.inputs[0]]
    size = int(np.prod(data.shape[1:]))
    units = np.eye(size).reshape(size, *data.shape[1:])
    args = [graph.constants[n][None] for n in node.inputs[1:]]
    from nnverify.graph.ops.base import REGISTRY

    op = REGISTRY[node.op_type]
    bias = op.eval(node, np.zeros((1, *data.shape[1:])), *args).reshape(1, -1)
    out = op.eval(node, units, *args).reshape(size, -1) - bias
    return out.T, bias[0]


@pytest.mark.parametrize("case", range(len(CONVS)))
def test_kernel_matrix_and_operator_equal_the_dense_read_off(tmp_path: Path, case: int) -> None:
    op, in_shape, w_shape, attrs = CONVS[case]
    graph = _single(op, in_shape, w_shape, attrs, tmp_path)
    dense, _ = _dense(graph, 1)
    env = graph.eval_all(np.zeros((1, graph.n_inputs)))
    node = graph.nodes[1]
    shape_in, shape_out = env[node.inputs[0]].shape[1:], env[node.outputs[0]].shape[1:]
    csr = _kernel_csr(graph, node, shape_in, shape_out)
    assert csr is not None
    np.testing.assert_allclose(csr.toarray(), dense, rtol=0.0, atol=1e-12)
    cmap = _kernel_map(graph, node, shape_in, shape_out)
    assert cmap is not None
    x, lam = RNG.normal(size=(3, dense.shape[1])), RNG.normal(size=(3, dense.shape[0]))
    np.testing.assert_allclose(cmap.forward(x), x @ dense.T, rtol=0.0, atol=1e-10)
    np.testing.assert_allclose(cmap.adjoint(lam), lam @ dense, rtol=0.0, atol=1e-10)
    np.testing.assert_allclose(cmap.adjoint(lam, absolute=True), lam @ np.abs(dense), rtol=0.0, atol=1e-10)
    view = sparse_view(graph)
    assert view is not None
    xs = RNG.normal(size=(5, graph.n_inputs))
    np.testing.assert_allclose(view.eval(xs), graph.eval(xs), rtol=1e-12, atol=1e-12)


def _generator(tmp_path: Path) -> Graph:
    """A small cGAN: Gemm, ConvTranspose, BatchNormalization (epsilon 0.8), Relu, ConvTranspose to the image,
    Conv, Relu, BatchNormalization, Conv, Relu, Gemm to one output."""
    nodes = [
        helper.make_node("Gemm", ["x", "G", "g"], ["h"]),
        helper.make_node("Reshape", ["h", "s"], ["i"]),
        helper.make_node("ConvTranspose", ["i", "T1", "t1"], ["u1"], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["u1", "sc", "bb", "mu", "va"], ["n1"], epsilon=0.8),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("ConvTranspose", ["r1", "T2", "t2"], ["img"], kernel_shape=[3, 3]),
        helper.make_node("Conv", ["img", "C1", "c1"], ["d1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["d1"], ["e1"]),
        helper.make_node("BatchNormalization", ["e1", "sc2", "bb2", "mu2", "va2"], ["n2"], epsilon=0.8),
        helper.make_node("Conv", ["n2", "C2", "c2"], ["d2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["d2"], ["e2"]),
        helper.make_node("Flatten", ["e2"], ["f"]),
        helper.make_node("Gemm", ["f", "F", "o"], ["y"]),
    ]
    inits = {"G": RNG.normal(0, 0.6, (5, 16)), "g": RNG.normal(0, 0.3, 16), "s": np.array([1, 4, 2, 2])}
    inits |= {"T1": RNG.normal(0, 0.4, (4, 3, 4, 4)), "t1": RNG.normal(0, 0.2, 3)}
    inits |= {"sc": RNG.uniform(0.5, 1.5, 3), "bb": RNG.normal(0, 0.2, 3), "mu": RNG.normal(0, 0.1, 3)}
    inits |= {"va": RNG.uniform(0.1, 1.0, 3), "T2": RNG.normal(0, 0.4, (3, 1, 3, 3)), "t2": RNG.normal(0, 0.1, 1)}
    inits |= {"C1": RNG.normal(0, 0.5, (4, 1, 3, 3)), "c1": RNG.normal(0, 0.2, 4)}
    inits |= {"sc2": RNG.uniform(0.5, 1.5, 4), "bb2": RNG.normal(0, 0.2, 4), "mu2": RNG.normal(0, 0.1, 4)}
    inits |= {"va2": RNG.uniform(0.1, 1.0, 4), "C2": RNG.normal(0, 0.5, (3, 4, 3, 3)), "c2": RNG.normal(0, 0.2, 3)}
    inits |= {"F": RNG.normal(0, 0.5, (12, 1)), "o": RNG.normal(0, 0.1, 1)}
    path = tmp_path / "gen.onnx"
    onnx.save(build_model(nodes, (1, 5), inits), path)
    return load_network(path)


def _box(graph: Graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centre = RNG.normal(0.0, 0.5, (2, graph.n_inputs))
    lb, ub = centre - 0.15, centre + 0.15
    lb[:, 1], ub[:, 1] = lb[:, 1] + 0.15, lb[:, 1] + 0.15  # one input pinned
    return lb, ub, lb[0] < ub[0]


def test_sparse_suffix_gives_the_dense_suffix_bounds(tmp_path: Path) -> None:
    graph = _generator(tmp_path)
    shapes = {name: value.shape[1:] for name, value in graph.eval_all(np.zeros((1, 5))).items()}
    lb, ub, free = _box(graph)
    a_x, a_y, b = np.zeros((2, 5)), np.array([[1.0], [-1.0]]), np.array([-3.0, -3.0])
    for cut in ("r1", "img"):
        sparse = sparse_view(_after(graph, cut, shapes))
        assert sparse is not None
        assert all(hasattr(w, "nnz") for la in sparse.layers if isinstance(la, AffineLayer) for w in la.weights)
        dense = _sparse(to_layers(_after(graph, cut, shapes), merge=True))
        exact = {"margin_rel": 0.0, "margin_abs": 0.0}  # the views differ in layers, so in margin terms
        low_s, _, _ = cut_rows_lower(CutPlan(graph, cut, sparse), lb, ub, free, a_x, a_y, b, **exact)
        low_d, _, _ = cut_rows_lower(CutPlan(graph, cut, dense), lb, ub, free, a_x, a_y, b, **exact)
        np.testing.assert_allclose(low_s, low_d, rtol=1e-10, atol=1e-10)


def test_sparse_cut_bounds_hold_at_sampled_points(tmp_path: Path) -> None:
    graph = _generator(tmp_path)
    plan = plan_cut(graph, 64.0)
    assert plan is not None and all(
        hasattr(w, "nnz") for la in plan.suffix.layers if isinstance(la, AffineLayer) for w in la.weights
    )
    lb, ub, free = _box(graph)
    a_x, a_y = np.zeros((2, 5)), np.array([[1.0], [-1.0]])
    ys = [graph.eval(lb[k] + (ub[k] - lb[k]) * RNG.random((4000, 5))) for k in range(2)]
    b = np.array([[y.min(), -y.max()] for y in ys])
    for k in range(2):  # rows y - min and max - y: their true minimum is about 0, so the bound must be <= 0
        lower, _, _ = cut_rows_lower(plan, lb[k : k + 1], ub[k : k + 1], free, a_x, a_y, b[k])
        assert np.all(lower <= 0.0)
        samples = ys[k] @ a_y.T - b[k]
        assert np.all(samples >= lower)


def test_backsub_cost_grows_as_the_cut_moves_earlier(tmp_path: Path) -> None:
    graph = _generator(tmp_path)
    shapes = {name: value.shape[1:] for name, value in graph.eval_all(np.zeros((1, 5))).items()}
    costs = [backsub_cost(graph, cut, shapes) for cut in ("x", "r1", "img", "e1")]
    assert costs == sorted(costs, reverse=True) and costs[-1] > 0.0


def test_prefers_cut_when_the_whole_walk_costs_too_much(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nnverify.bounds.forward_cut as forward_cut

    graph = _generator(tmp_path)
    assert not forward_cut.prefers_cut(graph)
    monkeypatch.setattr(forward_cut, "WHOLE_COST_MAX", 1.0)
    assert forward_cut.prefers_cut(graph)


def test_upper_first_tightening_keeps_the_row_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a ReLU, lower bounds are tightened only where an upper bound stays above 0: the rows' bounds are
    those of tightening every element both ways (without margins, which depend on every bound's size)."""
    import nnverify.bounds.forward_cut as forward_cut

    graph = _generator(tmp_path)
    plan = plan_cut(graph, 64.0)
    assert plan is not None
    lb, ub, free = _box(graph)
    a_x, a_y, b = np.zeros((2, 5)), np.array([[1.0], [-1.0]]), np.array([-3.0, -3.0])
    exact = {"margin_rel": 0.0, "margin_abs": 0.0}
    low, _, bounds = cut_rows_lower(plan, lb, ub, free, a_x, a_y, b, **exact)
    both = forward_cut._tighten_layer

    def every_element(state: forward_cut._Suffix, k: int, smooth: bool, budget: object = None) -> None:
        both(state, k, True)

    monkeypatch.setattr(forward_cut, "_tighten_layer", every_element)
    low_both, _, bounds_both = cut_rows_lower(plan, lb, ub, free, a_x, a_y, b, **exact)
    np.testing.assert_allclose(low, low_both, rtol=1e-12, atol=1e-12)
    skipped = [np.any(tight > loose + 1e-9) for tight, loose in zip(bounds_both.lb, bounds.lb, strict=True)]
    assert any(skipped)  # some lower bounds were left as they were (elements off in every box)
