"""Writes two larger 5-input, 5-output ReLU control networks and properties bounding all 5 outputs at once.

Run from the repository root: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python properties/control5_hard/make_control5_hard.py``
(deterministic but for the MILP's wall-clock limit: fixed seeds, float64 numpy training, one MILP per property by
SciPy's HiGHS through ``../small_cnn/relu_milp.py``). A harder analogue of ``../control5`` (issue 25's slow control
family): the same saturating control law ``u = tanh(K s) + 0.3 sin(2 B s)`` on states ``s`` in ``[-1, 1]^5``, imitated
by a 5-64-64-64-64-5 and a 5-128-128-5 MLP; each property takes the whole state box (properties 0 and 1) or a large
sub-box (half-widths 0.3-0.8) and bounds every output, ``s_i Y_i >= a_i`` (signs ``s_i`` random). Seeded sampling
and ascent find a large ``t`` such that every normalised row ``(s_i Y_i - a_i) / r_i >= t`` at one point of the box;
the thresholds are shifted so that this value is ``+delta`` (``sat``: that point is a witness) or, for ``unsat``,
``delta`` beyond the MILP's proven optimum (``unknown`` in ``expected.csv`` when the MILP does not close its gap
within ``MILP_S`` seconds: then the threshold is ``delta`` beyond the best point found). ``delta`` is 1e-3 or 1e-4
of each output's sampled range. Writes ``onnx/``, ``vnnlib/``, ``instances.csv`` (60 s), ``expected.csv`` (for
scoring only) and ``metrics.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "small_cnn"))
sys.path.insert(0, str(HERE.parent / "control5"))
from make_control5 import save, target, train, vnnlib  # noqa: E402
from relu_milp import forward, maximise_min, objective  # noqa: E402
from set_files import write_set  # noqa: E402

#: Networks: name, layer sizes, seed.
NETS = (("ctrl_64x4", (5, 64, 64, 64, 64, 5), 3), ("ctrl_128x2", (5, 128, 128, 5), 4))
#: Properties per network, and their margins (fractions of each output's sampled range on the box).
PROPS = 10
DELTAS = (1e-3, 1e-4)
TIMEOUT_S = 60
#: Wall-clock limit of each MILP (HiGHS, one thread).
MILP_S = 60.0


def best_point(
    layers: list, lb: np.ndarray, ub: np.ndarray, rows: np.ndarray, consts: np.ndarray
) -> tuple[np.ndarray, float]:
    """A better point than ``relu_milp.search_best``'s (a deeper ``sat`` sliver): 100,000 samples, then 400
    sign-gradient ascent steps from the best 64, the step shrinking from 5 % to 1e-6 of the box (fixed seed)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(lb, ub, (100_000, lb.size))
    x = x[np.argsort(-objective(layers, x, rows, consts))[:64]]
    steps = 400
    for i in range(steps):
        step = 0.05 * (ub - lb) * (2e-5 ** (i / (steps - 1)))
        acts, zs = [x], []
        for k, (w, b) in enumerate(layers):
            zs.append(acts[-1] @ w.T + b)
            acts.append(np.maximum(zs[-1], 0.0) if k < len(layers) - 1 else zs[-1])
        g = rows[np.argmin(acts[-1] @ rows.T + consts, axis=1)]
        for k in range(len(layers) - 1, -1, -1):
            g = g @ layers[k][0]
            if k:
                g = g * (zs[k - 1] > 0)
        trial = np.clip(x + step * np.sign(g), lb, ub)
        better = objective(layers, trial, rows, consts) >= objective(layers, x, rows, consts)
        x = np.where(better[:, None], trial, x)
    vals = objective(layers, x, rows, consts)
    return x[int(np.argmax(vals))], float(vals.max())


def one_property(layers: list, rng: np.random.Generator, index: int, name: str) -> dict:
    """A box and the 5-output conjunction, thresholds placed by the best point and the MILP (even index: ``sat``)."""
    if index < 2:
        lb, ub = -np.ones(5), np.ones(5)
    else:
        centre = rng.uniform(-0.3, 0.3, 5)
        half = rng.uniform(0.3, 0.8, 5)
        lb = np.clip(centre - half, -1.0, 1.0).astype(np.float32).astype(np.float64)
        ub = np.clip(centre + half, -1.0, 1.0).astype(np.float32).astype(np.float64)
    outs = np.arange(5)
    signs = rng.choice([-1.0, 1.0], 5)
    ys = forward(layers, rng.uniform(lb, ub, (4000, 5)))[:, outs] * signs
    a0, span = np.quantile(ys, 0.8, axis=0), np.maximum(np.ptp(ys, axis=0), 1e-3)
    rows = np.zeros((5, 5))
    rows[np.arange(5), outs] = signs / span
    sat = index % 2 == 0
    opt = maximise_min(layers, lb, ub, rows, -a0 / span, time_limit=1.0 if sat else MILP_S)
    delta = DELTAS[(index // 2) % 2]
    x_best, value = best_point(layers, lb, ub, rows, -a0 / span)
    if opt.value > value:
        x_best, value = opt.x, opt.value
    closed = np.isfinite(opt.bound) and opt.bound - value < delta
    # sat: just inside the best point; unsat: beyond the proven optimum if the MILP closed its gap, else the point
    level = value - delta if sat else (max(opt.bound, value) if closed else value) + delta
    a = a0 + span * level
    a = np.asarray([float(np.float32(s * c)) * s for s, c in zip(signs, a, strict=True)])
    if sat:
        y = forward(layers, x_best[None, :])[0, outs] * signs
        assert np.all(y - a >= 0.5 * delta * span), (name, index)
    prop = f"{name}_prop{index}.vnnlib"
    comment = f"{name} property {index}: outputs {outs.tolist()} signs {signs.tolist()}, margin {delta}"
    print(
        f"{name} {index}: {'sat' if sat else 'unsat'} t*={value:.5f} (sampled {opt.value:.5f})",
        f"bound={opt.bound:.5f} milp={opt.milp_value:.5f} {opt.seconds:.1f} s closed={closed}",
        flush=True,
    )
    return {
        "onnx": f"onnx/{name}.onnx",
        "vnnlib": f"vnnlib/{prop}",
        "expected": "sat" if sat else ("unsat" if closed else "unknown"),
        "text": vnnlib(lb, ub, outs, signs, a, comment),
        "outputs": 5,
        "margin": delta,
        "box_volume": round(float(np.prod((ub - lb) / 2.0)), 4),
        "milp_s": round(opt.seconds, 2),
        "milp_decides": bool(closed) or sat,
    }


def main() -> None:
    (HERE / "onnx").mkdir(exist_ok=True)
    (HERE / "vnnlib").mkdir(exist_ok=True)
    metrics: dict[str, float] = {}
    rows: list[dict] = []
    test = np.random.default_rng(99).uniform(-1.0, 1.0, (2000, 5))
    only = sys.argv[1:]
    for name, sizes, seed in NETS:
        layers = train(sizes, seed)
        save(layers, HERE / "onnx" / f"{name}.onnx")
        metrics[f"{name}_test_rmse"] = round(float(np.sqrt(np.mean((forward(layers, test) - target(test)) ** 2))), 4)
        rng = np.random.default_rng(seed + 10)
        rows += [one_property(layers, rng, i, name) for i in range(PROPS)]
        if only and name in only:
            break
    write_set(HERE, rows, metrics, TIMEOUT_S)


if __name__ == "__main__":
    main()
