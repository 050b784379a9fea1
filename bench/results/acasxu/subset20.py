"""Run 20 ACAS Xu instances with two code trees, interleaved instance by instance, recording each ``nnverify check``
process's wall and CPU (user + system) seconds: CPU is the fairer comparison on a shared, loaded machine.

Usage: ``python subset20.py OUT.csv NAME=TREE NAME=TREE`` (each TREE a checkout whose ``nnverify`` goes first on
``PYTHONPATH``); ``ACAS_SUBSET="4_2:2,3_3:2"`` in the environment replaces the 20 instances.
"""

import csv
import os
import resource
import subprocess
import sys
import time

S = "/work/shared/benchmarks/acasxu/"
SUBSET = ["1_6:2", "1_3:2", "1_5:2", "1_9:7", "2_1:2", "1_8:3", "1_1:1", "1_1:5", "4_9:1", "4_7:1", "1_8:2", "2_7:1",
          "1_3:3", "1_9:2", "3_8:1", "5_6:1", "3_3:9", "1_1:6", "2_2:3", "4_4:4"]  # fmt: skip


def main() -> None:
    trees = dict(t.split("=") for t in sys.argv[2:])
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with open(sys.argv[1], "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["tree", "instance", "result", "wall_s", "cpu_s"])
        for inst in os.environ["ACAS_SUBSET"].split(",") if os.environ.get("ACAS_SUBSET") else SUBSET:
            net, prop = inst.split(":")
            for name, tree in trees.items():
                cmd = [sys.executable, "-m", "nnverify.cli", "check", f"{S}onnx/ACASXU_run2a_{net}_batch_2000.onnx",
                       f"{S}vnnlib/prop_{prop}.vnnlib", "--timeout", "116"]  # fmt: skip
                r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
                p = subprocess.run(cmd, capture_output=True, text=True, env=dict(env, PYTHONPATH=tree), cwd="/tmp")
                t1, r1 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                res = p.stdout.strip().splitlines()[0] if p.stdout.strip() else "error"
                w.writerow([name, inst, res, f"{t1 - t0:.3f}", f"{cpu:.3f}"])
                out.flush()


if __name__ == "__main__":
    main()
