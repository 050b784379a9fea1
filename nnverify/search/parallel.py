"""Input splitting on two cores: a forked worker process takes part of the open boxes, and work moves between the
two so that neither idles (README "Input splitting on two cores"). It drives any ``SplitSearch``: ``bab.Search``
(boxes of milliseconds) and ``forward_split``'s searches (boxes of seconds to minutes).

The parent keeps every side effect: it replays the worker's candidate points and solves its exact leaves, so a
``sat`` is replayed exactly as in one process. The worker is a fork (numpy only: it inherits the graph and the
boxes), ignores Ctrl-C, dies with its parent (``PR_SET_PDEATHSIG``, else the closed pipe) and is always reaped.
Messages (one socket pair, pickled): worker -> parent ``cand`` points, ``leaf`` boxes, ``idle`` and ``bye`` with
its counters, ``work`` (answering ``steal``), ``error``; parent -> worker ``work`` (answering ``idle``),
``steal``, ``stop``. Large messages only go to a side that is waiting for them, so neither blocks the other.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from nnverify.backends.base import SolveStatus
from nnverify.budget import Budget, BudgetExpired, resident_mb
from nnverify.errors import NnverifyError

if TYPE_CHECKING:
    from nnverify.search.bab import SearchOutcome, SearchStats

#: Seconds the parent waits for the worker's last message after ``stop``, and then for its exit, before a kill.
STOP_WAIT_S = 0.5
#: Longest single wait for a message (the budget may be unlimited; ``poll`` takes no infinite timeout).
POLL_S = 0.5
#: Seconds the parent waits for a message while it has no boxes and the worker gave none.
STEAL_WAIT_S = 0.02


class SplitSearch(Protocol):
    """What ``shared_search`` drives: a search over a stack of box batches (entries with ``len`` and ``part``)."""

    stats: SearchStats
    note: str

    def run_batch(
        self, stack: list[Any], is_counterexample: Callable[[np.ndarray], bool]
    ) -> tuple[np.ndarray | None, list[Any]]:
        """Bound the top batch: a replayed counterexample, else None and the batch's leaves for ``settle``."""
        ...

    def settle(
        self, leaves: list[Any], backend: Any, budget: Budget, is_counterexample: Callable[[np.ndarray], bool]
    ) -> SearchOutcome | None:
        """Decide leaves in the parent; an outcome to return now, else None."""
        ...

    def outcome(self) -> SearchOutcome:
        """The answer once every box is closed."""
        ...


class WorkerLost(NnverifyError):
    """The worker process ended without answering (its boxes are lost: the search cannot prove anything)."""


def give_half(stack: list[Any]) -> list[Any]:
    """Remove and return about half of the stack's boxes: every other entry (each side gets shallow and deep
    ones), or half of a single entry's boxes; nothing from a single box."""
    if len(stack) >= 2:
        give = stack[0::2]
        stack[:] = stack[1::2]
        return give
    if stack and len(stack[0]) >= 2:
        top = stack.pop()
        half = len(top) // 2
        stack.append(top.part(slice(half, None)))
        return [top.part(slice(0, half))]
    return []


