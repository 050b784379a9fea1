"""Selecting parts of a tensor: Slice, Split and Gather (constant indices), all affine in the data.

Starts, ends, axes, steps, split sizes and indices must be constants (inputs from the opsets that made them
inputs, attributes before); ONNX axes shift by one for the batch axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, const_value, has_input, register
from nnverify.graph.ops.pullback import first


def _ints(x: np.ndarray) -> list[int]:
    """A constant argument as a list of Python ints."""
    return [int(v) for v in const_value(x).reshape(-1)]


def slice_indices(start: int, end: int, step: int, dim: int) -> np.ndarray:
    """The indices ONNX Slice takes along an axis of size ``dim`` (negative and huge bounds clamped)."""
    if step == 0:
        raise ValueError("Slice step must not be 0")
    start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
    if step > 0:
        return np.arange(min(max(start, 0), dim), min(max(end, 0), dim), step)
    return np.arange(min(max(start, 0), dim - 1), min(max(end, -1), dim - 1), step)


def _slice_params(node: Node, xs: Sequence[np.ndarray]) -> tuple[list[int], list[int], list[int], list[int]]:
    """Starts, ends, axes, steps: inputs from opset 10 on, attributes before."""
    if has_input(node, 1):
        starts, ends = _ints(xs[1]), _ints(xs[2])
        axes = _ints(xs[3]) if has_input(node, 3) else list(range(len(starts)))
        steps = _ints(xs[4]) if has_input(node, 4) else [1] * len(starts)
    else:
        starts, ends = [int(v) for v in node.attrs["starts"]], [int(v) for v in node.attrs["ends"]]
        axes = [int(a) for a in node.attrs.get("axes", range(len(starts)))]
        steps = [1] * len(starts)
    return starts, ends, axes, steps


@register
class Slice(Op):
    """Strided sub-tensor along some axes (negative steps reverse)."""

    op_type = "Slice"
    affine = True
    nonnegative = True
    notes = "constant starts, ends, axes, steps"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        rank = x.ndim - 1
        for start, end, axis, step in zip(*_slice_params(node, xs), strict=True):
            axis %= rank
            x = np.take(x, slice_indices(start, end, step, x.shape[axis + 1]), axis=axis + 1)
        return x

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """``g`` put back at the sliced positions of zeros (the axes in reverse order)."""
        shape, taken = list(xs[0].shape[1:]), []
        for start, end, axis, step_ in zip(*_slice_params(node, xs), strict=True):
            axis %= len(shape)
            index = slice_indices(start, end, step_, shape[axis])
            taken.append((axis, index, shape[axis]))
            shape[axis] = len(index)
        for axis, index, dim in reversed(taken):
            dx = np.zeros((*g.shape[: axis + 1], dim, *g.shape[axis + 2 :]))
            dx[(slice(None),) * (axis + 1) + (index,)] = g
            g = dx
        return first(xs, g)


@register
class Split(Op):
    """Consecutive parts along an axis: given sizes, or equal parts (the last one smaller from opset 18)."""

    op_type = "Split"
    affine = True
    nonnegative = True
    multi_output = True
    notes = "constant split sizes"

    @staticmethod
    def _part(node: Node, xs: Tensors) -> tuple[int, int, int]:
        """The (batched) axis, and the first index and size of this node's output along it."""
        x = xs[0]
        axis = int(node.attrs.get("axis", 0)) % (x.ndim - 1) + 1
        dim, count = x.shape[axis], int(node.attrs["output_count"])
        if has_input(node, 1):
            sizes = _ints(xs[1])
        elif node.attrs.get("split"):
            sizes = [int(s) for s in node.attrs["split"]]
        else:
            chunk = -(-dim // count)
            sizes = [chunk] * (count - 1) + [dim - chunk * (count - 1)]
        if len(sizes) != count or sum(sizes) != dim or min(sizes) < 0:
            raise ValueError(f"split sizes {sizes} do not divide an axis of size {dim} into {count} outputs")
        index = int(node.attrs["output_index"])
        return axis, sum(sizes[:index]), sizes[index]

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        axis, begin, size = self._part(node, xs)
        return np.take(xs[0], np.arange(begin, begin + size), axis=axis)

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """``g`` put back at its part of zeros."""
        axis, begin, size = self._part(node, xs)
        dx = np.zeros((g.shape[0], *xs[0].shape[1:]))
        dx[(slice(None),) * axis + (slice(begin, begin + size),)] = g
        return first(xs, dx)


@register
class Gather(Op):
    """Entries at constant indices along an axis (negative indices count from the end)."""

    op_type = "Gather"
    affine = True
    nonnegative = True
    notes = "constant indices"

    @staticmethod
    def _indices(node: Node, xs: Tensors) -> tuple[int, np.ndarray]:
        """The (batched) axis and the indices, negative ones counted from the end."""
        x, indices = xs[0], const_value(xs[1]).astype(np.int64)
        axis = int(node.attrs.get("axis", 0)) % (x.ndim - 1) + 1
        dim = x.shape[axis]
        if np.any((indices < -dim) | (indices >= dim)):
            raise ValueError(f"Gather index out of range for an axis of size {dim}")
        return axis, np.where(indices < 0, indices + dim, indices)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        axis, indices = self._indices(node, xs)
        return np.take(xs[0], indices, axis=axis)

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """Scatter-add of ``g`` onto the gathered positions."""
        x, (axis, indices) = xs[0], self._indices(node, xs)
        r, pre, post = g.shape[0], math.prod(x.shape[1:axis]), math.prod(x.shape[axis + 1 :])
        dx = np.zeros((r, pre, x.shape[axis], post))
        at: Any = (slice(None), slice(None), indices.reshape(-1))
        np.add.at(dx, at, g.reshape(r, pre, indices.size, post))
        return first(xs, dx.reshape(r, *x.shape[1:]))
