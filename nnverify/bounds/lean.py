"""CROWN back-substitution specialised to chains of dense layers and ReLUs (ACAS Xu-sized input splitting).

The same bounds as ``backward.py`` (triangle upper line, lower slopes from ``SLOPE_RULES``) with less work per box:
each box back-substitutes only its own unstable neurons (``backward.py`` takes the batch's union), and only
through its own neurons that can be positive: a ReLU that is off in a box multiplies its coefficient by exactly
0, so every layer's weights are gathered per box to those neurons (about half of ACAS Xu's at depth) and the
products are batched per box. The ReLU lines are computed once per batch, the slope rules share one pass, and
every ReLU step is four in-place element-wise passes and three batched products.

Floating point: the rounding scale of ``backward._substitute`` (``sum_j |lam_j| pre_j``) is kept with one change:
the affine layer below a ReLU adds its term with the coefficients before the ReLU, which are at least as large
in absolute value (the ReLU multiplies them by slopes in [0, 1]), so the scale, and the margin, are no smaller.
``|c| @ t`` is computed as ``c @ t - 2 min(c, 0) @ t``: both are sums of terms bounded by ``|c| t``, so the
result is within a relative ``2 s 2^-53`` of the exact value, far below the margin's ``1e4`` factor. Dropping
the columns of ReLUs that are off removes products by exact zeros only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.bounds.backward import LayerBounds, _concretize_lower
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL

#: Largest dense matrix (entries) of an affine layer that also carries a cheaper kernel map (a small Conv) for
#: which the chain still counts: ``lean`` gathers the dense weights per box, which at this size costs less than
#: the generic passes through the map (a 20x20 CNN with 16 free pixels: timeout at 60 s -> 4.6 s CPU).
DENSE_WITH_MAP_MAX = 1_000_000
#: Rules from the primal point the rows also get (``_with_primal``; 0: none). Off: over all 186 ACAS Xu searches
#: (one process) boxes 122,586 -> 94,065 but CPU 34.6 -> 39.4 s; it pays only on long searches (4_2 prop_2 41,980
#: -> 16,693 boxes, 7.1 -> 4.2 s CPU; control5_hard ctrl_128x2_prop1 11,041 -> 10,526).
PRIMAL_RULE = 0


def is_relu_chain(graph: LayerGraph) -> bool:
    """Input, then affine and ReLU layers alternating, each reading the one before it through its dense matrix
    (a layer with a kernel map only while that matrix has at most ``DENSE_WITH_MAP_MAX`` entries), ending with
    the affine output layer."""
    layers = graph.layers
    if graph.output != len(layers) - 1 or len(layers) < 2 or not isinstance(layers[0], InputLayer):
        return False
    for j, layer in enumerate(layers[1:], start=1):
        if j % 2 == 1:
            ok = (
                isinstance(layer, AffineLayer)
                and layer.sources == (j - 1,)
                and (layer.map_of(0) is None or layer.weights[0].size <= DENSE_WITH_MAP_MAX)
            )
        else:
            ok = isinstance(layer, ActivationLayer) and layer.kind is ActKind.RELU and layer.source == j - 1
        if not ok:
            return False
    return isinstance(layers[-1], AffineLayer)


@dataclass(slots=True)
class _Relu:
    """ReLU layer ``j`` of a batch restricted per box to ``idx`` ``(B, a)``, the neurons of its input layer that
    can be positive (padded with ones that cannot, whose slopes are 0): lower slope and ``up - low`` per rule
    ``(B, R, 1, a)``, the columns ``(B, a, 2)`` (the upper intercept and the scale term ``t_j``), and the upper
    slope, the adaptive lower slope and the active and unstable masks ``(B, a)`` the rules are made of."""

    idx: np.ndarray
    low: np.ndarray
    diff: np.ndarray
    cols: np.ndarray
    parts: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

    def with_rules(self, rules: tuple[str, ...]) -> _Relu:
        """The same layer with one lower slope per rule of ``rules`` (``backward.SLOPE_RULES``)."""
        up, adaptive, active, unstable = self.parts
        choice: dict[str, np.ndarray | float] = {"adaptive": adaptive, "parallel": up, "zero": 0.0, "one": 1.0}
        low = np.stack([np.where(active, 1.0, np.where(unstable, choice[r], 0.0)) for r in rules], axis=1)
        low = low[:, :, None]
        return _Relu(self.idx, low, up[:, None, None, :] - low, self.cols, self.parts)


def _abs_max(bounds: LayerBounds, k: int) -> np.ndarray:
    return np.maximum(np.abs(bounds.lb[k]), np.abs(bounds.ub[k]))


def _relu(graph: LayerGraph, bounds: LayerBounds, j: int, pre: np.ndarray) -> _Relu:
    """The relaxation of ReLU layer ``j`` from its input's bounds (adaptive lower slope), and
    ``t_j = max|z| + icpt + pre_{j-1}`` (the scale term of the ReLU and of the affine layer below it,
    ``pre = |b| + |W| max|input|``)."""
    lb, ub = bounds.lb[j - 1], bounds.ub[j - 1]
    on = ub > 0.0
    idx = np.argsort(~on, axis=1, kind="stable")[:, : max(1, int(on.sum(axis=1).max(initial=0)))]
    box = np.arange(lb.shape[0])[:, None]
    lb, ub = lb[box, idx], ub[box, idx]
    unstable = (lb < 0.0) & (ub > 0.0)
    active = lb >= 0.0
    up = np.where(active, 1.0, np.where(unstable, ub / np.where(unstable, ub - lb, 1.0), 0.0))
    icpt = np.where(unstable, -up * lb, 0.0)
    adaptive = (ub > -lb).astype(np.float64)
    low = np.where(active, 1.0, np.where(unstable, adaptive, 0.0))
    term = (_abs_max(bounds, j - 1) + pre)[box, idx] + icpt
    term[ub <= 0.0] = 0.0  # padding: the coefficient there is multiplied by 0 and never used
    cols = np.stack([icpt, term], axis=2)
    return _Relu(idx, low[:, None, None, :], (up - low)[:, None, None, :], cols, (up, adaptive, active, unstable))


def _gather(w: np.ndarray, bias: np.ndarray, rows: np.ndarray, cols: np.ndarray | None) -> np.ndarray:
    """``[W | b]`` per box ``(B, r, c + 1)``: rows ``rows`` ``(B, r)``, columns ``cols`` ``(B, c)`` (all if None)."""
    part = w[rows] if cols is None else w[rows[:, :, None], cols[:, None, :]]
    return np.concatenate([part, bias[rows][:, :, None]], axis=2)


@dataclass(slots=True)
class _Chain:
    """A batch's ReLU layers (``_Relu``, adaptive rule) and affine weights gathered per box (``_gather``)."""

    relus: dict[int, _Relu]
    weights: dict[int, np.ndarray]
    pres: dict[int, np.ndarray]

    def pre(self, graph: LayerGraph, bounds: LayerBounds, k: int) -> np.ndarray:
        """``|b| + |W| max|input|`` of affine layer ``k`` ``(B, size)``, once its input's bounds are final."""
        if k not in self.pres:
            layer = graph.layers[k]
            assert isinstance(layer, AffineLayer)
            self.pres[k] = _abs_max(bounds, k - 1) @ layer.abs_weights[0].T + np.abs(layer.bias)
        return self.pres[k]

    def add_relu(self, graph: LayerGraph, bounds: LayerBounds, j: int) -> None:
        """ReLU ``j``, once its input's bounds are final, and the gathered weights of the affine layer below it."""
        relu = _relu(graph, bounds, j, self.pre(graph, bounds, j - 1))
        self.relus[j] = relu
        below = graph.layers[j - 1]
        assert isinstance(below, AffineLayer)
        cols = self.relus[j - 2].idx if j > 2 else None
        self.weights[j - 1] = _gather(below.weights[0], below.bias, relu.idx, cols)


