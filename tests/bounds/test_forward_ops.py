"""Forward bounds on the op graph (``bounds/forward_ops.py``, ``bounds/forward_cut.py``) and the search on them
(``search/forward_split.py``): sampled outputs stay inside, affine nets match the dense view, the margin is needed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from nnverify.bounds.forward_cut import cut_rows_lower, plan_cut
from nnverify.bounds.forward_ops import forward_forms, input_form, rows_lower, unsupported
from nnverify.budget import Budget
from nnverify.graph.core import Graph
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers
from nnverify.spec.property import Disjunct

sys.path.insert(0, str(Path(__file__).parents[1] / "graph"))
from onnx_nets import build_model

RNG = np.random.default_rng(0)


def _w(*shape: int) -> np.ndarray:
    return RNG.normal(0.0, 0.6, shape)


def _reseed(seed: int) -> None:
    """Every test draws its nets, boxes and samples from its own seed (so the order of tests does not matter)."""
    global RNG
    RNG = np.random.default_rng(seed)


def _conv_relu() -> tuple[list[onnx.NodeProto], tuple[int, ...], dict[str, np.ndarray]]:
    """Gemm 3 -> 2x3x3 image, Conv, Relu, Conv (stride 2), Relu, Gemm to 2 outputs."""
    nodes = [
        helper.make_node("Gemm", ["x", "G", "g"], ["h"]),
        helper.make_node("Reshape", ["h", "s"], ["i"]),
        helper.make_node("Conv", ["i", "W1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "W2", "b2"], ["c2"], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("Gemm", ["f", "F", "o"], ["y"]),
    ]
    inits = {"G": _w(3, 18), "g": _w(18), "s": np.array([1, 2, 3, 3]), "W1": _w(4, 2, 3, 3), "b1": _w(4)}
    inits |= {"W2": _w(3, 4, 2, 2), "b2": _w(3), "F": _w(3, 2), "o": _w(2)}
    return nodes, (1, 3), inits


def _generator() -> tuple[list[onnx.NodeProto], tuple[int, ...], dict[str, np.ndarray]]:
    """ConvTranspose, BatchNormalization, Relu, Upsample-free Resize, Pad, Sub, Neg, Sigmoid, Tanh, AveragePool."""
    nodes = [
        helper.make_node("Reshape", ["x", "s"], ["i"]),
        helper.make_node("ConvTranspose", ["i", "T", "t"], ["u"], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["u", "sc", "bb", "mu", "va"], ["n"], epsilon=0.8),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Pad", ["r", "p"], ["q"]),
        helper.make_node("Sigmoid", ["q"], ["sg"]),
        helper.make_node("Sub", ["sg", "r2"], ["d"]),
        helper.make_node("Neg", ["d"], ["m"]),
        helper.make_node("Tanh", ["m"], ["th"]),
        helper.make_node("AveragePool", ["th"], ["a"], kernel_shape=[2, 2]),
        helper.make_node("Mul", ["a", "k"], ["y"]),
    ]
    inits = {"s": np.array([1, 1, 2, 2]), "T": _w(1, 2, 3, 3), "t": _w(2), "sc": _w(2), "bb": _w(2)}
    inits |= {"mu": _w(2), "va": np.abs(_w(2)), "p": np.array([0, 0, 1, 1, 0, 0, 1, 1]), "k": _w(1, 2, 1, 1)}
    nodes.insert(6, helper.make_node("Relu", ["q"], ["r2"]))
    return nodes, (1, 4), inits


def _affine() -> tuple[list[onnx.NodeProto], tuple[int, ...], dict[str, np.ndarray]]:
    """Affine ops only: the forward functions are exact."""
    nodes = [
        helper.make_node("Reshape", ["x", "s"], ["i"]),
        helper.make_node("ConvTranspose", ["i", "T"], ["u"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["u", "W", "b"], ["c"]),
        helper.make_node("Sub", ["c", "u2"], ["d"]),
        helper.make_node("Flatten", ["d"], ["f"]),
        helper.make_node("Gemm", ["f", "F"], ["y"], alpha=-0.5),
    ]
    nodes.insert(3, helper.make_node("Slice", ["u", "st", "en"], ["u2"]))
    inits = {"s": np.array([1, 1, 2, 2]), "T": _w(1, 2, 4, 4), "W": _w(2, 2, 2, 2), "b": _w(2)}
    inits |= {"st": np.array([0, 0, 0, 0]), "en": np.array([1, 2, 1, 1]), "F": _w(18, 3)}
    return nodes, (1, 4), inits


NETS = {"conv_relu": _conv_relu, "generator": _generator, "affine": _affine}


def _load(tmp_path: Path, name: str) -> Graph:
    _reseed(sorted(NETS).index(name))
    nodes, shape, inits = NETS[name]()
    path = tmp_path / f"{name}.onnx"
    onnx.save(build_model(nodes, shape, inits), path)
    return load_network(path)


def _boxes(n: int, pinned: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centre = RNG.uniform(-1.0, 1.0, (3, n))
    width = RNG.uniform(0.05, 0.6, (3, n))
    if pinned:
        width[:, 0] = 0.0
    return centre - width, centre + width, width[0] > 0.0


def _samples(lb: np.ndarray, ub: np.ndarray, k: int = 1000) -> np.ndarray:
    x = RNG.uniform(lb, ub, (k, lb.size))
    corners = RNG.integers(0, 2, (k // 4, lb.size)).astype(bool)
    return np.vstack([x, np.where(corners, ub, lb)])


@pytest.mark.parametrize("pinned", [False, True], ids=["all-free", "one-pinned"])
@pytest.mark.parametrize("name", sorted(NETS))
def test_forward_bounds_contain_sampled_outputs(tmp_path: Path, name: str, pinned: bool) -> None:
    graph = _load(tmp_path, name)
    assert unsupported(graph) is None
    lb, ub, free = _boxes(graph.n_inputs, pinned)
    form = forward_forms(graph, lb, ub, free)
    lo, hi = form.interval()
    lo, hi = lo.reshape(3, -1), hi.reshape(3, -1)
    f_lo, f_hi = form.lower_upper()
    for box in range(3):
        x = _samples(lb[box], ub[box])
        y = graph.eval(x)
        assert np.all(y >= lo[box]) and np.all(y <= hi[box])
        e = np.zeros((x.shape[0], int(free.sum())))
        half = (ub[box] - lb[box])[free] / 2.0
        e = (x[:, free] - (lb[box] + ub[box])[free] / 2.0) / half
        lower = e @ f_lo[box, :-1].reshape(e.shape[1], -1) + f_lo[box, -1].reshape(-1)
        upper = e @ f_hi[box, :-1].reshape(e.shape[1], -1) + f_hi[box, -1].reshape(-1)
        slack = 1e-9 * (np.abs(y) + 1.0)  # the functions themselves are exact up to the rounding of e
        assert np.all(y >= lower - slack) and np.all(y <= upper + slack)


def test_affine_net_matches_the_dense_view(tmp_path: Path) -> None:
    """An affine net's functions are its Jacobian times the half-widths, the same as the dense view's matrix."""
    graph = _load(tmp_path, "affine")
    layers = to_layers(graph)
    lb, ub, free = _boxes(graph.n_inputs, False)
    form = forward_forms(graph, lb, ub, free)
    assert form.dev is None
    jac = np.eye(graph.n_inputs)
    for layer in layers.layers[1:]:
        jac = layer.weights[0] @ jac
    coef = form.centre[0, :-1].reshape(graph.n_inputs, -1)
    np.testing.assert_allclose(coef, (jac * ((ub[0] - lb[0]) / 2.0)).T, rtol=1e-12, atol=1e-12)
    mid = (lb + ub) / 2.0
    np.testing.assert_allclose(form.centre[:, -1].reshape(3, -1), layers.eval(mid), rtol=1e-12, atol=1e-12)
    assert np.all(form.rad < 1e-6)


def _rows(n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a_y = RNG.normal(size=(4, n_out))
    return np.zeros((4, 0)), a_y, RNG.normal(size=4)


@pytest.mark.parametrize("name", ["conv_relu", "generator"])
def test_row_bounds_hold_at_sampled_points(tmp_path: Path, name: str) -> None:
    graph = _load(tmp_path, name)
    lb, ub, free = _boxes(graph.n_inputs, True)
    _, a_y, b = _rows(graph.n_outputs)
    a_x = RNG.normal(size=(4, graph.n_inputs))
    forward, _ = rows_lower(forward_forms(graph, lb, ub, free), a_x, a_y, b, input_form(lb, ub, free, (lb.shape[1],)))
    plan = plan_cut(graph, 64.0)
    assert plan is not None
    cut, funcs, _ = cut_rows_lower(plan, lb, ub, free, a_x, a_y, b)
    for box in range(3):
        x = _samples(lb[box], ub[box])
        rows = x @ a_x.T + graph.eval(x) @ a_y.T - b
        assert np.all(rows >= forward[box]) and np.all(rows >= cut[box])
        e = (x[:, free] - (lb[box] + ub[box])[free] / 2.0) / ((ub[box] - lb[box])[free] / 2.0)
        assert np.all(rows >= e @ funcs[box, :, :-1].T + funcs[box, :, -1])
    assert np.mean(cut) >= np.mean(forward) - 1e-9  # back-substitution after the cut is never looser here


A = 1.0 + 2.0**-30  # A * A = 1 + 2^-29 + 2^-60 exactly, which float64 rounds to 1 + 2^-29


def _margin_graph() -> Graph:
    """y0 = A * (A * x), y1 = (1 + 2^-29) * x at x = 1: the row y1 - y0 <= -2^-61 holds in exact arithmetic."""
    nodes = (
        helper.make_node("Gemm", ["x", "W1"], ["h"]),
        helper.make_node("Gemm", ["h", "W2"], ["y"]),
    )
    consts = {"W1": np.array([[A, 1.0]]), "W2": np.array([[A, 0.0], [0.0, 1.0 + 2.0**-29]])}
    from nnverify.graph.ops.base import Node

    typed = tuple(Node(n.name or n.op_type, n.op_type, tuple(n.input), tuple(n.output), _gemm_attrs()) for n in nodes)
    return Graph("margin", "x", (1, 1), "y", (1, 2), typed, consts)


def _gemm_attrs() -> dict[str, float | int]:
    return {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}


@pytest.mark.parametrize("method", ["forward", "cut"])
def test_without_margin_rounding_gives_a_wrong_proof(method: str) -> None:
    graph = _margin_graph()
    one = np.ones((1, 1))
    free = np.array([False])
    a_x, a_y, b = np.zeros((1, 1)), np.array([[-1.0, 1.0]]), np.array([-(2.0**-61)])
    for margins, proves in (({"margin_rel": 0.0, "margin_abs": 0.0}, True), ({}, False)):
        if method == "forward":
            out = forward_forms(graph, one, one, free, **margins)
            lower, _ = rows_lower(out, a_x, a_y, b, input_form(one, one, free, (1,)), **margins)
        else:
            plan = plan_cut(graph, 64.0)
            assert plan is not None
            lower, _, _ = cut_rows_lower(plan, one, one, free, a_x, a_y, b, **margins)
        assert bool(lower[0, 0] > 0.0) is proves  # without the margin: the unsound "proof" the margin prevents


def _search(tmp_path: Path, shift: float):
    from nnverify.search.forward_split import forward_split_search

    graph = _load(tmp_path, "conv_relu")
    lb, ub = np.array([-1.5, 0.1, -1.0]), np.array([1.5, 0.1, 1.5])
    g0, g2 = np.meshgrid(np.linspace(lb[0], ub[0], 301), np.linspace(lb[2], ub[2], 301))
    x = np.stack([g0.ravel(), np.full(g0.size, 0.1), g2.ravel()], axis=1)
    top = float(graph.eval(x)[:, 0].max())
    # unsafe: Y_0 >= top + shift (shift > 0: above the maximum on a fine grid, which the search proves; < 0: the
    # best grid point is a counterexample, which the search must find)
    d = Disjunct(lb, ub, np.zeros((1, 3)), np.array([[-1.0, 0.0]]), np.array([-(top + shift)]))
    plan = plan_cut(graph, 64.0)
    found: list[np.ndarray] = []

    def accept(point: np.ndarray) -> bool:
        if d.slack(point[None], graph.eval(point[None]))[0] <= 0.0:
            found.append(point)
        return bool(found)

    return forward_split_search(graph, plan, [d], Budget.starting_now(60.0), accept), found


def test_search_proves_a_bound_just_above_the_samples(tmp_path: Path) -> None:
    from nnverify.backends.base import SolveStatus

    out, found = _search(tmp_path, 0.01)
    assert out.status is SolveStatus.INFEASIBLE and not found and out.stats.boxes > 1


def test_search_finds_a_point_below_the_sampled_top(tmp_path: Path) -> None:
    from nnverify.backends.base import SolveStatus

    out, found = _search(tmp_path, -0.01)
    assert out.status is SolveStatus.FEASIBLE and found


def test_verify_takes_the_forward_route_for_large_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the dense view "too large", ``verify`` decides by the forward route: unsat above the grid's top."""
    from nnverify import pipeline
    from nnverify.options import Options
    from nnverify.result import Verdict
    from nnverify.search import forward_split
    from nnverify.spec.property import Property

    graph = _load(tmp_path, "conv_relu")
    lb, ub = np.array([-1.5, 0.1, -1.0]), np.array([1.5, 0.1, 1.5])
    g0, g2 = np.meshgrid(np.linspace(lb[0], ub[0], 301), np.linspace(lb[2], ub[2], 301))
    top = float(graph.eval(np.stack([g0.ravel(), np.full(g0.size, 0.1), g2.ravel()], axis=1))[:, 0].max())
    prop = Property(3, 2, (Disjunct(lb, ub, np.zeros((1, 3)), np.array([[-1.0, 0.0]]), np.array([-(top + 0.01)])),))
    monkeypatch.setattr(forward_split, "FORWARD_DENSE_MB", 0.0)
    result = pipeline.verify(graph, prop, Options(timeout_s=60.0))
    assert result.verdict is Verdict.UNSAT and result.method == "forward-split"
    assert "forward bounds: the dense layer view" in result.note


