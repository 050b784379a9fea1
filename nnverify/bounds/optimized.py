"""Optimised back-substitution bounds for ReLU networks: α-CROWN lower slopes and β-CROWN split multipliers.

The lower bound of a row ``c @ y`` over an input box is the back-substitution of ``backward.py`` with two
kinds of free parameters, each of which keeps the bound sound for any value in its range:

- ``alpha`` in [0, 1]: the lower line ``relu(z) >= alpha z`` of every unstable ReLU, one per row (Xu et al.,
  "Fast and Complete", ICLR 2021, α-CROWN);
- ``beta`` >= 0: Lagrange multipliers of ReLU split constraints. In a branch where neuron ``z`` was split
  active (``z >= 0``) the objective gets ``- beta z``, inactive (``z <= 0``) ``+ beta z`` (Wang et al.,
  "Beta-CROWN", NeurIPS 2021). With the best ``alpha, beta`` the bound equals the LP of the triangle
  relaxation under the splits.

Both are improved by projected gradient ascent (Adam). The gradient needs no autodiff: for fixed signs the
bound is linear in each layer's coefficients ``lam_j``, and ``d bound / d lam_j`` is the value of layer ``j`` at
the relaxation's minimiser, which one forward pass computes (input vertex picked by the final coefficients,
then each ReLU through the line its coefficient used). Every evaluation, including the ones inside the
optimisation, carries the rounding scale of ``backward.py``, so every bound returned is sound in floating
point whatever the parameters are; the optimisation only decides how tight it is.

Only graphs made of affine layers and ReLUs are handled (``relu_pass.supports``). One pass and its sound bound are
``relu_pass.py``; the children of candidate splits, ``trial_splits.py``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from nnverify.bounds.backward import LayerBounds, _concretize_lower, forward_through
from nnverify.bounds.relu_pass import Duals, Fixed, Pass, box_rows, rows_lower, substitute
from nnverify.bounds.relu_windows import windows_of
from nnverify.graph.layers import ActivationLayer, AffineLayer, LayerGraph

#: Adam step sizes for the slopes and the split multipliers (β-CROWN's defaults).
LR_ALPHA = 0.1
LR_BETA = 0.05
#: ``optimize(give_up=True)``: steps between the checks of whether an open box still gains enough to be proven.
STALL_STEPS = 5


def _gradients(
    graph: LayerGraph,
    fixed: Fixed,
    bounds: LayerBounds,
    start: int,
    coef_x: np.ndarray,
    passed: Pass,
    duals: Duals,
    splits: dict[int, np.ndarray],
) -> Duals:
    """``d bound / d alpha`` and ``d bound / d beta`` by one forward pass of the relaxation's minimiser."""
    x_star = np.where(coef_x >= 0.0, bounds.lb[0][:, None, :], bounds.ub[0][:, None, :])
    values: dict[int, np.ndarray] = {0: x_star}
    grad_alpha: dict[int, np.ndarray] = {}
    grad_beta: dict[int, np.ndarray] = {}
    for j in range(1, start):
        layer = graph.layers[j]
        if isinstance(layer, AffineLayer):
            acc = np.broadcast_to(layer.bias, (*x_star.shape[:2], layer.size)).copy()
            for i, src in enumerate(layer.sources):
                acc += forward_through(layer, i, values[src])
            values[j] = acc
        elif isinstance(layer, ActivationLayer):
            g_src = values[layer.source]
            lam = passed.lam.get(j)
            if lam is None:
                values[j] = np.maximum(g_src, 0.0)
                continue
            values[j] = np.where(
                lam >= 0.0,
                fixed.low(j, duals.alpha[j]) * g_src,
                fixed.up[j][:, None, :] * g_src + fixed.icpt[j][:, None, :],
            )
            grad_alpha[j] = np.where(fixed.unstable[j][:, None, :] & (lam > 0.0), lam * g_src, 0.0)
        if j in duals.beta and j in splits:
            grad_beta[j] = -splits[j][:, None, :] * values[j]
    return Duals(grad_alpha, grad_beta)


