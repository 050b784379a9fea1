"""Divisors proved one-signed on the property's region, by interval arithmetic on the op graph and bisection of
the region: ``lower_smooth`` then lowers their ``1 / y`` to a form bounded on every interval, so a bound pass whose
own bounds of ``y`` hold 0 (an affine pass can dip below where intervals do not) no longer stops the run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from nnverify.budget import Budget
from nnverify.errors import ModelError, UnboundedError
from nnverify.graph.core import Graph
from nnverify.graph.lowering_smooth import divisors, lower_smooth
from nnverify.graph.ops.base import REGISTRY, Node, Op
from nnverify.graph.ops.interface import ACTIVATIONS
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL

#: Boxes the region may be bisected into to prove the divisors' signs, and rounds of bisection (each round
#: evaluates the boxes still straddling together): at most about 2 x 256 box evaluations of the graph.
MAX_BOXES = 256
MAX_ROUNDS = 12
#: Share of the run's remaining budget after which no further round of bisection starts (the attack comes next).
TIME_SHARE = 0.05
#: Floors below this magnitude are not used (``1 / c`` would make the scaled divisor overflow).
SMALLEST_FLOOR = 2.0**-60

Bounds = dict[str, tuple[np.ndarray, np.ndarray]]


def divisor_floors(
    graph: Graph,
    boxes: Sequence[tuple[np.ndarray, np.ndarray]],
    scales: Mapping[str, np.ndarray] | None = None,
    budget: Budget | None = None,
) -> dict[str, np.ndarray]:
    """Per divisor ``y`` of ``graph`` (``lowering_smooth.divisors``) whose sign is proved on the union of
    ``boxes`` (``(lb, ub)``, each ``(n_inputs,)``): signed powers of two ``c`` (the divisor's shape) with
    ``y / c >= 1`` on every box, for ``lower_smooth(graph, scales, floors)``. Divisors not proved are left out
    (their Reciprocal raises ``UnboundedError`` where a bound pass meets 0, as before)."""
    pending = divisors(graph)
    if not pending or not boxes:
        return {}
    floors: dict[str, np.ndarray] = {}
    while pending:  # a divisor behind another's 1/y is bounded only once that one is rewritten
        lowered, _ = lower_smooth(graph, scales, floors)
        found = _prove(lowered, boxes, pending, budget)
        if not found:
            break
        floors |= found
        pending = [name for name in pending if name not in found]
    return floors


def _prove(
    graph: Graph, boxes: Sequence[tuple[np.ndarray, np.ndarray]], names: list[str], budget: Budget | None
) -> dict[str, np.ndarray]:
    """The floors of the ``names`` whose sign holds on every box, bisecting the boxes where one straddles 0 (each
    round evaluates only those; at most ``MAX_ROUNDS`` rounds, ``MAX_BOXES`` boxes in all, and no round started
    after ``TIME_SHARE`` of the budget's remaining time)."""
    lb = np.array([box[0] for box in boxes], dtype=np.float64)
    ub = np.array([box[1] for box in boxes], dtype=np.float64)
    if lb.shape[0] > MAX_BOXES:  # one hull box: sound for every box of the union
        lb, ub = lb.min(axis=0, keepdims=True), ub.max(axis=0, keepdims=True)
    seen: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in names}
    total = lb.shape[0]
    stop = time.monotonic() + (TIME_SHARE * budget.remaining() if budget is not None else math.inf)
    for round_ in range(MAX_ROUNDS):
        bounds = interval_pass(graph, lb, ub, budget)
        seen = {name: parts for name, parts in seen.items() if name in bounds}  # no bounds: not proved
        if not seen:
            return {}
        straddles = np.zeros(lb.shape[0], dtype=bool)
        for name in seen:
            lo, hi = bounds[name]
            straddles |= np.any((lo <= 0.0) & (hi >= 0.0), axis=tuple(range(1, lo.ndim)))
        last = not straddles.any() or total + straddles.sum() > MAX_BOXES or round_ == MAX_ROUNDS - 1
        last = last or time.monotonic() > stop
        closed = np.ones_like(straddles) if last else ~straddles
        for name, parts in seen.items():
            parts.append((bounds[name][0][closed], bounds[name][1][closed]))
        if last:
            break
        lb, ub = _bisect(lb[straddles], ub[straddles])
        total += int(straddles.sum())
    return {name: floor for name, parts in seen.items() if (floor := _floor(parts)) is not None}


def _floor(parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """Signed powers of two ``c`` with ``y / c >= 1`` for bounds ``(lo, hi)`` per box (stacked from ``parts``), or
    None where an element holds 0 in a box, is positive in one box and negative in another, or is tiny."""
    lo = np.concatenate([p[0] for p in parts])
    hi = np.concatenate([p[1] for p in parts])
    positive, negative = np.all(lo > 0.0, axis=0), np.all(hi < 0.0, axis=0)
    if not np.all(positive | negative):
        return None
    floor = np.where(positive, lo.min(axis=0), -hi.max(axis=0))
    if not np.all(floor >= SMALLEST_FLOOR):
        return None
    power = np.exp2(np.floor(np.log2(floor)))
    return np.where(positive, power, -power)


def _bisect(lb: np.ndarray, ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each box halved along its widest input: the lower halves, then the upper ones."""
    rows = np.arange(lb.shape[0])
    axis = np.argmax(ub - lb, axis=1)
    mid = (lb[rows, axis] + ub[rows, axis]) / 2.0
    left_ub, right_lb = ub.copy(), lb.copy()
    left_ub[rows, axis] = mid
    right_lb[rows, axis] = mid
    return np.concatenate([lb, right_lb]), np.concatenate([left_ub, ub])


def interval_pass(graph: Graph, lb: np.ndarray, ub: np.ndarray, budget: Budget | None = None) -> Bounds:
    """Sound elementwise bounds ``(B, *shape)`` of the graph's tensors over the boxes ``lb <= x <= ub``
    (``(B, n_inputs)``): affine ops by centre and radius (``eval``, ``|A|`` through ``abs_eval``) with the
    documented margin, activations by their ``interval``. A tensor without finite bounds (a reciprocal of an
    interval holding 0, an op of neither kind, an overflow) is left out, and so is everything computed from it."""
    shape = (lb.shape[0], *graph.input_shape)
    bounds: Bounds = {graph.input_name: (lb.reshape(shape), ub.reshape(shape))}
    for node in graph.nodes:
        if budget is not None:
            budget.check("proving the divisors' signs")
        variables = [name for name in dict.fromkeys(node.inputs) if name and name not in graph.constants]
        if not variables or any(name not in bounds for name in variables):
            continue
        op = REGISTRY[node.op_type]
        with np.errstate(all="ignore"):
            result = _affine(graph, op, node, bounds) if op.affine else _activation(graph, op, node, bounds)
        if result is not None and np.all(np.isfinite(result[0])) and np.all(np.isfinite(result[1])):
            bounds[node.outputs[0]] = result
    return bounds


def _activation(graph: Graph, op: Op, node: Node, bounds: Bounds) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        kind = op.activation_of(node, graph.constants)
    except ModelError:
        return None
    if kind is None or kind not in ACTIVATIONS:
        return None
    try:
        return ACTIVATIONS[kind].interval(*bounds[node.inputs[0]], BOUND_MARGIN_REL, BOUND_MARGIN_ABS)
    except UnboundedError:
        return None


def _affine(graph: Graph, op: Op, node: Node, bounds: Bounds) -> tuple[np.ndarray, np.ndarray] | None:
    """``A mid + b -+ (|A| rad + margin_rel (|A| max|x| + |b|) + margin_abs)``; a ``nonnegative`` op ``A lo + b``
    and ``A hi + b`` with margins scaled by ``A |lo| + |b|`` and ``A |hi| + |b|``."""
    names = [name for name in dict.fromkeys(node.inputs) if name in bounds]

    def call(values: Mapping[str, np.ndarray], absolute: bool) -> np.ndarray:
        args = []
        for position, name in enumerate(node.inputs):
            if name in values:
                args.append(values[name])
            elif not name:
                args.append(np.empty((1, 0)))
            else:
                value = graph.constants[name][None, ...]
                flip = absolute and not op.nonnegative and (op.abs_inputs is None or position in op.abs_inputs)
                args.append(np.abs(value) if flip and np.issubdtype(value.dtype, np.floating) else value)
        try:
            out = op.abs_eval(node, *args) if absolute and not op.nonnegative else op.eval(node, *args)
        except NotImplementedError:
            raise _NoAbs from None
        return np.asarray(out, dtype=np.float64)

    zeros = {name: np.zeros((1, *bounds[name][0].shape[1:])) for name in names}
    if op.nonnegative:  # monotone: each end through eval, its margin scaled by that end's own terms (a sum of
        bias = call(zeros, False)  # squares near 0 keeps its small lower bound: no cancellation of mid - rad)
        ends = []
        for end, sign in ((0, -1.0), (1, 1.0)):
            value = call({n: bounds[n][end] for n in names}, False)
            scale = call({n: np.abs(bounds[n][end]) for n in names}, False) - bias + np.abs(bias)
            ends.append(value + sign * (BOUND_MARGIN_REL * scale + BOUND_MARGIN_ABS))
        return ends[0], ends[1]
    try:
        bias, abs_zero = call(zeros, False), call(zeros, True)
        mid = call({n: (bounds[n][0] + bounds[n][1]) / 2.0 for n in names}, False)
        rad = call({n: (bounds[n][1] - bounds[n][0]) / 2.0 for n in names}, True) - abs_zero
        mag = {n: np.maximum(np.abs(bounds[n][0]), np.abs(bounds[n][1])) for n in names}
        scale = call(mag, True) - abs_zero + np.abs(bias)
    except _NoAbs:
        return None
    slack = rad + (BOUND_MARGIN_REL * scale + BOUND_MARGIN_ABS)
    return mid - slack, mid + slack


class _NoAbs(Exception):
    """An affine op without ``abs_eval``: its output gets no interval here."""
