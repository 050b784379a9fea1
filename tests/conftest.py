"""Fixtures shared by all test packages: where the benchmark data lives, and one parameter per network."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchdata import BENCHMARKS_DIR

#: Globs (relative to BENCHMARKS_DIR) of the networks the ``benchmark_net`` parameter runs over.
BENCHMARK_NET_GLOBS = ("test/*.onnx", "acasxu/onnx/*.onnx", "mnistfc/onnx/*.onnx")


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """The benchmark data directory (skips the test if it is not there)."""
    if not BENCHMARKS_DIR.is_dir():
        pytest.skip(f"benchmark data not found at {BENCHMARKS_DIR}")
    return BENCHMARKS_DIR


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize a ``benchmark_net`` argument over every benchmark network (id: ``set/name``)."""
    if "benchmark_net" in metafunc.fixturenames:
        nets = sorted(path for pattern in BENCHMARK_NET_GLOBS for path in BENCHMARKS_DIR.glob(pattern))
        ids = [f"{path.relative_to(BENCHMARKS_DIR).parts[0]}/{path.stem}" for path in nets]
        metafunc.parametrize("benchmark_net", nets, ids=ids)


@pytest.fixture(scope="session")
def clpq_ready() -> None:
    """Skips the test when the clpq backend (SWI-Prolog + janus-swi) is not usable here, unless
    ``NNVERIFY_REQUIRE_CLPQ=1`` (set by ``make test``, so CI fails instead of skipping)."""
    import os

    from nnverify.backends import backend_class

    reason = backend_class("clpq").unavailable_reason()
    if reason is None:
        return
    if os.environ.get("NNVERIFY_REQUIRE_CLPQ") == "1":
        pytest.fail(f"clpq backend required (NNVERIFY_REQUIRE_CLPQ=1) but unavailable: {reason}")
    pytest.skip(f"clpq backend unavailable: {reason}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the benchmark data (a clone that is not next to ``shared/``), skip the modules that read it,
    saying where it was looked for, instead of failing them."""
    if BENCHMARKS_DIR.is_dir():
        return
    skip = pytest.mark.skip(
        reason=f"benchmark data not found at {BENCHMARKS_DIR} (set NNVERIFY_BENCHMARKS, or clone next to shared/)"
    )
    uses_data: dict[Path, bool] = {}
    for item in items:
        path = Path(str(item.fspath))
        if path not in uses_data:
            uses_data[path] = "BENCHMARKS_DIR" in path.read_text()
        if uses_data[path]:
            item.add_marker(skip)
