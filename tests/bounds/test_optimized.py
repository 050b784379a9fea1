"""α/β-CROWN (``bounds/optimized.py``): sound by sampling for any slopes and multipliers, exact gradients,
never looser than CROWN, equal to the triangle LP when converged, and the margin is needed."""

from __future__ import annotations

import numpy as np
import pytest
from netgen import random_net
from scipy.optimize import linprog

from nnverify.bounds.backward import LayerBounds, crown_bounds
from nnverify.bounds.interval import interval_bounds
from nnverify.bounds.optimized import optimize, optimized_layer_bounds
from nnverify.bounds.relu_pass import Duals, relu_layers, rows_lower
from nnverify.graph.layers import LayerGraph

ZERO = {"margin_rel": 0.0, "margin_abs": 0.0}
SAFE = {"margin_rel": 1e-9, "margin_abs": 1e-12}


def _setup(seed: int, widths: list[int], residual: bool = False):
    rng = np.random.default_rng(seed)
    net = random_net(rng, widths, residual=residual)
    n = net.n_inputs
    centre, radius = rng.normal(size=n), rng.uniform(0.2, 1.0, size=n)
    lb, ub = centre - radius, centre + radius
    ib = interval_bounds(net, lb, ub)
    bounds = crown_bounds(net, ib.lb, ib.ub)
    return rng, net, lb, ub, bounds


def _random_splits(
    rng: np.random.Generator, net: LayerGraph, bounds: LayerBounds, x0: np.ndarray
) -> dict[int, np.ndarray]:
    """About 30% of the unstable neurons split the way the point ``x0`` goes (so the domain is not empty)."""
    values = net.eval_all(x0[None, :])
    splits = {}
    for r in relu_layers(net):
        s = net.layers[r].source
        unstable = (bounds.lb[s] < 0) & (bounds.ub[s] > 0)
        pick = unstable & (rng.uniform(size=unstable.shape) < 0.3)
        splits[s] = np.where(pick, np.where(values[s] >= 0, 1, -1), 0).astype(np.int8)
    return splits


def _clamped(net: LayerGraph, bounds: LayerBounds, splits: dict[int, np.ndarray]) -> LayerBounds:
    lbs, ubs = [v.copy() for v in bounds.lb], [v.copy() for v in bounds.ub]
    for s, sign in splits.items():
        lbs[s] = np.where(sign > 0, np.maximum(lbs[s], 0.0), lbs[s])
        ubs[s] = np.where(sign < 0, np.minimum(ubs[s], 0.0), ubs[s])
    for r in relu_layers(net):
        src = net.layers[r].source
        lbs[r], ubs[r] = np.maximum(lbs[src], 0.0), np.maximum(ubs[src], 0.0)
    return LayerBounds(lbs, ubs)


@pytest.mark.parametrize("residual", [False, True], ids=["chain", "residual"])
def test_any_duals_give_sound_bounds_under_splits(residual: bool) -> None:
    """Random slopes in [0, 1], random multipliers >= 0, random splits: points of the box that satisfy the
    splits never go below the bound (1,000 points per trial)."""
    for seed in range(6):
        rng, net, lb, ub, bounds = _setup(seed, [4, 10, 10, 10, 3], residual)
        x0 = rng.uniform(lb, ub)
        splits = _random_splits(rng, net, bounds, x0)
        dom = _clamped(net, bounds, splits)
        k = 4
        c = rng.normal(size=(1, k, net.n_outputs))
        a_x, b = rng.normal(size=(k, net.n_inputs)) * 0.1, rng.normal(size=k)
        duals = Duals(
            {r: rng.uniform(size=(1, k, net.layers[r].size)) for r in relu_layers(net)},
            {s: rng.uniform(0, 2, size=(1, k, v.shape[1])) for s, v in splits.items()},
        )
        lower, _, _ = rows_lower(net, dom, net.output, c, a_x, b, duals, splits, **SAFE)
        near = x0 + rng.uniform(-0.05, 0.05, size=(10000, net.n_inputs)) * (ub - lb)
        x = np.vstack([rng.uniform(lb, ub, size=(10000, net.n_inputs)), np.clip(near, lb, ub), x0[None, :]])
        values = net.eval_all(x)
        keep = np.ones(x.shape[0], dtype=bool)
        for s, sign in splits.items():
            keep &= np.all((sign[0] == 0) | (np.sign(values[s]) * sign[0] >= 0), axis=1)
        rows = values[net.output][keep] @ c[0].T + x[keep] @ a_x.T - b
        assert keep.sum() > 0
        assert np.all(rows >= lower[0] - 1e-12)


