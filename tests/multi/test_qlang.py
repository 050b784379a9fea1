"""The find … where … return language: translation, errors at line:col, decisions, the emitted VNN-LIB 2 file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multi.nets import mlp, random_mlp
from nnverify.cli import main
from nnverify.errors import PropertyError
from nnverify.multi.emit import number, to_vnnlib2
from nnverify.multi.qlang import program_files, translate
from nnverify.multi.solve import decide_query
from nnverify.options import Options
from nnverify.result import Verdict
from nnverify.spec.vnnlib2 import parse_query


@pytest.fixture
def nets(tmp_path: Path) -> dict[str, str]:
    rng = np.random.default_rng(11)
    return {"F": random_mlp(tmp_path / "f.onnx", rng, [3, 8, 3]), "G": random_mlp(tmp_path / "g.onnx", rng, [3, 8, 3])}


def _run(text: str, files: dict[str, str], **consts: np.ndarray):
    program = translate(text, "q.dl2", files, consts, {"cat": 1})
    return program, decide_query(program.query, program_files(program, files), Options(timeout_s=30))


def test_disagreement_with_return(nets: dict[str, str]) -> None:
    program, result = _run("find x[1,3] where x in [-2, 2], class(F(x)) = 2, class(G(x)) = cat return x, F(x)", nets)
    assert result.verdict is Verdict.SAT and result.values is not None
    assert [text for text, _ in program.returns] == ["x", "F(x)"]
    f, g = result.values["F__out"], result.values["G__out"]
    assert f[2] > max(f[0], f[1]) and g[1] > max(g[0], g[2])
    assert np.all(np.abs(result.values["x"]) <= 2)


def test_linf_ball_around_a_constant_and_hidden_tensor(nets: dict[str, str]) -> None:
    x0 = np.array([[0.2, -0.1, 0.3]])
    text = "find x[1,3] where linf(x - x0) <= 0.25, F(x).h1[0,2] >= F(x).h1[0,1] + 0.1 return F(x).h1"
    _, result = _run(text, nets, x0=x0)
    assert result.verdict in (Verdict.SAT, Verdict.UNSAT)
    if result.verdict is Verdict.SAT:
        assert result.values is not None
        assert np.all(np.abs(result.values["x"] - x0.ravel()) <= 0.25 + 1e-7)
        h = result.values["F__h1"]
        assert h[2] >= h[1] + 0.1 - 1e-4


def test_two_calls_of_one_network_share_it(tmp_path: Path) -> None:
    """The second call is equal-to the first; y = 2x is monotone, so the strict decrease is unsat (slope bound)."""
    double = mlp(tmp_path / "d.onnx", [(np.array([[2.0]]), np.array([0.0]))])
    text = "find a[1,1], b[1,1] where a in [0, 1], b in [0, 1], a[0] <= b[0], D(b)[0] < D(a)[0]"
    program, result = _run(text, {"D": double})
    assert [n.equal_to for n in program.query.networks] == [None, "D"]
    assert result.verdict is Verdict.UNSAT and result.method == "slope"


def test_emitted_vnnlib_reads_back_the_same(nets: dict[str, str]) -> None:
    text = "find x[1,3] where x in [-1, 0.5], F(x)[0] - 0.3 * G(x)[2] > 0.125 or class(G(x)) != 2"
    program = translate(text, "q.dl2", nets)
    again = parse_query(to_vnnlib2(program.query))
    strip = lambda cs: [(c.coefs, c.rel, c.b) for c in cs]  # noqa: E731
    assert strip(again.common) == strip(program.query.common)
    assert [strip(a) for a in again.alternatives] == [strip(a) for a in program.query.alternatives]
    assert number(__import__("fractions").Fraction(-3, 8)) == "-0.375"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("find x[1,3] where H(x)[0] > 1", (1, 19), "unknown network 'H'"),
        ("find x[1,3] where F(y)[0] > 1", (1, 21), "expected a variable declared by find"),
        ("find x[1,3] where x[3] > 1, F(x)[0] > 0", (1, 20), "index 3 out of range"),
        ("find x[1,3] where F(x)[0] * G(x)[0] > 1", (1, 27), "non-linear product"),
        ("find x[1,3] where x[0] < F(x).p[0]", (1, 31), "softmax"),
        ("find x[1,3] where linf(x - img) < 1, F(x)[0] > 0", (1, 28), "unknown variable or constant 'img'"),
        ("find x[1,3], z[2] where x in [0, 1], F(x)[0] > 0", (1, 14), "'z' is not the input of any network"),
        ("find x[1,3] where F(x)[0] > 1 $", (1, 31), "unexpected character '$'"),
        ("find x[1,3]\nwhere class(F(x)) = dog", (2, 21), "expected a class 0 … 2"),
        ("find x[1,3] where F(x).nope[0] > 1", (1, 24), "no tensor 'nope'"),
        ("find x[1,3] where F(x)[0] > 1e999", (1, 29), "outside the float64 range"),
    ],
)
def test_errors_point_at_the_problem(nets: dict[str, str], text: str, where: tuple[int, int], message: str) -> None:
    with pytest.raises(PropertyError) as info:
        translate(text, "q.dl2", nets, {}, {"cat": 1})
    assert message in info.value.message
    assert (info.value.line, info.value.col) == where, str(info.value)


def test_cli_query(nets: dict[str, str], tmp_path: Path) -> None:
    program = tmp_path / "q.dl2"
    program.write_text("find x[1,3]\nwhere x in [-2, 2], class(F(x)) = 2, class(G(x)) = 1\nreturn x\n")
    emitted = tmp_path / "q.vnnlib"
    args = ["query", str(program), "--net", f"F={nets['F']}", "--net", f"G={nets['G']}", "--emit-vnnlib", str(emitted)]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines()[0] == "sat" and out.stdout.splitlines()[1].startswith("x = [[")
    assert parse_query(emitted.read_text()).networks[0].name == "F"
    program.write_text("find x[1,3]\nwhere class(K(x)) = 0\n")
    out = CliRunner().invoke(main, ["query", str(program), "--net", f"F={nets['F']}"])
    assert out.exit_code == 3 and out.stderr.startswith(f"Error: {program}:2:13: unknown network 'K'")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.fixture
def binary(tmp_path: Path) -> str:
    return random_mlp(tmp_path / "b.onnx", np.random.default_rng(5), [2, 6, 2])


@pytest.mark.parametrize("t", [0.6, 0.9])
def test_softmax_threshold_two_classes_is_exact(binary: str, t: float) -> None:
    text = f"find x[1,2] where x in [-1, 1], N(x).p[1] > {t} return N(x)"
    program = translate(text, "q.dl2", {"N": binary})
    result = decide_query(program.query, {"N": binary}, Options(timeout_s=30), None, program.failed_check)
    z = _eval_grid(binary)
    reachable = bool((_softmax_rows(z)[:, 1] > t).any())
    if reachable:
        assert result.verdict is Verdict.SAT
    if result.verdict is Verdict.SAT:
        assert result.values is not None and _softmax(result.values["N__out"])[1] > t
    else:
        assert result.verdict is Verdict.UNSAT and not reachable


def _eval_grid(path: str) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    g = np.linspace(-1, 1, 41, dtype=np.float32)
    xs = np.array([[a, b] for a in g for b in g], dtype=np.float32)
    return np.concatenate([session.run(None, {"x": x[None]})[0] for x in xs])


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_softmax_threshold_three_classes_is_replayed(nets: dict[str, str]) -> None:
    text = "find x[1,3] where x in [-2, 2], F(x).p[2] >= 0.7 return F(x)"
    program = translate(text, "q.dl2", nets)
    result = decide_query(
        program.query, program_files(program, nets), Options(timeout_s=30), None, program.failed_check
    )
    assert result.verdict in (Verdict.SAT, Verdict.UNSAT, Verdict.UNKNOWN)
    if result.verdict is Verdict.SAT:
        assert result.values is not None and _softmax(result.values["F__out"])[2] >= 0.7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("find x[1,3] where F(x).p[0] > 1.5", "strictly between 0 and 1"),
        ("find x[1,3] where F(x)[0] > 0 or F(x).p[0] > 0.5", "cannot be part of an 'or'"),
        ("find x[1,3] where F(x).p[0] = 0.5", "expected <, <=, > or >="),
    ],
)
def test_softmax_errors(nets: dict[str, str], text: str, message: str) -> None:
    with pytest.raises(PropertyError, match=message):
        translate(text, "q.dl2", nets)


def test_l1_ball_is_exact_on_few_elements(nets: dict[str, str]) -> None:
    x0 = np.array([0.1, 0.2, -0.3])
    program, result = _run("find x[1,3] where l1(x - x0) <= 0.5, F(x)[0] >= F(x)[1] return x", nets, x0=x0)
    assert program.checks == ()  # 2^3 exact rows, nothing left to check on replay
    assert len(program.query.common) >= 8
    if result.verdict is Verdict.SAT:
        assert result.values is not None and np.abs(result.values["x"] - x0).sum() <= 0.5 + 1e-6


def test_relaxed_norm_never_gives_a_false_sat(tmp_path: Path) -> None:
    """Two elements forced 0.08 away: the true l2 norm exceeds the bound, the box relaxation does not see it; the
    candidate fails the norm check on replay: unknown, never sat."""
    net = random_mlp(tmp_path / "n.onnx", np.random.default_rng(2), [3, 4, 2])
    text = "find x[1,3] where l2(x - x0) <= 0.1, x[0] >= 0.08, x[1] >= 0.08, N(x)[0] <= 100"
    program = translate(text, "q.dl2", {"N": net}, {"x0": np.zeros(3)})
    assert len(program.checks) == 1
    result = decide_query(program.query, {"N": net}, Options(timeout_s=30), None, program.failed_check)
    assert result.verdict is Verdict.UNKNOWN and "l2" in result.note


@pytest.mark.parametrize(("step", "expected"), [(0.15, Verdict.UNSAT), (0.09, Verdict.SAT)])
def test_l1_ball_of_many_elements_is_lifted_exactly(tmp_path: Path, step: float, expected: Verdict) -> None:
    """12 elements: ``t >= |x - x0|``, ``sum(t) <= eps`` over auxiliary inputs. Two elements 0.15 away cannot fit
    in an l1 ball of 0.2 (the box relaxation alone would not see it); 0.09 can, and the witness's norm is checked."""
    net = random_mlp(tmp_path / "n.onnx", np.random.default_rng(2), [12, 4, 2])
    text = f"find x[1,12] where l1(x - x0) < 0.2, x[0] >= {step}, x[1] >= {step}, N(x)[0] <= 100 return x"
    program = translate(text, "q.dl2", {"N": net}, {"x0": np.zeros(12)})
    assert [v.shape for v in program.query.auxiliary] == [(12,)]
    result = decide_query(program.query, {"N": net}, Options(timeout_s=30), None, program.failed_check)
    assert result.verdict is expected, result.note
    if result.values is not None:
        assert np.abs(result.values["x"]).sum() < 0.2


