"""End to end: a small CNN with MaxPool, LeakyRelu, Clip and Max goes through the lowered layer view to the
exact search; verdicts agree with sampling and every ``sat`` replays."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from nnverify.graph.onnx_import import load_network
from nnverify.options import Options
from nnverify.pipeline import verify
from nnverify.result import Verdict
from nnverify.spec.property import Disjunct, Property

sys.path.insert(0, str(Path(__file__).parent / "graph"))
from onnx_nets import build_model


def _net(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("LeakyRelu", ["m"], ["r"], alpha=0.125),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "G", "C"], ["g"], transB=1),
        helper.make_node("Clip", ["g", "lo", "hi"], ["k"]),
        helper.make_node("Max", ["k", "g"], ["y"]),
    ]
    inits = {
        "W": rng.uniform(-1, 1, (2, 1, 2, 2)),
        "B": rng.uniform(-0.2, 0.2, 2),
        "G": rng.uniform(-1, 1, (2, 8)),
        "C": rng.uniform(-0.2, 0.2, 2),
        "lo": np.array(-0.5),
        "hi": np.array(0.5),
    }
    path = tmp_path / "cnn.onnx"
    onnx.save(build_model(nodes, (1, 1, 3, 3), inits), path)
    return path


def _property(top: float) -> Property:
    """Unsafe: ``Y_0 >= top`` on the box ``[-1, 1]^9``."""
    lb, ub = np.full(9, -1.0), np.full(9, 1.0)
    return Property(9, 2, (Disjunct(lb, ub, np.zeros((1, 9)), np.array([[-1.0, 0.0]]), np.array([-top])),))


def _sampled_max(path: Path) -> float:
    graph = load_network(path)
    samples = np.random.default_rng(0).uniform(-1.0, 1.0, (20000, 9))
    return float(graph.eval(samples)[:, 0].max())


@pytest.mark.parametrize("offset", [-0.05, 0.9, 1.5])
def test_float_and_exact_backends_agree(tmp_path: Path, offset: float, clpq_ready: None) -> None:
    """HiGHS on the merged view and clpq in exact rationals on the exact view (``merge=False``) decide alike;
    below the sampled maximum both find a replayed counterexample."""
    path = _net(tmp_path)
    prop = _property(_sampled_max(path) + offset)
    verdicts = []
    for backend in ("highs", "clpq"):
        result = verify(path, prop, Options(timeout_s=60.0, attack_samples=0, backend=backend))
        assert result.verdict in (Verdict.SAT, Verdict.UNSAT), result.note
        if result.verdict is Verdict.SAT:
            assert result.counterexample is not None
            assert result.counterexample.y[0] >= prop.disjuncts[0].b[0] * -1 - 1e-4
        verdicts.append(result.verdict)
    assert verdicts[0] is verdicts[1]
    if offset < 0:
        assert verdicts[0] is Verdict.SAT
