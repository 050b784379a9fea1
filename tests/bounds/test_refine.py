"""MILP refinement of intermediate bounds (``bounds/refine.py``): sound by sampling, never looser than its
input, close to the exact range when given time, stops on cancel, and the property search agrees with MILP."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from netgen import random_net

from nnverify.bounds.backward import crown_bounds
from nnverify.bounds.interval import interval_bounds
from nnverify.bounds.refine import RefineStats, refinable_layers, refine_bounds

pytest.importorskip("highspy")


def _crown(seed: int, widths: list[int], residual: bool = False):
    rng = np.random.default_rng(seed)
    net = random_net(rng, widths, residual=residual)
    n = net.n_inputs
    centre, radius = rng.normal(size=n), rng.uniform(0.5, 1.5, size=n)
    lb, ub = centre - radius, centre + radius
    ib = interval_bounds(net, lb, ub)
    b = crown_bounds(net, ib.lb, ib.ub)
    return rng, net, lb, ub, [v[0] for v in b.lb], [v[0] for v in b.ub]


def _keep(lo: list[np.ndarray], hi: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return lo, hi  # no re-optimisation: the test sees the MILP's own bounds


def _refine(net, lbs, ubs, seconds: float = 20.0, **kw) -> tuple[list, list, RefineStats]:
    return refine_bounds(net, lbs, ubs, deadline=time.monotonic() + seconds, per_solve_s=2.0, reoptimise=_keep, **kw)


def _samples(rng: np.random.Generator, lb: np.ndarray, ub: np.ndarray, n: int = 4000) -> np.ndarray:
    x = lb + (ub - lb) * rng.uniform(size=(n, lb.size))
    x[: n // 4] = np.where(rng.uniform(size=(n // 4, lb.size)) < 0.5, lb, ub)  # vertices
    return x


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("residual", [False, True])
def test_refined_bounds_hold_for_sampled_points_and_are_never_looser(seed: int, residual: bool) -> None:
    rng, net, lb, ub, lbs, ubs = _crown(seed, [4, 10, 10, 10, 3], residual)
    new_l, new_u, stats = _refine(net, lbs, ubs)
    values = net.eval_all(_samples(rng, lb, ub))
    for k, v in enumerate(values):
        assert np.all(v >= new_l[k]) and np.all(v <= new_u[k]), f"layer {k}"
        assert np.all(new_l[k] >= lbs[k]) and np.all(new_u[k] <= ubs[k])
    assert stats.unstable_after <= stats.unstable_before or stats.unstable_before == ()


def test_refinement_reaches_the_exact_range_on_a_small_net() -> None:
    """Two inputs, a dense grid: with time, the refined bounds of every refinable layer are within 2 % of the
    range the grid sees, while CROWN's are much wider; the input bounds are not changed in place."""
    tightened = 0
    for seed in range(4):
        _, net, lb, ub, lbs, ubs = _crown(seed, [2, 10, 10, 10, 2])
        before = [v.copy() for v in lbs]
        new_l, new_u, stats = _refine(net, lbs, ubs, seconds=60.0)
        assert all(np.array_equal(a, b) for a, b in zip(lbs, before, strict=True))
        g = np.linspace(0.0, 1.0, 301)
        grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
        values = net.eval_all(lb + (ub - lb) * grid)
        for s in refinable_layers(net):
            lo, hi = values[s].min(axis=0), values[s].max(axis=0)
            unstable = (lbs[s] < 0) & (ubs[s] > 0)
            width = ubs[s] - lbs[s]
            # every unstable neuron: the side(s) asked are within 2 % of the range, or the neuron is now stable
            stable_now = (new_l[s] >= 0) | (new_u[s] <= 0)
            near = (np.abs(new_l[s] - lo) <= 0.02 * width) | (np.abs(new_u[s] - hi) <= 0.02 * width)
            assert np.all(~unstable | stable_now | near), f"seed {seed} layer {s}"
        tightened += stats.tightened
    assert tightened > 0


def test_a_set_cancel_event_returns_the_bounds_unchanged() -> None:
    _, net, _, _, lbs, ubs = _crown(1, [4, 12, 12, 3])
    cancel = threading.Event()
    cancel.set()
    new_l, new_u, stats = _refine(net, lbs, ubs, cancel=cancel)
    assert stats.solves == 0
    assert all(np.array_equal(a, b) for a, b in zip(new_l + new_u, lbs + ubs, strict=True))


def test_the_first_layer_is_not_refined() -> None:
    """Its bounds are already exact (affine in the input box); only layers fed by a ReLU are refined."""
    _, net, *_ = _crown(0, [4, 8, 8, 8, 2])
    assert refinable_layers(net) == [3, 5]
    _, one_hidden, *_ = _crown(0, [4, 8, 2])
    assert refinable_layers(one_hidden) == []


