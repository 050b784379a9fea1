"""Writes ``acasxu_1_1_pruned.onnx``: ACAS Xu 1_1 with its smallest-magnitude weights (10 % per layer) set to 0.

Run from the repository root: ``.venv/bin/python properties/queries/make_pruned.py`` (deterministic).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

SOURCE = Path("networks/ACASXU_run2a_1_1_batch_2000.onnx")
TARGET = Path(__file__).with_name("acasxu_1_1_pruned.onnx")
FRACTION = 0.10


def main() -> None:
    model = onnx.load(SOURCE)
    for tensor in model.graph.initializer:
        if tensor.name.endswith("MatMul_W"):
            w = numpy_helper.to_array(tensor).copy()
            cut = np.quantile(np.abs(w), FRACTION)
            w[np.abs(w) < cut] = 0.0
            tensor.CopyFrom(numpy_helper.from_array(w.astype(np.float32), tensor.name))
    onnx.save(model, TARGET)


if __name__ == "__main__":
    main()
