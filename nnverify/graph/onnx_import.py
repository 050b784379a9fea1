"""ONNX file -> ``Graph``: reads the model, fills attribute defaults, folds constants and checks every node.

All unsupported operators are collected before failing. Tensor shapes are found by evaluating the graph
once on a zero input (batch 1), which also catches inconsistent models at load time. No analysis here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.defs
from google.protobuf.message import DecodeError
from onnx import numpy_helper
from onnx.external_data_helper import load_external_data_for_model

from nnverify.budget import Budget
from nnverify.errors import InputFileError, ModelError, UnsupportedOpsError
from nnverify.graph.core import Graph
from nnverify.graph.model_checks import check_external_data, check_model, one_line, uses_external_data
from nnverify.graph.ops import REGISTRY
from nnverify.graph.ops.base import Node
from nnverify.graph.schema_defaults import table_defaults

_DEFAULT_DOMAINS = ("", "ai.onnx")
#: Errors an op's ``eval`` raises on inconsistent shapes or parameters (reported as a ModelError).
_EVAL_ERRORS = (ValueError, IndexError, TypeError, KeyError, ArithmeticError)
_PHASE = "loading the network"


def load_network(path: str | os.PathLike[str], budget: Budget | None = None) -> Graph:
    """Load an ONNX model with one input and one output as a ``Graph``.

    Args:
        path: The ``.onnx`` file.
        budget: The run's deadline and memory cap, looked at per initializer and per node (``BudgetExpired``,
            ``ResourceLimitError``); None: no limit. Reading the file itself (protobuf) is one native call.

    Returns:
        The graph: non-constant nodes in topological order, folded constants, input and output shapes.

    Raises:
        InputFileError: The file does not exist or cannot be read.
        ModelError: The file is not an ONNX model, or the model is not one nnverify can handle.
        UnsupportedOpsError: The model uses operators (or operator variants) without an implementation;
            the message lists all of them.
    """
    model = _read_model(path)
    return _Importer(str(path), model, budget or Budget.unlimited()).run()


def _read_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Parse the file, mapping every failure to an ``NnverifyError``."""
    file = Path(path)
    if not file.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        model = onnx.load_model(file, load_external_data=False)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: not an ONNX model ({one_line(exc)})") from exc
    if not model.HasField("graph") or model.ir_version == 0:
        raise ModelError(f"{path}: not an ONNX model (no ir_version or graph)")
    if uses_external_data(model):
        check_external_data(str(path), model)
        try:
            load_external_data_for_model(model, str(file.resolve().parent))
        except (OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as exc:
            raise ModelError(f"{path}: cannot read its external data ({one_line(exc)})") from exc
    check_model(str(path), model)
    return model


def _as_array(tensor: onnx.TensorProto) -> np.ndarray:
    """A tensor as numpy: floats as float64, integers as int64, anything else unchanged.

    Raises:
        ModelError: The tensor's data does not fit its shape or type (``model_checks`` reports most cases first,
            with the file's name).
    """
    try:
        value = numpy_helper.to_array(tensor)
    except (ValueError, TypeError, IndexError, OverflowError, onnx.checker.ValidationError) as exc:
        raise ModelError(f"tensor '{tensor.name}' cannot be read ({one_line(exc)})") from exc
    if np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float64)
    if np.issubdtype(value.dtype, np.integer):
        return value.astype(np.int64)
    return value


def _python_value(value: Any) -> Any:
    """An attribute value as plain Python/numpy (strings decoded, tensors converted)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, onnx.TensorProto):
        return _as_array(value)
    if isinstance(value, list):
        return [_python_value(v) for v in value]
    return value


def schema_defaults(op_type: str, opset: int) -> dict[str, Any]:
    """The default attributes of ``op_type`` (default domain) at ``opset``, as ``onnx.defs`` declares them."""
    attrs: dict[str, Any] = {}
    if onnx.defs.has(op_type):
        try:
            schema = onnx.defs.get_schema(op_type, opset)
        except onnx.defs.SchemaError:
            schema = None
        for name, attr in schema.attributes.items() if schema else ():
            if attr.default_value.name:
                attrs[name] = _python_value(onnx.helper.get_attribute_value(attr.default_value))
    return attrs


def _attributes(proto: onnx.NodeProto, opset: int) -> dict[str, Any]:
    """The node's attributes, with schema defaults for the ones it leaves out (common operators from
    ``schema_defaults.TABLE``: building ``onnx.defs``'s registry costs every check 15-45 ms)."""
    attrs: dict[str, Any] = {}
    if proto.domain in _DEFAULT_DOMAINS:
        known = table_defaults(proto.op_type, opset)
        attrs = schema_defaults(proto.op_type, opset) if known is None else known
    for attr in proto.attribute:
        attrs[attr.name] = _python_value(onnx.helper.get_attribute_value(attr))
    if proto.op_type == "Softmax":  # its axes depend on the opset (graph/ops/softmax.py)
        attrs["opset"] = opset
    return attrs


