"""Writes two small ReLU CNN regressors (20x20 and 20x40 inputs) and output-bound properties with few free pixels.

Run from the repository root: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python properties/small_cnn/make_small_cnn.py``
(deterministic: fixed seeds, float64 numpy training, then MILPs by SciPy's HiGHS). Data:
scikit-learn's ``load_digits`` (8x8, pixels /16), upsampled bilinearly to 20x20; ``cnn20`` regresses the digit
(label / 9), ``cnn20x40`` the sum of two digits side by side ((a + b) / 18). Each property pins every pixel of a
test image but ``k`` (2, 8, 16, 50, 200: those with the largest gradient), which may move by ``eps``; the unsafe set
is ``Y_0 <= c`` or ``Y_0 >= c``. Seeded sampling and sign-gradient ascent find a low and a high ``Y_0`` on the box
(the MILP bounds the true extremes); ``c`` is placed a set fraction of the output's range beyond the best point
found (``unsat`` when the MILP's bound (``MILP_S`` limit) proves it, else ``unknown`` in ``expected.csv``: the bench
README says what nnverify decided) or inside it (``sat``: the point is a witness). Writes ``onnx/``, ``vnnlib/``,
``instances.csv`` (60 s), ``expected.csv`` (verdict and the MILP's figures; for scoring only), ``metrics.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from relu_milp import forward as dense_forward  # noqa: E402
from relu_milp import maximise_min  # noqa: E402
from set_files import write_set  # noqa: E402

#: Networks: name, input (height, width), conv channels, hidden units, seed.
NETS = (("cnn20", (20, 20), (4, 8), 32, 1), ("cnn20x40", (20, 40), (4, 8), 32, 2))
#: Free pixels and their radius.
FREE = ((2, 0.5), (8, 0.3), (16, 0.2), (50, 0.1), (200, 0.05))
#: Test images per network.
IMAGES = {"cnn20": 2, "cnn20x40": 1}
#: Threshold offsets, fractions of the output's range on the box (sat: inside, unsat: beyond the optimum).
SAT_FRACTION, UNSAT_FRACTION = 0.02, 0.05
TIMEOUT_S = 60
#: Wall-clock limit of each MILP (its bound only decides whether ``expected.csv`` says ``unsat`` or ``unknown``).
MILP_S = 8.0
KERNEL, STRIDE, PAD = 4, 2, 1


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``load_digits`` scaled to [0, 1], upsampled to 20x20, split 75/25 with a fixed permutation."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    data = load_digits()
    x = np.asarray(data.images, dtype=np.float64) / 16.0
    x = np.clip(np.stack([zoom(im, 2.5, order=1) for im in x]), 0.0, 1.0)
    y = np.asarray(data.target, dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = len(x) // 4
    return x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]


def pairs(x: np.ndarray, y: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images of two digits side by side (20x40) and the sum of their labels."""
    idx = np.random.default_rng(seed).integers(0, len(x), (count, 2))
    return np.concatenate([x[idx[:, 0]], x[idx[:, 1]]], axis=2), y[idx[:, 0]] + y[idx[:, 1]]


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strided convolution ``(N, C, H, W)`` by ``w`` ``(O, C, K, K)``; returns the output and the padded input."""
    xp = np.pad(x, ((0, 0), (0, 0), (PAD, PAD), (PAD, PAD)))
    ho = (x.shape[2] + 2 * PAD - KERNEL) // STRIDE + 1
    wo = (x.shape[3] + 2 * PAD - KERNEL) // STRIDE + 1
    out = np.zeros((x.shape[0], w.shape[0], ho, wo)) + b[None, :, None, None]
    for i in range(KERNEL):
        for j in range(KERNEL):
            patch = xp[:, :, i : i + STRIDE * ho : STRIDE, j : j + STRIDE * wo : STRIDE]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j], optimize=True)
    return out, xp


def conv_grad(g: np.ndarray, xp: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``conv`` for the weights, bias and (unpadded) input."""
    ho, wo = g.shape[2], g.shape[3]
    gw, gxp = np.zeros_like(w), np.zeros_like(xp)
    for i in range(KERNEL):
        for j in range(KERNEL):
            sl = (slice(None), slice(None), slice(i, i + STRIDE * ho, STRIDE), slice(j, j + STRIDE * wo, STRIDE))
            gw[:, :, i, j] = np.einsum("nohw,nchw->oc", g, xp[sl], optimize=True)
            gxp[sl] += np.einsum("nohw,oc->nchw", g, w[:, :, i, j], optimize=True)
    return gw, g.sum(axis=(0, 2, 3)), gxp[:, :, PAD:-PAD, PAD:-PAD]


