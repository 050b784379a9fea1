"""Smooth activations: intervals and relaxation lines sound by sampling (against extended precision), the margin
needed, the bound passes on Sigmoid/Tanh nets contain sampled values, and ``verify`` decides tiny smooth nets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnverify
from nnverify.bounds.backward import backward_rows_lower, crown_bounds
from nnverify.bounds.interval import interval_bounds
from nnverify.bounds.symbolic import symbolic_bounds
from nnverify.encode.network import NotExactError, encode_network
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph, pin_inputs
from nnverify.graph.ops.base import ActKind
from nnverify.graph.ops.interface import ACTIVATIONS

LD = np.longdouble
SMOOTH = [kind for kind, act in ACTIVATIONS.items() if not act.exact]


def _reference(kind: ActKind, x: np.ndarray) -> np.ndarray:
    """``f(x)`` in extended precision (x87 long double: 11 more bits than float64) where numpy has it."""
    xl = x.astype(LD)
    table: dict[ActKind, Callable[[np.ndarray], np.ndarray]] = {
        ActKind.SIGMOID: lambda v: 1 / (1 + np.exp(-v)),
        ActKind.TANH: np.tanh,
        ActKind.EXP: np.exp,
        ActKind.SOFTPLUS: lambda v: np.log1p(np.exp(v)),
        ActKind.SIN: np.sin,
        ActKind.COS: np.cos,
        ActKind.SQUARE: lambda v: v * v,
        ActKind.CUBE: lambda v: v * v * v,
        ActKind.SQRT: np.sqrt,
        ActKind.RECIPROCAL: lambda v: 1 / v,
    }
    if kind not in table:  # erf: scipy has no long double version
        return ACTIVATIONS[kind].eval(x).astype(LD)
    with np.errstate(over="ignore"):
        return table[kind](xl)


def _boxes(kind: ActKind, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Random boxes: tiny, small, wide and huge widths, around 0 (inflection/critical points) and far out."""
    scale = {ActKind.EXP: 30.0, ActKind.SOFTPLUS: 60.0, ActKind.SQUARE: 1e3, ActKind.CUBE: 1e2}.get(kind, 50.0)
    centre = np.concatenate([rng.normal(0.0, 2.0, count // 2), rng.uniform(-scale, scale, count - count // 2)])
    width = 10.0 ** rng.uniform(-9, np.log10(scale) + 0.3, count)
    lb, ub = centre - width * rng.uniform(0, 1, count), centre + width * rng.uniform(0, 1, count)
    if kind is ActKind.SQRT:
        lb, ub = np.abs(lb), np.abs(lb) + (ub - lb)
    if kind is ActKind.RECIPROCAL:  # one sign (an interval holding 0 raises): half of them negative
        lb, ub = np.abs(lb) + 1e-3, np.abs(lb) + 1e-3 + (ub - lb)
        lb[::2], ub[::2] = -ub[::2], -lb[::2]
    return lb, ub


def _sample(lb: np.ndarray, ub: np.ndarray, rng: np.random.Generator, n: int = 1000) -> np.ndarray:
    t = np.concatenate([[0.0, 1.0], rng.uniform(0, 1, n - 2)])
    return lb[:, None] + t[None, :] * (ub - lb)[:, None]


def _violations(kind: ActKind, lb: np.ndarray, ub: np.ndarray, x: np.ndarray, margins: tuple[float, float]) -> int:
    """Sampled points where the interval or a relaxation line fails against the extended-precision value."""
    act = ACTIVATIONS[kind]
    lo, hi = act.interval(lb, ub, *margins)
    lo_s, lo_c, up_s, up_c = act.relax(lb, ub, *margins)
    f = _reference(kind, x)
    xl = x.astype(LD)
    lower = lo_s.astype(LD)[:, None] * xl + lo_c.astype(LD)[:, None]
    upper = up_s.astype(LD)[:, None] * xl + up_c.astype(LD)[:, None]
    bad = (f < lo.astype(LD)[:, None]) | (f > hi.astype(LD)[:, None]) | (lower > f) | (upper < f)
    return int(np.sum(bad))


@pytest.mark.parametrize("kind", SMOOTH, ids=str)
def test_interval_and_lines_sound_on_sampled_points(kind: ActKind) -> None:
    rng = np.random.default_rng(7)
    lb, ub = _boxes(kind, rng, 400)
    assert _violations(kind, lb, ub, _sample(lb, ub, rng), (1e-9, 1e-12)) == 0


@pytest.mark.parametrize("kind", [ActKind.SIGMOID, ActKind.TANH, ActKind.EXP, ActKind.SIN], ids=str)
def test_without_the_margin_the_bounds_fail(kind: ActKind) -> None:
    """The same checks with the margin removed find violations: the float64 values of ``f`` round both ways."""
    rng = np.random.default_rng(8)
    centre = rng.uniform(-3.0, 3.0, 400)
    lb, ub = centre, centre + 10.0 ** rng.uniform(-9, -1, 400)
    x = _sample(lb, ub, rng, 50)
    assert _violations(kind, lb, ub, x, (0.0, 0.0)) > 0
    assert _violations(kind, lb, ub, x, (1e-9, 1e-12)) == 0


@pytest.mark.parametrize("kind", [ActKind.SIGMOID, ActKind.TANH], ids=str)
def test_lines_are_tight_where_the_function_is_convex_or_concave(kind: ActKind) -> None:
    """On one side of the inflection point one line is the chord and the other touches the curve."""
    lb, ub = np.array([0.5, -4.0]), np.array([3.0, -1.0])
    act = ACTIVATIONS[kind]
    lo_s, lo_c, up_s, up_c = act.relax(lb, ub)
    x = _sample(lb, ub, np.random.default_rng(0), 2000)  # columns 0 and 1 are the end points
    f = act.eval(x)
    above = up_s[:, None] * x + up_c[:, None] - f
    below = f - (lo_s[:, None] * x + lo_c[:, None])
    assert np.all(above.min(axis=1) < 1e-6) and np.all(below.min(axis=1) < 1e-6)  # both lines touch
    assert np.all(below[0, :2] < 1e-6)  # concave on [0.5, 3]: the lower line is the chord
    assert np.all(above[1, :2] < 1e-6)  # convex on [-4, -1]: the upper line is the chord


def _smooth_net(rng: np.random.Generator) -> LayerGraph:
    layers: list = [InputLayer(3)]
    for k, (n_in, n_out, kind) in enumerate([(3, 8, ActKind.SIGMOID), (8, 6, ActKind.TANH), (6, 5, ActKind.RELU)]):
        w = rng.normal(0.0, 2.0, (n_out, n_in))
        layers.append(AffineLayer(f"fc{k}", (len(layers) - 1,), (w,), rng.normal(0.0, 1.0, n_out)))
        layers.append(ActivationLayer(f"act{k}", len(layers) - 1, kind, n_out))
    layers.append(AffineLayer("out", (len(layers) - 1,), (rng.normal(size=(2, 5)),), np.zeros(2)))
    return LayerGraph(tuple(layers), len(layers) - 1)


def test_bound_passes_contain_sampled_values_of_a_sigmoid_tanh_net() -> None:
    rng = np.random.default_rng(3)
    for _ in range(10):
        net = _smooth_net(rng)
        centre = rng.normal(size=(4, 3))
        lb, ub = centre - rng.uniform(0.01, 1.0, (4, 3)), centre + rng.uniform(0.01, 1.0, (4, 3))
        box = interval_bounds(net, lb, ub)
        sym = symbolic_bounds(net, lb, ub)
        tight = crown_bounds(
            net,
            [np.maximum(a, b) for a, b in zip(box.lb, sym.lb, strict=True)],
            [np.minimum(a, b) for a, b in zip(box.ub, sym.ub, strict=True)],
        )
        a_y = rng.normal(size=(3, 2))
        lower, _ = backward_rows_lower(net, tight.lb, tight.ub, np.zeros((3, 3)), a_y, np.zeros(3))
        for b in range(4):
            x = rng.uniform(lb[b], ub[b], (1000, 3))
            values = net.eval_all(x)
            for k, v in enumerate(values):
                for bounds in (box, sym, tight):
                    assert np.all(v >= bounds.lb[k][b] - 1e-12) and np.all(v <= bounds.ub[k][b] + 1e-12)
            assert np.all(values[net.output] @ a_y.T >= lower[b])
        assert np.all(tight.ub[net.output] - tight.lb[net.output] <= box.ub[net.output] - box.lb[net.output] + 1e-9)


def test_pinned_inputs_fold_into_the_bias() -> None:
    rng = np.random.default_rng(4)
    net = _smooth_net(rng)
    value = rng.normal(size=3)
    free = np.array([True, False, True])
    reduced = pin_inputs(net, value, free)
    assert reduced is not None and reduced.n_inputs == 2
    x = np.tile(value, (20, 1))
    x[:, free] = rng.normal(size=(20, 2))
    np.testing.assert_allclose(reduced.eval(x[:, free]), net.eval(x), rtol=1e-12, atol=1e-12)


def test_the_exact_encoding_refuses_a_smooth_network() -> None:
    net = _smooth_net(np.random.default_rng(5))
    bounds = interval_bounds(net, -np.ones(3), np.ones(3))
    with pytest.raises(NotExactError, match="no exact encoding"):
        encode_network(net, [v[0] for v in bounds.lb], [v[0] for v in bounds.ub])


def _write_net(path: Path, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, op_type: str) -> None:
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2))]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
        helper.make_node(op_type, ["h"], ["a"]),
        helper.make_node("MatMul", ["a", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w1.shape[1]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def _write_prop(path: Path, lb: np.ndarray, ub: np.ndarray, threshold: float) -> None:
    lines = [f"(declare-const X_{i} Real)" for i in range(lb.size)] + ["(declare-const Y_0 Real)"]
    for i in range(lb.size):
        lines += [f"(assert (>= X_{i} {float(lb[i])!r}))", f"(assert (<= X_{i} {float(ub[i])!r}))"]
    lines.append(f"(assert (>= Y_0 {float(threshold)!r}))")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("op_type", ["Sigmoid", "Tanh", "Sin"])
def test_verify_tiny_smooth_nets_against_a_grid(tmp_path: Path, op_type: str) -> None:
    """The output's maximum over a 2-free-input box (one more input pinned) from a fine grid and a Lipschitz
    bound: a threshold above it is ``unsat``, one below the best grid point is ``sat`` with a replayed witness."""
    rng = np.random.default_rng(11)
    w1, b1, w2 = rng.normal(0, 1.5, (6, 3)), rng.normal(0, 1, 6), rng.normal(0, 1, (6, 1))
    net_path = tmp_path / "net.onnx"
    _write_net(net_path, w1, b1, w2, op_type)
    lb, ub = np.array([-1.0, 0.25, -0.5]), np.array([1.0, 0.25, 0.5])
    g = np.linspace(0, 1, 401)
    grid = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    x = np.column_stack([lb[0] + 2.0 * grid[:, 0], np.full(grid.shape[0], 0.25), lb[2] + grid[:, 1]])
    y = (ACTIVATIONS[ActKind(op_type.lower())].eval(x @ w1.T + b1) @ w2)[:, 0]
    lipschitz = np.abs(w2[:, 0]) @ np.abs(w1[:, [0, 2]]).sum(axis=1)  # |f'| <= 1 for all three
    spacing = 2.0 / 400
    top = float(y.max())
    _write_prop(tmp_path / "unsat.vnnlib", lb, ub, top + lipschitz * spacing + 0.02)
    result = nnverify.verify(net_path, tmp_path / "unsat.vnnlib", nnverify.Options(timeout_s=60, attack_samples=50))
    assert result.verdict.value == "unsat"
    _write_prop(tmp_path / "sat.vnnlib", lb, ub, top - 0.01)
    result = nnverify.verify(net_path, tmp_path / "sat.vnnlib", nnverify.Options(timeout_s=60, attack_samples=0))
    assert result.verdict.value == "sat"
    assert result.counterexample is not None and result.counterexample.x[1] == np.float32(0.25)
