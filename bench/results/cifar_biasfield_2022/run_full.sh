#!/bin/sh
# The full cifar_biasfield_2022 run of one commit, as recorded in this folder: a `git archive` snapshot of the commit
# (other work in the checkout cannot leak in), one instance at a time at its VNN-COMP timeout (300 s), start-up
# included, at `nice -n -10` (the quiet slot); then the score, the cactus plot and the results table.
#
# Usage, from the repository root on a quiet machine:
#   sh bench/results/cifar_biasfield_2022/run_full.sh [COMMIT]     (default: HEAD)
# Writes results.csv, run.log, score.txt, cactus.png and run_info.txt (commit, times, `uptime`, CPU of the whole
# run) here; the README's figures are written by hand. No witnesses: every instance is `unsat`.
set -eu
R=$(pwd)
C=$(git rev-parse --short "${1:-HEAD}")
S=${NNVERIFY_BENCHMARKS:-$(cd "$R/.." && pwd)/shared/benchmarks}/cifar_biasfield_2022
D=$R/bench/results/cifar_biasfield_2022
O=/tmp/cifar-run-$C
W=/tmp/cifar-snap-$C
rm -rf "$O" "$W"
mkdir -p "$O/cb" "$W"
git archive "$C" | tar -x -C "$W"
ln -s "$S/onnx" "$O/cb/onnx"
ln -s "$S/vnnlib" "$O/cb/vnnlib"
cp "$S/instances.csv" "$O/cb/instances.csv"
echo "commit $C, timeouts 300 s (VNN-COMP)" > "$O/run_info.txt"
echo "start $(date -u '+%F %T') UTC, uptime: $(uptime)" >> "$O/run_info.txt"
(cd "$O/cb" && env -u PYTHONDONTWRITEBYTECODE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH="$W" \
    /usr/bin/time -f "CPU user %U s, system %S s, wall %e s" nice -n -10 "$R/.venv/bin/python" -m nnverify.cli \
    bench run "$O/cb/instances.csv" --category cifar_biasfield_2022 --out "$O/results.csv") > "$O/run.log" 2>&1
echo "end   $(date -u '+%F %T') UTC, uptime: $(uptime)" >> "$O/run_info.txt"
tail -1 "$O/run.log" >> "$O/run_info.txt"
cp "$O/results.csv" "$O/run.log" "$O/run_info.txt" "$D/"
"$R/.venv/bin/nnverify" bench score "$D/results.csv" --expected "$S/expected.csv" --peers "$S/peer_times.csv" \
    --plot "$D/cactus.png" > "$D/score.txt"
"$R/.venv/bin/python" "$R/bench/results_table.py"
rm -rf "$W"
