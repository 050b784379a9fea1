"""Pictures of the vote's witnesses: each test image beside the input the solver found (flipped pixels marked)."""

from __future__ import annotations

import os

import numpy as np

#: Image/witness pairs per row of the figure.
PER_ROW = 8


def ascii_pair(image: np.ndarray, witness: np.ndarray, side: int = 8) -> str:
    """The image and the witness as text grids: ``#``/``.`` pixels, ``+`` a pixel turned on, ``-`` turned off."""
    a, b = np.asarray(image).reshape(side, side), np.asarray(witness).reshape(side, side)
    lines = []
    for row_a, row_b in zip(a, b, strict=True):
        left = "".join("#" if v else "." for v in row_a)
        right = "".join(
            ("+" if w else "-") if v != w else ("#" if w else ".") for v, w in zip(row_a, row_b, strict=True)
        )
        lines.append(f"{left}   {right}")
    return "\n".join(lines) + "\n"


def witness_figure(pairs: list[tuple[str, np.ndarray, np.ndarray]], path: str | os.PathLike[str]) -> None:
    """Per ``(title, image, witness)`` the image above the witness (changed pixels red), ``PER_ROW`` per row."""
    from nnverify.extras import Extra, require

    require("matplotlib", Extra.BINARY, "the witness figure").use("Agg")
    import matplotlib.pyplot as plt

    columns = min(PER_ROW, len(pairs))
    bands = -(-len(pairs) // columns)
    fig, axes = plt.subplots(2 * bands, columns, figsize=(1.5 * columns, 3.2 * bands), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if (k // columns) // 2 * columns + k % columns >= len(pairs):
            ax.axis("off")
    for k, (title, image, witness) in enumerate(pairs):
        top, bottom = axes[2 * (k // columns), k % columns], axes[2 * (k // columns) + 1, k % columns]
        a, b = np.asarray(image).reshape(8, 8), np.asarray(witness).reshape(8, 8)
        top.imshow(a, cmap="gray_r", vmin=0, vmax=1)
        rgb = np.repeat(1.0 - b[..., None].astype(float), 3, axis=-1)
        rgb[a != b] = (1.0, 0.0, 0.0)
        bottom.imshow(rgb)
        top.set_title(title, fontsize=6)
        bottom.set_title("witness", fontsize=6)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
    plt.close(fig)
