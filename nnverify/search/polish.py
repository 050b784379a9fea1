"""Moves a candidate counterexample away from the boundary of the unsafe set before it is replayed.

A MILP or bound-guided candidate usually sits on a vertex where a property row is tight (``a.y = b``), so its
float32 replay may miss the unsafe set or pass only within the VNN-COMP tolerance. With every ReLU's phase fixed
at the candidate, the network is affine on that linear region; one LP then maximises the smallest margin
``b_r - a_r.y`` of the disjunct's rows over the region (intersected with the input box). The LP solution lies
in the same region, so it violates the property at least as deeply as the candidate. Networks with Sign layers
are left as they are.
"""

from __future__ import annotations

import numpy as np

from nnverify.budget import Budget, BudgetExpired, ResourceLimitError
from nnverify.graph.layers import ActivationLayer, AffineLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.spec.property import Disjunct

#: The polishing LP gets at most this many seconds (less when less of the run's budget is left).
POLISH_MAX_S = 5.0
#: Below this many seconds left of the budget the candidate is replayed as it is.
POLISH_MIN_S = 0.05


def _region(
    graph: LayerGraph, x: np.ndarray, budget: Budget
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] | None:
    """Per layer, the affine map ``value = M x + c`` on the candidate's linear region, and the phase signs."""
    # the maps (layer size x inputs, for every layer) and the LP's dense rows: about twice that
    budget.check_alloc(16.0 * sum(layer.size for layer in graph.layers) * (x.shape[0] + 1), "polishing a candidate")
    values = graph.eval_all(x[None, :])
    maps: list[np.ndarray] = []
    consts: list[np.ndarray] = []
    phases: list[np.ndarray] = []
    for k, layer in enumerate(graph.layers):
        budget.check("polishing a candidate")
        if isinstance(layer, AffineLayer):
            m = sum(w @ maps[s] for s, w in zip(layer.sources, layer.weights, strict=True))
            c = layer.bias + sum(w @ consts[s] for s, w in zip(layer.sources, layer.weights, strict=True))
            maps.append(np.asarray(m))
            consts.append(np.asarray(c))
        elif isinstance(layer, ActivationLayer):
            if layer.kind is not ActKind.RELU:
                return None
            active = values[layer.source][0] > 0.0
            maps.append(maps[layer.source] * active[:, None])
            consts.append(consts[layer.source] * active)
        else:
            maps.append(np.eye(layer.size))
            consts.append(np.zeros(layer.size))
        phases.append(values[k][0])
    return maps, consts, phases


def polish(graph: LayerGraph, disjunct: Disjunct, x: np.ndarray, budget: Budget | None = None) -> np.ndarray:
    """A point of ``x``'s linear region inside the disjunct's box maximising its smallest row margin.

    Returns ``x`` itself when there is nothing to gain, the LP cannot be solved, too little of ``budget`` is
    left, or the region's dense maps would not fit its memory cap. The LP's time limit is what is left of
    ``budget`` (at most ``POLISH_MAX_S``).
    """
    import highspy

    budget = budget or Budget.unlimited()
    if budget.remaining() < POLISH_MIN_S:
        return x
    try:
        region = _region(graph, x, budget)
    except (BudgetExpired, ResourceLimitError):
        return x
    if region is None or disjunct.n_rows == 0:
        return x
    maps, consts, _ = region
    n = x.shape[0]
    pre = [
        (layer.source, maps[layer.source], consts[layer.source])
        for layer in graph.layers
        if isinstance(layer, ActivationLayer)
    ]
    values = graph.eval_all(x[None, :])
    # variables: x (n) and t; maximise t  <=>  minimise -t
    rows, lo, hi = [], [], []
    for src, m, c in pre:
        active = values[src][0] > 0.0
        # active: m x + c >= 0 ; inactive: m x + c <= 0
        rows.append(np.hstack([m, np.zeros((m.shape[0], 1))]))
        lo.append(np.where(active, -c, -np.inf))
        hi.append(np.where(active, np.inf, -c))
    out_m, out_c = maps[graph.output], consts[graph.output]
    # a_x x + a_y (M x + c) + t <= b
    g = disjunct.a_x + disjunct.a_y @ out_m
    rows.append(np.hstack([g, np.ones((disjunct.n_rows, 1))]))
    lo.append(np.full(disjunct.n_rows, -np.inf))
    hi.append(disjunct.b - disjunct.a_y @ out_c)
    a = np.vstack(rows)
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    time_limit = min(POLISH_MAX_S, budget.remaining())
    if time_limit < POLISH_MIN_S:
        return x
    highs.setOptionValue("time_limit", time_limit)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n + 1, a.shape[0]
    lp.col_cost_ = np.r_[np.zeros(n), -1.0]
    lp.col_lower_ = np.r_[disjunct.lb, -1e6]
    lp.col_upper_ = np.r_[disjunct.ub, 1e6]
    lp.row_lower_ = np.concatenate(lo)
    lp.row_upper_ = np.concatenate(hi)
    nz = np.nonzero(a)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.r_[0, np.cumsum(np.bincount(nz[0], minlength=a.shape[0]))].astype(np.int32)
    lp.a_matrix_.index_ = nz[1].astype(np.int32)
    lp.a_matrix_.value_ = a[nz]
    from nnverify.backends.highs import numeric_trouble

    if numeric_trouble(a, (lp.col_lower_, lp.col_upper_, lp.row_lower_, lp.row_upper_)):
        return x  # NaN, infinite or huge coefficients: HiGHS rejects them, or crashed on them (SIGSEGV)
    if highs.passModel(lp) == highspy.HighsStatus.kError or highs.run() == highspy.HighsStatus.kError:
        return x
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return x
    sol = np.asarray(highs.getSolution().col_value)
    return sol[:n] if sol.shape == (n + 1,) and sol[n] > 0.0 and np.all(np.isfinite(sol[:n])) else x
