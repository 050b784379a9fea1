"""Training of the porous-media BNN regressor (Korneev et al., SAT 2018) and of its real-valued twin, in numpy.

Architecture (the paper's): 256 pixels in {0, 1}; three blocks of 100 neurons, each ``Linear`` without bias ->
``BatchNorm`` -> activation; one linear output neuron with bias predicting the label (40 .. 100). The BNN has ±1
weights (the sign of real latent weights kept in [-1, 1]) and ``sign`` activations (``sign(0) = +1``), trained with
the straight-through estimator of Courbariaux, Hubara, Soudry, El-Yaniv and Bengio, "Binarized Neural Networks",
2016 (gradient of ``sign`` taken as ``1[|z| <= 1]``, gradient of the binary weight passed to the latent weight).
The twin has real weights and ReLU. Both minimise the mean absolute error with Adam (Kingma and Ba, 2015) and a
geometric learning-rate decay, on a seeded 80/10/10 train/validation/test split; the epoch with the best
validation MAE of the *exported* form (``model.BnnModel``: integer thresholds, dyadic output layer) is kept.
BatchNorm statistics for inference are the exact population statistics of the training set.

``python -m nnverify.bnn.train --grains 2 --out networks/porous_bnn_d2.onnx`` builds (or loads) the dataset,
trains both nets, exports the BNN to ONNX, replays it on onnxruntime and writes the metrics JSON beside it. The
library functions are silent (logging only); numpy runs single-threaded when ``OMP_NUM_THREADS=1`` is set.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from nnverify.bnn.dataset import DEFAULT_SEED, PAPER_SIZES, Dataset, load_or_build
from nnverify.bnn.model import BnnModel, from_batchnorm
from nnverify.bnn.onnx_export import OnnxCheck, check_onnx, export_onnx

__all__ = ["RealNet", "TrainConfig", "TrainResult", "export_onnx", "split_indices", "train_bnn", "train_network"]

log = logging.getLogger(__name__)

#: Test MAE reported by Korneev et al. (SAT 2018): BNN on D_2 and D_3, and the non-binarised network.
PAPER_MAE = {"bnn_d2": 4.2, "bnn_d3": 5.1, "real": 2.5}
#: Default number of epochs of the command line (see the metrics JSON of the shipped models).
DEFAULT_EPOCHS = 100


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        binarized: ±1 weights and sign activations (the BNN), else real weights and ReLU.
        hidden: Widths of the hidden blocks.
        epochs: Passes over the training set.
        batch_size: Samples per Adam step.
        learning_rate: Initial Adam step size.
        final_lr_ratio: The step size decays geometrically to ``learning_rate * final_lr_ratio``.
        bn_eps: BatchNorm's epsilon.
        split: Fractions of the data for training and validation (the rest is the test set).
        seed: Seed of the split, the initialisation and the batch order.
    """

    binarized: bool = True
    hidden: tuple[int, ...] = (100, 100, 100)
    epochs: int = 100
    batch_size: int = 100
    learning_rate: float = 3e-3
    final_lr_ratio: float = 0.01
    bn_eps: float = 1e-5
    split: tuple[float, float] = (0.8, 0.1)
    seed: int = 0


