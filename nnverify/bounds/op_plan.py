"""The op graph prepared for CROWN back-substitution (``OpPlan``: shapes, the floor, each node's operator) and
the adjoint of an affine node's linear part on rows-last coefficient tensors (no dense matrix is built).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnverify.attack_vjp import node_vjp
from nnverify.bounds.adjoint import ConvMap
from nnverify.bounds.forward_ops import unsupported as forward_unsupported
from nnverify.errors import ModelError
from nnverify.graph.core import Graph
from nnverify.graph.ops.base import REGISTRY, Node


@dataclass(frozen=True, slots=True)
class OpPlan:
    """What the passes need to know about a graph once: tensor shapes, the floor, each affine node's operator.

    Attributes:
        graph: The op graph.
        shapes: Each variable tensor's shape without the analysis batch axis.
        prefix: Tensors affine in the input (no activation on the way): exact forward functions.
        floor: Prefix tensors read by a node outside the prefix (where back-substitution stops).
        maps: Affine node name -> its cheaper linear operator (``Op.linear_map``: Conv's kernel) or None.
        bias: Affine node name -> its output at zero variable inputs (the constant term), batch axis 1.
        depth: Variable tensor -> the most activations on a path from the input to it.
    """

    graph: Graph
    shapes: dict[str, tuple[int, ...]]
    prefix: frozenset[str]
    floor: tuple[str, ...]
    maps: dict[str, Any]
    bias: dict[str, np.ndarray]
    depth: dict[str, int]

    @property
    def widest(self) -> int:
        return max(math.prod(s) for s in self.shapes.values())


def unsupported(p: OpPlan) -> str | None:
    """The first node the back-substitution cannot pass (named, with the reason), or None."""
    reason = forward_unsupported(p.graph)
    if reason is not None:
        return reason
    for node in p.graph.nodes:
        if node.outputs[0] in p.prefix or not REGISTRY[node.op_type].affine or p.maps.get(node.name) is not None:
            continue
        try:
            pull(p, node, np.zeros((*p.shapes[node.outputs[0]], 1, 1)))
        except (ModelError, ValueError, IndexError, TypeError) as exc:
            return f"node '{node.name}' ({node.op_type}) has no adjoint: {exc}"
    return None


def plan(graph: Graph) -> OpPlan:
    """The ``OpPlan`` of ``graph`` (one evaluation at zero for the shapes and constant terms)."""
    env = graph.eval_all(np.zeros((1, graph.n_inputs)))
    variable = {graph.input_name} | {node.outputs[0] for node in graph.nodes}
    shapes = {name: tuple(env[name].shape[1:]) for name in variable}
    prefix = {graph.input_name}
    maps: dict[str, Any] = {}
    bias: dict[str, np.ndarray] = {}
    depth = {graph.input_name: 0}
    for node in graph.nodes:
        op = REGISTRY[node.op_type]
        below = max((depth[n] for n in node.inputs if n in depth), default=0)
        depth[node.outputs[0]] = below + (0 if op.affine else 1)
        if not op.affine:
            continue
        if all(name in prefix for name in node.inputs if name in variable):
            prefix.add(node.outputs[0])
        data = node.inputs[0]
        cmap = op.linear_map(node, graph.constants, shapes[data]) if data in variable else None
        maps[node.name] = cmap if isinstance(cmap, ConvMap) else None  # the rows-last adjoint is ConvMap's
        bias[node.name] = call_at(graph, node, {n: np.zeros((1, *shapes[n])) for n in node.inputs if n in variable})
    floor = [
        name
        for name in dict.fromkeys(n for node in graph.nodes if node.outputs[0] not in prefix for n in node.inputs)
        if name in prefix
    ]
    if graph.output_name in prefix:
        floor.append(graph.output_name)
    return OpPlan(graph, shapes, frozenset(prefix), tuple(floor), maps, bias, depth)


def call_at(graph: Graph, node: Node, values: dict[str, np.ndarray], absolute: bool = False) -> np.ndarray:
    args = []
    for name in node.inputs:
        if name in values:
            args.append(values[name])
        elif not name:
            args.append(np.empty((1, 0)))
        else:
            value = graph.constants[name][None, ...]
            args.append(np.abs(value) if absolute and np.issubdtype(value.dtype, np.floating) else value)
    op = REGISTRY[node.op_type]
    out = op.abs_eval(node, *args) if absolute and not op.nonnegative else op.eval(node, *args)
    return np.asarray(out, dtype=np.float64)


def conv_adjoint(cmap: ConvMap, coef: np.ndarray) -> np.ndarray:
    """``coef`` ``(M, *out, N)`` (rows last) through the transposed convolution: ``(C, *in, N)``. One GEMM of the
    kernel's transpose per group, then one strided add per kernel offset (``ConvMap._adjoint`` without its
    transposes to and from rows first)."""
    n = coef.shape[-1]
    channels, m = cmap.in_shape[0], cmap.out_shape[0]
    cg, mg = channels // cmap.groups, m // cmap.groups
    kshape, out_sizes = cmap.kernel.shape[2:], cmap.out_shape[1:]
    rows = coef.reshape(m, -1)
    padded = [size + lo + hi for size, (lo, hi) in zip(cmap.in_shape[1:], cmap.pads, strict=True)]
    dx = np.zeros((channels, *padded, n))
    for g in range(cmap.groups):
        wt = cmap.kernel[g * mg : (g + 1) * mg].reshape(mg, -1).T  # (Cg * K, Mg)
        cols = (wt @ rows[g * mg : (g + 1) * mg]).reshape(cg, *kshape, *out_sizes, n)
        for offset, window in cmap._windows():
            dx[(slice(g * cg, (g + 1) * cg), *window)] += cols[(slice(None), *offset)]
    if any(lo or hi for lo, hi in cmap.pads):
        crop = tuple(slice(lo, lo + size) for (lo, _), size in zip(cmap.pads, cmap.in_shape[1:], strict=True))
        dx = np.ascontiguousarray(dx[(slice(None), *crop)])
    return dx


def pull(p: OpPlan, node: Node, coef: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``coef`` ``(*out, B, R)`` through the adjoint of the affine node's linear part, per variable input."""
    batch, rows = coef.shape[-2:]
    n = batch * rows
    out_shape = p.shapes[node.outputs[0]]
    cmap = p.maps.get(node.name)
    data = node.inputs[0]
    if cmap is not None and len(out_shape) == len(cmap.out_shape) + 1:
        flat = conv_adjoint(cmap, coef.reshape(*cmap.out_shape, n))
        return [(data, flat.reshape(*p.shapes[data], batch, rows))]
    g = np.moveaxis(coef.reshape(-1, n), -1, 0).reshape(n, *out_shape)
    variable = [bool(name) and name in p.shapes for name in node.inputs]
    args = [
        np.broadcast_to(np.zeros((1, *p.shapes[name])), (n, *p.shapes[name]))
        if var
        else (p.graph.constants[name][None, ...] if name else np.empty((1, 0)))
        for name, var in zip(node.inputs, variable, strict=True)
    ]
    parts = node_vjp(node, args, g, variable)
    if parts is None:
        raise ModelError(f"node '{node.name}' ({node.op_type}) has no adjoint rule")
    out = []
    for name, part, var in zip(node.inputs, parts, variable, strict=False):
        if var and part is not None:
            full = np.broadcast_to(part, (n, *p.shapes[name])).reshape(n, -1)
            out.append((name, np.ascontiguousarray(full.T).reshape(*p.shapes[name], batch, rows)))
    return out
