"""Decides a VNN-LIB 2.x query: product graph -> the single-network pipeline -> replay on every original model.

``unsat`` of the relaxation (strict read as non-strict) proves the query ``unsat``; ``sat`` needs a witness that
replays on each original model with every strict comparison strict. A candidate that is only a tie triggers a
second search with strict rows tightened by a margin; if that finds nothing strict, the answer is ``unknown``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from nnverify.errors import ModelError
from nnverify.multi.bind import BoundNetwork, bind
from nnverify.multi.product import INPUT_NAME, Product, build_product
from nnverify.multi.relax import to_property
from nnverify.multi.replay import Runner, assignment, replay
from nnverify.options import Options
from nnverify.result import Result, Verdict
from nnverify.spec.property import Property
from nnverify.spec.vnnlib2 import load_query
from nnverify.spec.vnnlib2_types import Query


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The verdict of a query; ``values`` (every declared variable, flat) exactly when ``sat``."""

    verdict: Verdict
    query: Query
    values: dict[str, np.ndarray] | None = None
    method: str = ""
    seconds: float = 0.0
    note: str = ""

    def assignment_text(self) -> str:
        """The satisfying assignment in the VNN-LIB 2 command-line format (declaration order, row-major)."""
        if self.values is None:
            return ""
        lines = []
        for var in self.query.variables:
            lines.append(f"{var.name} {var.elem_type} [{','.join(map(str, var.shape))}]")
            lines.extend(repr(float(v)) for v in self.values[var.name])
        return "\n".join(lines) + "\n"


@dataclass(slots=True)
class _Context:
    query: Query
    nets: tuple[BoundNetwork, ...]
    product: Product
    runner: Runner
    model_path: str
    options: Options
    deadline: float
    notes: list[str]
    extra_check: Callable[[dict[str, np.ndarray]], str | None] | None = None

    def failed(self, values: dict[str, np.ndarray]) -> bool:
        """Whether the extra check rejects a replayed assignment (then noted)."""
        missed = self.extra_check(values) if self.extra_check else None
        if missed:
            self.notes.append(f"a candidate met the linear relaxation but not {missed} (it is necessary only)")
        return bool(missed)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def verify_query(path: str | os.PathLike[str], files: dict[str, str], options: Options | None = None) -> QueryResult:
    """Decide the VNN-LIB 2.x query in ``path`` with ``files`` mapping network names to ONNX files.

    Raises:
        PropertyError: The query is malformed or does not fit its models (``file:line:col``).
        InputFileError, ModelError, UnsupportedOpsError: A model cannot be read or analysed.
    """
    started = time.monotonic()
    return decide_query(load_query(path), files, options, started)


def decide_query(
    query: Query,
    files: dict[str, str],
    options: Options | None = None,
    started: float | None = None,
    extra_check: Callable[[dict[str, np.ndarray]], str | None] | None = None,
) -> QueryResult:
    """Decide a parsed query (``verify_query`` without the reading); the budget runs from ``started``.

    ``extra_check`` (the query language's softmax thresholds) sees every replayed assignment; what it names
    (a condition the linear query only approximates) keeps the answer from being ``sat``.
    """
    options = options or Options()
    started = time.monotonic() if started is None else started
    nets = bind(query, files)
    product = build_product(query, nets)
    relaxed = to_property(query, product)
    if not relaxed.prop.disjuncts:
        note = "the constraints alone are unsatisfiable (no network is needed to see it)"
        return QueryResult(Verdict.UNSAT, query, None, "spec", time.monotonic() - started, note)
    with tempfile.TemporaryDirectory(prefix="nnverify-product-") as tmp:
        model_path = str(Path(tmp) / "product.onnx")
        onnx.save(product.model, model_path)
        ctx = _Context(
            query,
            nets,
            product,
            Runner(nets),
            model_path,
            options,
            started + options.timeout_s,
            list(relaxed.inexact),
            extra_check,
        )
        check_product(ctx.query, ctx.product, ctx.nets, ctx.runner, model_path, relaxed.prop)
        verdict, values, method = _decide(ctx)
    return QueryResult(verdict, query, values, method, time.monotonic() - started, "; ".join(ctx.notes))


#: Points at which the product model is compared with the original models before anything is decided.
CHECK_POINTS = 4


def check_product(
    query: Query, product: Product, nets: tuple[BoundNetwork, ...], runner: Runner, model_path: str, prop: Property
) -> None:
    """Guard against a product that does not compute what the networks compute: at a few points of the query's
    region, every declared output and hidden value of the product (onnxruntime) equals the original model's.

    Raises:
        ModelError: They differ (the merged model cannot stand for the networks; nothing is decided).
    """
    import onnxruntime as ort  # lazy: start-up time matters

    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    box = prop.disjuncts[0]
    for _ in range(CHECK_POINTS):
        x = rng.uniform(box.lb, box.ub).astype(np.float32)
        y = np.asarray(session.run(None, {INPUT_NAME: x[None, :]})[0], dtype=np.float64).ravel()
        values = assignment(query, product, nets, runner, x)
        for (name, i), col in product.y_columns.items():
            if not np.isclose(y[col], values[name][i], rtol=1e-4, atol=1e-5, equal_nan=True):
                raise ModelError(
                    f"the merged model computes {name} = {y[col]!r} at element {i}, the network {values[name][i]!r}; "
                    "these networks cannot be combined (please report it)"
                )


