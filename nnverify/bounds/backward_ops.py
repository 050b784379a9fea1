"""CROWN back-substitution on the op graph, down to the free inputs: no dense matrix is ever built.

Intermediate bounds op by op (forward functions, each open activation input tightened by walks of
``op_walk``), half boxes inheriting their parent's functions, and the property rows' lower bounds. The walk stops
at the *floor*: the tensors affine in the input, whose exact forward functions (``forward_ops``) turn each row into
an ``(n + 1)``-vector of the free inputs.
"""

from __future__ import annotations

import math

import numpy as np

from nnverify.bounds import op_alpha, op_windows
from nnverify.bounds.forward_ops import Form, _affine, activation_form, input_form
from nnverify.bounds.op_plan import OpPlan, plan, unsupported
from nnverify.bounds.op_walk import OpBounds, act_step, concretize, walk
from nnverify.budget import Budget
from nnverify.errors import ModelError
from nnverify.graph.ops.base import REGISTRY
from nnverify.graph.ops.interface import ACTIVATIONS
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL

__all__ = ["CHUNK", "ROW_RULES", "OpBounds", "OpPlan", "op_bounds", "plan", "rows_lower", "unsupported", "walk"]

#: ReLU lower-slope rules tried for the property rows (``backward.SLOPE_RULES``; each is one more walk of K rows).
ROW_RULES = ("adaptive", "parallel", "zero", "one")
#: Elements (boxes x rows x widest tensor) of one back-substitution chunk (memory: 8 bytes each, a few copies).
CHUNK = 1 << 22
#: Whether rows of a tensor behind a chain of Conv and activation nodes walk their receptive fields
#: (``op_windows``) instead of whole tensors.
WINDOWS = True
#: Whether a row whose optimised slopes (``op_alpha``) gave the better bound also returns their function (else the
#: slope rules' function, itself a sound lower function, which the search's split choice reads).
ALPHA_FUNCS = False
#: ReLU lower-slope rules of the intermediate rows (``ROW_RULES``' names): each element keeps its best bound.
INTERMEDIATE_RULES: tuple[str, ...] = ("adaptive",)


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
    if not np.all(p_rad > 0.0):  # a free input the splits narrowed to one float: no normalised coordinates
        return None
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
    ``(B, m, n + 1)``, by back-substitution in chunks of rows: each element's best over ``INTERMEDIATE_RULES``."""
    best: tuple[np.ndarray, np.ndarray] | None = None
    for rule in INTERMEDIATE_RULES:
        low, func = _side_rule(p, state, name, idx, sign, margins, budget, rule)
        if best is not None:
            better = low > best[0]
            low, func = np.where(better, low, best[0]), np.where(better[..., None], func, best[1])
        best = (low, func)
    assert best is not None
    return best


def _side_rule(
    p: OpPlan,
    state: OpBounds,
    name: str,
    idx: np.ndarray,
    sign: float,
    margins: tuple[float, float],
    budget: Budget | None,
    rule: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``_side`` with one ReLU lower-slope rule."""
    ch = op_windows.chain(p, name) if WINDOWS else None
    if ch is not None:
        return op_windows.side(p, state, ch, name, idx, sign, margins, budget, rule)
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
        coef = {name: unit.reshape(*p.shapes[name], batch, part.size)}
        low, func = walk(p, state, coef, zeros, zeros, margins, rule)
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
        act_step(p, state, node, margins)
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
    alpha_steps: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sound lower bounds ``(B, K)`` of the rows ``a_x x + a_y y - b`` and their lower functions
    ``(B, K, n + 1)`` of the normalised coordinates; ``x_form`` is the input's function. Each row keeps its best
    bound over the ReLU lower-slope ``rules``; the rows still open in some box then get ``alpha_steps`` steps of
    optimised slopes (``op_alpha``; None: ``op_alpha.STEPS``)."""
    alpha_steps = op_alpha.STEPS if alpha_steps is None else alpha_steps
    batch = x_form.centre.shape[0]
    out = p.graph.output_name
    k = a_y.shape[0]
    coef = np.ascontiguousarray(np.broadcast_to(a_y.T.reshape(*p.shapes[out], 1, k), (*p.shapes[out], batch, k)))
    zeros = np.zeros((batch, k))
    x_func = None
    if np.any(a_x):
        x_state = OpBounds({}, {}, {"x": x_form})
        x_lam = {"x": np.ascontiguousarray(np.broadcast_to(a_x.T[:, None, :], (a_x.shape[1], batch, k)))}
        _, x_func = concretize(x_state, x_lam, zeros, zeros, margins)
    best: tuple[np.ndarray, np.ndarray] | None = None
    rule_index = np.zeros((batch, k), dtype=np.int64)
    for i, rule in enumerate(rules):
        lower, func = walk(p, state, {out: coef}, zeros - b, zeros + np.abs(b), margins, rule)
        lower, func = _with_x(lower, func, x_func, margins)
        if best is not None:
            better = lower > best[0]
            rule_index[better] = i
            lower, func = np.where(better, lower, best[0]), np.where(better[..., None], func, best[1])
        best = (lower, func)
    assert best is not None
    lower, func = best
    open_rows = np.flatnonzero(np.any(lower <= 0.0, axis=0))
    if alpha_steps > 0 and open_rows.size:  # optimise the slopes of the rows not yet proven in every box
        alpha = op_alpha.initial(p, state, rule_index[:, open_rows], rules, margins)
        c, lo_b = coef[..., open_rows], b[open_rows]
        low2, func2 = op_alpha.optimise(
            p, state, c, zeros[:, open_rows] - lo_b, zeros[:, open_rows] + np.abs(lo_b), alpha, margins, alpha_steps
        )
        low2, func2 = _with_x(low2, func2, None if x_func is None else x_func[:, open_rows], margins)
        better = low2 > lower[:, open_rows]
        lower[:, open_rows] = np.where(better, low2, lower[:, open_rows])
        if ALPHA_FUNCS:
            func[:, open_rows] = np.where(better[..., None], func2, func[:, open_rows])
    return lower, func


def _with_x(
    lower: np.ndarray, func: np.ndarray, x_func: np.ndarray | None, margins: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The rows' lower bounds and functions with the input part ``x_func`` added (None: no input part)."""
    if x_func is None:
        return lower, func
    func = func + x_func  # both are sound lower functions, so is their sum (up to the rounding below)
    pad = margins[0] * np.abs(func).sum(axis=2) + margins[1]
    return func[..., -1] - np.abs(func[..., :-1]).sum(axis=2) - pad, func
