"""Run 10 linearizenn_2024 instances (every sixth of instances.csv) with two code trees, interleaved instance by
instance, recording each ``nnverify check`` process's wall and CPU (user + system) seconds: CPU is the fairer
comparison on a shared, loaded machine.

Usage: ``python subset20.py OUT.csv NAME=TREE NAME=TREE`` (each TREE a checkout whose ``nnverify`` goes first on
``PYTHONPATH``).
"""

import csv
import os
import resource
import subprocess
import sys
import time

S = "/work/shared/benchmarks/linearizenn_2024/"
SUBSET = [
    ("onnx/AllInOne_10_10.onnx", "vnnlib/prop_10_10.vnnlib"),
    ("onnx/AllInOne_30_30.onnx", "vnnlib/prop_30_30.vnnlib"),
    ("onnx/AllInOne_30_80.onnx", "vnnlib/prop_30_80.vnnlib"),
    ("onnx/AllInOne_50_50.onnx", "vnnlib/prop_50_50.vnnlib"),
    ("onnx/AllInOne_50_120.onnx", "vnnlib/prop_50_120.vnnlib"),
    ("onnx/AllInOne_80_30.onnx", "vnnlib/prop_80_30.vnnlib"),
    ("onnx/AllInOne_80_80.onnx", "vnnlib/prop_80_80.vnnlib"),
    ("onnx/AllInOne_120_30.onnx", "vnnlib/prop_120_30.vnnlib"),
    ("onnx/AllInOne_120_50.onnx", "vnnlib/prop_120_50.vnnlib"),
    ("onnx/AllInOne_120_120.onnx", "vnnlib/prop_120_120.vnnlib"),
]


def main() -> None:
    trees = dict(t.split("=") for t in sys.argv[2:])
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with open(sys.argv[1], "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["tree", "instance", "result", "wall_s", "cpu_s"])
        for inst in SUBSET:
            onnx, vnn = inst
            for name, tree in trees.items():
                cmd = [sys.executable, "-m", "nnverify.cli", "check", S + onnx, S + vnn, "--timeout", "60"]  # fmt: skip
                r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
                p = subprocess.run(cmd, capture_output=True, text=True, env=dict(env, PYTHONPATH=tree), cwd="/tmp")
                t1, r1 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                res = p.stdout.strip().splitlines()[0] if p.stdout.strip() else "error"
                w.writerow([name, inst[1], res, f"{t1 - t0:.3f}", f"{cpu:.3f}"])
                out.flush()


if __name__ == "__main__":
    main()
