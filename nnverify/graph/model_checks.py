"""Load-time validation of an ONNX ``ModelProto``: versions, the input's type and shape, initializers.

Everything here refuses a model with a one-line ``ModelError`` before any array is allocated from it, so
malformed or hostile files end as ``Error:`` (exit 3), not as a traceback, a ``MemoryError`` or a solver crash.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx.defs
from onnx import TensorProto, numpy_helper

from nnverify.errors import ModelError

_DEFAULT_DOMAINS = ("", "ai.onnx")
#: Input element types nnverify verifies (onnxruntime is fed in the model's own type).
INPUT_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64, TensorProto.FLOAT16: np.float16}
#: Initializer element types nnverify reads: floats (as float64), integers (as int64), bool.
_FLOAT_TYPES = frozenset(INPUT_TYPES)
_READABLE_TYPES = _FLOAT_TYPES | {
    TensorProto.INT8,
    TensorProto.INT16,
    TensorProto.INT32,
    TensorProto.INT64,
    TensorProto.UINT8,
    TensorProto.UINT16,
    TensorProto.UINT32,
    TensorProto.UINT64,
    TensorProto.BOOL,
}
#: Operators whose constant operands may legitimately be infinite (bounds, masks); NaN is refused everywhere.
_INF_CONSUMERS = frozenset({"Clip", "Min", "Max", "Where", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Equal"})
#: Most input values (float64 each) a model may declare: 2**26 values = 512 MiB for one copy of the input,
#: and the analysis keeps several. VNN-COMP's largest inputs have under 200,000 values.
MAX_INPUT_VALUES = 2**26
#: Values looked at per step when counting non-finite weights (bounds the temporary boolean arrays).
_CHUNK = 2**22


def one_line(text: object) -> str:
    """A library's (possibly multi-line) message as one line: whitespace runs collapsed to one space."""
    return " ".join(str(text).split())


def type_name(elem_type: int) -> str:
    """The ONNX name of an element type (``FLOAT16``), or its number if unknown."""
    try:
        return str(TensorProto.DataType.Name(elem_type))
    except ValueError:
        return str(elem_type)


def check_model(path: str, model: onnx.ModelProto) -> None:
    """Refuse models nnverify (or onnxruntime) cannot run faithfully; each failure is one ``ModelError`` line.

    Raises:
        ModelError: Unsupported IR/opset version, no default-domain opset, an input of a non-float type or
            of an empty or too large shape, or an initializer that is malformed, of an unreadable type or
            holds NaN (or infinities where a weight is expected).
    """
    _check_versions(path, model)
    _check_input(path, model)
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    _check_batchnorm_variances(path, model)
    for label, name, tensor in _constant_tensors(model):
        users = consumers.get(name, set())
        # unused tensors are decoded too (the importer reads every initializer), but their values do not matter
        _check_tensor(path, label, tensor, allow_inf=users <= _INF_CONSUMERS, check_values=bool(users))


def _check_versions(path: str, model: onnx.ModelProto) -> None:
    if model.ir_version > onnx.IR_VERSION:
        raise ModelError(
            f"{path}: IR version {model.ir_version} is newer than nnverify reads (up to {onnx.IR_VERSION})"
        )
    versions = [entry.version for entry in model.opset_import if entry.domain in _DEFAULT_DOMAINS]
    if not versions:
        raise ModelError(f"{path}: the model imports no version of the default ONNX operator set (opset_import)")
    newest = onnx.defs.onnx_opset_version()
    if max(versions) > newest or min(versions) < 1:
        raise ModelError(f"{path}: opset {max(versions)} is not one nnverify reads (1 … {newest})")


def _check_input(path: str, model: onnx.ModelProto) -> None:
    """The graph input's element type and declared shape (known dimensions must be positive, the size bounded)."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        return  # the importer reports the count with the names
    value = inputs[0]
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise ModelError(f"{path}: input '{value.name}' is not a tensor")
    if tensor_type.elem_type not in INPUT_TYPES:
        raise ModelError(
            f"{path}: input '{value.name}' has element type {type_name(tensor_type.elem_type)}; "
            "nnverify verifies networks with FLOAT, DOUBLE or FLOAT16 inputs"
        )
    dims = []
    for index, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value <= 0:
            raise ModelError(
                f"{path}: input '{value.name}' has a dimension of size {dim.dim_value} (index {index}); "
                "expected positive sizes"
            )
        dims.append(dim.dim_value if dim.HasField("dim_value") else 1)
    size = math.prod(dims)
    if size > MAX_INPUT_VALUES:
        raise ModelError(
            f"{path}: input '{value.name}' declares shape {tuple(dims)}: {size} values, "
            f"{_bytes(size * 8)} per copy as float64; nnverify handles at most {MAX_INPUT_VALUES} input values"
        )


def _check_batchnorm_variances(path: str, model: onnx.ModelProto) -> None:
    """A BatchNormalization's constant variance plus epsilon must be positive (its square root divides)."""
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "BatchNormalization" or len(node.input) < 5 or node.input[4] not in initializers:
            continue
        epsilon = next((attr.f for attr in node.attribute if attr.name == "epsilon"), 1e-5)
        try:
            var = numpy_helper.to_array(initializers[node.input[4]]).astype(np.float64)
        except (ValueError, TypeError, IndexError, OverflowError):
            continue  # reported as an unreadable initializer
        with np.errstate(invalid="ignore"):
            bad = ~(var + epsilon > 0)
        if np.any(bad):
            raise ModelError(
                f"{path}: BatchNormalization '{node.name}' has {int(np.count_nonzero(bad))} variance value(s) "
                f"with variance + epsilon <= 0 (first: {float(var[bad].flat[0])!r}); expected positive variances"
            )


