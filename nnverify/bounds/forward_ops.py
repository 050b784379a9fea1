"""Forward linear bounds through the op graph in terms of the free inputs: no dense matrix is ever built.

Each variable tensor gets lower and upper affine functions of a box's normalised coordinates ``e in [-1, 1]^n``
(``n`` free inputs), pushed op by op with the op's own ``eval`` (and ``abs_eval`` for the sign split).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.budget import Budget
from nnverify.errors import ModelError
from nnverify.graph.core import Graph
from nnverify.graph.lowering_smooth import needs_lowering
from nnverify.graph.ops.base import REGISTRY, ActKind, Node, Op
from nnverify.graph.ops.interface import ACTIVATIONS
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL


@dataclass(frozen=True, slots=True)
class Form:
    """Bounds of one tensor over ``B`` boxes: ``centre(e) - dev(e) - rad <= x <= centre(e) + dev(e) + rad`` for
    every ``e`` in ``[-1, 1]^n``, elementwise.

    Attributes:
        centre: ``(B, n + 1, *shape)``: the coefficients of ``e_1 ... e_n``, then the constant.
        dev: Like ``centre``, or None (zero); ``dev(e) >= 0`` on the box.
        rad: ``(B, *shape)``, nonnegative constants (margins, constant-only gaps).
        mag: ``(B, *shape)``, a bound on the sum of the absolute values of every term computed so far: the
            scale of the floating-point margin.
    """

    centre: np.ndarray
    dev: np.ndarray | None
    rad: np.ndarray
    mag: np.ndarray

    @property
    def n(self) -> int:
        return int(self.centre.shape[1]) - 1

    def lower_upper(self) -> tuple[np.ndarray, np.ndarray]:
        """The lower and upper affine functions ``(B, n + 1, *shape)`` (constant row last), ``rad`` included."""
        lo, hi = self.centre.copy(), self.centre.copy()
        if self.dev is not None:
            lo -= self.dev
            hi += self.dev
        lo[:, -1] -= self.rad
        hi[:, -1] += self.rad
        return lo, hi

    def interval(
        self, margin_rel: float = BOUND_MARGIN_REL, margin_abs: float = BOUND_MARGIN_ABS
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sound elementwise bounds ``(B, *shape)`` over the boxes (with the margin of the summation)."""
        lo, hi = self.lower_upper()
        pad = margin_rel * self.mag + margin_abs
        return lo[:, -1] - np.abs(lo[:, :-1]).sum(axis=1) - pad, hi[:, -1] + np.abs(hi[:, :-1]).sum(axis=1) + pad


def input_form(lb: np.ndarray, ub: np.ndarray, free: np.ndarray, shape: tuple[int, ...]) -> Form:
    """The input tensor over boxes ``lb <= x <= ub`` (``(B, n_inputs)``): ``x = c + r e`` on the ``free`` inputs
    (a boolean mask; the others take ``lb``), reshaped to ``shape``; ``rad`` covers the rounding of ``c``, ``r``."""
    batch, size = lb.shape
    index = np.flatnonzero(free)
    centre = np.zeros((batch, index.size + 1, size))
    centre[:, -1] = np.where(free, (lb + ub) / 2.0, lb)
    centre[:, np.arange(index.size), index] = (ub[:, index] - lb[:, index]) / 2.0
    mag = np.maximum(np.abs(lb), np.abs(ub))
    rad = np.where(free, BOUND_MARGIN_REL * mag + BOUND_MARGIN_ABS, 0.0)
    return Form(
        centre.reshape(batch, index.size + 1, *shape), None, rad.reshape(batch, *shape), mag.reshape(batch, *shape)
    )


def unsupported(graph: Graph) -> str | None:
    """The first node the forward bounds cannot pass (named, with the reason), or None."""
    for node in graph.nodes:
        op = REGISTRY[node.op_type]
        if needs_lowering(graph, node):  # not affine: graph/lowering_smooth.lower_smooth rewrites it first
            return f"node '{node.name}' ({node.op_type}) needs lowering_smooth.lower_smooth first"
        if op.affine:
            if not op.nonnegative and type(op).abs_eval is Op.abs_eval:
                return f"node '{node.name}' ({node.op_type}) has no abs_eval"
            continue
        try:
            kind = op.activation_of(node, graph.constants)
        except ModelError:  # an exponent the analysis does not handle
            kind = None
        if kind is None or kind not in ACTIVATIONS:
            return f"node '{node.name}' ({node.op_type}) is neither affine nor an activation"
    return None


