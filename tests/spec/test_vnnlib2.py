"""VNN-LIB 2.x reader: declarations, exact linear constraints, strictness, and file:line:col errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnverify.errors import PropertyError
from nnverify.spec.vnnlib2 import is_vnnlib2, load_query, parse_query
from nnverify.spec.vnnlib2_types import Rel, VarKind

TWO_NETS = """(vnnlib-version <2.0>)
; two networks
(declare-network f
    (declare-input X real [2,3])
    (declare-hidden H float32 [1,4] "relu_1")
    (declare-output Y Real [2])
)
(declare-network g
    (equal-to f)
    (declare-input Xg real [2,3])
    (declare-output Yg Real [2])
)
(assert (<= X[1, 2] 0.1))
(assert (== X[0,0] Xg[0,0]))
(assert (or (< Y[0] (* 3 Yg[1])) (> (- Y[1] 2.5e-1 Yg[0]) 1)))
"""


def test_declarations_and_exact_constraints() -> None:
    q = parse_query(TWO_NETS, "q.vnnlib")
    assert q.version == (2, 0)
    assert [n.name for n in q.networks] == ["f", "g"]
    f, g = q.networks
    assert g.equal_to == "f" and g.isomorphic_to is None
    assert f.hidden[0].onnx_name == "relu_1" and f.hidden[0].kind is VarKind.HIDDEN
    assert [v.name for v in q.variables] == ["X", "H", "Y", "Xg", "Yg"]
    box, eq = q.common
    assert box.coefs == ((("X", 5), Fraction(1)),) and box.b == Fraction(1, 10) and box.rel is Rel.LE
    assert eq.rel is Rel.EQ and dict(eq.coefs) == {("X", 0): 1, ("Xg", 0): -1}
    first, second = q.alternatives
    assert first[0].rel is Rel.LT and dict(first[0].coefs) == {("Y", 0): 1, ("Yg", 1): -3} and first[0].b == 0
    # (> (- Y[1] 0.25 Yg[0]) 1)  ->  1 - (Y[1] - 0.25 - Yg[0]) < 0  ->  -Y[1] + Yg[0] < -1.25
    assert dict(second[0].coefs) == {("Y", 1): -1, ("Yg", 0): 1} and second[0].b == Fraction(-5, 4)
    assert q.has_strict


def test_not_equal_is_two_strict_alternatives() -> None:
    text = "(vnnlib-version <2.1>)(declare-network n (declare-input X Real []) (declare-output Y Real []))"
    q = parse_query(text + "(assert (!= Y 0.5))")
    assert len(q.alternatives) == 2 and all(alt[0].rel is Rel.LT for alt in q.alternatives)


def test_version_detection(tmp_path: Path) -> None:
    assert is_vnnlib2(TWO_NETS)
    assert not is_vnnlib2("; (declare-network f)\n(declare-const X_0 Real)\n(assert (<= X_0 1))\n")
    path = tmp_path / "q.vnnlib"
    path.write_text(TWO_NETS)
    assert load_query(path).path == str(path)


@pytest.mark.parametrize(
    ("replace", "by", "where", "message"),
    [
        ("(<= X[1, 2] 0.1)", "(<= Z[0] 0.1)", (13, 13), "undeclared variable 'Z'"),
        ("(<= X[1, 2] 0.1)", "(<= X[2,0] 0.1)", (13, 13), "index 2 out of range for dimension 0"),
        ("(<= X[1, 2] 0.1)", "(<= X[1] 0.1)", (13, 13), "expected 2 indices, found 1"),
        ("(<= X[1, 2] 0.1)", "(<= Y 0.1)", (13, 13), "has shape [2]"),
        ("(equal-to f)", "(equal-to h)", (9, 15), "unknown network 'h'"),
        ("(<= X[1, 2] 0.1)", "(<= (* X[0,0] Y[0]) 0.1)", (13, 13), "non-linear product"),
        ("<2.0>", "<3.0>", (1, 17), "expected VNN-LIB version <2.x>"),
        ("Xg real [2,3]", "Xg real [3,2]", (9, 15), "the inputs differ from those of 'f'"),
        ("H float32", "H int8", (5, 23), "element type 'int8' is not supported"),
        ("(declare-output Yg", "(declare-output X", (11, 21), "'X' is already declared at 4:20"),
        ("(assert (<= X[1, 2] 0.1))", "(assert (<= X[1, 2] 0.1)", (15, 9), "expected ')'"),
        ("(<= X[1, 2] 0.1)", "(<= X[1, 2] 1e400)", (13, 21), "outside the float64 range"),
    ],
)
def test_errors_point_at_the_problem(replace: str, by: str, where: tuple[int, int], message: str) -> None:
    assert replace in TWO_NETS
    with pytest.raises(PropertyError) as info:
        parse_query(TWO_NETS.replace(replace, by), "q.vnnlib")
    err = info.value
    assert message in err.message
    if replace != "(assert (<= X[1, 2] 0.1))":
        assert (err.line, err.col) == where, str(err)


ORACLE_BASE = """(vnnlib-version <2.0>)
(declare-network f
    (declare-input X real [2,3])
    (declare-output Y real [2])
)
(assert (<= X[1,2] 0.1))
(assert (>= X[1,2] -0.1))
(assert (or (<= Y[0] (* 3.0 Y[1])) (>= (- Y[1] 0.25 Y[0]) 1.0)))
"""


@pytest.mark.parametrize(
    ("replace", "by"),
    [("", ""), ("Y[0] (*", "Z[0] (*"), ("X[1,2] 0.1", "X[2,2] 0.1"), ("X[1,2] 0.1", "X[1] 0.1")],
)
def test_agrees_with_the_official_reader(replace: str, by: str) -> None:
    """The PyPI ``vnnlib`` package (a test oracle only) accepts exactly the texts we accept."""
    vnnlib = pytest.importorskip("vnnlib")
    text = ORACLE_BASE.replace(replace, by) if replace else ORACLE_BASE
    try:
        theirs = len(vnnlib.parse_query_string(text).assertions)
    except vnnlib.VNNLibException:
        theirs = None
    try:
        q = parse_query(text)
        ours = len(q.common) + (len(q.alternatives) > 1)
    except PropertyError:
        ours = None
    assert ours == theirs


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_queries_raise_only_property_errors(data: st.DataObject) -> None:
    """Deleting, duplicating or inserting characters anywhere gives a query or one PropertyError, nothing else."""
    text = TWO_NETS
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["delete", "insert", "duplicate"]))
        if op == "delete":
            text = text[:i] + text[i + 1 :]
        elif op == "insert":
            text = text[:i] + data.draw(st.sampled_from(list('()[],;"- .0123456789eXYH<>=!\n'))) + text[i:]
        else:
            j = data.draw(st.integers(i, min(len(text), i + 12)))
            text = text[:j] + text[i:j] + text[j:]
    try:
        parse_query(text, "q.vnnlib")
    except PropertyError as exc:
        assert exc.line >= 1 and exc.col >= 1 and "\n" not in exc.message
