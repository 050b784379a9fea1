#!/usr/bin/env python3
"""A deterministic trace of the ReLU branch and bound and of the α-CROWN passes, to prove a refactor changed nothing.

For each MNIST-FC instance: the search (one thread, no MILP race, no refinement) is stopped after ``--domains``
domains; every batch it bounds prints each domain's depth, sound lower bound (``repr``: every bit) and branched
neuron, plus digests of the batch's duals and minimisers. Then the final bounds of ``optimized_layer_bounds``,
``neuron_bounds`` and ``optimize`` on a few (net, box) pairs, as digests of the float64 arrays. Run it on a
snapshot of the code before the change and after; the two outputs must be identical byte for byte.

Usage (repository root; one BLAS thread so matrix products add in one order)::

    mkdir -p /tmp/before && git archive HEAD | tar -x -C /tmp/before
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=/tmp/before .venv/bin/python bench/refactor_trace.py > before.txt
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/refactor_trace.py > after.txt && cmp before.txt after.txt
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nnverify.backends import get_backend
from nnverify.bounds.backward import LayerBounds, crown_bounds
from nnverify.bounds.interval import interval_bounds
from nnverify.budget import Budget
from nnverify.graph.layers import LayerGraph
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers
from nnverify.graph.tail import strip_softmax
from nnverify.options import Options
from nnverify.spec.property import Disjunct
from nnverify.spec.vnnlib import load_property

#: The VNN-COMP MNIST-FC set (``NNVERIFY_BENCHMARKS``, as the tests read it).
BENCH = Path(os.environ.get("NNVERIFY_BENCHMARKS", "/work/shared/benchmarks")) / "mnistfc"
INSTANCES = (
    ("mnist-net_256x4.onnx", "prop_3_0.05.vnnlib"),
    ("mnist-net_256x4.onnx", "prop_8_0.03.vnnlib"),
    ("mnist-net_256x6.onnx", "prop_7_0.03.vnnlib"),
    ("mnist-net_256x4.onnx", "prop_6_0.03.vnnlib"),
)
PASSES = (
    ("mnist-net_256x2.onnx", "prop_0_0.03.vnnlib"),
    ("mnist-net_256x4.onnx", "prop_1_0.05.vnnlib"),
    ("mnist-net_256x6.onnx", "prop_2_0.03.vnnlib"),
)
MARGINS = {"margin_rel": Options().bound_margin_rel, "margin_abs": Options().bound_margin_abs}


class _Enough(Exception):
    """Raised from inside the search once the trace has its domains."""


def _find(*where: tuple[str, str]) -> Any:
    """The first ``(module, name)`` that exists: the code before and after a move."""
    for module, name in where:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if found is not None:
            return found
    raise SystemExit(f"error: none of {where} exists")


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _load(onnx: str, vnnlib: str) -> tuple[LayerGraph, list[Disjunct]]:
    graph = load_network(BENCH / "onnx" / onnx)
    prop = load_property(BENCH / "vnnlib" / vnnlib, graph.n_inputs, graph.n_outputs)
    analysis, _ = strip_softmax(graph, prop)
    return to_layers(analysis, merge=True), list(prop.disjuncts)


def _search_trace(onnx: str, vnnlib: str, domains: int, out: Callable[[str], None]) -> None:
    """Run the ReLU search on one instance until ``domains`` domains were bounded, printing each batch."""
    search_cls = _find(("nnverify.search.relu_search", "ReluSearch"), ("nnverify.search.relu_bab", "_Search"))
    relu_split_search = _find(("nnverify.search.relu_bab", "relu_split_search"))
    layers, disjuncts = _load(onnx, vnnlib)
    evaluate = search_cls.evaluate
    seen = [0]

    def traced(self: Any, dom: Any, iterations: int) -> Any:
        if seen[0] >= domains:  # a search thread may take one more batch before the main thread stops it
            raise _Enough
        best, duals, choice, x_star = evaluate(self, dom, iterations)
        out(f"batch {len(dom)} iterations {iterations} duals {_digest(*_flat(duals))} x {_digest(x_star)}")
        for i in range(len(dom)):
            where = f"{int(choice[i, 0])}:{int(choice[i, 1])}"
            out(f"  d{int(dom.depth[i])} k{int(dom.disjunct[i])} {float(best[i])!r} -> {where}")
        seen[0] += len(dom)
        if seen[0] >= domains:
            raise _Enough
        return best, duals, choice, x_star

    out(f"== search {onnx} {vnnlib}")
    search_cls.evaluate = traced
    try:
        outcome = relu_split_search(
            layers,
            disjuncts,
            disjuncts[0].lb,
            disjuncts[0].ub,
            get_backend("highs", Options()),
            Budget.starting_now(3600),
            Options(),
            lambda x: False,
            race_milp=False,
            refine=False,
            search_threads=1,
        )
        out(f"finished {outcome.status} after {seen[0]} domains")
    except _Enough:
        out(f"stopped after {seen[0]} domains")
    finally:
        search_cls.evaluate = evaluate


def _flat(duals: Any) -> list[np.ndarray]:
    return [duals.alpha[k] for k in sorted(duals.alpha)] + [duals.beta[k] for k in sorted(duals.beta)]


def _passes_trace(onnx: str, vnnlib: str, out: Callable[[str], None]) -> None:
    """Final bounds of the α-CROWN passes on the instance's box (and on a narrower box inside it)."""
    optimized = importlib.import_module("nnverify.bounds.optimized")
    duals_cls = _find(("nnverify.bounds.relu_pass", "Duals"), ("nnverify.bounds.optimized", "Duals"))
    layers, disjuncts = _load(onnx, vnnlib)
    d = disjuncts[0]
    mid = (d.lb + d.ub) / 2
    for name, lb, ub in (("box", d.lb, d.ub), ("half", (d.lb + mid) / 2, (d.ub + mid) / 2)):
        itv = interval_bounds(layers, lb[None], ub[None], **MARGINS)
        crown = crown_bounds(layers, itv.lb, itv.ub, **MARGINS)
        slopes: dict[int, Any] = {}
        tight = optimized.optimized_layer_bounds(layers, crown, iterations=10, slopes=slopes, **MARGINS)
        out(f"== passes {onnx} {vnnlib} {name}")
        out(f"layer bounds {_digest(*tight.lb, *tight.ub)} slopes {sorted(slopes)}")
        for k, s in sorted(slopes.items()):
            out(f"  slopes {k}: {_digest(s.idx, *(s.alpha[r] for r in sorted(s.alpha)))}")
        for k in sorted(slopes):
            idx = slopes[k].idx
            plain = optimized.neuron_bounds(layers, tight, k, idx, iterations=0, **MARGINS)
            reused = optimized.neuron_bounds(layers, tight, k, idx, iterations=0, alpha=slopes[k].rows(idx), **MARGINS)
            out(f"  neurons {k}: {_digest(plain[0], plain[1])} with slopes {_digest(reused[0], reused[1])}")
        a_y = np.stack([dd.a_y for dd in disjuncts if dd.n_rows == disjuncts[0].n_rows])
        a_x = np.stack([dd.a_x for dd in disjuncts if dd.n_rows == disjuncts[0].n_rows])
        b = np.stack([dd.b for dd in disjuncts if dd.n_rows == disjuncts[0].n_rows])
        many = LayerBounds(
            [np.repeat(v, a_y.shape[0], axis=0) for v in tight.lb],
            [np.repeat(v, a_y.shape[0], axis=0) for v in tight.ub],
        )
        duals = duals_cls.initial(layers, many, a_y.shape[1], {})
        lower, best, passed, coef_x = optimized.optimize(
            layers, many, layers.output, a_y, a_x, b, duals, {}, iterations=15, **MARGINS
        )
        pass_digest = _digest(passed.coef_x, passed.const, passed.scale, coef_x)
        out(f"  optimize {_digest(lower)} duals {_digest(*_flat(best))} pass {pass_digest}")
        out(f"  rows lower {[repr(float(v)) for v in lower.max(axis=1)]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=500, help="domains per search trace (default 500)")
    parser.add_argument("--only", choices=("search", "passes"), help="one half of the trace")
    args = parser.parse_args(argv)

    def out(line: str) -> None:
        print(line, flush=True)

    print(f"# nnverify from {Path(importlib.import_module('nnverify').__file__).parent}", file=sys.stderr)
    if args.only != "passes":
        for onnx, vnnlib in INSTANCES:
            _search_trace(onnx, vnnlib, args.domains, out)
    if args.only != "search":
        for onnx, vnnlib in PASSES:
            _passes_trace(onnx, vnnlib, out)


if __name__ == "__main__":
    main()