def test_l2_outside_is_a_necessary_condition(nets: dict[str, str]) -> None:
    x0 = np.zeros(3)
    program, result = _run("find x[1,3] where x in [-1, 1], l2(x - x0) > 1.5, F(x)[0] <= 100 return x", nets, x0=x0)
    result = decide_query(
        program.query, program_files(program, nets), Options(timeout_s=30), None, program.failed_check
    )
    assert result.verdict in (Verdict.SAT, Verdict.UNKNOWN)
    if result.verdict is Verdict.SAT:
        assert result.values is not None and np.linalg.norm(result.values["x"]) > 1.5


def test_composition_feeds_one_network_into_another(tmp_path: Path) -> None:
    """N(G(z)): G's output tensor is wired into N inside the product; the replay runs G, then N on G's values."""
    rng = np.random.default_rng(4)
    files = {"G": random_mlp(tmp_path / "g.onnx", rng, [2, 6, 3]), "N": random_mlp(tmp_path / "n.onnx", rng, [3, 6, 2])}
    import onnxruntime as ort

    run = {k: ort.InferenceSession(v, providers=["CPUExecutionProvider"]) for k, v in files.items()}
    zs = np.random.default_rng(0).uniform(-1, 1, size=(2000, 2)).astype(np.float32)
    outs = np.array([run["N"].run(None, {"x": run["G"].run(None, {"x": z[None]})[0]})[0][0] for z in zs])
    target = int(np.argmax(np.bincount(outs.argmax(axis=1), minlength=2)))
    text = f"find z[1,2] where z in [-1, 1], class(N(G(z))) = {target} return G(z), N(G(z))"
    program, result = _run(text, files)
    assert [n.name for n in program.query.networks] == ["G", "N"] and program.query.networks[1].fed_by == ("G__out",)
    assert [t for t, _ in program.returns] == ["G(z)", "N(G(z))"]
    assert result.verdict is Verdict.SAT and result.values is not None
    g = run["G"].run(None, {"x": result.values["z"].astype(np.float32)[None]})[0]
    assert np.array_equal(result.values["G__out"], g.ravel().astype(np.float64))
    n = run["N"].run(None, {"x": g})[0].ravel()
    assert np.array_equal(result.values["N__out"], n.astype(np.float64)) and n.argmax() == target
    impossible = f"find z[1,2] where z in [-1, 1], class(N(G(z))) = {target}, N(G(z))[{target}] <= -1000"
    assert _run(impossible, files)[1].verdict is Verdict.UNSAT