def _abs_const(value: np.ndarray) -> np.ndarray:
    return np.abs(value) if np.issubdtype(value.dtype, np.floating) else value


def _call(graph: Graph, op: Op, node: Node, variables: dict[str, np.ndarray], absolute: bool) -> np.ndarray:
    """``eval`` (or, with ``absolute``, the ``|A|`` map) of ``node`` with the given variable inputs."""
    args = []
    for position, name in enumerate(node.inputs):
        if name in variables:
            args.append(variables[name])
        elif not name:
            args.append(np.empty((1, 0)))
        else:
            value = graph.constants[name][None, ...]
            flip = absolute and not op.nonnegative and (op.abs_inputs is None or position in op.abs_inputs)
            args.append(_abs_const(value) if flip else value)
    if absolute and not op.nonnegative:
        return op.abs_eval(node, *args)
    return op.eval(node, *args)


def _affine(graph: Graph, node: Node, forms: dict[str, Form], margin_rel: float, margin_abs: float) -> Form:
    """The node's output bounds: ``A centre + b``, ``|A| dev``, ``|A| rad`` (one ``eval`` over every row)."""
    op = REGISTRY[node.op_type]
    names = [name for name in dict.fromkeys(node.inputs) if name in forms]
    first = forms[names[0]]
    batch, rows = first.centre.shape[:2]

    def call(values: dict[str, np.ndarray], absolute: bool) -> np.ndarray:
        return np.asarray(_call(graph, op, node, values, absolute), dtype=np.float64)

    zeros = {name: np.zeros((1, *forms[name].rad.shape[1:])) for name in names}
    bias = call(zeros, False)
    abs_zero = call(zeros, True)
    flat = {name: forms[name].centre.reshape(batch * rows, *forms[name].rad.shape[1:]) for name in names}
    out = call(flat, False)
    centre = out.reshape(batch, rows, *out.shape[1:])
    centre[:, :-1] -= bias
    dev = None
    if any(forms[name].dev is not None for name in names):
        devs = {}
        for name in names:
            d = forms[name].dev
            devs[name] = (np.zeros_like(forms[name].centre) if d is None else d).reshape(flat[name].shape)
        dev = (call(devs, True) - abs_zero).reshape(centre.shape)
    rad = call({name: forms[name].rad for name in names}, True) - abs_zero
    scale = call({name: forms[name].mag for name in names}, True) - abs_zero + np.abs(bias)
    rad = np.broadcast_to(rad, centre.shape[:1] + centre.shape[2:]) + (margin_rel * scale + margin_abs)
    return Form(centre, dev, rad, np.broadcast_to(scale, rad.shape) * (1.0 + margin_rel))


