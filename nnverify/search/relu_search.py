"""The bounding of the ReLU branch and bound (``ReluSearch``): each domain's own intermediate bounds
(tightened after its splits, intersected with refined root bounds) and its property rows by α/β-CROWN, the
branching choice for the open ones (``relu_branching.py``); the root domains (``root_domains``)."""

from __future__ import annotations

from functools import partial

import numpy as np

from nnverify.bounds.backward import LayerBounds
from nnverify.bounds.optimized import Slopes, neuron_bounds, optimize
from nnverify.bounds.propagate import propagate
from nnverify.bounds.relu_pass import Duals, relu_layers
from nnverify.bounds.relu_windows import has_kernel_maps, windows_of
from nnverify.graph.layers import ActivationLayer, LayerGraph
from nnverify.options import Options
from nnverify.search.bab import SearchStats
from nnverify.search.relu_branching import candidates, choose
from nnverify.search.relu_domains import CLEAN, Domains, Rows, children
from nnverify.spec.property import Disjunct

#: α-CROWN iterations per pre-activation layer at the root, for the rows at the root, and per branching step.
ROOT_LAYER_ITERATIONS = 20
#: The same on Conv networks (``has_kernel_maps``): on cifar_base_kw's root the last 10 of 20 steps narrowed the
#: unstable neurons' ranges by 0.2 % for 2.3 s CPU (``root_layer_iterations``).
ROOT_LAYER_ITERATIONS_CONV = 10
ROOT_ITERATIONS = 50
BRANCH_ITERATIONS = 30
#: Domains whose intermediate bounds are recomputed together (memory: rows x inputs per domain).
TIGHTEN_CHUNK = 32
#: Domains propagated together (memory: the rows that can tighten something, x their width).
PROPAGATE_CHUNK = 16


