"""The ``nnverify`` command line. The only module that writes to the terminal.

Exit codes (see ``errors.ExitCode``): 0 verdict printed, 2 usage, 3 bad model/property/witness file,
4 backend/environment, 5 witness rejected (``nnverify witness``), 6 verdict printed but an output file could
not be written, 130 Ctrl-C, 1 a bug (traceback).
"""

# ruff: noqa: E402  (the Ctrl-C hook below is installed before the slow imports: start-up takes ~0.2 s)

from __future__ import annotations

import contextlib
import os
import sys


def _interrupt_hook(kind: type[BaseException], value: BaseException, tb: object) -> None:
    """Ctrl-C that reaches the top (during start-up, before ``main`` runs): exit 130 without a traceback."""
    if issubclass(kind, KeyboardInterrupt):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(130)
    _previous_hook(kind, value, tb)  # type: ignore[arg-type]


_previous_hook = sys.excepthook
sys.excepthook = _interrupt_hook

import atexit
import threading
import time
from typing import TYPE_CHECKING, Any

import click

import nnverify._blas  # noqa: F401  (before anything imports numpy: one BLAS thread)
from nnverify.backends import BACKENDS
from nnverify.budget import peak_mb
from nnverify.cli_bench import FiniteFloat, bench, fail_with, output_path
from nnverify.cli_common import (
    STARTUP_S,
    exit_on_output_failures,
    exit_unless_images,
    precision_option,
    write_atomic,
    write_output,
)
from nnverify.cli_generate import bnn, generate
from nnverify.cli_query import check_network_query, query
from nnverify.errors import ExitCode, NnverifyError, OutputFileError

if TYPE_CHECKING:
    from nnverify.result import Counterexample, Result

#: Seconds from process start to this module's import (interpreter start-up and imports).
_STARTUP_S = STARTUP_S

#: Exit code of ``nnverify witness`` when the witness is rejected.
WITNESS_REJECTED = int(ExitCode.WITNESS_REJECTED)


