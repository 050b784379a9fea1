"""MILP-refined intermediate bounds: stabilise and narrow unstable ReLUs with HiGHS beside the ReLU search.

α-CROWN bounds each pre-activation over the *relaxed* network below it. For a neuron ``z_j = W_j a + b_j`` of
a later layer, the exact range over the input box is the optimum of a MILP over the layers below it (one
binary per unstable ReLU there, big-M constants from the current bounds). Solving it for every neuron is far
too slow, but two observations make a cheap version pay:

- A neuron whose range barely crosses 0 (small ``min(-l, u) / (u - l)``) is the one a MILP can stabilise, and
  a stabilised neuron drops its triangle relaxation from every bound computed after it. Neurons are taken in
  that order, the side nearer 0 first (``min z`` when ``-l < u``, else ``max z``), the other side only while
  the neuron is unstable. HiGHS prunes every node whose bound already shows the side's sign
  (``objective_bound``), so a neuron that can be stabilised usually is within a fraction of a second; the
  others get their bound tightened by the dual bound reached in ``per_solve_s``.
- After each layer, α-CROWN is re-run on all layers with the refined bounds (``reoptimise``), so the layers
  above profit at once. Tightening matters as much as stabilising: on MNIST 256x4 prop_14 eps 0.05, both
  sides of the second layer's 93 unstable neurons at 1 s per solve (195 s) stabilised 16 and narrowed the rest
  by 11 %, and the last hidden layer went from 144 unstable neurons to 32; at 0.5 s per solve, to 100; asking
  only the side nearer 0, to 114.

- The solves of one layer are independent (each reads only the layers below, fixed while the layer runs),
  so ``workers`` HiGHS models work through the layer side by side, and ``publish`` hands re-optimised
  bounds to the caller every ``PUBLISH_EVERY_S`` and after each layer, so the search need not wait for the
  end: with two workers prop_14 above is proven in 69 s instead of 181 s.

This is the "MIP-refined intermediate bounds" step of α,β-CROWN (Zhang et al., "General cutting planes for
bound-propagation-based neural network verification", NeurIPS 2022, and the VNN-COMP reports), done here
with a time budget and nearest-to-stable ordering so that it fits a 2-core machine.

Soundness: a bound comes from HiGHS's proof (a pruned tree, or its dual bound at the time limit), so it holds
up to HiGHS's feasibility tolerances (as every MILP verdict in nnverify; README "What unsat promises"), and it
is moved outward by ``margin`` before use. A neuron counts as stable only if its bound still has the side's
sign after that margin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnverify.backends.pool import SolverPool, default_pool
from nnverify.graph.layers import ActivationLayer, AffineLayer, LayerGraph

#: Outward margin on a bound taken from HiGHS: ``MARGIN_ABS + MARGIN_REL * (|b_j| + |W_j| @ max|a|)``,
#: well above what primal feasibility tolerance 1e-7 per row can move a neuron's value.
MARGIN_ABS = 1e-5
MARGIN_REL = 1e-6
#: HiGHS settings for the refinement solves (one thread: the search runs on the other core).
#: Within a layer, refined bounds are handed to ``publish`` at most this often (α-CROWN re-run each time).
PUBLISH_EVERY_S = 15.0
HIGHS_OPTIONS: dict[str, object] = {"threads": 1, "mip_rel_gap": 0.0, "mip_abs_gap": 0.0, "random_seed": 0}


@dataclass(slots=True)
class RefineStats:
    """What the refinement did: solves, neurons stabilised and tightened, unstable counts per ReLU layer
    before and after, seconds."""

    solves: int = 0
    stabilised: int = 0
    tightened: int = 0
    unstable_before: tuple[int, ...] = ()
    unstable_after: tuple[int, ...] = ()
    seconds: float = 0.0


Reoptimise = Callable[[list[np.ndarray], list[np.ndarray]], tuple[list[np.ndarray], list[np.ndarray]]]
Publish = Callable[[list[np.ndarray], list[np.ndarray]], None]


def refinable_layers(graph: LayerGraph) -> list[int]:
    """Pre-activation layers of ReLUs that are affine in a ReLU output (the first layer's bounds are exact)."""
    out = []
    for layer in graph.layers:
        if not isinstance(layer, ActivationLayer):
            continue
        pre = graph.layers[layer.source]
        if isinstance(pre, AffineLayer) and all(s != 0 for s in pre.sources):
            out.append(layer.source)
    return out


def _unstable(lbs: list[np.ndarray], ubs: list[np.ndarray], layers: list[int]) -> tuple[int, ...]:
    return tuple(int(np.sum((lbs[s] < 0.0) & (ubs[s] > 0.0))) for s in layers)


def _candidates(lb: np.ndarray, ub: np.ndarray) -> list[int]:
    """Unstable neurons, nearest to stable (smallest ``min(-l, u) / (u - l)``) first."""
    idx = np.nonzero((lb < 0.0) & (ub > 0.0))[0]
    if idx.size == 0:
        return []
    ratio = np.minimum(-lb[idx], ub[idx]) / (ub[idx] - lb[idx])
    return [int(j) for j in idx[np.argsort(ratio, kind="stable")]]


def refine_bounds(
    graph: LayerGraph,
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
    *,
    deadline: float,
    per_solve_s: float,
    reoptimise: Reoptimise,
    cancel: threading.Event | None = None,
    workers: int = 1,
    publish: Publish | None = None,
    publish_every_s: float = PUBLISH_EVERY_S,
    stats: RefineStats | None = None,
    pool: SolverPool | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], RefineStats]:
    """Tighten the per-layer bounds ``lbs/ubs`` (one box, ``(size,)`` each) by MILPs until ``deadline``
    (``time.monotonic()``); returns new lists (the inputs are not changed) and what was done.

    ``workers`` HiGHS models solve a layer's neurons side by side (the solves of one layer are independent:
    each reads only the layers below, which stay fixed while the layer is refined). ``publish``, when given,
    receives re-optimised copies of the bounds after every layer that changed and, within a layer, every
    ``publish_every_s`` seconds once something was tightened, so a caller can use them before the end.
    ``stats``, when given, is filled in as the work goes (a caller that stops early still sees the counts).
    HiGHS runs through ``pool`` (its scheduler, direct solves; the process's default pool if None)."""

    started = time.monotonic()
    pool = pool or default_pool()
    layers = refinable_layers(graph)
    lbs, ubs = [v.copy() for v in lbs], [v.copy() for v in ubs]
    stats = stats if stats is not None else RefineStats()
    stats.unstable_before = _unstable(lbs, ubs, layers)

    def stopped() -> bool:
        return time.monotonic() >= deadline or (cancel is not None and cancel.is_set())

    for s in layers:
        if stopped():
            break
        todo = _candidates(lbs[s], ubs[s])
        if not todo:
            continue
        before = stats.tightened
        pool.ready_scheduler(HIGHS_OPTIONS)
        job = _LayerJob(graph, s, lbs, ubs, todo, stats, stopped, deadline, per_solve_s)
        threads = [
            threading.Thread(target=job.work, args=(_prefix_model(graph, s, lbs, ubs, pool),), daemon=True)
            for _ in range(max(1, min(workers, len(todo))))
        ]
        with pool.direct():
            for t in threads:
                t.start()
            shown, last = before, time.monotonic()
            while alive := [t for t in threads if t.is_alive()]:
                alive[0].join(0.2)
                if publish is not None and stats.tightened > shown and time.monotonic() - last >= publish_every_s:
                    shown, last = stats.tightened, time.monotonic()
                    publish(*_settle_copy(graph, s, job.snapshot(), reoptimise))
            for t in threads:
                t.join()  # every solve has ended before the layer does (see ``SolverPool.direct``)
        if cancel is not None and cancel.is_set():
            break
        if stats.tightened > before:
            lbs, ubs = _settle_copy(graph, s, job.snapshot(), reoptimise)
            if publish is not None:
                publish([v.copy() for v in lbs], [v.copy() for v in ubs])
    stats.unstable_after = _unstable(lbs, ubs, layers)
    stats.seconds = time.monotonic() - started
    return lbs, ubs, stats