def _opset(model: onnx.ModelProto) -> int:
    """The model's version of the default operator set."""
    for entry in model.opset_import:
        if entry.domain in _DEFAULT_DOMAINS:
            return int(entry.version)
    return int(onnx.defs.onnx_opset_version())


def _names(items: Iterable[str]) -> str:
    """Quoted, comma-separated names for messages."""
    return ", ".join(f"'{name}'" for name in items) or "none"


def unsupported_message(path: str, problems: dict[str, list[tuple[str, str | None]]]) -> str:
    """The ``UnsupportedOpsError`` text: one line per operator with its node count and first node.

    Args:
        path: The model file, as given by the user.
        problems: Operator label -> ``(node name, reason or None)`` of every offending node, in model order.
    """
    count = len(problems)
    lines = [f"{path} uses {count} ONNX operator{'' if count == 1 else 's'} that nnverify does not support:"]
    op_width = max(len(op) for op in problems)
    count_width = max(len(str(len(hits))) for hits in problems.values())
    for op, hits in problems.items():
        first, reason = hits[0]
        n = f"{len(hits):>{count_width}}"
        where = f"{n} node   '{first}'" if len(hits) == 1 else f"{n} nodes, first '{first}'"
        lines.append(f"  {op:<{op_width}}  {where}" + (f": {reason}" if reason else ""))
    return "\n".join(lines)


def _output_nodes(node: Node, consumed: set[str]) -> list[Node]:
    """One single-output node per used output of a multi-output node (see ``Op.multi_output``)."""
    count = len(node.outputs)
    return [
        Node(
            name=f"{node.name}[{index}]",
            op_type=node.op_type,
            inputs=node.inputs,
            outputs=(name,),
            attrs={**node.attrs, "output_index": index, "output_count": count},
        )
        for index, name in enumerate(node.outputs)
        if name and name in consumed
    ]


