"""Run ``input_split_search`` alone on ACAS Xu instances in this process: per input box its status, boxes, exact
leaves and depth, then CPU (user + system, with the second search process's) and wall seconds (no start-up, no
attack); ``THREADS=1`` in the environment keeps the search in one process. ``--prof`` adds a cProfile on the
process-time clock. ``GROUP``/``BATCH`` in the environment override ``search/boxes.py``'s and ``search/bab.py``'s
constants (A/B runs).

Usage: ``python search_alone.py [--prof] 4_2:2 3_3:9 ...`` (network ``i_j``, property number); run it with the
tree to measure first on ``PYTHONPATH``.
"""

import cProfile
import os
import pstats
import resource
import sys
import time

import numpy as np

from nnverify.backends import get_backend
from nnverify.backends.pool import SolverPool
from nnverify.budget import Budget
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers
from nnverify.graph.tail import strip_softmax
from nnverify.options import Options
from nnverify.pipeline import _group_by_box
from nnverify.search import bab, boxes
from nnverify.spec.vnnlib import load_property
from nnverify.witness import OnnxRunner, check_counterexample

S = "/work/shared/benchmarks/acasxu/"


def run(inst: str, timeout: float = 300.0) -> tuple[list[tuple[str, int, int, int]], float, float]:
    net, p = inst.split(":")
    path = f"{S}onnx/ACASXU_run2a_{net}_batch_2000.onnx"
    graph = load_network(path)
    prop = load_property(f"{S}vnnlib/prop_{p}.vnnlib", graph.n_inputs, graph.n_outputs)
    analysis, _ = strip_softmax(graph, prop)
    opts = Options(threads=int(os.environ.get("THREADS", "0")))
    with SolverPool() as pool:
        backend = get_backend(opts.backend, opts, pool)
        layers = to_layers(analysis, merge=not backend.exact)
        ort = OnnxRunner(path)
        cpu, wall = _cpu(), time.monotonic()
        out = []
        for group in _group_by_box(prop.disjuncts):
            lb, ub = group[0].lb, group[0].ub

            def replay(x: np.ndarray, lb: np.ndarray = lb, ub: np.ndarray = ub) -> bool:
                point = np.clip(x, lb, ub).astype(np.float32).astype(np.float64)
                return check_counterexample(ort, prop, point).valid

            budget = Budget(time.monotonic() + timeout)
            res = bab.input_split_search(layers, group, lb, ub, backend, budget, opts, replay)
            out.append((res.status.value, res.stats.boxes, res.stats.leaves_exact, res.stats.max_depth))
            if res.status.value == "feasible":
                break
        return out, _cpu() - cpu, time.monotonic() - wall


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its reaped children (the second search process)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    boxes.GROUP = int(os.environ.get("GROUP", str(boxes.GROUP)))
    bab.BATCH = int(os.environ.get("BATCH", str(bab.BATCH)))
    prof = "--prof" in sys.argv
    for inst in [a for a in sys.argv[1:] if not a.startswith("--")]:
        profiler = cProfile.Profile(time.process_time) if prof else None
        if profiler is not None:
            profiler.enable()
        res, cpu, wall = run(inst)
        print(f"{inst} {res} cpu={cpu:.2f} wall={wall:.2f}", flush=True)
        if profiler is not None:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
