"""Convolution (Conv) with groups, strides, pads, dilations and auto_pad, in numpy over sliding windows.

The weights and bias must be constants, so Conv is affine in its data input. Any number of spatial
dimensions is handled (1-D, 2-D, 3-D ...).
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nnverify.graph.ops.base import (
    Flags,
    NoAdjoint,
    Node,
    Op,
    Parts,
    Shape,
    Step,
    Tensors,
    const_value,
    has_input,
    register,
)
from nnverify.graph.ops.conv_kernels import conv_map, conv_pads, kernel_taps, taps_matrix
from nnverify.graph.ops.pullback import first, grouped_product

#: Rows (times the ONNX batch) from which ``Conv.vjp`` goes through ``ConvMap.adjoint`` (measured on CIFAR-sized
#: convolutions: the per-offset products win below about 16 rows, the GEMM above).
MAP_ROWS = 16


@register
class Conv(Op):
    """N-d convolution ``Y = W * X + bias`` (cross-correlation, as in ONNX)."""

    op_type = "Conv"
    affine = True
    notes = "constant weights and bias"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x, w = xs[0], const_value(xs[1])
        batch, n, channels, *in_sizes = x.shape
        m, group_channels, *kernel = w.shape
        nd = len(kernel)
        groups = int(node.attrs["group"])
        strides = [int(s) for s in node.attrs.get("strides", [1] * nd)]
        dilations = [int(d) for d in node.attrs.get("dilations", [1] * nd)]
        extents = [d * (k - 1) + 1 for d, k in zip(dilations, kernel, strict=True)]
        pads = conv_pads(node, in_sizes, extents, strides)
        xp = np.pad(x.reshape(batch * n, channels, *in_sizes), [(0, 0), (0, 0), *pads])
        spatial = tuple(range(2, 2 + nd))
        windows = sliding_window_view(xp, extents, axis=spatial)
        index = (
            slice(None),
            slice(None),
            *(slice(None, None, s) for s in strides),
            *(slice(None, None, d) for d in dilations),
        )
        windows = windows[index]
        out_sizes = windows.shape[2 : 2 + nd]
        windows = windows.reshape(batch * n, groups, group_channels, *out_sizes, *kernel)
        w = w.reshape(groups, m // groups, group_channels, *kernel)
        o, k = string.ascii_letters[:nd], string.ascii_letters[nd : 2 * nd]
        y = np.einsum(f"XGC{o}{k},GMC{k}->XGM{o}", windows, w, optimize=True)
        y = y.reshape(batch, n, m, *out_sizes)
        if has_input(node, 2):
            y = y + const_value(xs[2]).reshape(m, *(1,) * nd)
        return y

    def linear_map(self, node: Node, constants: Mapping[str, np.ndarray], in_shape: tuple[int, ...]) -> Any:
        return conv_map(node, constants, in_shape)

    def sparse_matrix(self, node: Node, constants: Mapping[str, np.ndarray], in_shape: Shape, out_shape: Shape) -> Any:
        """The matrix from the kernel's taps: output ``(m, p)`` reads input ``(c, p * stride + k * dilation - pad)``."""
        cmap = conv_map(node, constants, in_shape)
        if cmap is None or out_shape[:1] != (1,):
            return None
        begins = [-b for b, _ in cmap.pads]
        taps = kernel_taps(
            cmap.kernel,
            cmap.groups,
            out_shape[2:],
            in_shape[2:],
            list(cmap.strides),
            list(cmap.dilations),
            begins,
            transpose=False,
        )
        return taps_matrix(taps, math.prod(out_shape), math.prod(in_shape))

    def nonzeros(self, node: Node, constants: Mapping[str, np.ndarray], in_shape: Shape, out_shape: Shape) -> int:
        weight = constants.get(node.inputs[1]) if len(node.inputs) > 1 else None
        if weight is None:
            return super().nonzeros(node, constants, in_shape, out_shape)
        return math.prod(out_shape) * math.prod(weight.shape[1:])

    def abs_eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return self.eval(node, *xs)  # the weights arrive as absolute values

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """A transposed convolution: for many rows ``conv_kernels.ConvMap.adjoint`` (one GEMM per
        group, rows folded with the ONNX batch), for few (the attack's points) one product per kernel offset."""
        x, w = xs[0], np.asarray(const_value(xs[1]), dtype=np.float64)
        _, n, channels, *in_sizes = x.shape
        r = g.shape[0]
        if r * n < MAP_ROWS:
            return first(xs, _transposed(node, w, g, in_sizes))
        cmap = conv_map(node, {node.inputs[1]: w}, (1, channels, *in_sizes))
        if cmap is None:
            raise NoAdjoint(f"Conv node '{node.name}' has no kernel map")
        return first(xs, cmap.adjoint(g.reshape(r * n, -1)).reshape(r, n, channels, *in_sizes))


def _transposed(node: Node, w: np.ndarray, g: np.ndarray, in_sizes: list[int]) -> np.ndarray:
    """``g`` ``(R, N, M, *out)`` through the transposed convolution: one batched product with the kernel per
    group, then each kernel offset's columns added into a strided window of the padded input, which is cropped."""
    r, n = g.shape[:2]
    m, group_channels, *kernel = w.shape
    groups, nd = int(node.attrs["group"]), len(kernel)
    strides = [int(s) for s in node.attrs.get("strides", [1] * nd)]
    dilations = [int(d) for d in node.attrs.get("dilations", [1] * nd)]
    pads = conv_pads(node, in_sizes, [d * (k - 1) + 1 for d, k in zip(dilations, kernel, strict=True)], strides)
    out_sizes = g.shape[3:]
    rows = np.moveaxis(g.reshape(r * n, groups, m // groups, -1), 2, -1)  # (RN, G, P, Mg)
    kernels = w.reshape(groups, m // groups, -1)  # (G, Mg, Cg * K)
    cols = grouped_product(rows, kernels).reshape(r * n, groups, *out_sizes, group_channels, *kernel)
    padded = [size + b + e for size, (b, e) in zip(in_sizes, pads, strict=True)]
    dxp = np.zeros((r * n, groups, *padded, group_channels))
    lead: tuple[Any, ...] = (slice(None), slice(None))
    for offset in itertools.product(*(range(k) for k in kernel)):
        window = tuple(
            slice(o * d, o * d + s * (size - 1) + 1, s)
            for o, d, s, size in zip(offset, dilations, strides, out_sizes, strict=True)
        )
        dxp[(*lead, *window)] += cols[(*lead, *(slice(None),) * nd, slice(None), *offset)]
    crop = tuple(slice(b, b + size) for (b, _), size in zip(pads, in_sizes, strict=True))
    dx = np.moveaxis(dxp[(*lead, *crop)], -1, 2)
    return dx.reshape(r, n, groups * group_channels, *in_sizes)
