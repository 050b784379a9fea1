"""Re-checks the ``unknown`` rows of ``small_cnn`` or ``control5``'s ``expected.csv`` by a longer MILP (HiGHS).

Run from the repository root: ``.venv/bin/python properties/small_cnn/confirm_milp.py control5 [--seconds 120]``.
For each row it maximises ``min_i (row_i)`` over the property's box (rows: the unsafe set's output bounds, written
``>= 0``) and prints the MILP's proven upper bound: below 0 proves ``unsat`` independently of nnverify. It reads the
networks' weights from the ONNX files and the thresholds from the VNN-LIB files; it writes nothing.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from relu_milp import maximise_min  # noqa: E402

BOUND = re.compile(r"\(assert \((<=|>=) ([XY])_(\d+) (\S+)\)\)")


def read_property(path: Path, n_in: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, float, float]]]:
    """Box and output rows ``(index, sign, threshold)`` meaning ``sign * (Y_index - threshold) >= 0``."""
    lb, ub, rows = np.zeros(n_in), np.zeros(n_in), []
    for sense, var, idx, value in BOUND.findall(path.read_text()):
        i, v = int(idx), float(value)
        if var == "X":
            (lb if sense == ">=" else ub)[i] = v
        else:
            rows.append((i, 1.0 if sense == ">=" else -1.0, v))
    return lb, ub, rows


def layers_of(onnx_path: Path, name: str, lb: np.ndarray, free: np.ndarray) -> list:
    """Dense layers over the free inputs."""
    weights = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in onnx.load(onnx_path).graph.initializer}
    if name == "control5":
        layers = [(weights[f"W{k}"], weights[f"B{k}"]) for k in range(len(weights) // 2)]
        w, b = layers[0]
        pinned = np.setdiff1d(np.arange(lb.size), free)
        return [(w[:, free], b + w[:, pinned] @ lb[pinned]), *layers[1:]]
    import make_small_cnn as cnn

    shape = tuple(int(d.dim_value) for d in onnx.load(onnx_path).graph.input[0].type.tensor_type.shape.dim[2:])
    return cnn.dense_layers(weights, shape, lb, free)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=("small_cnn", "control5"))
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    root = HERE.parent / args.name
    with (root / "expected.csv").open() as handle:
        todo = [r for r in csv.DictReader(handle) if r["expected"] == "unknown"]
    for r in todo:
        net = onnx.load(root / r["onnx"]).graph
        n_in = int(np.prod([d.dim_value for d in net.input[0].type.tensor_type.shape.dim]))
        n_out = int(np.prod([d.dim_value for d in net.output[0].type.tensor_type.shape.dim]))
        lb, ub, rows = read_property(root / r["vnnlib"], n_in)
        free = np.flatnonzero(lb < ub)
        coef = np.zeros((len(rows), n_out))
        for j, (i, s, _) in enumerate(rows):
            coef[j, i] = s
        consts = np.array([-s * v for _, s, v in rows])
        opt = maximise_min(
            layers_of(root / r["onnx"], args.name, lb, free), lb[free], ub[free], coef, consts, args.seconds
        )
        best = max(opt.value, opt.milp_value)
        verdict = "unsat (MILP bound < 0)" if opt.bound < 0 else ("sat (a point >= 0)" if best >= 0 else "open")
        print(f"{r['vnnlib']}: best {best:.5f}, MILP bound {opt.bound:.5f} in {opt.seconds:.1f} s -> {verdict}")


if __name__ == "__main__":
    main()
