"""Average pooling: AveragePool (pads, strides, dilations, ceil_mode, count_include_pad) and GlobalAveragePool.

Both are affine: each output is a mean of a fixed set of inputs (the divisor depends only on the window).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, register
from nnverify.graph.ops.conv import conv_pads
from nnverify.graph.ops.pullback import first

_AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def _window_sums(
    xp: np.ndarray, extents: Sequence[int], strides: Sequence[int], dilations: Sequence[int], outs: Sequence[int]
) -> np.ndarray:
    """Sums over the first ``outs`` windows of the last axes of the (already padded) ``xp``."""
    nd = len(extents)
    windows = sliding_window_view(xp, extents, axis=tuple(range(xp.ndim - nd, xp.ndim)))
    index: tuple[Any, ...] = (
        ...,
        *(slice(0, (o - 1) * s + 1, s) for o, s in zip(outs, strides, strict=True)),
        *(slice(None, None, d) for d in dilations),
    )
    return windows[index].sum(axis=tuple(range(xp.ndim, xp.ndim + nd)))


def _plan(
    node: Node, in_sizes: Sequence[int]
) -> tuple[list[int], list[int], list[int], list[tuple[int, int]], np.ndarray]:
    """Strides, dilations, output sizes, the padding of each spatial axis (pads and the ceil_mode overhang)
    and the divisor of each window."""
    kernel = [int(k) for k in node.attrs["kernel_shape"]]
    nd = len(kernel)
    strides = [int(s) for s in node.attrs.get("strides", [1] * nd)]
    dilations = [int(d) for d in node.attrs.get("dilations", [1] * nd)]
    extents = [d * (k - 1) + 1 for d, k in zip(dilations, kernel, strict=True)]
    pads = conv_pads(node, in_sizes, extents, strides)
    outs, extra = [], []
    for size, (begin, end), extent, stride in zip(in_sizes, pads, extents, strides, strict=True):
        span = size + begin + end - extent
        out = span // stride + 1
        if node.attrs.get("ceil_mode", 0):
            out = -(-span // stride) + 1
            out -= int((out - 1) * stride >= size + begin)  # a window must start inside the input or left pad
        outs.append(out)
        extra.append(max(0, (out - 1) * stride + extent - (size + begin + end)))
    widths = [(b, e + more) for (b, e), more in zip(pads, extra, strict=True)]
    if node.attrs.get("count_include_pad", 0):  # the pads count, the ceil_mode overhang does not
        mask = np.pad(np.ones([s + b + e for s, (b, e) in zip(in_sizes, pads, strict=True)]), [(0, m) for m in extra])
    else:
        mask = np.pad(np.ones(in_sizes), widths)
    return strides, dilations, outs, widths, _window_sums(mask, extents, strides, dilations, outs)


@register
class AveragePool(Op):
    """Mean over sliding windows (padding counted in the divisor only with ``count_include_pad``)."""

    op_type = "AveragePool"
    affine = True
    nonnegative = True

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        if "kernel_shape" not in node.attrs:
            return "the attribute kernel_shape is missing"
        if node.attrs.get("auto_pad", "NOTSET") not in _AUTO_PADS:
            return f"auto_pad '{node.attrs['auto_pad']}' is not one of {', '.join(_AUTO_PADS)}"
        return super().check(node, is_const)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        kernel = [int(k) for k in node.attrs["kernel_shape"]]
        nd = len(kernel)
        strides, dilations, outs, widths, counts = _plan(node, x.shape[-nd:])
        extents = [d * (k - 1) + 1 for d, k in zip(dilations, kernel, strict=True)]
        xp = np.pad(x, [(0, 0)] * (x.ndim - nd) + widths)
        return _window_sums(xp, extents, strides, dilations, outs) / counts

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """Each window's share ``g / count`` added back onto the window's entries; the padding cropped."""
        x = xs[0]
        kernel = [int(k) for k in node.attrs["kernel_shape"]]
        nd, in_sizes = len(kernel), x.shape[-len(kernel) :]
        strides, dilations, outs, widths, counts = _plan(node, in_sizes)
        share = g / counts
        padded = [size + b + e for size, (b, e) in zip(in_sizes, widths, strict=True)]
        dxp = np.zeros((g.shape[0], *x.shape[1:-nd], *padded))
        for offset in itertools.product(*(range(k) for k in kernel)):
            window: tuple[Any, ...] = (
                ...,
                *(
                    slice(o * d, o * d + s * (n - 1) + 1, s)
                    for o, d, s, n in zip(offset, dilations, strides, outs, strict=True)
                ),
            )
            dxp[window] += share
        crop: tuple[Any, ...] = (..., *(slice(b, b + size) for (b, _), size in zip(widths, in_sizes, strict=True)))
        return first(xs, dxp[crop])


@register
class GlobalAveragePool(Op):
    """Mean over all spatial axes (keeping them with size 1)."""

    op_type = "GlobalAveragePool"
    affine = True
    nonnegative = True

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        return x.mean(axis=tuple(range(3, x.ndim)), keepdims=True)

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        x = xs[0]
        count = math.prod(x.shape[3:])
        return first(xs, np.broadcast_to(g, (g.shape[0], *x.shape[1:])) / count)
