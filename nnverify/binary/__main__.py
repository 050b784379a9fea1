"""Rebuild the vote example: train the three networks (seeded), export them and the two vote models, write and
decide the vote queries around the first test images, record ``results.csv``/``.md``, witnesses and a figure."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from nnverify.backends import get_backend
from nnverify.binary.figures import ascii_pair, witness_figure
from nnverify.binary.model import BinaryNet, Step
from nnverify.binary.onnx_export import VoteRule, net_to_onnx, run_onnx, save, vote_to_onnx
from nnverify.binary.radius import COLUMNS, min_flips, radii
from nnverify.binary.train import Digits, TrainConfig, load_binary_digits, train
from nnverify.binary.vote import VoteQuery, decide, query_text
from nnverify.errors import ExitCode, InputFileError, NnverifyError
from nnverify.multi.bind import one_line
from nnverify.options import Options

#: The one-vs-rest task: class 1 = digits 5..9.
POSITIVE = (5, 6, 7, 8, 9)
#: The three networks: hidden activation, sampling temperature (0: greedy), seed.
NETS = ((Step.BINARY01, 0.0, 1), (Step.BINARY11, 0.0, 2), (Step.BINARY01, 0.002, 3))
#: (query, Hamming radius) asked around each image, for each vote rule.
QUESTIONS = ((VoteQuery.ROBUST, 1), (VoteQuery.ROBUST, 2), (VoteQuery.ROBUST, 4), (VoteQuery.DIFFERS, 4))


def train_all(data: Digits, out: Path) -> list[BinaryNet]:
    """Train, export and check the three networks and the two vote models; write ``metrics.json``."""
    nets, metrics = [], []
    for k, (step, temperature, seed) in enumerate(NETS, start=1):
        started = time.monotonic()
        result = train(data, TrainConfig(step=step, temperature=temperature, seed=seed))
        seconds = time.monotonic() - started
        path = out / f"net{k}.onnx"
        save(net_to_onnx(result.net, doc=f"digits 5-9 vs 0-4, {step.value}, seed {seed}"), path)
        exact = bool(np.array_equal(run_onnx(path, data.x_test)[:, 0], result.net.predict(data.x_test)))
        nets.append(result.net)
        metrics.append(
            {
                "file": path.name,
                "step": step.value,
                "temperature": temperature,
                "seed": seed,
                "loss": [round(result.initial_loss, 4), round(result.final_loss, 4)],
                "train_accuracy": round(result.train_accuracy, 4),
                "test_accuracy": round(result.test_accuracy, 4),
                "accepted": result.accepted,
                "worse_accepted": result.worse_accepted,
                "seconds": round(seconds, 1),
                "onnx_equals_numpy": exact,
            }
        )
    ys = [net.predict(data.x_test) for net in nets]
    for rule in VoteRule:
        save(vote_to_onnx((nets[0], nets[1], nets[2]), rule), out / f"vote_{rule.value}.onnx")
        metrics.append({"file": f"vote_{rule.value}.onnx", "test_accuracy": _accuracy(rule, ys, data.y_test)})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return nets


def _accuracy(rule: VoteRule, ys: list[np.ndarray], labels: np.ndarray) -> float:
    return round(float(np.mean(rule.apply(ys[0], ys[1], ys[2]) == labels)), 4)


def run_queries(
    data: Digits, out: Path, results: Path, n_images: int, timeout_s: float, cross: str | None
) -> list[dict[str, object]]:
    """Write and decide every query of ``QUESTIONS`` around the first ``n_images`` test images (and again with the
    backend ``cross`` if given); write the witnesses, the figure and the result tables under ``results``."""
    backend = get_backend("cpsat", Options(seed=0))
    other = get_backend(cross, Options(seed=0)) if cross else None
    nets = tuple(out / f"net{k}.onnx" for k in (1, 2, 3))
    rows: list[dict[str, object]] = []
    pairs: list[tuple[str, np.ndarray, np.ndarray]] = []
    (results / "witnesses").mkdir(exist_ok=True)
    for rule in VoteRule:
        model = out / f"vote_{rule.value}.onnx"
        for index in range(n_images):
            image, label = data.x_test[index], int(data.y_test[index])
            vote_at_image = int(run_onnx(model, image[None, :])[0, 3])
            for kind, radius in QUESTIONS:
                target = vote_at_image if kind is VoteQuery.ROBUST else label
                name = f"{rule.value}_img{index}_{kind.value}_r{radius}.vnnlib"
                comment = f"vote {rule.value}, test image {index} (label {label}), {kind.value}, Hamming <= {radius}"
                (out / name).write_text(query_text(kind, image, radius, target, comment))
                question = (kind, image, radius, target)
                answer = decide(model, nets, rule, question, out / name, backend, timeout_s)
                row: dict[str, object] = {
                    "query": name,
                    "verdict": answer.verdict.value,
                    "seconds": round(answer.seconds, 2),
                    "replayed y1 y2 y3 vote": "" if answer.replayed is None else " ".join(map(str, answer.replayed)),
                    "flips": "" if answer.x is None else int(np.sum(answer.x != image)),
                }
                if other is not None:
                    check = decide(model, nets, rule, question, out / name, other, timeout_s)
                    row[cross or ""] = f"{check.verdict.value} {check.seconds:.2f}"
                rows.append(row)
                if answer.x is not None:
                    stem = name.removesuffix(".vnnlib")
                    text = f"{comment}\nreplayed (y1, y2, y3, vote) = {answer.replayed}\n" + ascii_pair(image, answer.x)
                    (results / "witnesses" / f"{stem}.txt").write_text(text)
                    pairs.append((stem.replace("_", " "), image, answer.x))
    _write_results(rows, results)
    if pairs:
        witness_figure(pairs, results / "witnesses.png")
    return rows


def run_radii(data: Digits, out: Path, results: Path, n_images: int, max_radius: int) -> None:
    """Exact flip radii of the three networks and both votes on the first ``n_images`` test images: ``radii.csv``,
    ``radii.md`` (with the mean and the count of images where the vote is more or less robust than network 1)."""
    backend = get_backend("cpsat", Options(seed=0))
    images = data.x_test[:n_images]
    rows = radii(out / "vote_majority.onnx", images, max_radius, backend, results)
    issue = [min_flips(out / "vote_issue.onnx", image, 3, max_radius, backend, results) for image in images]
    (results / "radius.vnnlib").unlink(missing_ok=True)
    table: dict[str, list[int | None]] = {name: [] for name in (*COLUMNS[:3], "majority", "issue")}
    for r in rows:
        table[(*COLUMNS[:3], "majority")[r.column]].append(r.flips)
    table["issue"] = issue
    lines = ["image," + ",".join(table)]
    lines += [f"{i}," + ",".join(_flips(table[name][i], max_radius) for name in table) for i in range(len(images))]
    (results / "radii.csv").write_text("\n".join(lines) + "\n")
    md = [f"Fewest pixel flips that change each answer (`>{max_radius}`: none up to {max_radius}), exact (CP-SAT).", ""]
    md += ["| " + " | ".join(["image", *table]) + " |", "|" + "---|" * (len(table) + 1)]
    md += ["| " + " | ".join(line.split(",")) + " |" for line in lines[1:]]
    capped = {name: [max_radius + 1 if v is None else v for v in values] for name, values in table.items()}
    md += ["| mean (capped) | " + " | ".join(f"{np.mean(v):.2f}" for v in capped.values()) + " |"]
    (results / "radii.md").write_text("\n".join(md) + "\n")


def _flips(value: int | None, max_radius: int) -> str:
    return f">{max_radius}" if value is None else str(value)


def _write_results(rows: list[dict[str, object]], results: Path) -> None:
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]
    (results / "results.csv").write_text("\n".join(lines) + "\n")
    table = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    table += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    (results / "results.md").write_text("\n".join(table) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Entry point (see the module docstring); a failure is one ``Error:`` line and the ``nnverify`` exit code."""
    try:
        _main(argv)
    except NnverifyError as err:
        print(f"Error: {one_line(err)}", file=sys.stderr)
        sys.exit(int(err.exit_code))
    except OSError as err:
        print(f"Error: {err.filename or ''}: cannot write ({err.strerror or err})", file=sys.stderr)
        sys.exit(int(ExitCode.OUTPUT_FAILED))


