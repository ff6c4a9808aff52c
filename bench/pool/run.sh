#!/bin/sh
# bench/pool/run.sh [RAW] - the pool benchmark: safemap's pool at each check
# level against glibc, jemalloc, mimalloc and tcmalloc malloc+free pairs and
# Go's sync.Pool (by pointer and by value), on one 128 B array.  Prints a
# markdown table (ns per Get+Put pair, and the pair's ratio to tcmalloc,
# whose target is sm-cheap <= 0.6x).  RAW, if given, receives
# the one-line records (`pool <workload> <source> <ns>`), the format of
# bench/results/raw.txt.
#
# A second table gives the cost of call-site sampling at SM_CHECK_CHEAP:
# sm-cheap again under SAFEMAP_DEBUG=sample=N for N in POOL_SAMPLES (default
# "0 100000 1000": none, the default rate, and a dense one), interleaved
# POOL_SAMPLE_ROUNDS times (default 5, fastest kept), as ns per pair and as
# the increase over sample=0.  At a sparse rate the increase is below the
# run-to-run noise (about 1%), so the table also gives it as modelled from
# the densest rate: (t(dense) - t(0)) * dense / N, the cost of one recorded
# Get and its Put spread over N pairs.  Those records stay out of RAW.
#
# Builds into build/bench-pool (CMake, Release; bench/pool/CMakeLists.txt
# on its own; POOL_BUILD overrides the directory) and the Go program with
# its caches there too (no network).
# Environment: POOL_PAIRS (per run, default 2e6), POOL_REPS (runs, fastest
# kept, default 15), POOL_SAMPLES, POOL_BUILD.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${POOL_BUILD:-$root/build/bench-pool}
raw=${1:-}
pairs=${POOL_PAIRS:-2000000}
reps=${POOL_REPS:-15}
samples=${POOL_SAMPLES:-0 100000 1000}
sample_rounds=${POOL_SAMPLE_ROUNDS:-5}

cmake -S "$root/bench/pool" -B "$build" -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" >&2
(cd "$root/bench/pool/go" &&
    env GOCACHE="$build/go/cache" GOPATH="$build/go/path" GOENV=off GOPROXY=off \
        GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 go build -o "$build/poolbench_go" .)

out=$build/records.txt
: >"$out"
# safemap's pool once (from the glibc build: the pool never calls malloc on
# its fast path), each allocator from its own executable.
"$build/bench_pool_glibc" -n "$pairs" -r "$reps" -s sm-off,sm-cheap,sm-full,glibc | tee -a "$out" >&2
for a in jemalloc mimalloc tcmalloc; do
    if [ -x "$build/bench_pool_$a" ]; then
        "$build/bench_pool_$a" -n "$pairs" -r "$reps" -s "$a" | tee -a "$out" >&2
    fi
done
"$build/poolbench_go" -n "$pairs" -r "$reps" | tee -a "$out" >&2
[ -n "$raw" ] && grep '^pool ' "$out" >>"$raw"

sampling=$build/sampling.txt
: >"$sampling"
for round in $(seq "$sample_rounds"); do
    for n in $samples; do
        SAFEMAP_DEBUG=sample=$n "$build/bench_pool_glibc" -n "$pairs" -r "$reps" -s sm-cheap \
            -t "sample=$n" -w pair,ring1024 | tee -a "$sampling" >&2
    done
done

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
awk -v machine="${cpu:-unknown CPU}, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')" '
$1 == "pool" { ns[$2, $3] = $4; if (!($3 in seen)) { seen[$3] = 1; order[++n] = $3 } }
function f(x) { return x == "" ? "-" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.1f", x)) }
END {
    print "## Pool: one 128 B array (int64_t[16]), ns per Get+Put pair"
    print ""
    print "Machine: " machine ". Fastest of several short runs."
    print ""
    print "| source | pair (LIFO) | ring of 1024 | Get/Put in two threads | pair vs tcmalloc |"
    print "|---|---|---|---|---|"
    t = ns["pair", "tcmalloc"]
    for (i = 1; i <= n; i++) {
        s = order[i]
        r = (t != "" && t > 0) ? sprintf("%.2fx", ns["pair", s] / t) : "-"
        print "| " s " | " f(ns["pair", s]) " | " f(ns["ring1024", s]) " | " f(ns["xthread", s]) " | " r " |"
    }
    if (t != "" && ("pair", "sm-cheap") in ns) {
        r = ns["pair", "sm-cheap"] / t
        print ""
        printf "Target: the pair at SM_CHECK_CHEAP at most 0.6x tcmalloc: %s (%.2fx).\n", (r <= 0.6 ? "met" : "**missed**"), r
    }
}' "$out"
awk -v samples="$samples" '
$1 == "pool" {
    split($3, t, "@sample=")
    if (!(($2, t[2]) in ns) || $4 < ns[$2, t[2]]) ns[$2, t[2]] = $4
}
function f(x) { return x == "" ? "-" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.2f", x)) }
function pct(x, b) { return (x == "" || b == "" || b <= 0) ? "-" : sprintf("%+.1f%%", 100 * (x - b) / b) }
# The increase at rate k, modelled from the densest rate d.
function model(w, k) {
    if (k == 0 || d == "" || ns[w, 0] == "" || ns[w, d] == "") return "-"
    return sprintf("%+.2f%%", 100 * (ns[w, d] - ns[w, 0]) * d / k / ns[w, 0])
}
END {
    n = split(samples, s, " ")
    d = ""
    for (i = 1; i <= n; i++) if (s[i] > 0 && (d == "" || s[i] + 0 < d + 0)) d = s[i]
    print ""
    print "## Call-site sampling at SM_CHECK_CHEAP (SAFEMAP_DEBUG=sample=N), ns per Get+Put pair"
    print ""
    print "| sample | pair (LIFO) | vs sample=0 | modelled | ring of 1024 | vs sample=0 | modelled |"
    print "|---|---|---|---|---|---|---|"
    for (i = 1; i <= n; i++) {
        k = s[i]
        print "| " k " | " f(ns["pair", k]) " | " pct(ns["pair", k], ns["pair", 0]) " | " \
              model("pair", k) " | " f(ns["ring1024", k]) " | " \
              pct(ns["ring1024", k], ns["ring1024", 0]) " | " model("ring1024", k) " |"
    }
    if (d != "" && ns["pair", 0] != "")
        printf "\nOne recorded Get and its Put: %.2f us (from sample=%s).\n", \
            (ns["pair", d] - ns["pair", 0]) * d / 1000, d
}' "$sampling"