@dataclass(frozen=True, slots=True)
class RealNet:
    """Inference form of the real-valued twin: per block ``relu(scale * (W a) + shift)``, then ``w . a + b``."""

    weights: tuple[np.ndarray, ...]
    scales: tuple[np.ndarray, ...]
    shifts: tuple[np.ndarray, ...]
    out_weight: np.ndarray
    out_bias: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``(N,)`` for inputs ``(N, n_inputs)``."""
        a = np.asarray(x, dtype=np.float64)
        for weight, scale, shift in zip(self.weights, self.scales, self.shifts, strict=True):
            a = np.maximum(a @ weight.T * scale + shift, 0.0)
        return a @ self.out_weight + self.out_bias


@dataclass(frozen=True, slots=True)
class TrainResult:
    """A trained network and its mean absolute errors.

    Attributes:
        model: The exported form (``BnnModel`` for the BNN, ``RealNet`` for the twin).
        config: The hyper-parameters.
        mae_train: MAE on the training set.
        mae_val: MAE on the validation set (the model-selection criterion).
        mae_test: MAE on the test set.
        best_epoch: The epoch (1-based) whose parameters were kept.
        seconds: Wall time of the training.
        cpu_seconds: CPU time of the training process during it (the wall time depends on the machine's load).
        n_train: Training set size.
        n_val: Validation set size.
        n_test: Test set size.
        history: ``(mean training loss, validation MAE)`` per epoch.
    """

    model: BnnModel | RealNet
    config: TrainConfig
    mae_train: float
    mae_val: float
    mae_test: float
    best_epoch: int
    seconds: float
    cpu_seconds: float
    n_train: int
    n_val: int
    n_test: int
    history: tuple[tuple[float, float], ...] = field(repr=False)


def split_indices(n: int, split: tuple[float, float], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random train/validation/test indices (fractions ``split[0]``, ``split[1]``, the rest)."""
    order = np.random.default_rng((seed, n)).permutation(n)
    n_train, n_val = round(split[0] * n), round(split[1] * n)
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def train_bnn(
    data: Dataset | tuple[np.ndarray, np.ndarray],
    *,
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    config: TrainConfig | None = None,
) -> TrainResult:
    """Train the BNN regressor: ``train_network`` with ``binarized=True``, ``seed`` and ``epochs`` over ``config``."""
    return train_network(data, replace(config or TrainConfig(), binarized=True, seed=seed, epochs=epochs))


def train_network(data: Dataset | tuple[np.ndarray, np.ndarray], config: TrainConfig) -> TrainResult:
    """Train one network on ``data`` (a ``Dataset`` or ``(pixels (N, n), labels (N,))``).

    Args:
        data: 0/1 inputs and integer labels.
        config: The hyper-parameters (``binarized`` chooses the BNN or the real-valued twin).

    Returns:
        The network of the epoch with the best validation MAE, and its train/validation/test MAEs.
    """
    pixels, labels = (data.pixels, data.labels) if isinstance(data, Dataset) else data
    x = np.asarray(pixels, dtype=np.float32)
    t = np.asarray(labels, dtype=np.float32)
    train, val, test = split_indices(len(t), config.split, config.seed)
    rng = np.random.default_rng((config.seed, 1))
    net = _Net(x.shape[1], config, rng, float(np.mean(t[train])))
    start, cpu_start = time.perf_counter(), time.process_time()
    best: tuple[float, int, BnnModel | RealNet] | None = None
    history = []
    for epoch in range(1, config.epochs + 1):
        lr = config.learning_rate * config.final_lr_ratio ** ((epoch - 1) / max(config.epochs - 1, 1))
        order = rng.permutation(train)
        losses = [
            net.step(x[batch], t[batch], lr) for batch in np.array_split(order, -(-len(order) // config.batch_size))
        ]
        model = net.export(x[train])
        mae_val = _mae(model, x[val], t[val])
        history.append((float(np.mean(losses)), mae_val))
        log.debug("epoch %d: train loss %.3f, validation MAE %.3f", epoch, history[-1][0], mae_val)
        if best is None or mae_val < best[0]:
            best = (mae_val, epoch, model)
    assert best is not None  # epochs >= 1
    mae_val, best_epoch, model = best
    return TrainResult(
        model=model,
        config=config,
        mae_train=_mae(model, x[train], t[train]),
        mae_val=mae_val,
        mae_test=_mae(model, x[test], t[test]),
        best_epoch=best_epoch,
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
        n_train=len(train),
        n_val=len(val),
        n_test=len(test),
        history=tuple(history),
    )


def _mae(model: BnnModel | RealNet, x: np.ndarray, t: np.ndarray) -> float:
    return float(np.mean(np.abs(model.predict(x) - t))) if len(t) else float("nan")


class _Net:
    """Trainable parameters, Adam state and the forward/backward pass (float32)."""

    def __init__(self, n_inputs: int, config: TrainConfig, rng: np.random.Generator, mean_label: float) -> None:
        self.config = config
        widths = (n_inputs, *config.hidden)
        self.params: dict[str, np.ndarray] = {}
        for index, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            limit = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
            self.params[f"W{index}"] = rng.uniform(-limit, limit, (fan_out, fan_in)).astype(np.float32)
            self.params[f"gamma{index}"] = np.ones(fan_out, np.float32)
            self.params[f"beta{index}"] = np.zeros(fan_out, np.float32)
        self.params["w_out"] = rng.uniform(-0.1, 0.1, widths[-1]).astype(np.float32)
        self.params["b_out"] = np.array([mean_label], np.float32)
        self.adam = {name: (np.zeros_like(p), np.zeros_like(p)) for name, p in self.params.items()}
        self.steps = 0

    def weight(self, index: int) -> np.ndarray:
        w = self.params[f"W{index}"]
        return np.where(w >= 0, 1.0, -1.0).astype(np.float32) if self.config.binarized else w

    def activate(self, z: np.ndarray) -> np.ndarray:
        return np.where(z >= 0, 1.0, -1.0).astype(np.float32) if self.config.binarized else np.maximum(z, 0)

    def step(self, x: np.ndarray, t: np.ndarray, lr: float) -> float:
        """One Adam step on a batch (BatchNorm with batch statistics); returns the batch's MAE."""
        caches, a = [], x
        for index in range(len(self.config.hidden)):
            weight = self.weight(index)
            s = a @ weight.T
            inv_std = 1.0 / np.sqrt(s.var(axis=0) + self.config.bn_eps)
            normed = (s - s.mean(axis=0)) * inv_std
            z = self.params[f"gamma{index}"] * normed + self.params[f"beta{index}"]
            caches.append((a, weight, normed, inv_std, z))
            a = self.activate(z)
        err = a @ self.params["w_out"] + self.params["b_out"][0] - t
        d_y = np.sign(err) / len(t)
        grads = {"w_out": a.T @ d_y, "b_out": np.array([d_y.sum()], np.float32)}
        d_a = np.outer(d_y, self.params["w_out"])
        for index in reversed(range(len(caches))):
            a_in, weight, normed, inv_std, z = caches[index]
            d_z = d_a * (np.abs(z) <= 1.0 if self.config.binarized else z > 0)  # straight-through / ReLU
            grads[f"gamma{index}"] = (d_z * normed).sum(axis=0)
            grads[f"beta{index}"] = d_z.sum(axis=0)
            d_n = d_z * self.params[f"gamma{index}"]
            d_s = inv_std * (d_n - d_n.mean(axis=0) - normed * (d_n * normed).mean(axis=0))
            grads[f"W{index}"] = d_s.T @ a_in
            d_a = d_s @ weight
        self._adam(grads, lr)
        return float(np.mean(np.abs(err)))

    def _adam(self, grads: dict[str, np.ndarray], lr: float, b1: float = 0.9, b2: float = 0.999) -> None:
        self.steps += 1
        correction = np.sqrt(1 - b2**self.steps) / (1 - b1**self.steps)
        for name, grad in grads.items():
            m, v = self.adam[name]
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            self.params[name] -= (lr * correction * m / (np.sqrt(v) + 1e-8)).astype(np.float32)
            if self.config.binarized and name.startswith("W"):
                np.clip(self.params[name], -1.0, 1.0, out=self.params[name])

    def export(self, x_train: np.ndarray) -> BnnModel | RealNet:
        """The inference form, with BatchNorm statistics of the whole training set (float64)."""
        a = np.asarray(x_train, dtype=np.float64)
        weights, bn = [], []
        for index in range(len(self.config.hidden)):
            weight = self.weight(index).astype(np.float64)
            s = a @ weight.T
            gamma, beta = (self.params[f"{k}{index}"].astype(np.float64) for k in ("gamma", "beta"))
            mean, var = s.mean(axis=0), s.var(axis=0)
            z = gamma * (s - mean) / np.sqrt(var + self.config.bn_eps) + beta
            a = np.where(z >= 0, 1.0, -1.0) if self.config.binarized else np.maximum(z, 0.0)
            weights.append(weight)
            bn.append((gamma, beta, mean, var, self.config.bn_eps))
        out_weight = self.params["w_out"].astype(np.float64)
        out_bias = float(self.params["b_out"][0])
        if self.config.binarized:
            return from_batchnorm(weights, bn, out_weight, out_bias)
        scales = [g / np.sqrt(v + e) for g, _, _, v, e in bn]
        shifts = [b - m * sc for (_, b, m, _, _), sc in zip(bn, scales, strict=True)]
        return RealNet(tuple(weights), tuple(scales), tuple(shifts), out_weight, out_bias)


def main(argv: list[str] | None = None) -> int:
    """Command line: build or load the dataset, train the BNN and its twin, export and check the ONNX, write JSON."""
    parser = argparse.ArgumentParser(prog="python -m nnverify.bnn.train", description=__doc__.splitlines()[0])
    parser.add_argument("--grains", type=int, choices=sorted(PAPER_SIZES), required=True, help="dataset D_2 or D_3")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file (metrics: same name, .json)")
    parser.add_argument("--data-dir", type=Path, default=Path("bench/data"), help="dataset cache directory")
    parser.add_argument("--n", type=int, default=None, help="dataset size (default: the paper's)")
    parser.add_argument("--data-seed", type=int, default=DEFAULT_SEED, help="seed of the dataset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and batches")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs of the BNN")
    parser.add_argument("--real-epochs", type=int, default=None, help="epochs of the real twin (default: --epochs)")
    parser.add_argument("--verbose", action="store_true", help="log every epoch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    start = time.perf_counter()

    def progress(kept: int, drawn: int) -> None:
        if drawn % 1000 == 0:
            print(f"  dataset: {kept} kept of {drawn} drawn ({time.perf_counter() - start:.0f} s)", flush=True)

    data, data_path = load_or_build(args.data_dir, args.grains, n=args.n, seed=args.data_seed, progress=progress)
    print(f"dataset {data_path}: {len(data)} cells, {data.dropped_fraction:.1%} dropped", flush=True)
    bnn = train_bnn(data, seed=args.seed, epochs=args.epochs)
    print(f"BNN: MAE train {bnn.mae_train:.3f} val {bnn.mae_val:.3f} test {bnn.mae_test:.3f} ({bnn.seconds:.0f} s)")
    real_config = TrainConfig(binarized=False, seed=args.seed, epochs=args.real_epochs or args.epochs)
    real = train_network(data, real_config)
    print(
        f"real: MAE train {real.mae_train:.3f} val {real.mae_val:.3f} test {real.mae_test:.3f} ({real.seconds:.0f} s)"
    )
    assert isinstance(bnn.model, BnnModel)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = f"Porous-media BNN surrogate (Korneev et al., SAT 2018), D_{args.grains}; see {args.out.stem}.json"
    export_onnx(bnn.model, args.out, doc=doc)
    check = check_onnx(bnn.model, args.out, data.pixels)
    print(f"onnxruntime replay on {check.n_inputs} cells: exact={check.exact} {check}")
    metrics = _metrics(argv, data, data_path, bnn, real, check, time.perf_counter() - start)
    args.out.with_suffix(".json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} ({metrics['wall_seconds']:.0f} s)")
    return 0 if check.exact else 1


def _metrics(
    argv: list[str] | None,
    data: Dataset,
    data_path: Path,
    bnn: TrainResult,
    real: TrainResult,
    check: OnnxCheck,
    wall_seconds: float,
) -> dict[str, object]:
    """The JSON record of a run."""
    train, _, test = split_indices(len(data), bnn.config.split, bnn.config.seed)
    constant = float(np.median(data.labels[train]))

    def run(result: TrainResult) -> dict[str, object]:
        record = {name: getattr(result, name) for name in ("mae_train", "mae_val", "mae_test", "best_epoch")}
        record |= {name: getattr(result, name) for name in ("seconds", "cpu_seconds", "n_train", "n_val", "n_test")}
        return record | {"config": asdict(result.config)}

    return {
        "command": "python -m nnverify.bnn.train " + " ".join(sys.argv[1:] if argv is None else argv),
        "paper": "Korneev et al., Constrained Image Generation Using Binarized Neural Networks with Decision "
        "Procedures, SAT 2018",
        "dataset": {
            "file": str(data_path),
            "grains": data.grains,
            "n": len(data),
            "n_drawn": data.n_drawn,
            "dropped_fraction": data.dropped_fraction,
            "seed": data.seed,
            "pde_refine": data.refine,
            "grain_area": list(data.area),
            "build_seconds": data.build_seconds,
            "build_cpu_seconds": data.build_cpu_seconds,
            "unique_images": len(np.unique(data.pixels, axis=0)),
            "label_min": int(data.labels.min()),
            "label_max": int(data.labels.max()),
            "label_mean": float(data.labels.mean()),
            "label_std": float(data.labels.std()),
        },
        "bnn": run(bnn) | {"out_bits": bnn.model.out_bits if isinstance(bnn.model, BnnModel) else None},
        "real": run(real),
        "constant_predictor_mae_test": float(np.mean(np.abs(data.labels[test] - constant))),
        "paper_mae_test": PAPER_MAE,
        "onnx_check": asdict(check) | {"exact": check.exact},
        "wall_seconds": wall_seconds,
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "onnx": onnx.__version__},
    }


if __name__ == "__main__":
    sys.exit(main())
