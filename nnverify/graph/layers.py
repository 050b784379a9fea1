"""The analysis view of a network: a DAG of flat affine layers and elementwise activations.

``graph/passes.py`` builds it from a ``Graph``: every affine op (Gemm, Conv, BatchNormalization, Reshape ...)
becomes a matrix, and consecutive affine layers are merged. Bounds and encodings work on this view only.
Layer 0 is the input; every other layer refers to earlier layers by index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from nnverify.graph.ops.base import ActKind
from nnverify.graph.ops.interface import ACTIVATIONS, Activation


class LinearMap(Protocol):
    """A weight matrix ``W`` applied without materialising it: ``x @ W.T`` and ``lam @ W`` on batches of rows
    (``|W|`` when ``absolute``)."""

    def forward(self, x: np.ndarray, *, absolute: bool = False) -> np.ndarray: ...

    def adjoint(self, lam: np.ndarray, *, absolute: bool = False) -> np.ndarray: ...

    def pays(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class InputLayer:
    """The network input, flattened in C order."""

    size: int
    name: str = "input"


@dataclass(frozen=True, slots=True)
class AffineLayer:
    """``y = sum_k weights[k] @ value(sources[k]) + bias``; each weight is ``(size, size_of_source)``."""

    name: str
    sources: tuple[int, ...]
    weights: tuple[np.ndarray, ...]
    bias: np.ndarray
    #: Per weight, None or an operator applying it without the dense matrix (a Conv's kernel,
    #: ``bounds/adjoint.py``); it equals the weight, and the bound passes take it where ``pays()``.
    maps: tuple[LinearMap | None, ...] = field(default=(), repr=False, compare=False)
    #: ``|W|`` of each weight, computed once: the rounding scales of every bound pass need it.
    abs_weights: tuple[np.ndarray, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "abs_weights", tuple(np.abs(w) for w in self.weights))

    @property
    def size(self) -> int:
        return int(self.bias.shape[0])

    def map_of(self, k: int) -> LinearMap | None:
        """The operator standing for weight ``k`` when it is cheaper than the dense product, else None."""
        op = self.maps[k] if k < len(self.maps) else None
        return op if op is not None and op.pays() else None


@dataclass(frozen=True, slots=True)
class ActivationLayer:
    """``y = kind(value(source))`` elementwise; ``act`` is the kind's ``Activation`` (bounds, relaxation)."""

    name: str
    source: int
    kind: ActKind
    size: int

    @property
    def act(self) -> Activation:
        return ACTIVATIONS[self.kind]


Layer = InputLayer | AffineLayer | ActivationLayer


def apply_activation(kind: ActKind, x: np.ndarray) -> np.ndarray:
    """Concrete activation semantics (float64)."""
    if kind is ActKind.RELU:
        return np.maximum(x, 0.0)
    return ACTIVATIONS[kind].eval(x)


