"""Smooth monotone activations: Sigmoid, Tanh, Erf (S-shaped), Softplus and Exp (convex).

Not piecewise linear: no exact encoding; bounded by the lines of ``interface.Smooth``. Each ``solve_slope``
inverts ``f'`` in a form that stays accurate for slopes near 0 (far in the tails).
"""

from __future__ import annotations

import numpy as np

from nnverify.graph.ops.base import ActKind, register
from nnverify.graph.ops.interface import ActivationOp, Smooth, inside, register_activation


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


@register_activation
class SigmoidActivation(Smooth):
    """``1 / (1 + e^-x)``; ``f' = f (1 - f) = s`` at ``x = +-log((1 - m) / m)``, ``m = 2s / (1 + sqrt(1 - 4s))``."""

    kind = ActKind.SIGMOID
    peaks = (0.0,)

    def eval(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(x)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        f = _sigmoid(x)
        return f * (1.0 - f)

    def solve_slope(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        ok = (s > 0.0) & (s <= 0.25)
        m = 2.0 * s / (1.0 + np.sqrt(np.where(ok, 1.0 - 4.0 * s, 1.0)))
        x = np.where(ok, np.log1p(-m) - np.log(np.where(ok, m, 0.5)), np.nan)
        return [inside(x, lb, ub), inside(-x, lb, ub)]


@register_activation
class TanhActivation(Smooth):
    """``tanh x``; ``f' = 1 - f^2 = s`` at ``x = +-atanh(t) = +-(log(1 + t) - log(s) / 2)``, ``t = sqrt(1 - s)``."""

    kind = ActKind.TANH
    peaks = (0.0,)

    def eval(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        return 1.0 - np.tanh(x) ** 2

    def solve_slope(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        ok = (s > 0.0) & (s <= 1.0)
        t = np.sqrt(np.where(ok, 1.0 - s, 0.0))
        x = np.where(ok, np.log1p(t) - 0.5 * np.log(np.where(ok, s, 1.0)), np.nan)
        return [inside(x, lb, ub), inside(-x, lb, ub)]


@register_activation
class ErfActivation(Smooth):
    """The error function; ``f' = 2/sqrt(pi) e^(-x^2) = s`` at ``x = +-sqrt(-log(s sqrt(pi) / 2))``."""

    kind = ActKind.ERF
    peaks = (0.0,)

    def eval(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import erf  # imported on first use: scipy costs start-up time

        return np.asarray(erf(x), dtype=np.float64)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        return 2.0 / np.sqrt(np.pi) * np.exp(-np.square(x))

    def solve_slope(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        ok = (s > 0.0) & (s <= 2.0 / np.sqrt(np.pi))
        x = np.sqrt(np.maximum(-np.log(np.where(ok, s, 1.0) * np.sqrt(np.pi) / 2.0), 0.0))
        x = np.where(ok, x, np.nan)
        return [inside(x, lb, ub), inside(-x, lb, ub)]


@register_activation
class SoftplusActivation(Smooth):
    """``log(1 + e^x)``, convex; ``f' = sigmoid(x) = s`` at ``x = log(s) - log(1 - s)``."""

    kind = ActKind.SOFTPLUS

    def eval(self, x: np.ndarray) -> np.ndarray:
        return np.logaddexp(0.0, x)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(x)

    def solve_slope(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        ok = (s > 0.0) & (s < 1.0)
        safe = np.where(ok, s, 0.5)
        return [inside(np.where(ok, np.log(safe) - np.log1p(-safe), np.nan), lb, ub)]


@register_activation
class ExpActivation(Smooth):
    """``e^x``, convex; ``f' = s`` at ``x = log(s)``. Above 709 the float64 value is inf (bounds too)."""

    kind = ActKind.EXP

    def eval(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.exp(x)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        return self.eval(x)

    def solve_slope(self, s: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        ok = s > 0.0
        return [inside(np.where(ok, np.log(np.where(ok, s, 1.0)), np.nan), lb, ub)]


@register
class Sigmoid(ActivationOp):
    op_type = "Sigmoid"
    activation = ActKind.SIGMOID


@register
class Tanh(ActivationOp):
    op_type = "Tanh"
    activation = ActKind.TANH


@register
class Erf(ActivationOp):
    op_type = "Erf"
    activation = ActKind.ERF


@register
class Softplus(ActivationOp):
    op_type = "Softplus"
    activation = ActKind.SOFTPLUS


@register
class Exp(ActivationOp):
    op_type = "Exp"
    activation = ActKind.EXP
