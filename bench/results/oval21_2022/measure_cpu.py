"""One ``nnverify check`` in this process with counters for the ReLU search's cost (session 5, issue 25 item 3).

Prints one JSON line: verdict, domains bounded, ``ReluSearch.evaluate`` calls and CPU, α/β passes
(``relu_pass.substitute`` calls) in all and before the first domain is bounded, root α-CROWN CPU, process CPU
(``time.process_time``: user+sys of every thread) and wall. Usage (repository root)::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/results/oval21_2022/measure_cpu.py check NET.onnx PROP.vnnlib \\
        --timeout 300 --threads 1
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from nnverify.bounds import optimized, relu_pass
from nnverify.search import relu_bab, relu_search

counts: dict[str, Any] = {"domains": 0, "evaluates": 0, "passes": 0, "passes_before_branch": None, "eval_cpu": 0.0}


def _timed(fn: Callable[..., Any], key: str) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            counts[key] = round(counts.get(key, 0.0) + time.process_time() - start, 2)

    return wrapped


def _install() -> None:
    evaluate, substitute = relu_search.ReluSearch.evaluate, relu_pass.substitute

    def counted_evaluate(self: Any, dom: Any, iterations: int) -> Any:
        if counts["passes_before_branch"] is None:
            counts["passes_before_branch"] = counts["passes"]
        start = time.process_time()
        out = evaluate(self, dom, iterations)
        counts["eval_cpu"] += time.process_time() - start
        counts["domains"] += len(dom)
        counts["evaluates"] += 1
        return out

    def counted_substitute(*args: Any, **kwargs: Any) -> Any:
        counts["passes"] += 1
        return substitute(*args, **kwargs)

    relu_search.ReluSearch.evaluate = counted_evaluate  # type: ignore[method-assign]
    relu_pass.substitute = counted_substitute  # type: ignore[assignment]
    optimized.substitute = counted_substitute  # type: ignore[assignment]
    relu_bab.optimized_layer_bounds = _timed(relu_bab.optimized_layer_bounds, "root_layers_cpu")  # type: ignore[assignment]


def main() -> None:
    warnings.simplefilter("ignore")
    _install()
    from nnverify.cli import main as cli

    wall = time.monotonic()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli.main(args=sys.argv[1:], prog_name="nnverify")
    counts["cpu"] = round(time.process_time(), 2)
    counts["wall"] = round(time.monotonic() - wall, 1)
    counts["eval_cpu"] = round(counts["eval_cpu"], 2)
    print(json.dumps({"verdict": out.getvalue().split("\n", 1)[0], **counts}))


if __name__ == "__main__":
    main()
