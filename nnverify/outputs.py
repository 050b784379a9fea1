"""Output files written whole or not at all: a temporary file beside the target, then a rename.

Devices and pipes (``/dev/null``, ``/dev/stdout``, a FIFO) are written in place: a rename would replace the
device node itself (as root, ``--results-file /dev/null`` once turned ``/dev/null`` into a regular file).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path


def write_output(path: str | os.PathLike[str], write: Callable[[Path], object], *, suffix: str = "") -> None:
    """Call ``write`` on a temporary file next to ``path`` and rename it over ``path``.

    The file gets the usual permissions (``0666`` less the umask), a symbolic link is written through (the
    file it points to is replaced, not the link), and an existing target that is not a regular file is
    written directly. ``suffix`` ends the temporary name (writers that choose a format by the suffix).

    Raises:
        OSError: The directory is not writable, the disk is full, ...; no temporary file is left behind.
    """
    target = Path(path)
    if target.exists() and not target.resolve().is_file():
        write(target)
        return
    target = target.resolve() if target.is_symlink() else target
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_output(path: str | os.PathLike[str], text: str) -> None:
    """``text`` (UTF-8) to ``path`` via ``write_output``."""
    write_output(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
