"""Forward-split search on two processes (``search/forward_split.py`` through ``search/parallel.py``): the verdicts
of one process with every bound route, a deadline ends both, the worker is reaped, no fork past the memory cap."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
from fork_spy import reaped, spy_forks
from onnx import helper

from nnverify.backends.base import SolveStatus
from nnverify.bounds import backward_ops
from nnverify.bounds.forward_cut import plan_cut
from nnverify.budget import Budget, BudgetExpired, ResourceLimitError
from nnverify.graph.core import Graph
from nnverify.graph.onnx_import import load_network
from nnverify.search import forward_boxes, forward_split, parallel
from nnverify.search.bab import SearchOutcome
from nnverify.search.forward_split import forward_split_search
from nnverify.spec.property import Disjunct

sys.path.insert(0, str(Path(__file__).parents[1] / "graph"))
from onnx_nets import build_model

LB, UB = np.array([-1.5, 0.1, -1.0]), np.array([1.5, 0.1, 1.5])  # two free inputs, one pinned


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Share from the start (one box: the worker starts idle), one box a batch; the pids of the forked workers."""
    monkeypatch.setattr(forward_split, "SHARE_AFTER_S", 0.0)
    monkeypatch.setattr(forward_split, "SHARE_MIN_LEFT_S", 0.0)
    monkeypatch.setattr(forward_split, "SHARED_BATCH", 1)
    return spy_forks(monkeypatch)


def _net(tmp_path: Path, seed: int) -> Graph:
    """Gemm 3 -> 2x3x3 image, Conv, Relu, Conv (stride 2), Relu, Gemm to 2 outputs (random weights)."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 0.6, shape)

    nodes = [
        helper.make_node("Gemm", ["x", "G", "g"], ["h"]),
        helper.make_node("Reshape", ["h", "s"], ["i"]),
        helper.make_node("Conv", ["i", "W1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "W2", "b2"], ["c2"], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("Gemm", ["f", "F", "o"], ["y"]),
    ]
    inits = {"G": w(3, 18), "g": w(18), "s": np.array([1, 2, 3, 3]), "W1": w(4, 2, 3, 3), "b1": w(4)}
    inits |= {"W2": w(3, 4, 2, 2), "b2": w(3), "F": w(3, 2), "o": w(2)}
    path = tmp_path / f"net{seed}.onnx"
    path.write_bytes(build_model(nodes, (1, 3), inits).SerializeToString())
    return load_network(path)


def _top(graph: Graph) -> float:
    g0, g2 = np.meshgrid(np.linspace(LB[0], UB[0], 301), np.linspace(LB[2], UB[2], 301))
    return float(graph.eval(np.stack([g0.ravel(), np.full(g0.size, 0.1), g2.ravel()], axis=1))[:, 0].max())


def _plan(graph: Graph, route: str) -> object:
    return {"ops": backward_ops.plan(graph), "cut": plan_cut(graph, 64.0), "forward": None}[route]


def _run(
    graph: Graph, route: str, shift: float, cores: int, seconds: float = 60.0, replay: bool = True
) -> tuple[SearchOutcome, list[np.ndarray]]:
    """Unsafe: ``Y_0 >= top + shift`` (``top``: the maximum on a fine grid; shift > 0 is proven, < 0 has a
    counterexample). ``replay`` False refuses every candidate."""
    d = Disjunct(LB, UB, np.zeros((1, 3)), np.array([[-1.0, 0.0]]), np.array([-(_top(graph) + shift)]))
    found: list[np.ndarray] = []

    def accept(point: np.ndarray) -> bool:
        if replay and d.slack(point[None], graph.eval(point[None]))[0] <= 0.0:
            found.append(point)
        return bool(found)

    plan = _plan(graph, route)
    out = forward_split_search(graph, plan, [d], Budget.starting_now(seconds), accept, cores)  # type: ignore[arg-type]
    return out, found


@pytest.mark.parametrize("route", ["ops", "cut", "forward"])
def test_two_processes_give_the_verdicts_of_one(tmp_path: Path, route: str, forks: list[int]) -> None:
    """Proven just above the grid's top, a replayed point just below: the same verdict with one and two
    processes, about the same boxes when every box is bounded (``unsat``), and every worker reaped."""
    graph = _net(tmp_path, 1)
    for shift, status in ((0.02, SolveStatus.INFEASIBLE), (-0.001, SolveStatus.FEASIBLE)):
        before = len(forks)
        one, _ = _run(graph, route, shift, 1)
        assert len(forks) == before and one.stats.boxes > 16  # one process; a search of many boxes
        two, found = _run(graph, route, shift, 2)
        assert len(forks) == before + 1
        assert one.status is two.status is status
        assert bool(found) is (status is SolveStatus.FEASIBLE)
        if status is SolveStatus.INFEASIBLE:  # the same tree, in batches of other sizes
            assert abs(two.stats.boxes - one.stats.boxes) <= 0.1 * one.stats.boxes
    assert all(reaped(pid) for pid in forks)


def test_a_deadline_ends_both_processes(tmp_path: Path, forks: list[int]) -> None:
    """A ``sat`` case whose candidates are all refused splits without end: ``timeout`` at about the budget (an
    outcome, or ``BudgetExpired`` from a bound pass, as in one process), the worker reaped."""
    graph = _net(tmp_path, 1)
    start = time.monotonic()
    try:
        status = _run(graph, "cut", -0.01, 2, seconds=1.5, replay=False)[0].status
    except BudgetExpired:
        status = SolveStatus.TIMEOUT
    # A hang guard only (the split has no end without the deadline), not a timing assertion: generous for a
    # loaded machine, where the 1.5 s budget's check between batches can come seconds late.
    assert time.monotonic() - start < 60.0
    assert status is SolveStatus.TIMEOUT
    assert forks and all(reaped(pid) for pid in forks)


def test_no_second_process_past_the_memory_cap(tmp_path: Path, forks: list[int]) -> None:
    """A cap below this process's resident memory plus its peak: the search stays in one process, same verdict."""
    graph = _net(tmp_path, 1)
    d = Disjunct(LB, UB, np.zeros((1, 3)), np.array([[-1.0, 0.0]]), np.array([-(_top(graph) + 0.02)]))
    budget = Budget.starting_now(60.0, memory_limit_mb=1.5 * forward_split.resident_mb())
    assert not forward_split.fits_twice(budget)
    out = forward_split_search(graph, backward_ops.plan(graph), [d], budget, lambda x: False, 2)
    assert out.status is SolveStatus.INFEASIBLE and not forks


