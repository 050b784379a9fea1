"""Elementwise choice by a constant mask: Where (affine in its two branches); comparisons and logic on constants.

They appear in exported shape subgraphs (e.g. ``Where(Equal(shape, 0), ...)``) and fold to constants there; a
comparison of a variable tensor is not affine and is reported.
"""

from __future__ import annotations

import numpy as np

from nnverify.graph.ops.base import Node, Op, align_ranks, register


class _Compare(Op):
    """An elementwise comparison or logical operator of constant tensors (folded at import)."""

    variable_inputs = ()
    notes = "constants only, folded at import"
    function: staticmethod

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        return type(self).function(*align_ranks(*xs))


@register
class Equal(_Compare):
    """Elementwise ``a == b`` of two constant tensors."""

    op_type = "Equal"
    function = staticmethod(np.equal)


@register
class Greater(_Compare):
    """Elementwise ``a > b`` of two constant tensors."""

    op_type = "Greater"
    function = staticmethod(np.greater)


@register
class Less(_Compare):
    """Elementwise ``a < b`` of two constant tensors."""

    op_type = "Less"
    function = staticmethod(np.less)


@register
class Not(_Compare):
    """Elementwise negation of a constant boolean tensor."""

    op_type = "Not"
    function = staticmethod(np.logical_not)


@register
class And(_Compare):
    """Elementwise conjunction of two constant boolean tensors."""

    op_type = "And"
    function = staticmethod(np.logical_and)


@register
class Or(_Compare):
    """Elementwise disjunction of two constant boolean tensors."""

    op_type = "Or"
    function = staticmethod(np.logical_or)


@register
class Where(Op):
    """``x`` where the constant condition holds, else ``y`` (either branch may be variable)."""

    op_type = "Where"
    affine = True
    nonnegative = True
    variable_inputs = (1, 2)
    notes = "constant condition"

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        condition, x, y = align_ranks(*xs[:3])
        return np.where(condition.astype(bool), x, y)
