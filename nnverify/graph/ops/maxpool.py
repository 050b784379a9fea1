"""MaxPool over any number of spatial axes: kernel, strides, pads/auto_pad, dilations and ceil_mode.

Its windows are computed once by ``pool_windows``, which both ``eval`` and the exact lowering
(``graph/lowering.py``: a selection of each window's elements, then a tree of pairwise maxima) use.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nnverify.graph.ops.base import Flags, Node, Parts, Step, Tensors, register
from nnverify.graph.ops.conv import conv_pads
from nnverify.graph.ops.piecewise import LOWERED_NOTE, Lowered
from nnverify.graph.ops.pullback import first


def pool_windows(node: Node, x: np.ndarray, fill: float) -> np.ndarray:
    """The pooling windows of batched ``x`` ``(B, N, C, *spatial)``: ``(B, N, C, *out, *kernel)``.

    Positions in the padding (``pads``, ``auto_pad``, or past the end with ``ceil_mode``) hold ``fill``.
    """
    kernel = [int(k) for k in node.attrs["kernel_shape"]]
    nd = len(kernel)
    in_sizes = x.shape[3:]
    if len(in_sizes) != nd:
        raise ValueError(f"kernel_shape has {nd} axes, the input {len(in_sizes)} spatial axes")
    strides = [int(s) for s in node.attrs.get("strides") or [1] * nd]
    dilations = [int(d) for d in node.attrs.get("dilations") or [1] * nd]
    extents = [d * (k - 1) + 1 for d, k in zip(dilations, kernel, strict=True)]
    pads = conv_pads(node, in_sizes, extents, strides)
    ceil = bool(node.attrs.get("ceil_mode", 0))
    padded, outs = [], []
    for size, (begin, end), extent, stride in zip(in_sizes, pads, extents, strides, strict=True):
        span = size + begin + end - extent
        if span < 0:
            raise ValueError("the pooling window is larger than the padded input")
        out = (-(-span // stride) if ceil else span // stride) + 1
        if ceil and (out - 1) * stride >= size + begin:  # a last window starting in the end padding is dropped
            out -= 1
        padded.append((begin, end + max(0, (out - 1) * stride + extent - (size + begin + end))))
        outs.append(out)
    xp = np.pad(x, [(0, 0), (0, 0), (0, 0), *padded], constant_values=fill)
    windows = sliding_window_view(xp, extents, axis=tuple(range(3, 3 + nd)))
    index = (
        *(slice(None),) * 3,
        *(slice(0, (o - 1) * s + 1, s) for o, s in zip(outs, strides, strict=True)),
        *(slice(None, None, d) for d in dilations),
    )
    return windows[index]


@register
class MaxPool(Lowered):
    """Maximum over each pooling window (``-inf`` padding, as in ONNX)."""

    op_type = "MaxPool"
    view_cost = 4  # window selections and the tree of maxima
    notes = f"{LOWERED_NOTE}; no Indices output"

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        if len(node.outputs) > 1 and node.outputs[1]:
            return "the Indices output (and storage_order) is not supported; only the pooled values"
        if int(node.attrs.get("storage_order", 0)) != 0:
            return "storage_order=1 is not supported (it only orders the Indices output)"
        return super().check(node, is_const)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        nd = x.ndim - 3
        return pool_windows(node, x, -np.inf).max(axis=tuple(range(-nd, 0)))

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """To the first maximum of each window (a subgradient where the maximum is tied)."""
        x = xs[0]
        r, size, outs = max(g.shape[0], x.shape[0]), math.prod(x.shape[1:]), math.prod(g.shape[1:])
        values = pool_windows(node, x, -np.inf).reshape(x.shape[0], outs, -1)
        index = np.arange(size, dtype=np.float64).reshape((1, *x.shape[1:]))
        windows = pool_windows(node, index, -1.0).reshape(outs, -1).astype(np.int64)
        chosen = windows[np.arange(outs)[None, :], values.argmax(axis=2)]
        dx = np.zeros((r, size))
        gr = np.broadcast_to(g.reshape(g.shape[0], -1), (r, outs))
        np.add.at(dx, (np.arange(r)[:, None], np.broadcast_to(chosen, (r, outs))), gr)
        return first(xs, dx.reshape(r, *x.shape[1:]))
