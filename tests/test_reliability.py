"""Regression tests of the reliability defects (issue 23, table in ``../shared/reliability/README.md``).

Each test builds its input with ``onnx.helper`` (or writes it to ``tmp_path``) and checks the documented
behaviour: one-line ``Error:`` and exit 3 for bad models, usage errors (exit 2) for bad option values, the
verdict before an output error (exit 6), exit 130 for Ctrl-C, no solver crash on huge or non-finite numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from nnverify.cli import main
from nnverify.errors import ExitCode, InputFileError, ModelError, PropertyError
from nnverify.graph.onnx_import import load_network
from nnverify.spec.vnnlib import load_property, parse_vnnlib

NANO_PROP = """(declare-const X_0 Real)
(declare-const Y_0 Real)
(assert (>= X_0 -1))
(assert (<= X_0 1))
(assert (<= Y_0 -1))
"""
#: X_0 = 1 gives Y_0 = relu(0.5) = 0.5 >= 0.4: sat for the nano net below.
SAT_PROP = NANO_PROP.replace("(<= Y_0 -1)", "(>= Y_0 0.4)")


def nano_model(
    weight: float | np.ndarray = 0.5,
    *,
    elem: int = TensorProto.FLOAT,
    dims: tuple[int | str, ...] = (1,),
    opset: int | None = 14,
    ir_version: int = 8,
) -> onnx.ModelProto:
    """``Y = relu(X @ W)`` with a 1x1 weight (the reproducers' shape), in the given element type."""
    np_type = helper.tensor_dtype_to_np_dtype(elem)
    w = numpy_helper.from_array(np.asarray(weight, dtype=np_type).reshape(1, 1), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Z"], name="mm"), helper.make_node("Relu", ["Z"], ["Y"], name="r")],
        "nano",
        [helper.make_tensor_value_info("X", elem, list(dims))],
        [helper.make_tensor_value_info("Y", elem, [1])],
        [w],
    )
    imports = [helper.make_opsetid("", opset)] if opset is not None else []
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = ir_version
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def load_error(model: onnx.ModelProto, tmp_path: Path) -> str:
    """The one-line ``ModelError`` message of loading ``model``."""
    with pytest.raises(ModelError) as info:
        load_network(save(model, tmp_path / "net.onnx"))
    message = str(info.value)
    assert "\n" not in message
    return message


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


# --- defects 1 and 4: non-finite weights are refused at load (no segfault, no encoder traceback) ---------------


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "minus_inf"])
def test_non_finite_weight_is_refused_at_load(tmp_path: Path, value: float) -> None:
    message = load_error(nano_model(value), tmp_path)
    assert "initializer 'W'" in message and "finite weights" in message


def test_non_finite_constant_node_is_refused(tmp_path: Path) -> None:
    model = nano_model()
    model.graph.initializer.pop()
    value = numpy_helper.from_array(np.array([[np.nan]], dtype=np.float32), "W")
    model.graph.node.insert(0, helper.make_node("Constant", [], ["W"], value=value, name="c"))
    assert "constant 'W'" in load_error(model, tmp_path)


def test_infinite_clip_bound_is_accepted() -> None:
    """An infinite operand of Clip/Min/Max is a bound, not a weight."""
    from nnverify.graph.model_checks import check_model

    model = nano_model()
    model.graph.initializer.append(numpy_helper.from_array(np.array(np.inf, dtype=np.float32), "hi"))
    model.graph.initializer.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), "lo"))
    model.graph.node[1].CopyFrom(helper.make_node("Clip", ["Z", "lo", "hi"], ["Y"], name="clip"))
    check_model("clip.onnx", model)
    model.graph.node[1].CopyFrom(helper.make_node("Add", ["Z", "hi"], ["Y"], name="add"))
    with pytest.raises(ModelError, match="initializer 'hi' holds 1 infinite value"):
        check_model("add.onnx", model)


