"""VNN-LIB parser: every shipped benchmark file, semantic facts, round trips and exact error messages."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from benchdata import BENCHMARKS_DIR, property_sizes

from nnverify.errors import InputFileError, PropertyError
from nnverify.spec import sexpr
from nnverify.spec.property import Property
from nnverify.spec.vnnlib import load_property, parse_vnnlib

DECLS_1_1 = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"


def benchmarks_dir() -> Path:
    """The shared VNN-COMP benchmark data (the repository and ``shared/`` are siblings)."""
    return BENCHMARKS_DIR


def benchmark_files() -> list[Path]:
    return sorted(benchmarks_dir().glob("**/*.vnnlib"))


def expected_sizes(path: Path) -> tuple[int, int]:
    """(inputs, outputs) of the network the file is paired with in its set's ``instances.csv``."""
    sizes = property_sizes().get(path.resolve())
    if sizes is None:
        pytest.fail(f"{path} is not listed in its set's instances.csv")
    return sizes


def assert_same(p: Property, q: Property) -> None:
    """Structural equality of two properties (arrays compared exactly), ignoring ``path``."""
    assert (p.n_inputs, p.n_outputs, len(p.disjuncts)) == (q.n_inputs, q.n_outputs, len(q.disjuncts))
    for d, e in zip(p.disjuncts, q.disjuncts, strict=True):
        for field in ("lb", "ub", "a_x", "a_y", "b"):
            a, b = getattr(d, field), getattr(e, field)
            assert a.shape == b.shape, field
            assert np.array_equal(a, b), field


def bench_id(path: Path) -> str:
    return f"{path.parent.parent.name}/{path.name}" if path.parent.name == "vnnlib" else path.name


def test_benchmark_data_present() -> None:
    assert len(benchmark_files()) >= 44, f"VNN-COMP benchmark files missing under {benchmarks_dir()}"


#: Inputs above which a set's files after its first are parsed and round-tripped only under ``-m slow``:
#: writing and re-reading a 12,288-input property with 42 boxes takes ~30 s, and the parser is the same for
#: every file of a set.
WIDE_INPUTS = 1000


def benchmark_params() -> list[object]:
    """Every file; those of wide-input sets after the first of their set are marked ``slow``."""
    params: list[object] = []
    seen: set[Path] = set()
    for path in benchmark_files():
        sizes = property_sizes().get(path.resolve())
        wide = sizes is not None and sizes[0] > WIDE_INPUTS
        marks = [pytest.mark.slow] if wide and path.parent in seen else []
        seen.add(path.parent)
        params.append(pytest.param(path, id=bench_id(path), marks=marks))
    return params


@pytest.mark.parametrize("path", benchmark_params())
def test_benchmark_file_parses(path: Path) -> None:
    n, m = expected_sizes(path)
    prop = load_property(path, n, m)
    assert (prop.n_inputs, prop.n_outputs) == (n, m)
    assert prop.path == str(path)
    assert prop.disjuncts
    for d in prop.disjuncts:
        assert d.lb.shape == d.ub.shape == (n,)
        assert np.all(np.isfinite(d.lb)) and np.all(d.lb <= d.ub)
        assert d.a_x.shape == (d.n_rows, n) and d.a_y.shape == (d.n_rows, m) and d.b.shape == (d.n_rows,)


@pytest.mark.parametrize("path", benchmark_params())
def test_benchmark_file_round_trips(path: Path) -> None:
    n, m = expected_sizes(path)
    prop = load_property(path, n, m)
    assert_same(prop, parse_vnnlib(prop.to_vnnlib(), "round-trip", n, m))


def test_acasxu_prop_1() -> None:
    prop = load_property(benchmarks_dir() / "acasxu" / "vnnlib" / "prop_1.vnnlib")
    (d,) = prop.disjuncts
    assert d.lb.tolist() == [0.6, -0.5, -0.5, 0.45, -0.5]
    assert d.ub.tolist() == [0.679857769, 0.5, 0.5, 0.5, -0.45]
    assert d.a_x.tolist() == [[0.0] * 5]
    assert d.a_y.tolist() == [[-1.0, 0.0, 0.0, 0.0, 0.0]]
    assert d.b.tolist() == [-3.991125645861615]


