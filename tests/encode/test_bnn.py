"""The exact BNN encoding: every solution is the network's own forward pass; counts equal brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nnverify.backends.cpsat import to_cpsat
from nnverify.encode.bnn import BnnEncodingError, encode_bnn, encode_bnn_query, integer_form, is_bnn
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, Layer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.spec.property import Disjunct


def f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)


def random_bnn(rng: np.random.Generator, widths: list[int]) -> LayerGraph:
    """Blocks of (±1 weights folded with a BatchNormalization: per-neuron scale and bias) then Sign; a real
    linear output layer."""
    layers: list[Layer] = [InputLayer(widths[0])]
    for k, (n_in, n_out) in enumerate(itertools.pairwise(widths[:-1])):
        a = rng.choice([-1.0, 1.0], size=(n_out, n_in))
        scale = f32(rng.uniform(0.2, 2.0, n_out) * rng.choice([-1.0, 1.0], n_out))
        bias = f32(rng.normal(0.0, 1.5, n_out))
        layers.append(AffineLayer(f"fc{k}", (len(layers) - 1,), (f32(a * scale[:, None]),), bias))
        layers.append(ActivationLayer(f"sign{k}", len(layers) - 1, ActKind.SIGN, n_out))
    w = f32(rng.normal(0.0, 1.0, (widths[-1], widths[-2])))
    layers.append(AffineLayer("out", (len(layers) - 1,), (w,), f32(rng.normal(0.0, 1.0, widths[-1]))))
    return LayerGraph(tuple(layers), len(layers) - 1)


def solutions(problem) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    from ortools.sat.python import cp_model

    model, variables = to_cpsat(problem)
    solver = cp_model.CpSolver()
    solver.parameters.enumerate_all_solutions = True
    solver.parameters.num_workers = 1
    found: list[np.ndarray] = []

    class Collect(cp_model.CpSolverSolutionCallback):
        def on_solution_callback(self) -> None:
            found.append(np.array([self.value(v) for v in variables], dtype=float))

    solver.solve(model, Collect())
    return found


def value(form, values: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    terms, const = form
    return float(const + sum(c * int(values[v]) for v, c in terms.items()))


@pytest.mark.parametrize("seed", range(12))
def test_every_solution_is_the_forward_pass(seed: int) -> None:
    rng = np.random.default_rng(seed)
    widths = [int(rng.integers(3, 6)), int(rng.integers(2, 5)), int(rng.integers(2, 5)), 2]
    graph = random_bnn(rng, widths)
    assert is_bnn(graph)
    enc = encode_bnn(graph, np.zeros(widths[0]), np.ones(widths[0]))
    found = solutions(enc.problem)
    inputs = {tuple(int(v) for v in s[enc.x_idx]) for s in found}
    assert len(found) == len(inputs) == 2 ** widths[0]  # each input has exactly one completion
    for s in found:
        x = s[enc.x_idx][None, :]
        values = graph.eval_all(x)
        for k, layer in enumerate(graph.layers):
            if isinstance(layer, ActivationLayer):
                assert [value(f, s) for f in enc.forms[k]] == list(values[k][0])
        assert np.allclose([value(f, s) for f in enc.forms[graph.output]], values[graph.output][0], atol=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_model_count_of_a_query_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(3, 7))
    graph = random_bnn(rng, [n, int(rng.integers(2, 5)), 1])
    xs = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
    ys = graph.eval(xs)[:, 0]
    threshold = float(f32(np.median(ys)))
    d = Disjunct(np.zeros(n), np.ones(n), np.zeros((1, n)), np.array([[-1.0]]), np.array([-threshold]))  # y >= t
    enc = encode_bnn_query(graph, [d])
    assert len(solutions(enc.problem)) == int(np.sum(ys >= threshold))


def test_sign_of_exactly_zero_is_zero() -> None:
    # z = x0 - x1 is 0 on two of the four inputs: ONNX Sign gives 0 there.
    layers: list[Layer] = [
        InputLayer(2),
        AffineLayer("fc", (0,), (np.array([[1.0, -1.0]]),), np.zeros(1)),
        ActivationLayer("sign", 1, ActKind.SIGN, 1),
    ]
    graph = LayerGraph(tuple(layers), 2)
    enc = encode_bnn(graph, np.zeros(2), np.ones(2))
    outs = sorted((tuple(s[enc.x_idx]), value(enc.forms[2][0], s)) for s in solutions(enc.problem))
    assert outs == [((0.0, 0.0), 0.0), ((0.0, 1.0), -1.0), ((1.0, 0.0), 1.0), ((1.0, 1.0), 0.0)]


def test_integer_form_folds_scale_and_threshold() -> None:
    from fractions import Fraction

    coefs, q, scale = integer_form(({0: Fraction(3, 4), 1: Fraction(-3, 4)}, Fraction(-3, 8)))
    assert (coefs, q, scale) == ({0: 1, 1: -1}, Fraction(-1, 2), Fraction(4, 3))


def test_non_sign_networks_and_real_inputs_are_refused() -> None:
    relu = LayerGraph((InputLayer(1), ActivationLayer("r", 0, ActKind.RELU, 1)), 1)
    with pytest.raises(BnnEncodingError, match="all Sign"):
        encode_bnn(relu, np.zeros(1), np.ones(1))
    sign = LayerGraph((InputLayer(1), ActivationLayer("s", 0, ActKind.SIGN, 1)), 1)
    with pytest.raises(BnnEncodingError, match="integer input bounds"):
        encode_bnn(sign, np.zeros(1), np.array([0.5]))


@pytest.mark.parametrize("backend", ["cpsat", "highs", "gurobi"])
def test_bnn_query_backends_agree(backend: str) -> None:
    from nnverify.backends import backend_class, get_backend
    from nnverify.backends.base import SolveStatus

    if backend_class(backend).unavailable_reason() is not None:
        pytest.skip(f"{backend} not installed")
    rng = np.random.default_rng(7)
    graph = random_bnn(rng, [8, 6, 5, 1])
    xs = np.array([[float(b) for b in np.binary_repr(k, 8)] for k in range(256)])
    best = float(graph.eval(xs)[:, 0].max())
    for threshold, expected in ((best, SolveStatus.FEASIBLE), (best + 1e-3, SolveStatus.INFEASIBLE)):
        d = Disjunct(np.zeros(8), np.ones(8), np.zeros((1, 8)), np.array([[-1.0]]), np.array([-threshold]))
        assert get_backend(backend).solve(encode_bnn_query(graph, [d]).problem, timeout_s=30).status is expected
