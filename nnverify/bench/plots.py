"""Cactus plots of benchmark results: how many instances each tool solves within a given time per instance."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from nnverify.bench.scoring import OURS, Outcome

if TYPE_CHECKING:
    from nnverify.bench.scoring import InstanceScore

#: Log axes cannot show 0 s; shorter times are drawn at this floor.
MIN_TIME_S = 1e-3


def solved_times(report_rows: Iterable[InstanceScore]) -> list[float]:
    """Run times of the correct instances only, ascending (pass ``ScoreReport.instances``).

    Args:
        report_rows: Scored instances of one tool.

    Returns:
        The times in seconds, sorted, without missing (NaN) times.
    """
    return sorted(r.time_s for r in report_rows if r.outcome is Outcome.CORRECT and r.time_s == r.time_s)


def _draw_series(ax: Any, name: str, times: list[float]) -> None:
    """One tool's curve: the i-th fastest solved instance at x = i, its time at y (ours thicker, on top)."""
    ys = [max(t, MIN_TIME_S) for t in sorted(times)]
    xs = list(range(1, len(ys) + 1))
    ours = name == OURS
    ax.plot(
        xs,
        ys,
        label=f"{name} ({len(ys)})",
        linewidth=3.0 if ours else 1.5,
        zorder=3 if ours else 2,
        marker="o" if len(ys) < 30 else None,
        markersize=3,
    )


def cactus_plot(
    series: Mapping[str, list[float]],
    out_png: str | os.PathLike[str],
    *,
    title: str,
    timeout_s: float | None = None,
) -> None:
    """Write a cactus plot PNG: per tool, the solved instances' times sorted ascending.

    Args:
        series: ``{tool: times of its solved instances}`` (see ``solved_times``); ``nnverify`` is drawn thicker.
        out_png: The PNG file to write.
        title: The plot title.
        timeout_s: Draws the per-instance timeout as a dashed line when given.
    """
    from nnverify.extras import Extra, require

    require("matplotlib", Extra.BENCH, "the cactus plot").use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    try:
        names = sorted(series, key=lambda n: (n != OURS, -len(series[n]), n))
        for name in names:
            if series[name]:
                _draw_series(ax, name, list(series[name]))
        if timeout_s is not None:
            ax.axhline(timeout_s, color="grey", linestyle="--", linewidth=1, label=f"timeout ({timeout_s:g} s)")
        all_times = [max(t, MIN_TIME_S) for times in series.values() for t in times]
        top = max([*all_times, timeout_s or 0.0, 1.0])
        ax.set_yscale("log")
        ax.set_ylim(min([*all_times, 1.0]) / 1.5, top * 1.5)
        ax.set_xlim(0, max([len(t) for t in series.values()] + [1]) + 1)
        ax.set_xlabel("instances solved")
        ax.set_ylabel("time per instance [s]")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(os.fspath(out_png))
    finally:
        plt.close(fig)