class _Group(click.Group):
    """The command group; Ctrl-C in any command ends the program with 130 (click's own handling prints
    "Aborted!" and exits 1, the code documented as a bug). ``bench run`` kills its workers first."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("", err=True)
            raise SystemExit(int(ExitCode.INTERRUPTED)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nnverify")
def main() -> None:
    """nnverify: decide properties of neural networks (ONNX + VNN-LIB 1.0).

    sat = the property is violated (a counterexample exists, printed and replayed on onnxruntime);
    unsat = it holds for every input in the region.
    """


@main.command()
@click.argument("network", type=click.Path(dir_okay=False))
@click.argument("prop", metavar="PROPERTY", type=click.Path(dir_okay=False), required=False)
@click.option(
    "--network",
    "networks",
    multiple=True,
    metavar="NAME=FILE.onnx",
    help="VNN-LIB 2 queries: `check QUERY --network f=a.onnx …` (one per network not declared equal-to another).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=FiniteFloat(min=0, allow_inf=True),
    default=60.0,
    show_default=True,
    help="Wall-clock budget in seconds, start-up included.",
)
@click.option(
    "--backend", type=click.Choice(sorted(BACKENDS)), default="highs", show_default=True, help="Exact backend."
)
@click.option(
    "--results-file", type=click.Path(dir_okay=False), callback=output_path, help="Write the VNN-COMP result file here."
)
@click.option(
    "--counterexample",
    "cex_file",
    type=click.Path(dir_okay=False),
    callback=output_path,
    help="Write the witness alone ((X_0 v) ... (Y_m v)) here when sat.",
)
@precision_option("clpq backend only: exact rationals (clpq) or floating point (clpr, faster, not exact).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the sampling attack.")
@click.option("--json", "as_json", is_flag=True, help="After the verdict line, print details as JSON.")
@click.option(
    "--refine-bounds/--no-refine-bounds",
    default=None,
    help="ReLU search: refine intermediate bounds by MILPs (HiGHS) beside the search. Default: on with 2+ cores.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Cores to use (parallel MILP refinement, else ReLU-search threads); 0 = every core this process may run on.",
)
@click.option(
    "--memory-limit",
    "memory_limit_mb",
    type=float,
    callback=lambda _ctx, _param, value: _memory_limit(value),
    help="Memory the run may use, in MB; a large allocation that would not fit answers unknown with a note. "
    "Default: 60 % of the memory available at start.",
)
@click.option(
    "--image",
    "image_file",
    type=click.Path(dir_okay=False),
    callback=output_path,
    help="When sat, save a PNG of the counterexample (images: beside the region's centre; vectors: per input).",
)
def check(
    network: str,
    prop: str,
    timeout_s: float,
    backend: str,
    results_file: str | None,
    cex_file: str | None,
    precision: str,
    seed: int,
    as_json: bool,
    refine_bounds: bool | None,
    threads: int,
    image_file: str | None,
    memory_limit_mb: float | None,
    networks: tuple[str, ...],
) -> None:
    """Decide PROPERTY (VNN-LIB) on NETWORK (ONNX). The first stdout line is sat, unsat, timeout or unknown.

    A VNN-LIB 2 query over several networks: `check QUERY --network NAME=FILE.onnx …`.
    """
    # The budget starts when the process did: interpreter start-up and imports (measured when this module was
    # imported, and the pipeline's imports below) count. Not the process's whole age: a long-lived caller (a
    # test runner) may invoke us late.
    started = time.monotonic() - _STARTUP_S
    _LEAVE_FAST.add("check")
    if image_file:
        exit_unless_images("check --image")
    from nnverify.options import Options
    from nnverify.pipeline import verify

    remaining = max(0.0, timeout_s - (time.monotonic() - started) - EXIT_RESERVE_S)
    if networks or prop is None:  # a VNN-LIB 2 query: NETWORK is the query file (nnverify/multi/)
        check_network_query(
            network,
            networks,
            timeout_s=remaining,
            backend=backend,
            seed=seed,
            precision=precision,
            threads=threads,
            memory_limit_mb=memory_limit_mb,
            as_json=as_json,
            out_file=results_file or cex_file,
        )
        return
    try:
        if _is_discrete_query(prop):
            result = _check_discrete(network, prop, backend, seed, remaining)
        else:
            result = verify(
                network,
                prop,
                Options(
                    timeout_s=remaining,
                    backend=backend,
                    seed=seed,
                    precision=precision,
                    refine_bounds=refine_bounds,
                    threads=threads,
                    memory_limit_mb=memory_limit_mb,
                ),
            )
    except NnverifyError as exc:
        fail_with(exc)
        return
    # The verdict first: an output file that cannot be written must not cost the answer.
    click.echo(result.verdict.value)
    if as_json:
        import json

        data = result.to_json()
        data["wall_seconds"] = round(time.monotonic() - started, 3)
        data["peak_mem_mb"] = round(peak_mb(), 1)
        click.echo(json.dumps(data, indent=2))
    elif result.counterexample is not None:
        click.echo(result.counterexample.to_vnncomp(), nl=False)
    elif result.note:
        click.echo(f"note: {result.note}", err=True)
    cex = result.counterexample
    failures = [
        write_output(results_file, lambda path: write_atomic(path, result.to_vnncomp())),
        write_output(cex_file if cex else None, lambda path: write_atomic(path, cex.to_vnncomp() if cex else "")),
        write_output(image_file if cex else None, lambda path: _save_image(network, prop, cex, path) if cex else None),
    ]
    exit_on_output_failures(failures)


#: Seconds of ``--timeout`` kept back for printing the verdict, writing files and leaving the process.
EXIT_RESERVE_S = 0.25


def _memory_limit(value: float | None) -> float | None:
    """``--memory-limit``: a finite number of MB, at least 1."""
    if value is not None and not (value >= 1.0 and value < float("inf")):
        raise click.BadParameter(f"expected a number of MB, at least 1, found {value}", param_hint="--memory-limit")
    return value


def _is_discrete_query(path: str) -> bool:
    """Whether the property file uses the discrete-query extension (Bool/Int declarations)."""
    from nnverify.spec import is_discrete

    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return is_discrete(handle.read())
    except OSError:
        return False  # verify() reports the unreadable file with its usual message


def _check_discrete(network: str, prop: str, backend: str, seed: int, timeout_s: float) -> Result:
    """A discrete query (``nnverify generate --query`` writes them) on a BNN; CP-SAT unless --backend was given."""
    from nnverify.backends import get_backend
    from nnverify.bnn.query import decide_query
    from nnverify.options import Options

    ctx = click.get_current_context()
    if ctx.get_parameter_source("backend") is click.core.ParameterSource.DEFAULT:
        backend = "cpsat"
    return decide_query(network, prop, get_backend(backend, Options(seed=seed)), timeout_s)


def entry() -> None:
    """The ``nnverify`` program: ``main``, then, if a solver thread was abandoned at its deadline, leave
    without interpreter shutdown. After ``check`` it leaves without the interpreter's teardown too, once the
    ``atexit`` handlers have run (``_leave_without_teardown``: 60-250 ms per instance).

    An abandoned HiGHS solve may still be running in C++ when Python tears down its modules, which can crash
    the process (SIGSEGV) after the verdict was printed. Only the program does this, never ``main`` itself:
    a host process (a test runner calling ``main``) must not be ended.

    numpy's RuntimeWarnings (an overflow while bounding a box of width 1e308, ...) are not printed: a user of
    the program can do nothing about them (``python -W`` options still win; tests and API hosts see them).
    """
    guard_stdout()
    _LEAVE_FAST.clear()  # only a command run by this call counts (a host may have called ``main`` before)
    if not sys.warnoptions:
        import warnings

        warnings.simplefilter("ignore", RuntimeWarning)
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if _solver_threads_remain() or code == ExitCode.INTERRUPTED:
            # Ctrl-C: solver threads may still run in native code, whose teardown can crash the interpreter.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        if _LEAVE_FAST and _only_daemon_threads():
            _leave_without_teardown(code)
        raise


#: Commands after which the program skips the interpreter's teardown (``check`` adds itself when it starts).
_LEAVE_FAST: set[str] = set()


def _only_daemon_threads() -> bool:
    """No thread that a normal exit would wait for (it joins non-daemon threads first) is running."""
    main_thread = threading.main_thread()
    return all(thread.daemon or thread is main_thread for thread in threading.enumerate())


def _leave_without_teardown(code: int) -> None:
    """End the program as a normal exit would, minus the interpreter's teardown: the ``atexit`` handlers run
    (the solver pool's wait, forked workers' clean-up), the streams are flushed, then ``os._exit``. Freeing
    every module and object of numpy, onnx and nnverify took 60-250 ms per process, paid by every instance of a
    benchmark run; every file the command wrote is closed by then."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def guard_stdout() -> None:
    """Keep the program's stdout (its first line is the verdict) for Python's writes alone: file descriptor 1
    becomes a copy of stderr, and ``sys.stdout`` writes to a private copy of the real stdout.

    Native libraries write to descriptor 1 directly: HiGHS 1.x prints debug lines such as
    ``HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();`` with ``printf`` whatever its
    ``output_flag``, and one of them once came before the verdict (MNIST 256x6 prop_9 eps 0.03, reported as an
    error by ``nnverify bench``). They now go to stderr."""
    try:
        sys.stdout.flush()
        real = os.dup(1)
        os.dup2(2, 1)
    except (OSError, ValueError):  # no usable descriptors (an embedded host): leave stdout as it is
        return
    encoding, errors = sys.stdout.encoding, sys.stdout.errors
    sys.stdout = open(real, "w", buffering=1, encoding=encoding, errors=errors, closefd=True)  # noqa: SIM115


