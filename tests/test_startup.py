"""Start-up stays small: importing the CLI loads neither numpy nor onnx nor any solver, and a check decided by bounds
loads only what it uses (the ReLU search, the MILP lowering, onnxruntime, generation code ... are imported where
they are used). Each test lists modules that must not be loaded; a heavy import added at the top of a module on the
way makes it fail. Times are measured by ``bench/startup.py``, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("highspy", "ortools", "scipy", "matplotlib", "distributed", "dask", "janus_swi", "gurobipy", "torch", "PIL")
#: Code of every command but ``check``'s route on a plain ReLU network.
ELSEWHERE = (
    "nnverify.bnn",
    "nnverify.binary",
    "nnverify.multi",
    "nnverify.bench",
    "nnverify.imaging",
    "nnverify.export",
)
#: Not loaded by ``import nnverify.cli``: the CLI reads option choices without the engine.
NOT_AT_CLI_IMPORT = (
    *HEAVY,
    *ELSEWHERE,
    "numpy",
    "onnx",
    "onnxruntime",
    "google.protobuf",
    "nnverify.pipeline",
    "nnverify.graph",
    "nnverify.bounds",
    "nnverify.search",
    "nnverify.backends.base",
    "nnverify.spec.discrete",
)
#: Not loaded by a check that bounds decide (ACAS Xu 1_1 prop_1: input splitting, no solver call, no replay).
NOT_IN_A_BOUNDS_CHECK = (
    *HEAVY,
    *ELSEWHERE,
    "onnxruntime",
    "onnx.reference",
    "nnverify.search.relu_bab",
    *(f"nnverify.search.relu_{m}" for m in ("branching", "domains", "frontier", "race", "search")),
    "nnverify.search.act_split",
    "nnverify.search.polish",
    "nnverify.bounds.optimized",
    "nnverify.bounds.relu_pass",
    "nnverify.bounds.trial_splits",
    "nnverify.bounds.refine",
    "nnverify.encode",  # the exact encodings: an exact leaf or a solver call imports them
    "nnverify.search.exact",
    "nnverify.bounds.backward_ops",
    "nnverify.bounds.forward_cut",
    "nnverify.backends._milp_solve",
    "nnverify.spec.discrete",
    "logging",
    "numpy.ma",  # np.unique / np.setdiff1d import it (15-20 ms)
    *(f"nnverify.graph.ops.{family}" for family in ("smooth", "periodic", "resize", "normalization", "conv_transpose")),
)
REPORT = (
    "import json, sys\n"
    "denied = {denied!r}\n"
    "print(json.dumps(sorted(m for m in sys.modules if any(m == d or m.startswith(d + '.') for d in denied))))"
)
CHECK = (
    "from nnverify.cli import main\n"
    "try:\n"
    "    main(['check', 'networks/ACASXU_run2a_1_1_batch_2000.onnx', 'properties/prop_1.vnnlib'])\n"
    "except SystemExit as exc:\n"
    "    assert exc.code in (0, None), exc.code"
)


def _loaded_after(code: str, denied: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """What ``code`` printed, and which modules named in ``denied`` (or inside those packages) were imported
    after it ran in a fresh interpreter."""
    script = f"{code}\n{REPORT.format(denied=denied)}"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    *printed, loaded = proc.stdout.strip().splitlines()
    return printed, json.loads(loaded)


def test_importing_the_cli_loads_no_engine_no_numpy_and_no_solver() -> None:
    assert _loaded_after("import nnverify.cli; import nnverify", NOT_AT_CLI_IMPORT) == ([], [])


def test_a_check_decided_by_bounds_loads_only_what_it_uses() -> None:
    printed, loaded = _loaded_after(CHECK, NOT_IN_A_BOUNDS_CHECK)
    assert printed[:1] == ["unsat"]
    assert loaded == []


def test_a_check_of_a_common_network_does_not_build_the_onnx_schema_registry() -> None:
    """Its operators' attribute defaults come from ``graph/schema_defaults.TABLE`` (the registry costs 15-45 ms)."""
    refuse = (
        "import onnx.defs\n"
        "def refuse(*args):\n"
        "    raise AssertionError('onnx.defs schema registry consulted')\n"
        "onnx.defs.has = onnx.defs.get_schema = refuse\n"
    )
    printed, _ = _loaded_after(refuse + CHECK, ())
    assert printed[:1] == ["unsat"]


def test_the_op_registry_does_not_import_onnx() -> None:
    """Graph code built in memory (tests, the API) needs no onnx: only the loader imports it."""
    assert _loaded_after("import nnverify.graph.ops, nnverify.graph.layers", ("onnx", "google.protobuf")) == ([], [])