def test_refines_when_highs_thread_pool_has_another_size() -> None:
    """Another highspy user started HiGHS's global thread pool with 2 threads: every solve would fail
    (status kNotset) unless the pool is restarted, and nothing would be refined."""
    import highspy

    highspy.Highs.resetGlobalScheduler(True)
    other = highspy.Highs()
    other.setOptionValue("output_flag", False)
    other.setOptionValue("threads", 2)
    other.addVars(1, np.zeros(1), np.ones(1))
    other.run()
    _, net, _, _, lbs, ubs = _crown(0, [2, 10, 10, 10, 2])
    _, _, stats = _refine(net, lbs, ubs)
    assert stats.tightened > 0


@pytest.mark.parametrize("seed", range(3))
def test_parallel_workers_and_published_bounds_are_sound_and_only_tighten(seed: int) -> None:
    """Two HiGHS workers per layer; every bound handed to ``publish`` (mid-layer and after each layer) holds
    for sampled points, is never looser than the one before, and the last one is what is returned."""
    rng, net, lb, ub, lbs, ubs = _crown(seed, [4, 10, 10, 10, 3])
    published: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
    new_l, new_u, stats = refine_bounds(
        net,
        lbs,
        ubs,
        deadline=time.monotonic() + 30.0,
        per_solve_s=2.0,
        reoptimise=_keep,
        workers=2,
        publish=lambda lo, hi: published.append((lo, hi)),
        publish_every_s=0.0,
    )
    assert stats.tightened > 0 and published
    values = net.eval_all(_samples(rng, lb, ub))
    previous = (lbs, ubs)
    for lo, hi in published:
        for k, v in enumerate(values):
            assert np.all(v >= lo[k]) and np.all(v <= hi[k]), f"layer {k}"
            assert np.all(lo[k] >= previous[0][k]) and np.all(hi[k] <= previous[1][k])
        previous = (lo, hi)
    assert all(np.array_equal(a, b) for a, b in zip(published[-1][0] + published[-1][1], new_l + new_u, strict=True))


def test_parallel_refinement_matches_one_worker() -> None:
    """With time to finish every solve, two workers reach the same bounds as one (each solve is the same MILP)."""
    _, net, _, _, lbs, ubs = _crown(2, [3, 10, 10, 10, 2])
    one = _refine(net, lbs, ubs, seconds=60.0)
    two = _refine(net, lbs, ubs, seconds=60.0, workers=2)
    assert one[2].solves == two[2].solves
    for a, b in zip(one[0] + one[1], two[0] + two[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_a_prefix_without_unstable_relus_is_solved_as_an_lp_soundly(seed: int) -> None:
    """When every ReLU below a layer is stable the prefix model has no binary: HiGHS solves an LP and its
    ``mip_dual_bound`` is not a bound (it reads 0.0); the LP's optimum is. The refined bounds still hold for
    sampled points, and they are the exact range (an LP over an affine-in-the-box prefix is exact)."""
    rng = np.random.default_rng(seed)
    net = random_net(rng, [3, 6, 6, 2])
    first = net.layers[1]
    first.bias[:] = np.abs(first.bias) + 50.0  # every first-layer ReLU active on the box: no binary below
    lb, ub = -np.ones(3), np.ones(3)
    ib = interval_bounds(net, lb, ub)
    b = crown_bounds(net, ib.lb, ib.ub)
    lbs, ubs = [v[0] for v in b.lb], [v[0] for v in b.ub]
    assert np.all(lbs[1] > 0)
    s = refinable_layers(net)[0]
    lbs[s], ubs[s] = np.minimum(lbs[s], 0.0) - 1.0, np.maximum(ubs[s], 0.0) + 1.0  # loose, around 0: work to do
    new_l, new_u, stats = _refine(net, lbs, ubs)
    assert stats.solves > 0
    values = net.eval_all(_samples(rng, lb, ub, 20000))
    z = values[s]
    assert np.all(z >= new_l[s]) and np.all(z <= new_u[s])


def test_every_refined_bound_keeps_the_margin_below_highs_own_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound HiGHS proves holds only up to its feasibility tolerances: what the refinement applies sits
    outside it (by ``MARGIN_ABS`` = 1e-5 at least; checked against 1e-6 here, not against the constant, so
    that setting the margin to zero fails), wherever it was applied."""
    from nnverify.bounds import refine

    raw: list[tuple[int, bool, float]] = []
    solve_side = refine._solve_side

    def recording(prefix, layer, j, lower_side, gap, time_s, highspy):  # type: ignore[no-untyped-def]
        bound = solve_side(prefix, layer, j, lower_side, gap, time_s, highspy)
        if bound is not None:
            raw.append((j, lower_side, bound))
        return bound

    monkeypatch.setattr(refine, "_solve_side", recording)
    _, net, _, _, lbs, ubs = _crown(2, [3, 10, 10, 2])
    (s,) = refinable_layers(net)
    new_l, new_u, stats = _refine(net, lbs, ubs, seconds=30.0)
    assert stats.tightened > 0 and raw
    applied = 0
    for j, lower_side, bound in raw:
        if lower_side and new_l[s][j] != lbs[s][j]:
            assert new_l[s][j] <= bound - 1e-6
            applied += 1
        elif not lower_side and new_u[s][j] != ubs[s][j]:
            assert new_u[s][j] >= bound + 1e-6
            applied += 1
    assert applied > 0
