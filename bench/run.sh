#!/bin/sh
# bench/run.sh quick|full|smoke - builds the benchmarks, runs safemap and its
# peers, and writes bench/results/report.md (also printed) and
# bench/results/bench.svg.
#
# How it works.  Four programs print one-line records:
#   bench_maps (bench_maps.cpp): safemap at SM_CHECK_CHEAP and SM_CHECK_OFF
#              with inline storage, and with pooled storage (sm-pooled),
#              boost::unordered_flat_map, absl::flat_hash_map,
#              std::unordered_map, and the one-random-read limit; also the
#              crafted-keys row (keys built to collide, against random keys);
#   bench_conc (bench_conc.cpp): the concurrent maps: sm_cmap (when the
#              library has it), sm_map behind a pthread_rwlock_t,
#              boost::concurrent_flat_map, liburcu's rculfhash (QSBR, memb);
#   bench_go   (go/): Go's map[int64][N]int64 (go) and map[int64]*[N]int64
#              with a sync.Pool (go-ptr); for the concurrent workloads
#              sync.Map and a map behind sync.RWMutex;
#   bench/pool/run.sh (the pool's own benchmark, called as it is):
#              safemap's pool at each check level against glibc, jemalloc,
#              mimalloc and tcmalloc malloc+free and Go's sync.Pool.
# Their records are collected in bench/results/raw.txt, one awk program turns
# that into the report's tables and target checks, and gnuplot draws the
# chart.  int64_t[8] and [64] fill the maps table and the targets;
# int64_t[512] joins them only in the inline-vs-pooled table, for safemap and
# Go alone.  grow-tail runs once per map, in a process of its own, so that
# the peak RSS it reports is that map's alone; each such process is preceded
# by `bench_maps prefault`, which touches about the map's peak footprint so
# that every map meets the VM's memory in the same state (see
# bench_maps.cpp, "Memory").  The same holds for the concurrent map's
# memory run (`bench_conc grow`).
#
#   quick  n = 1e4, 1e6; int64_t[8] and [64]; int64_t[512] at n = 1e4,
#          1e5 (safemap inline and pooled, Go by value and by pointer); 1M
#          lookups and churn rounds; one repetition; grow-tail to 1e7 for
#          safemap (inline at CHEAP and OFF, pooled) and boost only;
#          crafted keys 1e5, one run; concurrent mixes on 2^18 slots of
#          capacity, 2^20 operations, 1/2/4/8 threads; a reader during
#          growth to 4e6; sm_cmap's memory at 1e7; the pool benchmark with
#          short runs (POOL_PAIRS=5e5, POOL_REPS=5).  About 5 minutes on a
#          2-core machine, build included.
#   full   n = 1e4, 1e6, 1e7; int64_t[8] and [64]; int64_t[512] at n = 1e4,
#          1e6; 4M lookups and churn rounds; fastest of 3 repetitions;
#          grow-tail to 1e7 for every map; crafted keys fastest of 3;
#          concurrent mixes on 2^22 slots, 2^23 operations; 1 and 3 readers
#          during growth; memory at 1e7 for sm_cmap, boost and rculfhash;
#          the pool benchmark with its own defaults (2M pairs, fastest of
#          15).  About 35 minutes; n = 1e7 of int64_t[64] is 5.2 GB of
#          payload, and a flat table mid-rehash holds about twice that;
#          n = 1e6 of int64_t[512] is 4.1 GB.
#   smoke  every program and every table on tiny sizes, to check that it all
#          runs (a minute or two); the figures mean nothing.  Writes to
#          build/bench/smoke-results, never to bench/results.
#
# Needs cmake, a C and C++ compiler, Boost 1.83, Abseil, liburcu, Go and
# gnuplot; jemalloc, mimalloc and tcmalloc for the pool's peers (a missing
# one shows as "-"): `sh scripts/deps.sh bench` installs them.  Plain POSIX
# sh, awk and gnuplot; no python.
set -eu

mode=${1:-quick}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/bench
results=$root/bench/results
jobs=$(nproc 2>/dev/null || echo 2)
started=$(date +%s)

case $mode in
quick)
    sizes=10000,1000000 sizes512=10000,100000 ops=1000000 reps=1
    grow_maps="sm-cheap sm-off sm-pooled boost" grow_count=10000000
    craft_reps=1 craft_budget=3
    conc_cap=262144 conc_ops=1048576 conc_threads=1,2,4,8
    conc_hit_ops=1000000 grow_read_n=4000000 grow_readers=1
    concmem_maps="sm-cmap" concmem_count=10000000
    pool_pairs=500000 pool_reps=5
    what="quick: n = 1e4 and 1e6 for int64_t[8] and int64_t[64], n = 1e4 and 1e5 for int64_t[512] (safemap and Go only, to bound memory and time), 1M lookups and 1M churn rounds per figure (4M in full), one run per figure; grow-tail to 1e7 for safemap (inline at CHEAP and OFF, pooled) and boost only; crafted keys: one run; concurrent: capacity 2^18, 2^20 operations per mix, 1 reader during growth to 4e6; pool: fastest of 5 runs of 5e5 pairs."
    ;;