@dataclass(slots=True)
class _Adam:
    """Adam ascent state for one parameter dictionary."""

    m: dict[int, np.ndarray]
    v: dict[int, np.ndarray]

    @classmethod
    def like(cls, params: dict[int, np.ndarray]) -> _Adam:
        return cls({k: np.zeros_like(p) for k, p in params.items()}, {k: np.zeros_like(p) for k, p in params.items()})

    def take(self, sel: np.ndarray) -> _Adam:
        return _Adam({k: v[sel] for k, v in self.m.items()}, {k: v[sel] for k, v in self.v.items()})

    def step(self, params: dict[int, np.ndarray], grads: dict[int, np.ndarray], lr: float, t: int) -> None:
        for k, g in grads.items():
            if k not in params:
                continue
            # in place, the same float operations in the same order as
            # m = 0.9 m + 0.1 g; v = 0.999 v + 0.001 g g; p += lr (m / c1) / (sqrt(v / c2) + 1e-8)
            m, v = self.m[k], self.v[k]
            if m.shape != g.shape:  # state broadcast against the gradient: let it grow (first step only)
                shape = np.broadcast_shapes(m.shape, g.shape)
                m, v = np.broadcast_to(m, shape).copy(), np.broadcast_to(v, shape).copy()
                self.m[k], self.v[k] = m, v
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            sq = np.multiply(0.001, g)
            sq *= g
            v += sq
            step = np.divide(m, 1.0 - 0.9**t)
            step *= lr
            denom = np.divide(v, 1.0 - 0.999**t, out=sq)
            np.sqrt(denom, out=denom)
            denom += 1e-8
            step /= denom
            params[k] = params[k] + step


@dataclass(slots=True)
class _Ascent:
    """Adam state of the slopes and of the split multipliers."""

    alpha: _Adam
    beta: _Adam

    @classmethod
    def like(cls, duals: Duals) -> _Ascent:
        return cls(_Adam.like(duals.alpha), _Adam.like(duals.beta))

    def take(self, sel: np.ndarray) -> _Ascent:
        return _Ascent(self.alpha.take(sel), self.beta.take(sel))

    def step(self, cur: Duals, grads: Duals, t: int) -> None:
        """One projected ascent step of ``cur`` (in place): slopes back into [0, 1], multipliers to >= 0."""
        self.alpha.step(cur.alpha, grads.alpha, LR_ALPHA, t)
        self.beta.step(cur.beta, grads.beta, LR_BETA, t)
        for k in cur.alpha:
            np.clip(cur.alpha[k], 0.0, 1.0, out=cur.alpha[k])
        for k in cur.beta:
            np.maximum(cur.beta[k], 0.0, out=cur.beta[k])


@dataclass(slots=True)
class _Best:
    """The best sound lower bound ``(B, K)`` seen per row, and the duals, pass and input coefficients of the
    last evaluation that gave it."""

    lower: np.ndarray
    duals: Duals
    passed: Pass
    coef_x: np.ndarray

    def keep(self, idx: np.ndarray, lower: np.ndarray, cur: Duals, passed: Pass, coef_x: np.ndarray) -> None:
        """Take the rows of boxes ``idx`` where ``lower`` beats the best (in place)."""
        better = lower > self.lower[idx]  # (b, K): keep the best parameters per row
        if not np.any(better):
            return
        self.lower[idx] = np.where(better, lower, self.lower[idx])
        sel = better[..., None]
        for k in self.duals.alpha:
            self.duals.alpha[k][idx] = np.where(sel, cur.alpha[k], self.duals.alpha[k][idx])
        for k in self.duals.beta:
            self.duals.beta[k][idx] = np.where(sel, cur.beta[k], self.duals.beta[k][idx])
        self.passed = _merge_pass(self.passed, passed, better, idx)
        self.coef_x[idx] = np.where(sel, coef_x, self.coef_x[idx])


