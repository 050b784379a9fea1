"""The clpq backend: exact arithmetic, the written program, precision, availability and errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner

from nnverify.backends import get_backend
from nnverify.backends.base import SolveStatus
from nnverify.cli import main
from nnverify.encode.eliminate import Eliminator
from nnverify.encode.problem import Problem
from nnverify.encode.prolog import Precision, number, outward, write_program
from nnverify.errors import BackendUnavailableError
from nnverify.options import Options

pytestmark = pytest.mark.usefixtures("clpq_ready")


def _sum_problem(limit: float) -> Problem:
    """``y = 0.1 a + 0.2 a`` with ``a = 1`` and ``y <= limit``. In exact arithmetic on the float64 values,
    y = 0.3 + 2**-55 (Fraction(0.1) + Fraction(0.2) > Fraction(0.3)); floating-point solvers see y = 0.3."""
    p = Problem()
    a = p.add_var(1.0, 1.0, name="a")
    y = p.add_var(-10.0, 10.0, name="y")
    p.add_row(np.array([y, a, a]), np.array([1.0, -0.1, -0.2]), 0.0, 0.0)
    p.add_row(np.array([y]), np.array([1.0]), -np.inf, limit)
    return p


def test_exact_arithmetic_decides_what_floating_point_cannot() -> None:
    gap = Fraction(0.1) + Fraction(0.2) - Fraction(0.3)
    assert gap == Fraction(1, 2**55)
    assert get_backend("clpq").solve(_sum_problem(0.3), timeout_s=30).status is SolveStatus.INFEASIBLE
    assert get_backend("highs").solve(_sum_problem(0.3), timeout_s=30).status is SolveStatus.FEASIBLE  # tolerance
    just_enough = float(Fraction(0.3) + gap)  # representable: 0.3's successor is 2**-54 away, so round up
    assert Fraction(just_enough) >= Fraction(0.3) + gap
    assert get_backend("clpq").solve(_sum_problem(just_enough), timeout_s=30).status is SolveStatus.FEASIBLE


def test_float_precision_runs_on_clpr() -> None:
    backend = get_backend("clpq", Options(precision="float"))
    assert not backend.exact and get_backend("clpq").exact
    result = backend.solve(_sum_problem(0.31), timeout_s=30)
    assert result.status is SolveStatus.FEASIBLE and result.note == "clpq (float)"
    assert ":- use_module(library(clpr))." in write_program(_sum_problem(0.3), Precision.FLOAT).text


def test_numbers_are_the_exact_values_of_the_floats() -> None:
    w = float(np.float32(0.1))
    assert number(w, Precision.EXACT) == "13421773r134217728"
    assert Fraction(13421773, 134217728) == Fraction(w)
    assert number(-3.0, Precision.EXACT) == "-3"
    assert number(1e-5, Precision.FLOAT) == "1.0e-05"
    assert number(2.5, Precision.FLOAT) == "2.5"


@pytest.mark.parametrize(("lo", "hi"), [(-0.7905391, 0.1028281), (1e-9, 3.3), (-12345.678, -0.001), (0.0, 1.0)])
def test_outward_rounding_widens_to_short_numbers(lo: float, hi: float) -> None:
    a, b = outward(lo, hi)
    assert a <= lo and b >= hi
    for value in (a, b):
        numerator = abs(Fraction(value).numerator)
        odd_part = numerator // (numerator & -numerator) if numerator else 0
        assert odd_part.bit_length() <= 13  # 12 significant bits (13 when rounding carried)


def _chain() -> tuple[Problem, list[int]]:
    """x in [-1, 1]^2 -> h = W x + b -> relu (one stable active, one stable inactive, one unstable) -> o."""
    p = Problem(implied_bounds=True)
    x = p.add_vars(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), prefix="x")
    h = p.add_vars(np.array([1.0, -5.0, -1.0]), np.array([3.0, -1.0, 1.0]), prefix="h")
    w = np.array([[0.5, 0.25], [0.5, -0.5], [1.0, 0.0]])
    bias = np.array([2.0, -3.0, 0.0])
    for i in range(3):
        p.add_row(np.array([h[i], x[0], x[1]]), np.array([1.0, -w[i, 0], -w[i, 1]]), bias[i], bias[i])
    r = p.add_vars(np.zeros(3), np.array([3.0, 0.0, 1.0]), prefix="r")
    for i in range(3):
        p.add_relu(int(h[i]), int(r[i]))
    o = p.add_var(-10.0, 10.0, name="o")
    p.add_row(np.array([o, r[0], r[1], r[2]]), np.array([1.0, -1.0, -2.0, -3.0]), 0.125, 0.125)
    return p, [int(v) for v in (*x, *h, *r, o)]


def test_elimination_rewrites_exactly_over_the_kept_variables() -> None:
    p, v = _chain()
    elim = Eliminator(p)
    assert elim.kept() == [v[0], v[1], v[4], v[7]]  # inputs, the unstable ReLU's input and output
    terms, const = elim.form(np.array([v[8]]), np.array([1.0]))  # o = h0 + 3 r2 + 0.125 = 0.5x0 + 0.25x1 + ...
    assert terms == {v[0]: Fraction(1, 2), v[1]: Fraction(1, 4), v[7]: Fraction(3)}
    assert const == Fraction(17, 8)
    values = elim.fill({v[0]: 0.5, v[1]: -1.0, v[4]: 0.5, v[7]: 0.5})
    assert values[v[2]] == 2.0 and values[v[5]] == 2.0 and values[v[6]] == 0.0 and values[v[8]] == 3.625


def test_program_is_commented_and_runnable_by_the_backend() -> None:
    p, v = _chain()
    p.begin_section("the unsafe set")
    p.add_row(np.array([v[8]]), np.array([1.0]), 3.5, np.inf)
    text = write_program(p, header=["a test"]).text
    assert "%% a test" in text and "%% the unsafe set" in text and "% unstable: input in [-1, 1]" in text
    assert "relu(H_2, R_2, true)" in text
    result = get_backend("clpq").solve(p, timeout_s=30)
    assert result.status is SolveStatus.FEASIBLE and result.values is not None
    x0, x1 = result.values[v[0]], result.values[v[1]]
    out = 0.5 * x0 + 0.25 * x1 + 2.0 + 3.0 * max(x0, 0.0) + 0.125
    assert out >= 3.5 - 1e-12 and result.values[v[8]] == pytest.approx(out)
    p.rows[-1] = type(p.rows[-1])(p.rows[-1].idx, p.rows[-1].coef, 6.0, np.inf)  # max is 0.75 + 2 + 3 + 0.125
    assert get_backend("clpq").solve(p, timeout_s=30).status is SolveStatus.INFEASIBLE


def test_unavailable_clpq_is_a_clear_error_with_exit_4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None if name == "janus_swi" else object())
    with pytest.raises(
        BackendUnavailableError, match=r"backend 'clpq' is not installed: it needs SWI-Prolog >= 9\.1\.12"
    ):
        get_backend("clpq")
    net = "networks/ACASXU_run2a_1_1_batch_2000.onnx"
    result = CliRunner().invoke(main, ["check", net, "properties/prop_3.vnnlib", "--backend", "clpq"])
    assert result.exit_code == 4
    assert "Error: backend 'clpq' is not installed" in result.output and "make setup" in result.output
