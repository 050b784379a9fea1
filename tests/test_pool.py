"""The solver pool: cancellation, abandoned solves, the wait at exit, HiGHS shared by threads, the CLI's exit."""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from test_deadline import _prop_file, gemm_net

from nnverify.backends import BACKENDS, Capabilities, backend_class, get_backend
from nnverify.backends.base import SolveStatus
from nnverify.backends.highs import HighsBackend
from nnverify.backends.pool import SolverPool, default_pool, work_remains
from nnverify.encode.problem import Problem

ROOT = Path(__file__).resolve().parents[1]


class StuckHighs:
    """Stands in for ``highspy.Highs`` whose solve ignores its time limit until ``release`` is set."""

    def __init__(self, release: threading.Event) -> None:
        self.release, self.cancelled = release, False

    def startSolve(self) -> threading.Thread:
        thread = threading.Thread(target=self.release.wait, daemon=True)
        thread.start()
        return thread

    def cancelSolve(self) -> None:
        self.cancelled = True

    def is_solver_running(self) -> bool:
        return False


def test_an_overrunning_solve_is_abandoned_reported_and_waited_for() -> None:
    release = threading.Event()
    try:
        with SolverPool() as pool:
            stuck = StuckHighs(release)
            assert pool.run_highs(stuck, 0.01) is False  # not waited for past its limit and the grace
            assert stuck.cancelled
            assert pool.abandoned() == 1 and work_remains()  # reported, and the CLI would leave by os._exit
            assert not pool.wait(0.05)
        release.set()
        assert pool.wait(10.0) and pool.abandoned() == 0
    finally:
        release.set()


def test_a_cancel_event_or_closing_the_pool_stops_the_wait() -> None:
    release = threading.Event()
    try:
        pool = SolverPool()
        cancel = threading.Event()
        threading.Timer(0.1, cancel.set).start()
        stuck = StuckHighs(release)
        assert pool.run_highs(stuck, 600.0, cancel) is False and stuck.cancelled
        # closing the pool (verify() leaving its with-block) cancels a solve running in another thread
        answers: list[bool] = []
        other = StuckHighs(release)
        solver = threading.Thread(target=lambda: answers.append(pool.run_highs(other, 600.0)))
        solver.start()
        pool.close()
        solver.join(30.0)
        assert not solver.is_alive() and answers == [False] and other.cancelled
        assert pool.stopping() and default_pool().stopping(cancel) and not default_pool().stopping()
    finally:
        release.set()


def test_solves_of_closed_pool_are_cancelled_not_run_to_their_limit() -> None:
    pool = SolverPool()
    pool.close()
    result = HighsBackend(pool=pool).solve(_relu_problem(np.random.default_rng(0), 0.0), timeout_s=60.0)
    assert result.status is SolveStatus.TIMEOUT


def _relu_problem(rng: np.random.Generator, threshold: float, n: int = 10, k: int = 16) -> Problem:
    """``sum_j c_j relu(w_j x + b_j) >= threshold`` over ``x in [-1, 1]^n``: a small MILP, sat or not by
    ``threshold``."""
    p = Problem()
    xs = p.add_vars(-np.ones(n), np.ones(n))
    ys = []
    for _ in range(k):
        w, b = rng.normal(size=n), rng.normal()
        reach = float(np.abs(w).sum() + abs(b))
        z, y = p.add_var(-reach, reach), p.add_var(0.0, reach)
        p.add_row(np.append(xs, z), np.append(w, -1.0), -b, -b)
        p.add_relu(z, y)
        ys.append(y)
    p.add_row(np.array(ys), rng.normal(size=k), threshold)
    return p