def net_forward(p: dict, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """``x`` ``(N, 1, H, W)`` -> output ``(N, 1)``; also the values the backward pass needs."""
    z1, xp1 = conv(x, p["c1"], p["b1"])
    a1 = np.maximum(z1, 0.0)
    z2, xp2 = conv(a1, p["c2"], p["b2"])
    a2 = np.maximum(z2, 0.0).reshape(len(x), -1)
    z3 = a2 @ p["w3"].T + p["b3"]
    a3 = np.maximum(z3, 0.0)
    return a3 @ p["w4"].T + p["b4"], {"xp1": xp1, "z1": z1, "xp2": xp2, "z2": z2, "a2": a2, "z3": z3, "a3": a3}


def net_grad(p: dict, c: dict, g: np.ndarray) -> tuple[dict, np.ndarray]:
    """Parameter gradients and the input gradient for output gradient ``g`` ``(N, 1)``."""
    gr = {"w4": g.T @ c["a3"], "b4": g.sum(axis=0)}
    g3 = (g @ p["w4"]) * (c["z3"] > 0)
    gr["w3"], gr["b3"] = g3.T @ c["a2"], g3.sum(axis=0)
    g2 = ((g3 @ p["w3"]).reshape(c["z2"].shape)) * (c["z2"] > 0)
    gr["c2"], gr["b2"], g1 = conv_grad(g2, c["xp2"], p["c2"])
    gr["c1"], gr["b1"], gx = conv_grad(g1 * (c["z1"] > 0), c["xp1"], p["c1"])
    return gr, gx


def train(shape: tuple[int, int], chans: tuple[int, int], hidden: int, seed: int, x: np.ndarray, t: np.ndarray) -> dict:
    """Full-batch Adam on the mean squared error (100 steps)."""
    rng = np.random.default_rng(seed)
    h2 = (shape[0] // 4) * (shape[1] // 4) * chans[1]
    p = {
        "c1": rng.normal(0, np.sqrt(2.0 / KERNEL**2), (chans[0], 1, KERNEL, KERNEL)),
        "b1": np.zeros(chans[0]),
        "c2": rng.normal(0, np.sqrt(2.0 / (chans[0] * KERNEL**2)), (chans[1], chans[0], KERNEL, KERNEL)),
        "b2": np.zeros(chans[1]),
        "w3": rng.normal(0, np.sqrt(2.0 / h2), (hidden, h2)),
        "b3": np.zeros(hidden),
        "w4": rng.normal(0, np.sqrt(1.0 / hidden), (1, hidden)),
        "b4": np.full(1, float(t.mean())),
    }
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(val) for k, val in p.items()}
    lr, b1, b2 = 0.01, 0.9, 0.999
    for step in range(1, 101):
        out, cache = net_forward(p, x)
        grads, _ = net_grad(p, cache, 2.0 * (out - t[:, None]) / len(x))
        for k, g in grads.items():
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            p[k] = p[k] - lr * (m[k] / (1 - b1**step)) / (np.sqrt(v[k] / (1 - b2**step)) + 1e-8)
    return {k: val.astype(np.float32).astype(np.float64) for k, val in p.items()}


def save(p: dict, shape: tuple[int, int], path: Path) -> None:
    """Input ``x`` ``[1, 1, H, W]`` -> Conv, Relu, Conv, Relu, Flatten, Gemm, Relu, Gemm -> ``y`` ``[1, 1]``."""
    conv_attrs = {"kernel_shape": [KERNEL, KERNEL], "strides": [STRIDE, STRIDE], "pads": [PAD] * 4}
    nodes = [
        helper.make_node("Conv", ["x", "c1", "b1"], ["z1"], name="conv1", **conv_attrs),
        helper.make_node("Relu", ["z1"], ["a1"], name="relu1"),
        helper.make_node("Conv", ["a1", "c2", "b2"], ["z2"], name="conv2", **conv_attrs),
        helper.make_node("Relu", ["z2"], ["a2"], name="relu2"),
        helper.make_node("Flatten", ["a2"], ["f2"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f2", "w3", "b3"], ["z3"], name="gemm3", transB=1),
        helper.make_node("Relu", ["z3"], ["a3"], name="relu3"),
        helper.make_node("Gemm", ["a3", "w4", "b4"], ["y"], name="gemm4", transB=1),
    ]
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in p.items()]
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, *shape])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_small_cnn.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def dense_layers(p: dict, shape: tuple[int, int], x0: np.ndarray, free: np.ndarray) -> list:
    """The network as dense ``(W, b)`` layers over the free pixels (the pinned ones folded into the first bias)."""
    n = shape[0] * shape[1]
    eye = np.eye(n).reshape(n, 1, *shape)
    m1, _ = conv(eye, p["c1"], np.zeros(len(p["b1"])))
    h1 = m1.shape[1:]
    b1 = np.broadcast_to(p["b1"][:, None, None], h1).reshape(-1)
    w1 = m1.reshape(n, -1).T
    n1 = w1.shape[1]
    m2, _ = conv(np.eye(w1.shape[0]).reshape(-1, *h1), p["c2"], np.zeros(len(p["b2"])))
    b2 = np.broadcast_to(p["b2"][:, None, None], m2.shape[1:]).reshape(-1)
    w2 = m2.reshape(m2.shape[0], -1).T
    pinned = np.setdiff1d(np.arange(n1), free)
    first = (w1[:, free], b1 + w1[:, pinned] @ x0[pinned])
    return [first, (w2, b2), (p["w3"], p["b3"]), (p["w4"], p["b4"])]


