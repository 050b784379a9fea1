#!/usr/bin/env bash
# VNN-COMP harness: prepare one instance.
# Usage: prepare_instance.sh v1 <category> <onnx> <vnnlib>
# Stops a leftover nnverify run of a previous instance (the one run_instance.sh recorded in its pid file) and
# checks that both input files exist. nnverify needs no per-instance preparation beyond that.
set -euo pipefail

readonly TOOL_NAME="nnverify"
readonly VERSION_STRING="v1"
# Where run_instance.sh records the pid of the nnverify process it started (same default in both scripts).
readonly PID_FILE="${NNVERIFY_VNNCOMP_PID_FILE:-${TMPDIR:-/tmp}/nnverify-vnncomp-$(id -u).pid}"

if [[ $# -ne 4 ]]; then
    echo "usage: $0 ${VERSION_STRING} <category> <onnx> <vnnlib>" >&2
    exit 1
fi
version="$1"
category="$2"
onnx="$3"
vnnlib="$4"

if [[ "${version}" != "${VERSION_STRING}" ]]; then
    echo "Error: expected version string ${VERSION_STRING}, got '${version}'" >&2
    exit 1
fi
echo "Preparing ${TOOL_NAME} for category '${category}': ${onnx} ${vnnlib}"

# True when pid $1 is still alive and is an nnverify process (guards against a recycled pid).
is_nnverify() {
    local pid="$1"
    [[ -r "/proc/${pid}/cmdline" ]] && tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -q "nnverify"
}

# Stop the nnverify run a previous instance left behind (e.g. when the harness killed run_instance.sh).
if [[ -f "${PID_FILE}" ]]; then
    old_pid="$(head -n 1 "${PID_FILE}" || true)"
    if [[ "${old_pid}" =~ ^[0-9]+$ ]] && is_nnverify "${old_pid}"; then
        echo "Stopping leftover ${TOOL_NAME} process ${old_pid}"
        kill -TERM "${old_pid}" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            is_nnverify "${old_pid}" || break
            sleep 0.2
        done
        if is_nnverify "${old_pid}"; then
            kill -KILL "${old_pid}" 2>/dev/null || true
        fi
    fi
    rm -f "${PID_FILE}"
fi

status=0
for path in "${onnx}" "${vnnlib}"; do
    if [[ ! -f "${path}" ]]; then
        echo "Error: ${path}: file not found" >&2
        status=2
    elif [[ ! -r "${path}" ]]; then
        echo "Error: ${path}: file not readable" >&2
        status=2
    fi
done
exit "${status}"
