"""The layer view of a graph with its weights as CSR matrices built without their dense matrices.

Each op is asked for its matrix (``Op.sparse_matrix``: the convolutions' kernel taps) and kernel operator
(``Op.kernel_map``), else elementwise ops give diagonals and small ops are read off their ``eval``; each matrix is
checked against ``eval`` on random inputs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnverify.budget import Budget
from nnverify.graph.core import Graph
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, Layer, LayerGraph
from nnverify.graph.lowering import is_lowered
from nnverify.graph.ops.base import REGISTRY, Node

#: Ops read off their ``eval`` with unit vectors only below this many matrix entries (in x out).
READ_OFF_MAX = 1 << 24
#: Bytes per stored nonzero (value, column index, and the ``|W|`` copy every layer keeps).
NNZ_BYTES = 24


def sparse_view(graph: Graph, limit_mb: float = math.inf, budget: Budget | None = None) -> LayerGraph | None:
    """The layer view of ``graph`` (affine nodes as CSR weights, activations kept), or None when a node has no
    sparse form (a lowered op, an affine op too large to read off that is neither a convolution nor elementwise)
    or the nonzeros would pass ``limit_mb``."""
    shapes = {name: value.shape[1:] for name, value in graph.eval_all(np.zeros((1, graph.n_inputs))).items()}
    layers: list[Layer] = [InputLayer(size=graph.n_inputs, name=graph.input_name)]
    layer_of = {graph.input_name: 0}
    used = 0.0
    for node in graph.nodes:
        if budget is not None:
            budget.check("building the sparse view after the cut")
        op = REGISTRY[node.op_type]
        if op.affine:
            built = _affine(graph, node, shapes, layer_of)
            if built is None:
                return None
            if _identity(built, layers):
                layer_of[node.outputs[0]] = built.sources[0]
                continue
            used += sum(_bytes(w) for w in built.weights) / 2**20
            if used > limit_mb:
                return None
            layer: Layer = built
        elif not is_lowered(node) and (kind := op.activation_of(node, graph.constants)) is not None:
            source = layer_of[node.inputs[0]]
            layer = ActivationLayer(node.name, source, kind, layers[source].size)
        else:
            return None
        layer_of[node.outputs[0]] = len(layers)
        layers.append(layer)
    return LayerGraph(tuple(layers), layer_of[graph.output_name])


def _bytes(w: Any) -> float:
    return float(NNZ_BYTES * w.nnz if hasattr(w, "nnz") else 16 * w.size)


def _identity(layer: AffineLayer, layers: list[Layer]) -> bool:
    """Whether the layer maps its single source to itself unchanged (a Reshape or Flatten)."""
    if len(layer.sources) != 1 or layer.size != layers[layer.sources[0]].size or np.any(layer.bias):
        return False
    w: Any = layer.weights[0]
    if not hasattr(w, "nnz"):
        return bool(np.array_equal(w, np.eye(layer.size)))
    coo = w.tocoo()
    return bool(w.nnz == layer.size and np.all(coo.row == coo.col) and np.all(coo.data == 1.0))


def _affine(
    graph: Graph, node: Node, shapes: dict[str, tuple[int, ...]], layer_of: dict[str, int]
) -> AffineLayer | None:
    """The node as ``y = sum_k W_k x_k + b`` with CSR (or small dense) weights, or None."""
    variables = list(dict.fromkeys(n for n in node.inputs if n and n not in graph.constants))
    out_shape = shapes[node.outputs[0]]

    def evaluate(values: dict[str, np.ndarray]) -> np.ndarray:
        batch = max((v.shape[0] for v in values.values()), default=1)
        full = {n: values.get(n, np.zeros((1, *shapes[n]))) for n in variables}
        args = [full[n] if n in full else graph.constants[n][None, ...] if n else np.empty((1, 0)) for n in node.inputs]
        out = REGISTRY[node.op_type].eval(node, *args)
        return np.broadcast_to(out, (batch, *out.shape[1:])).reshape(batch, -1).astype(np.float64)

    bias = evaluate({})[0]
    weights: dict[int, Any] = {}
    for name in variables:
        w = _kernel_csr(graph, node, shapes[name], out_shape) if len(variables) == 1 else None
        if w is None:
            w = _diagonal(name, shapes[name], evaluate, bias) if shapes[name] == out_shape else None
        if w is None and math.prod(shapes[name]) * bias.size <= READ_OFF_MAX:
            w = _read_off(name, shapes[name], evaluate, bias)
        if w is None or not _agrees(w, name, shapes[name], evaluate, bias):
            return None
        source = layer_of[name]
        weights[source] = weights[source] + w if source in weights else w
    maps: tuple[Any, ...] = ()
    if len(weights) == 1 and len(variables) == 1:
        maps = (_checked(_kernel_map(graph, node, shapes[variables[0]], out_shape), next(iter(weights.values()))),)
    return AffineLayer(node.name, tuple(weights), tuple(weights.values()), bias, maps)


def _kernel_map(graph: Graph, node: Node, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Any:
    """The op's kernel operator (``Op.kernel_map``: Conv's ``ConvMap``, ConvTranspose's ``TransposedMap``) or None."""
    return REGISTRY[node.op_type].kernel_map(node, graph.constants, in_shape, out_shape)


