"""Constrained image generation: porous-media unit cells that a BNN says have the asked-for dispersion.

The query (Korneev et al., SAT 2018) is existential: pixels ``X`` and auxiliary shape variables such that the
shape rules hold (``bnn/shapes.py``) and ``a <= BNN(X) <= b``. ``build_query`` writes it as a discrete query
(``spec/discrete.py``); ``solve_query`` encodes the BNN exactly (``encode/bnn.py``), adds the query's rows and
asks an integer backend (CP-SAT by default); ``count > 1`` blocks each found pixel image and asks again.
Every result is then re-checked outside the solver (``check_image``): flood fill (grains, separation, border),
the network's forward pass on onnxruntime, and the PDE labeller's true coefficient.

Proposals first: ``solve_query`` can take candidate pixel images (``shape_proposals``: random grains grown from
the query's seeds and filtered by the network's float forward pass, ``sampling.py``). Each is handed to the same
exact backend with the pixels fixed, so a proposal is accepted only when the exact encoding of the whole query
accepts it; the full search runs for whatever is still missing. Proposals cannot make an answer wrong, only
faster, and cannot turn a feasible query infeasible (a rejected proposal only means "not this image").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from nnverify.backends.base import Backend, SolveStatus
from nnverify.bnn.sampling import propose
from nnverify.bnn.shapes import ShapeModel, ShapeParams, decode, shape_model
from nnverify.bounds.interval import interval_bounds
from nnverify.budget import Budget, BudgetExpired
from nnverify.encode.bnn import BnnEncoding, encode_bnn, integer_form
from nnverify.graph.layers import LayerGraph
from nnverify.spec.discrete import DiscreteQuery, DiscreteRow, DiscreteVar, write_discrete


@dataclass(frozen=True, slots=True)
class GenerateParams:
    """What to generate: shape parameters and the target interval ``[low, high]`` of the network's output."""

    shape: ShapeParams
    low: float
    high: float


def build_query(params: GenerateParams) -> tuple[str, ShapeModel]:
    """The query text (nnverify's VNN-LIB extension) and the shape model it was written from."""
    model = shape_model(params.shape)
    variables = [DiscreteVar(v.name, "Bool" if (v.lb, v.ub) == (0, 1) else "Int", v.lb, v.ub) for v in model.variables]
    variables.append(DiscreteVar("Y_0", "Real", -math.inf, math.inf))
    rows = [
        DiscreteRow(
            tuple((n, float(c)) for n, c in row.terms),
            -math.inf if row.lo is None else row.lo,
            math.inf if row.hi is None else row.hi,
        )
        for row in model.linear
    ]
    rows.append(DiscreteRow((("Y_0", 1.0),), params.low, params.high))
    s = params.shape
    header = [
        f"{s.grains} grains on a {s.size}x{s.size} periodic cell, seeds {list(model.seeds)}, compactness "
        f"{s.compactness}, solid fraction {s.solid_fraction}",
        f"the network's output Y_0 in [{params.low}, {params.high}]",
    ]
    clauses = [(c.literals, c.comment) for c in model.clauses]
    return "".join(write_discrete(variables, rows, clauses, header)), model


@dataclass(slots=True)
class Generated:
    """The outcome: ``status`` (FEASIBLE: ``images`` found), the solver's seconds, and how it was decided."""

    status: SolveStatus
    images: list[np.ndarray] = field(default_factory=list)
    values: list[dict[str, int]] = field(default_factory=list)
    seconds: float = 0.0
    method: str = ""
    note: str = ""
    proposals_tried: int = 0
    proposals_accepted: int = 0


def output_range(graph: LayerGraph, query: DiscreteQuery) -> tuple[float, float]:
    """Sound interval bounds of output 0 over the query's input box (the shape rules ignored)."""
    lb = np.array([query.var(f"X_{i}").lb for i in range(query.n_inputs)])
    ub = np.array([query.var(f"X_{i}").ub for i in range(query.n_inputs)])
    bounds = interval_bounds(graph, lb, ub, margin_rel=1e-9, margin_abs=1e-12)
    return float(bounds.lb[graph.output][0][0]), float(bounds.ub[graph.output][0][0])


