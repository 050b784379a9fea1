#!/bin/sh
# The full cgan_2023 run of one commit, as recorded in this folder: a `git archive` snapshot of the commit (other
# work in the checkout cannot leak in), one instance at a time, start-up included, no nice; then the score, the
# cactus plot and the results table.
#
# Usage, from the repository root on a quiet machine:
#   sh bench/results/cgan_2023/run_full.sh [COMMIT] [450|vnncomp]     (defaults: HEAD, 450)
# 450: every instance at 450 s (instances_450s.csv, the earlier runs' setting); vnncomp: the competition's
# 900/1,200 s (the benchmark's instances.csv). Writes results.csv, witnesses/, run.log, score.txt, cactus.png and
# run_info.txt (commit, times, `uptime`, CPU of the whole run) here; the README's figures are written by hand.
set -eu
R=$(pwd)
C=$(git rev-parse --short "${1:-HEAD}")
T=${2:-450}
S=${NNVERIFY_BENCHMARKS:-$(cd "$R/.." && pwd)/shared/benchmarks}/cgan_2023
D=$R/bench/results/cgan_2023
O=/tmp/cgan-run-$C
W=/tmp/cgan-snap-$C
rm -rf "$O" "$W"
mkdir -p "$O/cg" "$W"
git archive "$C" | tar -x -C "$W"
ln -s "$S/onnx" "$O/cg/onnx"
ln -s "$S/vnnlib" "$O/cg/vnnlib"
if [ "$T" = vnncomp ]; then cp "$S/instances.csv" "$O/cg/instances.csv"; else cp "$D/instances_450s.csv" "$O/cg/instances.csv"; fi
echo "commit $C, timeouts $T" > "$O/run_info.txt"
echo "start $(date -u '+%F %T') UTC, uptime: $(uptime)" >> "$O/run_info.txt"
(cd "$O/cg" && env -u PYTHONDONTWRITEBYTECODE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH="$W" \
    /usr/bin/time -f "CPU user %U s, system %S s, wall %e s" "$R/.venv/bin/python" -m nnverify.cli bench run \
    "$O/cg/instances.csv" --category cgan_2023 --out "$O/results.csv" --witness-dir "$O/witnesses") > "$O/run.log" 2>&1
echo "end   $(date -u '+%F %T') UTC, uptime: $(uptime)" >> "$O/run_info.txt"
tail -1 "$O/run.log" >> "$O/run_info.txt"
rm -rf "$D/witnesses"
cp -r "$O/results.csv" "$O/witnesses" "$O/run.log" "$O/run_info.txt" "$D/"
"$R/.venv/bin/nnverify" bench score "$D/results.csv" --expected "$S/expected.csv" --peers "$S/peer_times.csv" \
    --witness-dir "$D/witnesses" --plot "$D/cactus.png" > "$D/score.txt"
"$R/.venv/bin/python" "$R/bench/results_table.py"
rm -rf "$W"
