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

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

import nnverify._blas  # noqa: F401  (before anything imports numpy: one BLAS thread)
from nnverify.backends import BACKENDS
from nnverify.budget import peak_mb
from nnverify.cli_bench import FiniteFloat, bench, dir_of, fail_with, output_path, writable_dir
from nnverify.errors import ExitCode, NnverifyError, OutputFileError

if TYPE_CHECKING:
    from nnverify.result import Counterexample, Result

F = TypeVar("F", bound=Callable[..., Any])

#: Exit code of ``nnverify witness`` when the witness is rejected.
WITNESS_REJECTED = int(ExitCode.WITNESS_REJECTED)


def _process_age_s() -> float:
    """Seconds since this process started (Linux /proc), so ``--timeout`` covers interpreter start-up."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start)
    except (OSError, ValueError, IndexError):
        return 0.0


def _precision_option(help_text: str) -> Callable[[F], F]:
    """The ``--precision exact|float`` option of the clpq backend and the Prolog export."""
    return click.option(
        "--precision", type=click.Choice(["exact", "float"]), default="exact", show_default=True, help=help_text
    )


#: Seconds from process start to this module's import (interpreter start-up and imports).
_STARTUP_S = _process_age_s()


def _write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file + rename: never half-written (``outputs.write_output``)."""
    from nnverify.outputs import write_text_output

    write_text_output(path, text)


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
@_precision_option("clpq backend only: exact rationals (clpq) or floating point (clpr, faster, not exact).")
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
    from nnverify.options import Options
    from nnverify.pipeline import verify

    remaining = max(0.0, timeout_s - (time.monotonic() - started) - EXIT_RESERVE_S)
    if networks or prop is None:  # a VNN-LIB 2 query: NETWORK is the query file (nnverify/multi/)
        from nnverify.multi.cli_support import check_query

        options = Options(
            timeout_s=remaining,
            backend=backend,
            seed=seed,
            precision=precision,
            threads=threads,
            memory_limit_mb=memory_limit_mb,
        )
        check_query(network, networks, options, as_json, results_file or cex_file)
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
        _write_output(results_file, lambda path: _write_atomic(path, result.to_vnncomp())),
        _write_output(cex_file if cex else None, lambda path: _write_atomic(path, cex.to_vnncomp() if cex else "")),
        _write_output(image_file if cex else None, lambda path: _save_image(network, prop, cex, path) if cex else None),
    ]
    _exit_on_output_failures([f for f in failures if f is not None])


def _write_output(path: str | None, write: Callable[[str], None]) -> OutputFileError | None:
    """Write one output file (if asked for); the error to report instead of raising it."""
    if not path:
        return None
    try:
        write(path)
    except OSError as exc:
        return OutputFileError(f"{path}: cannot write ({exc.strerror or exc})")
    except NnverifyError as exc:
        return OutputFileError(f"{path}: not written ({exc})")
    return None


def _exit_on_output_failures(failures: list[OutputFileError]) -> None:
    """After the verdict: one ``Error:`` line per output that could not be written, then exit 6."""
    for exc in failures:
        click.echo(f"Error: {exc}", err=True)
    if failures:
        sys.exit(int(ExitCode.OUTPUT_FAILED))


#: Seconds of ``--timeout`` kept back for printing the verdict, writing files and leaving the process.
EXIT_RESERVE_S = 0.25


def _memory_limit(value: float | None) -> float | None:
    """``--memory-limit``: a finite number of MB, at least 1."""
    if value is not None and not (value >= 1.0 and value < float("inf")):
        raise click.BadParameter(f"expected a number of MB, at least 1, found {value}", param_hint="--memory-limit")
    return value


def _is_discrete_query(path: str) -> bool:
    """Whether the property file uses the discrete-query extension (Bool/Int declarations)."""
    from nnverify.spec.discrete import is_discrete

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
    without interpreter shutdown.

    An abandoned HiGHS solve may still be running in C++ when Python tears down its modules, which can crash
    the process (SIGSEGV) after the verdict was printed. Only the program does this, never ``main`` itself:
    a host process (a test runner calling ``main``) must not be ended.

    numpy's RuntimeWarnings (an overflow while bounding a box of width 1e308, ...) are not printed: a user of
    the program can do nothing about them (``python -W`` options still win; tests and API hosts see them).
    """
    guard_stdout()
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
        raise


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
    highs = sys.modules.get("nnverify.backends.highs")
    pipeline = sys.modules.get("nnverify.pipeline")  # a verify() run abandoned at its deadline
    return bool(highs is not None and getattr(highs, "_ABANDONED", None)) or bool(
        pipeline is not None and pipeline.abandoned_runs()
    )


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
@_precision_option("prolog only: exact rationals (clpq) or floats (clpr).")
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


@main.command()
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

    started = time.monotonic() - _STARTUP_S
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
            failures.append(_write_output(query_file, lambda path: _write_atomic(path, text)))
            _exit_on_output_failures([f for f in failures if f is not None])
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
            failures.append(_write_output(image_file, lambda path: save_cells_image(cells, titles, path)))
    else:
        click.echo(verdict)
        if out.note:
            click.echo(f"note: {out.note}", err=True)
    click.echo(f"seconds: {out.seconds:.2f} ({out.method})", err=True)
    failures.append(_write_output(query_file, lambda path: _write_atomic(path, text)))
    _exit_on_output_failures([f for f in failures if f is not None])


@main.command("query")
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
    """Decide a `find … where … return` query (DL2 style) over ONNX networks; see README "Query language"."""
    from nnverify.multi.cli_support import run_program
    from nnverify.options import Options

    remaining = max(0.0, timeout_s - _STARTUP_S)
    run_program(program, nets, consts, labels, Options(timeout_s=remaining, backend=backend), emit, png_dir)


@main.command()
def ops() -> None:
    """List the supported ONNX operators."""
    from nnverify.graph.ops import supported_ops_table

    rows = supported_ops_table()
    width = max(len(r[0]) for r in rows)
    family_width = max(len(r[1]) for r in rows)
    for op_type, family, note in rows:
        click.echo(f"{op_type:<{width}}  {family:<{family_width}}  {note}".rstrip())


@main.group()
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


main.add_command(bench)


if __name__ == "__main__":  # pragma: no cover
    entry()
