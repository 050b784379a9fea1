"""Benchmark runner: VNN-COMP ``instances.csv`` in, one results CSV row per instance out.

Each instance runs as its own ``nnverify check`` process under a hard timeout, locally (threads driving
subprocesses) or on a Dask cluster. Scoring and plots live in sibling modules; nothing here prints.
"""

from __future__ import annotations

from nnverify.bench.executors import DaskExecutor, Executor, LocalExecutor
from nnverify.bench.instances import Instance, read_instances
from nnverify.bench.runner import (
    CSV_FIELDS,
    BenchResult,
    Row,
    check_command,
    read_rows,
    run_benchmark,
    run_instance,
)

__all__ = [
    "CSV_FIELDS",
    "BenchResult",
    "DaskExecutor",
    "Executor",
    "Instance",
    "LocalExecutor",
    "Row",
    "check_command",
    "read_instances",
    "read_rows",
    "run_benchmark",
    "run_instance",
]