def _add_rows(enc: BnnEncoding, graph: LayerGraph, query: DiscreteQuery, budget: Budget) -> dict[str, int]:
    """Add the query's variables and rows to the encoding's problem; the index of every named variable."""
    problem = enc.problem
    index = {f"X_{i}": int(v) for i, v in enumerate(enc.x_idx)}
    problem.begin_section("the query's constraints")
    for v in query.variables:
        if v.name.startswith("A_"):
            index[v.name] = problem.add_var(v.lb, v.ub, integer=True, name=v.name)
    y_forms = enc.forms[graph.output]
    for row in query.rows:
        budget.check("adding the query's rows")
        terms: dict[int, Fraction] = {}
        const = Fraction(0)
        for name, coef in row.terms:
            c = Fraction(coef)
            if name.startswith("Y_"):
                f_terms, f_const = y_forms[int(name[2:])]
                const += c * f_const
                for k, a in f_terms.items():
                    terms[k] = terms.get(k, Fraction(0)) + c * a
            else:
                terms[index[name]] = terms.get(index[name], Fraction(0)) + c
        coefs, q, scale = integer_form(({k: a for k, a in terms.items() if a}, const))
        # lo <= (sum coefs + q) / scale <= hi, the sum an integer: round the bounds inwards, exactly.
        lo = math.ceil(Fraction(row.lo) * scale - q) if math.isfinite(row.lo) else -math.inf
        hi = math.floor(Fraction(row.hi) * scale - q) if math.isfinite(row.hi) else math.inf
        if not coefs:
            if lo > 0 or hi < 0:
                dead = problem.add_var(0, 0, integer=True, name="unsatisfiable_row")
                problem.add_row(np.array([dead]), np.array([1.0]), 1.0, 1.0)
            continue
        problem.add_row(np.array(list(coefs)), np.array([float(c) for c in coefs.values()]), lo, hi)
    return index


#: At most this many proposals are handed to the exact backend per query, ...
MAX_PROPOSALS = 16
#: ... each with this time limit (seconds; with the pixels fixed the backend decides in well under one) ...
PROPOSAL_TIMEOUT_S = 5.0
#: ... and together within this share of the query's time limit.
PROPOSAL_SHARE = 0.25


def shape_proposals(
    graph: LayerGraph,
    model: ShapeModel,
    params: GenerateParams,
    *,
    seed: int | None = None,
    budget: Budget | None = None,
) -> Iterator[np.ndarray]:
    """Pixel vectors of random cells that obey the shape rules and whose float output lies in the interval.

    ``budget``: growing stops with ``BudgetExpired`` once it runs out (``solve_query`` hands its proposal share).
    """
    rng = np.random.default_rng(params.shape.random_seed if seed is None else seed)
    for p in propose(graph, params.shape, model.seeds, params.low, params.high, rng=rng, budget=budget):
        yield p.pixels


#: Candidate pixel vectors, or a function of the proposal phase's budget that returns them (``shape_proposals``).
Proposals = Iterable[np.ndarray] | Callable[[Budget], Iterable[np.ndarray]]


def _confirm(enc: BnnEncoding, backend: Backend, pixels: np.ndarray, timeout_s: float) -> np.ndarray | None:
    """The exact backend's solution of the query with the pixels fixed to ``pixels``, or ``None``."""
    problem = enc.problem
    saved = [(problem.lb[k], problem.ub[k]) for k in enc.x_idx]
    for k, v in zip(enc.x_idx, pixels, strict=True):
        if not problem.lb[k] <= v <= problem.ub[k]:
            return None
        problem.lb[k] = problem.ub[k] = float(v)
    try:
        result = backend.solve(problem, timeout_s=timeout_s)
    finally:
        for k, (lo, hi) in zip(enc.x_idx, saved, strict=True):
            problem.lb[k], problem.ub[k] = lo, hi
    return result.values if result.status is SolveStatus.FEASIBLE else None


