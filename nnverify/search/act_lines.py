"""Relaxation lines of smooth activations chosen at a point (the tangent there, the chord, the end tangents or
``relax``'s own), each with exact extreme intercepts widened by ``relax``'s margin: sound on the whole interval."""

from __future__ import annotations

import numpy as np

from nnverify.bounds.backward import LayerBounds
from nnverify.graph.layers import ActivationLayer, LayerGraph
from nnverify.graph.ops.interface import Lines, Smooth


def lines_at(act: Smooth, lb: np.ndarray, ub: np.ndarray, z: np.ndarray, margin_rel: float, margin_abs: float) -> Lines:
    """Sound lines of ``act`` on ``[lb, ub]`` (elementwise), the best of the candidates at ``z`` (in the interval)."""
    lo_s, lo_c, up_s, up_c = act.relax(lb, ub, margin_rel, margin_abs)
    with np.errstate(all="ignore"):
        width = ub - lb
        chord = (act.eval(ub) - act.eval(lb)) / np.where(width > 0.0, width, 1.0)
        xmag = np.maximum(np.abs(lb), np.abs(ub))
        for s in (act.derivative(z), chord, act.derivative(lb), act.derivative(ub)):
            s = np.where(np.isfinite(s), s, 0.0)
            gmin, gmax, fmag = act._offsets(s, lb, ub)
            low = gmin - (margin_rel * (fmag + np.abs(s) * xmag + np.abs(gmin)) + margin_abs)
            high = gmax + (margin_rel * (fmag + np.abs(s) * xmag + np.abs(gmax)) + margin_abs)
            take_lo = np.isfinite(low) & (s * z + low > lo_s * z + lo_c)
            take_up = np.isfinite(high) & (s * z + high < up_s * z + up_c)
            lo_s, lo_c = np.where(take_lo, s, lo_s), np.where(take_lo, low, lo_c)
            up_s, up_c = np.where(take_up, s, up_s), np.where(take_up, high, up_c)
    return lo_s, lo_c, up_s, up_c


def point_lines(
    graph: LayerGraph, bounds: LayerBounds, x: np.ndarray, margin_rel: float, margin_abs: float
) -> dict[int, Lines]:
    """Per smooth activation layer, ``lines_at`` the pre-activation values of the inputs ``x`` ``(B, n)``
    (clipped into each domain's bounds): lines for ``backward_rows_lower(lines=...)``."""
    values = graph.eval_all(x)
    out: dict[int, Lines] = {}
    for j, layer in enumerate(graph.layers):
        if isinstance(layer, ActivationLayer) and isinstance(layer.act, Smooth):
            lb, ub = bounds.lb[layer.source], bounds.ub[layer.source]
            with np.errstate(invalid="ignore"):
                z = np.minimum(np.maximum(values[layer.source], lb), ub)
            out[j] = lines_at(layer.act, lb, ub, z, margin_rel, margin_abs)
    return out
