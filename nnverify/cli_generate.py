"""``nnverify generate`` (porous-media unit cells whose BNN prediction lies in an interval, solved exactly)
and ``nnverify bnn train`` (the BNN surrogates)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from nnverify.backends import BACKENDS
from nnverify.cli_bench import FiniteFloat, dir_of, fail_with, output_path, writable_dir
from nnverify.cli_common import STARTUP_S, exit_on_output_failures, exit_unless_images, write_atomic, write_output
from nnverify.errors import NnverifyError, OutputFileError


def _default_bnn(grains: int) -> str:
    """The shipped porous-media BNN for ``grains`` (``networks/`` of the working directory or the checkout)."""
    name = f"porous_bnn_d{grains}.onnx"
    for root in (Path("networks"), Path(__file__).resolve().parents[1] / "networks"):
        if (root / name).is_file():
            return str(root / name)
    return str(Path("networks") / name)


def _parse_seeds(text: str | None) -> tuple[tuple[int, int], ...] | None:
    if not text:
        return None
    try:
        return tuple((int(r), int(c)) for r, c in (pair.split(",") for pair in text.split()))
    except ValueError:
        raise click.BadParameter(f"expected 'row,col row,col …', found {text!r}", param_hint="--seeds") from None


@click.command()
@click.option("--grains", type=click.IntRange(1, 5), default=2, show_default=True, help="Number of grains w.")
@click.option(
    "--interval", nargs=2, type=FiniteFloat(), required=True, help="Target range A B of the network's output."
)
@click.option("--network", type=click.Path(dir_okay=False), help="BNN (default: networks/porous_bnn_d<grains>.onnx).")
@click.option("--seeds", help="Seed cell of each grain, 'row,col row,col …' (default: drawn from --seed).")
@click.option("--compactness", type=click.IntRange(min=1), help="At most S runs per row/column of a grain (1: convex).")
@click.option("--solid-fraction", nargs=2, type=int, help="Number of solid pixels between LO and HI.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed (seed cells).")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True, help="Distinct images to find.")
@click.option(
    "--image", "image_file", type=click.Path(dir_okay=False), callback=output_path, help="PNG of the image(s)."
)
@click.option("--query", "query_file", type=click.Path(dir_okay=False), callback=output_path, help="Save the query.")
@click.option("--timeout", "timeout_s", type=FiniteFloat(min=0, allow_inf=True), default=60.0, show_default=True)
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default="cpsat", show_default=True)
@click.option(
    "--proposals/--no-proposals",
    default=True,
    show_default=True,
    help="Try randomly grown cells first, each decided exactly with its pixels fixed (--no-proposals: search only).",
)
def generate(
    grains: int,
    interval: tuple[float, float],
    network: str | None,
    seeds: str | None,
    compactness: int | None,
    solid_fraction: tuple[int, int] | None,
    seed: int,
    count: int,
    image_file: str | None,
    query_file: str | None,
    timeout_s: float,
    backend: str,
    proposals: bool,
) -> None:
    """Generate porous-media unit cells whose BNN-predicted coefficient lies in --interval (exactly solved).

    The first line is sat (images follow, each re-checked: flood fill, onnxruntime, PDE), unsat or timeout.
    """
    from nnverify.backends import get_backend
    from nnverify.bnn.generate import GenerateParams, build_query, check_image, labels_of, shape_proposals, solve_query
    from nnverify.bnn.shapes import ShapeParams
    from nnverify.budget import Budget
    from nnverify.encode.bnn import is_bnn
    from nnverify.errors import ModelError
    from nnverify.graph.onnx_import import load_network
    from nnverify.graph.passes import to_layers
    from nnverify.options import Options
    from nnverify.spec.discrete import parse_discrete

    started = time.monotonic() - STARTUP_S
    if image_file:
        exit_unless_images("generate --image")
    net_path = network or _default_bnn(grains)
    low, high = interval
    if low > high:
        raise click.BadParameter(f"expected A <= B, found {low} > {high}", param_hint="--interval")
    try:
        shape = ShapeParams(
            grains,
            seeds=_parse_seeds(seeds),
            compactness=compactness,
            solid_fraction=(solid_fraction[0], solid_fraction[1]) if solid_fraction else None,
            random_seed=seed,
        )
        params = GenerateParams(shape, low, high)
        text, model = build_query(params)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    try:
        graph = load_network(net_path)
        layers = to_layers(graph)
        if not is_bnn(layers) or graph.n_inputs != shape.size**2 or graph.n_outputs < 1:
            raise ModelError(
                f"{net_path}: expected a binarized network (Sign activations only) with {shape.size**2} inputs and "
                f"an output; found {graph.n_inputs} inputs, {graph.n_outputs} outputs"
                + ("" if is_bnn(layers) else ", and activations other than Sign")
            )
        query = parse_discrete(text, query_file or "<generated query>")
        engine = get_backend(backend, Options(seed=seed))
        budget = Budget(started + timeout_s)  # every phase keeps it; the proposals get their share of it
        guesses = (lambda share: shape_proposals(layers, model, params, budget=share)) if proposals else None
        out = solve_query(layers, query, engine, count=count, budget=budget, proposals=guesses)
    except NnverifyError as exc:
        fail_with(exc)
        return
    verdict = {"feasible": "sat", "infeasible": "unsat"}.get(out.status.value, out.status.value)
    failures: list[OutputFileError | None] = []  # output files are written after the verdict is printed
    if out.status.value == "feasible":
        cells, checks = [], []
        for values in out.values:
            cells.append(labels_of(values, model, shape))
            checks.append(check_image(cells[-1], grains, net_path, low, high))
        failed = [
            f"image {k + 1}: {'; '.join(c.problems) or 'output outside the interval'}"
            for k, c in enumerate(checks)
            if not c.ok
        ]
        if failed:
            click.echo("unknown")
            click.echo("note: a generated image failed the independent checks: " + " | ".join(failed), err=True)
            failures.append(write_output(query_file, lambda path: write_atomic(path, text)))
            exit_on_output_failures(failures)
            return
        click.echo("sat")
        for k, (labels, check) in enumerate(zip(cells, checks, strict=True)):
            gap = abs(check.predicted - check.pde)
            click.echo(f"image {k + 1}: BNN {check.predicted:.2f}, PDE {check.pde:.2f} (|BNN - PDE| = {gap:.2f})")
            for row in labels:
                click.echo("  " + "".join(".#@%&$"[v] for v in row))
        if image_file:
            from nnverify.imaging import save_cells_image

            titles = [f"BNN {c.predicted:.1f}, PDE {c.pde:.1f}" for c in checks]
            failures.append(write_output(image_file, lambda path: save_cells_image(cells, titles, path)))
    else:
        click.echo(verdict)
        if out.note:
            click.echo(f"note: {out.note}", err=True)
    click.echo(f"seconds: {out.seconds:.2f} ({out.method})", err=True)
    failures.append(write_output(query_file, lambda path: write_atomic(path, text)))
    exit_on_output_failures(failures)


@click.group()
def bnn() -> None:
    """Binarized-network surrogates of the porous-media PDE (issue: constrained generation)."""


@bnn.command("train")
@click.option("--grains", type=click.Choice(["2", "3"]), required=True, help="Dataset D_2 (10,000) or D_3 (5,000).")
@click.option(
    "--out", "out_file", type=click.Path(dir_okay=False), callback=dir_of, required=True, help="The .onnx (+ .json)."
)
@click.option(
    "--data-dir", type=click.Path(file_okay=False), callback=writable_dir, default="bench/data", show_default=True
)
@click.option("--n", "size", type=click.IntRange(min=10), help="Dataset size (default: the paper's).")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs (default: 100).")
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of split, initialisation, batches."
)
@click.option("--verbose", is_flag=True, help="Log every epoch.")
def bnn_train(
    grains: str, out_file: str, data_dir: str, size: int | None, epochs: int | None, seed: int, verbose: bool
) -> None:
    """Build (or reuse) the dataset, train the BNN and its non-binarised twin, export ONNX + metrics JSON.

    The same as `make bnn-models` for one grain count; byte-for-byte reproducible for the same arguments.
    """
    from nnverify.bnn.train import main as train_main

    argv = ["--grains", grains, "--out", out_file, "--data-dir", data_dir, "--seed", str(seed)]
    argv += ["--n", str(size)] if size is not None else []
    argv += ["--epochs", str(epochs)] if epochs is not None else []
    argv += ["--verbose"] if verbose else []
    sys.exit(train_main(argv))
