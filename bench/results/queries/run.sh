#!/bin/sh
# Decides the shipped queries at a 60 s budget; one CSV row per query and backend (run from the repository root).
# The output of every run (verdict, values, returns) goes to bench/results/queries/witnesses/<name>.txt, PNGs of
# image-shaped returns to bench/results/queries/png/<name>/. Each digits query that is unsat with the default
# backend is decided again with --backend clpq (exact rational arithmetic).
set -u
OUT=bench/results/queries
A11=networks/ACASXU_run2a_1_1_batch_2000.onnx
A19=networks/ACASXU_run2a_1_9_batch_2000.onnx
PRUNED=properties/queries/acasxu_1_1_pruned.onnx
D=properties/queries/digits
NETS="--net NN1=$D/nn1.onnx --net NN2=$D/nn2.onnx --net GEN=$D/gen.onnx"
mkdir -p "$OUT/witnesses" "$OUT/png"
echo "query,networks,backend,verdict,wall_s"
row() {  # name networks backend command...
    name=$1; nets=$2; backend=$3; shift 3
    start=$(date +%s.%N)
    "$@" --timeout 60 > "$OUT/witnesses/$name.txt" 2>&1
    end=$(date +%s.%N)
    verdict=$(grep -m1 -E '^(sat|unsat|unknown|timeout|error)$' "$OUT/witnesses/$name.txt" || echo error)
    echo "$name,$nets,$backend,$verdict,$(echo "$end - $start" | bc)"
}
row acasxu_equivalence "f=1_1;g=pruned" default .venv/bin/nnverify check properties/queries/acasxu_equivalence.vnnlib \
    --network f=$A11 --network g=$PRUNED
row acasxu_monotonicity "f=1_1" default .venv/bin/nnverify check properties/queries/acasxu_monotonicity.vnnlib \
    --network f=$A11
row acasxu_disagreement "f=1_1;g=1_9" default .venv/bin/nnverify check properties/queries/acasxu_disagreement.vnnlib \
    --network f=$A11 --network g=$A19
row acasxu_disagreement.q "F=1_1;G=1_9" default .venv/bin/nnverify query properties/queries/acasxu_disagreement.q \
    --net F=$A11 --net G=$A19
for q in differencing_r015 differencing_r008 generation_1_as_8 generation_0_as_1 two_norms_as_3 two_norms_as_4 \
    hidden_patch_n28 hidden_patch_n5; do
    case $q in
        differencing*|hidden*) image=$D/image_3.npy ;;
        *) image=$D/image_8.npy ;;
    esac
    nets=$(grep -o -E '(NN1|NN2|GEN)\(' "$D/$q.q" | sort -u | tr -d '(' | tr '\n' ';' | sed 's/;$//')
    row "$q" "$nets" default .venv/bin/nnverify query "$D/$q.q" $NETS --const image=$image --png-dir "$OUT/png/$q"
    if grep -q -x unsat "$OUT/witnesses/$q.txt"; then
        row "$q.clpq" "$nets" clpq .venv/bin/nnverify query "$D/$q.q" $NETS --const image=$image --backend clpq
    fi
done
