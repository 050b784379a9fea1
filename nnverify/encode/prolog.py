"""Writes a ``Problem`` as a constraint logic program for SWI-Prolog's clpq (or clpr).

The program is the one the ``clpq`` backend runs and the one ``nnverify export --format prolog`` writes:
linear rows become ``{}/1`` constraints, ReLUs and Signs become choice points (the search is
``backends/clpq_solver.pl``, copied into every program), the unsafe set's disjuncts become clauses.
Affine neurons and stable activations are substituted into the constraints that use them, exactly
(``encode/eliminate.py``), so the program's variables are the input, the unstable activations' inputs and
outputs, and integer variables.

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
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from importlib.resources import files

import numpy as np

from nnverify.encode.eliminate import Eliminator, Form
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


def number(value: float | Fraction, precision: Precision) -> str:
    """A Prolog number literal: the exact rational (``NrD``), or a float."""
    if precision is Precision.EXACT:
        num, den = value.as_integer_ratio()
        return str(num) if den == 1 else f"{num}r{den}"
    text = repr(float(value))
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + ("e" + exponent if exponent else "")


#: Significant bits kept for the bounds in a triangle relaxation (rounded outward, so still sound). Short
#: numbers keep the exact simplex's rationals small: full 53-bit bounds make clpq's pivots grow numbers with
#: thousands of digits.
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
    """Prolog variable names from the problem's names (``l1_17`` -> ``L1_17``), made unique."""
    names, seen = [], set()
    for i, raw in enumerate(problem.names):
        name = re.sub(r"\W", "_", raw)
        name = "V" + name if not name[:1].isalpha() else name[0].upper() + name[1:]
        if name in seen:
            name = f"{name}__{i}"
        seen.add(name)
        names.append(name)
    return names


@dataclass(frozen=True, slots=True)
class PrologProgram:
    """A written program: its text, the problem variables it solves for (in the order ``nnv_decide``
    returns their values), and what rebuilds the eliminated ones."""

    text: str
    kept: list[int]
    eliminator: Eliminator

    @property
    def body(self) -> str:
        """The program without its ``SCRIPT_ENTRY`` line (what the backend loads)."""
        return self.text[: -len(SCRIPT_ENTRY)]

    def values(self, kept_values: list[float]) -> np.ndarray:
        """All problem variables from the values of the kept ones."""
        return self.eliminator.fill(dict(zip(self.kept, kept_values, strict=True)))


