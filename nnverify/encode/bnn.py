"""Exact encoding of binarized networks over integer inputs: Sign neurons as reified integer constraints.

Applies when every activation of the network is ONNX ``Sign`` and every input is integer-valued (e.g. pixels
in {0, 1}). Each Sign neuron's input is an affine function of integer values (the network input, or earlier
Sign outputs in {-1, 0, 1}); its coefficients are scaled exactly (``fractions.Fraction``) to coprime integers,
which folds a BatchNormalization and the bias into one integer threshold. With ``z`` that integer expression,
two Booleans ``p = [z >= 1]`` and ``n = [z <= -1]`` give the neuron's output ``p - n`` exactly, including
ONNX's ``Sign(0) = 0``. For the usual block (±1 weights, BatchNormalization, Sign) this is the reified
cardinality constraint of Narodytska, Kasiviswanathan, Ryzhyk, Sagiv and Walsh, "Verifying Properties of
Binarized Deep Neural Networks", AAAI 2018 (§4: neuron on ⇔ Σ_{a=+1} v − Σ_{a=−1} v ≥ ⌈threshold⌉).

The reification is written as integer rows with exact big-M constants (the expression's integer range), so the
result is an ordinary ``Problem`` with integer variables: the MILP backends, clpq and CP-SAT all take it. The
network's output is never a variable: the property's rows are rewritten over the Booleans, again exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from nnverify.budget import Budget
from nnverify.encode.problem import Problem, Row
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.spec.property import Disjunct

#: A linear expression over problem variables: (terms, constant).
Form = tuple[dict[int, Fraction], Fraction]

#: Integer coefficients must stay exactly representable in float64 rows (and in CP-SAT's int64).
MAX_COEFFICIENT = 2**52


class BnnEncodingError(ValueError):
    """The network or its inputs do not fit the exact BNN encoding (the caller falls back or reports it)."""


@dataclass(frozen=True, slots=True)
class BnnEncoding:
    """The problem, the input variables, and every layer's value as an exact form over the problem's variables."""

    problem: Problem
    x_idx: np.ndarray
    forms: list[list[Form]]

    def output_forms(self, graph: LayerGraph) -> list[Form]:
        return self.forms[graph.output]


def is_bnn(graph: LayerGraph) -> bool:
    """True if the network has at least one activation and all of them are Sign."""
    acts = [layer for layer in graph.layers if isinstance(layer, ActivationLayer)]
    return bool(acts) and all(layer.kind is ActKind.SIGN for layer in acts)


def _fraction(value: float) -> Fraction:
    return Fraction(*float(value).as_integer_ratio())


def integer_form(form: Form) -> tuple[dict[int, int], Fraction, Fraction]:
    """``form = (sum c_v v + q) / scale`` with coprime integers ``c``, a rational ``q`` and ``scale > 0``.

    Only the variables' coefficients are made integers: the constant stays rational, so a BatchNormalization's
    arbitrary float64 shift never inflates the integers (a ±1 block keeps coefficients ±1).
    """
    terms, const = form
    lcm = 1
    for v in terms.values():
        lcm = lcm * v.denominator // math.gcd(lcm, v.denominator)
    ints = {k: int(v * lcm) for k, v in terms.items()}
    gcd = 0
    for c in ints.values():
        gcd = math.gcd(gcd, c)
    gcd = gcd or 1
    scale = Fraction(lcm, gcd)
    return {k: v // gcd for k, v in ints.items()}, const * scale, scale


def _range(problem: Problem, coefs: dict[int, int]) -> tuple[int, int]:
    """Exact integer minimum and maximum of ``sum c_v v`` over the variables' integer bounds."""
    lo = hi = 0
    for v, c in coefs.items():
        a, b = c * int(problem.lb[v]), c * int(problem.ub[v])
        lo, hi = lo + min(a, b), hi + max(a, b)
    return lo, hi