def _run(ctx: _Context, margin: float | None) -> Result:
    from nnverify.pipeline import verify  # lazy: the solver stack is heavy to import

    prop = to_property(ctx.query, ctx.product, margin).prop
    try:
        return verify(ctx.model_path, prop, dataclasses.replace(ctx.options, timeout_s=ctx.remaining()))
    except ModelError as exc:  # name the user's files, not the temporary merged model
        files = ", ".join(sorted({net.path for net in ctx.nets}))
        raise type(exc)(str(exc).replace(ctx.model_path, f"the merged model of {files}")) from exc


def _slope_refuted(ctx: _Context) -> bool:
    """Whether every disjunct of a strict query is ruled out by a monotonicity certificate (``slope.py``)."""
    from nnverify.graph.onnx_import import load_network
    from nnverify.graph.passes import to_layers
    from nnverify.multi.slope import refutes, tie_patterns

    query, product = ctx.query, ctx.product
    same: dict[tuple[str, str], int] = {}
    paths = {net.decl.name: net.path for net in ctx.nets}
    for a in ctx.nets:
        for b in ctx.nets:
            ins_a, ins_b = a.decl.inputs, b.decl.inputs
            if a is b or a.path != b.path or len(ins_a) != 1 or len(ins_b) != 1 or any(a.decl.fed_by + b.decl.fed_by):
                continue
            diff = [
                k
                for k in range(ins_a[0].size)
                if product.x_columns[(ins_a[0].name, k)] != product.x_columns[(ins_b[0].name, k)]
            ]
            if len(diff) == 1:
                same[(a.decl.name, b.decl.name)] = diff[0]
    if not same or not query.has_strict:
        return False
    graphs: dict[str, object] = {}
    common = tuple(c for c in query.common if c not in product.substitutions)
    for alt in query.alternatives:
        boxes = to_property(dataclasses.replace(query, alternatives=(alt,)), product).prop.disjuncts
        if not boxes:
            continue  # empty on its own
        refuted = False
        for pattern in tie_patterns(query, common + alt, same):
            path = paths[pattern.f.name]
            if path not in graphs:
                graphs[path] = to_layers(load_network(path), merge=False)
            cols_f = [product.x_columns[(pattern.f.inputs[0].name, k)] for k in range(pattern.f.inputs[0].size)]
            cols_g = [product.x_columns[(pattern.g.inputs[0].name, k)] for k in range(pattern.g.inputs[0].size)]
            if refutes(graphs[path], boxes[0], cols_f, cols_g, pattern):  # type: ignore[arg-type]
                refuted = True
                break
        if not refuted:
            return False
    return True


def _decide(ctx: _Context) -> tuple[Verdict, dict[str, np.ndarray] | None, str]:
    if _slope_refuted(ctx):
        ctx.notes.append("every disjunct's strict comparison is ruled out by a bound on the slope (monotonicity)")
        return Verdict.UNSAT, None, "slope"
    result = _run(ctx, None)
    method = "product+" + result.method
    if result.verdict is Verdict.UNSAT:
        if ctx.notes:
            ctx.notes.insert(0, "unsat of a float64 rounding that is not exact, so not reported")
            return Verdict.UNKNOWN, None, method
        return Verdict.UNSAT, None, method
    if result.verdict is not Verdict.SAT or result.counterexample is None:
        if result.note:
            ctx.notes.append(result.note)
        return result.verdict, None, method
    check = replay(ctx.query, ctx.product, ctx.nets, ctx.runner, result.counterexample.x, ctx.options.violation_atol)
    if check.valid:
        if ctx.failed(check.values):
            return Verdict.UNKNOWN, None, method
        return Verdict.SAT, check.values, method
    if not check.tie:
        ctx.notes.append(f"the product's witness did not replay on the original models: {check.reason}")
        return Verdict.UNKNOWN, None, method
    ctx.notes.append("the first candidate was a tie (a strict comparison held with equality)")
    if ctx.remaining() <= 0.0:
        return Verdict.TIMEOUT, None, method
    tight = _run(ctx, 2.0 * ctx.options.violation_atol)
    if tight.verdict is Verdict.SAT and tight.counterexample is not None:
        check = replay(ctx.query, ctx.product, ctx.nets, ctx.runner, tight.counterexample.x, ctx.options.violation_atol)
        if check.valid and not ctx.failed(check.values):
            return Verdict.SAT, check.values, "product-strict+" + tight.method
    ctx.notes.append(
        f"no strict witness found with the strict comparisons tightened by {2.0 * ctx.options.violation_atol:g} "
        f"({tight.verdict.value}); a tie is not a witness"
    )
    return (Verdict.TIMEOUT if tight.verdict is Verdict.TIMEOUT else Verdict.UNKNOWN), None, method