class _Writer:
    def __init__(self, problem: Problem, precision: Precision) -> None:
        self.p = problem
        self.precision = precision
        self.names = _var_names(problem)
        self.elim = Eliminator(problem)

    def num(self, value: float | Fraction) -> str:
        return number(value, self.precision)

    def terms(self, terms: dict[int, Fraction]) -> str:
        """``a1*V1 - a2*V2 ...`` in variable order (a coefficient 1 is left out)."""
        parts: list[str] = []
        for i in sorted(terms):
            a = terms[i]
            magnitude = "" if abs(a) == 1 else self.num(abs(a)) + "*"
            if not parts:
                parts.append(("-" if a < 0 else "") + magnitude + self.names[i])
            else:
                parts.append(f"{'-' if a < 0 else '+'} {magnitude}{self.names[i]}")
        return " ".join(parts) if parts else "0"

    def constraint(self, form: Form, lo: float | Fraction, hi: float | Fraction) -> str:
        """``lo <= form <= hi`` as a ``{}/1`` goal (constant moved to the bounds, exactly)."""
        terms, const = form
        lo_f = None if not math.isfinite(lo) else Fraction(lo) - const
        hi_f = None if not math.isfinite(hi) else Fraction(hi) - const
        lhs = self.terms(terms)
        if not terms:  # a constant constraint: true or false
            ok = (lo_f is None or lo_f <= 0) and (hi_f is None or hi_f >= 0)
            return "true" if ok else "fail"
        if lo_f is not None and lo_f == hi_f:
            return f"{{{lhs} = {self.num(lo_f)}}}"
        goals = [f"{lhs} >= {self.num(lo_f)}"] if lo_f is not None else []
        goals += [f"{lhs} =< {self.num(hi_f)}"] if hi_f is not None else []
        return "{" + ", ".join(goals) + "}" if goals else "true"

    def row(self, row: Row) -> str:
        return self.constraint(self.elim.form(row.idx, row.coef), row.lo, row.hi)

    def definition(self, v: int) -> str:
        """``{V = ...}`` for a kept variable that is defined by the (rewritten) expression."""
        terms, const = self.elim.definition_form(v)
        rhs = self.terms(terms)
        if const:
            rhs = (
                (rhs + " + " if terms else "") + self.num(const)
                if const > 0 or not terms
                else f"{rhs} - {self.num(-const)}"
            )
        return f"{{{self.names[v]} = {rhs}}}"

    def bounds(self, v: int) -> str | None:
        """The bounds of ``v`` as a constraint, if the program needs them."""
        lo, hi = self.p.lb[v], self.p.ub[v]
        if v in self.elim.defs and self.p.implied_bounds:
            return None
        if self.elim.eliminated(v):
            return self.constraint(self.elim.form((v,), (Fraction(1),)), lo, hi)
        return self.constraint(({v: Fraction(1)}, Fraction(0)), lo, hi)

    def relu(self, relu: Relu) -> tuple[str | None, str | None]:
        """The ReLU's constraint (None when eliminated) and its entry in the list to branch on (None if stable)."""
        if self.elim.eliminated(relu.y):
            return None, None
        x, y = self.names[relu.x], self.names[relu.y]
        lo, hi = self.p.lb[relu.x], self.p.ub[relu.x]
        if lo >= 0.0:
            return f"{{{y} = {x}}}  % stable: active", None
        if hi <= 0.0:
            return f"{{{y} = 0}}  % stable: inactive", None
        # Triangle relaxation (Ehlers, ATVA 2017): y >= 0, y >= x, (hi - lo) * y =< hi * (x - lo), with the
        # bounds widened to short numbers; the solver does the arithmetic (exactly, in clpq).
        low, up = (f"({self.num(v)})" for v in outward(lo, hi))
        goal = f"{{{y} >= 0, {y} >= {x}, ({up} - {low})*{y} =< {up}*({x} - {low})}}"
        comment = f"  % unstable: input in [{lo:.6g}, {hi:.6g}]"
        active_first = "true" if hi >= -lo else "false"
        return goal + comment, f"relu({x}, {y}, {active_first})"

    def sign(self, sign: Sign) -> tuple[str | None, str | None]:
        if self.elim.eliminated(sign.y):
            return None, None
        x, y = self.names[sign.x], self.names[sign.y]
        lo, hi = self.p.lb[sign.x], self.p.ub[sign.x]
        if lo > 0.0:
            return f"{{{y} = 1}}  % stable: input > 0", None
        if hi < 0.0:
            return f"{{{y} = -1}}  % stable: input < 0", None
        return f"{{{y} >= -1, {y} =< 1}}", f"sign({x}, {y})"


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
    """The variables as one list argument (clause arity is limited to 1024 in SWI-Prolog)."""
    return "[" + ", ".join(names[i] for i in sorted(set(idx))) + "]"


def _used(goals: list[str], names: list[str], candidates: Iterable[int]) -> list[int]:
    """The candidate variables whose names occur in ``goals``."""
    text = " ".join(goals)
    found = set(re.findall(r"\b[A-Z]\w*", text))
    return [v for v in candidates if names[v] in found]


def relu_order(problem: Problem) -> list[int]:
    """The documented branching order of the ReLUs: layer by layer (runs of consecutive inputs), and inside a
    layer the neuron whose input interval straddles zero most evenly (largest ``min(-lb, ub)``) first."""

    def key(j: int) -> float:
        return -min(-problem.lb[problem.relus[j].x], problem.ub[problem.relus[j].x])

    order: list[int] = []
    run: list[int] = []
    for k, relu in enumerate(problem.relus):
        if run and relu.x != problem.relus[run[-1]].x + 1:
            order += sorted(run, key=key)
            run = []
        run.append(k)
    return order + sorted(run, key=key)


def write_program(
    problem: Problem,
    precision: Precision = Precision.EXACT,
    *,
    header: Iterable[str] = (),
    inputs: np.ndarray | None = None,
) -> PrologProgram:
    """The whole program: header comments, the library, the search, the problem, and (last line) the
    ``SCRIPT_ENTRY`` that makes ``swipl program.pl`` print ``sat``/``unsat``.

    ``inputs`` (variable indices of the network input) lets the script print the counterexample's inputs in the
    VNN-COMP format.
    """
    writer = _Writer(problem, precision)
    kept = writer.elim.kept()
    text = "".join(_program(writer, kept, list(header), inputs))
    return PrologProgram(text, kept, writer.elim)


