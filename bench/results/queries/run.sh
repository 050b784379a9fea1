#!/bin/sh
# Decides the shipped VNN-LIB 2.0 queries at a 60 s budget; one CSV row per query (run from the repository root).
set -u
A11=networks/ACASXU_run2a_1_1_batch_2000.onnx
A19=networks/ACASXU_run2a_1_9_batch_2000.onnx
PRUNED=properties/queries/acasxu_1_1_pruned.onnx
echo "query,networks,verdict,wall_s"
run() {
    name=$1; shift
    start=$(date +%s.%N)
    verdict=$(.venv/bin/nnverify check "properties/queries/$name.vnnlib" "$@" --timeout 60 2>/dev/null | head -1)
    end=$(date +%s.%N)
    nets=$(echo "$@" | sed 's/--network //g; s/ /;/g')
    echo "$name,$nets,$verdict,$(echo "$end - $start" | bc)"
}
run acasxu_equivalence --network f=$A11 --network g=$PRUNED
run acasxu_monotonicity --network f=$A11
run acasxu_disagreement --network f=$A11 --network g=$A19
start=$(date +%s.%N)
verdict=$(.venv/bin/nnverify query properties/queries/acasxu_disagreement.q --net F=$A11 --net G=$A19 --timeout 60 2>/dev/null | head -1)
end=$(date +%s.%N)
echo "acasxu_disagreement.q (query language),F=$A11;G=$A19,$verdict,$(echo "$end - $start" | bc)"
