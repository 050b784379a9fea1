"""Transposed convolution (ConvTranspose) with groups, strides, dilations, pads, output_padding/output_shape.

The weights and bias must be constants, so ConvTranspose is affine in its data input. Each kernel position adds
its product with the input into a strided slice of the full output, which is then cropped by the pads.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Shape, Step, Tensors, const_value, has_input, register
from nnverify.graph.ops.conv_kernels import ConvMap, TransposedMap, kernel_taps, taps_matrix
from nnverify.graph.ops.pullback import first, grouped_product

_AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def transpose_pads(node: Node, full: Sequence[int], in_sizes: Sequence[int], strides: Sequence[int]) -> list[int]:
    """(begin, end) pads per spatial axis, flattened as ONNX writes them, cropped from the full output (a
    negative pad adds zeros, when ``output_shape`` is larger than the full output).

    Args:
        node: The ConvTranspose node (``auto_pad``, ``pads``, ``output_shape``).
        full: Full output sizes ``stride * (in - 1) + output_padding + dilation * (k - 1) + 1``.
        in_sizes: Spatial input sizes.
        strides: Strides per spatial axis.
    """
    n, auto_pad = len(full), node.attrs.get("auto_pad", "NOTSET")
    shape = node.attrs.get("output_shape")
    if shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        shape = [size * stride for size, stride in zip(in_sizes, strides, strict=True)]
    if shape is None:
        return [0] * (2 * n) if auto_pad == "VALID" else [int(p) for p in node.attrs.get("pads", [0] * (2 * n))]
    totals = [size - int(out) for size, out in zip(full, list(shape)[-n:], strict=True)]
    # a larger output_shape: zeros after the full output; SAME without output_shape never grows (as onnxruntime)
    grow = [min(t, 0) if "output_shape" in node.attrs else 0 for t in totals]
    totals = [max(t, 0) for t in totals]
    if auto_pad == "SAME_UPPER":
        return [t // 2 for t in totals] + [t - t // 2 + g for t, g in zip(totals, grow, strict=True)]
    return [t - t // 2 for t in totals] + [t // 2 + g for t, g in zip(totals, grow, strict=True)]


def _geometry(node: Node, kernel: list[int], in_sizes: list[int]) -> tuple[list[int], list[int], list[int]]:
    """Strides, dilations and full output sizes (before the pads crop) per spatial axis."""
    nd = len(kernel)
    strides = [int(s) for s in node.attrs.get("strides", [1] * nd)]
    dilations = [int(d) for d in node.attrs.get("dilations", [1] * nd)]
    extra = [int(p) for p in node.attrs.get("output_padding", [0] * nd)]
    params = zip(strides, in_sizes, extra, dilations, kernel, strict=True)
    return strides, dilations, [s * (i - 1) + e + d * (k - 1) + 1 for s, i, e, d, k in params]


@register
class ConvTranspose(Op):
    """N-d transposed convolution: the adjoint of Conv with the same attributes, plus a bias."""

    op_type = "ConvTranspose"
    affine = True
    notes = "constant weights and bias"

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        if node.attrs.get("auto_pad", "NOTSET") not in _AUTO_PADS:
            return f"auto_pad '{node.attrs['auto_pad']}' is not one of {', '.join(_AUTO_PADS)}"
        return super().check(node, is_const)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x, w = xs[0], const_value(xs[1])
        batch, n, channels, *in_sizes = x.shape
        _, group_out, *kernel = w.shape
        nd, groups = len(kernel), int(node.attrs.get("group", 1))
        strides, dilations, full = _geometry(node, kernel, in_sizes)
        # channels last, so that each kernel position is one batched matrix product per group
        xl = np.moveaxis(x.reshape(batch * n, groups, channels // groups, -1), 2, -1)
        wg = w.reshape(groups, channels // groups, group_out, *kernel)
        out = np.zeros((batch * n, groups, *full, group_out))
        for position in itertools.product(*(range(k) for k in kernel)):
            kernel_index: tuple[Any, ...] = (..., *position)
            part = grouped_product(xl, wg[kernel_index]).reshape(batch * n, groups, *in_sizes, group_out)
            index = tuple(
                slice(p * d, p * d + s * (i - 1) + 1, s)
                for p, d, s, i in zip(position, dilations, strides, in_sizes, strict=True)
            )
            out[(slice(None), slice(None), *index)] += part
        pads = transpose_pads(node, full, in_sizes, strides)
        grow = [(max(-pads[i], 0), max(-pads[i + nd], 0)) for i in range(nd)]
        out = np.pad(out, [(0, 0), (0, 0), *grow, (0, 0)])
        crop = tuple(slice(max(pads[i], 0), out.shape[2 + i] - max(pads[i + nd], 0)) for i in range(nd))
        out = np.moveaxis(out[(slice(None), slice(None), *crop)], -1, 2)
        y = out.reshape(batch, n, groups * group_out, *out.shape[3:])
        if has_input(node, 2):
            y = y + const_value(xs[2]).reshape(-1, *(1,) * nd)
        return y

    def abs_eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return self.eval(node, *xs)  # the weights arrive as absolute values

    def kernel_map(self, node: Node, constants: Mapping[str, np.ndarray], in_shape: Shape, out_shape: Shape) -> Any:
        """The adjoint of the Conv with this kernel, whose pads are this node's (none negative), or None."""
        w = _weight(node, constants, in_shape, out_shape)
        if w is None:
            return None
        nd = w.ndim - 2
        strides, dilations, full = _geometry(node, list(w.shape[2:]), list(in_shape[2:]))
        pads = transpose_pads(node, full, in_shape[2:], strides)
        if min(pads) < 0:
            return None
        pairs = tuple((pads[i], pads[i + nd]) for i in range(nd))
        conv = ConvMap(
            w, int(node.attrs.get("group", 1)), tuple(strides), tuple(dilations), pairs, out_shape[1:], in_shape[1:]
        )
        return TransposedMap(conv)

    def sparse_matrix(self, node: Node, constants: Mapping[str, np.ndarray], in_shape: Shape, out_shape: Shape) -> Any:
        """The matrix from the kernel's taps: input ``(c, p)`` adds into output ``(m, p * stride + k * dil - pad)``."""
        w = _weight(node, constants, in_shape, out_shape)
        if w is None:
            return None
        nd, in_sizes = w.ndim - 2, in_shape[2:]
        strides, dilations, full = _geometry(node, list(w.shape[2:]), list(in_sizes))
        begins = [-p for p in transpose_pads(node, full, in_sizes, strides)[:nd]]
        groups = int(node.attrs.get("group", 1))
        taps = kernel_taps(w, groups, in_sizes, out_shape[2:], strides, dilations, begins, transpose=True)
        return taps_matrix(taps, math.prod(out_shape), math.prod(in_shape))

    def nonzeros(self, node: Node, constants: Mapping[str, np.ndarray], in_shape: Shape, out_shape: Shape) -> int:
        weight = constants.get(node.inputs[1]) if len(node.inputs) > 1 else None
        if weight is None:
            return super().nonzeros(node, constants, in_shape, out_shape)
        return math.prod(in_shape) * math.prod(weight.shape[1:])

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """A convolution with the same kernel: ``g`` taken back to the full output (zeros where the pads cropped),
        then each kernel position's strided slice times its weights' transpose."""
        x, w = xs[0], const_value(xs[1])
        _, n, channels, *in_sizes = x.shape
        _, group_out, *kernel = w.shape
        nd, groups, r = len(kernel), int(node.attrs.get("group", 1)), g.shape[0]
        strides, dilations, full = _geometry(node, kernel, in_sizes)
        pads = transpose_pads(node, full, in_sizes, strides)
        gl = np.moveaxis(g.reshape(r * n, groups, group_out, *g.shape[3:]), 2, -1)
        gl = np.pad(gl, [(0, 0), (0, 0), *((max(pads[i], 0), max(pads[i + nd], 0)) for i in range(nd)), (0, 0)])
        grown = tuple(slice(max(-pads[i], 0), gl.shape[2 + i] - max(-pads[i + nd], 0)) for i in range(nd))
        gl = gl[(slice(None), slice(None), *grown)]
        wg = w.reshape(groups, channels // groups, group_out, *kernel)
        dx = np.zeros((r * n, groups, math.prod(in_sizes), channels // groups))
        for position in itertools.product(*(range(k) for k in kernel)):
            index = tuple(
                slice(p * d, p * d + s * (i - 1) + 1, s)
                for p, d, s, i in zip(position, dilations, strides, in_sizes, strict=True)
            )
            part = gl[(slice(None), slice(None), *index)].reshape(r * n, groups, -1, group_out)
            kernel_index: tuple[Any, ...] = (..., *position)
            dx += grouped_product(part, np.swapaxes(wg[kernel_index], -1, -2))
        return first(xs, np.moveaxis(dx, -1, 2).reshape(r, n, channels, *in_sizes))


def _weight(node: Node, constants: Mapping[str, np.ndarray], in_shape: Shape, out_shape: Shape) -> np.ndarray | None:
    """The constant kernel as float64 when the ONNX batch is 1, else None (no kernel operator or matrix)."""
    if len(node.inputs) < 2 or node.inputs[1] not in constants or in_shape[:1] != (1,) or out_shape[:1] != (1,):
        return None
    return np.asarray(constants[node.inputs[1]], dtype=np.float64)