def _constant_tensors(model: onnx.ModelProto) -> Iterator[tuple[str, str, TensorProto]]:
    """Every initializer and every ``Constant`` node's ``value`` tensor: a label for messages, the name the
    graph knows it by, the tensor."""
    for tensor in model.graph.initializer:
        yield f"initializer '{tensor.name}'", tensor.name, tensor
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR and node.output:
                    yield f"constant '{node.output[0]}'", node.output[0], attr.t


def _check_tensor(path: str, label: str, tensor: TensorProto, *, allow_inf: bool, check_values: bool) -> None:
    """Element type readable, stored size matching the dims, floats finite (NaN never, inf only as bounds);
    the element type and the values are looked at only with ``check_values`` (a tensor a node reads)."""
    if check_values and tensor.data_type not in _READABLE_TYPES:
        raise ModelError(
            f"{path}: {label} has element type {type_name(tensor.data_type)}; "
            "nnverify reads float, integer and bool tensors"
        )
    if any(d < 0 for d in tensor.dims):
        raise ModelError(f"{path}: {label} has a negative dimension {tuple(tensor.dims)}")
    values = _values(path, label, tensor)
    if not check_values or tensor.data_type not in _FLOAT_TYPES or values.size == 0:
        return
    nan, inf = _non_finite(values.reshape(-1), allow_inf)
    if nan or inf:
        what = " and ".join(part for part in (f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else "") if part)
        raise ModelError(
            f"{path}: {label} holds {what} value{'s' if nan + inf > 1 else ''} of {values.size}; "
            "nnverify needs finite weights"
        )


def _non_finite(flat: np.ndarray, allow_inf: bool) -> tuple[int, int]:
    """Counts of NaN and (unless ``allow_inf``) infinite values, in chunks: no full-size temporary array."""
    nan = inf = 0
    with np.errstate(all="ignore"):
        for start in range(0, flat.size, _CHUNK):
            part = flat[start : start + _CHUNK]
            nan += int(np.count_nonzero(np.isnan(part)))
            inf += 0 if allow_inf else int(np.count_nonzero(np.isinf(part)))
    return nan, inf


def _values(path: str, label: str, tensor: TensorProto) -> np.ndarray:
    """The tensor's values (a view of ``raw_data`` when it is stored raw), checked against its dims."""
    expected = math.prod(tensor.dims)
    if tensor.data_location == TensorProto.EXTERNAL:
        raise ModelError(f"{path}: {label} keeps its data in an external file that was not loaded")
    if tensor.HasField("raw_data"):
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        if len(tensor.raw_data) != expected * itemsize:
            raise ModelError(
                f"{path}: {label} stores {len(tensor.raw_data)} bytes; its shape {tuple(tensor.dims)} "
                f"of {type_name(tensor.data_type)} needs {expected * itemsize}"
            )
        if tensor.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE):
            return np.frombuffer(tensor.raw_data, dtype="<f4" if tensor.data_type == TensorProto.FLOAT else "<f8")
    try:
        values = numpy_helper.to_array(tensor)
    except (ValueError, TypeError, IndexError, OverflowError) as exc:
        raise ModelError(f"{path}: {label} cannot be read ({one_line(exc)})") from None
    if values.size != expected:
        raise ModelError(f"{path}: {label} holds {values.size} values; its shape {tuple(tensor.dims)} needs {expected}")
    return values


def uses_external_data(model: onnx.ModelProto) -> bool:
    """Whether any tensor of the model keeps its data in an external file."""
    return any(t.data_location == TensorProto.EXTERNAL for t in _all_tensors(model))


def _all_tensors(model: onnx.ModelProto) -> Iterator[TensorProto]:
    """Every tensor that may keep its data externally: initializers and node attributes, subgraphs included."""
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                graphs.extend([attr.g] if attr.HasField("g") else [])
                graphs.extend(attr.graphs)


def check_external_data(path: str, model: onnx.ModelProto) -> None:
    """Every external-data reference must be a relative path to a regular file beside the model.

    Raises:
        ModelError: An absolute location, one outside the model's directory, or a missing file; the message
            names the tensor and the file.
    """
    base = Path(os.path.abspath(path)).parent
    for tensor in _all_tensors(model):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        if not location:
            raise ModelError(f"{path}: tensor '{tensor.name}' is stored externally but names no file")
        if os.path.isabs(location):
            raise ModelError(
                f"{path}: tensor '{tensor.name}' is stored in '{location}', an absolute path "
                "(external data must be a file beside the model)"
            )
        target = Path(os.path.normpath(base / location))
        if base not in target.parents:
            raise ModelError(f"{path}: tensor '{tensor.name}' is stored in '{location}', outside the model's directory")
        if not target.is_file():
            raise ModelError(f"{path}: tensor '{tensor.name}' is stored in '{target}', which is not a readable file")


def _bytes(count: int) -> str:
    """A byte count for messages (``7.3 TiB``)."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
