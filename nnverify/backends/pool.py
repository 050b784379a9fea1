"""One owner for native solver state: HiGHS's process-wide scheduler, cancellation, abandoned solves and the wait
at exit. ``verify()`` opens a ``SolverPool`` in a ``with`` block and passes it down; the CLI asks ``work_remains``.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nnverify.backends.base import Capabilities

#: Seconds HiGHS may overrun ``time_limit`` before the pool stops waiting for it (the solve is abandoned).
OVERRUN_GRACE_S = 0.3
#: Seconds between looks at the cancel events while HiGHS runs.
CANCEL_POLL_S = 0.05
#: Seconds the interpreter's exit waits, in all, for abandoned (cancelled) solves to end.
EXIT_WAIT_S = 30.0


class _Process:
    """What every pool shares, because HiGHS shares it across the process: its thread pool ("scheduler"),
    the count of threads running it directly, and the abandoned threads (solves and ``verify()`` runs)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the fields below
        self.scheduler = threading.Lock()  # restarts of HiGHS's scheduler
        self.serial = threading.Lock()  # exact solves of backends that are not thread-safe
        self.direct = 0
        self.abandoned: list[tuple[Any, threading.Thread]] = []  # (HiGHS object kept alive, or None; thread)


_PROCESS = _Process()


class SolverPool:
    """Native solves of one run: they stop when the pool closes (``cancel``), and what overran is abandoned
    through it. Pools opened side by side (two ``verify()`` calls in threads) share the process's HiGHS state
    safely: every rule about that state lives here."""

    def __init__(self) -> None:
        self.cancel = threading.Event()  # set on close: every solve started through the pool stops
        self._abandoned: list[threading.Thread] = []

    def __enter__(self) -> SolverPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel every solve still running through this pool (an abandoned run's solves end within
        ``CANCEL_POLL_S`` instead of at their own time limit)."""
        self.cancel.set()

    def stopping(self, cancel: threading.Event | None = None) -> bool:
        """The pool is closed or ``cancel`` is set."""
        return self.cancel.is_set() or (cancel is not None and cancel.is_set())

    def abandon(self, thread: threading.Thread, handle: object = None) -> None:
        """Stop waiting for ``thread`` (a solve, with the solver object ``handle`` it must keep alive, or a run).

        Abandoned solves are waited for at interpreter exit (up to ``EXIT_WAIT_S``); while any thread lives,
        ``work_remains()`` is True and the program leaves without interpreter teardown."""
        self._abandoned.append(thread)
        with _PROCESS.lock:
            _PROCESS.abandoned.append((handle, thread))

    def abandoned(self) -> int:
        """How many threads this pool abandoned that still run."""
        return sum(thread.is_alive() for thread in self._abandoned)

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for this pool's abandoned threads; True if none still runs."""
        until = time.monotonic() + seconds
        for thread in self._abandoned:
            thread.join(max(0.0, until - time.monotonic()))
        return self.abandoned() == 0

    def serial(self, capabilities: Capabilities) -> AbstractContextManager[object]:
        """Hold this around a solve of a backend with ``capabilities``: one at a time in the process unless
        the backend is thread-safe (HiGHS's solves share its scheduler)."""
        return contextlib.nullcontext() if capabilities.thread_safe else _PROCESS.serial

    @contextlib.contextmanager
    def direct(self) -> Iterator[None]:
        """While entered, threads of this process run HiGHS by plain ``run()`` (``run_direct``).

        highspy's ``startSolve`` thread restarts the process-wide scheduler when its solve ends, which tears
        it down under any other running solve (the process aborts); so meanwhile ``run_highs`` calls ``run()``
        directly (its ``time_limit`` still holds; cancelling waits for it)."""
        with _PROCESS.lock:
            _PROCESS.direct += 1
        try:
            yield
        finally:
            with _PROCESS.lock:
                _PROCESS.direct -= 1

    def ready_scheduler(self, options: Mapping[str, object]) -> None:
        """Restart HiGHS's scheduler now if it was started with another size than ``options`` ask for, so
        that threads about to ``run_direct`` do not each find out (and restart it under each other)."""
        import numpy as np

        probe = _highspy().Highs()
        probe.setOptionValue("output_flag", False)
        for name, value in options.items():
            probe.setOptionValue(name, value)
        probe.addVars(1, np.zeros(1), np.ones(1))
        probe.run()
        if _not_run(probe):
            self._restart_scheduler()

    def run_direct(self, highs: Any) -> None:
        """``highs.run()`` in this thread (inside ``direct``), restarting the scheduler once, under the
        pool's lock, if it was started with another size."""
        highs.run()
        if _not_run(highs):
            with _PROCESS.scheduler:
                _highspy().Highs.resetGlobalScheduler(True)
                highs.run()

    def run_highs(self, highs: Any, time_limit_s: float, cancel: threading.Event | None = None) -> bool:
        """Run ``highs`` (options set, model passed) and wait at most ``time_limit_s`` plus a grace period;
        False if it overran or was cancelled and could not be stopped (it is abandoned, not waited for).

        HiGHS checks ``time_limit`` only between presolve reductions, and one reduction can take many seconds
        on big-M models: the budget is a promise to the user. A scheduler started with another size (another
        highspy user in the process) is restarted once and the solve retried."""
        if not self._run_with_deadline(highs, time_limit_s, cancel):
            return False
        if not self.stopping(cancel) and _not_run(highs):
            self._restart_scheduler()
            return self._run_with_deadline(highs, time_limit_s, cancel)
        return True

    def _run_with_deadline(self, highs: Any, time_limit_s: float, cancel: threading.Event | None) -> bool:
        if highs.is_solver_running() or _PROCESS.direct:
            # highspy allows one startSolve per process (class-level locks): while another thread's solve runs
            # (a racing MILP, ``direct`` workers), solve here directly; HiGHS still honours its time_limit.
            highs.run()
            return True
        try:
            thread = highs.startSolve()
        except Exception as exc:  # the same lock taken between the check above and here
            if "already running" not in str(exc):
                raise
            highs.run()
            return True
        until = time.monotonic() + time_limit_s + OVERRUN_GRACE_S
        while thread.is_alive() and not self.stopping(cancel) and time.monotonic() < until:
            thread.join(min(CANCEL_POLL_S, max(0.0, until - time.monotonic())))
        if not thread.is_alive():
            return True
        highs.cancelSolve()
        thread.join(CANCEL_POLL_S)
        if thread.is_alive():
            self.abandon(thread, highs)
            return False
        return True

    def _restart_scheduler(self) -> None:
        with _PROCESS.scheduler:
            _highspy().Highs.resetGlobalScheduler(True)


