"""Matrix products: Gemm and MatMul (affine when one factor is a constant).

A product of two variable tensors is bilinear, not affine, and is rejected by ``check``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from nnverify.graph.ops.base import Flags, Node, Op, Parts, Step, Tensors, align_ranks, has_input, register
from nnverify.graph.ops.pullback import unbroadcast


def _one_variable_factor(is_const: tuple[bool, ...], op_type: str) -> str | None:
    """The reason a product of two variable factors is not supported, or None."""
    if not is_const[0] and not is_const[1]:
        return f"both factors of {op_type} are variable tensors (only products with a constant are affine)"
    return None


def product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.matmul(a, b)`` of rank-aligned stacks; when one side is a single matrix broadcast over the other's
    stack, one 2-D GEMM (numpy's broadcasting matmul loop skips BLAS: 50x slower for 500 rows of 1024 x 1024)."""
    if all(d == 1 for d in b.shape[:-2]):
        k, n = int(b.shape[-2]), int(b.shape[-1])
        return (a.reshape(-1, a.shape[-1]) @ b.reshape(k, n)).reshape(*a.shape[:-1], n)
    if all(d == 1 for d in a.shape[:-2]):
        return np.moveaxis(np.tensordot(a.reshape(a.shape[-2:]), b, axes=([1], [b.ndim - 2])), 0, -2)
    return np.matmul(a, b)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX (numpy-style) MatMul of two batched operands, including 1-D promotion.

    Args:
        a: Batched left operand ``(B, ..., M, K)`` or ``(B, K)``.
        b: Batched right operand ``(B, ..., K, N)`` or ``(B, K)``.

    Returns:
        The batched product; promoted 1-D axes are removed again as in ``numpy.matmul``.
    """
    a_vector, b_vector = a.ndim == 2, b.ndim == 2
    if a_vector:
        a = a[:, None, :]
    if b_vector:
        b = b[:, :, None]
    a, b = align_ranks(a, b)
    out = product(a, b)
    if b_vector:
        out = out[..., 0]
    if a_vector:
        out = out[..., 0, :] if not b_vector else out[..., 0]
    return out


def matmul_vjp(a: np.ndarray, b: np.ndarray, g: np.ndarray, wanted: list[bool]) -> Parts:
    """The parts of ``g`` (shaped like ``matmul(a, b)``) for ``a`` and ``b`` (where wanted)."""
    a2 = a[:, None, :] if a.ndim == 2 else a
    b2 = b[:, :, None] if b.ndim == 2 else b
    a3, b3 = align_ranks(a2, b2)
    if b.ndim == 2:
        g = g[..., None]
    if a.ndim == 2:
        g = g[..., None, :]
    da = unbroadcast(product(g, np.swapaxes(b3, -1, -2)), a3.shape) if wanted[0] else None
    db = unbroadcast(product(np.swapaxes(a3, -1, -2), g), b3.shape) if wanted[1] else None
    return [None if part is None else part.reshape(part.shape[0], *x.shape[1:]) for part, x in ((da, a), (db, b))]


@register
class Gemm(Op):
    """``Y = alpha * A' @ B' + beta * C`` with optional transposes of the 2-D factors A and B."""

    op_type = "Gemm"
    affine = True
    dense_matrix = True
    variable_inputs = None
    notes = "one factor constant"

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        return _one_variable_factor(is_const, self.op_type)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        a, b = xs[0], xs[1]
        if node.attrs["transA"]:
            a = np.swapaxes(a, -1, -2)
        if node.attrs["transB"]:
            b = np.swapaxes(b, -1, -2)
        out = node.attrs["alpha"] * product(a, b)
        if has_input(node, 2):
            out, c = align_ranks(out, xs[2])
            out = out + node.attrs["beta"] * c
        return out

    def abs_eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        attrs = {**node.attrs, "alpha": abs(float(node.attrs["alpha"])), "beta": abs(float(node.attrs["beta"]))}
        return self.eval(replace(node, attrs=attrs), *xs)

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        a, b = xs[0], xs[1]
        ta, tb, alpha = node.attrs["transA"], node.attrs["transB"], float(node.attrs["alpha"])
        wanted = self.wanted(xs, variable)
        da, db = matmul_vjp(np.swapaxes(a, -1, -2) if ta else a, np.swapaxes(b, -1, -2) if tb else b, alpha * g, wanted)
        dc = None
        if len(xs) > 2 and wanted[2]:
            dc = unbroadcast(float(node.attrs["beta"]) * g, xs[2].shape)
        return [
            None if da is None else np.swapaxes(da, -1, -2) if ta else da,
            None if db is None else np.swapaxes(db, -1, -2) if tb else db,
            *([dc] if len(xs) > 2 else []),
        ]


@register
class MatMul(Op):
    """Numpy-style matrix product; affine with a constant side. Two variable factors are lowered to sums of
    products first (``graph/lowering_smooth.py``), never read as a matrix."""

    op_type = "MatMul"
    affine = True
    dense_matrix = True
    variable_inputs = None
    notes = "two variable factors relaxed as sums of ((x + y)^2 - (x - y)^2) / 4"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return matmul(xs[0], xs[1])

    def abs_eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return matmul(xs[0], xs[1])

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        return matmul_vjp(xs[0], xs[1], g, self.wanted(xs, variable))
