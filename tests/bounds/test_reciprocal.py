"""Reciprocal: lines and interval sound by sampling on intervals of one sign, the margin needed, and an interval
that holds 0 raises ``UnboundedError`` (never a bound)."""

from __future__ import annotations

import numpy as np
import pytest

from nnverify.bounds.interval import interval_bounds
from nnverify.errors import UnboundedError
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.graph.ops.interface import ACTIVATIONS

ACT = ACTIVATIONS[ActKind.RECIPROCAL]
LD = np.longdouble


def _violations(lb: np.ndarray, ub: np.ndarray, x: np.ndarray, margins: tuple[float, float]) -> int:
    lo, hi = ACT.interval(lb, ub, *margins)
    lo_s, lo_c, up_s, up_c = (v.astype(LD)[:, None] for v in ACT.relax(lb, ub, *margins))
    xl = x.astype(LD)
    f = 1 / xl
    bad = (f < lo.astype(LD)[:, None]) | (f > hi.astype(LD)[:, None]) | (lo_s * xl + lo_c > f) | (up_s * xl + up_c < f)
    return int(np.sum(bad))


def _one_sign_boxes(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    low = 10.0 ** rng.uniform(-4, 3, count)
    high = low + low * 10.0 ** rng.uniform(-9, 2, count)
    negative = rng.uniform(size=count) < 0.5
    return np.where(negative, -high, low), np.where(negative, -low, high)


def test_interval_and_lines_contain_sampled_values() -> None:
    rng = np.random.default_rng(1)
    lb, ub = _one_sign_boxes(rng, 500)
    x = lb[:, None] + np.concatenate([[0.0, 1.0], rng.uniform(0, 1, 998)])[None, :] * (ub - lb)[:, None]
    assert _violations(lb, ub, x, (1e-9, 1e-12)) == 0


def test_without_the_margin_the_lines_fail() -> None:
    rng = np.random.default_rng(2)
    lb = rng.uniform(0.5, 3.0, 400)
    ub = lb + 10.0 ** rng.uniform(-9, -1, 400)
    lb[::2], ub[::2] = -ub[::2], -lb[::2]
    x = lb[:, None] + rng.uniform(0, 1, (1, 50)) * (ub - lb)[:, None]
    assert _violations(lb, ub, x, (0.0, 0.0)) > 0
    assert _violations(lb, ub, x, (1e-9, 1e-12)) == 0


def test_one_side_is_the_chord_the_other_touches() -> None:
    """Convex on ``y > 0``: the upper line is the chord; concave on ``y < 0``: the lower line is."""
    lb, ub = np.array([0.5, -4.0]), np.array([3.0, -0.25])
    lo_s, lo_c, up_s, up_c = ACT.relax(lb, ub)
    x = lb[:, None] + np.linspace(0.0, 1.0, 2001)[None, :] * (ub - lb)[:, None]
    above = up_s[:, None] * x + up_c[:, None] - 1.0 / x
    below = 1.0 / x - (lo_s[:, None] * x + lo_c[:, None])
    assert np.all(above.min(axis=1) < 1e-6) and np.all(below.min(axis=1) < 1e-6)
    assert np.all(above[0, [0, -1]] < 1e-6) and np.all(below[1, [0, -1]] < 1e-6)


def test_an_infinite_end_gives_constant_lines() -> None:
    lo_s, lo_c, up_s, up_c = ACT.relax(np.array([2.0]), np.array([np.inf]))
    assert lo_s[0] == 0.0 and up_s[0] == 0.0 and lo_c[0] <= 0.0 and up_c[0] >= 0.5


@pytest.mark.parametrize(("low", "high"), [(-1.0, 1.0), (0.0, 2.0), (-2.0, 0.0), (0.0, 0.0), (np.nan, 1.0)])
def test_an_interval_holding_zero_raises(low: float, high: float) -> None:
    lb, ub = np.array([1.0, low]), np.array([2.0, high])
    with pytest.raises(UnboundedError, match=r"Reciprocal .* input 1 lies in"):
        ACT.interval(lb, ub)
    with pytest.raises(UnboundedError, match="Reciprocal"):
        ACT.relax(lb, ub)


def test_the_bound_passes_raise_instead_of_bounding() -> None:
    net = LayerGraph(
        (
            InputLayer(1),
            AffineLayer("fc", (0,), (np.array([[1.0]]),), np.array([0.5])),
            ActivationLayer("inv", 1, ActKind.RECIPROCAL, 1),
        ),
        2,
    )
    box = interval_bounds(net, np.array([[0.0]]), np.array([[1.0]]))
    assert box.lb[2][0, 0] == pytest.approx(1.0 / 1.5) and box.ub[2][0, 0] == pytest.approx(2.0)
    with pytest.raises(UnboundedError):
        interval_bounds(net, np.array([[-1.0]]), np.array([[1.0]]))


def test_the_softmax_denominator_is_bounded_on_every_interval() -> None:
    """``1 / max(y, 1)``: lines and interval hold on intervals left of, across and right of 1 (also holding 0);
    without the margin they fail."""
    act = ACTIVATIONS[ActKind.RECIPROCAL_MAX1]
    rng = np.random.default_rng(3)
    centre = np.concatenate([rng.uniform(-20.0, 3.0, 300), 1.0 + 10.0 ** rng.uniform(-3, 3, 300)])
    width = 10.0 ** rng.uniform(-9, 2.5, 600)
    lb, ub = centre - width * rng.uniform(0, 1, 600), centre + width * rng.uniform(0, 1, 600)
    x = lb[:, None] + np.concatenate([[0.0, 1.0], rng.uniform(0, 1, 998)])[None, :] * (ub - lb)[:, None]
    f = 1 / np.maximum(x.astype(LD), 1)

    def misses(margins: tuple[float, float]) -> int:
        lo, hi = act.interval(lb, ub, *margins)
        lo_s, lo_c, up_s, up_c = (v.astype(LD)[:, None] for v in act.relax(lb, ub, *margins))
        xl = x.astype(LD)
        bad = (f < lo.astype(LD)[:, None]) | (f > hi.astype(LD)[:, None])
        return int(np.sum(bad | (lo_s * xl + lo_c > f) | (up_s * xl + up_c < f)))

    assert misses((1e-9, 1e-12)) == 0
    assert misses((0.0, 0.0)) > 0
    lo_s, lo_c, _, _ = act.relax(np.array([-8.8]), np.array([161.6]))
    assert lo_s[0] * 80 + lo_c[0] > 0.0  # the lower line is not far below the curve at the middle


def test_the_capped_exp_is_sound_and_finite_on_every_interval() -> None:
    """``exp(min(x, 600))`` (the Softmax lowering's exponentials): lines and interval hold below, across and above
    the cap, stay finite on huge intervals, and fail without the margin."""
    act = ACTIVATIONS[ActKind.EXP_CAP]
    rng = np.random.default_rng(6)
    centre = np.concatenate([rng.uniform(-30, 30, 300), rng.uniform(560, 640, 300), rng.uniform(-900, 900, 300)])
    width = 10.0 ** rng.uniform(-9, 3, 900)
    lb, ub = centre - width * rng.uniform(0, 1, 900), centre + width * rng.uniform(0, 1, 900)
    x = lb[:, None] + np.concatenate([[0.0, 1.0], rng.uniform(0, 1, 398)])[None, :] * (ub - lb)[:, None]
    f = np.exp(np.minimum(x.astype(LD), LD(600)))

    def misses(margins: tuple[float, float]) -> int:
        lo, hi = act.interval(lb, ub, *margins)
        lines = act.relax(lb, ub, *margins)
        assert all(np.all(np.isfinite(v)) for v in (lo, hi, *lines))
        lo_s, lo_c, up_s, up_c = (v.astype(LD)[:, None] for v in lines)
        xl = x.astype(LD)
        bad = (f < lo.astype(LD)[:, None]) | (f > hi.astype(LD)[:, None])
        return int(np.sum(bad | (lo_s * xl + lo_c > f) | (up_s * xl + up_c < f)))

    assert misses((1e-9, 1e-12)) == 0
    assert misses((0.0, 0.0)) > 0