@dataclass(slots=True)
class _Worker:
    """The parent's handle on the forked worker and what it last reported."""

    pid: int
    conn: Connection
    idle: bool = False
    finished: bool = False
    #: A ``steal`` is unanswered (the worker answers between its batches: one question at a time).
    asked: bool = False
    counters: tuple[int, int, int] = (0, 0, 0)
    note: str = ""

    def send(self, kind: str, payload: Any = None) -> None:
        try:
            self.conn.send((kind, payload))
        except OSError as exc:  # a broken pipe: the worker is gone
            raise WorkerLost("the second search process ended without answering") from exc

    def recv(self) -> tuple[str, Any]:
        try:
            kind, payload = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerLost("the second search process ended without answering") from exc
        if kind in ("idle", "bye"):
            self.counters, self.note = payload
            self.finished = kind == "bye"
        elif kind == "error":
            raise payload
        elif kind == "work":
            self.asked = False
        self.idle = kind == "idle"
        return kind, payload

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Ask the worker to stop, take its last counters, and reap it (killed if it does not leave within
        ``wait_s`` twice: 0 once the budget is spent, so that the answer is not late)."""
        with contextlib.suppress(OSError, EOFError, ValueError, NnverifyError):
            if not self.finished:
                self.conn.send(("stop", None))
            end = time.monotonic() + wait_s
            while not self.finished and (left := end - time.monotonic()) > 0 and self.conn.poll(left):
                self.recv()
        end = time.monotonic() + wait_s
        while os.waitpid(self.pid, os.WNOHANG)[0] == 0:
            if time.monotonic() > end:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.002)
        self.conn.close()


def _fork(serve: Callable[[Connection, Budget], None], budget: Budget) -> _Worker:
    """Fork the worker running ``serve(conn, budget)``; it leaves by ``os._exit`` (no atexit handlers, no flush
    of the parent's buffers). Its memory cap is the run's cap minus the parent's resident memory now."""
    parent_conn, child_conn = Pipe(duplex=True)
    child_budget = Budget(budget.deadline, budget.memory_limit_mb - resident_mb())
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() == parent:
                parent_conn.close()
                serve(child_conn, child_budget)
        except BaseException:  # the worker must never return into the parent's code
            code = 1
        finally:
            os._exit(code)
    child_conn.close()
    return _Worker(pid, parent_conn)


def _portable(exc: NnverifyError) -> NnverifyError:
    """``exc`` if it survives pickling (an error whose constructor takes other arguments than its message does
    not), else ``WorkerLost`` with its message.

    Rebuilt as plain pickle rebuilds an exception (its class called with its ``args``), so the answer does not
    depend on whether a library in the process (dask's ``tblib``) installed picklers that rebuild any exception."""
    try:
        back = pickle.loads(pickle.dumps(type(exc)(*exc.args)))
    except Exception:  # any failure to rebuild it: send its message instead
        back = None
    return back if isinstance(back, NnverifyError) else WorkerLost(f"the second search process failed: {exc}")


def _serve(search: SplitSearch, stack: list[Any], conn: Connection, budget: Budget) -> None:
    """The worker's loop: its batches, answering ``steal`` with half of its stack, ``idle`` when it has none."""

    def report() -> tuple[tuple[int, int, int], str]:
        s = search.stats
        return (s.boxes, s.candidates, s.max_depth), search.note

    def propose(x: np.ndarray) -> bool:
        conn.send(("cand", x))
        return False

    while True:
        while conn.poll():
            kind, payload = conn.recv()
            if kind == "stop":
                conn.send(("bye", report()))
                return
            if kind == "steal":
                conn.send(("work", give_half(stack)))
            elif kind == "work":
                stack.extend(payload)
        if budget.expired():
            conn.send(("bye", report()))
            return
        if not stack:
            conn.send(("idle", report()))
            conn.poll(None)  # the parent answers with work, steal or stop
            continue
        try:
            _, leaves = search.run_batch(stack, propose)
        except BudgetExpired:  # the deadline: the parent answers timeout
            conn.send(("bye", report()))
            return
        except NnverifyError as exc:
            conn.send(("error", _portable(exc)))
            return
        if leaves:
            conn.send(("leaf", leaves))


def shared_search(
    search: SplitSearch,
    stack: list[Any],
    backend: Any,
    budget: Budget,
    is_counterexample: Callable[[np.ndarray], bool],
    forked: Callable[[Budget], None] | None = None,
) -> SearchOutcome:
    """Continue ``search`` on ``stack`` in this process and a forked worker; the same answers as one process
    (``sat`` only from a point replayed here), with the worker's counters added to ``search.stats``. ``forked``
    is called in the worker with its budget (its memory cap: the run's minus this process's resident memory)."""
    from nnverify.search.bab import SearchOutcome, SearchStats

    give = give_half(stack)

    def serve(conn: Connection, child_budget: Budget) -> None:
        search.stats, search.note = SearchStats(), ""
        if forked is not None:
            forked(child_budget)
        _serve(search, give, conn, child_budget)

    worker = _fork(serve, budget)
    try:
        out = _drive(search, stack, worker, backend, budget, is_counterexample)
    except WorkerLost as exc:
        out = SearchOutcome(SolveStatus.UNKNOWN, note=str(exc))
    finally:
        worker.stop(min(STOP_WAIT_S, budget.remaining()))
        boxes, candidates, depth = worker.counters
        search.stats.boxes += boxes
        search.stats.candidates += candidates
        search.stats.max_depth = max(search.stats.max_depth, depth)
    if out is None:
        search.note = search.note or worker.note
        return search.outcome()
    return SearchOutcome(out.status, out.x, out.note, search.stats)


def _drive(
    search: SplitSearch,
    stack: list[Any],
    worker: _Worker,
    backend: Any,
    budget: Budget,
    accept: Callable[[np.ndarray], bool],
) -> SearchOutcome | None:
    """The parent's loop; an outcome to return now, or None when both sides ran out of boxes."""
    from nnverify.search.bab import TIMEOUT_NOTE, SearchOutcome

    while True:
        if budget.expired() or worker.finished:
            return SearchOutcome(SolveStatus.TIMEOUT, note=TIMEOUT_NOTE)
        while worker.conn.poll():
            done, _ = _handle(search, stack, worker, backend, budget, accept)
            if done is not None:
                return done
        if stack:
            if worker.idle and (part := give_half(stack)):  # before the batch: a batch may take minutes
                worker.send("work", part)
                worker.idle = False
            found, leaves = search.run_batch(stack, accept)
            if found is not None:
                return SearchOutcome(SolveStatus.FEASIBLE, found)
            done = search.settle(leaves, backend, budget, accept)
            if done is not None:
                return done
            continue
        if worker.idle:
            return None
        if not worker.asked:
            worker.send("steal")
            worker.asked = True
        kind = ""
        while kind != "work" and not worker.finished and worker.conn.poll(min(budget.remaining(), POLL_S)):
            done, kind = _handle(search, stack, worker, backend, budget, accept)  # others are handled on the way
            if done is not None:
                return done
        if not stack and not worker.idle:
            worker.conn.poll(STEAL_WAIT_S)


def _handle(
    search: SplitSearch,
    stack: list[Any],
    worker: _Worker,
    backend: Any,
    budget: Budget,
    accept: Callable[[np.ndarray], bool],
) -> tuple[SearchOutcome | None, str]:
    """One message from the worker: a candidate replayed here, leaves solved here, boxes pushed; an outcome to
    return now (else None) and the message's kind."""
    from nnverify.search.bab import SearchOutcome

    kind, payload = worker.recv()
    if kind == "cand" and accept(payload):
        return SearchOutcome(SolveStatus.FEASIBLE, payload), kind
    if kind == "leaf":
        return search.settle(payload, backend, budget, accept), kind
    if kind == "work":
        stack.extend(payload)
    return None, kind
