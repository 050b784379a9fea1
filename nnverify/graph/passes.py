"""``Graph`` -> ``LayerGraph``: affine nodes become matrices (read off their ``eval``), activations stay.

Exact identities (Flatten of an already flat tensor, Identity, Dropout ...) are dropped, and consecutive
affine layers are composed whenever the inner one has no other consumer, so e.g. Sub, Flatten, MatMul,
Add becomes one layer and BatchNormalization disappears into the Conv or Gemm before it.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from nnverify.budget import Budget
from nnverify.errors import ModelError
from nnverify.graph.core import Graph
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, Layer, LayerGraph, LinearMap
from nnverify.graph.lowering import is_lowered, lower
from nnverify.graph.lowering_smooth import lower_smooth
from nnverify.graph.ops.base import REGISTRY, Node


def to_layers(graph: Graph, *, merge: bool = True, budget: Budget | None = None) -> LayerGraph:
    """The analysis view of ``graph``: flat affine layers and activations, float64, affine chains merged.

    ``merge=False`` composes two layers only when float64 computes the composition exactly (one of them
    merely selects, negates or shifts values, e.g. MatMul then Add), so every weight and bias is still the
    model's own number. Exact backends use that view: a general composition multiplies weights in float64,
    which rounds.

    ``budget`` (None: no limit) is looked at while the dense matrices are read off, and each must fit its
    memory cap.

    Raises:
        ModelError: A node is neither affine nor an activation the analysis understands.
        BudgetExpired: The deadline passed while building the view.
        ResourceLimitError: A layer's dense matrix would not fit the memory cap.
    """
    graph, _ = lower_smooth(graph)  # two-variable Mul/Div and Softmax: relaxed ops, never read as a matrix
    with np.errstate(all="ignore"):  # only shapes are read (a divisor may be 0 at the zero input)
        values = graph.eval_all(np.zeros((1, graph.n_inputs)))
    shapes = {name: value.shape[1:] for name, value in values.items()}
    layers: list[Layer] = [InputLayer(size=graph.n_inputs, name=graph.input_name)]
    layer_of = {graph.input_name: 0}
    for node in graph.nodes:
        op = REGISTRY[node.op_type]
        layer: Layer
        if op.affine:
            affine = _affine_layer(graph, node, shapes, layer_of, budget or Budget.unlimited())
            if _is_identity(affine, layers):
                layer_of[node.outputs[0]] = affine.sources[0]
                continue
            layer = affine
        elif (kind := op.activation_of(node, graph.constants)) is not None:
            source = layer_of[node.inputs[0]]
            layer = ActivationLayer(node.name, source, kind, layers[source].size)
        elif is_lowered(node):  # piecewise-linear ops: exact affine + ReLU layers (graph/lowering.py)
            layer_of[node.outputs[0]] = lower(graph, node, shapes, layer_of, layers)
            continue
        else:
            raise ModelError(f"{graph.path}: node '{node.name}' ({node.op_type}) is neither affine nor an activation")
        layer_of[node.outputs[0]] = len(layers)
        layers.append(layer)
    return _merge_affine(layers, layer_of[graph.output_name], exact_only=not merge)


#: Unit vectors evaluated at once when reading off a weight matrix (bounds the temporary memory).
_BLOCK = 512
#: Multiply-adds a block of unit vectors may cost through a dense op (so the budget is looked at often).
_BLOCK_FLOPS = 2**32


def _affine_layer(
    graph: Graph, node: Node, shapes: dict[str, tuple[int, ...]], layer_of: dict[str, int], budget: Budget
) -> AffineLayer:
    """The node as ``y = sum_k W_k x_k + b``, read off its ``eval`` at zero and at unit vectors (a block of
    ``_BLOCK`` or fewer at a time, looking at ``budget`` before each block; the matrix must fit its memory
    cap)."""
    op = REGISTRY[node.op_type]
    variables = list(dict.fromkeys(name for name in node.inputs if name and name not in graph.constants))
    out_size = math.prod(shapes[node.outputs[0]])

    def evaluate(values: dict[str, np.ndarray]) -> np.ndarray:
        args = [
            values[name] if name in values else graph.constants[name][None, ...] if name else np.empty((1, 0))
            for name in node.inputs
        ]
        batch = max(value.shape[0] for value in values.values())
        out = op.eval(node, *args)
        return np.broadcast_to(out, (batch, *out.shape[1:])).reshape(batch, out_size).astype(np.float64)

    zeros = {name: np.zeros((1, *shapes[name])) for name in variables}
    bias = evaluate(zeros)[0]
    weights: dict[int, np.ndarray] = {}
    for name in variables:  # a tensor read twice (x + x) is set in both places at once
        size = math.prod(shapes[name])
        # at most _BLOCK_FLOPS multiply-adds per block for a dense op: a block takes about a second at most
        block = max(1, min(_BLOCK, size, _BLOCK_FLOPS // max(1, size * out_size)))
        phase = f"building the analysis view (a dense {out_size:,} x {size:,} matrix for node '{node.name}')"
        budget.check_alloc(8.0 * (out_size * size + 3 * block * (size + out_size)), phase)
        weight = np.empty((out_size, size))
        for start in range(0, size, block):
            budget.check(phase)
            count = min(block, size - start)
            units = np.zeros((count, size))
            units[np.arange(count), start + np.arange(count)] = 1.0
            weight[:, start : start + count] = (evaluate(zeros | {name: units.reshape(count, *shapes[name])}) - bias).T
        source = layer_of[name]  # two tensors may share a layer when an identity node was dropped
        weights[source] = weights[source] + weight if source in weights else weight
    maps = tuple(_linear_map(graph, node, shapes, weight) for weight in weights.values())
    return AffineLayer(node.name, tuple(weights), tuple(weights.values()), bias, maps)


def _linear_map(graph: Graph, node: Node, shapes: dict[str, tuple[int, ...]], weight: np.ndarray) -> LinearMap | None:
    """The op's cheaper linear operator (Conv: its kernel) when it equals the dense ``weight`` (checked on random
    rows), else None."""
    if not node.inputs or node.inputs[0] not in shapes:
        return None
    from nnverify.bounds.adjoint import checked_map

    return checked_map(REGISTRY[node.op_type].linear_map(node, graph.constants, shapes[node.inputs[0]]), weight)


def _is_identity(layer: AffineLayer, layers: list[Layer]) -> bool:
    """True if the layer maps its single source to itself unchanged."""
    if len(layer.sources) != 1 or layer.size != layers[layer.sources[0]].size or np.any(layer.bias):
        return False
    return bool(np.array_equal(layer.weights[0], np.eye(layer.size)))


def _sources(layer: Layer | None) -> tuple[int, ...]:
    """The layers a layer reads (none for the input and for removed layers)."""
    if isinstance(layer, AffineLayer):
        return layer.sources
    if isinstance(layer, ActivationLayer):
        return (layer.source,)
    return ()


def _consumers(layers: list[Layer | None]) -> list[int]:
    """How many layers read each layer."""
    counts = [0] * len(layers)
    for layer in layers:
        for source in set(_sources(layer)):
            counts[source] += 1
    return counts


def _compose(outer: AffineLayer, position: int, inner: AffineLayer) -> AffineLayer:
    """``outer`` with its source at ``position`` (which is ``inner``) replaced by ``inner``'s sources."""
    w_outer = outer.weights[position]
    weights: dict[int, np.ndarray] = {}
    terms = [(s, w) for k, (s, w) in enumerate(zip(outer.sources, outer.weights, strict=True)) if k != position]
    terms += [(s, w_outer @ w) for s, w in zip(inner.sources, inner.weights, strict=True)]
    for source, weight in terms:
        weights[source] = weights[source] + weight if source in weights else weight
    return AffineLayer(outer.name, tuple(weights), tuple(weights.values()), outer.bias + w_outer @ inner.bias)


