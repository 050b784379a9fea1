"""Run ``input_split_search`` alone (no start-up, no attack) on instances in this process: per instance its status,
boxes, exact leaves, depth, CPU (user + system, with the second search process's) and wall seconds. A/B knobs from
the environment: ``THREADS`` (1: one process), ``POLISH_STEPS`` / ``POLISH_EVERY`` /
``POLISH_POINTS`` (``search/bab.py``), ``SAMPLES``
(the attack's), ``ATTACK=1`` (run the pipeline's attack first and report it; ``SEARCH=0``: only it), ``TIMEOUT``
(seconds). The experiments that were not kept (a mixture of the rows in ``search/shrink.py``, other smear weights,
an adaptive refinement in the attack) had knobs here too: see ``docs/engine.md``.

Usage: ``python search_alone.py INST ...`` where INST is ``acas:4_2:2`` (ACAS Xu network, property),
``c5h:ctrl_64x4_prop1`` (``properties/control5_hard``), ``c5:ctrl_64x3_prop5`` (``properties/control5``) or
``lin:NAME`` (a ``linearizenn_2024`` property file stem, with its network from ``instances.csv``).
"""

import csv
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from nnverify import attack
from nnverify.backends import get_backend
from nnverify.backends.pool import SolverPool
from nnverify.bounds import lean
from nnverify.budget import Budget
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers
from nnverify.graph.tail import strip_softmax
from nnverify.options import Options
from nnverify.pipeline import _group_by_box
from nnverify.search import bab
from nnverify.spec.vnnlib import load_property
from nnverify.witness import OnnxRunner, check_counterexample

REPO = Path(__file__).resolve().parents[3]
BENCH = REPO.parent / "shared" / "benchmarks"


def paths(inst: str) -> tuple[str, str]:
    kind, name = inst.split(":", 1)
    if kind == "acas":
        net, p = name.split(":")
        return f"{BENCH}/acasxu/onnx/ACASXU_run2a_{net}_batch_2000.onnx", f"{BENCH}/acasxu/vnnlib/prop_{p}.vnnlib"
    if kind in ("c5h", "c5"):
        root = REPO / "properties" / ("control5_hard" if kind == "c5h" else "control5")
        return str(root / "onnx" / f"{name.rsplit('_prop', 1)[0]}.onnx"), str(root / "vnnlib" / f"{name}.vnnlib")
    root = BENCH / "linearizenn_2024"
    with open(root / "instances.csv") as f:
        row = next(r for r in csv.reader(f) if r and Path(r[1]).stem == name)
    return str(root / row[0]), str(root / row[1])


def run(inst: str, timeout: float = 120.0) -> tuple[list[tuple[str, int, int, int]], float, float]:
    net_path, prop_path = paths(inst)
    graph = load_network(net_path)
    prop = load_property(prop_path, graph.n_inputs, graph.n_outputs)
    analysis, _ = strip_softmax(graph, prop)
    opts = Options(threads=int(os.environ.get("THREADS", "0")), attack_samples=int(os.environ.get("SAMPLES", "2000")))
    with SolverPool() as pool:
        backend = get_backend(opts.backend, opts, pool)
        layers = to_layers(analysis, merge=not backend.exact)
        ort = OnnxRunner(net_path)
        cpu, wall = _cpu(), time.monotonic()
        out = []
        if os.environ.get("ATTACK") == "1":
            ranked = attack.ranked_samples(layers, list(prop.disjuncts), samples=opts.attack_samples, seed=0, keep=16)
            found = attack.violating(ranked) or attack.refine_samples(layers, list(prop.disjuncts), ranked)
            found = found or attack.pgd_candidates(layers, list(prop.disjuncts), seed=0)
            ok = any(check_counterexample(ort, prop, x.astype(np.float32).astype(np.float64)).valid for x in found)
            out.append(("attack-found" if ok else "attack-none", 0, 0, 0))
            if ok or os.environ.get("SEARCH") == "0":
                return out, _cpu() - cpu, time.monotonic() - wall
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
    bab.POLISH_EVERY = int(os.environ.get("POLISH_EVERY", str(bab.POLISH_EVERY)))
    lean.PRIMAL_RULE = int(os.environ.get("PRIMAL", str(lean.PRIMAL_RULE)))
    bab.POLISH_POINTS = int(os.environ.get("POLISH_POINTS", str(bab.POLISH_POINTS)))
    bab.POLISH_STEPS = int(os.environ.get("POLISH_STEPS", str(bab.POLISH_STEPS)))
    timeout = float(os.environ.get("TIMEOUT", "120"))
    for inst in sys.argv[1:]:
        res, cpu, wall = run(inst, timeout)
        knobs = f"primal={lean.PRIMAL_RULE} polish={bab.POLISH_STEPS}/{bab.POLISH_EVERY}/{bab.POLISH_POINTS}"
        print(f"{inst} {knobs} {res} cpu={cpu:.2f} wall={wall:.2f}", flush=True)


if __name__ == "__main__":
    main()
