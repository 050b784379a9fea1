"""Binds a VNN-LIB 2.x query to its ONNX models: files per network, shapes, hidden tensors, default inputs.

Every mismatch is a ``PropertyError`` at the declaration it concerns (``file:line:col``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from nnverify.errors import InputFileError, ModelError
from nnverify.spec.vnnlib2_types import NetworkDecl, Query, TensorVar

_FLOAT = onnx.TensorProto.FLOAT


@dataclass(frozen=True, slots=True)
class BoundNetwork:
    """A declared network with its ONNX model.

    Attributes:
        decl: The declaration.
        path: The ONNX file (an ``equal-to`` network uses its target's file).
        model: The loaded model.
        input_names: ONNX graph inputs matching ``decl.inputs``, in order: those without an initializer, and
            those with one (a default value) that the query declares ``initialized``.
        input_shapes: Their ONNX shapes (symbolic dimensions from the declaration, else 1).
        output_names: ONNX graph outputs, matching ``decl.outputs``.
        defaults: Per declared input, the default value (flat, float64) of an ``initialized`` one, else None.
    """

    decl: NetworkDecl
    path: str
    model: onnx.ModelProto
    input_names: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    output_names: tuple[str, ...]
    defaults: tuple[np.ndarray | None, ...] = ()

    def default(self, k: int) -> np.ndarray | None:
        """The default value of declared input ``k`` if it is ``initialized``, else None."""
        return self.defaults[k] if self.defaults else None

    def onnx_name(self, var: TensorVar) -> str:
        """The ONNX tensor a declared variable of this network stands for."""
        if var.onnx_name is not None:
            return var.onnx_name
        if var in self.decl.inputs:
            return self.input_names[self.decl.inputs.index(var)]
        return self.output_names[self.decl.outputs.index(var)]


def bind(query: Query, files: dict[str, str]) -> tuple[BoundNetwork, ...]:
    """Check ``--network name=file`` against the query and every model against its declaration.

    Raises:
        PropertyError: An unknown or missing network name, a shape or count mismatch, a missing hidden tensor.
        InputFileError, ModelError: A model file cannot be read.
    """
    declared = {n.name for n in query.networks}
    for name in files:
        if name not in declared:
            known = ", ".join(n.name for n in query.networks)
            raise query.error(f"--network {name}: the query declares no network '{name}' (it declares {known})", 0)
    models: dict[str, onnx.ModelProto] = {}
    out = []
    for decl in query.networks:
        owner = decl.equal_to or decl.name
        path = files.get(owner)
        if path is None:
            raise query.error(f"network '{owner}' needs a model: pass --network {owner}=<file.onnx>", decl.offset)
        if decl.equal_to and decl.name in files and os.path.realpath(files[decl.name]) != os.path.realpath(path):
            raise query.error(
                f"network '{decl.name}' is declared equal-to '{owner}' but --network gives it another file",
                decl.relation_offset,
            )
        if path not in models:
            models[path] = read_model(path)
        out.append(_bind_one(query, decl, path, models[path]))
    by_name = {net.decl.name: net for net in out}
    for net in out:
        target = net.decl.isomorphic_to
        if target is not None and _structure(net.model) != _structure(by_name[target].model):
            raise query.error(
                f"network '{net.decl.name}' is declared isomorphic-to '{target}', but {net.path} and "
                f"{by_name[target].path} differ in their operators or weight shapes",
                net.decl.relation_offset,
            )
    return tuple(out)


def _structure(model: onnx.ModelProto) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """What isomorphic models share: the operator sequence and the weight shapes (not the weights)."""
    ops = tuple(node.op_type for node in model.graph.node)
    return ops, tuple(tuple(t.dims) for t in model.graph.initializer)


def read_model(path: str) -> onnx.ModelProto:
    if not Path(path).is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        return onnx.load_model(path)
    except Exception as exc:  # protobuf and onnx raise many types
        raise ModelError(f"{path}: not an ONNX model ({one_line(exc)})") from exc


def dims_of(value_info: onnx.ValueInfoProto) -> list[int | None]:
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
        for d in value_info.type.tensor_type.shape.dim
    ]


def _fit(query: Query, var: TensorVar, dims: list[int | None], what: str) -> tuple[int, ...]:
    """The ONNX shape with symbolic dimensions filled in, if it matches the declaration (leading 1s ignored)."""
    declared = list(var.shape)
    if len(dims) == len(declared):
        dims = [d if d is not None else k for d, k in zip(dims, declared, strict=True)]
    shape = tuple(1 if d is None else d for d in dims)

    def core(s: tuple[int, ...] | list[int]) -> list[int]:
        s = list(s)
        while s and s[0] == 1:
            s.pop(0)
        return s

    if core(shape) != core(declared):
        declared_text = "[" + ",".join(map(str, var.shape)) + "]"
        onnx_text = "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"
        raise query.error(
            f"shape mismatch: '{var.name}' is declared {declared_text}, the ONNX {what} has shape {onnx_text}",
            var.offset,
        )
    return shape


def _bind_one(query: Query, decl: NetworkDecl, path: str, model: onnx.ModelProto) -> BoundNetwork:
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    inputs = _matched_inputs(query, decl, path, graph, inits)
    for kind, mine, theirs in (("inputs", decl.inputs, inputs), ("outputs", decl.outputs, list(graph.output))):
        if len(mine) != len(theirs):
            raise query.error(
                f"network '{decl.name}' declares {len(mine)} {kind}; {path} has {len(theirs)} "
                f"({', '.join(t.name for t in theirs)})",
                decl.offset,
            )
    for info in [*inputs, *graph.output]:
        if info.type.tensor_type.elem_type != _FLOAT:
            raise ModelError(f"{path}: tensor '{info.name}' is not float32; queries over several networks need float32")
    shapes = tuple(_fit(query, v, dims_of(i), f"input '{i.name}'") for v, i in zip(decl.inputs, inputs, strict=True))
    for var, info in zip(decl.outputs, graph.output, strict=True):
        _fit(query, var, dims_of(info), f"output '{info.name}'")
    produced = {name for node in graph.node for name in node.output if name}
    inferred: dict[str, onnx.ValueInfoProto] = {}
    for var in decl.hidden:
        if var.onnx_name not in produced:
            raise query.error(f'hidden tensor "{var.onnx_name}" is not produced by any node of {path}', var.offset)
        inferred = inferred or inferred_infos(model)
        info = inferred.get(var.onnx_name or "")
        if info is not None and info.type.tensor_type.HasField("shape"):
            _fit(query, var, dims_of(info), f'tensor "{var.onnx_name}"')
    defaults = tuple(
        numpy_helper.to_array(inits[i.name]).astype(np.float64).ravel() if v.initialized else None
        for v, i in zip(decl.inputs, inputs, strict=True)
    )
    for var, value in zip(decl.inputs, defaults, strict=True):
        if value is not None and value.size != var.size:
            raise query.error(f"'{var.name}' is initialized with {value.size} values; declared {var.size}", var.offset)
    return BoundNetwork(
        decl,
        path,
        model,
        tuple(i.name for i in inputs),
        shapes,
        tuple(o.name for o in graph.output),
        defaults if any(d is not None for d in defaults) else (),
    )


def _matched_inputs(
    query: Query, decl: NetworkDecl, path: str, graph: onnx.GraphProto, inits: dict[str, onnx.TensorProto]
) -> list[onnx.ValueInfoProto]:
    """The ONNX graph inputs the declared inputs stand for, in order. An input without an initializer is always
    declared; one with an initializer (an overridable default: weights of older exporters are such inputs) only by
    an ``initialized`` declaration, which fixes it to that default. (Declaring such an input without
    ``initialized``, to constrain it freely, is not supported: it is read as a weight.)"""
    pending = list(decl.inputs)
    out = []
    for info in graph.input:
        if info.name in inits and not (pending and pending[0].initialized):
            continue
        if pending and pending[0].initialized and info.name not in inits:
            var = pending[0]
            raise query.error(
                f"'{var.name}' is declared initialized, but ONNX input '{info.name}' of {path} has no default value",
                var.offset,
            )
        out.append(info)
        if pending:
            pending.pop(0)
    return out


def inferred_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """ONNX shape inference's value infos by tensor name (empty if inference fails)."""
    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # inference is best effort; replay checks sizes again
        return {}
    return {v.name: v for v in [*graph.value_info, *graph.output]}


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (library messages can span many lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
