"""Removal of a trailing Softmax when the property only compares outputs with each other.

Softmax is strictly increasing in each logit against the others, so ``y_i - y_j <= 0`` holds exactly when
``z_i - z_j <= 0`` on its inputs ``z``: such a property can be read on the logits. Replay stays on the model.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from nnverify.graph.core import Graph
from nnverify.graph.ops.softmax import normalised_axes
from nnverify.spec.property import Disjunct, Property


def compares_outputs_only(d: Disjunct) -> bool:
    """True if every row of ``d`` is ``y_i - y_j <= 0`` (no input terms, one +1 and one -1, right side 0)."""
    if np.any(d.a_x) or np.any(d.b):
        return False
    rows = d.a_y
    ones = np.all((rows == 1.0).sum(axis=1) == 1) and np.all((rows == -1.0).sum(axis=1) == 1)
    return bool(ones and np.all((rows != 0.0).sum(axis=1) == 2))


def strip_softmax(graph: Graph, prop: Property) -> tuple[Graph, str]:
    """``graph`` without its output Softmax when ``prop`` allows it (with a note), else ``graph`` and ``""``.

    The Softmax must be the last node, produce the graph output, and normalise over every output element
    (the other axes have size 1; ``normalised_axes``), so that all compared outputs share one normalisation.
    """
    if not graph.nodes or graph.nodes[-1].op_type != "Softmax":
        return graph, ""
    node = graph.nodes[-1]
    if node.outputs[0] != graph.output_name or not all(compares_outputs_only(d) for d in prop.disjuncts):
        return graph, ""
    source = node.inputs[0]
    shape = graph.eval_all(np.zeros((1, graph.n_inputs)))[source].shape[1:]
    if math.prod(shape[axis] for axis in normalised_axes(node, len(shape))) != math.prod(shape):
        return graph, ""
    logits = dataclasses.replace(graph, output_name=source, output_shape=tuple(shape), nodes=graph.nodes[:-1])
    return logits, "output Softmax removed (the property compares outputs only; Softmax keeps their order)"
