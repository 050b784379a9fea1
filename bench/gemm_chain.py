"""Write a network slow to convert (a chain of dense N x N Gemm + ReLU layers) and a box property for it.

The reliability reproducer of defect #2 (issue 23): 6 layers of 5,000 x 5,000 (a 600 MB ``.onnx``) ran past
330 s at ``--timeout 30`` while the analysis view read each layer off unit vectors.

    .venv/bin/python bench/gemm_chain.py 5000 6 /tmp/gemm6.onnx   # also writes /tmp/gemm6.vnnlib
    .venv/bin/nnverify check /tmp/gemm6.onnx /tmp/gemm6.vnnlib --timeout 30 --json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main(argv: list[str]) -> int:
    width, depth, out = int(argv[0]), int(argv[1]), Path(argv[2])
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for k in range(depth):
        w = rng.standard_normal((width, width), dtype=np.float32) / np.float32(np.sqrt(width))
        inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(np.zeros(width, np.float32), f"b{k}")]
        nodes += [
            helper.make_node("Gemm", [prev, f"w{k}", f"b{k}"], [f"g{k}"], transB=1),
            helper.make_node("Relu", [f"g{k}"], [f"h{k}"]),
        ]
        prev = f"h{k}"
    nodes.append(helper.make_node("Gemm", [prev, "wo", "bo"], ["y"], transB=1))
    inits += [
        numpy_helper.from_array(np.ones((1, width), np.float32), "wo"),
        numpy_helper.from_array(np.zeros(1, np.float32), "bo"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, out)
    lines = [f"(declare-const X_{i} Real)" for i in range(width)] + ["(declare-const Y_0 Real)"]
    lines += [f"(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))" for i in range(width)]
    out.with_suffix(".vnnlib").write_text("\n".join([*lines, "(assert (<= Y_0 -1e9))"]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
