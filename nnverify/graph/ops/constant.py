"""The Constant operator. The importer folds it (and everything computed only from constants) away.

It stays registered so that models using it count as supported.
"""

from __future__ import annotations

import numpy as np

from nnverify.graph.ops.base import Node, Op, register

#: Constant attribute name -> dtype of the value it holds.
_VALUE_ATTRS = {
    "value": None,
    "value_float": np.float64,
    "value_floats": np.float64,
    "value_int": np.int64,
    "value_ints": np.int64,
}


@register
class Constant(Op):
    """A constant tensor given by exactly one of the ``value*`` attributes (batched with batch size 1)."""

    op_type = "Constant"
    variable_inputs = ()
    notes = "folded at import"

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        if not any(name in node.attrs for name in _VALUE_ATTRS):
            return f"needs one of the attributes {', '.join(_VALUE_ATTRS)}"
        return None

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        for name, dtype in _VALUE_ATTRS.items():
            if name in node.attrs:
                return np.asarray(node.attrs[name], dtype=dtype)[None, ...]
        raise ValueError(f"Constant node {node.name!r} has no value attribute")
