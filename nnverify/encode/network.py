"""Encodes "some input in a box drives the network into one of these disjuncts" as a ``Problem``.

Affine layers become equality rows, activations their exact encoding (``Activation.encode``: ``Relu``/``Sign``
constraints whose big-M constants are the (sound) layer bounds given by the caller; a smooth activation has
none and is refused), and the unsafe set becomes a ``Disjunction`` of row
conjunctions. Stable neurons are fixed by the bounds, so they cost no binaries when lowered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnverify.encode.problem import Problem, Row
from nnverify.errors import ExitCode, NnverifyError
from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.spec.property import Disjunct


class NotExactError(NnverifyError):
    """A network with a smooth activation (Sigmoid, Tanh ...) was given to the exact encoding: a bug of the
    caller (``search/`` decides such networks by splitting), reported as an error, never encoded."""

    exit_code = ExitCode.BUG


@dataclass(frozen=True, slots=True)
class Encoding:
    """The problem plus where the network's input and output variables live in it."""

    problem: Problem
    x_idx: np.ndarray
    y_idx: np.ndarray


def _affine_rows(problem: Problem, layer: AffineLayer, out: np.ndarray, srcs: list[np.ndarray]) -> None:
    """Rows ``out_i - sum_k W_k[i] @ src_k = b_i``."""
    for i in range(layer.size):
        idx = [np.array([out[i]])]
        coef = [np.array([1.0])]
        for src, w in zip(srcs, layer.weights, strict=True):
            nz = np.nonzero(w[i])[0]
            idx.append(src[nz])
            coef.append(-w[i, nz])
        b = float(layer.bias[i])
        problem.add_row(np.concatenate(idx), np.concatenate(coef), b, b)


def encode_network(graph: LayerGraph, lbs: list[np.ndarray], ubs: list[np.ndarray]) -> tuple[Problem, list[np.ndarray]]:
    """Variables and constraints of the network; ``lbs/ubs`` are per-layer bounds ``(size,)`` for one box."""
    problem = Problem(implied_bounds=True)  # the per-layer bounds are sound consequences of the network
    var: list[np.ndarray] = []
    for k, layer in enumerate(graph.layers):
        v = problem.add_vars(lbs[k], ubs[k], prefix=f"l{k}")
        if isinstance(layer, AffineLayer):
            sources = ", ".join(f"layer {s}" for s in layer.sources)
            problem.begin_section(f"layer {k}: {layer.size} neurons, affine in {sources} (ONNX node '{layer.name}')")
            _affine_rows(problem, layer, v, [var[s] for s in layer.sources])
        elif isinstance(layer, ActivationLayer):
            if not layer.act.exact:
                raise NotExactError(
                    f"internal error: layer {k} ({layer.kind.value}, ONNX node '{layer.name}') is not piecewise "
                    "linear and has no exact encoding; the search must not send such a network to an exact backend"
                )
            problem.begin_section(f"layer {k}: {layer.kind.value} of layer {layer.source} (ONNX node '{layer.name}')")
            for xi, yi in zip(var[layer.source], v, strict=True):
                layer.act.encode(problem, int(xi), int(yi))
        else:
            assert isinstance(layer, InputLayer)
        var.append(v)
    return problem, var


def disjunct_rows(d: Disjunct, x_idx: np.ndarray, y_idx: np.ndarray) -> list[Row]:
    """The rows of one disjunct over the problem's x and y variables."""
    rows = []
    for r in range(d.n_rows):
        nx = np.nonzero(d.a_x[r])[0]
        ny = np.nonzero(d.a_y[r])[0]
        idx = np.concatenate([x_idx[nx], y_idx[ny]])
        coef = np.concatenate([d.a_x[r, nx], d.a_y[r, ny]])
        rows.append(Row(idx.astype(np.int64), coef, -np.inf, float(d.b[r])))
    return rows


def encode_query(
    graph: LayerGraph, lbs: list[np.ndarray], ubs: list[np.ndarray], disjuncts: list[Disjunct]
) -> Encoding:
    """The network over the box in ``lbs[0]/ubs[0]`` plus "at least one of ``disjuncts`` holds".

    All disjuncts must share that input box (the caller groups them); their own boxes are not re-added.
    """
    problem, var = encode_network(graph, lbs, ubs)
    x_idx, y_idx = var[0], var[graph.output]
    terms = [disjunct_rows(d, x_idx, y_idx) for d in disjuncts]
    problem.begin_section("the unsafe set (the property's violation)")
    if len(terms) == 1:
        problem.rows.extend(terms[0])
    else:
        problem.add_disjunction(terms)
    return Encoding(problem, x_idx, y_idx)
