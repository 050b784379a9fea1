#!/usr/bin/env bash
# VNN-COMP harness: run nnverify on one instance.
# Usage: run_instance.sh v1 <category> <onnx> <vnnlib> <results_file> <timeout>
# Leaves in results_file a first line sat|unsat|timeout|unknown|error, followed by the witness after sat.
set -euo pipefail

readonly TOOL_NAME="nnverify"
readonly VERSION_STRING="v1"
# Where the pid of the running nnverify process is recorded, so that prepare_instance.sh can stop it if the
# harness kills this script (same default in both scripts).
readonly PID_FILE="${NNVERIFY_VNNCOMP_PID_FILE:-${TMPDIR:-/tmp}/nnverify-vnncomp-$(id -u).pid}"

if [[ $# -ne 6 ]]; then
    echo "usage: $0 ${VERSION_STRING} <category> <onnx> <vnnlib> <results_file> <timeout>" >&2
    exit 1
fi
version="$1"
category="$2"
onnx="$3"
vnnlib="$4"
results_file="$5"
timeout="$6"

if [[ "${version}" != "${VERSION_STRING}" ]]; then
    echo "Error: expected version string ${VERSION_STRING}, got '${version}'" >&2
    exit 1
fi

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
nnverify="${repo_root}/.venv/bin/nnverify"

# Record `error` as the result (the reason goes to stderr) and stop.
fail() {
    echo "Error: $*" >&2
    printf 'error\n' >"${results_file}"
    exit 0
}

# A stale result from an earlier run must never be read as this run's result.
rm -f "${results_file}"

if [[ ! -x "${nnverify}" ]]; then
    fail "${nnverify} not found; run install_tool.sh ${VERSION_STRING} first"
fi
if [[ ! "${timeout}" =~ ^[0-9]+([.][0-9]*)?$ ]]; then
    fail "timeout must be a number of seconds, got '${timeout}'"
fi

echo "Running ${TOOL_NAME} on category '${category}': ${onnx} ${vnnlib} (timeout ${timeout} s)"

child=""
# If the harness stops this script with a signal, stop nnverify too.
# shellcheck disable=SC2329  # invoked by the trap below
on_signal() {
    if [[ -n "${child}" ]]; then
        kill -TERM "${child}" 2>/dev/null || true
    fi
    rm -f "${PID_FILE}"
    exit 143
}
trap on_signal TERM INT HUP

"${nnverify}" check "${onnx}" "${vnnlib}" --timeout "${timeout}" --results-file "${results_file}" &
child=$!
echo "${child}" >"${PID_FILE}"
rc=0
wait "${child}" || rc=$?
child=""
rm -f "${PID_FILE}"

if [[ "${rc}" -ne 0 ]]; then
    # nnverify has already printed its one-line `Error: ...` on stderr (exit 3: bad input, 4: environment).
    fail "${TOOL_NAME} exited with status ${rc}"
fi
if [[ ! -s "${results_file}" ]]; then
    fail "${TOOL_NAME} wrote no result to ${results_file}"
fi
verdict="$(head -n 1 "${results_file}")"
case "${verdict}" in
    sat | unsat | timeout | unknown) ;;
    *) fail "${TOOL_NAME} wrote an unexpected first line '${verdict}' to ${results_file}" ;;
esac
exit 0
