"""Resizing: Upsample and Resize in modes ``nearest`` and ``linear`` (cubic is refused).

Each output entry copies one input entry (nearest: chosen per axis from the coordinate transformation and the
rounding mode) or interpolates between two per axis with constant weights (linear), so both are affine.
Scales and sizes must be constants.
"""

from __future__ import annotations

import math

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, const_value, has_input, register
from nnverify.graph.ops.pullback import first
from nnverify.graph.ops.resampling import resize, resize_adjoint

_COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric")
#: "simple" is the rounding of Upsample and opset-10 Resize: floor when enlarging, ceil when shrinking.
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")


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

    @staticmethod
    def _args(node: Node, xs: Tensors) -> tuple[list[float], list[int], str, str]:
        """Scales, output sizes, coordinate transformation and rounding of ``resize``."""
        scales = [float(s) for s in (const_value(xs[1]).reshape(-1) if has_input(node, 1) else node.attrs["scales"])]
        sizes = [math.floor(d * s) for d, s in zip(xs[0].shape[1:], scales, strict=True)]
        return scales, sizes, "asymmetric", _rounding(node, "simple")

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return resize(xs[0], *self._args(node, xs))

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return first(xs, resize_adjoint(g, xs[0].shape[1:], *self._args(node, xs)))


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

    def _args(self, node: Node, xs: Tensors) -> tuple[list[float], list[int], str, str]:
        """Scales, output sizes, coordinate transformation and rounding of ``resize``."""
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
        return scales, sizes, *self._modes(node)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return resize(xs[0], *self._args(node, xs))

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return first(xs, resize_adjoint(g, xs[0].shape[1:], *self._args(node, xs)))
