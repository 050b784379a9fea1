"""Divisors proved one-signed on the region (``bounds/divisors.py``) and their ``1 / y`` lowered to a bounded form
(``lowering_smooth``): the interval pass contains samples and needs its margin, a positive (or negative) divisor
whose affine bounds hold 0 gets finite, sound bounds, bisection proves what one interval cannot, and a divisor
whose range truly holds 0 is left to raise as before."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import nnverify
from nnverify.bounds import divisors
from nnverify.bounds.backward import crown_bounds
from nnverify.bounds.divisors import divisor_floors, interval_pass
from nnverify.bounds.interval import interval_bounds
from nnverify.bounds.symbolic import symbolic_bounds
from nnverify.budget import Budget
from nnverify.errors import UnboundedError
from nnverify.graph.core import Graph
from nnverify.graph.lowering_smooth import lower_smooth
from nnverify.graph.onnx_import import load_network
from nnverify.graph.ops.base import Node
from nnverify.graph.passes import to_layers

sys.path.insert(0, str(Path(__file__).parents[1] / "graph"))
from onnx_nets import build_model

LB, UB = np.array([-1.0, -1.0]), np.array([1.0, 1.0])


def _softplus_divisor(tmp_path: Path, seed: int = 103, sign: float = 1.0) -> Graph:
    """``(h * k) / d`` with ``d = sign * (softplus(k) + 0.5)``: ``|d| >= 0.5`` everywhere, but the symbolic bounds of
    ``d`` hold 0 on the box ``[-1, 1]^2`` (seed 103, as in ``test_lowering_smooth.test_never_unsat_...``)."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
        helper.make_node("Gemm", ["x", "v", "c"], ["k"], transB=1),
        helper.make_node("Mul", ["h", "k"], ["p"]),
        helper.make_node("Softplus", ["k"], ["sp"]),
        helper.make_node("Add", ["sp", "eps"], ["d0"]),
        helper.make_node("Mul", ["d0", "sign"], ["d"]),
        helper.make_node("Div", ["p", "d"], ["y"]),
    ]
    inits = {
        "w": rng.normal(0.0, 1.0, (4, 2)),
        "b": rng.normal(0.0, 0.5, 4),
        "v": rng.normal(0.0, 1.0, (4, 2)),
        "c": rng.normal(0.0, 0.5, 4),
        "eps": np.array(0.5),
        "sign": np.array(sign),
    }
    path = tmp_path / "softplus.onnx"
    onnx.save(build_model(nodes, [1, 2], inits), path)
    return load_network(path)


def _scalar_divisor(tmp_path: Path, nodes: list, inits: dict) -> Graph:
    """``y = x0 / d`` where ``nodes`` compute ``d`` from ``x1`` (``t`` is ``x1``)."""
    inits = {"s0": np.array([0]), "s1": np.array([1]), "s2": np.array([2]), "ax": np.array([1]), **inits}
    head = [
        helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["a"]),
        helper.make_node("Slice", ["x", "s1", "s2", "ax"], ["t"]),
    ]
    path = tmp_path / "scalar.onnx"
    onnx.save(build_model([*head, *nodes, helper.make_node("Div", ["a", "d"], ["y"])], [1, 2], inits), path)
    return load_network(path)


