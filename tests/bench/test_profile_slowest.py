"""``bench/profile_slowest.py``: which instances it picks, how a profile is grouped by phase (a synthetic profile),
the thread-wide profiler and one profiled ``nnverify check`` process (no time is asserted)."""

from __future__ import annotations

import cProfile
import importlib.util
import io
import pstats
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import onnx
import pytest
from onnx import TensorProto, helper

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "profile_slowest.py"

PIPE = ("/r/nnverify/pipeline.py", 10, "run")
WALK = ("/r/nnverify/bounds/backward.py", 5, "walk")
PGD = ("/r/nnverify/attack.py", 3, "pgd")
MATMUL = ("~", 0, "<built-in method numpy.matmul>")
HELPER = ("/v/site-packages/numpy/helper.py", 1, "helper")
DOT = ("~", 0, "<built-in method numpy.dot>")
LOCK = ("~", 0, "<method 'acquire' of '_thread.lock' objects>")
IMPORT = ("<frozen importlib._bootstrap>", 1100, "_find_and_load")
MODULE = ("/r/nnverify/graph/core.py", 1, "<module>")
EXEC = ("~", 0, "<built-in method builtins.exec>")
CLICK = ("/v/site-packages/click/core.py", 1, "main")
LOOP_A = ("/v/site-packages/lib/a.py", 1, "a")
LOOP_B = ("/v/site-packages/lib/b.py", 1, "b")


@pytest.fixture(scope="module")
def prof() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_profile_slowest", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stats() -> dict:
    """pipeline.run (root) calls backward.walk and attack.pgd; both call numpy's matmul; walk calls an outside
    helper that calls dot, and an outside function ``a`` that calls ``b`` which calls ``a`` again (a cycle);
    a thread waits on a lock; the import machinery runs a module's body through exec; click's main has no caller."""

    def entry(tt: float, ct: float) -> tuple[int, int, float, float]:
        return (1, 1, tt, ct)

    return {
        PIPE: (1, 1, 0.1, 10.0, {}),
        WALK: (1, 1, 2.0, 6.0, {PIPE: entry(2.0, 6.0)}),
        PGD: (1, 1, 1.0, 3.0, {PIPE: entry(1.0, 3.0)}),
        MATMUL: (2, 2, 3.0, 3.0, {WALK: entry(2.0, 2.0), PGD: entry(1.0, 1.0)}),
        HELPER: (1, 1, 0.5, 0.9, {WALK: entry(0.5, 0.9)}),
        DOT: (1, 1, 0.4, 0.4, {HELPER: entry(0.4, 0.4)}),
        LOOP_A: (2, 2, 0.6, 0.8, {WALK: entry(0.3, 0.8), LOOP_B: entry(0.3, 0.4)}),
        LOOP_B: (1, 1, 0.2, 0.4, {LOOP_A: entry(0.2, 0.4)}),
        LOCK: (1, 1, 5.0, 5.0, {PIPE: entry(5.0, 5.0)}),
        IMPORT: (1, 1, 0.2, 1.0, {}),
        EXEC: (1, 1, 0.05, 0.15, {IMPORT: entry(0.05, 0.15)}),
        MODULE: (1, 1, 0.1, 0.1, {EXEC: entry(0.1, 0.1)}),
        CLICK: (1, 1, 0.3, 0.3, {}),
    }


def test_module_of_groups_nnverify_modules_imports_and_waits(prof: ModuleType) -> None:
    assert prof.module_of(WALK) == "bounds/backward"
    assert prof.module_of(PGD) == "attack"
    assert prof.module_of(MODULE) == prof.STARTUP
    assert prof.module_of(IMPORT) == prof.STARTUP
    assert prof.module_of(LOCK) == prof.WAITING
    assert prof.module_of(MATMUL) is None
    assert prof.module_of(HELPER) is None


@pytest.mark.parametrize(
    ("module", "phase"),
    [
        ("graph/onnx_import", "load/convert"),
        ("graph/ops/smooth", "network eval/ops"),
        ("graph/layers", "network eval/ops"),
        ("spec/vnnlib", "load/convert"),
        ("attack_graph", "attack"),
        ("bounds/lean", "bounds"),
        ("search/relu_bab", "search"),
        ("backends/highs", "backends/encode"),
        ("encode/milp", "backends/encode"),
        ("witness", "replay"),
        ("pipeline", "driver"),
        ("(outside: highspy)", "backends/encode"),
        ("(outside: click)", "outside nnverify"),
        ("(imports)", "start-up"),
    ],
    ids=lambda value: str(value),
)
def test_phase_of(prof: ModuleType, module: str, phase: str) -> None:
    assert prof.phase_of(module) == phase


