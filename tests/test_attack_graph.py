"""The Softmax tail removal and the attack on the op graph (``graph/tail.py``, ``attack_graph.py``)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from nnverify import attack_graph
from nnverify.attack_vjp import input_gradient
from nnverify.budget import Budget
from nnverify.graph.core import Graph
from nnverify.graph.onnx_import import load_network
from nnverify.graph.tail import strip_softmax
from nnverify.options import Options
from nnverify.pipeline import verify
from nnverify.result import Verdict
from nnverify.spec.property import Disjunct, Property
from nnverify.witness import OnnxRunner, check_counterexample

sys.path.insert(0, str(Path(__file__).parent / "graph"))
from onnx_nets import build_model

N_CLASSES = 3


CENTRE = np.linspace(-0.5, 0.5, 16)
EPS = 0.1


def _planted(tmp_path: Path) -> tuple[Graph, Property, Path]:
    """A binarised CNN (Conv -> Sign(Sign(.) + 0.1) -> MatMul -> Softmax) on a 1x1x4x4 input, and a box
    ``CENTRE +- EPS`` where only the all-upper corner's neighbourhood is misclassified: the first filter (all
    ones) fires only when the pixel sum passes ``sum(CENTRE) + 14.4 EPS`` and its sign decides class 0 or 1."""
    rng = np.random.default_rng(0)
    weights = np.stack([np.ones((1, 4, 4)), rng.choice([-1.0, 1.0], (1, 4, 4))])
    bias = np.array([-(CENTRE.sum() + 14.4 * EPS), 0.3])
    scores = np.array([[-2.0, 2.0, 0.0], [0.5, -0.5, 0.0]])
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"]),
        helper.make_node("Sign", ["c"], ["s1"]),
        helper.make_node("Add", ["s1", "h"], ["a"]),
        helper.make_node("Sign", ["a"], ["s2"]),
        helper.make_node("Flatten", ["s2"], ["f"]),
        helper.make_node("MatMul", ["f", "M"], ["z"]),
        helper.make_node("Softmax", ["z"], ["y"]),
    ]
    inits = {"W": weights, "B": bias, "h": np.array(0.1), "M": scores}
    path = tmp_path / "bnn.onnx"
    onnx.save(build_model(nodes, (1, 1, 4, 4), inits), path)
    graph = load_network(path)
    disjuncts = []
    for j in (1, 2):  # class 0 must stay on top
        a_y = np.zeros((1, N_CLASSES))
        a_y[0, 0], a_y[0, j] = 1.0, -1.0
        disjuncts.append(Disjunct(CENTRE - EPS, CENTRE + EPS, np.zeros((1, 16)), a_y, np.zeros(1)))
    return graph, Property(16, N_CLASSES, tuple(disjuncts)), path


def test_planted_counterexample_is_rare(tmp_path: Path) -> None:
    graph, prop, _ = _planted(tmp_path)
    corners = np.array(list(itertools.product([-EPS, EPS], repeat=16))) + CENTRE
    hit = prop.violated_by(corners, graph.eval(corners))
    assert hit.sum() == 1 and hit[-1]  # the all-upper corner only


def test_softmax_removed_when_rows_compare_outputs(tmp_path: Path) -> None:
    graph, prop, _ = _planted(tmp_path)
    logits, note = strip_softmax(graph, prop)
    assert "Softmax removed" in note
    assert logits.output_name == "z" and [n.op_type for n in logits.nodes][-1] == "MatMul"
    x = np.random.default_rng(0).uniform(-1, 1, (20, 16))
    assert logits.output_shape == (1, N_CLASSES)
    assert np.array_equal(np.argsort(logits.eval(x), axis=1), np.argsort(graph.eval(x), axis=1))


@pytest.mark.parametrize("change", ["constant", "input-term", "scaled"])
def test_softmax_kept_when_a_row_does_more_than_compare(tmp_path: Path, change: str) -> None:
    graph, prop, _ = _planted(tmp_path)
    d = prop.disjuncts[0]
    if change == "constant":  # Y_t - Y_j <= 0.2: depends on the probabilities' values
        d = Disjunct(d.lb, d.ub, d.a_x, d.a_y, np.array([0.2]))
    elif change == "input-term":
        d = Disjunct(d.lb, d.ub, d.a_x + 1.0, d.a_y, d.b)
    else:
        d = Disjunct(d.lb, d.ub, d.a_x, 2.0 * d.a_y, d.b)
    kept, note = strip_softmax(graph, Property(16, N_CLASSES, (d, *prop.disjuncts[1:])))
    assert kept is graph and note == ""


def test_graph_attack_finds_the_planted_counterexample(tmp_path: Path) -> None:
    graph, prop, path = _planted(tmp_path)
    logits, _ = strip_softmax(graph, prop)
    runner = OnnxRunner(path)
    found: list[np.ndarray] = []

    def accept(x: np.ndarray, box: Disjunct) -> bool:
        if check_counterexample(runner, prop, x.astype(np.float32).astype(np.float64)).valid:
            found.append(x)
        return bool(found)

    stats = attack_graph.search(logits, prop, Budget.starting_now(20.0), accept, seed=1)
    assert found, stats
    assert prop.violated_by(found[0][None, :], graph.eval(found[0][None, :]))[0]


def test_verify_takes_the_graph_route_for_large_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph, prop, _ = _planted(tmp_path)
    monkeypatch.setattr(attack_graph, "dense_view_mb", lambda graph: float("inf"))
    result = verify(graph, prop, Options(timeout_s=20.0))
    assert result.verdict is Verdict.SAT and result.method == "graph-attack"
    assert result.counterexample is not None
    assert "dense layer view" in result.note and "Softmax removed" in result.note


@pytest.mark.parametrize(("shift", "verdict"), [(2.0, Verdict.SAT), (-2.0, Verdict.UNSAT)], ids=["always", "never"])
def test_softmax_not_removable_is_bounded_with_a_note(tmp_path: Path, shift: float, verdict: Verdict) -> None:
    graph, prop, _ = _planted(tmp_path)  # probabilities differ by less than 2: Y_0 - Y_j <= +-2 always/never holds
    shifted = Property(16, N_CLASSES, tuple(Disjunct(d.lb, d.ub, d.a_x, d.a_y, d.b + shift) for d in prop.disjuncts))
    result = verify(graph, shifted, Options(timeout_s=10.0))
    assert result.verdict is verdict
    assert "relaxed lowering of 1 Softmax" in result.note  # graph/lowering_smooth.py


def test_gradient_through_the_ops_equals_finite_differences(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "W", "B"], ["c"], strides=[2, 1], pads=[1, 0, 1, 1], dilations=[1, 2]),
        helper.make_node("MaxPool", ["c"], ["m"], kernel_shape=[2, 2], ceil_mode=1),
        helper.make_node("BatchNormalization", ["m", "s", "b", "mu", "v"], ["n"]),
        helper.make_node("LeakyRelu", ["n"], ["r"], alpha=0.1),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "G"], ["g"], transB=1),
        helper.make_node("Mul", ["g", "k"], ["p"]),
        helper.make_node("Unsqueeze", ["p", "axes"], ["u"]),
        helper.make_node("MatMul", ["u", "M"], ["q"]),
        helper.make_node("Sigmoid", ["q"], ["sg"]),  # an activation without a rule: central differences
        helper.make_node("Softmax", ["sg"], ["y"]),
    ]
    inits = {
        "W": rng.normal(size=(4, 2, 3, 2)),
        "B": rng.normal(size=4),
        "s": rng.normal(size=4),
        "b": rng.normal(size=4),
        "mu": rng.normal(size=4),
        "v": rng.random(4) + 1,
        "G": rng.normal(size=(5, 48)),
        "k": rng.normal(size=5),
        "axes": np.array([0]),
        "M": rng.normal(size=(5, 3)),
    }
    path = tmp_path / "net.onnx"
    onnx.save(build_model(nodes, (1, 7, 6, 2), inits), path)
    graph = load_network(path)
    x = rng.normal(size=(3, graph.n_inputs))
    seed = rng.normal(size=(3, graph.n_outputs))
    grad = input_gradient(graph, graph.eval_all(x), seed)
    assert grad is not None
    h = 1e-6
    numeric = np.stack(
        [((graph.eval(x + h * e) - graph.eval(x - h * e)) * seed).sum(axis=1) / (2 * h) for e in np.eye(x.shape[1])],
        axis=1,
    )
    np.testing.assert_allclose(grad, numeric, atol=1e-5 * np.abs(numeric).max())