def _highspy() -> Any:
    import highspy

    return highspy


def _not_run(highs: Any) -> bool:
    """HiGHS refused to run (model status kNotset): its scheduler was started with another thread count."""
    return bool(highs.getModelStatus() == _highspy().HighsModelStatus.kNotset)


_DEFAULT = SolverPool()


def default_pool() -> SolverPool:
    """The pool of library calls made outside ``verify()`` (never closed)."""
    return _DEFAULT


def work_remains() -> bool:
    """True if a thread abandoned by any pool (a native solve or a ``verify()`` run) still runs: the program
    must then leave by ``os._exit``, since interpreter teardown under native code can crash the process."""
    with _PROCESS.lock:
        return any(thread.is_alive() for _, thread in _PROCESS.abandoned)


@atexit.register
def _wait_at_exit() -> None:
    """At interpreter exit, give abandoned solves (already cancelled) time to end.

    Their threads are daemons: once the interpreter finalises, a daemon thread coming back from HiGHS is ended
    by ``pthread_exit`` inside C++ code, which aborts the process ("terminate called without an active
    exception") after the host program's own work is done. ``atexit`` runs before that. The ``nnverify``
    program does not rely on this (``cli.entry`` leaves by ``os._exit``); a host program using the API does."""
    until = time.monotonic() + EXIT_WAIT_S
    with _PROCESS.lock:
        solves = [thread for handle, thread in _PROCESS.abandoned if handle is not None]
    for thread in solves:
        thread.join(max(0.0, until - time.monotonic()))
