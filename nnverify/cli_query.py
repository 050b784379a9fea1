"""``nnverify query`` (``find … where … return`` programs) and the VNN-LIB 2 form of ``check``
(``check QUERY --network f=a.onnx …``); both hand over to ``nnverify.multi``."""

from __future__ import annotations

import click

from nnverify.backends import BACKENDS
from nnverify.cli_bench import FiniteFloat
from nnverify.cli_common import STARTUP_S, exit_unless_images


def check_network_query(
    query_file: str,
    networks: tuple[str, ...],
    *,
    timeout_s: float,
    backend: str,
    seed: int,
    precision: str,
    threads: int,
    memory_limit_mb: float | None,
    as_json: bool,
    out_file: str | None,
) -> None:
    """``check QUERY --network NAME=FILE.onnx …``: decide a VNN-LIB 2 query over several networks and print it.

    Args:
        query_file: The VNN-LIB 2 query (``check``'s first argument).
        networks: The ``--network NAME=FILE.onnx`` options.
        timeout_s: Budget left for the query, in seconds.
        backend: Exact backend name.
        seed: Seed of the sampling attack.
        precision: clpq precision (``exact`` or ``float``).
        threads: Cores to use (0: all).
        memory_limit_mb: ``--memory-limit`` (None: the default share of available memory).
        as_json: Print details as JSON after the verdict.
        out_file: ``--results-file`` or ``--counterexample``, whichever was given.
    """
    from nnverify.multi.cli_support import check_query
    from nnverify.options import Options

    options = Options(
        timeout_s=timeout_s,
        backend=backend,
        seed=seed,
        precision=precision,
        threads=threads,
        memory_limit_mb=memory_limit_mb,
    )
    check_query(query_file, networks, options, as_json, out_file)


@click.command("query")
@click.argument("program", type=click.Path(dir_okay=False))
@click.option("--net", "nets", multiple=True, metavar="NAME=FILE.onnx", help="A network the query calls by NAME.")
@click.option("--const", "consts", multiple=True, metavar="NAME=FILE.npy", help="A constant tensor (e.g. an image).")
@click.option("--labels", default=None, metavar="NAME=K,…", help="Class names usable in class(N(x)) = NAME.")
@click.option("--timeout", "timeout_s", type=FiniteFloat(min=0, allow_inf=True), default=60.0, show_default=True)
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default="highs", show_default=True)
@click.option("--emit-vnnlib", "emit", type=click.Path(dir_okay=False), default=None, help="Write the VNN-LIB 2 file.")
@click.option("--png-dir", type=click.Path(file_okay=False), default=None, help="Write image-shaped returns as PNG.")
def query(
    program: str,
    nets: tuple[str, ...],
    consts: tuple[str, ...],
    labels: str | None,
    timeout_s: float,
    backend: str,
    emit: str | None,
    png_dir: str | None,
) -> None:
    """Decide a `find … where … return` query (DL2 style) over ONNX networks; see docs/queries.md."""
    from nnverify.multi.cli_support import run_program
    from nnverify.options import Options

    if png_dir:
        exit_unless_images("query --png-dir")
    remaining = max(0.0, timeout_s - STARTUP_S)
    run_program(program, nets, consts, labels, Options(timeout_s=remaining, backend=backend), emit, png_dir)
