"""The backend registry: a name maps to ``"module:Class"``, imported only when that backend is asked for.

Adding a backend: one module with a class following ``base.Backend`` and one line in ``BACKENDS``. The
protocol's names are imported lazily: the command line reads ``BACKENDS`` without loading numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, cast

from nnverify.errors import BackendUnavailableError
from nnverify.options import Options

if TYPE_CHECKING:
    from nnverify.backends.base import Backend, BackendResult, Capabilities, SolveStatus
    from nnverify.backends.pool import SolverPool

#: The names this package re-exports from its modules, imported at first use.
_LAZY = {
    "Backend": "nnverify.backends.base",
    "BackendResult": "nnverify.backends.base",
    "Capabilities": "nnverify.backends.base",
    "SolveStatus": "nnverify.backends.base",
    "SolverPool": "nnverify.backends.pool",
}

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendResult",
    "Capabilities",
    "SolveStatus",
    "SolverPool",
    "available_backends",
    "backend_class",
    "get_backend",
]

BACKENDS: dict[str, str] = {
    "highs": "nnverify.backends.highs:HighsBackend",
    "gurobi": "nnverify.backends.gurobi:GurobiBackend",
    "clpq": "nnverify.backends.clpq:ClpqBackend",
    "cpsat": "nnverify.backends.cpsat:CpSatBackend",
}


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name`` (imports its module, not its solver library).

    Raises:
        BackendUnavailableError: ``name`` is not in ``BACKENDS``.
    """
    if name not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    return cast("type[Backend]", getattr(importlib.import_module(module_name), class_name))


def available_backends() -> list[str]:
    """Names of the registered backends usable here, in registry order."""
    return [name for name in BACKENDS if backend_class(name).unavailable_reason() is None]


def get_backend(name: str, options: Options | None = None, pool: SolverPool | None = None) -> Backend:
    """A ready-to-use instance of backend ``name``, configured from ``options`` (defaults if None), whose
    native solves go through ``pool`` (the process's default pool if None).

    Raises:
        BackendUnavailableError: the name is unknown, or its solver is not installed (the message says how
            to install it and which backends are available).
    """
    reason = backend_class(name).unavailable_reason()
    if reason is not None:
        usable = ", ".join(available_backends()) or "none"
        raise BackendUnavailableError(f"backend {name!r} is not installed: {reason}. Available: {usable}.")
    return backend_class(name).from_options(options or Options(), pool)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnverify.backends' has no attribute {name!r}")
