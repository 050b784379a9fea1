"""Looseness of the relaxed lowering (``graph/lowering_smooth.py``): the squares form of ``x * y`` against
McCormick on random boxes (the engine's own ``Pow`` 2 lines, without the floating-point margin), and a lowered
Softmax's bounds against its exact range. Prints the ratios recorded in ``docs/operators.md`` ("Products,
quotients and Softmax"):

    .venv/bin/python bench/products_looseness.py
"""

from __future__ import annotations

import numpy as np

from nnverify.bounds.backward import crown_bounds
from nnverify.bounds.interval import interval_bounds
from nnverify.bounds.symbolic import symbolic_bounds
from nnverify.graph.core import Graph
from nnverify.graph.ops.base import ActKind, Node
from nnverify.graph.ops.interface import ACTIVATIONS
from nnverify.graph.passes import to_layers


def _squares(
    lx: np.ndarray, ux: np.ndarray, ly: np.ndarray, uy: np.ndarray, scale: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Interval width and mean gap of the lines of ``((s x + y / s)^2 - (s x - y / s)^2) / 4`` on each box."""
    square = ACTIVATIONS[ActKind.SQUARE]
    s_lb, s_ub = scale * lx + ly / scale, scale * ux + uy / scale
    d_lb, d_ub = scale * lx - uy / scale, scale * ux - ly / scale
    s_lo, s_hi = square.interval(s_lb, s_ub, 0.0, 0.0)
    d_lo, d_hi = square.interval(d_lb, d_ub, 0.0, 0.0)
    width = ((s_hi - d_lo) - (s_lo - d_hi)) / 4
    ls, lc, us, uc = (v[:, None] for v in square.relax(s_lb, s_ub, 0.0, 0.0))
    ld, ldc, ud, udc = (v[:, None] for v in square.relax(d_lb, d_ub, 0.0, 0.0))
    k = scale[:, None]
    s_val, d_val = k * x + y / k, k * x - y / k
    upper = ((us * s_val + uc) - (ld * d_val + ldc)) / 4
    lower = ((ls * s_val + lc) - (ud * d_val + udc)) / 4
    assert np.all(upper >= x * y - 1e-9) and np.all(lower <= x * y + 1e-9)
    return width, (upper - lower).mean(1)


def main(n: int = 2000, samples: int = 400, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    cx, cy = rng.uniform(-2, 2, n), rng.uniform(-2, 2, n)
    wx, wy = 10.0 ** rng.uniform(-2, 0.5, n), 10.0 ** rng.uniform(-2, 0.5, n)
    lx, ux, ly, uy = cx - wx / 2, cx + wx / 2, cy - wy / 2, cy + wy / 2
    corners = np.stack([lx * ly, lx * uy, ux * ly, ux * uy])
    exact_width = corners.max(0) - corners.min(0)  # McCormick's interval is the exact range
    t = rng.uniform(0, 1, (n, samples, 2))
    x, y = lx[:, None] + t[..., 0] * wx[:, None], ly[:, None] + t[..., 1] * wy[:, None]
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
    print(f"{n} boxes, side widths 0.01-3.2, centres in [-2, 2]^2; squares / McCormick:")
    balanced = np.exp2(np.round(0.5 * np.log2(wy / wx)))  # lowering_smooth.product_scales' power of two
    for label, scale in (("unscaled", np.ones(n)), ("scaled", balanced)):
        squares_width, gap = _squares(lx, ux, ly, uy, scale, x, y)
        width, lines = squares_width / exact_width, gap / planes
        print(f" {label}:")
        print(f"  interval width: median {np.median(width):.2f}, mean {width.mean():.2f}, max {width.max():.1f}")
        print(f"  mean gap vs the best single planes: median {np.median(lines):.2f}, mean {lines.mean():.2f}")
        print(f"  mean gap vs the envelope: median {np.median(gap / envelope):.2f}, mean {(gap / envelope).mean():.1f}")
        for name, mask in (("square", np.abs(np.log(wx / wy)) < 0.1), ("elongated", np.abs(np.log10(wx / wy)) > 1.5)):
            lines_m, width_m = np.median(lines[mask]), np.median(width[mask])
            print(f"  {name} boxes ({mask.sum()}): lines {lines_m:.2f}, interval {width_m:.2f}")


def softmax(n: int = 3, boxes: int = 200, seed: int = 0) -> None:
    """Width of the bounds of ``softmax(x)_0`` over logit boxes against its exact range (reached at two corners:
    the function increases in ``x_0`` and decreases in the others)."""
    node = Node("softmax", "Softmax", ("x",), ("y",), {"axis": -1})
    layers = to_layers(Graph("softmax", "x", (1, n), "y", (1, n), (node,), {}))
    rng = np.random.default_rng(seed)
    print(f"Softmax of {n} logits, {boxes} boxes per width; bound width / exact range, median:")
    for width in (0.1, 1.0, 4.0):
        ratios: dict[str, list[float]] = {"interval": [], "forward symbolic": [], "CROWN": []}
        for _ in range(boxes):
            centre = rng.normal(0.0, 2.0, (1, n))
            lb, ub = centre - width / 2, centre + width / 2
            low, high = ub.copy(), lb.copy()
            low[0, 0], high[0, 0] = lb[0, 0], ub[0, 0]
            exact = float(np.diff(layers.eval(np.vstack([low, high]))[:, 0])[0])
            box, sym = interval_bounds(layers, lb, ub), symbolic_bounds(layers, lb, ub)
            lbs = [np.maximum(a, b) for a, b in zip(box.lb, sym.lb, strict=True)]
            ubs = [np.minimum(a, b) for a, b in zip(box.ub, sym.ub, strict=True)]
            tight = crown_bounds(layers, lbs, ubs)
            for name, bounds in (("interval", box), ("forward symbolic", sym), ("CROWN", tight)):
                top, bottom = min(bounds.ub[layers.output][0, 0], 1.0), max(bounds.lb[layers.output][0, 0], 0.0)
                ratios[name].append((top - bottom) / max(exact, 1e-12))
        print(f"  width {width}: " + ", ".join(f"{k} {np.median(v):.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
    softmax()
