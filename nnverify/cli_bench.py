"""``nnverify bench run`` and ``nnverify bench score``: VNN-COMP style benchmark runs from the command line.

The runner (``nnverify.bench``) never prints; this module draws the rich progress bar and the tables.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from nnverify.backends import BACKENDS
from nnverify.errors import NnverifyError, OutputFileError


def output_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback for output files: not empty, and the directory must exist (checked before any work is
    done; whether the file can be written is only known when it is written, after the verdict)."""
    if value is None:
        return value
    if not value.strip():
        raise click.BadParameter("expected a file name, found an empty string")
    if not Path(value).resolve().parent.is_dir():
        raise click.BadParameter(f"directory {str(Path(value).parent)!r} does not exist")
    return value


class FiniteFloat(click.FloatRange):
    """A float option within ``[min, max]`` that refuses NaN (``click.FloatRange`` lets it through: every
    comparison with NaN is false) and, unless ``allow_inf``, infinities."""

    def __init__(self, min: float | None = None, max: float | None = None, *, allow_inf: bool = False) -> None:
        super().__init__(min=min, max=max)
        self.allow_inf = allow_inf

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if math.isnan(number) or (math.isinf(number) and not self.allow_inf):
            self.fail(f"expected a {'' if self.allow_inf else 'finite '}number, found {value!r}", param, ctx)
        return float(number)


def writable_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback for a directory the command creates if needed (``mkdir -p``): its nearest existing
    ancestor must be a writable directory (checked before any work is done)."""
    if value is None:
        return value
    probe = Path(value).resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise click.BadParameter(f"{str(probe)!r} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise click.BadParameter(f"directory {str(probe)!r} is not writable")
    return value


def dir_of(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback for an output file whose directory is created if needed: ``writable_dir`` on it."""
    writable_dir(ctx, param, None if value is None else str(Path(value).resolve().parent))
    return value


def fail_with(exc: NnverifyError) -> None:
    """Print ``Error: <message>`` on stderr and exit with the error's documented code."""
    click.echo(f"Error: {exc}", err=True)
    sys.exit(int(exc.exit_code))


@click.group()
def bench() -> None:
    """Run VNN-COMP benchmark sets (instances.csv) and score the results."""


