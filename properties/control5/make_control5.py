"""Writes two 5-input, 5-output ReLU control networks and properties whose unsafe set is a conjunction of output bounds.

Run from the repository root: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python properties/control5/make_control5.py``
(deterministic: fixed seeds, float64 numpy training, then one MILP per property by SciPy's HiGHS, through
``../small_cnn/relu_milp.py``). The networks imitate a saturating control law ``u = tanh(K s) + 0.3 sin(2 B s)`` on
states ``s`` in ``[-1, 1]^5`` (``K``, ``B`` fixed random matrices). Each property takes a sub-box of the states and
bounds 2 to 5 outputs, ``s_i Y_i >= a_i`` (signs ``s_i`` random); seeded sampling and ascent find a large ``t`` such
that every normalised row ``(s_i Y_i - a_i) / r_i >= t`` at one point of the box (the MILP bounds the largest), and
the thresholds are shifted so that this value is ``+delta`` (``sat``: the best point found, by seeded sampling and
ascent, is a witness) or ``-delta`` (``unsat`` when the MILP's bound proves it within its 20 s limit, else
``unknown`` in ``expected.csv``: the bench README says what nnverify decided). Writes ``onnx/``, ``vnnlib/``,
``instances.csv`` (60 s), ``expected.csv`` (for scoring only) and ``metrics.json``.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "small_cnn"))
from relu_milp import forward, maximise_min  # noqa: E402
from set_files import write_set  # noqa: E402

#: Networks: name, layer sizes, seed.
NETS = (("ctrl_32x2", (5, 32, 32, 5), 1), ("ctrl_64x3", (5, 64, 64, 64, 5), 2))
#: Properties per network, and their margins (fractions of each output's sampled range on the box).
PROPS = 10
SAT_DELTAS, UNSAT_DELTAS = (0.003, 0.02), (0.01, 0.05)
TIMEOUT_S = 60


def target(s: np.ndarray) -> np.ndarray:
    """The control law the networks imitate."""
    rng = np.random.default_rng(0)
    k, b = rng.normal(0, 0.8, (5, 5)), rng.normal(0, 0.8, (5, 5))
    return np.tanh(s @ k.T) + 0.3 * np.sin(2.0 * s @ b.T)


def train(sizes: tuple[int, ...], seed: int, steps: int = 1500) -> list[tuple[np.ndarray, np.ndarray]]:
    """Full-batch Adam on the mean squared error, 4,000 uniform states."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (4000, 5))
    t = target(x)
    params = [[rng.normal(0, np.sqrt(2.0 / a), (b, a)), np.zeros(b)] for a, b in itertools.pairwise(sizes)]
    m = [[np.zeros_like(p) for p in layer] for layer in params]
    v = [[np.zeros_like(p) for p in layer] for layer in params]
    lr, b1, b2 = 0.005, 0.9, 0.999
    for step in range(1, steps + 1):
        acts = [x]
        for k, (w, b) in enumerate(params):
            z = acts[-1] @ w.T + b
            acts.append(np.maximum(z, 0.0) if k < len(params) - 1 else z)
        g = 2.0 * (acts[-1] - t) / len(x)
        for k in range(len(params) - 1, -1, -1):
            w = params[k][0]
            grads = (g.T @ acts[k], g.sum(axis=0))
            if k:
                g = (g @ w) * (acts[k] > 0)
            for j, gr in enumerate(grads):
                m[k][j] = b1 * m[k][j] + (1 - b1) * gr
                v[k][j] = b2 * v[k][j] + (1 - b2) * gr * gr
                params[k][j] = params[k][j] - lr * (m[k][j] / (1 - b1**step)) / (
                    np.sqrt(v[k][j] / (1 - b2**step)) + 1e-8
                )
    return [(w.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)) for w, b in params]


