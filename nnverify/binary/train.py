"""Training binary networks by sampling (flip random parameters, keep the flip if the batch loss drops; or by
Metropolis-Hastings) on scikit-learn's bundled ``load_digits``, binarised, as a one-vs-rest task."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnverify.binary.model import BinaryNet, Step, random_net

#: Pixels of ``load_digits`` at or above this value (of 16) become 1.
PIXEL_THRESHOLD = 8


@dataclass(frozen=True, slots=True)
class Digits:
    """Binarised digits: ``x`` ``(N, 64)`` int8 in {0, 1}, one-vs-rest labels ``y`` in {0, 1}, and the digit."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    digit_test: np.ndarray


def load_binary_digits(positive: tuple[int, ...], *, seed: int = 0, test_fraction: float = 0.25) -> Digits:
    """``load_digits`` binarised at ``PIXEL_THRESHOLD``; label 1 iff the digit is in ``positive``."""
    from nnverify.extras import Extra, require

    data = require("sklearn.datasets", Extra.BINARY, "the binary networks' training data").load_digits()
    x = (np.asarray(data.data) >= PIXEL_THRESHOLD).astype(np.int8)
    digit = np.asarray(data.target, dtype=np.int64)
    y = np.isin(digit, positive).astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(test_fraction * len(x))
    test, train = order[:n_test], order[n_test:]
    return Digits(x[train], y[train], x[test], y[test], digit[test])


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Sampling hyper-parameters.

    Attributes:
        hidden: Hidden layer widths (the output is one neuron).
        step: Hidden activation.
        iterations: Proposals tried.
        batch: Batch size of each comparison (the old and new parameters on the same batch).
        flips: Parameters flipped per proposal.
        temperature: 0 for the greedy rule; > 0 for Metropolis-Hastings (accept worse with ``exp(-delta/T)``).
        margin: Hinge margin of the loss ``mean(max(0, margin - t * (z + 1/2)))``, ``t = ±1`` the label.
        seed: Seed of the initial parameters, batches and proposals.
    """

    hidden: tuple[int, ...] = (16,)
    step: Step = Step.BINARY01
    iterations: int = 4000
    batch: int = 256
    flips: int = 2
    temperature: float = 0.0
    margin: float = 3.0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class TrainResult:
    """The trained network, the full-train-set loss before and after, accuracies, and proposals accepted."""

    net: BinaryNet
    initial_loss: float
    final_loss: float
    train_accuracy: float
    test_accuracy: float
    accepted: int
    worse_accepted: int


def hinge_loss(net: BinaryNet, x: np.ndarray, y: np.ndarray, margin: float) -> float:
    """``mean(max(0, margin - t * (z + 1/2)))`` with ``z`` the output pre-activation and ``t = 2y - 1``."""
    t = 2.0 * np.asarray(y, dtype=np.float64) - 1.0
    return float(np.mean(np.maximum(0.0, margin - t * (net.output_pre(x) + 0.5))))


def train(data: Digits, config: TrainConfig) -> TrainResult:
    """Train a binary network ``64 -> hidden -> 1`` on ``data`` by sampling (see the module docstring)."""
    rng = np.random.default_rng(config.seed)
    net = random_net((data.x_train.shape[1], *config.hidden, 1), config.step, rng)
    initial = hinge_loss(net, data.x_train, data.y_train, config.margin)
    flat = net.flat()
    accepted = worse = 0
    for _ in range(config.iterations):
        rows = rng.choice(len(data.x_train), size=min(config.batch, len(data.x_train)), replace=False)
        xb, yb = data.x_train[rows], data.y_train[rows]
        proposal = flat.copy()
        proposal[rng.choice(len(flat), size=config.flips, replace=False)] *= -1
        candidate = net.with_flat(proposal)
        delta = hinge_loss(candidate, xb, yb, config.margin) - hinge_loss(net, xb, yb, config.margin)
        keep = delta < 0
        if not keep and config.temperature > 0 and delta > 0:
            keep = bool(rng.random() < math.exp(-delta / config.temperature))
            worse += int(keep)
        if keep:
            flat, net = proposal, candidate
            accepted += 1
    return TrainResult(
        net=net,
        initial_loss=initial,
        final_loss=hinge_loss(net, data.x_train, data.y_train, config.margin),
        train_accuracy=float(np.mean(net.predict(data.x_train) == data.y_train)),
        test_accuracy=float(np.mean(net.predict(data.x_test) == data.y_test)),
        accepted=accepted,
        worse_accepted=worse,
    )
