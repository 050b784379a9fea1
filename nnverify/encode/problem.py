"""A solver-neutral decision problem: bounded variables, linear rows, and structured constraints.

Backends lower it themselves (MILP backends via ``encode/milp.py``; an exact backend may use the structure
directly). All numbers are float64; variables are referred to by integer index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Row:
    """``lo <= sum(coef * x[idx]) <= hi`` (either side may be infinite)."""

    idx: np.ndarray
    coef: np.ndarray
    lo: float
    hi: float


@dataclass(frozen=True, slots=True)
class Relu:
    """``y = max(0, x)``; the bounds of ``x`` in the problem are the big-M constants."""

    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Sign:
    """``y = sign(x)`` with ``y`` in {-1, 0, 1} (ONNX Sign)."""

    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Disjunction:
    """At least one of ``terms`` holds; a term is a conjunction of rows."""

    terms: tuple[tuple[Row, ...], ...]


@dataclass(frozen=True, slots=True)
class Section:
    """A titled part of a problem (e.g. one layer): the rows, ReLUs and Signs added after ``begin_section``.

    Only for people reading an exported program; solvers ignore it.
    """

    title: str
    first_row: int
    first_relu: int
    first_sign: int


@dataclass(slots=True)
class Problem:
    """A feasibility question: variables with finite bounds, linear rows, ReLU / Sign / disjunctions.

    ``integer[i]`` marks integer variables. ``objective`` (optional) is minimised: ``(idx, coef)``.
    ``implied_bounds``: the bounds of variables defined by an equality row (``v = ...`` over earlier variables)
    are consequences of the other constraints (true of network encodings, whose bounds come from sound bound
    propagation), so a backend may drop them; otherwise they are constraints like any other.
    ``encode/milp.py`` lowers it to a MILP for the MILP backends.
    """

    lb: list[float] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    relus: list[Relu] = field(default_factory=list)
    signs: list[Sign] = field(default_factory=list)
    disjunctions: list[Disjunction] = field(default_factory=list)
    objective: tuple[np.ndarray, np.ndarray] | None = None
    sections: list[Section] = field(default_factory=list)
    implied_bounds: bool = False

    @property
    def n_vars(self) -> int:
        return len(self.lb)

    def begin_section(self, title: str) -> None:
        """Start a titled part: the constraints added from now on belong to it (for exported programs)."""
        self.sections.append(Section(title, len(self.rows), len(self.relus), len(self.signs)))

    def add_var(self, lb: float, ub: float, *, integer: bool = False, name: str = "") -> int:
        """Add one variable and return its index."""
        self.lb.append(float(lb))
        self.ub.append(float(ub))
        self.integer.append(integer)
        self.names.append(name or f"v{len(self.lb) - 1}")
        return len(self.lb) - 1

    def add_vars(self, lb: np.ndarray, ub: np.ndarray, *, prefix: str = "v") -> np.ndarray:
        """Add ``len(lb)`` continuous variables; returns their indices."""
        start = len(self.lb)
        self.lb.extend(float(v) for v in lb)
        self.ub.extend(float(v) for v in ub)
        self.integer.extend(False for _ in range(len(lb)))
        self.names.extend(f"{prefix}_{i}" for i in range(len(lb)))
        return np.arange(start, len(self.lb))

    def add_row(self, idx: np.ndarray, coef: np.ndarray, lo: float = -np.inf, hi: float = np.inf) -> None:
        """Add ``lo <= coef @ x[idx] <= hi``."""
        self.rows.append(Row(np.asarray(idx, dtype=np.int64), np.asarray(coef, dtype=np.float64), lo, hi))

    def add_relu(self, x: int, y: int) -> None:
        self.relus.append(Relu(int(x), int(y)))

    def add_sign(self, x: int, y: int) -> None:
        self.signs.append(Sign(int(x), int(y)))

    def add_disjunction(self, terms: list[list[Row]]) -> None:
        self.disjunctions.append(Disjunction(tuple(tuple(t) for t in terms)))
