"""The MILP thread that races the ReLU branch and bound: MILP-refined intermediate bounds, then one MILP of
the whole box (``RacingMilp``)."""

from __future__ import annotations

import threading
import time

import numpy as np

from nnverify.backends.base import Backend, SolverRangeError, SolveStatus
from nnverify.backends.pool import SolverPool, default_pool
from nnverify.bounds.backward import LayerBounds
from nnverify.bounds.optimized import Slopes, optimized_layer_bounds
from nnverify.bounds.refine import RefineStats, refinable_layers, refine_bounds
from nnverify.budget import Budget
from nnverify.graph.layers import LayerGraph
from nnverify.search.exact import BoxOutcome, solve_box
from nnverify.search.relu_search import root_layer_iterations
from nnverify.spec.property import Disjunct

#: The racing thread refines the intermediate bounds by MILPs for this share of the budget left when the root
#: stays open, at most ``REFINE_SOLVE_S`` per bound (``bounds/refine.py``), before its whole-box MILP.
REFINE_SHARE = 0.6
REFINE_SOLVE_S = 1.0
#: Seconds beyond one refinement solve that stopping the racing thread may wait (a whole-box MILP stops on
#: cancel within about 0.1 s).
STOP_GRACE_S = 4.0


class RacingMilp:
    """A second thread beside the search: first MILP-refined intermediate bounds (``bounds/refine.py``, for
    ``REFINE_SHARE`` of the budget left, when ``refine``), then the whole box as one MILP with those bounds.

    Used only with a ``cancellable`` backend: HiGHS releases the GIL while it solves, so on two cores the
    MILPs and the numpy bounding run side by side. The search intersects the refined bounds into its open
    domains when they arrive (``refined``); whichever of the search and the MILP decides first wins and the
    other stops.
    """

    def __init__(
        self,
        graph: LayerGraph,
        root: LayerBounds,
        disjuncts: list[Disjunct],
        backend: Backend,
        budget: Budget,
        refine: bool,
        margins: dict[str, float],
        workers: int = 1,
        pool: SolverPool | None = None,
    ) -> None:
        self.cancel = threading.Event()
        self.pool = pool or default_pool()
        self.outcome: BoxOutcome | None = None
        self.refined: tuple[LayerBounds, dict[int, Slopes]] | None = None
        self.refine_stats = RefineStats()
        self.refine_started: float | None = None
        self._graph, self._margins = graph, margins
        self._slopes: dict[int, Slopes] = {}
        lbs, ubs = [np.array(v[0]) for v in root.lb], [np.array(v[0]) for v in root.ub]
        job = (graph, lbs, ubs, disjuncts, backend, budget, refine, workers)
        self.thread = threading.Thread(target=self._run, args=job, name="nnverify-milp", daemon=True)
        self.thread.start()

    def _run(
        self,
        graph: LayerGraph,
        lbs: list[np.ndarray],
        ubs: list[np.ndarray],
        disjuncts: list[Disjunct],
        backend: Backend,
        budget: Budget,
        refine: bool,
        workers: int,
    ) -> None:
        """The thread: the refinement (with ``refine``), then the whole-box MILP unless cancelled."""
        if refine and refinable_layers(graph):
            self.refine_started = time.monotonic()
            lbs, ubs, _ = refine_bounds(
                graph,
                lbs,
                ubs,
                deadline=time.monotonic() + REFINE_SHARE * budget.remaining(),
                per_solve_s=REFINE_SOLVE_S,
                reoptimise=self._reoptimise,
                cancel=self.cancel,
                workers=workers,
                publish=self._publish,
                stats=self.refine_stats,
                pool=self.pool,
            )
        if not self.cancel.is_set():
            try:
                self.outcome = solve_box(graph, lbs, ubs, disjuncts, backend, budget, self.cancel)
            except SolverRangeError as exc:  # the search goes on; its own leaves will say so
                self.outcome = BoxOutcome(SolveStatus.UNKNOWN, note=str(exc))

    def _reoptimise(self, lo: list[np.ndarray], hi: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """α-CROWN layer by layer on refined bounds; the slopes it chose kept for ``_publish``."""
        self._slopes = {}
        b = LayerBounds([v[None] for v in lo], [v[None] for v in hi])
        b = optimized_layer_bounds(
            self._graph, b, iterations=root_layer_iterations(self._graph), slopes=self._slopes, **self._margins
        )
        return [v[0] for v in b.lb], [v[0] for v in b.ub]

    def _publish(self, lo: list[np.ndarray], hi: list[np.ndarray]) -> None:
        # one assignment, so the search never sees bounds with the slopes of other bounds
        self.refined = (LayerBounds([v[None] for v in lo], [v[None] for v in hi]), self._slopes)

    def result(self) -> BoxOutcome | None:
        """The MILP's outcome once it has finished, else None."""
        return None if self.thread.is_alive() else self.outcome

    def refine_seconds(self) -> float:
        """Seconds the refinement ran (so far, when it was stopped before it returned)."""
        if self.refine_stats.seconds or self.refine_started is None:
            return self.refine_stats.seconds
        return time.monotonic() - self.refine_started

    def take_refined(self) -> tuple[LayerBounds, dict[int, Slopes]] | None:
        """The refined root bounds and the α-CROWN slopes behind them, once (None before they are ready and
        after they were taken)."""
        refined, self.refined = self.refined, None
        return refined

    def stop(self) -> None:
        """Cancel and wait for the thread: a refinement solve stops at its own time limit, and a process
        must not exit while HiGHS runs in one of its threads (the process aborts)."""
        self.cancel.set()
        self.thread.join(REFINE_SOLVE_S + STOP_GRACE_S)
        if self.thread.is_alive():  # the pool keeps it: the program then leaves without interpreter teardown
            self.pool.abandon(self.thread)
