"""Relaxed lowering, on the op graph, of products and quotients of two variable tensors and of Softmax.

``x * y = ((x + y)^2 - (x - y)^2) / 4`` (a MatMul sums such products), ``x / y = x * (1 / y)`` and
``softmax_i(x) = 1 / sum_j exp(x_j - x_i)`` hold in real arithmetic; the rewritten graph has only affine ops and
the activations Pow 2, Reciprocal and, for Softmax, the internal ``exp(min(g, 600))`` and ``1 / max(s, 1)``
(``graph/ops/internal.py``), which every bound pass relaxes with the floating-point margin (no exact leaf: the
search splits to decide). A divisor proved one-signed on the region (``floors``) gets ``k / max(k y, 1)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from nnverify.graph.core import Graph
from nnverify.graph.ops.base import Node, align_ranks
from nnverify.graph.ops.softmax import normalised_axes


def _variable(graph: Graph, name: str) -> bool:
    return bool(name) and name not in graph.constants


def needs_lowering(graph: Graph, node: Node) -> bool:
    """True if ``node`` is a Mul or MatMul of two variable tensors, a Div by a variable tensor, or a Softmax."""
    if node.op_type in ("Mul", "MatMul"):
        return _variable(graph, node.inputs[0]) and _variable(graph, node.inputs[1])
    if node.op_type == "Div":
        return _variable(graph, node.inputs[1])
    return node.op_type == "Softmax"


def matmul_views(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes under which ``A @ B`` is the sum over axis -2 of the broadcast product: ``(..., m, k, 1)`` and
    ``(..., 1, k, n)`` (a 1-D ``A`` is ``(1, k)``, a 1-D ``B`` is ``(k, 1)``, as in ONNX MatMul)."""
    a_view = (1, *a, 1) if len(a) == 1 else (*a, 1)
    b_view = (1, *b, 1) if len(b) == 1 else (*b[:-2], 1, *b[-2:])
    return a_view, b_view


