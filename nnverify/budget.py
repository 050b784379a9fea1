"""One wall-clock budget shared by every phase of a run."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Budget:
    """A deadline on ``time.monotonic()``; phases ask how much is left and stop when nothing is."""

    deadline: float

    @classmethod
    def starting_now(cls, seconds: float) -> Budget:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline
