"""Sums and means over axes: ReduceSum and ReduceMean (affine).

The axes are an attribute in older opsets and an input in newer ones (ReduceSum from 13, ReduceMean from 18);
empty axes reduce everything unless ``noop_with_empty_axes`` is set.
"""

from __future__ import annotations

import math

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, const_value, has_input, register
from nnverify.graph.ops.pullback import first


def _reduced_axes(node: Node, xs: tuple[np.ndarray, ...]) -> tuple[int, ...] | None:
    """The batched axes to reduce (ONNX axes + 1), or None for the identity (empty axes with noop)."""
    rank = xs[0].ndim - 1
    if has_input(node, 1):
        axes = [int(a) for a in const_value(xs[1]).reshape(-1)]
    else:
        axes = [int(a) for a in node.attrs.get("axes", [])]
    if not axes:
        return None if node.attrs.get("noop_with_empty_axes", 0) else tuple(range(1, rank + 1))
    for axis in axes:
        if not -rank <= axis < rank:
            raise ValueError(f"axis {axis} is out of range for a tensor of rank {rank}")
    return tuple(sorted({axis % rank + 1 for axis in axes}))


def _spread(node: Node, xs: Tensors, g: np.ndarray, mean: bool) -> Parts:
    """The adjoint of a sum (mean): ``g`` repeated over the reduced axes (divided by their size)."""
    axes, x = _reduced_axes(node, tuple(xs)), xs[0]
    if axes is None:
        return first(xs, g)
    if not node.attrs.get("keepdims", 1):
        g = np.expand_dims(g, axes)
    scale = 1.0 / math.prod(x.shape[a] for a in axes) if mean else 1.0
    return first(xs, np.broadcast_to(g, (g.shape[0], *x.shape[1:])) * scale)


@register
class ReduceSum(Op):
    """Sum over the given axes (``keepdims`` keeps them with size 1)."""

    op_type = "ReduceSum"
    affine = True
    nonnegative = True
    notes = "constant axes"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        axes = _reduced_axes(node, xs)
        if axes is None:
            return xs[0]
        return xs[0].sum(axis=axes, keepdims=bool(node.attrs.get("keepdims", 1)))

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return _spread(node, xs, g, mean=False)


@register
class ReduceMean(Op):
    """Mean over the given axes (``keepdims`` keeps them with size 1)."""

    op_type = "ReduceMean"
    affine = True
    nonnegative = True
    notes = "constant axes"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        axes = _reduced_axes(node, xs)
        if axes is None:
            return xs[0]
        return xs[0].mean(axis=axes, keepdims=bool(node.attrs.get("keepdims", 1)))

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return _spread(node, xs, g, mean=True)
