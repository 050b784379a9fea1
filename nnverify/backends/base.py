"""The backend protocol, its result type, and the capabilities a backend declares."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from nnverify.errors import NnverifyError
from nnverify.options import Options

if TYPE_CHECKING:
    from nnverify.backends.pool import SolverPool
    from nnverify.encode.problem import Problem


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
    #: UNKNOWN because the solver cannot decide problems at this scale (coefficients or bounds beyond its range
    #: or its tolerances): smaller boxes of the same query meet the same numbers.
    out_of_range: bool = False


class SolverRangeError(NnverifyError):
    """The exact backend cannot decide the query at the scale of its numbers (``BackendResult.out_of_range``);
    ``verify()`` answers ``unknown`` with this message as its note instead of splitting until the deadline."""

    def __init__(self, note: str) -> None:
        super().__init__(f"the exact backend cannot decide this query at this scale: {note}")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, declared on its class (``capabilities``) and read instead of probing it.

    Attributes:
        exact: INFEASIBLE is decided in exact rational arithmetic (no solver tolerance); the pipeline then keeps
            the network's affine layers unmerged.
        cancellable: ``solve`` accepts ``cancel=threading.Event`` and stops within about 0.1 s once it is set;
            the ReLU search races such a backend's MILP against itself.
        incumbents: a solve stopped at its time limit still reports a feasible point it found (FEASIBLE).
        thread_safe: solves may run in several threads of one process at once; otherwise the search sends its
            exact leaves one at a time (``SolverPool.serial``).
        size_limit: the largest number of variables or constraints the solver may accept (a size-limited
            licence), or None.
    """

    exact: bool = False
    cancellable: bool = False
    incumbents: bool = False
    thread_safe: bool = False
    size_limit: int | None = None


class Backend(Protocol):
    name: ClassVar[str]

    @classmethod
    def from_options(cls, options: Options, pool: SolverPool | None = None) -> Backend:
        """An instance configured from the run options (seed, precision ...) whose native solves go through
        ``pool`` (the process's default pool if None)."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do (a class attribute for most backends)."""
        ...

    @property
    def exact(self) -> bool:
        """``capabilities.exact`` (kept as its own attribute: the pipeline and API users read it)."""
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
