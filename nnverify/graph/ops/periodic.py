"""Non-monotone smooth activations: Sin, Cos, and Pow with a constant exponent (2, 3 or 0.5).

Not piecewise linear: no exact encoding; bounded by the lines of ``interface.Smooth``, their intervals from
the critical points inside the input interval.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nnverify.errors import ModelError
from nnverify.graph.ops.base import ActKind, Flags, Node, Op, Parts, Step, Tensors, align_ranks, register
from nnverify.graph.ops.interface import ActivationOp, Lines, Smooth, inside, register_activation
from nnverify.graph.ops.pullback import unbroadcast

_TWO_PI = 2.0 * np.pi


def _periodic(base: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
    """The first and the last of ``base + 2 pi k`` in ``[lb, ub]``: ``g(x) = f(x) - s x`` changes by ``-2 pi s``
    from one to the next, so its extremes over the family are at the ends."""
    first = base + _TWO_PI * np.ceil((lb - base) / _TWO_PI)
    last = base + _TWO_PI * np.floor((ub - base) / _TWO_PI)
    return [inside(first, lb, ub), inside(last, lb, ub)]


@register_activation
class SinActivation(Smooth):
    """``sin x``; ``f' = cos x = s`` at ``+-acos(s) + 2 pi k``."""

    kind = ActKind.SIN
    increasing = False

    def eval(self, x: np.ndarray) -> np.ndarray:
        return np.sin(x)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        return np.cos(x)

    def slope_bound(self, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
        return np.ones_like(lb)

    def solve_slope(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        a = np.where(np.abs(s) <= 1.0, np.arccos(np.clip(s, -1.0, 1.0)), np.nan)
        return _periodic(a, lb, ub) + _periodic(-a, lb, ub)


@register_activation
class CosActivation(Smooth):
    """``cos x``; ``f' = -sin x = s`` at ``asin(-s) + 2 pi k`` and ``pi - asin(-s) + 2 pi k``."""

    kind = ActKind.COS
    increasing = False

    def eval(self, x: np.ndarray) -> np.ndarray:
        return np.cos(x)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        return -np.sin(x)

    def slope_bound(self, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
        return np.ones_like(lb)

    def solve_slope(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        a = np.where(np.abs(s) <= 1.0, np.arcsin(np.clip(-s, -1.0, 1.0)), np.nan)
        return _periodic(a, lb, ub) + _periodic(np.pi - a, lb, ub)


@register_activation
class SquareActivation(Smooth):
    """``x^2``, convex; ``f' = 2x = s`` at ``s / 2``."""

    kind = ActKind.SQUARE
    increasing = False

    def eval(self, x: np.ndarray) -> np.ndarray:
        return np.square(x)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        return 2.0 * x

    def solve_slope(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        return [inside(s / 2.0, lb, ub)]

    def interval(self, lb: np.ndarray, ub: np.ndarray, *margins: float) -> tuple[np.ndarray, np.ndarray]:
        """``Smooth``'s, the lower end kept at or above 0 (``x^2 >= 0``; a variance plus epsilon stays positive)."""
        lo, hi = super().interval(lb, ub, *margins)
        return np.maximum(lo, 0.0), hi


@register_activation
class CubeActivation(Smooth):
    """``x^3``, increasing; ``f' = 3x^2 = s`` at ``+-sqrt(s / 3)``."""

    kind = ActKind.CUBE

    def eval(self, x: np.ndarray) -> np.ndarray:
        return x * x * x

    def derivative(self, x: np.ndarray) -> np.ndarray:
        return 3.0 * np.square(x)

    def solve_slope(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        r = np.sqrt(np.where(s >= 0.0, s / 3.0, np.nan))
        return [inside(r, lb, ub), inside(-r, lb, ub)]


@register_activation
class SqrtActivation(Smooth):
    """``x^0.5``, concave on ``x >= 0``; ``f' = 1 / (2 sqrt x) = s`` at ``1 / (4 s^2)``. Below 0 ONNX gives NaN,
    which satisfies no property row, so the bounds describe the inputs at or above 0 (``lb`` clipped to 0)."""

    kind = ActKind.SQRT

    def eval(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.sqrt(x)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return 0.5 / np.sqrt(x)

    def solve_slope(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        with np.errstate(divide="ignore"):
            return [inside(np.where(s > 0.0, 0.25 / np.square(s), np.nan), lb, ub)]

    def interval(self, lb: np.ndarray, ub: np.ndarray, *margins: float) -> tuple[np.ndarray, np.ndarray]:
        return super().interval(np.maximum(lb, 0.0), np.maximum(ub, 0.0), *margins)

    def relax(self, lb: np.ndarray, ub: np.ndarray, *margins: float) -> Lines:
        return super().relax(np.maximum(lb, 0.0), np.maximum(ub, 0.0), *margins)


@register
class Sin(ActivationOp):
    op_type = "Sin"
    activation = ActKind.SIN


@register
class Cos(ActivationOp):
    op_type = "Cos"
    activation = ActKind.COS


#: Pow exponents the analysis handles, and the activation each one is.
POW_KINDS = {2.0: ActKind.SQUARE, 3.0: ActKind.CUBE, 0.5: ActKind.SQRT}


@register
class Pow(Op):
    """``x ^ y`` elementwise; on a variable ``x`` the exponent must be the constant 2, 3 or 0.5."""

    op_type = "Pow"
    notes = "activation pow2/pow3/pow0.5: constant exponent 2, 3 or 0.5"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        a, b = align_ranks(xs[0], xs[1])
        with np.errstate(invalid="ignore"):
            return np.power(a, b)

    def activation_of(self, node: Node, constants: Mapping[str, np.ndarray]) -> ActKind | None:
        exponent = np.asarray(constants[node.inputs[1]])
        value = float(exponent.reshape(-1)[0]) if exponent.size == 1 else None
        if value not in POW_KINDS:
            shown = exponent.tolist() if exponent.size <= 4 else f"a tensor of shape {exponent.shape}"
            raise ModelError(f"node '{node.name}' (Pow): exponent {shown} is not supported (only 2, 3 and 0.5)")
        return POW_KINDS[value]

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """``g b a^(b-1)`` to the base (0 where that is not finite); the exponent is a constant."""
        a, b = align_ranks(xs[0], xs[1])
        with np.errstate(all="ignore"):
            slope = np.nan_to_num(b * np.power(a, b - 1.0), nan=0.0, posinf=0.0, neginf=0.0)
        return [unbroadcast(g * slope, xs[0].shape), None]