full)
    sizes=10000,1000000,10000000 sizes512=10000,1000000 ops=4000000 reps=3
    grow_maps="sm-cheap sm-off sm-pooled boost absl std go" grow_count=10000000
    craft_reps=3 craft_budget=30
    conc_cap=4194304 conc_ops=8388608 conc_threads=1,2,4,8
    conc_hit_ops=4000000 grow_read_n=4000000 grow_readers="1 3"
    concmem_maps="sm-cmap boost-cfm urcu-qsbr" concmem_count=10000000
    pool_pairs=2000000 pool_reps=15
    what="full: n = 1e4, 1e6 and 1e7 for int64_t[8] and int64_t[64], n = 1e4 and 1e6 for int64_t[512] (safemap and Go only), 4M lookups and 4M churn rounds per figure, fastest of 3 runs; grow-tail to 1e7 for every map; crafted keys: fastest of 3; concurrent: capacity 2^22, 2^23 operations per mix, 1 and 3 readers during growth to 4e6; pool: fastest of 15 runs of 2M pairs."
    ;;
smoke)
    sizes=10000,20000 sizes512=1000 ops=20000 reps=1
    grow_maps="sm-cheap sm-off sm-pooled boost" grow_count=100000
    craft_reps=1 craft_budget=1
    conc_cap=16384 conc_ops=32768 conc_threads=1,2,4
    conc_hit_ops=20000 grow_read_n=100000 grow_readers=1
    concmem_maps="sm-cmap" concmem_count=100000
    pool_pairs=20000 pool_reps=1
    results=$build/smoke-results
    what="smoke: tiny sizes to check that every program and table works; the figures mean nothing."
    ;;
*)
    echo "usage: $0 quick|full|smoke" >&2
    exit 2
    ;;
esac
raw=$results/raw.txt
part=$results/part.tmp

# ---- Build -----------------------------------------------------------------

echo "== building into $build" >&2
cmake -S "$root" -B "$build" -DSM_BUILD_BENCH=ON -DSM_BUILD_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$build" -j "$jobs" --target bench_maps bench_conc >&2
# Go writes its caches under the build directory, so that the build works as
# root on a fresh machine with no HOME and no network.
(cd "$root/bench/go" &&
    env GOCACHE="$build/go/cache" GOPATH="$build/go/path" GOENV=off GOPROXY=off \
        GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 go build -o "$build/bench_go" .)
bench_maps=$build/bench/bench_maps
bench_conc=$build/bench/bench_conc
bench_go=$build/bench_go

# ---- Run -------------------------------------------------------------------

mkdir -p "$results"
: >"$raw.tmp"
# A failed run leaves raw.txt and the report as they were, and no scratch.
trap 'rm -f "$raw.tmp" "$part"' EXIT
# Runs one program, shows its records as they come and appends them to the
# raw file; stops the script if the program fails.
record() {
    ("$@" || echo "FAILED: $*") | tee "$part" >&2
    if grep -q "^FAILED: " "$part"; then exit 1; fi
    cat "$part" >>"$raw.tmp"
}
echo "== maps: $what" >&2
record "$bench_maps" run -n "$sizes" -l 8,64 -o "$ops" -r "$reps" \
    -m sm-cheap,sm-off,sm-pooled,boost,absl,std,limit
record "$bench_go" run -n "$sizes" -l 8,64 -o "$ops" -r "$reps"
echo "== int64_t[512], inline vs pooled" >&2
record "$bench_maps" run -n "$sizes512" -l 512 -o "$ops" -r "$reps" -m sm-cheap,sm-pooled
record "$bench_go" run -n "$sizes512" -l 512 -o "$ops" -r "$reps"
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
echo "== crafted keys: 1e5 keys built to collide, against random keys" >&2
# Keys that defeat the map can make one operation cost milliseconds: each
# phase stops after craft_budget seconds and the record says how far it got.
if "$bench_maps" 2>&1 | grep -q crafted; then
    record "$bench_maps" crafted 100000 "$ops" "$craft_reps" "$craft_budget"
else
    echo "(this bench_maps has no crafted mode: src/segment.h is missing)" >&2
fi

