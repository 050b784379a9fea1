"""Equilibration of a lowered MILP whose coefficients are too large for a solver (huge weights, wide boxes).

Columns are scaled by the magnitude of their bounds (``x = s x'``), then each row by its largest coefficient,
so a network with weights of 1e30 or an input box of width 1e30 becomes a model with coefficients near 1.
The scaled model has exactly the same solutions (mapped by ``s``); only what a solver's absolute tolerances
mean changes (they become relative to each row's scale). Integer columns are never scaled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.encode.milp import MilpModel


@dataclass(frozen=True, slots=True)
class ScaledModel:
    """A scaled model and the column scales: a solution ``v`` of ``model`` is ``col_scale * v`` of the original."""

    model: MilpModel
    col_scale: np.ndarray

    def unscale(self, values: np.ndarray) -> np.ndarray:
        """A solution of the scaled model as a solution of the original one."""
        return np.asarray(values, dtype=np.float64) * self.col_scale


def equilibrate(model: MilpModel) -> ScaledModel:
    """``model`` with columns scaled to bounds of magnitude at most 1 and rows to a largest coefficient of 1.

    A continuous column with finite bounds gets ``s = max(1, |lb|, |ub|)``; other columns keep ``s = 1``.
    Rows without entries are left alone.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        magnitude = np.maximum(np.abs(model.lb), np.abs(model.ub))
    col_scale = np.where(np.isfinite(magnitude) & ~model.integrality.astype(bool), np.maximum(magnitude, 1.0), 1.0)
    data = model.data * col_scale[model.indices]
    counts = np.diff(model.indptr)
    rows = np.repeat(np.arange(model.n_rows), counts)
    biggest = np.zeros(model.n_rows)
    np.maximum.at(biggest, rows, np.abs(data))
    row_scale = np.where(biggest > 0, biggest, 1.0)
    arrays = {
        "lb": model.lb / col_scale,
        "ub": model.ub / col_scale,
        "integrality": model.integrality.copy(),
        "indptr": model.indptr.copy(),
        "indices": model.indices.copy(),
        "data": data / row_scale[rows],
        "row_lo": model.row_lo / row_scale,
        "row_hi": model.row_hi / row_scale,
        "c": model.c * col_scale,
    }
    for array in arrays.values():
        array.flags.writeable = False
    return ScaledModel(MilpModel(**arrays, n_original=model.n_original), col_scale)