def optimize(
    graph: LayerGraph,
    bounds: LayerBounds,
    start: int,
    lam0: np.ndarray,
    a_x: np.ndarray,
    b: np.ndarray,
    duals: Duals,
    splits: dict[int, np.ndarray],
    *,
    iterations: int,
    margin_rel: float,
    margin_abs: float,
    stop_proven: bool = False,
    give_up: bool = False,
) -> tuple[np.ndarray, Duals, Pass, np.ndarray]:
    """Improve ``duals`` for ``iterations`` steps; the best sound lower bounds ``(B, K)`` seen, the duals that
    gave them, and the pass and input coefficients of the last evaluation of the best duals.

    With ``stop_proven`` a box leaves the optimisation as soon as one of its rows is positive (the caller only
    needs one proven row per box): later steps run on the boxes still open, so a batch of mostly easy boxes
    costs little more than its hard ones. With ``give_up`` too, a box also leaves when, every ``STALL_STEPS``
    steps, its best bound's gain over those steps, kept up for the steps left, would not reach 0
    (``_stalled``): the bounds stay sound, only less tight than the full run's."""
    fixed = Fixed.of(graph, bounds, start)
    lower, passed, coef_x = rows_lower(graph, bounds, start, lam0, a_x, b, duals, splits, margin_rel, margin_abs, fixed)
    best = _Best(lower, duals.copy(), passed, coef_x)
    live = _Live(np.arange(lower.shape[0]), fixed, bounds, lam0, a_x, b, splits)
    cur = duals.copy()
    ascent = _Ascent.like(cur)
    mark = lower.max(axis=1)
    for t in range(1, iterations + 1):
        if stop_proven:
            open_ = best.lower[live.idx].max(axis=1) <= 0.0
            if give_up and t > 1 and (t - 1) % STALL_STEPS == 0:
                open_ &= ~_stalled(best.lower[live.idx].max(axis=1), mark[live.idx], iterations - t + 1)
                mark = best.lower.max(axis=1)
            if not np.any(open_):
                break
            if open_.sum() <= 0.75 * open_.size:  # compact once a quarter of the boxes is proven
                live, ascent = live.take(open_), ascent.take(open_)
                cur, passed, coef_x = cur.take(open_), passed.take(open_), coef_x[open_]
        ascent.step(cur, _gradients(graph, live.fixed, live.bounds, start, coef_x, passed, cur, live.splits), t)
        lower, passed, coef_x = rows_lower(
            graph, live.bounds, start, live.lam0, live.a_x, live.b, cur, live.splits, margin_rel, margin_abs, live.fixed
        )
        best.keep(live.idx, lower, cur, passed, coef_x)
    return best.lower, best.duals, best.passed, best.coef_x


def _stalled(now: np.ndarray, before: np.ndarray, left: int) -> np.ndarray:
    """Boxes whose best bound ``now`` (``before``: ``STALL_STEPS`` steps earlier) would stay below 0 if it kept
    gaining at that pace for the ``left`` steps left (the gains of Adam shrink, so this rarely drops a box
    that the full run proves)."""
    pace = np.maximum(now - before, 0.0) / STALL_STEPS
    return now + pace * left <= 0.0


@dataclass(frozen=True, slots=True)
class _Live:
    """The boxes an optimisation still works on: their indices in the batch and their slices of its inputs."""

    idx: np.ndarray
    fixed: Fixed
    bounds: LayerBounds
    lam0: np.ndarray
    a_x: np.ndarray
    b: np.ndarray
    splits: dict[int, np.ndarray]

    def take(self, sel: np.ndarray) -> _Live:
        return _Live(
            self.idx[sel],
            self.fixed.take(sel),
            LayerBounds([box_rows(v, sel) for v in self.bounds.lb], [box_rows(v, sel) for v in self.bounds.ub]),
            self.lam0[sel],
            self.a_x[sel] if self.a_x.ndim == 3 else self.a_x,
            self.b[sel] if self.b.ndim == 2 else self.b,
            {k: v[sel] for k, v in self.splits.items()},
        )


