"""Exact lowering of the piecewise-linear ops (``graph/ops/piecewise.py``, ``maxpool.py``) to affine + ReLU.

``passes.to_layers`` calls ``lower`` for them. The identities are exact in real arithmetic:
LeakyRelu(x) = a x + (1 - a) relu(x), Abs(x) = 2 relu(x) - x, Clip(x) = lo + relu(x - lo) - relu(x - hi),
max(a, b) = a + relu(b - a), min(a, b) = a - relu(a - b); n-ary Max/Min and MaxPool windows reduce by a
tree of pairwise steps. Every generated weight is 0, +-1, 2 or the model's own number, and every bias a model
constant or its negation, so the exact backends (``to_layers(merge=False)``) see the model's real function.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from nnverify.errors import ModelError
from nnverify.graph.core import Graph
from nnverify.graph.layers import ActivationLayer, AffineLayer, Layer
from nnverify.graph.ops.base import ActKind, Node
from nnverify.graph.ops.piecewise import clip_limits

#: Clip limits at or beyond float32's largest value are no limit (opset-6 Clip's default is +-3.4e38).
_NO_LIMIT = float(np.finfo(np.float32).max)


@dataclass(frozen=True, slots=True)
class _Expr:
    """``sum_k weight_k @ value(layer source_k) + bias``: an affine expression, not yet a layer."""

    terms: tuple[tuple[int, np.ndarray], ...]
    bias: np.ndarray

    @property
    def size(self) -> int:
        return int(self.bias.shape[0])

    def scaled(self, factor: np.ndarray | float) -> _Expr:
        """``factor * self`` (a scalar or one factor per row)."""
        column = np.reshape(factor, (-1, 1)) if np.ndim(factor) else factor
        return _Expr(tuple((s, column * w) for s, w in self.terms), self.bias * factor)

    def rows(self, index: np.ndarray) -> _Expr:
        """The rows ``index`` of this expression."""
        return _Expr(tuple((s, w[index]) for s, w in self.terms), self.bias[index])


def _plus(*exprs: _Expr) -> _Expr:
    """The sum of equal-sized expressions (the weights of a shared source add)."""
    weights: dict[int, np.ndarray] = {}
    for expr in exprs:
        for source, weight in expr.terms:
            weights[source] = weights[source] + weight if source in weights else weight
    return _Expr(tuple(weights.items()), np.sum([e.bias for e in exprs], axis=0))


def _const(value: np.ndarray | float, size: int) -> _Expr:
    return _Expr((), np.broadcast_to(np.asarray(value, dtype=np.float64), (size,)).copy())


@dataclass
class _Builder:
    """Appends the layers of one node's lowering to ``layers``."""

    graph: Graph
    node: Node
    shapes: dict[str, tuple[int, ...]]
    layer_of: dict[str, int]
    layers: list[Layer]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.shapes[self.node.outputs[0]])

    @property
    def out_size(self) -> int:
        return math.prod(self.out_shape)

    def operand(self, name: str, shape: tuple[int, ...] | None = None) -> _Expr:
        """Input ``name`` broadcast (ONNX, right-aligned) to ``shape`` (default: the output's)."""
        shape = self.out_shape if shape is None else shape
        size = math.prod(shape)
        if name in self.graph.constants:
            value = np.asarray(self.graph.constants[name], dtype=np.float64)
            return _Expr((), np.broadcast_to(value, shape).reshape(size).copy())
        own = tuple(self.shapes[name])
        index = np.arange(math.prod(own)).reshape((1,) * (len(shape) - len(own)) + own)
        select = np.zeros((size, math.prod(own)))
        select[np.arange(size), np.broadcast_to(index, shape).reshape(size)] = 1.0
        return _Expr(((self.layer_of[name], select),), np.zeros(size))

    def constant_inputs(self) -> list[np.ndarray]:
        """The node's inputs as batched arrays where constant (an empty placeholder where variable)."""
        return [
            self.graph.constants[n][None, ...] if n in self.graph.constants else np.empty((1, 0))
            for n in self.node.inputs
        ]

    def affine(self, parts: list[_Expr], tag: str) -> _Expr:
        """A new affine layer stacking ``parts``; returns the identity expression of it."""
        size = sum(p.size for p in parts)
        sources = list(dict.fromkeys(s for p in parts for s, _ in p.terms))
        weights = {s: np.zeros((size, self.layers[s].size)) for s in sources}
        start = 0
        for part in parts:
            for source, weight in part.terms:
                weights[source][start : start + part.size] += weight
            start += part.size
        bias = np.concatenate([p.bias for p in parts])
        self.layers.append(AffineLayer(f"{self.node.name}/{tag}", tuple(sources), tuple(weights.values()), bias))
        return self.identity(len(self.layers) - 1)

    def relu(self, expr: _Expr, tag: str) -> _Expr:
        """``relu(expr)`` as a ReLU layer after an affine layer holding ``expr``."""
        source = self.affine([expr], f"{tag}_in").terms[0][0]
        self.layers.append(ActivationLayer(f"{self.node.name}/{tag}", source, ActKind.RELU, expr.size))
        return self.identity(len(self.layers) - 1)

    def identity(self, index: int) -> _Expr:
        size = self.layers[index].size
        return _Expr(((index, np.eye(size)),), np.zeros(size))


def _leaky(b: _Builder, x: _Expr, slope: np.ndarray) -> _Expr:
    """``slope x + (1 - slope) relu(x)`` (one ReLU), or ``relu(x) - slope relu(-x)`` where ``1 - slope`` rounds."""
    if all(Fraction(1) - Fraction(a) == Fraction(1.0 - a) for a in slope.tolist()):
        return _plus(x.scaled(slope), b.relu(x, "relu").scaled(1.0 - slope))
    return _plus(b.relu(x, "relu_pos"), b.relu(x.scaled(-1.0), "relu_neg").scaled(-slope))


