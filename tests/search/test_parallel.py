"""Input splitting on two processes (``search/parallel.py``): the same verdicts and box counts as one process,
a deadline ends both, the worker is always reaped, and Ctrl-C ends ``nnverify check`` with 130 and no orphan."""

from __future__ import annotations

import copyreg
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fork_spy import reaped, spy_forks
from netgen import random_net

from nnverify.backends import get_backend
from nnverify.backends.base import SolveStatus
from nnverify.budget import Budget, ResourceLimitError
from nnverify.options import Options
from nnverify.search import bab, parallel
from nnverify.search.bab import input_split_search
from nnverify.spec.property import Disjunct

ACAS = Path("/work/shared/benchmarks/acasxu")


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Share from the first batch on; the pids of the forked workers."""
    monkeypatch.setattr(bab, "SHARE_AFTER_S", 0.0)
    monkeypatch.setattr(bab, "SHARE_MIN_LEFT_S", 0.0)
    monkeypatch.setattr(bab, "BATCH", 8)
    return spy_forks(monkeypatch)


def _case(seed: int) -> tuple[object, Disjunct]:
    rng = np.random.default_rng(seed)
    net = random_net(rng, [4, 16, 16, 16, 3])
    lb, ub = rng.uniform(-1, 0, 4), rng.uniform(0, 1, 4)
    a_y = rng.normal(size=(2, 3))
    rows = net.eval(rng.uniform(lb, ub, size=(4000, 4))) @ a_y.T
    b = np.quantile(rows, 0.9, axis=0)
    b[0] = rows[:, 0].min() + rng.uniform(-0.01, 0.005) * (rows[:, 0].max() - rows[:, 0].min())
    return net, Disjunct(lb, ub, np.zeros((2, 4)), a_y, b)


def test_two_processes_give_the_verdicts_and_boxes_of_one(forks: list[int]) -> None:
    """Random nets and conjunctions near the minimum (deep searches): one and two processes agree on the verdict,
    and about on the boxes when every box is bounded (``unsat``); both verdicts occur; every worker is reaped."""
    seen = set()
    for seed in range(8):
        net, d = _case(seed)
        outs = []
        for threads in (1, 2):
            options = Options(threads=threads)
            backend = get_backend("highs", options)
            budget = Budget.unlimited()  # library calls: no deadline
            outs.append(input_split_search(net, [d], d.lb, d.ub, backend, budget, options, lambda x: True))
        one, two = outs
        assert two.status is one.status
        if one.status is SolveStatus.INFEASIBLE:  # the same tree (batches of other sizes may round differently)
            assert abs(two.stats.boxes - one.stats.boxes) <= 0.05 * one.stats.boxes
        seen.add(one.status)
    assert seen == {SolveStatus.INFEASIBLE, SolveStatus.FEASIBLE}
    assert forks and all(reaped(pid) for pid in forks)


def test_a_rejected_candidate_does_not_end_the_search(forks: list[int]) -> None:
    """Candidates that do not replay (``is_counterexample`` says no) leave the verdict to the boxes: a ``sat``
    case with the replay refusing everything is never ``sat`` (here it runs to its 2 s budget)."""
    net, d = _case(4)
    options = Options(threads=2)
    calls: list[np.ndarray] = []

    def refuse(x: np.ndarray) -> bool:
        calls.append(x)
        return False

    backend = get_backend("highs", options)
    out = input_split_search(net, [d], d.lb, d.ub, backend, Budget.starting_now(2.0), options, refuse)
    assert out.status is not SolveStatus.FEASIBLE and calls
    assert forks and all(reaped(pid) for pid in forks)


def test_a_deadline_ends_both_processes(forks: list[int]) -> None:
    """A search far too large for its budget (no candidate replays: only exact leaves at depth 48 could end it)
    answers ``timeout`` within about the budget, its worker reaped."""
    rng = np.random.default_rng(0)
    net = random_net(rng, [5, 40, 40, 40, 2])
    lb, ub = np.full(5, -3.0), np.full(5, 3.0)
    d = Disjunct(lb, ub, np.zeros((1, 5)), np.array([[1.0, -1.0]]), np.array([-1e-6]))  # y0 <= y1 near a tie
    options = Options(threads=2)
    start = time.monotonic()
    out = input_split_search(
        net, [d], lb, ub, get_backend("highs", options), Budget.starting_now(1.0), options, lambda x: False
    )
    assert time.monotonic() - start < 3.0
    assert out.status is SolveStatus.TIMEOUT
    assert forks and all(reaped(pid) for pid in forks)


def _yes(x: np.ndarray) -> bool:
    return True


def test_a_worker_that_dies_leaves_the_search_undecided(monkeypatch: pytest.MonkeyPatch, forks: list[int]) -> None:
    """The worker killed at once: its boxes are lost, so a case that is ``unsat`` in one process ends ``unknown``
    (never ``unsat``), and the dead worker is reaped."""
    real = parallel._fork

    def killed(serve, budget):  # type: ignore[no-untyped-def]
        worker = real(serve, budget)
        os.kill(worker.pid, signal.SIGKILL)
        return worker

    monkeypatch.setattr(parallel, "_fork", killed)
    for seed in range(8):
        net, d = _case(seed)
        options = Options(threads=2)
        backend = get_backend("highs", options)
        one = input_split_search(net, [d], d.lb, d.ub, backend, Budget.starting_now(60), Options(threads=1), _yes)
        if one.status is SolveStatus.INFEASIBLE and one.stats.boxes > 64:
            two = input_split_search(net, [d], d.lb, d.ub, backend, Budget.starting_now(60), options, _yes)
            assert two.status is SolveStatus.UNKNOWN and "ended without answering" in two.note
            break
    else:
        pytest.fail("no unsat case")


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    kids: list[int] = []
    for task in tasks.iterdir() if tasks.exists() else []:
        text = (task / "children").read_text() if (task / "children").exists() else ""
        kids += [int(k) for k in text.split()]
    return kids


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not (ACAS / "onnx").exists() or (os.cpu_count() or 1) < 2, reason="ACAS Xu and 2 cores needed")
def test_ctrl_c_ends_check_with_130_and_no_orphan(tmp_path: Path) -> None:
    """``nnverify check`` on a search of about 100,000 boxes, Ctrl-C once the worker is forked: exit 130, no
    traceback, the worker gone."""
    net = ACAS / "onnx" / "ACASXU_run2a_4_2_batch_2000.onnx"
    prop = ACAS / "vnnlib" / "prop_2.vnnlib"
    cmd = [sys.executable, "-m", "nnverify.cli", "check", str(net), str(prop), "--timeout", "120"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    kids: list[int] = []
    end = time.monotonic() + 60
    while not kids and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.05)
        kids = _children(proc.pid)
    assert kids, "the search never forked its worker"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err
    end = time.monotonic() + 5
    while not all(_gone(k) for k in kids) and time.monotonic() < end:
        time.sleep(0.05)
    assert all(_gone(k) for k in kids)


def test_a_worker_error_reaches_the_parent_the_same_whatever_picklers_are_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error whose constructor does not take its message back arrives as ``WorkerLost`` even when a library has
    registered a pickler that rebuilds it (dask's ``tblib`` does for every exception), as without one."""
    exc = ResourceLimitError("bounding a box", 10.0, 5.0, 12.0)
    assert isinstance(parallel._portable(exc), parallel.WorkerLost)
    monkeypatch.setitem(copyreg.dispatch_table, ResourceLimitError, lambda e: (ResourceLimitError, exc_args))
    exc_args = ("bounding a box", 10.0, 5.0, 12.0)
    sent = parallel._portable(exc)
    assert isinstance(sent, parallel.WorkerLost) and "bounding a box" in str(sent)