def vnnlib(lb: np.ndarray, ub: np.ndarray, sense: str, c: float, comment: str) -> str:
    """The box and the unsafe set ``Y_0 <= c`` (``sense`` ``"<="``) or ``Y_0 >= c``."""
    lines = [f"; {comment}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(lb.size)]
    lines.append("(declare-const Y_0 Real)")
    for i in range(lb.size):
        lines += [f"(assert (>= X_{i} {float(lb[i])!r}))", f"(assert (<= X_{i} {float(ub[i])!r}))"]
    lines.append(f"(assert ({sense} Y_0 {c!r}))")
    return "\n".join(lines) + "\n"


def properties(name: str, p: dict, shape: tuple[int, int], image: np.ndarray, tag: str, first: int) -> list[dict]:
    """Two properties (one ``sat``, one ``unsat``) per number of free pixels, on one image."""
    x0 = image.reshape(-1).astype(np.float32).astype(np.float64)
    _, cache = net_forward(p, x0.reshape(1, 1, *shape))
    _, gx = net_grad(p, cache, np.ones((1, 1)))
    order = np.argsort(-np.abs(gx.reshape(-1)), kind="stable")
    rows = []
    for b, (k, eps) in enumerate(FREE):
        free = np.sort(order[:k])
        lb, ub = x0.copy(), x0.copy()
        lb[free] = np.clip(x0[free] - eps, 0.0, 1.0).astype(np.float32)
        ub[free] = np.clip(x0[free] + eps, 0.0, 1.0).astype(np.float32)
        layers = dense_layers(p, shape, x0, free)
        low = maximise_min(layers, lb[free], ub[free], np.array([[-1.0]]), np.zeros(1), MILP_S)
        high = maximise_min(layers, lb[free], ub[free], np.array([[1.0]]), np.zeros(1), MILP_S)
        y_min, y_max = -low.value, high.value
        span = max(y_max - y_min, 1e-3)
        sat_low = (b + first) % 2 == 0
        for side, opt in (("low", low), ("high", high)):
            sat = sat_low == (side == "low")
            sign = -1.0 if side == "low" else 1.0
            if sat:  # inside the reachable range: the optimiser reaches it
                c = sign * (opt.value - SAT_FRACTION * span)
                x = x0.copy()
                x[free] = opt.x
                y = float(dense_forward(layers, opt.x[None, :])[0, 0])
                assert sign * (y - c) >= 0.5 * SAT_FRACTION * span, (name, k, side)
            else:  # beyond the best point found; the MILP's bound may prove it
                c = sign * (opt.value + UNSAT_FRACTION * span)
            c = float(np.float32(c))
            proved = sat or opt.bound < opt.value + UNSAT_FRACTION * span
            prop = f"{name}_{tag}_free{k}_{side}.vnnlib"
            sense = "<=" if side == "low" else ">="
            comment = f"{name} {tag}: {k} free pixels, eps {eps}; unsafe Y_0 {sense} {c}"
            rows.append(
                {
                    "onnx": f"onnx/{name}.onnx",
                    "vnnlib": f"vnnlib/{prop}",
                    "expected": "sat" if sat else ("unsat" if proved else "unknown"),
                    "text": vnnlib(lb, ub, sense, c, comment),
                    "y_min": y_min,
                    "y_max": y_max,
                    "threshold": c,
                    "milp_s": round(opt.seconds, 2),
                    "milp_decides": proved,
                }
            )
        print(
            f"{name} {tag} k={k}: y in [{y_min:.4f}, {y_max:.4f}] (bounds {-low.bound:.4f}, {high.bound:.4f})"
            f", MILP {low.seconds:.1f} + {high.seconds:.1f} s",
            flush=True,
        )
    return rows


def main() -> None:
    x_tr, y_tr, x_te, y_te = load()
    (HERE / "onnx").mkdir(exist_ok=True)
    (HERE / "vnnlib").mkdir(exist_ok=True)
    metrics: dict[str, float] = {}
    rows: list[dict] = []
    for name, shape, chans, hidden, seed in NETS:
        if shape[1] == shape[0]:
            xs, ts, xt, tt, scale = x_tr, y_tr, x_te, y_te, 9.0
        else:
            xs, ts = pairs(x_tr, y_tr, 600, seed)
            xt, tt = pairs(x_te, y_te, 200, seed + 100)
            scale = 18.0
        p = train(shape, chans, hidden, seed, xs[:, None], ts / scale)
        save(p, shape, HERE / "onnx" / f"{name}.onnx")
        pred = net_forward(p, xt[:, None])[0][:, 0] * scale
        metrics[f"{name}_test_mae_digits"] = round(float(np.mean(np.abs(pred - tt))), 4)
        for i in range(IMAGES[name]):
            rows += properties(name, p, shape, xt[i], f"img{i}", i)
    write_set(HERE, rows, metrics, TIMEOUT_S)


if __name__ == "__main__":
    main()
