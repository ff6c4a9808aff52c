#!/bin/sh
# scripts/bench_check.sh RATIOS THRESHOLDS - the gate of `make
# bench-server-check`.  RATIOS has "name value" lines (bench/results/
# server-ratios.txt, written by scripts/bench_server.py; every ratio is
# bigger-is-better); THRESHOLDS has "name minimum" lines
# (bench/server-thresholds.txt; '#' starts a comment).  Prints each
# threshold with its measured value; exits 1 when any ratio is below its
# minimum or missing from RATIOS (each such ratio named on stderr), 2 on a
# malformed line.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 RATIOS THRESHOLDS" >&2; exit 2; }
awk '
    { sub(/#.*/, "") }
    NF == 0 { next }
    NF != 2 || $2 !~ /^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$|^inf$/ {
        printf "bench_check: %s:%d: want \"name number\": %s\n", FILENAME, FNR, $0 > "/dev/stderr"
        bad = 1; exit 2
    }
    FILENAME == ARGV[1] { value[$1] = ($2 == "inf") ? 1e308 : $2 + 0; next }
    {
        n++
        if (!($1 in value)) {
            printf "FAIL %-36s missing from %s\n", $1, ARGV[1]
            printf "bench_check: %s missing\n", $1 > "/dev/stderr"; fails++; next
        }
        ok = value[$1] >= $2 + 0
        printf "%s %-36s %8.3f (minimum %s)\n", ok ? "ok  " : "FAIL", $1, value[$1], $2
        if (!ok) { printf "bench_check: %s is %.3f, below its minimum %s\n", $1, value[$1], $2 > "/dev/stderr"; fails++ }
    }
    END {
        if (bad) exit 2
        if (n == 0) { print "bench_check: no thresholds in " ARGV[2] > "/dev/stderr"; exit 2 }
        printf "%d thresholds, %d below\n", n, fails
        exit fails ? 1 : 0
    }' "$1" "$2"
