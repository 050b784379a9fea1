"""The command line runs numpy's BLAS on one thread unless the user set the thread count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = """
import ctypes, sys
{imports}
import numpy
lib = next((line.split()[-1] for line in open('/proc/self/maps') if 'openblas' in line and '.so' in line), None)
if lib is None:
    print('none'); sys.exit()
cdll = ctypes.CDLL(lib)
name = next((n for n in ('scipy_openblas_get_num_threads64_', 'openblas_get_num_threads64_',
                         'openblas_get_num_threads') if hasattr(cdll, n)), None)
print(getattr(cdll, name)() if name else 'none')
"""


def _threads(imports: str, **env: str) -> str:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    }
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(imports=imports)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_the_cli_sets_one_blas_thread_and_respects_the_users_choice() -> None:
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("needs /proc/self/maps (Linux) to find the loaded OpenBLAS")
    one = _threads("import nnverify.cli")
    if one == "none":
        pytest.skip("numpy is not linked against an OpenBLAS this probe can query")
    assert one == "1"
    assert _threads("import nnverify.cli", OPENBLAS_NUM_THREADS="2") == "2"
    # the library alone leaves the environment alone
    assert _threads("import nnverify", OPENBLAS_NUM_THREADS="2") == "2"
