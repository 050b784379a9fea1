"""The ReLU search alone (no refinement, one core; the README table ran `MODE=on` as `cur`) on one MNIST-FC
instance, with or without propagation.

Usage, from the repo root: ``MODE=noprop .venv/bin/python <this file> 256x4 11_0.05 150``

``MODE``: ``on`` (default, the code as committed), ``noprop`` (``propagate`` replaced by the identity),
``before`` (also propagate before the back-substitution), ``twice`` (``tighten`` run twice). Prints the
verdict, seconds, domains, depth and the tree measure closed (a domain proven at depth d closes 2^-d).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import nnverify.search.relu_bab as rb
from nnverify import Options, verify

MODE = os.environ.get("MODE", "on")
DATA = "../shared/benchmarks/mnistfc/"
closed = {"measure": 0.0, "roots": 1}
tighten, evaluate = rb._Search.tighten, rb._Search.evaluate


def _propagate_first(search: rb._Search, dom: rb._Domains) -> None:
    sel = np.nonzero(dom.since < rb._CLEAN)[0]
    for start in range(0, sel.size, rb.PROPAGATE_CHUNK):
        part = sel[start : start + rb.PROPAGATE_CHUNK]
        tight, crossed = rb.propagate(search.graph, search.bounds_of(dom, part), **search.margins)
        for s in search.pre:
            dom.lb[s][part], dom.ub[s][part] = tight.lb[s], tight.ub[s]
            dom.lb[s][part[crossed], 0], dom.ub[s][part[crossed], 0] = 1.0, -1.0  # crossing: empty
        dom.since[part] = search.pre[0]


def _tighten(search: rb._Search, dom: rb._Domains) -> np.ndarray:
    if MODE == "before":
        _propagate_first(search, dom)
    empty = tighten(search, dom)
    if MODE == "twice":
        dom.since[dom.depth > 0] = search.pre[0]
        empty |= tighten(search, dom)
    return empty


def _evaluate(search: rb._Search, dom: rb._Domains, iterations: int):  # type: ignore[no-untyped-def]
    out = evaluate(search, dom, iterations)
    if iterations == rb.ROOT_ITERATIONS:
        closed["roots"] = len(dom)
    closed["measure"] += float(np.sum(np.where(out[0] > 0, 2.0 ** -dom.depth.astype(float), 0.0)))
    return out


rb._Search.tighten, rb._Search.evaluate = _tighten, _evaluate
if MODE == "noprop":
    rb.propagate = lambda graph, bounds, **kw: (bounds, np.zeros(bounds.lb[0].shape[0], dtype=bool))
net, prop, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
t0 = time.time()
options = Options(timeout_s=seconds, refine_bounds=False, threads=1)
r = verify(f"{DATA}onnx/mnist-net_{net}.onnx", f"{DATA}vnnlib/prop_{prop}.vnnlib", options)
print(
    MODE, net, prop, r.verdict, round(time.time() - t0, 1), r.stats.get("relu_boxes"),
    r.stats.get("relu_max_depth"), "closed", round(closed["measure"] / closed["roots"], 4),
)  # fmt: skip
