"""The layer graph: ONNX nodes in topological order plus folded constants, with a batched evaluator.

This is the faithful (op by op) view of the model, used for replay-independent evaluation and as the
source of the analysis view (``graph/layers.py``). It does not know about bounds or solvers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnverify.graph.ops.base import REGISTRY, Node


@dataclass(frozen=True, slots=True)
class Graph:
    """An imported ONNX model with one input and one output.

    Attributes:
        path: Where the model came from (for messages).
        input_name: ONNX name of the single graph input.
        input_shape: Its shape (symbolic dimensions set to 1).
        output_name: ONNX name of the single graph output.
        output_shape: Its shape.
        nodes: Non-constant nodes in topological order.
        constants: Unbatched constant tensors by name (initializers, Constant nodes, folded values).
    """

    path: str
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    output_shape: tuple[int, ...]
    nodes: tuple[Node, ...]
    constants: dict[str, np.ndarray]

    @property
    def n_inputs(self) -> int:
        """Number of scalar inputs (X_0 ... X_{n-1})."""
        return math.prod(self.input_shape)

    @property
    def n_outputs(self) -> int:
        """Number of scalar outputs (Y_0 ... Y_{m-1})."""
        return math.prod(self.output_shape)

    def eval_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every tensor's batched value for inputs ``x``: ``(B, n_inputs)`` or ``(B, *input_shape)``."""
        batch = x.shape[0]
        env: dict[str, np.ndarray] = {name: value[None, ...] for name, value in self.constants.items()}
        env[self.input_name] = np.asarray(x, dtype=np.float64).reshape((batch, *self.input_shape))
        for node in self.nodes:
            args = [env[name] if name else np.empty((1, 0)) for name in node.inputs]
            env[node.outputs[0]] = REGISTRY[node.op_type].eval(node, *args)
        return env

    def eval(self, x: np.ndarray) -> np.ndarray:
        """Outputs, flattened to ``(B, n_outputs)``, for inputs ``x`` of shape ``(B, n_inputs)``."""
        out = self.eval_all(x)[self.output_name]
        return np.broadcast_to(out, (x.shape[0], *out.shape[1:])).reshape(x.shape[0], -1)
