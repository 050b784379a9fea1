"""Helpers of ``Op.vjp``: sums over broadcast axes, and the generic adjoint of ops that only move entries.

Not an op family (registers nothing); the op files import it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nnverify.graph.ops.base import NoAdjoint, Node

#: Values of the probe that checks a candidate selection (fixed, so that results are reproducible).
_PROBE = np.random.default_rng(20261206)


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``g`` ``(R, *out)`` summed down to the batched ``shape`` it was broadcast from (axes aligned as in
    ``align_ranks``); the row axis is kept: ``(R, *shape[1:])``."""
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(1, 1 + extra)))
    axes = tuple(k for k in range(1, g.ndim) if shape[k] == 1 and g.shape[k] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def first(xs: Sequence[np.ndarray], part: np.ndarray) -> list[np.ndarray | None]:
    """``part`` for input 0, None for the others (ops whose other inputs are constant parameters)."""
    return [part, *[None] * (len(xs) - 1)]


def rows(g: np.ndarray, x: np.ndarray, part: np.ndarray) -> np.ndarray:
    """``part`` broadcast to ``(R, *x.shape[1:])`` with R the larger batch of ``g`` and ``x`` (a writable copy
    when it had to be broadcast)."""
    shape = (max(g.shape[0], x.shape[0]), *x.shape[1:])
    return part if part.shape == shape else np.array(np.broadcast_to(part, shape))


def grouped_product(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x`` ``(R, G, P, A)`` times ``w`` ``(G, A, B)`` per group: ``(R, G, P, B)``, one 2-D GEMM per group (numpy's
    broadcasting matmul skips BLAS)."""
    r, groups, p, a = x.shape
    out = np.empty((r, groups, p, w.shape[-1]))
    for k in range(groups):
        out[:, k] = (x[:, k].reshape(r * p, a) @ w[k]).reshape(r, p, -1)
    return out


def _selection(op: Any, node: Node, xs: Sequence[np.ndarray], k: int, wanted: list[bool]) -> np.ndarray | None:
    """For input ``k`` of an affine node whose output entries each copy one entry of it (or none), the 1-based
    input position of every output entry (0: none); else None. The other wanted (variable) inputs are set to 0,
    the constants kept; a second probe with random values must reproduce the claimed copies exactly."""
    base = [np.zeros_like(x[:1], dtype=np.float64) if j != k and wanted[j] else x[:1] for j, x in enumerate(xs)]
    shape = xs[k].shape[1:]
    size = math.prod(shape)

    def probe(values: np.ndarray) -> np.ndarray:
        args = [*base[:k], values.reshape((1, *shape)), *base[k + 1 :]]
        return np.asarray(op.eval(node, *args), dtype=np.float64).reshape(-1)

    try:
        zero = probe(np.zeros(size))
        flat = probe(np.arange(1, size + 1, dtype=np.float64)) - zero
        if not np.all((flat == np.round(flat)) & (flat >= 0) & (flat <= size)):
            return None
        index = flat.astype(np.int64)
        check = np.concatenate([[0.0], _PROBE.uniform(1.0, 2.0, size)])
        if not np.array_equal(probe(check[1:]) - zero, check[index]):
            return None
    except (ValueError, IndexError, TypeError):
        return None
    return index


def moved(op: Any, node: Node, xs: Sequence[np.ndarray], g: np.ndarray, wanted: list[bool]) -> list[np.ndarray | None]:
    """The adjoint of an affine op that moves or copies entries (Reshape, Slice, Gather, Expand ...): each
    wanted input receives the sum of ``g`` over the outputs that copy each of its entries."""
    out: list[np.ndarray | None] = [None] * len(xs)
    r = g.shape[0]
    flat_g = g.reshape(r, -1)
    for k, want in enumerate(wanted):
        if not want:
            continue
        index = _selection(op, node, xs, k, wanted)
        if index is None or index.size != flat_g.shape[1]:
            raise NoAdjoint(f"{op.op_type} is not a selection of its input {k}: it needs a vjp of its own")
        shape = xs[k].shape[1:]
        out[k] = np.ascontiguousarray(_scatter(index, flat_g.T, math.prod(shape) + 1)[1:].T).reshape(r, *shape)
    return out


def _scatter(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """``dx`` ``(size, *rest)`` with ``dx[i] = sum of values[j] over index[j] == i`` for ``i >= 1`` (row 0 collects
    the outputs that copy nothing and is discarded); a plain assignment when no other index repeats (2x faster
    than ``np.add.at``)."""
    dx = np.zeros((size, *values.shape[1:]))
    counts = np.bincount(index, minlength=size)
    if counts[1:].max(initial=0) <= 1:
        dx[index] = values
    else:
        np.add.at(dx, index, values)
    return dx
