"""Writes a ``Problem`` as a constraint logic program for SWI-Prolog's clpq (or clpr).

The program is the one the ``clpq`` backend runs and the one ``nnverify export --format prolog`` writes:
linear rows become ``{}/1`` constraints, ReLUs and Signs become choice points (the search is
``backends/clpq_solver.pl``, copied into every program), the unsafe set's disjuncts become clauses.

Numbers: with ``Precision.EXACT`` every coefficient and bound is written as the exact rational value of its
float64 (``Fraction(x)``, e.g. ``0.1`` → ``3602879701896397r36028797018963968``). The network's float32
weights are exactly representable in float64, so the constraints are those of the real network, with no
rounding. With ``Precision.FLOAT`` numbers are written as floats and the program loads clpr instead.

The approach of verifying networks as constraint logic programs over the rationals follows the seed work the
issue cites (exact CLP(Q) verification of small signal-processing networks); the ReLU-as-choice-point search
is the classic case split of Reluplex (Katz et al., CAV 2017), done here by Prolog backtracking.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from enum import StrEnum
from importlib.resources import files

import numpy as np

from nnverify.encode.problem import Problem, Relu, Row, Section, Sign


class Precision(StrEnum):
    """``exact``: rationals in clpq (proofs hold for the real network). ``float``: doubles in clpr."""

    EXACT = "exact"
    FLOAT = "float"


#: The goal a program runs when started as ``swipl query.pl``; the backend loads everything above it.
SCRIPT_ENTRY = ":- initialization(nnv_main, main).\n"


def solver_source() -> str:
    """The generic search predicates (``backends/clpq_solver.pl``)."""
    return files("nnverify.backends").joinpath("clpq_solver.pl").read_text()


def number(value: float, precision: Precision) -> str:
    """A Prolog number literal: the exact rational of ``value`` (``NrD``), or a float."""
    if precision is Precision.EXACT:
        num, den = float(value).as_integer_ratio()
        return str(num) if den == 1 else f"{num}r{den}"
    text = repr(float(value))
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + ("e" + exponent if exponent else "")


#: Significant bits kept when a bound is written (rounded outward, so still a sound bound). Short numbers keep
#: the exact simplex's rationals small: full 53-bit bounds in the triangle relaxations make clpq's pivots
#: grow numbers with thousands of digits.
BOUND_BITS = 12


def outward(lo: float, hi: float, bits: int = BOUND_BITS) -> tuple[float, float]:
    """``[lo, hi]`` widened to numbers with at most ``bits`` significant bits (``lo`` down, ``hi`` up)."""
    out = []
    for value, rounder in ((lo, math.floor), (hi, math.ceil)):
        if value == 0.0 or not math.isfinite(value):
            out.append(value)
            continue
        scale = bits - math.frexp(value)[1]
        out.append(math.ldexp(rounder(math.ldexp(value, scale)), -scale))
    return out[0], out[1]


def _var_names(problem: Problem) -> list[str]:
    """Prolog variable names from the problem's names (``l1_17`` → ``L1_17``), made unique."""
    names, seen = [], set()
    for i, raw in enumerate(problem.names):
        name = re.sub(r"\W", "_", raw)
        name = "V" + name if not name[:1].isalpha() else name[0].upper() + name[1:]
        if name in seen:
            name = f"{name}__{i}"
        seen.add(name)
        names.append(name)
    return names


