"""Attribute defaults of common ONNX operators, read without ``onnx.defs``: its schema registry is built at
first use (15-45 ms, paid by every ``nnverify check``). Other operators and opsets ask ``onnx.defs``.
``tests/test_startup.py`` checks this table against ``onnx.defs`` for every opset it covers."""

from __future__ import annotations

from typing import Any

#: Opsets the table answers for (``onnx.defs`` was compared for each of them); others ask the schema.
OPSETS = range(7, 29)

_BN_EPSILON = 9.999999747378752e-06  # 1e-5 as float32, as the schema stores it
_BN_MOMENTUM = 0.8999999761581421  # 0.9 as float32

#: op_type -> ((first opset, defaults), ...) in increasing opset order; an entry holds until the next one.
TABLE: dict[str, tuple[tuple[int, dict[str, Any]], ...]] = {
    "Add": ((7, {}),),
    "BatchNormalization": (
        (7, {"epsilon": _BN_EPSILON, "momentum": _BN_MOMENTUM, "spatial": 1}),
        (9, {"epsilon": _BN_EPSILON, "momentum": _BN_MOMENTUM}),
        (14, {"epsilon": _BN_EPSILON, "momentum": _BN_MOMENTUM, "training_mode": 0}),
    ),
    "Concat": ((7, {}),),
    "Constant": ((7, {}),),
    "Conv": ((7, {"auto_pad": "NOTSET", "group": 1}),),
    "Div": ((7, {}),),
    "Flatten": ((7, {"axis": 1}),),
    "Gemm": ((7, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}),),
    "MatMul": ((7, {}),),
    "MaxPool": (
        (7, {"auto_pad": "NOTSET"}),
        (8, {"auto_pad": "NOTSET", "storage_order": 0}),
        (10, {"auto_pad": "NOTSET", "ceil_mode": 0, "storage_order": 0}),
    ),
    "Mul": ((7, {}),),
    "Relu": ((7, {}),),
    "Reshape": ((7, {}), (14, {"allowzero": 0})),
    "Sigmoid": ((7, {}),),
    "Sign": ((7, {}),),  # opset 9 and later; before, no schema and so no defaults either
    "Slice": ((7, {}),),
    "Softmax": ((7, {"axis": 1}), (13, {"axis": -1})),
    "Sub": ((7, {}),),
    "Tanh": ((7, {}),),
    "Transpose": ((7, {}),),
}


def table_defaults(op_type: str, opset: int) -> dict[str, Any] | None:
    """A fresh dict of the defaults of ``op_type`` (default domain) at ``opset``, or None: ask ``onnx.defs``."""
    entries = TABLE.get(op_type)
    if entries is None or opset not in OPSETS:
        return None
    found: dict[str, Any] = {}
    for first, defaults in entries:
        if first <= opset:
            found = defaults
    return dict(found)
