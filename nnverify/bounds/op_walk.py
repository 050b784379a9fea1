"""One CROWN walk on the op graph: coefficient tensors ``(*shape, B, R)`` (rows last) pulled back through the
nodes (affine ones by their adjoint, activations by their ``relax`` lines) and bounded at the floor by its forward
functions of the free inputs; the bounds of a batch of boxes (``OpBounds``) that the walk reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnverify.bounds.forward_ops import Form
from nnverify.bounds.op_plan import OpPlan, call_at, pull
from nnverify.graph.ops.base import REGISTRY, ActKind, Node
from nnverify.graph.ops.interface import ACTIVATIONS
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL


@dataclass(slots=True)
class OpBounds:
    """Sound bounds ``(B, *shape)`` of every variable tensor over a batch of boxes, and the floor's functions.

    ``funcs`` holds, per tightened tensor, the flat elements ``idx`` and their lower and upper functions
    ``(B, n + 1, m)`` of the normalised coordinates of ``box`` (``(lb, ub)``, ``(B, n_inputs)``): a half box
    re-expresses them in its own coordinates and concretises them, cheaper than back-substituting again.
    ``lines`` caches each activation's relaxation step (``ActStep``, by its output tensor), ``pre`` each affine node's
    ``|A| max|x| + |b|`` (the scale of the rounding of a step through it), ``dense`` a step's line gaps as whole
    tensors (``op_windows``)."""

    lb: dict[str, np.ndarray]
    ub: dict[str, np.ndarray]
    floor: dict[str, Form]
    box: tuple[np.ndarray, np.ndarray] | None = None
    funcs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    lines: dict[str, ActStep] = field(default_factory=dict)
    pre: dict[str, np.ndarray] = field(default_factory=dict)
    dense: dict[str, tuple[np.ndarray, ...]] = field(default_factory=dict)

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


def affine_scale(p: OpPlan, state: OpBounds, node: Node) -> np.ndarray:
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
            part = call_at(p.graph, node, values, True) - call_at(p.graph, node, zeros, True)
        state.pre[node.name] = part + np.abs(p.bias[node.name])
    return state.pre[node.name]


@dataclass(frozen=True, slots=True)
class ActStep:
    """An activation's lines in the walk's layout: ``y >= lo_s x + lo_c`` where the row's coefficient is
    positive, ``y <= up_s x + up_c`` where negative; ``inexact`` the flat elements where the two lines differ in
    some box (elsewhere one multiplication passes the coefficient)."""

    lo_s: np.ndarray  # (*shape, B, 1)
    lo_c: np.ndarray | None  # (B, *shape), None if zero
    inexact: np.ndarray  # (m,)
    d_s: np.ndarray  # (m, B, 1): up_s - lo_s there
    d_c: np.ndarray  # (B, m): up_c - lo_c there
    term: np.ndarray  # (B, *shape): max|s| max|x| + max|c|, the rounding scale


def act_step(p: OpPlan, state: OpBounds, node: Node, margins: tuple[float, float], rule: str = "adaptive") -> ActStep:
    """The activation's ``ActStep`` on its input's bounds (cached per batch); ``rule`` (``backward.SLOPE_RULES``)
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
        state.lines[key] = ActStep(
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


def dot(vec: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``sum over the shape of vec * coef``: ``(B, R)`` for ``vec`` ``(B or 1, *s)`` and ``coef`` ``(*s, B, R)``."""
    batch, rows = coef.shape[-2:]
    flat = coef.reshape(-1, batch, rows)
    v = vec.reshape(vec.shape[0], -1)
    if v.shape[0] == 1:
        return (v[0] @ flat.reshape(-1, batch * rows)).reshape(batch, rows)
    return np.einsum("bm,mbr->br", v, flat)


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
            const += dot(p.bias[node.name], coef)
            scale += dot(affine_scale(p, state, node), np.abs(coef))
            for name, part in pull(p, node, coef):
                lam[name] = lam[name] + part if name in lam else part
            continue
        src = node.inputs[0]
        part = through_act(act_step(p, state, node, margins, rule), coef, const, scale)
        lam[src] = lam[src] + part if src in lam else part
    return concretize(state, lam, const, scale, margins)


def through_act(step: ActStep, coef: np.ndarray, const: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Rows ``coef`` above an activation moved below it by ``step``'s lines (the lower line, the upper one where a
    coefficient is negative on an inexact element): their part below, shaped as ``coef``; the constant and the
    rounding scale they add go into ``const`` and ``scale`` in place."""
    batch, rows = coef.shape[-2:]
    c = coef.reshape(-1, batch, rows)
    part = c * step.lo_s.reshape(-1, batch, 1)
    if step.lo_c is not None:
        const += dot(step.lo_c, coef)
    if step.inexact.size:
        neg = np.minimum(c[step.inexact], 0.0)
        part[step.inexact] += neg * step.d_s
        const += np.einsum("mbr,bm->br", neg, step.d_c)
    scale += dot(step.term, np.abs(coef))
    return part.reshape(coef.shape)


def concretize(
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
