"""The data a VNN-LIB 2.x query reads into: networks, tensor variables and linear constraints over their elements.

Numbers are exact rationals (``Fraction``); ``multi/product.py`` rounds them outward to float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction

from nnverify.errors import PropertyError
from nnverify.spec.sexpr import Source


class VarKind(Enum):
    """Which side of a network a tensor variable is on."""

    INPUT = "input"
    HIDDEN = "hidden"
    OUTPUT = "output"


class Rel(Enum):
    """The relation of a constraint ``sum(coefs * v) REL b``."""

    LE = "<="
    LT = "<"
    EQ = "=="


@dataclass(frozen=True, slots=True)
class TensorVar:
    """A declared tensor variable.

    Attributes:
        name: Its name in the query.
        kind: Input, hidden or output.
        elem_type: The declared element type as written (``Real``, ``float32`` …; proofs are over the reals).
        shape: The declared shape (``()`` for a scalar).
        network: The declaring network's name.
        offset: Character offset of its declaration (for messages).
        onnx_name: The ONNX tensor name of a hidden variable, else None.
        initialized: An input fixed to its ONNX default value (``initialized``).
    """

    name: str
    kind: VarKind
    elem_type: str
    shape: tuple[int, ...]
    network: str
    offset: int
    onnx_name: str | None = None
    initialized: bool = False

    @property
    def size(self) -> int:
        return math.prod(self.shape)


#: One scalar: (tensor variable name, row-major flat index).
Scalar = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Constraint:
    """``sum(c * v for v, c in coefs) REL b`` over scalars, exact; ``offset`` is its comparison's position."""

    coefs: tuple[tuple[Scalar, Fraction], ...]
    rel: Rel
    b: Fraction
    offset: int


@dataclass(frozen=True, slots=True)
class NetworkDecl:
    """A ``declare-network``: its tensors in declaration order and its relation to an earlier network."""

    name: str
    offset: int
    inputs: tuple[TensorVar, ...]
    hidden: tuple[TensorVar, ...]
    outputs: tuple[TensorVar, ...]
    equal_to: str | None = None
    isomorphic_to: str | None = None
    relation_offset: int = 0
    #: Per input, the output or hidden variable of an earlier network that feeds it (composition ``N(G(z))``
    #: of the query language; VNN-LIB 2 files have none). Empty: no input is fed.
    fed_by: tuple[str | None, ...] = ()

    @property
    def feeders(self) -> tuple[str | None, ...]:
        """``fed_by`` with one entry per input (None: a free input)."""
        return self.fed_by or (None,) * len(self.inputs)

    @property
    def tensors(self) -> tuple[TensorVar, ...]:
        """Inputs, hidden, outputs: the order a satisfying assignment is printed in."""
        return self.inputs + self.hidden + self.outputs


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: the satisfying set is ``AND(common) and OR(AND(alt) for alt in alternatives)``.

    ``alternatives == ()`` is the empty set (an assert was ``(or)``); ``((),)`` adds nothing to ``common``.
    """

    path: str
    version: tuple[int, int]
    networks: tuple[NetworkDecl, ...]
    common: tuple[Constraint, ...]
    alternatives: tuple[tuple[Constraint, ...], ...]
    text: str = field(default="", repr=False, compare=False)
    #: Free variables of no network (the query language's lifted L1 norms); product inputs after the networks'.
    auxiliary: tuple[TensorVar, ...] = ()

    def error(self, message: str, offset: int) -> PropertyError:
        """A ``PropertyError`` at ``offset`` of the query text (raise it)."""
        return Source(self.text, self.path, PropertyError).error(message, offset)  # type: ignore[return-value]

    def network(self, name: str) -> NetworkDecl:
        return next(n for n in self.networks if n.name == name)

    @property
    def variables(self) -> tuple[TensorVar, ...]:
        """Every tensor variable in declaration order."""
        return tuple(v for n in self.networks for v in n.tensors)

    @property
    def has_strict(self) -> bool:
        return any(c.rel is Rel.LT for c in self.common) or any(
            c.rel is Rel.LT for alt in self.alternatives for c in alt
        )
