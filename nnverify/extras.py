"""Optional parts installed as pip extras (``nnverify[bench]``, ``[images]``, ``[binary]``, ``[gurobi]``): the one
place that imports them on demand and, when one is missing, says which extra to install."""

from __future__ import annotations

import importlib
import importlib.util
from enum import Enum
from types import ModuleType

from nnverify.errors import MissingExtraError


class Extra(Enum):
    """The pip extras of ``pyproject.toml`` (``make setup`` installs them all)."""

    BENCH = "bench"  # nnverify bench: rich (progress), matplotlib (cactus plots), distributed (Dask clusters)
    IMAGES = "images"  # PNG output: check --image, generate --image, query --png-dir (matplotlib)
    BINARY = "binary"  # python -m nnverify.binary: scikit-learn's bundled digits, matplotlib figures


#: The distribution to name in the message when it differs from the module's name.
_DISTRIBUTION = {"sklearn": "scikit-learn"}


def require(module: str, extra: Extra, purpose: str) -> ModuleType:
    """Import ``module`` (e.g. ``"rich.progress"``) or raise the error that names the extra providing it.

    Args:
        module: Dotted module name; its top-level package is the one named in the message.
        extra: The extra of ``pyproject.toml`` that installs it.
        purpose: What needs it, completing "… needs <package>" (e.g. ``"nnverify bench run"``).

    Returns:
        The imported module.

    Raises:
        MissingExtraError: The module cannot be imported (exit code 4).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(module, extra, purpose, str(exc)) from None


def ensure_installed(module: str, extra: Extra, purpose: str) -> None:
    """Raise ``require``'s error if ``module`` cannot be found, without importing it (a command's options are
    checked before any work is done, and importing matplotlib would cost start-up time)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a None entry in sys.modules (an import blocker)
        found = False
    if not found:
        raise _missing(module, extra, purpose, f"No module named {module!r}")


def _missing(module: str, extra: Extra, purpose: str, reason: str) -> MissingExtraError:
    top = module.partition(".")[0]
    package = _DISTRIBUTION.get(top, top)
    return MissingExtraError(
        f"{purpose} needs {package}, which is not installed ({reason}); pip install 'nnverify[{extra.value}]'"
    )
