"""α-CROWN bounds of a Conv layer's neurons on their receptive fields: the unit rows of a few neighbouring
neurons are nonzero only on a window of every layer below (``bounds/receptive.py``), so their passes run on
the sub-network of those windows (sparse weights) with the same coefficients, sums over the windows alone."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnverify.bounds import receptive
from nnverify.bounds.backward import LayerBounds
from nnverify.graph.layers import ActivationLayer, AffineLayer, LayerGraph

#: Neurons per group (sorted by position, so a group's windows overlap): on ``cifar_base_kw``'s second Conv,
#: 286 unstable neurons, 10 α steps: 2.5 s CPU on the whole network, 0.63 s on windows of 64.
GROUP = 64
#: A group whose windows do not pay is halved down to this size (sparse unstable neurons are far apart).
MIN_GROUP = 4

#: ``(graph, bounds, k, idx[, alpha=]) -> (lower, upper, alpha)``: ``optimized.neuron_bounds``, options bound.
NeuronBounds = Callable[..., tuple[np.ndarray, np.ndarray, dict]]


class Windows:
    """The sparse view of a network (every weight as CSR, no kernel maps) and its elements' position keys."""

    def __init__(self, graph: LayerGraph) -> None:
        from scipy import sparse  # imported on first use: scipy costs start-up time on every check

        layers = tuple(
            AffineLayer(la.name, la.sources, tuple(sparse.csr_matrix(w) for w in la.weights), la.bias)
            if isinstance(la, AffineLayer)
            else la
            for la in graph.layers
        )
        self.graph, self.view = graph, LayerGraph(layers, graph.output)
        self.keys = receptive.position_keys(self.view)

    def neuron_bounds(
        self,
        bounds: LayerBounds,
        k: int,
        idx: np.ndarray,
        bound: NeuronBounds,
        given: dict[int, np.ndarray] | None = None,
        slopes: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        """``bound(graph, bounds, k, idx)`` computed per group of ``GROUP`` neurons on their windows where those
        leave out enough of the layers below (``receptive.pays``), else on the whole network: the same bounds
        ``(B, len(idx))`` to rounding, and (with ``slopes``) the slopes ``(B, 2 * len(idx), size_r)`` per ReLU
        layer below ``k`` (CROWN's adaptive slope outside a row's windows, where its coefficients are 0). With
        ``given`` slopes ``(1 or B, 2 * len(idx), size_r)`` (``Slopes.rows``), each group gets its rows of them on
        its windows as ``bound``'s ``alpha``."""
        batch = bounds.lb[0].shape[0]
        lower, upper = np.empty((batch, idx.size)), np.empty((batch, idx.size))
        alpha: dict[int, np.ndarray] = {}
        pos = {int(j): p for p, j in enumerate(idx)}
        for group, support in self._groups(k, idx):
            at = np.array([pos[int(j)] for j in group])
            rows = np.concatenate([at, at + idx.size])
            if support is None:
                cols = {r: np.arange(self.graph.layers[r].size) for r in self._relus(k)}
                view, sub, local = self.graph, bounds, group
            else:
                support[k] = group
                cols = {r: support[r] for r in self._relus(k) if r in support}
                view, sub, local = self._restrict(support, k), receptive.restrict_bounds(bounds, support), None
            extra = {} if given is None else {"alpha": {r: a[:, rows][..., cols[r]] for r, a in given.items()}}
            lo, hi, a = bound(view, sub, k, np.arange(group.size) if local is None else local, **extra)
            lower[:, at], upper[:, at] = lo, hi
            for r, v in a.items() if slopes else ():
                if r not in alpha:
                    alpha[r] = self._default(bounds, r, batch, 2 * idx.size)
                alpha[r][:, rows[:, None], cols[r]] = np.broadcast_to(v, (batch, *v.shape[1:]))
        return lower, upper, alpha

    def _groups(self, k: int, idx: np.ndarray) -> list[tuple[np.ndarray, dict[int, np.ndarray] | None]]:
        """Neurons ``idx`` of layer ``k`` in position order, in groups of at most ``GROUP`` whose windows pay (a
        group whose windows do not is halved, down to ``MIN_GROUP``), each with its windows (None: they do not
        pay, the group goes through the whole network)."""
        order = idx[np.argsort(self.keys[k][idx], kind="stable")]
        todo = [order[s : s + GROUP] for s in range(0, order.size, GROUP)][::-1]
        out: list[tuple[np.ndarray, dict[int, np.ndarray] | None]] = []
        while todo:
            group = todo.pop()
            support = receptive.supports(self.view, k, group)
            if receptive.pays(self.view, support):
                out.append((group, support))
            elif group.size > MIN_GROUP:
                half = group.size // 2
                todo += [group[half:], group[:half]]
            else:
                out.append((group, None))
        return out

    def _relus(self, k: int) -> list[int]:
        return [r for r, la in enumerate(self.graph.layers[:k]) if isinstance(la, ActivationLayer)]

    def _restrict(self, support: dict[int, np.ndarray], k: int) -> LayerGraph:
        """The layers up to ``k`` on their windows; layer ``k`` (a group's rows) dense."""
        view = receptive.restrict(self.view, support, k + 1)
        top = view.layers[k]
        assert isinstance(top, AffineLayer)
        dense = AffineLayer(top.name, top.sources, tuple(w.toarray() for w in top.weights), top.bias)  # type: ignore[attr-defined]
        return LayerGraph((*view.layers[:k], dense), k)

    def _default(self, bounds: LayerBounds, r: int, batch: int, rows: int) -> np.ndarray:
        """CROWN's adaptive slopes of ReLU layer ``r`` (1 where ``ub > -lb``), for every row."""
        layer = self.graph.layers[r]
        assert isinstance(layer, ActivationLayer)
        lb, ub = bounds.lb[layer.source], bounds.ub[layer.source]
        slope = np.broadcast_to((ub > -lb).astype(np.float64), (batch, layer.size))
        return np.repeat(slope[:, None, :], rows, axis=1)


def has_kernel_maps(graph: LayerGraph) -> bool:
    """Whether some affine layer goes through a kernel (a Conv that pays) instead of its dense matrix."""
    return any(
        isinstance(layer, AffineLayer) and any(layer.map_of(i) is not None for i in range(len(layer.sources)))
        for layer in graph.layers
    )


_CACHE: dict[int, Windows] = {}


def windows_of(graph: LayerGraph) -> Windows | None:
    """The ``Windows`` of a network with kernel maps (built once per network), else None."""
    if not has_kernel_maps(graph):
        return None
    found = _CACHE.get(id(graph))
    if found is None or found.graph is not graph:
        if len(_CACHE) >= 4:
            _CACHE.clear()
        found = _CACHE[id(graph)] = Windows(graph)
    return found
