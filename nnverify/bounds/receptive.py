"""Back-substitution rows on their receptive field: the rows of a few neurons of a convolutional layer are nonzero
only on a window of every earlier layer, so they are walked on the sub-view of those windows (same coefficients,
each product and sum over the window alone).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnverify.bounds.backward import LayerBounds
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, Layer, LayerGraph

#: A group's window must leave out at least this share of the elements below it, else it walks the whole view
#: (kernel operators, no slicing).
MIN_SAVING = 0.5


def _csr(w: Any) -> Any:
    from scipy import sparse  # imported on first use: scipy costs start-up time on every check

    return w if sparse.issparse(w) else sparse.csr_matrix(w)


def position_keys(view: LayerGraph) -> list[np.ndarray]:
    """Per layer, each element's lowest input index it depends on: a convolutional layer's elements sorted by
    it are sorted by position (row-major), whatever their channel, so consecutive ones share their windows."""
    keys = [np.arange(view.layers[0].size)]
    for layer in view.layers[1:]:
        if not isinstance(layer, AffineLayer):
            keys.append(keys[layer.source] if isinstance(layer, ActivationLayer) else np.arange(layer.size))
            continue
        key = np.full(layer.size, np.iinfo(np.int64).max)
        for src, w in zip(layer.sources, layer.weights, strict=True):
            m = _csr(w)
            rows = np.flatnonzero(np.diff(m.indptr) > 0)
            if rows.size:
                part = np.minimum.reduceat(keys[src][m.indices], m.indptr[rows])
                key[rows] = np.minimum(key[rows], part)
        keys.append(key)
    return keys


def supports(view: LayerGraph, k: int, idx: np.ndarray) -> dict[int, np.ndarray]:
    """Per layer below the affine layer ``k`` that the rows ``idx`` of ``k`` reach, the sorted indices where their
    coefficients can be nonzero; an activation shares its source's indices (the walk multiplies them)."""
    out: dict[int, np.ndarray] = {}
    layer = view.layers[k]
    assert isinstance(layer, AffineLayer)
    reach = [(src, _csr(w)[idx].indices) for src, w in zip(layer.sources, layer.weights, strict=True)]
    for j in range(k - 1, -1, -1):
        parts = [cols for src, cols in reach if src == j]
        if not parts:
            continue
        out[j] = np.unique(np.concatenate(parts))
        below = view.layers[j]
        if isinstance(below, ActivationLayer):
            reach.append((below.source, out[j]))
        elif isinstance(below, AffineLayer):
            reach += [(src, _csr(w)[out[j]].indices) for src, w in zip(below.sources, below.weights, strict=True)]
    for j in sorted(out):
        below = view.layers[j]
        if isinstance(below, ActivationLayer):
            out[j] = out[below.source]
    return out


def pays(view: LayerGraph, support: dict[int, np.ndarray]) -> bool:
    """Whether the windows leave out at least ``MIN_SAVING`` of the elements of the layers they cover."""
    kept = sum(s.size for s in support.values())
    return kept <= (1.0 - MIN_SAVING) * sum(view.layers[j].size for j in support)


def restrict(view: LayerGraph, support: dict[int, np.ndarray], k: int) -> LayerGraph:
    """The layers below ``k`` on their windows (``support``); layers no row reaches are kept unchanged (the walk
    never visits them)."""
    layers: list[Layer] = []
    for j, layer in enumerate(view.layers[:k]):
        own = support.get(j)
        if own is None:
            layers.append(layer)
        elif isinstance(layer, InputLayer):
            layers.append(InputLayer(size=own.size, name=layer.name))
        elif isinstance(layer, ActivationLayer):
            layers.append(ActivationLayer(layer.name, layer.source, layer.kind, own.size))
        else:
            weights = tuple(_csr(w)[own][:, support[s]] for s, w in zip(layer.sources, layer.weights, strict=True))
            layers.append(AffineLayer(layer.name, layer.sources, weights, layer.bias[own]))
    return LayerGraph(tuple(layers), k - 1)


def restrict_bounds(bounds: LayerBounds, support: dict[int, np.ndarray]) -> LayerBounds:
    """``bounds`` of the layers in ``support`` on their windows (the others unchanged)."""
    pick = [support.get(j) for j in range(len(bounds.lb))]
    return LayerBounds(
        [v if s is None else v[:, s] for v, s in zip(bounds.lb, pick, strict=True)],
        [v if s is None else v[:, s] for v, s in zip(bounds.ub, pick, strict=True)],
    )


def walk_cost(view: LayerGraph, samples: int = 3) -> float:
    """Estimated multiply-adds of tightening every activation input of ``view`` by back-substitution on its windows
    (two rows per element, each the nonzeros and elements of its windows; sampled at ``samples`` positions of
    each layer): the work of one box at the root, where most are open."""
    keys = position_keys(view)
    feeds = {la.source for la in view.layers if isinstance(la, ActivationLayer)}
    cost = 0.0
    for k in sorted(feeds):
        layer = view.layers[k]
        if not isinstance(layer, AffineLayer):
            continue
        order = np.argsort(keys[k], kind="stable")
        picks = order[(np.arange(samples) + 1) * order.size // (samples + 1)]
        per_row = 0.0
        for i in picks:
            support = supports(view, k, np.array([i]))
            per_row += sum(_window_work(view.layers[j], j, support) for j in support)
        cost += 2.0 * layer.size * per_row / samples
    return cost


def _window_work(layer: Layer, j: int, support: dict[int, np.ndarray]) -> float:
    """Multiply-adds of one row through layer ``j`` on its window: its nonzeros there, or its elements."""
    if isinstance(layer, AffineLayer):
        return float(
            sum(_csr(w)[support[j]][:, support[s]].nnz for s, w in zip(layer.sources, layer.weights, strict=True))
        )
    return float(support[j].size)