def _solver_threads_remain() -> bool:
    """The solver pool's answer: a solve or a ``verify()`` run abandoned at its deadline still runs."""
    pool = sys.modules.get("nnverify.backends.pool")  # not imported: nothing was solved
    return pool is not None and bool(pool.work_remains())


@main.command()
@click.argument("network", type=click.Path(dir_okay=False))
@click.argument("prop", metavar="PROPERTY", type=click.Path(dir_okay=False))
@click.argument("witness_file", metavar="WITNESS", type=click.Path(dir_okay=False))
def witness(network: str, prop: str, witness_file: str) -> None:
    """Check a VNN-COMP witness file (plain or .gz, optionally starting with 'sat') against NETWORK and PROPERTY.

    Prints 'valid' (exit 0) or 'invalid: <reason>' (exit 5).
    """
    from nnverify.graph.onnx_import import load_network
    from nnverify.spec.vnnlib import load_property
    from nnverify.witness import check_witness_file

    try:
        graph = load_network(network)
        spec = load_property(prop, graph.n_inputs, graph.n_outputs)
        verdict = check_witness_file(network, spec, witness_file)
    except NnverifyError as exc:
        fail_with(exc)
        return
    if verdict.valid:
        click.echo("valid")
    else:
        click.echo(f"invalid: {verdict.reason}")
        sys.exit(WITNESS_REJECTED)