def _program(w: _Writer, kept: list[int], header: list[str], inputs: np.ndarray | None) -> Iterator[str]:
    problem = w.p
    library = "clpq" if w.precision is Precision.EXACT else "clpr"
    yield "%% A verification query written by nnverify. Run it with:  swipl <this file>\n"
    yield "%% It prints `sat` and a counterexample (the network violates the property) or `unsat` (it cannot).\n"
    for line in header:
        yield f"%% {line}\n"
    yield f"%% Numbers: {'exact rationals (NrD is N/D)' if w.precision is Precision.EXACT else 'floats (clpr)'}.\n"
    yield "%% Variables: Lk_i is neuron i of layer k; layer 0 is the network input. Affine neurons and stable\n"
    yield "%% activations do not appear: they are substituted, exactly, into the constraints that use them.\n\n"
    yield f":- use_module(library({library})).\n:- use_module(library(lists)).\n"
    yield ":- style_check(-singleton).  % a layer's clause may not use every variable it is given\n\n"
    yield solver_source()
    yield "\n%% ---------------------------------------------------------------------------------------------------\n"
    yield "%% The problem.\n"
    yield "%% ---------------------------------------------------------------------------------------------------\n\n"
    calls: list[str] = []
    branch_relu: dict[int, str] = {}
    branch_sign: list[str] = []
    bounds = [b for b in (w.bounds(v) for v in range(problem.n_vars)) if b is not None]
    head = f"nnv_bounds({_args(w.names, _used(bounds, w.names, kept))})"
    yield from _clause(head, bounds, ["The input box (and any other bound that is not implied by the rest)."])
    calls.append(head)
    for s, (title, rows, relus, signs) in enumerate(_sections(problem)):
        goals: list[str] = []
        composed = 0
        for r in rows:
            v = w.elim.defining_row.get(r)
            if v is None:
                goals.append(w.row(problem.rows[r]))
            elif w.elim.eliminated(v):
                composed += 1
            else:
                goals.append(w.definition(v) + "  % input of an unstable activation")
        for k in relus:
            goal, item = w.relu(problem.relus[k])
            composed += goal is None
            goals += [goal] if goal is not None else []
            if item is not None:
                branch_relu[k] = item
        for k in signs:
            goal, item = w.sign(problem.signs[k])
            composed += goal is None
            goals += [goal] if goal is not None else []
            if item is not None:
                branch_sign.append(item)
        comments = [title] + (
            [f"({composed} neurons substituted into the constraints that use them)"] if composed else []
        )
        if not goals:
            yield "".join(f"%% {c}\n" for c in comments) + "\n"
            continue
        head = f"nnv_part_{s}({_args(w.names, _used(goals, w.names, kept))})"
        yield from _clause(head, goals, comments)
        calls.append(head)
    for d, disjunction in enumerate(problem.disjunctions):
        terms = [[w.row(row) for row in term] for term in disjunction.terms]
        head = f"nnv_unsafe_{d}({_args(w.names, _used([g for t in terms for g in t], w.names, kept))})"
        yield f"%% Disjunction {d}: one clause per disjunct; Prolog tries them in turn.\n"
        for goals in terms:
            yield from _clause(head, goals or ["true"])
        if not terms:
            yield f"{head} :- fail.\n\n"
        calls.append(head)
    ordered = [branch_relu[k] for k in relu_order(problem) if k in branch_relu]
    calls.append(f"Relus = [{', '.join(ordered)}]")
    calls.append(f"Signs = [{', '.join(branch_sign)}]")
    calls.append(f"Ints = [{', '.join(w.names[i] for i in kept if problem.integer[i])}]")
    objective = "none"
    if problem.objective is not None:
        obj_terms, obj_const = w.elim.form(*problem.objective)
        objective = w.terms(obj_terms) + (f" + {w.num(obj_const)}" if obj_const else "")
    calls.append(f"Obj = {objective}")
    yield from _clause(
        "nnv_problem(Vars, Relus, Signs, Ints, Obj)",
        [f"Vars = [{', '.join(w.names[v] for v in kept)}]", *calls],
        [
            "All constraints. Relus, Signs and the integer variables Ints are left to the search, in the order it",
            "decides them; Obj is the expression to minimise (none: any solution will do).",
        ],
    )
    yield from _clause(f"nnv_objective({'none' if problem.objective is None else 'some'})", [])
    position = {v: k for k, v in enumerate(kept)}
    x_pos = [] if inputs is None else [position[int(i)] for i in inputs]
    yield from _clause(f"nnv_io({x_pos})", [], ["Positions of the network inputs in Vars."])
    yield _PRINT_WITNESS
    yield "\n" + SCRIPT_ENTRY


_PRINT_WITNESS = """%% The counterexample's inputs in the VNN-COMP witness format (as floats; the outputs are left to
%% onnxruntime: `nnverify witness NET PROP FILE` checks such a file).
nnv_print_witness(Values) :-
    nnv_io(XIdx),
    format("(~n"),
    forall(nth0(K, XIdx, I), (nth0(I, Values, V), F is float(V), format("(X_~d ~17g)~n", [K, F]))),
    format(")~n").
"""
