"""Optimised ReLU lower slopes for the property rows on the op graph (α-CROWN's idea, Xu et al. 2021): each open row
gets its own lower slope per unstable ReLU, moved by projected gradient ascent on its CROWN lower bound. The gradient
is the relaxed network evaluated forward at the box corner that minimises the row; every bound kept is a full walk
with slopes in [0, 1] (each a valid lower line), so the ascent only chooses among sound bounds.
"""

from __future__ import annotations

import numpy as np

from nnverify.bounds.op_plan import OpPlan, call_at, pull
from nnverify.bounds.op_walk import OpBounds, act_step, affine_scale, concretize, dot, through_act
from nnverify.graph.ops.base import REGISTRY, ActKind
from nnverify.graph.ops.interface import ACTIVATIONS

#: Gradient steps per batch of boxes (0, the default: the slope rules alone; see docs/engine.md for why) and Adam's
#: step size on the slopes.
STEPS = 0
LEARNING_RATE = 0.5
#: The slope rules (``backward_ops.ROW_RULES``) as lower slopes of an unstable ReLU (None: the adaptive one).
RULE_SLOPES = {"adaptive": None, "parallel": "up", "zero": 0.0, "one": 1.0}


def _lines(p: OpPlan, state: OpBounds, out: str, src: str, margins: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """A ReLU's lines rows last ``(*shape, B, 1)``: lower slope and constant, upper slope and constant, the unstable
    mask, and the rounding scale ``(B, *shape)`` valid for every lower slope in [0, 1] (cached per batch)."""
    key = f"{out}\0alpha"
    if key not in state.dense:
        lb, ub = state.lb[src], state.ub[src]
        lo_s, lo_c, up_s, up_c = ACTIVATIONS[ActKind.RELU].relax(lb, ub, *margins)
        unstable = (lb < 0.0) & (ub > 0.0)
        mag = np.maximum(np.abs(lb), np.abs(ub))
        widest = np.maximum(np.maximum(np.abs(lo_s), np.abs(up_s)), unstable.astype(np.float64))
        term = widest * mag + np.maximum(np.abs(lo_c), np.abs(up_c))
        last = tuple(np.moveaxis(v, 0, -1)[..., None] for v in (lo_s, lo_c, up_s, up_c, unstable))
        state.dense[key] = (*last, term)
    return state.dense[key]


def _relu_nodes(p: OpPlan) -> dict[str, str]:
    """ReLU output tensor -> its input, for the ReLUs outside the prefix."""
    out = {}
    for node in p.graph.nodes:
        op = REGISTRY[node.op_type]
        relu = not op.affine and op.activation_of(node, p.graph.constants) is ActKind.RELU
        if relu and node.outputs[0] not in p.prefix:
            out[node.outputs[0]] = node.inputs[0]
    return out


def _walk(
    p: OpPlan,
    state: OpBounds,
    seed: np.ndarray,
    const: np.ndarray,
    scale: np.ndarray,
    alpha: dict[str, np.ndarray],
    margins: tuple[float, float],
    record: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """``op_walk.walk`` from the output coefficients ``seed`` with the ReLU lower slopes ``alpha`` (per tensor,
    ``(*shape, B, R)``); records each ReLU's output coefficients in ``record``."""
    lam = {p.graph.output_name: seed}
    const, scale = const.copy(), scale.copy()
    for node in reversed(p.graph.nodes):
        out = node.outputs[0]
        if out in p.prefix or out not in lam:
            continue
        coef = lam.pop(out)
        src = node.inputs[0]
        if REGISTRY[node.op_type].affine:
            const += dot(p.bias[node.name], coef)
            scale += dot(affine_scale(p, state, node), np.abs(coef))
            parts = pull(p, node, coef)
        elif out in alpha:
            _, lo_c, up_s, up_c, _, term = _lines(p, state, out, src, margins)
            record[out] = coef
            pos = coef >= 0.0
            batch, rows = coef.shape[-2:]
            const += (np.where(pos, lo_c, up_c) * coef).reshape(-1, batch, rows).sum(axis=0)
            scale += dot(term, np.abs(coef))
            parts = [(src, coef * np.where(pos, alpha[out], up_s))]
        else:
            parts = [(src, through_act(act_step(p, state, node, margins), coef, const, scale))]
        for name, part in parts:
            lam[name] = lam[name] + part if name in lam else part
    return concretize(state, lam, const, scale, margins)


def _gradients(
    p: OpPlan,
    state: OpBounds,
    func: np.ndarray,
    alpha: dict[str, np.ndarray],
    record: dict[str, np.ndarray],
    margins: tuple[float, float],
) -> dict[str, np.ndarray]:
    """d(lower bound) / d(alpha): the relaxed network (the lines each row's walk took) evaluated forward from the
    floor at the corner minimising the row's lower function, times the row's coefficient on each ReLU output."""
    batch, rows = func.shape[:2]
    corner = -np.sign(func[..., :-1])  # (B, R, n): the normalised coordinates that minimise each row
    values: dict[str, np.ndarray] = {}
    for name, form in state.floor.items():
        centre = form.centre.reshape(batch, form.centre.shape[1], -1)
        flat = np.einsum("bnm,brn->brm", centre[:, :-1], corner) + centre[:, None, -1]
        values[name] = flat.reshape(batch * rows, *p.shapes[name])
    grads = {}
    for node in p.graph.nodes:
        out = node.outputs[0]
        if out in p.prefix:
            continue
        if REGISTRY[node.op_type].affine:
            values[out] = call_at(p.graph, node, {n: values[n] for n in node.inputs if n in values})
            continue
        src = node.inputs[0]
        x = np.moveaxis(values[src].reshape(batch, rows, *p.shapes[src]), (0, 1), (-2, -1))
        if out in alpha:
            _, lo_c, up_s, up_c, unstable, _ = _lines(p, state, out, src, margins)
            coef = record.get(out, np.zeros_like(x))
            pos = coef >= 0.0
            y = np.where(pos, alpha[out], up_s) * x + np.where(pos, lo_c, up_c)
            grads[out] = np.where(pos & unstable, coef * x, 0.0)
        else:  # other activations keep their lines: the lower one, a fine estimate for the gradient
            step = act_step(p, state, node, margins)
            y = x * step.lo_s + (0.0 if step.lo_c is None else np.moveaxis(step.lo_c, 0, -1)[..., None])
        values[out] = np.moveaxis(y, (-2, -1), (0, 1)).reshape(batch * rows, *p.shapes[out])
    return grads


def initial(
    p: OpPlan, state: OpBounds, rule_index: np.ndarray, rules: tuple[str, ...], margins: tuple[float, float]
) -> dict[str, np.ndarray]:
    """Each row's slopes from the rule that gave its best bound (``rule_index`` ``(B, R)`` into ``rules``)."""
    alpha = {}
    for out, src in _relu_nodes(p).items():
        lo_s, _, up_s, _, unstable, _ = _lines(p, state, out, src, margins)
        slopes = np.broadcast_to(lo_s, (*lo_s.shape[:-1], rule_index.shape[1])).copy()
        for i, rule in enumerate(rules):
            choice = RULE_SLOPES[rule]
            s = lo_s if choice is None else up_s if choice == "up" else np.full_like(lo_s, float(choice))
            slopes = np.where((rule_index == i) & unstable, s, slopes)
        alpha[out] = slopes
    return alpha


def optimise(
    p: OpPlan,
    state: OpBounds,
    seed: np.ndarray,
    const: np.ndarray,
    scale: np.ndarray,
    alpha: dict[str, np.ndarray],
    margins: tuple[float, float],
    steps: int = STEPS,
) -> tuple[np.ndarray, np.ndarray]:
    """The best sound lower bounds ``(B, R)`` (and functions) over ``steps`` Adam steps on the slopes ``alpha``
    (from ``initial``), each step one backward walk and one forward pass of the R rows."""
    m = {k: np.zeros_like(v) for k, v in alpha.items()}
    v2 = {k: np.zeros_like(v) for k, v in alpha.items()}
    best: tuple[np.ndarray, np.ndarray] | None = None
    for t in range(1, steps + 1):
        record: dict[str, np.ndarray] = {}
        lower, func = _walk(p, state, seed, const, scale, alpha, margins, record)
        if best is None:
            best = (lower, func)
        else:
            better = lower > best[0]
            best = (np.where(better, lower, best[0]), np.where(better[..., None], func, best[1]))
        if t == steps:
            break
        grads = _gradients(p, state, func, alpha, record, margins)
        for k, g in grads.items():
            m[k] = 0.9 * m[k] + 0.1 * g
            v2[k] = 0.999 * v2[k] + 0.001 * g * g
            step = LEARNING_RATE * (m[k] / (1 - 0.9**t)) / (np.sqrt(v2[k] / (1 - 0.999**t)) + 1e-12)
            alpha[k] = np.clip(alpha[k] + step, 0.0, 1.0)
    assert best is not None
    return best
