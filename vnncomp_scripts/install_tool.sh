#!/usr/bin/env bash
# VNN-COMP harness: install nnverify (creates .venv in the repository root and pip-installs the package).
# Usage: install_tool.sh v1
set -euo pipefail

readonly TOOL_NAME="nnverify"
readonly VERSION_STRING="v1"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 ${VERSION_STRING}" >&2
    exit 1
fi
if [[ "$1" != "${VERSION_STRING}" ]]; then
    echo "Error: expected version string ${VERSION_STRING}, got '$1'" >&2
    exit 1
fi

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
echo "Installing ${TOOL_NAME} in ${repo_root}/.venv"
cd "${repo_root}"
make setup
"${repo_root}/.venv/bin/nnverify" --help >/dev/null
echo "Installed ${TOOL_NAME}: ${repo_root}/.venv/bin/nnverify"