def test_cli_non_finite_weights_exit_3(tmp_path: Path) -> None:
    prop = tmp_path / "p.vnnlib"
    prop.write_text(NANO_PROP)
    res = invoke("check", save(nano_model(np.nan), tmp_path / "n.onnx"), prop)
    assert res.exit_code == ExitCode.BAD_INPUT
    assert res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1


# --- defect 5: element types other than float32, zero-size dimensions ---------------------------------------


@pytest.mark.parametrize("elem", [TensorProto.DOUBLE, TensorProto.FLOAT16], ids=["double", "float16"])
def test_double_and_float16_models_replay_in_their_own_type(tmp_path: Path, elem: int) -> None:
    from nnverify import Options, Verdict, verify

    prop = tmp_path / "p.vnnlib"
    prop.write_text(SAT_PROP)
    result = verify(save(nano_model(elem=elem), tmp_path / "n.onnx"), prop, Options(timeout_s=20))
    assert result.verdict is Verdict.SAT
    assert result.counterexample is not None and result.counterexample.y[0] >= 0.4


def test_zero_size_input_dimension_is_refused(tmp_path: Path) -> None:
    message = load_error(nano_model(dims=(1, 0)), tmp_path)
    assert "dimension of size 0 (index 1)" in message


def test_integer_input_is_refused(tmp_path: Path) -> None:
    model = nano_model()
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    assert "element type INT64" in load_error(model, tmp_path)


# --- defects 6, 7, 8, 14: malformed initializers, external data, huge inputs, versions ----------------------


def test_initializer_size_mismatch(tmp_path: Path) -> None:
    model = nano_model()
    model.graph.initializer[0].dims[:] = [2, 1]
    assert "initializer 'W'" in load_error(model, tmp_path)


def test_initializer_raw_data_size_mismatch(tmp_path: Path) -> None:
    model = nano_model()
    model.graph.initializer[0].raw_data = b"\x00" * 6
    assert "stores 6 bytes" in load_error(model, tmp_path)


def test_complex_initializer_is_refused(tmp_path: Path) -> None:
    model = nano_model()
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([[1 + 2j]], dtype=np.complex64), "W"))
    assert "COMPLEX64" in load_error(model, tmp_path)