def _samples(lb: np.ndarray, ub: np.ndarray, n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(lb, ub, (n, lb.size))
    x[: 2**lb.size] = np.array(np.meshgrid(*zip(lb, ub, strict=True))).reshape(lb.size, -1).T  # the corners
    return x


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_one_signed_divisor_is_bounded_where_its_affine_bounds_hold_zero(tmp_path: Path, sign: float) -> None:
    graph = _softplus_divisor(tmp_path, sign=sign)
    plain, _ = lower_smooth(graph)
    with pytest.raises(UnboundedError, match="Reciprocal"):  # before: the symbolic pass stops the run
        symbolic_bounds(to_layers(plain), LB[None], UB[None])
    floors = divisor_floors(graph, [(LB, UB)])
    assert set(floors) == {"d"}
    c = floors["d"]
    assert np.all(np.sign(c) == sign) and np.all(np.abs(c) >= 0.25) and np.all(np.log2(np.abs(c)) % 1 == 0)
    lowered, note = lower_smooth(graph, None, floors)
    assert "1 divisor(s) proved one-signed" in note
    x = _samples(LB, UB)
    np.testing.assert_allclose(lowered.eval(x), graph.eval(x), rtol=1e-12, atol=1e-12)
    assert np.all(graph.eval_all(x)["d"] / c >= 1.0)
    layers = to_layers(lowered)
    itv = interval_bounds(layers, LB[None], UB[None])
    sym = symbolic_bounds(layers, LB[None], UB[None])
    crown = crown_bounds(layers, itv.lb, itv.ub)
    y = graph.eval(x)
    for lb, ub in ((itv.lb, itv.ub), (sym.lb, sym.ub), (crown.lb, crown.ub)):
        assert np.all(np.isfinite(lb[-1])) and np.all(np.isfinite(ub[-1]))
        assert np.all(y >= lb[-1]) and np.all(y <= ub[-1])


def _prop(path: Path, lb: np.ndarray, ub: np.ndarray, n_out: int, row: str) -> Path:
    lines = [f"(declare-const X_{i} Real)" for i in range(lb.size)] + [
        f"(declare-const Y_{j} Real)" for j in range(n_out)
    ]
    lines += [f"(assert (>= X_{i} {float(lb[i])!r}))\n(assert (<= X_{i} {float(ub[i])!r}))" for i in range(lb.size)]
    path.write_text("\n".join([*lines, row]) + "\n")
    return path


@pytest.mark.parametrize(("sign", "route"), [(1.0, "dense"), (-1.0, "dense"), (1.0, "forward")])
def test_verify_decides_a_quotient_it_answered_unknown_for(
    tmp_path: Path, sign: float, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the floors the first bound pass raised (``unknown`` naming Reciprocal) on the dense view's input
    splitting and on the forward bounds on the op graph; now both ways on both routes."""
    from nnverify.search import forward_split

    if route == "forward":  # the route for views too large to build
        monkeypatch.setattr(forward_split, "dense_view_mb", lambda graph: float("inf"))
    graph = _softplus_divisor(tmp_path, sign=sign)
    net = tmp_path / "softplus.onnx"
    top = float(graph.eval(_samples(LB, UB, 40000))[:, 0].max())
    options = nnverify.Options(timeout_s=60, attack_samples=0)
    unsat = _prop(tmp_path / "unsat.vnnlib", LB, UB, 4, f"(assert (>= Y_0 {top + 0.05 * abs(top) + 0.01!r}))")
    result = nnverify.verify(net, unsat, options)
    assert result.verdict.value == "unsat", result.note
    assert "1 divisor(s) proved one-signed" in result.note
    assert ("forward bounds" in result.note) == (route == "forward")
    sat = _prop(tmp_path / "sat.vnnlib", LB, UB, 4, f"(assert (>= Y_0 {top - 1e-3 * abs(top) - 1e-4!r}))")
    result = nnverify.verify(net, sat, options)
    assert result.verdict.value == "sat" and result.counterexample is not None, result.note


def test_bisection_proves_a_divisor_one_interval_cannot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``d = t^2 - t + 1 >= 3/4``; on ``t`` in ``[-1, 2]`` the interval of the whole box is ``[-1, 6]``."""
    nodes = [
        helper.make_node("Mul", ["t", "t"], ["tt"]),
        helper.make_node("Sub", ["tt", "t"], ["u"]),
        helper.make_node("Add", ["u", "one"], ["d"]),
    ]
    graph = _scalar_divisor(tmp_path, nodes, {"one": np.ones(1)})
    lb, ub = np.array([0.5, -1.0]), np.array([1.0, 2.0])
    whole = interval_pass(lower_smooth(graph)[0], lb[None], ub[None])["d"]
    assert whole[0][0, 0] < 0.0 < whole[1][0, 0]
    floors = divisor_floors(graph, [(lb, ub)], budget=Budget.starting_now(60.0))
    assert set(floors) == {"d"} and 0.0 < floors["d"].min() <= 0.75
    monkeypatch.setattr(divisors, "TIME_SHARE", 0.0)  # no round of bisection after the first: not proved
    assert divisor_floors(graph, [(lb, ub)], budget=Budget.starting_now(60.0)) == {}
    lowered, _ = lower_smooth(graph, None, floors)
    x = _samples(lb, ub)
    np.testing.assert_allclose(lowered.eval(x), graph.eval(x), rtol=1e-12, atol=1e-12)
    sym = symbolic_bounds(to_layers(lowered), lb[None], ub[None])
    assert np.all(graph.eval(x) >= sym.lb[-1]) and np.all(graph.eval(x) <= sym.ub[-1])


def test_a_divisor_whose_range_holds_zero_is_not_proved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``x0 / (x1 + 0.25)`` on ``x1`` in ``[-1, 1]``: no floor, the lowering keeps Reciprocal, which raises."""
    monkeypatch.setattr(divisors, "MAX_BOXES", 32)
    graph = _scalar_divisor(tmp_path, [helper.make_node("Add", ["t", "shift"], ["d"])], {"shift": np.ones(1) / 4})
    lb, ub = np.array([0.5, -1.0]), np.array([1.0, 1.0])
    assert divisor_floors(graph, [(lb, ub)]) == {}
    assert divisor_floors(graph, [(lb, np.array([1.0, -0.5])), (np.array([0.5, 0.0]), ub)]) == {}  # two signs
    assert set(divisor_floors(graph, [(np.array([0.5, 0.0]), ub)])) == {"d"}
    lowered, note = lower_smooth(graph, None, {})
    assert "proved" not in note and any(n.op_type == "Reciprocal" for n in lowered.nodes)
    with pytest.raises(UnboundedError):
        interval_bounds(to_layers(lowered), lb[None], ub[None])


def test_a_reciprocal_op_and_a_nested_divisor_are_proved(tmp_path: Path) -> None:
    """``1 / (2 + 1 / (t + 2))``: the inner divisor is proved first, then the outer one through its bounded form."""
    nodes = [
        helper.make_node("Add", ["t", "two"], ["e"]),
        helper.make_node("Reciprocal", ["e"], ["r"]),
        helper.make_node("Add", ["r", "two"], ["d"]),
    ]
    graph = _scalar_divisor(tmp_path, nodes, {"two": np.full(1, 2.0)})
    lb, ub = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    floors = divisor_floors(graph, [(lb, ub)])
    assert set(floors) == {"e", "d"}
    lowered, note = lower_smooth(graph, None, floors)
    assert "1 Div, 1 Reciprocal" in note and not any(n.op_type == "Reciprocal" for n in lowered.nodes)
    x = _samples(lb, ub)
    np.testing.assert_allclose(lowered.eval(x), graph.eval(x), rtol=1e-12, atol=1e-12)


def test_the_interval_pass_contains_samples(tmp_path: Path) -> None:
    graph, _ = lower_smooth(_softplus_divisor(tmp_path, seed=7))
    rng = np.random.default_rng(3)
    centre = rng.uniform(-1.0, 1.0, (6, 2))
    lb, ub = centre - 0.2, centre + 0.2
    bounds = interval_pass(graph, lb, ub)
    for b in range(lb.shape[0]):
        values = graph.eval_all(_samples(lb[b], ub[b], 500, seed=b))
        for name, (lo, hi) in bounds.items():
            v = values[name].reshape(values[name].shape[0], -1)
            assert np.all(v >= lo[b].reshape(-1)) and np.all(v <= hi[b].reshape(-1)), name


A = 1.0 + 2.0**-30  # A * A = 1 + 2^-29 + 2^-60 exactly, which float64 rounds to 1 + 2^-29


@pytest.mark.parametrize("margin", [0.0, divisors.BOUND_MARGIN_REL], ids=["removed", "default"])
def test_the_interval_pass_needs_its_margin(margin: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """``w = A (A x) - (1 + 2^-29) x`` is ``2^-60`` at ``x = 1``; float64 computes 0: without the margin the
    interval ``[0, 0]`` misses the true value."""
    monkeypatch.setattr(divisors, "BOUND_MARGIN_REL", margin)
    monkeypatch.setattr(divisors, "BOUND_MARGIN_ABS", 1e-300 if margin else 0.0)
    nodes = (
        Node("m1", "Mul", ("x", "a"), ("y1",)),
        Node("m2", "Mul", ("y1", "a"), ("y2",)),
        Node("m3", "Mul", ("x", "c"), ("y3",)),
        Node("s", "Sub", ("y2", "y3"), ("w",)),
    )
    constants = {"a": np.array([A]), "c": np.array([1.0 + 2.0**-29])}
    graph = Graph("margin", "x", (1,), "w", (1,), nodes, constants)
    lo, hi = interval_pass(graph, np.ones((1, 1)), np.ones((1, 1)))["w"]
    assert (lo[0, 0] <= 2.0**-60 <= hi[0, 0]) == (margin > 0.0)


@pytest.mark.parametrize("margin", [0.0, divisors.BOUND_MARGIN_REL], ids=["removed", "default"])
def test_the_monotone_route_needs_its_margin(margin: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Add (``nonnegative``: both ends through ``eval``): ``1 + 2^-60`` rounds to 1 at ``x = 1``."""
    monkeypatch.setattr(divisors, "BOUND_MARGIN_REL", margin)
    monkeypatch.setattr(divisors, "BOUND_MARGIN_ABS", 1e-300 if margin else 0.0)
    graph = Graph("margin", "x", (1,), "w", (1,), (Node("a", "Add", ("x", "c"), ("w",)),), {"c": np.array([2.0**-60])})
    lo, hi = interval_pass(graph, np.ones((1, 1)), np.ones((1, 1)))["w"]
    assert lo[0, 0] <= 1.0 and (hi[0, 0] > 1.0) == (margin > 0.0)  # the true 1 + 2^-60 lies above any hi <= 1


def test_a_layer_norm_divisor_is_proved_on_a_wide_box(tmp_path: Path) -> None:
    """``h / sqrt(mean(h^2) + 1e-5)``: the squares' lower ends stay at 0 and the mean's at its sum of lower ends, so
    the divisor is proved ``>= sqrt(1e-5)`` however wide the box (mid - rad would cancel to about -1e-9 |h|^2)."""
    rng = np.random.default_rng(11)
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
        helper.make_node("Mul", ["h", "h"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[1], keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Pow", ["ve", "half"], ["d"]),
        helper.make_node("Div", ["h", "d"], ["y"]),
    ]
    inits = {"w": rng.normal(0.0, 30.0, (6, 2)), "b": rng.normal(0.0, 1.0, 6), "eps": np.array(1e-5)}
    path = tmp_path / "norm.onnx"
    onnx.save(build_model(nodes, [1, 2], {**inits, "half": np.array(0.5)}), path)
    graph = load_network(path)
    lb, ub = np.array([-3.0, -3.0]), np.array([3.0, 3.0])
    floors = divisor_floors(graph, [(lb, ub)])
    assert set(floors) == {"d"} and 2.0**-9 <= floors["d"].min() <= np.sqrt(1e-5)
    lowered, _ = lower_smooth(graph, None, floors)
    x = _samples(lb, ub)
    np.testing.assert_allclose(lowered.eval(x), graph.eval(x), rtol=1e-9, atol=1e-12)
    bounds = interval_pass(lowered, lb[None], ub[None])
    values = lowered.eval_all(x)
    for name in ("sq", "var", "ve", "d", "y"):
        lo, hi = bounds[name]
        v = values[name]
        assert np.all(v >= lo) and np.all(v <= hi), name
