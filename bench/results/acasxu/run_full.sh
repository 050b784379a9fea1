#!/bin/sh
# The full ACAS Xu run of one commit, as recorded in this folder: a snapshot worktree of the commit (other work in
# the checkout cannot leak in), one instance at a time, start-up included, no nice; then the score, the cactus
# plot, the results table (README.md, bench/results/README.md) and a cProfile of the slowest search.
#
# Usage, from the repository root on a quiet machine:  sh bench/results/acasxu/run_full.sh [COMMIT]  (default HEAD)
# Writes results.csv, witnesses/, run.log, score.txt, cactus.png, run_info.txt, profile_slowest.txt here; the
# README's figures are written by hand from them (run_info.txt holds the commit, the times and `uptime`).
set -eu
R=$(pwd)
C=$(git rev-parse --short "${1:-HEAD}")
S=${NNVERIFY_BENCHMARKS:-$(cd "$R/.." && pwd)/shared/benchmarks}/acasxu
D=$R/bench/results/acasxu
O=/tmp/acasxu-run-$C
W=/tmp/acasxu-wt-$C
rm -rf "$O"
mkdir -p "$O"
[ -d "$W" ] || git worktree add --quiet --detach "$W" "$C"
echo "commit $C" > "$O/run_info.txt"
echo "start $(date -u '+%F %T') UTC, uptime: $(uptime)" >> "$O/run_info.txt"
(cd "$W" && env -u PYTHONDONTWRITEBYTECODE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH="$W" \
    "$R/.venv/bin/python" -m nnverify.cli bench run "$S/instances.csv" --out "$O/results.csv" \
    --witness-dir "$O/witnesses" --jobs 1) > "$O/run.log" 2>&1
echo "end   $(date -u '+%F %T') UTC, uptime: $(uptime)" >> "$O/run_info.txt"
rm -rf "$D/witnesses"
cp -r "$O/results.csv" "$O/witnesses" "$O/run.log" "$O/run_info.txt" "$D/"
"$R/.venv/bin/nnverify" bench score "$D/results.csv" --expected "$S/expected.csv" --peers "$S/peer_times.csv" \
    --witness-dir "$D/witnesses" --plot "$D/cactus.png" > "$D/score.txt"
"$R/.venv/bin/python" "$R/bench/results_table.py"
# the slowest instance's input-split search alone, profiled in one process (THREADS=1)
SLOW=$("$R/.venv/bin/python" - "$D/results.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
r = max(rows, key=lambda r: float(r["run_time"]))
print(r["onnx"].split("run2a_")[1].split("_batch")[0] + ":" + r["vnnlib"].split("prop_")[1].split(".")[0])
EOF
)
(cd "$W" && THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH="$W" "$R/.venv/bin/python" "$D/search_alone.py" --prof "$SLOW") \
    > "$D/profile_slowest.txt" 2>&1
git worktree remove --force "$W"
cat "$D/run_info.txt" "$D/score.txt"
echo "slowest: $SLOW (profile_slowest.txt)"
