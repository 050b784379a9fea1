"""Shape subgraphs: Shape, Size, ConstantOfShape, Range and Cast, folded to constants at import.

Shapes are static (dynamic dimensions are taken as 1), so Shape and Size of a variable tensor are constants.
Cast of a variable tensor is the identity on its values (to a floating type only).
"""

from __future__ import annotations

import math

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, const_value, register
from nnverify.graph.ops.pullback import first

#: ONNX element types (``onnx.TensorProto.DataType``, numbers fixed by the standard; written out so that the op
#: registry does not import onnx, which ``tests/test_startup.py`` checks): FLOAT, DOUBLE, FLOAT16, BFLOAT16.
_FLOAT_TYPES = frozenset({1, 11, 10, 16})
#: INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64.
_INT_TYPES = frozenset({3, 5, 6, 7, 2, 4, 12, 13})
_BOOL = 9


def _numpy_type(onnx_type: int) -> type[np.generic] | None:
    """The numpy dtype nnverify uses for an ONNX element type (float64, int64 or bool), None if unsupported."""
    if onnx_type in _FLOAT_TYPES:
        return np.float64
    if onnx_type in _INT_TYPES:
        return np.int64
    return np.bool_ if onnx_type == _BOOL else None


def _type_name(onnx_type: int) -> str:
    """The ONNX name of an element type (messages only)."""
    from onnx import TensorProto

    return str(TensorProto.DataType.Name(onnx_type))


@register
class Shape(Op):
    """The (static) shape of a tensor, optionally sliced by ``start``/``end`` (opset 15)."""

    op_type = "Shape"
    shape_only = True
    variable_inputs = None
    notes = "static shapes, folded at import"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        dims = xs[0].shape[1:]
        start, end = int(node.attrs.get("start", 0)), node.attrs.get("end")
        return np.array(dims[start : None if end is None else int(end)], dtype=np.int64)[None, ...]

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return [None] * len(xs)  # the values do not matter


@register
class Size(Op):
    """The (static) number of entries of a tensor."""

    op_type = "Size"
    shape_only = True
    variable_inputs = None
    notes = "static shapes, folded at import"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return np.array(math.prod(xs[0].shape[1:]), dtype=np.int64)[None, ...]

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return [None] * len(xs)  # the values do not matter


@register
class ConstantOfShape(Op):
    """A tensor of a constant shape filled with ``value`` (default float 0)."""

    op_type = "ConstantOfShape"
    variable_inputs = ()
    notes = "folded at import"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        shape = [int(d) for d in const_value(xs[0]).reshape(-1)]
        value = np.asarray(node.attrs.get("value", np.zeros(1))).reshape(-1)
        return np.full((1, *shape), value[0], dtype=value.dtype)


@register
class Range(Op):
    """``start, start + delta, ...`` up to (excluding) ``limit``."""

    op_type = "Range"
    variable_inputs = ()
    notes = "folded at import"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        start, limit, delta = (const_value(x).reshape(()) for x in xs[:3])
        count = max(int(np.ceil((limit - start) / delta)), 0)
        return (start + delta * np.arange(count, dtype=np.result_type(start, delta)))[None, ...]


@register
class Cast(Op):
    """Conversion of the element type (of a variable tensor: to a floating type, the identity on its values)."""

    op_type = "Cast"
    affine = True
    notes = "variable tensors to floating types only"

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        target = int(node.attrs["to"])
        if _numpy_type(target) is None:
            return f"cast to {_type_name(target)} is not supported"
        if not is_const[0] and target not in _FLOAT_TYPES:
            return f"cast of a variable tensor to {_type_name(target)} is not affine"
        return None

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        dtype = _numpy_type(int(node.attrs["to"]))
        x = xs[0]
        if dtype is np.int64 and np.issubdtype(x.dtype, np.floating):
            return np.trunc(x).astype(np.int64)
        return x.astype(dtype)

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return first(xs, g)
