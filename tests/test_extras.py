"""Optional parts (pip extras): the core commands never import them; a command that needs a missing one says
which extra to install (exit 4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnverify.errors import ExitCode, MissingExtraError
from nnverify.extras import Extra, ensure_installed, require

#: Top-level packages of the extras (bench, images, binary): blocked in the child process below.
EXTRA_PACKAGES = ("rich", "matplotlib", "distributed", "dask", "sklearn")

#: The child: every extra package blocked (``sys.modules[name] = None`` makes its import fail), then the program.
CHILD = (
    "import sys\n"
    f"for name in {EXTRA_PACKAGES!r}:\n"
    "    sys.modules[name] = None\n"
    "sys.argv = ['nnverify', *sys.argv[1:]]\n"
    "from nnverify.cli import entry\n"
    "entry()\n"
)


@pytest.fixture
def small_net(tmp_path: Path) -> tuple[Path, Path]:
    """y = relu(x0 + x1) - 1 on [0, 1]^2, and the property y > 2 (unsat)."""
    weight = numpy_helper.from_array(np.array([[1.0], [1.0]], dtype=np.float32), "W")
    bias = numpy_helper.from_array(np.array([-1.0], dtype=np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["X"], ["R"]),
            helper.make_node("Gemm", ["R", "W", "B"], ["Y"]),
        ],
        "small",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    net = tmp_path / "small.onnx"
    onnx.save(model, net)
    prop = tmp_path / "small.vnnlib"
    prop.write_text(
        "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
        "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= X_1 1.0))\n"
        "(assert (>= Y_0 2.0))\n"
    )
    return net, prop


def run_without_extras(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``nnverify ARGS`` in a child process in which no extra can be imported."""
    command = [sys.executable, "-c", CHILD, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_check_runs_without_any_extra(small_net: tuple[Path, Path]) -> None:
    net, prop = small_net
    proc = run_without_extras("check", net, prop, "--timeout", "60")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "unsat"


def test_ops_export_and_generate_run_without_any_extra(small_net: tuple[Path, Path], tmp_path: Path) -> None:
    net, prop = small_net
    assert run_without_extras("ops").returncode == 0
    proc = run_without_extras("export", net, prop, "-o", tmp_path / "q.lp", "--format", "lp")
    assert proc.returncode == 0, proc.stderr
    bnn = Path(__file__).resolve().parents[1] / "networks" / "porous_bnn_d2.onnx"
    proc = run_without_extras("generate", "--network", bnn, "--interval", "200", "300", "--timeout", "60")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "unsat"  # the network's output never reaches 200: decided by bounds


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("bench", "run", "{instances}", "--out", "{tmp}/r.csv"), "bench"),
        (("check", "{net}", "{prop}", "--image", "{tmp}/cex.png"), "images"),
    ],
)
def test_a_missing_extra_names_the_pip_command(
    small_net: tuple[Path, Path], tmp_path: Path, args: tuple[str, ...], extra: str
) -> None:
    net, prop = small_net
    instances = tmp_path / "instances.csv"
    instances.write_text(f"{net},{prop},60\n")
    filled = [a.format(net=net, prop=prop, tmp=tmp_path, instances=instances) for a in args]
    proc = run_without_extras(*filled)
    assert proc.returncode == ExitCode.ENVIRONMENT, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert lines[0].endswith(f"pip install 'nnverify[{extra}]'")


def test_require_names_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("sklearn", "sklearn.datasets"):  # another test may have imported them already
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingExtraError, match=r"needs scikit-learn, .*pip install 'nnverify\[binary\]'$"):
        require("sklearn.datasets", Extra.BINARY, "training")
    with pytest.raises(MissingExtraError, match=r"pip install 'nnverify\[binary\]'$"):
        ensure_installed("sklearn", Extra.BINARY, "training")
    assert require("json", Extra.BENCH, "x").__name__ == "json"
    ensure_installed("json", Extra.BENCH, "x")
