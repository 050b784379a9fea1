"""Forward bounds up to a cut tensor, CROWN back-substitution after it: wide early layers stay implicit.

The op graph is cut at a tensor every later node depends on only through it. Before the cut, ``forward_ops``
gives affine functions of the free inputs; after it, the small dense view (``passes.to_layers``) is
back-substituted down to the cut, where the cut's functions replace the input box (no correlation is lost).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from nnverify.attack_graph import dense_view_mb
from nnverify.bounds import receptive
from nnverify.bounds.backward import LayerBounds, _walk
from nnverify.bounds.forward_ops import Form, activation_form, forward_forms, input_form
from nnverify.budget import Budget
from nnverify.graph.core import Graph
from nnverify.graph.layers import ActivationLayer, AffineLayer, Layer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.graph.ops.interface import Lines
from nnverify.graph.passes import to_layers
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL

#: Elements (rows x boxes x layer width) of one back-substitution chunk (memory: 8 bytes each).
CHUNK = 1 << 23
MERGE = True


@dataclass(frozen=True, slots=True)
class CutPlan:
    """The graph, the cut tensor's name, and the dense view of everything after the cut (its input is the cut)."""

    graph: Graph
    cut: str
    suffix: LayerGraph


def _cut_candidates(graph: Graph) -> list[str]:
    """Tensors (graph order) through which every later node depends on the input: the input, or a node output
    such that every later node reads only tensors produced at or after it."""
    produced_after: set[str] = set()
    read_after: set[str] = set()
    out: list[str] = []
    for node in reversed(graph.nodes):
        name = node.outputs[0]
        if read_after <= produced_after | {name}:
            out.append(name)
        produced_after.add(name)
        read_after.update(n for n in node.inputs if n and n not in graph.constants)
    return [graph.input_name, *reversed(out)]


#: Largest estimated back-substitution work per box (``sparse_view.backsub_cost``, multiply-adds over whole layers)
#: of a suffix built sparse: the cheap cut (the cGAN 64x64 nets' generated image, 6.7e10; the upsample net's
#: ``input.39``, 1.9e10), and the deep cut taken where the cheap one leaves the root box loose
#: (``forward_split.ROOT_LOOSE``). The rows walk their receptive fields (``receptive.py``), far less than the
#: estimate: the 64x64 nets' cut after their second ConvTranspose (3.1e12) passes, with the view's memory deciding.
CUT_COST_MAX = 8e10
DEEP_CUT_COST_MAX = 3.5e12


#: Above this estimated work per root box from the input (``sparse_view.backsub_cost``), CROWN on the whole op
#: graph (``backward_ops.py``) is too slow and a cut is preferred: the cGAN 32x32 nets and the bias-field CIFAR
#: nets are about 1.1e12 (a root box in about a minute), the 64x64 cGANs 4.7e12 (over 10 min), the upsample cGAN
#: 1.3e14.
WHOLE_COST_MAX = 2e12


def prefers_cut(graph: Graph) -> bool:
    """Whether back-substitution from every activation down to the input would cost over ``WHOLE_COST_MAX``."""
    from nnverify.bounds.sparse_view import backsub_cost

    shapes = {name: value.shape[1:] for name, value in graph.eval_all(np.zeros((1, graph.n_inputs))).items()}
    return backsub_cost(graph, graph.input_name, shapes) > WHOLE_COST_MAX


