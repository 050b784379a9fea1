"""Where benchmark instances run: local threads (each driving its own subprocess) or a Dask cluster.

An executor maps a picklable function over items and yields the results as they complete (any order).
It does not catch exceptions of the function: ``run_instance`` turns per-instance failures into rows itself.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from distributed import Client

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` on every item, yielding results in completion order."""

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Submit ``fn(item)`` for every item; yield each result as soon as it is ready."""
        ...


#: How often the waiting main thread wakes up (so that signals are handled promptly).
WAKE_S = 0.2
#: Name prefix of the local worker threads.
THREAD_PREFIX = "nnverify-bench"


class LocalExecutor:
    """``jobs`` worker threads on this machine; each instance is its own process, so threads suffice.

    Args:
        jobs: How many instances run at the same time (at least 1).
    """

    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.jobs = jobs

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Run ``fn`` over ``items`` on a thread pool; pending items are cancelled if the consumer stops, and
        running ones are then not waited for."""
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix=THREAD_PREFIX)
        futures = [pool.submit(fn, item) for item in items]
        pending, finished = set(futures), False
        try:
            while pending:
                # Wake up now and then: a signal (Ctrl-C, SIGTERM) is only handled when the main thread runs,
                # and an untimed wait would hold it off for as long as the running instances take.
                done, pending = concurrent.futures.wait(
                    pending, timeout=WAKE_S, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    yield future.result()
            finished = True
        finally:
            # Stopped early (an exception, or the consumer closed us): do not wait for the running items; the
            # caller stops them (``bench/runner.py`` kills their process groups).
            pool.shutdown(wait=finished, cancel_futures=True)


class DaskExecutor:
    """Run on a Dask cluster: ``fn`` (and the subprocess it starts) runs on the workers.

    Paths in the items (networks, properties, witness directory) must be valid on the workers, e.g. a
    shared file system. Parallelism is the cluster's (workers × threads per worker).

    Args:
        address: Scheduler address (``tcp://host:8786``) or an existing ``distributed.Client``, which is
            then used as is and not closed by this executor.
    """

    def __init__(self, address: str | Client) -> None:
        self._address = address

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Submit one task per item (``pure=False``: never deduplicated) and stream results back."""
        from nnverify.extras import Extra, require

        distributed = require("distributed", Extra.BENCH, "a Dask scheduler (--scheduler)")
        Client, as_completed = distributed.Client, distributed.as_completed
        own = not isinstance(self._address, Client)
        client: Any = Client(self._address) if own else self._address
        try:
            futures = [client.submit(fn, item, pure=False) for item in items]
            try:
                for future in as_completed(futures):
                    yield future.result()
            finally:
                client.cancel([f for f in futures if not f.done()])
        finally:
            if own:
                client.close()
