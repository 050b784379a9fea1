"""The pipeline behind ``nnverify check`` and ``nnverify.verify``: load, prune, attack, decide, replay.

Order: interval bounds rule out disjuncts; random sampling proposes counterexamples; every remaining
input box is decided by the search (``search/``) with an exact backend at its leaves. Nothing is called
``sat`` before ``witness.py`` replays it on the original ONNX model with onnxruntime.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from nnverify import attack
from nnverify.attack_graph import attack_only, graph_route_reason
from nnverify.backends import get_backend
from nnverify.backends.base import Backend, SolverRangeError, SolveStatus
from nnverify.backends.pool import SolverPool
from nnverify.budget import Budget, BudgetExpired, ResourceLimitError
from nnverify.errors import PropertyError, UnboundedError
from nnverify.graph.core import Graph
from nnverify.graph.layers import LayerGraph, is_exact
from nnverify.graph.lowering_smooth import divisors, lower_smooth, product_scales
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers
from nnverify.graph.tail import strip_softmax
from nnverify.options import Options
from nnverify.result import Counterexample, Result, Verdict
from nnverify.search.bab import input_split_search
from nnverify.search.forward_split import forward_reason, forward_route
from nnverify.spec.property import Disjunct, Property
from nnverify.spec.vnnlib import load_property
from nnverify.witness import OnnxRunner, check_counterexample


@dataclass(slots=True)
class _Run:
    """Mutable bookkeeping of one verification run."""

    graph: Graph
    layers: LayerGraph
    prop: Property
    options: Options
    budget: Budget
    runner: OnnxRunner | None  # started by ``ort()`` at the first replay
    started: float
    pool: SolverPool
    stats: dict[str, float | int | str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def ort(self) -> OnnxRunner:
        """The onnxruntime session on the original model, started at the first replay: a run that replays
        nothing (every ``unsat``) does not pay for importing onnxruntime and building the session."""
        if self.runner is None:
            self.runner = OnnxRunner(self.graph.path)
        return self.runner

    def result(self, verdict: Verdict, method: str, cex: Counterexample | None = None) -> Result:
        counts: dict[str, int] = {}  # a repeated note once, with its count: "a candidate failed replay: … (×37)"
        for note in self.notes:
            counts[note] = counts.get(note, 0) + 1
        note = "; ".join(text if k == 1 else f"{text} (×{k})" for text, k in counts.items())
        return Result(verdict, cex, method, time.monotonic() - self.started, note, self.stats)

    def replay(self, x: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> Counterexample | None:
        """Replay ``x`` (clipped into its box), first polished away from the unsafe set's boundary; the
        counterexample if onnxruntime confirms either point."""
        x = np.clip(np.asarray(x, dtype=np.float64), lb, ub)
        check = None
        for point in (self._polished(x), x):
            point = float32_inside(np.clip(point, lb, ub), lb, ub)
            self.stats["replays"] = int(self.stats.get("replays", 0)) + 1
            check = check_counterexample(
                self.ort(),
                self.prop,
                point,
                output_rtol=self.options.output_rtol,
                violation_atol=self.options.violation_atol,
            )
            if check.valid and check.y is not None:
                return Counterexample(point, check.y)
        assert check is not None
        self.notes.append(f"a candidate failed replay: {check.reason}")
        return None

    def _polished(self, x: np.ndarray) -> np.ndarray:
        """``x`` moved deeper into the disjunct it reaches (see ``search/polish.py``)."""
        y = self.layers.eval(x[None, :])
        inside = [d for d in self.prop.disjuncts if d.contains_input(x[None, :])[0]]
        if not inside:
            return x
        target = min(inside, key=lambda d: float(d.slack(x[None, :], y)[0]))
        from nnverify.search.polish import polish

        return polish(self.layers, target, x, self.budget)


def float32_inside(x: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """``x`` rounded to float32 values (what onnxruntime sees), stepping back inside ``[lb, ub]`` where
    rounding to nearest left the box (unless the box is narrower than float32 spacing there)."""
    x32 = x.astype(np.float32)
    over = x32.astype(np.float64) > ub
    x32[over] = np.nextafter(x32[over], np.float32(-np.inf))
    under = x32.astype(np.float64) < lb
    x32[under] = np.nextafter(x32[under], np.float32(np.inf))
    return x32.astype(np.float64)


def _group_by_box(disjuncts: tuple[Disjunct, ...]) -> list[list[Disjunct]]:
    """Disjuncts sharing the same input box, in file order (one exact query per box)."""
    groups: dict[bytes, list[Disjunct]] = {}
    for d in disjuncts:
        groups.setdefault(d.lb.tobytes() + d.ub.tobytes(), []).append(d)
    return list(groups.values())


def _check_sizes(graph: Graph, prop: Property) -> None:
    if prop.n_inputs != graph.n_inputs or prop.n_outputs != graph.n_outputs:
        raise PropertyError(
            f"the property has {prop.n_inputs} inputs and {prop.n_outputs} outputs; "
            f"{graph.path} has {graph.n_inputs} inputs and {graph.n_outputs} outputs",
            prop.path or "<property>",
            1,
            1,
        )


def _attack(run: _Run) -> Counterexample | None:
    if run.options.attack_samples <= 0:
        return None
    disjuncts = list(run.prop.disjuncts)
    ranked = attack.ranked_samples(
        run.layers,
        disjuncts,
        samples=run.options.attack_samples,
        seed=run.options.seed,
        keep=attack.REFINE_STARTS,
        budget=run.budget,
    )
    proposals = attack.violating(ranked) or attack.refine_samples(run.layers, disjuncts, ranked, budget=run.budget)
    if not proposals:
        proposals = attack.pgd_candidates(run.layers, disjuncts, seed=run.options.seed, budget=run.budget)
    for x in proposals:
        box = next(d for d in run.prop.disjuncts if d.contains_input(x[None, :])[0])
        cex = run.replay(x, box.lb, box.ub)
        if cex is not None:
            return cex
    return None


#: Inputs up to this dimension are decided by input splitting; wider ones by one exact query per box.
INPUT_SPLIT_MAX_DIM = 16


def _input_split(layers: LayerGraph, lb: np.ndarray, ub: np.ndarray) -> bool:
    """Input splitting decides the box: few free inputs (``lb < ub``; fixed ones are folded away)."""
    return int(np.sum(lb < ub)) <= INPUT_SPLIT_MAX_DIM


def _act_split(layers: LayerGraph, lb: np.ndarray, ub: np.ndarray) -> bool:
    """Activation splitting decides the box: more free inputs than input splitting takes, and an activation
    that is not piecewise linear (no exact encoding exists for the other methods)."""
    return not _input_split(layers, lb, ub) and not is_exact(layers)


def uses_relu_splitting(layers: LayerGraph) -> bool:
    """``search.relu_bab.uses_relu_splitting``, imported when a run gets this far (start-up: a check decided by
    input splitting does not load the ReLU search)."""
    from nnverify.search.relu_bab import uses_relu_splitting as applies

    return applies(layers)


def _decide_group(run: _Run, group: list[Disjunct], backend: Backend) -> tuple[SolveStatus, Counterexample | None, str]:
    """Decide one input box with its disjuncts; a counterexample only if it replayed."""
    lb, ub = group[0].lb, group[0].ub
    found: list[Counterexample] = []

    def accept(x: np.ndarray) -> bool:
        cex = run.replay(x, lb, ub)
        if cex is not None:
            found.append(cex)
        return cex is not None

    if _input_split(run.layers, lb, ub):
        out = input_split_search(run.layers, group, lb, ub, backend, run.budget, run.options, accept)
        for key in ("boxes", "leaves_exact", "candidates", "max_depth"):
            run.stats[key] = int(run.stats.get(key, 0)) + int(getattr(out.stats, key))
        return out.status, (found[-1] if found else None), out.note
    if _act_split(run.layers, lb, ub):
        from nnverify.search.act_split import act_split_search

        out = act_split_search(run.layers, group, lb, ub, run.budget, run.options, accept)
        for key in ("boxes", "candidates", "max_depth"):
            run.stats[f"act_{key}"] = int(run.stats.get(f"act_{key}", 0)) + int(getattr(out.stats, key))
        return out.status, (found[-1] if found else None), out.note
    if uses_relu_splitting(run.layers):
        from nnverify.search.relu_bab import relu_split_search

        out = relu_split_search(
            run.layers,
            group,
            lb,
            ub,
            backend,
            run.budget,
            run.options,
            accept,
            refine=run.options.refines(),
            refine_workers=run.options.cores(),
            search_threads=run.options.search_threads(),
            pool=run.pool,
        )
        for key in ("boxes", "leaves_exact", "candidates", "max_depth", "refine_solves", "stabilised"):
            run.stats[f"relu_{key}"] = int(run.stats.get(f"relu_{key}", 0)) + int(getattr(out.stats, key))
        run.stats["refine_s"] = round(float(run.stats.get("refine_s", 0.0)) + out.stats.refine_s, 4)
        if out.note:
            run.stats["decided_by"] = out.note
        return out.status, (found[-1] if found else None), out.note
    from nnverify.search.exact import decide_box

    box = decide_box(run.layers, lb, ub, group, backend, run.budget, run.options)
    run.stats["solver_calls"] = int(run.stats.get("solver_calls", 0)) + box.solver_calls
    if box.status is SolveStatus.FEASIBLE and box.x is not None:
        if accept(box.x):
            return SolveStatus.FEASIBLE, found[-1], ""
        return SolveStatus.UNKNOWN, None, "the solver's solution did not replay"
    return box.status, None, box.note


def _decide(run: _Run) -> Result:
    backend = get_backend(run.options.backend, run.options, run.pool)
    kind = f"clpq:{run.options.precision}" if backend.name == "clpq" else f"milp:{backend.name}"
    if not is_exact(run.layers):
        splits = {"act-split" if _act_split(run.layers, d.lb, d.ub) else "input-split" for d in run.prop.disjuncts}
        method = "+".join(sorted(splits)) + "+relaxation"
    elif all(_input_split(run.layers, d.lb, d.ub) for d in run.prop.disjuncts):
        method = "input-split+" + kind
    else:
        method = ("relu-split+" if uses_relu_splitting(run.layers) else "") + kind
    undecided: list[str] = []
    timed_out = False
    for group in _group_by_box(run.prop.disjuncts):
        status, cex, note = _decide_group(run, group, backend)
        if status is SolveStatus.FEASIBLE and cex is not None:
            return run.result(Verdict.SAT, method, cex)
        if status is SolveStatus.INFEASIBLE:
            continue
        timed_out |= status is SolveStatus.TIMEOUT
        undecided.append(note or status.value)
        if run.budget.expired():
            timed_out = True
            break
    if not undecided:
        return run.result(Verdict.UNSAT, _proven_by(run, method, kind))
    run.notes.extend(undecided)
    return run.result(Verdict.TIMEOUT if timed_out else Verdict.UNKNOWN, method)


def _proven_by(run: _Run, method: str, kind: str) -> str:
    """The method of an ``unsat``: when no solver call and no exact leaf took part, the floating-point bounds (with
    their margin) proved it alone, and the method says ``bounds`` rather than naming a backend that never ran."""
    used = ("solver_calls", "leaves_exact", "relu_leaves_exact", "relu_refine_solves")
    if run.stats.get("decided_by") == "MILP" or any(int(run.stats.get(key, 0)) for key in used):
        return method
    return method.replace(kind, "bounds")


def verify(
    network: str | os.PathLike[str] | Graph,
    prop: str | os.PathLike[str] | Property,
    options: Options | None = None,
) -> Result:
    """Decide whether ``network`` violates ``prop`` (sat) or provably satisfies it (unsat).

    The run happens in a worker thread; ``verify()`` waits for it until the budget's deadline plus
    ``OVERRUN_GRACE_S``, and answers ``timeout`` itself if it has not finished by then (the worker is abandoned
    and stops at its next look at the budget). Native solves go through a ``SolverPool`` opened here: closing it
    cancels what still runs, and solves or runs it had to abandon are counted in ``stats["abandoned"]``.
    Every phase looks at the budget (``BudgetExpired`` becomes a ``timeout`` verdict) and estimates its large
    allocations against ``Options.memory_limit()`` (``ResourceLimitError`` becomes ``unknown`` with a note naming
    the phase and the size). Limit: a native call that holds Python's GIL (reading the ONNX file's protobuf)
    delays this answer until it returns.

    Args:
        network: An ONNX file path or a ``Graph`` from ``load_network``.
        prop: A VNN-LIB file path or a ``Property`` from ``load_property``.
        options: Run options (timeout, backend, seed ...); defaults if None.

    Raises:
        NnverifyError: bad model or property, unavailable backend.
    """
    options = options or Options()
    started = time.monotonic()
    budget = Budget(started + options.timeout_s, options.memory_limit())
    progress = _Progress()
    outcome: list[Result | BaseException] = []
    with SolverPool() as pool:

        def work() -> None:
            try:
                outcome.append(_verify(network, prop, options, budget, progress, pool))
            except BaseException as exc:  # handed to the caller's thread below
                outcome.append(exc)

        worker = threading.Thread(target=work, name="nnverify-verify", daemon=True)
        worker.start()
        try:
            # a budget beyond threading.TIMEOUT_MAX (~292 years) would raise OverflowError in join()
            worker.join(
                None
                if math.isinf(budget.deadline)
                else min(budget.remaining() + OVERRUN_GRACE_S, threading.TIMEOUT_MAX)
            )
        except BaseException:  # Ctrl-C while waiting: the worker is left behind
            pool.abandon(worker)
            raise
        if not outcome:
            pool.abandon(worker)
    if not outcome:
        note = f"the budget ran out while {progress.phase}; that work was abandoned"
        stats: dict[str, float | int | str] = {"phase": progress.phase, "abandoned": pool.abandoned()}
        return Result(Verdict.TIMEOUT, None, "budget", time.monotonic() - started, note, stats)
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    if pool.abandoned():
        outcome[0].stats["abandoned"] = pool.abandoned()
    return outcome[0]


#: Seconds ``verify()`` waits past the deadline for the run to answer before it answers ``timeout`` itself.
OVERRUN_GRACE_S = 0.3


@dataclass(slots=True)
class _Progress:
    """The phase the worker is in (named in the note of a run ``verify()`` had to abandon)."""

    phase: str = "starting"


def _verify(
    network: str | os.PathLike[str] | Graph,
    prop: str | os.PathLike[str] | Property,
    options: Options,
    budget: Budget,
    progress: _Progress,
    pool: SolverPool,
) -> Result:
    """The run inside ``verify()``'s worker: the phases, with budget and memory errors turned into verdicts."""
    started = time.monotonic()
    try:
        return _phases(network, prop, options, budget, progress, pool)
    except BudgetExpired as exc:
        return Result(Verdict.TIMEOUT, None, "budget", time.monotonic() - started, str(exc), {"phase": exc.phase})
    except ResourceLimitError as exc:
        return Result(Verdict.UNKNOWN, None, "memory", time.monotonic() - started, str(exc), {"phase": exc.phase})
    except SolverRangeError as exc:  # splitting further would meet the same numbers until the deadline
        return Result(Verdict.UNKNOWN, None, "solver", time.monotonic() - started, str(exc), {"phase": progress.phase})
    except UnboundedError as exc:  # 1/y with 0 in y's bounds: no finite bound to search with
        return Result(Verdict.UNKNOWN, None, "bounds", time.monotonic() - started, str(exc), {"phase": progress.phase})
    except MemoryError:
        note = f"out of memory while {progress.phase} (--memory-limit: a smaller cap makes estimates refuse first)"
        return Result(Verdict.UNKNOWN, None, "memory", time.monotonic() - started, note, {"phase": progress.phase})