def test_image_shaped_returns_are_written_as_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    net = mlp(tmp_path / "img.onnx", [(rng.normal(size=(2, 64)) / 8, np.zeros(2))], in_shape=(1, 1, 8, 8))
    program = tmp_path / "q.dl2"
    program.write_text("find x[1,1,8,8] where x in [0, 1], N(x)[0] >= N(x)[1] return x, N(x)\n")
    out = CliRunner().invoke(main, ["query", str(program), "--net", f"N={net}", "--png-dir", str(tmp_path / "png")])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines()[0] == "sat"
    assert (tmp_path / "png" / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "png" / "N_x.png").exists()  # a 2-vector is not an image


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_programs_raise_only_property_errors(nets: dict[str, str], data: st.DataObject) -> None:
    text = (
        "find x[1,3]\nwhere x in [-2, 2], class(F(x)) = 2 or F(x).h1[0,1] > 0.5, linf(x - x0) < 0.25,\n"
        "x[0, :2] = x0[1:], l1(x[0, 1:] - x0[:2]) < 1\nreturn x, G(x)\n"
    )
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        if data.draw(st.booleans()):
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + data.draw(st.sampled_from(list("()[],.:-+*<>=!xFG0123 \n"))) + text[i:]
    try:
        translate(text, "q.dl2", nets, {"x0": np.zeros(3)}, {"cat": 1})
    except PropertyError as exc:
        assert exc.line >= 1 and exc.col >= 1 and "\n" not in exc.message


