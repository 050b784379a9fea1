"""A query's constraints as a 1.0-style ``Property`` over its product graph, rounded outward to float64.

Strict comparisons are relaxed to non-strict (an ``unsat`` of the relaxation proves the strict query) or, for the
search of a strict witness, tightened by a margin (a guide only: ``sat`` is decided by replay, never by this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from nnverify.multi.product import Product
from nnverify.spec.property import Disjunct, Property
from nnverify.spec.vnnlib2_types import Constraint, Query, Rel

#: Largest integer coefficient float64 holds exactly.
_EXACT_INT = 2**53


@dataclass(frozen=True, slots=True)
class Relaxed:
    """The property and whether it is exactly the query's (non-strict) set, else why not."""

    prop: Property
    inexact: tuple[str, ...]


def round_up(q: Fraction) -> float:
    """The least float64 >= ``q`` (``inf`` past the range)."""
    try:
        f = float(q)
    except OverflowError:
        return math.inf if q > 0 else -math.inf
    if Fraction(f) < q:
        f = math.nextafter(f, math.inf)
    return f + 0.0


def round_down(q: Fraction) -> float:
    return -round_up(-q)


def _exact_row(coefs: dict[int, Fraction], b: Fraction) -> tuple[dict[int, float], float, bool]:
    """``coefs @ v <= b`` in float64: scaled to integer coefficients when a coefficient is not a float, ``b``
    rounded up; False when a coefficient still cannot be represented exactly."""
    if all(Fraction(float(c)) == c for c in coefs.values()):
        return {k: float(c) for k, c in coefs.items()}, round_up(b), True
    scale = math.lcm(*(c.denominator for c in coefs.values()))
    scaled = {k: c * scale for k, c in coefs.items()}
    exact = all(abs(c) < _EXACT_INT for c in scaled.values())
    return {k: float(c) for k, c in scaled.items()}, round_up(b * scale), exact


def to_property(query: Query, product: Product, margin: float | None = None) -> Relaxed:
    """The unsafe set of ``query`` over the product's input/output columns.

    Args:
        query: The parsed query.
        product: Its product graph.
        margin: None: strict rows read as non-strict (a sound relaxation). A number: strict rows tightened to
            ``lhs <= b - margin`` (to steer the search to strict witnesses; not sound for ``unsat``).
    """
    common = tuple(c for c in query.common if c not in product.substitutions)
    inexact: list[str] = []
    disjuncts = []
    base = _part(query, product, common, margin, inexact)  # shared by every alternative: built once
    if base is not None:
        _implied_bounds(base.input_rows, base.lb, base.ub)
    for alt in query.alternatives if base is not None else ():
        d = _disjunct(query, product, base, _part(query, product, alt, margin, inexact))  # type: ignore[arg-type]
        if d is not None:
            disjuncts.append(d)
    return Relaxed(Property(product.n_inputs, product.n_outputs, tuple(disjuncts), query.path), tuple(inexact))


@dataclass(slots=True)
class _Part:
    """The box, float rows and exact input-only rows of a conjunction of constraints."""

    lb: np.ndarray
    ub: np.ndarray
    rows: np.ndarray  # [k, n + m]
    b: np.ndarray
    input_rows: list[tuple[dict[int, Fraction], Fraction]]


def _rows(
    c: Constraint, product: Product, margin: float | None
) -> list[tuple[dict[int, Fraction], dict[int, Fraction], Fraction]]:
    """``(x coefficients, y coefficients, b)`` rows (``<=``) of one constraint over product columns."""
    ax: dict[int, Fraction] = {}
    ay: dict[int, Fraction] = {}
    shift = Fraction(0)  # initialized inputs are constants: moved to the right-hand side
    for scalar, coef in c.coefs:
        if scalar in product.constants:
            shift += coef * product.constants[scalar]
        elif scalar in product.x_columns:
            k = product.x_columns[scalar]
            ax[k] = ax.get(k, Fraction(0)) + coef
        else:
            k = product.y_columns[scalar]
            ay[k] = ay.get(k, Fraction(0)) + coef
    ax = {k: v for k, v in ax.items() if v}
    ay = {k: v for k, v in ay.items() if v}
    b = c.b - shift - (Fraction(margin) if margin is not None and c.rel is Rel.LT else 0)
    rows = [(ax, ay, b)]
    if c.rel is Rel.EQ:
        rows.append(({k: -v for k, v in ax.items()}, {k: -v for k, v in ay.items()}, -b))
    return rows


