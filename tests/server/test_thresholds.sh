#!/bin/sh
# tests/server/test_thresholds.sh - the gate of `make bench-server-check`
# (scripts/bench_check.sh) on made-up input: it must pass ratios at or above
# their minimums, and fail, naming the ratio, one below its minimum or
# missing; a malformed line is an error.  Then the committed
# bench/server-thresholds.txt: well formed, and every ratio it names is one
# that the last run wrote (bench/results/server-ratios.txt).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
check=$root/scripts/bench_check.sh
tmp=$(mktemp -d /tmp/test_thresholds.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM
pass=0
fail=0
t() { # NAME WANT-STATUS WANT-STDERR-TEXT RATIOS THRESHOLDS
    printf '%s' "$4" >"$tmp/r"
    printf '%s' "$5" >"$tmp/t"
    sh "$check" "$tmp/r" "$tmp/t" >"$tmp/out" 2>"$tmp/err"
    st=$?
    if [ "$st" -eq "$2" ] && { [ -z "$3" ] || grep -q -- "$3" "$tmp/err"; }; then
        pass=$((pass + 1)); echo "ok   $1"
    else
        fail=$((fail + 1)); echo "FAIL $1: status $st (want $2), stderr:"; cat "$tmp/err" "$tmp/out"
    fi
}
R='# a comment
getb_p1_t1_vs_get 1.020
putb_p1_t1_vs_set 0.950
rss_redis_over_sm 2.500
startup_redis_over_sm inf
'
t "all above their minimums pass" 0 "" "$R" 'getb_p1_t1_vs_get 0.9
putb_p1_t1_vs_set 0.9   # measured 0.95
rss_redis_over_sm 2
startup_redis_over_sm 2
'
t "a ratio equal to its minimum passes" 0 "" "$R" 'putb_p1_t1_vs_set 0.95
'
t "a ratio below its minimum fails, named" 1 "putb_p1_t1_vs_set is 0.950, below its minimum 1.0" "$R" 'getb_p1_t1_vs_get 0.9
putb_p1_t1_vs_set 1.0
'
t "two below: both named" 1 "rss_redis_over_sm" "$R" 'getb_p1_t1_vs_get 1.5
rss_redis_over_sm 3
'
t "a ratio missing from the results fails, named" 1 "getb_p16_t2_vs_get missing" "$R" 'getb_p16_t2_vs_get 1.5
'
t "a malformed threshold line is an error" 2 "want" "$R" 'getb_p1_t1_vs_get
'
t "a non-numeric minimum is an error" 2 "want" "$R" 'getb_p1_t1_vs_get fast
'
t "no thresholds at all is an error" 2 "no thresholds" "$R" '# nothing
'

# The committed thresholds: well formed, and naming ratios the bench writes.
th=$root/bench/server-thresholds.txt
last=$root/bench/results/server-ratios.txt
if [ -f "$th" ] && [ -f "$last" ]; then
    awk '!/^#/ && NF { print $1, "1e9" }' "$last" >"$tmp/big"
    if sh "$check" "$tmp/big" "$th" >"$tmp/out" 2>"$tmp/err"; then
        pass=$((pass + 1)); echo "ok   bench/server-thresholds.txt is well formed and names only measured ratios"
    else
        fail=$((fail + 1)); echo "FAIL bench/server-thresholds.txt:"; cat "$tmp/err"
    fi
else
    echo "skip: bench/server-thresholds.txt or bench/results/server-ratios.txt not there"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
