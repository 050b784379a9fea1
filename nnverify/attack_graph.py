"""Counterexample search on the op graph (``Graph.eval``), for networks whose dense layer view is too large
or that the analysis does not handle (e.g. a Softmax the property does not let us remove).

Random corners and uniform points of each input box, then signed-gradient steps (gradients through the ops
by ``attack_vjp.py``; Sign passes them straight through, so binarised networks get a direction), restarted
with fresh seeds until the budget ends. It only proposes points: every one is replayed on onnxruntime.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nnverify.attack_vjp import input_gradient
from nnverify.budget import Budget
from nnverify.errors import ModelError
from nnverify.graph.core import Graph
from nnverify.graph.lowering import is_lowered
from nnverify.graph.ops.base import REGISTRY
from nnverify.options import Options
from nnverify.result import Counterexample, Result, Verdict
from nnverify.spec.property import Disjunct, Property
from nnverify.witness import OnnxRunner, check_counterexample

#: Largest dense layer view (MB of float64 matrices, estimated from the shapes) built when no memory cap is
#: set; with a cap (``Budget.memory_limit_mb``), half of it. Bigger networks go to the graph attack only.
DENSE_VIEW_MAX_MB = 2048.0
#: Points per gradient batch, and steps per restart.
BATCH = 8
STEPS = 24

#: ``accept(x, disjunct)``: replay ``x`` (a point of the disjunct's box); True if it is a valid counterexample.
Accept = Callable[[np.ndarray, Disjunct], bool]


def dense_view_mb(graph: Graph) -> float:
    """The float64 matrices of the layer view ``passes.to_layers`` would build, in MB (from the shapes)."""
    shapes = {name: value.shape[1:] for name, value in graph.eval_all(np.zeros((1, graph.n_inputs))).items()}
    entries = 0
    for node in graph.nodes:
        out = math.prod(shapes[node.outputs[0]])
        variables = {name for name in node.inputs if name and name not in graph.constants}
        if REGISTRY[node.op_type].affine or is_lowered(node):
            entries += REGISTRY[node.op_type].view_cost * sum(out * math.prod(shapes[name]) for name in variables)
    return 8.0 * entries / 2**20


def unsupported_by_analysis(graph: Graph) -> str | None:
    """The first node the layer view cannot express (with its op), or None."""
    for node in graph.nodes:
        op = REGISTRY[node.op_type]
        if op.affine or is_lowered(node):
            continue
        activation_of = getattr(op, "activation_of", None)
        try:
            kind = activation_of(node, graph.constants) if activation_of else op.activation
        except ModelError:
            kind = None
        if kind is None:
            return f"node '{node.name}' ({node.op_type})"
    return None


def graph_route_reason(graph: Graph, budget: Budget) -> str | None:
    """Why the analysis should not build the layer view of ``graph`` (attack only), or None."""
    unsupported = unsupported_by_analysis(graph)
    if unsupported is not None:
        return f"the analysis does not handle {unsupported}"
    cap = getattr(budget, "memory_limit_mb", math.inf)
    limit = DENSE_VIEW_MAX_MB if math.isinf(cap) else cap / 2
    size = dense_view_mb(graph)
    if size > limit:
        return f"the dense layer view would take about {size:,.0f} MB (limit {limit:,.0f} MB)"
    return None


@dataclass(slots=True)
class GraphAttackStats:
    """What the search did (for ``Result.stats``)."""

    points: int = 0
    rounds: int = 0
    best_slack: float = math.inf
    gradient: bool = True
    seconds: float = field(default=0.0)


def _slack(graph: Graph, group: list[Disjunct], x: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per point, the smallest disjunct slack, the seed of its worst row (output then input weights), and
    the env."""
    env = graph.eval_all(x)
    out = env[graph.output_name]
    y = np.broadcast_to(out, (x.shape[0], *out.shape[1:])).reshape(x.shape[0], -1)
    slacks = np.stack([d.slack(x, y) for d in group])  # (D, B)
    best = np.argmin(slacks, axis=0)
    seeds = np.zeros((x.shape[0], y.shape[1] + x.shape[1]))  # output weights, then input weights
    for i, k in enumerate(best):
        d = group[k]
        if d.n_rows:
            rows = x[i] @ d.a_x.T + y[i] @ d.a_y.T - d.b
            worst = int(np.argmax(rows))
            seeds[i] = np.concatenate([d.a_y[worst], d.a_x[worst]])
    return slacks[best, np.arange(x.shape[0])], seeds, env


def _try(group: list[Disjunct], x: np.ndarray, slack: np.ndarray, accept: Accept, tried: set[bytes]) -> bool:
    """Replay the points with slack <= 0 (best first), each once."""
    for i in np.argsort(slack):
        if slack[i] > 0.0:
            break
        key = x[i].astype(np.float32).tobytes()
        if key in tried:
            continue
        tried.add(key)
        if accept(x[i], group[0]):
            return True
    return False


