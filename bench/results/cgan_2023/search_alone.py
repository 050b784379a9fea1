"""The forward-split search of one 64x64 cGAN instance in one process, CPU per batch of boxes, and a cProfile.

Usage, from the repository root: ``.venv/bin/python bench/results/cgan_2023/search_alone.py NCH PROP SECONDS``
(``NCH`` 1 or 3). Runs ``forward_split._plan`` with the property, then ``forward_split_search`` alone (no graph
attack, no start-up); prints each batch's depths, CPU seconds and lowest row bound.
"""

from __future__ import annotations

import cProfile
import glob
import pstats
import sys
import time

import numpy as np

from nnverify.budget import Budget
from nnverify.graph.onnx_import import load_network
from nnverify.search import forward_split
from nnverify.spec.vnnlib import load_property

B = "../shared/benchmarks/cgan_2023/"
net, prop, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
g = load_network(B + f"onnx/cGAN_imgSz64_nCh_{net}.onnx")
p = load_property(glob.glob(B + f"vnnlib/cGAN_imgSz64_nCh_{net}_prop_{prop}_*")[0], g.n_inputs, g.n_outputs)
budget = Budget.starting_now(secs)
t0 = time.process_time()
plan = forward_split._plan(g, budget, list(p.disjuncts))
print("plan", type(plan).__name__, getattr(plan, "cut", None), "cpu", round(time.process_time() - t0, 1), flush=True)
bound = forward_split._bound


def logged(*args):  # type: ignore[no-untyped-def]
    t = time.process_time()
    out = bound(*args)
    low = np.round(out[0].min(axis=1), 4).tolist()
    print("batch", len(args[3].lb), "depth", args[3].depth.tolist(), "cpu", round(time.process_time() - t, 1), low)
    return out


forward_split._bound = logged
profile = cProfile.Profile()
profile.enable()
try:
    out = forward_split.forward_split_search(g, plan, list(p.disjuncts), budget, lambda x: False)
    print(out.status, out.stats)
except Exception as exc:  # the budget ran out: still print the profile
    print("stopped", exc)
profile.disable()
print("cpu", round(time.process_time() - t0, 1))
pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
