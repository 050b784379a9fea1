"""Exact optimisation over a dense ReLU network by a big-M MILP (SciPy's HiGHS), independent of nnverify.

Used by ``make_small_cnn.py`` and ``../control5/make_control5.py`` to place every property's thresholds at a known
distance from the true optimum, so each expected verdict follows from the construction and one MILP solve.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp


@dataclass(frozen=True, slots=True)
class Optimum:
    """Result of ``maximise_min``: the best point sampling and ascent found (seeded: reproducible), its value and
    the MILP's proven upper bound (``inf`` when the MILP's wall-clock limit left none: may vary with the load) and
    the value at the MILP's own best point (``-inf`` if none)."""

    x: np.ndarray
    value: float
    bound: float
    seconds: float
    milp_value: float = -np.inf


def forward(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """``x`` ``(B, n)`` through dense ``(W, b)`` layers (``W`` ``(out, in)``), ReLU between them."""
    for k, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if k < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def _upper(
    layers: list, bounds: list, top: int, a: np.ndarray, c: np.ndarray, lb: np.ndarray, ub: np.ndarray
) -> np.ndarray:
    """Upper bounds of ``a . relu(z_{top-1}) + c`` by back-substitution (CROWN's linear ReLU relaxation)."""
    for k in range(top - 1, -1, -1):
        zl, zu = bounds[k]
        unstable = (zl < 0.0) & (zu > 0.0)
        width = np.where(unstable, zu - zl, 1.0)
        up = np.where(zl >= 0.0, 1.0, np.where(unstable, zu / width, 0.0))
        low = np.where(zl >= 0.0, 1.0, np.where(unstable, (zu > -zl) * 1.0, 0.0))
        pos, neg = np.maximum(a, 0.0), np.minimum(a, 0.0)
        c = c + pos @ np.where(unstable, -zl * zu / width, 0.0)
        a = pos * up + neg * low
        w, b = layers[k]
        c, a = c + a @ b, a @ w
    return c + np.maximum(a, 0.0) @ ub + np.minimum(a, 0.0) @ lb


def interval_bounds(layers: list, lb: np.ndarray, ub: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pre-activation bounds of every layer (intervals intersected with CROWN's), widened outward a little."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    lo, hi = lb, ub
    for k, (w, b) in enumerate(layers):
        wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
        zl, zu = wp @ lo + wn @ hi + b, wp @ hi + wn @ lo + b
        if k:
            zu = np.minimum(zu, _upper(layers, out, k, w, b, lb, ub))
            zl = np.maximum(zl, -_upper(layers, out, k, -w, -b, lb, ub))
        pad = 1e-6 * (1.0 + np.abs(zl) + np.abs(zu))
        out.append((zl - pad, zu + pad))
        lo, hi = np.maximum(zl, 0.0), np.maximum(zu, 0.0)
    return out


def objective(layers: list, x: np.ndarray, rows: np.ndarray, consts: np.ndarray) -> np.ndarray:
    """``min_i rows[i] . y + consts[i]`` for each point ``x`` ``(B, n)``."""
    return np.min(forward(layers, x) @ rows.T + consts, axis=1)


def search_best(layers: list, lb: np.ndarray, ub: np.ndarray, rows: np.ndarray, consts: np.ndarray) -> np.ndarray:
    """A good point for ``objective``: 20,000 samples, then sign-gradient ascent from the best 16 (fixed seed)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(lb, ub, (20000, lb.size))
    x = x[np.argsort(-objective(layers, x, rows, consts))[:16]]
    step = 0.05 * (ub - lb)
    for _ in range(100):
        acts, zs = [x], []
        for k, (w, b) in enumerate(layers):
            zs.append(acts[-1] @ w.T + b)
            acts.append(np.maximum(zs[-1], 0.0) if k < len(layers) - 1 else zs[-1])
        vals = acts[-1] @ rows.T + consts
        g = rows[np.argmin(vals, axis=1)]
        for k in range(len(layers) - 1, -1, -1):
            g = g @ layers[k][0]
            if k:
                g = g * (zs[k - 1] > 0)
        x = np.clip(x + step * np.sign(g), lb, ub)
        step *= 0.95
    return x[int(np.argmax(objective(layers, x, rows, consts)))]


def maximise_min(
    layers: list, lb: np.ndarray, ub: np.ndarray, rows: np.ndarray, consts: np.ndarray, time_limit: float = 20.0
) -> Optimum:
    """Maximise ``t`` subject to ``t <= rows[i] . y + consts[i]`` for every row, ``y`` the output on the box."""
    bounds = interval_bounds(layers, lb, ub)
    n_in = lb.size
    # Variables: inputs, then per hidden layer z (pre), a (post), d (binary), then the output z, then t.
    sizes = [w.shape[0] for w, _ in layers]
    offs, pos = [], n_in
    for k, m in enumerate(sizes):
        hidden = k < len(sizes) - 1
        offs.append((pos, pos + m, pos + 2 * m))
        pos += 3 * m if hidden else m
    t_idx, nvar = pos, pos + 1
    lo, hi = np.full(nvar, -np.inf), np.full(nvar, np.inf)
    integ = np.zeros(nvar)
    lo[:n_in], hi[:n_in] = lb, ub
    rr, cc, vv, rl, ru = [], [], [], [], []
    row = 0

    def add(cols: np.ndarray, vals: np.ndarray, low: float, high: float) -> None:
        nonlocal row
        rr.extend([row] * len(cols))
        cc.extend(cols.tolist())
        vv.extend(vals.tolist())
        rl.append(low)
        ru.append(high)
        row += 1

    src = np.arange(n_in)
    for k, (w, b) in enumerate(layers):
        z0, a0, d0 = offs[k]
        zl, zu = bounds[k]
        m = w.shape[0]
        lo[z0 : z0 + m], hi[z0 : z0 + m] = zl, zu
        for j in range(m):  # z_j - W_j src = b_j
            nz = np.flatnonzero(w[j])
            add(np.concatenate([[z0 + j], src[nz]]), np.concatenate([[1.0], -w[j, nz]]), b[j], b[j])
        if k == len(layers) - 1:
            break
        lo[a0 : a0 + m], hi[a0 : a0 + m] = 0.0, np.maximum(zu, 0.0)
        lo[d0 : d0 + m], hi[d0 : d0 + m] = 0.0, 1.0
        integ[d0 : d0 + m] = 1.0
        for j in range(m):
            a, z, d = a0 + j, z0 + j, d0 + j
            if zu[j] <= 0.0:
                hi[a], hi[d] = 0.0, 0.0
            elif zl[j] >= 0.0:
                add(np.array([a, z]), np.array([1.0, -1.0]), 0.0, 0.0)
                lo[d] = 1.0
            else:  # a >= z, a <= z - l (1 - d), a <= u d
                add(np.array([a, z]), np.array([1.0, -1.0]), 0.0, np.inf)
                add(np.array([a, z, d]), np.array([1.0, -1.0, -zl[j]]), -np.inf, -zl[j])
                add(np.array([a, d]), np.array([1.0, -zu[j]]), -np.inf, 0.0)
        src = np.arange(a0, a0 + m)
    out0 = offs[-1][0]
    for r, c in zip(rows, consts, strict=True):  # t - r . y <= c
        nz = np.flatnonzero(r)
        add(np.concatenate([[t_idx], out0 + nz]), np.concatenate([[1.0], -r[nz]]), -np.inf, float(c))
    start = time.perf_counter()
    a_mat = sparse.csr_array((vv, (rr, cc)), shape=(row, nvar))
    cost = np.zeros(nvar)
    cost[t_idx] = -1.0
    res = milp(
        cost,
        constraints=LinearConstraint(a_mat, rl, ru),
        integrality=integ,
        bounds=Bounds(lo, hi),
        options={"time_limit": time_limit, "mip_rel_gap": 1e-4, "presolve": True},
    )
    x = search_best(layers, lb, ub, rows, consts)  # deterministic: the thresholds depend on nothing else
    value = float(objective(layers, x[None, :], rows, consts)[0])
    dual = getattr(res, "mip_dual_bound", None)
    bound = -float(dual) if dual is not None and np.isfinite(dual) else np.inf
    milp_value = (
        -np.inf if res.x is None else float(objective(layers, np.clip(res.x[:n_in], lb, ub)[None, :], rows, consts)[0])
    )
    return Optimum(x, value, max(bound, value), time.perf_counter() - start, milp_value)
