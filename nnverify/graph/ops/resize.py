"""Resizing: Upsample and Resize in modes ``nearest`` and ``linear`` (cubic is refused).

Each output entry copies one input entry (nearest: chosen per axis from the coordinate transformation and the
rounding mode) or interpolates between two per axis with constant weights (linear), so both are affine.
Scales and sizes must be constants.
"""

from __future__ import annotations

import math

import numpy as np

from nnverify.graph.ops.base import Node, Op, const_value, has_input, register

_COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric")
#: "simple" is the rounding of Upsample and opset-10 Resize: floor when enlarging, ceil when shrinking.
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")


def _source(out: int, size: int, scale: float, mode: str) -> np.ndarray:
    """The input coordinate of each output index along one axis, in float32 as onnxruntime computes it (so that
    nearest-neighbour ties round the same way)."""
    y, s, f = np.arange(out, dtype=np.float32), np.float32(scale), np.float32
    if mode == "asymmetric":
        return (y / s).astype(np.float64)
    if mode == "align_corners":
        return (y * f(size - 1) / f(out - 1)).astype(np.float64) if out > 1 else np.zeros(out)
    if mode == "pytorch_half_pixel" and out <= 1:
        return np.zeros(out)
    if mode == "half_pixel_symmetric":
        offset = f(size) / f(2) * (f(1) - f(out) / (s * f(size)))  # float32, the rest in double (as onnxruntime)
        return (offset + (y.astype(np.float64) + 0.5) / float(s) - 0.5).astype(np.float32).astype(np.float64)
    return ((y + f(0.5)) / s - f(0.5)).astype(np.float64)


def _nearest(x: np.ndarray, mode: str, scale: float) -> np.ndarray:
    """``x`` rounded to integers by an ONNX ``nearest_mode``."""
    half = x - np.floor(x) == 0.5
    if mode == "simple":
        return np.ceil(x) if scale < 1 else np.floor(x)
    if mode in ("floor", "ceil"):
        return np.floor(x) if mode == "floor" else np.ceil(x)
    return np.where(half, np.floor(x) if mode == "round_prefer_floor" else np.ceil(x), np.round(x))


def resize(x: np.ndarray, scales: list[float], sizes: list[int], coordinates: str, rounding: str) -> np.ndarray:
    """Resize the batched ``x`` to ``sizes`` (one scale and size per unbatched axis), one axis at a time.

    ``rounding`` is a nearest mode, or ``"linear"`` for linear interpolation (separable, so per axis).
    """
    for axis, (scale, out) in enumerate(zip(scales, sizes, strict=True)):
        size = x.shape[axis + 1]
        if out == size and scale == 1:
            continue
        source = _source(out, size, scale, coordinates)
        if rounding != "linear":
            index = _nearest(source, rounding, scale)
            x = np.take(x, np.clip(index, 0, size - 1).astype(np.int64), axis=axis + 1)
            continue
        source = np.clip(source, 0, size - 1)
        low = np.floor(source).astype(np.int64)
        weight = (source - low).reshape(-1, *(1,) * (x.ndim - axis - 2))
        high = np.take(x, np.minimum(low + 1, size - 1), axis=axis + 1)
        x = np.take(x, low, axis=axis + 1) * (1 - weight) + high * weight
    return x


def _check_modes(node: Node, coordinates: str, rounding: str) -> str | None:
    """Why the node's modes are not supported, or None."""
    if node.attrs.get("mode", "nearest") not in ("nearest", "linear"):
        return f"mode '{node.attrs['mode']}' is not supported (only nearest and linear)"
    if node.attrs.get("antialias", 0):
        return "antialias=1 is not supported"
    if coordinates not in _COORDINATE_MODES:
        return f"coordinate_transformation_mode '{coordinates}' is not supported"
    if coordinates == "half_pixel_symmetric" and rounding != "linear":  # ties round differently in onnxruntime
        return "coordinate_transformation_mode 'half_pixel_symmetric' is supported in linear mode only"
    if rounding not in (*_NEAREST_MODES, "linear"):
        return f"nearest_mode '{rounding}' is not supported"
    if node.attrs.get("keep_aspect_ratio_policy", "stretch") not in ("stretch", "not_larger", "not_smaller"):
        return f"keep_aspect_ratio_policy '{node.attrs['keep_aspect_ratio_policy']}' is not supported"
    return None


def _rounding(node: Node, nearest_mode: str) -> str:
    """``"linear"`` in linear mode, else the nearest mode."""
    return "linear" if node.attrs.get("mode", "nearest") == "linear" else nearest_mode


@register
class Upsample(Op):
    """Enlarge by constant scales (attribute in opset 7, input from opset 9), nearest or linear."""

    op_type = "Upsample"
    affine = True
    nonnegative = True
    notes = "nearest or linear, constant scales"

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        return _check_modes(node, "asymmetric", _rounding(node, "simple")) or super().check(node, is_const)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        scales = [float(s) for s in (const_value(xs[1]).reshape(-1) if has_input(node, 1) else node.attrs["scales"])]
        sizes = [math.floor(d * s) for d, s in zip(x.shape[1:], scales, strict=True)]
        return resize(x, scales, sizes, "asymmetric", _rounding(node, "simple"))


@register
class Resize(Op):
    """Resize to constant scales or sizes, nearest or linear (every coordinate mode but tf_crop_and_resize)."""

    op_type = "Resize"
    affine = True
    nonnegative = True
    notes = "nearest or linear, constant scales or sizes"

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        return _check_modes(node, *self._modes(node)) or super().check(node, is_const)

    @staticmethod
    def _modes(node: Node) -> tuple[str, str]:
        """Coordinate transformation and rounding (opset 10 has neither attribute: it resizes like Upsample)."""
        if "coordinate_transformation_mode" not in node.attrs:
            return "asymmetric", _rounding(node, "simple")
        nearest = node.attrs.get("nearest_mode", "round_prefer_floor")
        return node.attrs["coordinate_transformation_mode"], _rounding(node, nearest)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        rank = x.ndim - 1
        axes = [int(a) % rank for a in node.attrs.get("axes", range(rank))]
        scales, sizes = [1.0] * rank, list(x.shape[1:])
        scale_input = 1 if "coordinate_transformation_mode" not in node.attrs else 2  # opset 10: (X, scales)
        if has_input(node, 3) and const_value(xs[3]).size:
            targets = [int(out) for out in const_value(xs[3]).reshape(-1)]
            ratios = [np.float32(t) / np.float32(x.shape[a + 1]) for t, a in zip(targets, axes, strict=True)]
            policy = node.attrs.get("keep_aspect_ratio_policy", "stretch")
            if policy != "stretch":  # one scale for all the axes, the largest (smallest) that fits
                scale = min(ratios) if policy == "not_larger" else max(ratios)
                ratios = [scale] * len(axes)
                targets = [math.floor(float(scale * np.float32(x.shape[a + 1])) + 0.5) for a in axes]
            for axis, out, ratio in zip(axes, targets, ratios, strict=True):
                sizes[axis], scales[axis] = out, float(ratio)
        else:
            for axis, scale in zip(axes, const_value(xs[scale_input]).reshape(-1), strict=True):
                scales[axis], sizes[axis] = float(scale), math.floor(x.shape[axis + 1] * float(scale))
        return resize(x, scales, sizes, *self._modes(node))
