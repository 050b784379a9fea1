"""Bound-guided falsification: a beam of input boxes bisected towards where the property's margin can be smallest.

For networks whose bounds are cheap (few free inputs); a library step for a search's slow runs, not in the default
pipeline (docs/engine.md "Bound-guided beam"). It only proposes candidates, checked on our own float64 evaluator;
``witness.py`` decides. It proves nothing: a box whose bounds rule out every disjunct is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from nnverify.bounds.backward import SLOPE_RULES, backward_rows_lower
from nnverify.bounds.lean import is_relu_chain, rows_lower_chain
from nnverify.bounds.symbolic import symbolic_bounds
from nnverify.budget import Budget, BudgetExpired
from nnverify.graph.layers import LayerGraph, backpropagate, point_slopes
from nnverify.spec.property import Disjunct

#: ``(lb, ub) -> (lower, coef)``: sound lower bounds ``(B, K)`` of the stacked rows ``a_x x + a_y y - b`` of the
#: disjuncts over the boxes ``lb <= x <= ub`` ``(B, n)`` and the linear functions ``coef[..., :n] x + coef[..., n]``
#: ``(B, K, n + 1)`` behind them (each below its row in the box).
BoundFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
_PHASE = "searching for a counterexample with a beam of boxes"


@dataclass(frozen=True, slots=True)
class BeamConfig:
    """The beam's shape: boxes kept per level, splits per box, levels in all, boxes waiting in the pool, and
    per box the samples, descent starts and descent steps."""

    width: int = 12
    depth: int = 30
    levels: int = 60
    pool: int = 256
    samples: int = 24
    descent_starts: int = 2
    descent_steps: int = 8


#: ``beam_attack``'s levels (on ACAS Xu the thin ``sat`` slivers of prop 2 were found by level 26: 48 of 48 runs,
#: 12 seeds; 32 levels cost about 0.3 s of CPU there), and a cap on its wall time, as a share of what is left of
#: the run's budget (levels, not seconds, set its cost: wall time on a loaded machine is no measure).
BEAM_LEVELS = 32
BEAM_SHARE = 0.25


def beam_attack(
    graph: LayerGraph,
    disjuncts: list[Disjunct],
    *,
    max_free: int,
    margins: tuple[float, float],
    seed: int,
    budget: Budget,
    share: float = BEAM_SHARE,
    levels: int = BEAM_LEVELS,
    stats: dict[str, float | int | str] | None = None,
) -> list[np.ndarray]:
    """``beam_candidates`` on each input box of ``disjuncts`` with at most ``max_free`` free inputs (cheap bounds),
    ``levels`` levels each, within ``share`` of what is left of ``budget`` in all; its candidates, best first
    (checked on our own evaluator only). Running out of the share ends the beam quietly; running out of ``budget``
    raises ``BudgetExpired``."""
    groups: dict[bytes, list[Disjunct]] = {}
    for d in disjuncts:
        if d.n_rows > 0 and int(np.sum(d.lb < d.ub)) <= max_free:
            groups.setdefault(d.lb.tobytes() + d.ub.tobytes(), []).append(d)
    cap = share * budget.remaining() if share > 0.0 else 0.0  # (0 * inf is nan)
    part = replace(budget, deadline=min(budget.deadline, time.monotonic() + cap))
    config = BeamConfig(levels=levels)
    for group in groups.values():
        bound = layer_bound_fn(graph, group, *margins)
        try:
            found = beam_candidates(graph, group, bound, config=config, seed=seed, budget=part, stats=stats)
        except BudgetExpired:
            budget.check(_PHASE)
            return []
        if found:
            return found
    return []


@dataclass(frozen=True, slots=True)
class _Rows:
    """The disjuncts' rows stacked, and the disjunct each row belongs to."""

    a_x: np.ndarray
    a_y: np.ndarray
    b: np.ndarray
    owner: np.ndarray
    n_disjuncts: int

    @classmethod
    def of(cls, disjuncts: list[Disjunct]) -> _Rows:
        owner = np.concatenate([np.full(d.n_rows, i) for i, d in enumerate(disjuncts)]).astype(np.int64)
        return cls(
            np.vstack([d.a_x for d in disjuncts]),
            np.vstack([d.a_y for d in disjuncts]),
            np.concatenate([d.b for d in disjuncts]),
            owner,
            len(disjuncts),
        )

    def values(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Row values ``(P, K)`` at points ``x`` with outputs ``y``."""
        return x @ self.a_x.T + y @ self.a_y.T - self.b

    def margin(self, rows: np.ndarray) -> np.ndarray:
        """``(..., K) -> (...)``: the smallest over disjuncts of the largest of its rows (<= 0: violated)."""
        out = np.full((*rows.shape[:-1], self.n_disjuncts), -np.inf)
        for d in range(self.n_disjuncts):
            out[..., d] = np.max(rows[..., self.owner == d], axis=-1)
        return np.min(out, axis=-1)


def layer_bound_fn(graph: LayerGraph, disjuncts: list[Disjunct], margin_rel: float, margin_abs: float) -> BoundFn:
    """The ``BoundFn`` of a layer graph: forward symbolic bounds of every layer, then the rows back-substituted
    through them (CROWN on the rows only; ``bounds/lean.py`` on ReLU chains). Tightening the intermediate layers
    by back-substitution too cost twice as much per level on ACAS Xu and found the same counterexamples."""
    rows = _Rows.of(disjuncts)
    margins = {"margin_rel": margin_rel, "margin_abs": margin_abs}
    rows_lower = rows_lower_chain if is_relu_chain(graph) else backward_rows_lower

    def bound(lb: np.ndarray, ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sym = symbolic_bounds(graph, lb, ub, **margins)
        return rows_lower(graph, sym.lb, sym.ub, rows.a_x, rows.a_y, rows.b, rules=SLOPE_RULES, **margins)

    return bound


@dataclass(frozen=True, slots=True)
class _Boxes:
    """Probed boxes: bounds ``(B, n)``, depth, the linear lower bounds ``(B, K, n + 1)`` of the rows, and the
    property's margin per box by the bounds and by the best point tried ``(B,)``."""

    lb: np.ndarray
    ub: np.ndarray
    depth: np.ndarray
    coef: np.ndarray
    bound: np.ndarray
    sampled: np.ndarray

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self.lb, self.ub, self.depth, self.coef, self.bound, self.sampled)

    def take(self, sel: np.ndarray) -> _Boxes:
        return _Boxes(*(v[sel] for v in self._arrays()))

    def __add__(self, other: _Boxes) -> _Boxes:
        return _Boxes(*(np.concatenate([a, b]) for a, b in zip(self._arrays(), other._arrays(), strict=True)))

    def split(self, width: int, cap: int) -> tuple[_Boxes, _Boxes]:
        """The ``width`` boxes to go on with (``_select``) and the rest, at most ``cap`` of the best of them."""
        pick = _select(self.bound, self.sampled, width)
        left = np.ones(self.lb.shape[0], dtype=bool)
        left[pick] = False
        rest = np.flatnonzero(left)  # not np.setdiff1d: np.unique imports numpy.ma (start-up)
        if rest.size > cap:
            rank = np.full(self.lb.shape[0], np.inf)
            for key in (self.bound, self.sampled):
                rank = np.minimum(rank, np.argsort(np.argsort(key)))
            rest = rest[np.argsort(rank[rest], kind="stable")[:cap]]
        return self.take(pick), self.take(rest)


