"""Moving blocks between channels and space: DepthToSpace and SpaceToDepth (permutations of entries, affine).

Both take a 4-D ``(N, C, H, W)`` tensor; the ``blocksize`` and the channel order (``mode`` DCR or CRD) are
attributes.
"""

from __future__ import annotations

import numpy as np

from nnverify.graph.ops.base import Node, Op, register


def _block_mode_problem(node: Node) -> str | None:
    """Why the ``mode`` of DepthToSpace/SpaceToDepth is not supported, or None."""
    mode = node.attrs.get("mode", "DCR")
    return None if mode in ("DCR", "CRD") else f"mode '{mode}' is not one of DCR, CRD"


@register
class DepthToSpace(Op):
    """Move channel blocks into ``blocksize x blocksize`` spatial blocks (DCR or CRD order)."""

    op_type = "DepthToSpace"
    affine = True
    nonnegative = True

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        return _block_mode_problem(node) or super().check(node, is_const)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        b, n, c, h, w = x.shape
        s = int(node.attrs["blocksize"])
        if node.attrs.get("mode", "DCR") == "DCR":
            y = x.reshape(b, n, s, s, c // (s * s), h, w).transpose(0, 1, 4, 5, 2, 6, 3)
        else:
            y = x.reshape(b, n, c // (s * s), s, s, h, w).transpose(0, 1, 2, 5, 3, 6, 4)
        return y.reshape(b, n, c // (s * s), h * s, w * s)


@register
class SpaceToDepth(Op):
    """Move ``blocksize x blocksize`` spatial blocks into channels (DCR order; CRD from opset 28)."""

    op_type = "SpaceToDepth"
    affine = True
    nonnegative = True

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        return _block_mode_problem(node) or super().check(node, is_const)

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        x = xs[0]
        b, n, c, h, w = x.shape
        s = int(node.attrs["blocksize"])
        y = x.reshape(b, n, c, h // s, s, w // s, s)
        if node.attrs.get("mode", "DCR") == "DCR":
            y = y.transpose(0, 1, 4, 6, 2, 3, 5)
        else:
            y = y.transpose(0, 1, 2, 4, 6, 3, 5)
        return y.reshape(b, n, c * s * s, h // s, w // s)