def _save_image(network: str, prop: str, cex: Counterexample, image_file: str) -> None:
    from nnverify.graph.onnx_import import load_network
    from nnverify.imaging import save_counterexample_image
    from nnverify.spec.vnnlib import load_property

    graph = load_network(network)
    save_counterexample_image(graph, load_property(prop, graph.n_inputs, graph.n_outputs), cex, image_file)


@main.command()
@click.argument("network", type=click.Path(dir_okay=False))
@click.argument("prop", metavar="PROPERTY", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["prolog", "lp", "mps"]),
    default="prolog",
    show_default=True,
    help="prolog: the clpq program (run it with `swipl FILE`); lp/mps: the MILP, as HiGHS writes it.",
)
@click.option(
    "-o", "--output", "out", type=click.Path(dir_okay=False), required=True, callback=output_path, help="File to write."
)
@precision_option("prolog only: exact rationals (clpq) or floats (clpr).")
def export(network: str, prop: str, fmt: str, out: str, precision: str) -> None:
    """Write the exact query of PROPERTY on NETWORK for other solvers (one file per input box)."""
    from nnverify.encode.prolog import Precision
    from nnverify.export import ExportFormat, export_query

    if fmt in ("lp", "mps") and not out.endswith(f".{fmt}"):
        raise click.BadParameter(f"the output of --format {fmt} must end in .{fmt}: {out!r}", param_hint="-o/--output")
    try:
        written = export_query(network, prop, out, ExportFormat(fmt), Precision(precision))
    except NnverifyError as exc:
        fail_with(exc)
        return
    except OSError as exc:
        fail_with(OutputFileError(f"{out}: cannot write ({exc.strerror or exc})"))
        return
    for box in written:
        click.echo(f"{box.path}" + ("  (bounds alone prove this box safe)" if box.decided_by_bounds else ""))


@main.command()
def ops() -> None:
    """List the supported ONNX operators."""
    from nnverify.graph.ops import supported_ops_table

    rows = supported_ops_table()
    width = max(len(r[0]) for r in rows)
    family_width = max(len(r[1]) for r in rows)
    for op_type, family, note in rows:
        click.echo(f"{op_type:<{width}}  {family:<{family_width}}  {note}".rstrip())


for _command in (bench, generate, bnn, query):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    entry()