def test_gradients_match_finite_differences() -> None:
    rng, net, lb, ub, bounds = _setup(3, [3, 6, 6, 2])
    splits = _random_splits(rng, net, bounds, rng.uniform(lb, ub))
    dom = _clamped(net, bounds, splits)
    c = rng.normal(size=(1, 1, 2))
    zero_x, zero_b = np.zeros((1, 3)), np.zeros(1)
    duals = Duals(
        {r: rng.uniform(0.2, 0.8, size=(1, 1, net.layers[r].size)) for r in relu_layers(net)},
        {s: rng.uniform(0.2, 1.0, size=(1, 1, v.shape[1])) for s, v in splits.items()},
    )
    from nnverify.bounds import optimized
    from nnverify.bounds.relu_pass import Fixed

    fixed = Fixed.of(net, dom, net.output)
    lower, passed, coef_x = rows_lower(net, dom, net.output, c, zero_x, zero_b, duals, splits, **ZERO, fixed=fixed)
    grads = optimized._gradients(net, fixed, dom, net.output, coef_x, passed, duals, splits)
    h = 1e-6
    for params, g in ((duals.alpha, grads.alpha), (duals.beta, grads.beta)):
        for key, p in params.items():
            for i in range(p.shape[2]):
                p[0, 0, i] += h
                up, _, _ = rows_lower(net, dom, net.output, c, zero_x, zero_b, duals, splits, **ZERO)
                p[0, 0, i] -= h
                expected = (up[0, 0] - lower[0, 0]) / h
                got = g.get(key, np.zeros_like(p))[0, 0, i]
                assert got == pytest.approx(expected, abs=1e-4), (key, i)


def test_optimisation_never_loosens_and_reaches_the_triangle_lp() -> None:
    """On a one-hidden-layer net the optimum over slopes is the LP of the triangle relaxation."""
    _rng, net, lb, ub, bounds = _setup(11, [3, 12, 1])
    c = np.ones((1, 1, 1))
    duals = Duals.initial(net, bounds, 1, {})
    start, _, _ = rows_lower(net, bounds, net.output, c, np.zeros((1, 3)), np.zeros(1), duals, {}, **SAFE)
    best, _, _, _ = optimize(
        net, bounds, net.output, c, np.zeros((1, 3)), np.zeros(1), duals, {}, iterations=300, **SAFE
    )
    assert best[0, 0] >= start[0, 0]
    w1, b1 = net.layers[1].weights[0], net.layers[1].bias
    w2, b2 = net.layers[3].weights[0], net.layers[3].bias
    lo, u = bounds.lb[1][0], bounds.ub[1][0]
    n, h = 3, w1.shape[0]
    # variables: x (n), z (h), a (h); minimise w2 a + b2
    cost = np.concatenate([np.zeros(n + h), w2[0]])
    a_eq = np.hstack([-w1, np.eye(h), np.zeros((h, h))])
    rows, rhs = [], []
    for i in range(h):
        if u[i] <= 0:
            rows.append(np.eye(1, n + 2 * h, n + h + i)[0])
            rhs.append(0.0)
        elif lo[i] >= 0:
            r = np.zeros(n + 2 * h)
            r[n + i] = 1
            r[n + h + i] = -1
            rows.append(r)
            rhs.append(0.0)
        else:
            r = np.zeros(n + 2 * h)
            r[n + i] = 1
            r[n + h + i] = -1
            rows.append(r)
            rhs.append(0.0)
            r = np.zeros(n + 2 * h)
            s = u[i] / (u[i] - lo[i])
            r[n + h + i] = 1
            r[n + i] = -s
            rows.append(r)
            rhs.append(-s * lo[i])
    bnds = [(lb[j], ub[j]) for j in range(n)] + [(lo[i], u[i]) for i in range(h)] + [(0, None)] * h
    lp = linprog(cost, A_ub=np.array(rows), b_ub=np.array(rhs), A_eq=a_eq, b_eq=b1, bounds=bnds, method="highs")
    assert lp.status == 0
    assert best[0, 0] <= lp.fun + b2[0] + 1e-9
    assert best[0, 0] == pytest.approx(lp.fun + b2[0], abs=1e-3)


def test_optimised_layer_bounds_are_sound_and_no_looser() -> None:
    for seed in range(4):
        rng, net, lb, ub, bounds = _setup(seed, [5, 12, 12, 12, 3])
        tight = optimized_layer_bounds(net, bounds, iterations=20, **SAFE)
        values = net.eval_all(rng.uniform(lb, ub, size=(5000, 5)))
        for k, v in enumerate(values):
            assert np.all(tight.lb[k] >= bounds.lb[k]) and np.all(tight.ub[k] <= bounds.ub[k])
            assert np.all(v >= tight.lb[k][0] - 1e-12) and np.all(v <= tight.ub[k][0] + 1e-12)


