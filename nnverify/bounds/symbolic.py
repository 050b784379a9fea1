"""Forward symbolic bounds: every neuron gets a lower and an upper linear function of the input.

For a batch of boxes, neuron ``z`` of box ``b`` satisfies ``L(x) <= z <= U(x)`` for all ``x`` in the box,
with ``L, U`` affine in ``x`` (coefficients ``(B, size, n + 1)``, last column the constant). ReLU uses the
symbolic-interval relaxation of ReluVal/Neurify (Wang et al., USENIX Security 2018; NeurIPS 2018) with the
adaptive lower slope of DeepPoly/CROWN (Singh et al. POPL 2019; Zhang et al. NeurIPS 2018). This is cheap
when the input dimension is small (ACAS Xu: 5) and is what input splitting needs; it does not do
back-substitution (see the search issue).

Floating point: after each layer the constants move outward by ``margin_rel * M + margin_abs``, where
``M`` bounds the magnitude of every term of the layer's symbolic expressions over the box (the same
documented margin as ``interval.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.bounds.interval import activation_interval
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL


@dataclass(frozen=True, slots=True)
class SymbolicBounds:
    """Per layer: symbolic lower/upper coefficients ``(B, size, n+1)`` and concrete bounds ``(B, size)``."""

    lo_coef: list[np.ndarray]
    hi_coef: list[np.ndarray]
    lb: list[np.ndarray]
    ub: list[np.ndarray]
    mag: list[np.ndarray]


def _minmax(coef: np.ndarray, x_lb: np.ndarray, x_ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact min and max over the box of each linear function ``coef @ [x, 1]``: ``(B, size)`` each."""
    w, c = coef[..., :-1], coef[..., -1]
    pos, neg = np.maximum(w, 0.0), np.minimum(w, 0.0)
    lo = np.einsum("bsn,bn->bs", pos, x_lb) + np.einsum("bsn,bn->bs", neg, x_ub) + c
    hi = np.einsum("bsn,bn->bs", pos, x_ub) + np.einsum("bsn,bn->bs", neg, x_lb) + c
    return lo, hi


def _min(coef: np.ndarray, x_lb: np.ndarray, x_ub: np.ndarray) -> np.ndarray:
    """The min half of ``_minmax`` alone (the same arithmetic, half the work)."""
    w = coef[..., :-1]
    lo = np.einsum("bsn,bn->bs", np.maximum(w, 0.0), x_lb) + np.einsum("bsn,bn->bs", np.minimum(w, 0.0), x_ub)
    return lo + coef[..., -1]


def _max(coef: np.ndarray, x_lb: np.ndarray, x_ub: np.ndarray) -> np.ndarray:
    """The max half of ``_minmax`` alone (the same arithmetic, half the work)."""
    w = coef[..., :-1]
    hi = np.einsum("bsn,bn->bs", np.maximum(w, 0.0), x_ub) + np.einsum("bsn,bn->bs", np.minimum(w, 0.0), x_lb)
    return hi + coef[..., -1]


def _magnitude(coef: np.ndarray, x_abs: np.ndarray) -> np.ndarray:
    """Upper bound of the absolute value of every term of ``coef @ [x, 1]`` summed: ``(B, size)``."""
    return np.einsum("bsn,bn->bs", np.abs(coef[..., :-1]), x_abs) + np.abs(coef[..., -1])


#: Weight matrices at least this large go through one GEMM in ``_shared``.
SHARED_GEMM = 1 << 16


