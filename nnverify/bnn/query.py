"""``nnverify check`` on a discrete query (``spec/discrete.py``) over a binarized network.

The query is existential, like a VNN-LIB property: ``sat`` means an assignment of the Bool/Int inputs (and
auxiliaries) exists under which every row holds, and it is reported only after it was replayed: the inputs
are fed to the original model on onnxruntime and every row of the query is re-evaluated with onnxruntime's
outputs (auxiliaries keep the solver's values; their rows are linear and checked exactly). ``unsat`` means
the exact encoding (``encode/bnn.py``) has no solution.
"""

from __future__ import annotations

import os
import time

import numpy as np

from nnverify.backends.base import Backend, SolveStatus
from nnverify.bnn.generate import solve_query
from nnverify.encode.bnn import is_bnn
from nnverify.errors import ModelError, PropertyError
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers
from nnverify.result import Counterexample, Result, Verdict
from nnverify.spec.discrete import DiscreteQuery, load_discrete
from nnverify.witness import OnnxRunner

#: Absolute tolerance of the replayed rows (onnxruntime computes in float32).
ROW_ATOL = 1e-4


def row_violations(query: DiscreteQuery, values: dict[str, float]) -> list[str]:
    """The rows of ``query`` that ``values`` (every variable by name) violate, described."""
    bad = []
    for k, row in enumerate(query.rows):
        total = sum(coef * values[name] for name, coef in row.terms)
        if total < row.lo - ROW_ATOL or total > row.hi + ROW_ATOL:
            bad.append(f"row {k + 1}: {total:.6g} not in [{row.lo:.6g}, {row.hi:.6g}]")
    for v in query.variables:
        if v.kind in ("Bool", "Int") and v.name in values:
            x = values[v.name]
            if x != round(x) or x < v.lb or x > v.ub:
                bad.append(f"{v.name} = {x:g} is not an integer in [{v.lb:g}, {v.ub:g}]")
    return bad


def decide_query(
    network: str | os.PathLike[str], query_path: str | os.PathLike[str], backend: Backend, timeout_s: float
) -> Result:
    """Decide the discrete query at ``query_path`` on the binarized ``network``.

    Raises:
        ModelError: the network is not a Sign-only BNN or its sizes differ from the query's.
        PropertyError: the query does not parse.
    """
    started = time.monotonic()
    graph = load_network(network)
    layers = to_layers(graph)
    if not is_bnn(layers):
        raise ModelError(f"{network}: a discrete query needs a binarized network (Sign activations only)")
    query = load_discrete(query_path)
    if query.n_inputs != graph.n_inputs or query.n_outputs > graph.n_outputs:
        raise PropertyError(
            f"the query has {query.n_inputs} inputs and {query.n_outputs} outputs; {network} has "
            f"{graph.n_inputs} inputs and {graph.n_outputs} outputs",
            str(query_path),
            1,
            1,
        )
    out = solve_query(layers, query, backend, count=1, timeout_s=max(0.0, timeout_s - (time.monotonic() - started)))
    stats: dict[str, float | int | str] = {}
    if out.status is SolveStatus.INFEASIBLE:
        return Result(Verdict.UNSAT, None, out.method, time.monotonic() - started, out.note, stats)
    if out.status is not SolveStatus.FEASIBLE or not out.values:
        verdict = Verdict.TIMEOUT if out.status is SolveStatus.TIMEOUT else Verdict.UNKNOWN
        return Result(verdict, None, out.method, time.monotonic() - started, out.note, stats)
    x = out.images[0].astype(np.float64)
    y = OnnxRunner(graph.path).run(x[None, :])[0]
    values: dict[str, float] = {name: float(v) for name, v in out.values[0].items()}
    values.update({f"Y_{j}": float(v) for j, v in enumerate(y)})
    bad = row_violations(query, values)
    if bad:
        note = "the solver's assignment failed replay on onnxruntime: " + "; ".join(bad[:3])
        return Result(Verdict.UNKNOWN, None, out.method, time.monotonic() - started, note, stats)
    return Result(Verdict.SAT, Counterexample(x, y), out.method, time.monotonic() - started, "", stats)
