"""Lower a solver-neutral ``Problem`` to a mixed-integer linear program (MILP) in CSR row form.

It encodes ReLU, Sign and disjunctions with binaries and big-M rows whose constants come from the problem's
variable bounds. It does not compute bounds and does not call any solver (see ``nnverify/backends``).

Encodings:

* ReLU: the big-M formulation of Tjeng, Xiao and Tedrake, "Evaluating Robustness of Neural Networks with
  Mixed Integer Programming", ICLR 2019 (their eq. 6); stable neurons are encoded without a binary (their §4).
* Sign: two binaries choosing the positive or negative side, the same big-M idea. It is exact except at
  ``x = 0``, where it also admits ``y = ±1``: an over-approximation, so INFEASIBLE is sound but a solution is
  only a candidate (it is replayed before anyone calls it a counterexample).
* Disjunction: one indicator binary per term with big-M relaxed rows (Vielma, "Mixed Integer Linear
  Programming Formulation Techniques", SIAM Review 2015, §3: the big-M formulation of a union of polyhedra).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from nnverify.encode.problem import Disjunction, Problem, Relu, Row, Sign

logger = logging.getLogger(__name__)

# Relative margin for the floating-point interval of a row's activity: a disjunct is declared impossible only
# if its minimum activity exceeds the bound by more than this, and big-M constants are enlarged by it, so
# rounding in the interval sums can never cut off a real solution.
_BIG_M_MARGIN = 1e-9


@dataclass(frozen=True, slots=True)
class MilpModel:
    """``min c@x`` s.t. ``row_lo <= A@x <= row_hi``, ``lb <= x <= ub``, ``x[integrality]`` integer.

    ``A`` is CSR (``indptr``, ``indices``, ``data``) with column indices sorted and unique within each row
    and no explicit zeros. Columns ``0 .. n_original-1`` are the Problem's variables; later columns are the
    binaries added by the lowering. All arrays are read-only.
    """

    lb: np.ndarray
    ub: np.ndarray
    integrality: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    row_lo: np.ndarray
    row_hi: np.ndarray
    c: np.ndarray
    n_original: int

    @property
    def n_cols(self) -> int:
        return len(self.lb)

    @property
    def n_rows(self) -> int:
        return len(self.row_lo)

    @property
    def n_integer(self) -> int:
        return int(np.count_nonzero(self.integrality))

    def objective_bounded(self) -> bool:
        """True if ``c@x`` is bounded below over the column box, so the model cannot be unbounded.

        Solvers sometimes only prove "infeasible or unbounded"; with a bounded objective, that is infeasible.
        """
        return bool(np.all((self.c == 0) | ((self.c > 0) & (self.lb > -np.inf)) | ((self.c < 0) & (self.ub < np.inf))))

    def activity(self, x: np.ndarray) -> np.ndarray:
        """Row activities ``A @ x`` for a full column vector ``x``."""
        rows = np.repeat(np.arange(self.n_rows), np.diff(self.indptr))
        return np.bincount(rows, weights=self.data * np.asarray(x)[self.indices], minlength=self.n_rows)

    def max_violation(self, x: np.ndarray) -> float:
        """Largest violation of a row, column bound or integrality by the full column vector ``x`` (or 0)."""
        x = np.asarray(x, dtype=np.float64)
        act = self.activity(x)
        parts = [
            np.maximum(self.row_lo - act, 0.0),
            np.maximum(act - self.row_hi, 0.0),
            np.maximum(self.lb - x, 0.0),
            np.maximum(x - self.ub, 0.0),
            np.abs(x - np.round(x))[self.integrality],
        ]
        return float(max((p.max() for p in parts if p.size), default=0.0))


def lower(problem: Problem) -> MilpModel:
    """Lower ``problem`` to a MILP.

    Raises:
        BigMError: a big-M constant would be infinite (an unstable ReLU/Sign input or a disjunct without
            finite bounds, e.g. after huge weights made the bounds overflow).
        ValueError: an internal invariant is broken: inconsistent problem lists, a variable index out of range.
    """
    builder = _Builder(problem)
    builder.add_problem_rows(problem.rows)
    _lower_relus(builder, problem.relus)
    _lower_signs(builder, problem.signs)
    for disjunction in problem.disjunctions:
        _lower_disjunction(builder, disjunction)
    c = np.zeros(problem.n_vars)
    if problem.objective is not None:
        idx, coef = (np.asarray(a) for a in problem.objective)
        builder.check_index(idx, "objective")
        np.add.at(c, idx.astype(np.int64), coef.astype(np.float64))
    model = builder.build(c)
    logger.debug(
        "lowered: %d columns (%d integer), %d rows, %d nonzeros",
        model.n_cols,
        model.n_integer,
        model.n_rows,
        len(model.data),
    )
    return model


class _Builder:
    """Accumulates columns and blocks of rows as arrays; ``build`` makes the canonical CSR once."""

    def __init__(self, problem: Problem) -> None:
        n = problem.n_vars
        if not len(problem.ub) == len(problem.integer) == n:
            raise ValueError(f"Problem lists disagree: {n} lb, {len(problem.ub)} ub, {len(problem.integer)} integer")
        self.n_original = n
        self.lb = np.array(problem.lb, dtype=np.float64)
        self.ub = np.array(problem.ub, dtype=np.float64)
        self.integer = np.array(problem.integer, dtype=bool)
        self.n_cols = n
        self._extra_cols: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._lens: list[np.ndarray] = []
        self._idx: list[np.ndarray] = []
        self._coef: list[np.ndarray] = []
        self._lo: list[np.ndarray] = []
        self._hi: list[np.ndarray] = []

    def check_index(self, idx: np.ndarray, what: str) -> None:
        """Raise ValueError unless every index names one of the Problem's variables."""
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_original):
            raise ValueError(f"{what} refers to a variable outside 0..{self.n_original - 1}")

    def new_binaries(self, n: int) -> np.ndarray:
        """Add ``n`` binary columns and return their indices."""
        cols = np.arange(self.n_cols, self.n_cols + n)
        self._extra_cols.append((np.zeros(n), np.ones(n), np.ones(n, dtype=bool)))
        self.n_cols += n
        return cols

    def tighten(self, cols: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """Intersect the bounds of Problem columns ``cols`` with ``[lo, hi]``."""
        np.maximum.at(self.lb, cols, lo)
        np.minimum.at(self.ub, cols, hi)

    def add_rows(self, idx: np.ndarray, coef: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray) -> None:
        """Add ``m`` rows of width ``w``.

        ``idx`` has shape ``(m, w)``, ``coef`` broadcasts to it; ``lo``, ``hi`` are scalars or ``(m,)``.
        """
        m, w = idx.shape
        if m == 0:
            return
        self._lens.append(np.full(m, w, dtype=np.int64))
        self._idx.append(idx.astype(np.int64, copy=False).ravel())
        self._coef.append(np.broadcast_to(coef, (m, w)).astype(np.float64).ravel())
        self._lo.append(np.broadcast_to(np.asarray(lo, dtype=np.float64), (m,)))
        self._hi.append(np.broadcast_to(np.asarray(hi, dtype=np.float64), (m,)))

    def add_row(self, idx: np.ndarray, coef: np.ndarray, lo: float, hi: float) -> None:
        """Add one row ``lo <= coef @ x[idx] <= hi`` over Problem variables or new columns."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_cols):
            raise ValueError(f"a row refers to a variable outside 0..{self.n_cols - 1}")
        if idx.shape != np.shape(coef):
            raise ValueError(f"a row has {idx.size} indices but {np.size(coef)} coefficients")
        self.add_rows(idx.reshape(1, -1), np.asarray(coef, dtype=np.float64).reshape(1, -1), lo, hi)

    def add_problem_rows(self, rows: list[Row]) -> None:
        """Add the Problem's own rows in one block (one concatenation, not a block per row)."""
        if not rows:
            return
        lens = np.fromiter((np.size(r.idx) for r in rows), dtype=np.int64, count=len(rows))
        n_coef = np.fromiter((np.size(r.coef) for r in rows), dtype=np.int64, count=len(rows))
        if not np.array_equal(lens, n_coef):
            raise ValueError("a Problem row has different numbers of indices and coefficients")
        idx = np.concatenate([np.asarray(r.idx, dtype=np.int64).ravel() for r in rows])
        coef = np.concatenate([np.asarray(r.coef, dtype=np.float64).ravel() for r in rows])
        self.check_index(idx, "a row")
        self._lens.append(lens)
        self._idx.append(idx)
        self._coef.append(coef)
        self._lo.append(np.fromiter((r.lo for r in rows), dtype=np.float64, count=len(rows)))
        self._hi.append(np.fromiter((r.hi for r in rows), dtype=np.float64, count=len(rows)))

    def build(self, c: np.ndarray) -> MilpModel:
        extra = self.n_cols - self.n_original
        cols = [(self.lb, self.ub, self.integer), *self._extra_cols]
        lens = np.concatenate([np.zeros(0, np.int64), *self._lens])
        indptr, indices, data = _canonical_csr(
            lens,
            np.concatenate([np.zeros(0, np.int64), *self._idx]),
            np.concatenate([np.zeros(0), *self._coef]),
            self.n_cols,
        )
        arrays = {
            "lb": np.concatenate([col[0] for col in cols]),
            "ub": np.concatenate([col[1] for col in cols]),
            "integrality": np.concatenate([col[2] for col in cols]),
            "indptr": indptr,
            "indices": indices,
            "data": data,
            "row_lo": np.concatenate([np.zeros(0), *self._lo]),
            "row_hi": np.concatenate([np.zeros(0), *self._hi]),
            "c": np.concatenate([c, np.zeros(extra)]),
        }
        for array in arrays.values():
            array.flags.writeable = False
        return MilpModel(**arrays, n_original=self.n_original)


def _canonical_csr(
    lens: np.ndarray, idx: np.ndarray, coef: np.ndarray, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows given as lengths + flat entries -> CSR with sorted, merged (summed) columns and no zeros.

    Solvers reject duplicate entries in a row (HiGHS) or merge them silently (Gurobi); merging here makes
    both see the same matrix. Only rows that are not already increasing get sorted (most rows are).
    """
    n_rows = len(lens)
    starts = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    row_of = np.repeat(np.arange(n_rows, dtype=np.int64), lens)
    new_row = np.zeros(len(idx), dtype=bool)
    new_row[starts[:-1][lens > 0]] = True
    idx, coef = idx.copy(), coef.copy()
    unsorted = np.zeros(n_rows, dtype=bool)
    unsorted[row_of[1:][~new_row[1:] & (idx[1:] < idx[:-1])]] = True
    if unsorted.any():
        sub = np.flatnonzero(unsorted[row_of])  # whole rows, in row order: sorting stays inside each row
        order = np.argsort(row_of[sub] * max(n_cols, 1) + idx[sub], kind="stable")
        idx[sub], coef[sub] = idx[sub][order], coef[sub][order]
    first = new_row.copy()
    first[1:] |= idx[1:] != idx[:-1]
    summed = np.bincount(np.cumsum(first) - 1, weights=coef, minlength=int(first.sum()))
    keep = summed != 0
    rows, indices, data = row_of[first][keep], idx[first][keep], summed[keep]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr, indices.astype(np.int64, copy=False), data.astype(np.float64, copy=False)


def _endpoints(builder: _Builder, items: list[Relu] | list[Sign]) -> tuple[np.ndarray, np.ndarray]:
    x = np.fromiter((item.x for item in items), dtype=np.int64, count=len(items))
    y = np.fromiter((item.y for item in items), dtype=np.int64, count=len(items))
    builder.check_index(x, "an activation input")
    builder.check_index(y, "an activation output")
    return x, y


class BigMError(ValueError):
    """A big-M constant would be infinite or NaN: the bounds the caller gave (from huge weights or an unbounded
    input region) do not allow this encoding. Backends answer UNKNOWN with this message instead of solving."""


def _require_finite(x: np.ndarray, x_lb: np.ndarray, x_ub: np.ndarray, what: str) -> None:
    bad = ~(np.isfinite(x_lb) & np.isfinite(x_ub))
    if bad.any():
        raise BigMError(
            f"{int(bad.sum())} unstable {what} input(s) without finite bounds "
            f"(first: variable {int(x[bad][0])}); the big-M encoding needs finite bounds"
        )


def _lower_relus(builder: _Builder, relus: list[Relu]) -> None:
    """Tjeng et al. 2019: stable ReLUs are linear; unstable ones get a binary ``d`` (1 = active).

    With ``x`` in ``[l, u]``, ``l < 0 < u``: ``y >= x``, ``y >= 0``, ``y <= x - l (1 - d)``, ``y <= u d``.
    """
    if not relus:
        return
    x, y = _endpoints(builder, relus)
    x_lb, x_ub = builder.lb[x].copy(), builder.ub[x].copy()
    inactive = x_ub <= 0
    active = (x_lb >= 0) & ~inactive
    unstable = ~(inactive | active)
    _require_finite(x[unstable], x_lb[unstable], x_ub[unstable], "ReLU")
    # y in [max(0, l), max(0, u)] in every case; for inactive ReLUs that fixes y = 0 (no row needed).
    builder.tighten(y, np.maximum(x_lb, 0.0), np.maximum(x_ub, 0.0))
    builder.add_rows(np.stack([y[active], x[active]], axis=1), np.array([1.0, -1.0]), 0.0, 0.0)
    y, x, lo, hi = y[unstable], x[unstable], x_lb[unstable], x_ub[unstable]
    d = builder.new_binaries(len(y))
    ones = np.ones(len(y))
    builder.add_rows(np.stack([y, x], axis=1), np.array([1.0, -1.0]), 0.0, np.inf)  # y >= x
    # y <= x - l (1 - d)  <=>  y - x - l d <= -l
    builder.add_rows(np.stack([y, x, d], axis=1), np.stack([ones, -ones, -lo], axis=1), -np.inf, -lo)
    builder.add_rows(np.stack([y, d], axis=1), np.stack([ones, -hi], axis=1), -np.inf, 0.0)  # y <= u d


def _lower_signs(builder: _Builder, signs: list[Sign]) -> None:
    """``y = p - n`` with binaries ``p`` (x >= 0 side) and ``n`` (x <= 0 side); ``p = n = 0`` forces x = 0.

    Stable inputs (``l > 0``, ``u < 0`` or ``l = u = 0``) only fix ``y``'s bounds.
    """
    if not signs:
        return
    x, y = _endpoints(builder, signs)
    x_lb, x_ub = builder.lb[x].copy(), builder.ub[x].copy()
    y_lb = np.select([x_lb > 0, x_lb < 0], [1.0, -1.0], 0.0)
    y_ub = np.select([x_ub < 0, x_ub > 0], [-1.0, 1.0], 0.0)
    builder.tighten(y, y_lb, y_ub)
    general = (x_lb <= 0) & (x_ub >= 0) & ~((x_lb == 0) & (x_ub == 0))
    x, y, lo, hi = x[general], y[general], x_lb[general], x_ub[general]
    _require_finite(x, lo, hi, "Sign")
    p, n = builder.new_binaries(len(x)), builder.new_binaries(len(x))
    ones = np.ones(len(x))
    builder.add_rows(np.stack([y, p, n], axis=1), np.array([1.0, -1.0, 1.0]), 0.0, 0.0)  # y = p - n
    builder.add_rows(np.stack([p, n], axis=1), np.array([1.0, 1.0]), -np.inf, 1.0)  # p + n <= 1
    builder.add_rows(np.stack([x, p], axis=1), np.stack([ones, -hi], axis=1), -np.inf, 0.0)  # x <= u p
    builder.add_rows(np.stack([x, n], axis=1), np.stack([ones, -lo], axis=1), 0.0, np.inf)  # x >= l n
    builder.add_rows(np.stack([x, p], axis=1), np.stack([ones, lo], axis=1), lo, np.inf)  # p=1 => x >= 0
    builder.add_rows(np.stack([x, n], axis=1), np.stack([ones, hi], axis=1), -np.inf, hi)  # n=1 => x <= 0


@dataclass(frozen=True, slots=True)
class _Side:
    """One side of a row as ``coef @ x[idx] <= rhs``; ``max_act`` bounds the left side over the column box."""

    idx: np.ndarray
    coef: np.ndarray
    rhs: float
    max_act: float
    margin: float


def _activity_range(builder: _Builder, idx: np.ndarray, coef: np.ndarray) -> tuple[float, float, float]:
    """Interval ``[min, max]`` of ``coef @ x[idx]`` over the column bounds, and the rounding margin for it."""
    nz = coef != 0
    c, lo, hi = coef[nz], builder.lb[idx[nz]], builder.ub[idx[nz]]
    act_min = float(np.sum(np.where(c > 0, c * lo, c * hi)))
    act_max = float(np.sum(np.where(c > 0, c * hi, c * lo)))
    size = np.abs(c) * np.maximum(np.abs(lo), np.abs(hi))
    margin = _BIG_M_MARGIN * (1.0 + float(np.sum(size[np.isfinite(size)])))
    return act_min, act_max, margin


def _term_sides(builder: _Builder, term: tuple[Row, ...]) -> list[_Side] | None:
    """The sides of ``term`` that can fail (``[]``: the term always holds), or None if it can never hold."""
    sides: list[_Side] = []
    for row in term:
        idx, coef = np.asarray(row.idx, dtype=np.int64), np.asarray(row.coef, dtype=np.float64)
        builder.check_index(idx, "a disjunction row")
        act_min, act_max, margin = _activity_range(builder, idx, coef)
        candidates = []
        if row.hi < np.inf:
            candidates.append((coef, row.hi, act_min, act_max))
        if row.lo > -np.inf:
            candidates.append((-coef, -row.lo, -act_max, -act_min))
        for side_coef, rhs, side_min, side_max in candidates:
            if side_min > rhs + margin:
                return None
            if side_max > rhs:
                sides.append(_Side(idx, side_coef, float(rhs), side_max, margin))
    return sides


def _lower_disjunction(builder: _Builder, disjunction: Disjunction) -> None:
    """Drop impossible terms; one term left -> plain rows; several -> indicators ``d_k``, ``sum d_k >= 1``."""
    live: list[list[_Side]] = []
    for term in disjunction.terms:
        sides = _term_sides(builder, term)
        if sides == []:
            return  # this term always holds, so the disjunction does
        if sides is not None:
            live.append(sides)
    if not live:
        builder.add_row(np.zeros(0, np.int64), np.zeros(0), 1.0, np.inf)  # 0 >= 1: no term can hold
        return
    if len(live) == 1:
        for side in live[0]:
            builder.add_row(side.idx, side.coef, -np.inf, side.rhs)
        return
    d = builder.new_binaries(len(live))
    builder.add_row(d, np.ones(len(live)), 1.0, np.inf)
    for d_k, sides in zip(d, live, strict=True):
        for side in sides:
            if not np.isfinite(side.max_act):
                raise BigMError("a disjunction row needs finite variable bounds for its big-M constant")
            # coef@x <= rhs + M (1 - d_k), M = max(coef@x) - rhs: vacuous when d_k = 0.
            big_m = side.max_act - side.rhs + side.margin
            builder.add_row(np.append(side.idx, d_k), np.append(side.coef, big_m), -np.inf, side.rhs + big_m)