def test_stored_slopes_reproduce_the_layer_bounds_and_stay_sound_on_sub_boxes() -> None:
    """``optimized_layer_bounds(..., slopes=)`` keeps α-CROWN's slopes per layer: reused through
    ``Slopes.rows`` (any subset of the neurons, in any order, neurons it never saw get CROWN's slope), they
    give back the layer's bounds on the same box, and sound bounds on a sub-box (with the sub-box's own
    bounds below), where they are on average tighter than CROWN's adaptive slopes."""
    from nnverify.bounds.optimized import neuron_bounds

    rng, net, lb, ub, bounds = _setup(11, [5, 16, 16, 16, 3])
    slopes: dict = {}
    tight = optimized_layer_bounds(net, bounds, iterations=20, slopes=slopes, **SAFE)
    assert len(slopes) >= 2
    wins = 0
    for k, sl in slopes.items():
        assert np.all(np.diff(sl.idx) > 0)
        idx = sl.idx[::-1][: max(1, sl.idx.size // 2)]
        lo, hi, _ = neuron_bounds(net, tight, k, idx, iterations=0, alpha=sl.rows(idx), **SAFE)
        assert np.all(lo[0] <= tight.lb[k][0, idx] + 1e-9) and np.all(hi[0] >= tight.ub[k][0, idx] - 1e-9)
        # a sub-box: its own interval/CROWN bounds below, the root's slopes reused
        mid = (lb + ub) / 2
        slb, sub = lb, mid + 0.25 * (ub - mid)
        sb = crown_bounds(net, *(lambda ib: (ib.lb, ib.ub))(interval_bounds(net, slb, sub)))
        sb = LayerBounds(
            [np.maximum(a, b) for a, b in zip(sb.lb, tight.lb, strict=True)],
            [np.minimum(a, b) for a, b in zip(sb.ub, tight.ub, strict=True)],
        )
        unseen = np.setdiff1d(np.arange(net.layers[k].size), sl.idx)[:2]
        every = np.sort(np.concatenate([sl.idx, unseen]))
        lo, hi, _ = neuron_bounds(net, sb, k, every, iterations=0, alpha=sl.rows(every), **SAFE)
        z = net.eval_all(rng.uniform(slb, sub, size=(5000, 5)))[k][:, every]
        assert np.all(z >= lo[0] - 1e-12) and np.all(z <= hi[0] + 1e-12)
        clo, chi, _ = neuron_bounds(net, sb, k, every, iterations=0, **SAFE)
        wins += int(np.sum(hi - lo) < np.sum(chi - clo))
    assert wins >= 1


def test_margin_is_applied() -> None:
    """The returned bound sits below the unmargined one by at least ``margin_rel`` times the rounding scale:
    removing the margin changes the result (and the sampling tests would then be unprotected)."""
    rng, net, _lb, _ub, bounds = _setup(5, [4, 10, 10, 2])
    c = rng.normal(size=(1, 1, 2)) * 1e3
    duals = Duals.initial(net, bounds, 1, {})
    safe, passed, _ = rows_lower(net, bounds, net.output, c, np.zeros((1, 4)), np.zeros(1), duals, {}, **SAFE)
    bare, _, _ = rows_lower(net, bounds, net.output, c, np.zeros((1, 4)), np.zeros(1), duals, {}, **ZERO)
    assert passed.scale[0, 0] > 0
    assert bare[0, 0] - safe[0, 0] >= 1e-9 * passed.scale[0, 0]


def test_stopping_proven_boxes_early_keeps_every_bound_sound_and_consistent() -> None:
    """``stop_proven``: boxes drop out once a row is positive. Per box the result is the full optimisation's
    (same parameters, same steps) until it drops out, so a box that never drops out gets the full run's
    bounds; the duals returned reproduce the bounds returned; and no bound is above a sampled value."""
    rng, net, lb, ub, _ = _setup(5, [4, 12, 12, 2])
    boxes = 12
    centres = rng.uniform(lb, ub, size=(boxes, net.n_inputs))
    radius = np.linspace(0.02, 0.6, boxes)[:, None] * (ub - lb)
    blb, bub = centres - radius, centres + radius
    ib = interval_bounds(net, blb, bub)
    bounds = crown_bounds(net, ib.lb, ib.ub)
    # the row y0 - y1 >= threshold at the centre minus a bit: provable on small boxes, not on large ones
    y = net.eval(centres)
    c = np.broadcast_to(np.array([[1.0, -1.0]]), (boxes, 1, 2)).copy()
    sign = np.sign(y[:, 0] - y[:, 1])[:, None, None]
    c = c * sign
    b = (np.abs(y[:, 0] - y[:, 1]) * 0.5)[:, None]
    a_x = np.zeros((boxes, 1, net.n_inputs))
    duals = Duals.initial(net, bounds, 1, {})
    full, _, _, _ = optimize(net, bounds, net.output, c, a_x, b, duals, {}, iterations=40, **SAFE)
    early, best, _, _ = optimize(net, bounds, net.output, c, a_x, b, duals, {}, iterations=40, stop_proven=True, **SAFE)
    proven = early[:, 0] > 0.0
    assert 0 < proven.sum() < boxes  # the test covers both kinds of boxes
    np.testing.assert_allclose(early[~proven], full[~proven], rtol=1e-9, atol=1e-12)
    assert np.all(full[proven] > 0.0)
    again, _, _ = rows_lower(net, bounds, net.output, c, a_x, b, best, {}, **SAFE)
    np.testing.assert_allclose(again, early, rtol=0, atol=1e-12)
    for i in range(boxes):
        x = rng.uniform(blb[i], bub[i], size=(2000, net.n_inputs))
        rows = net.eval(x) @ c[i].T - b[i]
        assert rows.min() >= early[i, 0]


def test_giving_up_on_stalled_boxes_keeps_bounds_sound_and_drops_only_boxes_that_cannot_reach_zero() -> None:
    """``give_up``: a box whose gain over ``STALL_STEPS`` steps, kept up, would not reach 0 leaves the ascent.
    Its bound is then at most the full run's and still below every sampled value; the duals returned
    reproduce it; a box the full run proves by a wide margin is still proven; fewer passes are run."""
    from nnverify.bounds import optimized as opt_module

    rng, net, lb, ub, _ = _setup(5, [4, 12, 12, 2])
    boxes = 12
    centres = rng.uniform(lb, ub, size=(boxes, net.n_inputs))
    radius = np.linspace(0.02, 0.6, boxes)[:, None] * (ub - lb)
    blb, bub = centres - radius, centres + radius
    ib = interval_bounds(net, blb, bub)
    bounds = crown_bounds(net, ib.lb, ib.ub)
    y = net.eval(centres)
    c = np.broadcast_to(np.array([[1.0, -1.0]]), (boxes, 1, 2)).copy() * np.sign(y[:, 0] - y[:, 1])[:, None, None]
    b = (np.abs(y[:, 0] - y[:, 1]) * 0.5)[:, None]
    a_x = np.zeros((boxes, 1, net.n_inputs))
    duals = Duals.initial(net, bounds, 1, {})
    kw = {"iterations": 40, "stop_proven": True, **SAFE}
    calls = {"n": 0}
    real = opt_module.rows_lower

    def counted(*args: object, **kwargs: object) -> object:
        calls["n"] += int(np.asarray(args[3]).shape[0])  # boxes bounded in this pass
        return real(*args, **kwargs)

    opt_module.rows_lower = counted  # type: ignore[assignment]
    try:
        full, _, _, _ = optimize(net, bounds, net.output, c, a_x, b, duals, {}, **kw)
        n_full, calls["n"] = calls["n"], 0
        early, best, _, _ = optimize(net, bounds, net.output, c, a_x, b, duals, {}, give_up=True, **kw)
        n_early = calls["n"]
    finally:
        opt_module.rows_lower = real  # type: ignore[assignment]
    assert np.all(early <= full + 1e-12)
    assert np.all(early[full[:, 0] > 0.1, 0] > 0.0)
    assert n_early < n_full
    again, _, _ = rows_lower(net, bounds, net.output, c, a_x, b, best, {}, **SAFE)
    np.testing.assert_allclose(again, early, rtol=0, atol=1e-12)
    for i in range(boxes):
        x = rng.uniform(blb[i], bub[i], size=(2000, net.n_inputs))
        assert (net.eval(x) @ c[i].T - b[i]).min() >= early[i, 0]


@pytest.mark.parametrize("residual", [False, True], ids=["chain", "residual"])
def test_split_children_bounds_match_bounding_each_child_and_are_sound(residual: bool) -> None:
    """``split_lower`` (a child's pass restarted from its parent's coefficient on the split's ReLU) equals
    bounding each child from scratch with its split clamped (up to the rounding margin, which keeps the
    parent's magnitudes), and sampled points of each child's region never go below it."""
    from nnverify.bounds.trial_splits import split_lower

    for seed in range(5):
        rng, net, lb, ub, bounds = _setup(seed, [4, 10, 10, 10, 3], residual)
        x0 = rng.uniform(lb, ub)
        splits = _random_splits(rng, net, bounds, x0)
        dom = _clamped(net, bounds, splits)
        k = 3
        c = rng.normal(size=(1, k, net.n_outputs))
        a_x, b = rng.normal(size=(k, net.n_inputs)) * 0.1, rng.normal(size=k)
        duals = Duals(
            {r: rng.uniform(size=(1, k, net.layers[r].size)) for r in relu_layers(net)},
            {s: rng.uniform(0, 2, size=(1, k, v.shape[1])) for s, v in splits.items()},
        )
        _, passed, _ = rows_lower(net, dom, net.output, c, a_x, b, duals, splits, **SAFE)
        cands = []
        for r in relu_layers(net):
            s = net.layers[r].source
            free = np.nonzero((dom.lb[s][0] < 0) & (dom.ub[s][0] > 0) & (splits[s][0] == 0))[0]
            cands += [(s, int(j)) for j in free[:2]]
        cands.append((-1, -1))
        cand = np.array(cands)[None]
        got = split_lower(net, dom, net.output, passed, c, a_x, b, duals, splits, cand, **SAFE)
        assert got.shape == (1, len(cands), 2, k)
        assert np.all(got[0, -1] == -np.inf)
        values = net.eval_all(np.vstack([rng.uniform(lb, ub, size=(20000, net.n_inputs)), x0[None, :]]))
        for i, (s, j) in enumerate(cands[:-1]):
            for side, sign in ((0, 1), (1, -1)):
                child = {q: v.copy() for q, v in splits.items()}
                child[s][0, j] = sign
                beta = {q: v.copy() for q, v in duals.beta.items()}
                slope = duals.alpha[next(r for r in relu_layers(net) if net.layers[r].source == s)][0, :, j]
                beta[s][0, :, j] *= (1.0 - slope) if sign > 0 else slope
                ref, _, _ = rows_lower(
                    net, _clamped(net, dom, child), net.output, c, a_x, b, Duals(duals.alpha, beta), child, **SAFE
                )
                assert np.allclose(got[0, i, side], ref[0], rtol=1e-7, atol=1e-7)
                assert np.all(got[0, i, side] <= ref[0] + 1e-9)
                keep = np.ones(values[0].shape[0], dtype=bool)
                for q, sg in child.items():
                    keep &= np.all((sg[0] == 0) | (np.sign(values[q]) * sg[0] >= 0), axis=1)
                if keep.any():
                    rows = values[net.output][keep] @ c[0].T + values[0][keep] @ a_x.T - b
                    assert np.all(rows >= got[0, i, side][None, :] - 1e-9)


@pytest.mark.parametrize("residual", [False, True], ids=["chain", "residual"])
def test_neuron_bounds_without_optimisation_equal_the_unit_rows_bound(residual: bool) -> None:
    """``neuron_bounds`` with no iterations skips the product of the unit rows with the layer's weights; the
    bounds equal those of the rows ``+-e_j`` back-substituted in full, with CROWN's slopes or given ones."""
    from nnverify.bounds.optimized import neuron_bounds

    for seed in range(4):
        rng, net, _, _, bounds = _setup(seed, [4, 10, 10, 10, 3], residual)
        for r in relu_layers(net)[1:]:
            k = net.layers[r].source
            idx = np.nonzero((bounds.lb[k][0] < 0) & (bounds.ub[k][0] > 0))[0]
            if idx.size == 0:
                continue
            rows = 2 * idx.size
            alpha = {q: rng.uniform(size=(1, rows, net.layers[q].size)) for q in relu_layers(net) if q < k}
            for given in (None, alpha):
                lo, hi, _ = neuron_bounds(net, bounds, k, idx, iterations=0, alpha=given, **SAFE)
                eye = np.eye(net.layers[k].size)[idx]
                lam0 = np.concatenate([eye, -eye])[None]
                duals = Duals(given, {}) if given else Duals.initial(net, bounds, 1, {})
                duals.alpha = {q: a for q, a in duals.alpha.items() if q < k}
                zx, zb = np.zeros((rows, net.n_inputs)), np.zeros(rows)
                ref, _, _ = rows_lower(net, bounds, k, lam0, zx, zb, duals, {}, **SAFE)
                assert np.allclose(lo, ref[:, : idx.size], rtol=1e-9, atol=1e-9)
                assert np.allclose(hi, -ref[:, idx.size :], rtol=1e-9, atol=1e-9)