class _Writer:
    def __init__(self, problem: Problem, precision: Precision) -> None:
        self.p = problem
        self.precision = precision
        self.names = _var_names(problem)

    def num(self, value: float) -> str:
        return number(value, self.precision)

    def expr(self, idx: np.ndarray, coef: np.ndarray, constant: float = 0.0) -> str:
        """``c0 + a1*V1 - a2*V2 ...`` (a term with coefficient 1 is written as the bare variable)."""
        parts: list[str] = []
        if constant != 0.0:
            parts.append(self.num(constant))
        for i, a in zip(idx.tolist(), coef.tolist(), strict=True):
            if a == 0.0:
                continue
            magnitude = "" if abs(a) == 1.0 else self.num(abs(a)) + "*"
            sign = "-" if a < 0 else "+"
            if not parts:
                parts.append(("-" if a < 0 else "") + magnitude + self.names[i])
            else:
                parts.append(f"{sign} {magnitude}{self.names[i]}")
        return " ".join(parts) if parts else "0"

    def row(self, row: Row) -> str:
        """One row as a ``{}/1`` goal; an equality with a leading ``+1`` term reads ``V = ...``."""
        if row.lo == row.hi:
            if len(row.idx) and row.coef[0] == 1.0:
                return f"{{{self.names[int(row.idx[0])]} = {self.expr(row.idx[1:], -row.coef[1:], row.lo)}}}"
            return f"{{{self.expr(row.idx, row.coef)} = {self.num(row.lo)}}}"
        goals = []
        if np.isfinite(row.lo):
            goals.append(f"{self.expr(row.idx, row.coef)} >= {self.num(row.lo)}")
        if np.isfinite(row.hi):
            goals.append(f"{self.expr(row.idx, row.coef)} =< {self.num(row.hi)}")
        return "{" + ", ".join(goals) + "}" if goals else "true"

    def bounds(self, i: int) -> str | None:
        lo, hi = self.p.lb[i], self.p.ub[i]
        if lo != hi:
            lo, hi = outward(lo, hi)
        v = self.names[i]
        if lo == hi:
            return f"{{{v} = {self.num(lo)}}}"
        goals = [f"{v} >= {self.num(lo)}"] if np.isfinite(lo) else []
        goals += [f"{v} =< {self.num(hi)}"] if np.isfinite(hi) else []
        return "{" + ", ".join(goals) + "}" if goals else None

    def relu(self, relu: Relu) -> tuple[str, str | None]:
        """The ReLU's constraints, and its entry in the list to branch on (None when stable)."""
        x, y = self.names[relu.x], self.names[relu.y]
        lo, hi = self.p.lb[relu.x], self.p.ub[relu.x]
        if lo >= 0.0:
            return f"{{{y} = {x}}}  % stable: active (input >= {lo:.6g})", None
        if hi <= 0.0:
            return f"{{{y} = 0}}  % stable: inactive (input =< {hi:.6g})", None
        # Triangle relaxation (Ehlers, ATVA 2017): y >= 0, y >= x, (hi - lo) * y =< hi * (x - lo). Written
        # with the bounds themselves so the solver does the arithmetic (exactly, in clpq): a float product
        # here could cut off real solutions.
        low, up = (f"({self.num(v)})" for v in outward(lo, hi))
        goal = f"{{{y} >= 0, {y} >= {x}, ({up} - {low})*{y} =< {up}*({x} - {low})}}"
        comment = f"  % unstable: input in [{lo:.6g}, {hi:.6g}]"
        active_first = "true" if hi >= -lo else "false"
        return goal + comment, f"relu({x}, {y}, {active_first})"

    def sign(self, sign: Sign) -> tuple[str, str | None]:
        x, y = self.names[sign.x], self.names[sign.y]
        lo, hi = self.p.lb[sign.x], self.p.ub[sign.x]
        if lo > 0.0:
            return f"{{{y} = 1}}  % stable: input > 0", None
        if hi < 0.0:
            return f"{{{y} = -1}}  % stable: input < 0", None
        return f"{{{y} >= -1, {y} =< 1}}", f"sign({x}, {y})"


def _defined_vars(problem: Problem) -> set[int]:
    """Variables fixed by others: the left side of a ``V = ...`` row, and activation outputs.

    Their bounds are consequences of the other constraints plus the bounds of the free variables, so the
    program leaves them out: clpq pays a pivot for each bound on a dependent variable.
    """
    defined = {r.y for r in problem.relus} | {s.y for s in problem.signs}
    for row in problem.rows:
        if row.lo == row.hi and len(row.idx) and row.coef[0] == 1.0:
            defined.add(int(row.idx[0]))
    return defined


