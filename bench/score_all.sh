#!/usr/bin/env bash
# Score the recorded `nnverify bench run` results of one results directory against the ground truth and the
# competition peers: writes <set>_score.txt and <set>_cactus.png next to each <set>_results.csv.
# Usage: bench/score_all.sh bench/results/<date>-bench
set -euo pipefail
dir="$1"
here="$(cd "$(dirname "$0")/.." && pwd)"
data="$here/../shared/benchmarks"
for set in test acasxu mnistfc; do
    results="$dir/${set}_results.csv"
    [ -f "$results" ] || continue
    peers=()
    [ -f "$data/$set/peer_times.csv" ] && peers=(--peers "$data/$set/peer_times.csv")
    "$here/.venv/bin/nnverify" bench score "$results" --expected "$data/$set/expected.csv" "${peers[@]}" \
        --witness-dir "$dir/witnesses/$set" --plot "$dir/${set}_cactus.png" | tee "$dir/${set}_score.txt"
done
