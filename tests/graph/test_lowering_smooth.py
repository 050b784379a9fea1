"""Products and quotients of two variable tensors, Reciprocal and inner Softmax (``graph/lowering_smooth.py``):
eval equals onnxruntime, the lowered views equal eval, every bound pass contains sampled outputs (and needs the
margin), and ``verify`` proves, refutes (replayed witness) or answers unknown around a zero divisor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_nets import SaveNet, build_model, check_net

import nnverify
from nnverify.bounds.backward import crown_bounds
from nnverify.bounds.forward_ops import forward_forms, unsupported
from nnverify.bounds.interval import interval_bounds
from nnverify.bounds.symbolic import symbolic_bounds
from nnverify.errors import UnboundedError
from nnverify.graph.layers import ActivationLayer, is_exact
from nnverify.graph.lowering_smooth import lower_smooth, product_scales
from nnverify.graph.onnx_import import load_network
from nnverify.graph.ops import supported_ops_table
from nnverify.graph.ops.base import ActKind
from nnverify.graph.passes import to_layers

RNG = np.random.default_rng(5)


def _gemms(n_in: int, sizes: dict[str, int]) -> tuple[list, dict[str, np.ndarray]]:
    """``name = Gemm(x)`` for each entry of ``sizes`` (random weights)."""
    nodes, inits = [], {}
    for name, size in sizes.items():
        inits[f"{name}_w"] = RNG.normal(0.0, 1.0, (size, n_in))
        inits[f"{name}_b"] = RNG.normal(0.0, 0.5, size)
        nodes.append(helper.make_node("Gemm", ["x", f"{name}_w", f"{name}_b"], [name], transB=1))
    return nodes, inits


def _product() -> tuple[list, dict]:
    nodes, inits = _gemms(3, {"h": 4, "k": 4})
    return [*nodes, helper.make_node("Mul", ["h", "k"], ["y"])], inits


def _square_and_broadcast() -> tuple[list, dict]:
    nodes, inits = _gemms(3, {"h": 4, "s": 1})
    inits["axes"] = np.array([1])
    return [
        *nodes,
        helper.make_node("Mul", ["h", "h"], ["hh"]),
        helper.make_node("ReduceSum", ["hh", "axes"], ["t"], keepdims=1),
        helper.make_node("Mul", ["s", "t"], ["st"]),  # (1, 1) times (1, 1), then (1, 4) broadcast below
        helper.make_node("Mul", ["h", "st"], ["y"]),
    ], inits


def _quotient() -> tuple[list, dict]:
    nodes, inits = _gemms(3, {"h": 4, "k": 4})
    inits["c"] = np.array([1.5, -2.0, 0.5, 3.0])
    return [
        *nodes,
        helper.make_node("Exp", ["k"], ["e"]),
        helper.make_node("Div", ["h", "e"], ["q"]),  # variable / variable
        helper.make_node("Div", ["c", "e"], ["r"]),  # constant / variable
        helper.make_node("Add", ["q", "r"], ["y"]),
    ], inits


def _reciprocal() -> tuple[list, dict]:
    nodes, inits = _gemms(3, {"h": 4})
    inits["one"] = np.array(2.0)
    return [
        *nodes,
        helper.make_node("Exp", ["h"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["d"]),
        helper.make_node("Reciprocal", ["d"], ["y"]),
    ], inits


def _softmax(axis: int) -> Callable[[], tuple[list, dict]]:
    def build() -> tuple[list, dict]:
        nodes, inits = _gemms(3, {"h": 12})
        inits["shape"] = np.array([1, 2, 3, 2])
        inits["w2"] = RNG.normal(0.0, 1.0, (12, 3))
        inits["flat"] = np.array([1, 12])
        return [
            *nodes,
            helper.make_node("Reshape", ["h", "shape"], ["h4"]),
            helper.make_node("Softmax", ["h4"], ["p"], axis=axis),
            helper.make_node("Reshape", ["p", "flat"], ["pf"]),
            helper.make_node("MatMul", ["pf", "w2"], ["y"]),
        ], inits

    return build


def _reshaped(nodes: list, inits: dict, name: str, shape: list[int]) -> str:
    inits[f"{name}_shape"] = np.array(shape)
    nodes.append(helper.make_node("Reshape", [name, f"{name}_shape"], [f"{name}_r"]))
    return f"{name}_r"


def _matmul() -> tuple[list, dict]:
    nodes, inits = _gemms(3, {"h": 6, "k": 6})
    a, b = _reshaped(nodes, inits, "h", [1, 2, 3]), _reshaped(nodes, inits, "k", [1, 3, 2])
    return [*nodes, helper.make_node("MatMul", [a, b], ["y"])], inits


def _attention() -> tuple[list, dict]:
    """``softmax(q k^T) v`` on 3 tokens of width 2 (all three from the input)."""
    nodes, inits = _gemms(3, {"q": 6, "kt": 6, "v": 6})
    q, kt = _reshaped(nodes, inits, "q", [1, 3, 2]), _reshaped(nodes, inits, "kt", [1, 2, 3])
    v = _reshaped(nodes, inits, "v", [1, 3, 2])
    return [
        *nodes,
        helper.make_node("MatMul", [q, kt], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", v], ["y"]),
    ], inits


NETS: dict[str, Callable[[], tuple[list, dict]]] = {
    "product": _product,
    "square_broadcast": _square_and_broadcast,
    "quotient": _quotient,
    "reciprocal": _reciprocal,
    "matmul": _matmul,
    "attention": _attention,
    "softmax_axis1": _softmax(1),
    "softmax_axis2": _softmax(2),
    "softmax_last": _softmax(-1),
}


def _cases() -> list:
    cases = [pytest.param(name, 13, id=name) for name in NETS]
    return cases + [pytest.param(name, 11, id=f"{name}-opset11") for name in NETS if name.startswith("softmax")]


@pytest.mark.parametrize(("name", "opset"), _cases())
def test_eval_equals_onnxruntime_and_the_lowered_view(save_net: SaveNet, name: str, opset: int) -> None:
    nodes, inits = NETS[name]()
    _, layers = check_net(save_net(nodes, [1, 3], inits, opset=opset), n_points=40, low=-2.0, high=2.0)
    assert not is_exact(layers)
    kinds = {layer.kind for layer in layers.layers if isinstance(layer, ActivationLayer)}
    assert kinds & {ActKind.SQUARE, ActKind.RECIPROCAL, ActKind.RECIPROCAL_MAX1}


def test_opset_11_softmax_normalises_the_coerced_2d(save_net: SaveNet) -> None:
    """Before opset 13 axis 1 of a (1, 2, 3, 2) tensor normalises over 12 entries, from 13 on over 2."""
    nodes, inits = _softmax(1)()
    x = RNG.uniform(-1.0, 1.0, (3, 3))
    for opset, count in ((11, 1), (13, 6)):
        graph = load_network(save_net(nodes, [1, 3], inits, opset=opset, name=f"net{opset}.onnx"))
        p = graph.eval_all(x)["p"]
        assert np.allclose(p.reshape(3, -1).sum(axis=1), count)


def _box(n: int, width: float) -> tuple[np.ndarray, np.ndarray]:
    centre = RNG.uniform(-1.0, 1.0, (1, n))
    return centre - width, centre + width


@pytest.mark.parametrize(("name", "opset"), _cases())
def test_every_bound_pass_contains_sampled_outputs(save_net: SaveNet, name: str, opset: int) -> None:
    nodes, inits = NETS[name]()
    graph = load_network(save_net(nodes, [1, 3], inits, opset=opset))
    for width, scaled in ((0.01, False), (0.3, False), (0.3, True)):
        lb, ub = _box(3, width)
        lowered, note = lower_smooth(graph, product_scales(graph, [(lb[0], ub[0])]) if scaled else None)
        assert (note != "") == (name != "reciprocal") and unsupported(lowered) is None
        layers = to_layers(lowered)
        box = interval_bounds(layers, lb, ub)
        sym = symbolic_bounds(layers, lb, ub)
        lbs = [np.maximum(a, b) for a, b in zip(box.lb, sym.lb, strict=True)]
        ubs = [np.minimum(a, b) for a, b in zip(box.ub, sym.ub, strict=True)]
        tight = crown_bounds(layers, lbs, ubs)
        try:
            f_lo, f_hi = forward_forms(lowered, lb, ub, np.ones(3, dtype=bool)).interval()
        except UnboundedError:  # the forward forms of Exp(k) may dip below 0: then the divisor's bounds hold 0
            assert name == "quotient"
            f_lo, f_hi = np.full((1, 1), -np.inf), np.full((1, 1), np.inf)
        x = RNG.uniform(lb, ub, (1000, 3))
        values = layers.eval_all(x)
        y = graph.eval(x)
        for k, v in enumerate(values):
            for bounds in (box, sym, tight):
                assert np.all(v >= bounds.lb[k][0]) and np.all(v <= bounds.ub[k][0])
        assert np.all(y >= f_lo.reshape(1, -1)) and np.all(y <= f_hi.reshape(1, -1))
        out = layers.output
        assert np.all(tight.ub[out] - tight.lb[out] <= box.ub[out] - box.lb[out] + 1e-9)


def test_the_product_bounds_need_the_margin(save_net: SaveNet) -> None:
    """On tiny boxes the squares' lines touch at the corners: without the margin the forward symbolic bounds
    miss products (exact in extended precision) there; with it none is missed."""
    nodes = [
        helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["a"]),
        helper.make_node("Slice", ["x", "s1", "s2", "ax"], ["b"]),
        helper.make_node("Mul", ["a", "b"], ["y"]),
    ]
    inits = {"s0": np.array([0]), "s1": np.array([1]), "s2": np.array([2]), "ax": np.array([1])}
    layers = to_layers(load_network(save_net(nodes, [1, 2], inits)))
    rng = np.random.default_rng(9)
    misses = {True: 0, False: 0}
    for _ in range(300):
        centre, width = rng.uniform(-3.0, 3.0, (1, 2)), 10.0 ** rng.uniform(-14, -6, (1, 2))
        lb, ub = centre - width, centre + width
        corners = np.array([[lb[0, 0], lb[0, 1]], [lb[0, 0], ub[0, 1]], [ub[0, 0], lb[0, 1]], [ub[0, 0], ub[0, 1]]])
        x = np.vstack([corners, rng.uniform(lb, ub, (30, 2))])
        exact = x[:, 0].astype(np.longdouble) * x[:, 1].astype(np.longdouble)
        for margin in (True, False):
            margins = {} if margin else {"margin_rel": 0.0, "margin_abs": 0.0}
            sym = symbolic_bounds(layers, lb, ub, **margins)
            lo, hi = sym.lb[layers.output][0, 0], sym.ub[layers.output][0, 0]
            misses[margin] += int(np.sum((exact < lo) | (exact > hi)))
    assert misses[True] == 0 and misses[False] > 0


def _write_prop(path: Path, lb: np.ndarray, ub: np.ndarray, rows: list[str]) -> Path:
    lines = [f"(declare-const X_{i} Real)" for i in range(lb.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(3)]
    for i in range(lb.size):
        lines += [f"(assert (>= X_{i} {float(lb[i])!r}))", f"(assert (<= X_{i} {float(ub[i])!r}))"]
    path.write_text("\n".join(lines + rows) + "\n")
    return path


def _product_softmax_net(path: Path) -> Path:
    """``y = Softmax(h * k) @ w2 + b2`` on 2 inputs: a two-variable product and an inner Softmax."""
    rng = np.random.default_rng(21)
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
        helper.make_node("Gemm", ["x", "v", "c"], ["k"], transB=1),
        helper.make_node("Mul", ["h", "k"], ["p"]),
        helper.make_node("Softmax", ["p"], ["s"], axis=-1),
        helper.make_node("Gemm", ["s", "w2", "b2"], ["y"]),
    ]
    inits = {
        "w": rng.normal(0.0, 1.0, (4, 2)),
        "b": rng.normal(0.0, 0.5, 4),
        "v": rng.normal(0.0, 1.0, (4, 2)),
        "c": rng.normal(0.0, 0.5, 4),
        "w2": rng.normal(0.0, 1.0, (4, 3)),
        "b2": np.zeros(3),
    }
    onnx.save(build_model(nodes, [1, 2], inits), path)
    return path


def test_verify_proves_and_refutes_through_a_product_and_a_softmax(tmp_path: Path) -> None:
    net = _product_softmax_net(tmp_path / "net.onnx")
    graph = load_network(net)
    lb, ub = np.array([-0.5, -0.5]), np.array([0.5, 0.5])
    g = np.linspace(0.0, 1.0, 201)
    grid = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    top = float(graph.eval(lb + grid * (ub - lb))[:, 0].max())
    options = nnverify.Options(timeout_s=60, attack_samples=50)
    unsat = _write_prop(tmp_path / "unsat.vnnlib", lb, ub, [f"(assert (>= Y_0 {top + 0.05!r}))"])
    result = nnverify.verify(net, unsat, options)
    assert result.verdict.value == "unsat", result.note
    assert "relaxed lowering of 1 Mul, 1 Softmax" in result.note
    sat = _write_prop(tmp_path / "sat.vnnlib", lb, ub, [f"(assert (>= Y_0 {top - 0.01!r}))"])
    result = nnverify.verify(net, sat, options)
    assert result.verdict.value == "sat" and result.counterexample is not None
    x = np.asarray(result.counterexample.x, dtype=np.float64)
    assert np.all(x >= lb) and np.all(x <= ub) and graph.eval(x[None, :])[0, 0] >= top - 0.01 - 1e-5


def test_a_divisor_whose_bounds_hold_zero_gives_unknown(tmp_path: Path) -> None:
    """``x0 / (x1 + 0.25)`` with ``x1`` in [-1, 1] is unbounded: no bound, no unsat, the note names Reciprocal.
    (The divisor is not 0 at the input 0, where the analysis evaluates shapes.)"""
    nodes = [
        helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["a"]),
        helper.make_node("Slice", ["x", "s1", "s2", "ax"], ["b0"]),
        helper.make_node("Add", ["b0", "shift"], ["b"]),
        helper.make_node("Div", ["a", "b"], ["q"]),
        helper.make_node("Concat", ["q", "q", "q"], ["y"], axis=1),
    ]
    inits = {
        "s0": np.array([0]),
        "s1": np.array([1]),
        "s2": np.array([2]),
        "ax": np.array([1]),
        "shift": np.ones(1) / 4,
    }
    net = tmp_path / "div.onnx"
    onnx.save(build_model(nodes, [1, 2], inits), net)
    prop = _write_prop(tmp_path / "p.vnnlib", np.array([0.5, -1.0]), np.array([1.0, 1.0]), ["(assert (>= Y_0 1e300))"])
    result = nnverify.verify(net, prop, nnverify.Options(timeout_s=30, attack_samples=50))
    assert result.verdict.value == "unknown" and "Reciprocal" in result.note


def test_unlowered_products_are_refused_by_the_forward_bounds(save_net: SaveNet) -> None:
    nodes, inits = _product()
    graph = load_network(save_net(nodes, [1, 3], inits))
    assert "lower_smooth" in (unsupported(graph) or "")
    assert unsupported(lower_smooth(graph)[0]) is None


def test_ops_table_says_relaxed() -> None:
    notes = {op: note for op, _, note in supported_ops_table()}
    assert "relaxed" in notes["Mul"] and "relaxed" in notes["Div"] and "relaxed" in notes["Softmax"]
    assert "Reciprocal" in notes and "unknown" in notes["Reciprocal"]


@pytest.mark.parametrize(("opset", "removed"), [(11, True), (13, False)])
def test_output_softmax_is_removed_only_when_it_normalises_every_output(
    save_net: SaveNet, opset: int, removed: bool
) -> None:
    """On a (1, 2, 3) output, axis 1 normalises all 6 entries before opset 13 (removable for a comparison of
    outputs) but only pairs from 13 on (kept, then lowered)."""
    from nnverify.graph.tail import strip_softmax
    from nnverify.spec.property import Disjunct, Property

    nodes, inits = _gemms(3, {"h": 6})
    inits["shape"] = np.array([1, 2, 3])
    nodes += [helper.make_node("Reshape", ["h", "shape"], ["h3"]), helper.make_node("Softmax", ["h3"], ["y"], axis=1)]
    graph = load_network(save_net(nodes, [1, 3], inits, opset=opset))
    a_y = np.zeros((1, 6))
    a_y[0, 0], a_y[0, 4] = 1.0, -1.0
    prop = Property(3, 6, (Disjunct(-np.ones(3), np.ones(3), np.zeros((1, 3)), a_y, np.zeros(1)),))
    analysis, note = strip_softmax(graph, prop)
    assert (analysis.output_name == "h3") is removed and ("Softmax removed" in note) is removed
    if not removed:
        lowered, lowered_note = lower_smooth(analysis)
        assert "1 Softmax" in lowered_note and "Softmax" not in {n.op_type for n in lowered.nodes}


def test_the_op_graph_route_and_the_encoder_cope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the dense view declared too large, the forward bounds on the op graph decide the lowered net (unsat,
    then a replayed sat); the exact encoder refuses its relaxed activations."""
    from nnverify.encode.network import NotExactError, encode_network
    from nnverify.search import forward_split

    net = _product_softmax_net(tmp_path / "net.onnx")
    graph = load_network(net)
    layers = to_layers(graph, merge=False)
    box = interval_bounds(layers, -np.ones(2), np.ones(2))
    with pytest.raises(NotExactError, match="no exact encoding"):
        encode_network(layers, [v[0] for v in box.lb], [v[0] for v in box.ub])
    monkeypatch.setattr(forward_split, "dense_view_mb", lambda graph: float("inf"))
    lb, ub = np.array([-0.5, -0.5]), np.array([0.5, 0.5])
    g = np.linspace(0.0, 1.0, 201)
    top = float(graph.eval(lb + np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2) * (ub - lb))[:, 0].max())
    options = nnverify.Options(timeout_s=60, attack_samples=50)
    unsat = _write_prop(tmp_path / "unsat.vnnlib", lb, ub, [f"(assert (>= Y_0 {top + 0.05!r}))"])
    result = nnverify.verify(net, unsat, options)
    assert result.verdict.value == "unsat" and "forward bounds" in result.note, result.note
    sat = _write_prop(tmp_path / "sat.vnnlib", lb, ub, [f"(assert (>= Y_0 {top - 0.01!r}))"])
    result = nnverify.verify(net, sat, options)
    assert result.verdict.value == "sat" and result.counterexample is not None


