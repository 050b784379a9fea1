"""Run instances of a benchmark set with two code trees, interleaved, recording per ``nnverify check --json``
process its verdict, input-split boxes, wall and CPU (user + system) seconds (CPU and boxes are the fair
comparison on a shared machine).

Usage: ``python boxes_before_after.py SET_DIR OUT.csv [EVERY] NAME=TREE NAME=TREE`` (every EVERY-th instance of
``SET_DIR/instances.csv``, default 1; each TREE a checkout whose ``nnverify`` goes first on ``PYTHONPATH``).
"""

import csv
import json
import os
import resource
import subprocess
import sys
import time


def main() -> None:
    root, out_path = sys.argv[1].rstrip("/") + "/", sys.argv[2]
    every = int(sys.argv[3]) if "=" not in sys.argv[3] else 1
    trees = dict(t.split("=") for t in sys.argv[3:] if "=" in t)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with open(root + "instances.csv") as f:
        insts = [row for row in csv.reader(f) if row][::every]
    with open(out_path, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["tree", "instance", "result", "boxes", "wall_s", "cpu_s"])
        for onnx, vnn, timeout in insts:
            for name, tree in trees.items():
                cmd = [sys.executable, "-m", "nnverify.cli", "check", root + onnx, root + vnn, "--json",
                       "--timeout", timeout]  # fmt: skip
                r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
                p = subprocess.run(cmd, capture_output=True, text=True, env=dict(env, PYTHONPATH=tree), cwd="/tmp")
                t1, r1 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                lines = p.stdout.strip().splitlines()
                res = lines[0] if lines else "error"
                try:
                    boxes = json.loads("\n".join(lines[1:]))["stats"].get("boxes", "")
                except (ValueError, KeyError):
                    boxes = ""
                w.writerow([name, vnn, res, boxes, f"{t1 - t0:.3f}", f"{cpu:.3f}"])
                out.flush()


if __name__ == "__main__":
    main()
