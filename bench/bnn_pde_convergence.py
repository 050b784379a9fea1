#!/usr/bin/env python3
"""Convergence of the porous-media PDE labeller (``nnverify.bnn.pde``): grid refinement and extrapolation.

For ``--per-grains`` random cells with 2 and with 3 grains (``nnverify.bnn.cells``, seed ``--seed``) it computes
the finite-volume ``D_k`` for k = 1, 2, 4, 8, 16 sub-cells per pixel side, the observed orders, a reference value
(k = 8, 16 extrapolated with each cell's own observed order), and the error of the candidate labellers: plain
``D_4``, plain ``D_8``, and the Richardson extrapolations (2, 4) and (4, 8) with order 4/3. It also times each grid,
and checks how often the extrapolated value increases when solid pixels are added (the plain grids never do).
Prints Markdown.

Usage:
  OMP_NUM_THREADS=1 .venv/bin/python bench/bnn_pde_convergence.py [--per-grains 20] [--seed 123] > out.md
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nnverify.bnn import cells, pde

REFINEMENTS = (1, 2, 4, 8, 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-grains", type=int, default=20)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--monotonicity-cells", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    grains = [g for g in (2, 3) for _ in range(args.per_grains)]
    solids = [cells.solid(cells.random_cell(rng, g)) for g in grains]
    table = np.zeros((len(solids), len(REFINEMENTS)))
    seconds = np.zeros(len(REFINEMENTS))
    for j, k in enumerate(REFINEMENTS):
        start = time.process_time()
        table[:, j] = [pde.grid_diffusion(s, refine=k) for s in solids]
        seconds[j] = (time.process_time() - start) / len(solids)
    d = {k: table[:, j] for j, k in enumerate(REFINEMENTS)}
    own_order = np.log2((d[8] - d[4]) / (d[16] - d[8]))
    reference = d[16] + (d[16] - d[8]) / (2**own_order - 1)
    factor = 2**pde.CONVERGENCE_ORDER - 1
    candidates = {
        "D_4": d[4],
        "D_8": d[8],
        "D_16": d[16],
        "Richardson (2, 4), order 4/3 [shipped]": d[4] + (d[4] - d[2]) / factor,
        "Richardson (4, 8), order 4/3": d[8] + (d[8] - d[4]) / factor,
    }
    print(
        f"# PDE labeller convergence ({len(solids)} cells: {args.per_grains} with 2 and with 3 grains, "
        f"seed {args.seed})\n"
    )
    print("CPU seconds per cell and grid (single-threaded, while other jobs shared the 2 cores):\n")
    print("| k | " + " | ".join(str(k) for k in REFINEMENTS) + " |")
    print("|---|" + "---|" * len(REFINEMENTS))
    print("| s/cell | " + " | ".join(f"{s:.4f}" for s in seconds) + " |\n")
    print("Observed orders log2((D_2k - D_k) / (D_4k - D_2k)), min / mean / max over the cells:\n")
    for a, b, c in ((1, 2, 4), (2, 4, 8), (4, 8, 16)):
        order = np.log2((d[b] - d[a]) / (d[c] - d[b]))
        print(f"- k = {a}, {b}, {c}: {order.min():.3f} / {order.mean():.3f} / {order.max():.3f}")
    print("\nError against the reference (k = 8, 16 extrapolated with each cell's observed order):\n")
    print("| labeller | max abs error | mean abs error | labels differing from the reference's |")
    print("|---|---|---|---|")
    ref_labels = np.floor(100 * reference + 0.5)
    for name, value in candidates.items():
        error = np.abs(value - reference)
        differ = int(np.sum(np.floor(100 * value + 0.5) != ref_labels))
        print(f"| {name} | {error.max():.2e} | {error.mean():.2e} | {differ} / {len(solids)} |")
    print("\nPer cell (grains, porosity, D_k for k = " + ", ".join(map(str, REFINEMENTS)) + ", reference):\n")
    print("```")
    for g, s, row, ref in zip(grains, solids, table, reference, strict=True):
        print(f"{g} {pde.porosity(s):.4f} " + " ".join(f"{v:.6f}" for v in row) + f" {ref:.6f}")
    print("```\n")
    _monotonicity(np.random.default_rng(args.seed + 1), args.monotonicity_cells)


def _monotonicity(rng: np.random.Generator, n_cells: int) -> None:
    """Add 10 random solid pixels one by one to each cell; count increases of the extrapolated D."""
    steps = increases = 0
    largest = 0.0
    for _ in range(n_cells):
        solid = cells.solid(cells.random_cell(rng, 2))
        previous = pde.effective_diffusion(solid)
        for _ in range(10):
            r, c = rng.integers(16, size=2)
            solid[r, c] = 1
            current = pde.effective_diffusion(solid)
            steps += 1
            if current > previous + 1e-12:
                increases += 1
                largest = max(largest, current - previous)
            previous = current
    print(
        f"Monotonicity of the shipped (extrapolated) labeller: {increases} increases in {steps} additions of a solid "
        f"pixel (largest {largest:.1e}); each plain grid is monotone (Rayleigh; tested in tests/bnn/test_pde.py)."
    )


if __name__ == "__main__":
    main()
