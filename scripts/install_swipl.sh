#!/usr/bin/env bash
# Make SWI-Prolog >= 9.1.12 available (janus-swi 1.5 needs it) and print the directory holding `swipl`.
#
# Order of preference:
#   1. a `swipl` already on PATH that is new enough;
#   2. our cached build in $NNVERIFY_CACHE (default ~/.cache/nnverify), so a second run is instant;
#   3. build 9.2.9 from Debian trixie's source tarball (Debian 12 ships 9.0.4, too old):
#      add a deb-src entry for trixie, `apt-get source --download-only swi-prolog` (it exits non-zero because
#      the .dsc is not served, but the .orig tarball arrives, which is all we need), install the build
#      dependencies, then cmake + ninja into the cache prefix. Takes 1-5 minutes on 2 cores.
#
# Everything but the last line of stdout goes to stderr, so callers can do: dir=$(scripts/install_swipl.sh).
set -euo pipefail

VERSION=9.2.9
MIN_VERSION=9.1.12
CACHE=${NNVERIFY_CACHE:-$HOME/.cache/nnverify}
PREFIX=$CACHE/swipl-$VERSION
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

log() { echo "install_swipl: $*" >&2; }

version_ok() {  # version_ok /path/to/swipl
    local v
    v=$("$1" --dump-runtime-variables 2>/dev/null | sed -n 's/^PLVERSION="\([0-9]*\)";$/\1/p')
    [ -n "$v" ] || return 1
    # PLVERSION is major*10000 + minor*100 + patch
    [ "$v" -ge 90112 ]
}

if command -v swipl >/dev/null 2>&1 && version_ok "$(command -v swipl)"; then
    dirname "$(command -v swipl)"
    exit 0
fi
if [ -f "$PREFIX/.complete" ] && version_ok "$PREFIX/bin/swipl"; then
    echo "$PREFIX/bin"
    exit 0
fi

log "no SWI-Prolog >= $MIN_VERSION found; building $VERSION into $PREFIX (1-5 minutes)"
if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not found: install SWI-Prolog >= $MIN_VERSION yourself (https://www.swi-prolog.org/download/stable)"
    exit 4
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nnverify-swipl.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SRC_LIST=/etc/apt/sources.list.d/nnverify-trixie-src.list

$SUDO apt-get install -y -q --no-install-recommends ninja-build cmake libgmp-dev zlib1g-dev libncurses-dev \
    libreadline-dev libedit-dev pkg-config dpkg-dev >&2

echo "deb-src http://deb.debian.org/debian trixie main" | $SUDO tee "$SRC_LIST" >/dev/null
$SUDO apt-get update -q >&2 || true
(cd "$WORK" && apt-get source --download-only swi-prolog >&2) || true
$SUDO rm -f "$SRC_LIST"

TARBALL=$(ls "$WORK"/swi-prolog_"$VERSION"*.orig.tar.* 2>/dev/null | head -n 1 || true)
if [ -z "$TARBALL" ]; then
    log "could not fetch swi-prolog_${VERSION}+dfsg.orig.tar.* from Debian trixie sources"
    exit 4
fi
tar -xf "$TARBALL" -C "$WORK"
SRC=$(find "$WORK" -maxdepth 1 -mindepth 1 -type d -name 'swi*prolog*' | head -n 1)

mkdir -p "$SRC/build"
cd "$SRC/build"
cmake -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" \
    -DSWIPL_PACKAGES_X=OFF -DSWIPL_PACKAGES_JAVA=OFF -DSWIPL_PACKAGES_ODBC=OFF -DSWIPL_PACKAGES_BDB=OFF \
    -DSWIPL_PACKAGES_SSL=OFF -DSWIPL_PACKAGES_ARCHIVE=OFF -DINSTALL_DOCUMENTATION=OFF .. >&2
ninja >&2
rm -rf "$PREFIX"
ninja install >&2
version_ok "$PREFIX/bin/swipl"
# Only a finished install is marked, so an interrupted build is never mistaken for a cached one.
touch "$PREFIX/.complete"
log "installed $("$PREFIX/bin/swipl" --version)"
echo "$PREFIX/bin"