def test_summarise_attributes_outside_time_to_the_calling_module(prof: ModuleType, stats: dict) -> None:
    summary = prof.summarise(stats)
    self_s = {g.module: g.self_s for g in summary.groups}
    # walk: its own 2.0, matmul's 2.0 (its self time when walk called it), the helper's 0.5 and dot's 0.4 under
    # it; of the cycle a <-> b: a's time called from walk (0.3) and b's share of a's calls from walk (2/3)
    assert self_s["bounds/backward"] == pytest.approx(2.0 + 2.0 + 0.5 + 0.4 + 0.3 + 0.2 * 2 / 3)
    assert self_s["attack"] == pytest.approx(2.0)
    assert self_s[prof.WAITING] == pytest.approx(5.0)
    assert self_s[prof.STARTUP] == pytest.approx(0.35)  # importlib, exec under it, the module's body
    assert self_s["(outside: click)"] == pytest.approx(0.3)  # no caller: a root, named after its package
    assert self_s[prof.OUTSIDE] == pytest.approx(0.3 + 0.2 / 3)  # the cycle's share
    total = sum(value[2] for value in stats.values())
    assert sum(self_s.values()) == pytest.approx(total)  # every second lands in exactly one group
    assert summary.wait_s == pytest.approx(5.0)
    assert summary.work_s == pytest.approx(total - 5.0)


def test_summarise_inclusive_counts_entries_from_outside_the_group(prof: ModuleType, stats: dict) -> None:
    inclusive = {g.module: g.inclusive_s for g in prof.summarise(stats).groups}
    assert inclusive["bounds/backward"] == pytest.approx(6.0)
    assert inclusive["attack"] == pytest.approx(3.0)
    assert inclusive["pipeline"] == pytest.approx(10.0)  # a root: its whole cumulative time
    assert inclusive[prof.STARTUP] == pytest.approx(1.0)  # the module body runs inside the import: not twice


def test_summarise_top_functions_by_self_time(prof: ModuleType, stats: dict) -> None:
    top = prof.summarise(stats, top_n=3).top
    assert [row[0] for row in top] == [
        "<method 'acquire' of '_thread.lock' objects>",
        "<built-in method numpy.matmul>",
        "bounds/backward.py:5(walk)",
    ]


def test_render_lists_phases_and_folds_small_groups(prof: ModuleType, stats: dict) -> None:
    text = prof.render(prof.summarise(stats), wall_s=10.0, min_share=0.05)
    assert "self time by phase (share of work): bounds" in text
    assert "| bounds | `bounds/backward` | 6.00 | 60 |" in text
    assert "others |" in text  # start-up (0.3 of ~8.6 s of work) is under 5 %
    assert "`bounds/backward.py:5(walk)`" in text


def test_package_of(prof: ModuleType) -> None:
    assert prof.package_of(CLICK) == "click"
    assert prof.package_of(("/usr/lib/python3.11/threading.py", 7, "run")) == "threading"
    assert prof.package_of(MATMUL) == "builtins"


def test_label_shortens_paths(prof: ModuleType) -> None:
    assert prof.label(HELPER) == "numpy/helper.py:1(helper)"
    assert prof.label(("/usr/lib/python3.11/threading.py", 7, "wait")) == "threading.py:7(wait)"
    assert prof.label(MATMUL) == "<built-in method numpy.matmul>"


