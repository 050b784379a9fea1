"""The product graph of a query: every network of it merged into one ONNX model with one flat input and output.

The input is the concatenation of the declared input scalars, where equalities ``(== A[i] C[j])`` asserted at
the top level are substitutions (one column); a network ``equal-to`` another on the same columns is the same
computation (one copy). The output is every declared output and hidden tensor, flattened and concatenated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter

from nnverify.errors import ModelError
from nnverify.multi.bind import BoundNetwork, one_line
from nnverify.spec.vnnlib2_types import Constraint, Query, Rel, Scalar

_FLOAT = onnx.TensorProto.FLOAT
INPUT_NAME = "nnv_x"
OUTPUT_NAME = "nnv_y"


@dataclass(frozen=True, slots=True)
class Product:
    """The merged model and where each declared scalar is in it.

    Attributes:
        model: One input ``nnv_x`` ``[1, n_inputs]``, one output ``nnv_y`` ``[1, n_outputs]``, float32.
        x_columns: Input scalar -> input column (substituted scalars share one).
        y_columns: Output or hidden scalar -> output column (a shared computation's scalars share one).
        substitutions: The top-level equalities turned into shared columns (left out of the property).
        constants: ``initialized`` input scalars -> their default values (no column).
    """

    model: onnx.ModelProto
    n_inputs: int
    n_outputs: int
    x_columns: dict[Scalar, int]
    y_columns: dict[Scalar, int]
    substitutions: frozenset[Constraint]
    constants: dict[Scalar, Fraction] = dataclasses.field(default_factory=dict)


#: Where an ONNX input of an instance comes from: product input columns, or (instance, tensor) of another.
Source = tuple[int, ...] | tuple[int, str]


class _UnionFind:
    """Classes of input scalars; each is represented by its first scalar in declaration order."""

    def __init__(self, order: dict[Scalar, int]) -> None:
        self.parent: dict[Scalar, Scalar] = {}
        self.order = order

    def find(self, v: Scalar) -> Scalar:
        root = v
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        self.parent[v] = root
        return root

    def union(self, a: Scalar, b: Scalar) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb, key=self.order.__getitem__)] = min(ra, rb, key=self.order.__getitem__)


def _substitutions(query: Query, inputs: set[str]) -> list[Constraint]:
    """Top-level ``a*u - a*v == 0`` between two input scalars."""
    out = []
    for c in query.common:
        if c.rel is Rel.EQ and c.b == 0 and len(c.coefs) == 2:
            (u, cu), (v, cv) = c.coefs
            if u[0] in inputs and v[0] in inputs and cu == -cv:
                out.append(c)
    return out


def build_product(query: Query, nets: tuple[BoundNetwork, ...]) -> Product:
    """Merge the query's networks into one model (see the module docstring)."""
    inputs = [
        v
        for n in query.networks
        for v, src in zip(n.inputs, n.feeders, strict=True)
        if src is None and not v.initialized
    ]
    inputs += query.auxiliary
    order = {(v.name, i): k for k, (v, i) in enumerate((v, i) for v in inputs for i in range(v.size))}
    uf = _UnionFind(order)
    subs = _substitutions(query, {v.name for v in inputs})
    for c in subs:
        uf.union(c.coefs[0][0], c.coefs[1][0])
    roots = sorted({uf.find(s) for s in order}, key=order.__getitem__)
    column = {r: k for k, r in enumerate(roots)}
    x_columns = {s: column[uf.find(s)] for s in order}
    nets = _same_opset(nets)
    builder = _Builder(len(roots))
    instances: dict[tuple[str, tuple[Source, ...]], int] = {}
    y_columns: dict[Scalar, int] = {}
    constants: dict[Scalar, Fraction] = {}
    tensors: dict[str, tuple[int, str]] = {}  # output/hidden variable -> (instance, ONNX tensor)
    for net in nets:
        sources: list[Source] = []
        for k, (var, src) in enumerate(zip(net.decl.inputs, net.decl.feeders, strict=True)):
            default = net.default(k)
            if default is not None:  # initialized: the model's own default value (kept as an initializer)
                sources.append(())
                constants.update({(var.name, i): Fraction(float(v)) for i, v in enumerate(default)})
            elif src is None:
                sources.append(tuple(x_columns[(var.name, i)] for i in range(var.size)))
            else:  # fed by an earlier network's tensor: its scalars are that tensor's output columns
                sources.append(tensors[src])
                for i in range(var.size):
                    y_columns[(var.name, i)] = y_columns[(src, i)]
        key = (net.path, tuple(sources))
        if key not in instances:
            instances[key] = builder.add_instance(net, sources)
        k = instances[key]
        for var in net.decl.hidden + net.decl.outputs:
            start = builder.output(k, net.onnx_name(var), var.size)
            tensors[var.name] = (k, net.onnx_name(var))
            for i in range(var.size):
                y_columns[(var.name, i)] = start + i
    model = builder.finish(nets)
    return Product(model, len(roots), builder.n_out, x_columns, y_columns, frozenset(subs), constants)


def _default_opset(model: onnx.ModelProto) -> int:
    return max((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), default=1)


def _same_opset(nets: tuple[BoundNetwork, ...]) -> tuple[BoundNetwork, ...]:
    """The networks with their models converted to the highest default-domain opset among them (one merged
    model has one opset, and an op read under another opset's rules could compute something else)."""
    target = max(7, *(_default_opset(net.model) for net in nets))
    converted: dict[str, onnx.ModelProto] = {}
    out = []
    for net in nets:
        if _default_opset(net.model) == target:
            out.append(net)
            continue
        if net.path not in converted:
            try:
                converted[net.path] = version_converter.convert_version(net.model, target)
            except Exception as exc:  # the converter raises many types
                raise ModelError(
                    f"{net.path}: opset {_default_opset(net.model)} differs from the other networks' {target} "
                    f"and cannot be converted ({one_line(exc)})"
                ) from exc
        out.append(dataclasses.replace(net, model=converted[net.path]))
    return tuple(out)


class _Builder:
    """Accumulates the merged graph's nodes, initializers and outputs."""

    def __init__(self, n_inputs: int) -> None:
        self.n_in = n_inputs
        self.n_out = 0
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.models: dict[str, str] = {}  # path -> initializer prefix
        self.outputs: dict[tuple[int, str], int] = {}  # (instance, tensor) -> first column
        self.pieces: list[str] = []
        self.count = 0
        self.renames: dict[int, Callable[[str], str]] = {}
        self.copied: set[tuple[str, str]] = set()

    def add_instance(self, net: BoundNetwork, sources: list[Source]) -> int:
        k = self.count
        self.count += 1
        graph = net.model.graph
        feeds = {name for k, name in enumerate(net.input_names) if net.default(k) is None}
        init_names = {t.name for t in graph.initializer} - feeds
        if net.path not in self.models:
            self.models[net.path] = f"m{len(self.models)}_"
        for t in graph.initializer:  # once per model file (equal-to copies may feed different inputs)
            if t.name in init_names and (net.path, t.name) not in self.copied:
                self.copied.add((net.path, t.name))
                copy = onnx.TensorProto()
                copy.CopyFrom(t)
                copy.name = self.models[net.path] + t.name
                self.inits.append(copy)
        iprefix, nprefix = self.models[net.path], f"n{k}_"

        def rename(name: str) -> str:
            if not name:
                return name
            return iprefix + name if name in init_names else nprefix + name

        for name, shape, source in zip(net.input_names, net.input_shapes, sources, strict=True):
            if name not in feeds:  # initialized: its initializer stands in for it
                continue
            size = int(np.prod(shape))
            sel, shp = f"{nprefix}select_{name}", f"{nprefix}shape_{name}"
            self.inits.append(numpy_helper.from_array(np.array(shape, dtype=np.int64), shp))
            if isinstance(source[-1], str):  # (instance, tensor): composition
                k_from, tensor = source
                assert isinstance(k_from, int)
                self.nodes.append(helper.make_node("Reshape", [self.renames[k_from](tensor), shp], [rename(name)]))
                continue
            select = np.zeros((self.n_in, size), dtype=np.float32)
            select[[int(c) for c in source], np.arange(size)] = 1.0
            self.inits.append(numpy_helper.from_array(select, sel))
            self.nodes.append(helper.make_node("MatMul", [INPUT_NAME, sel], [sel + "_out"]))
            self.nodes.append(helper.make_node("Reshape", [sel + "_out", shp], [rename(name)]))
        for node in graph.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = nprefix + node.name if node.name else ""
            copy.input[:] = [rename(n) for n in node.input]
            copy.output[:] = [rename(n) for n in node.output]
            self.nodes.append(copy)
        self.renames[k] = rename
        return k

    def output(self, k: int, tensor: str, size: int) -> int:
        """The first output column of a tensor of instance ``k`` (added once)."""
        if (k, tensor) not in self.outputs:
            name = f"nnv_out{len(self.pieces)}"
            shp = name + "_shape"
            self.inits.append(numpy_helper.from_array(np.array([1, size], dtype=np.int64), shp))
            self.nodes.append(helper.make_node("Reshape", [self.renames[k](tensor), shp], [name]))
            self.pieces.append(name)
            self.outputs[(k, tensor)] = self.n_out
            self.n_out += size
        return self.outputs[(k, tensor)]

    def finish(self, nets: tuple[BoundNetwork, ...]) -> onnx.ModelProto:
        if len(self.pieces) == 1:
            self.nodes.append(helper.make_node("Identity", self.pieces, [OUTPUT_NAME]))
        else:
            self.nodes.append(helper.make_node("Concat", self.pieces, [OUTPUT_NAME], axis=1))
        graph = helper.make_graph(
            self.nodes,
            "nnverify_product",
            [helper.make_tensor_value_info(INPUT_NAME, _FLOAT, [1, self.n_in])],
            [helper.make_tensor_value_info(OUTPUT_NAME, _FLOAT, [1, self.n_out])],
            self.inits,
        )
        opsets: dict[str, int] = {"": 7}
        for net in nets:
            for op in net.model.opset_import:
                domain = "" if op.domain == "ai.onnx" else op.domain
                opsets[domain] = max(opsets.get(domain, 0), op.version)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
        model.ir_version = max(7, *(net.model.ir_version for net in nets))
        return model
