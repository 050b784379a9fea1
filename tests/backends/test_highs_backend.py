"""HiGHS-specific behaviour: status mapping and recovery from a thread pool started by someone else."""

from __future__ import annotations

import time

import highspy
import numpy as np
import pytest

from nnverify.backends.base import SolveStatus
from nnverify.backends.highs import HighsBackend, status_from_highs
from nnverify.encode.problem import Problem


@pytest.mark.parametrize(
    ("status", "has_solution", "bounded", "expected"),
    [
        ("kOptimal", True, True, SolveStatus.FEASIBLE),
        ("kInfeasible", False, True, SolveStatus.INFEASIBLE),
        ("kUnboundedOrInfeasible", False, True, SolveStatus.INFEASIBLE),
        ("kUnboundedOrInfeasible", False, False, SolveStatus.UNKNOWN),
        ("kUnbounded", True, False, SolveStatus.UNKNOWN),
        ("kTimeLimit", False, True, SolveStatus.TIMEOUT),
        ("kTimeLimit", True, True, SolveStatus.FEASIBLE),
        ("kInterrupt", False, True, SolveStatus.TIMEOUT),  # only the deadline interrupts HiGHS
        ("kSolveError", False, True, SolveStatus.UNKNOWN),
    ],
    ids=lambda v: str(v),
)
def test_status_mapping(status: str, has_solution: bool, bounded: bool, expected: SolveStatus) -> None:
    mapped, note = status_from_highs(status, has_solution=has_solution, bounded=bounded)
    assert mapped is expected
    if expected is SolveStatus.UNKNOWN:
        assert status in note


def test_recovers_when_thread_pool_has_another_size() -> None:
    # Another highspy user in this process starts HiGHS's global thread pool with 2 threads.
    highspy.Highs.resetGlobalScheduler(True)
    other = highspy.Highs()
    other.setOptionValue("output_flag", False)
    other.setOptionValue("threads", 2)
    other.addVars(1, np.zeros(1), np.ones(1))
    other.run()
    p = Problem()
    x = p.add_var(-1.0, 1.0)
    y = p.add_var(-1.0, 1.0)
    p.add_relu(x, y)
    p.add_row(np.array([y]), np.array([1.0]), 0.5)
    result = HighsBackend().solve(p, timeout_s=30.0)
    assert result.status is SolveStatus.FEASIBLE


def test_overrunning_solve_is_abandoned_not_waited_for() -> None:
    import threading

    from nnverify.backends import highs as highs_module

    release = threading.Event()

    class StuckHighs:
        cancelled = False

        def startSolve(self) -> threading.Thread:
            thread = threading.Thread(target=release.wait, daemon=True)
            thread.start()
            return thread

        def cancelSolve(self) -> None:
            self.cancelled = True

        def is_solver_running(self) -> bool:
            return False

    stuck = StuckHighs()
    try:
        assert highs_module._run_with_deadline(stuck, 0.01) is False  # type: ignore[arg-type]
        assert stuck.cancelled
        # a cancel event stops the wait long before the time limit
        cancel = threading.Event()
        again = StuckHighs()
        threading.Timer(0.1, cancel.set).start()
        started = time.monotonic()
        assert highs_module._run_with_deadline(again, 60.0, cancel) is False  # type: ignore[arg-type]
        assert again.cancelled and time.monotonic() - started < 5.0
    finally:
        release.set()