def _checked(cmap: Any, w: Any) -> Any:
    """``cmap`` if it equals the sparse ``w`` both ways on random rows, else None."""
    if cmap is None:
        return None
    rng = np.random.default_rng(1)
    x, lam = rng.standard_normal((2, w.shape[1])), rng.standard_normal((2, w.shape[0]))
    tol = 1e-9 * (1.0 + float(abs(w).max())) * math.sqrt(max(w.shape))
    try:
        ok = np.allclose(cmap.forward(x), (w @ x.T).T, rtol=0.0, atol=tol)
        ok = ok and np.allclose(cmap.adjoint(lam), (w.T @ lam.T).T, rtol=0.0, atol=tol)
    except ValueError:
        return None
    return cmap if ok else None


def _agrees(w: Any, name: str, shape: tuple[int, ...], evaluate: Any, bias: np.ndarray) -> bool:
    """Whether ``w`` equals the op's linear part on two random inputs (guards every builder's conventions)."""
    x = np.random.default_rng(0).standard_normal((2, math.prod(shape)))
    want = evaluate({name: x.reshape(2, *shape)}) - bias
    got = np.asarray(w @ x.T).T
    scale = 1.0 + float(np.abs(want).max(initial=0.0))
    return bool(np.allclose(got, want, rtol=0.0, atol=1e-9 * scale))


def _diagonal(name: str, shape: tuple[int, ...], evaluate: Any, bias: np.ndarray) -> Any:
    """The op's matrix if it is diagonal (its action on ones times each element), checked by ``_agrees``."""
    from scipy import sparse

    d = evaluate({name: np.ones((1, *shape))})[0] - bias
    return sparse.diags(d, format="csr")


def _read_off(name: str, shape: tuple[int, ...], evaluate: Any, bias: np.ndarray) -> Any:
    """The op's matrix read off at unit vectors in blocks, each block kept sparse."""
    from scipy import sparse

    size = math.prod(shape)
    block = max(1, min(512, READ_OFF_MAX // max(1, bias.size) // 8))
    parts = []
    for start in range(0, size, block):
        count = min(block, size - start)
        units = np.zeros((count, size))
        units[np.arange(count), start + np.arange(count)] = 1.0
        parts.append(sparse.csr_matrix((evaluate({name: units.reshape(count, *shape)}) - bias).T))
    return sparse.hstack(parts, format="csr")


def _kernel_csr(graph: Graph, node: Node, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Any:
    """The op's matrix built from its parameters (``Op.sparse_matrix``: a convolution's taps), or None."""
    return REGISTRY[node.op_type].sparse_matrix(node, graph.constants, in_shape, out_shape)


def _nonzeros(graph: Graph, node: Node, shapes: dict[str, tuple[int, ...]]) -> int:
    """Estimated nonzeros of an affine node's matrix (``Op.nonzeros``: a convolution's taps, a diagonal ...)."""
    data = next((n for n in node.inputs if n and n not in graph.constants), None)
    in_shape = shapes[data] if data is not None else ()
    return REGISTRY[node.op_type].nonzeros(node, graph.constants, in_shape, shapes[node.outputs[0]])


def backsub_cost(graph: Graph, start: str, shapes: dict[str, tuple[int, ...]]) -> float:
    """Estimated multiply-adds of tightening every activation input after tensor ``start`` by back-substitution
    down to it (each element's two rows times the nonzeros of the affine nodes in between): the work of one box
    at the root, where most are open. ``shapes``: every tensor's shape without the batch axis."""
    index = 0 if start == graph.input_name else 1 + next(i for i, n in enumerate(graph.nodes) if n.outputs[0] == start)
    below, cost = 0, 0.0
    for node in graph.nodes[index:]:
        if REGISTRY[node.op_type].affine:
            below += _nonzeros(graph, node, shapes)
        else:
            cost += 2.0 * math.prod(shapes[node.inputs[0]]) * below
    return cost
