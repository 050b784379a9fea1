"""Seeded mutation fuzzing of ``nnverify.verify()``: mutated ONNX models and VNN-LIB properties (issue 23, item 5).

Only ``NnverifyError`` subclasses may come out of ``verify()``, and the process must survive (a solver that
crashes natively kills it). The mutation loop therefore runs in a child process (this file run as a script);
the test checks the child's exit status and its report. Each campaign stops after a few seconds, so the
number of cases depends on the machine; the sequence of cases is fixed by the seed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

#: Seconds each campaign mutates (the child also pays start-up and its last case).
CAMPAIGN_S = 6.0
#: ``verify()``'s budget per case: mutated models are small, most cases end far earlier.
CASE_TIMEOUT_S = 0.6

PROP = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 -1))
(assert (<= X_0 1))
(assert (>= X_1 -1))
(assert (<= X_1 1))
(assert (>= X_2 0))
(assert (<= X_2 0.5))
(assert (<= Y_0 Y_1))
"""


def base_model(rng: np.random.Generator) -> onnx.ModelProto:
    """A 3-4-4-2 ReLU network (Gemm, MatMul + Add, Relu, Flatten) with random float32 weights."""
    w = [rng.normal(size=s).astype(np.float32) for s in ((4, 3), (4, 4), (4, 2))]
    b = [rng.normal(size=s).astype(np.float32) for s in (4, 4, 2)]
    inits = [numpy_helper.from_array(a, f"W{k}") for k, a in enumerate(w)]
    inits += [numpy_helper.from_array(a, f"B{k}") for k, a in enumerate(b)]
    nodes = [
        helper.make_node("Flatten", ["X"], ["F"], name="flat"),
        helper.make_node("Gemm", ["F", "W0", "B0"], ["G"], name="gemm", transB=1),
        helper.make_node("Relu", ["G"], ["R0"], name="relu0"),
        helper.make_node("MatMul", ["R0", "W1"], ["M"], name="mm"),
        helper.make_node("Add", ["M", "B1"], ["A"], name="add"),
        helper.make_node("Relu", ["A"], ["R1"], name="relu1"),
        helper.make_node("MatMul", ["R1", "W2"], ["M2"], name="mm2"),
        helper.make_node("Add", ["M2", "B2"], ["Y"], name="out"),
    ]
    graph = helper.make_graph(
        nodes,
        "fuzz",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def base_cnn(rng: np.random.Generator) -> onnx.ModelProto:
    """A 1x1x3x1 input through Conv (weights from a ``Constant`` node), BatchNormalization, Relu, Reshape, Gemm:
    the same 3 inputs and 2 outputs as ``base_model``, other operators and weights held by a node."""
    kernel = numpy_helper.from_array(rng.normal(size=(2, 1, 2, 1)).astype(np.float32), "K")
    inits = [
        numpy_helper.from_array(rng.normal(size=2).astype(np.float32), "KB"),
        numpy_helper.from_array(np.abs(rng.normal(size=2)).astype(np.float32) + 0.5, "scale"),
        numpy_helper.from_array(rng.normal(size=2).astype(np.float32), "shift"),
        numpy_helper.from_array(rng.normal(size=2).astype(np.float32), "mean"),
        numpy_helper.from_array(np.ones(2, dtype=np.float32), "var"),
        numpy_helper.from_array(np.array([1, 4], dtype=np.int64), "shape"),
        numpy_helper.from_array(rng.normal(size=(2, 4)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(size=2).astype(np.float32), "B"),
    ]
    nodes = [
        helper.make_node("Constant", [], ["Kc"], value=kernel, name="kernel"),
        helper.make_node("Conv", ["X", "Kc", "KB"], ["C"], name="conv", kernel_shape=[2, 1]),
        helper.make_node("BatchNormalization", ["C", "scale", "shift", "mean", "var"], ["N"], name="bn"),
        helper.make_node("Relu", ["N"], ["R"], name="relu"),
        helper.make_node("Reshape", ["R", "shape"], ["F"], name="reshape"),
        helper.make_node("Gemm", ["F", "W", "B"], ["Y"], name="head", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "fuzz_cnn",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 3, 1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


#: Inputs of ``base_wide``: more than ``pipeline.INPUT_SPLIT_MAX_DIM``, so the ReLU search (and its racing MILP,
#: MILP-refined bounds and polishing LP) runs instead of input splitting.
WIDE_INPUTS = 20
WIDE_PROP = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n" for i in range(20))
WIDE_PROP += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(assert (>= Y_0 (+ Y_1 20)))\n"


def base_wide(rng: np.random.Generator) -> onnx.ModelProto:
    """A 20-30-30-2 ReLU network (MatMul only), decided by the ReLU search."""
    w = [rng.normal(size=s).astype(np.float32) for s in ((WIDE_INPUTS, 30), (30, 30), (30, 2))]
    nodes = [
        helper.make_node("MatMul", ["X", "W0"], ["Z0"], name="mm0"),
        helper.make_node("Relu", ["Z0"], ["A0"], name="relu0"),
        helper.make_node("MatMul", ["A0", "W1"], ["Z1"], name="mm1"),
        helper.make_node("Relu", ["Z1"], ["A1"], name="relu1"),
        helper.make_node("MatMul", ["A1", "W2"], ["Y"], name="mm2"),
    ]
    graph = helper.make_graph(
        nodes,
        "fuzz_wide",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, WIDE_INPUTS])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(a, f"W{k}") for k, a in enumerate(w)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _base(rng: np.random.Generator) -> tuple[onnx.ModelProto, str]:
    """One of the base networks with its property."""
    pick = rng.random()
    if pick < 0.15:
        return base_wide(rng), WIDE_PROP
    return (base_model if pick < 0.65 else base_cnn)(rng), PROP


# --- model mutations: each changes the model in place and returns a short description -------------------------

_SPECIAL = (np.nan, np.inf, -np.inf, 1e30, -1e30, 3.4e38, 1e-30, 0.0)


def _weights(m: onnx.ModelProto, rng: np.random.Generator) -> str:
    t = m.graph.initializer[int(rng.integers(len(m.graph.initializer)))]
    a = numpy_helper.to_array(t).copy()
    value = float(rng.choice(_SPECIAL)) if rng.random() < 0.8 else float(rng.normal() * 10 ** rng.integers(-40, 40))
    a.flat[int(rng.integers(a.size))] = value
    if rng.random() < 0.3:
        a[...] = value
    t.CopyFrom(numpy_helper.from_array(a.astype(np.float32), t.name))
    return f"weight {t.name} <- {value}"


def _shape(m: onnx.ModelProto, rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        dims = m.graph.input[0].type.tensor_type.shape.dim
        dim = dims[int(rng.integers(len(dims)))]
        dim.dim_value = int(rng.choice([0, 1, 2, 3, 6, 10**9, 10**13]))
        return f"input dim <- {dim.dim_value}"
    t = m.graph.initializer[int(rng.integers(len(m.graph.initializer)))]
    t.dims[int(rng.integers(len(t.dims)))] = int(rng.choice([0, 1, 2, 5, 7]))
    return f"initializer {t.name} dims <- {list(t.dims)}"


def _elem_type(m: onnx.ModelProto, rng: np.random.Generator) -> str:
    types = [TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.BOOL, TensorProto.STRING]
    types += [TensorProto.COMPLEX64, TensorProto.BFLOAT16, TensorProto.UINT8]
    elem = int(rng.choice(types))
    target = rng.integers(3)
    if target == 0:
        m.graph.input[0].type.tensor_type.elem_type = elem
        return f"input type <- {elem}"
    if target == 1:
        m.graph.output[0].type.tensor_type.elem_type = elem
        return f"output type <- {elem}"
    t = m.graph.initializer[int(rng.integers(len(m.graph.initializer)))]
    t.data_type = elem
    return f"initializer {t.name} type <- {elem}"


def _opset(m: onnx.ModelProto, rng: np.random.Generator) -> str:
    choice = int(rng.integers(4))
    if choice == 0:
        del m.opset_import[:]
        return "no opset_import"
    if choice == 1:
        m.ir_version = int(rng.choice([0, 1, 3, 99]))
        return f"ir_version <- {m.ir_version}"
    m.opset_import[0].version = int(rng.choice([0, 1, 6, 7, 9, 99]))
    if choice == 3:
        m.opset_import[0].domain = "com.example"
    return f"opset <- {m.opset_import[0].domain or 'ai.onnx'} {m.opset_import[0].version}"


def _initializer(m: onnx.ModelProto, rng: np.random.Generator) -> str:
    inits = m.graph.initializer
    k = int(rng.integers(len(inits)))
    choice = int(rng.integers(4))
    if choice == 0:
        name = inits[k].name
        del inits[k]
        return f"initializer {name} dropped"
    if choice == 1:
        inits.add().CopyFrom(inits[k])
        return f"initializer {inits[k].name} duplicated"
    if choice == 2:
        raw = inits[k].raw_data
        inits[k].raw_data = raw[: int(rng.integers(len(raw) + 1))] if raw else b"\x00"
        return f"initializer {inits[k].name} raw_data truncated"
    inits[k].data_location = TensorProto.EXTERNAL
    entry = inits[k].external_data.add()
    entry.key, entry.value = "location", str(rng.choice(["missing.bin", "/etc/hostname", "../x.bin", ""]))
    return f"initializer {inits[k].name} external {entry.value!r}"


def _structure(m: onnx.ModelProto, rng: np.random.Generator) -> str:
    nodes = m.graph.node
    k = int(rng.integers(len(nodes)))
    choice = int(rng.integers(5))
    if choice == 0:
        name = nodes[k].name
        del nodes[k]
        return f"node {name} dropped"
    if choice == 1:
        nodes.add().CopyFrom(nodes[k])
        return f"node {nodes[k].name} duplicated"
    if choice == 2:
        m.graph.input[0].name = "renamed"
        return "graph input renamed"
    if choice == 3:
        j = int(rng.integers(len(nodes)))
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(nodes[k])
        b.CopyFrom(nodes[j])
        nodes[k].CopyFrom(b)
        nodes[j].CopyFrom(a)
        return f"nodes {k} and {j} swapped"
    nodes[k].op_type = str(rng.choice(["Softmax", "Unknown", "Sigmoid", "Conv", "Relu", "Identity"]))
    return f"node {nodes[k].name} op <- {nodes[k].op_type}"


def _constant(m: onnx.ModelProto, rng: np.random.Generator) -> str:
    """A ``Constant`` node's tensor (the CNN's kernel): a special value, another type or shape, or no value."""
    node = next((n for n in m.graph.node if n.op_type == "Constant"), None)
    if node is None:
        return _weights(m, rng)
    tensor = node.attribute[0].t
    choice = int(rng.integers(3))
    if choice == 0:
        a = numpy_helper.to_array(tensor).copy()
        a.flat[int(rng.integers(a.size))] = float(rng.choice(_SPECIAL))
        tensor.CopyFrom(numpy_helper.from_array(a, tensor.name))
        return "constant kernel value"
    if choice == 1:
        tensor.dims[int(rng.integers(len(tensor.dims)))] = int(rng.choice([0, 1, 3]))
        return f"constant kernel dims <- {list(tensor.dims)}"
    del node.attribute[:]
    return "constant without value"


MODEL_MUTATIONS: tuple[Callable[[onnx.ModelProto, np.random.Generator], str], ...] = (
    _constant,
    _weights,
    _shape,
    _elem_type,
    _opset,
    _initializer,
    _structure,
)


# --- property mutations ----------------------------------------------------------------------------------------

_TOKENS = ("nan", "inf", "-inf", "1e400", "-1e308", "1e30", "X_9", "Y_7", "(", ")", "\ufeff", "\r", ";", "0x1p3")


def mutate_property(text: str, rng: np.random.Generator) -> str:
    """Replace a number, insert a token, drop a line or a byte range, or swap bounds; 1-3 times."""
    for _ in range(int(rng.integers(1, 4))):
        choice = int(rng.integers(6))
        if choice == 0:
            numbers = [tok for tok in text.replace(")", " ").split() if tok.lstrip("-").replace(".", "").isdigit()]
            if numbers:
                text = text.replace(str(rng.choice(numbers)), str(rng.choice(_TOKENS)), 1)
        elif choice == 1:
            at = int(rng.integers(len(text) + 1))
            text = text[:at] + str(rng.choice(_TOKENS)) + text[at:]
        elif choice == 2:
            lines = text.splitlines(keepends=True)
            if lines:
                del lines[int(rng.integers(len(lines)))]
            text = "".join(lines)
        elif choice == 3:
            at = int(rng.integers(len(text) + 1))
            text = text[:at] + text[at + int(rng.integers(1, 20)) :]
        elif choice == 4:
            text = text.replace("(<= X_2 0.5)", "(<= X_2 -0.5)") if "X_2 0.5" in text else text.replace(">=", "<=")
        else:  # a box wider than the float range (ub - lb overflows)
            text = text.replace(" -1)", " -1.7e308)").replace(" 1)", " 1.7e308)")
    return text


# --- the campaign (run in the child process) ------------------------------------------------------------------


def _apply(
    mutation: Callable[[onnx.ModelProto, np.random.Generator], str], model: onnx.ModelProto, rng: np.random.Generator
) -> str:
    """One mutation; a second one may not apply to what the first left (e.g. weights of a changed type)."""
    try:
        return mutation(model, rng)
    except Exception as exc:  # onnx's helpers raise their own types too
        return f"{mutation.__name__} not applicable ({type(exc).__name__})"


def run_campaign(kind: str, seed: int, seconds: float) -> dict[str, object]:
    """Mutate and verify until ``seconds`` pass; a report of the cases and of every foreign exception."""
    import nnverify
    from nnverify.errors import NnverifyError

    rng = np.random.default_rng(seed)
    cases, refused, verdicts, foreign = 0, 0, {}, []
    until = time.monotonic() + seconds
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        while time.monotonic() < until:
            model, prop_text = _base(rng)
            steps = []
            if kind == "models":
                for _ in range(int(rng.integers(1, 3))):
                    steps.append(_apply(MODEL_MUTATIONS[int(rng.integers(len(MODEL_MUTATIONS)))], model, rng))
            else:
                prop_text = mutate_property(prop_text, rng)
                steps.append(repr(prop_text[:80]))
            net, prop = folder / f"m{cases}.onnx", folder / f"p{cases}.vnnlib"
            net.write_bytes(model.SerializeToString())
            prop.write_bytes(prop_text.encode("utf-8", errors="surrogatepass"))
            cases += 1
            try:
                result = nnverify.verify(net, prop, nnverify.Options(timeout_s=CASE_TIMEOUT_S, seed=cases))
                verdicts[result.verdict.value] = verdicts.get(result.verdict.value, 0) + 1
            except NnverifyError as exc:
                refused += 1
                if "\n" in str(exc) and "does not support" not in str(exc):
                    foreign.append({"case": steps, "error": f"multi-line message: {exc}"})
            except Exception as exc:  # collected: the test reports every one
                foreign.append({"case": steps, "error": "".join(traceback.format_exception_only(exc)).strip()})
            net.unlink()
            prop.unlink()
    return {"cases": cases, "refused": refused, "verdicts": verdicts, "foreign": foreign}


@pytest.mark.parametrize("kind", ["models", "properties"])
def test_mutated_inputs_raise_only_nnverify_errors(kind: str) -> None:
    """The child's exit status catches native crashes (SIGSEGV: -11); the report, foreign exceptions."""
    cmd = [sys.executable, __file__, kind, "0", str(CAMPAIGN_S)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CAMPAIGN_S + 120)
    assert proc.returncode == 0, f"the fuzzing process died ({proc.returncode}): {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["cases"] >= 5, report
    assert report["foreign"] == [], json.dumps(report["foreign"][:5], indent=1)


if __name__ == "__main__":
    print(json.dumps(run_campaign(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))))
    sys.stdout.flush()
    import os

    os._exit(0)  # abandoned solver threads must not crash the interpreter's teardown (as ``cli.entry``)
