"""Backward (back-substitution) linear bounds, CROWN style: for the property rows and for every neuron.

A linear objective over some layer is rewritten backwards through the layers into a linear function of the
input that is a sound lower bound over the box: affine layers substitute exactly, ReLUs use the triangle
upper line and the adaptive lower line ``y >= a x`` with ``a`` in {0, 1} (Zhang et al., "Efficient Neural
Network Robustness Certification with General Activation Functions", NeurIPS 2018; Singh et al.,
DeepPoly, POPL 2019), Sign uses its constant bounds. ``crown_bounds`` applies it to every layer that
feeds an activation, in order, each using the tightened bounds of the layers below it.

Floating point: alongside the coefficients the pass carries the same products in absolute value, and every
result moves outward by ``margin_rel * magnitude + margin_abs`` (see ``interval.py`` for the argument).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnverify.graph.layers import ActivationLayer, AffineLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.graph.ops.interface import Lines
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL


@dataclass(frozen=True, slots=True)
class LayerBounds:
    """Concrete bounds ``(B, size)`` of every layer."""

    lb: list[np.ndarray]
    ub: list[np.ndarray]


#: Lower-slope rules for unstable ReLUs: CROWN's adaptive choice, parallel to the upper line, 0, 1.
SLOPE_RULES = ("adaptive", "parallel", "zero", "one")


def _relu_lines(lb: np.ndarray, ub: np.ndarray, rule: str = "adaptive") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per neuron ``(B, size)``: lower slope, upper slope, upper intercept of the ReLU relaxation.

    Any lower slope in [0, 1] is sound (``relu(z) >= a z``); ``rule`` picks one for unstable neurons.
    """
    unstable = (lb < 0.0) & (ub > 0.0)
    denom = np.where(unstable, ub - lb, 1.0)
    up_slope = np.where(lb >= 0.0, 1.0, np.where(unstable, ub / denom, 0.0))
    up_icpt = np.where(unstable, -up_slope * lb, 0.0)
    choice = {
        "adaptive": (ub > -lb).astype(np.float64),
        "parallel": up_slope,
        "zero": np.zeros_like(lb),
        "one": np.ones_like(lb),
    }[rule]
    low_slope = np.where(lb >= 0.0, 1.0, np.where(unstable, choice, 0.0))
    return low_slope, up_slope, up_icpt


def _matmul_shared(lam: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``lam @ w`` for ``lam`` of shape ``(B, K, s)`` and a shared ``w`` ``(s, t)``, as one GEMM."""
    b, k, s = lam.shape
    return (lam.reshape(b * k, s) @ w).reshape(b, k, w.shape[1])


def back_through(layer: AffineLayer, k: int, lam: np.ndarray) -> np.ndarray:
    """``lam @ W_k`` for ``lam`` ``(B, K, s)``: through the layer's operator (a Conv's transposed
    convolution, ``bounds/adjoint.py``) where that is cheaper, else one GEMM on the dense weight."""
    op = layer.map_of(k)
    if op is not None:
        return op.adjoint(lam)
    return _matmul_shared(lam, layer.weights[k])


def forward_through(layer: AffineLayer, k: int, x: np.ndarray, *, absolute: bool = False) -> np.ndarray:
    """``x @ W_k.T`` (``|W_k|`` when ``absolute``) for ``x`` ``(..., s)``, through the operator where it pays."""
    op = layer.map_of(k)
    if op is not None:
        return op.forward(x, absolute=absolute)
    w = layer.abs_weights[k] if absolute else layer.weights[k]
    if x.ndim == 3:
        return _matmul_shared(x, w.T)
    return x @ w.T


def _add(acc: dict[int, np.ndarray], key: int, value: np.ndarray) -> None:
    acc[key] = acc[key] + value if key in acc else value


def _substitute(
    graph: LayerGraph,
    bounds: LayerBounds,
    start: int,
    lam0: np.ndarray,
    rule: str = "adaptive",
    margins: tuple[float, float, dict[int, Lines] | None] = (BOUND_MARGIN_REL, BOUND_MARGIN_ABS, None),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower-bound ``lam0 @ value(start)`` by a linear function of the input.

    Returns ``(coef_x (B,K,n), const (B,K), scale (B,K))``. ``scale`` bounds the magnitude of every product
    formed on the way: step ``j`` computes ``lam_j @ W_j`` with rounding error at most
    ``gamma * |lam_j| |W_j|`` (``gamma = width * 2^-53``), and that error acts on values bounded by the
    layer's concrete bounds, so ``sum_j |lam_j| @ (|W_j| @ max(|lb|, |ub|))`` (plus bias and intercept terms)
    times ``margin_rel`` (>= 1e4 * gamma) covers the rounding of the whole substitution.
    """
    batch, k = lam0.shape[0], lam0.shape[1]
    return _walk(graph, bounds, {start: lam0}, np.zeros((batch, k)), np.zeros((batch, k)), start, rule, margins)


