"""The shipped queries (properties/queries/) decided, and cross-checked against one side-by-side ONNX network
asked through the single-network (VNN-LIB 1.0) path (the ACAS Xu pairs under ``-m slow``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from nnverify.multi.solve import verify_query
from nnverify.options import Options
from nnverify.pipeline import verify
from nnverify.result import Verdict
from nnverify.spec.vnnlib import parse_vnnlib

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "properties" / "queries"
NET_1_1 = str(ROOT / "networks" / "ACASXU_run2a_1_1_batch_2000.onnx")
NET_1_9 = str(ROOT / "networks" / "ACASXU_run2a_1_9_batch_2000.onnx")
PRUNED = str(QUERIES / "acasxu_1_1_pruned.onnx")
LO = [0.6, -0.5, -0.5, 0.45, -0.5]
HI = [0.679857769, 0.5, 0.5, 0.5, -0.45]


def side_by_side(f: str, g: str, out: Path, subtract: bool) -> str:
    """x -> f(x) - g(x) (``subtract``) or [f(x), g(x)], built independently of ``multi/product.py``."""
    nodes, inits, info = [], [], None
    for tag, path in (("f", f), ("g", g)):
        model = onnx.load(path)
        init_names = {t.name for t in model.graph.initializer}
        (inp,) = [i for i in model.graph.input if i.name not in init_names]
        info = inp
        inits += [
            onnx.helper.make_tensor(f"{tag}_{t.name}", t.data_type, t.dims, t.raw_data, raw=True)
            for t in model.graph.initializer
        ]
        for node in model.graph.node:
            node.input[:] = ["x" if n == inp.name else f"{tag}_{n}" if n else n for n in node.input]
            node.output[:] = [f"{tag}_{n}" for n in node.output]
            node.name = f"{tag}_{node.name}" if node.name else ""
            nodes.append(node)
        out_name = model.graph.output[0].name
        n_out = int(np.prod([d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]))
    assert info is not None
    if subtract:
        nodes.append(helper.make_node("Sub", [f"f_{out_name}", f"g_{out_name}"], ["y"]))
    else:
        nodes.append(helper.make_node("Concat", [f"f_{out_name}", f"g_{out_name}"], ["y"], axis=1))
    dims = [d.dim_value for d in info.type.tensor_type.shape.dim]
    graph = helper.make_graph(
        nodes,
        "side_by_side",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, n_out if subtract else 2 * n_out])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, out)
    return str(out)


def _prop(outputs: int, body: str) -> str:
    decl = "".join(f"(declare-const X_{i} Real)" for i in range(5))
    decl += "".join(f"(declare-const Y_{j} Real)" for j in range(outputs))
    box = "".join(f"(assert (>= X_{i} {LO[i]}))(assert (<= X_{i} {HI[i]}))" for i in range(5))
    return decl + box + body


@pytest.mark.slow  # about 12 s + 15 s on an idle core
def test_equivalence_is_unsat_both_ways(tmp_path: Path) -> None:
    multi = verify_query(QUERIES / "acasxu_equivalence.vnnlib", {"f": NET_1_1, "g": PRUNED}, Options(timeout_s=60))
    net = side_by_side(NET_1_1, PRUNED, tmp_path / "diff.onnx", subtract=True)
    body = "(assert (or " + " ".join(f"(>= Y_{k} 0.02) (<= Y_{k} -0.02)" for k in range(5)) + "))"
    single = verify(net, parse_vnnlib(_prop(5, body)), Options(timeout_s=60))
    assert multi.verdict is Verdict.UNSAT and single.verdict is Verdict.UNSAT


@pytest.mark.slow
def test_disagreement_is_sat_both_ways(tmp_path: Path) -> None:
    multi = verify_query(QUERIES / "acasxu_disagreement.vnnlib", {"f": NET_1_1, "g": NET_1_9}, Options(timeout_s=60))
    assert multi.verdict is Verdict.SAT and multi.values is not None
    yf, yg = multi.values["Y_f"], multi.values["Y_g"]
    assert yf[0] == yf.min() and yg.min() < yg[0]
    net = side_by_side(NET_1_1, NET_1_9, tmp_path / "pair.onnx", subtract=False)
    body = "".join(f"(assert (<= Y_0 Y_{k}))" for k in range(1, 5))
    body += "(assert (or " + " ".join(f"(<= Y_{5 + k} Y_5)" for k in range(1, 5)) + "))"
    single = verify(net, parse_vnnlib(_prop(10, body)), Options(timeout_s=60))
    assert single.verdict is Verdict.SAT


def test_monotonicity_witness_is_strict() -> None:
    multi = verify_query(QUERIES / "acasxu_monotonicity.vnnlib", {"f": NET_1_1}, Options(timeout_s=60))
    assert multi.verdict is Verdict.SAT and multi.values is not None
    xf, xg = multi.values["X_f"], multi.values["X_g"]
    assert xf[0] <= xg[0] and np.array_equal(xf[1:], xg[1:])
    assert multi.values["Y_g"][0] < multi.values["Y_f"][0]


@pytest.mark.parametrize("name", ["acasxu_equivalence", "acasxu_monotonicity", "acasxu_disagreement"])
def test_official_reader_accepts_the_examples(name: str) -> None:
    vnnlib = pytest.importorskip("vnnlib")
    vnnlib.parse_query_file(str(QUERIES / f"{name}.vnnlib"))


@pytest.mark.slow
def test_query_language_version_agrees() -> None:
    """acasxu_disagreement.q (find … where …) and acasxu_disagreement.vnnlib ask the same: both sat."""
    from nnverify.multi.qlang import translate
    from nnverify.multi.solve import decide_query

    text = (QUERIES / "acasxu_disagreement.q").read_text()
    program = translate(text, "acasxu_disagreement.q", {"F": NET_1_1, "G": NET_1_9})
    result = decide_query(program.query, {"F": NET_1_1, "G": NET_1_9}, Options(timeout_s=60))
    assert result.verdict is Verdict.SAT and result.values is not None
    f, g = result.values["F__out"], result.values["G__out"]
    assert f[0] == f.min() and g.min() < g[0]
