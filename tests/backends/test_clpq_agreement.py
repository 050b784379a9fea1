"""clpq (exact rationals) and HiGHS reach the same verdict on random small ReLU networks, and every
counterexample either of them returns is a real one.

Each case is a random network (2-4 inputs, 1-3 ReLU layers of at most 8 neurons, 1-3 outputs, float32
weights) and a random box property whose unsafe set is one or two disjuncts of 1-2 linear output rows over
the same input box. The thresholds are set from sampled outputs so that about half the cases are sat. The
query is built the way ``search/exact.py`` builds it: sound interval bounds of every layer, then
``encode_query``.

The generator lives here, not in ``bench/``: ``bench/clpq_agreement.py`` loads this module by its path and
runs the same cases (1,000 by default, also through clpq's float precision) with timings.

Without SWI-Prolog/janus-swi the tests skip, or fail under ``NNVERIFY_REQUIRE_CLPQ=1`` (``make test`` sets it): the
``clpq_ready`` fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from nnverify.backends import Backend, get_backend
from nnverify.backends.base import BackendResult, SolveStatus
from nnverify.bounds.interval import interval_bounds
from nnverify.encode.network import Encoding, encode_query
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, Layer, LayerGraph
from nnverify.graph.ops.base import ActKind
from nnverify.options import Options
from nnverify.spec.property import Disjunct, Property

#: Number of random cases the test runs, and the seed they are drawn from (case ``i`` uses ``(SEED, i)``).
N_CASES = 200
SEED = 20261123
#: Per solver call; the cases take milliseconds, so reaching this is a failure, not a slow machine.
TIMEOUT_S = 60.0
#: How far a HiGHS counterexample may miss the unsafe set (MILP feasibility tolerances are ~1e-6 .. 1e-7).
HIGHS_ATOL = 1e-6
#: How far a clpq counterexample may miss it: the point is an exact vertex, only rounded to float64 and
#: evaluated in float64.
CLPQ_ATOL = 1e-9
#: Margins of the sound bounds (the defaults of ``Options``; see ``bounds/interval.py``).
MARGINS = {"margin_rel": 1e-9, "margin_abs": 1e-12}
#: Points sampled in the box to place the threshold of the unsafe set.
N_SAMPLES = 512
#: Least distance (in units of a row's sampled spread, itself at least 1e-2) between the threshold and the best
#: sampled point. Without it a network whose output is constant on the box (every ReLU dead) puts the threshold
#: on that constant, and rounding it to float32 leaves the case unsat by ~1e-8: clpq then rightly says
#: INFEASIBLE and HiGHS, within its feasibility tolerance, FEASIBLE.
LEVEL_GAP = 0.01


# --- The generator -----------------------------------------------------------------------------------------


def f32(values: np.ndarray | float) -> np.ndarray:
    """float64 values that are exactly float32 numbers (as the weights of a real network are)."""
    return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


@dataclass(frozen=True, slots=True)
class Case:
    """One random network and property; ``index`` and ``seed`` regenerate it."""

    seed: int
    index: int
    graph: LayerGraph
    prop: Property

    @property
    def lb(self) -> np.ndarray:
        return self.prop.disjuncts[0].lb

    @property
    def ub(self) -> np.ndarray:
        return self.prop.disjuncts[0].ub

    @property
    def widths(self) -> list[int]:
        """Input size, hidden widths, output size."""
        return [self.graph.n_inputs] + [layer.size for layer in self.graph.layers if isinstance(layer, AffineLayer)]

    @property
    def n_rows(self) -> int:
        return sum(d.n_rows for d in self.prop.disjuncts)

    def describe(self) -> str:
        """Everything needed to rebuild the case by hand: the weights (float32 values) and the property."""
        lines = [f"case seed={self.seed} index={self.index}: widths {self.widths}"]
        with np.printoptions(precision=9, floatmode="unique", linewidth=120):
            for k, layer in enumerate(self.graph.layers):
                if isinstance(layer, AffineLayer):
                    lines.append(f"layer {k} affine of {layer.sources}: W = {layer.weights[0].tolist()!r}")
                    lines.append(f"    b = {layer.bias.tolist()!r}")
                elif isinstance(layer, ActivationLayer):
                    lines.append(f"layer {k} {layer.kind.value} of layer {layer.source}")
        lines.append("property (VNN-LIB):")
        lines.append(self.prop.to_vnnlib().rstrip())
        return "\n".join(lines)


def random_graph(rng: np.random.Generator) -> LayerGraph:
    """2-4 inputs, 1-3 hidden ReLU layers of 2-8 neurons, 1-3 outputs; He-scaled float32 weights."""
    widths = [int(rng.integers(2, 5))]
    widths += [int(rng.integers(2, 9)) for _ in range(int(rng.integers(1, 4)))]
    widths.append(int(rng.integers(1, 4)))
    layers: list[Layer] = [InputLayer(widths[0])]
    for k, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        w = f32(rng.normal(scale=np.sqrt(2.0 / fan_in), size=(fan_out, fan_in)))
        b = f32(rng.normal(scale=0.3, size=fan_out))
        layers.append(AffineLayer(f"fc{k}", (len(layers) - 1,), (w,), b))
        if k < len(widths) - 2:
            layers.append(ActivationLayer(f"relu{k}", len(layers) - 1, ActKind.RELU, fan_out))
    return LayerGraph(tuple(layers), len(layers) - 1)


def random_rows(rng: np.random.Generator, n_outputs: int) -> np.ndarray:
    """1-2 output rows ``a_y``: a single output, a difference of two (VNN-COMP style), or dense float32."""
    rows = []
    for _ in range(int(rng.integers(1, 3))):
        kind = rng.integers(3)
        row = np.zeros(n_outputs)
        if kind == 0 or n_outputs == 1:
            row[rng.integers(n_outputs)] = rng.choice([-1.0, 1.0])
        elif kind == 1:
            i, j = rng.choice(n_outputs, size=2, replace=False)
            row[i], row[j] = 1.0, -1.0
        else:
            row = f32(rng.normal(size=n_outputs))
        rows.append(row)
    return np.array(rows)


def random_property(rng: np.random.Generator, graph: LayerGraph) -> Property:
    """A float32 input box and an unsafe set of 1 or 2 disjuncts (same box) of output rows ``a_y y <= b``.

    Thresholds: each row is normalised by the median and spread of its sampled values, a disjunct's score is
    its worst normalised row, the property's score the best disjunct's. All disjuncts share one level ``t``
    of that score, at least ``LEVEL_GAP`` below the best sampled score: sampled points never reach it, so whether the
    real minimum does is up to the solvers (about half of the cases).
    """
    n, m = graph.n_inputs, graph.n_outputs
    center = rng.uniform(-1.0, 1.0, size=n)
    radius = rng.uniform(0.05, 0.6, size=n)
    lb, ub = f32(center - radius), f32(center + radius)
    n_disjuncts = 1 if rng.random() < 0.6 else 2
    a_ys = [random_rows(rng, m) for _ in range(n_disjuncts)]
    xs = rng.uniform(lb, ub, size=(N_SAMPLES, n))
    ys = graph.eval(xs)
    med, spread, scores = [], [], []
    for a_y in a_ys:
        values = ys @ a_y.T
        med.append(np.median(values, axis=0))
        spread.append(np.maximum(values.max(axis=0) - values.min(axis=0), 1e-2))
        scores.append(np.max((values - med[-1]) / spread[-1], axis=1))
    score = np.min(scores, axis=0)
    level = score.min() - LEVEL_GAP - rng.uniform(0.0, 0.1) * (np.median(score) - score.min())
    disjuncts = []
    for a_y, mid, width in zip(a_ys, med, spread, strict=True):
        b = f32(mid + level * width)
        disjuncts.append(Disjunct(lb, ub, np.zeros((a_y.shape[0], n)), a_y, b))
    return Property(n, m, tuple(disjuncts))


def random_case(seed: int, index: int) -> Case:
    """Case ``index`` of the stream ``seed`` (independent of every other case)."""
    rng = np.random.default_rng([seed, index])
    graph = random_graph(rng)
    return Case(seed, index, graph, random_property(rng, graph))


def encode_case(case: Case) -> Encoding:
    """The query as ``search/exact.py`` poses it: sound per-layer interval bounds, then ``encode_query``."""
    bounds = interval_bounds(case.graph, case.lb, case.ub, **MARGINS)
    lbs, ubs = bounds.box(0)
    return encode_query(case.graph, lbs, ubs, list(case.prop.disjuncts))


def witness_problem(case: Case, x: np.ndarray, atol: float) -> str | None:
    """Why ``x`` is not a counterexample of the case (within ``atol``), or None if it is.

    The box is checked without tolerance: the box bounds are floats, so an exact point in the box rounds to
    a float in the box; HiGHS points may leave it by ``atol``.
    """
    x = np.asarray(x, dtype=np.float64)[None, :]
    y = case.graph.eval(x)
    box_atol = 0.0 if atol <= CLPQ_ATOL else atol
    if not case.prop.disjuncts[0].contains_input(x, box_atol)[0]:
        below, above = np.max(case.lb - x[0]), np.max(x[0] - case.ub)
        return f"x = {x[0].tolist()} is outside the box (by {max(below, above):.3g})"
    if not case.prop.violated_by(x, y, atol)[0]:
        slack = min(float(d.slack(x, y)[0]) for d in case.prop.disjuncts)
        return f"x = {x[0].tolist()} gives y = {y[0].tolist()}, outside the unsafe set (slack {slack:.3g})"
    return None


# --- The test ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clpq(clpq_ready: None) -> Backend:
    """The exact clpq backend (``clpq_ready``, in ``tests/conftest.py``, skips without it, or fails if
    ``NNVERIFY_REQUIRE_CLPQ=1``)."""
    return get_backend("clpq", Options(precision="exact"))


#: Verdicts already computed, by case index: the agreement test and the balance test share them.
_RESULTS: dict[int, tuple[Case, BackendResult, BackendResult, Encoding]] = {}


def _results(index: int, clpq: Backend) -> tuple[Case, BackendResult, BackendResult, Encoding]:
    """The case, clpq's and HiGHS's results on it, and its encoding (each case is solved once per session)."""
    if index not in _RESULTS:
        case = random_case(SEED, index)
        enc = encode_case(case)
        exact = clpq.solve(enc.problem, timeout_s=TIMEOUT_S)
        _RESULTS[index] = case, exact, get_backend("highs").solve(enc.problem, timeout_s=TIMEOUT_S), enc
    return _RESULTS[index]


DECIDED = (SolveStatus.FEASIBLE, SolveStatus.INFEASIBLE)


@pytest.mark.parametrize("index", range(N_CASES), ids=lambda i: f"case{i:03d}")
def test_clpq_and_highs_agree(clpq: Backend, index: int) -> None:
    case, exact, milp, enc = _results(index, clpq)
    assert exact.status in DECIDED, f"clpq: {exact.status} ({exact.note})\n{case.describe()}"
    assert milp.status in DECIDED, f"highs: {milp.status} ({milp.note})\n{case.describe()}"
    assert exact.status is milp.status, (
        f"clpq says {exact.status} ({exact.note}), HiGHS says {milp.status} ({milp.note})\n{case.describe()}"
    )
    for name, result, atol in (("clpq", exact, CLPQ_ATOL), ("highs", milp, HIGHS_ATOL)):
        if result.status is SolveStatus.FEASIBLE:
            assert result.values is not None
            problem = witness_problem(case, result.values[enc.x_idx], atol)
            assert problem is None, f"{name} counterexample is not one: {problem}\n{case.describe()}"


def test_cases_are_a_mix_of_sat_and_unsat(clpq: Backend) -> None:
    """The agreement test would pass vacuously if (almost) every case had the same answer."""
    statuses = [_results(i, clpq)[1].status for i in range(N_CASES)]
    sat = statuses.count(SolveStatus.FEASIBLE)
    unsat = statuses.count(SolveStatus.INFEASIBLE)
    assert sat >= 0.3 * N_CASES and unsat >= 0.3 * N_CASES, f"{sat} sat, {unsat} unsat of {N_CASES}"


def test_cases_are_deterministic_and_float32() -> None:
    first, again = random_case(SEED, 7), random_case(SEED, 7)
    assert first.describe() == again.describe()
    for layer in first.graph.layers:
        if isinstance(layer, AffineLayer):
            assert np.array_equal(f32(layer.weights[0]), layer.weights[0])
            assert np.array_equal(f32(layer.bias), layer.bias)
