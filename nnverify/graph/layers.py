"""The analysis view of a network: a DAG of flat affine layers and elementwise activations.

``graph/passes.py`` builds it from a ``Graph``: every affine op (Gemm, Conv, BatchNormalization, Reshape ...)
becomes a matrix, and consecutive affine layers are merged. Bounds and encodings work on this view only.
Layer 0 is the input; every other layer refers to earlier layers by index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnverify.graph.ops.base import ActKind


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
    #: ``|W|`` of each weight, computed once: the rounding scales of every bound pass need it.
    abs_weights: tuple[np.ndarray, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "abs_weights", tuple(np.abs(w) for w in self.weights))

    @property
    def size(self) -> int:
        return int(self.bias.shape[0])


@dataclass(frozen=True, slots=True)
class ActivationLayer:
    """``y = kind(value(source))`` elementwise."""

    name: str
    source: int
    kind: ActKind
    size: int


Layer = InputLayer | AffineLayer | ActivationLayer


def apply_activation(kind: ActKind, x: np.ndarray) -> np.ndarray:
    """Concrete activation semantics (float64)."""
    if kind is ActKind.RELU:
        return np.maximum(x, 0.0)
    if kind is ActKind.SIGN:
        return np.sign(x)
    raise ValueError(f"unknown activation {kind}")


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
                for src, w in zip(layer.sources, layer.weights, strict=True):
                    acc += values[src] @ w.T
                values.append(acc)
            else:
                values.append(apply_activation(layer.kind, values[layer.source]))
        return values

    def eval(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``(B, n_outputs)``."""
        return self.eval_all(x)[self.output]


def backpropagate(
    graph: LayerGraph, seed: np.ndarray, active: list[np.ndarray], *, absolute: bool = False
) -> np.ndarray:
    """Push per-point output weights ``seed`` ``(B, m)`` back to the input: ``(B, n)``.

    Affine layers multiply by ``W`` (``|W|`` when ``absolute``); a ReLU passes the weight of neuron ``i`` where
    ``active[source][:, i]`` is true; Sign passes nothing (zero gradient almost everywhere). With the ReLU pattern
    of a point this is the gradient; with ``|W|`` and "can be active" masks it is an upper bound of it.
    """
    grads: dict[int, np.ndarray] = {graph.output: seed}
    for j in range(graph.output, 0, -1):
        if j not in grads:
            continue
        g = grads.pop(j)
        layer = graph.layers[j]
        if isinstance(layer, AffineLayer):
            for src, w in zip(layer.sources, layer.weights, strict=True):
                part = g @ (np.abs(w) if absolute else w)
                grads[src] = grads[src] + part if src in grads else part
        elif isinstance(layer, ActivationLayer) and layer.kind is ActKind.RELU:
            part = g * active[layer.source]
            grads[layer.source] = grads[layer.source] + part if layer.source in grads else part
    return grads.get(0, np.zeros((seed.shape[0], graph.n_inputs)))
