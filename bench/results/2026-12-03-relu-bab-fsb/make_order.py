"""The instance order of this run: the rows the last run solved (its order), then its timeouts: MNIST 256x4 at
eps 0.05, the eps 0.03 ones, then 256x6 at eps 0.05 (alpha-beta-CROWN's fastest first). From the repo root:
``python3 bench/results/2026-12-03-relu-bab-fsb/make_order.py /tmp/bench/sub4``"""

import csv
import sys

out = sys.argv[1]
last = "bench/results/2026-12-03-relu-bab-slopes/mnistfc_results.csv"
with open("../shared/benchmarks/mnistfc/instances.csv") as f:
    inst = {(r[0], r[1]): r for r in csv.reader(f)}
with open(last) as f:
    rows = list(csv.DictReader(f))
solved = [(r["onnx"], r["vnnlib"]) for r in rows if r["result"] != "timeout"]
first = ["256x4 10_0.05", "256x4 5_0.05", "256x4 7_0.05", "256x4 13_0.05", "256x4 12_0.05", "256x4 4_0.05"]
first += ["256x4 9_0.05", "256x4 2_0.05", "256x4 6_0.03", "256x6 9_0.03", "256x6 1_0.03"]
first += ["256x6 3_0.05", "256x6 8_0.05", "256x6 4_0.05", "256x6 10_0.05", "256x6 0_0.05", "256x6 11_0.05"]
first += ["256x6 14_0.05", "256x6 13_0.05", "256x6 5_0.05", "256x6 12_0.05", "256x6 2_0.05", "256x6 9_0.05"]
first += ["256x6 7_0.05"]
hard = [(f"onnx/mnist-net_{n}.onnx", f"vnnlib/prop_{p}.vnnlib") for n, p in (x.split() for x in first)]
missing = [(r["onnx"], r["vnnlib"]) for r in rows if r["result"] == "timeout" and (r["onnx"], r["vnnlib"]) not in hard]
assert not missing, missing
assert len(solved) + len(hard) == len(inst) == 90
with open(f"{out}/instances.csv", "w") as f:
    f.writelines(",".join(inst[k]) + "\n" for k in solved + hard)