def _main(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnverify.binary", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("properties/queries/vote"))
    parser.add_argument("--results", type=Path, default=Path("bench/results/vote"))
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--no-train", action="store_true", help="reuse the networks in --out")
    parser.add_argument("--cross-check", default=None, help="decide every query again with this backend (highs)")
    parser.add_argument("--radii", type=int, default=0, help="also compute exact flip radii on this many images")
    parser.add_argument("--max-radius", type=int, default=5)
    parser.add_argument("--no-queries", action="store_true", help="skip the 32 vote queries")
    args = parser.parse_args(argv)
    if args.images < 1 or not args.timeout > 0:
        parser.error("--images must be at least 1 and --timeout positive")
    args.out.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    data = load_binary_digits(POSITIVE)
    if not args.no_train:
        train_all(data, args.out)
    for name in ("net1", "net2", "net3", "vote_majority", "vote_issue"):
        if not (args.out / f"{name}.onnx").is_file():
            raise InputFileError(f"{args.out / name}.onnx: no such file (run without --no-train to build it)")
    if not args.no_queries:
        for row in run_queries(data, args.out, args.results, args.images, args.timeout, args.cross_check):
            print(*row.values())
    if args.radii > 0:
        run_radii(data, args.out, args.results, args.radii, args.max_radius)
        print((args.results / "radii.md").read_text())


if __name__ == "__main__":
    main()
