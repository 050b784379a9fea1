"""Property-based tests: no input text makes the parser fail other than with ``PropertyError``."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nnverify.errors import PropertyError
from nnverify.spec.property import Disjunct, Property
from nnverify.spec.vnnlib import parse_vnnlib

FAST = settings(max_examples=200, deadline=None)

VALID = """; two inputs, two outputs
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (<= X_0 0.5))
(assert (>= X_0 -0.5))
(assert (or (and (<= X_1 1e-3) (>= X_1 (- 1))) (and (<= 2 X_1) (<= (* 2 X_1) 6))))
(assert (or (and (<= Y_0 Y_1)) (and (>= (+ Y_0 (* -3 X_1)) (- Y_1 2.5)) (= Y_1 0))))
"""

TOKENS = [
    "(", ")", "(", ")", "declare-const", "assert", "and", "or", "<=", ">=", "<", ">", "=", "+", "-", "*", "/",
    "X_0", "X_1", "Y_0", "Y_1", "Y_10", "X_01", "Real", "Int", "0", "1", "-0.5", "1e-3", "1e999", "abc", ";",
    "\n", "nan", "inf", "1_0", "-", ".", "|", "(declare-const X_0 Real)", "(declare-const Y_0 Real)",
]  # fmt: skip

VALID_LEAVES = ["X_0", "X_1", "Y_0", "Y_1", "0", "2", "-1.5", "1e3", "(- 4)"]
NOISE = ["and", "X_9", "Y_10", "q", "()", "(foo)", "1e999", "(- )"]
LEAVES = st.sampled_from(VALID_LEAVES * 10 + NOISE)  # mostly valid, so the deeper checks are reached


def _compound_terms(kids: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    op = st.sampled_from(["+", "-", "*", "/"])
    return st.tuples(op, st.lists(kids, min_size=1, max_size=3)).map(lambda t: f"({t[0]} {' '.join(t[1])})")


TERMS = st.recursive(LEAVES, _compound_terms, max_leaves=6)
COMPARISONS = st.tuples(st.sampled_from(["<=", ">=", "<", ">", "="]), st.lists(TERMS, min_size=2, max_size=3)).map(
    lambda t: f"({t[0]} {' '.join(t[1])})"
)


def _compound_formulas(kids: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    op = st.sampled_from(["and", "or"])
    return st.tuples(op, st.lists(kids, max_size=3)).map(lambda t: f"({t[0]} {' '.join(t[1])})")


FORMULAS = st.recursive(COMPARISONS, _compound_formulas, max_leaves=8)
HEADER = "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)\n"


def check(text: str, **sizes: int) -> None:
    """Parsing either succeeds with a well-formed property or raises PropertyError; nothing else."""
    try:
        prop = parse_vnnlib(text, "h.vnnlib", **sizes)
    except PropertyError as err:
        assert str(err).startswith("h.vnnlib:") and err.line >= 1 and err.col >= 1
        return
    for d in prop.disjuncts:
        assert np.all(np.isfinite(d.lb)) and np.all(np.isfinite(d.ub)) and np.all(d.lb <= d.ub)
        assert np.all(np.isfinite(d.a_x)) and np.all(np.isfinite(d.a_y)) and np.all(np.isfinite(d.b))


@FAST
@given(st.text())
def test_random_text(text: str) -> None:
    check(text)


@FAST
@given(st.lists(st.sampled_from(TOKENS), max_size=60), st.booleans())
def test_token_soup(tokens: list[str], with_header: bool) -> None:
    check((HEADER if with_header else "") + " ".join(tokens), n_outputs=2)


@FAST
@given(st.lists(FORMULAS, max_size=4))
def test_random_asserts(formulas: list[str]) -> None:
    check(HEADER + "(assert (<= -1 X_0 1))(assert (<= -1 X_1 1))" + "".join(f"(assert {f})" for f in formulas))


@FAST
@given(st.data())
def test_mutations_of_a_valid_file(data: st.DataObject) -> None:
    text = VALID
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 12)))
        insert = data.draw(st.sampled_from(["", "(", ")", " ", "X_7", "Y_1", "-", "1e400", "(or", "and", text[i:j]]))
        text = text[:i] + insert + text[j:]
    check(text, n_inputs=2, n_outputs=2)


def test_valid_example_parses() -> None:
    prop = parse_vnnlib(VALID, n_inputs=2, n_outputs=2)
    assert len(prop.disjuncts) == 4


FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
COEF = st.one_of(st.just(0.0), FINITE.filter(lambda v: v != 0.0 and abs(v) < 1e300))


@st.composite
def properties(draw: st.DrawFn) -> Property:
    """Random normal-form properties (rows involve an output, as the parser's normal form guarantees)."""
    n, m = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    disjuncts = []
    for _ in range(draw(st.integers(0, 3))):
        bounds = sorted(draw(st.lists(FINITE, min_size=2 * n, max_size=2 * n)))
        lb, ub = np.array(bounds[:n]), np.array(bounds[n:])
        k = draw(st.integers(0, 3))
        a_x = np.array(draw(st.lists(COEF, min_size=k * n, max_size=k * n)), dtype=float).reshape(k, n)
        a_y = np.array(draw(st.lists(COEF, min_size=k * m, max_size=k * m)), dtype=float).reshape(k, m)
        a_y[:, 0] = draw(st.lists(COEF.filter(lambda v: v != 0.0), min_size=k, max_size=k)) or 0.0
        b = np.array(draw(st.lists(FINITE, min_size=k, max_size=k)), dtype=float)
        disjuncts.append(Disjunct(lb=lb + 0.0, ub=ub + 0.0, a_x=a_x + 0.0, a_y=a_y + 0.0, b=b + 0.0))
    return Property(n, m, tuple(disjuncts))


@FAST
@given(properties())
def test_to_vnnlib_round_trip(prop: Property) -> None:
    back = parse_vnnlib(prop.to_vnnlib(), n_inputs=prop.n_inputs, n_outputs=prop.n_outputs)
    assert (back.n_inputs, back.n_outputs, len(back.disjuncts)) == (
        prop.n_inputs,
        prop.n_outputs,
        len(prop.disjuncts),
    )
    for d, e in zip(prop.disjuncts, back.disjuncts, strict=True):
        for field in ("lb", "ub", "a_x", "a_y", "b"):
            assert np.array_equal(getattr(d, field), getattr(e, field)), field


SMALL = st.integers(-2, 2)
LINEAR = st.tuples(SMALL, SMALL, SMALL)  # cx * X_0 + cy * Y_0 + c
ATOMIC = st.tuples(st.just("cmp"), st.sampled_from(["<=", ">=", "<", ">", "="]), LINEAR, LINEAR)
TREE = st.recursive(
    ATOMIC, lambda kids: st.tuples(st.sampled_from(["and", "or"]), st.lists(kids, max_size=3)), max_leaves=8
)


def render(f: tuple) -> str:
    if f[0] == "cmp":
        sides = [f"(+ (* {cx} X_0) (* Y_0 {cy}) {c})" for cx, cy, c in f[2:]]
        return f"({f[1]} {sides[0]} {sides[1]})"
    return f"({f[0]} {' '.join(render(g) for g in f[1])})"


def holds(f: tuple, x: int, y: int) -> bool:
    """Direct evaluation, reading strict comparisons as non-strict like the parser does."""
    if f[0] == "and":
        return all(holds(g, x, y) for g in f[1])
    if f[0] == "or":
        return any(holds(g, x, y) for g in f[1])
    left, right = (cx * x + cy * y + c for cx, cy, c in f[2:])
    return {
        "<=": left <= right,
        "<": left <= right,
        ">=": left >= right,
        ">": left >= right,
        "=": left == right,
    }[f[1]]


@FAST
@given(st.lists(TREE, min_size=1, max_size=3))
def test_semantics_match_direct_evaluation(formulas: list[tuple]) -> None:
    text = "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= -3 X_0 3))"
    prop = parse_vnnlib(text + "".join(f"(assert {render(f)})" for f in formulas))
    grid = np.array([(x, y) for x in range(-4, 5) for y in range(-4, 5)], dtype=float)
    got = prop.violated_by(grid[:, :1], grid[:, 1:])
    want = [abs(x) <= 3 and all(holds(f, int(x), int(y)) for f in formulas) for x, y in grid]
    assert got.tolist() == want