@dataclass(frozen=True, slots=True)
class LayerGraph:
    """Layers in topological order; ``layers[0]`` is the ``InputLayer``; ``output`` is the output's index."""

    layers: tuple[Layer, ...]
    output: int

    @property
    def n_inputs(self) -> int:
        return self.layers[0].size

    @property
    def n_outputs(self) -> int:
        return self.layers[self.output].size

    def eval_all(self, x: np.ndarray) -> list[np.ndarray]:
        """Value of every layer for a batch ``x`` of shape ``(B, n_inputs)``: ``(B, size)`` arrays."""
        values: list[np.ndarray] = []
        for layer in self.layers:
            if isinstance(layer, InputLayer):
                values.append(np.asarray(x, dtype=np.float64).reshape(x.shape[0], layer.size))
            elif isinstance(layer, AffineLayer):
                acc = np.broadcast_to(layer.bias, (x.shape[0], layer.size)).copy()
                for i, (src, w) in enumerate(zip(layer.sources, layer.weights, strict=True)):
                    op = layer.map_of(i)
                    acc += values[src] @ w.T if op is None else op.forward(values[src])
                values.append(acc)
            else:
                values.append(apply_activation(layer.kind, values[layer.source]))
        return values

    def eval(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``(B, n_outputs)``."""
        return self.eval_all(x)[self.output]


def is_exact(graph: LayerGraph) -> bool:
    """Whether every activation is piecewise linear (an exact MILP encoding of the network exists)."""
    return all(layer.act.exact for layer in graph.layers if isinstance(layer, ActivationLayer))


def point_slopes(graph: LayerGraph, values: list[np.ndarray]) -> list[np.ndarray | None]:
    """Per layer, the derivative of an activation layer at the points whose layer ``values`` are given
    (``eval_all``): ``(B, size)``, None for other layers. ReLU: 1 where its input is positive."""
    return [
        layer.act.derivative(values[layer.source]) if isinstance(layer, ActivationLayer) else None
        for layer in graph.layers
    ]


def box_slopes(graph: LayerGraph, lbs: list[np.ndarray], ubs: list[np.ndarray]) -> list[np.ndarray | None]:
    """Per layer, about the largest ``|f'|`` of an activation layer over its input bounds (a split heuristic's
    weight; ReLU: 1 where it can be active), None for other layers."""
    return [
        layer.act.slope_bound(lbs[layer.source], ubs[layer.source]) if isinstance(layer, ActivationLayer) else None
        for layer in graph.layers
    ]


def backpropagate(
    graph: LayerGraph, seed: np.ndarray, slopes: list[np.ndarray | None], *, absolute: bool = False
) -> np.ndarray:
    """Push per-point output weights ``seed`` ``(B, m)`` back to the input: ``(B, n)``.

    Affine layers multiply by ``W`` (``|W|`` when ``absolute``); activation layer ``j`` multiplies by
    ``slopes[j]`` (``point_slopes``: the gradient at a point; with ``|W|`` and ``box_slopes`` an estimate of
    the largest gradient over a box). A ReLU's slope is 0 or 1, Sign's 0.
    """
    grads: dict[int, np.ndarray] = {graph.output: seed}
    for j in range(graph.output, 0, -1):
        if j not in grads:
            continue
        g = grads.pop(j)
        layer = graph.layers[j]
        if isinstance(layer, AffineLayer):
            for i, (src, w) in enumerate(zip(layer.sources, layer.weights, strict=True)):
                op = layer.map_of(i)
                if op is not None:
                    part = op.adjoint(g, absolute=absolute)
                else:
                    part = g @ (layer.abs_weights[i] if absolute else w)
                grads[src] = grads[src] + part if src in grads else part
        elif isinstance(layer, ActivationLayer):
            slope = slopes[j]
            assert slope is not None
            part = g * (np.abs(slope) if absolute else slope)
            grads[layer.source] = grads[layer.source] + part if layer.source in grads else part
    return grads.get(0, np.zeros((seed.shape[0], graph.n_inputs)))


def exact_dot_plus(w: np.ndarray, x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``b + w @ x`` per row, correctly rounded: each product split exactly into two doubles (Dekker's
    TwoProduct with Veltkamp's split; exact barring underflow below 1e-300) and the terms summed by
    ``math.fsum``. The result is within half an ulp of the real value, which the bound margins cover."""

    def split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = 134217729.0 * a
        hi = c - (c - a)
        return hi, a - hi

    out = np.empty(w.shape[0])
    xh, xl = split(x)
    for start in range(0, w.shape[0], 256):  # 256 rows at a time: the temporaries stay small
        rows = w[start : start + 256]
        p = rows * x[None, :]
        wh, wl = split(rows)
        e = ((wh * xh - p) + wh * xl + wl * xh) + wl * xl
        out[start : start + 256] = [math.fsum((float(b[start + i]), *p[i], *e[i])) for i in range(rows.shape[0])]
    return out


#: ``pin_inputs`` folds at most this many products (``math.fsum`` takes about 0.1 s per million).
PIN_FOLD_MAX = 1 << 23


def pin_inputs(graph: LayerGraph, value: np.ndarray, free: np.ndarray) -> LayerGraph | None:
    """The network with the inputs outside ``free`` (a boolean mask) fixed at ``value``: a graph over the free
    inputs only, the fixed inputs' products folded exactly into the biases (``exact_dot_plus``). None when an
    activation reads the input directly (nothing to fold into), or when folding would cost more than
    ``PIN_FOLD_MAX`` products (the search then keeps the fixed inputs, never splitting them)."""
    pinned = ~free
    folded = sum(
        layer.weights[layer.sources.index(0)].shape[0] * int(pinned.sum())
        for layer in graph.layers
        if isinstance(layer, AffineLayer) and 0 in layer.sources
    )
    if folded > PIN_FOLD_MAX:
        return None
    layers: list[Layer] = [InputLayer(int(free.sum()), graph.layers[0].name)]
    for layer in graph.layers[1:]:
        if isinstance(layer, ActivationLayer) and layer.source == 0:
            return None
        if isinstance(layer, AffineLayer) and 0 in layer.sources:
            k = layer.sources.index(0)
            w = layer.weights[k]
            bias = exact_dot_plus(w[:, pinned], value[pinned], layer.bias)
            weights = (*layer.weights[:k], np.ascontiguousarray(w[:, free]), *layer.weights[k + 1 :])
            layer = AffineLayer(layer.name, layer.sources, weights, bias)
        layers.append(layer)
    return LayerGraph(tuple(layers), graph.output)
