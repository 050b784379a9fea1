"""CROWN back-substitution specialised to chains of dense layers and ReLUs (ACAS Xu-sized input splitting).

The same bounds as ``backward.py`` (triangle upper line, lower slopes from ``SLOPE_RULES``) with less work per box:
each box back-substitutes only its own unstable neurons (``backward.py`` takes the batch's union), the ReLU lines
of a layer are computed once per batch, several slope rules share one pass, and every ReLU step is four in-place
element-wise passes and two batched products.

Floating point: the rounding scale of ``backward._substitute`` (``sum_j |lam_j| pre_j``) is kept with one change:
the affine layer below a ReLU adds its term with the coefficients before the ReLU, which are at least as large
in absolute value (the ReLU multiplies them by slopes in [0, 1]), so the scale, and the margin, are no smaller.
``|c| @ t`` is computed as ``c @ t - 2 min(c, 0) @ t``: both are sums of terms bounded by ``|c| t``, so the
result is within a relative ``2 s 2^-53`` of the exact value, far below the margin's ``1e4`` factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.bounds.backward import LayerBounds, _concretize_lower
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL


def is_relu_chain(graph: LayerGraph) -> bool:
    """Input, then affine and ReLU layers alternating, each reading the one before it through a dense matrix,
    ending with the affine output layer."""
    layers = graph.layers
    if graph.output != len(layers) - 1 or len(layers) < 2 or not isinstance(layers[0], InputLayer):
        return False
    for j, layer in enumerate(layers[1:], start=1):
        if j % 2 == 1:
            ok = isinstance(layer, AffineLayer) and layer.sources == (j - 1,) and layer.map_of(0) is None
        else:
            ok = isinstance(layer, ActivationLayer) and layer.kind is ActKind.RELU and layer.source == j - 1
        if not ok:
            return False
    return isinstance(layers[-1], AffineLayer)


@dataclass(slots=True)
class _Lines:
    """Per ReLU layer ``j`` of a batch: lower slope per rule ``(R, B, s)``, ``up - low`` per rule, and the
    columns ``(B, s, 2)`` holding the upper intercept and the rounding scale term ``t_j``."""

    low: np.ndarray
    diff: np.ndarray
    cols: np.ndarray


def _abs_max(bounds: LayerBounds, k: int) -> np.ndarray:
    return np.maximum(np.abs(bounds.lb[k]), np.abs(bounds.ub[k]))


def _lines(graph: LayerGraph, bounds: LayerBounds, j: int, rules: tuple[str, ...]) -> _Lines:
    """The relaxation of ReLU layer ``j`` from its input's bounds, and ``t_j = max|z| + icpt + pre_{j-2}``
    (the scale term of the ReLU and of the affine layer below it, ``pre = |b| + |W| max|input|``)."""
    lb, ub = bounds.lb[j - 1], bounds.ub[j - 1]
    unstable = (lb < 0.0) & (ub > 0.0)
    active = lb >= 0.0
    up = np.where(active, 1.0, np.where(unstable, ub / np.where(unstable, ub - lb, 1.0), 0.0))
    icpt = np.where(unstable, -up * lb, 0.0)
    choice: dict[str, np.ndarray | float] = {
        "adaptive": (ub > -lb).astype(np.float64),
        "parallel": up,
        "zero": 0.0,
        "one": 1.0,
    }
    low = np.stack([np.where(active, 1.0, np.where(unstable, choice[r], 0.0)) for r in rules])
    below = graph.layers[j - 1]
    assert isinstance(below, AffineLayer)
    pre = _abs_max(bounds, j - 2) @ below.abs_weights[0].T + np.abs(below.bias)
    cols = np.stack([icpt, _abs_max(bounds, j - 1) + icpt + pre], axis=2)
    return _Lines(low, up - low, cols)


def _walk(
    graph: LayerGraph, lines: dict[int, _Lines], top: int, c: np.ndarray, const: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """Push coefficients ``c`` ``(B, R, K, s)`` on the output of ReLU layer ``top`` down to the input, adding
    to ``const`` and ``scale`` ``(B, R, K)`` in place; the input coefficients ``(B, R, K, n)``."""
    batch, n_rules, k, _ = c.shape
    for j in range(top, 1, -2):
        ln = lines[j]
        neg = np.minimum(c, 0.0)
        flat, nflat = c.reshape(batch, -1, c.shape[3]), neg.reshape(batch, -1, c.shape[3])
        sums = np.matmul(nflat, ln.cols).reshape(batch, n_rules, k, 2)
        const += sums[..., 0]
        scale += np.matmul(flat, ln.cols[:, :, 1:]).reshape(batch, n_rules, k) - 2.0 * sums[..., 1]
        c *= ln.low.transpose(1, 0, 2)[:, :, None, :] if n_rules > 1 else ln.low[0][:, None, None, :]
        neg *= ln.diff.transpose(1, 0, 2)[:, :, None, :] if n_rules > 1 else ln.diff[0][:, None, None, :]
        c += neg
        below = graph.layers[j - 1]
        assert isinstance(below, AffineLayer)
        rows = c.reshape(-1, c.shape[3])
        const += (rows @ below.bias).reshape(const.shape)
        c = (rows @ below.weights[0]).reshape(batch, n_rules, k, -1)
    return c


def crown_chain(
    graph: LayerGraph,
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
    *,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> LayerBounds:
    """``backward.crown_bounds`` for a ReLU chain (``is_relu_chain``), each box back-substituting only the
    neurons unstable in it."""
    bounds = LayerBounds([v.copy() for v in lbs], [v.copy() for v in ubs])
    lines: dict[int, _Lines] = {}
    for k, layer in enumerate(graph.layers):
        if isinstance(layer, ActivationLayer):
            bounds.lb[k] = np.maximum(bounds.lb[k - 1], 0.0)
            bounds.ub[k] = np.maximum(bounds.ub[k - 1], 0.0)
            lines[k] = _lines(graph, bounds, k, ("adaptive",))
        elif isinstance(layer, AffineLayer) and 3 <= k < graph.output:
            _tighten(graph, bounds, lines, k, margin_rel, margin_abs)
    return bounds


def _tighten(
    graph: LayerGraph, bounds: LayerBounds, lines: dict[int, _Lines], k: int, margin_rel: float, margin_abs: float
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
    batch = lb.shape[0]
    rows = layer.weights[0][order]  # (B, m, s)
    c = np.stack([rows, -rows], axis=1)[:, None]  # (B, 1, 2, m, s) -> rows +W_i and -W_i
    c = c.reshape(batch, 1, 2 * m, rows.shape[2])
    bias = layer.bias[order]
    const = np.concatenate([bias, -bias], axis=1)[:, None, :]
    pre = np.take_along_axis(_abs_max(bounds, k - 1) @ layer.abs_weights[0].T + np.abs(layer.bias), order, axis=1)
    scale = np.concatenate([pre, pre], axis=1)[:, None, :]
    coef_x = _walk(graph, lines, k - 1, c, const, scale)
    low = _concretize_lower(coef_x[:, 0], const[:, 0], scale[:, 0], bounds, margin_rel, margin_abs)
    old_lb = np.take_along_axis(lb, order, axis=1)
    old_ub = np.take_along_axis(ub, order, axis=1)
    np.put_along_axis(lb, order, np.maximum(old_lb, low[:, :m]), axis=1)
    np.put_along_axis(ub, order, np.minimum(old_ub, -low[:, m:]), axis=1)


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
    out = graph.layers[graph.output]
    assert isinstance(out, AffineLayer)
    batch, n_rules, k = lbs[0].shape[0], len(rules), a_y.shape[0]
    lines = {j: _lines(graph, bounds, j, rules) for j in range(2, graph.output, 2)}
    pre = _abs_max(bounds, graph.output - 1) @ out.abs_weights[0].T + np.abs(out.bias)
    const = np.broadcast_to(a_y @ out.bias - b, (batch, n_rules, k)).copy()
    scale = np.broadcast_to((pre @ np.abs(a_y).T + np.abs(b))[:, None, :], (batch, n_rules, k)).copy()
    c = np.broadcast_to(a_y @ out.weights[0], (batch, n_rules, k, out.weights[0].shape[1])).copy()
    coef_x = _walk(graph, lines, graph.output - 1, c, const, scale) + a_x
    flat = (batch, n_rules * k)
    n = coef_x.shape[3]
    lower = _concretize_lower(
        coef_x.reshape(*flat, n), const.reshape(flat), scale.reshape(flat), bounds, margin_rel, margin_abs
    ).reshape(batch, n_rules, k)
    best = np.argmax(lower, axis=1)  # (B, K): the first rule reaching the best bound
    pick = np.take_along_axis(lower, best[:, None, :], axis=1)[:, 0]
    cx = np.take_along_axis(coef_x, best[:, None, :, None], axis=1)[:, 0]
    cst = np.take_along_axis(const, best[:, None, :], axis=1)[:, 0]
    sound = pick - (
        np.einsum("bkn,bn->bk", np.maximum(cx, 0.0), lbs[0]) + np.einsum("bkn,bn->bk", np.minimum(cx, 0.0), ubs[0])
    )
    return pick, np.concatenate([cx, np.minimum(sound, cst)[..., None]], axis=2)
