"""Binary networks in numpy: ±1 weights and biases, integer pre-activations ``z = W a + b`` over 0/1 pixels, a
neuron firing at ``z >= 0`` into {0, 1} or {-1, 1}, and one step output read as a class in {0, 1}."""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

import numpy as np


class Step(enum.Enum):
    """The hidden activation: ``z >= 0`` maps to 1, ``z < 0`` to 0 (``BINARY01``) or -1 (``BINARY11``)."""

    BINARY01 = "binary01"
    BINARY11 = "binary11"

    @property
    def low(self) -> float:
        """The value of a neuron that does not fire."""
        return 0.0 if self is Step.BINARY01 else -1.0


@dataclass(frozen=True, slots=True)
class BinaryNet:
    """A binary network ``n_inputs -> hidden... -> 1``.

    Attributes:
        weights: Per layer, ``int8 (out, in)`` of ±1; the last layer has one row.
        biases: Per layer, ``int8 (out,)`` of ±1.
        step: The hidden activation (the output is always read as a class in {0, 1}).
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    step: Step

    @property
    def n_inputs(self) -> int:
        """Input size (64 for 8x8 digits)."""
        return int(self.weights[0].shape[1])

    def output_pre(self, x: np.ndarray) -> np.ndarray:
        """The output neuron's integer pre-activation ``(N,)`` for 0/1 inputs ``x`` ``(N, n_inputs)``."""
        a = np.asarray(x, dtype=np.int64)
        for weight, bias in zip(self.weights[:-1], self.biases[:-1], strict=True):
            z = a @ weight.T.astype(np.int64) + bias
            a = np.where(z >= 0, 1, int(self.step.low))
        return (a @ self.weights[-1].T.astype(np.int64) + self.biases[-1])[:, 0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Classes ``(N,)`` in {0, 1}: 1 iff the output pre-activation is ``>= 0``."""
        return (self.output_pre(x) >= 0).astype(np.int64)

    def flat(self) -> np.ndarray:
        """All parameters, weights then bias per layer, as one ``int8`` vector."""
        return np.concatenate([p.ravel() for w, b in zip(self.weights, self.biases, strict=True) for p in (w, b)])

    def with_flat(self, flat: np.ndarray) -> BinaryNet:
        """The same architecture with the parameters ``flat`` (see ``flat``)."""
        weights, biases, k = [], [], 0
        for w, b in zip(self.weights, self.biases, strict=True):
            weights.append(flat[k : k + w.size].reshape(w.shape).astype(np.int8))
            k += w.size
            biases.append(flat[k : k + b.size].astype(np.int8))
            k += b.size
        return BinaryNet(tuple(weights), tuple(biases), self.step)


def random_net(sizes: tuple[int, ...], step: Step, rng: np.random.Generator) -> BinaryNet:
    """Uniform random ±1 parameters for layer sizes ``(n_inputs, hidden..., 1)``."""
    weights = tuple(rng.choice(np.array([-1, 1], np.int8), size=(o, i)) for i, o in itertools.pairwise(sizes))
    biases = tuple(rng.choice(np.array([-1, 1], np.int8), size=o) for o in sizes[1:])
    return BinaryNet(weights, biases, step)