def test_pick_slowest_solved_and_timeout_with_the_runs_timeout_capped(prof: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / "results" / "s"
    folder.mkdir(parents=True)
    (folder / "results.csv").write_text(
        "category,onnx,vnnlib,prepare_time,result,run_time,method,peak_mem_mb,note\n"
        "s,n.onnx,a.vnnlib,0,unsat,3.5,m,1,\n"
        "s,n.onnx,b.vnnlib,0,sat,80.0,m,1,\n"
        "s,n.onnx,c.vnnlib,0,timeout,300.2,budget,1,\n"
        "s,n.onnx,d.vnnlib,0,unknown,9.0,m,1,\n"
    )
    instances = tmp_path / "instances.csv"
    instances.write_text("n.onnx,a.vnnlib,900\nn.onnx,b.vnnlib,900\nn.onnx,c.vnnlib,900\nn.onnx,d.vnnlib,900\n")
    solved, timeout = prof.pick_slowest(folder / "results.csv", instances, cap_s=500.0, timeout_cap_s=60.0)
    assert (solved.set, solved.kind, solved.vnnlib, solved.recorded) == ("s", "solved", "b.vnnlib", "sat")
    assert solved.timeout_s == 300.0  # the run's own timeout (its longest timeout row), not instances.csv's
    assert (timeout.kind, timeout.vnnlib, timeout.timeout_s) == ("timeout", "c.vnnlib", 60.0)
    (only,) = prof.pick_slowest(folder / "results.csv", instances, cap_s=100.0, timeout_cap_s=60.0)[:1]
    assert only.timeout_s == 100.0


def test_thread_profiles_merge_threads_started_later(prof: ModuleType) -> None:
    def work_in_thread() -> int:
        return sum(range(1000))

    profiles = prof.ThreadProfiles()
    profiles.start()
    try:
        worker = threading.Thread(target=work_in_thread)
        worker.start()
        worker.join()
    finally:
        merged = profiles.stop()
    names = {key[2] for key in merged.stats}  # type: ignore[attr-defined]
    assert "work_in_thread" in names
    assert len(profiles.threads) == 1


@pytest.fixture
def tiny_instance(tmp_path: Path) -> tuple[Path, Path]:
    """y = relu(x0 - x1) on [0, 1]^2; the property y >= 2 cannot hold (unsat)."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [2, 1], [1.0, -1.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [weights],
    )
    net = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), net)
    spec = tmp_path / "tiny.vnnlib"
    spec.write_text(
        "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
        "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= X_1 1.0))\n"
        "(assert (>= Y_0 2.0))\n"
    )
    return net, spec


def test_child_profiles_a_check_run(prof: ModuleType, tiny_instance: tuple[Path, Path], tmp_path: Path) -> None:
    net, spec = tiny_instance
    out = tmp_path / "run.prof"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "child", str(out), "check", str(net), str(spec), "--timeout", "30"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "unsat"
    summary = prof.summarise(pstats.Stats(str(out), stream=io.StringIO()).stats)  # type: ignore[attr-defined]
    modules = {g.module for g in summary.groups}
    assert {"pipeline", "cli", prof.STARTUP} <= modules  # the verify thread's work and the imports are there


def test_by_phase_shares_of_the_work_sum_to_one(prof: ModuleType, stats: dict) -> None:
    shares = dict(prof.by_phase(prof.summarise(stats)))
    assert "waiting" not in shares
    assert sum(shares.values()) == pytest.approx(1.0)
    assert next(iter(shares)) == "bounds"  # the largest first


def test_rerender_summarises_kept_profiles_again(prof: ModuleType, stats: dict, tmp_path: Path) -> None:
    profile = pstats.Stats(_stats_source(), stream=io.StringIO())
    profile.stats = stats  # type: ignore[attr-defined]
    profile.dump_stats(str(tmp_path / "s.solved.prof"))
    (tmp_path / "s.solved.md").write_text("### s: slowest solved\n\nheading line\n\nwork 0.0 thread-s, stale\n")
    header = ",".join(prof.RUNS_HEADER)
    (tmp_path / "runs.csv").write_text(f"{header}\ns,solved,n.onnx,a.vnnlib,unsat,3.5,60.0,unsat,m,10.0,4.0\n")
    prof.rerender(tmp_path)
    section = (tmp_path / "s.solved.md").read_text()
    assert section.startswith("### s: slowest solved\n\nheading line\n\nwork ")
    assert "stale" not in section and "`bounds/backward`" in section
    overview = (tmp_path / "summary.md").read_text()
    assert "| s | solved | unsat 3.5 s | unsat (60 s) | 10.0 | 4.0 | bounds" in overview


def _stats_source() -> cProfile.Profile:
    """An empty profile to build a ``pstats.Stats`` from (its statistics are then replaced)."""
    profile = cProfile.Profile()
    profile.enable()
    profile.disable()
    return profile