def _row(problem: Problem, coefs: dict[int, int], lo: float, hi: float) -> None:
    big = max((abs(c) for c in coefs.values()), default=0)
    if big > MAX_COEFFICIENT:
        raise BnnEncodingError(f"an integer coefficient ({big}) is too large to encode exactly")
    idx = np.array(list(coefs), dtype=np.int64)
    problem.add_row(idx, np.array([float(c) for c in coefs.values()]), lo, hi)


def _sign_neuron(problem: Problem, form: Form, name: str) -> Form:
    """The neuron's output ``sign(z)`` as a form over new Booleans, ``z`` its pre-activation.

    With ``z = (t + q) / scale``, ``t`` an integer expression: ``z > 0`` iff ``t >= floor(-q) + 1`` and ``z < 0``
    iff ``t <= ceil(-q) - 1`` (the neuron's integer thresholds). ``t`` becomes one integer variable (one long
    row), and the reification rows are short rows over ``t`` and a Boolean: every solver sees each long sum
    once (CP-SAT's presolve spent most of its time comparing the four long rows per neuron of the direct form).
    When ``q`` is not an integer (the usual BatchNormalization shift) ``z = 0`` is impossible and one Boolean
    ``p = [z > 0]`` gives the output ``2p - 1``; otherwise ``p`` and ``n = [z < 0]`` give ``p - n``.
    """
    coefs, q, _ = integer_form(form)
    lo, hi = _range(problem, coefs)
    pos, neg = math.floor(-q) + 1, math.ceil(-q) - 1
    if lo >= pos:
        return {}, Fraction(1)
    if hi <= neg:
        return {}, Fraction(-1)
    if lo == hi:  # t is constant and z = 0
        return {}, Fraction(0)
    if len(coefs) == 1 and next(iter(coefs.values())) == 1:
        t = next(iter(coefs))
    else:
        t = problem.add_var(lo, hi, integer=True, name=f"{name}_sum")
        _row(problem, coefs | {t: -1}, 0, 0)
    p = problem.add_var(0, 1 if hi >= pos else 0, integer=True, name=f"{name}_pos")
    _row(problem, {t: 1, p: -(pos - lo)}, lo, np.inf)  # p = 1 => t >= pos
    _row(problem, {t: 1, p: -(hi - pos + 1)}, -np.inf, pos - 1)  # p = 0 => t <= pos - 1
    if pos == neg + 1:  # z = 0 is impossible: n = 1 - p
        return {p: Fraction(2)}, Fraction(-1)
    n = problem.add_var(0, 1 if lo <= neg else 0, integer=True, name=f"{name}_neg")
    _row(problem, {t: 1, n: hi - neg}, -np.inf, hi)  # n = 1 => t <= neg
    _row(problem, {t: 1, n: neg + 1 - lo}, neg + 1, np.inf)  # n = 0 => t >= neg + 1
    return {p: Fraction(1), n: Fraction(-1)}, Fraction(0)


def _affine(layer: AffineLayer, forms: list[list[Form]], budget: Budget | None = None) -> list[Form]:
    out: list[Form] = []
    for i in range(layer.size):
        if budget is not None:
            budget.check("encoding the network")
        terms: dict[int, Fraction] = {}
        const = _fraction(layer.bias[i])
        for src, w in zip(layer.sources, layer.weights, strict=True):
            for j in np.nonzero(w[i])[0]:
                a = _fraction(w[i, j])
                src_terms, src_const = forms[src][int(j)]
                const += a * src_const
                for v, c in src_terms.items():
                    terms[v] = terms.get(v, Fraction(0)) + a * c
        out.append(({v: c for v, c in terms.items() if c}, const))
    return out


