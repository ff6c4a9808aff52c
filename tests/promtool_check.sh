#!/bin/sh
# tests/promtool_check.sh PROGRAM WORKDIR
#
# PROGRAM (test_metrics) writes a representative exposition with
# --write=FILE: pools at each check level, one with misuse events, inline
# and pooled maps, a layout name that needs escaping.  `promtool check
# metrics` (Debian package prometheus) must accept it with no lint
# complaint.  Exit status 77 when promtool is not installed.
set -u
prog=$1
dir=$2

if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool_check: skipped (promtool not found; Debian package prometheus)"
    exit 77
fi
rm -rf "$dir"
mkdir -p "$dir" || exit 1
metrics=$dir/metrics.prom

"$prog" --write="$metrics" || { echo "promtool_check: FAIL: $prog exited with $?"; exit 1; }
out=$(promtool check metrics <"$metrics" 2>&1)
status=$?
if [ "$status" -ne 0 ] || [ -n "$out" ]; then
    printf '%s\n' "$out"
    echo "promtool_check: FAIL: promtool check metrics exited with $status"
    echo "--- $metrics"
    cat "$metrics"
    exit 1
fi
echo "promtool_check: ok ($(grep -c '^# TYPE' "$metrics") families, $(grep -vc '^#' "$metrics") samples)"