def _walk(
    graph: LayerGraph,
    bounds: LayerBounds,
    lam: dict[int, np.ndarray],
    const: np.ndarray,
    scale: np.ndarray,
    start: int,
    rule: str,
    margins: tuple[float, float, dict[int, Lines] | None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The substitution loop of ``_substitute`` from layer ``start`` down, with coefficients ``lam`` per layer
    and the constant and scale so far; ``margins`` is ``(margin_rel, margin_abs, cache of relaxation lines)``."""
    margin_rel, margin_abs, cache = margins
    batch, k = const.shape
    for j in range(start, 0, -1):
        if j not in lam:
            continue
        coef = lam.pop(j)
        abs_coef = np.abs(coef)
        layer = graph.layers[j]
        if isinstance(layer, AffineLayer):
            const += coef @ layer.bias
            pre = np.broadcast_to(np.abs(layer.bias), (batch, layer.size)).copy()
            for i, src in enumerate(layer.sources):
                _add(lam, src, back_through(layer, i, coef))
                pre += forward_through(layer, i, _abs_max(bounds, src), absolute=True)
            scale += np.einsum("bkn,bn->bk", abs_coef, pre)
        elif isinstance(layer, ActivationLayer):
            src_lb, src_ub = bounds.lb[layer.source], bounds.ub[layer.source]
            neg = np.minimum(coef, 0.0)
            if layer.kind is ActKind.RELU:
                low, up, icpt = _relu_lines(src_lb, src_ub, rule)
                _add(lam, layer.source, coef * low[:, None, :] + neg * (up - low)[:, None, :])
                const += np.einsum("bkn,bn->bk", neg, icpt)
                scale += np.einsum("bkn,bn->bk", abs_coef, _abs_max(bounds, layer.source) + np.abs(icpt))
            else:  # any other activation through its relaxation lines: the lower one where coef >= 0
                pos = coef - neg
                lines = cache.get(j) if cache is not None else None
                if lines is None:
                    lines = layer.act.relax(src_lb, src_ub, margin_rel, margin_abs)
                    if cache is not None:
                        cache[j] = lines
                lo_s, lo_c, up_s, up_c = lines
                _add(lam, layer.source, pos * lo_s[:, None, :] + neg * up_s[:, None, :])
                const += np.einsum("bkn,bn->bk", pos, lo_c) + np.einsum("bkn,bn->bk", neg, up_c)
                term = np.maximum(np.abs(lo_s), np.abs(up_s)) * _abs_max(bounds, layer.source)
                scale += np.einsum("bkn,bn->bk", abs_coef, term + np.maximum(np.abs(lo_c), np.abs(up_c)))
    n = bounds.lb[0].shape[1]
    return lam.get(0, np.zeros((batch, k, n))), const, scale


def _abs_max(bounds: LayerBounds, k: int) -> np.ndarray:
    return np.maximum(np.abs(bounds.lb[k]), np.abs(bounds.ub[k]))


def _concretize_lower(
    coef_x: np.ndarray, const: np.ndarray, scale: np.ndarray, bounds: LayerBounds, margin_rel: float, margin_abs: float
) -> np.ndarray:
    """Minimum over the box of each linear function, moved down by the margin on ``scale`` (plus the terms
    of the concretization itself).

    In centre-radius form, ``c x >= c mid - |c| rad``: one ``|c|`` and matrix products instead of splitting
    ``c`` by sign. ``mid`` and ``rad`` are rounded (relative ``2^-53`` of ``max(|lb|, |ub|)`` each), an
    error the ``|c| max(|lb|, |ub|)`` term of the scale covers many times over. When every box of the batch
    shares the input box (the ReLU search never splits it) the products are one GEMM over all rows."""
    x_lb, x_ub = bounds.lb[0], bounds.ub[0]
    b, k, n = coef_x.shape
    mid, rad, mag = (x_lb + x_ub) / 2.0, (x_ub - x_lb) / 2.0, np.maximum(np.abs(x_lb), np.abs(x_ub))
    abs_c = np.abs(coef_x)
    if x_lb.shape[0] == 1 or (x_lb.strides[0] == 0 and x_ub.strides[0] == 0):
        center = (coef_x.reshape(b * k, n) @ mid[0]).reshape(b, k)
        spread = (abs_c.reshape(b * k, n) @ np.stack([rad[0], mag[0]], axis=1)).reshape(b, k, 2)
    else:
        center = np.matmul(coef_x, mid[:, :, None])[..., 0]
        spread = np.matmul(abs_c, np.stack([rad, mag], axis=2))
    scale = scale + spread[..., 1] + np.abs(const)
    return const + center - spread[..., 0] - margin_rel * scale - margin_abs


def backward_rows_lower(
    graph: LayerGraph,
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
    a_x: np.ndarray,
    a_y: np.ndarray,
    b: np.ndarray,
    lines: dict[int, Lines] | None = None,
    /,
    *,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
    rules: tuple[str, ...] = ("adaptive",),
) -> tuple[np.ndarray, np.ndarray]:
    """Sound lower bounds ``(B, K)`` of the rows ``a_x x + a_y y - b`` over the boxes ``lbs[0] <= x <= ubs[0]``,
    and the linear functions ``(B, K, n + 1)`` of ``x`` behind them (last column the constant, margin
    included: each function is below its row everywhere in the box). With several ``rules`` (lower ReLU
    slopes, see ``SLOPE_RULES``) each row keeps its best bound: a cheap stand-in for optimising the slopes.
    ``lines`` (activation layer index -> ``Lines`` ``(B, size)``, margin included, valid on that layer's input
    bounds) replaces ``relax``'s lines of non-ReLU activation layers (the activation search picks its own;
    positional, so that callers' ``**margins`` dicts of floats still type-check)."""
    bounds = LayerBounds(lbs, ubs)
    batch = lbs[0].shape[0]
    lam0 = np.broadcast_to(a_y, (batch, *a_y.shape)).copy()
    best_lower: np.ndarray | None = None
    best_funcs = np.empty(0)
    for rule in rules:
        cache = None if lines is None else dict(lines)
        coef_x, const, scale = _substitute(graph, bounds, graph.output, lam0, rule, (margin_rel, margin_abs, cache))
        coef_x = coef_x + a_x
        const = const - b
        lower = _concretize_lower(coef_x, const, scale + np.abs(b), bounds, margin_rel, margin_abs)
        # fold the margin into the constant so each returned function is itself a sound lower bound
        sound_const = lower - (
            np.einsum("bkn,bn->bk", np.maximum(coef_x, 0.0), lbs[0])
            + np.einsum("bkn,bn->bk", np.minimum(coef_x, 0.0), ubs[0])
        )
        funcs = np.concatenate([coef_x, np.minimum(sound_const, const)[..., None]], axis=2)
        if best_lower is None:
            best_lower, best_funcs = lower, funcs
        else:
            better = lower > best_lower
            best_lower = np.where(better, lower, best_lower)
            best_funcs = np.where(better[..., None], funcs, best_funcs)
    assert best_lower is not None
    return best_lower, best_funcs


def crown_bounds(
    graph: LayerGraph,
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
    *,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> LayerBounds:
    """Tighten the given sound bounds (e.g. forward symbolic) of every activation input by back-substitution.

    Layers are processed in order so each back-substitution uses the tightened bounds below it; activation
    outputs are recomputed from their tightened inputs; other layers keep the given bounds.
    """
    return crown_bounds_checked(graph, lbs, ubs, None, margin_rel=margin_rel, margin_abs=margin_abs)


def crown_bounds_checked(
    graph: LayerGraph,
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
    check: Callable[[], None] | None,
    *,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> LayerBounds:
    """``crown_bounds``, calling ``check`` (e.g. a budget's) before each chunk of rows."""
    lbs, ubs = [v.copy() for v in lbs], [v.copy() for v in ubs]
    bounds = LayerBounds(lbs, ubs)
    feeds_activation = {layer.source for layer in graph.layers if isinstance(layer, ActivationLayer)}
    cache: dict[int, Lines] = {}  # relaxation lines of the smooth activations below the layer being tightened
    smooth_fed = [False] * len(graph.layers)
    for layer in graph.layers:
        if isinstance(layer, ActivationLayer) and layer.kind is not ActKind.RELU:
            smooth_fed[layer.source] = True
    batch = lbs[0].shape[0]
    for k, layer in enumerate(graph.layers):
        if isinstance(layer, ActivationLayer):
            if layer.kind is ActKind.RELU:
                lbs[k], ubs[k] = np.maximum(lbs[layer.source], 0.0), np.maximum(ubs[layer.source], 0.0)
            else:  # the given bounds stay valid; the interval of the tightened input may be better
                lo, hi = layer.act.interval(lbs[layer.source], ubs[layer.source], margin_rel, margin_abs)
                lbs[k], ubs[k] = np.maximum(lbs[k], lo), np.minimum(ubs[k], hi)
        elif isinstance(layer, AffineLayer) and k in feeds_activation and layer.sources != (0,):
            # only neurons unstable in some box of the batch can change a ReLU's relaxation; a smooth
            # activation's relaxation depends on every input bound
            if smooth_fed[k]:
                idx = np.nonzero(np.any(ubs[k] > lbs[k], axis=0))[0]
            else:
                idx = np.nonzero(np.any((lbs[k] < 0.0) & (ubs[k] > 0.0), axis=0))[0]
            widest = max(v.shape[1] for v in lbs[:k])
            step = max(1, CROWN_CHUNK // max(1, 2 * batch * widest))
            for start in range(0, idx.size, step):
                if check is not None:
                    check()
                _tighten_rows(graph, bounds, k, idx[start : start + step], (margin_rel, margin_abs, cache))
    return bounds


#: Elements (rows x boxes x layer width) of one back-substitution in ``crown_bounds`` (memory: 8 bytes each).
CROWN_CHUNK = 1 << 24


def _tighten_rows(
    graph: LayerGraph, bounds: LayerBounds, k: int, idx: np.ndarray, margins: tuple[float, float, dict[int, Lines]]
) -> None:
    """Tighten the bounds of neurons ``idx`` of the affine layer ``k`` in place by back-substitution.

    The first step substitutes the rows ``+-(W_i, b_i)`` of the layer itself (what ``_substitute`` computes from
    unit rows, here without the products by unit vectors, which are exact), then ``_walk`` goes on below."""
    layer = graph.layers[k]
    assert isinstance(layer, AffineLayer)
    lbs, ubs = bounds.lb, bounds.ub
    batch = lbs[k].shape[0]
    lam: dict[int, np.ndarray] = {}
    pre = np.broadcast_to(np.abs(layer.bias[idx]), (batch, idx.size)).copy()
    for src, w, abs_w in zip(layer.sources, layer.weights, layer.abs_weights, strict=True):
        rows = w[idx]
        _add(lam, src, np.broadcast_to(np.concatenate([rows, -rows]), (batch, 2 * idx.size, w.shape[1])).copy())
        pre += _abs_max(bounds, src) @ abs_w[idx].T
    const = np.broadcast_to(np.concatenate([layer.bias[idx], -layer.bias[idx]]), (batch, 2 * idx.size)).copy()
    scale = np.concatenate([pre, pre], axis=1)
    coef_x, const, scale = _walk(graph, bounds, lam, const, scale, k - 1, "adaptive", margins)
    low = _concretize_lower(coef_x, const, scale, bounds, margins[0], margins[1])
    lbs[k][:, idx] = np.maximum(lbs[k][:, idx], low[:, : idx.size])
    ubs[k][:, idx] = np.minimum(ubs[k][:, idx], -low[:, idx.size :])
