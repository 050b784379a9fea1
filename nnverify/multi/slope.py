"""Monotonicity certificates: a bound on the slope of a ReLU network along one input, for strict ties.

A strict query like ``X_f[i] <= X_g[i]`` (the rest equal, ``f`` and ``g`` one model) and ``Y_g[j] < Y_f[j]`` always
has the tie ``X_g = X_f``, so its non-strict relaxation is never ``unsat``. If ``dY[j]/dX[i] >= 0`` wherever it
exists on the hull of both input boxes, ``Y[j]`` does not decrease along ``X[i]`` (a ReLU network is Lipschitz,
so it is the integral of that derivative along the segment) and the disjunct is ``unsat``. The derivative is
bounded by forward interval propagation: ``e_i`` through each affine layer (no bias, the bound margin of
``bounds/interval.py``), times ``[0, 1]`` at unstable ReLUs, 1 at active, 0 at inactive ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.spec.property import Disjunct
from nnverify.spec.vnnlib2_types import Constraint, NetworkDecl, Query, Rel


def slope_bounds(graph: LayerGraph, lb: np.ndarray, ub: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Bounds on ``d output / d x_i`` over the box (where the derivative exists); None unless ReLU-only."""
    from nnverify.bounds.interval import affine_interval, interval_bounds

    if any(isinstance(layer, ActivationLayer) and layer.kind is not ActKind.RELU for layer in graph.layers):
        return None
    pre = interval_bounds(graph, lb, ub)
    los: list[np.ndarray] = []
    his: list[np.ndarray] = []
    for layer in graph.layers:
        if isinstance(layer, InputLayer):
            lo = np.zeros((1, layer.size))
            lo[0, i] = 1.0
            hi = lo.copy()
        elif isinstance(layer, AffineLayer):
            linear = AffineLayer(layer.name, layer.sources, layer.weights, np.zeros(layer.size))
            lo, hi = affine_interval([los[s] for s in layer.sources], [his[s] for s in layer.sources], linear)
        else:
            src = layer.source
            active = pre.lb[src] > 0.0
            inactive = pre.ub[src] <= 0.0
            lo = np.where(active, los[src], np.where(inactive, 0.0, np.minimum(los[src], 0.0)))
            hi = np.where(active, his[src], np.where(inactive, 0.0, np.maximum(his[src], 0.0)))
        los.append(lo)
        his.append(hi)
    return los[graph.output][0], his[graph.output][0]


@dataclass(frozen=True, slots=True)
class TiePattern:
    """A strict row ``Y_g[j] - Y_f[j] < b <= 0`` (``sign`` +1) or ``Y_f[j] - Y_g[j] < b <= 0`` (``sign`` -1) of two
    copies of one single-input model whose inputs differ only at ``i``, with ``X_f[i] <= X_g[i]``."""

    f: NetworkDecl
    g: NetworkDecl
    i: int
    j: int
    sign: int


def tie_patterns(query: Query, conj: tuple[Constraint, ...], same: dict[tuple[str, str], int]) -> list[TiePattern]:
    """The monotonicity patterns of one disjunct; ``same[(f, g)]`` is the only input index where the copies
    ``f`` and ``g`` of one model may differ (pairs not in it do not qualify)."""
    owner = {v.name: n for n in query.networks for v in n.outputs}
    inputs = {v.name: n for n in query.networks for v in n.inputs}
    ordered: set[tuple[str, str, int]] = set()  # (f, g, i): X_f[i] <= X_g[i] in this disjunct
    for c in conj:
        if c.rel is not Rel.EQ and len(c.coefs) == 2 and c.b <= 0:
            ((u, i), cu), ((v, k), cv) = c.coefs
            if u in inputs and v in inputs and i == k and cu == -cv:
                lo, hi = (u, v) if cu > 0 else (v, u)  # cu*u - cu*v <= b <= 0
                ordered.add((inputs[lo].name, inputs[hi].name, i))
    out = []
    for c in conj:
        if c.rel is not Rel.LT or c.b > 0 or len(c.coefs) != 2:
            continue
        ((u, j), cu), ((v, k), cv) = c.coefs
        if u not in owner or v not in owner or j != k or cu != -cv:
            continue
        pos, neg = (owner[u], owner[v]) if cu > 0 else (owner[v], owner[u])  # pos[j] - neg[j] < b <= 0
        for f, g, sign in ((neg, pos, 1), (pos, neg, -1)):
            at = same.get((f.name, g.name))
            if at is not None and (f.name, g.name, at) in ordered:
                out.append(TiePattern(f, g, at, j, sign))
    return out


def refutes(graph: LayerGraph, box: Disjunct, cols_f: list[int], cols_g: list[int], pattern: TiePattern) -> bool:
    """Whether the slope bound over the hull of both inputs' boxes rules the pattern's strict row out."""
    lb = np.minimum(box.lb[cols_f], box.lb[cols_g])
    ub = np.maximum(box.ub[cols_f], box.ub[cols_g])
    bounds = slope_bounds(graph, lb, ub, pattern.i)
    if bounds is None:
        return False
    lo, hi = bounds
    # sign +1: Y_g[j] < Y_f[j] needs a decrease along X[i]: impossible if the slope is >= 0 everywhere.
    return bool(lo[pattern.j] >= 0.0) if pattern.sign > 0 else bool(hi[pattern.j] <= 0.0)
