"""One wall-clock budget and one memory cap shared by every phase of a run (README "The budget and memory
contract"); a phase that runs out raises ``BudgetExpired`` or ``ResourceLimitError`` and ``verify()`` answers."""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from nnverify.errors import NnverifyError

#: Default memory cap: this share of the machine's available memory (MemAvailable, else MemTotal) at start.
MEMORY_SHARE = 0.6
#: Loops that cannot afford a clock read per step look at the budget once per this many steps (a power of 2).
CHECK_EVERY = 4096


class BudgetExpired(NnverifyError):
    """The run's deadline passed during ``phase``; ``verify()`` turns it into a ``timeout`` verdict."""

    def __init__(self, phase: str) -> None:
        self.phase = phase
        super().__init__(f"the time budget ran out while {phase}")


class ResourceLimitError(NnverifyError):
    """An allocation of about ``need_mb`` in ``phase`` would pass the memory cap; ``verify()`` answers
    ``unknown`` with this message as its note."""

    def __init__(self, phase: str, need_mb: float, used_mb: float, limit_mb: float) -> None:
        self.phase, self.need_mb, self.limit_mb = phase, need_mb, limit_mb
        super().__init__(
            f"memory limit: {phase} needs about {need_mb:,.0f} MB beside the {used_mb:,.0f} MB in use, "
            f"over the limit of {limit_mb:,.0f} MB (--memory-limit)"
        )


@dataclass(frozen=True, slots=True)
class Budget:
    """A deadline on ``time.monotonic()`` and a memory cap; phases ask what is left and stop when nothing is.

    Attributes:
        deadline: ``time.monotonic()`` value at which the run must have answered (``inf``: no deadline).
        memory_limit_mb: Resident memory the process may reach (``inf``: no cap).
    """

    deadline: float
    memory_limit_mb: float = math.inf

    @classmethod
    def starting_now(cls, seconds: float, memory_limit_mb: float = math.inf) -> Budget:
        return cls(time.monotonic() + seconds, memory_limit_mb)

    @classmethod
    def unlimited(cls) -> Budget:
        """No deadline and no memory cap (library calls made outside ``verify()``)."""
        return cls(math.inf)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def check(self, phase: str) -> None:
        """Raise ``BudgetExpired(phase)`` if the deadline has passed (``phase``: "parsing the property" ...)."""
        if time.monotonic() >= self.deadline:
            raise BudgetExpired(phase)

    def check_alloc(self, nbytes: float, phase: str) -> None:
        """Raise ``ResourceLimitError`` if allocating ``nbytes`` more would pass the memory cap."""
        if math.isinf(self.memory_limit_mb):
            return
        need = nbytes / 2**20
        used = resident_mb()
        if used + need > self.memory_limit_mb:
            raise ResourceLimitError(phase, need, used, self.memory_limit_mb)


def resident_mb() -> float:
    """The process's resident memory now, in MB (0 where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    """The process's peak resident memory so far, in MB (``getrusage``: kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def default_memory_limit_mb() -> float:
    """``MEMORY_SHARE`` of MemAvailable (else MemTotal) from /proc/meminfo; ``inf`` where that is unreadable."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        kb = int((fields.get("MemAvailable") or fields["MemTotal"]).split()[0])
    except (OSError, ValueError, KeyError, IndexError):
        return math.inf
    return MEMORY_SHARE * kb / 1024
