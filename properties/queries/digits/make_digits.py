"""Writes the digits networks of the slide queries: classifiers ``nn1.onnx``, ``nn2.onnx`` and a decoder ``gen.onnx``.

Run from the repository root: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python properties/queries/digits/make_digits.py``
(deterministic: fixed seeds, float64 numpy training, about 40 s of CPU; with one BLAS thread the files are
bit-identical to the shipped ones, while several threads change the last bits of ``gen.onnx``). Data:
scikit-learn's bundled ``load_digits`` (8×8, pixels /16).
Also writes the constant images the queries use (``image_<k>.npy``) and ``metrics.json`` (test accuracies).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

HERE = Path(__file__).parent
#: Latent size of the decoder GEN(z, c): z in [-1, 1]^4, c a one-hot class.
LATENT = 4
#: Digits whose first test image is written as a constant ``image_<digit>.npy``.
IMAGES = (3, 8)


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``load_digits`` scaled to [0, 1], split 75/25 with a fixed permutation."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = len(x) // 4
    return x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]


def init(sizes: tuple[int, ...], rng: np.random.Generator) -> list[list[np.ndarray]]:
    return [[rng.normal(0, np.sqrt(2.0 / a), (a, b)), np.zeros(b)] for a, b in itertools.pairwise(sizes)]


def forward(params: list[list[np.ndarray]], x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    acts = [x]
    for k, (w, b) in enumerate(params):
        z = acts[-1] @ w + b
        acts.append(np.maximum(z, 0.0) if k < len(params) - 1 else z)
    return acts[-1], acts


def train(params: list[list[np.ndarray]], x: np.ndarray, target: np.ndarray, loss: str, steps: int) -> None:
    """Full-batch Adam on softmax cross-entropy (``target`` labels) or mean squared error (``target`` values)."""
    m = [[np.zeros_like(p) for p in layer] for layer in params]
    v = [[np.zeros_like(p) for p in layer] for layer in params]
    lr, b1, b2 = 0.01, 0.9, 0.999
    for t in range(1, steps + 1):
        out, acts = forward(params, x)
        if loss == "xent":
            p = np.exp(out - out.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(x)), target] -= 1.0
            grad = p / len(x)
        else:
            grad = 2.0 * (out - target) / out.size
        for k in range(len(params) - 1, -1, -1):
            w, _ = params[k]
            gw, gb = acts[k].T @ grad, grad.sum(axis=0)
            if k:
                grad = (grad @ w.T) * (acts[k] > 0)
            for j, g in enumerate((gw + 1e-4 * w, gb)):
                m[k][j] = b1 * m[k][j] + (1 - b1) * g
                v[k][j] = b2 * v[k][j] + (1 - b2) * g * g
                step = lr * (m[k][j] / (1 - b1**t)) / (np.sqrt(v[k][j] / (1 - b2**t)) + 1e-8)
                params[k][j] = params[k][j] - step


def mlp_nodes(params: list[list[np.ndarray]], src: str, out: str, prefix: str) -> tuple[list, list]:
    """Gemm/Relu nodes: hidden ReLU outputs named ``l1``, ``l2``, …; the last Gemm writes ``out``."""
    nodes, inits = [], []
    for k, (w, b) in enumerate(params):
        wn, bn = f"{prefix}W{k + 1}", f"{prefix}B{k + 1}"
        inits += [numpy_helper.from_array(w.astype(np.float32), wn), numpy_helper.from_array(b.astype(np.float32), bn)]
        last = k == len(params) - 1
        gemm_out = out if last else f"{prefix}z{k + 1}"
        nodes.append(helper.make_node("Gemm", [src, wn, bn], [gemm_out], name=f"{prefix}gemm{k + 1}"))
        if not last:
            src = f"l{k + 1}"
            nodes.append(helper.make_node("Relu", [gemm_out], [src], name=f"{prefix}relu{k + 1}"))
    return nodes, inits


def save(nodes: list, inits: list, inputs: list, output: onnx.ValueInfoProto, path: Path) -> None:
    graph = helper.make_graph(nodes, path.stem, inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_digits.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def save_classifier(params: list[list[np.ndarray]], path: Path) -> None:
    """Input ``x`` ``[1,8,8]`` -> flatten -> MLP -> logits ``y`` ``[1,10]``."""
    shape = numpy_helper.from_array(np.array([1, 64], dtype=np.int64), "flat_shape")
    nodes, inits = mlp_nodes(params, "flat", "y", "")
    nodes.insert(0, helper.make_node("Reshape", ["x", "flat_shape"], ["flat"], name="flatten"))
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 10])
    save(nodes, [shape, *inits], [x], y, path)


def save_generator(params: list[list[np.ndarray]], path: Path) -> None:
    """Inputs ``z`` ``[1,4]`` and ``c`` ``[1,10]`` (one-hot) -> concat -> MLP -> image ``img`` ``[1,8,8]``."""
    shape = numpy_helper.from_array(np.array([1, 8, 8], dtype=np.int64), "img_shape")
    nodes, inits = mlp_nodes(params, "zc", "flat", "g")
    nodes.insert(0, helper.make_node("Concat", ["z", "c"], ["zc"], axis=1, name="concat"))
    nodes.append(helper.make_node("Reshape", ["flat", "img_shape"], ["img"], name="unflatten"))
    z = helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, LATENT])
    c = helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [1, 10])
    img = helper.make_tensor_value_info("img", onnx.TensorProto.FLOAT, [1, 8, 8])
    save(nodes, [shape, *inits], [z, c], img, path)


def accuracy(params: list[list[np.ndarray]], x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(forward(params, x)[0], axis=1) == y))


def latent_codes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each image's coordinates on the top ``LATENT`` principal directions of its class residual, in [-1, 1]."""
    means = np.stack([x[y == d].mean(axis=0) for d in range(10)])
    resid = x - means[y]
    _, _, vt = np.linalg.svd(resid, full_matrices=False)
    vt *= np.where(vt[:, :1] < 0, -1.0, 1.0)  # a fixed sign per direction
    codes = resid @ vt[:LATENT].T
    return np.clip(codes / np.quantile(np.abs(codes), 0.98, axis=0), -1.0, 1.0)


def main() -> None:
    x_tr, y_tr, x_te, y_te = load()
    metrics: dict[str, float] = {}
    for name, sizes, seed in (("nn1", (64, 32, 16, 10), 1), ("nn2", (64, 24, 10), 2)):
        params = init(sizes, np.random.default_rng(seed))
        train(params, x_tr, y_tr, "xent", 400)
        save_classifier(params, HERE / f"{name}.onnx")
        metrics[f"{name}_test_accuracy"] = round(accuracy(params, x_te, y_te), 4)
    gen = init((LATENT + 10, 32, 64), np.random.default_rng(3))
    inputs = np.hstack([latent_codes(x_tr, y_tr), np.eye(10)[y_tr]])
    train(gen, inputs, x_tr, "mse", 1500)
    save_generator(gen, HERE / "gen.onnx")
    metrics["gen_train_mse"] = round(float(np.mean((forward(gen, inputs)[0] - x_tr) ** 2)), 5)
    for digit in IMAGES:
        k = int(np.flatnonzero(y_te == digit)[0])
        np.save(HERE / f"image_{digit}.npy", x_te[k].reshape(8, 8).astype(np.float32))
        metrics[f"image_{digit}_test_index"] = k
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