def search(graph: Graph, prop: Property, budget: Budget, accept: Accept, seed: int = 0) -> GraphAttackStats:
    """Run until ``accept`` takes a point or the budget ends; returns the statistics.

    Each round: a batch of random corners and uniform points of every input box, then ``STEPS`` signed-gradient
    steps (step size shrinking from half the box width) from the best of them, replaying every point whose own
    output violates the property.
    """
    started = time.monotonic()
    stats = GraphAttackStats()
    rng = np.random.default_rng(seed)
    groups: dict[bytes, list[Disjunct]] = {}
    for d in prop.disjuncts:
        groups.setdefault(d.lb.tobytes() + d.ub.tobytes(), []).append(d)
    tried: set[bytes] = set()
    while not budget.expired():
        for group in groups.values():
            if _round(graph, group, rng, budget, accept, tried, stats):
                stats.seconds = time.monotonic() - started
                return stats
        stats.rounds += 1
    stats.seconds = time.monotonic() - started
    return stats


def _round(
    graph: Graph,
    group: list[Disjunct],
    rng: np.random.Generator,
    budget: Budget,
    accept: Accept,
    tried: set[bytes],
    stats: GraphAttackStats,
) -> bool:
    lb, ub = group[0].lb, group[0].ub
    width = ub - lb
    corners = np.where(rng.integers(0, 2, size=(BATCH, lb.size)).astype(bool), ub, lb)
    x = np.vstack([(lb + ub)[None, :] / 2.0, corners, rng.uniform(lb, ub, size=(BATCH - 1, lb.size))])
    slack, seeds, env = _slack(graph, group, x)
    stats.points += x.shape[0]
    stats.best_slack = min(stats.best_slack, float(slack.min()))
    if _try(group, x, slack, accept, tried):
        return True
    keep = np.argsort(slack)[:BATCH]
    x, slack, seeds = x[keep], slack[keep], seeds[keep]
    env = {k: (v[keep] if v.shape[0] > 1 else v) for k, v in env.items()}
    for step in range(STEPS):
        if budget.expired() or not stats.gradient:
            break
        m = graph.n_outputs
        grad = input_gradient(graph, env, seeds[:, :m], sign_window=stats.rounds % 2 == 0)
        if grad is None:
            stats.gradient = False
            break
        grad = grad + seeds[:, m:]
        size = 0.5 * (1.0 - step / STEPS) + 0.02
        x = np.clip(x - size * width * np.sign(grad), lb, ub)
        slack, seeds, env = _slack(graph, group, x)
        stats.points += x.shape[0]
        stats.best_slack = min(stats.best_slack, float(slack.min()))
        if _try(group, x, slack, accept, tried):
            return True
    return False


class OnnxReplay:
    """Candidates of a search replayed on the original ONNX model: ``accept(x, box)`` rounds ``x`` to a float32
    point inside ``box``, checks it against ``prop`` with onnxruntime and keeps the valid ones in ``found`` (the
    reasons of the others in ``failures``)."""

    def __init__(self, graph: Graph, prop: Property, options: Options) -> None:
        self.runner = OnnxRunner(graph.path)
        self.prop = prop
        self.options = options
        self.found: list[Counterexample] = []
        self.failures: list[str] = []

    def accept(self, x: np.ndarray, box: Disjunct) -> bool:
        from nnverify.pipeline import float32_inside  # the pipeline imports this module

        point = float32_inside(np.clip(x, box.lb, box.ub), box.lb, box.ub)
        check = check_counterexample(
            self.runner,
            self.prop,
            point,
            output_rtol=self.options.output_rtol,
            violation_atol=self.options.violation_atol,
        )
        if check.valid and check.y is not None:
            self.found.append(Counterexample(point, check.y))
            return True
        self.failures.append(check.reason)
        return False


def attack_only(
    graph: Graph, analysis: Graph, prop: Property, options: Options, budget: Budget, notes: list[str]
) -> Result:
    """The whole run for a network the layer view does not serve: ``search`` on ``analysis`` (the graph, or its
    logits when a trailing Softmax was removed), every candidate replayed on ``graph``'s ONNX file.

    Returns ``sat`` with a replayed counterexample, else ``timeout`` (the budget ran out) with ``notes``.
    """
    started = time.monotonic()
    replay = OnnxReplay(graph, prop, options)
    found, failures, accept = replay.found, replay.failures, replay.accept
    margin = min(1.0, 0.05 * budget.remaining())  # stop early enough to answer before the deadline
    stats = search(analysis, prop, dataclasses.replace(budget, deadline=budget.deadline - margin), accept, options.seed)
    info: dict[str, float | int | str] = {"graph_points": stats.points, "graph_rounds": stats.rounds}
    info["attack_s"] = round(stats.seconds, 4)
    if not math.isinf(stats.best_slack):
        info["graph_best_slack"] = stats.best_slack
    elapsed = time.monotonic() - started
    if found:
        return Result(Verdict.SAT, found[0], "graph-attack", elapsed, "; ".join(notes), info)
    if failures:
        notes.append(f"{len(failures)} candidate(s) failed replay (first: {failures[0]})")
    if not stats.gradient:
        notes.append("no gradient through some op: random points only")
    notes.append("no counterexample found by the graph attack")
    return Result(Verdict.TIMEOUT, None, "graph-attack", elapsed, "; ".join(notes), info)
