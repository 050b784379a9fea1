"""Convolution kernels without their dense matrices: ``ConvMap`` (Conv's linear part forwards and through its adjoint),
``TransposedMap`` (ConvTranspose as that Conv's adjoint), the COO taps of their sparse matrices, Conv's pads.
``Conv`` and ``ConvTranspose`` build these (``Op.linear_map``, ``kernel_map``, ``sparse_matrix``); stages ask them.

A CIFAR Conv of 3x32x32 -> 16x16x16 is a 4,096 x 3,072 matrix with 48 non-zeros a row: pushing a coefficient
row through it densely costs 12.6M multiply-adds, through its kernel 197K. ``ConvMap.pays`` decides.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnverify.graph.ops.base import Node

#: The kernel route is taken when the dense product costs at least this many times its multiply-adds.
PAYS_FACTOR = 4
#: Float64 elements of one chunk's padded spatial tensor (rows are processed in chunks to bound memory).
CHUNK_ELEMENTS = 1 << 23


@dataclass(frozen=True, slots=True)
class ConvMap:
    """The linear part of ``Conv`` on flattened C-order tensors: ``x (R, C*prod(in)) -> (R, M*prod(out))``.

    Attributes:
        kernel: ``(M, C / groups, *k)`` float64 weights.
        groups: Channel groups.
        strides, dilations: Per spatial axis.
        pads: ``(begin, end)`` zero padding per spatial axis.
        in_shape: ``(C, *in_sizes)``; ``out_shape``: ``(M, *out_sizes)``.
    """

    kernel: np.ndarray
    groups: int
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    abs_kernel: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "abs_kernel", np.abs(self.kernel))

    @property
    def n_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return math.prod(self.out_shape)

    def multiply_adds(self) -> int:
        """Multiply-adds per row through the kernel (either direction)."""
        return math.prod(self.out_shape) * int(self.kernel[0].size)

    def pays(self) -> bool:
        """Whether the kernel route is clearly cheaper than the dense ``n_out x n_in`` product."""
        return self.n_out * self.n_in >= PAYS_FACTOR * self.multiply_adds()

    def _windows(self) -> list[tuple[tuple[int, ...], tuple[slice, ...]]]:
        """Per kernel offset, the slices of the padded input it reads for every output position."""
        out_sizes = self.out_shape[1:]
        kernel = self.kernel.shape[2:]
        return [
            (
                offset,
                tuple(
                    slice(o * d, o * d + s * (size - 1) + 1, s)
                    for o, d, s, size in zip(offset, self.dilations, self.strides, out_sizes, strict=True)
                ),
            )
            for offset in itertools.product(*(range(k) for k in kernel))
        ]

    def _chunk(self) -> int:
        padded = math.prod(size + b + e for size, (b, e) in zip(self.in_shape[1:], self.pads, strict=True))
        return max(1, CHUNK_ELEMENTS // max(1, padded * self.in_shape[0] + self.n_out))

    def forward(self, x: np.ndarray, *, absolute: bool = False) -> np.ndarray:
        """``x @ W.T`` for ``x`` of shape ``(..., n_in)`` (``|W|`` when ``absolute``): ``(..., n_out)``."""
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.n_in)
        step = self._chunk()
        out = np.concatenate(
            [self._forward(flat[s : s + step], absolute) for s in range(0, flat.shape[0], step)]
            or [np.zeros((0, self.n_out))]
        )
        return out.reshape(*lead, self.n_out)

    def adjoint(self, lam: np.ndarray, *, absolute: bool = False) -> np.ndarray:
        """``lam @ W`` for ``lam`` of shape ``(..., n_out)`` (``|W|`` when ``absolute``): ``(..., n_in)``."""
        lead = lam.shape[:-1]
        flat = lam.reshape(-1, self.n_out)
        step = self._chunk()
        out = np.concatenate(
            [self._adjoint(flat[s : s + step], absolute) for s in range(0, flat.shape[0], step)]
            or [np.zeros((0, self.n_in))]
        )
        return out.reshape(*lead, self.n_in)

    def _forward(self, x: np.ndarray, absolute: bool) -> np.ndarray:
        """Rows last (so every copy and add runs along them): the windows ``(Cg * K, P * R)`` of each group
        gathered once, then one GEMM with the kernel ``(Mg, Cg * K)``."""
        r = x.shape[0]
        channels, m = self.in_shape[0], self.out_shape[0]
        cg, mg = channels // self.groups, m // self.groups
        kernel = self.abs_kernel if absolute else self.kernel
        positions = math.prod(self.out_shape[1:])
        xt = np.moveaxis(x.reshape(r, *self.in_shape), 0, -1)  # (C, *in, R)
        xp = np.pad(xt, [(0, 0), *self.pads, (0, 0)])
        taps = np.stack([xp[(slice(None), *window)] for _, window in self._windows()], axis=1)  # (C, K, *out, R)
        taps = taps.reshape(channels, -1, positions * r)
        y = np.empty((m, positions * r))
        for g in range(self.groups):
            cols = taps[g * cg : (g + 1) * cg].reshape(-1, positions * r)
            y[g * mg : (g + 1) * mg] = kernel[g * mg : (g + 1) * mg].reshape(mg, -1) @ cols
        return np.ascontiguousarray(y.reshape(m, positions, r).transpose(2, 0, 1)).reshape(r, self.n_out)

    def _adjoint(self, lam: np.ndarray, absolute: bool) -> np.ndarray:
        """Rows last: one GEMM of the kernel's transpose ``(Cg * K, Mg)`` with the rows ``(Mg, P * R)`` per
        group, then one strided add per kernel offset into the padded input ``(C, *padded, R)``."""
        r = lam.shape[0]
        channels, m = self.in_shape[0], self.out_shape[0]
        cg, mg = channels // self.groups, m // self.groups
        kernel = self.abs_kernel if absolute else self.kernel
        kshape, out_sizes = kernel.shape[2:], self.out_shape[1:]
        rows = np.ascontiguousarray(lam.reshape(r, m, -1).transpose(1, 2, 0))  # (M, P, R)
        padded = [size + b + e for size, (b, e) in zip(self.in_shape[1:], self.pads, strict=True)]
        dx = np.zeros((channels, *padded, r))
        for g in range(self.groups):
            wt = kernel[g * mg : (g + 1) * mg].reshape(mg, -1).T  # (Cg * K, Mg)
            cols = (wt @ rows[g * mg : (g + 1) * mg].reshape(mg, -1)).reshape(cg, *kshape, *out_sizes, r)
            for offset, window in self._windows():
                dx[(slice(g * cg, (g + 1) * cg), *window)] += cols[(slice(None), *offset)]
        crop = tuple(slice(b, b + size) for (b, _), size in zip(self.pads, self.in_shape[1:], strict=True))
        out = np.moveaxis(dx[(slice(None), *crop)], -1, 0)
        return np.ascontiguousarray(out).reshape(r, self.n_in)


def conv_pads(
    node: Node, in_sizes: Sequence[int], extents: Sequence[int], strides: Sequence[int]
) -> list[tuple[int, int]]:
    """(begin, end) zero padding per spatial axis from ``pads`` or ``auto_pad``.

    Args:
        node: The Conv node (attributes ``auto_pad`` and ``pads``).
        in_sizes: Spatial input sizes.
        extents: Dilated kernel sizes ``dilation * (k - 1) + 1``.
        strides: Strides per spatial axis.
    """
    auto_pad = node.attrs["auto_pad"]
    n = len(in_sizes)
    if auto_pad == "VALID":
        return [(0, 0)] * n
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, extent, stride in zip(in_sizes, extents, strides, strict=True):
            out = -(-size // stride)
            total = max(0, (out - 1) * stride + extent - size)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if auto_pad == "SAME_UPPER" else (large, small))
        return pads
    flat = [int(p) for p in node.attrs.get("pads", [0] * (2 * n))]
    return list(zip(flat[:n], flat[n:], strict=True))


def conv_map(node: Node, constants: Mapping[str, np.ndarray], in_shape: tuple[int, ...]) -> ConvMap | None:
    """The ``ConvMap`` of a Conv node whose weights are constants and whose ONNX batch is 1, else None.

    ``in_shape`` is the data input's shape without the analysis batch axis: ``(1, C, *in_sizes)``.
    """
    if node.op_type != "Conv" or len(node.inputs) < 2 or node.inputs[1] not in constants or in_shape[:1] != (1,):
        return None
    w = np.asarray(constants[node.inputs[1]], dtype=np.float64)
    m, _, *kernel = w.shape
    nd = len(kernel)
    in_sizes = in_shape[2:]
    if len(in_sizes) != nd:
        return None
    strides = tuple(int(s) for s in node.attrs.get("strides", [1] * nd))
    dilations = tuple(int(d) for d in node.attrs.get("dilations", [1] * nd))
    extents = [d * (k - 1) + 1 for d, k in zip(dilations, kernel, strict=True)]
    pads = tuple(conv_pads(node, in_sizes, extents, strides))
    out_sizes = tuple(
        (size + lo + hi - ext) // st + 1
        for size, (lo, hi), ext, st in zip(in_sizes, pads, extents, strides, strict=True)
    )
    if any(size <= 0 for size in out_sizes):
        return None
    return ConvMap(w, int(node.attrs["group"]), strides, dilations, pads, tuple(in_shape[1:]), (m, *out_sizes))


@dataclass(frozen=True, slots=True)
class TransposedMap:
    """A ConvTranspose as the adjoint of the Conv with its kernel: ``forward`` is that Conv's ``adjoint``."""

    conv: ConvMap

    def forward(self, x: np.ndarray, *, absolute: bool = False) -> np.ndarray:
        return self.conv.adjoint(x, absolute=absolute)

    def adjoint(self, lam: np.ndarray, *, absolute: bool = False) -> np.ndarray:
        return self.conv.forward(lam, absolute=absolute)

    def pays(self) -> bool:
        return self.conv.pays()