@dataclass(slots=True)
class _Search:
    """The encoded query and the solutions found so far (each found pixel image is blocked)."""

    enc: BnnEncoding
    index: dict[str, int]
    backend: Backend
    count: int
    out: Generated

    def accept(self, values_vec: np.ndarray) -> None:
        values = {name: round(values_vec[k]) for name, k in self.index.items()}
        pixels = np.array([values[f"X_{i}"] for i in range(len(self.enc.x_idx))])
        self.out.status = SolveStatus.FEASIBLE
        self.out.images.append(pixels)
        self.out.values.append(values)
        # Block this pixel image: at least one pixel differs.
        coefs = np.where(pixels == 1, -1.0, 1.0)
        self.enc.problem.add_row(self.enc.x_idx.copy(), coefs, 1.0 - float(pixels.sum()), np.inf)

    def try_proposals(self, proposals: Proposals, share: Budget) -> None:
        """Hand proposals to the exact backend, one at a time, until enough are found or ``share`` runs out."""
        out = self.out
        source = iter(proposals(share) if callable(proposals) else proposals)
        while len(out.images) < self.count and out.proposals_tried < max(MAX_PROPOSALS, 2 * self.count):
            try:
                share.check("proposing cells")
                pixels = next(source)
            except (StopIteration, BudgetExpired):
                break
            out.proposals_tried += 1
            found = _confirm(self.enc, self.backend, pixels, min(PROPOSAL_TIMEOUT_S, share.remaining()))
            if found is not None:
                out.proposals_accepted += 1
                self.accept(found)
        if out.images and len(out.images) >= self.count:
            out.method = f"proposal+{self.backend.name}"

    def search(self, budget: Budget) -> None:
        """The full search for the solutions still missing, within ``budget``."""
        out = self.out
        while len(out.images) < self.count:
            if budget.expired():
                if not out.images:
                    out.status, out.note = SolveStatus.TIMEOUT, str(BudgetExpired("searching"))
                break
            result = self.backend.solve(self.enc.problem, timeout_s=budget.remaining())
            if result.status is not SolveStatus.FEASIBLE or result.values is None:
                if not out.images:
                    out.status, out.note = result.status, result.note
                break
            self.accept(result.values)


def solve_query(
    graph: LayerGraph,
    query: DiscreteQuery,
    backend: Backend,
    *,
    count: int = 1,
    timeout_s: float = 60.0,
    budget: Budget | None = None,
    proposals: Proposals | None = None,
) -> Generated:
    """Up to ``count`` solutions with pairwise different pixel images; INFEASIBLE if there is none.

    Every phase keeps ``budget`` (default: ``timeout_s`` from now) and answers TIMEOUT when it runs out.
    ``proposals`` (optional): candidate pixel vectors tried first, each exactly (module docstring), within
    ``PROPOSAL_SHARE`` of the time left; a callable is given that share as a ``Budget``.
    """
    start = time.perf_counter()
    budget = Budget.starting_now(timeout_s) if budget is None else budget
    method = f"bnn+{backend.name}"
    try:
        budget.check("building the query")
        low, high = output_range(graph, query)
        for row in query.rows:  # the bounds alone may rule out the asked output range
            if row.terms == (("Y_0", 1.0),) and (row.lo > high or row.hi < low):
                return Generated(
                    SolveStatus.INFEASIBLE,
                    seconds=time.perf_counter() - start,
                    method="bounds",
                    note=f"the network's output lies in [{low:.4g}, {high:.4g}] on every input",
                )
        lb = np.array([query.var(f"X_{i}").lb for i in range(query.n_inputs)])
        ub = np.array([query.var(f"X_{i}").ub for i in range(query.n_inputs)])
        enc = encode_bnn(graph, lb, ub, budget=budget)
        index = _add_rows(enc, graph, query, budget)
    except BudgetExpired as exc:
        return Generated(SolveStatus.TIMEOUT, seconds=time.perf_counter() - start, method=method, note=str(exc))
    run = _Search(enc, index, backend, count, Generated(SolveStatus.INFEASIBLE, method=method))
    if proposals is not None:
        now = time.monotonic()
        share = min(budget.deadline, now + PROPOSAL_SHARE * (budget.deadline - now))
        run.try_proposals(proposals, Budget(share, budget.memory_limit_mb))
    run.search(budget)
    run.out.seconds = time.perf_counter() - start
    return run.out


def labels_of(values: dict[str, int], model: ShapeModel, shape: ShapeParams) -> np.ndarray:
    """The label image (0 void, 1.. grains) of a solution."""
    return decode(values, model, shape)


@dataclass(frozen=True, slots=True)
class ImageCheck:
    """Independent re-checks of one generated image."""

    problems: list[str]
    predicted: float
    in_interval: bool
    pde: float

    @property
    def ok(self) -> bool:
        return not self.problems and self.in_interval


def check_image(labels: np.ndarray, grains: int, onnx_path: str, low: float, high: float) -> ImageCheck:
    """Flood-fill checks, the forward pass on onnxruntime and the PDE coefficient (x 100) of a label image."""
    from nnverify.bnn.cells import check_cell, solid
    from nnverify.bnn.pde import effective_diffusion
    from nnverify.witness import OnnxRunner

    pixels = solid(labels).reshape(1, -1).astype(np.float64)
    predicted = float(OnnxRunner(onnx_path).run(pixels)[0, 0])
    return ImageCheck(
        check_cell(labels, grains),
        predicted,
        low - 1e-4 <= predicted <= high + 1e-4,
        100.0 * effective_diffusion(solid(labels)),
    )
