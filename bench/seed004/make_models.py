"""Builds the seed-004-shaped networks and properties (issue 5, part 6), deterministically.

A signal-processing model of three linear layers with biases, 320 -> H -> H/2 -> 320, for H = 512 (377,920
parameters) and H = 1024 (1,017,664); "linear layers" as in the seed work: affine maps, no activation.
Weights are seeded random (scaled by 1/sqrt(fan-in), float32), so the files are the same on every run. Writes
``networks/seed004_h{H}.onnx`` and ``properties/seed004_h{H}_p{1..4}.vnnlib``.

The properties are output ranges over one input box (a sampled sine wave, each sample +-0.01):

* p1 (violated): output 0 stays below t; t lies halfway between the centre's output and the true maximum.
* p2 (violated): output 5 exceeds output 6 by less than t; t is halfway towards the true maximum of Y_5 - Y_6.
* p3 (violated): output 10 stays in [a, b]; b is halfway towards the true maximum, a far below the minimum.
* p4 (holds): output 0 stays within 10% outside its true range (the range computed here).

The true range of a linear function over a box is centre +- sum |w_eff| * eps; it is computed in float64
here, and every threshold keeps a margin of at least 5% of the range, far above any rounding.

Usage: python bench/seed004/make_models.py [--out-root .]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_IN = 320
SEED = 4


def build(hidden: int) -> onnx.ModelProto:
    rng = np.random.default_rng(SEED + hidden)
    sizes = [N_IN, hidden, hidden // 2, N_IN]
    nodes, inits = [], []
    name = "x"
    for k, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        w = (rng.standard_normal((n_out, n_in)) * np.sqrt(1.0 / n_in)).astype(np.float32)
        b = (rng.standard_normal(n_out) * 0.05).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{k}"), numpy_helper.from_array(b, f"B{k}")]
        out = f"h{k}" if k < 2 else "y"
        nodes.append(helper.make_node("Gemm", [name, f"W{k}", f"B{k}"], [out], name=f"fc{k}", transB=1))
        name = out
    graph = helper.make_graph(
        nodes,
        f"seed004_h{hidden}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, N_IN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, N_IN])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


EPS = 0.01


def centre() -> np.ndarray:
    return 0.5 * np.sin(np.arange(N_IN) / 10.0)


def effective(model: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray]:
    """The network's map y = A x + c (float64), composed from its three Gemm layers."""
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    a, c = np.eye(N_IN), np.zeros(N_IN)
    for k in range(3):
        w, b = inits[f"W{k}"], inits[f"B{k}"]
        a, c = w @ a, w @ c + b
    return a, c


def _declare() -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(N_IN)) + "".join(
        f"(declare-const Y_{i} Real)\n" for i in range(N_IN)
    )


def _box(x0: np.ndarray) -> str:
    return "".join(
        f"(assert (>= X_{i} {float(x0[i] - EPS)!r}))\n(assert (<= X_{i} {float(x0[i] + EPS)!r}))\n" for i in range(N_IN)
    )


def properties(model: onnx.ModelProto) -> list[str]:
    """The four properties (VNN-LIB text) for this model."""
    a, c = effective(model)
    x0 = centre()

    def span(row: np.ndarray, const: float) -> tuple[float, float, float]:
        mid = float(row @ x0 + const)
        radius = float(np.abs(row).sum() * EPS)
        return mid - radius, mid, mid + radius

    lo0, mid0, hi0 = span(a[0], c[0])
    _, mid56, hi56 = span(a[5] - a[6], c[5] - c[6])
    lo10, mid10, hi10 = span(a[10], c[10])
    head = _declare() + _box(x0)
    return [
        head
        + f"; p1: Y_0 < {mid0 + 0.5 * (hi0 - mid0)!r} (violated)\n(assert (>= Y_0 {mid0 + 0.5 * (hi0 - mid0)!r}))\n",
        head + f"; p2: Y_5 - Y_6 < t (violated)\n(assert (>= Y_5 (+ Y_6 {mid56 + 0.5 * (hi56 - mid56)!r})))\n",
        head + f"; p3: Y_10 in [a, b] (violated)\n(assert (or (<= Y_10 {lo10 - (hi10 - lo10)!r}) "
        f"(>= Y_10 {mid10 + 0.5 * (hi10 - mid10)!r})))\n",
        head + f"; p4: Y_0 in its range widened by 10% (holds)\n(assert (or (<= Y_0 {lo0 - 0.1 * (hi0 - lo0)!r}) "
        f"(>= Y_0 {hi0 + 0.1 * (hi0 - lo0)!r})))\n",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-root", default=".")
    args = parser.parse_args()
    root = Path(args.out_root)
    for hidden in (512, 1024):
        model = build(hidden)
        onnx.save(model, root / "networks" / f"seed004_h{hidden}.onnx")
        print(f"networks/seed004_h{hidden}.onnx")
        for k, text in enumerate(properties(model), start=1):
            path = root / "properties" / f"seed004_h{hidden}_p{k}.vnnlib"
            path.write_text(text)
            print(path)


if __name__ == "__main__":
    main()