@dataclasses.dataclass
class _Rewriter:
    """Collects the replacement nodes and their new constants (named after the node's output, made unique)."""

    graph: Graph
    scales: Mapping[str, np.ndarray]
    floors: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    nodes: list[Node] = dataclasses.field(default_factory=list)
    constants: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] | None = None
    outputs: set[str] = dataclasses.field(default_factory=set)  # the lowered nodes' own outputs
    taken: set[str] = dataclasses.field(default_factory=set)  # every tensor name in use

    def shape(self, name: str) -> tuple[int, ...]:
        if self.shapes is None:
            with np.errstate(all="ignore"):  # only shapes are read (a divisor may be 0 at the zero input)
                values = self.graph.eval_all(np.zeros((1, self.graph.n_inputs)))
            self.shapes = {key: tuple(value.shape[1:]) for key, value in values.items()}
        return self.shapes[name]

    def fresh(self, name: str) -> str:
        """``name``, or ``name~k`` if the model already uses it (the final output keeps its own name)."""
        k, candidate = 0, name
        while candidate in self.taken:
            k += 1
            candidate = f"{name}~{k}"
        self.taken.add(candidate)
        return candidate

    def const(self, name: str, value: list[int] | float | np.ndarray) -> str:
        name = self.fresh(name)
        self.constants[name] = np.asarray(value, dtype=np.int64 if isinstance(value, list) else np.float64)
        return name

    def emit(self, op_type: str, inputs: list[str], out: str, **attrs: object) -> str:
        """A new node computing ``out`` (a fresh name unless it is an output of the graph being rewritten)."""
        if out not in self.outputs:
            out = self.fresh(out)
        self.taken.add(out)
        self.nodes.append(Node(out, op_type, tuple(inputs), (out,), attrs))
        return out

    def product(self, a: str, b: str, out: str, key: str | None = None) -> str:
        """``a * b`` (both variable): ``a^2`` for one tensor, else ``((s a + b / s)^2 - (s a - b / s)^2) / 4`` with
        ``s = scales[key or out]`` (powers of two, so ``1 / s`` and the identity are exact; none: ``s = 1``)."""
        two = self.const(f"{out}/two", 2.0)
        if a == b:
            return self.emit("Pow", [a, two], out)
        scale = self.scales.get(key or out)
        if scale is not None and np.any(scale != 1.0):
            a = self.emit("Mul", [a, self.const(f"{out}/scale", scale)], f"{out}/scaled_a")
            b = self.emit("Mul", [b, self.const(f"{out}/inverse_scale", 1.0 / scale)], f"{out}/scaled_b")
        total = self.emit("Pow", [self.emit("Add", [a, b], f"{out}/sum"), two], f"{out}/sum2")
        diff = self.emit("Pow", [self.emit("Sub", [a, b], f"{out}/diff"), two], f"{out}/diff2")
        squares = self.emit("Sub", [total, diff], f"{out}/squares")
        return self.emit("Mul", [squares, self.const(f"{out}/quarter", 0.25)], out)

    def reciprocal(self, b: str, out: str) -> str:
        """``1 / b``: with a ``floors`` entry ``c`` (signed powers of two, ``b / c >= 1`` on the region),
        ``k / max(k b, 1)`` for ``k = 1 / c``, bounded on every interval; else Reciprocal."""
        if b not in self.floors:
            return self.emit("Reciprocal", [b], out)
        k = self.const(f"{out}/divisor_scale", 1.0 / np.asarray(self.floors[b], dtype=np.float64))
        scaled = self.emit("Mul", [b, k], f"{out}/scaled_divisor")
        return self.emit("Mul", [self.emit("nnverify.ReciprocalMax1", [scaled], f"{out}/capped"), k], out)

    def quotient(self, a: str, b: str, out: str) -> str:
        """``a / b`` with ``b`` variable: ``a * (1 / b)``."""
        inverse = self.reciprocal(b, f"{out}/reciprocal")
        if _variable(self.graph, a):
            return self.product(a, inverse, out)
        return self.emit("Mul", [a, inverse], out)

    def matmul(self, a: str, b: str, out: str) -> str:
        """``a @ b`` (both variable): the products of ``matmul_views`` summed over ``k``, reshaped to the output."""
        a_view, b_view = matmul_views(self.shape(a), self.shape(b))
        a_r = self.emit("Reshape", [a, self.const(f"{out}/a_view", list(a_view))], f"{out}/a_view")
        b_r = self.emit("Reshape", [b, self.const(f"{out}/b_view", list(b_view))], f"{out}/b_view")
        terms = self.product(a_r, b_r, f"{out}/terms", key=out)
        total = self.emit("ReduceSum", [terms, self.const(f"{out}/axes", [-2])], f"{out}/sum", keepdims=0)
        return self.emit("Reshape", [total, self.const(f"{out}/shape", list(self.shape(out)))], out)

    def softmax(self, node: Node) -> str:
        """``1 / max(sum_j exp(min(x_j - x_i, 600)), 1)`` over the normalised axes (flattened to one axis first if
        several); ``graph/ops/internal.py`` says why the cap and the max keep it sound and finite."""
        x, out = node.inputs[0], node.outputs[0]
        shape = self.shape(x)
        axes = normalised_axes(node, len(shape))
        axis = axes[0]
        flat = (*shape[:axis], math.prod(shape[axis:])) if len(axes) > 1 else shape
        rows = (*flat[: axis + 1], 1, *flat[axis + 1 :])  # x_i along axis
        cols = (*flat[:axis], 1, *flat[axis:])  # x_j along axis + 1
        x_i = self.emit("Reshape", [x, self.const(f"{out}/rows", list(rows))], f"{out}/x_i")
        x_j = self.emit("Reshape", [x, self.const(f"{out}/cols", list(cols))], f"{out}/x_j")
        exps = self.emit("nnverify.ExpCap", [self.emit("Sub", [x_j, x_i], f"{out}/gaps")], f"{out}/exps")
        total = self.emit("ReduceSum", [exps, self.const(f"{out}/axes", [axis + 1])], f"{out}/total", keepdims=0)
        if flat == shape:  # the total is >= 1 (its term j = i is 1): 1 / max(total, 1) is bounded even when its
            return self.emit("nnverify.ReciprocalMax1", [total], out)  # bounds are too loose to show that
        inverse = self.emit("nnverify.ReciprocalMax1", [total], f"{out}/flat")
        return self.emit("Reshape", [inverse, self.const(f"{out}/shape", list(shape))], out)


