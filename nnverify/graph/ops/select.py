"""Elementwise choice by a constant mask: Where (affine in its two branches) and Equal on constants.

Both appear in exported shape subgraphs (e.g. ``Where(Equal(shape, 0), ...)``) and fold to constants there; a
comparison of a variable tensor is not affine and is reported.
"""

from __future__ import annotations

import numpy as np

from nnverify.graph.ops.base import Node, Op, align_ranks, register


@register
class Equal(Op):
    """Elementwise ``a == b`` of two constant tensors (booleans)."""

    op_type = "Equal"
    variable_inputs = ()
    notes = "constants only, folded at import"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        a, b = align_ranks(xs[0], xs[1])
        return np.equal(a, b)


@register
class Where(Op):
    """``x`` where the constant condition holds, else ``y`` (either branch may be variable)."""

    op_type = "Where"
    affine = True
    variable_inputs = (1, 2)
    notes = "constant condition"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        condition, x, y = align_ranks(*xs[:3])
        return np.where(condition.astype(bool), x, y)
