"""``nnverify check QUERY --network f=a.onnx …``: the VNN-LIB 2.x form of ``check`` (called from ``cli.py``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click

from nnverify.cli_bench import fail_with
from nnverify.errors import ExitCode, NnverifyError, OutputFileError
from nnverify.options import Options
from nnverify.outputs import write_output, write_text_output

if TYPE_CHECKING:
    import numpy as np


def parse_networks(values: tuple[str, ...]) -> dict[str, str]:
    """``name=file.onnx`` options as a dict (``click.BadParameter``, exit 2, on a malformed or repeated name)."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"expected NAME=FILE.onnx, found '{value}'", param_hint="'--network'")
        if name in out:
            raise click.BadParameter(f"network '{name}' is given twice", param_hint="'--network'")
        out[name] = path
    return out


def check_query(query: str, networks: tuple[str, ...], options: Options, as_json: bool, out_file: str | None) -> None:
    """Decide a VNN-LIB 2.x query and print the verdict, then (``sat``) every declared variable's value."""
    from nnverify.multi.solve import verify_query

    if not networks and not _looks_like_query(query):
        raise click.UsageError("Missing argument 'PROPERTY' (or, for a VNN-LIB 2 query, --network NAME=FILE.onnx).")
    files = parse_networks(networks)
    try:
        result = verify_query(query, files, options)
    except NnverifyError as exc:
        fail_with(exc)
        return
    click.echo(result.verdict.value)
    if as_json:
        data = {
            "verdict": result.verdict.value,
            "method": result.method,
            "seconds": round(result.seconds, 4),
            "note": result.note,
            "values": {k: v.tolist() for k, v in (result.values or {}).items()},
        }
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(result.assignment_text(), nl=False)
        if result.note:
            click.echo(f"note: {result.note}", err=True)
    failures: list[OutputFileError] = []
    text = f"{result.verdict.value}\n{result.assignment_text()}"
    _write(out_file, lambda path: write_text_output(path, text), failures)
    _exit_on_failures(failures)


def _write(path: str | Path | None, write: Callable[[str | Path], object], failures: list[OutputFileError]) -> bool:
    """Write one output file after the verdict (``write`` goes through ``outputs.py``); a failure is kept in
    ``failures`` for ``_exit_on_failures``, not raised. True if the file was written."""
    if not path:
        return False
    try:
        write(path)
    except OSError as exc:
        failures.append(OutputFileError(f"{path}: cannot write ({exc.strerror or exc})"))
        return False
    return True


def _exit_on_failures(failures: list[OutputFileError]) -> None:
    """After the verdict: one ``Error:`` line per output that could not be written, then exit 6 (as ``check``)."""
    for exc in failures:
        click.echo(f"Error: {exc}", err=True)
    if failures:
        sys.exit(int(ExitCode.OUTPUT_FAILED))


def _looks_like_query(path: str) -> bool:
    """Whether ``path`` reads as a VNN-LIB 2 query (an unreadable file is left to the reader's error)."""
    from nnverify.spec.vnnlib2 import is_vnnlib2

    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return is_vnnlib2(handle.read(1 << 20))
    except OSError:
        return True