def checked_map(cmap: ConvMap | None, weight: np.ndarray, seed: int = 0) -> ConvMap | None:
    """``cmap`` if it agrees with the dense ``weight`` it stands for on random rows both ways (a guard
    against any shape convention slipping), else None: the dense product is then used."""
    if cmap is None or weight.shape != (cmap.n_out, cmap.n_in):
        return None
    rng = np.random.default_rng(seed)
    x, lam = rng.standard_normal((2, cmap.n_in)), rng.standard_normal((2, cmap.n_out))
    tol = 1e-8 * (1.0 + float(np.abs(weight).max(initial=0.0))) * math.sqrt(max(cmap.n_in, cmap.n_out))
    try:
        agree = np.allclose(cmap.forward(x), x @ weight.T, rtol=0.0, atol=tol) and np.allclose(
            cmap.adjoint(lam), lam @ weight, rtol=0.0, atol=tol
        )
    except ValueError:  # shapes that do not fit together
        return None
    return cmap if agree else None


def kernel_taps(
    w: np.ndarray,
    groups: int,
    src_sizes: tuple[int, ...],
    dst_sizes: tuple[int, ...],
    strides: list[int],
    dilations: list[int],
    begins: list[int],
    *,
    transpose: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO entries of a convolution: position ``p`` of the iterated tensor (Conv: output, ConvTranspose: input)
    meets position ``p * stride + k * dilation + begin`` of the other through weight ``w[a, b, k]``.

    Conv: ``w`` is ``(M, C/g, *k)``, rows are outputs ``(m, p)``, columns inputs ``(c, q)``. ConvTranspose: ``w``
    is ``(C, M/g, *k)``, columns are inputs ``(c, p)``, rows outputs ``(m, q)``."""
    first, second = w.shape[:2]  # Conv: M, C/g; ConvTranspose: C, M/g
    per_group = first // groups
    kernel = w.shape[2:]
    grids = np.meshgrid(*(np.arange(n) for n in (*kernel, *src_sizes)), indexing="ij")
    nd = len(kernel)
    ks, ps = grids[:nd], grids[nd:]
    qs = [p * s + k * d + b for p, k, s, d, b in zip(ps, ks, strides, dilations, begins, strict=True)]
    valid = np.ones(ks[0].shape, dtype=bool) if nd else np.ones((), dtype=bool)
    for q, size in zip(qs, dst_sizes, strict=True):
        valid &= (q >= 0) & (q < size)
    k_flat = np.ravel_multi_index([k[valid] for k in ks], kernel) if nd else np.zeros(1, dtype=np.int64)
    p_flat = np.ravel_multi_index([p[valid] for p in ps], src_sizes)
    q_flat = np.ravel_multi_index([q[valid] for q in qs], dst_sizes)
    a = np.arange(first)[:, None, None]
    b = np.arange(second)[None, :, None]
    other = (a // per_group) * second + b  # the other tensor's channel in a's group
    n_src, n_dst = math.prod(src_sizes), math.prod(dst_sizes)
    vals = w.reshape(first, second, -1)[:, :, k_flat]
    src = np.broadcast_to(a * n_src + p_flat[None, None, :], vals.shape)
    dst = np.broadcast_to(other * n_dst + q_flat[None, None, :], vals.shape)
    if transpose:  # rows are outputs (dst), columns inputs (src)
        return dst.ravel(), src.ravel(), vals.ravel()
    return src.ravel(), dst.ravel(), vals.ravel()


def taps_matrix(taps: tuple[np.ndarray, np.ndarray, np.ndarray], n_out: int, n_in: int) -> Any:
    """The ``n_out x n_in`` CSR matrix of ``kernel_taps``'s COO entries (duplicates summed, zeros dropped)."""
    from scipy import sparse

    rows, cols, vals = taps
    matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in))
    matrix.eliminate_zeros()
    return matrix
