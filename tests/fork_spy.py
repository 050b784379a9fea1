"""Test helpers for the two-process searches: record the pids of forked workers, and tell whether one is reaped."""

from __future__ import annotations

import os
from collections.abc import Callable
from multiprocessing.connection import Connection

import pytest

from nnverify.budget import Budget
from nnverify.search import parallel


def spy_forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make ``parallel._fork`` record each worker's pid in the returned list (undone with ``monkeypatch``)."""
    pids: list[int] = []
    real = parallel._fork

    def spy(serve: Callable[[Connection, Budget], None], budget: Budget) -> parallel._Worker:
        worker = real(serve, budget)
        pids.append(worker.pid)
        return worker

    monkeypatch.setattr(parallel, "_fork", spy)
    return pids


def reaped(pid: int) -> bool:
    """True when ``pid`` is no longer a child of this process (it was waited for)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False