def test_scaling_balances_factors_of_different_widths(save_net: SaveNet) -> None:
    """``x0 * x1`` on ``[0, 0.01] x [0, 10]``: with the power-of-two scale (32 here) the squares' interval of the
    product is several times narrower than unscaled, and both contain every sampled product."""
    nodes = [
        helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["a"]),
        helper.make_node("Slice", ["x", "s1", "s2", "ax"], ["b"]),
        helper.make_node("Mul", ["a", "b"], ["y"]),
    ]
    inits = {"s0": np.array([0]), "s1": np.array([1]), "s2": np.array([2]), "ax": np.array([1])}
    graph = load_network(save_net(nodes, [1, 2], inits))
    lb, ub = np.array([[0.0, 0.0]]), np.array([[0.01, 10.0]])
    scales = product_scales(graph, [(lb[0], ub[0])])
    assert scales["y"].tolist() == [[32.0]]
    x = RNG.uniform(lb, ub, (1000, 2))
    widths = []
    for chosen in (None, scales):
        layers = to_layers(lower_smooth(graph, chosen)[0])
        bounds = symbolic_bounds(layers, lb, ub)
        lo, hi = bounds.lb[layers.output][0, 0], bounds.ub[layers.output][0, 0]
        assert np.all(x[:, 0] * x[:, 1] >= lo) and np.all(x[:, 0] * x[:, 1] <= hi)
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 5


def test_verify_decides_an_attention_block(tmp_path: Path) -> None:
    """``softmax(q k^T) v`` (two variable MatMuls and a Softmax): unsat above the grid maximum plus a margin, and
    sat with a replayed witness below it."""
    nodes, inits = _attention()
    inits["w2"] = RNG.normal(0.0, 1.0, (6, 3))
    inits["flat"] = np.array([1, 6])
    nodes += [helper.make_node("Reshape", ["y", "flat"], ["yf"]), helper.make_node("MatMul", ["yf", "w2"], ["out"])]
    for node in nodes:
        node.output[:] = ["y_attn" if o == "y" else "y" if o == "out" else o for o in node.output]
        node.input[:] = ["y_attn" if i == "y" else i for i in node.input]
    net = tmp_path / "attention.onnx"
    onnx.save(build_model(nodes, [1, 3], inits), net)
    graph = load_network(net)
    lb, ub = np.array([-0.2, -0.2, -0.2]), np.array([0.2, 0.2, 0.2])
    g = np.linspace(0.0, 1.0, 41)
    grid = np.stack(np.meshgrid(g, g, g), axis=-1).reshape(-1, 3)
    top = float(graph.eval(lb + grid * (ub - lb))[:, 0].max())
    options = nnverify.Options(timeout_s=60, attack_samples=50)
    result = nnverify.verify(
        net, _write_prop(tmp_path / "u.vnnlib", lb, ub, [f"(assert (>= Y_0 {top + 0.1!r}))"]), options
    )
    assert result.verdict.value == "unsat" and "2 MatMul, 1 Softmax" in result.note, (result.note, result.stats)
    result = nnverify.verify(
        net, _write_prop(tmp_path / "s.vnnlib", lb, ub, [f"(assert (>= Y_0 {top - 0.01!r}))"]), options
    )
    assert result.verdict.value == "sat" and result.counterexample is not None