def _walk(chain: _Chain, top: int, c: np.ndarray, const: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Push coefficients ``c`` ``(B, R, K, a)`` on the output of ReLU layer ``top`` (its ``idx`` neurons) down
    to the input, adding to ``const`` and ``scale`` ``(B, R, K)`` in place; the input coefficients
    ``(B, R, K, n)``."""
    batch, n_rules, k, _ = c.shape
    for j in range(top, 1, -2):
        relu = chain.relus[j]
        neg = np.minimum(c, 0.0)
        flat = c.reshape(batch, n_rules * k, -1)
        sums = np.matmul(neg.reshape(flat.shape), relu.cols).reshape(batch, n_rules, k, 2)
        const += sums[..., 0]
        scale += np.matmul(flat, relu.cols[:, :, 1:]).reshape(batch, n_rules, k) - 2.0 * sums[..., 1]
        c *= relu.low
        neg *= relu.diff
        c += neg
        out = np.matmul(c.reshape(flat.shape), chain.weights[j - 1]).reshape(batch, n_rules, k, -1)
        const += out[..., -1]
        c = out[..., :-1]
    return c


def crown_chain(
    graph: LayerGraph,
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
    *,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
    interval: bool = True,
) -> LayerBounds:
    """``backward.crown_bounds`` for a ReLU chain (``is_relu_chain``), each box back-substituting only the
    neurons unstable in it; with ``interval`` each layer's given bounds are first intersected with the interval
    image of the tightened layer below (more neurons found stable: fewer rows, and fewer boxes on ACAS Xu)."""
    return _crown(graph, lbs, ubs, margin_rel, margin_abs, interval)[0]


def _crown(
    graph: LayerGraph,
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
    margin_rel: float,
    margin_abs: float,
    interval: bool = True,
) -> tuple[LayerBounds, _Chain]:
    bounds = LayerBounds([v.copy() for v in lbs], [v.copy() for v in ubs])
    chain = _Chain({}, {}, {})
    for k, layer in enumerate(graph.layers):
        if isinstance(layer, ActivationLayer):
            bounds.lb[k] = np.maximum(bounds.lb[k - 1], 0.0)
            bounds.ub[k] = np.maximum(bounds.ub[k - 1], 0.0)
            chain.add_relu(graph, bounds, k)
        elif isinstance(layer, AffineLayer) and 3 <= k < graph.output:
            if not interval:
                _tighten(graph, bounds, chain, k, margin_rel, margin_abs)
                continue
            # the interval image, as interval.affine_interval: its rounding scale is the layer's ``pre``
            lb, ub = bounds.lb[k - 1], bounds.ub[k - 1]
            mid = ((lb + ub) / 2.0) @ layer.weights[0].T + layer.bias
            rad = ((ub - lb) / 2.0) @ layer.abs_weights[0].T + margin_rel * chain.pre(graph, bounds, k) + margin_abs
            np.maximum(bounds.lb[k], mid - rad, out=bounds.lb[k])
            np.minimum(bounds.ub[k], mid + rad, out=bounds.ub[k])
            _tighten(graph, bounds, chain, k, margin_rel, margin_abs)
    return bounds, chain


def _tighten(
    graph: LayerGraph, bounds: LayerBounds, chain: _Chain, k: int, margin_rel: float, margin_abs: float
) -> None:
    """Tighten the unstable neurons of affine layer ``k``, box by box, in place."""
    layer = graph.layers[k]
    assert isinstance(layer, AffineLayer)
    lb, ub = bounds.lb[k], bounds.ub[k]
    unstable = (lb < 0.0) & (ub > 0.0)
    m = int(unstable.sum(axis=1).max(initial=0))
    if m == 0:
        return
    order = np.argsort(~unstable, axis=1, kind="stable")[:, :m]  # each box's unstable neurons first
    rows = _gather(layer.weights[0], layer.bias, order, chain.relus[k - 1].idx)  # (B, m, a + 1)
    c = np.concatenate([rows, -rows], axis=1)[:, None]  # rows +W_i and -W_i: (B, 1, 2m, a + 1)
    const = c[..., -1].copy()
    box = np.arange(lb.shape[0])[:, None]
    pre = chain.pre(graph, bounds, k)[box, order]
    scale = np.concatenate([pre, pre], axis=1)[:, None, :]
    coef_x = _walk(chain, k - 1, c[..., :-1], const, scale)
    low = _concretize_lower(coef_x[:, 0], const[:, 0], scale[:, 0], bounds, margin_rel, margin_abs)
    lb[box, order] = np.maximum(lb[box, order], low[:, :m])
    ub[box, order] = np.minimum(ub[box, order], -low[:, m:])


def rows_lower_chain(
    graph: LayerGraph,
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
    a_x: np.ndarray,
    a_y: np.ndarray,
    b: np.ndarray,
    *,
    rules: tuple[str, ...],
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> tuple[np.ndarray, np.ndarray]:
    """``backward.backward_rows_lower`` for a ReLU chain, every rule in one pass: the best of the rules' sound
    lower bounds ``(B, K)`` of ``a_x x + a_y y - b`` and the linear functions ``(B, K, n + 1)`` behind them."""
    bounds = LayerBounds(lbs, ubs)
    chain = _Chain({}, {}, {})
    for j in range(2, graph.output, 2):
        chain.add_relu(graph, bounds, j)
    return _rows(graph, bounds, chain, (a_x, a_y, b), rules, (margin_rel, margin_abs))


def _with_primal(
    graph: LayerGraph,
    bounds: LayerBounds,
    chain: _Chain,
    start: tuple[np.ndarray, np.ndarray, np.ndarray],
    first: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One more lower slope per row, neuron by neuron (``PRIMAL_RULE``): 1 where the neuron is positive at the vertex
    minimising ``first`` ``(B, K, n)`` (the first rule's input coefficients of that row), else 0 (a step of
    alpha-CROWN's slope choice from the primal point; every slope in [0, 1] is sound). ``start``: the walk's
    coefficients on the top ReLU ``(B, 1, K, a)``, constants and scales ``(B, 1, K)`` before it. Returns that
    rule's input coefficients, constants and scales (one rule)."""
    c, const, scale = (v.copy() for v in start)  # the walk adds to ``const`` and ``scale`` in place
    batch, _, k, _ = c.shape
    vertex = np.where(first > 0.0, bounds.lb[0][:, None, :], bounds.ub[0][:, None, :])
    values = graph.eval_all(vertex.reshape(batch * k, -1))
    relus = {}
    box, row = np.arange(batch)[:, None, None], np.arange(k)[None, :, None]
    for j, relu in chain.relus.items():
        up, _, active, unstable = relu.parts
        z = values[j - 1].reshape(batch, k, -1)[box, row, relu.idx[:, None, :]]  # (B, K, a)
        low = np.where(active[:, None], 1.0, np.where(unstable[:, None], (z > 0.0) * 1.0, 0.0))[:, None]
        relus[j] = _Relu(relu.idx, low, up[:, None, None, :] - low, relu.cols, relu.parts)
    coef_x = _walk(_Chain(relus, chain.weights, chain.pres), graph.output - 1, c, const, scale)
    return coef_x, const, scale


def bound_chain(
    graph: LayerGraph,
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
    a_x: np.ndarray,
    a_y: np.ndarray,
    b: np.ndarray,
    *,
    rules: tuple[str, ...],
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
    every_rule: bool = False,
) -> tuple[LayerBounds, np.ndarray, np.ndarray]:
    """``crown_chain`` then ``rows_lower_chain`` on its bounds, sharing the gathered weights. With ``every_rule``
    the functions are ``(B, K, 1 + R, n + 1)``: the best rule's, then each rule's (each a sound lower bound of
    the row on the box, the margin folded into its constant)."""
    bounds, chain = _crown(graph, lbs, ubs, margin_rel, margin_abs)
    lower, funcs = _rows(graph, bounds, chain, (a_x, a_y, b), rules, (margin_rel, margin_abs), every_rule)
    return bounds, lower, funcs


def _rows(
    graph: LayerGraph,
    bounds: LayerBounds,
    chain: _Chain,
    row: tuple[np.ndarray, np.ndarray, np.ndarray],
    rules: tuple[str, ...],
    margins: tuple[float, float],
    every_rule: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    a_x, a_y, b = row
    out = graph.layers[graph.output]
    assert isinstance(out, AffineLayer)
    lbs = bounds.lb
    batch, n_rules, k = lbs[0].shape[0], len(rules), a_y.shape[0]
    if rules != ("adaptive",):
        relus = {j: r.with_rules(rules) for j, r in chain.relus.items()}
        chain = _Chain(relus, chain.weights, chain.pres)
    pre = _abs_max(bounds, graph.output - 1) @ out.abs_weights[0].T + np.abs(out.bias)
    const = np.broadcast_to(a_y @ out.bias - b, (batch, n_rules, k)).copy()
    scale = np.broadcast_to((pre @ np.abs(a_y).T + np.abs(b))[:, None, :], (batch, n_rules, k)).copy()
    top = chain.relus[graph.output - 1].idx
    c = np.broadcast_to((a_y @ out.weights[0])[:, top].transpose(1, 0, 2)[:, None], (batch, n_rules, k, top.shape[1]))
    start = (np.ascontiguousarray(c[:, :1]), const[:, :1].copy(), scale[:, :1].copy())
    coef_x = _walk(chain, graph.output - 1, c.copy(), const, scale) + a_x
    for step in range(PRIMAL_RULE):  # the first from the first rule's vertices, then from the last primal's
        extra = _with_primal(graph, bounds, chain, start, coef_x[:, -1 if step else 0])
        coef_x = np.concatenate([coef_x, extra[0] + a_x], axis=1)
        const, scale = np.concatenate([const, extra[1]], axis=1), np.concatenate([scale, extra[2]], axis=1)
        n_rules += 1
    flat = (batch, n_rules * k)
    n = coef_x.shape[3]
    lower = _concretize_lower(
        coef_x.reshape(*flat, n), const.reshape(flat), scale.reshape(flat), bounds, margins[0], margins[1]
    ).reshape(batch, n_rules, k)
    best = np.argmax(lower, axis=1)  # (B, K): the first rule reaching the best bound
    pick = np.take_along_axis(lower, best[:, None, :], axis=1)[:, 0]
    cx = np.take_along_axis(coef_x, best[:, None, :, None], axis=1)[:, 0]
    cst = np.take_along_axis(const, best[:, None, :], axis=1)[:, 0]
    sound = pick - (
        np.einsum("bkn,bn->bk", np.maximum(cx, 0.0), lbs[0])
        + np.einsum("bkn,bn->bk", np.minimum(cx, 0.0), bounds.ub[0])
    )
    funcs = np.concatenate([cx, np.minimum(sound, cst)[..., None]], axis=2)
    if not every_rule:
        return pick, funcs
    each = lower - (
        np.einsum("brkn,bn->brk", np.maximum(coef_x, 0.0), lbs[0])
        + np.einsum("brkn,bn->brk", np.minimum(coef_x, 0.0), bounds.ub[0])
    )
    every = np.concatenate([coef_x, np.minimum(each, const)[..., None]], axis=3).transpose(0, 2, 1, 3)
    return pick, np.concatenate([funcs[:, :, None], every], axis=2)
