"""Building larger tensors: Concat, Pad, Expand and Tile (affine in the variable inputs).

Pads, pad values and target shapes must be constants; Concat may join any mix of variable and constant tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, align_ranks, const_value, has_input, register
from nnverify.graph.ops.pullback import first

#: ONNX Pad mode -> numpy.pad mode.
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


@register
class Concat(Op):
    """Join tensors along an axis (constants are broadcast over the batch of points)."""

    op_type = "Concat"
    affine = True
    nonnegative = True
    variable_inputs = None

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        batch = max(x.shape[0] for x in xs)
        axis = int(node.attrs["axis"]) % (xs[0].ndim - 1) + 1
        parts = [np.broadcast_to(x, (batch, *x.shape[1:])) for x in xs]
        return np.concatenate(parts, axis=axis)

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """``g`` split along the axis."""
        axis = int(node.attrs["axis"]) % (xs[0].ndim - 1) + 1
        ends = np.cumsum([x.shape[axis] for x in xs])
        lead = (slice(None),) * axis
        return [
            g[(*lead, slice(end - x.shape[axis], end))] if want else None
            for x, end, want in zip(xs, ends, self.wanted(xs, variable), strict=True)
        ]


def _pad_params(node: Node, xs: tuple[np.ndarray, ...], rank: int) -> tuple[list[int], list[int], float]:
    """(begin pads, end pads, constant value) per axis: inputs from opset 11 on, attributes before."""
    if has_input(node, 1):
        flat = [int(p) for p in const_value(xs[1]).reshape(-1)]
        value = float(const_value(xs[2]).reshape(-1)[0]) if has_input(node, 2) else 0.0
    else:
        flat = [int(p) for p in node.attrs.get("pads", node.attrs.get("paddings", []))]
        value = float(node.attrs.get("value", 0.0))
    axes = [int(a) % rank for a in const_value(xs[3]).reshape(-1)] if has_input(node, 3) else list(range(rank))
    if len(flat) != 2 * len(axes):
        raise ValueError(f"Pad needs {2 * len(axes)} pads for {len(axes)} axes, found {len(flat)}")
    begin, end = [0] * rank, [0] * rank
    for k, axis in enumerate(axes):
        begin[axis], end[axis] = flat[k], flat[k + len(axes)]
    return begin, end, value


@register
class Pad(Op):
    """Pad (or, with negative pads, crop) each axis: constant, reflect, edge or wrap mode."""

    op_type = "Pad"
    affine = True
    nonnegative = True
    notes = "constant pads and value"

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        mode = node.attrs.get("mode", "constant")
        if mode not in _PAD_MODES:
            return f"mode '{mode}' is not supported (expected one of {', '.join(_PAD_MODES)})"
        return super().check(node, is_const)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        begin, end, value = _pad_params(node, xs, x.ndim - 1)
        pairs = list(zip(begin, end, strict=True))
        x = x[(slice(None), *(slice(max(-b, 0), x.shape[i + 1] - max(-e, 0)) for i, (b, e) in enumerate(pairs)))]
        widths = [(0, 0)] + [(max(b, 0), max(e, 0)) for b, e in pairs]
        mode: Any = _PAD_MODES[node.attrs.get("mode", "constant")]
        if mode == "reflect" and any(max(w) >= size for w, size in zip(widths[1:], x.shape[1:], strict=True)):
            raise ValueError(f"reflect pads {begin + end} must be smaller than the axes {x.shape[1:]}")
        if mode == "constant":
            return np.pad(x, widths, mode="constant", constant_values=value)
        return np.pad(x, widths, mode=mode)

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """Constant mode: ``g`` cropped by the pads (zeros where negative pads cropped the input); the other modes
        copy entries (the generic adjoint)."""
        if node.attrs.get("mode", "constant") != "constant":
            return super().vjp(node, xs, g, variable, step=step)
        x = xs[0]
        begin, end, _ = _pad_params(node, tuple(xs), x.ndim - 1)
        pairs = list(zip(begin, end, strict=True))
        g = g[(slice(None), *(slice(max(b, 0), g.shape[i + 1] - max(e, 0)) for i, (b, e) in enumerate(pairs)))]
        return first(xs, np.pad(g, [(0, 0)] + [(max(-b, 0), max(-e, 0)) for b, e in pairs]))


@register
class Expand(Op):
    """Broadcast to a constant shape (ONNX bidirectional broadcasting: the result may be larger still)."""

    op_type = "Expand"
    affine = True
    nonnegative = True
    notes = "constant shape"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        target = tuple(int(d) for d in const_value(xs[1]).reshape(-1))
        shape = np.broadcast_shapes(x.shape[1:], target)
        (x,) = align_ranks(x, np.empty((1, *shape)))[:1]
        return np.broadcast_to(x, (x.shape[0], *shape)).copy()


@register
class Tile(Op):
    """Repeat the tensor a constant number of times along each axis."""

    op_type = "Tile"
    affine = True
    nonnegative = True
    notes = "constant repeats"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        repeats = [int(r) for r in const_value(xs[1]).reshape(-1)]
        return np.tile(xs[0], (1, *repeats))