class ReluSearch:
    """State of one ReLU branch and bound over one input box."""

    def __init__(
        self,
        graph: LayerGraph,
        root: LayerBounds,
        rows: Rows,
        disjuncts: list[Disjunct],
        options: Options,
        slopes: dict[int, Slopes] | None = None,
    ) -> None:
        self.graph, self.root, self.rows, self.disjuncts = graph, root, rows, disjuncts
        self.slopes = slopes or {}
        self.margins = {"margin_rel": options.bound_margin_rel, "margin_abs": options.bound_margin_abs}
        self.relu = {r: graph.layers[r].source for r in relu_layers(graph)}  # type: ignore[union-attr]
        self.relu_of = {src: r for r, src in self.relu.items()}
        self.pre = list(self.relu.values())
        self.stats = SearchStats()
        #: How many times refined root bounds were absorbed (a batch taken before the last one catches up).
        self.generation = 0
        #: Conv networks: a domain's α/β ascent stops once it gains too slowly to prove it (``optimize``'s
        #: ``give_up``); FC networks keep every step (their decisions are pinned by ``bench/refactor_trace.py``).
        self.give_up = has_kernel_maps(graph)
        #: Conv networks: a Conv layer's neurons are recomputed on their receptive fields (``relu_windows``).
        self.windows = windows_of(graph)

    def bounds_of(self, dom: Domains, sel: np.ndarray | None = None) -> LayerBounds:
        """Every layer's bounds for a batch of domains (or the ``sel`` ones): the input box, the domains' own
        pre-activation bounds, and the ReLU outputs of those."""
        batch = len(dom) if sel is None else sel.size
        lbs = [np.broadcast_to(v, (batch, v.shape[1])) for v in self.root.lb]
        ubs = [np.broadcast_to(v, (batch, v.shape[1])) for v in self.root.ub]
        for k, layer in enumerate(self.graph.layers):
            if k in dom.lb:
                lbs[k], ubs[k] = (dom.lb[k], dom.ub[k]) if sel is None else (dom.lb[k][sel], dom.ub[k][sel])
            elif isinstance(layer, ActivationLayer):
                lbs[k], ubs[k] = np.maximum(lbs[layer.source], 0.0), np.maximum(ubs[layer.source], 0.0)
        return LayerBounds(lbs, ubs)

    def tighten(self, dom: Domains) -> np.ndarray:
        """Recompute the bounds of the domains with new splits, in place; ``(B,)`` mask of the domains found
        empty.

        A split clamps its neuron's bound at 0, which tightens every later layer: the bounds of the layers
        after ``since`` are back-substituted again through the domain's bounds and intersected with the ones
        it had (both hold on the domain's region). On MNIST 256x4 prop_3 at eps 0.05 this took the search from
        4,761 domains to 577. Then constraint propagation (``bounds/propagate.py``) carries the splits back to
        the earlier layers and forward again (491 domains to 117)."""
        todo = dom.since < CLEAN
        empty = np.zeros(len(dom), dtype=bool)
        if not np.any(todo):
            return empty
        for k in self.pre:
            sel = np.nonzero(dom.since < k)[0]
            for start in range(0, sel.size, TIGHTEN_CHUNK):
                part = sel[start : start + TIGHTEN_CHUNK]
                lb, ub = dom.lb[k][part], dom.ub[k][part]
                idx = np.nonzero(np.any((lb < 0.0) & (ub > 0.0), axis=0))[0]
                if idx.size == 0:
                    continue
                lower, upper = self._recompute(self.bounds_of(dom, part), k, idx)
                dom.lb[k][part[:, None], idx] = np.maximum(lb[:, idx], lower)
                dom.ub[k][part[:, None], idx] = np.minimum(ub[:, idx], upper)
        sel = np.nonzero(todo)[0]
        for start in range(0, sel.size, PROPAGATE_CHUNK):
            part = sel[start : start + PROPAGATE_CHUNK]
            tight, crossed = propagate(self.graph, self.bounds_of(dom, part), **self.margins)
            for s in self.pre:
                dom.lb[s][part], dom.ub[s][part] = tight.lb[s], tight.ub[s]
            empty[part] = crossed
        dom.since[todo] = CLEAN
        return empty

    def _recompute(self, bounds: LayerBounds, k: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds ``(B, len(idx))`` of neurons ``idx`` of layer ``k`` through ``bounds`` with the root's slopes (a
        Conv layer's on its receptive fields, ``relu_windows``: the same bounds to rounding)."""
        alpha = self.slopes[k].rows(idx) if k in self.slopes else None
        rel, abs_ = self.margins["margin_rel"], self.margins["margin_abs"]
        bound = partial(neuron_bounds, iterations=0, margin_rel=rel, margin_abs=abs_)
        if self.windows is not None and self.graph.layers[k].map_of(0) is not None:  # type: ignore[union-attr]
            lower, upper, _ = self.windows.neuron_bounds(bounds, k, idx, bound, given=alpha, slopes=False)
        else:
            lower, upper, _ = bound(self.graph, bounds, k, idx, alpha=alpha)
        return lower, upper

    def absorb(self, refined: LayerBounds, slopes: dict[int, Slopes], domains: list[Domains]) -> None:
        """Take tighter root bounds (MILP-refined, valid on the whole box, so on every domain) and the
        α-CROWN slopes optimised for them: intersect the bounds into every open domain's and have the layers
        after the first recomputed when each is next bounded. The tree so far is kept (restarting from the
        root threw away up to a publishing period of search each time the refinement published). Domains
        being bounded meanwhile catch up through ``generation`` (``catch_up``)."""
        self.root = refined
        if slopes:
            self.slopes = slopes
        self.generation += 1
        self.intersect(domains)

    def intersect(self, domains: list[Domains]) -> None:
        """The root's bounds intersected into ``domains``' own (in place), later layers to be recomputed."""
        for dom in domains:
            for s in self.pre:
                np.maximum(dom.lb[s], self.root.lb[s], out=dom.lb[s])
                np.minimum(dom.ub[s], self.root.ub[s], out=dom.ub[s])
            dom.since[:] = self.pre[0]

    def evaluate(self, dom: Domains, iterations: int) -> tuple[np.ndarray, Duals, np.ndarray, np.ndarray]:
        """Optimised sound lower bound per domain ``(B,)`` (best row), the duals, the branching choice
        ``(B, 2)`` (layer, neuron; -1 when none is left) and the relaxed minimiser ``(B, n)``."""
        # bounds that cross (lb > ub) prove the domain's region empty: nothing in it can be a counterexample
        empty = self.tighten(dom)
        for s in self.pre:
            empty |= np.any(dom.lb[s] > dom.ub[s], axis=1)
        bounds = self.bounds_of(dom)
        lower, duals, passed, coef_x = optimize(
            self.graph,
            bounds,
            self.graph.output,
            *self.rows.take(dom.disjunct),
            dom.duals,
            dom.splits,
            iterations=iterations,
            margin_rel=self.margins["margin_rel"],
            margin_abs=self.margins["margin_abs"],
            stop_proven=True,
            give_up=self.give_up,
        )
        # Seed the β slot of every unsplit neuron (where it has no effect) with its positive coefficient, so
        # that a split can start from the parent's own line (``relu_domains.split``).
        for r, src in self.relu.items():
            if r in passed.lam:
                free = dom.splits[src][:, None, :] == 0
                duals.beta[src] = np.where(free, np.maximum(passed.lam[r], 0.0), duals.beta[src])
        best_row = np.argmax(lower, axis=1)
        at = np.arange(len(dom))
        x_star = np.where(coef_x[at, best_row] >= 0.0, bounds.lb[0], bounds.ub[0])
        best = np.where(empty, np.inf, np.maximum(lower.max(axis=1), dom.known))
        choice = np.full((len(dom), 2), -1, dtype=np.int64)
        open_ = np.nonzero(best <= 0.0)[0]
        if open_.size:
            cands = candidates(self.graph, bounds, passed.lam, best_row, dom.splits, open_)
            dom_open = dom.take(open_)
            dom_open.duals, dom_open.known = duals.take(open_), best[open_]
            rows = self.rows.take(dom_open.disjunct)
            choice[open_] = choose(
                self.graph, self.bounds_of(dom_open), rows, dom_open, cands, passed.take(open_), self.margins
            )
        return best, duals, choice, x_star

    def children(self, dom: Domains, choice: np.ndarray) -> Domains:
        """Both branches of every domain on its chosen neuron."""
        return children(dom, choice, self.relu_of)


def root_layer_iterations(graph: LayerGraph) -> int:
    """α-CROWN steps per pre-activation layer for the root bounds of ``graph``."""
    return ROOT_LAYER_ITERATIONS_CONV if has_kernel_maps(graph) else ROOT_LAYER_ITERATIONS


def root_domains(search: ReluSearch) -> Domains:
    """One domain per live disjunct, nothing split, duals at their start values."""
    n = len(search.disjuncts)
    first = Domains(
        {s: np.zeros((n, search.root.lb[s].shape[1]), dtype=np.int8) for s in search.pre},
        {s: np.repeat(search.root.lb[s], n, axis=0) for s in search.pre},
        {s: np.repeat(search.root.ub[s], n, axis=0) for s in search.pre},
        np.full(n, CLEAN, dtype=np.int64),
        Duals({}, {}),
        np.arange(n),
        np.zeros(n, dtype=np.int64),
        np.full(n, -np.inf),
    )
    first.duals = Duals.initial(search.graph, search.bounds_of(first), search.rows.b.shape[1], first.splits)
    return first
