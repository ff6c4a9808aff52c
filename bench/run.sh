#!/bin/sh
# bench/run.sh quick|full - builds the benchmarks, runs safemap and its peers
# on the workloads of DESIGN.md, and writes bench/results/report.md (also
# printed) and bench/results/bench.svg.
#
# How it works.  Two programs print the same one-line records:
#   bench_maps (bench_maps.cpp): safemap at SM_CHECK_CHEAP and SM_CHECK_OFF,
#              boost::unordered_flat_map, absl::flat_hash_map,
#              std::unordered_map, and the one-random-read limit;
#   bench_go   (go/main.go): Go's map.
# Their records are collected in bench/results/raw.txt, one awk program turns
# that into the report's tables and target checks, and gnuplot draws the
# chart.  grow-tail runs once per map, in a process of its own, so that the
# peak RSS it reports is that map's alone; each such process is preceded by
# `bench_maps prefault`, which touches about the map's peak footprint so
# that every map meets the VM's memory in the same state (see
# bench_maps.cpp, "Memory").
#
#   quick  n = 1e4, 1e6; int64_t[8] and [64]; 1M lookups and churn rounds;
#          one repetition; grow-tail to 1e7 for safemap and boost only.
#          Under two minutes on a 2-core machine, build included.
#   full   n = 1e4, 1e6, 1e7; int64_t[8] and [64]; 4M lookups and churn
#          rounds; fastest of 3 repetitions; grow-tail to 1e7 for every map.
#          About 20 minutes; n = 1e7 of int64_t[64] is 5.2 GB of payload,
#          and a flat table mid-rehash holds about twice that.
#
# Needs cmake, a C and C++ compiler, Boost 1.81, Abseil, Go and gnuplot:
# `sh scripts/deps.sh bench` installs them.  Plain POSIX sh, awk and gnuplot;
# no python.
set -eu

mode=${1:-quick}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/bench
results=$root/bench/results
raw=$results/raw.txt
part=$results/part.tmp
jobs=$(nproc 2>/dev/null || echo 2)
started=$(date +%s)

case $mode in
quick)
    sizes=10000,1000000 ops=1000000 reps=1
    grow_maps="sm-cheap boost" grow_count=10000000
    what="quick: n = 1e4 and 1e6, int64_t[8] and int64_t[64], 1M lookups and 1M churn rounds per figure (DESIGN.md says 4M), one run per figure; grow-tail to 1e7 for safemap (cheap) and boost only."
    ;;
full)
    sizes=10000,1000000,10000000 ops=4000000 reps=3
    grow_maps="sm-cheap sm-off boost absl std go" grow_count=10000000
    what="full: n = 1e4, 1e6 and 1e7, int64_t[8] and int64_t[64], 4M lookups and 4M churn rounds per figure, fastest of 3 runs; grow-tail to 1e7 for every map."
    ;;
*)
    echo "usage: $0 quick|full" >&2
    exit 2
    ;;
esac

# ---- Build -----------------------------------------------------------------

echo "== building into $build" >&2
cmake -S "$root" -B "$build" -DSM_BUILD_BENCH=ON -DSM_BUILD_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$build" -j "$jobs" --target bench_maps >&2
# Go writes its caches under the build directory, so that the build works as
# root on a fresh machine with no HOME and no network.
(cd "$root/bench/go" &&
    env GOCACHE="$build/go/cache" GOPATH="$build/go/path" GOENV=off GOPROXY=off \
        GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 go build -o "$build/bench_go" .)
bench_maps=$build/bench/bench_maps
bench_go=$build/bench_go

# ---- Run -------------------------------------------------------------------

mkdir -p "$results"
: >"$raw.tmp"
# Runs one program, shows its records as they come and appends them to the
# raw file; stops the script if the program fails.
record() {
    ("$@" || echo "FAILED: $*") | tee "$part" >&2
    if grep -q "^FAILED: " "$part"; then exit 1; fi
    cat "$part" >>"$raw.tmp"
}
echo "== maps: $what" >&2
record "$bench_maps" run -n "$sizes" -l 8,64 -o "$ops" -r "$reps"
record "$bench_go" run -n "$sizes" -l 8,64 -o "$ops" -r "$reps"
# Peak footprint to prefault before a grow process: about 300 B per entry
# covers the hungriest peer (Go, ~270 B).
prefault_mib=$((grow_count * 300 / 1048576))
for map in $grow_maps; do
    echo "== grow-tail: $map to $grow_count" >&2
    "$bench_maps" prefault "$prefault_mib"
    if [ "$map" = go ]; then
        record "$bench_go" grow go 8 "$grow_count"
    else
        record "$bench_maps" grow "$map" 8 "$grow_count"
    fi