def plan_cut(
    graph: Graph, limit_mb: float, budget: Budget | None = None, cost_max: float | None = None
) -> CutPlan | None:
    """The earliest cut whose suffix's estimated back-substitution work is under ``cost_max`` (``CUT_COST_MAX`` if
    None) and whose sparse view (``sparse_view.py``, never dense) fits ``limit_mb``; else the earliest whose dense
    view fits ``limit_mb``. Either must start with an affine layer on the cut alone; None if no cut qualifies."""
    from nnverify.bounds.sparse_view import backsub_cost, sparse_view

    shapes = {name: value.shape[1:] for name, value in graph.eval_all(np.zeros((1, graph.n_inputs))).items()}
    candidates = [cut for cut in _cut_candidates(graph) if cut != graph.output_name]
    for cut in candidates:
        if backsub_cost(graph, cut, shapes) > (CUT_COST_MAX if cost_max is None else cost_max):
            continue
        view = sparse_view(_after(graph, cut, shapes), limit_mb, budget)
        if view is not None and _starts_affine(view):
            return CutPlan(graph, cut, view)
    for cut in candidates:
        sub = _after(graph, cut, shapes)
        if dense_view_mb(sub) > limit_mb:
            continue
        suffix = to_layers(sub, merge=MERGE, budget=budget)
        if _starts_affine(suffix):
            return CutPlan(graph, cut, _sparse(suffix))
    return None


def _after(graph: Graph, cut: str, shapes: dict[str, tuple[int, ...]]) -> Graph:
    """The part of ``graph`` after the tensor ``cut``, with ``cut`` as its input."""
    index = 0 if cut == graph.input_name else next(i for i, n in enumerate(graph.nodes) if n.outputs[0] == cut) + 1
    return Graph(
        graph.path, cut, tuple(shapes[cut]), graph.output_name, graph.output_shape, graph.nodes[index:], graph.constants
    )


def _starts_affine(suffix: LayerGraph) -> bool:
    """No activation reads the cut directly, and some affine layer does."""
    readers = [layer for layer in suffix.layers[1:] if isinstance(layer, AffineLayer) and 0 in layer.sources]
    return bool(readers) and not any(isinstance(la, ActivationLayer) and la.source == 0 for la in suffix.layers)


#: Weights with at most this share of nonzeros are kept as sparse matrices (convolutions are very sparse).
SPARSE_DENSITY = 0.2


def _sparse(view: LayerGraph) -> LayerGraph:
    """``view`` with its sparse weights as CSR matrices (the back-substitution's products accept both)."""
    from scipy import sparse  # imported on first use: scipy costs start-up time on every check

    layers: list[Layer] = []
    for layer in view.layers:
        if isinstance(layer, AffineLayer):
            weights = tuple(
                sparse.csr_matrix(w) if np.count_nonzero(w) <= SPARSE_DENSITY * w.size else w for w in layer.weights
            )
            layer = AffineLayer(layer.name, layer.sources, cast(tuple[np.ndarray, ...], weights), layer.bias)
        layers.append(layer)
    return LayerGraph(tuple(layers), view.output)


