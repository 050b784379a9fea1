"""Loading ONNX files: exact error messages for bad files and unsupported operators; import details."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_nets import IR_VERSION, SaveNet, build_model

from nnverify.errors import InputFileError, ModelError, UnsupportedOpsError
from nnverify.graph.onnx_import import load_network, unsupported_message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.onnx"
    with pytest.raises(InputFileError) as info:
        load_network(path)
    assert str(info.value) == f"{path}: no such file"


@pytest.mark.parametrize("content", [b"this is a text file, not a model\n", b""], ids=["text-file", "empty-file"])
def test_not_an_onnx_model(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "net.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError) as info:
        load_network(path)
    assert str(info.value).startswith(f"{path}: not an ONNX model (")


def hardmax(name: str, data: str, output: str) -> onnx.NodeProto:
    """A Hardmax node (unsupported) over the last axis."""
    return helper.make_node("Hardmax", [data], [output], name=name, axis=-1)


UNSUPPORTED = {
    "two-ops-three-nodes": (
        [
            hardmax("/model/Hardmax_1", "x", "g1"),
            hardmax("/model/Hardmax_2", "x", "g2"),
            helper.make_node("Add", ["g1", "g2"], ["s"], name="/model/Add"),
            helper.make_node("Einsum", ["s"], ["y"], name="/head/Einsum", equation="ij->ij"),
        ],
        "uses 2 ONNX operators that nnverify does not support:\n"
        "  Hardmax  2 nodes, first '/model/Hardmax_1'\n"
        "  Einsum   1 node   '/head/Einsum'",
    ),
    "gemm-of-variables": (
        [
            helper.make_node("Transpose", ["x"], ["t"], name="t"),
            helper.make_node("Gemm", ["t", "x"], ["y"]),
        ],
        "uses 1 ONNX operator that nnverify does not support:\n"
        "  Gemm  1 node   'Gemm_1': both factors of Gemm are variable tensors "
        "(only products with a constant are affine)",
    ),
    "custom-domain": (
        [helper.make_node("Relu", ["x"], ["y"], name="/custom", domain="com.example")],
        "uses 1 ONNX operator that nnverify does not support:\n  com.example.Relu  1 node   '/custom'",
    ),
}


@pytest.mark.parametrize(("nodes", "expected"), UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unsupported_ops_are_all_listed(save_net: SaveNet, nodes: list[onnx.NodeProto], expected: str) -> None:
    path = save_net(nodes, (2, 3), {"i": np.array(0)})
    with pytest.raises(UnsupportedOpsError) as info:
        load_network(path)
    assert str(info.value) == f"{path} {expected}"


def test_unsupported_message_aligns_counts() -> None:
    problems: dict[str, list[tuple[str, str | None]]] = {
        "Gather": [(f"g{i}", None) for i in range(12)],
        "Div": [("/norm/Div", None)],
    }
    assert unsupported_message("net.onnx", problems) == (
        "net.onnx uses 2 ONNX operators that nnverify does not support:\n"
        "  Gather  12 nodes, first 'g0'\n"
        "  Div      1 node   '/norm/Div'"
    )


def test_unsupported_op_in_dead_branch_is_ignored(save_net: SaveNet) -> None:
    nodes = [helper.make_node("Einsum", ["x"], ["unused"], equation="i->i"), helper.make_node("Neg", ["x"], ["y"])]
    graph = load_network(save_net(nodes, (2,)))
    assert [node.op_type for node in graph.nodes] == ["Neg"]


def save_model(tmp_path: Path, model: onnx.ModelProto) -> Path:
    """Write the model to ``tmp_path / net.onnx``."""
    path = tmp_path / "net.onnx"
    onnx.save(model, path)
    return path


def test_two_inputs_are_named(tmp_path: Path) -> None:
    model = build_model([helper.make_node("Add", ["x", "z"], ["y"])], (2,))
    model.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [2]))
    path = save_model(tmp_path, model)
    with pytest.raises(ModelError) as info:
        load_network(path)
    assert str(info.value) == f"{path}: expected exactly one graph input, found 2: 'x', 'z'"


def test_two_outputs_are_named(tmp_path: Path) -> None:
    model = build_model([helper.make_node("Neg", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["r"])], (2,))
    model.graph.output.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    path = save_model(tmp_path, model)
    with pytest.raises(ModelError) as info:
        load_network(path)
    assert str(info.value) == f"{path}: expected exactly one graph output, found 2: 'y', 'r'"


def test_inconsistent_shapes_name_the_node(save_net: SaveNet) -> None:
    path = save_net([helper.make_node("MatMul", ["x", "W"], ["y"], name="/fc")], (1, 4), {"W": np.ones((3, 2))})
    with pytest.raises(ModelError, match=r"node '/fc' \(MatMul\) cannot be evaluated"):
        load_network(path)


def test_import_details(tmp_path: Path) -> None:
    """Symbolic dims become 1, initializers listed as inputs (old IR) are not inputs, defaults are filled."""
    model = build_model([helper.make_node("Gemm", ["x", "W"], ["y"])], ("batch", 3), {"W": np.ones((3, 2))})
    model.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 2]))
    model.ir_version = min(model.ir_version, IR_VERSION)
    graph = load_network(save_model(tmp_path, model))
    assert (graph.input_name, graph.input_shape, graph.output_shape) == ("x", (1, 3), (1, 2))
    gemm = graph.nodes[0]
    assert gemm.name == "Gemm_0"
    assert dict(gemm.attrs) == {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
    assert graph.constants["W"].dtype == np.float64
    np.testing.assert_array_equal(graph.eval(np.ones((2, 3))), np.full((2, 2), 3.0))


def test_constant_output_is_rejected(save_net: SaveNet) -> None:
    nodes = [helper.make_node("Neg", ["c"], ["y"]), helper.make_node("Relu", ["x"], ["unused"])]
    path = save_net(nodes, (2,), {"c": np.ones(2)})
    with pytest.raises(ModelError) as info:
        load_network(path)
    assert str(info.value) == f"{path}: output 'y' is a constant (it does not depend on the input)"


def test_output_without_producer_is_rejected(save_net: SaveNet) -> None:
    path = save_net([helper.make_node("Neg", ["x"], ["z"])], (2,))
    with pytest.raises(ModelError) as info:
        load_network(path)
    assert str(info.value) == f"{path}: output 'y' is not computed by any node"
