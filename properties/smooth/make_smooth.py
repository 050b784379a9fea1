"""Writes small Tanh and Sigmoid digit classifiers (64 free inputs) and L-infinity robustness properties for them.

Run from the repository root: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python properties/smooth/make_smooth.py``
(deterministic: fixed seeds, float64 numpy training, about 20 s of CPU). Data: scikit-learn's bundled
``load_digits`` (8x8, pixels /16, split 75/25 with a fixed permutation as in ``properties/queries/digits``).
Writes ``onnx/*.onnx``, ``vnnlib/*.vnnlib`` (VNN-LIB 1.0: the box ``[x - eps, x + eps]`` clipped to ``[0, 1]``, the
unsafe set "some other logit >= the true one"), ``instances.csv`` (60 s each) and ``metrics.json``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

HERE = Path(__file__).parent
#: Networks: name, layer sizes, ONNX activation, seed.
NETS = (
    ("tanh_32x2", (64, 32, 32, 10), "Tanh", 1),
    ("sigmoid_32x2", (64, 32, 32, 10), "Sigmoid", 2),
    ("tanh_64", (64, 64, 10), "Tanh", 3),
)
#: Radii of the properties (pixels in [0, 1]).
EPSILONS = (0.08, 0.09, 0.1, 0.11, 0.12)
#: Test images per network (the first ones the network classifies correctly).
IMAGES = 3
TIMEOUT_S = 60


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``load_digits`` scaled to [0, 1], split 75/25 with a fixed permutation."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = len(x) // 4
    return x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]


def activate(kind: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The activation's value and derivative."""
    if kind == "Tanh":
        a = np.tanh(z)
        return a, 1.0 - a * a
    a = 1.0 / (1.0 + np.exp(-z))
    return a, a * (1.0 - a)


def forward(params: list[list[np.ndarray]], kind: str, x: np.ndarray) -> tuple[np.ndarray, list, list]:
    acts, grads = [x], []
    for k, (w, b) in enumerate(params):
        z = acts[-1] @ w + b
        if k == len(params) - 1:
            return z, acts, grads
        a, d = activate(kind, z)
        acts.append(a)
        grads.append(d)
    raise AssertionError("unreachable")


def train(sizes: tuple[int, ...], kind: str, seed: int, x: np.ndarray, y: np.ndarray, steps: int = 600) -> list:
    """Full-batch Adam on softmax cross-entropy with a small weight decay."""
    rng = np.random.default_rng(seed)
    params = [[rng.normal(0, np.sqrt(1.0 / a), (a, b)), np.zeros(b)] for a, b in itertools.pairwise(sizes)]
    m = [[np.zeros_like(p) for p in layer] for layer in params]
    v = [[np.zeros_like(p) for p in layer] for layer in params]
    lr, b1, b2 = 0.01, 0.9, 0.999
    for t in range(1, steps + 1):
        out, acts, grads = forward(params, kind, x)
        p = np.exp(out - out.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(x)), y] -= 1.0
        g = p / len(x)
        for k in range(len(params) - 1, -1, -1):
            w, _ = params[k]
            gw, gb = acts[k].T @ g, g.sum(axis=0)
            if k:
                g = (g @ w.T) * grads[k - 1]
            for j, gr in enumerate((gw + 1e-4 * w, gb)):
                m[k][j] = b1 * m[k][j] + (1 - b1) * gr
                v[k][j] = b2 * v[k][j] + (1 - b2) * gr * gr
                params[k][j] = params[k][j] - lr * (m[k][j] / (1 - b1**t)) / (np.sqrt(v[k][j] / (1 - b2**t)) + 1e-8)
    return params


def save(params: list, kind: str, path: Path) -> None:
    """Input ``x`` ``[1, 64]`` -> (Gemm, activation)* -> Gemm -> logits ``y`` ``[1, 10]``."""
    nodes, inits, src = [], [], "x"
    for k, (w, b) in enumerate(params):
        inits += [
            numpy_helper.from_array(w.T.astype(np.float32), f"W{k}"),
            numpy_helper.from_array(b.astype(np.float32), f"B{k}"),
        ]
        last = k == len(params) - 1
        out = "y" if last else f"z{k}"
        nodes.append(helper.make_node("Gemm", [src, f"W{k}", f"B{k}"], [out], transB=1, name=f"gemm{k}"))
        if not last:
            src = f"a{k}"
            nodes.append(helper.make_node(kind, [out], [src], name=f"act{k}"))
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_smooth.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def vnnlib(x: np.ndarray, label: int, eps: float) -> str:
    """Robustness of ``label`` on the box ``[x - eps, x + eps]`` clipped to [0, 1] (float32 end points)."""
    lo = np.clip(x - eps, 0.0, 1.0).astype(np.float32)
    hi = np.clip(x + eps, 0.0, 1.0).astype(np.float32)
    lines = [f"; digits robustness, label {label}, eps {eps}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(x.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(10)]
    for i in range(x.size):
        lines += [f"(assert (>= X_{i} {float(lo[i])!r}))", f"(assert (<= X_{i} {float(hi[i])!r}))"]
    others = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(10) if j != label)
    lines.append(f"(assert (or {others}))")
    return "\n".join(lines) + "\n"


def main() -> None:
    x_tr, y_tr, x_te, y_te = load()
    (HERE / "onnx").mkdir(exist_ok=True)
    (HERE / "vnnlib").mkdir(exist_ok=True)
    metrics: dict[str, float] = {}
    rows = []
    for name, sizes, kind, seed in NETS:
        params = train(sizes, kind, seed, x_tr, y_tr)
        save(params, kind, HERE / "onnx" / f"digits_{name}.onnx")
        pred = np.argmax(forward(params, kind, x_te)[0], axis=1)
        metrics[f"{name}_test_accuracy"] = round(float(np.mean(pred == y_te)), 4)
        for idx in np.flatnonzero(pred == y_te)[:IMAGES]:
            for eps in EPSILONS:
                prop = f"digits_{name}_img{idx}_eps{eps}.vnnlib"
                (HERE / "vnnlib" / prop).write_text(vnnlib(x_te[idx], int(y_te[idx]), eps))
                rows.append(f"onnx/digits_{name}.onnx,vnnlib/{prop},{TIMEOUT_S}")
    (HERE / "instances.csv").write_text("\n".join(rows) + "\n")
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
