#!/usr/bin/env bash
# Re-run every command of ../shared/reliability/README.md (issue 23's third target) and print, for each, the exit
# code, the wall time and the first lines of stdout and stderr. Run from the project root:
#     bash bench/results/reliability/rerun.sh > /tmp/reliability.log 2>&1
# NNVERIFY (default .venv/bin/nnverify) is the program; PYTHONPATH may point at a clean copy of one commit.
set -u
B=../shared/benchmarks/test
P=../shared/reliability/repro
M=../shared/benchmarks/mnistfc
NNV=${NNVERIFY:-.venv/bin/nnverify}
TMP=$(mktemp -d)

run() {  # run LABEL ARGS...: one nnverify command
    local label=$1
    shift
    local start end
    start=$(date +%s.%N)
    "$NNV" "$@" >"$TMP/out" 2>"$TMP/err"
    local code=$?
    end=$(date +%s.%N)
    printf '### %s: nnverify %s\n' "$label" "$*"
    printf 'exit %s, wall %.2f s\n' "$code" "$(echo "$end - $start" | bc)"
    head -c 600 "$TMP/out" | head -4 | sed 's/^/  out: /'
    head -c 600 "$TMP/err" | head -3 | sed 's/^/  err: /'
    grep -c Traceback "$TMP/err" | sed 's/^/  tracebacks: /'
}

run 1a check $P/segv_test_sat_weights_nan_some.onnx $B/test_prop.vnnlib
run 1b check $P/segv_test_sat_weights_minus_inf.onnx $B/test_prop.vnnlib
run 2a check $B/test_nano.onnx $P/parse_1M_asserts.vnnlib.gz --timeout 2
run 2b check $B/test_nano.onnx $P/parse_1M_asserts.vnnlib.gz --timeout 6
run 2c check $M/onnx/mnist-net_256x6.onnx $M/vnnlib/prop_5_0.05.vnnlib --timeout 3
run 2d check $M/onnx/mnist-net_256x6.onnx $M/vnnlib/prop_12_0.05.vnnlib --timeout 3
if [ "${GEMM:-1}" = 1 ]; then
    .venv/bin/python bench/gemm_chain.py 5000 6 "$TMP/gemm6.onnx" >/dev/null
    run 2e check "$TMP/gemm6.onnx" "$TMP/gemm6.vnnlib" --timeout 30 --json
    rm -f "$TMP/gemm6.onnx"
fi
run 3a check $B/test_small.onnx $P/highs_wide_box.vnnlib --timeout 10
run 3b check $P/weights_1e30.onnx $B/test_nano.vnnlib --timeout 10
run 4 check $P/weights_nan.onnx $B/test_nano.vnnlib
run 5a check $P/graph_double.onnx $P/nano_sat.vnnlib
run 5b check $P/graph_float16.onnx $P/nano_sat.vnnlib
run 5c check $P/mnist256x2_input_zero_dim.onnx $M/vnnlib/prop_1_0.03.vnnlib
run 6 check $P/init_raw_data_size_mismatch.onnx $B/test_nano.vnnlib
run 7a check $P/external_data_missing.onnx $B/test_nano.vnnlib
run 7b check $P/external_data_absolute.onnx $B/test_nano.vnnlib
run 8 check $P/input_huge_dim.onnx $B/test_nano.vnnlib
run 9a check $B/test_sat.onnx $B/test_prop.vnnlib --results-file /sys/kernel/results.txt
run 9b check $B/test_sat.onnx $B/test_prop.vnnlib --counterexample /sys/kernel/c.txt
run 9c check $B/test_sat.onnx $B/test_prop.vnnlib --image /sys/kernel/x.png
run 9d export $B/test_sat.onnx $B/test_prop.vnnlib -o /sys/kernel/q.pl
run 10a check $P/sat_witness_inf_test_small_weights_neg_huge.onnx $B/test_small.vnnlib --counterexample "$TMP/c.txt"
if [ -f "$TMP/c.txt" ]; then  # only a sat writes the witness
    run 10b witness $P/sat_witness_inf_test_small_weights_neg_huge.onnx $B/test_small.vnnlib "$TMP/c.txt"
fi
run 11 check $B/test_sat.onnx $B/test_prop.vnnlib --seed -1
run 12 bench score $B/instances.csv --expected $B/expected.csv
# 13: SIGINT while the run is under way; nothing may be left in the results directory. Python starts the
# process with SIGINT at its default (a shell script run in the background would pass SIGINT on as ignored).
for delay in 0.1 0.3 1 2 4; do
    mkdir -p "$TMP/int$delay"
    .venv/bin/python - "$NNV" "$delay" "$TMP/int$delay" $M <<'PY'
import os, signal, subprocess, sys, time
nnv, delay, out, m = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
cmd = [nnv, "check", f"{m}/onnx/mnist-net_256x6.onnx", f"{m}/vnnlib/prop_5_0.05.vnnlib", "--timeout", "30",
       "--results-file", f"{out}/r.txt"]
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
time.sleep(delay)
proc.send_signal(signal.SIGINT)
stdout, stderr = proc.communicate()
print(f"### 13 (SIGINT at {delay} s)\nexit {proc.returncode}, files left: {len(os.listdir(out))}, "
      f"tracebacks: {stderr.count('Traceback')}, stderr: {stderr.strip()[-200:]!r}")
PY
done
run 14 check $P/no_opset_import.onnx $B/test_nano.vnnlib
run 15a check $B/test_nano.onnx $P/bom.vnnlib
run 15b check $B/test_sat.onnx $P/bom.vnnlib
run 16 check $B/test_sat.onnx $P/cr_only_line_ends.vnnlib
run 17a check $B/test_sat.onnx $B/test_prop.vnnlib --timeout nan
run 17b check $B/test_sat.onnx $B/test_prop.vnnlib --results-file ""
run 17c generate --interval nan 70
rm -rf "$TMP"
