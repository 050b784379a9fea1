"""Bounds of both children of candidate ReLU splits with their parent's duals, no optimisation (the ranking of
filtered smart branching): a split changes only the relaxation of the ReLU after it."""

from __future__ import annotations

import numpy as np

from nnverify.bounds.backward import LayerBounds, _concretize_lower
from nnverify.bounds.relu_pass import Duals, Fixed, Pass, substitute
from nnverify.graph.layers import ActivationLayer, AffineLayer, LayerGraph


def _is_chain(graph: LayerGraph) -> bool:
    """Whether every layer reads the one before it (and only it): then a back-substitution reaching a layer
    has nothing pending for the layers below."""
    for k, layer in enumerate(graph.layers[1:], start=1):
        if isinstance(layer, AffineLayer) and layer.sources != (k - 1,):
            return False
        if isinstance(layer, ActivationLayer) and layer.source != k - 1:
            return False
    return True


def split_lower(
    graph: LayerGraph,
    bounds: LayerBounds,
    start: int,
    passed: Pass,
    lam0: np.ndarray,
    a_x: np.ndarray,
    b: np.ndarray,
    duals: Duals,
    splits: dict[int, np.ndarray],
    cands: np.ndarray,
    margin_rel: float,
    margin_abs: float,
) -> np.ndarray:
    """Sound lower bounds ``(B, C, 2, K)`` of the rows of both children (active, inactive) of each candidate
    split ``cands`` ``(B, C, 2)`` (pre-activation layer, neuron; layer -1: none, bound -inf), each child
    with its parent's duals (``passed``: the parent's pass with them) and a new multiplier for the split that
    keeps the parent's line (as ``relu_domains.split`` seeds it: ``beta[s]`` must hold the parent's
    positive coefficient at unsplit neurons).

    A split of neuron ``j`` of layer ``s`` changes only the relaxation of the ReLU ``r`` after it, so on a
    chain the children's back-substitution starts from the parent's coefficient on ``r`` and the constant and
    scale above it (elsewhere from the top), and the bounds of every layer are the parent's: the split
    neuron's only through its relaxation (stable now), its magnitude in the rounding scale kept (an upper
    bound on the child's)."""
    n_b, n_c = cands.shape[:2]
    out = np.full((n_b, n_c, 2, lam0.shape[1]), -np.inf)
    relu_of = {layer.source: r for r, layer in enumerate(graph.layers) if isinstance(layer, ActivationLayer)}
    chain = _is_chain(graph)
    fixed = Fixed.of(graph, bounds, start)
    n_inputs = bounds.lb[0].shape[1]
    for s in np.unique(cands[:, :, 0]):
        if s < 0:
            continue
        s, r = int(s), relu_of[int(s)]
        bi, ci = np.nonzero(cands[:, :, 0] == s)
        t = bi.size
        par = np.concatenate([bi, bi])  # the trials' parents: active children, then inactive
        j = np.concatenate([cands[bi, ci, 1], cands[bi, ci, 1]])
        top = r if chain else start
        f, trial_duals, sp = _children(fixed, duals, splits, s, r, par, j, top)
        if chain:
            head, c0, s0 = passed.lam[r][par], passed.above[r][0][par], passed.above[r][1][par]
        else:
            head, c0, s0 = lam0[par], np.zeros(1), np.zeros(1)
        trial = substitute(graph, f, top, head, trial_duals, sp, n_inputs)
        coef_x = trial.coef_x + (a_x[par] if a_x.ndim == 3 else a_x)
        b_t = b[par] if b.ndim == 2 else b
        box = _parents_box(bounds, par)
        lower = _concretize_lower(
            coef_x, trial.const + c0 - b_t, trial.scale + s0 + np.abs(b_t), box, margin_rel, margin_abs
        )
        out[bi, ci, 0], out[bi, ci, 1] = lower[:t], lower[t:]
    return out


def _children(
    fixed: Fixed,
    duals: Duals,
    splits: dict[int, np.ndarray],
    s: int,
    r: int,
    par: np.ndarray,
    j: np.ndarray,
    top: int,
) -> tuple[Fixed, Duals, dict[int, np.ndarray]]:
    """The relaxation, duals and splits of each trial child ``i``: parent ``par[i]`` with neuron ``j[i]`` of
    layer ``s`` split active (first half of the trials) or inactive (second half), so stable in the ReLU ``r``
    after it, its multiplier keeping the parent's line; the layers above ``top`` left out."""
    t = par.size // 2
    on = np.repeat([1.0, 0.0], t)
    at = np.arange(2 * t)
    f = fixed.take(par, upto=top)
    for field, value in ((f.up, on), (f.icpt, 0.0), (f.active, on), (f.unstable, False)):
        field[r] = np.array(np.broadcast_to(field[r], (2 * t, field[r].shape[-1])))
        field[r][at, j] = value
    alpha = {q: v[par] for q, v in duals.alpha.items() if q <= top}
    beta = {q: v[par] for q, v in duals.beta.items() if q <= top}
    sp = {q: v[par] for q, v in splits.items() if q <= top}
    if s in sp:
        sp[s][at, j] = np.where(on > 0, 1, -1)
    if s in beta:
        slope = alpha[r][at, :, j]
        beta[s][at, :, j] = beta[s][at, :, j] * np.where(on[:, None] > 0, 1.0 - slope, slope)
    return f, Duals(alpha, beta), sp


def _parents_box(bounds: LayerBounds, par: np.ndarray) -> LayerBounds:
    """The input box of each trial, its parent's (one box shared by the whole batch stays shared)."""
    x_lb, x_ub = bounds.lb[0], bounds.ub[0]
    if x_lb.shape[0] == 1 or (x_lb.strides[0] == 0 and x_ub.strides[0] == 0):  # one box: stays shared
        x_lb, x_ub = (np.broadcast_to(v[:1], (par.size, x_lb.shape[1])) for v in (x_lb, x_ub))
    else:
        x_lb, x_ub = x_lb[par], x_ub[par]
    return LayerBounds([x_lb], [x_ub])
