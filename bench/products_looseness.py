"""Looseness of the squares form of ``x * y`` (``graph/lowering_smooth.py``) against McCormick on random boxes.

Uses the engine's own ``Pow`` 2 lines and intervals (without the floating-point margin) and prints the ratios
recorded in ``docs/operators.md`` ("Products, quotients and Softmax"):

    .venv/bin/python bench/products_looseness.py
"""

from __future__ import annotations

import numpy as np

from nnverify.graph.ops.base import ActKind
from nnverify.graph.ops.interface import ACTIVATIONS


def main(n: int = 2000, samples: int = 400, seed: int = 0) -> None:
    square = ACTIVATIONS[ActKind.SQUARE]
    rng = np.random.default_rng(seed)
    cx, cy = rng.uniform(-2, 2, n), rng.uniform(-2, 2, n)
    wx, wy = 10.0 ** rng.uniform(-2, 0.5, n), 10.0 ** rng.uniform(-2, 0.5, n)
    lx, ux, ly, uy = cx - wx / 2, cx + wx / 2, cy - wy / 2, cy + wy / 2
    corners = np.stack([lx * ly, lx * uy, ux * ly, ux * uy])
    exact_width = corners.max(0) - corners.min(0)  # McCormick's interval is the exact range
    s_lo, s_hi = square.interval(lx + ly, ux + uy, 0.0, 0.0)
    d_lo, d_hi = square.interval(lx - uy, ux - ly, 0.0, 0.0)
    squares_width = ((s_hi - d_lo) - (s_lo - d_hi)) / 4
    t = rng.uniform(0, 1, (n, samples, 2))
    x, y = lx[:, None] + t[..., 0] * wx[:, None], ly[:, None] + t[..., 1] * wy[:, None]
    ls, lc, us, uc = (v[:, None] for v in square.relax(lx + ly, ux + uy, 0.0, 0.0))
    ld, ldc, ud, udc = (v[:, None] for v in square.relax(lx - uy, ux - ly, 0.0, 0.0))
    upper = ((us * (x + y) + uc) - (ld * (x - y) + ldc)) / 4
    lower = ((ls * (x + y) + lc) - (ud * (x - y) + udc)) / 4
    assert np.all(upper >= x * y - 1e-9) and np.all(lower <= x * y + 1e-9)
    gap = (upper - lower).mean(1)
    lows = [
        ly[:, None] * x + lx[:, None] * y - (lx * ly)[:, None],
        uy[:, None] * x + ux[:, None] * y - (ux * uy)[:, None],
    ]
    ups = [
        uy[:, None] * x + lx[:, None] * y - (lx * uy)[:, None],
        ly[:, None] * x + ux[:, None] * y - (ux * ly)[:, None],
    ]
    envelope = (np.minimum(*ups) - np.maximum(*lows)).mean(1)
    planes = np.minimum.reduce([(u - v).mean(1) for u in ups for v in lows])  # the best single plane per side
    width, lines = squares_width / exact_width, gap / planes
    print(f"{n} boxes, side widths 0.01-3.2, centres in [-2, 2]^2; squares / McCormick:")
    print(f"  interval width: median {np.median(width):.2f}, mean {width.mean():.2f}, max {width.max():.1f}")
    print(f"  mean gap vs the best single planes: median {np.median(lines):.2f}, mean {lines.mean():.2f}")
    print(f"  mean gap vs the envelope: median {np.median(gap / envelope):.2f}, mean {(gap / envelope).mean():.1f}")
    for label, mask in (("square", np.abs(np.log(wx / wy)) < 0.1), ("elongated", np.abs(np.log10(wx / wy)) > 1.5)):
        print(
            f"  {label} boxes ({mask.sum()}): lines {np.median(lines[mask]):.2f}, interval {np.median(width[mask]):.2f}"
        )


if __name__ == "__main__":
    main()