def beam_candidates(
    graph: LayerGraph,
    disjuncts: list[Disjunct],
    bound: BoundFn,
    *,
    config: BeamConfig | None = None,
    seed: int = 0,
    budget: Budget | None = None,
    stats: dict[str, float | int | str] | None = None,
) -> list[np.ndarray]:
    """Points of the disjuncts' common box whose own-evaluator output satisfies a disjunct, best first.

    A beam of ``config.width`` boxes: each level bisects every kept box (along the input with the largest
    ``width * |coefficient|`` of its tightest linear lower bound), bounds the children with ``bound``, drops the
    ones where every disjunct is ruled out, and evaluates in each child uniform samples, the minimisers of its
    linear lower bounds, and a few sign-gradient steps from the best of them. It keeps half the beam by the
    smallest lower bound of the property's margin and half by the smallest sampled margin; the children it does
    not keep wait in a pool that refills the beam when every box in it is ruled out or at ``config.depth``.
    ``budget`` is looked at before every level (``BudgetExpired``); ``stats`` gets the levels run
    (``beam_levels``) and the boxes bounded (``beam_boxes``)."""
    config = config or BeamConfig()
    budget = budget or Budget.unlimited()
    if any(d.n_rows == 0 for d in disjuncts):  # the box alone is unsafe
        return [(disjuncts[0].lb + disjuncts[0].ub) / 2.0]
    rng = np.random.default_rng(seed)
    rows = _Rows.of(disjuncts)
    d0 = disjuncts[0]
    lb, ub, depth = d0.lb[None, :], d0.ub[None, :], np.zeros(1, dtype=np.int64)
    pool: _Boxes | None = None
    for level in range(config.levels):
        budget.check(_PHASE)
        boxes, found = _score(graph, rows, (lb, ub, depth), bound, config, rng, budget)
        if stats is not None:
            stats["beam_levels"] = level + 1
            stats["beam_boxes"] = int(stats.get("beam_boxes", 0)) + lb.shape[0]
        if found:
            return found
        if pool is not None and boxes is not None:
            boxes = boxes + pool
        boxes = boxes or pool
        if boxes is None or boxes.lb.shape[0] == 0:
            break
        beam, pool = boxes.split(config.width, config.pool)
        beam = beam.take(beam.depth < config.depth)
        lb, ub = _bisect(beam.lb, beam.ub, beam.coef)
        depth = np.concatenate([beam.depth, beam.depth]) + 1
    return []


