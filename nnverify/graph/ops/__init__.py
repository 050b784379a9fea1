"""Operator implementations: one module per op family; importing this package fills the registry."""

from __future__ import annotations

from nnverify.graph.ops import (  # noqa: F401  (imported for their @register side effect)
    activation,
    constant,
    conv,
    conv_transpose,
    elementwise,
    indexing,
    internal,
    join,
    linear,
    maxpool,
    normalization,
    periodic,
    piecewise,
    pool,
    reciprocal,
    reduce,
    resize,
    select,
    shape,
    shape_tensor,
    slicing,
    smooth,
    softmax,
    space_depth,
)
from nnverify.graph.ops.base import REGISTRY, ActKind, Node, Op, const_value, register

__all__ = ["REGISTRY", "ActKind", "Node", "Op", "const_value", "register", "supported_ops_table"]


def supported_ops_table() -> list[tuple[str, str, str]]:
    """One row per supported ONNX operator: ``(op_type, family, notes)``, sorted by family then op_type.

    The family is the module the operator lives in; the notes say how the analysis treats it ("affine",
    "activation relu") and any restriction (e.g. "Div by constant only").
    """
    rows = []
    for op_type, op in REGISTRY.items():
        if "." in op_type:  # internal ops of the analysis (nnverify.ReciprocalMax1), not ONNX operators
            continue
        kind = "affine" if op.affine else f"activation {op.activation}" if op.activation else ""
        notes = ", ".join(part for part in (kind, op.notes) if part)
        rows.append((op_type, type(op).__module__.rsplit(".", 1)[-1], notes))
    return sorted(rows, key=lambda row: (row[1], row[0]))
