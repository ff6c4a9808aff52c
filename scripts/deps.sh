#!/bin/sh
# Installs the Debian packages a job needs, when any is missing.
#   scripts/deps.sh test    compilers, sanitizer runtimes, valgrind, Go (pprof),
#                           prometheus (promtool)
#   scripts/deps.sh bench   the peers: Boost 1.81, Abseil, Go, jemalloc, mimalloc,
#                           tcmalloc, gnuplot
set -eu
case "${1:-test}" in
test) pkgs="cmake make gcc g++ clang libclang-rt-14-dev valgrind pkg-config golang-go prometheus" ;;
bench) pkgs="cmake make gcc g++ pkg-config libboost1.81-dev libabsl-dev golang-go gnuplot-nox libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev" ;;
*) echo "usage: $0 test|bench" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