def save(layers: list, path: Path) -> None:
    """Input ``x`` ``[1, 5]`` -> (Gemm, Relu)* -> Gemm -> ``y`` ``[1, 5]``."""
    nodes, inits, src = [], [], "x"
    for k, (w, b) in enumerate(layers):
        inits += [
            numpy_helper.from_array(w.astype(np.float32), f"W{k}"),
            numpy_helper.from_array(b.astype(np.float32), f"B{k}"),
        ]
        last = k == len(layers) - 1
        out = "y" if last else f"z{k}"
        nodes.append(helper.make_node("Gemm", [src, f"W{k}", f"B{k}"], [out], transB=1, name=f"gemm{k}"))
        if not last:
            src = f"a{k}"
            nodes.append(helper.make_node("Relu", [out], [src], name=f"relu{k}"))
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 5])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_control5.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def vnnlib(lb: np.ndarray, ub: np.ndarray, outs: np.ndarray, signs: np.ndarray, a: np.ndarray, comment: str) -> str:
    """The box and the unsafe conjunction ``Y_i >= a_i`` (sign +1) / ``Y_i <= -a_i`` (sign -1)."""
    lines = [f"; {comment}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(5)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(5)]
    for i in range(5):
        lines += [f"(assert (>= X_{i} {float(lb[i])!r}))", f"(assert (<= X_{i} {float(ub[i])!r}))"]
    for j, s, c in zip(outs, signs, a, strict=True):
        lines.append(f"(assert ({'>=' if s > 0 else '<='} Y_{j} {float(np.float32(s * c))!r}))")
    return "\n".join(lines) + "\n"


def one_property(layers: list, rng: np.random.Generator, index: int, name: str) -> dict:
    """A random box and output conjunction, thresholds placed by the MILP (even index: ``sat``)."""
    centre = rng.uniform(-0.6, 0.6, 5)
    half = rng.uniform(0.05, 0.4, 5)
    lb = np.clip(centre - half, -1.0, 1.0).astype(np.float32).astype(np.float64)
    ub = np.clip(centre + half, -1.0, 1.0).astype(np.float32).astype(np.float64)
    outs = np.sort(rng.choice(5, 2 + index % 4, replace=False))
    signs = rng.choice([-1.0, 1.0], len(outs))
    ys = forward(layers, rng.uniform(lb, ub, (4000, 5)))[:, outs] * signs
    a0, span = np.quantile(ys, 0.8, axis=0), np.maximum(np.ptp(ys, axis=0), 1e-3)
    rows = np.zeros((len(outs), 5))
    rows[np.arange(len(outs)), outs] = signs / span
    opt = maximise_min(layers, lb, ub, rows, -a0 / span)
    sat = index % 2 == 0
    delta = (SAT_DELTAS if sat else UNSAT_DELTAS)[(index // 2) % 2]
    a = a0 + span * (opt.value - delta if sat else opt.value + delta)
    proved = sat or opt.bound < opt.value + delta
    a = np.asarray([float(np.float32(s * c)) * s for s, c in zip(signs, a, strict=True)])
    if sat:
        y = forward(layers, opt.x[None, :])[0, outs] * signs
        assert np.all(y - a >= 0.5 * delta * span), (name, index)
    prop = f"{name}_prop{index}.vnnlib"
    comment = f"{name} property {index}: outputs {outs.tolist()} signs {signs.tolist()}, margin {delta}"
    print(
        f"{name} {index}: {'sat' if sat else 'unsat'} t*={opt.value:.4f} bound={opt.bound:.4f}",
        f"{opt.seconds:.1f} s {proved}",
        flush=True,
    )
    return {
        "onnx": f"onnx/{name}.onnx",
        "vnnlib": f"vnnlib/{prop}",
        "expected": "sat" if sat else ("unsat" if proved else "unknown"),
        "text": vnnlib(lb, ub, outs, signs, a, comment),
        "outputs": len(outs),
        "margin": delta,
        "milp_s": round(opt.seconds, 2),
        "milp_decides": proved,
    }


def main() -> None:
    (HERE / "onnx").mkdir(exist_ok=True)
    (HERE / "vnnlib").mkdir(exist_ok=True)
    metrics: dict[str, float] = {}
    rows: list[dict] = []
    test = np.random.default_rng(99).uniform(-1.0, 1.0, (2000, 5))
    for name, sizes, seed in NETS:
        layers = train(sizes, seed)
        save(layers, HERE / "onnx" / f"{name}.onnx")
        metrics[f"{name}_test_rmse"] = round(float(np.sqrt(np.mean((forward(layers, test) - target(test)) ** 2))), 4)
        rng = np.random.default_rng(seed + 10)
        rows += [one_property(layers, rng, i, name) for i in range(PROPS)]
    write_set(HERE, rows, metrics, TIMEOUT_S)


if __name__ == "__main__":
    main()
