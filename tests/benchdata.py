"""Where the VNN-COMP benchmark sets with ground truth live: ``$NNVERIFY_BENCHMARKS`` if set, else
``../shared/benchmarks`` next to the repository. Tests that read them are skipped (with this path in the reason)
when the directory is missing, e.g. in a clone made elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

BENCHMARKS_DIR = Path(
    os.environ.get("NNVERIFY_BENCHMARKS") or Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
)
