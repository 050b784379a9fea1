"""The trained BNN regressor in its exact inference form: ±1 weights, integer thresholds, a dyadic output layer.

A block maps its input ``a`` (0/1 pixels for the first block, ±1 afterwards) to ``s = W a`` with ``W`` in
``{-1, +1}``: an integer. BatchNormalization followed by ``sign`` (with ``sign(0) = +1`` in training) is then a
threshold on that integer (Narodytska et al., "Verifying Properties of Binarized Deep Neural Networks", AAAI 2018,
§4): ``gamma * (s - mu) / sqrt(var + eps) + beta >= 0`` iff ``s >= tau`` (``gamma > 0``) or ``s <= tau``
(``gamma < 0``). ``from_batchnorm`` stores each such rule as ``direction * (s - threshold) > 0`` with a
half-integer ``threshold``: the same outputs on every integer ``s``, and the pre-activation is never within 0.5 of
0, so ONNX's ``Sign`` (which returns 0 at 0) never sees 0 and float32 rounding cannot flip a neuron.

The output neuron ``y = w . a + b`` has real weights rounded to a dyadic grid ``2^-q`` chosen so that every partial
sum is exactly representable in float32 (``|partial sum| * 2^q <= 2^24``): numpy, onnxruntime and nnverify's own
evaluator then compute bit-identical outputs whatever their summation order. The rounding moves ``y`` by at most
``(n_hidden + 1) * 2^-(q+1)``, about 1e-3 for our nets. No training or ONNX here (see ``train``, ``onnx_export``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: float32 has a 24-bit significand: integers times 2^-q up to 2^24 * 2^-q are exact.
FLOAT32_EXACT = 2**24
#: Finest dyadic grid of the output layer (finer buys nothing: labels are integers).
MAX_OUTPUT_BITS = 20


@dataclass(frozen=True, slots=True)
class BnnModel:
    """Inference form of a binarized network with one real output.

    Attributes:
        weights: Per block, ``int8 (out, in)`` matrix of ±1.
        thresholds: Per block, ``float64 (out,)`` half-integers.
        directions: Per block, ``int8 (out,)`` ±1: neuron output is ``+1`` iff ``direction * (s - threshold) > 0``.
        out_weight: ``float64 (hidden,)`` output weights, multiples of ``2^-out_bits``.
        out_bias: Output bias, a multiple of ``2^-out_bits``.
        out_bits: ``q`` of the dyadic grid of the output layer.
    """

    weights: tuple[np.ndarray, ...]
    thresholds: tuple[np.ndarray, ...]
    directions: tuple[np.ndarray, ...]
    out_weight: np.ndarray
    out_bias: float
    out_bits: int

    @property
    def n_inputs(self) -> int:
        """Input size (256 for a 16x16 cell)."""
        return int(self.weights[0].shape[1])

    def pre_activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Per block, ``direction * (s - threshold)`` (never 0) for inputs ``x`` of shape ``(N, n_inputs)``."""
        values = []
        a = np.asarray(x, dtype=np.float64)
        for weight, threshold, direction in zip(self.weights, self.thresholds, self.directions, strict=True):
            z = direction * (a @ weight.T.astype(np.float64) - threshold)
            values.append(z)
            a = np.where(z > 0, 1.0, -1.0)
        return values

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Network outputs ``(N,)`` (float64, exact) for 0/1 inputs ``x`` of shape ``(N, n_inputs)``."""
        a = np.where(self.pre_activations(x)[-1] > 0, 1.0, -1.0)
        return a @ self.out_weight + self.out_bias


def from_batchnorm(
    weights: list[np.ndarray],
    bn: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]],
    out_weight: np.ndarray,
    out_bias: float,
) -> BnnModel:
    """Fold trained blocks into thresholds and round the output layer to its dyadic grid.

    Args:
        weights: Per block, the binary weights (any array whose sign is the ±1 weight; ``sign(0) = +1``).
        bn: Per block, ``(gamma, beta, mean, var, eps)`` of the inference-mode BatchNormalization.
        out_weight: Real output weights ``(hidden,)``.
        out_bias: Real output bias.

    Returns:
        The exact inference model (see the module docstring).
    """
    binary = [np.where(np.asarray(w) >= 0, 1, -1).astype(np.int8) for w in weights]
    thresholds, directions = [], []
    for weight, (gamma, beta, mean, var, eps) in zip(binary, bn, strict=True):
        threshold, direction = _thresholds(weight.shape[1], gamma, beta, mean, var, eps)
        thresholds.append(threshold)
        directions.append(direction)
    bits = output_bits(out_weight, out_bias)
    scale = 2.0**bits
    return BnnModel(
        weights=tuple(binary),
        thresholds=tuple(thresholds),
        directions=tuple(directions),
        out_weight=np.round(np.asarray(out_weight, dtype=np.float64) * scale) / scale,
        out_bias=float(np.round(out_bias * scale) / scale),
        out_bits=bits,
    )


def _thresholds(
    fan_in: int, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Half-integer thresholds and directions equivalent to ``sign(BN(s))`` (``sign(0) = +1``) on integers."""
    gamma, beta, mean = (np.asarray(v, dtype=np.float64) for v in (gamma, beta, mean))
    std = np.sqrt(np.asarray(var, dtype=np.float64) + eps)
    bound = fan_in + 1.0  # |s| <= fan_in: a threshold beyond the bound makes the neuron constant
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.clip(mean - beta * std / gamma, -bound, bound)
    up = gamma > 0
    threshold = np.where(up, np.ceil(tau) - 0.5, np.floor(tau) + 0.5)
    constant = gamma == 0  # output sign(beta), with sign(0) = +1
    threshold = np.where(constant, np.where(beta >= 0, -bound - 0.5, bound + 0.5), threshold)
    direction = np.where(up | constant, 1, -1).astype(np.int8)
    return threshold, direction


def output_bits(out_weight: np.ndarray, out_bias: float) -> int:
    """The finest ``q`` such that all partial sums of ``w . a + b`` (``a`` in ±1) on the grid ``2^-q`` are exact in
    float32 (bounded by ``MAX_OUTPUT_BITS``)."""
    total = float(np.sum(np.abs(out_weight)) + abs(out_bias)) + 1.0  # + 1: room for rounding up
    return min(MAX_OUTPUT_BITS, math.floor(math.log2(FLOAT32_EXACT / total)))
