"""Replays a product-graph witness on every original ONNX model with onnxruntime and checks the query exactly.

Each network runs on its own slice of the product input (hidden tensors read as extra outputs). Constraints
are evaluated in exact rational arithmetic on the float values: non-strict ones with the VNN-COMP absolute
tolerance, strict ones strictly (a tie is no witness).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import onnx

from nnverify.errors import ModelError
from nnverify.multi.bind import BoundNetwork, one_line
from nnverify.multi.product import Product
from nnverify.spec.vnnlib2_types import Constraint, Query, Rel


@dataclass(frozen=True, slots=True)
class Replay:
    """The outcome: ``valid`` (a strict witness), ``tie`` (valid only if strict comparisons were non-strict)."""

    valid: bool
    tie: bool
    values: dict[str, np.ndarray]
    reason: str


class Runner:
    """onnxruntime sessions on the original models, with declared hidden tensors as extra outputs."""

    def __init__(self, nets: tuple[BoundNetwork, ...]) -> None:
        self._sessions: dict[str, object] = {}
        self._nets = nets

    def run(self, net: BoundNetwork, feeds: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every output and declared hidden tensor of ``net`` (by ONNX name) for the given inputs."""
        hidden = tuple(v.onnx_name for v in net.decl.hidden if v.onnx_name)
        key = net.path + "\0" + "\0".join(hidden)
        if key not in self._sessions:
            self._sessions[key] = _session(net, hidden)
        session = self._sessions[key]
        feed = {
            name: x.astype(np.float32).reshape(shape)
            for k, (name, shape, x) in enumerate(zip(net.input_names, net.input_shapes, feeds, strict=True))
            if net.default(k) is None  # an initialized input keeps the model's default
        }
        names = list(net.output_names) + [h for h in hidden if h not in net.output_names]
        try:
            outs = session.run(names, feed)  # type: ignore[attr-defined]
        except Exception as exc:  # onnxruntime raises its own types
            raise ModelError(f"{net.path}: onnxruntime cannot run the model ({one_line(exc)})") from exc
        return {name: np.asarray(out, dtype=np.float64).ravel() for name, out in zip(names, outs, strict=True)}


def _session(net: BoundNetwork, hidden: tuple[str, ...]) -> object:
    import onnxruntime as ort  # lazy: start-up time matters

    model = onnx.ModelProto()
    model.CopyFrom(net.model)
    present = {o.name for o in model.graph.output}
    for name in hidden:
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types
        raise ModelError(f"{net.path}: onnxruntime cannot load the model ({one_line(exc)})") from exc


def assignment(
    query: Query, product: Product, nets: tuple[BoundNetwork, ...], runner: Runner, x: np.ndarray
) -> dict[str, np.ndarray]:
    """Every declared variable's flat float64 value: inputs from the product input ``x`` (float32-rounded),
    outputs and hidden tensors from onnxruntime on each original model."""
    x32 = np.asarray(x, dtype=np.float64).ravel().astype(np.float32).astype(np.float64)
    values: dict[str, np.ndarray] = {}
    for net in nets:
        feeds = []
        for k, (var, src) in enumerate(zip(net.decl.inputs, net.decl.feeders, strict=True)):
            default = net.default(k)
            if default is not None:
                values[var.name] = default
            elif src is None:
                values[var.name] = x32[[product.x_columns[(var.name, i)] for i in range(var.size)]]
            else:  # composition: the feeding network's own (onnxruntime) values
                values[var.name] = values[src]
            feeds.append(values[var.name])
        outs = runner.run(net, feeds)
        for var in net.decl.hidden + net.decl.outputs:
            tensor = outs[net.onnx_name(var)]
            if tensor.size != var.size:
                name = net.onnx_name(var)
                raise ModelError(f"{net.path}: '{name}' has {tensor.size} values; '{var.name}' declares {var.size}")
            values[var.name] = tensor
    for var in query.auxiliary:
        values[var.name] = x32[[product.x_columns[(var.name, i)] for i in range(var.size)]]
    return values


def _holds(c: Constraint, values: dict[str, np.ndarray], atol: Fraction, strict: bool) -> bool:
    lhs = sum((coef * Fraction(float(values[name][i])) for (name, i), coef in c.coefs), Fraction(0))
    if c.rel is Rel.EQ:
        return abs(lhs - c.b) <= atol
    if c.rel is Rel.LT and strict:
        return lhs < c.b
    return lhs <= c.b + atol


def satisfies(query: Query, values: dict[str, np.ndarray], atol: float, strict: bool) -> bool:
    """Whether the assignment satisfies the query (strict comparisons strictly when ``strict``)."""
    tol = Fraction(atol)
    if not all(np.all(np.isfinite(v)) for v in values.values()):
        return False
    if not all(_holds(c, values, tol, strict) for c in query.common):
        return False
    return any(all(_holds(c, values, tol, strict) for c in alt) for alt in query.alternatives)


def replay(
    query: Query, product: Product, nets: tuple[BoundNetwork, ...], runner: Runner, x: np.ndarray, atol: float
) -> Replay:
    """Check the product input ``x`` on every original model (see the module docstring)."""
    values = assignment(query, product, nets, runner, x)
    if not all(np.all(np.isfinite(v)) for v in values.values()):
        return Replay(False, False, values, "a value is not finite")
    if satisfies(query, values, atol, strict=True):
        return Replay(True, False, values, "valid")
    if query.has_strict and satisfies(query, values, atol, strict=False):
        return Replay(False, True, values, "a strict comparison holds only with equality (a tie)")
    return Replay(False, False, values, "the original models' outputs do not satisfy the query")