def test_acasxu_prop_6_cross_product() -> None:
    prop = load_property(benchmarks_dir() / "acasxu" / "vnnlib" / "prop_6.vnnlib", 5, 5)
    assert len(prop.disjuncts) == 8  # 2 input boxes x 4 output conditions
    assert {(d.lb[1], d.ub[1]) for d in prop.disjuncts} == {
        (0.11140846, 0.499999896),
        (-0.499999896, -0.11140846),
    }
    for d in prop.disjuncts:  # each row is Y_k - Y_0 <= 0 for some k in 1..4
        assert d.n_rows == 1 and d.a_y[0, 0] == -1.0 and d.a_y[0, 1:].sum() == 1.0 and d.b[0] == 0.0


def test_mnistfc_prop_has_nine_disjuncts() -> None:
    prop = load_property(benchmarks_dir() / "mnistfc" / "vnnlib" / "prop_0_0.03.vnnlib", 784, 10)
    assert len(prop.disjuncts) == 9
    label_column = {int(np.flatnonzero(d.a_y[0] == 1.0)[0]) for d in prop.disjuncts}
    assert label_column == {4}  # (>= Y_k Y_4) is Y_4 - Y_k <= 0
    assert all(np.all(d.ub - d.lb <= 2 * 0.03 + 1e-8) and np.all(d.lb >= 0) for d in prop.disjuncts)


def parse1(body: str, **sizes: int) -> Property:
    return parse_vnnlib(DECLS_1_1 + body, "p.vnnlib", **sizes)


@pytest.mark.parametrize(
    ("body", "lb", "ub", "rows"),
    [
        ("(assert (<= X_0 0.5)) (assert (>= X_0 -0.5))", -0.5, 0.5, []),
        ("(assert (<= -0.5 X_0)) (assert (>= 0.5 X_0))", -0.5, 0.5, []),
        ("(assert (= X_0 0.25))", 0.25, 0.25, []),
        ("(assert (<= (* 2 X_0) 1)) (assert (<= (* X_0 -4) 2))", -0.5, 0.5, []),
        ("(assert (and (<= X_0 1e-3) (< (- 5) X_0)))", -5.0, 0.001, []),
        ("(assert (<= -1 X_0 1))", -1.0, 1.0, []),
        (
            "(assert (<= X_0 1)) (assert (<= X_0 0.5)) (assert (>= X_0 -2)) (assert (>= X_0 -1))",
            -1.0,
            0.5,
            [],
        ),
        ("(assert (<= X_0 1)) (assert (>= X_0 0)) (assert (> Y_0 X_0))", 0.0, 1.0, [([1.0], [-1.0], 0.0)]),
        (
            "(assert (<= X_0 1)) (assert (>= X_0 0)) (assert (<= (+ Y_0 (* 3 X_0) 1) (- 2 (/ X_0 2))))",
            0.0,
            1.0,
            [([3.5], [1.0], 1.0)],
        ),
        (
            "(assert (<= X_0 1)) (assert (>= X_0 0)) (assert (<= (- Y_0) 7)) (assert (<= 1 2))",
            0.0,
            1.0,
            [([0.0], [-1.0], 7.0)],
        ),
    ],
    ids=[
        "plain",
        "reversed",
        "equal",
        "scaled",
        "smt-minus-and-sci",
        "chain",
        "intersect",
        "strict-xy",
        "linear",
        "negation",
    ],
)
def test_constraint_forms(body: str, lb: float, ub: float, rows: list[tuple[list[float], list[float], float]]) -> None:
    (d,) = parse1(body).disjuncts
    assert (d.lb.tolist(), d.ub.tolist()) == ([lb], [ub])
    assert [(ax.tolist(), ay.tolist(), b) for ax, ay, b in zip(d.a_x, d.a_y, d.b.tolist(), strict=True)] == rows


def test_inexact_scaled_bound_is_rounded_outward() -> None:
    (d,) = parse1("(assert (<= (* 3 X_0) 1)) (assert (>= (* 3 X_0) -1))").disjuncts
    assert d.ub[0] >= 1 / 3 and d.lb[0] <= -1 / 3 and d.ub[0] - d.lb[0] < 1e-15 + 2 / 3