def test_two_users_of_highs_through_pools_do_not_corrupt_each_other() -> None:
    """Two runs (each its own pool) solve MILPs at once while a third thread runs HiGHS directly (as the
    refinement workers do): every answer equals the one given alone."""
    rng = np.random.default_rng(7)
    problems = [_relu_problem(rng, t) for t in np.linspace(0.0, 40.0, 10)]
    alone = [HighsBackend().solve(p, timeout_s=60.0).status for p in problems]
    assert SolveStatus.FEASIBLE in alone and SolveStatus.INFEASIBLE in alone

    answers: dict[str, list[SolveStatus]] = {}
    errors: list[BaseException] = []

    def user(name: str, order: list[int]) -> None:
        try:
            with SolverPool() as pool:
                backend = get_backend("highs", pool=pool)
                answers[name] = [backend.solve(problems[i], timeout_s=60.0).status for i in order]
        except BaseException as exc:
            errors.append(exc)

    def direct() -> None:
        import highspy

        pool = default_pool()
        try:
            pool.ready_scheduler({"threads": 1})
            with pool.direct():
                for _ in range(30):
                    h = highspy.Highs()
                    h.setOptionValue("output_flag", False)
                    h.setOptionValue("threads", 1)
                    h.addVars(2, np.zeros(2), np.ones(2))
                    pool.run_direct(h)
                    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        except BaseException as exc:
            errors.append(exc)

    forward, backward = list(range(len(problems))), list(reversed(range(len(problems))))
    threads = [
        threading.Thread(target=user, args=("a", forward)),
        threading.Thread(target=user, args=("b", backward)),
        threading.Thread(target=direct),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120.0)
    assert not errors, errors
    assert answers["a"] == alone and answers["b"] == alone[::-1]


def test_backends_declare_capabilities() -> None:
    for name in BACKENDS:
        caps = backend_class(name).capabilities
        assert isinstance(caps, (Capabilities, property)), name
    assert HighsBackend.capabilities.cancellable and not HighsBackend.capabilities.thread_safe
    assert backend_class("cpsat").capabilities.exact  # type: ignore[union-attr]
    assert backend_class("gurobi").capabilities.size_limit == 2000  # type: ignore[union-attr]
    clpq = backend_class("clpq")
    assert clpq(precision="exact").capabilities.exact and not clpq(precision="float").capabilities.exact  # type: ignore[call-arg]
    # backends that are not thread-safe share one lock across pools (HiGHS's scheduler is process-wide)
    assert SolverPool().serial(Capabilities()) is SolverPool().serial(HighsBackend.capabilities)
    assert SolverPool().serial(Capabilities(thread_safe=True)) is not SolverPool().serial(Capabilities())


def test_search_and_bounds_do_not_reach_into_backends() -> None:
    """``bounds/`` and ``search/`` import no private backend helper, and no module probes a backend by
    ``getattr`` (capabilities are declared)."""
    for folder in ("bounds", "search"):
        for path in (ROOT / "nnverify" / folder).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nnverify.backends"):
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    assert not private, f"{path.name} imports {private} from {node.module}"
            assert "getattr(backend" not in path.read_text(), path.name
    for path in (ROOT / "nnverify").rglob("*.py"):
        assert "resetGlobalScheduler" not in path.read_text() or path.name == "pool.py", path


SCRIPT = """
import atexit, sys, time
import nnverify.pipeline as pipeline
from nnverify.backends.base import BackendResult, Capabilities, SolveStatus

class Slow:
    name, exact, capabilities = "slow", False, Capabilities()
    def solve(self, problem, *, timeout_s):
        time.sleep(60)
        return BackendResult(SolveStatus.TIMEOUT)

pipeline.get_backend = lambda name, options=None, pool=None: Slow()
pipeline.uses_relu_splitting = lambda graph: False
pipeline._attack = lambda run: None
atexit.register(lambda: print("teardown", file=sys.stderr))
sys.argv = ["nnverify", "check", sys.argv[1], sys.argv[2], "--timeout", "10"]
from nnverify.cli import entry
entry()
"""


def test_the_program_exits_cleanly_with_an_abandoned_solve(tmp_path: Path) -> None:
    net = gemm_net(tmp_path / "net.onnx", [20, 8, 1])
    prop = _prop_file(tmp_path, 20, 1, y_min=-1000)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(net), str(prop)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "timeout"
    assert "Traceback" not in proc.stderr
    assert "abandoned" in proc.stdout + proc.stderr  # the run reached the slow solve (start-up did not spend it)
    assert "teardown" not in proc.stderr  # the pool said a solve still runs: left by os._exit, no teardown
