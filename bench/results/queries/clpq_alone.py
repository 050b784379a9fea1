"""Decides the digits queries by the clpq backend alone: no attack, no bound pruning, one exact call per box.

``nnverify query --backend clpq`` lets sound floating-point bounds close what they can before clpq sees a leaf;
this script asks clpq (exact rationals) the whole product box of each disjunct instead, with sound bounds used
only to write the encoding (interval bounds, or with ``--crown`` the tighter interval, symbolic and
back-substitution bounds of ``search/exact.bound_box``; never to drop a disjunct). Run from the repository root:
``.venv/bin/python bench/results/queries/clpq_alone.py [--crown] [QUERY …] > bench/results/queries/clpq_alone.csv``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from nnverify.backends import get_backend
from nnverify.backends.base import SolveStatus
from nnverify.bounds.interval import interval_bounds
from nnverify.encode.network import encode_query
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers
from nnverify.multi.bind import bind
from nnverify.multi.product import build_product
from nnverify.multi.qlang import program_files, translate
from nnverify.multi.relax import to_property
from nnverify.options import Options
from nnverify.search.exact import bound_box

DIGITS = Path("properties/queries/digits")
NETS = {name: str(DIGITS / f"{name.lower()}.onnx") for name in ("NN1", "NN2", "GEN")}
UNSAT = ("differencing_r008", "generation_0_as_1", "two_norms_as_4", "hidden_patch_n5")
TIMEOUT_S = 300.0


def decide(name: str, crown: bool) -> tuple[str, float, int]:
    """The verdict of clpq alone on every disjunct of the query, the seconds and the number of exact calls."""
    image = np.load(DIGITS / ("image_8.npy" if name.startswith("two_norms") else "image_3.npy"))
    program = translate((DIGITS / f"{name}.q").read_text(), name, NETS, {"image": image})
    nets = bind(program.query, program_files(program, NETS))
    product = build_product(program.query, nets)
    prop = to_property(program.query, product).prop
    options = Options(backend="clpq", precision="exact")
    backend = get_backend("clpq", options)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(product.model, f"{tmp}/product.onnx")
        layers = to_layers(load_network(f"{tmp}/product.onnx"), merge=False)
    calls = 0
    for d in prop.disjuncts:
        if crown:
            box = bound_box(layers, d.lb, d.ub, [d], options)
            lbs, ubs = box.lbs, box.ubs
        else:
            bounds = interval_bounds(layers, d.lb, d.ub, margin_rel=1e-9, margin_abs=1e-12)
            lbs, ubs = [v[0] for v in bounds.lb], [v[0] for v in bounds.ub]
        enc = encode_query(layers, lbs, ubs, [d])
        left = TIMEOUT_S - (time.monotonic() - start)
        if left <= 0:
            return "timeout", time.monotonic() - start, calls
        result = backend.solve(enc.problem, timeout_s=left)
        calls += 1
        if result.status is SolveStatus.FEASIBLE:
            return "sat (a candidate; the query path replays it)", time.monotonic() - start, calls
        if result.status is not SolveStatus.INFEASIBLE:
            return result.status.value, time.monotonic() - start, calls
    return "unsat", time.monotonic() - start, calls


def main() -> None:
    crown = "--crown" in sys.argv[1:]
    print("query,bounds,clpq_alone,seconds,exact_calls")
    for name in [a for a in sys.argv[1:] if a != "--crown"] or UNSAT:
        verdict, seconds, calls = decide(name, crown)
        print(f"{name},{'crown' if crown else 'interval'},{verdict},{seconds:.2f},{calls}", flush=True)


if __name__ == "__main__":
    main()
