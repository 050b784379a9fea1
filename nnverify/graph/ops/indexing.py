"""Indexed selection and accumulation with constant indices: GatherElements, GatherND, ScatterND, CumSum.

All are affine in the data (and ScatterND's updates): the indices, axes and flags must be constants.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, const_value, register


def _positive(indices: np.ndarray, dims: np.ndarray | int) -> np.ndarray:
    """Indices with negative entries counted from the end; out-of-range indices raise ``IndexError``."""
    indices = np.asarray(indices, dtype=np.int64)
    if np.any((indices < -dims) | (indices >= dims)):
        raise IndexError("an index is out of range")
    return np.where(indices < 0, indices + dims, indices)


@register
class GatherElements(Op):
    """``out[i][j][k] = data[index[i][j][k]][j][k]`` along ``axis`` (indices the shape of the output)."""

    op_type = "GatherElements"
    affine = True
    nonnegative = True
    notes = "constant indices"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        axis = int(node.attrs.get("axis", 0)) % (x.ndim - 1) + 1
        indices = _positive(const_value(xs[1]), x.shape[axis])
        x = x[(slice(None), *(slice(None) if k + 1 == axis else slice(0, d) for k, d in enumerate(indices.shape)))]
        return np.take_along_axis(x, np.broadcast_to(indices, (x.shape[0], *indices.shape)), axis)


def _nd_positions(x: np.ndarray, indices: np.ndarray, batch_dims: int) -> tuple[Any, ...]:
    """Advanced-indexing tuple (batch axis first) for GatherND/ScatterND index tuples of depth ``indices.shape[-1]``."""
    depth = indices.shape[-1]
    dims = np.array(x.shape[1 + batch_dims : 1 + batch_dims + depth])
    indices = _positive(indices, dims)
    lead = indices.shape[:-1]
    batch_index = [
        np.arange(size).reshape((1,) * k + (size,) + (1,) * (len(lead) - k - 1))
        for k, size in enumerate(x.shape[1 : 1 + batch_dims])
    ]
    positions: tuple[Any, ...] = (slice(None), *batch_index, *(indices[..., k] for k in range(depth)))
    return positions


@register
class GatherND(Op):
    """Slices of the data addressed by index tuples (the last axis of the constant indices)."""

    op_type = "GatherND"
    affine = True
    nonnegative = True
    notes = "constant indices"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        return x[_nd_positions(x, const_value(xs[1]), int(node.attrs.get("batch_dims", 0)))]


@register
class ScatterND(Op):
    """A copy of the data with the slices at constant index tuples replaced by the updates."""

    op_type = "ScatterND"
    affine = True
    nonnegative = True
    variable_inputs = (0, 2)
    notes = "constant indices, reduction none"

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        if node.attrs.get("reduction", "none") != "none":
            return f"reduction '{node.attrs['reduction']}' is not supported (only none)"
        return super().check(node, is_const)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x, updates = xs[0], xs[2]
        batch = max(x.shape[0], updates.shape[0])
        out = np.array(np.broadcast_to(x, (batch, *x.shape[1:])), dtype=np.result_type(x, updates))
        out[_nd_positions(out, const_value(xs[1]), 0)] = updates
        return out


@register
class CumSum(Op):
    """Cumulative sum along a constant axis (``exclusive`` and ``reverse`` flags)."""

    op_type = "CumSum"
    affine = True
    nonnegative = True
    notes = "constant axis"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        axis = int(const_value(xs[1]).reshape(-1)[0]) % (x.ndim - 1) + 1
        if node.attrs.get("reverse", 0):
            x = np.flip(x, axis)
        out = np.cumsum(x, axis=axis)
        if node.attrs.get("exclusive", 0):
            out = np.concatenate([np.zeros_like(np.take(out, [0], axis=axis)), np.delete(out, -1, axis=axis)], axis)
        return np.flip(out, axis) if node.attrs.get("reverse", 0) else out

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """The cumulative sum in the other direction (exclusive stays exclusive)."""
        flipped = replace(node, attrs={**node.attrs, "reverse": 0 if node.attrs.get("reverse", 0) else 1})
        return [self.eval(flipped, g, xs[1]), None]