def test_multi_input_row_stays_a_row() -> None:
    text = "\n".join(f"(declare-const X_{i} Real)" for i in range(2)) + "\n(declare-const Y_0 Real)\n"
    text += "(assert (<= 0 X_0 1)) (assert (<= 0 X_1 1)) (assert (<= (+ X_0 X_1) 1))"
    (d,) = parse_vnnlib(text).disjuncts
    assert d.a_x.tolist() == [[1.0, 1.0]] and d.a_y.tolist() == [[0.0]] and d.b.tolist() == [1.0]


def test_empty_disjuncts_are_dropped() -> None:
    body = "(assert (or (and (<= X_0 1) (>= X_0 2)) (and (<= 0 X_0 1) (<= Y_0 0)) (and (<= 0 X_0 1) (<= 1 0))))"
    prop = parse1(body)
    assert len(prop.disjuncts) == 1 and prop.disjuncts[0].b.tolist() == [0.0]
    assert parse1("(assert (<= 0 X_0 1)) (assert (or))").disjuncts == ()


def test_unsafe_set_membership() -> None:
    prop = parse1("(assert (<= 0 X_0 1)) (assert (or (<= Y_0 -1) (>= Y_0 1)))")
    x = np.array([[0.5], [0.5], [0.5], [2.0]])
    y = np.array([[-2.0], [0.0], [3.0], [3.0]])
    assert prop.violated_by(x, y).tolist() == [True, False, True, False]


def test_load_gzip_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "p.vnnlib.gz"
    path.write_bytes(gzip.compress((DECLS_1_1 + "; comment (\n(assert (<= 0 X_0 1)) ; ) more\n").encode()))
    assert load_property(path).disjuncts[0].ub.tolist() == [1.0]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.vnnlib"
    with pytest.raises(InputFileError) as err:
        load_property(path)
    assert str(err.value) == f"{path}: no such file"


def test_error_from_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.vnnlib"
    path.write_text(DECLS_1_1 + "(assert (<= X_0 1)\n")
    with pytest.raises(PropertyError) as err:
        load_property(path)
    assert str(err.value) == f"{path}:4:1: expected ')' to close '(' opened at 3:1, found end of file"


def test_bad_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "p.vnnlib"
    path.write_bytes(DECLS_1_1.encode() + b"(assert \xff)")
    with pytest.raises(PropertyError) as err:
        load_property(path)
    assert str(err.value) == f"{path}:3:9: expected UTF-8 text, found byte 0xff"