done
mv "$raw.tmp" "$raw"
rm -f "$part"

# ---- Report ----------------------------------------------------------------

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
machine="${cpu:-unknown CPU}, $(nproc) cores, Linux $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
elapsed=$(($(date +%s) - started))

awk -v machine="$machine" -v what="$what" -v elapsed="$elapsed" '
# Formats: n as 1e6; ns per op as whole numbers from 100 up, one decimal below.
function sci(n,    x, k) {
    x = n; k = 0
    while (x >= 10 && x % 10 == 0) { x /= 10; k++ }
    return k >= 3 ? x "e" k : n
}
function fmt(x) { return x == "" ? "-" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.1f", x)) }
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "" : a / b }
function fmtr(r) { return r == "" ? "-" : sprintf("%.2fx", r) }
function dur(ns) { return ns >= 1e6 ? sprintf("%.1f ms", ns / 1e6) : sprintf("%.1f us", ns / 1e3) }
# Keeps the worst (largest) ratio of a target and where it happened.
function track(t, r, where) {
    if (r == "") return
    if (!(t in worst) || r > worst[t]) { worst[t] = r; worst_at[t] = where }
}
function verdict(t, limit, unit,    s) {
    if (!(t in worst)) return "not measured"
    s = sprintf("%.2f%s (%s)", worst[t], unit, worst_at[t])
    return (worst[t] <= limit ? "met: worst " : "**missed**: worst ") s
}
$1 == "op" { ns[$2, $3, $4, $5] = $6; lens[$3] = 1; sizes[$4] = 1 }
$1 == "grow" { grow[++ngrow] = $0 }
END {
    nw = split("insert lookup-hit lookup-miss churn iterate", work, " ")
    nm = split("sm-cheap sm-off boost absl std go limit", maps, " ")
    nl = 0; for (l in lens) lenlist[++nl] = l + 0
    ns_ = 0; for (s in sizes) sizelist[++ns_] = s + 0
    # Tiny insertion sorts: a handful of values each.
    for (i = 2; i <= nl; i++) for (j = i; j > 1 && lenlist[j] < lenlist[j-1]; j--) { t = lenlist[j]; lenlist[j] = lenlist[j-1]; lenlist[j-1] = t }
    for (i = 2; i <= ns_; i++) for (j = i; j > 1 && sizelist[j] < sizelist[j-1]; j--) { t = sizelist[j]; sizelist[j] = sizelist[j-1]; sizelist[j-1] = t }

    print "# safemap benchmark report"
    print ""
    print "Machine: " machine ". Wall time " elapsed " s."
    print ""
    print "Measured (" what ")"
    print ""
    print "Each figure is measured on a shared 2-core VM: differences of about 10% or less between two maps are within run-to-run noise; `full` keeps the fastest of 3 runs."
    print ""
    print "## Maps: ns per operation (lower is better)"
    print ""
    print "sm = safemap, SM_INLINE storage; sm-cheap is SM_CHECK_CHEAP (the ratios use it), sm-off is SM_CHECK_OFF."
    print "limit = one random read of an entry-sized slot in a flat array (lookup-hit only). churn is ns per round (one delete + one insert); iterate is ns per entry visited."
    print ""
    print "| workload | N | n | sm-cheap | sm-off | boost | absl | std | go | limit | sm/boost | sm/absl | sm/go | cheap/off | sm/limit |"
    print "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for (li = 1; li <= nl; li++) for (si = 1; si <= ns_; si++) for (wi = 1; wi <= nw; wi++) {
        l = lenlist[li]; s = sizelist[si]; w = work[wi]
        sm = ns[w, l, s, "sm-cheap"]
        if (sm == "" && ns[w, l, s, "boost"] == "") continue
        row = "| " w " | " l " | " sci(s)
        for (mi = 1; mi <= nm; mi++) row = row " | " fmt(ns[w, l, s, maps[mi]])
        rb = ratio(sm, ns[w, l, s, "boost"]); ra = ratio(sm, ns[w, l, s, "absl"])
        rg = ratio(sm, ns[w, l, s, "go"]); ro = ratio(sm, ns[w, l, s, "sm-off"])
        rl = ratio(sm, ns[w, l, s, "limit"])
        print row " | " fmtr(rb) " | " fmtr(ra) " | " fmtr(rg) " | " fmtr(ro) " | " fmtr(rl) " |"
        where = w " [" l "] n=" sci(s)
        if (w == "lookup-hit" || w == "lookup-miss" || w == "churn") track("boost", rb, where)
        if (w == "insert") track("insert", rb, where)
        track("go", rg, where)
        track("checks", ro, where)
        if (w == "lookup-hit" && l == 8 && s == 1000000) track("limit", rl, where)
    }
    print ""
    print "## grow-tail: one map grown to n entries of int64_t[8], no reserve"
    print ""
    print "Every insert timed alone (clock_gettime, ~25 ns of which is the clock). Peak RSS is getrusage ru_maxrss / n; growth RSS subtracts the RSS before the map was created."
    print ""
    print "| map | n | worst insert | p99.99 | p99 | peak RSS B/entry | growth RSS B/entry | total s |"
    print "|---|--:|--:|--:|--:|--:|--:|--:|"
    for (g = 1; g <= ngrow; g++) {
        split(grow[g], f, " ")
        printf "| %s | %s | %s | %s | %s | %.0f | %.0f | %.1f |\n", f[2], sci(f[4]), dur(f[5]), dur(f[6]), dur(f[7]), f[8], f[9], f[10]
        if (f[2] == "sm-cheap") {
            worst["tail"] = f[5] / 1e6; worst_at["tail"] = "n=" sci(f[4])
            worst["p9999"] = f[6] / 1e3; worst_at["p9999"] = "n=" sci(f[4])
            worst["rss"] = f[8]; worst_at["rss"] = sprintf("n=%s, growth only %.0f B", sci(f[4]), f[9])
        }
    }
    print ""
    print "## Targets (DESIGN.md), safemap at SM_CHECK_CHEAP"
    print ""
    print "| target | result |"
    print "|---|---|"
    print "| lookup-hit, lookup-miss, churn at most 1.0x boost at every n | " verdict("boost", 1.0, "x") " |"
    print "| at most 0.5x Go on every workload | " verdict("go", 0.5, "x") " |"
    print "| lookup-hit at n=1e6, int64_t[8]: at most 1.5x the limit | " verdict("limit", 1.5, "x") " |"
    print "| insert from empty at most 0.6x boost | " verdict("insert", 0.6, "x") " |"
    print "| growth to 1e7: worst single insert at most 1 ms | " verdict("tail", 1.0, " ms") " |"
    print "| growth to 1e7: p99.99 at most 5 us | " verdict("p9999", 5.0, " us") " |"
    print "| peak RSS at most 100 B per int64_t[8] entry | " verdict("rss", 100, " B") " |"
    print "| SM_CHECK_CHEAP at most 1.05x SM_CHECK_OFF | " verdict("checks", 1.05, "x") " |"
    print "| pool Get+Put at most 0.6x tcmalloc | not measured by this bench |"
    print ""
    print "Raw records: bench/results/raw.txt. Chart: bench/results/bench.svg (int64_t[8], n=1e6)."
}' "$raw" >"$results/report.md"

