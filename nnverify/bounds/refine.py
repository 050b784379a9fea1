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

from nnverify.graph.layers import ActivationLayer, AffineLayer, LayerGraph

#: Outward margin on a bound taken from HiGHS: ``MARGIN_ABS + MARGIN_REL * (|b_j| + |W_j| @ max|a|)``,
#: well above what primal feasibility tolerance 1e-7 per row can move a neuron's value.
MARGIN_ABS = 1e-5
MARGIN_REL = 1e-6
#: HiGHS settings for the refinement solves (one thread: the search runs on the other core).
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
) -> tuple[list[np.ndarray], list[np.ndarray], RefineStats]:
    """Tighten the per-layer bounds ``lbs/ubs`` (one box, ``(size,)`` each) by MILPs until ``deadline``
    (``time.monotonic()``); returns new lists (the inputs are not changed) and what was done."""

    started = time.monotonic()
    layers = refinable_layers(graph)
    lbs, ubs = [v.copy() for v in lbs], [v.copy() for v in ubs]
    stats = RefineStats(unstable_before=_unstable(lbs, ubs, layers))
    for s in layers:
        if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
            break
        todo = _candidates(lbs[s], ubs[s])
        if not todo:
            continue
        highs, cols = _prefix_model(graph, s, lbs, ubs)
        layer = graph.layers[s]
        assert isinstance(layer, AffineLayer)
        changed = False
        for j in todo:
            # the side nearer 0 first; the other only if the neuron is still unstable
            for lower_side in (-lbs[s][j] < ubs[s][j], -lbs[s][j] >= ubs[s][j]):
                left = deadline - time.monotonic()
                if left <= 0.05 or (cancel is not None and cancel.is_set()) or lbs[s][j] >= 0.0 or ubs[s][j] <= 0.0:
                    break
                if _tighten(highs, cols, layer, j, lower_side, min(per_solve_s, left), lbs, ubs, s, stats):
                    changed = True
        if changed:
            for k, act in enumerate(graph.layers):
                if isinstance(act, ActivationLayer) and act.source == s:
                    lbs[k], ubs[k] = np.maximum(lbs[s], 0.0), np.maximum(ubs[s], 0.0)
            new_l, new_u = reoptimise(lbs, ubs)
            lbs = [np.maximum(a, b) for a, b in zip(lbs, new_l, strict=True)]
            ubs = [np.minimum(a, b) for a, b in zip(ubs, new_u, strict=True)]
    stats.unstable_after = _unstable(lbs, ubs, layers)
    stats.seconds = time.monotonic() - started
    return lbs, ubs, stats


def _tighten(
    highs: object,
    cols: list[np.ndarray],
    layer: AffineLayer,
    j: int,
    lower_side: bool,
    time_s: float,
    lbs: list[np.ndarray],
    ubs: list[np.ndarray],
    s: int,
    stats: RefineStats,
) -> bool:
    """One solve for one side of neuron ``j`` of layer ``s``; moves ``lbs[s][j]`` or ``ubs[s][j]`` inward
    (to the proven bound less the margin) and says whether it did."""
    import highspy

    lb, ub = lbs[s], ubs[s]
    scale = abs(float(layer.bias[j])) + sum(
        float(np.abs(w[j]) @ np.maximum(np.abs(lbs[src]), np.abs(ubs[src])))
        for src, w in zip(layer.sources, layer.weights, strict=True)
    )
    margin = MARGIN_ABS + MARGIN_REL * scale
    bound = _solve_side(highs, cols, layer, j, lower_side, 2.0 * margin, time_s, highspy)
    stats.solves += 1
    if bound is None:
        return False
    if lower_side and bound - margin > lb[j]:
        lb[j] = bound - margin
    elif not lower_side and bound + margin < ub[j]:
        ub[j] = bound + margin
    else:
        return False
    stats.tightened += 1
    stats.stabilised += int(lb[j] >= 0.0 or ub[j] <= 0.0)
    return True


def _prefix_model(
    graph: LayerGraph, s: int, lbs: list[np.ndarray], ubs: list[np.ndarray]
) -> tuple[object, list[np.ndarray]]:
    """HiGHS holding the network below layer ``s`` (its ReLUs exact, big-M from the bounds); the column
    indices of every layer's variables."""
    import highspy

    from nnverify.backends.highs import _pass_model
    from nnverify.encode.milp import lower
    from nnverify.encode.network import encode_network

    prefix = LayerGraph(graph.layers[:s], s - 1)
    problem, var = encode_network(prefix, lbs[:s], ubs[:s])
    model = lower(problem)
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    _pass_model(highs, model)
    for name, value in HIGHS_OPTIONS.items():
        highs.setOptionValue(name, value)
    return highs, var


def _solve_side(
    highs: object,
    cols: list[np.ndarray],
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
    reached (at the optimum or the time limit) is the bound."""
    h = highs  # highspy.Highs
    sense = 1.0 if lower_side else -1.0
    n = h.getNumCol()  # type: ignore[attr-defined]
    cost = np.zeros(n)
    for src, w in zip(layer.sources, layer.weights, strict=True):
        np.add.at(cost, cols[src], sense * w[j])
    h.changeColsCost(n, np.arange(n, dtype=np.int32), cost)  # type: ignore[attr-defined]
    cut = -sense * float(layer.bias[j])  # objective value where z_j = 0
    h.setOptionValue("objective_bound", cut + gap)  # type: ignore[attr-defined]
    h.setOptionValue("time_limit", float(time_s))  # type: ignore[attr-defined]
    h.run()  # type: ignore[attr-defined]
    ms = highspy.HighsModelStatus  # type: ignore[attr-defined]
    if h.getModelStatus() == ms.kNotset:  # type: ignore[attr-defined]
        # HiGHS's process-wide thread pool was started with another size (as in backends/highs.py).
        highspy.Highs.resetGlobalScheduler(True)  # type: ignore[attr-defined]
        h.run()  # type: ignore[attr-defined]
    status = h.getModelStatus()  # type: ignore[attr-defined]
    info = h.getInfo()  # type: ignore[attr-defined]
    if status == ms.kInfeasible:
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