def run_program(
    program_file: str,
    nets: tuple[str, ...],
    consts: tuple[str, ...],
    labels: str | None,
    options: Options,
    emit: str | None,
    png_dir: str | None = None,
) -> None:
    """``nnverify query``: translate a ``find … where … return`` file, decide it, print the verdict and returns."""
    import numpy as np

    from nnverify.errors import PropertyError
    from nnverify.multi.emit import has_vnnlib2, to_vnnlib2
    from nnverify.multi.qlang import program_files, translate
    from nnverify.multi.solve import decide_query
    from nnverify.spec import sexpr

    files = parse_networks(nets)
    values: dict[str, np.ndarray] = {}
    for name, path in parse_networks(consts).items():
        try:
            values[name] = _read_png(path) if path.lower().endswith(".png") else np.load(path)
        except (OSError, ValueError, SyntaxError) as exc:
            what = "a PNG image" if path.lower().endswith(".png") else "a .npy array"
            raise click.BadParameter(f"{path}: cannot read {what} ({exc})", param_hint="'--const'") from None
        except NnverifyError as exc:  # matplotlib (nnverify[images]) missing
            fail_with(exc)
            return
    names = _labels(labels)
    emitted: str | None = None
    try:
        program = translate(sexpr.read_text(program_file, PropertyError), program_file, files, values, names)
        if emit and has_vnnlib2(program.query):
            click.echo(f"note: {has_vnnlib2(program.query)}; --emit-vnnlib wrote nothing", err=True)
        elif emit:
            emitted = to_vnnlib2(program.query)
            for check in program.checks:  # softmax thresholds, inexact norms: only their necessary rows are written
                click.echo(
                    f"note: --emit-vnnlib: '{check.text}' has no VNN-LIB 2.0 form; the file states its necessary "
                    "linear rows only (its unsat holds for the query, its sat may not)",
                    err=True,
                )
        result = decide_query(program.query, program_files(program, files), options, None, program.failed_check)
    except NnverifyError as exc:
        fail_with(exc)
        return
    click.echo(result.verdict.value)  # the verdict first: an output file that cannot be written must not cost it
    failures: list[OutputFileError] = []
    if result.values is not None:
        shapes = {v.name: v.shape for v in program.query.variables}
        for text, name in program.returns:
            value = result.values[name].reshape(shapes[name])
            click.echo(f"{text} = {np.array2string(value, precision=9, separator=', ', threshold=10**6)}")
            image = _image(value) if png_dir else None
            png = Path(png_dir or ".") / f"{_file_name(text)}.png"
            if image is not None and _write(png, partial(_write_png, image), failures):
                click.echo(f"  (image written to {png})", err=True)
    if result.note:
        click.echo(f"note: {result.note}", err=True)
    if emitted is not None:
        _write(emit, partial(write_text_output, text=emitted), failures)
    _exit_on_failures(failures)


def _read_png(path: str) -> np.ndarray:
    """A PNG as floats in [0, 1]: ``H×W`` if grey (or RGB with equal channels), else ``3×H×W`` (alpha dropped).

    Raises:
        MissingExtraError: matplotlib (``nnverify[images]``) is not installed.
        OSError, ValueError, SyntaxError: The file cannot be read as a PNG.
    """
    import numpy as np

    from nnverify.extras import Extra, require

    image = np.asarray(require("matplotlib.image", Extra.IMAGES, "query --const FILE.png").imread(path), float)
    if image.ndim == 3:
        rgb = image[..., :3]
        image = rgb[..., 0] if np.all(rgb == rgb[..., :1]) else np.moveaxis(rgb, -1, 0)
    return image


def _labels(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise click.BadParameter(f"expected NAME=INDEX, found '{item}'", param_hint="'--labels'")
        out[name.strip()] = int(value)
    return out


def _file_name(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_") or "value"


def _image(value: object) -> np.ndarray | None:
    """An image-shaped value (``H×W`` or ``3×H×W`` after dropping size-1 dimensions) scaled to its own range
    [0, 1] (``H×W`` or ``H×W×3``); ``None`` for other shapes."""
    import numpy as np

    array = np.asarray(value, dtype=np.float64)
    array = array.reshape([d for d in array.shape if d != 1])
    if array.ndim == 3 and array.shape[0] == 3:
        array = np.moveaxis(array, 0, -1)
    elif array.ndim != 2:
        return None
    if min(array.shape[:2]) < 4:
        return None
    lo, hi = float(array.min()), float(array.max())
    return (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)


def _write_png(image: np.ndarray, path: str | Path) -> None:
    """``image`` (from ``_image``) as a grey PNG at ``path`` through ``outputs.write_output`` (enlarged to at
    least ``PNG_MIN_SIDE`` pixels a side).

    Raises:
        OSError: The directory cannot be made or the file cannot be written.
    """
    import numpy as np
    from matplotlib.image import imsave

    factor = max(1, PNG_MIN_SIDE // min(image.shape[:2]))  # small images (8×8 digits) enlarged, pixels kept square
    image = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_output(path, lambda tmp: imsave(tmp, image, cmap="gray", vmin=0.0, vmax=1.0, format="png"))


#: Smallest side of a written PNG: smaller images are enlarged by an integer factor (nearest neighbour).
PNG_MIN_SIDE = 64