def product_scales(
    graph: Graph, boxes: Sequence[tuple[np.ndarray, np.ndarray]], samples: int = 64
) -> dict[str, np.ndarray]:
    """Per two-variable product (Mul, MatMul's terms, or Div's ``x * (1 / y)``; by output name), powers of two
    ``s`` per element with ``s^2`` near ``w_b / w_a``, the ratio of the factors' spreads over about ``samples``
    points of the input boxes ``(lb, ub)`` (8 of them at most): the squares' widths ``s w_a + w_b / s`` are then
    about the smallest. Only tightness depends on it (any power of two keeps the identity exact)."""
    nodes = [n for n in graph.nodes if needs_lowering(graph, n) and n.op_type != "Softmax"]
    nodes = [n for n in nodes if _variable(graph, n.inputs[0])]
    if not nodes or not boxes:
        return {}
    rng = np.random.default_rng(0)
    chosen = boxes[:: max(1, len(boxes) // 8)][:8]  # at most 8 boxes, ``samples`` points in all
    each = max(4, samples // len(chosen))
    x = np.concatenate([rng.uniform(lb, ub, (each, graph.n_inputs)) for lb, ub in chosen])
    with np.errstate(all="ignore"):
        env = graph.eval_all(x)
        scales = {}
        for node in nodes:
            a, b = env[node.inputs[0]], env[node.inputs[1]]
            b = 1.0 / b if node.op_type == "Div" else b
            if node.op_type == "MatMul":  # the factors of each term a[..., i, l] b[..., l, j]
                a_view, b_view = matmul_views(a.shape[1:], b.shape[1:])
                a, b = align_ranks(a.reshape(a.shape[0], *a_view), b.reshape(b.shape[0], *b_view))
            shape = np.broadcast_shapes(a.shape, b.shape)
            spread_a = np.ptp(np.broadcast_to(a, shape), axis=0)
            spread_b = np.ptp(np.broadcast_to(b, shape), axis=0)
            exponent = np.round(0.5 * np.log2(spread_b / spread_a))
            ok = np.isfinite(exponent)
            scales[node.outputs[0]] = np.exp2(np.where(ok, np.clip(exponent, -30, 30), 0.0))
    return scales


def divisors(graph: Graph) -> list[str]:
    """The variable tensors the graph divides by (Div's second input, Reciprocal's input), in graph order."""
    names = [
        n.inputs[1] if n.op_type == "Div" else n.inputs[0] for n in graph.nodes if n.op_type in ("Div", "Reciprocal")
    ]
    return [name for name in dict.fromkeys(names) if _variable(graph, name)]


def _rewritten(graph: Graph, node: Node, floors: Mapping[str, np.ndarray]) -> bool:
    return needs_lowering(graph, node) or (node.op_type == "Reciprocal" and node.inputs[0] in floors)


def lower_smooth(
    graph: Graph, scales: Mapping[str, np.ndarray] | None = None, floors: Mapping[str, np.ndarray] | None = None
) -> tuple[Graph, str]:
    """``graph`` with every node of ``needs_lowering`` rewritten (see the module docstring), and a note naming
    what was lowered (``""`` and ``graph`` itself when nothing was). ``scales``: ``product_scales`` (None: 1).
    ``floors``: per divisor proved one-signed on the region (``bounds/divisors.py``), a signed power of two ``c``
    per element with ``y / c >= 1`` there; its ``1 / y`` (a Div's or a Reciprocal's) becomes ``k / max(k y, 1)``,
    ``k = 1 / c``: equal on the region and bounded on any interval (the bound passes may let ``y``'s hold 0)."""
    floors = floors or {}
    if not any(_rewritten(graph, node, floors) for node in graph.nodes):
        return graph, ""
    taken = set(graph.constants) | {name for node in graph.nodes for name in (*node.inputs, *node.outputs)}
    outputs = {n.outputs[0] for n in graph.nodes if _rewritten(graph, n, floors)}
    rewriter = _Rewriter(graph, scales or {}, floors, outputs=outputs, taken=taken | {graph.input_name})
    counts = {"Mul": 0, "MatMul": 0, "Div": 0, "Softmax": 0, "Reciprocal": 0}
    for node in graph.nodes:
        if not _rewritten(graph, node, floors):
            rewriter.nodes.append(node)
            continue
        counts[node.op_type] += 1
        a, out = node.inputs[0], node.outputs[0]
        if node.op_type == "Reciprocal":
            rewriter.reciprocal(a, out)
        elif node.op_type == "Mul":
            rewriter.product(a, node.inputs[1], out)
        elif node.op_type == "MatMul":
            rewriter.matmul(a, node.inputs[1], out)
        elif node.op_type == "Div":
            rewriter.quotient(a, node.inputs[1], out)
        else:
            rewriter.softmax(node)
    lowered = dataclasses.replace(
        graph, nodes=tuple(rewriter.nodes), constants={**graph.constants, **rewriter.constants}
    )
    what = ", ".join(f"{n} {op}" for op, n in counts.items() if n)
    note = f"relaxed lowering of {what} (squares, Exp and Reciprocal: no exact leaf)"
    if floors:
        note += f"; {len(floors)} divisor(s) proved one-signed on the region: 1/y as 1/max(y/c, 1)/c"
    return lowered, note
