"""Resampling along axes for Resize and Upsample: the coordinate transformations, nearest rounding, linear
interpolation, and the adjoint of each (``Op.vjp``). Not an op family: ``resize.py`` registers the ops.
"""

from __future__ import annotations

import numpy as np


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


def _axis_plan(size: int, out: int, scale: float, coordinates: str, rounding: str) -> tuple[np.ndarray, ...]:
    """Per output index along one axis, the input index it copies (nearest), or the two it interpolates and
    the weight of the second (linear)."""
    source = _source(out, size, scale, coordinates)
    if rounding != "linear":
        return (np.clip(_nearest(source, rounding, scale), 0, size - 1).astype(np.int64),)
    source = np.clip(source, 0, size - 1)
    low = np.floor(source).astype(np.int64)
    return low, np.minimum(low + 1, size - 1), source - low


#: Per axis that changes: ``(axis, input size, plan)`` with the plan of ``_axis_plan``.
Plans = list[tuple[int, int, tuple[np.ndarray, ...]]]


def _plans(shape: tuple[int, ...], scales: list[float], sizes: list[int], coordinates: str, rounding: str) -> Plans:
    """``(axis, size, plan)`` for each axis that changes, in order."""
    return [
        (axis, shape[axis], _axis_plan(shape[axis], out, scale, coordinates, rounding))
        for axis, (scale, out) in enumerate(zip(scales, sizes, strict=True))
        if not (out == shape[axis] and scale == 1)
    ]


def resize(x: np.ndarray, scales: list[float], sizes: list[int], coordinates: str, rounding: str) -> np.ndarray:
    """Resize the batched ``x`` to ``sizes`` (one scale and size per unbatched axis), one axis at a time.

    ``rounding`` is a nearest mode, or ``"linear"`` for linear interpolation (separable, so per axis).
    """
    for axis, _, plan in _plans(x.shape[1:], scales, sizes, coordinates, rounding):
        if len(plan) == 1:
            x = np.take(x, plan[0], axis=axis + 1)
            continue
        low, high, weight = plan
        weight = weight.reshape(-1, *(1,) * (x.ndim - axis - 2))
        x = np.take(x, low, axis=axis + 1) * (1 - weight) + np.take(x, high, axis=axis + 1) * weight
    return x


def resize_adjoint(
    g: np.ndarray, shape: tuple[int, ...], scales: list[float], sizes: list[int], coordinates: str, rounding: str
) -> np.ndarray:
    """The adjoint of ``resize`` on inputs of unbatched ``shape``: ``g`` ``(R, *sizes)`` added back onto the
    entries each output copies or interpolates, one axis at a time in reverse order."""
    for axis, size, plan in reversed(_plans(shape, scales, sizes, coordinates, rounding)):
        moved = np.moveaxis(g, axis + 1, 0)
        dx = np.zeros((size, *moved.shape[1:]))
        if len(plan) == 1:
            np.add.at(dx, plan[0], moved)
        else:
            low, high, weight = plan
            weight = weight.reshape(-1, *(1,) * (moved.ndim - 1))
            np.add.at(dx, low, moved * (1 - weight))
            np.add.at(dx, high, moved * weight)
        g = np.moveaxis(dx, 0, axis + 1)
    return g
