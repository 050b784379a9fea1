"""Pictures of counterexamples: what the network saw, next to the centre of the input region.

``save_counterexample_image`` writes one PNG. Image-shaped inputs (``(H, W)``, ``(1|3, H, W)`` after dropping
size-1 batch dimensions, or a flat 784 = 28x28 MNIST vector) get three panels: the counterexample, the centre
of the input box it lies in, and their difference as a heat map. Other inputs (e.g. ACAS Xu's 5) get a plot of
where each coordinate lies in its interval, the outputs, and the disjunct's output constraints written out.

matplotlib is imported lazily (start-up time matters) and only through its object API with the Agg canvas:
nothing is displayed, no global pyplot state is touched, and the library never prints.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnverify.graph.core import Graph
from nnverify.outputs import write_output
from nnverify.result import Counterexample
from nnverify.spec.property import Disjunct, Property

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Input-box membership tolerance when choosing the disjunct a counterexample belongs to (as in witness.py).
BOX_ATOL = 1e-4
#: A row ``lhs <= b`` is drawn as holding when ``lhs - b`` is at most this.
ROW_ATOL = 1e-4
#: At most this many rows of a disjunct are written out; the rest are summarised in one line.
MAX_ROWS_SHOWN = 12
#: Vector inputs with more coordinates than this are drawn as a profile instead of one labelled bar each.
MAX_LABELLED_INPUTS = 24
#: Flat input sizes that are read as square grayscale images (MNIST, Fashion-MNIST).
FLAT_IMAGE_SIZES = {784: (28, 28)}
#: Smallest height and width drawn as an image rather than as a vector.
MIN_IMAGE_SIDE = 4


def save_counterexample_image(graph: Graph, prop: Property, cex: Counterexample, out_png: str | Path) -> None:
    """Draw ``cex`` (a counterexample of ``prop`` on ``graph``) and write it atomically to ``out_png`` (PNG).

    Args:
        graph: The network (its ``input_shape`` decides between the image and the vector picture).
        prop: The property; the disjunct whose input box contains ``cex.x`` is the one drawn.
        cex: Flat input ``x`` and the network's output ``y`` (recomputed with ``graph.eval`` if not finite).
        out_png: Destination; written via a temporary file in the same directory and ``os.replace``, so a
            reader never sees a half-written PNG. Its directory must exist.

    Raises:
        ValueError: ``cex.x`` does not fit the network, or the property has no disjuncts.
        OSError: The file cannot be written.
    """
    x = np.asarray(cex.x, dtype=np.float64).ravel()
    if x.size != graph.n_inputs:
        raise ValueError(f"the counterexample has {x.size} inputs, the network {graph.n_inputs}")
    y = np.asarray(cex.y, dtype=np.float64).ravel()
    if y.size != graph.n_outputs or not np.all(np.isfinite(y)):
        y = graph.eval(x[None])[0]
    disjunct = _containing_disjunct(prop, x, y)
    layout = image_layout(graph.input_shape)
    fig = _vector_figure(x, y, disjunct) if layout is None else _image_figure(graph, x, y, disjunct, layout)
    _save_atomically(fig, Path(out_png))


def image_layout(input_shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """``(C, H, W)`` (C-order, channels first) when the input is an image, else ``None``.

    Size-1 dimensions are dropped; what remains must be ``(H, W)``, ``(3, H, W)`` or a flat 784 (28x28).
    A single channel is dropped with the batch dimensions, so ``(1, 1, 28, 28)`` is ``(1, 28, 28)``.
    """
    dims = tuple(d for d in input_shape if d != 1)
    if len(dims) == 1 and dims[0] in FLAT_IMAGE_SIZES:
        return (1, *FLAT_IMAGE_SIZES[dims[0]])
    if len(dims) == 2:
        layout = (1, dims[0], dims[1])
    elif len(dims) == 3 and dims[0] == 3:
        layout = (3, dims[1], dims[2])
    else:
        return None
    return layout if min(layout[1:]) >= MIN_IMAGE_SIDE else None


def _containing_disjunct(prop: Property, x: np.ndarray, y: np.ndarray) -> Disjunct:
    """The disjunct ``(x, y)`` violates; else the first whose box holds ``x``; else the box nearest ``x``."""
    xb, yb = x[None], y[None]
    boxed = [d for d in prop.disjuncts if d.contains_input(xb, BOX_ATOL)[0]]
    for d in boxed:
        if d.slack(xb, yb)[0] <= ROW_ATOL:
            return d
    if boxed:
        return boxed[0]
    if not prop.disjuncts:
        raise ValueError("the property has no disjuncts")
    return min(prop.disjuncts, key=lambda d: float(np.max(np.maximum(d.lb - x, 0) + np.maximum(x - d.ub, 0))))


def _save_atomically(fig: Figure, out: Path) -> None:
    """``fig`` as PNG into a fresh file next to ``out`` (mode 0666 less the umask), then renamed over it
    (``outputs.write_output``: a device such as ``/dev/null`` is written in place)."""
    try:
        write_output(out, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        fig.clear()


def _new_figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas, outside pyplot (no display, nothing to close)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# ---------------------------------------------------------------------------------------------------- images


def _image_figure(graph: Graph, x: np.ndarray, y: np.ndarray, d: Disjunct, layout: tuple[int, int, int]) -> Figure:
    centre = (d.lb + d.ub) / 2.0
    y_centre = graph.eval(centre[None])[0]
    cls_cex, cls_centre = int(np.argmax(y)), int(np.argmax(y_centre))
    diff = x - centre
    linf = float(np.max(np.abs(diff))) if diff.size else 0.0
    lo, hi = float(np.min(d.lb)), float(np.max(d.ub))
    if hi <= lo:
        hi = lo + 1.0

    fig = _new_figure(12.0, 4.6)
    axes = fig.subplots(1, 3)
    _show_image(axes[0], x, layout, lo, hi)
    axes[0].set_title(f"counterexample\npredicted class {cls_cex} (score {y[cls_cex]:.4g})")
    _show_image(axes[1], centre, layout, lo, hi)
    axes[1].set_title(f"centre of the input region\npredicted class {cls_centre} (score {y_centre[cls_centre]:.4g})")

    heat = _difference_map(diff, layout)
    scale = linf if linf > 0 else 1.0
    im = axes[2].imshow(heat, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
    what = "difference, largest |·| channel" if layout[0] == 3 else "difference (counterexample − centre)"
    axes[2].set_title(f"{what}\nL∞ = {linf:.4g}")
    fig.colorbar(im, ax=axes[2], shrink=0.85)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"counterexample: class {cls_centre} → class {cls_cex}    (max |difference| = {linf:.4g})",
        fontsize=13,
        fontweight="bold",
    )
    return fig


def _show_image(ax: Axes, flat: np.ndarray, layout: tuple[int, int, int], lo: float, hi: float) -> None:
    img = flat.reshape(layout)
    if layout[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    else:
        rgb = np.clip((np.transpose(img, (1, 2, 0)) - lo) / (hi - lo), 0.0, 1.0)
        ax.imshow(rgb, interpolation="nearest")


def _difference_map(diff: np.ndarray, layout: tuple[int, int, int]) -> np.ndarray:
    """``(H, W)``: the difference itself for one channel, else the signed channel of largest magnitude."""
    img = diff.reshape(layout)
    if layout[0] == 1:
        return img[0]
    pick = np.argmax(np.abs(img), axis=0)
    return np.take_along_axis(img, pick[None], axis=0)[0]


# ---------------------------------------------------------------------------------------------------- vectors


def _vector_figure(x: np.ndarray, y: np.ndarray, d: Disjunct) -> Figure:
    n, m = x.size, y.size
    rows = _row_texts(d, x, y)
    shown_rows = min(len(rows), MAX_ROWS_SHOWN) + (len(rows) > MAX_ROWS_SHOWN)
    input_height = 0.45 * n + 1.5 if n <= MAX_LABELLED_INPUTS else 4.0
    output_height = max(0.35 * min(m, 30) + 1.2, 2.2)
    text_height = 0.32 * max(shown_rows, 1) + 0.8
    fig = _new_figure(13.0, max(input_height, output_height + text_height))
    grid = fig.add_gridspec(1, 2, width_ratios=[1.15, 1.0])
    left, right = fig.add_subfigure(grid[0]), fig.add_subfigure(grid[1])
    _draw_inputs(left.subplots(), x, d)
    ax_out, ax_text = right.subplots(2, 1, height_ratios=[output_height, text_height])
    _draw_outputs(ax_out, y, d)
    _draw_rows(ax_text, rows, len(rows))
    holds = all(ok for _, ok in rows)
    verdict = "all constraints hold: the output is in the unsafe set" if holds else "not every constraint holds"
    fig.suptitle(
        f"counterexample: predicted class {int(np.argmax(y))} (largest output Y_{int(np.argmax(y))}); {verdict}",
        fontsize=12,
        fontweight="bold",
    )
    return fig


def _position(x: np.ndarray, d: Disjunct) -> np.ndarray:
    """Where each coordinate lies in its interval, 0 = lower bound, 1 = upper (0.5 for a fixed coordinate)."""
    width = d.ub - d.lb
    safe = np.where(width > 0, width, 1.0)
    return np.where(width > 0, (x - d.lb) / safe, 0.5)


def _draw_inputs(ax: Axes, x: np.ndarray, d: Disjunct) -> None:
    n = x.size
    pos = _position(x, d)
    if n > MAX_LABELLED_INPUTS:
        ax.fill_between(np.arange(n), 0.0, 1.0, color="#cfe0f3", step="mid", label="input interval")
        ax.plot(np.arange(n), pos, ".", color="#d62728", markersize=3, label="counterexample")
        ax.set_xlabel("input coordinate i (X_i)")
        ax.set_ylabel("position in [lb_i, ub_i]  (0 = lb, 1 = ub)")
        ax.set_ylim(-0.1, 1.3)
        ax.legend(loc="upper right", fontsize=8, ncol=2)
        ax.set_title("inputs: where the counterexample lies in each interval")
        return
    rows = np.arange(n)[::-1]  # X_0 on top
    ax.barh(rows, np.ones(n), left=0.0, height=0.5, color="#cfe0f3", edgecolor="#4a7ab5")
    ax.scatter(pos, rows, marker="D", s=60, color="#d62728", zorder=3, label="counterexample")
    for i, row in zip(range(n), rows, strict=True):
        fixed = d.ub[i] <= d.lb[i]
        note = "fixed" if fixed else f"{abs(pos[i]) * 100:.0f}% of the way"
        on_left = pos[i] >= 0.5
        ax.annotate(
            f"x = {x[i]:.6g}  ({note})",
            (float(pos[i]), float(row)),
            xytext=(-12 if on_left else 12, 0),
            textcoords="offset points",
            ha="right" if on_left else "left",
            va="center",
            fontsize=9,
            color="#8b0000",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )
    ax.set_yticks(rows)
    ax.set_yticklabels([f"X_{i}\n[{d.lb[i]:.5g}, {d.ub[i]:.5g}]" for i in range(n)], fontsize=9)
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.6, n - 0.2)
    ax.set_xticks([0.0, 0.5, 1.0])
    ax.set_xticklabels(["lb", "middle", "ub"])
    ax.set_title("inputs: each interval [lb_i, ub_i] scaled to [0, 1]")
    ax.grid(axis="x", alpha=0.3)


def _draw_outputs(ax: Axes, y: np.ndarray, d: Disjunct) -> None:
    m = y.size
    used = np.any(d.a_y != 0, axis=0) if d.n_rows else np.zeros(m, dtype=bool)
    best = int(np.argmax(y))
    colors = ["#2ca02c" if j == best else ("#ff7f0e" if used[j] else "#9e9e9e") for j in range(m)]
    ax.bar(np.arange(m), y, color=colors, edgecolor="black", linewidth=0.5)
    ax.axhline(0.0, color="black", linewidth=0.6)
    if m <= 30:
        ax.set_xticks(np.arange(m))
        ax.set_xticklabels([f"Y_{j}" for j in range(m)], fontsize=9)
        span = float(np.max(np.abs(y))) or 1.0
        for j in range(m):
            ax.annotate(
                f"{y[j]:.4g}",
                (j, float(y[j])),
                xytext=(0, 3 if y[j] >= 0 else -3),
                textcoords="offset points",
                ha="center",
                va="bottom" if y[j] >= 0 else "top",
                fontsize=7,
            )
        ax.set_ylim(min(0.0, float(np.min(y))) - 0.2 * span, max(0.0, float(np.max(y))) + 0.2 * span)
    ax.set_title("outputs (green: largest; orange: used by the constraints)", fontsize=10)


def _draw_rows(ax: Axes, rows: list[tuple[str, bool]], total: int) -> None:
    ax.axis("off")
    ax.set_title("constraints of the unsafe disjunct (✓ holds, ✗ does not)", fontsize=10, loc="left")
    lines = rows[:MAX_ROWS_SHOWN]
    if total > MAX_ROWS_SHOWN:
        held = sum(ok for _, ok in rows[MAX_ROWS_SHOWN:])
        lines = [*lines, (f"… and {total - MAX_ROWS_SHOWN} more ({held} of them hold)", True)]
    if not lines:
        lines = [("no output constraints: every input in the box is unsafe", True)]
    step = 1.0 / (len(lines) + 0.5)
    for k, (text, ok) in enumerate(lines):
        ax.text(
            0.0,
            1.0 - (k + 0.5) * step,
            text,
            transform=ax.transAxes,
            family="DejaVu Sans Mono",
            fontsize=9,
            va="center",
            color="#1b5e20" if ok else "#b71c1c",
            bbox={"facecolor": "#e8f5e9" if ok else "#ffebee", "edgecolor": "none", "pad": 2},
        )


def _row_texts(d: Disjunct, x: np.ndarray, y: np.ndarray) -> list[tuple[str, bool]]:
    """Each row as ``"Y_0 <= Y_1: -0.0203 <= -0.0188 ✓"`` (positive terms left, negative ones moved right)."""
    out = []
    for r in range(d.n_rows):
        terms = [(c, f"X_{i}", v) for i, (c, v) in enumerate(zip(d.a_x[r], x, strict=True)) if c != 0.0]
        terms += [(c, f"Y_{j}", v) for j, (c, v) in enumerate(zip(d.a_y[r], y, strict=True)) if c != 0.0]
        b = float(d.b[r])
        left = [(c, name, v) for c, name, v in terms if c > 0]
        right = [(-c, name, v) for c, name, v in terms if c < 0]
        lhs_value = sum(c * v for c, _, v in left)
        rhs_value = b + sum(c * v for c, _, v in right)
        lhs_text = _linear_text(left, 0.0)
        rhs_text = _linear_text(right, b)
        ok = bool(lhs_value - rhs_value <= ROW_ATOL)
        mark = "✓" if ok else "✗"
        out.append((f"{lhs_text} <= {rhs_text}:  {lhs_value:.6g} <= {rhs_value:.6g}  {mark}", ok))
    return out


def _linear_text(terms: list[tuple[float, str, float]], constant: float) -> str:
    """``2*Y_0 + Y_3 + 0.5`` for positive coefficients ``terms`` plus ``constant`` (omitted when 0)."""
    parts = [name if math.isclose(c, 1.0) else f"{c:.4g}*{name}" for c, name, _ in terms]
    if constant != 0.0 or not parts:
        if parts:
            parts.append(f"- {-constant:.6g}" if constant < 0 else f"+ {constant:.6g}")
            return " + ".join(parts[:-1]) + " " + parts[-1]
        return f"{constant:.6g}"
    return " + ".join(parts)


# ---------------------------------------------------------------------------------------------- unit cells

#: Void white; grains in distinct colours (up to 5 grains).
_CELL_COLOURS = ["#ffffff", "#1f4e79", "#c0504d", "#4f8a3c", "#8064a2", "#f79646"]


def save_cells_image(cells: list[np.ndarray], titles: list[str], out_png: str | Path) -> None:
    """Label images (0 void, 1.. grains) side by side in a grid, each with its title; one PNG, written atomically."""
    from matplotlib.colors import ListedColormap

    count = len(cells)
    cols = min(count, 5)
    rows = math.ceil(count / cols)
    fig = _new_figure(2.6 * cols, 2.9 * rows)
    cmap = ListedColormap(_CELL_COLOURS)
    for k, (cell, title) in enumerate(zip(cells, titles, strict=True)):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(cell, cmap=cmap, vmin=0, vmax=len(_CELL_COLOURS) - 1, interpolation="nearest")
        ax.set_xticks(np.arange(-0.5, cell.shape[1], 1), minor=True)
        ax.set_yticks(np.arange(-0.5, cell.shape[0], 1), minor=True)
        ax.grid(which="minor", color="#dddddd", linewidth=0.4)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        ax.set_title(title, fontsize=8)
    _save_atomically(fig, Path(out_png))
