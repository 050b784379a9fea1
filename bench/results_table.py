"""Regenerate the results table in README.md and bench/results/README.md from each set's latest run.

Usage: .venv/bin/python bench/results_table.py [--check] [--benchmarks DIR] [--results DIR]
(--benchmarks defaults to $NNVERIFY_BENCHMARKS or ../shared/benchmarks, --results to bench/results). --check
changes nothing and exits 1 when a file's table differs from the CSVs (tests/test_results_table.py does the
same). While other runs are in progress, build the table from what is committed:
    git archive HEAD bench/results | tar -x -C /tmp/head && .venv/bin/python bench/results_table.py \
        --results /tmp/head/bench/results
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nnverify.bench.table import current_block, markdown_table, replace_block, set_rows

ROOT = Path(__file__).resolve().parents[1]
#: Each file holding the table, with the prefix that makes its links relative to it.
TARGETS = ((ROOT / "README.md", ""), (ROOT / "bench" / "results" / "README.md", "./"))


def default_benchmarks() -> Path:
    """``$NNVERIFY_BENCHMARKS``, else ``shared/benchmarks`` beside the checkout."""
    return Path(os.environ.get("NNVERIFY_BENCHMARKS") or ROOT.parent / "shared" / "benchmarks")


def main(argv: list[str] | None = None) -> int:
    """Write (or, with ``--check``, compare) the table; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    parser.add_argument("--benchmarks", type=Path, default=default_benchmarks())
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results", help="the per-set folders")
    args = parser.parse_args(argv)
    if not args.benchmarks.is_dir():
        print(f"Error: {args.benchmarks}: no benchmark sets here (--benchmarks DIR)", file=sys.stderr)
        return 2
    table = markdown_table(set_rows(args.results, args.benchmarks))
    stale = []
    for path, prefix in TARGETS:
        text = path.read_text(encoding="utf-8")
        fresh = replace_block(text, table, link_prefix=prefix)
        if fresh != text:
            stale.append(path)
            if not args.check:
                path.write_text(fresh, encoding="utf-8")
    for path in stale:
        print(f"{'differs' if args.check else 'updated'}: {path.relative_to(ROOT)}")
    if not args.check:
        print(current_block(TARGETS[0][0].read_text(encoding="utf-8")))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