def _divisor_floors(
    graph: Graph, prop: Property, scales: dict[str, np.ndarray], budget: Budget
) -> dict[str, np.ndarray]:
    """``bounds.divisors.divisor_floors`` on the property's boxes when the graph divides by a variable tensor."""
    if not divisors(graph):
        return {}
    from nnverify.bounds.divisors import divisor_floors

    return divisor_floors(graph, [(d.lb, d.ub) for d in prop.disjuncts], scales, budget)


def _phases(
    network: str | os.PathLike[str] | Graph,
    prop: str | os.PathLike[str] | Property,
    options: Options,
    budget: Budget,
    progress: _Progress,
    pool: SolverPool,
) -> Result:
    started = time.monotonic()
    progress.phase = "loading the network"
    graph = network if isinstance(network, Graph) else load_network(network, budget)
    if not isinstance(prop, Property):
        progress.phase = "parsing the property"
        prop = load_property(prop, graph.n_inputs, graph.n_outputs, budget)
    _check_sizes(graph, prop)
    backend = get_backend(options.backend, options, pool)  # fail early on an unavailable backend
    analysis, tail_note = strip_softmax(graph, prop)  # the analysis reads the logits; replay uses the model
    scales = product_scales(analysis, [(d.lb, d.ub) for d in prop.disjuncts])  # squares balanced on the region
    floors = _divisor_floors(analysis, prop, scales, budget)  # 1/y bounded where y's sign holds on the region
    analysis, lowered_note = lower_smooth(analysis, scales, floors)  # two-variable Mul/Div, Softmax: Pow 2, Exp, 1/y
    notes = [note for note in (tail_note, lowered_note) if note]
    if prop.disjuncts and (reason := forward_reason(analysis, prop, budget, INPUT_SPLIT_MAX_DIM)) is not None:
        progress.phase = "input splitting with forward bounds on the op graph"  # few free inputs, no dense matrices
        return forward_route(graph, analysis, prop, options, budget, [*notes, f"forward bounds: {reason}"])
    if prop.disjuncts and (reason := graph_route_reason(analysis, budget)) is not None:
        progress.phase = "searching for a counterexample on the op graph"
        return attack_only(graph, analysis, prop, options, budget, [*notes, f"attack only: {reason}"])
    progress.phase = "building the analysis view"
    layers = to_layers(analysis, merge=not backend.exact, budget=budget)
    run = _Run(graph, layers, prop, options, budget, None, started, pool)
    run.notes.extend(notes)
    run.stats["load_s"] = round(time.monotonic() - started, 4)
    if not prop.disjuncts:
        run.notes.append("the property's input region is empty")
        return run.result(Verdict.UNSAT, "spec")
    progress.phase = "searching for a counterexample"
    phase = time.monotonic()
    cex = _attack(run)
    run.stats["attack_s"] = round(time.monotonic() - phase, 4)
    if cex is not None:
        return run.result(Verdict.SAT, "attack", cex)
    if budget.expired():
        return run.result(Verdict.TIMEOUT, "attack")
    progress.phase = "deciding the property"
    phase = time.monotonic()
    result = _decide(run)
    run.stats["search_s"] = round(time.monotonic() - phase, 4)
    return result