def _merge_pass(old: Pass, new: Pass, better: np.ndarray, idx: np.ndarray) -> Pass:
    """``old`` with the rows of boxes ``idx`` that got ``better`` replaced by ``new``'s (in place)."""
    sel = better[..., None]
    for k, v in old.lam.items():
        v[idx] = np.where(sel, new.lam[k], v[idx])
    for k, (c, s) in old.above.items():
        c[idx] = np.where(better, new.above[k][0], c[idx])
        s[idx] = np.where(better, new.above[k][1], s[idx])
    old.coef_x[idx] = np.where(sel, new.coef_x, old.coef_x[idx])
    old.const[idx] = np.where(better, new.const, old.const[idx])
    old.scale[idx] = np.where(better, new.scale, old.scale[idx])
    return old


@dataclass(frozen=True, slots=True)
class Slopes:
    """The lower slopes α-CROWN chose for the bounds of the unstable neurons ``idx`` of one pre-activation
    layer: ``alpha[r]`` ``(2 * len(idx), size_r)`` per ReLU layer ``r`` below it (rows: the lower bounds of
    ``idx``, then their upper bounds), and CROWN's adaptive slopes ``default[r]`` ``(size_r,)`` for neurons
    not in ``idx``. Any slope in [0, 1] gives a sound bound; these are good ones to reuse on sub-regions."""

    idx: np.ndarray
    alpha: dict[int, np.ndarray]
    default: dict[int, np.ndarray]

    def rows(self, idx: np.ndarray) -> dict[int, np.ndarray]:
        """Slopes ``(1, 2 * len(idx), size_r)`` for the lower then upper bounds of neurons ``idx``."""
        pos = np.minimum(np.searchsorted(self.idx, idx), max(self.idx.size - 1, 0))
        found = (self.idx[pos] == idx) if self.idx.size else np.zeros(idx.size, dtype=bool)
        rows = np.concatenate([pos, pos + self.idx.size])
        mask = np.concatenate([found, found])[:, None]
        return {r: np.where(mask, a[rows], self.default[r][None, :])[None] for r, a in self.alpha.items()}


def optimized_layer_bounds(
    graph: LayerGraph,
    bounds: LayerBounds,
    *,
    iterations: int,
    margin_rel: float,
    margin_abs: float,
    slopes: dict[int, Slopes] | None = None,
) -> LayerBounds:
    """α-CROWN on every pre-activation layer in order: optimise the slopes below each layer for the bounds
    of its unstable neurons, each layer using the tightened bounds of the layers below it. With ``slopes``
    (a single box only), the slopes chosen for each layer are stored there."""
    lbs, ubs = [v.copy() for v in bounds.lb], [v.copy() for v in bounds.ub]
    tight = LayerBounds(lbs, ubs)
    feeds = {layer.source for layer in graph.layers if isinstance(layer, ActivationLayer)}
    windows = windows_of(graph)  # Conv networks: each group of neurons on its receptive fields
    bound = partial(neuron_bounds, iterations=iterations, margin_rel=margin_rel, margin_abs=margin_abs)
    for k, layer in enumerate(graph.layers):
        if isinstance(layer, ActivationLayer):
            lbs[k] = np.maximum(lbs[layer.source], 0.0)
            ubs[k] = np.maximum(ubs[layer.source], 0.0)
            continue
        if not isinstance(layer, AffineLayer) or k not in feeds or layer.sources == (0,):
            continue
        idx = np.nonzero(np.any((lbs[k] < 0.0) & (ubs[k] > 0.0), axis=0))[0]
        if idx.size == 0:
            continue
        lower, upper, alpha = (
            bound(graph, tight, k, idx) if windows is None else windows.neuron_bounds(tight, k, idx, bound)
        )
        lbs[k][:, idx] = np.maximum(lbs[k][:, idx], lower)
        ubs[k][:, idx] = np.minimum(ubs[k][:, idx], upper)
        if slopes is not None and iterations > 0 and lbs[k].shape[0] == 1:
            default = Duals.initial(graph, tight, 1, {}).alpha
            slopes[k] = Slopes(idx, {r: a[0] for r, a in alpha.items()}, {r: default[r][0, 0] for r in alpha})
    return tight


