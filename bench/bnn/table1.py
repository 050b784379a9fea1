"""Table 1 of Korneev et al. (SAT 2018), reproduced: generation success and time per target interval.

For each data set (D_2: 2 grains, D_3: 3 grains) and each target interval [40,50), [50,60) ... [90,100],
``--per-interval`` random instances (instance k draws its grains' seed cells from random seed k) are solved
exactly with ``nnverify``'s generation pipeline (shape rules + the shipped BNN, CP-SAT), each under
``--timeout`` seconds. Every generated image is re-checked (flood fill, onnxruntime, PDE). Half-open intervals
[a, b) are asked as [a, b - 1e-6] (the network's output is real-valued).

Usage: python bench/bnn/table1.py --per-interval 10 --timeout 600 --out bench/results/<date>-bnn [--backend highs]
Writes ``table1_<backend>.csv`` / ``.md`` and one PNG grid per set, interval and backend.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

INTERVALS = [(40, 50), (50, 60), (60, 70), (70, 80), (80, 90), (90, 100)]


def run(
    grains: int,
    per_interval: int,
    timeout_s: float,
    out: Path,
    backend_name: str = "cpsat",
    first: int = 0,
    proposals: bool = True,
) -> list[dict[str, object]]:
    from nnverify.backends import get_backend
    from nnverify.bnn.generate import (
        GenerateParams,
        build_query,
        check_image,
        labels_of,
        shape_proposals,
        solve_query,
    )
    from nnverify.bnn.shapes import ShapeParams
    from nnverify.graph.onnx_import import load_network
    from nnverify.graph.passes import to_layers
    from nnverify.imaging import save_cells_image
    from nnverify.spec.discrete import parse_discrete

    net = f"networks/porous_bnn_d{grains}.onnx"
    layers = to_layers(load_network(net))
    backend = get_backend(backend_name)
    rows: list[dict[str, object]] = []
    for a, b in INTERVALS:
        high = b - 1e-6 if b < 100 else float(b)
        cells, titles = [], []
        for k in range(first, first + per_interval):
            shape = ShapeParams(grains, random_seed=k)
            start = time.perf_counter()
            params = GenerateParams(shape, float(a), high)
            text, model = build_query(params)
            guesses = shape_proposals(layers, model, params) if proposals else None
            out_ = solve_query(layers, parse_discrete(text), backend, timeout_s=timeout_s, proposals=guesses)
            seconds = time.perf_counter() - start
            row: dict[str, object] = {
                "grains": grains,
                "interval": f"[{a},{b})",
                "instance": k,
                "status": out_.status.value,
                "seconds": round(seconds, 3),
                "method": out_.method,
            }
            if out_.images:
                labels = labels_of(out_.values[0], model, shape)
                check = check_image(labels, grains, net, float(a), high)
                row |= {"bnn": round(check.predicted, 3), "pde": round(check.pde, 3), "checks_ok": check.ok}
                if len(cells) < 5:
                    cells.append(labels)
                    titles.append(f"BNN {check.predicted:.1f}, PDE {check.pde:.1f}")
            rows.append(row)
            print(row, flush=True)
        if cells:
            save_cells_image(cells, titles, out / f"d{grains}_{a}_{b}_{backend_name}.png")
    return rows


def summary(rows: list[dict[str, object]]) -> str:
    lines = ["| set | interval | solved | mean s (solved) | max s | mean abs(BNN - PDE) |", "|---|---|---|---|---|---|"]
    for grains in sorted({int(r["grains"]) for r in rows}):  # type: ignore[call-overload]
        for interval in dict.fromkeys(str(r["interval"]) for r in rows if r["grains"] == grains):
            sel = [r for r in rows if r["grains"] == grains and r["interval"] == interval]
            solved = [r for r in sel if r["status"] in ("feasible", "infeasible")]
            times = [float(r["seconds"]) for r in solved]  # type: ignore[arg-type]
            gaps = [abs(float(r["bnn"]) - float(r["pde"])) for r in sel if "bnn" in r]  # type: ignore[arg-type]
            lines.append(
                f"| D_{grains} | {interval} | {len(solved)}/{len(sel)} | "
                f"{statistics.mean(times) if times else float('nan'):.2f} | {max(times, default=float('nan')):.2f} | "
                f"{statistics.mean(gaps) if gaps else float('nan'):.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-interval", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--grains", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--from-log", type=Path, help="Only summarise the rows printed in this run log.")
    parser.add_argument("--backend", default="cpsat", help="Exact backend (cpsat, highs, gurobi, clpq).")
    parser.add_argument("--start", type=int, default=0, help="First instance (random seed of the seed cells).")
    parser.add_argument("--no-proposals", action="store_true", help="Exact search only (no grown proposals first).")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    if args.from_log:
        import ast

        lines = args.from_log.read_text().splitlines()
        rows = [ast.literal_eval(line) for line in lines if line.startswith("{")]
    else:
        for grains in args.grains:
            rows += run(
                grains, args.per_interval, args.timeout, args.out, args.backend, args.start, not args.no_proposals
            )
    fields = ["grains", "interval", "instance", "status", "seconds", "method", "bnn", "pde", "checks_ok"]
    with (args.out / f"table1_{args.backend}.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    (args.out / f"table1_{args.backend}.md").write_text(summary(rows) + "\n")
    print(summary(rows))


if __name__ == "__main__":
    main()
