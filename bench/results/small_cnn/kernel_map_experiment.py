"""One small_cnn instance in process, with the Conv kernel maps as shipped or without them (``dense``).

``dense`` drops the map of every convolution whose dense matrix has at most 1M entries: the layer view is then a
plain ReLU chain, and input splitting takes ``bounds/lean.py``. Run from ``properties/small_cnn``:
``python ../../bench/results/small_cnn/kernel_map_experiment.py {kernel|dense} ONNX VNNLIB TIMEOUT`` (one JSON line).
"""

from __future__ import annotations

import json
import sys
import time

import nnverify
import nnverify.graph.passes as passes


def main() -> None:
    variant, onnx, vnn, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    if variant == "dense":
        original = passes._linear_map

        def small_dense(graph, node, shapes, weight):  # type: ignore[no-untyped-def]
            return None if weight.size <= 1_000_000 else original(graph, node, shapes, weight)

        passes._linear_map = small_dense
    cpu, wall = time.process_time(), time.monotonic()
    r = nnverify.verify(onnx, vnn, nnverify.Options(timeout_s=timeout))
    keep = ("boxes", "relu_boxes", "attack_s", "search_s", "max_depth", "relu_max_depth", "decided_by")
    out = {"variant": variant, "vnnlib": vnn.split("/")[-1], "verdict": r.verdict.value, "method": r.method}
    out |= {"cpu_s": round(time.process_time() - cpu, 2), "wall_s": round(time.monotonic() - wall, 2)}
    print(json.dumps(out | {"stats": {k: v for k, v in r.stats.items() if k in keep}}), flush=True)


if __name__ == "__main__":
    main()