def encode_bnn(graph: LayerGraph, lb: np.ndarray, ub: np.ndarray, *, budget: Budget | None = None) -> BnnEncoding:
    """The network over integer inputs ``lb <= x <= ub`` (integers), with Sign neurons encoded exactly.

    ``budget`` (optional) is checked once per neuron (``BudgetExpired`` once it runs out).

    Raises:
        BnnEncodingError: a non-Sign activation, or non-integer input bounds.
    """
    if not is_bnn(graph):
        raise BnnEncodingError("the exact BNN encoding needs a network whose activations are all Sign")
    if np.any(lb != np.round(lb)) or np.any(ub != np.round(ub)):
        raise BnnEncodingError("the exact BNN encoding needs integer input bounds (e.g. pixels in {0, 1})")
    problem = Problem()
    forms: list[list[Form]] = []
    x_idx = np.arange(0)
    for k, layer in enumerate(graph.layers):
        if isinstance(layer, InputLayer):
            problem.begin_section("network input (integers)")
            x_idx = np.array(
                [
                    problem.add_var(lo, hi, integer=True, name=f"x_{i}")
                    for i, (lo, hi) in enumerate(zip(lb, ub, strict=True))
                ]
            )
            forms.append([({int(v): Fraction(1)}, Fraction(0)) for v in x_idx])
        elif isinstance(layer, AffineLayer):
            forms.append(_affine(layer, forms, budget))
        else:
            assert isinstance(layer, ActivationLayer)
            problem.begin_section(f"layer {k}: sign of layer {layer.source} (ONNX node '{layer.name}')")
            forms.append([])
            for i, f in enumerate(forms[layer.source]):
                if budget is not None:
                    budget.check("encoding the network")
                forms[-1].append(_sign_neuron(problem, f, f"l{k}_{i}"))
    return BnnEncoding(problem, x_idx, forms)


def disjunct_form_rows(enc: BnnEncoding, graph: LayerGraph, d: Disjunct) -> list[tuple[dict[int, int], int]]:
    """The disjunct's rows ``a_x x + a_y y <= b`` rewritten exactly as integer rows ``sum c v <= rhs``."""
    rows = []
    y_forms = enc.forms[graph.output]
    for r in range(d.n_rows):
        terms: dict[int, Fraction] = {}
        const = Fraction(0)
        for j in np.nonzero(d.a_x[r])[0]:
            v = int(enc.x_idx[j])
            terms[v] = terms.get(v, Fraction(0)) + _fraction(d.a_x[r, j])
        for j in np.nonzero(d.a_y[r])[0]:
            a = _fraction(d.a_y[r, j])
            f_terms, f_const = y_forms[int(j)]
            const += a * f_const
            for v, c in f_terms.items():
                terms[v] = terms.get(v, Fraction(0)) + a * c
        coefs, q, scale = integer_form(({v: c for v, c in terms.items() if c}, const))
        # (sum coefs + q) / scale <= b  <=>  sum coefs <= floor(b * scale - q): the left side is an integer.
        rows.append((coefs, math.floor(_fraction(d.b[r]) * scale - q)))
    return rows


def encode_bnn_query(graph: LayerGraph, disjuncts: list[Disjunct]) -> BnnEncoding:
    """The network over the disjuncts' (shared, integer) input box plus "at least one disjunct holds"."""
    lb, ub = np.ceil(disjuncts[0].lb), np.floor(disjuncts[0].ub)
    enc = encode_bnn(graph, lb, ub)
    problem = enc.problem
    problem.begin_section("the unsafe set (the property's violation)")
    per_disjunct = [disjunct_form_rows(enc, graph, d) for d in disjuncts]
    if len(per_disjunct) == 1:
        for coefs, rhs in per_disjunct[0]:
            _row(problem, coefs, -np.inf, rhs) if coefs else _constant_row(problem, rhs)
        return enc
    terms = []
    for rows in per_disjunct:
        terms.append(
            [
                Row(np.array(list(c), dtype=np.int64), np.array([float(v) for v in c.values()]), -np.inf, float(rhs))
                for c, rhs in rows
            ]
        )
    problem.add_disjunction(terms)
    return enc


def _constant_row(problem: Problem, rhs: int) -> None:
    """A row without variables: ``0 <= rhs`` (infeasible when ``rhs < 0``)."""
    if rhs < 0:
        v = problem.add_var(0, 0, integer=True, name="infeasible")
        problem.add_row(np.array([v]), np.array([1.0]), 1.0, np.inf)
