"""Seed-004 experiment (issue 5, part 6): the exact backends alone on the 8 (model, property) pairs.

Each query goes straight to the backend, with no attack and no bound-based pruning (on these linear models
the bounds would decide everything): the network and the property's unsafe set are encoded and the backend
decides feasibility. A sat answer's point is replayed on onnxruntime. Each (pair, backend) runs in its own
process, so the peak memory (ru_maxrss of that process: Python, the model, the solver) is its own.

Usage: python bench/seed004/run.py [--out bench/results/clpq/seed004.csv] [--timeout 300]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

PAIRS = [(h, p) for h in (512, 1024) for p in (1, 2, 3, 4)]
EXPECTED = {1: "sat", 2: "sat", 3: "sat", 4: "unsat"}
BACKENDS = [("clpq", "exact"), ("clpq", "float"), ("highs", "exact")]


def child(hidden: int, prop_no: int, backend_name: str, precision: str, timeout_s: float) -> dict[str, object]:
    """Decide one pair with one backend in this process; the row of the results table."""
    import numpy as np

    from nnverify.backends import get_backend
    from nnverify.backends.base import SolveStatus
    from nnverify.bounds.interval import interval_bounds
    from nnverify.encode.network import encode_query
    from nnverify.graph.onnx_import import load_network
    from nnverify.graph.passes import to_layers
    from nnverify.options import Options
    from nnverify.spec.vnnlib import load_property
    from nnverify.witness import OnnxRunner, check_counterexample

    start = time.perf_counter()
    net = f"networks/seed004_h{hidden}.onnx"
    options = Options(backend=backend_name, precision=precision)
    backend = get_backend(backend_name, options)
    graph = load_network(net)
    layers = to_layers(graph, merge=not backend.exact)
    prop = load_property(f"properties/seed004_h{hidden}_p{prop_no}.vnnlib", graph.n_inputs, graph.n_outputs)
    box = prop.disjuncts[0]
    bounds = interval_bounds(layers, box.lb, box.ub, margin_rel=1e-9, margin_abs=1e-12)
    enc = encode_query(layers, [v[0] for v in bounds.lb], [v[0] for v in bounds.ub], list(prop.disjuncts))
    loaded = time.perf_counter()
    result = backend.solve(enc.problem, timeout_s=timeout_s)
    solved = time.perf_counter()
    verdict = {SolveStatus.FEASIBLE: "sat", SolveStatus.INFEASIBLE: "unsat"}.get(result.status, result.status.value)
    replay = ""
    if result.status is SolveStatus.FEASIBLE and result.values is not None:
        x = np.clip(result.values[enc.x_idx], box.lb, box.ub)
        check = check_counterexample(OnnxRunner(net), prop, x.astype(np.float32).astype(np.float64))
        replay = "valid" if check.valid else f"rejected: {check.reason}"
    return {
        "model": f"H={hidden}",
        "property": f"p{prop_no}",
        "expected": EXPECTED[prop_no],
        "backend": backend_name if backend_name != "clpq" else f"clpq ({precision})",
        "verdict": verdict,
        "replay": replay,
        "load_s": round(loaded - start, 2),
        "solve_s": round(solved - loaded, 2),
        "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "note": result.note,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/clpq/seed004.csv")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        hidden, prop_no, backend_name, precision = args.child
        print(json.dumps(child(int(hidden), int(prop_no), backend_name, precision, args.timeout)))
        return
    rows = []
    for hidden, prop_no in PAIRS:
        for backend_name, precision in BACKENDS:
            cmd = [sys.executable, __file__, "--timeout", str(args.timeout), "--child"]
            cmd += [str(hidden), str(prop_no), backend_name, precision]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout + 120, check=False)
            if done.returncode != 0:
                row = {"model": f"H={hidden}", "property": f"p{prop_no}", "backend": backend_name, "verdict": "error"}
                row["note"] = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else str(done.returncode)
            else:
                row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["model", "property", "expected", "backend", "verdict", "replay", "load_s", "solve_s", "peak_mib", "note"]
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
