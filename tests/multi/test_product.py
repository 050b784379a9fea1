"""The product graph: one merged model equal to each network on its slice; substitution and sharing; errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from multi.nets import random_mlp
from nnverify.errors import PropertyError
from nnverify.multi.bind import bind
from nnverify.multi.product import build_product
from nnverify.multi.relax import round_up, to_property
from nnverify.spec.vnnlib2 import parse_query

HEAD = """(vnnlib-version <2.0>)
(declare-network f
    (declare-input A real [3])
    (declare-hidden H real [1,6] "h1")
    (declare-output B real [2])
)
(declare-network g
    (declare-input C real [1,3])
    (declare-output D real [2])
)
"""
BOX = "".join(f"(assert (<= -1.0 A[{i}] 1.0))(assert (<= -1.0 C[0,{i}] 1.0))" for i in range(3))


def _run(path: str, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x}), strict=True))


@pytest.fixture
def two(tmp_path: Path) -> dict[str, str]:
    rng = np.random.default_rng(3)
    return {"f": random_mlp(tmp_path / "f.onnx", rng, [3, 6, 2]), "g": random_mlp(tmp_path / "g.onnx", rng, [3, 5, 2])}


@pytest.mark.parametrize("shared", [False, True])
def test_product_equals_each_network(two: dict[str, str], tmp_path: Path, shared: bool) -> None:
    eq = "".join(f"(assert (== A[{i}] C[0,{i}]))" for i in range(3)) if shared else ""
    q = parse_query(HEAD + BOX + eq + "(assert (<= B[0] D[1]))")
    product = build_product(q, bind(q, two))
    assert product.n_inputs == (3 if shared else 6) and product.n_outputs == 6 + 2 + 2
    path = str(tmp_path / "p.onnx")
    import onnx

    onnx.save(product.model, path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, size=(1, product.n_inputs)).astype(np.float32)
    y = session.run(None, {"nnv_x": x})[0][0]
    xa = x[:, [product.x_columns[("A", i)] for i in range(3)]]
    xc = x[:, [product.x_columns[("C", i)] for i in range(3)]]
    f_h1 = ort.InferenceSession(two["f"], providers=["CPUExecutionProvider"])
    assert np.array_equal(y[[product.y_columns[("B", j)] for j in range(2)]], _run(two["f"], xa)["y"][0])
    assert np.array_equal(y[[product.y_columns[("D", j)] for j in range(2)]], _run(two["g"], xc)["y"][0])
    del f_h1
    relaxed = to_property(q, product)
    (d,) = relaxed.prop.disjuncts
    assert np.all(d.lb == -1.0) and np.all(d.ub == 1.0)
    assert d.n_rows == 1 and not relaxed.inexact  # the equalities became shared columns, not rows


def test_equal_to_on_shared_inputs_is_one_copy(two: dict[str, str]) -> None:
    text = HEAD.replace("(declare-network g\n", "(declare-network g\n    (equal-to f)\n").replace(
        "C real [1,3]", "C real [3]"
    )
    text = text.replace('    (declare-hidden H real [1,6] "h1")\n', "")
    q = parse_query(text + "".join(f"(assert (<= -1 A[{i}] 1))(assert (== C[{i}] A[{i}]))" for i in range(3)))
    product = build_product(q, bind(q, {"f": two["f"]}))
    assert product.n_inputs == 3 and product.n_outputs == 2
    assert all(product.y_columns[("D", j)] == product.y_columns[("B", j)] for j in range(2))
    assert sum(node.op_type == "Relu" for node in product.model.graph.node) == 1


def test_exact_rounding() -> None:
    assert round_up(Fraction(1, 10)) >= 0.1 and Fraction(round_up(Fraction(1, 10))) >= Fraction(1, 10)
    assert Fraction(-round_up(Fraction(-1, 10))) <= Fraction(1, 10)
    assert round_up(Fraction(1, 2)) == 0.5


def test_decimal_coefficients_are_scaled_exactly(two: dict[str, str]) -> None:
    q = parse_query(HEAD + BOX + "(assert (<= (+ (* 0.1 B[0]) (* 0.3 D[1])) 0.7))")
    product = build_product(q, bind(q, two))
    (d,) = to_property(q, product).prop.disjuncts
    row = d.a_y[0]
    assert row[product.y_columns[("B", 0)]] == 1.0 and row[product.y_columns[("D", 1)]] == 3.0 and d.b[0] == 7.0


@pytest.mark.parametrize(
    ("replace", "by", "files", "where", "message"),
    [
        ("C real [1,3]", "C real [4]", None, (8, 5), "shape mismatch: 'C' is declared [4]"),
        ('"h1"', '"h7"', None, (4, 5), 'hidden tensor "h7" is not produced'),
        ('"h1"', '"h1"', {"h": "f.onnx"}, (1, 1), "--network h: the query declares no network 'h'"),
        ('"h1"', '"h1"', {"f": "f.onnx"}, (7, 1), "network 'g' needs a model"),
        ("H real [1,6]", "H real [1,5]", None, (4, 5), "shape mismatch: 'H' is declared [1,5]"),
    ],
)
def test_binding_errors(
    two: dict[str, str], replace: str, by: str, files: dict[str, str] | None, where: tuple[int, int], message: str
) -> None:
    q = parse_query(
        HEAD.replace(replace, by) + BOX.replace("C[0,", "C[") if "[4]" in by else HEAD.replace(replace, by) + BOX,
        "q.vnnlib",
    )
    given = two if files is None else {k: two[k if k in two else "f"] for k in files}
    with pytest.raises(PropertyError) as info:
        bind(q, given)
    assert message in info.value.message
    assert (info.value.line, info.value.col) == where, str(info.value)


def test_unbounded_input_is_an_error(two: dict[str, str]) -> None:
    q = parse_query(HEAD + BOX.replace("(assert (<= -1.0 A[1] 1.0))", "") + "(assert (<= B[0] 0))", "q.vnnlib")
    with pytest.raises(PropertyError, match=r"input A\[1\] has no lower bound"):
        to_property(q, build_product(q, bind(q, two)))


def test_models_of_different_opsets_are_converted(two: dict[str, str], tmp_path: Path) -> None:
    import onnx

    old = onnx.load(two["g"])
    old.opset_import[0].version = 11
    onnx.save(old, tmp_path / "g11.onnx")
    files = {"f": two["f"], "g": str(tmp_path / "g11.onnx")}
    q = parse_query(HEAD + BOX + "(assert (<= B[0] D[1]))")
    product = build_product(q, bind(q, files))
    assert {(op.domain, op.version) for op in product.model.opset_import} == {("", 13)}


def test_the_product_is_checked_against_each_network(two: dict[str, str], tmp_path: Path) -> None:
    """A merged model that computed something else than the networks is refused before anything is decided."""
    import dataclasses

    import onnx

    from nnverify.errors import ModelError
    from nnverify.multi.replay import Runner
    from nnverify.multi.solve import check_product

    q = parse_query(HEAD + BOX + "(assert (<= B[0] D[1]))")
    nets = bind(q, two)
    product = build_product(q, nets)
    path = str(tmp_path / "p.onnx")
    onnx.save(product.model, path)
    prop = to_property(q, product).prop
    check_product(q, product, nets, Runner(nets), path, prop)
    swapped = dict(product.y_columns)
    swapped[("B", 0)], swapped[("D", 1)] = swapped[("D", 1)], swapped[("B", 0)]
    with pytest.raises(ModelError, match="cannot be combined"):
        check_product(q, dataclasses.replace(product, y_columns=swapped), nets, Runner(nets), path, prop)


def test_isomorphic_to_is_checked(two: dict[str, str], tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    same_shape = random_mlp(tmp_path / "f2.onnx", rng, [3, 6, 2])
    other = random_mlp(tmp_path / "f3.onnx", rng, [3, 7, 2])
    text = HEAD.replace("(declare-network g\n", "(declare-network g\n    (isomorphic-to f)\n").replace(
        "C real [1,3]", "C real [3]"
    )
    text = text.replace('    (declare-hidden H real [1,6] "h1")\n', "")
    q = parse_query(text + BOX.replace("C[0,", "C[") + "(assert (<= B[0] D[1]))", "q.vnnlib")
    bind(q, {"f": two["f"], "g": same_shape})
    with pytest.raises(PropertyError, match="isomorphic-to 'f'") as info:
        bind(q, {"f": two["f"], "g": other})
    assert (info.value.line, info.value.col) == (7, 20)


def test_coefficient_overflow_is_an_error(two: dict[str, str]) -> None:
    q = parse_query(HEAD + BOX + "(assert (<= (* 1e300 1e300 B[0]) D[1]))", "q.vnnlib")
    with pytest.raises(PropertyError, match="outside the float64 range"):
        to_property(q, build_product(q, bind(q, two)))
