#!/bin/sh
# scripts/bench_server.sh [--check THRESHOLDS] - builds safemapd (Release, in
# build/bench-server) and measures it against Redis 7 on loopback with
# scripts/bench_server.py, which writes bench/results/server.md,
# server-ratios.txt, server-raw.txt and server.svg and kills every server it
# started.  With --check, the ratios of this run are then compared with the
# minimums in THRESHOLDS (scripts/bench_check.sh): exit 1 naming each ratio
# below its minimum.  `make bench-server`, `make bench-server-check`.
# BENCH_QUICK=1 makes a short trial run (see scripts/bench_server.py);
# BENCH_RESULTS=DIR writes the results there instead of bench/results.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
check=""
if [ "${1:-}" = --check ]; then
    check=${2:?usage: $0 [--check THRESHOLDS]}
fi
build=$root/build/bench-server
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "${JOBS:-2}" --target safemapd >/dev/null
results=${BENCH_RESULTS:-$root/bench/results}
python3 "$root/scripts/bench_server.py" "$build/server/safemapd" "$results"
if [ -n "$check" ]; then
    sh "$root/scripts/bench_check.sh" "$results/server-ratios.txt" "$check"
fi
