"""The forward-split search of one instance in one or two processes: CPU per batch of boxes, wall, CPU and peak
memory of both processes, and a cProfile on request.

Usage, from the repository root: ``.venv/bin/python bench/results/cgan_2023/search_alone.py NET PROP SECONDS
[CORES [profile]]``. ``NET`` is ``1`` or ``3`` (the 64x64 cGAN with that many channels), another cGAN's name after
``cGAN_`` (``imgSz32_nCh_3_upsample``) or an ONNX path (then ``PROP`` is the VNN-LIB path); ``CORES`` 1 (the
default) or 2; ``profile``: a cProfile of the main process. Runs ``forward_split._plan`` with the property, then
``forward_split_search`` alone (no graph attack, no start-up); prints each batch's process, depths, CPU seconds and
lowest row bound.
"""

from __future__ import annotations

import cProfile
import glob
import os
import pstats
import resource
import sys
import time

import numpy as np

from nnverify.budget import Budget
from nnverify.graph.onnx_import import load_network
from nnverify.search import forward_split
from nnverify.spec.vnnlib import load_property

B = "../shared/benchmarks/cgan_2023/"
net, prop, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
cores = int(sys.argv[4]) if len(sys.argv) > 4 else 1
profiled = sys.argv[5:] == ["profile"]
if net.endswith(".onnx"):
    onnx_path, vnnlib_path = net, prop
else:
    name = f"imgSz64_nCh_{net}" if net in ("1", "3") else net
    onnx_path, vnnlib_path = B + f"onnx/cGAN_{name}.onnx", glob.glob(B + f"vnnlib/cGAN_{name}_prop_{prop}_*")[0]
g = load_network(onnx_path)
p = load_property(vnnlib_path, g.n_inputs, g.n_outputs)
budget = Budget.starting_now(secs)
wall0, t0 = time.monotonic(), time.process_time()
print("load cpu", round(t0, 1), flush=True)
plan = forward_split._plan(g, budget, list(p.disjuncts))
print("plan", type(plan).__name__, getattr(plan, "cut", None), "cpu", round(time.process_time() - t0, 1), flush=True)
main = os.getpid()
bound = forward_split._bound


def logged(*args):  # type: ignore[no-untyped-def]
    t = time.process_time()
    out = bound(*args)
    low = np.round(out[0].min(axis=1), 4).tolist()
    who = "main" if os.getpid() == main else "worker"
    print(who, "batch", len(args[3].lb), "depth", args[3].depth.tolist(), "cpu", round(time.process_time() - t, 1),
          low, flush=True)  # fmt: skip
    return out


forward_split._bound = logged
profile = cProfile.Profile()
if profiled:
    profile.enable()
try:
    out = forward_split.forward_split_search(g, plan, list(p.disjuncts), budget, lambda x: False, cores)
    print(out.status, out.stats)
except Exception as exc:  # the budget ran out: still print the figures
    print("stopped", exc)
profile.disable()
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"wall {time.monotonic() - wall0:.1f} s (plan included); CPU user+sys: main {me.ru_utime + me.ru_stime:.1f} s,"
      f" worker {kids.ru_utime + kids.ru_stime:.1f} s; peak MB main {me.ru_maxrss / 1024:.0f},"
      f" worker {kids.ru_maxrss / 1024:.0f}")  # fmt: skip
if profiled:
    pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