echo "== concurrent maps: lookup-hit in one thread, n = 1e6" >&2
record "$bench_conc" hit -n 1000000 -o "$conc_hit_ops"
record "$bench_go" conc hit -n 1000000 -o "$conc_hit_ops"
echo "== concurrent maps: ReadHeavy, Exchange, RapidGrow at $conc_threads threads" >&2
record "$bench_conc" mix -c "$conc_cap" -o "$conc_ops" -t "$conc_threads"
record "$bench_go" conc mix -c "$conc_cap" -o "$conc_ops" -t "$conc_threads"
for readers in $grow_readers; do
    echo "== concurrent maps: $readers reader(s) while a writer grows the map to $grow_read_n" >&2
    record "$bench_conc" grow-read -n "$grow_read_n" -r "$readers"
    record "$bench_go" conc grow-read -n "$grow_read_n" -r "$readers"
done
conc_maps=$("$bench_conc" 2>&1 | sed -n 's/^maps in this build: \([^ ]*\).*/\1/p')
for map in $concmem_maps; do
    case ",$conc_maps," in
    *",$map,"*) ;;
    *) echo "== memory: $map is not in this build of bench_conc" >&2; continue ;;
    esac
    echo "== memory: $map grown to $concmem_count in a process of its own" >&2
    "$bench_maps" prefault $((concmem_count * 300 / 1048576))
    record "$bench_conc" grow "$map" "$concmem_count"
done

# The pool benchmark belongs to bench/pool; it builds itself (build/bench-pool),
# appends its `pool WORKLOAD SOURCE NS` records to the raw file and prints a
# table of its own, shown here with the progress.
# If it fails (say the pool does not build), the map figures are kept: the
# report says so in its Pool section and this script exits non-zero at the end.
echo "== pool: bench/pool/run.sh (POOL_PAIRS=$pool_pairs POOL_REPS=$pool_reps)" >&2
pool_status=0
POOL_PAIRS=$pool_pairs POOL_REPS=$pool_reps sh "$root/bench/pool/run.sh" "$raw.tmp" >&2 ||
    pool_status=$?
if [ "$pool_status" -ne 0 ]; then
    echo "FAILED: bench/pool/run.sh exited with $pool_status; the report has no pool figures" >&2
fi
mv "$raw.tmp" "$raw"
rm -f "$part"

# ---- Report ----------------------------------------------------------------

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
machine="${cpu:-unknown CPU}, $(nproc) cores, Linux $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
elapsed=$(($(date +%s) - started))