class _LayerJob:
    """The neurons of one layer left to refine, shared by the worker threads (each with its own HiGHS).

    Workers take neurons nearest to stable first and write only that neuron's entries of layer ``s``; the
    layers below, which the models were built from, do not change while the layer is refined."""

    def __init__(
        self,
        graph: LayerGraph,
        s: int,
        lbs: list[np.ndarray],
        ubs: list[np.ndarray],
        todo: list[int],
        stats: RefineStats,
        stopped: Callable[[], bool],
        deadline: float,
        per_solve_s: float,
    ) -> None:
        layer = graph.layers[s]
        assert isinstance(layer, AffineLayer)
        self.layer, self.s, self.lbs, self.ubs, self.stats = layer, s, lbs, ubs, stats
        self.queue = list(reversed(todo))  # pop() takes the nearest to stable first
        self.stopped, self.deadline, self.per_solve_s = stopped, deadline, per_solve_s
        self.lock = threading.Lock()

    def snapshot(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        with self.lock:
            return [v.copy() for v in self.lbs], [v.copy() for v in self.ubs]

    def work(self, prefix: _Prefix) -> None:
        lb, ub = self.lbs[self.s], self.ubs[self.s]
        while not self.stopped():
            with self.lock:
                if not self.queue:
                    return
                j = self.queue.pop()
            # the side nearer 0 first; the other only if the neuron is still unstable
            for lower_side in (-lb[j] < ub[j], -lb[j] >= ub[j]):
                left = self.deadline - time.monotonic()
                if left <= 0.05 or self.stopped() or lb[j] >= 0.0 or ub[j] <= 0.0:
                    break
                time_s = min(self.per_solve_s, left)
                bound = _tighten_bound(prefix, self.layer, j, lower_side, time_s, self.lbs, self.ubs)
                with self.lock:
                    _apply(bound, j, lower_side, lb, ub, self.stats)


def _settle_copy(
    graph: LayerGraph, s: int, bounds: tuple[list[np.ndarray], list[np.ndarray]], reoptimise: Reoptimise
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``bounds`` (copies, refined up to layer ``s``) with the ReLU outputs of ``s`` following it and
    α-CROWN re-run: what a caller may use while layer ``s`` is still being refined."""
    lo, hi = bounds
    for k, act in enumerate(graph.layers):
        if isinstance(act, ActivationLayer) and act.source == s:
            lo[k], hi[k] = np.maximum(lo[s], 0.0), np.maximum(hi[s], 0.0)
    new_l, new_u = reoptimise(lo, hi)
    return (
        [np.maximum(a, b) for a, b in zip(lo, new_l, strict=True)],
        [np.minimum(a, b) for a, b in zip(hi, new_u, strict=True)],
    )


def _apply(
    bound: tuple[float, float] | None, j: int, lower_side: bool, lb: np.ndarray, ub: np.ndarray, stats: RefineStats
) -> None:
    """Move ``lb[j]`` or ``ub[j]`` inward to a proven ``(bound, margin)`` and count it."""
    stats.solves += 1
    if bound is None:
        return
    value, margin = bound
    if lower_side and value - margin > lb[j]:
        lb[j] = value - margin
    elif not lower_side and value + margin < ub[j]:
        ub[j] = value + margin
    else:
        return
    stats.tightened += 1
    stats.stabilised += int(lb[j] >= 0.0 or ub[j] <= 0.0)


def _tighten_bound(
    prefix: _Prefix,
    layer: AffineLayer,
    j: int,
    lower_side: bool,
    time_s: float,
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
) -> tuple[float, float] | None:
    """One solve for one side of neuron ``j`` of ``layer``: the proven bound and the outward margin it needs,
    or None when HiGHS proved nothing."""
    import highspy

    scale = abs(float(layer.bias[j])) + sum(
        float(np.abs(w[j]) @ np.maximum(np.abs(lbs[src]), np.abs(ubs[src])))
        for src, w in zip(layer.sources, layer.weights, strict=True)
    )
    margin = MARGIN_ABS + MARGIN_REL * scale
    bound = _solve_side(prefix, layer, j, lower_side, 2.0 * margin, time_s, highspy)
    return None if bound is None else (bound, margin)


@dataclass(frozen=True, slots=True)
class _Prefix:
    """One worker's HiGHS model of the network below a layer, the column indices of every layer's variables,
    whether it has integer columns (without, HiGHS solves it as an LP), and the pool it runs through."""

    highs: object
    cols: list[np.ndarray]
    is_mip: bool
    pool: SolverPool


def _prefix_model(graph: LayerGraph, s: int, lbs: list[np.ndarray], ubs: list[np.ndarray], pool: SolverPool) -> _Prefix:
    """HiGHS holding the network below layer ``s`` (its ReLUs exact, big-M from the bounds)."""
    import highspy

    from nnverify.backends.highs import pass_model
    from nnverify.encode.milp import lower
    from nnverify.encode.network import encode_network

    prefix = LayerGraph(graph.layers[:s], s - 1)
    problem, var = encode_network(prefix, lbs[:s], ubs[:s])
    model = lower(problem)
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    pass_model(highs, model)
    for name, value in HIGHS_OPTIONS.items():
        highs.setOptionValue(name, value)
    return _Prefix(highs, var, bool(np.any(model.integrality)), pool)


def _solve_side(
    prefix: _Prefix,
    layer: AffineLayer,
    j: int,
    lower_side: bool,
    gap: float,
    time_s: float,
    highspy: object,
) -> float | None:
    """A proven bound on ``z_j`` from below (``lower_side``) or above, or None when HiGHS proved nothing.

    The objective is ``±(W_j a)``. Nodes that cannot reach ``|z_j| < gap`` on the wrong side are pruned
    (``objective_bound``), so "infeasible" proves ``z_j >= gap`` (or ``<= -gap``); otherwise the dual bound
    reached (at the optimum or the time limit) is the bound. Without an integer column the model is an LP,
    whose ``mip_dual_bound`` is no bound (HiGHS reports 0.0): there the LP optimum is, or the cut-off when
    the dual simplex stopped at it."""
    h = prefix.highs  # highspy.Highs
    sense = 1.0 if lower_side else -1.0
    n = h.getNumCol()  # type: ignore[attr-defined]
    cost = np.zeros(n)
    for src, w in zip(layer.sources, layer.weights, strict=True):
        np.add.at(cost, prefix.cols[src], sense * w[j])
    h.changeColsCost(n, np.arange(n, dtype=np.int32), cost)  # type: ignore[attr-defined]
    cut = -sense * float(layer.bias[j])  # objective value where z_j = 0
    h.setOptionValue("objective_bound", cut + gap)  # type: ignore[attr-defined]
    h.setOptionValue("time_limit", float(time_s))  # type: ignore[attr-defined]
    prefix.pool.run_direct(h)  # restarts HiGHS's scheduler if another user started it with another size
    ms = highspy.HighsModelStatus  # type: ignore[attr-defined]
    status = h.getModelStatus()  # type: ignore[attr-defined]
    info = h.getInfo()  # type: ignore[attr-defined]
    if status in (ms.kInfeasible, ms.kObjectiveBound) and not prefix.is_mip:
        best = cut + gap  # LP: infeasible, or the dual simplex proved the optimum above the cut-off
    elif not prefix.is_mip:
        if status != ms.kOptimal:
            return None
        best = float(info.objective_function_value)
    elif status == ms.kInfeasible:
        best = cut + gap  # every node pruned: the objective cannot go below the cut-off
    elif status in (ms.kOptimal, ms.kTimeLimit, ms.kObjectiveBound):
        # Nodes pruned by the cut-off are not in HiGHS's dual bound, and with an incumbent above the cut-off
        # (e.g. kept from the previous objective) HiGHS reports that incumbent as "optimal": the proven
        # bound is the smaller of the two (tests/bounds/test_refine.py catches the difference).
        best = min(float(info.mip_dual_bound), cut + gap)
    else:
        return None
    if not np.isfinite(best):
        return None
    return sense * best + float(layer.bias[j])
