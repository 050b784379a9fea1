"""Intermediate rows walked on their receptive fields: the rows of neighbouring elements of a tensor that a chain of
Conv and activation nodes computes from the floor reach only a window of every tensor below it, so their walk
(``op_walk.walk``'s steps, the same coefficients) runs on those windows alone. Other graphs keep the full walk.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnverify.bounds.adjoint import ConvMap
from nnverify.bounds.forward_ops import Form
from nnverify.bounds.op_plan import OpPlan
from nnverify.bounds.op_walk import OpBounds, act_step, affine_scale, concretize, dot
from nnverify.budget import Budget
from nnverify.graph.ops.base import REGISTRY, Node

#: Estimated multiply-adds that one group's Python and numpy call overhead costs per node of its chain: the tile
#: size minimises the groups' work plus this.
OVERHEAD = 4e4
#: Elements (boxes x rows x widest window) of one walk (memory: 8 bytes each, a few copies).
CHUNK = 1 << 22

Window = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Chain:
    """The nodes from a tensor's producer down to the floor, each a Conv (``ConvMap``) or an activation, and the
    spatial sizes of their outputs (tensors ``(1, C, *spatial)``)."""

    nodes: tuple[Node, ...]
    floor: str
    channels: tuple[int, ...]


def chain(p: OpPlan, name: str) -> Chain | None:
    """The chain below tensor ``name`` if every node on its way to the floor is a Conv with a ``ConvMap`` or an
    activation of one variable input, else None (the walk then takes the whole tensors)."""
    producer = {node.outputs[0]: node for node in p.graph.nodes}
    nodes: list[Node] = []
    channels: list[int] = []
    tensor = name
    while tensor not in p.prefix:
        node = producer.get(tensor)
        shape = p.shapes[tensor]
        if node is None or len(shape) < 3 or shape[0] != 1:
            return None
        variable = [n for n in node.inputs if n in p.shapes]
        if len(variable) != 1 or variable[0] != node.inputs[0]:
            return None
        cmap = p.maps.get(node.name)
        if REGISTRY[node.op_type].affine:
            if (
                not isinstance(cmap, ConvMap)
                or cmap.out_shape != shape[1:]
                or cmap.in_shape != p.shapes[variable[0]][1:]
            ):
                return None
        elif p.shapes[variable[0]] != shape:
            return None
        nodes.append(node)
        channels.append(shape[1])
        tensor = variable[0]
    if not nodes or tensor not in p.floor or len(p.shapes[tensor]) != len(p.shapes[name]):
        return None
    return Chain(tuple(nodes), tensor, tuple(channels))


def _below(cmap: ConvMap, window: Window) -> tuple[Window, tuple[int, ...]]:
    """The input window the output ``window`` reads, and the unclipped start of its padded reach per axis."""
    kernel = cmap.kernel.shape[2:]
    starts, out = [], []
    for (lo, hi), s, d, k, (pad, _), size in zip(
        window, cmap.strides, cmap.dilations, kernel, cmap.pads, cmap.in_shape[1:], strict=True
    ):
        start, stop = lo * s - pad, (hi - 1) * s - pad + (k - 1) * d + 1
        starts.append(start)
        out.append((max(start, 0), min(stop, size)))
    return tuple(out), tuple(starts)


def windows(p: OpPlan, ch: Chain, top: Window) -> list[Window]:
    """The window of each node's output along the chain (``top`` first), then the floor's."""
    out = [top]
    for node in ch.nodes:
        cmap = p.maps.get(node.name)
        out.append(_below(cmap, out[-1])[0] if isinstance(cmap, ConvMap) else out[-1])
    return out


def conv_adjoint_window(cmap: ConvMap, coef: np.ndarray, window: Window) -> tuple[np.ndarray, Window]:
    """``coef`` ``(M, *window sizes, N)`` on the output ``window`` through the transposed convolution: the
    coefficients on the input window it reads (``op_plan.conv_adjoint`` on a window)."""
    n = coef.shape[-1]
    channels, m = cmap.in_shape[0], cmap.out_shape[0]
    cg, mg = channels // cmap.groups, m // cmap.groups
    kshape = cmap.kernel.shape[2:]
    sizes = [hi - lo for lo, hi in window]
    below, starts = _below(cmap, window)
    reach = [
        (size - 1) * s + (k - 1) * d + 1
        for size, s, d, k in zip(sizes, cmap.strides, cmap.dilations, kshape, strict=True)
    ]
    local = np.zeros((channels, *reach, n))
    rows = coef.reshape(m, -1)
    for g in range(cmap.groups):
        wt = cmap.kernel[g * mg : (g + 1) * mg].reshape(mg, -1).T  # (Cg * K, Mg)
        cols = (wt @ rows[g * mg : (g + 1) * mg]).reshape(cg, *kshape, *sizes, n)
        for offset in itertools.product(*(range(k) for k in kshape)):
            taps = tuple(
                slice(o * d, o * d + s * (size - 1) + 1, s)
                for o, d, s, size in zip(offset, cmap.dilations, cmap.strides, sizes, strict=True)
            )
            local[(slice(g * cg, (g + 1) * cg), *taps)] += cols[(slice(None), *offset)]
    crop = tuple(slice(lo - start, hi - start) for (lo, hi), start in zip(below, starts, strict=True))
    if all(c.start == 0 and c.stop == r for c, r in zip(crop, reach, strict=True)):
        return local, below
    return np.ascontiguousarray(local[(slice(None), *crop)]), below


def _cut(v: np.ndarray, window: Window, rows_last: bool) -> np.ndarray:
    """``v`` ``(B or 1, 1, C, *spatial)`` (or rows last ``(1, C, *spatial, B, 1)``) on ``window``: ``(B, C, *w)``
    (or ``(C, *w, B, 1)``)."""
    spatial = tuple(slice(lo, hi) for lo, hi in window)
    index: tuple[Any, ...] = (0, slice(None), *spatial) if rows_last else (slice(None), 0, slice(None), *spatial)
    return v[index]


def _dense(state: OpBounds, node: Node, step_key: str, size: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The step's ``up_s - lo_s`` ``(*shape, B, 1)`` and ``up_c - lo_c`` ``(B, *shape)`` as whole tensors (zero
    where the lines agree), cached per batch."""
    if step_key not in state.dense:
        step = state.lines[step_key]
        d_s = np.zeros((size, batch, 1))
        d_s[step.inexact] = step.d_s
        d_c = np.zeros((batch, size))
        d_c[:, step.inexact] = step.d_c
        shape = step.term.shape[1:]
        state.dense[step_key] = (d_s.reshape(*shape, batch, 1), d_c.reshape(batch, *shape))
    d_s, d_c = state.dense[step_key]
    return d_s, d_c