awk -v machine="$machine" -v what="$what" -v elapsed="$elapsed" -v pool_status="$pool_status" \
    -v cores="$(nproc)" -v grow_read_n="$grow_read_n" '
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
# The same for targets where more is better (throughput ratios): keeps the
# smallest.
function track_min(t, r, where) {
    if (r == "") return
    if (!(t in least) || r < least[t]) { least[t] = r; least_at[t] = where }
}
function verdict_min(t, limit, unit, absent,    s) {
    if (!(t in least)) return absent
    s = sprintf("%.2f%s (%s)", least[t], unit, least_at[t])
    return (least[t] >= limit ? "met: worst " : "**missed**: worst ") s
}
function fmtm(x) { return x == "" ? "-" : sprintf("%.2f", x) }
function max2(a, b) { return a == "" ? b : (b == "" ? a : (a > b ? a : b)) }
$1 == "op" { ns[$2, $3, $4, $5] = $6; lens[$3] = 1; sizes[$4] = 1 }
$1 == "mem" { held[$2, $3, $4] = $5 }
$1 == "grow" { grow[++ngrow] = $0; growrss[$2, $3] = $8; growp9999[$2, $3] = $6 }
# crafted KIND n INSERT_NS LOOKUP_NS B_PER_ENTRY WORST_PUT_NS FAILED DEPTH INSERTED
$1 == "crafted" { craft[$2] = $0; if (!($2 in craftseen)) { craftseen[$2] = 1; craftkinds[++ncraft] = $2 } }
# conc WORKLOAD THREADS MAP MOPS; conchit n MAP NS; concgrow ...; concmem ...
$1 == "conc" { conc[$2, $3, $4] = $5; cthreads[$3] = 1; cmaps[$4] = 1; if ($4 == "sm-cmap") havecmap = 1 }
$1 == "conchit" { chit[$3] = $4; chit_n = $2; cmaps[$3] = 1; if ($3 == "sm-cmap") havecmap = 1 }
$1 == "concgrow" { cgrow[++ncgrow] = $0; if ($2 == "sm-cmap") havecmap = 1 }
$1 == "concmem" { cmem[++ncmem] = $0 }
# bench/pool calls the Go pointer pool go-ptr; go-pointer is accepted too.
$1 == "pool" { src = $3 == "go-pointer" ? "go-ptr" : $3; pool[$2, src] = $4; havepool = 1 }
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
    print "int64_t[8] and int64_t[64] values. sm = safemap, SM_INLINE storage; sm-cheap is SM_CHECK_CHEAP (the ratios use it), sm-off is SM_CHECK_OFF. Pooled storage and int64_t[512] are in the inline-vs-pooled table below."
    print "limit = one random read of an entry-sized slot in a flat array (lookup-hit only). churn is ns per round (one delete + one insert); iterate is ns per entry visited."
    print ""
    print "| workload | N | n | sm-cheap | sm-off | boost | absl | std | go | limit | sm/boost | sm/absl | sm/go | cheap/off | sm/limit |"
    print "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for (li = 1; li <= nl; li++) for (si = 1; si <= ns_; si++) for (wi = 1; wi <= nw; wi++) {
        l = lenlist[li]; s = sizelist[si]; w = work[wi]
        if (l != 8 && l != 64) continue
        sm = ns[w, l, s, "sm-cheap"]
        if (sm == "" && ns[w, l, s, "boost"] == "") continue
        row = "| " w " | " l " | " sci(s)
        for (mi = 1; mi <= nm; mi++) row = row " | " fmt(ns[w, l, s, maps[mi]])
        rb = ratio(sm, ns[w, l, s, "boost"]); ra = ratio(sm, ns[w, l, s, "absl"])
        rg = ratio(sm, ns[w, l, s, "go"]); ro = ratio(sm, ns[w, l, s, "sm-off"])
        rl = ratio(sm, ns[w, l, s, "limit"])
        print row " | " fmtr(rb) " | " fmtr(ra) " | " fmtr(rg) " | " fmtr(ro) " | " fmtr(rl) " |"
        where = w " [" l "] n=" sci(s)
        if (w == "lookup-hit" || w == "lookup-miss" || w == "churn" || w == "iterate") { track("boost", rb, where); track("absl", ra, where) }
        if (w == "insert") track("insert", rb, where)
        track("go", rg, where)
        track("checks", ro, where)
        if (w == "lookup-hit" && l == 8 && s == 1000000) track("limit", rl, where)
    }

    print ""
    print "## Inline vs pooled storage"
    print ""
    print "Go offers two ways to hold fixed-size arrays in a map: `map[int][N]T` (values inline in the buckets: good locality, every move copies the array) and `map[int]*[N]T` with a `sync.Pool` (values never move: cheap moves, one pointer hop per read). safemap has both behind one API: sm-inline is `SM_INLINE` storage (the sm-cheap map above), sm-pooled is `SM_POOLED` storage over an `sm_pool` of the same layout (one pool per map, created empty with it), both at SM_CHECK_CHEAP. Go\047s own pair: go-value is `map[int64][N]int64` (the go map above, values copied in and out), go-pointer is `map[int64]*[N]int64` with its arrays recycled through a `sync.Pool`. Go\047s runtime itself keeps a value larger than 128 B out of line, so for N = 64 and 512 go-value is a pointer map that still copies the whole array on every read and write."
    print ""
    print "The qualities that choice trades, measured: locality is lookup-hit and iterate; the cost of copies and moves is insert (a growing inline table moves every value it splits) and churn; memory is the bytes per entry below. ns per op, lower is better; pooled/inline below 1.00x means pooled storage is faster."
    print ""
    print "| workload | N | n | sm-inline | sm-pooled | pooled/inline | go-value | go-pointer | go pointer/value |"
    print "|---|---|---|--:|--:|--:|--:|--:|--:|"
    nc1 = 0
    for (li = 1; li <= nl; li++) for (si = 1; si <= ns_; si++) for (wi = 1; wi <= nw; wi++) {
        l = lenlist[li]; s = sizelist[si]; w = work[wi]
        a = ns[w, l, s, "sm-cheap"]; b = ns[w, l, s, "sm-pooled"]
        if (a == "" || b == "") continue
        gv = ns[w, l, s, "go"]; gp = ns[w, l, s, "go-ptr"]
        print "| " w " | " l " | " sci(s) " | " fmt(a) " | " fmt(b) " | " fmtr(ratio(b, a)) " | " fmt(gv) " | " fmt(gp) " | " fmtr(ratio(gp, gv)) " |"
        nc1++
    }
    if (nc1 == 0) print "| (no sm-pooled figures in this run) | | | | | | | | |"
    print ""
    print "Memory: bytes per entry the library holds from its allocator once the n inserts are done (sm_stats_read: table segments and directory, plus the pool\047s slabs for sm-pooled), against the payload of an entry (8 B key + 8N B value)."
    print ""
    print "| N | n | payload B | sm-inline B/entry | sm-pooled B/entry | pooled/inline |"
    print "|---|---|--:|--:|--:|--:|"
    for (li = 1; li <= nl; li++) for (si = 1; si <= ns_; si++) {
        l = lenlist[li]; s = sizelist[si]
        a = held[l, s, "sm-cheap"]; b = held[l, s, "sm-pooled"]
        if (a == "" && b == "") continue
        print "| " l " | " sci(s) " | " 8 + 8 * l " | " fmt(a) " | " fmt(b) " | " fmtr(ratio(b, a)) " |"
    }
    if (growrss["sm-cheap", 8] != "" && growrss["sm-pooled", 8] != "") {
        print ""
        printf "Peak RSS growing one map to 1e7 int64_t[8] entries (grow-tail below): inline %.0f B per entry, pooled %.0f B per entry (%.2fx).\n", growrss["sm-cheap", 8], growrss["sm-pooled", 8], growrss["sm-pooled", 8] / growrss["sm-cheap", 8]
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
            grow_n = f[4]
            worst["tail"] = f[5] / 1e6; worst_at["tail"] = "n=" sci(f[4])
            worst["rss"] = f[8]; worst_at["rss"] = sprintf("n=%s, growth only %.0f B", sci(f[4]), f[9])
        }
    }
    if (growp9999["sm-cheap", 8] != "" && growp9999["boost", 8] != "") {
        worst["p9999"] = ratio(growp9999["sm-cheap", 8], growp9999["boost", 8])
        worst_at["p9999"] = "sm-cheap " dur(growp9999["sm-cheap", 8]) ", boost " dur(growp9999["boost", 8])
    }


    print ""
    print "## Crafted keys: chosen to collide, against random keys"
    print ""
    print "1e5 keys of int64_t[8] into an empty map keyed by a fixed seed (`sm_map_opts.fixed_seed`), as an attacker who knows the seed would build them from the map\047s hash and its inverse. random: the workload keys. prefix47: hashes sharing their top 47 bits (the most 1e5 distinct hashes can share; any 65,536 of them share 48), so the directory cannot tell them apart. home-group: hashes equal in bits 0..15 and 33..63, so every key has the same home group, tag and overflow bit in any segment. insert: ns per put from empty; lookup: ns per lookup of a random inserted key; worst put: each put timed alone on a second map; bytes: what the map holds (sm_map_stats) per inserted key. Each phase stops after a time budget: `inserted` below n means the keys made it too slow to finish."
    print ""
    print "| keys | n | inserted | insert ns | lookup ns | worst put | bytes/entry | global depth | failed puts | insert / random | lookup / random | bytes / random |"
    print "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    split(craft["random"], cr, " ")
    for (c = 1; c <= ncraft; c++) {
        split(craft[craftkinds[c]], f, " ")
        ri = craftkinds[c] == "random" ? "" : ratio(f[4], cr[4])
        rl = craftkinds[c] == "random" ? "" : ratio(f[5], cr[5])
        rm = craftkinds[c] == "random" ? "" : ratio(f[6], cr[6])
        printf "| %s | %s | %s | %s | %s | %s | %.0f | %d | %d | %s | %s | %s |\n", f[2], sci(f[3]), f[10], fmt(f[4]), fmt(f[5]), dur(f[7]), f[6], f[9], f[8], fmtr(ri), fmtr(rl), fmtr(rm)
        if (craftkinds[c] == "random") continue
        track("craft", ri, craftkinds[c] " insert"); track("craft", rl, craftkinds[c] " lookup")
        track("craftmem", rm, craftkinds[c])
        if (f[10] < f[3]) craft_unfinished = craft_unfinished " " craftkinds[c] " (" f[10] " of " f[3] " inserted)"
        if (f[8] > 0) craft_failed = craft_failed " " craftkinds[c] " (" f[8] " failed puts)"
    }
    if (ncraft == 0) print "| (not measured: bench_maps was built without src/segment.h) | | | | | | | | | | | |"

    print ""
    print "## Concurrent maps"
    print ""
    print "Maps shared by threads, int64_t[8] values, keys as above; a read copies the value out. sm-cmap: safemap\047s concurrent map `sm_cmap` (SM_INLINE, default check level); sm-rwlock: `sm_map` behind one `pthread_rwlock_t`; sm-map: `sm_map` alone (one thread only); boost-cfm: `boost::concurrent_flat_map` (Boost 1.83); urcu-qsbr, urcu-memb: liburcu\047s `rculfhash` with the QSBR and memb RCU flavours; go-syncmap: Go\047s `sync.Map`; go-rwmutex: a Go map behind `sync.RWMutex`. No map is presized (rculfhash starts at 4096 buckets)."
    if (!havecmap) {
        print ""
        print "**sm-cmap is absent from this run**: bench_conc was built from a tree whose `include/safemap.h` does not declare `sm_cmap_new` or has no `src/cmap.c`, so there are no figures for it and the concurrent targets below are not measured."
    }
    nct = split("sm-cmap sm-rwlock boost-cfm urcu-qsbr urcu-memb go-syncmap go-rwmutex", cm, " ")
    print ""
    printf "Lookup-hit in one thread, n = %s: ns per lookup (the lookup-hit workload of the maps table).\n", sci(chit_n)
    print ""
    print "| map | ns per lookup | / sm-map | / boost-cfm |"
    print "|---|--:|--:|--:|"
    for (i = 1; i <= nct; i++) if (cm[i] in chit) {
        print "| " cm[i] " | " fmt(chit[cm[i]]) " | " fmtr(ratio(chit[cm[i]], chit["sm-map"])) " | " fmtr(ratio(chit[cm[i]], chit["boost-cfm"])) " |"
    }
    if ("sm-map" in chit) print "| sm-map | " fmt(chit["sm-map"]) " | 1.00x | " fmtr(ratio(chit["sm-map"], chit["boost-cfm"])) " |"
    if (havecmap) {
        track("chit_map", ratio(chit["sm-cmap"], chit["sm-map"]), "n=" sci(chit_n))
        track("chit_boost", ratio(chit["sm-cmap"], chit["boost-cfm"]), "n=" sci(chit_n))
    }

    print ""
    print "Throughput in million operations per second (higher is better) on the mixes of the libcuckoo universal benchmark as conc-map-bench runs them (read/insert/remove/update %): ReadHeavy 98/1/1/0 and Exchange 10/40/40/10 from 75% of the capacity prefilled, RapidGrow 5/80/5/10 from empty. Each thread inserts its own new keys, removes its own oldest, reads and updates its own live keys. Threads beyond the machine\047s " cores " cores are marked oversubscribed. cmap/boost and cmap/urcu are sm-cmap\047s throughput over boost-cfm\047s and over the better rculfhash flavour\047s."
    ntl = 0; for (t in cthreads) tlist[++ntl] = t + 0
    for (i = 2; i <= ntl; i++) for (j = i; j > 1 && tlist[j] < tlist[j-1]; j--) { x = tlist[j]; tlist[j] = tlist[j-1]; tlist[j-1] = x }
    nmix = split("ReadHeavy Exchange RapidGrow", mixes, " ")
    for (k = 1; k <= nmix; k++) {
        w = mixes[k]
        print ""
        print "| " w ", threads | sm-cmap | sm-rwlock | boost-cfm | urcu-qsbr | urcu-memb | go-syncmap | go-rwmutex | cmap/boost | cmap/urcu |"
        print "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        for (i = 1; i <= ntl; i++) {
            t = tlist[i]
            row = "| " t (t > cores ? " (oversubscribed)" : "")
            for (j = 1; j <= nct; j++) row = row " | " fmtm(conc[w, t, cm[j]])
            rb = ratio(conc[w, t, "sm-cmap"], conc[w, t, "boost-cfm"])
            ru = ratio(conc[w, t, "sm-cmap"], max2(conc[w, t, "urcu-qsbr"], conc[w, t, "urcu-memb"]))
            print row " | " fmtr(rb) " | " fmtr(ru) " |"
            if (t <= 2) { track_min("mix_boost", rb, w " " t " thread" (t > 1 ? "s" : "")); track_min("mix_urcu", ru, w " " t " thread" (t > 1 ? "s" : "")) }
        }
    }

    print ""
    print "A writer grows an empty map to n entries while reader threads look up keys it has already inserted, each lookup timed alone (clock_gettime, ~25 ns of it the clock). A miss of a key already inserted is counted (it must be 0). With one reader, writer and reader use the machine\047s two cores; more readers are oversubscribed, and the scheduler\047s time slices then show in the worst case."
    print ""
    print "\"worst, not switched out\" is the worst lookup during which the kernel did not preempt the reader thread (its involuntary context switches, read with getrusage every 16 lookups and after any lookup over 50 us, did not change; a reader that yields while it waits for a writer inside its segment is not excused); \"switched\" counts the lookups over 50 us during which it was preempted. The target is judged on the former: a thread the kernel preempted is not one the map blocked."
    print ""
    print "| map | n | readers | reader | p99.99 | worst | worst, not switched out | switched | lookups | misses | writer s |"
    print "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for (g = 1; g <= ncgrow; g++) {
        split(cgrow[g], f, " ")
        quiet = f[10] == "" ? f[6] : f[10]
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", f[2], sci(grow_read_n), f[3] (f[3] + 1 > cores ? " (oversubscribed)" : ""), f[4], dur(f[5]), dur(f[6]), dur(quiet), (f[11] == "" ? "-" : f[11]), f[7], f[8], f[9]
        if (f[2] == "sm-cmap" && f[3] + 1 <= cores) track("cgrow", quiet / 1e6, "reader " f[4] " of " f[3] ", not switched out; worst of all " dur(f[6]))
        if (f[2] == "sm-cmap" && f[8] > 0) cgrow_miss += f[8]
    }
    if (ncmem > 0) {
        print ""
        print "Memory: one map grown from one thread to n entries of int64_t[8], in a process of its own; peak RSS (getrusage) per entry, and growth RSS without what the process held before."
        print ""
        print "| map | n | peak RSS B/entry | growth RSS B/entry | total s |"
        print "|---|--:|--:|--:|--:|"
        for (g = 1; g <= ncmem; g++) {
            split(cmem[g], f, " ")
            printf "| %s | %s | %.0f | %.0f | %s |\n", f[2], sci(f[3]), f[4], f[5], f[6]
            if (f[2] == "sm-cmap") { worst["cmem"] = f[4]; worst_at["cmem"] = "n=" sci(f[3]); cmem_n = f[3] }
        }
    }

    print ""
    print "## Pool: ns per Get+Put pair, one 128 B array (int64_t[16])"
    print ""
    print "From bench/pool/run.sh, which this script calls. pair: Get then Put of one array, in a loop (LIFO); ring: 1024 arrays held, each step Puts the oldest back and Gets a new one; two threads: one thread Gets and hands each array over a single-producer ring to another thread, which Puts it. sm-* is safemap\047s pool at SM_CHECK_CHEAP, OFF and FULL; glibc, jemalloc, mimalloc and tcmalloc are a malloc+free pair of 128 B in an executable linked with that allocator; go-pointer is a `sync.Pool` of `*[16]int64`, go-value a `sync.Pool` of `[16]int64` by value (boxed on every Put, as Go code that pools arrays by value does). `/ tcmalloc` is the ratio to tcmalloc on the same workload. \"-\": not measured (an allocator whose library is missing is not built: `sh scripts/deps.sh bench`)."
    print ""
    print "Each figure is the fastest of several short runs. The two-thread figures spin two threads on this machine\047s two cores, so whatever else runs preempts one of them: they swing by several times between runs; read them as orders of magnitude."
    print ""
    print "| source | pair | ring of 1024 | two threads | pair / tcmalloc | ring / tcmalloc | two threads / tcmalloc |"
    print "|---|--:|--:|--:|--:|--:|--:|"
    np = split("sm-cheap sm-off sm-full glibc jemalloc mimalloc tcmalloc go-ptr go-value", psrc, " ")
    split("pair ring1024 xthread", pw, " "); split("pair|ring|two threads", pwname, "|")
    for (i = 1; i <= np; i++) {
        p = psrc[i]
        row = "| " (p == "go-ptr" ? "go-pointer" : p)
        for (k = 1; k <= 3; k++) row = row " | " fmt(pool[pw[k], p])
        for (k = 1; k <= 3; k++) row = row " | " fmtr(ratio(pool[pw[k], p], pool[pw[k], "tcmalloc"]))
        print row " |"
    }
    fullc = ""; cheapoff = ""
    for (k = 1; k <= 3; k++) {
        fullc = fullc (k > 1 ? ", " : "") pwname[k] " " fmtr(ratio(pool[pw[k], "sm-full"], pool[pw[k], "sm-cheap"]))
        cheapoff = cheapoff (k > 1 ? ", " : "") pwname[k] " " fmtr(ratio(pool[pw[k], "sm-cheap"], pool[pw[k], "sm-off"]))
    }
    print ""
    print "Cost of SM_CHECK_FULL (poison on Put, verified on leaving a FIFO quarantine; Get/Put call sites recorded), full/cheap: " fullc ". Cost of SM_CHECK_CHEAP, cheap/off: " cheapoff "."
    if (pool_status != 0) { print ""; print "**bench/pool/run.sh failed (exit " pool_status "): its output above the report says why.**" }
    else if (!havepool) { print ""; print "(No pool records in this run.)" }

    pt = ratio(pool["pair", "sm-cheap"], pool["pair", "tcmalloc"])
    if (pt != "")
        pooltarget = sprintf("%s%.2fx (pair: sm-cheap %s ns, tcmalloc %s ns; ring %s)", (pt <= 0.6 ? "met: " : "**missed**: "), pt, fmt(pool["pair", "sm-cheap"]), fmt(pool["pair", "tcmalloc"]), fmtr(ratio(pool["ring1024", "sm-cheap"], pool["ring1024", "tcmalloc"])))
    else if (pool["pair", "sm-cheap"] != "")
        pooltarget = "not measured (no tcmalloc: `sh scripts/deps.sh bench` installs libgoogle-perftools-dev)"
    else
        pooltarget = "not measured"
    pf = ratio(pool["pair", "sm-full"], pool["pair", "sm-cheap"])
    fulltarget = pf == "" ? "not measured" : sprintf("reported, no target: %.1fx cheap on the pair (%s ns vs %s ns); ring %s", pf, fmt(pool["pair", "sm-full"]), fmt(pool["pair", "sm-cheap"]), fmtr(ratio(pool["ring1024", "sm-full"], pool["ring1024", "sm-cheap"])))

    print ""
    print "## Targets: the map, safemap at SM_CHECK_CHEAP"
    print ""
    print "Each target with its worst case over every n of this run and both value sizes (int64_t[8] and [64], inline storage: the maps table); ratios are of figures measured side by side in this run. \"missed\" is in bold."
    print ""
    print "| target | result |"
    print "|---|---|"
    print "| lookup-hit, lookup-miss, churn, iterate at most 1.0x boost | " verdict("boost", 1.0, "x") " |"
    print "| lookup-hit, lookup-miss, churn, iterate at most 1.0x absl | " verdict("absl", 1.0, "x") " |"
    print "| insert from empty at most 0.6x boost | " verdict("insert", 0.6, "x") " |"
    print "| lookup-hit at n=1e6, int64_t[8]: at most 1.5x the limit | " verdict("limit", 1.5, "x") " |"
    print "| at most 0.5x Go on every workload | " verdict("go", 0.5, "x") " |"
    print "| growth to " sci(grow_n) ": worst single insert at most 1 ms | " verdict("tail", 1.0, " ms") " |"
    print "| growth to " sci(grow_n) ": p99.99 at most boost\047s p99.99 | " verdict("p9999", 1.0, "x") " |"
    print "| growth to " sci(grow_n) ": peak RSS at most 100 B per int64_t[8] entry | " verdict("rss", 100, " B") " |"
    print "| SM_CHECK_CHEAP at most 1.05x SM_CHECK_OFF on every workload | " verdict("checks", 1.05, "x") " |"
    if (ncraft == 0)
        crafttarget = "not measured"
    else {
        crafttarget = verdict("craft", 2.0, "x")
        if (craft_unfinished != "" || craft_failed != "") {
            sub(/^(met|\*\*missed\*\*): worst /, "", crafttarget)
            crafttarget = "**missed**:" (craft_unfinished != "" ? " stopped at the time budget:" craft_unfinished ";" : "") (craft_failed != "" ? craft_failed ";" : "") " worst of what ran " crafttarget
        }
    }
    print "| 1e5 crafted colliding keys at most 2x random keys (insert and lookup) | " crafttarget " |"
    print "| ... and memory O(n): bytes per entry at most 2x random keys\047 | " (ncraft == 0 ? "not measured" : verdict("craftmem", 2.0, "x")) " |"
    print "| pool Get+Put at most 0.6x tcmalloc | " pooltarget " |"
    print "| cost of SM_CHECK_FULL (pool) | " fulltarget " |"

    absent = havecmap ? "not measured" : "not measured: sm_cmap absent from this run"
    print ""
    print "## Targets: the concurrent map (sm_cmap), 1 and 2 threads"
    print ""
    print "| target | result |"
    print "|---|---|"
    print "| single-thread lookup-hit, int64_t[8], n=1e6: at most 1.25x sm_map | " (havecmap ? verdict("chit_map", 1.25, "x") : absent) " |"
    print "| ... and at most 0.5x boost concurrent_flat_map | " (havecmap ? verdict("chit_boost", 0.5, "x") : absent) " |"
    print "| ReadHeavy, Exchange, RapidGrow throughput at least 1.5x boost concurrent_flat_map | " verdict_min("mix_boost", 1.5, "x", absent) " |"
    print "| ... and at least 2x rculfhash (the better flavour) | " verdict_min("mix_urcu", 2.0, "x", absent) " |"
    cg = havecmap ? verdict("cgrow", 1.0, " ms") : absent
    if (cgrow_miss > 0) cg = "**missed**: " cgrow_miss " lookups of inserted keys missed; " cg
    print "| reader worst lookup (not switched out) while a writer grows to " sci(grow_read_n) ": at most 1 ms | " cg " |"
    print "| memory per entry, int64_t[8], grown to " (cmem_n == "" ? "1e7" : sci(cmem_n)) ": at most 110 B | " (("cmem" in worst) ? verdict("cmem", 110, " B") : absent) " |"
    print ""
    print "Raw records: raw.txt beside this report. Chart: bench.svg (int64_t[8], n=1e6)."
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
# No chart when the run has no n = 1e6 figures (smoke).
if ! awk 'NR > 1 { for (i = 2; i <= NF; i++) if ($i != "-") found = 1 } END { exit !found }' "$results/chart.tmp"; then
    echo "no int64_t[8], n = 1e6 figures: no chart" >&2
elif command -v gnuplot >/dev/null 2>&1; then
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
exit "$pool_status"
