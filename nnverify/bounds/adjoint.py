"""A convolution as a linear map on flattened batches: applied forwards and through its adjoint (a transposed
convolution) without the dense matrix, for the back-substitution of ``backward.py`` and ``optimized.py``.

A CIFAR Conv of 3x32x32 -> 16x16x16 is a 4,096 x 3,072 matrix with 48 non-zeros a row: pushing a coefficient
row through it densely costs 12.6M multiply-adds, through its kernel 197K. ``ConvMap.pays`` decides.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from nnverify.graph.ops.base import Node
from nnverify.graph.ops.conv import conv_pads

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


def conv_map(node: Node, constants: dict[str, np.ndarray], in_shape: tuple[int, ...]) -> ConvMap | None:
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
