"""One back-substitution pass of a ReLU network with free α slopes and β split multipliers (``Duals``), what
a batch's bounds fix for every such pass (``Fixed``), and the sound lower bound of rows it gives (``rows_lower``).
The optimisation of the duals is ``optimized.py``; the children of candidate splits, ``trial_splits.py``."""

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

    def copy(self) -> Duals:
        return Duals({k: v.copy() for k, v in self.alpha.items()}, {k: v.copy() for k, v in self.beta.items()})


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
        return Pass(
            self.coef_x[sel],
            self.const[sel],
            self.scale[sel],
            {k: v[sel] for k, v in self.lam.items()},
            {k: (c[sel], s[sel]) for k, (c, s) in self.above.items()},
        )


@dataclass(frozen=True, slots=True)
class Fixed:
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
    def of(cls, graph: LayerGraph, bounds: LayerBounds, start: int) -> Fixed:
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

    def take(self, sel: np.ndarray, upto: int | None = None) -> Fixed:
        """The selected boxes (rows may repeat); with ``upto``, only the layers up to it (the rest empty)."""

        def keep(j: int) -> bool:
            return upto is None or j <= upto

        def rows_of(d: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
            return {k: box_rows(v, sel) for k, v in d.items() if keep(k)}

        return Fixed(
            rows_of(self.up),
            rows_of(self.icpt),
            rows_of(self.unstable),
            rows_of(self.active),
            [box_rows(v, sel) if keep(k) else np.empty(0) for k, v in enumerate(self.abs_max)],
            rows_of(self.pre),
        )


def substitute(
    graph: LayerGraph,
    fixed: Fixed,
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
    fixed: Fixed | None = None,
) -> tuple[np.ndarray, Pass, np.ndarray]:
    """Sound lower bounds ``(B, K)`` of ``lam0 @ value(start) + a_x @ x - b`` over the boxes, the pass
    behind them and the final input coefficients ``(B, K, n)``."""
    fixed = fixed or Fixed.of(graph, bounds, start)
    passed = substitute(graph, fixed, start, lam0, duals, splits, bounds.lb[0].shape[1])
    coef_x = passed.coef_x + a_x
    lower = _concretize_lower(coef_x, passed.const - b, passed.scale + np.abs(b), bounds, margin_rel, margin_abs)
    return lower, passed, coef_x


def box_rows(v: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """The selected boxes of a per-box array; arrays shared by the whole batch (leading 1, or none) as is."""
    return v if v.ndim == 0 or v.shape[0] <= 1 else v[sel]