def _rows(w: Any, idx: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
    """Rows ``idx`` (and columns ``cols``, or all) of a dense or sparse weight, dense."""
    part = w[idx] if cols is None else w[idx][:, cols]
    return part.toarray() if hasattr(part, "toarray") else part


def _concretize(
    coef: np.ndarray, const: np.ndarray, scale: np.ndarray, form: Form, margin_rel: float, margin_abs: float
) -> tuple[np.ndarray, np.ndarray]:
    """Lower bound of ``coef @ x + const`` (``coef`` ``(B, K, s)``) with ``x`` between the functions
    ``centre -+ (dev + rad)`` of ``form``: ``coef centre - |coef| (dev + rad)``; also that lower function
    ``(B, K, n + 1)`` (the margin folded into its constant)."""
    batch, rows = form.centre.shape[:2]
    func = np.einsum("bks,bis->bki", coef, form.centre.reshape(batch, rows, -1))
    abs_coef = np.abs(coef)
    if form.dev is not None:
        func -= np.einsum("bks,bis->bki", abs_coef, form.dev.reshape(batch, rows, -1))
    func[..., -1] += const - np.einsum("bks,bs->bk", abs_coef, form.rad.reshape(batch, -1))
    mag = scale + np.einsum("bks,bs->bk", abs_coef, form.mag.reshape(batch, -1)) + np.abs(const)
    mag += np.abs(func).sum(axis=2)
    lower = func[..., -1] - np.abs(func[..., :-1]).sum(axis=2) - margin_rel * mag - margin_abs
    func[..., -1] -= margin_rel * mag + margin_abs
    return lower, func


def _flat(form: Form) -> Form:
    batch, rows = form.centre.shape[:2]
    dev = None if form.dev is None else form.dev.reshape(batch, rows, -1)
    return Form(form.centre.reshape(batch, rows, -1), dev, form.rad.reshape(batch, -1), form.mag.reshape(batch, -1))


def _dense_affine(layer: AffineLayer, forms: list[Form], margins: tuple[float, float]) -> Form:
    """``forward_ops``' affine step on a dense-view layer (``W centre + b``, ``|W| dev``, ``|W| rad``)."""
    batch, rows = forms[0].centre.shape[:2]
    centre = np.zeros((batch, rows, layer.size))
    centre[:, -1] = layer.bias
    dev = None
    rad = np.zeros((batch, layer.size))
    scale = np.broadcast_to(np.abs(layer.bias), rad.shape).copy()
    for f, w, abs_w in zip(forms, layer.weights, layer.abs_weights, strict=True):
        centre += (f.centre.reshape(batch * rows, -1) @ w.T).reshape(centre.shape)
        if f.dev is not None:
            part = (f.dev.reshape(batch * rows, -1) @ abs_w.T).reshape(centre.shape)
            dev = part if dev is None else dev + part
        rad += f.rad @ abs_w.T
        scale += f.mag @ abs_w.T
    rad += margins[0] * scale + margins[1]
    return Form(centre, dev, rad, scale * (1.0 + margins[0]))


@dataclass(slots=True)
class _Suffix:
    """The suffix's per-layer functions and bounds while they are being computed (one batch of boxes)."""

    view: LayerGraph
    forms: list[Form]
    lb: list[np.ndarray]
    ub: list[np.ndarray]
    margins: tuple[float, float]
    keys: list[np.ndarray] | None = None

    def walk_to(
        self,
        lam: dict[int, np.ndarray],
        const: np.ndarray,
        scale: np.ndarray,
        start: int,
        support: dict[int, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Back-substitute ``lam`` (per layer) from layer ``start`` down to the cut and bound it there by the cut's
        functions: ``(lower (B, K), lower functions (B, K, n + 1))``. With ``support`` (``receptive.supports``),
        ``lam`` and the walk are on those windows of the layers."""
        view, bounds, form = self.view, LayerBounds(self.lb, self.ub), self.forms[0]
        if support is not None:
            view, bounds = receptive.restrict(view, support, start + 1), receptive.restrict_bounds(bounds, support)
            cols = support[0]
            dev = None if form.dev is None else form.dev[..., cols]
            form = Form(form.centre[..., cols], dev, form.rad[:, cols], form.mag[:, cols])
        cache: dict[int, Lines] = {}
        coef, const, scale = _walk(view, bounds, lam, const, scale, start, "adaptive", (*self.margins, cache))
        return _concretize(coef, const, scale, form, *self.margins)

    def groups(self, k: int, idx: np.ndarray, sides: int) -> Iterator[tuple[np.ndarray, dict[int, np.ndarray] | None]]:
        """The elements ``idx`` of layer ``k`` in groups whose rows (``sides`` per element) fit ``CHUNK``, each
        with its windows (``receptive.supports``) where they leave out enough of the layers below, else None."""
        batch = self.lb[k].shape[0]
        full = max(1, CHUNK // max(1, sides * batch * max(v.shape[1] for v in self.lb[:k])))
        if not RECEPTIVE:
            yield from ((idx[s : s + full], None) for s in range(0, idx.size, full))
            return
        if self.keys is None:
            self.keys = receptive.position_keys(self.view)
        order = idx[np.argsort(self.keys[k][idx], kind="stable")]
        start, step = 0, GROUP
        while start < order.size:
            group = order[start : start + step]
            support = receptive.supports(self.view, k, group)
            if group.size > 1 and sides * batch * group.size * max(s.size for s in support.values()) > CHUNK:
                step = max(1, group.size // 2)
                continue
            if receptive.pays(self.view, support):
                yield group, support
            else:
                group = order[start : start + full]
                yield group, None
            start += group.size


#: Whether rows are walked on their receptive fields (``bounds/receptive.py``), and the elements per group.
RECEPTIVE = True
GROUP = 256


def _tighten(state: _Suffix, k: int, idx: np.ndarray, sides: tuple[int, ...] = (1, -1)) -> None:
    """Tighten neurons ``idx`` of the affine layer ``k`` in place by back-substitution to the cut: the lower bound
    for side ``1``, the upper for ``-1``."""
    for group, support in state.groups(k, idx, len(sides)):
        _tighten_group(state, k, group, sides, support)


def _tighten_group(
    state: _Suffix, k: int, idx: np.ndarray, sides: tuple[int, ...], support: dict[int, np.ndarray] | None
) -> None:
    layer = state.view.layers[k]
    assert isinstance(layer, AffineLayer)
    batch = state.lb[k].shape[0]
    lam: dict[int, np.ndarray] = {}
    pre = np.broadcast_to(np.abs(layer.bias[idx]), (batch, idx.size)).copy()
    for src, w, abs_w in zip(layer.sources, layer.weights, layer.abs_weights, strict=True):
        cols = None if support is None else support[src]
        picked, abs_picked = _rows(w, idx, cols), _rows(abs_w, idx, cols)
        mag = np.maximum(np.abs(state.lb[src]), np.abs(state.ub[src]))
        rows = np.broadcast_to(
            np.concatenate([s * picked for s in sides]), (batch, len(sides) * idx.size, picked.shape[1])
        )
        lam[src] = lam[src] + rows if src in lam else rows.copy()
        pre += (mag if cols is None else mag[:, cols]) @ abs_picked.T
    const = np.broadcast_to(np.concatenate([s * layer.bias[idx] for s in sides]), (batch, len(sides) * idx.size)).copy()
    low, _ = state.walk_to(lam, const, np.concatenate([pre] * len(sides), axis=1), k - 1, support)
    for i, s in enumerate(sides):
        part = low[:, i * idx.size : (i + 1) * idx.size]
        if s > 0:
            state.lb[k][:, idx] = np.maximum(state.lb[k][:, idx], part)
        else:
            state.ub[k][:, idx] = np.minimum(state.ub[k][:, idx], -part)


def _tighten_layer(state: _Suffix, k: int, smooth: bool, budget: Budget | None = None) -> None:
    """Tighten every element of layer ``k`` open in some box. Before a ReLU the upper bounds come first, and the
    lower bounds only where some box's upper bound stays above 0 (an element at most 0 is off either way)."""
    lo, hi = state.lb[k], state.ub[k]
    if smooth:
        idx = np.nonzero(np.any(hi > lo, axis=0))[0]
        for group, support in state.groups(k, idx, 2):
            if budget is not None:
                budget.check("bounds after the cut")
            _tighten_group(state, k, group, (1, -1), support)
        return
    for side in (-1, 1):
        lo, hi = state.lb[k], state.ub[k]
        idx = np.nonzero(np.any((lo < 0.0) & (hi > 0.0), axis=0))[0]
        for group, support in state.groups(k, idx, 1):
            if budget is not None:  # a layer's rows take up to a minute on a loaded machine
                budget.check("bounds after the cut")
            _tighten_group(state, k, group, (side,), support)


def suffix_bounds(
    view: LayerGraph, form: Form, margins: tuple[float, float], budget: Budget | None, parent: LayerBounds | None = None
) -> _Suffix:
    """Functions and bounds of every layer after the cut, in order: each activation input's bounds are its
    forward functions' (intersected with ``parent``'s, sound bounds of a box containing each box) tightened by
    back-substitution down to the cut, and each activation's lines use those bounds."""
    state = _Suffix(view, [_flat(form)], [], [], margins)

    def keep(k: int, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if parent is not None:
            lo, hi = np.maximum(lo, parent.lb[k]), np.minimum(hi, parent.ub[k])
        state.lb.append(lo)
        state.ub.append(hi)
        return lo, hi

    keep(0, *state.forms[0].interval(*margins))
    feeds = {layer.source for layer in view.layers if isinstance(layer, ActivationLayer)}
    for k, layer in enumerate(view.layers[1:], start=1):
        if budget is not None:
            budget.check("bounds after the cut")
        if isinstance(layer, ActivationLayer):
            src = layer.source
            state.forms.append(activation_form(layer.kind, state.forms[src], *margins, (state.lb[src], state.ub[src])))
            lo, hi = layer.act.interval(state.lb[src], state.ub[src], *margins)
            f_lo, f_hi = state.forms[k].interval(*margins)
            keep(k, np.maximum(lo, f_lo), np.minimum(hi, f_hi))
            continue
        assert isinstance(layer, AffineLayer)
        state.forms.append(_dense_affine(layer, [state.forms[s] for s in layer.sources], margins))
        keep(k, *state.forms[k].interval(*margins))
        if k in feeds:
            smooth = any(
                isinstance(la, ActivationLayer) and la.source == k and la.kind is not ActKind.RELU for la in view.layers
            )
            _tighten_layer(state, k, smooth, budget)
    return state


def cut_rows_lower(
    plan: CutPlan,
    lb: np.ndarray,
    ub: np.ndarray,
    free: np.ndarray,
    a_x: np.ndarray,
    a_y: np.ndarray,
    b: np.ndarray,
    *,
    parent: LayerBounds | None = None,
    budget: Budget | None = None,
    margin_rel: float = BOUND_MARGIN_REL,
    margin_abs: float = BOUND_MARGIN_ABS,
) -> tuple[np.ndarray, np.ndarray, LayerBounds]:
    """Sound lower bounds ``(B, K)`` of the rows ``a_x x + a_y y - b`` over the boxes ``lb <= x <= ub``
    (``(B, n_inputs)``, ``free`` the inputs that vary), their lower functions ``(B, K, n + 1)`` of each box's
    normalised coordinates, and the bounds of every layer after the cut (``parent`` for the boxes' halves)."""
    margins = (margin_rel, margin_abs)
    form = forward_forms(
        plan.graph, lb, ub, free, target=plan.cut, budget=budget, margin_rel=margin_rel, margin_abs=margin_abs
    )
    state = suffix_bounds(plan.suffix, form, margins, budget, parent)
    batch = lb.shape[0]
    out = plan.suffix.output
    lam = {out: np.broadcast_to(a_y, (batch, *a_y.shape)).copy()}
    zeros = np.zeros((batch, a_y.shape[0]))
    lower, func = state.walk_to(
        lam, -np.broadcast_to(b, zeros.shape), np.broadcast_to(np.abs(b), zeros.shape).copy(), out
    )
    if np.any(a_x):
        x_form = input_form(lb, ub, free, (lb.shape[1],))
        _, x_func = _concretize(np.broadcast_to(a_x, (batch, *a_x.shape)), zeros, zeros, x_form, *margins)
        func = func + x_func  # both are sound lower functions, so is their sum (up to the rounding below)
        lower = func[..., -1] - np.abs(func[..., :-1]).sum(axis=2)
        lower -= margin_rel * np.abs(func).sum(axis=2) + margin_abs
    return lower, func, LayerBounds(state.lb, state.ub)
