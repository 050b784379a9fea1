"""Shape-only operators: Flatten, Reshape, Squeeze, Unsqueeze, Transpose (affine permutations of entries).

Shape and axes parameters must be constants; the batch axis (axis 0 of every batched array) is never
touched, so ONNX axes shift by one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, const_value, has_input, register
from nnverify.graph.ops.pullback import first


def _normalize_axes(axes: Sequence[int], rank: int) -> list[int]:
    """ONNX axes (possibly negative) as non-negative axes of a rank-``rank`` unbatched tensor."""
    return sorted(int(a) % rank if rank else 0 for a in axes)


def _axes(node: Node, xs: tuple[np.ndarray, ...]) -> list[int] | None:
    """The axes of Squeeze/Unsqueeze: an input from opset 13 on, an attribute before."""
    if has_input(node, 1):
        return [int(a) for a in const_value(xs[1]).reshape(-1)]
    axes = node.attrs.get("axes")
    return None if axes is None else [int(a) for a in axes]


class _Reshaping(Op):
    """An op that only reshapes its input 0: its adjoint reshapes back."""

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return first(xs, g.reshape(g.shape[0], *xs[0].shape[1:]))


@register
class Flatten(_Reshaping):
    """Reshape to 2-D ``(prod(shape[:axis]), prod(shape[axis:]))``."""

    op_type = "Flatten"
    affine = True
    nonnegative = True

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        shape = x.shape[1:]
        axis = int(node.attrs["axis"])
        if axis < 0:
            axis += len(shape)
        return x.reshape(x.shape[0], math.prod(shape[:axis]), math.prod(shape[axis:]))


@register
class Reshape(_Reshaping):
    """Reshape to a constant shape (``0`` copies a dimension unless ``allowzero``; ``-1`` is inferred)."""

    op_type = "Reshape"
    affine = True
    nonnegative = True
    notes = "constant shape"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        target = [int(d) for d in const_value(xs[1]).reshape(-1)]
        if not node.attrs.get("allowzero", 0):
            target = [x.shape[1 + i] if d == 0 else d for i, d in enumerate(target)]
        return x.reshape(x.shape[0], *target)


@register
class Squeeze(_Reshaping):
    """Drop size-1 axes (the given ones, or all of them)."""

    op_type = "Squeeze"
    affine = True
    nonnegative = True
    notes = "constant axes"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        shape = x.shape[1:]
        axes = _axes(node, xs)
        if axes is None:
            axes = [i for i, d in enumerate(shape) if d == 1]
        drop = set(_normalize_axes(axes, len(shape)))
        return x.reshape(x.shape[0], *(d for i, d in enumerate(shape) if i not in drop))


@register
class Unsqueeze(_Reshaping):
    """Insert size-1 axes at the given positions of the output."""

    op_type = "Unsqueeze"
    affine = True
    nonnegative = True
    notes = "constant axes"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        axes = _axes(node, xs) or []
        rank = x.ndim - 1 + len(axes)
        return np.expand_dims(x, tuple(a + 1 for a in _normalize_axes(axes, rank)))


@register
class Transpose(Op):
    """Permute axes (default: reverse them)."""

    op_type = "Transpose"
    affine = True
    nonnegative = True

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        perm = node.attrs.get("perm")
        if perm is None:
            perm = list(reversed(range(x.ndim - 1)))
        return np.transpose(x, (0, *(int(p) + 1 for p in perm)))

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        perm = node.attrs.get("perm") or list(reversed(range(g.ndim - 1)))
        return first(xs, np.transpose(g, np.argsort([0, *(int(p) + 1 for p in perm)])))