def _selects(weight: np.ndarray) -> bool:
    """True if every row has at most one nonzero and it is +1 or -1 (multiplying by it is exact)."""
    nonzero = weight != 0
    return bool(np.all(nonzero.sum(axis=1) <= 1) and np.all(np.abs(weight[nonzero]) == 1.0))


def _exact_sum(a: np.ndarray, b: np.ndarray) -> bool:
    """True if ``a + b`` is computed exactly in float64 (elementwise)."""
    triples = zip(a.tolist(), b.tolist(), (a + b).tolist(), strict=True)
    return all(Fraction(x) + Fraction(y) == Fraction(z) for x, y, z in triples)


def _composes_exactly(outer: AffineLayer, position: int, inner: AffineLayer) -> bool:
    """True if ``_compose(outer, position, inner)`` has exactly the real numbers of the two layers' product."""
    if len(outer.sources) != 1 or len(inner.sources) != 1:
        return False
    w_outer, w_inner = outer.weights[position], inner.weights[0]
    if _selects(w_outer):
        return _exact_sum(outer.bias, w_outer @ inner.bias)
    return _selects(w_inner) and not np.any(inner.bias)


def _mergeable_source(
    layer: AffineLayer, layers: list[Layer | None], consumers: list[int], output: int, exact_only: bool
) -> int | None:
    """Position of a source of ``layer`` that is affine, read only by ``layer`` and not the output (and, if
    ``exact_only``, whose composition with ``layer`` is exact)."""
    for position, source in enumerate(layer.sources):
        inner = layers[source]
        if not isinstance(inner, AffineLayer) or consumers[source] != 1 or source == output:
            continue
        if not exact_only or _composes_exactly(layer, position, inner):
            return position
    return None


def _merge_affine(layers: list[Layer], output: int, *, exact_only: bool = False) -> LayerGraph:
    """Compose every affine layer into its affine consumer when it has no other use, then renumber.

    One pass in topological order suffices: a merge into layer ``i`` can only make a layer mergeable whose
    last remaining consumer is ``i`` itself, and ``i`` keeps merging until none of its sources qualifies.
    """
    merged: list[Layer | None] = list(layers)
    consumers = _consumers(merged)
    for index, layer in enumerate(merged):
        while isinstance(layer, AffineLayer):
            position = _mergeable_source(layer, merged, consumers, output, exact_only)
            if position is None:
                break
            source = layer.sources[position]
            inner = merged[source]
            assert isinstance(inner, AffineLayer)
            for shared in set(inner.sources) & set(layer.sources):
                consumers[shared] -= 1  # read by the outer layer already; the inner one goes away
            layer = merged[index] = _compose(layer, position, inner)
            merged[source] = None
    return _renumber(merged, output)


def _renumber(layers: list[Layer | None], output: int) -> LayerGraph:
    """Drop the removed layers and rewrite source indices."""
    new_index: dict[int, int] = {}
    kept: list[Layer] = []
    for index, layer in enumerate(layers):
        if layer is None:
            continue
        new_index[index] = len(kept)
        if isinstance(layer, AffineLayer):
            sources = tuple(new_index[s] for s in layer.sources)
            layer = AffineLayer(layer.name, sources, layer.weights, layer.bias, layer.maps)
        elif isinstance(layer, ActivationLayer):
            layer = ActivationLayer(layer.name, new_index[layer.source], layer.kind, layer.size)
        kept.append(layer)
    return LayerGraph(tuple(kept), new_index[output])