def _score(
    graph: LayerGraph,
    rows: _Rows,
    boxes: tuple[np.ndarray, np.ndarray, np.ndarray],
    bound: BoundFn,
    config: BeamConfig,
    rng: np.random.Generator,
    budget: Budget,
) -> tuple[_Boxes | None, list[np.ndarray]]:
    """The boxes ``(lb, ub, depth)`` not ruled out by their bounds, probed (``_probe``), and up to 5
    points found violating a disjunct, best first; None for no boxes."""
    lb, ub, depth = boxes
    if lb.shape[0] == 0:
        return None, []
    lower, coef = bound(lb, ub)
    margin = rows.margin(lower)
    out = _Boxes(lb, ub, depth, coef, margin, margin).take(margin <= 0.0)
    pts, owner, slack = _probe(graph, rows, out.lb, out.ub, out.coef, config, rng, budget)
    hits = np.nonzero(slack <= 0.0)[0]
    found = [pts[i] for i in hits[np.argsort(slack[hits], kind="stable")][:5]]
    best = np.full(out.lb.shape[0], np.inf)
    np.minimum.at(best, owner, slack)
    return _Boxes(out.lb, out.ub, out.depth, out.coef, out.bound, best), found


def _probe(
    graph: LayerGraph,
    rows: _Rows,
    lb: np.ndarray,
    ub: np.ndarray,
    coef: np.ndarray,
    config: BeamConfig,
    rng: np.random.Generator,
    budget: Budget,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points tried in each box ``(P, n)``, the box each belongs to ``(P,)``, and their margins ``(P,)``."""
    n_box, n = lb.shape
    width = ub - lb
    uniform = lb[:, None, :] + rng.uniform(size=(n_box, config.samples, n)) * width[:, None, :]
    vertices = np.where(coef[:, :, :n] > 0.0, lb[:, None, :], ub[:, None, :])  # each row's minimiser
    pts = np.concatenate([uniform, vertices, _minimax(rows, coef, lb, ub)[:, None, :]], axis=1)
    per = pts.shape[1]
    flat = pts.reshape(-1, n)
    owner = np.repeat(np.arange(n_box), per)
    slack = rows.margin(rows.values(flat, graph.eval(flat)))
    if config.descent_steps and config.descent_starts:
        top = np.argsort(slack.reshape(n_box, per), axis=1)[:, : config.descent_starts]
        start = pts[np.arange(n_box)[:, None], top].reshape(-1, n)
        box = np.repeat(np.arange(n_box), top.shape[1])
        moved = _descend(graph, rows, start, lb[box], ub[box], config.descent_steps, budget)
        flat = np.vstack([flat, moved])
        owner = np.concatenate([owner, box])
        slack = np.concatenate([slack, rows.margin(rows.values(moved, graph.eval(moved)))])
    return flat, owner, slack


def _minimax(rows: _Rows, coef: np.ndarray, lb: np.ndarray, ub: np.ndarray, steps: int = 24) -> np.ndarray:
    """Per box, a point approximately minimising the margin of the linear lower bounds (the smallest over
    disjuncts of the largest of its rows): sign-subgradient steps, shrinking, from the box's centre."""
    n = lb.shape[1]
    x = (lb + ub) / 2.0
    width = ub - lb
    box = np.arange(lb.shape[0])
    for step in range(steps):
        values = np.einsum("bkn,bn->bk", coef[:, :, :n], x) + coef[:, :, n]
        worst = _binding_row(rows, values)
        x = np.clip(x - 0.5 ** (step + 1) * width * np.sign(coef[box, worst, :n]), lb, ub)
    return x


def _binding_row(rows: _Rows, values: np.ndarray) -> np.ndarray:
    """Per point, the largest row of the disjunct with the smallest largest row (the row to push down)."""
    best = np.full(values.shape[0], np.inf)
    pick = np.zeros(values.shape[0], dtype=np.int64)
    for d in range(rows.n_disjuncts):
        idx = np.nonzero(rows.owner == d)[0]
        top = idx[np.argmax(values[:, idx], axis=1)]
        val = values[np.arange(values.shape[0]), top]
        better = val < best
        best = np.where(better, val, best)
        pick = np.where(better, top, pick)
    return pick


def _descend(
    graph: LayerGraph, rows: _Rows, x: np.ndarray, lb: np.ndarray, ub: np.ndarray, steps: int, budget: Budget
) -> np.ndarray:
    """Sign-gradient descent on each point's binding row inside its own box, the step shrinking from a quarter
    of the box to 1/256 of it."""
    width = ub - lb
    for step in range(steps):
        budget.check(_PHASE)
        values = graph.eval_all(x)
        worst = _binding_row(rows, rows.values(x, values[graph.output]))
        grad = backpropagate(graph, rows.a_y[worst], point_slopes(graph, values)) + rows.a_x[worst]
        x = np.clip(x - 0.25 * (1.0 / 64.0) ** (step / max(1, steps - 1)) * width * np.sign(grad), lb, ub)
    return x


def _select(bound_margin: np.ndarray, sampled: np.ndarray, width: int) -> np.ndarray:
    """Indices of up to ``width`` boxes: alternately the next smallest lower bound and the next smallest sample."""
    by_bound, by_sample = np.argsort(bound_margin, kind="stable"), np.argsort(sampled, kind="stable")
    chosen: list[int] = []
    seen: set[int] = set()
    for a, b in zip(by_bound, by_sample, strict=True):
        for i in (int(b), int(a)):
            if i not in seen and len(chosen) < width:
                seen.add(i)
                chosen.append(i)
    return np.array(chosen, dtype=np.int64)


def _bisect(lb: np.ndarray, ub: np.ndarray, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both halves of every box along the input with the largest ``width * sum |coefficient|`` over its rows."""
    n = lb.shape[1]
    score = (ub - lb) * (np.abs(coef[:, :, :n]).sum(axis=1) + 1e-12)
    dim = np.argmax(score, axis=1)
    box = np.arange(lb.shape[0])
    mid = (lb[box, dim] + ub[box, dim]) / 2.0
    left_ub, right_lb = ub.copy(), lb.copy()
    left_ub[box, dim] = mid
    right_lb[box, dim] = mid
    return np.vstack([lb, right_lb]), np.vstack([left_ub, ub])
