#!/usr/bin/env bash
# Score the latest run of benchmark sets, then regenerate the results table (README.md, bench/results/README.md).
# For each set: bench/results/<set>/results.csv is scored against <benchmarks>/<set>/expected.csv (and its
# peer_times.csv), every witness in bench/results/<set>/witnesses/ replayed; writes score.txt and cactus.png.
# Usage: bench/score_all.sh [SET ...]   (default: every bench/results/<set>/ with a results.csv and ground truth;
# <benchmarks> is $NNVERIFY_BENCHMARKS or ../shared/benchmarks)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
data="${NNVERIFY_BENCHMARKS:-../shared/benchmarks}"
results="bench/results"
sets=("$@")
if [ ${#sets[@]} -eq 0 ]; then
    for dir in "$results"/*/; do
        set_name="$(basename "$dir")"
        [ -f "$dir/results.csv" ] && [ -f "$data/$set_name/expected.csv" ] && sets+=("$set_name")
    done
fi
for set_name in "${sets[@]}"; do
    dir="$results/$set_name"
    peers=()
    [ -f "$data/$set_name/peer_times.csv" ] && peers=(--peers "$data/$set_name/peer_times.csv")
    witnesses=()
    [ -d "$dir/witnesses" ] && witnesses=(--witness-dir "$dir/witnesses")
    .venv/bin/nnverify bench score "$dir/results.csv" --expected "$data/$set_name/expected.csv" \
        "${peers[@]}" "${witnesses[@]}" --plot "$dir/cactus.png" | tee "$dir/score.txt"
done
.venv/bin/python bench/results_table.py --benchmarks "$data" > /dev/null
