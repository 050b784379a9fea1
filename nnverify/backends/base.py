"""The backend protocol and its result type."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Protocol

import numpy as np

from nnverify.encode.problem import Problem
from nnverify.options import Options


class SolveStatus(StrEnum):
    """What a backend concluded about a ``Problem``."""

    FEASIBLE = "feasible"  # ``values`` holds a solution (to be replayed before anyone calls it sat)
    INFEASIBLE = "infeasible"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"  # solver gave up / numerical trouble; ``note`` says why


@dataclass(frozen=True, slots=True)
class BackendResult:
    status: SolveStatus
    values: np.ndarray | None = None
    note: str = ""
    seconds: float = 0.0


class Backend(Protocol):
    name: ClassVar[str]

    @classmethod
    def from_options(cls, options: Options) -> Backend:
        """An instance configured from the run options (seed, precision ...)."""
        ...

    @property
    def exact(self) -> bool:
        """True if INFEASIBLE is decided in exact rational arithmetic (no solver tolerance).

        The pipeline then keeps the network's affine layers unmerged, so the weights the backend sees are the
        network's own float32 values rather than float64 products of them.
        """
        ...

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None if usable here, else a one-line install hint."""
        ...

    def solve(self, problem: Problem, *, timeout_s: float) -> BackendResult:
        """Decide feasibility of ``problem`` within ``timeout_s``.

        A time limit is a status (TIMEOUT), not an exception.
        """
        ...
