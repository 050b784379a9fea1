"""Selecting parts of a tensor: Slice, Split and Gather (constant indices), all affine in the data.

Starts, ends, axes, steps, split sizes and indices must be constants (inputs from the opsets that made them
inputs, attributes before); ONNX axes shift by one for the batch axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnverify.graph.ops.base import Node, Op, const_value, has_input, register


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


@register
class Split(Op):
    """Consecutive parts along an axis: given sizes, or equal parts (the last one smaller from opset 18)."""

    op_type = "Split"
    affine = True
    nonnegative = True
    multi_output = True
    notes = "constant split sizes"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
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
        begin = sum(sizes[:index])
        return np.take(x, np.arange(begin, begin + sizes[index]), axis=axis)


@register
class Gather(Op):
    """Entries at constant indices along an axis (negative indices count from the end)."""

    op_type = "Gather"
    affine = True
    nonnegative = True
    notes = "constant indices"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x, indices = xs[0], const_value(xs[1]).astype(np.int64)
        axis = int(node.attrs.get("axis", 0)) % (x.ndim - 1) + 1
        dim = x.shape[axis]
        if np.any((indices < -dim) | (indices >= dim)):
            raise ValueError(f"Gather index out of range for an axis of size {dim}")
        return np.take(x, np.where(indices < 0, indices + dim, indices), axis=axis)
