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
