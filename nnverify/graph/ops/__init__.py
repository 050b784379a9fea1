"""Operator implementations: one module per op family, each registering its ops (``@register``) when imported.

Importing this package imports the modules of the common operators (``COMMON``: the ones of fully connected
ReLU networks); ``REGISTRY`` and ``ACTIVATIONS`` import the rest (``load_all``) at the first lookup of an op type
or activation they do not hold yet, or when listed. A new op family module goes in ``FAMILIES``.
"""

from __future__ import annotations

import importlib

from nnverify.graph.ops import activation, elementwise, linear, shape  # noqa: F401  (COMMON, for @register)
from nnverify.graph.ops.base import REGISTRY, ActKind, Node, Op, const_value, register

#: Every op family module (``load_all`` imports them in this order).
FAMILIES = (
    "activation",
    "constant",
    "conv",
    "conv_transpose",
    "elementwise",
    "indexing",
    "internal",
    "join",
    "linear",
    "maxpool",
    "normalization",
    "periodic",
    "piecewise",
    "pool",
    "reciprocal",
    "reduce",
    "resize",
    "select",
    "shape",
    "shape_tensor",
    "slicing",
    "smooth",
    "softmax",
    "space_depth",
)
#: The families imported with this package (a check of an ACAS Xu or MNIST network needs nothing else).
COMMON = ("activation", "elementwise", "linear", "shape")


def load_all() -> None:
    """Import every op family module (``REGISTRY`` calls it on a miss or a listing; cheap once done)."""
    for family in FAMILIES:
        importlib.import_module(f"nnverify.graph.ops.{family}")


__all__ = ["REGISTRY", "ActKind", "Node", "Op", "const_value", "load_all", "register", "supported_ops_table"]


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
