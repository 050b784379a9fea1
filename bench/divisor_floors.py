"""Quotients by a positive expression whose affine bounds dip below 0 (``bounds/divisors.py``): the random nets of
``tests/graph/test_lowering_smooth.py``'s ``test_never_unsat_below_a_reached_value`` family (``softmax((h * k) /
(softplus(k) + 0.5)) @ w2``, seeds 100-119), each with a property just below the sampled maximum of ``Y_0`` (sat)
and one 5 % above it (unsat), no attack, with the divisor floors on or off. Prints the verdict counts and the CPU
time recorded in ``docs/operators.md`` ("Divisors"):

    .venv/bin/python bench/divisor_floors.py on
    .venv/bin/python bench/divisor_floors.py off
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import nnverify
import nnverify.pipeline as pipeline
from nnverify.graph.onnx_import import load_network

LB, UB = np.array([-1.0, -1.0]), np.array([1.0, 1.0])


def _net(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
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
    values = {
        "w": rng.normal(0.0, 1.0, (4, 2)),
        "b": rng.normal(0.0, 0.5, 4),
        "v": rng.normal(0.0, 1.0, (4, 2)),
        "c": rng.normal(0.0, 0.5, 4),
        "eps": np.array(0.5),
        "w2": rng.normal(0.0, 2.0, (4, 3)),
        "b2": np.zeros(3),
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), name) for name, v in values.items()]
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _prop(path: Path, threshold: float) -> Path:
    lines = [f"(declare-const X_{i} Real)" for i in range(2)] + [f"(declare-const Y_{j} Real)" for j in range(3)]
    for i in range(2):
        lines += [f"(assert (>= X_{i} {float(LB[i])!r}))", f"(assert (<= X_{i} {float(UB[i])!r}))"]
    path.write_text("\n".join([*lines, f"(assert (>= Y_0 {threshold!r}))"]) + "\n")
    return path


def main(mode: str) -> None:
    if mode == "off":
        pipeline._divisor_floors = lambda *args, **kwargs: {}  # type: ignore[assignment]
    counts: dict[tuple[str, str], int] = {}
    cpu = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(100, 120):
            net = _net(Path(tmp) / f"net{seed}.onnx", seed)
            sampled = np.random.default_rng(0).uniform(LB, UB, (40000, 2))
            top = float(load_network(net).eval(sampled)[:, 0].max())
            for want, threshold in (("sat", top - 1e-3 * abs(top) - 1e-4), ("unsat", top + 0.05 * abs(top) + 0.01)):
                prop = _prop(Path(tmp) / f"p{seed}{want}.vnnlib", threshold)
                start = time.process_time()
                result = nnverify.verify(net, prop, nnverify.Options(timeout_s=30, attack_samples=0))
                cpu += time.process_time() - start
                counts[(want, result.verdict.value)] = counts.get((want, result.verdict.value), 0) + 1
    print(f"floors {mode}: {dict(sorted(counts.items()))}, CPU {cpu:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "on")