@dataclass
class _Importer:
    """One model's import: walks the nodes once, folding constants and evaluating on a zero input."""

    path: str
    model: onnx.ModelProto
    budget: Budget
    values: dict[str, np.ndarray] = field(default_factory=dict)  # batch-1 value of every known tensor
    constant: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)  # outputs of unsupported nodes (and what follows them)
    nodes: list[Node] = field(default_factory=list)
    problems: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)

    def run(self) -> Graph:
        """Import the model (see ``load_network``)."""
        graph = self.model.graph
        for tensor in graph.initializer:
            self.budget.check(_PHASE)
            self.values[tensor.name] = _as_array(tensor)[None, ...]
            self.constant.add(tensor.name)
        input_name, input_shape = self._input()
        output_name = self._output()
        self.budget.check_alloc(8.0 * np.prod(input_shape, dtype=float), "allocating the network's input")
        self.values[input_name] = np.zeros((1, *input_shape))
        opset = _opset(self.model)
        needed = self._needed_nodes(output_name)
        consumed = {name for index in needed for name in graph.node[index].input} | {output_name}
        for index in needed:
            self.budget.check(_PHASE)
            self._visit(graph.node[index], index, opset, consumed)
        if self.problems:
            raise UnsupportedOpsError(unsupported_message(self.path, self.problems))
        if output_name not in self.values:
            raise ModelError(f"{self.path}: output '{output_name}' is not computed by any node")
        if output_name in self.constant:
            raise ModelError(f"{self.path}: output '{output_name}' is a constant (it does not depend on the input)")
        self._drop_dead_nodes(output_name)
        used = {name for node in self.nodes for name in node.inputs}
        return Graph(
            path=self.path,
            input_name=input_name,
            input_shape=input_shape,
            output_name=output_name,
            output_shape=tuple(self.values[output_name].shape[1:]),
            nodes=tuple(self.nodes),
            constants={name: self.values[name][0] for name in sorted(used & self.constant)},
        )

    def _drop_dead_nodes(self, output_name: str) -> None:
        """Drop the nodes only folded nodes read (e.g. a Relu whose output feeds only a Shape)."""
        live, kept = {output_name}, []
        for node in reversed(self.nodes):
            if live.intersection(node.outputs):
                kept.append(node)
                live.update(node.inputs)
        self.nodes = kept[::-1]

    def _input(self) -> tuple[str, tuple[int, ...]]:
        """The single non-initializer graph input and its shape (symbolic or zero dimensions -> 1)."""
        initializers = {tensor.name for tensor in self.model.graph.initializer}
        inputs = [value for value in self.model.graph.input if value.name not in initializers]
        if len(inputs) != 1:
            names = _names(value.name for value in inputs)
            raise ModelError(f"{self.path}: expected exactly one graph input, found {len(inputs)}: {names}")
        tensor_type = inputs[0].type.tensor_type
        if not tensor_type.HasField("shape"):
            raise ModelError(f"{self.path}: input '{inputs[0].name}' has no shape")
        shape = tuple(dim.dim_value if dim.dim_value > 0 else 1 for dim in tensor_type.shape.dim)
        return inputs[0].name, shape

    def _output(self) -> str:
        """The name of the single graph output."""
        outputs = [value.name for value in self.model.graph.output]
        if len(outputs) != 1:
            raise ModelError(f"{self.path}: expected exactly one graph output, found {len(outputs)}: {_names(outputs)}")
        return outputs[0]

    def _needed_nodes(self, output_name: str) -> list[int]:
        """Indices of the nodes the output depends on, in model order (dead branches are dropped)."""
        needed_tensors = {output_name}
        keep = []
        for index in reversed(range(len(self.model.graph.node))):
            proto = self.model.graph.node[index]
            if needed_tensors.intersection(proto.output):
                keep.append(index)
                needed_tensors.update(name for name in proto.input if name)
        return keep[::-1]

    def _report(self, proto: onnx.NodeProto, name: str, reason: str | None) -> None:
        """Record an unsupported node; its outputs become unknown."""
        label = proto.op_type if proto.domain in _DEFAULT_DOMAINS else f"{proto.domain}.{proto.op_type}"
        self.problems.setdefault(label, []).append((name, reason))
        self.unknown.update(proto.output)

    def _visit(self, proto: onnx.NodeProto, index: int, opset: int, consumed: set[str]) -> None:
        """Check one node, then fold it into a constant or evaluate it on the zero input."""
        node = Node(
            name=proto.name or f"{proto.op_type}_{index}",
            op_type=proto.op_type,
            inputs=tuple(proto.input),
            outputs=tuple(proto.output),
            attrs=_attributes(proto, opset),
        )
        for name in node.inputs:
            if name and name not in self.values and name not in self.unknown:
                raise ModelError(
                    f"{self.path}: node '{node.name}' ({node.op_type}) reads tensor '{name}', "
                    "which is not defined before it"
                )
        is_const = tuple(not name or name in self.constant for name in node.inputs)
        op = REGISTRY.get(node.op_type) if proto.domain in _DEFAULT_DOMAINS else None
        folded = all(is_const) or (op is not None and op.shape_only)
        if folded:
            self.constant.update(node.outputs)
        if op is None:
            self._report(proto, node.name, None)
            return
        extra = [] if op.multi_output else [name for name in node.outputs[1:] if name in consumed]
        reason = op.check(node, is_const) or (
            f"output {_names(extra)} is used (only the first output is supported)" if extra else None
        )
        if reason:
            self._report(proto, node.name, reason)
            return
        if any(name in self.unknown for name in node.inputs):
            self.unknown.update(node.outputs)
            return
        for part in _output_nodes(node, consumed) if op.multi_output else (node,):
            self._evaluate(part, folded)

    def _evaluate(self, node: Node, folded: bool) -> None:
        """Evaluate a supported node with batch 1; keep it as a graph node unless it was folded."""
        args = [self.values[name] if name else np.empty((1, 0)) for name in node.inputs]
        try:
            with np.errstate(all="ignore"):
                value = np.asarray(REGISTRY[node.op_type].eval(node, *args))
        except _EVAL_ERRORS as exc:
            raise ModelError(f"{self.path}: node '{node.name}' ({node.op_type}) cannot be evaluated: {exc}") from exc
        if value.ndim == 0 or value.shape[0] != 1:
            raise ModelError(f"{self.path}: node '{node.name}' ({node.op_type}) gave a value of shape {value.shape}")
        self.values[node.outputs[0]] = value
        if not folded:
            self.nodes.append(node)