def test_batchnorm_with_a_slightly_negative_variance(tmp_path: Path) -> None:
    """variance + epsilon > 0 with variance < 0: |A| uses the variance as it is (its absolute value would
    shrink the deviation and cut off sampled outputs)."""
    nodes = [
        helper.make_node("Gemm", ["x", "G"], ["g"]),
        helper.make_node("Reshape", ["g", "s"], ["i"]),
        helper.make_node("Relu", ["i"], ["r"]),
        helper.make_node("BatchNormalization", ["r", "sc", "bb", "mu", "va"], ["y"], epsilon=1e-5),
    ]
    inits = {"G": np.array([[1.0, -1.0], [1.0, 1.0]]), "s": np.array([1, 2, 1, 1]), "sc": np.array([1.0, -2.0])}
    inits |= {"bb": np.zeros(2), "mu": np.zeros(2), "va": np.array([-9.9e-6, 0.1])}
    path = tmp_path / "bn.onnx"
    onnx.save(build_model(nodes, (1, 2), inits), path)
    graph = load_network(path)
    lb, ub = np.array([[-1.0, -1.0]]), np.array([[1.0, 1.0]])
    lo, hi = forward_forms(graph, lb, ub, np.array([True, True])).interval()
    x = _samples(lb[0], ub[0])
    y = graph.eval(x)
    assert np.all(y >= lo.reshape(1, -1)) and np.all(y <= hi.reshape(1, -1))
