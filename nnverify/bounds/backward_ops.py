"""CROWN back-substitution on the op graph, down to the free inputs: no dense matrix is ever built.

Coefficient tensors ``(B, R, *shape)`` are pulled through the nodes in reverse order (affine ops through their
adjoint: a Conv's ``linear_map``, else ``attack_vjp.node_vjp``; activations through their ``relax`` lines) and
stop at the *floor*: the tensors that are affine in the input, whose exact forward functions of the free inputs
(``forward_ops``) turn them into ``(B, R, n + 1)`` functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnverify.attack_vjp import node_vjp
from nnverify.bounds.adjoint import ConvMap
from nnverify.bounds.forward_ops import Form, _affine, activation_form, input_form
from nnverify.bounds.forward_ops import unsupported as forward_unsupported
from nnverify.budget import Budget
from nnverify.errors import ModelError
from nnverify.graph.core import Graph
from nnverify.graph.ops.base import REGISTRY, ActKind, Node
from nnverify.graph.ops.interface import ACTIVATIONS
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL

#: ReLU lower-slope rules tried for the property rows (``backward.SLOPE_RULES``; each is one more walk of K rows).
ROW_RULES = ("adaptive", "parallel", "zero", "one")
#: Elements (boxes x rows x widest tensor) of one back-substitution chunk (memory: 8 bytes each, a few copies).
CHUNK = 1 << 22


@dataclass(frozen=True, slots=True)
class OpPlan:
    """What the passes need to know about a graph once: tensor shapes, the floor, each affine node's operator.

    Attributes:
        graph: The op graph.
        shapes: Each variable tensor's shape without the analysis batch axis.
        prefix: Tensors affine in the input (no activation on the way): exact forward functions.
        floor: Prefix tensors read by a node outside the prefix (where back-substitution stops).
        maps: Affine node name -> its cheaper linear operator (``Op.linear_map``: Conv's kernel) or None.
        bias: Affine node name -> its output at zero variable inputs (the constant term), batch axis 1.
        depth: Variable tensor -> the most activations on a path from the input to it.
    """

    graph: Graph
    shapes: dict[str, tuple[int, ...]]
    prefix: frozenset[str]
    floor: tuple[str, ...]
    maps: dict[str, Any]
    bias: dict[str, np.ndarray]
    depth: dict[str, int]

    @property
    def widest(self) -> int:
        return max(math.prod(s) for s in self.shapes.values())


def unsupported(p: OpPlan) -> str | None:
    """The first node the back-substitution cannot pass (named, with the reason), or None."""
    reason = forward_unsupported(p.graph)
    if reason is not None:
        return reason
    for node in p.graph.nodes:
        if node.outputs[0] in p.prefix or not REGISTRY[node.op_type].affine or p.maps.get(node.name) is not None:
            continue
        try:
            _pull(p, node, np.zeros((*p.shapes[node.outputs[0]], 1, 1)))
        except (ModelError, ValueError, IndexError, TypeError) as exc:
            return f"node '{node.name}' ({node.op_type}) has no adjoint: {exc}"
    return None


def plan(graph: Graph) -> OpPlan:
    """The ``OpPlan`` of ``graph`` (one evaluation at zero for the shapes and constant terms)."""
    env = graph.eval_all(np.zeros((1, graph.n_inputs)))
    variable = {graph.input_name} | {node.outputs[0] for node in graph.nodes}
    shapes = {name: tuple(env[name].shape[1:]) for name in variable}
    prefix = {graph.input_name}
    maps: dict[str, Any] = {}
    bias: dict[str, np.ndarray] = {}
    depth = {graph.input_name: 0}
    for node in graph.nodes:
        op = REGISTRY[node.op_type]
        below = max((depth[n] for n in node.inputs if n in depth), default=0)
        depth[node.outputs[0]] = below + (0 if op.affine else 1)
        if not op.affine:
            continue
        if all(name in prefix for name in node.inputs if name in variable):
            prefix.add(node.outputs[0])
        data = node.inputs[0]
        cmap = op.linear_map(node, graph.constants, shapes[data]) if data in variable else None
        maps[node.name] = cmap if isinstance(cmap, ConvMap) else None  # the rows-last adjoint is ConvMap's
        bias[node.name] = _call_at(graph, node, {n: np.zeros((1, *shapes[n])) for n in node.inputs if n in variable})
    floor = [
        name
        for name in dict.fromkeys(n for node in graph.nodes if node.outputs[0] not in prefix for n in node.inputs)
        if name in prefix
    ]
    if graph.output_name in prefix:
        floor.append(graph.output_name)
    return OpPlan(graph, shapes, frozenset(prefix), tuple(floor), maps, bias, depth)


def _call_at(graph: Graph, node: Node, values: dict[str, np.ndarray], absolute: bool = False) -> np.ndarray:
    args = []
    for name in node.inputs:
        if name in values:
            args.append(values[name])
        elif not name:
            args.append(np.empty((1, 0)))
        else:
            value = graph.constants[name][None, ...]
            args.append(np.abs(value) if absolute and np.issubdtype(value.dtype, np.floating) else value)
    op = REGISTRY[node.op_type]
    out = op.abs_eval(node, *args) if absolute and not op.nonnegative else op.eval(node, *args)
    return np.asarray(out, dtype=np.float64)


@dataclass(slots=True)
class OpBounds:
    """Sound bounds ``(B, *shape)`` of every variable tensor over a batch of boxes, and the floor's functions.

    ``funcs`` holds, per tightened tensor, the flat elements ``idx`` and their lower and upper functions
    ``(B, n + 1, m)`` of the normalised coordinates of ``box`` (``(lb, ub)``, ``(B, n_inputs)``): a half box
    re-expresses them in its own coordinates and concretises them, cheaper than back-substituting again.
    ``lines`` caches each activation's relaxation step (``_Step``, by its output tensor), ``pre`` each affine node's
    ``|A| max|x| + |b|`` (the scale of the rounding of a step through it)."""

    lb: dict[str, np.ndarray]
    ub: dict[str, np.ndarray]
    floor: dict[str, Form]
    box: tuple[np.ndarray, np.ndarray] | None = None
    funcs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    lines: dict[str, _Step] = field(default_factory=dict)
    pre: dict[str, np.ndarray] = field(default_factory=dict)

    def part(self, sel: slice | np.ndarray) -> OpBounds:
        """The bounds of the boxes ``sel`` (the floor's functions are recomputed per box, not kept)."""
        return OpBounds(
            {k: v[sel] for k, v in self.lb.items()},
            {k: v[sel] for k, v in self.ub.items()},
            {},
            None if self.box is None else (self.box[0][sel], self.box[1][sel]),
            {k: (idx, lo[sel], up[sel]) for k, (idx, lo, up) in self.funcs.items()},
        )

    def twice(self) -> OpBounds:
        """The bounds for both halves of every box (the halves stacked as ``[lower halves, upper halves]``)."""

        def two(v: np.ndarray) -> np.ndarray:
            return np.concatenate([v, v])

        return OpBounds(
            {k: two(v) for k, v in self.lb.items()},
            {k: two(v) for k, v in self.ub.items()},
            {},
            None if self.box is None else (two(self.box[0]), two(self.box[1])),
            {k: (idx, two(lo), two(up)) for k, (idx, lo, up) in self.funcs.items()},
        )


def _inherit(
    parent: OpBounds, name: str, lb: np.ndarray, ub: np.ndarray, free: np.ndarray, margins: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The parent's functions of tensor ``name`` in the coordinates of the boxes ``lb, ub`` (each inside its
    parent's box), their constants moved outward by the margin of the change of variables; None if it has none."""
    if parent.box is None or name not in parent.funcs:
        return None
    idx, low, up = parent.funcs[name]
    index = np.flatnonzero(free)
    p_mid = (parent.box[0][:, index] + parent.box[1][:, index]) / 2.0
    p_rad = (parent.box[1][:, index] - parent.box[0][:, index]) / 2.0
    shift = ((lb[:, index] + ub[:, index]) / 2.0 - p_mid) / p_rad  # e_parent = shift + ratio * e_child
    ratio = ((ub[:, index] - lb[:, index]) / 2.0) / p_rad
    # float error of shift and ratio, and of a child point's own coordinates (a few ulps of the box's magnitude
    # over the parent's half-width), per coordinate: at most ``slack`` in e_parent
    big = (
        np.maximum(np.abs(lb), np.abs(ub))[:, index]
        + np.maximum(np.abs(parent.box[0]), np.abs(parent.box[1]))[:, index]
    )
    slack = 4e-15 * big / p_rad + 1e-15 * (np.abs(shift) + ratio)
    out = []
    for f in (low, up):
        g = f * np.concatenate([ratio, np.ones((ratio.shape[0], 1))], axis=1)[:, :, None]
        g[:, -1] += np.einsum("bim,bi->bm", f[:, :-1], shift)
        pad = margins[0] * (np.abs(f).sum(axis=1) * (1.0 + np.abs(shift).sum(axis=1, keepdims=True))) + margins[1]
        pad += np.einsum("bim,bi->bm", np.abs(f[:, :-1]), slack)
        g[:, -1] += pad if f is up else -pad
        out.append(g)
    return idx, out[0], out[1]


def _interval(low: np.ndarray, up: np.ndarray, margins: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``(B, m)`` over the box of functions ``low <= x <= up`` ``(B, n + 1, m)``."""
    lo = low[:, -1] - np.abs(low[:, :-1]).sum(axis=1)
    hi = up[:, -1] + np.abs(up[:, :-1]).sum(axis=1)
    return lo - (margins[0] * np.abs(low).sum(axis=1) + margins[1]), hi + margins[0] * np.abs(up).sum(axis=1) + margins[
        1
    ]


def _conv_adjoint(cmap: ConvMap, coef: np.ndarray) -> np.ndarray:
    """``coef`` ``(M, *out, N)`` (rows last) through the transposed convolution: ``(C, *in, N)``. One GEMM of the
    kernel's transpose per group, then one strided add per kernel offset (``ConvMap._adjoint`` without its
    transposes to and from rows first)."""
    n = coef.shape[-1]
    channels, m = cmap.in_shape[0], cmap.out_shape[0]
    cg, mg = channels // cmap.groups, m // cmap.groups
    kshape, out_sizes = cmap.kernel.shape[2:], cmap.out_shape[1:]
    rows = coef.reshape(m, -1)
    padded = [size + lo + hi for size, (lo, hi) in zip(cmap.in_shape[1:], cmap.pads, strict=True)]
    dx = np.zeros((channels, *padded, n))
    for g in range(cmap.groups):
        wt = cmap.kernel[g * mg : (g + 1) * mg].reshape(mg, -1).T  # (Cg * K, Mg)
        cols = (wt @ rows[g * mg : (g + 1) * mg]).reshape(cg, *kshape, *out_sizes, n)
        for offset, window in cmap._windows():
            dx[(slice(g * cg, (g + 1) * cg), *window)] += cols[(slice(None), *offset)]
    if any(lo or hi for lo, hi in cmap.pads):
        crop = tuple(slice(lo, lo + size) for (lo, _), size in zip(cmap.pads, cmap.in_shape[1:], strict=True))
        dx = np.ascontiguousarray(dx[(slice(None), *crop)])
    return dx


def _pull(p: OpPlan, node: Node, coef: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``coef`` ``(*out, B, R)`` through the adjoint of the affine node's linear part, per variable input."""
    batch, rows = coef.shape[-2:]
    n = batch * rows
    out_shape = p.shapes[node.outputs[0]]
    cmap = p.maps.get(node.name)
    data = node.inputs[0]
    if cmap is not None and len(out_shape) == len(cmap.out_shape) + 1:
        flat = _conv_adjoint(cmap, coef.reshape(*cmap.out_shape, n))
        return [(data, flat.reshape(*p.shapes[data], batch, rows))]
    g = np.moveaxis(coef.reshape(-1, n), -1, 0).reshape(n, *out_shape)
    variable = [bool(name) and name in p.shapes for name in node.inputs]
    args = [
        np.broadcast_to(np.zeros((1, *p.shapes[name])), (n, *p.shapes[name]))
        if var
        else (p.graph.constants[name][None, ...] if name else np.empty((1, 0)))
        for name, var in zip(node.inputs, variable, strict=True)
    ]
    parts = node_vjp(node, args, g, variable)
    if parts is None:
        raise ModelError(f"node '{node.name}' ({node.op_type}) has no adjoint rule")
    out = []
    for name, part, var in zip(node.inputs, parts, variable, strict=False):
        if var and part is not None:
            full = np.broadcast_to(part, (n, *p.shapes[name])).reshape(n, -1)
            out.append((name, np.ascontiguousarray(full.T).reshape(*p.shapes[name], batch, rows)))
    return out


def _pre(p: OpPlan, state: OpBounds, node: Node) -> np.ndarray:
    """``|A| max(|lb|, |ub|) + |b|`` of an affine node, ``(B, *out)`` (cached per batch)."""
    if node.name not in state.pre:
        values = {n: np.maximum(np.abs(state.lb[n]), np.abs(state.ub[n])) for n in node.inputs if n in p.shapes}
        zeros = {n: np.zeros((1, *p.shapes[n])) for n in values}
        cmap = p.maps.get(node.name)
        if cmap is not None:
            ((_, x),) = values.items()
            part = cmap.forward(x.reshape(x.shape[0], -1), absolute=True)
            part = part.reshape(x.shape[0], *p.shapes[node.outputs[0]])
        else:
            part = _call_at(p.graph, node, values, True) - _call_at(p.graph, node, zeros, True)
        state.pre[node.name] = part + np.abs(p.bias[node.name])
    return state.pre[node.name]


@dataclass(frozen=True, slots=True)
class _Step:
    """An activation's lines in the walk's layout: ``y >= lo_s x + lo_c`` where the row's coefficient is
    positive, ``y <= up_s x + up_c`` where negative; ``inexact`` the flat elements where the two lines differ in
    some box (elsewhere one multiplication passes the coefficient)."""

    lo_s: np.ndarray  # (*shape, B, 1)
    lo_c: np.ndarray | None  # (B, *shape), None if zero
    inexact: np.ndarray  # (m,)
    d_s: np.ndarray  # (m, B, 1): up_s - lo_s there
    d_c: np.ndarray  # (B, m): up_c - lo_c there
    term: np.ndarray  # (B, *shape): max|s| max|x| + max|c|, the rounding scale


def _step(p: OpPlan, state: OpBounds, node: Node, margins: tuple[float, float], rule: str = "adaptive") -> _Step:
    """The activation's ``_Step`` on its input's bounds (cached per batch); ``rule`` (``backward.SLOPE_RULES``)
    picks a ReLU's lower slope where it is unstable (any slope in [0, 1] is sound), other activations keep
    their ``relax`` lines."""
    src, out = node.inputs[0], node.outputs[0]
    key = out if rule == "adaptive" else f"{out}\0{rule}"
    if key not in state.lines:
        kind = REGISTRY[node.op_type].activation_of(node, p.graph.constants)
        assert kind is not None
        lo_s, lo_c, up_s, up_c = ACTIVATIONS[kind].relax(state.lb[src], state.ub[src], *margins)
        if kind is ActKind.RELU and rule != "adaptive":
            unstable = (state.lb[src] < 0.0) & (state.ub[src] > 0.0)
            choice: np.ndarray | float = up_s if rule == "parallel" else {"zero": 0.0, "one": 1.0}[rule]
            lo_s = np.where(unstable, choice, lo_s)
        batch = lo_s.shape[0]
        flat = [v.reshape(batch, -1) for v in (lo_s, lo_c, up_s, up_c)]
        inexact = np.flatnonzero(np.any((flat[0] != flat[2]) | (flat[1] != flat[3]), axis=0))
        mag = np.maximum(np.abs(state.lb[src]), np.abs(state.ub[src]))
        term = np.maximum(np.abs(lo_s), np.abs(up_s)) * mag + np.maximum(np.abs(lo_c), np.abs(up_c))
        state.lines[key] = _Step(
            _last(lo_s),
            lo_c if np.any(lo_c) else None,
            inexact,
            np.ascontiguousarray((flat[2] - flat[0])[:, inexact].T)[:, :, None],
            flat[3][:, inexact] - flat[1][:, inexact],
            term,
        )
    return state.lines[key]


def _last(x: np.ndarray) -> np.ndarray:
    """``(B, *s)`` -> ``(*s, B, 1)``: a per-box array broadcast over rows in the rows-last layout."""
    return np.ascontiguousarray(np.moveaxis(x, 0, -1))[..., None]


def _dot(vec: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``sum over the shape of vec * coef``: ``(B, R)`` for ``vec`` ``(B or 1, *s)`` and ``coef`` ``(*s, B, R)``."""
    batch, rows = coef.shape[-2:]
    flat = coef.reshape(-1, batch, rows)
    v = vec.reshape(vec.shape[0], -1)
    if v.shape[0] == 1:
        return (v[0] @ flat.reshape(-1, batch * rows)).reshape(batch, rows)
    return np.stack([v[b] @ flat[:, b] for b in range(batch)])


def walk(
    p: OpPlan,
    state: OpBounds,
    lam: dict[str, np.ndarray],
    const: np.ndarray,
    scale: np.ndarray,
    margins: tuple[float, float] = (BOUND_MARGIN_REL, BOUND_MARGIN_ABS),
    rule: str = "adaptive",
) -> tuple[np.ndarray, np.ndarray]:
    """Lower-bound ``sum_t lam[t] . t + const`` over each box (``lam[t]`` ``(*shape_t, B, R)``, rows last so that
    every elementwise step and every adjoint runs along them): back-substitute down to the floor, bound it there
    by the floor's functions. Returns ``(lower (B, R), lower functions (B, R, n + 1))`` of the normalised
    coordinates, the margin folded into each function's constant (so it is itself a sound lower bound)."""
    lam = dict(lam)
    const, scale = const.copy(), scale.copy()
    for node in reversed(p.graph.nodes):
        out = node.outputs[0]
        if out in p.prefix or out not in lam:
            continue
        coef = lam.pop(out)
        op = REGISTRY[node.op_type]
        if op.affine:
            const += _dot(p.bias[node.name], coef)
            scale += _dot(_pre(p, state, node), np.abs(coef))
            for name, part in _pull(p, node, coef):
                lam[name] = lam[name] + part if name in lam else part
            continue
        src = node.inputs[0]
        step = _step(p, state, node, margins, rule)
        batch, rows = coef.shape[-2:]
        c = coef.reshape(-1, batch, rows)
        part = c * step.lo_s.reshape(-1, batch, 1)
        if step.lo_c is not None:
            const += _dot(step.lo_c, coef)
        if step.inexact.size:
            neg = np.minimum(c[step.inexact], 0.0)
            part[step.inexact] += neg * step.d_s
            const += np.einsum("mbr,bm->br", neg, step.d_c)
        scale += _dot(step.term, np.abs(coef))
        part = part.reshape(*p.shapes[src], batch, rows)
        lam[src] = lam[src] + part if src in lam else part
    return _concretize(state, lam, const, scale, margins)


def _concretize(
    state: OpBounds, lam: dict[str, np.ndarray], const: np.ndarray, scale: np.ndarray, margins: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The coefficients left on the floor bounded by its functions ``centre -+ (dev + rad)``."""
    batch, rows = const.shape
    n1 = next(iter(state.floor.values())).centre.shape[1]
    func = np.zeros((batch, rows, n1))
    mag = scale + np.abs(const)
    for name, coef in lam.items():
        form = state.floor[name]
        c = coef.reshape(-1, batch, rows)
        abs_c = np.abs(c)
        centre = form.centre.reshape(batch, n1, -1)
        dev = None if form.dev is None else form.dev.reshape(batch, n1, -1)
        rad, fmag = form.rad.reshape(batch, -1), form.mag.reshape(batch, -1)
        for b in range(batch):
            func[b] += (centre[b] @ c[:, b]).T
            if dev is not None:
                func[b] -= (dev[b] @ abs_c[:, b]).T
            func[b, :, -1] -= rad[b] @ abs_c[:, b]
            mag[b] += fmag[b] @ abs_c[:, b]
    func[..., -1] += const
    mag = mag + np.abs(func).sum(axis=2)
    pad = margins[0] * mag + margins[1]
    lower = func[..., -1] - np.abs(func[..., :-1]).sum(axis=2) - pad
    func[..., -1] -= pad
    return lower, func


def _side(
    p: OpPlan,
    state: OpBounds,
    name: str,
    idx: np.ndarray,
    sign: float,
    margins: tuple[float, float],
    budget: Budget | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower bounds ``(B, m)`` of ``sign * x[idx]`` (flat elements of tensor ``name``) and their functions
    ``(B, m, n + 1)``, by back-substitution in chunks of rows."""
    batch = state.lb[name].shape[0]
    size = math.prod(p.shapes[name])
    step = max(1, CHUNK // max(1, batch * p.widest))
    n1 = next(iter(state.floor.values())).centre.shape[1]
    lows, funcs = [np.zeros((batch, 0))], [np.zeros((batch, 0, n1))]
    for start in range(0, idx.size, step):
        if budget is not None:
            budget.check("back-substitution on the op graph")
        part = idx[start : start + step]
        unit = np.zeros((size, batch, part.size))
        unit[part, :, np.arange(part.size)] = sign
        zeros = np.zeros((batch, part.size))
        low, func = walk(p, state, {name: unit.reshape(*p.shapes[name], batch, part.size)}, zeros, zeros, margins)
        lows.append(low)
        funcs.append(func)
    return np.concatenate(lows, axis=1), np.concatenate(funcs, axis=1)


def _tighten(
    p: OpPlan, state: OpBounds, name: str, margins: tuple[float, float], budget: Budget | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tighten the bounds of tensor ``name`` in place by back-substitution, for the elements open (``lb < 0 < ub``)
    in some box: upper bounds first, then lower bounds of those still above 0 in some box (an element the upper
    bound closes at 0 needs no lower bound). Returns the flat indices tightened on both sides and their lower and
    upper functions ``(B, n + 1, m)`` (each sound on its own)."""
    lb, ub = state.lb[name], state.ub[name]
    batch = lb.shape[0]
    flat_lb, flat_ub = lb.reshape(batch, -1).copy(), ub.reshape(batch, -1).copy()
    idx = np.flatnonzero(np.any((flat_lb < 0.0) & (flat_ub > 0.0), axis=0))
    low, up_func = _side(p, state, name, idx, -1.0, margins, budget)
    flat_ub[:, idx] = np.minimum(flat_ub[:, idx], -low)
    keep = np.any((flat_lb[:, idx] < 0.0) & (flat_ub[:, idx] > 0.0), axis=0)
    idx, up_func = idx[keep], up_func[:, keep]
    low, low_func = _side(p, state, name, idx, 1.0, margins, budget)
    flat_lb[:, idx] = np.maximum(flat_lb[:, idx], low)
    state.lb[name], state.ub[name] = flat_lb.reshape(lb.shape), flat_ub.reshape(ub.shape)
    return idx, low_func.transpose(0, 2, 1), -up_func.transpose(0, 2, 1)


def _replace(form: Form, idx: np.ndarray, low: np.ndarray, up: np.ndarray, margins: tuple[float, float]) -> Form:
    """``form`` with the elements ``idx`` bounded by the functions ``low <= x <= up`` (``(B, n + 1, m)``) where
    those give the narrower interval over the box."""
    if idx.size == 0:
        return form
    batch, n1 = form.centre.shape[:2]
    shape = form.centre.shape[2:]
    centre = form.centre.reshape(batch, n1, -1).copy()
    dev = np.zeros_like(centre) if form.dev is None else form.dev.reshape(batch, n1, -1).copy()
    rad, mag = form.rad.reshape(batch, -1).copy(), form.mag.reshape(batch, -1).copy()
    f_lo, f_hi = Form(centre[..., idx], dev[..., idx], rad[:, idx], mag[:, idx]).interval(*margins)
    width_new = up[:, -1] - low[:, -1] + np.abs(up[:, :-1]).sum(axis=1) + np.abs(low[:, :-1]).sum(axis=1)
    take = width_new < f_hi - f_lo
    centre[..., idx] = np.where(take[:, None], (low + up) / 2.0, centre[..., idx])
    dev[..., idx] = np.where(take[:, None], (up - low) / 2.0, dev[..., idx])
    rad[:, idx] = np.where(take, 0.0, rad[:, idx])
    scale = np.abs(low).sum(axis=1) + np.abs(up).sum(axis=1)
    mag[:, idx] = np.where(take, np.maximum(mag[:, idx], scale), mag[:, idx])
    return Form(
        centre.reshape(batch, n1, *shape),
        dev.reshape(batch, n1, *shape),
        rad.reshape(batch, *shape),
        mag.reshape(batch, *shape),
    )


def _tighten_tensor(
    p: OpPlan,
    state: OpBounds,
    name: str,
    form: Form,
    box: tuple[np.ndarray, np.ndarray, np.ndarray],
    parent: OpBounds | None,
    margins: tuple[float, float],
    budget: Budget | None,
) -> Form:
    """Tighten tensor ``name``: the parent's functions first (concretised on these boxes), then back-substitution
    for the elements still open; records the functions in ``state.funcs`` and returns ``form`` with them."""
    lb, ub, free = box
    batch = lb.shape[0]
    inherited = None if parent is None else _inherit(parent, name, lb, ub, free, margins)
    if inherited is not None:
        idx, low, up = inherited
        lo, hi = _interval(low, up, margins)
        flat_lb, flat_ub = state.lb[name].reshape(batch, -1).copy(), state.ub[name].reshape(batch, -1).copy()
        flat_lb[:, idx], flat_ub[:, idx] = np.maximum(flat_lb[:, idx], lo), np.minimum(flat_ub[:, idx], hi)
        state.lb[name], state.ub[name] = flat_lb.reshape(state.lb[name].shape), flat_ub.reshape(state.ub[name].shape)
    new_idx, new_low, new_up = _tighten(p, state, name, margins, budget)
    if inherited is not None:
        idx = np.union1d(idx, new_idx)
        n1 = new_low.shape[1]
        merged = [np.zeros((batch, n1, idx.size)) for _ in range(2)]
        for target, old, new in zip(merged, inherited[1:], (new_low, new_up), strict=True):
            target[..., np.searchsorted(idx, inherited[0])] = old
            target[..., np.searchsorted(idx, new_idx)] = new
        new_idx, new_low, new_up = idx, merged[0], merged[1]
    state.funcs[name] = (new_idx, new_low, new_up)
    return _replace(form, new_idx, new_low, new_up, margins)


def op_bounds(
    p: OpPlan,
    lb: np.ndarray,
    ub: np.ndarray,
    free: np.ndarray,
    *,
    parent: OpBounds | None = None,
    budget: Budget | None = None,
    margins: tuple[float, float] = (BOUND_MARGIN_REL, BOUND_MARGIN_ABS),
) -> OpBounds:
    """Bounds of every tensor over the boxes ``lb <= x <= ub`` (``(B, n_inputs)``): forward functions op by op
    (``forward_ops``), each activation input outside the prefix tightened by back-substitution to the floor before
    its relaxation is taken, everything intersected with ``parent``'s (bounds of boxes containing these)."""
    graph = p.graph
    forms = {graph.input_name: input_form(lb, ub, free, graph.input_shape)}
    state = OpBounds({}, {}, {}, (lb, ub))
    tightened: set[str] = set()

    def keep(name: str, lo: np.ndarray, hi: np.ndarray) -> None:
        if parent is not None and name in parent.lb:
            lo, hi = np.maximum(lo, parent.lb[name]), np.minimum(hi, parent.ub[name])
        state.lb[name], state.ub[name] = lo, hi

    keep(graph.input_name, *forms[graph.input_name].interval(*margins))
    if graph.input_name in p.floor:
        state.floor[graph.input_name] = forms[graph.input_name]
    for node in graph.nodes:
        if budget is not None:
            budget.check("bounds on the op graph")
        op = REGISTRY[node.op_type]
        out = node.outputs[0]
        if op.affine:
            forms[out] = _affine(graph, node, forms, *margins)
            keep(out, *forms[out].interval(*margins))
            if out in p.floor:
                state.floor[out] = forms[out]
            continue
        kind = op.activation_of(node, graph.constants)
        if kind is None:
            raise ModelError(f"node '{node.name}' ({node.op_type}) is neither affine nor an activation")
        src = node.inputs[0]
        if src not in p.prefix and src not in tightened:
            tightened.add(src)
            forms[src] = _tighten_tensor(p, state, src, forms[src], (lb, ub, free), parent, margins, budget)
        act = ACTIVATIONS[kind]
        forms[out] = activation_form(kind, forms[src], *margins, (state.lb[src], state.ub[src]))
        lo, hi = act.interval(state.lb[src], state.ub[src], *margins)
        f_lo, f_hi = forms[out].interval(*margins)
        keep(out, np.maximum(lo, f_lo), np.minimum(hi, f_hi))
        _step(p, state, node, margins)
    return state


def rows_lower(
    p: OpPlan,
    state: OpBounds,
    a_x: np.ndarray,
    a_y: np.ndarray,
    b: np.ndarray,
    x_form: Form,
    margins: tuple[float, float] = (BOUND_MARGIN_REL, BOUND_MARGIN_ABS),
    rules: tuple[str, ...] = ROW_RULES,
) -> tuple[np.ndarray, np.ndarray]:
    """Sound lower bounds ``(B, K)`` of the rows ``a_x x + a_y y - b`` and their lower functions
    ``(B, K, n + 1)`` of the normalised coordinates; ``x_form`` is the input's function. Each row keeps its best
    bound over the ReLU lower-slope ``rules`` (a few rows: a cheap stand-in for optimising the slopes)."""
    batch = x_form.centre.shape[0]
    out = p.graph.output_name
    k = a_y.shape[0]
    coef = np.ascontiguousarray(np.broadcast_to(a_y.T.reshape(*p.shapes[out], 1, k), (*p.shapes[out], batch, k)))
    zeros = np.zeros((batch, k))
    x_func = None
    if np.any(a_x):
        x_state = OpBounds({}, {}, {"x": x_form})
        x_lam = {"x": np.ascontiguousarray(np.broadcast_to(a_x.T[:, None, :], (a_x.shape[1], batch, k)))}
        _, x_func = _concretize(x_state, x_lam, zeros, zeros, margins)
    best: tuple[np.ndarray, np.ndarray] | None = None
    for rule in rules:
        lower, func = walk(p, state, {out: coef}, zeros - b, zeros + np.abs(b), margins, rule)
        if x_func is not None:
            func = func + x_func  # both are sound lower functions, so is their sum (up to the rounding below)
            pad = margins[0] * np.abs(func).sum(axis=2) + margins[1]
            lower = func[..., -1] - np.abs(func[..., :-1]).sum(axis=2) - pad
        if best is not None:
            better = lower > best[0]
            lower, func = np.where(better, lower, best[0]), np.where(better[..., None], func, best[1])
        best = (lower, func)
    assert best is not None
    lower, func = best
    return lower, func
