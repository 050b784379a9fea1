"""Vector-Jacobian products through the op graph (``Graph``), for the graph attack's gradient steps.

Gradients only steer the search; nothing here is trusted (every candidate is replayed). Sign passes the
gradient unchanged (straight-through estimator), so binarised networks get a useful direction. Data-movement
ops (Transpose, Reshape, ...) are handled generically by evaluating them on an index tensor; an op with no
rule stops the gradient (``vjp`` returns None) and the attack falls back to sampling.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from nnverify.graph.core import Graph
from nnverify.graph.ops.base import REGISTRY, Node, const_value
from nnverify.graph.ops.conv import conv_pads
from nnverify.graph.ops.maxpool import pool_windows

_Rule = Callable[[Node, list[np.ndarray], np.ndarray], list[np.ndarray | None]]


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``g`` summed down to the batched ``shape`` it was broadcast from (axes aligned as in ``align_ranks``)."""
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(1, 1 + extra)))
    axes = tuple(k for k in range(g.ndim) if shape[k] == 1 and g.shape[k] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _conv(node: Node, xs: list[np.ndarray], g: np.ndarray) -> list[np.ndarray | None]:
    x, w = xs[0], const_value(xs[1])
    batch, n, _, *in_sizes = x.shape
    m, group_channels, *kernel = w.shape
    groups, nd = int(node.attrs["group"]), len(kernel)
    strides = [int(s) for s in node.attrs.get("strides", [1] * nd)]
    dilations = [int(d) for d in node.attrs.get("dilations", [1] * nd)]
    extents = [d * (k - 1) + 1 for d, k in zip(dilations, kernel, strict=True)]
    pads = conv_pads(node, in_sizes, extents, strides)
    g = g.reshape(batch * n, groups, m // groups, *g.shape[3:])
    out_sizes = g.shape[3:]
    padded = [size + b + e for size, (b, e) in zip(in_sizes, pads, strict=True)]
    dxp = np.zeros((batch * n, groups, group_channels, *padded))
    wg = w.reshape(groups, m // groups, group_channels, *kernel)
    for offset in itertools.product(*(range(k) for k in kernel)):
        window = tuple(
            slice(o * d, o * d + s * (size - 1) + 1, s)
            for o, d, s, size in zip(offset, dilations, strides, out_sizes, strict=True)
        )
        kernel_at: tuple[Any, ...] = (slice(None), slice(None), slice(None), *offset)
        target: tuple[Any, ...] = (slice(None), slice(None), slice(None), *window)
        dxp[target] += np.einsum("XGM...,GMC->XGC...", g, wg[kernel_at])
    crop: tuple[Any, ...] = (slice(None),) * 3 + tuple(
        slice(b, b + size) for (b, _), size in zip(pads, in_sizes, strict=True)
    )
    dx = dxp[crop]
    return [dx.reshape(x.shape), None, None]


def _matmul(node: Node, xs: list[np.ndarray], g: np.ndarray) -> list[np.ndarray | None]:
    a, b = xs[0], xs[1]
    if a.ndim < 3 or b.ndim < 3:
        raise _NoRule
    da = _unbroadcast(np.matmul(g, np.swapaxes(b, -1, -2)), a.shape)
    db = _unbroadcast(np.matmul(np.swapaxes(a, -1, -2), g), b.shape)
    return [da, db]


def _gemm(node: Node, xs: list[np.ndarray], g: np.ndarray) -> list[np.ndarray | None]:
    a, b = xs[0], xs[1]
    ta, tb, alpha = node.attrs["transA"], node.attrs["transB"], float(node.attrs["alpha"])
    a2 = np.swapaxes(a, -1, -2) if ta else a
    b2 = np.swapaxes(b, -1, -2) if tb else b
    da = alpha * np.matmul(g, np.swapaxes(b2, -1, -2))
    db = alpha * np.matmul(np.swapaxes(a2, -1, -2), g)
    return [np.swapaxes(da, -1, -2) if ta else da, np.swapaxes(db, -1, -2) if tb else db, None]


def _maxpool(node: Node, xs: list[np.ndarray], g: np.ndarray) -> list[np.ndarray | None]:
    x = xs[0]
    batch, size = x.shape[0], math.prod(x.shape[1:])
    values = pool_windows(node, x, -np.inf).reshape(batch, g[0].size, -1)
    index = np.arange(size, dtype=np.float64).reshape((1, *x.shape[1:]))
    windows = pool_windows(node, index, -1.0).reshape(g[0].size, -1).astype(np.int64)
    chosen = windows[np.arange(windows.shape[0])[None, :], values.argmax(axis=2)]
    dx = np.zeros((batch, size))
    np.add.at(dx, (np.arange(batch)[:, None], chosen), g.reshape(batch, -1))
    return [dx.reshape(x.shape)]


def _batchnorm(node: Node, xs: list[np.ndarray], g: np.ndarray) -> list[np.ndarray | None]:
    scale, var = const_value(xs[1]), const_value(xs[4])
    factor = scale / np.sqrt(var + float(node.attrs["epsilon"]))
    return [g * factor.reshape(-1, *(1,) * (g.ndim - 3))]


def _sign(node: Node, xs: list[np.ndarray], g: np.ndarray) -> list[np.ndarray | None]:
    """Straight-through, weighted by how near the input is to 0 compared with its spread over the batch
    (``exp(-(x / 2 sd)^2)``): an input far from 0 for every point of the box's batch is unlikely to flip."""
    x = xs[0]
    if x.shape[0] < 2:
        return [g]
    spread = 2.0 * x.std(axis=0, keepdims=True) + 1e-12
    return [g * np.exp(-((x / spread) ** 2))]


def _softmax(node: Node, xs: list[np.ndarray], g: np.ndarray) -> list[np.ndarray | None]:
    y = REGISTRY["Softmax"].eval(node, xs[0])
    axis = int(node.attrs["axis"])
    axis = axis + y.ndim if axis < 0 else axis + 1
    return [y * (g - (g * y).sum(axis=axis, keepdims=True))]


def _elementwise(node: Node, xs: list[np.ndarray], g: np.ndarray) -> list[np.ndarray | None]:
    """Any other elementwise activation: its derivative by central differences, element by element."""
    x, op = xs[0], REGISTRY[node.op_type]
    step = 1e-6 * np.maximum(1.0, np.abs(x))
    with np.errstate(all="ignore"):
        slope = (op.eval(node, x + step, *xs[1:]) - op.eval(node, x - step, *xs[1:])) / (2.0 * step)
    return [g * np.nan_to_num(slope, nan=0.0, posinf=0.0, neginf=0.0)]


class _NoRule(Exception):
    """The op (or this use of it) has no gradient rule."""


_RULES: dict[str, _Rule] = {
    "Conv": _conv,
    "MatMul": _matmul,
    "Gemm": _gemm,
    "MaxPool": _maxpool,
    "BatchNormalization": _batchnorm,
    "Add": lambda n, xs, g: [_unbroadcast(g, xs[0].shape), _unbroadcast(g, xs[1].shape)],
    "Sub": lambda n, xs, g: [_unbroadcast(g, xs[0].shape), _unbroadcast(-g, xs[1].shape)],
    "Mul": lambda n, xs, g: [_unbroadcast(g * xs[1], xs[0].shape), _unbroadcast(g * xs[0], xs[1].shape)],
    "Div": lambda n, xs, g: [_unbroadcast(g / xs[1], xs[0].shape), None],
    "Neg": lambda n, xs, g: [-g],
    "Sign": _sign,
    "Softmax": _softmax,
    "Relu": lambda n, xs, g: [g * (xs[0] > 0)],
    "LeakyRelu": lambda n, xs, g: [g * np.where(xs[0] >= 0, 1.0, float(n.attrs["alpha"]))],
    "Abs": lambda n, xs, g: [g * np.sign(xs[0])],
    "Clip": lambda n, xs, g: [g],
}


def _transpose(node: Node, xs: list[np.ndarray], g: np.ndarray) -> list[np.ndarray | None]:
    perm = node.attrs.get("perm") or list(reversed(range(g.ndim - 1)))
    inverse = np.argsort([0, *(int(p) + 1 for p in perm)])
    return [np.transpose(g, inverse)]


for _op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"):
    _RULES[_op] = lambda n, xs, g: [g.reshape(xs[0].shape)]
_RULES["Transpose"] = _transpose


def _moved(node: Node, args: list[np.ndarray]) -> np.ndarray | None:
    """For an affine node that only moves or copies elements of its one variable input 0 (zeros elsewhere),
    the 1-based input position of every output element (0: none); else None."""
    op = REGISTRY[node.op_type]
    x = args[0]
    if not op.affine:
        return None
    size = math.prod(x.shape[1:])
    index = np.arange(1, size + 1, dtype=np.float64).reshape((1, *x.shape[1:]))
    zero = np.zeros_like(index)
    try:
        moved = np.asarray(op.eval(node, index, *args[1:])) - np.asarray(op.eval(node, zero, *args[1:]))
    except (ValueError, IndexError, TypeError):
        return None
    flat = moved.reshape(-1)
    if not np.all((flat == np.round(flat)) & (flat >= 0) & (flat <= size)):
        return None
    return flat.astype(np.int64)


def input_gradient(
    graph: Graph, env: dict[str, np.ndarray], seed: np.ndarray, *, sign_window: bool = True
) -> np.ndarray | None:
    """``seed`` ``(B, m)`` (output weights per point) pulled back to the input: ``(B, n)``, or None when some
    op on the way has no rule. ``env`` is ``graph.eval_all`` at the points. ``sign_window=False``: Sign passes
    the gradient unweighted."""
    rules = _RULES if sign_window else _RULES | {"Sign": lambda n, xs, g: [g]}
    batch = seed.shape[0]
    grads: dict[str, np.ndarray] = {graph.output_name: seed.reshape((batch, *env[graph.output_name].shape[1:]))}
    for node in reversed(graph.nodes):
        g = grads.pop(node.outputs[0], None)
        if g is None:
            continue
        args = [env[name] if name else np.empty((1, 0)) for name in node.inputs]
        g = np.broadcast_to(g, (batch, *env[node.outputs[0]].shape[1:]))
        parts = _pull(rules, node, args, g, [bool(n) and n not in graph.constants for n in node.inputs])
        if parts is None:
            return None
        for name, part in zip(node.inputs, parts, strict=False):
            if part is None or not name or name in graph.constants:
                continue
            grads[name] = grads[name] + part if name in grads else part
    g = grads.get(graph.input_name)
    return (
        np.zeros((batch, graph.n_inputs)) if g is None else np.broadcast_to(g, (batch, *g.shape[1:])).reshape(batch, -1)
    )


def _pull(
    rules: dict[str, _Rule], node: Node, args: list[np.ndarray], g: np.ndarray, variable: list[bool]
) -> list[np.ndarray | None] | None:
    """The gradients of the node's inputs given its output's, or None without a rule."""
    rule = rules.get(node.op_type)
    if rule is None and getattr(REGISTRY[node.op_type], "activation", None) is not None:
        rule = _elementwise
    if rule is not None:
        try:
            return rule(node, args, g)
        except _NoRule:
            return None
    moved = _moved(node, [args[0][:1], *args[1:]]) if not any(variable[1:]) else None
    if moved is None:
        return None
    batch = g.shape[0]
    dx = np.zeros((batch, math.prod(args[0].shape[1:]) + 1))
    np.add.at(dx.T, moved, g.reshape(batch, -1).T)  # dx.T is a view: positions along the first axis
    return [dx[:, 1:].reshape((batch, *args[0].shape[1:]))]


def node_vjp(node: Node, args: list[np.ndarray], g: np.ndarray, variable: list[bool]) -> list[np.ndarray | None] | None:
    """One node's vector-Jacobian product: ``g`` ``(R, *out_shape)`` pulled back to each input (``(R, *shape)``,
    None for constant inputs), or None when the op has no rule. ``args`` are the inputs at the evaluation point
    (for an affine op only their shapes and constants matter: the result is the adjoint of its linear part);
    ``variable[k]`` tells whether input ``k`` is a variable tensor. The bound passes on the op graph use this."""
    return _pull(_RULES, node, args, g, variable)