def _external(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return model


def test_missing_external_data_names_the_file(tmp_path: Path) -> None:
    message = load_error(_external(nano_model(), "weights.bin"), tmp_path)
    assert "weights.bin" in message and "'W'" in message


def test_absolute_external_data_is_refused(tmp_path: Path) -> None:
    message = load_error(_external(nano_model(), "/etc/hostname"), tmp_path)
    assert "absolute path" in message


def test_external_data_outside_the_model_directory_is_refused(tmp_path: Path) -> None:
    assert "outside" in load_error(_external(nano_model(), "../weights.bin"), tmp_path)


def test_external_data_beside_the_model_is_read(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(np.array([0.5], dtype="<f4").tobytes())
    graph = load_network(save(_external(nano_model(), "weights.bin"), tmp_path / "net.onnx"))
    assert graph.eval(np.array([[2.0]]))[0, 0] == pytest.approx(1.0)


def test_huge_input_dimension_is_refused_before_allocating(tmp_path: Path) -> None:
    message = load_error(nano_model(dims=(10**12,)), tmp_path)
    assert "1000000000000 values" in message and "TiB" in message


def test_missing_opset_import_is_one_line(tmp_path: Path) -> None:
    assert "opset" in load_error(nano_model(opset=None), tmp_path)


def test_ir_version_99_is_refused(tmp_path: Path) -> None:
    assert "IR version 99" in load_error(nano_model(ir_version=99), tmp_path)


def test_onnxruntime_messages_are_one_line(tmp_path: Path) -> None:
    from nnverify.witness import OnnxRunner

    model = nano_model()
    model.graph.node[0].input[1] = "missing"  # onnxruntime's C++ message spans lines
    with pytest.raises(ModelError) as info:
        OnnxRunner(save(model, tmp_path / "bad.onnx"))
    assert "\n" not in str(info.value)


# --- defects 9, 11, 12, 17: option values, unwritable outputs, CSV columns ---------------------------------


@pytest.fixture
def nano_files(tmp_path: Path) -> tuple[Path, Path]:
    prop = tmp_path / "sat.vnnlib"
    prop.write_text(SAT_PROP)
    return save(nano_model(), tmp_path / "nano.onnx"), prop


@pytest.mark.parametrize(
    "extra",
    [("--seed", "-1"), ("--timeout", "nan"), ("--results-file", ""), ("--counterexample", " ")],
    ids=["seed", "timeout_nan", "results_empty", "cex_blank"],
)
def test_bad_option_values_are_usage_errors(nano_files: tuple[Path, Path], extra: tuple[str, str]) -> None:
    res = invoke("check", *nano_files, *extra)
    assert res.exit_code == ExitCode.USAGE, res.output
    assert "Traceback" not in res.output


def test_generate_nan_interval_is_a_usage_error() -> None:
    res = invoke("generate", "--interval", "nan", "70", "--timeout", "1")
    assert res.exit_code == ExitCode.USAGE and "finite" in res.output


def _unwritable_dir() -> Path:
    """A directory nobody may create files in, not even root (sysfs)."""
    target = Path("/sys/kernel")
    if not target.is_dir() or (os.access(target, os.W_OK) and _can_create(target)):
        pytest.skip("no unwritable directory here (/sys/kernel)")
    return target


def _can_create(folder: Path) -> bool:
    try:
        (folder / ".nnverify_probe").touch()
    except OSError:
        return False
    (folder / ".nnverify_probe").unlink()
    return True


@pytest.mark.parametrize("option", ["--results-file", "--counterexample", "--image"])
def test_unwritable_output_prints_the_verdict_first(nano_files: tuple[Path, Path], option: str) -> None:
    target = _unwritable_dir() / "out.file"
    res = invoke("check", *nano_files, option, target)
    assert res.stdout.splitlines()[0] == "sat"
    assert res.exit_code == ExitCode.OUTPUT_FAILED
    assert f"Error: {target}: cannot write" in res.stderr and "Traceback" not in res.output


def test_unwritable_export_output(nano_files: tuple[Path, Path]) -> None:
    res = invoke("export", *nano_files, "-o", _unwritable_dir() / "q.pl")
    assert res.exit_code == ExitCode.OUTPUT_FAILED and "cannot write" in res.stderr


def test_bench_score_names_missing_columns(tmp_path: Path) -> None:
    results, expected = tmp_path / "instances.csv", tmp_path / "expected.csv"
    results.write_text("a.onnx,a.vnnlib,60\n")
    expected.write_text("onnx,vnnlib,expected\na.onnx,a.vnnlib,unsat\n")
    res = invoke("bench", "score", results, "--expected", expected)
    assert res.exit_code == ExitCode.BAD_INPUT
    assert "missing columns onnx, vnnlib, result" in res.stderr


def test_bench_score_expected_without_columns(tmp_path: Path) -> None:
    from nnverify.bench.scoring import load_expected

    path = tmp_path / "expected.csv"
    path.write_text("onnx,vnnlib\n")
    with pytest.raises(InputFileError, match="missing column expected"):
        load_expected(path)


# --- defect 10: non-finite outputs never become a witness ---------------------------------------------------


def test_overflowing_output_is_not_a_counterexample(tmp_path: Path) -> None:
    from nnverify.witness import OnnxRunner, check_counterexample

    net = save(nano_model(3e38), tmp_path / "huge.onnx")  # float32: 2 * 3e38 = inf
    prop = load_property_text(
        tmp_path, SAT_PROP.replace("(>= X_0 -1)", "(>= X_0 1)").replace("(<= X_0 1)", "(<= X_0 2)")
    )
    check = check_counterexample(OnnxRunner(net), prop, np.array([2.0]))
    assert not check.valid and "not finite" in check.reason


def load_property_text(tmp_path: Path, text: str):
    path = tmp_path / "prop.vnnlib"
    path.write_text(text)
    return load_property(path, 1, 1)


# --- defect 13: Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_in_check_exits_130(nano_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import nnverify.pipeline

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(nnverify.pipeline, "verify", interrupted)
    res = invoke("check", *nano_files)
    assert res.exit_code == ExitCode.INTERRUPTED
    assert "Aborted" not in res.output and "Traceback" not in res.output


def test_ctrl_c_during_start_up_exits_130_without_traceback() -> None:
    code = "import nnverify.cli\nraise KeyboardInterrupt"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED
    assert "Traceback" not in proc.stderr


def test_sigint_during_a_run_exits_130_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A real SIGINT while ``check`` works on a net large enough to take seconds."""
    import signal
    import time

    rng = np.random.default_rng(0)
    layers, inputs, width = [], "X", 400
    inits = []
    for k in range(6):
        w = rng.normal(size=(width if k else 50, width)).astype(np.float32) / 10
        inits.append(numpy_helper.from_array(w, f"W{k}"))
        layers += [
            helper.make_node("MatMul", [inputs, f"W{k}"], [f"Z{k}"]),
            helper.make_node("Relu", [f"Z{k}"], [f"A{k}"]),
        ]
        inputs = f"A{k}"
    inits.append(numpy_helper.from_array(np.ones((width, 1), dtype=np.float32), "Wout"))
    layers.append(helper.make_node("MatMul", [inputs, "Wout"], ["Y"]))
    graph = helper.make_graph(
        layers,
        "deep",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 50])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])],
        inits,
    )
    net = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), tmp_path / "deep.onnx")
    prop = tmp_path / "p.vnnlib"
    decls = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n" for i in range(50))
    prop.write_text(decls + "(declare-const Y_0 Real)\n(assert (<= Y_0 -1000000))\n")
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "nnverify.cli", "check", net, prop, "--timeout", "60", "--results-file", out / "r"]
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip(f"the run ended before the signal: {stdout.splitlines()[:1]}")
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert [p.name for p in out.iterdir()] == []


# --- defects 15, 16: VNN-LIB byte-order mark and CR line ends ------------------------------------------------


def test_bom_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bom.vnnlib"
    path.write_bytes(b"\xef\xbb\xbf" + NANO_PROP.encode())
    prop = load_property(path, 1, 1)
    assert prop.disjuncts[0].lb[0] == -1


def test_cr_only_line_ends_end_comments_and_count_lines(tmp_path: Path) -> None:
    text = "; a comment\r(declare-const X_0 Real)\r(declare-const Y_0 Real)\r"
    text += "(assert (<= X_0 1)) ; c\r(assert (>= X_0 0))"
    with pytest.raises(PropertyError) as info:
        parse_vnnlib(text + "\r(assert (<= Y_0 Z_9))\r", "p.vnnlib", 1, 1)
    assert (info.value.line, info.value.col) == (6, 17)
    prop = parse_vnnlib(text + "\r(assert (<= Y_0 1))\r", "p.vnnlib", 1, 1)
    assert prop.disjuncts[0].ub[0] == 1


def test_crlf_positions_unchanged() -> None:
    with pytest.raises(PropertyError) as info:
        parse_vnnlib("(declare-const X_0 Real)\r\n(assert (<= X_0 Z))\r\n", "p.vnnlib", 1, 1)
    assert (info.value.line, info.value.col) == (2, 17)


# --- defects 1 and 3: HiGHS never sees NaN, infinite or huge coefficients ------------------------------------


def test_numeric_trouble_names_what_highs_refuses() -> None:
    from nnverify.backends.highs import numeric_trouble

    assert numeric_trouble(np.array([1.0, -2.0]), (np.array([0.0]), np.array([np.inf]))) == ""
    assert "NaN or infinite" in numeric_trouble(np.array([1.0, np.nan]))
    assert "NaN or infinite" in numeric_trouble(np.array([-np.inf]))
    assert "1e+30" in numeric_trouble(np.array([1e30]))
    assert "bound is NaN" in numeric_trouble(np.array([1.0]), (np.array([np.nan]),))


def _relu_problem(scale: float, lo: float):
    """``z = scale * x`` with ``x`` in ``[lo, 1]``, ``y = relu(z)``, and ``y >= scale / 2`` (feasible at x = 1)."""
    from nnverify.encode.problem import Problem

    p = Problem()
    x = p.add_var(lo, 1.0)
    z = p.add_var(min(scale * lo, 0.0), scale)
    y = p.add_var(0.0, scale)
    p.add_row(np.array([z, x]), np.array([1.0, -scale]), 0.0, 0.0)
    p.add_relu(z, y)
    p.add_row(np.array([y]), np.array([1.0]), scale / 2, np.inf)
    return p


@pytest.mark.parametrize(("scale", "lo"), [(1e30, -1.0), (1.0, -1e30)], ids=["huge_weight", "wide_box"])
def test_highs_takes_huge_coefficients_by_scaling(scale: float, lo: float) -> None:
    from nnverify.backends.base import SolveStatus
    from nnverify.backends.highs import HighsBackend

    result = HighsBackend().solve(_relu_problem(scale, lo), timeout_s=10)
    assert result.status in (SolveStatus.FEASIBLE, SolveStatus.UNKNOWN), result.note
    if result.status is SolveStatus.FEASIBLE:
        assert result.values is not None and result.values[0] > 0.4


def test_equilibrated_model_has_the_same_solutions() -> None:
    from nnverify.encode.milp import lower
    from nnverify.encode.scaling import equilibrate

    model = lower(_relu_problem(1e30, -1.0))
    scaled = equilibrate(model)
    assert np.max(np.abs(scaled.model.data)) <= 1.0 + 1e-12
    x = np.array([0.75, 0.75e30, 0.75e30, 1.0])[: model.n_cols]
    x_scaled = x / scaled.col_scale
    assert model.max_violation(x) <= 1e-9 * 1e30 and scaled.model.max_violation(x_scaled) <= 1e-12
    assert np.allclose(scaled.unscale(x_scaled), x)


def test_infinite_big_m_is_unknown_not_a_traceback() -> None:
    from nnverify.backends.base import SolveStatus
    from nnverify.backends.highs import HighsBackend
    from nnverify.encode.problem import Problem

    p = Problem()
    x = p.add_var(-np.inf, np.inf)
    y = p.add_var(0.0, np.inf)
    p.add_relu(x, y)
    result = HighsBackend().solve(p, timeout_s=5)
    assert result.status is SolveStatus.UNKNOWN and "big-M" in result.note


def test_polishing_never_gives_highs_non_finite_coefficients(monkeypatch: pytest.MonkeyPatch) -> None:
    """The polishing LP once got NaN coefficients and HiGHS died with SIGSEGV inside ``passModel``."""
    import highspy

    from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
    from nnverify.graph.ops.base import ActKind
    from nnverify.search.polish import polish
    from nnverify.spec.property import Disjunct

    class NoPass(highspy.Highs):
        def passModel(self, *args: object) -> None:
            raise AssertionError("HiGHS was given the model")

    monkeypatch.setattr(highspy, "Highs", NoPass)
    w = np.array([[np.nan, 1.0], [1.0, -1.0]])
    layers = (
        InputLayer(2),
        AffineLayer("fc", (0,), (w,), np.zeros(2)),
        ActivationLayer("r", 1, ActKind.RELU, 2),
        AffineLayer("out", (2,), (np.array([[1.0, 1.0]]),), np.zeros(1)),
    )
    d = Disjunct(lb=np.zeros(2), ub=np.ones(2), a_x=np.zeros((1, 2)), a_y=np.array([[-1.0]]), b=np.array([-1.0]))
    x = np.array([0.5, 0.5])
    with np.errstate(invalid="ignore"):
        assert np.array_equal(polish(LayerGraph(layers, 3), d, x), x)


def test_scaled_solution_that_misses_the_original_model_is_unknown() -> None:
    """``relu(1e30 x) <= -1`` is infeasible; in equilibrated units the row is ``y' <= -1e-30``, which HiGHS's
    tolerance satisfies at ``y' = 0``: that point is no solution of the original model, so no FEASIBLE."""
    from nnverify.backends.base import SolveStatus
    from nnverify.backends.highs import HighsBackend
    from nnverify.encode.problem import Problem

    p = Problem()
    x = p.add_var(-1.0, 1.0)
    z = p.add_var(-1e30, 1e30)
    y = p.add_var(0.0, 1e30)
    p.add_row(np.array([z, x]), np.array([1.0, -1e30]), 0.0, 0.0)
    p.add_relu(z, y)
    p.add_row(np.array([y]), np.array([1.0]), -np.inf, -1.0)
    result = HighsBackend().solve(p, timeout_s=10)
    assert result.status in (SolveStatus.INFEASIBLE, SolveStatus.UNKNOWN)
    if result.status is SolveStatus.UNKNOWN:
        assert "too coarse" in result.note


def test_json_summary_has_no_nan() -> None:
    import json

    from nnverify.result import Result, Verdict

    data = Result(Verdict.UNKNOWN, stats={"refine_s": float("nan"), "boxes": 3, "bound": float("inf")}).to_json()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["stats"] == {"refine_s": None, "boxes": 3, "bound": None}


def test_negative_batchnorm_variance_is_refused(tmp_path: Path) -> None:
    """Found by the fuzzer: ``sqrt(var + eps)`` of a negative variance was NaN deep in the search."""
    model = nano_model()
    for name, value in (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", -1e30)):
        model.graph.initializer.append(numpy_helper.from_array(np.array([value], dtype=np.float32), name))
    model.graph.node[1].CopyFrom(helper.make_node("BatchNormalization", ["Z", "scale", "bias", "mean", "var"], ["Y"]))
    assert "variance + epsilon <= 0" in load_error(model, tmp_path)


# --- output files: devices and pipes are written in place, never replaced by a rename -------------------------


def test_output_to_a_pipe_keeps_the_pipe(tmp_path: Path) -> None:
    """``--results-file /dev/null`` (as root) or a FIFO: a rename over it replaced the node with a regular file."""
    import stat
    import threading

    from nnverify.outputs import write_text_output

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    write_text_output(fifo, "unsat\n")
    reader.join(10)
    assert received == ["unsat\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_output_file_permissions_and_symlinks(tmp_path: Path) -> None:
    from nnverify.outputs import write_text_output

    real, link = tmp_path / "real.txt", tmp_path / "link.txt"
    real.write_text("old")
    link.symlink_to(real)
    write_text_output(link, "sat\n")
    assert link.is_symlink() and real.read_text() == "sat\n"
    fresh = tmp_path / "fresh.txt"
    umask = os.umask(0o022)
    try:
        write_text_output(fresh, "x")
    finally:
        os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o644  # mkstemp made results files 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.txt", "link.txt", "real.txt"]


def test_program_prints_no_numpy_warnings(tmp_path: Path) -> None:
    """A box of width 1e308 overflows in the attack and the bounds; the program prints the verdict, no warnings."""
    prop = tmp_path / "huge.vnnlib"
    prop.write_text(NANO_PROP.replace("(>= X_0 -1)", "(>= X_0 -1e308)").replace("(<= X_0 1)", "(<= X_0 1e308)"))
    net = save(nano_model(1e30), tmp_path / "n.onnx")
    cmd = [sys.executable, "-m", "nnverify.cli", "check", str(net), str(prop), "--timeout", "20"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] in ("unsat", "unknown", "timeout")
    assert "Warning" not in proc.stderr


def test_bench_run_unwritable_results_csv(nano_files: tuple[Path, Path]) -> None:
    net, prop = nano_files
    instances = net.parent / "instances.csv"
    instances.write_text(f"{net.name},{prop.name},10\n")
    res = invoke("bench", "run", instances, "--out", _unwritable_dir() / "results.csv")
    assert res.exit_code == ExitCode.OUTPUT_FAILED, res.output
    assert "cannot write" in res.stderr and "Traceback" not in res.output


@pytest.mark.parametrize("timeout", ["1e12", "inf"])
def test_enormous_timeout_is_no_limit(nano_files: tuple[Path, Path], timeout: str) -> None:
    """A budget beyond ``threading.TIMEOUT_MAX`` made ``Thread.join`` raise OverflowError."""
    res = invoke("check", *nano_files, "--timeout", timeout)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "sat"


def test_generate_reversed_interval_is_a_usage_error() -> None:
    res = invoke("generate", "--interval", "70", "60", "--timeout", "1")
    assert res.exit_code == ExitCode.USAGE and "A <= B" in res.output


def test_generate_unwritable_query_file_after_the_verdict() -> None:
    target = _unwritable_dir() / "q.vnnlib"
    res = invoke("generate", "--interval", "60", "70", "--timeout", "2", "--no-proposals", "--query", target)
    assert res.exit_code == ExitCode.OUTPUT_FAILED, res.output
    assert res.stdout.splitlines()[0] in ("sat", "unsat", "timeout", "unknown")
    assert f"Error: {target}: cannot write" in res.stderr


def _small_model() -> onnx.ModelProto:
    """``test_small.onnx`` of the benchmarks: 1 -> 2 -> 2 -> 1, ReLUs, increasing in its input (78.5 at X = 1)."""
    inits = [
        numpy_helper.from_array(np.ones((2, 1), np.float32), "W0"),
        numpy_helper.from_array(np.full(2, 1.5, np.float32), "B0"),
        numpy_helper.from_array(np.full((2, 2), 2.0, np.float32), "W1"),
        numpy_helper.from_array(np.full(2, 2.5, np.float32), "B1"),
        numpy_helper.from_array(np.full((1, 2), 3.0, np.float32), "W2"),
        numpy_helper.from_array(np.full(1, 3.5, np.float32), "B2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["X", "W0", "B0"], ["H0"], transB=1),
        helper.make_node("Relu", ["H0"], ["R0"]),
        helper.make_node("Gemm", ["R0", "W1", "B1"], ["H1"], transB=1),
        helper.make_node("Relu", ["H1"], ["R1"]),
        helper.make_node("Gemm", ["R1", "W2", "B2"], ["Y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


@pytest.mark.parametrize("case", ["weights_1e30", "wide_box"])
def test_numbers_beyond_the_milp_solver_end_in_unknown_with_a_note(case: str, tmp_path: Path) -> None:
    """Defect 3: ``relu(1e30 x) <= -1`` and ``test_small`` over ``X >= -1e30`` ran the input splitting to the
    deadline (every exact leaf: HiGHS cannot decide at that scale) and answered ``timeout``; now the first such
    leaf ends the run in ``unknown`` naming the scale."""
    import nnverify

    if case == "weights_1e30":
        net, prop = save(nano_model(1e30), tmp_path / "w.onnx"), NANO_PROP
    else:
        prop = NANO_PROP.replace("(>= X_0 -1)", "(>= X_0 -1e30)").replace("(<= Y_0 -1)", "(>= Y_0 100)")
        net = save(_small_model(), tmp_path / "small.onnx")
    path = tmp_path / "p.vnnlib"
    path.write_text(prop)
    result = nnverify.verify(net, path, nnverify.Options(timeout_s=120, attack_samples=100))
    assert result.verdict is nnverify.Verdict.UNKNOWN, result
    assert "at this scale" in result.note and "e+" in result.note
    out = CliRunner().invoke(main, ["check", str(net), str(path), "--timeout", "120"])
    assert out.exit_code == 0 and out.output.splitlines()[0] == "unknown"