def activation_form(
    kind: ActKind,
    form: Form,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> Form:
    """Lower and upper lines of the activation on the input's interval (``bounds`` if given, sound bounds of the
    input perhaps tighter than its functions'), applied to the input's functions."""
    act = ACTIVATIONS[kind]
    lb, ub = form.interval(margin_rel, margin_abs) if bounds is None else bounds
    lo_s, lo_c, up_s, up_c = act.relax(lb, ub, margin_rel, margin_abs)
    scale = np.maximum(np.abs(lo_s), np.abs(up_s)) * form.mag + np.maximum(np.abs(lo_c), np.abs(up_c))
    pad = margin_rel * scale + margin_abs
    if form.dev is None and np.array_equal(lo_s, up_s):  # the same slope both sides: the result stays exact
        centre = form.centre * lo_s[:, None]
        centre[:, -1] += (lo_c + up_c) / 2.0
        rad = np.abs(lo_s) * form.rad + (up_c - lo_c) / 2.0 + pad
        return Form(centre, None, rad, scale * (1.0 + margin_rel))
    lo, hi = form.lower_upper()
    new_lo = np.where((lo_s >= 0.0)[:, None], lo, hi) * lo_s[:, None]
    new_hi = np.where((up_s >= 0.0)[:, None], hi, lo) * up_s[:, None]
    new_lo[:, -1] += lo_c - pad
    new_hi[:, -1] += up_c + pad
    return Form((new_lo + new_hi) / 2.0, (new_hi - new_lo) / 2.0, np.zeros_like(lb), scale * (1.0 + margin_rel))


def forward_forms(
    graph: Graph,
    lb: np.ndarray,
    ub: np.ndarray,
    free: np.ndarray,
    *,
    target: str | None = None,
    budget: Budget | None = None,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> Form:
    """Bounds of the graph's output (or of the tensor ``target``) over the boxes ``lb <= x <= ub``
    (``(B, n_inputs)``), as affine functions of the ``free`` inputs (a mask; the others must have ``lb == ub``)
    in each box's normalised coordinates.

    Raises:
        BudgetExpired: The budget's deadline passed between two ops.
    """
    lb = np.atleast_2d(np.asarray(lb, dtype=np.float64))
    ub = np.atleast_2d(np.asarray(ub, dtype=np.float64))
    target = target or graph.output_name
    forms = {graph.input_name: input_form(lb, ub, free, graph.input_shape)}
    if target == graph.input_name:
        return forms[target]
    consumers: dict[str, int] = {}
    for node in graph.nodes:
        for name in node.inputs:
            consumers[name] = consumers.get(name, 0) + 1
    for node in graph.nodes:
        if budget is not None:
            budget.check("forward bounds")
        if not any(name in forms for name in node.inputs):
            continue
        op = REGISTRY[node.op_type]
        if op.affine:
            forms[node.outputs[0]] = _affine(graph, node, forms, margin_rel, margin_abs)
        else:
            kind = op.activation_of(node, graph.constants)
            if kind is None:
                raise ModelError(f"node '{node.name}' ({node.op_type}) is neither affine nor an activation")
            forms[node.outputs[0]] = activation_form(kind, forms[node.inputs[0]], margin_rel, margin_abs)
        if node.outputs[0] == target:
            break
        for name in node.inputs:  # free what no later node reads
            consumers[name] -= 1
            if consumers[name] == 0:
                forms.pop(name, None)
    return forms[target]


def rows_lower(
    out: Form,
    a_x: np.ndarray,
    a_y: np.ndarray,
    b: np.ndarray,
    x_form: Form,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> tuple[np.ndarray, np.ndarray]:
    """Sound lower bounds ``(B, K)`` of the rows ``a_x x + a_y y - b`` and their lower functions ``(B, K, n + 1)``.

    ``out`` bounds the flattened output ``y``; ``x_form`` is the input's (exact) function.
    """
    batch, rows = out.centre.shape[:2]
    y_lo, y_hi = out.lower_upper()
    y_lo, y_hi = y_lo.reshape(batch, rows, -1), y_hi.reshape(batch, rows, -1)
    pos, neg = np.maximum(a_y, 0.0), np.minimum(a_y, 0.0)
    coef = np.einsum("brm,km->bkr", y_lo, pos) + np.einsum("brm,km->bkr", y_hi, neg)
    x_lo, x_hi = x_form.lower_upper()
    x_lo, x_hi = x_lo.reshape(batch, rows, -1), x_hi.reshape(batch, rows, -1)
    pos, neg = np.maximum(a_x, 0.0), np.minimum(a_x, 0.0)
    coef += np.einsum("brm,km->bkr", x_lo, pos) + np.einsum("brm,km->bkr", x_hi, neg)
    coef[..., -1] -= b
    mag = out.mag.reshape(batch, -1) @ np.abs(a_y).T + x_form.mag.reshape(batch, -1) @ np.abs(a_x).T + np.abs(b)
    mag = mag + np.abs(coef).sum(axis=2)
    lower = coef[..., -1] - np.abs(coef[..., :-1]).sum(axis=2) - margin_rel * mag - margin_abs
    return lower, coef
