"""BNN training and ONNX export: exact thresholds, dyadic outputs, bit-identical onnxruntime replay."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from nnverify.bnn import dataset, model, onnx_export, train
from nnverify.graph.onnx_import import load_network

NETWORKS = Path(__file__).resolve().parents[2] / "networks"


@pytest.fixture(scope="module")
def tiny() -> dataset.Dataset:
    return dataset.build_dataset(80, 2, seed=1)


@pytest.fixture(scope="module")
def trained(tiny: dataset.Dataset) -> train.TrainResult:
    return train.train_bnn(tiny, seed=0, epochs=3)


def test_training_runs_and_is_deterministic(tiny: dataset.Dataset, trained: train.TrainResult) -> None:
    assert isinstance(trained.model, model.BnnModel)
    assert (trained.n_train, trained.n_val, trained.n_test) == (64, 8, 8)
    assert len(trained.history) == 3 and 1 <= trained.best_epoch <= 3
    assert all(np.isfinite([trained.mae_train, trained.mae_val, trained.mae_test]))
    again = train.train_bnn(tiny, seed=0, epochs=3)
    assert again.mae_test == trained.mae_test and again.history == trained.history
    for ours, theirs in zip(again.model.weights, trained.model.weights, strict=True):
        assert np.array_equal(ours, theirs)


def test_real_twin_trains(tiny: dataset.Dataset) -> None:
    result = train.train_network((tiny.pixels, tiny.labels), train.TrainConfig(binarized=False, epochs=2))
    assert isinstance(result.model, train.RealNet) and np.isfinite(result.mae_test)


def test_export_matches_onnxruntime_bit_for_bit(
    tiny: dataset.Dataset, trained: train.TrainResult, tmp_path: Path
) -> None:
    assert isinstance(trained.model, model.BnnModel)
    path = tmp_path / "bnn.onnx"
    train.export_onnx(trained.model, path)
    check = onnx_export.check_onnx(trained.model, path, tiny.pixels)
    assert check.exact, check
    assert check.n_inputs == 80 and check.sign_zeros == 0
    graph = load_network(path)  # nnverify's own evaluator agrees too
    np.testing.assert_array_equal(graph.eval(tiny.pixels.astype(np.float64))[:, 0], trained.model.predict(tiny.pixels))


def test_onnx_node_pattern(trained: train.TrainResult, tmp_path: Path) -> None:
    assert isinstance(trained.model, model.BnnModel)
    path = tmp_path / "bnn.onnx"
    train.export_onnx(trained.model, path)
    proto = onnx.load_model(path)
    assert proto.opset_import[0].version == 13
    assert [node.op_type for node in proto.graph.node] == ["Gemm", "BatchNormalization", "Sign"] * 3 + ["Gemm"]
    dims = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in (proto.graph.input[0], proto.graph.output[0])]
    assert (proto.graph.input[0].name, proto.graph.output[0].name, dims) == ("x", "y", [[1, 256], [1, 1]])
    inits = {init.name: onnx.numpy_helper.to_array(init) for init in proto.graph.initializer}
    for index in (1, 2, 3):
        assert set(np.unique(inits[f"W{index}"])) == {-1.0, 1.0}
        assert np.all(np.abs(inits[f"bn{index}_mean"] % 1.0) == 0.5)  # half-integer thresholds
    assert inits["W_out"].shape == (1, 100) and inits["b_out"].shape == (1,)


def test_thresholds_reproduce_batchnorm_sign() -> None:
    """sign(BN(s)) with sign(0) = +1 equals the half-integer threshold rule on every integer s."""
    rng = np.random.default_rng(0)
    width = 50
    gamma = rng.normal(size=width)
    gamma[:3] = 0.0
    beta, mean, var = rng.normal(size=width), rng.normal(scale=5, size=width), rng.uniform(0.5, 9, width)
    weights = [np.ones((width, 40))]
    bnn = model.from_batchnorm(weights, [(gamma, beta, mean, var, 1e-5)], np.zeros(width), 0.0)
    s = np.arange(-40, 41, dtype=np.float64)[:, None]  # every reachable value of a 40-input block
    z = gamma * (s - mean) / np.sqrt(var + 1e-5) + beta
    decided = np.abs(z) > 1e-9  # ties at exactly 0 are a matter of float rounding
    rule = bnn.directions[0] * (s - bnn.thresholds[0])
    assert np.all(np.abs(rule) >= 0.5)
    np.testing.assert_array_equal((rule > 0)[decided], (z >= 0)[decided])


def test_dyadic_output_layer_sums_exactly_in_float32() -> None:
    rng = np.random.default_rng(1)
    bnn = model.from_batchnorm([np.ones((100, 4))], [(np.ones(100), np.zeros(100), np.zeros(100), np.ones(100), 0.0)],
                               rng.normal(scale=0.7, size=100), 63.123456789)  # fmt: skip
    a = rng.choice([-1.0, 1.0], size=(20, 100))
    exact = a @ bnn.out_weight + bnn.out_bias
    for _ in range(5):  # any summation order, in float32, gives the same bits
        order = rng.permutation(100)
        terms = (a[:, order] * bnn.out_weight[order]).astype(np.float32)
        total = np.float32(bnn.out_bias) + np.cumsum(terms, axis=1, dtype=np.float32)[:, -1]
        np.testing.assert_array_equal(total.astype(np.float64), exact)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "net" / "bnn.onnx"
    argv = ["--grains", "3", "--out", str(out), "--data-dir", str(tmp_path / "data"), "--n", "30", "--epochs", "2"]
    assert train.main(argv) == 0
    metrics = json.loads(out.with_suffix(".json").read_text())
    assert metrics["dataset"]["n"] == 30 and metrics["onnx_check"]["exact"] is True
    assert {"mae_train", "mae_val", "mae_test"} <= set(metrics["bnn"]) and "mae_test" in metrics["real"]
    assert "BNN: MAE" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["porous_bnn_d2", "porous_bnn_d3"])
def test_shipped_model_loads_and_matches_onnxruntime(name: str) -> None:
    path = NETWORKS / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not built")
    graph = load_network(path)
    x = np.random.default_rng(0).integers(0, 2, size=(200, 256)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = np.array([session.run(None, {"x": row[None, :]})[0][0, 0] for row in x], dtype=np.float64)
    np.testing.assert_array_equal(graph.eval(x.astype(np.float64))[:, 0], expected)


def test_bnn_train_command_writes_a_checked_onnx_and_metrics(tmp_path: Path) -> None:
    """``nnverify bnn train`` end to end on a tiny dataset: ONNX that onnxruntime replays exactly, metrics JSON."""
    import json

    from click.testing import CliRunner

    from nnverify.cli import main

    out = tmp_path / "tiny_bnn.onnx"
    args = ["bnn", "train", "--grains", "2", "--out", str(out), "--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(main, [*args, "--n", "40", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.with_suffix(".json").read_text())
    assert out.exists()
    assert metrics["dataset"]["n"] == 40
    assert metrics["onnx_check"]["exact"] is True


@pytest.mark.parametrize("option", ["--data-dir", "--out"])
@pytest.mark.parametrize("blocker", ["file", "read-only"])
def test_bnn_train_refuses_an_unwritable_place_before_any_work(tmp_path: Path, option: str, blocker: str) -> None:
    """A dataset directory or output file that cannot be written (under a regular file, or in a read-only
    directory) is a usage error (exit 2, ``Error:`` line), reported at once: no dataset built, no traceback."""
    from click.testing import CliRunner

    from nnverify.cli import main

    if blocker == "file":
        base = tmp_path / "a_file"
        base.write_text("not a directory\n")
    else:
        base = tmp_path / "locked"
        base.mkdir()
        base.chmod(0o500)
        if os.access(base, os.W_OK):
            base.chmod(0o700)
            pytest.skip("running as a user who can write anywhere (root)")
    try:
        place = {"--data-dir": str(base / "data"), "--out": str(base / "sub" / "net.onnx")}
        args = ["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "net.onnx")]
        args[args.index(option) + 1] = place[option]
        result = CliRunner().invoke(main, ["bnn", "train", "--grains", "2", *args, "--n", "40", "--epochs", "1"])
    finally:
        if blocker == "read-only":
            base.chmod(0o700)
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output
    assert ("not writable" if blocker == "read-only" else "not a directory") in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "data").exists() and not (tmp_path / "net.onnx").exists()