def _walk(
    p: OpPlan,
    state: OpBounds,
    ch: Chain,
    name: str,
    elems: tuple[np.ndarray, ...],
    sign: float,
    margins: tuple[float, float],
    rule: str = "adaptive",
) -> tuple[np.ndarray, np.ndarray]:
    """``op_walk.walk`` of the rows ``sign * x[elems]`` (``elems``: channel and spatial indices) on their windows."""
    batch = state.lb[name].shape[0]
    rows = elems[0].size
    window: Window = tuple((int(a.min()), int(a.max()) + 1) for a in elems[1:])
    coef = np.zeros((p.shapes[name][1], *(hi - lo for lo, hi in window), batch, rows))
    local = tuple(a - lo for a, (lo, _) in zip(elems[1:], window, strict=True))
    at: tuple[Any, ...] = (elems[0], *local, slice(None), np.arange(rows))
    coef[at] = sign
    const, scale = np.zeros((batch, rows)), np.zeros((batch, rows))
    for node in ch.nodes:
        cmap = p.maps.get(node.name)
        if isinstance(cmap, ConvMap):
            const += dot(_cut(p.bias[node.name], window, False), coef)
            scale += dot(_cut(affine_scale(p, state, node), window, False), np.abs(coef))
            coef, window = conv_adjoint_window(cmap, coef.reshape(cmap.out_shape[0], -1, batch * rows), window)
            coef = coef.reshape(*coef.shape[:-1], batch, rows)
            continue
        step = act_step(p, state, node, margins, rule)
        key = node.outputs[0] if rule == "adaptive" else f"{node.outputs[0]}\0{rule}"
        d_s, d_c = _dense(state, node, key, math.prod(p.shapes[node.outputs[0]]), batch)
        neg = np.minimum(coef, 0.0)
        if step.lo_c is not None:
            const += dot(_cut(step.lo_c, window, False), coef)
        if step.inexact.size:
            const += dot(_cut(d_c, window, False), neg)
        scale += dot(_cut(step.term, window, False), np.abs(coef))
        part = coef * _cut(step.lo_s, window, True)
        if step.inexact.size:
            part += neg * _cut(d_s, window, True)
        coef = part
    form = state.floor[ch.floor]
    spatial = tuple(slice(lo, hi) for lo, hi in window)
    pick: tuple[Any, ...] = (slice(None), slice(None), 0, slice(None), *spatial)
    floor = Form(
        form.centre[pick],
        None if form.dev is None else form.dev[pick],
        _cut(form.rad, window, False),
        _cut(form.mag, window, False),
    )
    return concretize(OpBounds({}, {}, {ch.floor: floor}), {ch.floor: coef}, const, scale, margins)