@bench.command("run")
@click.argument("instances_csv", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_csv",
    type=click.Path(dir_okay=False),
    callback=output_path,
    default="results.csv",
    show_default=True,
    help="Results CSV (VNN-COMP columns + method, peak memory, note); rows already there are skipped.",
)
@click.option("--category", help="Category name for the rows (default: the CSV's directory name).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Instances in parallel.")
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default="highs", show_default=True)
@click.option("--scheduler", help="Dask scheduler address (tcp://HOST:PORT): run the instances on that cluster.")
@click.option("--witness-dir", type=click.Path(file_okay=False), help="Save each sat row's witness here.")
@click.option(
    "--images",
    "image_dir",
    type=click.Path(file_okay=False),
    help="Save a counterexample PNG for each sat row here (implies witnesses).",
)
def bench_run(
    instances_csv: str,
    out_csv: str,
    category: str | None,
    jobs: int,
    backend: str,
    scheduler: str | None,
    witness_dir: str | None,
    image_dir: str | None,
) -> None:
    """Run every row of INSTANCES_CSV, each in its own process under its row's hard timeout."""
    from nnverify.bench import DaskExecutor, LocalExecutor, read_instances, run_benchmark
    from nnverify.extras import Extra, ensure_installed, require

    try:
        progress_module = require("rich.progress", Extra.BENCH, "nnverify bench run")
        if scheduler:
            ensure_installed("distributed", Extra.BENCH, "nnverify bench run --scheduler")
        if image_dir:
            ensure_installed("matplotlib", Extra.BENCH, "nnverify bench run --images")
        instances = read_instances(instances_csv, category)
    except NnverifyError as exc:
        fail_with(exc)
        return
    if image_dir and not witness_dir:
        witness_dir = str(Path(image_dir) / "witnesses")
    for folder in (witness_dir, image_dir):
        if folder:
            try:
                Path(folder).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                fail_with(OutputFileError(f"{folder}: cannot create the directory ({exc.strerror or exc})"))
                return
    executor = DaskExecutor(scheduler) if scheduler else LocalExecutor(jobs)
    tally: Counter[str] = Counter()
    rp = progress_module
    columns = (
        rp.TextColumn("{task.description}"),
        rp.BarColumn(),
        rp.MofNCompleteColumn(),
        rp.TimeElapsedColumn(),
        rp.TextColumn("ETA"),
        rp.TimeRemainingColumn(),
    )
    with rp.Progress(*columns, console=None, transient=False) as bar:
        task = bar.add_task("running", total=len(instances))

        def progress(row: object, done: int, total: int) -> None:
            tally[str(getattr(row, "result", ""))] += 1
            text = " ".join(f"{k} {tally[k]}" for k in ("sat", "unsat", "timeout", "unknown", "error") if tally[k])
            bar.update(task, completed=done, total=total, description=text or "running")

        try:
            with _sigterm_as_exit():
                rows = run_benchmark(
                    instances,
                    out_csv,
                    jobs=jobs,
                    backend=backend,
                    executor=executor,
                    witness_dir=witness_dir,
                    progress=progress,
                )
        except OSError as exc:
            if exc.filename is None or Path(exc.filename).resolve() != Path(out_csv).resolve():
                raise
            fail_with(OutputFileError(f"{out_csv}: cannot write ({exc.strerror or exc})"))
            return
    counts = Counter(str(r.result) for r in rows)
    click.echo(f"{len(rows)} instances: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" -> {out_csv}")
    if image_dir and witness_dir:
        _save_images(instances, Path(witness_dir), Path(image_dir))


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While the benchmark runs, SIGTERM (``kill``, a batch scheduler) stops it as Ctrl-C does: the running
    instances' process groups are killed, finished rows stay in ``--out``; exit code 143 (128 + 15), 130 for
    Ctrl-C. Without this, SIGTERM's default action would end this process at once and leave the workers
    running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except KeyboardInterrupt:
        raise SystemExit(128 + signal.SIGINT) from None  # 130, not click's "Aborted!" with 1 (our "a bug")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _save_images(instances: list, witness_dir: Path, image_dir: Path) -> None:
    """A counterexample PNG for every instance that has a witness file."""
    import numpy as np

    from nnverify.graph.onnx_import import load_network
    from nnverify.imaging import save_counterexample_image
    from nnverify.result import Counterexample
    from nnverify.spec.vnnlib import load_property
    from nnverify.spec.witness_format import load_witness

    for inst in instances:
        witness = witness_dir / f"{inst.onnx.stem}_{inst.vnnlib.stem}.counterexample"
        if not witness.exists():
            continue
        graph = load_network(inst.onnx)
        prop = load_property(inst.vnnlib, graph.n_inputs, graph.n_outputs)
        values = load_witness(witness)
        x = np.array([values.x[i] for i in range(graph.n_inputs)])
        y = np.array([values.y.get(j, np.nan) for j in range(graph.n_outputs)])
        save_counterexample_image(graph, prop, Counterexample(x, y), image_dir / f"{witness.stem}.png")


@bench.command("score")
@click.argument("results_csv", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--expected",
    "expected_csv",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="Ground truth (onnx,vnnlib,expected,...).",
)
@click.option(
    "--peers", "peers_csv", type=click.Path(exists=True, dir_okay=False), help="peer_times.csv to compare with."
)
@click.option(
    "--witness-dir",
    type=click.Path(file_okay=False),
    help="Replay each sat row's witness from here (a sat without a valid witness counts as wrong).",
)
@click.option(
    "--plot", "plot_png", type=click.Path(dir_okay=False), callback=output_path, help="Write a cactus plot PNG here."
)
def bench_score(
    results_csv: str, expected_csv: str, peers_csv: str | None, witness_dir: str | None, plot_png: str | None
) -> None:
    """Score RESULTS_CSV with the VNN-COMP 2025 rules (+10 correct, -150 wrong)."""
    from nnverify.bench.plots import cactus_plot, solved_times
    from nnverify.bench.scoring import (
        PEER_COLUMNS,
        RESULTS_COLUMNS,
        format_table,
        load_expected,
        peer_reports,
        read_csv_rows,
        score,
        witness_checker,
        wrong_lines,
    )
    from nnverify.extras import Extra, ensure_installed

    try:
        if plot_png:
            ensure_installed("matplotlib", Extra.BENCH, "nnverify bench score --plot")
        expected = load_expected(expected_csv)
        results = read_csv_rows(results_csv, RESULTS_COLUMNS)
        peer_rows = read_csv_rows(peers_csv, PEER_COLUMNS) if peers_csv else None
    except NnverifyError as exc:
        fail_with(exc)
        return
    checker = witness_checker(Path(expected_csv).parent, witness_dir) if witness_dir else None
    ours = score(results, expected, witness_ok=checker)
    peers = peer_reports(peer_rows, expected) if peer_rows is not None else {}
    click.echo(format_table(ours, peers))
    for line in wrong_lines(ours):
        click.secho(line, fg="red", bold=True)
    if plot_png:
        series = {ours.tool: solved_times(ours.instances)}
        series.update({name: solved_times(rep.instances) for name, rep in peers.items()})
        cactus_plot(series, plot_png, title=f"{Path(expected_csv).parent.name}: instances solved vs. time")
        click.echo(f"cactus plot -> {plot_png}")