def _sections(problem: Problem) -> list[tuple[str, range, range, range]]:
    """``(title, rows, relus, signs)`` for each section; everything before the first is "constraints"."""
    marks = list(problem.sections)
    if not marks or (marks[0].first_row, marks[0].first_relu, marks[0].first_sign) != (0, 0, 0):
        marks.insert(0, Section("constraints", 0, 0, 0))
    ends = [*marks[1:], Section("", len(problem.rows), len(problem.relus), len(problem.signs))]
    return [
        (m.title, range(m.first_row, e.first_row), range(m.first_relu, e.first_relu), range(m.first_sign, e.first_sign))
        for m, e in zip(marks, ends, strict=True)
    ]


def _clause(head: str, goals: list[str], comments: Iterable[str] = ()) -> Iterator[str]:
    for comment in comments:
        yield f"%% {comment}\n"
    if not goals:
        yield f"{head}.\n\n"
        return
    yield f"{head} :-\n"
    for k, goal in enumerate(goals):
        code, _, comment = goal.partition("  % ")
        end = "." if k == len(goals) - 1 else ","
        yield f"    {code}{end}" + (f"  % {comment}" if comment else "") + "\n"
    yield "\n"


def _args(names: list[str], idx: Iterable[int]) -> str:
    return ", ".join(names[i] for i in sorted(set(idx)))


def relu_order(problem: Problem) -> list[int]:
    """The documented branching order of the ReLUs: layer by layer (runs of consecutive inputs), and inside a
    layer the neuron whose input interval straddles zero most evenly (largest ``min(-lb, ub)``) first."""
    order: list[int] = []
    run: list[int] = []
    for k, relu in enumerate(problem.relus):
        if run and relu.x != problem.relus[run[-1]].x + 1:
            order += sorted(run, key=lambda j: -min(-problem.lb[problem.relus[j].x], problem.ub[problem.relus[j].x]))
            run = []
        run.append(k)
    order += sorted(run, key=lambda j: -min(-problem.lb[problem.relus[j].x], problem.ub[problem.relus[j].x]))
    return order


def write_program(
    problem: Problem,
    precision: Precision = Precision.EXACT,
    *,
    header: Iterable[str] = (),
    inputs: np.ndarray | None = None,
    outputs: np.ndarray | None = None,
) -> str:
    """The whole program: header comments, the library, the search, the problem, and (last line) the
    ``SCRIPT_ENTRY`` that makes ``swipl program.pl`` print ``sat``/``unsat``.

    ``inputs``/``outputs`` (variable indices) let the script print a counterexample in the VNN-COMP format.
    """
    return "".join(_program(problem, precision, list(header), inputs, outputs))


