"""Start-up stays small: importing the CLI loads no solver or plotting library, and a check that needs none
of them does not load them either (they are imported where they are used). Times are measured by
``bench/startup.py``, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("highspy", "ortools", "scipy", "matplotlib", "distributed", "dask", "janus_swi", "gurobipy", "torch", "PIL")
REPORT = "import json, sys; print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))"


def _loaded_after(code: str) -> tuple[list[str], list[str]]:
    """What ``code`` printed, and which of ``HEAVY`` were imported after it ran in a fresh interpreter."""
    script = f"{code}\n{REPORT.format(heavy=HEAVY)}"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    *printed, loaded = proc.stdout.strip().splitlines()
    return printed, json.loads(loaded)


def test_importing_the_cli_loads_no_solver_and_no_plotting_library() -> None:
    assert _loaded_after("import nnverify.cli; import nnverify") == ([], [])


def test_a_check_decided_by_bounds_loads_only_what_it_uses() -> None:
    code = (
        "from nnverify.cli import main\n"
        "try:\n"
        "    main(['check', 'networks/ACASXU_run2a_1_1_batch_2000.onnx', 'properties/prop_1.vnnlib'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code"
    )
    printed, loaded = _loaded_after(code)
    assert printed[:1] == ["unsat"]
    assert loaded == []


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