def _part(
    query: Query, product: Product, conj: tuple[Constraint, ...], margin: float | None, inexact: list[str]
) -> _Part | None:
    """The rows of ``conj`` (None if a constant comparison in it is false)."""
    n, m = product.n_inputs, product.n_outputs
    lb, ub = np.full(n, -np.inf), np.full(n, np.inf)
    rows, rows_b = [], []
    input_rows: list[tuple[dict[int, Fraction], Fraction]] = []
    for c in conj:
        for ax, ay, b in _rows(c, product, margin):
            if not ax and not ay:  # a constant comparison, decided exactly (0 < 0 is false: aliased ties)
                if b < 0 or (b == 0 and c.rel is Rel.LT and margin is None):
                    return None
            elif not ay and len(ax) == 1:
                ((k, a),) = ax.items()
                if a > 0:
                    ub[k] = min(ub[k], round_up(b / a))
                else:
                    lb[k] = max(lb[k], round_down(b / a))
            else:
                if not ay:
                    input_rows.append((ax, b))
                coefs = {k: v for k, v in ax.items()} | {n + k: v for k, v in ay.items()}
                try:
                    floats, fb, exact = _exact_row(coefs, b)
                except OverflowError:
                    raise query.error(
                        "a coefficient of this comparison is outside the float64 range", c.offset
                    ) from None
                if not exact:
                    inexact.append(f"{query.path}:{query_where(query, c.offset)}: a coefficient is not a float64")
                row = np.zeros(n + m)
                for k, v in floats.items():
                    row[k] = v
                rows.append(row)
                rows_b.append(fb)
    return _Part(lb, ub, np.array(rows).reshape(len(rows), n + m), np.array(rows_b, dtype=np.float64), input_rows)


def _disjunct(query: Query, product: Product, base: _Part, alt: _Part | None) -> Disjunct | None:
    """The common part (its implied bounds already applied) and one alternative's as one disjunct."""
    if alt is None:
        return None
    n = product.n_inputs
    lb, ub = np.maximum(base.lb, alt.lb), np.minimum(base.ub, alt.ub)
    if alt.input_rows:  # the implied bounds again, with the alternative's rows
        _implied_bounds(base.input_rows + alt.input_rows, lb, ub)
    elif base.input_rows:  # from the columns the alternative's box tightened
        changed = set(np.flatnonzero((lb > base.lb) | (ub < base.ub)).tolist())
        if changed:
            _implied_bounds(base.input_rows, lb, ub, changed)
    if np.any(lb > ub):
        return None
    _check_bounded(query, product, lb, ub)
    rows = np.vstack([base.rows, alt.rows])
    b = np.concatenate([base.b, alt.b])
    return Disjunct(lb=lb, ub=ub, a_x=np.ascontiguousarray(rows[:, :n]), a_y=np.ascontiguousarray(rows[:, n:]), b=b)


def _implied_bounds(
    rows: list[tuple[dict[int, Fraction], Fraction]],
    lb: np.ndarray,
    ub: np.ndarray,
    changed: set[int] | None = None,
) -> None:
    """Tighten the box by what rows over inputs alone imply (``C == A + 0.25`` bounds ``C`` by ``A``'s box).

    Each bound is computed exactly from the current float bounds and rounded outward, so the box still contains
    every point of the exact set; the rows themselves stay. A work list of rows whose columns' bounds changed
    (all rows, or those over ``changed``), at most ``IMPLIED_PASSES`` evaluations per row on average.
    """
    touching: dict[int, list[int]] = {}
    for r, (coefs, _) in enumerate(rows):
        for k in coefs:
            touching.setdefault(k, []).append(r)
    start = range(len(rows)) if changed is None else sorted({r for k in changed for r in touching.get(k, ())})
    queue, queued = list(start), set(start)
    budget = IMPLIED_PASSES * len(rows)
    while queue and budget > 0:
        r = queue.pop(0)
        queued.discard(r)
        budget -= 1
        for k in _tighten(*rows[r], lb, ub):
            for other in touching[k]:
                if other not in queued:
                    queue.append(other)
                    queued.add(other)


#: Row evaluations of ``_implied_bounds``, per row on average (a few passes suffice for chains of equalities).
IMPLIED_PASSES = 4


def _tighten(coefs: dict[int, Fraction], b: Fraction, lb: np.ndarray, ub: np.ndarray) -> list[int]:
    """Tighten the bounds of the columns of one row ``coefs @ x <= b``; the columns whose bound moved."""
    lows = {j: (lb[j] if c > 0 else ub[j]) for j, c in coefs.items()}  # the smallest value of each c * x_j
    infinite = [j for j, low in lows.items() if not math.isfinite(low)]
    if len(infinite) > 1:
        return []
    terms = {j: c * Fraction(float(lows[j])) for j, c in coefs.items() if j not in infinite}
    total = sum(terms.values(), Fraction(0))
    moved = []
    for k, a in coefs.items():
        if infinite and infinite[0] != k:
            continue
        bound = (b - total + terms.get(k, Fraction(0))) / a
        if a > 0 and round_up(bound) < ub[k]:
            ub[k] = round_up(bound)
            moved.append(k)
        elif a < 0 and round_down(bound) > lb[k]:
            lb[k] = round_down(bound)
            moved.append(k)
    return moved


def query_where(query: Query, offset: int) -> str:
    """``line:col`` of an offset in the query text."""
    err = query.error("", offset)
    return f"{err.line}:{err.col}"


def _check_bounded(query: Query, product: Product, lb: np.ndarray, ub: np.ndarray) -> None:
    for values, side in ((lb, "lower"), (ub, "upper")):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            col = int(bad[0])
            (name, index) = next(s for s, k in product.x_columns.items() if k == col)
            var = next(v for v in query.variables if v.name == name)
            element = (
                f"{name}[{','.join(str(int(i)) for i in np.unravel_index(index, var.shape))}]" if var.shape else name
            )
            raise query.error(f"input {element} has no {side} bound in some disjunct", var.offset)