def test_the_element_type_numbers_written_out_in_shape_tensor_are_onnx_s() -> None:
    from onnx import TensorProto

    from nnverify.graph.ops import shape_tensor

    t = TensorProto
    floats, ints = {t.FLOAT, t.DOUBLE, t.FLOAT16, t.BFLOAT16}, {t.INT8, t.INT16, t.INT32, t.INT64}
    assert (floats, t.BOOL) == (shape_tensor._FLOAT_TYPES, shape_tensor._BOOL)
    assert ints | {t.UINT8, t.UINT16, t.UINT32, t.UINT64} == shape_tensor._INT_TYPES


def test_the_table_of_schema_defaults_is_what_onnx_defs_declares() -> None:
    """``graph/schema_defaults.TABLE`` answers for ``onnx.defs`` on common operators (its registry costs every
    check 15-45 ms to build): for every operator and opset it covers, the same defaults."""
    from nnverify.graph.onnx_import import schema_defaults
    from nnverify.graph.schema_defaults import OPSETS, TABLE, table_defaults

    def typed(attrs: dict[str, object] | None) -> dict[str, tuple[type, object]] | None:
        return None if attrs is None else {name: (type(value), value) for name, value in attrs.items()}

    for op_type in TABLE:
        for opset in OPSETS:
            assert typed(table_defaults(op_type, opset)) == typed(schema_defaults(op_type, opset)), (op_type, opset)
    assert table_defaults("Gemm", OPSETS.stop) is None  # a newer opset than was compared asks onnx.defs
    assert table_defaults("LeakyRelu", 13) is None


LEAVE_SCRIPT = """
import atexit, sys
atexit.register(lambda: print("atexit ran", file=sys.stderr))

class Finalised:
    def __del__(self):
        print("interpreter teardown", file=sys.stderr)

KEEP = Finalised()  # freed only by the interpreter's teardown
from nnverify.cli import entry
sys.argv[0] = "nnverify"
entry()
"""


def _program(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LEAVE_SCRIPT, *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_a_check_leaves_without_interpreter_teardown_after_its_atexit_handlers(tmp_path: Path) -> None:
    """Teardown of numpy, onnx ... took 60-250 ms per process: ``check`` skips it, and loses nothing."""
    results = tmp_path / "result.txt"
    net, prop = "networks/ACASXU_run2a_1_1_batch_2000.onnx", "properties/prop_1.vnnlib"
    proc = _program("check", net, prop, "--results-file", str(results), "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "unsat"
    assert json.loads(proc.stdout.split("\n", 1)[1])["verdict"] == "unsat"  # the whole JSON was flushed
    assert results.read_text().strip() == "unsat"
    assert "atexit ran" in proc.stderr
    assert "interpreter teardown" not in proc.stderr


def test_a_check_that_fails_keeps_its_exit_code_and_message_when_leaving_fast(tmp_path: Path) -> None:
    prop = tmp_path / "bad.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(assert (<= X_0 \n")
    proc = _program("check", "networks/ACASXU_run2a_1_1_batch_2000.onnx", str(prop))
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith(f"Error: {prop}:")
    assert "atexit ran" in proc.stderr and "interpreter teardown" not in proc.stderr


def test_other_commands_keep_the_normal_exit() -> None:
    proc = _program("ops")
    assert proc.returncode == 0 and "Relu" in proc.stdout
    assert "atexit ran" in proc.stderr and "interpreter teardown" in proc.stderr


def test_the_op_package_imports_the_common_families_and_a_lookup_loads_the_rest() -> None:
    """``REGISTRY``/``ACTIVATIONS`` import every op family at the first op type or activation they lack (and when
    listed): a lookup never misses an operator that exists, and a ReLU network's check skips the others."""
    code = (
        "import sys\n"
        "import nnverify.graph.ops\n"
        "from nnverify.graph.ops.base import REGISTRY, ActKind\n"
        "from nnverify.graph.ops.interface import ACTIVATIONS\n"
        "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('nnverify.graph.ops.')))\n"
        "print(type(REGISTRY.get('Resize')).__name__, REGISTRY.get('NoSuchOp'), ActKind.SIN in ACTIVATIONS)\n"
        "print(type(ACTIVATIONS[ActKind.SIGMOID]).__name__, len(REGISTRY) > 60)"
    )
    (common, looked_up, listed), loaded = _loaded_after(code, ())
    assert common == str(
        sorted({"activation", "base", "elementwise", "interface", "linear", "pullback", "registry", "shape"})
    )
    assert (looked_up, listed) == ("Resize None True", "SigmoidActivation True")
    assert loaded == []


def test_every_op_family_module_is_listed() -> None:
    """A module under ``graph/ops/`` that registers an operator or activation is in ``FAMILIES`` (else an op type
    it defines would be unknown until something else loads it)."""
    from nnverify.graph.ops import COMMON, FAMILIES

    folder = ROOT / "nnverify" / "graph" / "ops"
    registering = {f.stem for f in folder.glob("*.py") if "\n@register" in f.read_text()}
    assert registering == set(FAMILIES)
    assert set(COMMON) <= set(FAMILIES)
