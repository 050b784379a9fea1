"""The operator interface and the explicit operator registry.

Calling convention (every op, every method): each tensor is a numpy array of shape ``(B, *onnx_shape)``.
Variable tensors carry the batch of points being evaluated; constant tensors (initializers, folded
values) carry a batch axis of size 1, so numpy broadcasting does the rest. Axis attributes therefore
shift by one (``axis + 1``) inside ``eval``. Values are float64 (int64 for shape/index tensors).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np

from nnverify.errors import NnverifyError
from nnverify.graph.ops.registry import LazyRegistry


class ActKind(StrEnum):
    """Nonlinear elementwise activations; each has one ``Activation`` object (``graph/ops/interface.py``)."""

    RELU = "relu"
    SIGN = "sign"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    ERF = "erf"
    EXP = "exp"
    SOFTPLUS = "softplus"
    SIN = "sin"
    COS = "cos"
    SQUARE = "pow2"
    CUBE = "pow3"
    SQRT = "pow0.5"
    RECIPROCAL = "reciprocal"
    RECIPROCAL_MAX1 = "reciprocal_max1"
    EXP_CAP = "exp_cap"


class Step(StrEnum):
    """What ``Op.vjp`` passes back through an op whose derivative is zero almost everywhere (Sign)."""

    EXACT = "exact"  # the derivative itself: zero
    STRAIGHT = "straight"  # straight-through: the gradient unchanged
    WINDOW = "window"  # straight-through, weighted by how near the input is to the step across the batch


#: ``Op.vjp``'s argument and result types: the node's inputs, which of them are variable, the parts per input.
Tensors = Sequence[np.ndarray]
Flags = Sequence[bool] | None
Parts = list[np.ndarray | None]
#: A tensor's shape without the analysis batch axis (``Op.kernel_map``, ``sparse_matrix``, ``nonzeros``).
Shape = tuple[int, ...]


class NoAdjoint(NnverifyError):
    """An op (or this use of it) has no vector-Jacobian product; callers read it as "no gradient"."""


@dataclass(frozen=True, slots=True)
class Node:
    """One ONNX node after import: attribute defaults already filled in from the schema.

    Attributes:
        name: Node name (ONNX name, or ``<op_type>_<index>`` when the model leaves it empty).
        op_type: ONNX operator type.
        inputs: Names of input tensors (``""`` for an omitted optional input).
        outputs: Names of output tensors.
        attrs: Attribute values as Python objects (ints, floats, lists, numpy arrays, strings).
    """

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)


class Op:
    """One ONNX operator type.

    Class attributes:
        op_type: The ONNX ``op_type`` this class implements.
        affine: True if the output is affine in the variable inputs (the other inputs constant). Affine ops
            need only ``eval``: the analysis extracts the matrix from it (see ``graph/passes.py``).
        activation: For nonlinear elementwise ops, the activation kind the analysis handles.
        variable_inputs: Positions of inputs that may be variable (non-constant). ``None`` = all of them.
        notes: Restrictions worth listing in the ``nnverify ops`` table (e.g. "Div by constant only").
        shape_only: True if the output depends only on the (static) shapes of the inputs, never on their values
            (Shape): the importer folds the node into a constant even when an input is variable.
        multi_output: True if the node has several outputs (Split). The importer gives each used output a node
            of its own, with the attributes ``output_index`` and ``output_count``; ``eval`` returns that output.
    """

    op_type: ClassVar[str]
    affine: ClassVar[bool] = False
    activation: ClassVar[ActKind | None] = None
    variable_inputs: ClassVar[tuple[int, ...] | None] = (0,)
    notes: ClassVar[str] = ""
    shape_only: ClassVar[bool] = False
    multi_output: ClassVar[bool] = False
    #: Affine ops only: True if the linear part has no negative entries (the op selects, copies, sums or averages
    #: its variable inputs), so ``|A| = A`` and ``eval`` serves for ``abs_eval`` (``bounds/forward_ops.py``).
    nonnegative: ClassVar[bool] = False
    #: Positions of the constant inputs ``abs_eval`` receives as absolute values (None: every float constant).
    abs_inputs: ClassVar[tuple[int, ...] | None] = None
    #: Entries of the dense layer view per (output x variable input) entry, relative to an affine op's matrix
    #: (MaxPool: 4, its window selections and tree of maxima); ``attack_graph.dense_view_mb`` reads it.
    view_cost: ClassVar[int] = 1
    #: Affine ops only: True if the linear part is a general matrix, dense even when the input and output shapes
    #: agree (Gemm, MatMul); False lets ``nonzeros`` take a same-shape op as elementwise (a diagonal).
    dense_matrix: ClassVar[bool] = False

    def eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        """Concrete semantics on batched float64 arrays (see the module docstring)."""
        raise NotImplementedError

    def abs_eval(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        """Affine ops that are not ``nonnegative``: ``eval`` with the signs of the linear part dropped.

        The caller passes the constant float inputs at ``abs_inputs`` (all if None) as their absolute values, the
        others unchanged; the result must be an affine map of
        the variable inputs whose linear part is ``|A|`` (elementwise absolute values of the linear part ``A``
        of ``eval``); its constant term is arbitrary (callers subtract the value at zero). Raises
        ``NotImplementedError`` where the op does not provide it (the forward bounds then refuse the graph).
        """
        raise NotImplementedError(f"{self.op_type} has no abs_eval")

    def vjp(self, node: Node, xs: Tensors, g: np.ndarray, variable: Flags = None, *, step: Step = Step.WINDOW) -> Parts:
        """Vector-Jacobian product: ``g`` pulled back through the node to each of its inputs.

        For an affine op this is exactly the adjoint of its linear part (what back-substitution needs; the
        inputs' values then only give shapes and constants); for a nonlinear op the derivative at ``xs`` (a
        subgradient at kinks, ``step`` for Sign's zero derivative).

        Args:
            node: The node.
            xs: Its inputs at the evaluation point, batched as in ``eval`` (constants with batch 1).
            g: ``(R, *out_shape)``: R rows (or points, broadcast against the batch of ``xs``).
            variable: Per input, whether it is a variable tensor; None: the float inputs in ``variable_inputs``.
            step: What ops with a zero derivative almost everywhere pass back.

        Returns:
            Per input, ``(R, *in_shape)`` (R broadcast with the batch of ``xs``), or None for an input that is
            not variable. The default serves affine ops that only move or copy entries (``pullback.moved``).

        Raises:
            NoAdjoint: The op has no rule for this node.
        """
        from nnverify.graph.ops.pullback import moved  # pullback imports nothing from here at import time

        if not self.affine:
            raise NoAdjoint(f"{self.op_type} has no vector-Jacobian product")
        return moved(self, node, xs, g, self.wanted(xs, variable))

    def wanted(self, xs: Tensors, variable: Flags) -> list[bool]:
        """Per input, whether ``vjp`` computes its part: ``variable``, else the float inputs ``variable_inputs``
        allows."""
        if variable is not None:
            return [bool(v) for v in variable] + [False] * (len(xs) - len(variable))
        allowed = self.variable_inputs
        return [
            (allowed is None or k in allowed) and np.issubdtype(np.asarray(x).dtype, np.floating)
            for k, x in enumerate(xs)
        ]

    def linear_map(self, node: Node, constants: Mapping[str, np.ndarray], in_shape: tuple[int, ...]) -> Any:
        """An affine op's linear part as an operator cheaper than its dense matrix (``graph.layers.LinearMap``:
        Conv by its kernel), or None (the default: the dense matrix is used). ``in_shape`` is the data input's
        shape without the analysis batch axis."""
        return None

    def kernel_map(self, node: Node, constants: Mapping[str, np.ndarray], in_shape: Shape, out_shape: Shape) -> Any:
        """The linear part as an operator where no dense matrix is built (the sparse view after a cut): default
        ``linear_map``; ConvTranspose adds its own (``conv_kernels.TransposedMap``). The caller checks it."""
        return self.linear_map(node, constants, in_shape)

    def sparse_matrix(self, node: Node, constants: Mapping[str, np.ndarray], in_shape: Shape, out_shape: Shape) -> Any:
        """An affine op's linear part (in its single variable input) as a scipy CSR matrix built from its
        parameters (a convolution's kernel taps), or None (the default: the caller tries a diagonal, then reads the
        matrix off ``eval``). The caller checks it against ``eval``."""
        return None

    def nonzeros(self, node: Node, constants: Mapping[str, np.ndarray], in_shape: Shape, out_shape: Shape) -> int:
        """Estimated nonzeros of an affine op's matrix (``sparse_view.backsub_cost``). ``in_shape`` is the first
        variable input's shape (``()`` if none). Default: a diagonal when the shapes agree (elementwise ops),
        else dense (always dense for ``dense_matrix`` ops); the convolutions count their taps."""
        out = math.prod(out_shape)
        return out if in_shape == out_shape and not self.dense_matrix else out * math.prod(in_shape)

    def activation_of(self, node: Node, constants: Mapping[str, np.ndarray]) -> ActKind | None:
        """The activation kind of this node (``activation`` unless it depends on a constant input, as Pow's
        exponent does); raises ``ModelError`` for a value the analysis does not handle."""
        return self.activation

    def check(self, node: Node, is_const: tuple[bool, ...]) -> str | None:
        """Why this node cannot be handled (given which inputs are constant), or None if it can."""
        allowed = self.variable_inputs
        if allowed is None:
            return None
        for position, const in enumerate(is_const):
            if not const and position not in allowed:
                return f"input {position} of {self.op_type} must be a constant, found a variable tensor"
        return None


#: op_type -> operator implementation. Filled by ``@register`` as the op modules are imported: the common ones
#: with ``nnverify.graph.ops``, the rest at the first lookup of an op type not yet there (``registry.py``).
REGISTRY: dict[str, Op] = LazyRegistry()


def register(cls: type[Op]) -> type[Op]:
    """Class decorator adding an operator to ``REGISTRY``; a duplicate op_type fails at import."""
    registry: LazyRegistry[str, Op] = REGISTRY  # type: ignore[assignment]
    registry.add(cls.op_type, cls(), "operator")
    return cls


def const_value(x: np.ndarray) -> np.ndarray:
    """The unbatched value of a constant argument (drops the size-1 batch axis)."""
    return x[0]


def has_input(node: Node, position: int) -> bool:
    """True if the optional input at ``position`` is given (present and not the empty name)."""
    return len(node.inputs) > position and node.inputs[position] != ""


def align_ranks(*xs: np.ndarray) -> list[np.ndarray]:
    """Batched operands with size-1 axes inserted after the batch axis so all have the same rank.

    ONNX broadcasting right-aligns the operands' shapes; numpy would left-pad the shorter operand and so
    mix its batch axis with a data axis. Inserting the missing axes right after the batch axis keeps the
    batch axes aligned and gives ONNX (multidirectional) broadcasting for the rest.
    """
    rank = max(x.ndim for x in xs)
    return [x.reshape((x.shape[0], *(1,) * (rank - x.ndim), *x.shape[1:])) for x in xs]
