"""Pieces shared by the command modules (``cli.py``, ``cli_query.py``, ``cli_generate.py``): the start-up
clock, the ``--precision`` option and output files written after the verdict."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from nnverify.errors import ExitCode, NnverifyError, OutputFileError
from nnverify.extras import Extra, ensure_installed

F = TypeVar("F", bound=Callable[..., Any])


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc), so ``--timeout`` covers interpreter start-up."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start)
    except (OSError, ValueError, IndexError):
        return 0.0


#: Seconds from process start to the command line's import (interpreter start-up and imports).
STARTUP_S = process_age_s()


def precision_option(help_text: str) -> Callable[[F], F]:
    """The ``--precision exact|float`` option of the clpq backend and the Prolog export."""
    return click.option(
        "--precision", type=click.Choice(["exact", "float"]), default="exact", show_default=True, help=help_text
    )


def exit_unless_images(option: str) -> None:
    """Before any work: ``option`` writes PNGs, which need matplotlib (``nnverify[images]``); exit 4 without it."""
    try:
        ensure_installed("matplotlib", Extra.IMAGES, option)
    except NnverifyError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(int(exc.exit_code))


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file + rename: never half-written (``outputs.write_output``)."""
    from nnverify.outputs import write_text_output

    write_text_output(path, text)


def write_output(path: str | None, write: Callable[[str], None]) -> OutputFileError | None:
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


def exit_on_output_failures(failures: list[OutputFileError | None]) -> None:
    """After the verdict: one ``Error:`` line per output that could not be written (``None``: written), then
    exit 6."""
    errors = [exc for exc in failures if exc is not None]
    for exc in errors:
        click.echo(f"Error: {exc}", err=True)
    if errors:
        sys.exit(int(ExitCode.OUTPUT_FAILED))