def _cost(p: OpPlan, ch: Chain, wins: list[Window], n1: int) -> float:
    """Estimated multiply-adds of one row's walk on ``wins`` (``windows``)."""
    cost = 0.0
    for node, win, below in zip(ch.nodes, wins, wins[1:], strict=False):
        cmap = p.maps.get(node.name)
        area = math.prod(hi - lo for lo, hi in win)
        if isinstance(cmap, ConvMap):
            cost += area * cmap.kernel.size + cmap.in_shape[0] * math.prod(hi - lo for lo, hi in below)
        else:
            cost += 4.0 * p.shapes[node.outputs[0]][1] * area
    floor = p.shapes[ch.floor][1] * math.prod(hi - lo for lo, hi in wins[-1])
    return cost + 2.0 * n1 * floor


def groups(p: OpPlan, ch: Chain, name: str, idx: np.ndarray, batch: int, n1: int) -> list[np.ndarray]:
    """The rows ``idx`` (flat elements of ``name``) in groups of neighbouring positions (positions in tiles of
    ``t`` per spatial axis, ``t`` a power of two minimising the estimated work plus ``OVERHEAD`` per group)."""
    spatial = p.shapes[name][2:]
    pos = np.unravel_index(idx, p.shapes[name][1:])[1:]
    best: tuple[float, list[np.ndarray]] | None = None
    t = 1
    while True:
        keys = np.ravel_multi_index(tuple(a // t for a in pos), tuple(-(-s // t) for s in spatial))
        order = np.argsort(keys, kind="stable")
        cuts = np.flatnonzero(np.diff(keys[order])) + 1
        parts = np.split(order, cuts)
        cost = 0.0
        for part in parts:
            top = tuple((int(a[part].min()), int(a[part].max()) + 1) for a in pos)
            cost += batch * part.size * _cost(p, ch, windows(p, ch, top), n1) + OVERHEAD * len(ch.nodes)
        if best is None or cost < best[0]:
            best = (cost, parts)
        if t >= max(spatial):
            break
        t *= 2
    return best[1]


def side(
    p: OpPlan,
    state: OpBounds,
    ch: Chain,
    name: str,
    idx: np.ndarray,
    sign: float,
    margins: tuple[float, float],
    budget: Budget | None,
    rule: str = "adaptive",
) -> tuple[np.ndarray, np.ndarray]:
    """``backward_ops``' lower bounds ``(B, m)`` of ``sign * x[idx]`` and their functions ``(B, m, n + 1)``, each
    group of neighbouring rows walked on its windows."""
    batch = state.lb[name].shape[0]
    n1 = next(iter(state.floor.values())).centre.shape[1]
    elems = np.unravel_index(idx, p.shapes[name][1:])
    low, func = np.zeros((batch, idx.size)), np.zeros((batch, idx.size, n1))
    if idx.size == 0:
        return low, func
    for part in groups(p, ch, name, idx, batch, n1):
        top = tuple((int(a[part].min()), int(a[part].max()) + 1) for a in elems[1:])
        widest = max(
            p.shapes[t][1] * math.prod(hi - lo for lo, hi in w)
            for t, w in zip([name, *(n.inputs[0] for n in ch.nodes)], windows(p, ch, top), strict=True)
        )
        step = max(1, CHUNK // max(1, batch * widest))
        for start in range(0, part.size, step):
            if budget is not None:
                budget.check("back-substitution on the op graph")
            rows = part[start : start + step]
            low[:, rows], func[:, rows] = _walk(p, state, ch, name, tuple(a[rows] for a in elems), sign, margins, rule)
    return low, func
