"""ONNX export (opset 13, Gemm and Sign only) of a binary network and of the 2-of-3 vote of three of them as one
Sign network, which the exact BNN encoding (``encode/bnn.py``) and CP-SAT decide."""

from __future__ import annotations

import enum
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nnverify.binary.model import BinaryNet, Step
from nnverify.errors import ModelError

OPSET = 13
IR_VERSION = 8


class VoteRule(enum.Enum):
    """``MAJORITY``: ``y = 1`` iff ``y1 + y2 + y3 >= 2``. ``ISSUE``: ``y = 1 if y1 + y2 + y3 >= 2 else y1``
    (issue 26's formula, i.e. ``y1 or (y2 and y3)``)."""

    MAJORITY = "majority"
    ISSUE = "issue"

    def apply(self, y1: np.ndarray, y2: np.ndarray, y3: np.ndarray) -> np.ndarray:
        """The vote of three {0, 1} arrays."""
        total = y1 + y2 + y3
        return np.where(total >= 2, 1, 0 if self is VoteRule.MAJORITY else y1).astype(np.int64)


def _layers(net: BinaryNet) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer, the float64 ``(W, c)`` of ``Sign(W s + c)`` where ``s`` is the previous layer's Sign output
    (or the 0/1 input for the first layer).

    A step ``z >= 0`` over an integer ``z`` is ``Sign(z + 1/2)``, which never sees 0. A ``binary01`` value
    ``(s + 1) / 2`` is folded into the next layer (weights ``W / 2``, bias ``b + W 1 / 2 + 1/2``): halves, exact
    in float32. The output ``y = (s + 1) / 2`` is added by ``_model``.
    """
    out = []
    for k, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        weight, bias = w.astype(np.float64), b.astype(np.float64) + 0.5
        if k > 0 and net.step is Step.BINARY01:
            weight, bias = weight / 2, bias + weight.sum(axis=1) / 2
        out.append((weight, bias))
    return out


def _model(layers: list[tuple[np.ndarray, np.ndarray]], n_out: int, name: str, doc: str) -> onnx.ModelProto:
    nodes, inits, current = [], [], "x"
    for k, (weight, bias) in enumerate(layers, start=1):
        inits += [numpy_helper.from_array(weight.astype(np.float32), f"W{k}")]
        inits += [numpy_helper.from_array(bias.astype(np.float32), f"B{k}")]
        nodes.append(helper.make_node("Gemm", [current, f"W{k}", f"B{k}"], [f"z{k}"], name=f"gemm{k}", transB=1))
        nodes.append(helper.make_node("Sign", [f"z{k}"], [f"s{k}"], name=f"sign{k}"))
        current = f"s{k}"
    inits.append(numpy_helper.from_array(np.eye(n_out, dtype=np.float32) / 2, "W_out"))
    inits.append(numpy_helper.from_array(np.full(n_out, 0.5, np.float32), "B_out"))
    nodes.append(helper.make_node("Gemm", [current, "W_out", "B_out"], ["y"], name="gemm_out", transB=1))
    n_in = layers[0][0].shape[1]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])],
        initializer=inits,
        doc_string=doc,
    )
    model = helper.make_model(graph, producer_name="nnverify.binary", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def net_to_onnx(net: BinaryNet, *, doc: str = "") -> onnx.ModelProto:
    """One network: input ``x`` ``[1, n]`` (0/1), output ``y`` ``[1, 1]`` in {0, 1}."""
    return _model(_layers(net), 1, "binary_net", doc)


def vote_to_onnx(nets: tuple[BinaryNet, BinaryNet, BinaryNet], rule: VoteRule, *, doc: str = "") -> onnx.ModelProto:
    """The vote system: input ``x`` ``[1, n]``, output ``y`` ``[1, 4]`` = ``[y1, y2, y3, vote]`` in {0, 1}.

    The three networks are stacked (first layers side by side on the shared input, later layers block-diagonal),
    then one Sign layer computes ``[y1, y2, y3, vote]`` (the ``y_i`` pass through as ±1) and a last Gemm maps it
    to {0, 1}.

    Raises:
        ModelError: the networks differ in depth or input size.
    """
    per_net = [_layers(net) for net in nets]
    if len({len(layers) for layers in per_net}) != 1 or len({net.n_inputs for net in nets}) != 1:
        raise ModelError("the three networks of a vote must have the same depth and input size")
    stacked = []
    for k in range(len(per_net[0])):
        parts = [layers[k] for layers in per_net]
        if k == 0:
            weight = np.vstack([w for w, _ in parts])
        else:
            rows = sum(w.shape[0] for w, _ in parts)
            weight = np.zeros((rows, sum(w.shape[1] for w, _ in parts)))
            r = c = 0
            for w, _ in parts:
                weight[r : r + w.shape[0], c : c + w.shape[1]] = w
                r, c = r + w.shape[0], c + w.shape[1]
        stacked.append((weight, np.concatenate([b for _, b in parts])))
    # s_i = 2 y_i - 1; majority: y1 + y2 + y3 - 3/2 = (s1 + s2 + s3) / 2; issue: 2 y1 + y2 + y3 - 3/2
    vote_row = [0.5, 0.5, 0.5, 0.0] if rule is VoteRule.MAJORITY else [1.0, 0.5, 0.5, 0.5]
    weight = np.vstack([np.eye(3), [vote_row[:3]]])
    stacked.append((weight, np.array([0.0, 0.0, 0.0, vote_row[3]])))
    return _model(stacked, 4, f"vote_{rule.value}", doc)


def save(model: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path``."""
    onnx.save_model(model, os.fspath(path))


def run_onnx(path: str | os.PathLike[str], x: np.ndarray) -> np.ndarray:
    """The file's output ``(N, m)`` on onnxruntime, one row of ``x`` ``(N, n)`` at a time (float64)."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    rows = np.asarray(x, dtype=np.float32)
    return np.array([session.run(["y"], {"x": row[None, :]})[0][0] for row in rows], dtype=np.float64)