def neuron_bounds(
    graph: LayerGraph,
    bounds: LayerBounds,
    k: int,
    idx: np.ndarray,
    *,
    iterations: int,
    margin_rel: float,
    margin_abs: float,
    alpha: dict[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """Sound lower and upper bounds ``(B, len(idx))`` of neurons ``idx`` of layer ``k`` over each box, by
    back-substitution through the bounds of the layers below ``k`` (CROWN's slopes, or the given ``alpha``
    per ReLU layer below ``k``, ``(1 or B, 2 * len(idx), size)`` as ``Slopes.rows`` gives; then
    ``iterations`` steps of α optimisation), and the slopes behind them (the best per row when optimised)."""
    batch, size = bounds.lb[0].shape[0], graph.layers[k].size
    rows = 2 * idx.size
    zeros_x, zeros_b = np.zeros((rows, bounds.lb[0].shape[1])), np.zeros(rows)
    if alpha is not None:
        duals = Duals({r: a for r, a in alpha.items() if r < k}, {})
    else:
        # one slope per neuron, shared by the rows (broadcast), while nothing is optimised
        duals = Duals.initial(graph, bounds, rows if iterations else 1, {})
        duals.alpha = {r: a for r, a in duals.alpha.items() if r < k}
    layer = graph.layers[k]
    if iterations == 0 and isinstance(layer, AffineLayer) and len(layer.sources) == 1:
        lower = _weight_rows_lower(graph, bounds, layer, k, idx, duals, margin_rel, margin_abs)
    elif iterations == 0:
        lam0 = _unit_rows(batch, size, idx)
        lower, _, _ = rows_lower(graph, bounds, k, lam0, zeros_x, zeros_b, duals, {}, margin_rel, margin_abs)
    else:
        lam0 = _unit_rows(batch, size, idx)
        lower, duals, _, _ = optimize(
            graph, bounds, k, lam0, zeros_x, zeros_b, duals, {}, iterations=iterations, margin_rel=margin_rel,
            margin_abs=margin_abs,
        )  # fmt: skip
    return lower[:, : idx.size], -lower[:, idx.size :], duals.alpha


def _weight_rows_lower(
    graph: LayerGraph,
    bounds: LayerBounds,
    layer: AffineLayer,
    k: int,
    idx: np.ndarray,
    duals: Duals,
    margin_rel: float,
    margin_abs: float,
) -> np.ndarray:
    """Sound lower bounds ``(B, 2 * len(idx))`` of the rows ``e_j`` then ``-e_j`` of neurons ``idx`` of the
    single-source affine layer ``k``: their first substitution is ``+-W[idx]`` itself, no product needed."""
    fixed = Fixed.of(graph, bounds, k)
    w, bias, pre = layer.weights[0][idx], layer.bias[idx], fixed.pre[k][:, idx]
    head = np.broadcast_to(np.concatenate([w, -w])[None], (bounds.lb[0].shape[0], 2 * idx.size, w.shape[1]))
    passed = substitute(graph, fixed, layer.sources[0], head, duals, {}, bounds.lb[0].shape[1])
    return _concretize_lower(
        passed.coef_x,
        passed.const + np.concatenate([bias, -bias]),
        passed.scale + np.concatenate([pre, pre], axis=1),
        bounds,
        margin_rel,
        margin_abs,
    )


def _unit_rows(batch: int, size: int, idx: np.ndarray) -> np.ndarray:
    """``(batch, 2 * len(idx), size)``: the rows ``e_j`` of neurons ``idx``, then ``-e_j``."""
    eye = np.eye(size)[idx]
    return np.broadcast_to(np.concatenate([eye, -eye]), (batch, 2 * idx.size, size)).copy()
