"""Vector-Jacobian products through the op graph (``Graph``), for the graph attack's gradient steps.

Each op answers its own ``Op.vjp`` (``graph/ops/``); nothing here names an op type. Gradients only steer the
search; nothing here is trusted (every candidate is replayed). Sign passes the gradient straight through
(``Step``), so binarised networks get a useful direction; an op with no rule (``NoAdjoint``) stops the
gradient and the attack falls back to sampling.
"""

from __future__ import annotations

import numpy as np

from nnverify.graph.core import Graph
from nnverify.graph.ops.base import REGISTRY, NoAdjoint, Node, Step


def input_gradient(
    graph: Graph, env: dict[str, np.ndarray], seed: np.ndarray, *, sign_window: bool = True
) -> np.ndarray | None:
    """``seed`` ``(B, m)`` (output weights per point) pulled back to the input: ``(B, n)``, or None when some
    op on the way has no rule. ``env`` is ``graph.eval_all`` at the points. ``sign_window=False``: Sign passes
    the gradient unweighted (``Step.STRAIGHT`` instead of ``Step.WINDOW``)."""
    step = Step.WINDOW if sign_window else Step.STRAIGHT
    batch = seed.shape[0]
    grads: dict[str, np.ndarray] = {graph.output_name: seed.reshape((batch, *env[graph.output_name].shape[1:]))}
    for node in reversed(graph.nodes):
        g = grads.pop(node.outputs[0], None)
        if g is None:
            continue
        args = [env[name] if name else np.empty((1, 0)) for name in node.inputs]
        g = np.broadcast_to(g, (batch, *env[node.outputs[0]].shape[1:]))
        variable = [bool(name) and name not in graph.constants for name in node.inputs]
        parts = node_vjp(node, args, g, variable, step=step)
        if parts is None:
            return None
        for name, part in zip(node.inputs, parts, strict=False):
            if part is None or not name or name in graph.constants:
                continue
            grads[name] = grads[name] + part if name in grads else part
    g = grads.get(graph.input_name)
    return (
        np.zeros((batch, graph.n_inputs)) if g is None else np.broadcast_to(g, (batch, *g.shape[1:])).reshape(batch, -1)
    )


def node_vjp(
    node: Node, args: list[np.ndarray], g: np.ndarray, variable: list[bool], *, step: Step = Step.WINDOW
) -> list[np.ndarray | None] | None:
    """One node's vector-Jacobian product: ``g`` ``(R, *out_shape)`` pulled back to each input (``(R, *shape)``,
    None for constant inputs), or None when the op has no rule. ``args`` are the inputs at the evaluation point
    (for an affine op only their shapes and constants matter: the result is the adjoint of its linear part);
    ``variable[k]`` tells whether input ``k`` is a variable tensor. The bound passes on the op graph use this.
    ``step``: what Sign passes back (``Op.vjp``)."""
    try:
        return REGISTRY[node.op_type].vjp(node, args, g, variable, step=step)
    except NoAdjoint:
        return None