def _tree(b: _Builder, operands: list[_Expr], sign: float) -> _Expr:
    """Max (``sign`` 1) or min (``sign`` -1) of equal-sized expressions by levels of pairwise steps
    ``a + sign relu(sign (b - a))``; each level's results become one affine layer."""
    level = 0
    while len(operands) > 1:
        pairs = [(operands[i], operands[i + 1]) for i in range(0, len(operands) - 1, 2)]
        n = pairs[0][0].size
        diffs = [_plus(second, first.scaled(-1.0)).scaled(sign) for first, second in pairs]
        steps = b.relu(b.affine(diffs, f"diff{level}") if len(diffs) > 1 else diffs[0], f"relu{level}")
        results = [_plus(a, steps.rows(np.arange(k * n, (k + 1) * n)).scaled(sign)) for k, (a, _) in enumerate(pairs)]
        results += operands[2 * len(pairs) :]
        if len(results) == 1:
            return results[0]
        stacked = b.affine(results, f"level{level}")
        operands = [stacked.rows(np.arange(k * n, (k + 1) * n)) for k in range(len(results))]
        level += 1
    return operands[0]


def _lower_leaky_relu(b: _Builder) -> _Expr:
    return _leaky(b, b.operand(b.node.inputs[0]), np.full(b.out_size, float(b.node.attrs["alpha"])))


def _lower_prelu(b: _Builder) -> _Expr:
    return _leaky(b, b.operand(b.node.inputs[0]), b.operand(b.node.inputs[1]).bias)


def _lower_abs(b: _Builder) -> _Expr:
    x = b.operand(b.node.inputs[0])
    return _plus(b.relu(x, "relu").scaled(2.0), x.scaled(-1.0))


def _lower_clip(b: _Builder) -> _Expr:
    """``lo + relu(x - lo) - relu(x - hi)`` without the infinite limits; ``hi`` everywhere if ``lo > hi``."""
    low, high = clip_limits(b.node, *b.constant_inputs())
    x, n = b.operand(b.node.inputs[0]), b.out_size
    if low > high:
        return _plus(x.scaled(0.0), _const(high, n))  # keeps the layer's source
    out = x
    if low > -_NO_LIMIT:
        out = _plus(_const(low, n), b.relu(_plus(x, _const(-low, n)), "relu_lo"))
    if high < _NO_LIMIT:
        out = _plus(out, b.relu(_plus(x, _const(-high, n)), "relu_hi").scaled(-1.0))
    return out


def _lower_max_min(b: _Builder) -> _Expr:
    constants = [b.graph.constants[n] for n in b.node.inputs if n in b.graph.constants]
    combine = np.maximum if b.node.op_type == "Max" else np.minimum
    operands = [b.operand(n) for n in b.node.inputs if n not in b.graph.constants]
    if constants:  # folded first: then no difference of two constants (which could round) is formed
        folded = constants[0]
        for value in constants[1:]:
            folded = combine(folded, value)
        operands.append(_Expr((), np.broadcast_to(folded, b.out_shape).reshape(-1).astype(np.float64)))
    return _tree(b, operands, 1.0 if b.node.op_type == "Max" else -1.0)


def _lower_maxpool(b: _Builder) -> _Expr:
    """Each window's elements selected from the input (padding repeats a real element), then a max tree."""
    from nnverify.graph.ops.maxpool import pool_windows  # here: it imports the Conv family (start-up)

    x_shape = tuple(b.shapes[b.node.inputs[0]])
    index = np.arange(math.prod(x_shape), dtype=np.float64).reshape((1, *x_shape))
    windows = pool_windows(b.node, index, -1.0).reshape(b.out_size, -1).astype(np.int64)
    valid = windows >= 0
    if not np.all(valid.any(axis=1)):
        raise ModelError(f"{b.graph.path}: MaxPool '{b.node.name}' has a window entirely in the padding")
    first = windows[np.arange(windows.shape[0]), valid.argmax(axis=1)]
    windows = np.where(valid, windows, first[:, None])
    x = b.operand(b.node.inputs[0], x_shape)
    return _tree(b, [x.rows(windows[:, k]) for k in range(windows.shape[1])], 1.0)


_LOWERINGS: dict[str, Callable[[_Builder], _Expr]] = {
    "LeakyRelu": _lower_leaky_relu,
    "PRelu": _lower_prelu,
    "Abs": _lower_abs,
    "Clip": _lower_clip,
    "Max": _lower_max_min,
    "Min": _lower_max_min,
    "MaxPool": _lower_maxpool,
}


def is_lowered(node: Node) -> bool:
    """True if ``lower`` rewrites the node's op."""
    return node.op_type in _LOWERINGS


def lower(
    graph: Graph, node: Node, shapes: dict[str, tuple[int, ...]], layer_of: dict[str, int], layers: list[Layer]
) -> int:
    """Append to ``layers`` affine and ReLU layers computing ``node`` exactly; the index of its output layer.

    Args:
        graph: The graph the node belongs to (for its constants).
        node: A node with ``is_lowered(node)``.
        shapes: Every tensor's shape (without the evaluation batch axis).
        layer_of: Layer index of every variable tensor computed so far.
        layers: The layers built so far; the new ones are appended.
    """
    builder = _Builder(graph, node, shapes, layer_of, layers)
    out = _LOWERINGS[node.op_type](builder)
    return builder.affine([out], "out").terms[0][0]