def _shared(w: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``w @ coef[b]`` for every box ``b`` (``w`` ``(m, s)``, ``coef`` ``(B, s, c)``) as one GEMM: numpy's
    broadcast matmul runs ``B`` small products, several times slower for wide layers (below ``SHARED_GEMM``
    weights it is the faster one: ACAS Xu's 50 x 50 layers)."""
    if w.size < SHARED_GEMM:
        return np.matmul(w, coef)
    batch, s, c = coef.shape
    flat = np.ascontiguousarray(coef.transpose(1, 0, 2)).reshape(s, batch * c)
    return (w @ flat).reshape(w.shape[0], batch, c).transpose(1, 0, 2)


def _affine(
    layer: AffineLayer, los: list[np.ndarray], his: list[np.ndarray], mags: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symbolic image of an affine layer and the magnitude scale used for its margin."""
    batch, n1 = los[0].shape[0], los[0].shape[2]
    lo = np.zeros((batch, layer.size, n1))
    lo[..., -1] = layer.bias
    hi = lo.copy()
    scale = np.broadcast_to(np.abs(layer.bias), (batch, layer.size)).copy()
    for w, abs_w, src_lo, src_hi, mag in zip(layer.weights, layer.abs_weights, los, his, mags, strict=True):
        pos, neg = np.maximum(w, 0.0), np.minimum(w, 0.0)
        lo += _shared(pos, src_lo) + _shared(neg, src_hi)
        hi += _shared(pos, src_hi) + _shared(neg, src_lo)
        scale += mag @ abs_w.T
    return lo, hi, scale


def _relu(lo: np.ndarray, hi: np.ndarray, x_lb: np.ndarray, x_ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symbolic ReLU relaxation (per neuron, per box)."""
    l_lo, u_lo = _minmax(lo, x_lb, x_ub)  # range of the lower function
    l_hi, u_hi = _minmax(hi, x_lb, x_ub)  # range of the upper function
    # Upper: relu(z) <= relu(U) <= chord of relu over [min U, max U] applied to U.
    denom = np.where(u_hi > l_hi, u_hi - l_hi, 1.0)
    slope_hi = np.where(l_hi >= 0.0, 1.0, np.where(u_hi <= 0.0, 0.0, u_hi / denom))
    new_hi = hi * slope_hi[..., None]
    new_hi[..., -1] -= np.where((l_hi < 0.0) & (u_hi > 0.0), slope_hi * l_hi, 0.0)
    # Lower: relu(z) >= relu(L) >= a * L for any a in [0, 1]; exact when L's range is one-signed.
    slope_lo = np.where(l_lo >= 0.0, 1.0, np.where(u_lo <= 0.0, 0.0, (u_lo > -l_lo).astype(np.float64)))
    new_lo = lo * slope_lo[..., None]
    return new_lo, new_hi


def _lines(
    layer: ActivationLayer,
    lo: np.ndarray,
    hi: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    mag: np.ndarray,
    margin_rel: float,
    margin_abs: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Any activation through its relaxation lines on the concrete input bounds ``[lb, ub]``:
    ``y >= a z + c`` takes the lower function of ``z`` where ``a >= 0`` and the upper one where ``a < 0``
    (and symmetrically for the upper line). The scale for the margin is ``|slope| M_z + |icpt|``."""
    lo_s, lo_c, up_s, up_c = layer.act.relax(lb, ub, margin_rel, margin_abs)
    new_lo = np.where((lo_s >= 0.0)[..., None], lo, hi) * lo_s[..., None]
    new_hi = np.where((up_s >= 0.0)[..., None], hi, lo) * up_s[..., None]
    new_lo[..., -1] += lo_c
    new_hi[..., -1] += up_c
    scale = np.maximum(np.abs(lo_s), np.abs(up_s)) * mag + np.maximum(np.abs(lo_c), np.abs(up_c))
    return new_lo, new_hi, scale


def symbolic_bounds(
    graph: LayerGraph,
    x_lb: np.ndarray,
    x_ub: np.ndarray,
    *,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> SymbolicBounds:
    """Symbolic and concrete bounds of every layer over the boxes ``x_lb <= x <= x_ub`` (``(B, n)``)."""
    x_lb = np.atleast_2d(np.asarray(x_lb, dtype=np.float64))
    x_ub = np.atleast_2d(np.asarray(x_ub, dtype=np.float64))
    batch, n = x_lb.shape
    x_abs = np.maximum(np.abs(x_lb), np.abs(x_ub))
    los: list[np.ndarray] = []
    his: list[np.ndarray] = []
    lbs: list[np.ndarray] = []
    ubs: list[np.ndarray] = []
    mags: list[np.ndarray] = []
    for layer in graph.layers:
        if isinstance(layer, InputLayer):
            lo = np.zeros((batch, n, n + 1))
            lo[:, np.arange(n), np.arange(n)] = 1.0
            hi, scale = lo.copy(), np.zeros((batch, n))
        elif isinstance(layer, AffineLayer):
            src = layer.sources
            lo, hi, scale = _affine(layer, [los[s] for s in src], [his[s] for s in src], [mags[s] for s in src])
        elif layer.kind is ActKind.RELU:
            lo, hi = _relu(los[layer.source], his[layer.source], x_lb, x_ub)
            scale = mags[layer.source]
        else:
            s = layer.source
            lo, hi, scale = _lines(layer, los[s], his[s], lbs[s], ubs[s], mags[s], margin_rel, margin_abs)
        slack = margin_rel * scale + margin_abs if not isinstance(layer, InputLayer) else 0.0
        lo[..., -1] -= slack
        hi[..., -1] += slack
        lb = _min(lo, x_lb, x_ub)
        ub = _max(hi, x_lb, x_ub)
        if isinstance(layer, ActivationLayer) and layer.kind is ActKind.RELU:
            lb, ub = np.maximum(lb, 0.0), np.maximum(ub, 0.0)
        elif isinstance(layer, ActivationLayer):  # the interval image may be tighter than the lines
            i_lb, i_ub = activation_interval(layer, lbs[layer.source], ubs[layer.source], margin_rel, margin_abs)
            lb, ub = np.maximum(lb, i_lb), np.minimum(ub, i_ub)
        los.append(lo)
        his.append(hi)
        lbs.append(lb)
        ubs.append(ub)
        mags.append(np.maximum(_magnitude(lo, x_abs), _magnitude(hi, x_abs)) + scale * margin_rel)
    return SymbolicBounds(los, his, lbs, ubs, mags)


def rows_lower_bound_symbolic(
    sym: SymbolicBounds,
    output: int,
    a_x: np.ndarray,
    a_y: np.ndarray,
    b: np.ndarray,
    x_lb: np.ndarray,
    x_ub: np.ndarray,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> tuple[np.ndarray, np.ndarray]:
    """Sound lower bounds ``(B, k)`` of ``a_x x + a_y y - b`` and the linear functions ``(B, k, n+1)`` behind them.

    The linear functions are lower bounds valid over each box; their minimising vertex is a good attack point.
    """
    pos, neg = np.maximum(a_y, 0.0), np.minimum(a_y, 0.0)
    coef = np.matmul(pos, sym.lo_coef[output]) + np.matmul(neg, sym.hi_coef[output])
    coef[..., :-1] += a_x
    coef[..., -1] -= b
    lo, _ = _minmax(coef, x_lb, x_ub)
    x_abs = np.maximum(np.abs(x_lb), np.abs(x_ub))
    mag = _magnitude(coef, x_abs) + sym.mag[output] @ np.abs(a_y).T + np.abs(b)
    return lo - margin_rel * mag - margin_abs, coef