def test_a_worker_that_dies_leaves_the_search_undecided(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forks: list[int]
) -> None:
    """The worker killed at once: its boxes are lost, so the ``unsat`` case ends ``unknown``, never ``unsat``."""
    real = parallel._fork

    def killed(serve: Callable[[Connection, Budget], None], budget: Budget) -> parallel._Worker:
        worker = real(serve, budget)
        os.kill(worker.pid, signal.SIGKILL)
        return worker

    monkeypatch.setattr(parallel, "_fork", killed)
    out, _ = _run(_net(tmp_path, 1), "ops", 0.02, 2)
    assert out.status is SolveStatus.UNKNOWN and "ended without answering" in out.note


def test_an_error_in_the_worker_reaches_the_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``ResourceLimitError`` in the worker (its constructor does not rebuild from a pickle) ends the search
    ``unknown`` with its message, never ``unsat``; the worker is given its own budget (``_Search.use``)."""
    monkeypatch.setattr(forward_split, "SHARE_AFTER_S", 0.0)
    monkeypatch.setattr(forward_split, "SHARE_MIN_LEFT_S", 0.0)
    real_use = forward_split._Search.use

    def use(self: forward_split._Search, budget: Budget) -> None:
        real_use(self, budget)
        assert budget.memory_limit_mb < 1e9  # the worker's cap: the run's minus the parent's resident memory

        def over(*args: object) -> NoReturn:
            raise ResourceLimitError("bounding a box", 10.0, 5.0, 12.0)

        monkeypatch.setattr(forward_split, "_bound", over)

    monkeypatch.setattr(forward_split._Search, "use", use)
    graph = _net(tmp_path, 1)
    d = Disjunct(LB, UB, np.zeros((1, 3)), np.array([[-1.0, 0.0]]), np.array([-(_top(graph) + 0.02)]))
    out = forward_split_search(graph, None, [d], Budget.starting_now(60.0, 1e9), lambda x: False, 2)
    assert out.status is SolveStatus.UNKNOWN and "memory limit: bounding a box" in out.note


def test_two_processes_halve_the_root_box_unbounded(tmp_path: Path, forks: list[int]) -> None:
    """On two processes the root box is halved before any box is bounded (the worker is forked before the first
    batch), along the input the rows change most with; the verdicts of one process, ``PRESPLIT`` off or on."""
    graph = _net(tmp_path, 1)
    me, first = os.getpid(), []
    real = forward_split._bound

    def counted(*args: Any) -> Any:
        if os.getpid() == me:
            first.append(len(forks))
        return real(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(forward_split, "_bound", counted)
        patch.setattr(forward_split, "SHARE_AFTER_S", 0.05)  # without the presplit: after a few batches
        for presplit in (False, True):
            patch.setattr(forward_split, "PRESPLIT", presplit)
            for shift, status in ((0.02, SolveStatus.INFEASIBLE), (-0.001, SolveStatus.FEASIBLE)):
                first.clear()
                before = len(forks)
                out, found = _run(graph, "cut", shift, 2)
                assert out.status is status and bool(found) is (status is SolveStatus.FEASIBLE)
                assert len(forks) == before + 1 and all(reaped(pid) for pid in forks)
                assert (first[0] == before + 1) is presplit  # forked before this process bounded a box
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"])]
    path = tmp_path / "linear.onnx"
    path.write_bytes(
        build_model(nodes, (1, 3), {"W": np.array([[0.1, 1.0], [9.0, 0.0], [-0.5, 2.0]])}).SerializeToString()
    )
    linear = load_network(path)
    rows = (np.zeros((1, 3)), np.array([[1.0, 1.0]]), np.zeros(1))
    assert forward_split.sensitive_input(linear, [Disjunct(LB, UB, *rows)]) == 2  # input 1 is pinned
    free = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    assert forward_split.sensitive_input(linear, [Disjunct(*free, *rows)]) == 1


def test_verify_shares_the_forward_route_between_two_processes(tmp_path: Path, forks: list[int]) -> None:
    """``verify`` on the forward route with ``--threads 2`` forks the worker and proves the bound; ``--threads 1``
    does not fork."""
    from nnverify import pipeline
    from nnverify.options import Options
    from nnverify.result import Verdict
    from nnverify.spec.property import Property

    graph = _net(tmp_path, 1)
    d = Disjunct(LB, UB, np.zeros((1, 3)), np.array([[-1.0, 0.0]]), np.array([-(_top(graph) + 0.02)]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(forward_split, "FORWARD_DENSE_MB", 0.0)
        for threads in (1, 2):
            before = len(forks)
            result = pipeline.verify(graph, Property(3, 2, (d,)), Options(timeout_s=60.0, threads=threads))
            assert result.verdict is Verdict.UNSAT and result.method == "forward-split"
            assert len(forks) == before + (threads - 1)
    assert all(reaped(pid) for pid in forks)


def test_constant_lower_functions_split_the_widest_input() -> None:
    """Where every live row's lower function is constant, the box is halved along its widest free input as a share
    of the root box (the first free input, ever again, left a search open at any depth); else the weights decide."""
    func = np.zeros((2, 1, 4))  # two boxes, one row, three inputs + constant
    func[1, 0, :3] = [0.0, 0.5, 0.1]
    live = np.ones((2, 1), dtype=bool)
    lb, ub = np.zeros((2, 3)), np.array([[0.25, 1.0, 0.5], [0.25, 1.0, 0.5]])
    root = np.array([1.0, 2.0, 0.5])
    _, upper, _ = forward_boxes.halves(func, live, lb, ub, np.zeros(2, dtype=np.int64), np.arange(3), root)
    assert np.flatnonzero(upper[0] != ub[0]).tolist() == [2]  # flat: input 2 is still as wide as the root's
    assert np.flatnonzero(upper[1] != ub[1]).tolist() == [1]  # the weights


def test_the_attack_goes_on_between_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first attack slice that finds nothing: later slices (2 % of each batch's time, ``ATTACK_TOTAL_S`` in all)
    run between the main process's batches, and the point one of them finds is the ``sat`` answer."""
    from nnverify import pipeline
    from nnverify.attack_graph import GraphAttackStats
    from nnverify.options import Options
    from nnverify.result import Verdict
    from nnverify.spec.property import Property

    graph = _net(tmp_path, 1)
    d = Disjunct(LB, UB, np.zeros((1, 3)), np.array([[-1.0, 0.0]]), np.array([-(_top(graph) - 0.001)]))
    slices: list[float] = []

    def attack(analysis: Graph, prop: Property, budget: Budget, accept: Callable[..., bool], seed: int) -> object:
        slices.append(budget.remaining())
        if len(slices) == 2:  # the grid's best point (a counterexample: the threshold is below the grid's top)
            g0, g2 = np.meshgrid(np.linspace(LB[0], UB[0], 301), np.linspace(LB[2], UB[2], 301))
            x = np.stack([g0.ravel(), np.full(g0.size, 0.1), g2.ravel()], axis=1)
            accept(x[np.argmax(graph.eval(x)[:, 0])], d)
        return GraphAttackStats(seconds=0.01)

    monkeypatch.setattr(forward_split, "search", attack)
    monkeypatch.setattr(forward_split, "FORWARD_DENSE_MB", 0.0)
    result = pipeline.verify(graph, Property(3, 2, (d,)), Options(timeout_s=60.0, threads=1))
    assert result.verdict is Verdict.SAT and result.method == "forward-split" and len(slices) == 2
    assert result.stats["attack_slices"] == 2 and slices[1] <= forward_split.ATTACK_TOTAL_S