def _generator(path: Path, rng: np.random.Generator) -> str:
    """``G(z[1,2], c[1,3])``: Concat, Gemm, ReLU, Gemm -> ``[1,3]`` (two inputs)."""
    w1, w2 = rng.normal(size=(5, 6)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Concat", ["z", "c"], ["zc"], axis=1),
            onnx.helper.make_node("MatMul", ["zc", "w1"], ["a"]),
            onnx.helper.make_node("Relu", ["a"], ["l1"]),
            onnx.helper.make_node("MatMul", ["l1", "w2"], ["y"]),
        ],
        "gen",
        [
            onnx.helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, 2]),
            onnx.helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [1, 3]),
        ],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
        [onnx.numpy_helper.from_array(w1, "w1"), onnx.numpy_helper.from_array(w2, "w2")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return str(path)


def test_class_argument_is_one_hot_and_l1_names_a_tensor(tmp_path: Path, nets: dict[str, str]) -> None:
    """``G(z, cat)``: the class input pinned to the one-hot of ``cat`` (1); ``G(z, cat).l1`` is the tensor ``l1``
    (a keyword elsewhere); the witness replays through G and F."""
    files = {"G": _generator(tmp_path / "g.onnx", np.random.default_rng(3)), "F": nets["F"]}
    text = "find z[1,2] where z in [-1, 1], G(z, cat).l1[0, 1] >= 0, F(G(z, cat))[0] >= -100 return G(z, cat)"
    program, result = _run(text, files)
    assert [v.name for v in program.query.networks[0].inputs] == ["z", "G__in1"]
    assert program.query.networks[1].fed_by == ("G__out",)
    assert result.verdict is Verdict.SAT and result.values is not None
    assert result.values["G__in1"].tolist() == [0.0, 1.0, 0.0] and result.values["G__l1"][1] >= 0
    with pytest.raises(PropertyError, match="takes 2 inputs"):
        translate("find z[1,2] where z in [-1, 1], G(z)[0] > 0", "q.dl2", files)
    with pytest.raises(PropertyError, match="does not fit an input of shape"):
        translate("find z[1,2] where z in [-1, 1], G(z, 7)[0] > 0", "q.dl2", files)


def test_slices_pin_a_patch(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    net = mlp(tmp_path / "img.onnx", [(rng.normal(size=(2, 16)) / 4, np.zeros(2))], in_shape=(1, 4, 4))
    img = rng.uniform(0, 1, size=(4, 4))
    text = "find x[1,4,4] where x in [0, 1], x[:2, 1:3] = img[:2, 1:3], x[3, :] >= 0.5, N(x)[0] >= N(x)[1] return x"
    _, result = _run(text, {"N": net}, img=img)
    assert result.verdict is Verdict.SAT and result.values is not None
    x = result.values["x"].reshape(4, 4)
    assert np.allclose(x[:2, 1:3], img[:2, 1:3], atol=1e-6) and np.all(x[3] >= 0.5)
    for bad, message in (("x[:2, 1:3] = img[:3, 1:3]", "differ"), ("x[4:, :] in [0, 1]", "selects nothing")):
        with pytest.raises(PropertyError, match=message):
            translate(f"find x[1,4,4] where x in [0, 1], {bad}, N(x)[0] > 0", "q.dl2", {"N": net}, {"img": img})


def test_png_constant(tmp_path: Path) -> None:
    """``--const img=x.png``: a grey PNG is read as ``H×W`` floats in [0, 1] (8-bit levels)."""
    from matplotlib.image import imsave

    rng = np.random.default_rng(2)
    img = np.round(rng.uniform(0, 1, size=(4, 4)) * 255) / 255
    imsave(tmp_path / "img.png", img, cmap="gray", vmin=0.0, vmax=1.0)
    net = mlp(tmp_path / "n.onnx", [(rng.normal(size=(2, 16)) / 4, np.zeros(2))], in_shape=(1, 4, 4))
    program = tmp_path / "q.dl2"
    program.write_text("find x[4,4] where x in [0, 1], x[:, :] = img[:, :], N(x)[0] <= 100 return x\n")
    args = ["query", str(program), "--net", f"N={net}", "--const", f"img={tmp_path / 'img.png'}"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines()[0] == "sat"
    values = np.array(eval(out.stdout.split("x = ", 1)[1]))
    assert np.allclose(values, img, atol=1e-6)


def test_emit_says_when_the_file_is_a_relaxation(nets: dict[str, str], tmp_path: Path) -> None:
    program = tmp_path / "q.dl2"
    program.write_text("find x[1,3] where x in [-2, 2], F(x).p[2] >= 0.7\n")
    emitted = tmp_path / "q.vnnlib"
    args = ["query", str(program), "--net", f"F={nets['F']}", "--emit-vnnlib", str(emitted), "--timeout", "20"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert "'F(x).p[2] >= 0.7' has no VNN-LIB 2.0 form" in out.stderr and emitted.exists()


def test_dl2_spellings(nets: dict[str, str]) -> None:
    """DL2's ``class(N(x), c)`` and ``x[:] in [a, b]`` read as ``class(N(x)) = c`` and ``x in [a, b]``."""
    ours = translate("find x[1,3] where x in [-1, 1], class(F(x)) = 2", "q.dl2", nets).query
    dl2 = translate("find x[1,3] where x[:] in [-1, 1], class(F(x), 2)", "q.dl2", nets).query
    strip = lambda cs: sorted((c.coefs, c.rel, c.b) for c in cs)  # noqa: E731
    assert strip(dl2.common) == strip(ours.common) and len(ours.common) == 8