@pytest.mark.parametrize("seed", range(4))
def test_never_unsat_below_a_reached_value(tmp_path: Path, seed: int) -> None:
    """Random nets mixing a product, a quotient by a positive tensor and a Softmax, without the attack: a threshold
    just below an output value reached in the box is never proven unsat (sound, finite bounds, no NaN warnings)."""
    rng = np.random.default_rng(100 + seed)
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
        helper.make_node("Gemm", ["x", "v", "c"], ["k"], transB=1),
        helper.make_node("Mul", ["h", "k"], ["p"]),
        helper.make_node("Softplus", ["k"], ["sp"]),
        helper.make_node("Add", ["sp", "eps"], ["d"]),
        helper.make_node("Div", ["p", "d"], ["q"]),
        helper.make_node("Softmax", ["q"], ["s"], axis=-1),
        helper.make_node("Gemm", ["s", "w2", "b2"], ["y"]),
    ]
    inits = {
        "w": rng.normal(0.0, 1.0, (4, 2)),
        "b": rng.normal(0.0, 0.5, 4),
        "v": rng.normal(0.0, 1.0, (4, 2)),
        "c": rng.normal(0.0, 0.5, 4),
        "eps": np.array(0.5),
        "w2": rng.normal(0.0, 2.0, (4, 3)),
        "b2": np.zeros(3),
    }
    net = tmp_path / "net.onnx"
    onnx.save(build_model(nodes, [1, 2], inits), net)
    graph = load_network(net)
    lb, ub = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    x = rng.uniform(lb, ub, (2000, 2)).astype(np.float32).astype(np.float64)
    reached = float(graph.eval(x)[:, 0].max())
    prop = _write_prop(tmp_path / "p.vnnlib", lb, ub, [f"(assert (>= Y_0 {reached - 1e-4!r}))"])
    result = nnverify.verify(net, prop, nnverify.Options(timeout_s=20, attack_samples=0))  # the bounds are exercised
    assert result.verdict.value in ("sat", "unknown", "timeout"), (result.verdict, result.note)
    if result.verdict.value == "sat":
        assert result.counterexample is not None
    else:  # a divisor not proved one-signed (bounds/divisors.py) stops the run where its bounds hold 0
        assert "Reciprocal" in result.note or result.verdict.value == "timeout", result.note


def test_a_divisor_zero_at_the_zero_input_builds_a_view(save_net: SaveNet) -> None:
    """``x0 / x1`` is inf or NaN at the input 0, where the view reads its shapes: no warning, a working view."""
    nodes = [
        helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["a"]),
        helper.make_node("Slice", ["x", "s1", "s2", "ax"], ["b"]),
        helper.make_node("Div", ["a", "b"], ["y"]),
    ]
    inits = {"s0": np.array([0]), "s1": np.array([1]), "s2": np.array([2]), "ax": np.array([1])}
    layers = to_layers(load_network(save_net(nodes, [1, 2], inits)))
    x = np.array([[1.0, 2.0], [-3.0, 0.5]])
    np.testing.assert_allclose(layers.eval(x)[:, 0], x[:, 0] / x[:, 1], rtol=1e-12)