# ---- Chart -----------------------------------------------------------------

# One row per workload, one column per map, for int64_t[8] at n = 1e6.
awk '$1 == "op" && $3 == 8 && $4 == 1000000 { ns[$2, $5] = $6 }
END {
    print "workload sm-cheap sm-off boost absl std go"
    nw = split("insert lookup-hit lookup-miss churn iterate", work, " ")
    split("sm-cheap sm-off boost absl std go", maps, " ")
    for (w = 1; w <= nw; w++) {
        row = work[w]
        for (m = 1; m <= 6; m++) row = row " " ((work[w], maps[m]) in ns ? ns[work[w], maps[m]] : "-")
        print row
    }
}' "$raw" >"$results/chart.tmp"
if command -v gnuplot >/dev/null 2>&1; then
    gnuplot <<EOF
set terminal svg size 960,500 dynamic noenhanced font "sans,12"
set output "$results/bench.svg"
set title "ns per operation, int64_t[8] values, n = 1e6 (lower is better; log scale)"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set ylabel "ns per op"
set key outside right top
set grid ytics
plot for [c=2:7] "$results/chart.tmp" using c:xtic(1) title columnheader(c)
EOF
else
    echo "gnuplot not found: no chart" >&2
fi
rm -f "$results/chart.tmp"

cat "$results/report.md"
