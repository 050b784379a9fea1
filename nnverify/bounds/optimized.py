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

Only graphs made of affine layers and ReLUs are handled here (``supports``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.bounds.backward import (
    LayerBounds,
    _abs_max,
    _add,
    _concretize_lower,
    _relu_lines,
    back_through,
    forward_through,
)
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind

#: Adam step sizes for the slopes and the split multipliers (β-CROWN's defaults).
LR_ALPHA = 0.1
LR_BETA = 0.05


def supports(graph: LayerGraph) -> bool:
    """Whether every layer is the input, affine, or a ReLU."""
    return all(
        isinstance(layer, InputLayer | AffineLayer)
        or (isinstance(layer, ActivationLayer) and layer.kind is ActKind.RELU)
        for layer in graph.layers
    )


def relu_layers(graph: LayerGraph) -> list[int]:
    """Indices of the ReLU layers, in order."""
    return [k for k, layer in enumerate(graph.layers) if isinstance(layer, ActivationLayer)]


@dataclass(slots=True)
class Duals:
    """Free parameters of a batch of bounds: ``alpha[r]`` ``(B, K, size)`` per ReLU layer ``r``, ``beta[s]``
    ``(B, K, size)`` per pre-activation layer ``s`` that carries splits."""

    alpha: dict[int, np.ndarray]
    beta: dict[int, np.ndarray]

    @classmethod
    def initial(cls, graph: LayerGraph, bounds: LayerBounds, rows: int, splits: dict[int, np.ndarray]) -> Duals:
        """CROWN's adaptive slopes (1 where ``ub > -lb``), zero multipliers."""
        alpha = {}
        for r in relu_layers(graph):
            src = graph.layers[r].source  # type: ignore[union-attr]
            lb, ub = bounds.lb[src], bounds.ub[src]
            alpha[r] = np.repeat((ub > -lb).astype(np.float64)[:, None, :], rows, axis=1)
        beta = {s: np.zeros((v.shape[0], rows, v.shape[1])) for s, v in splits.items()}
        return cls(alpha, beta)

    def take(self, sel: np.ndarray) -> Duals:
        return Duals({k: v[sel] for k, v in self.alpha.items()}, {k: v[sel] for k, v in self.beta.items()})


@dataclass(frozen=True, slots=True)
class Pass:
    """One back-substitution: input coefficients, constant, rounding scale, the coefficient on every ReLU
    output (kept for the gradient and for branching), and the constant and scale accumulated above every
    ReLU layer (``above``: a split below it leaves the pass down to there unchanged, ``split_lower``)."""

    coef_x: np.ndarray
    const: np.ndarray
    scale: np.ndarray
    lam: dict[int, np.ndarray]
    above: dict[int, tuple[np.ndarray, np.ndarray]]

    def take(self, sel: np.ndarray) -> Pass:
        """The selected boxes' rows (copies)."""
        return _take_pass(self, sel)


@dataclass(frozen=True, slots=True)
class _Fixed:
    """What a batch's bounds fix for every evaluation of an optimisation: per ReLU layer the upper slope and
    intercept and the unstable mask ``(B, n)``; per layer ``max(|lb|, |ub|)``; per affine layer the magnitude
    ``|bias| + sum |W| max|src|`` of its pre-activations (for the rounding scale)."""

    up: dict[int, np.ndarray]
    icpt: dict[int, np.ndarray]
    unstable: dict[int, np.ndarray]
    active: dict[int, np.ndarray]
    abs_max: list[np.ndarray]
    pre: dict[int, np.ndarray]

    @classmethod
    def of(cls, graph: LayerGraph, bounds: LayerBounds, start: int) -> _Fixed:
        up, icpt, unstable, active, pre = {}, {}, {}, {}, {}
        abs_max = [_abs_max(bounds, k) if k <= start else np.empty(0) for k in range(len(graph.layers))]
        for j in range(1, start + 1):
            layer = graph.layers[j]
            if isinstance(layer, ActivationLayer):
                lb, ub = bounds.lb[layer.source], bounds.ub[layer.source]
                _, up[j], icpt[j] = _relu_lines(lb, ub)
                unstable[j] = (lb < 0.0) & (ub > 0.0)
                active[j] = (lb >= 0.0).astype(np.float64)
            elif isinstance(layer, AffineLayer):
                acc = np.abs(layer.bias)[None, :]
                for i, src in enumerate(layer.sources):
                    acc = acc + forward_through(layer, i, abs_max[src], absolute=True)
                pre[j] = acc
        return cls(up, icpt, unstable, active, abs_max, pre)

    def low(self, j: int, alpha: np.ndarray) -> np.ndarray:
        """Lower slope ``(B, K, n)`` of ReLU layer ``j``: ``alpha`` where unstable, else 0 or 1."""
        return np.where(self.unstable[j][:, None, :], alpha, self.active[j][:, None, :])

    def take(self, sel: np.ndarray, upto: int | None = None) -> _Fixed:
        """The selected boxes (rows may repeat); with ``upto``, only the layers up to it (the rest empty)."""

        def keep(j: int) -> bool:
            return upto is None or j <= upto

        def rows_of(d: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
            return {k: _rows(v, sel) for k, v in d.items() if keep(k)}

        return _Fixed(
            rows_of(self.up),
            rows_of(self.icpt),
            rows_of(self.unstable),
            rows_of(self.active),
            [_rows(v, sel) if keep(k) else np.empty(0) for k, v in enumerate(self.abs_max)],
            rows_of(self.pre),
        )


def _substitute(
    graph: LayerGraph,
    fixed: _Fixed,
    start: int,
    lam0: np.ndarray,
    duals: Duals,
    splits: dict[int, np.ndarray],
    n_inputs: int,
) -> Pass:
    """Lower-bound ``lam0 @ value(start)`` by a linear function of the input (see ``backward._substitute``
    for the rounding scale), with the given slopes and split multipliers."""
    batch, k = lam0.shape[0], lam0.shape[1]
    lam: dict[int, np.ndarray] = {start: lam0}
    kept: dict[int, np.ndarray] = {}
    above: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    const = np.zeros((batch, k))
    scale = np.zeros((batch, k))
    for j in range(start, 0, -1):
        if j not in lam:
            continue
        coef = lam.pop(j)
        if j in duals.beta and j in splits:
            beta_term = duals.beta[j] * splits[j][:, None, :]
            coef = coef - beta_term
            scale += np.einsum("bkn,bn->bk", np.abs(beta_term), fixed.abs_max[j])
        layer = graph.layers[j]
        if isinstance(layer, AffineLayer):
            const += coef @ layer.bias
            for i, src in enumerate(layer.sources):
                _add(lam, src, back_through(layer, i, coef))
            scale += np.einsum("bkn,bn->bk", np.abs(coef), np.broadcast_to(fixed.pre[j], (batch, layer.size)))
        elif isinstance(layer, ActivationLayer):
            kept[j] = coef
            above[j] = (const.copy(), scale.copy())
            neg = np.minimum(coef, 0.0)
            _add(lam, layer.source, (coef - neg) * fixed.low(j, duals.alpha[j]) + neg * fixed.up[j][:, None, :])
            const += np.einsum("bkn,bn->bk", neg, fixed.icpt[j])
            scale += np.einsum("bkn,bn->bk", np.abs(coef), fixed.abs_max[layer.source] + np.abs(fixed.icpt[j]))
    return Pass(lam.get(0, np.zeros((batch, k, n_inputs))), const, scale, kept, above)


def _gradients(
    graph: LayerGraph,
    fixed: _Fixed,
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


def rows_lower(
    graph: LayerGraph,
    bounds: LayerBounds,
    start: int,
    lam0: np.ndarray,
    a_x: np.ndarray,
    b: np.ndarray,
    duals: Duals,
    splits: dict[int, np.ndarray],
    margin_rel: float,
    margin_abs: float,
    fixed: _Fixed | None = None,
) -> tuple[np.ndarray, Pass, np.ndarray]:
    """Sound lower bounds ``(B, K)`` of ``lam0 @ value(start) + a_x @ x - b`` over the boxes, the pass
    behind them and the final input coefficients ``(B, K, n)``."""
    fixed = fixed or _Fixed.of(graph, bounds, start)
    passed = _substitute(graph, fixed, start, lam0, duals, splits, bounds.lb[0].shape[1])
    coef_x = passed.coef_x + a_x
    lower = _concretize_lower(coef_x, passed.const - b, passed.scale + np.abs(b), bounds, margin_rel, margin_abs)
    return lower, passed, coef_x


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
    keeps the parent's line (as ``relu_bab._Search._split`` seeds it: ``beta[s]`` must hold the parent's
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
    fixed = _Fixed.of(graph, bounds, start)
    n_inputs = bounds.lb[0].shape[1]
    for s in np.unique(cands[:, :, 0]):
        if s < 0:
            continue
        s, r = int(s), relu_of[int(s)]
        bi, ci = np.nonzero(cands[:, :, 0] == s)
        t = bi.size
        par = np.concatenate([bi, bi])  # the trials' parents: active children, then inactive
        j = np.concatenate([cands[bi, ci, 1], cands[bi, ci, 1]])
        on = np.repeat([1.0, 0.0], t)
        at = np.arange(2 * t)
        top = r if chain else start
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
        if chain:
            head, c0, s0 = passed.lam[r][par], passed.above[r][0][par], passed.above[r][1][par]
        else:
            head, c0, s0 = lam0[par], np.zeros(1), np.zeros(1)
        trial = _substitute(graph, f, top, head, Duals(alpha, beta), sp, n_inputs)
        coef_x = trial.coef_x + (a_x[par] if a_x.ndim == 3 else a_x)
        b_t = b[par] if b.ndim == 2 else b
        x_lb, x_ub = bounds.lb[0], bounds.ub[0]
        if x_lb.shape[0] == 1 or (x_lb.strides[0] == 0 and x_ub.strides[0] == 0):  # one box: stays shared
            x_lb, x_ub = (np.broadcast_to(v[:1], (2 * t, n_inputs)) for v in (x_lb, x_ub))
        else:
            x_lb, x_ub = x_lb[par], x_ub[par]
        box = LayerBounds([x_lb], [x_ub])
        lower = _concretize_lower(
            coef_x, trial.const + c0 - b_t, trial.scale + s0 + np.abs(b_t), box, margin_rel, margin_abs
        )
        out[bi, ci, 0], out[bi, ci, 1] = lower[:t], lower[t:]
    return out


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
            self.m[k] = 0.9 * self.m[k] + 0.1 * g
            self.v[k] = 0.999 * self.v[k] + 0.001 * g * g
            m_hat = self.m[k] / (1.0 - 0.9**t)
            v_hat = self.v[k] / (1.0 - 0.999**t)
            params[k] = params[k] + lr * m_hat / (np.sqrt(v_hat) + 1e-8)


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
) -> tuple[np.ndarray, Duals, Pass, np.ndarray]:
    """Improve ``duals`` for ``iterations`` steps; the best sound lower bounds ``(B, K)`` seen, the duals that
    gave them, and the pass and input coefficients of the last evaluation of the best duals.

    With ``stop_proven`` a box leaves the optimisation as soon as one of its rows is positive (the caller only
    needs one proven row per box): later steps run on the boxes still open, so a batch of mostly easy boxes
    costs little more than its hard ones."""
    fixed = _Fixed.of(graph, bounds, start)
    best_lower, best_pass, best_cx = rows_lower(
        graph, bounds, start, lam0, a_x, b, duals, splits, margin_rel, margin_abs, fixed
    )
    best = Duals({k: v.copy() for k, v in duals.alpha.items()}, {k: v.copy() for k, v in duals.beta.items()})
    live = _Live(np.arange(best_lower.shape[0]), fixed, bounds, lam0, a_x, b, splits)
    cur = Duals({k: v.copy() for k, v in duals.alpha.items()}, {k: v.copy() for k, v in duals.beta.items()})
    passed, coef_x = best_pass, best_cx
    adam_a, adam_b = _Adam.like(cur.alpha), _Adam.like(cur.beta)
    for t in range(1, iterations + 1):
        if stop_proven:
            open_ = best_lower[live.idx].max(axis=1) <= 0.0
            if not np.any(open_):
                break
            if open_.sum() <= 0.75 * open_.size:  # compact once a quarter of the boxes is proven
                live = live.take(open_)
                cur, passed, coef_x = cur.take(open_), _take_pass(passed, open_), coef_x[open_]
                adam_a, adam_b = adam_a.take(open_), adam_b.take(open_)
        grads = _gradients(graph, live.fixed, live.bounds, start, coef_x, passed, cur, live.splits)
        adam_a.step(cur.alpha, grads.alpha, LR_ALPHA, t)
        adam_b.step(cur.beta, grads.beta, LR_BETA, t)
        for k in cur.alpha:
            np.clip(cur.alpha[k], 0.0, 1.0, out=cur.alpha[k])
        for k in cur.beta:
            np.maximum(cur.beta[k], 0.0, out=cur.beta[k])
        lower, passed, coef_x = rows_lower(
            graph,
            live.bounds,
            start,
            live.lam0,
            live.a_x,
            live.b,
            cur,
            live.splits,
            margin_rel,
            margin_abs,
            live.fixed,
        )
        idx = live.idx
        better = lower > best_lower[idx]  # (b, K): keep the best parameters per row
        if np.any(better):
            best_lower[idx] = np.where(better, lower, best_lower[idx])
            sel = better[..., None]
            for k in best.alpha:
                best.alpha[k][idx] = np.where(sel, cur.alpha[k], best.alpha[k][idx])
            for k in best.beta:
                best.beta[k][idx] = np.where(sel, cur.beta[k], best.beta[k][idx])
            best_pass = _merge_pass(best_pass, passed, better, idx)
            best_cx[idx] = np.where(sel, coef_x, best_cx[idx])
    return best_lower, best, best_pass, best_cx


def _rows(v: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """The selected boxes of a per-box array; arrays shared by the whole batch (leading 1, or none) as is."""
    return v if v.ndim == 0 or v.shape[0] <= 1 else v[sel]


@dataclass(frozen=True, slots=True)
class _Live:
    """The boxes an optimisation still works on: their indices in the batch and their slices of its inputs."""

    idx: np.ndarray
    fixed: _Fixed
    bounds: LayerBounds
    lam0: np.ndarray
    a_x: np.ndarray
    b: np.ndarray
    splits: dict[int, np.ndarray]

    def take(self, sel: np.ndarray) -> _Live:
        f = self.fixed

        def rows_of(d: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
            return {k: _rows(v, sel) for k, v in d.items()}

        fixed = _Fixed(
            rows_of(f.up),
            rows_of(f.icpt),
            rows_of(f.unstable),
            rows_of(f.active),
            [_rows(v, sel) for v in f.abs_max],
            rows_of(f.pre),
        )
        return _Live(
            self.idx[sel],
            fixed,
            LayerBounds([_rows(v, sel) for v in self.bounds.lb], [_rows(v, sel) for v in self.bounds.ub]),
            self.lam0[sel],
            self.a_x[sel] if self.a_x.ndim == 3 else self.a_x,
            self.b[sel] if self.b.ndim == 2 else self.b,
            {k: v[sel] for k, v in self.splits.items()},
        )


def _take_pass(p: Pass, sel: np.ndarray) -> Pass:
    return Pass(
        p.coef_x[sel],
        p.const[sel],
        p.scale[sel],
        {k: v[sel] for k, v in p.lam.items()},
        {k: (c[sel], s[sel]) for k, (c, s) in p.above.items()},
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
        lower, upper, alpha = neuron_bounds(
            graph, tight, k, idx, iterations=iterations, margin_rel=margin_rel, margin_abs=margin_abs
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
        # the rows are +-e_j: their first substitution is +-W[idx] itself, no product needed
        fixed = _Fixed.of(graph, bounds, k)
        w, bias, pre = layer.weights[0][idx], layer.bias[idx], fixed.pre[k][:, idx]
        head = np.broadcast_to(np.concatenate([w, -w])[None], (batch, rows, w.shape[1]))
        passed = _substitute(graph, fixed, layer.sources[0], head, duals, {}, bounds.lb[0].shape[1])
        lower = _concretize_lower(
            passed.coef_x,
            passed.const + np.concatenate([bias, -bias]),
            passed.scale + np.concatenate([pre, pre], axis=1),
            bounds,
            margin_rel,
            margin_abs,
        )
    elif iterations == 0:
        lam0 = _unit_rows(batch, size, idx)
        lower, _, _ = rows_lower(graph, bounds, k, lam0, zeros_x, zeros_b, duals, {}, margin_rel, margin_abs)
    else:
        lam0 = _unit_rows(batch, size, idx)
        lower, duals, _, _ = optimize(
            graph,
            bounds,
            k,
            lam0,
            zeros_x,
            zeros_b,
            duals,
            {},
            iterations=iterations,
            margin_rel=margin_rel,
            margin_abs=margin_abs,
        )
    return lower[:, : idx.size], -lower[:, idx.size :], duals.alpha


def _unit_rows(batch: int, size: int, idx: np.ndarray) -> np.ndarray:
    """``(batch, 2 * len(idx), size)``: the rows ``e_j`` of neurons ``idx``, then ``-e_j``."""
    eye = np.eye(size)[idx]
    return np.broadcast_to(np.concatenate([eye, -eye]), (batch, 2 * idx.size, size)).copy()