ERRORS = [
    (
        "missing-close",
        DECLS_1_1 + "(assert (<= X_0 1)\n",
        {},
        "4:1: expected ')' to close '(' opened at 3:1, found end of file",
    ),
    ("extra-close", "(declare-const X_0 Real))", {}, "1:25: unexpected ')' with no matching '('"),
    (
        "undeclared",
        DECLS_1_1 + "(assert (<= X_1 1))",
        {},
        "3:13: unknown variable 'X_1'; expected (declare-const X_1 Real) before its use",
    ),
    (
        "output-beyond-network",
        "(declare-const X_0 Real)\n"
        + "".join(f"(declare-const Y_{j} Real)\n" for j in range(5))
        + "(assert (<= Y_10 0))",
        {"n_outputs": 5},
        "7:13: unknown variable 'Y_10'; the network has 5 outputs (Y_0 … Y_4)",
    ),
    (
        "declared-beyond-network",
        "(declare-const X_0 Real)\n(declare-const X_1 Real)",
        {"n_inputs": 1},
        "2:16: unknown variable 'X_1'; the network has 1 input (X_0)",
    ),
    (
        "fewer-than-network",
        DECLS_1_1,
        {"n_inputs": 784},
        "1:1: the network has 784 inputs but the property declares 1 (X_0)",
    ),
    (
        "non-numeric",
        DECLS_1_1 + "(assert (<= X_0 abc))",
        {},
        "3:17: expected a number or a variable X_<i> / Y_<j>, found 'abc'",
    ),
    (
        "nonlinear",
        DECLS_1_1 + "(assert (<= 0 X_0 1))\n(assert (<= (* X_0 Y_0) 1))",
        {},
        "4:13: non-linear product: expected at most one factor of '*' with variables, found 2",
    ),
    ("unbounded", DECLS_1_1 + "\n(assert (>= X_0 0))", {}, "4:1: X_0 has no upper bound"),
    ("no-asserts", DECLS_1_1, {}, "1:1: X_0 has no lower bound"),
    ("bad-type", "(declare-const X_0 Int)", {}, "1:20: expected type 'Real' for X_0, found 'Int'"),
    ("redeclared", DECLS_1_1 + "(declare-const X_0 Real)", {}, "3:16: 'X_0' is already declared at 1:1"),
    (
        "gap",
        DECLS_1_1 + "(declare-const X_2 Real)",
        {},
        "3:1: X_1 is not declared, but X_2 is; inputs must be X_0 … X_2 without gaps",
    ),
    (
        "no-outputs",
        "(declare-const X_0 Real)",
        {},
        "1:1: the property declares no outputs (expected Y_0, Y_1, …)",
    ),
    (
        "bad-name",
        "(declare-const Z_0 Real)",
        {},
        "1:16: expected a variable name X_<i> or Y_<j>, found 'Z_0'",
    ),
    (
        "declare-arity",
        "(declare-const X_0)",
        {},
        "1:1: expected (declare-const <X_i or Y_j> Real), found '(declare-const …)'",
    ),
    (
        "unknown-command",
        "(define-fun f () Real 1)",
        {},
        "1:2: expected 'declare-const' or 'assert', found 'define-fun'",
    ),
    (
        "top-level-atom",
        "hello",
        {},
        "1:1: expected a command like (declare-const X_0 Real) or (assert …), found 'hello'",
    ),
    ("assert-arity", DECLS_1_1 + "(assert)", {}, "3:1: 'assert' takes 1 formula, found 0"),
    (
        "not-a-formula",
        DECLS_1_1 + "(assert (not (<= X_0 1)))",
        {},
        "3:9: expected a formula (and, or, <=, >=, <, >, =), found '(not …)'",
    ),
    ("comparison-arity", DECLS_1_1 + "(assert (<= X_0))", {}, "3:9: '<=' needs at least 2 terms, found 1"),
    (
        "not-a-term",
        DECLS_1_1 + "(assert (<= (exp X_0) 1))",
        {},
        "3:13: expected a term (number, variable, +, -, *, /), found '(exp …)'",
    ),
    (
        "variable-divisor",
        DECLS_1_1 + "(assert (<= (/ 1 X_0) 1))",
        {},
        "3:13: expected nonzero constant divisors in '/', found a variable or 0",
    ),
    (
        "huge-number",
        DECLS_1_1 + "(assert (<= X_0 1e999))",
        {},
        "3:17: number '1e999' is outside the float64 range",
    ),
    (
        "overflow",
        DECLS_1_1 + "(assert (<= (* 1e300 1e300 X_0) 1))",
        {},
        "3:9: a coefficient or constant of this comparison overflows float64",
    ),
    ("too-deep", "(" * 101, {}, "1:101: parentheses nested deeper than 100 levels"),
    (
        "too-many-disjuncts",
        DECLS_1_1 + "(assert (<= 0 X_0 1))\n" + "(assert (or (<= Y_0 0) (<= Y_0 1)))\n" * 17,
        {},
        "20:1: the disjunctive normal form has 131,072 disjuncts here; at most 100,000 are supported",
    ),
]


@pytest.mark.parametrize(("text", "sizes", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_error_message(text: str, sizes: dict[str, int], message: str) -> None:
    with pytest.raises(PropertyError) as err:
        parse_vnnlib(text, "p.vnnlib", **sizes)
    assert str(err.value) == f"p.vnnlib:{message}"


def test_deep_nesting_never_recurses() -> None:
    with pytest.raises(PropertyError, match="nested deeper"):
        parse_vnnlib("(assert " + "(and " * 100_000 + ")" * 100_001)
    formula = "(and " * 90 + "(<= 0 X_0 1)" + ")" * 90
    assert len(parse1(f"(assert {formula})").disjuncts) == 1


def test_describe_is_short() -> None:
    assert sexpr.describe(sexpr.Atom("a" * 100, 0)) == "'" + "a" * 40 + "…'"
    assert sexpr.describe(sexpr.SList((), 0)) == "'()'"
    assert sexpr.describe(None) == "end of list"


def test_wide_dnf_is_refused_before_it_is_built() -> None:
    box = " ".join(f"(<= 0 X_0 {i + 1})" for i in range(2000))
    ors = " ".join(["(or (<= Y_0 0) (<= Y_0 1))"] * 15)
    with pytest.raises(PropertyError, match=r"16,384 disjuncts of up to 4,014 comparisons here"):
        parse1(f"(assert (and {box} {ors}))")