def _program(
    problem: Problem,
    precision: Precision,
    header: list[str],
    inputs: np.ndarray | None,
    outputs: np.ndarray | None,
) -> Iterator[str]:
    w = _Writer(problem, precision)
    library = "clpq" if precision is Precision.EXACT else "clpr"
    yield "%% A verification query written by nnverify. Run it with:  swipl <this file>\n"
    yield "%% It prints `sat` and a counterexample (the network violates the property) or `unsat` (it cannot).\n"
    for line in header:
        yield f"%% {line}\n"
    yield f"%% Numbers: {'exact rationals (NrD is N/D)' if precision is Precision.EXACT else 'floats (clpr)'}.\n"
    yield "%% Variables: Lk_i is neuron i of layer k; layer 0 is the network input.\n\n"
    yield f":- use_module(library({library})).\n:- use_module(library(lists)).\n"
    yield ":- style_check(-singleton).  % a layer's clause may not use every variable it is given\n\n"
    yield solver_source()
    yield "\n%% ---------------------------------------------------------------------------------------------------\n"
    yield "%% The problem.\n"
    yield "%% ---------------------------------------------------------------------------------------------------\n\n"
    calls: list[str] = []
    branch_relu: dict[int, str] = {}
    branch_sign: list[str] = []
    defined = _defined_vars(problem)
    bounded = [w.bounds(i) for i in range(problem.n_vars) if i not in defined]
    yield from _clause(
        f"nnv_bounds({', '.join(w.names)})" if problem.n_vars else "nnv_bounds",
        [b for b in bounded if b is not None],
        ["Sound bounds of every variable (the input box for layer 0), from nnverify's bound propagation."],
    )
    calls.append(f"nnv_bounds({', '.join(w.names)})" if problem.n_vars else "nnv_bounds")
    for s, (title, rows, relus, signs) in enumerate(_sections(problem)):
        if not (rows or relus or signs):
            continue
        goals = [w.row(problem.rows[r]) for r in rows]
        used = [int(i) for r in rows for i in problem.rows[r].idx]
        for k in relus:
            goal, item = w.relu(problem.relus[k])
            goals.append(goal)
            used += [problem.relus[k].x, problem.relus[k].y]
            if item is not None:
                branch_relu[k] = item
        for k in signs:
            goal, item = w.sign(problem.signs[k])
            goals.append(goal)
            used += [problem.signs[k].x, problem.signs[k].y]
            if item is not None:
                branch_sign.append(item)
        head = f"nnv_part_{s}({_args(w.names, used)})"
        yield from _clause(head, goals, [title])
        calls.append(head)
    for d, disjunction in enumerate(problem.disjunctions):
        used = [int(i) for term in disjunction.terms for row in term for i in row.idx]
        head = f"nnv_unsafe_{d}({_args(w.names, used)})"
        yield f"%% Disjunction {d}: one clause per disjunct; Prolog tries them in turn.\n"
        for term in disjunction.terms:
            yield from _clause(head, [w.row(row) for row in term])
        if not disjunction.terms:
            yield f"{head} :- fail.\n\n"
        calls.append(head)
    ordered = [branch_relu[k] for k in relu_order(problem) if k in branch_relu]
    calls.append(f"Relus = [{', '.join(ordered)}]")
    calls.append(f"Signs = [{', '.join(branch_sign)}]")
    calls.append(f"Ints = [{', '.join(w.names[i] for i in range(problem.n_vars) if problem.integer[i])}]")
    objective = "none" if problem.objective is None else w.expr(*problem.objective)
    calls.append(f"Obj = {objective}")
    yield from _clause(
        "nnv_problem(Vars, Relus, Signs, Ints, Obj)",
        [f"Vars = [{', '.join(w.names)}]", *calls],
        [
            "All constraints. Relus, Signs and the integer variables Ints are left to the search, in the order it",
            "decides them; Obj is the expression to minimise (none: any solution will do).",
        ],
    )
    yield from _clause(f"nnv_objective({'none' if problem.objective is None else 'some'})", [])
    x_idx = [] if inputs is None else [int(i) for i in inputs]
    y_idx = [] if outputs is None else [int(i) for i in outputs]
    yield from _clause(f"nnv_io({x_idx}, {y_idx})", [], ["Positions of the network inputs and outputs in Vars."])
    yield _PRINT_WITNESS
    yield "\n" + SCRIPT_ENTRY


_PRINT_WITNESS = """%% The counterexample in the VNN-COMP witness format (values as floats).
nnv_print_witness(Values) :-
    nnv_io(XIdx, YIdx),
    format("(~n"),
    forall(nth0(K, XIdx, I), (nth0(I, Values, V), F is float(V), format("(X_~d ~17g)~n", [K, F]))),
    forall(nth0(K, YIdx, I), (nth0(I, Values, V), F is float(V), format("(Y_~d ~17g)~n", [K, F]))),
    format(")~n").
"""
