/*
 * bench_maps.cpp - safemap against its C++ peers, on the workloads of
 * bench/README.md ("The workloads").
 *
 * Every map is driven through one small adapter (put, find, del, each), and
 * every workload is one function template over that adapter, so that all
 * maps run exactly the same loop: the same keys, the same values, the same
 * read of v[0] + v[N-1] into a sink.  The peers are
 *
 *   sm-cheap  safemap, SM_INLINE storage, SM_CHECK_CHEAP (the default level)
 *   sm-off    safemap, SM_INLINE storage, SM_CHECK_OFF (the cost of checks)
 *   sm-pooled safemap, SM_POOLED storage, SM_CHECK_CHEAP: the table holds a
 *             pointer to an array from an sm_pool of the same layout (one
 *             pool per map, created and freed with it); the inline-vs-pooled
 *             table of the report compares it with sm-cheap
 *   boost     boost::unordered_flat_map<int64_t, std::array<int64_t, N>>
 *   absl      absl::flat_hash_map<same>
 *   std       std::unordered_map<same>
 *   limit     not a map: one random read of an entry-sized slot (72 B at
 *             N = 8) in a flat array; lookup-hit only (the bound a
 *             lookup-hit target is set against)
 *
 * Three modes:
 *
 *   bench_maps run [-n 10000,1000000] [-l 8,64,512] [-o OPS] [-r REPS] [-m MAPS]
 *                  [-p MIB]
 *       For each value length N (-l: 8, 64 or 512), size n (-n) and map (-m,
 *       comma list): insert, lookup-hit, lookup-miss, iterate, churn, and
 *       for safemap the bytes the library holds per entry once insert is
 *       done (sm_stats_read: the map's table and, for sm-pooled, its pool's
 *       slabs).  OPS (default 4M)
 *       is the count of lookups and churn rounds; REPS (default 1) repeats
 *       everything on fresh maps, going round all the maps each time, and
 *       keeps the fastest figure.
 *
 *   bench_maps grow MAP N [COUNT]
 *       Grows one map to COUNT (default 1e7) entries, no reserve, timing
 *       every single insert; reports the worst and p99.99 latency and the
 *       peak RSS per entry.  Run one process per map so that the peak RSS
 *       is that map's alone.
 *
 *   bench_maps prefault MIB
 *       Touches MIB of fresh memory and exits (see "Memory" below); run.sh
 *       runs it just before each grow process, so that the grow process's
 *       own peak RSS stays clean.
 *
 * Output is one line per figure, whitespace separated, which run.sh merges
 * with the Go peer's identical lines:
 *
 *   op WORKLOAD N n MAP NS_PER_OP
 *   mem N n MAP HELD_B_PER_ENTRY
 *   grow MAP N COUNT WORST_NS P9999_NS P99_NS PEAK_RSS_B_PER_ENTRY
 *        GROWTH_RSS_B_PER_ENTRY TOTAL_S
 *
 * Memory.  "Insert from empty" and grow-tail on this machine kind (a VM) are
 * dominated by page faults, whose cost depends on history: a page the host
 * has never backed costs ~10 us on first touch, one it has backed ~1.5 us,
 * and the host reclaims free guest pages a few seconds after they are
 * freed.  So that every map is measured alike, each starts the same way:
 * after a map is freed, malloc_trim(0) gives the heap's free pages back to
 * the kernel (no map inherits pages another map touched), and before each
 * map, prefault() touches and unmaps about its peak footprint (capped by -p,
 * default 4096 MiB), so the map's own first touches find host-backed pages
 * and pay only the guest's fault cost.  -p 0 measures whatever state the
 * machine is in.
 */
#include <safemap.h>

#include "bench_common.hpp"
#ifdef SM_BENCH_HAVE_SEGMENT_H
#include "crafted.h"
#endif

#include <absl/container/flat_hash_map.h>
#include <boost/unordered/unordered_flat_map.hpp>

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

/* ---- Memory ------------------------------------------------------------ */

/* Gives freed heap pages back to the kernel, so that no map inherits pages
 * another map touched. */
static void release_memory()
{
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

/* Upper bound, in MiB, on what prefault() touches (-p; 0 turns it off). */
static uint64_t g_prefault_cap_mib = 4096;

/* Touches `bytes` of fresh anonymous memory and unmaps it again, capped by -p and by
 * half the free memory.  On this machine kind (a VM) a page the host has not
 * backed yet costs ~10 us on first touch, one it has backed ~1.5 us, and the
 * host takes free pages back a few seconds after they are freed.  Without
 * this, the first map after a pause pays several times what the next one
 * does.  With it, every map starts from host-backed memory and still pays
 * the guest kernel's own page faults. */
static void prefault(uint64_t bytes)
{
    uint64_t free_bytes = (uint64_t)sysconf(_SC_AVPHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    bytes = std::min({bytes, g_prefault_cap_mib << 20, free_bytes / 2});
    if (bytes == 0)
        return;
    void *region = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED)
        return;
    for (uint64_t off = 0; off < bytes; off += 4096)
        static_cast<volatile char *>(region)[off] = 1;
    munmap(region, bytes);
}

/* What one map of n entries of int64_t[N] may need at its peak: a flat
 * table in the middle of a rehash holds about three times the payload. */
static uint64_t peak_estimate(size_t len, uint64_t n)
{
    return 3 * n * (8 * len + 16);
}

/* Written once per workload so that no read can be optimised away. */
static volatile uint64_t g_sink;

[[noreturn]] static void die(const char *what, int code)
{
    fprintf(stderr, "bench_maps: %s: %s\n", what, sm_strerror(code));
    exit(1);
}

/* ---- Adapters: one interface over every map ----------------------------- */

template <size_t N> using Row = std::array<int64_t, N>;

/* boost, absl and std share the standard interface. */
template <class Table, size_t N> class TableMap
{
    Table table_;

  public:
    void put(int64_t k, const Row<N> &v)
    {
        table_.insert_or_assign(k, v);
    }
    const int64_t *find(int64_t k)
    {
        auto it = table_.find(k);
        return it == table_.end() ? nullptr : it->second.data();
    }
    void del(int64_t k)
    {
        table_.erase(k);
    }
    template <class F> void each(F visit)
    {
        for (auto &entry : table_)
            visit(entry.second.data());
    }
};

template <size_t N> using BoostMap = TableMap<boost::unordered_flat_map<int64_t, Row<N>>, N>;
template <size_t N> using AbslMap = TableMap<absl::flat_hash_map<int64_t, Row<N>>, N>;
template <size_t N> using StdMap = TableMap<std::unordered_map<int64_t, Row<N>>, N>;

/* safemap at a fixed check level, with inline storage or with pooled
 * storage; a pooled map owns a pool of its layout at the same check level,
 * created with it and freed after it, so that every map starts from an
 * empty pool (as every map starts from an empty table). */
template <size_t N, int Check, int Storage = SM_INLINE> class SafeMap
{
    sm_pool *pool_ = nullptr;
    sm_map *map_ = nullptr;

  public:
    SafeMap()
    {
        if (Storage == SM_POOLED) {
            sm_pool_opts po{};
            po.layout = SM_LAYOUT(int64_t, N);
            po.check = Check;
            int rc = sm_pool_new(&pool_, &po);
            if (rc != 0)
                die("sm_pool_new", rc);
        }
        sm_map_opts o{};
        o.layout = SM_LAYOUT(int64_t, N);
        o.storage = Storage;
        o.pool = pool_;
        o.check = Check;
        int rc = sm_map_new(&map_, &o);
        if (rc != 0)
            die("sm_map_new", rc);
    }
    ~SafeMap()
    {
        sm_map_free(map_);
        sm_pool_free(pool_);
    }
    /* What the library holds from the allocator: this map's table and its
     * pool's slabs (the benchmark has one safemap object pair at a time). */
    static size_t held_bytes()
    {
        sm_stats st;
        sm_stats_read(&st);
        return st.bytes_held;
    }
    SafeMap(const SafeMap &) = delete;
    SafeMap &operator=(const SafeMap &) = delete;

    void put(int64_t k, const Row<N> &v)
    {
        int rc = sm_map_put(map_, k, v.data());
        if (rc != 0)
            die("sm_map_put", rc);
    }
    const int64_t *find(int64_t k)
    {
        return static_cast<const int64_t *>(sm_map_find(map_, k));
    }
    void del(int64_t k)
    {
        int rc = sm_map_del(map_, k);
        if (rc != 0)
            die("sm_map_del", rc);
    }
    /* sm_map_each, the map's whole-map walk (an sm_iter loop costs a call
     * and the checks per entry). */
    template <class F> void each(F visit)
    {
        int rc = sm_map_each(
            map_,
            [](int64_t, void *value, void *ctx) {
                (*static_cast<F *>(ctx))(static_cast<const int64_t *>(value));
                return 0;
            },
            &visit);
        if (rc < 0)
            die("sm_map_each", rc);
    }
};

/* ---- Workloads ---------------------------------------------------------- */

/* The figures of one map at one (N, n), in ns per operation. */
struct Figures {
    double insert, hit, miss, iterate, churn;
    double held; /* bytes held per entry after insert (safemap only), else NaN */
};

/* Bytes the library holds now, for maps that can say (safemap), as a
 * counter: the figure per entry is the difference across one map's life,
 * taken modulo 2^64, so it is the map's own whatever else the process did
 * before. */
template <class Map> static auto held_now(int) -> decltype(Map::held_bytes(), uint64_t())
{
    return (uint64_t)Map::held_bytes();
}
template <class Map> static uint64_t held_now(long)
{
    return 0;
}
template <class Map>
static auto held_per_entry(Map &, uint64_t n, uint64_t base, int)
    -> decltype(Map::held_bytes(), double())
{
    return (double)((uint64_t)Map::held_bytes() - base) / (double)n;
}
template <class Map> static double held_per_entry(Map &, uint64_t, uint64_t, long)
{
    return NAN;
}

/* insert: n puts into an empty map, no reserve, v[0] = i. */
template <class Map, size_t N> static double time_insert(Map &m, uint64_t n)
{
    Row<N> v{};
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        v[0] = (int64_t)i;
        m.put(key(i), v);
    }
    return (double)(now_ns() - t0) / (double)n;
}

/* lookup-hit: key(r % n), r walking a splitmix chain from 12345. */
template <class Map, size_t N> static double time_lookup_hit(Map &m, uint64_t n, uint64_t ops)
{
    uint64_t r = 12345, sink = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < ops; i++) {
        r = splitmix64(r);
        const int64_t *v = m.find(key(r % n));
        if (v)
            sink += (uint64_t)v[0] + (uint64_t)v[N - 1];
    }
    double ns = (double)(now_ns() - t0) / (double)ops;
    g_sink = sink;
    return ns;
}

/* lookup-miss: key(n + i), none of which is in the map. */
template <class Map> static double time_lookup_miss(Map &m, uint64_t n, uint64_t ops)
{
    uint64_t sink = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < ops; i++)
        sink += m.find(key(n + i)) != nullptr;
    double ns = (double)(now_ns() - t0) / (double)ops;
    g_sink = sink;
    return ns;
}

/* The number of full passes iterate makes: one at n >= 1e6, more below so
 * that a pass over a small map is not a single timer tick.  bench/go uses
 * the same rule. */
static uint64_t iterate_passes(uint64_t n)
{
    return n >= 1000000 ? 1 : 1000000 / n;
}

/* iterate: full passes summing v[0]; ns per entry visited. */
template <class Map> static double time_iterate(Map &m, uint64_t n)
{
    uint64_t passes = iterate_passes(n), sink = 0;
    uint64_t t0 = now_ns();
    for (uint64_t p = 0; p < passes; p++)
        m.each([&sink](const int64_t *v) { sink += (uint64_t)v[0]; });
    double ns = (double)(now_ns() - t0) / (double)(passes * n);
    g_sink = sink;
    return ns;
}

/* churn: rounds of delete key(i), insert key(n + i); ns per round.  The map
 * holds key(i .. i+n-1) before round i, so its size stays n. */
template <class Map, size_t N> static double time_churn(Map &m, uint64_t n, uint64_t ops)
{
    Row<N> v{};
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < ops; i++) {
        m.del(key(i));
        v[0] = (int64_t)(n + i);
        m.put(key(n + i), v);
    }
    return (double)(now_ns() - t0) / (double)ops;
}

/* One map, one (N, n): insert builds the map the other workloads then read;
 * churn runs last because it changes the contents.  Small n repeats the
 * insert on fresh maps so that it is timed over at least 1e5 puts. */
template <class Map, size_t N> static Figures run_once(uint64_t n, uint64_t ops)
{
    Figures f{};
    prefault(peak_estimate(N, n));
    f.held = NAN;
    uint64_t rounds = n >= 100000 ? 1 : 100000 / n;
    for (uint64_t k = 1; k < rounds; k++) {
        {
            Map scratch;
            f.insert += time_insert<Map, N>(scratch, n);
        }
        release_memory();
    }
    {
        uint64_t base = held_now<Map>(0);
        Map m;
        f.insert = (f.insert + time_insert<Map, N>(m, n)) / (double)rounds;
        f.held = held_per_entry(m, n, base, 0);
        f.hit = time_lookup_hit<Map, N>(m, n, ops);
        f.miss = time_lookup_miss(m, n, ops);
        f.iterate = time_iterate(m, n);
        f.churn = time_churn<Map, N>(m, n, ops);
    }
    release_memory();
    return f;
}

/* The limit: the same key arithmetic and one random read of a slot as big
 * as a map entry (key + value) in a flat array; no hashing, no probing.
 * Only lookup-hit is measured; the other figures are NaN. */
template <size_t N> static Figures run_limit(uint64_t n, uint64_t ops)
{
    struct Slot {
        int64_t key;
        int64_t value[N];
    };
    Figures f = {NAN, NAN, NAN, NAN, NAN, NAN};
    {
        std::vector<Slot> slots(n);
        for (uint64_t i = 0; i < n; i++) {
            slots[i].key = key(i);
            slots[i].value[0] = (int64_t)i;
        }
        uint64_t r = 12345, sink = 0;
        uint64_t t0 = now_ns();
        for (uint64_t i = 0; i < ops; i++) {
            r = splitmix64(r);
            uint64_t k = (uint64_t)key(r % n); /* < 2^63, so k * n >> 63 < n */
            const Slot &s = slots[(size_t)(((unsigned __int128)k * n) >> 63)];
            sink += (uint64_t)s.value[0] + (uint64_t)s.value[N - 1];
        }
        f.hit = (double)(now_ns() - t0) / (double)ops;
        g_sink = sink;
    }
    release_memory();
    return f;
}

static void print_op(const char *workload, size_t len, uint64_t n, const char *map, double ns)
{
    if (!std::isnan(ns))
        printf("op %s %zu %" PRIu64 " %s %.2f\n", workload, len, n, map, ns);
}

/* A map under test: its name and its run_once. */
struct Contender {
    const char *name;
    Figures (*run)(uint64_t n, uint64_t ops);
    Figures best;
};

/* Runs every wanted map at one (N, n).  Repetitions go round all the maps
 * in turn, so that a burst of noise from a neighbour on this shared machine
 * spoils one figure of several maps rather than every figure of one; each
 * figure is the fastest of its repetitions. */
template <size_t N>
static void bench_all(const std::vector<std::string> &wanted, uint64_t n, uint64_t ops, int reps)
{
    Contender all[] = {
        {"sm-cheap", run_once<SafeMap<N, SM_CHECK_CHEAP>, N>, {}},
        {"sm-off", run_once<SafeMap<N, SM_CHECK_OFF>, N>, {}},
        {"sm-pooled", run_once<SafeMap<N, SM_CHECK_CHEAP, SM_POOLED>, N>, {}},
        {"boost", run_once<BoostMap<N>, N>, {}},
        {"absl", run_once<AbslMap<N>, N>, {}},
        {"std", run_once<StdMap<N>, N>, {}},
        {"limit", run_limit<N>, {}},
    };
    std::vector<Contender *> maps;
    for (Contender &c : all)
        if (std::find(wanted.begin(), wanted.end(), c.name) != wanted.end())
            maps.push_back(&c);
    for (int r = 0; r < reps; r++) {
        for (Contender *c : maps) {
            Figures f = c->run(n, ops);
            Figures &b = c->best;
            b = r == 0 ? f : Figures{std::min(b.insert, f.insert), std::min(b.hit, f.hit),
                                     std::min(b.miss, f.miss),     std::min(b.iterate, f.iterate),
                                     std::min(b.churn, f.churn),   f.held};
        }
    }
    for (Contender *c : maps) {
        print_op("insert", N, n, c->name, c->best.insert);
        print_op("lookup-hit", N, n, c->name, c->best.hit);
        print_op("lookup-miss", N, n, c->name, c->best.miss);
        print_op("iterate", N, n, c->name, c->best.iterate);
        print_op("churn", N, n, c->name, c->best.churn);
        if (!std::isnan(c->best.held))
            printf("mem %zu %" PRIu64 " %s %.1f\n", N, n, c->name, c->best.held);
    }
    fflush(stdout);
}

/* ---- grow-tail ---------------------------------------------------------- */

template <class Map, size_t N> static void grow(const char *name, uint64_t count)
{
    LatencyLog log;
    size_t base_rss = current_rss_bytes();
    uint64_t t_start = now_ns();
    {
        Map m;
        Row<N> v{};
        for (uint64_t i = 0; i < count; i++) {
            v[0] = (int64_t)i;
            int64_t k = key(i);
            uint64_t t0 = now_ns();
            m.put(k, v);
            log.add(now_ns() - t0);
        }
        double total_s = (double)(now_ns() - t_start) * 1e-9;
        size_t peak = peak_rss_bytes();
        printf("grow %s %zu %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %.1f %.1f %.2f\n", name,
               N, count, log.worst(), log.quantile(0.9999), log.quantile(0.99),
               (double)peak / (double)count, (double)(peak - base_rss) / (double)count, total_s);
    }
}

template <size_t N> static int grow_map(const char *name, uint64_t count)
{
    std::string m = name;
    if (m == "sm-cheap")
        grow<SafeMap<N, SM_CHECK_CHEAP>, N>(name, count);
    else if (m == "sm-off")
        grow<SafeMap<N, SM_CHECK_OFF>, N>(name, count);
    else if (m == "sm-pooled")
        grow<SafeMap<N, SM_CHECK_CHEAP, SM_POOLED>, N>(name, count);
    else if (m == "boost")
        grow<BoostMap<N>, N>(name, count);
    else if (m == "absl")
        grow<AbslMap<N>, N>(name, count);
    else if (m == "std")
        grow<StdMap<N>, N>(name, count);
    else
        return 2;
    return 0;
}

/* ---- crafted keys ------------------------------------------------------- */

#ifdef SM_BENCH_HAVE_SEGMENT_H
/* The seed every crafted-keys map is keyed with (sm_map_opts.fixed_seed). */
static const uint64_t kCraftSeed = 0x243F6A8885A308D3ull;

/* The figures of one key set: insert from empty and lookups timed in bulk;
 * the worst single put from a second map, each put timed alone.  Each of
 * the three phases stops early when it has run for the time budget (keys
 * that defeat the map can make single operations cost milliseconds):
 * `inserted` says how many of the keys made it in, and the averages are
 * over what was done. */
struct CraftFigures {
    double insert_ns, lookup_ns, bytes_per_entry;
    uint64_t worst_put_ns, failed_puts, inserted;
    unsigned global_depth;
};

static sm_map *craft_map()
{
    sm_map_opts o{};
    o.layout = SM_LAYOUT(int64_t, 8);
    o.storage = SM_INLINE;
    o.check = SM_CHECK_DEFAULT;
    o.fixed_seed = 1;
    o.seed = kCraftSeed;
    sm_map *m = nullptr;
    int rc = sm_map_new(&m, &o);
    if (rc != 0)
        die("sm_map_new", rc);
    return m;
}

/* True once `start` is more than budget_ns ago; looks at the clock only
 * every 256th call (i). */
static bool over_budget(uint64_t i, uint64_t start, uint64_t budget_ns)
{
    return (i & 255) == 255 && now_ns() - start > budget_ns;
}

static CraftFigures craft_once(const std::vector<int64_t> &keys, uint64_t ops, uint64_t budget_ns)
{
    CraftFigures f{};
    uint64_t n = keys.size(), i;
    Row<8> v{};
    sm_map *m = craft_map();
    uint64_t t0 = now_ns();
    for (i = 0; i < n && !over_budget(i, t0, budget_ns); i++) {
        v[0] = (int64_t)i;
        f.failed_puts += sm_map_put(m, keys[i], v.data()) != 0;
    }
    f.inserted = i;
    f.insert_ns = (double)(now_ns() - t0) / (double)i;
    uint64_t r = 12345, sink = 0;
    t0 = now_ns();
    for (i = 0; i < ops && !over_budget(i, t0, budget_ns); i++) {
        r = splitmix64(r);
        const int64_t *p = static_cast<const int64_t *>(sm_map_find(m, keys[r % f.inserted]));
        if (p)
            sink += (uint64_t)p[0] + (uint64_t)p[7];
    }
    f.lookup_ns = (double)(now_ns() - t0) / (double)i;
    g_sink = sink;
    struct sm_map_stats st;
    sm_map_stats(m, &st);
    f.bytes_per_entry = (double)st.bytes / (double)f.inserted;
    f.global_depth = st.global_depth;
    sm_map_free(m);

    m = craft_map();
    uint64_t start = now_ns();
    for (i = 0; i < f.inserted && !over_budget(i, start, budget_ns); i++) {
        v[0] = (int64_t)i;
        t0 = now_ns();
        int rc = sm_map_put(m, keys[i], v.data());
        f.worst_put_ns = std::max(f.worst_put_ns, now_ns() - t0);
        (void)rc; /* failures are counted in the first pass */
    }
    sm_map_free(m);
    release_memory();
    return f;
}

/* Random keys, then each crafted kind, n keys each, all on maps keyed by
 * kCraftSeed; the fastest of reps runs of each figure. */
static int crafted_mode(uint64_t n, uint64_t ops, int reps, double budget_s)
{
    struct Set {
        const char *name;
        int kind; /* 0: random, key(i) */
    } sets[] = {{"random", 0}, {"prefix47", CRAFT_PREFIX}, {"home-group", CRAFT_HOME}};
    printf("# bench_maps crafted: n=%" PRIu64 " lookups=%" PRIu64 " reps=%d seed=0x%" PRIx64
           " budget=%.1fs per phase\n",
           n, ops, reps, kCraftSeed, budget_s);
    for (const Set &set : sets) {
        std::vector<int64_t> keys(n);
        if (set.kind == 0) {
            for (uint64_t i = 0; i < n; i++)
                keys[i] = key(i);
        } else if (bench_crafted_keys(set.kind, kCraftSeed, n, keys.data()) != 0) {
            fprintf(stderr, "bench_maps: no %" PRIu64 " keys of kind %s\n", n, set.name);
            return 2;
        }
        CraftFigures best{};
        for (int r = 0; r < reps; r++) {
            CraftFigures f = craft_once(keys, ops, (uint64_t)(budget_s * 1e9));
            if (r == 0) {
                best = f;
                continue;
            }
            best.insert_ns = std::min(best.insert_ns, f.insert_ns);
            best.lookup_ns = std::min(best.lookup_ns, f.lookup_ns);
            best.worst_put_ns = std::min(best.worst_put_ns, f.worst_put_ns);
        }
        printf("crafted %s %" PRIu64 " %.2f %.2f %.1f %" PRIu64 " %" PRIu64 " %u %" PRIu64 "\n",
               set.name, n, best.insert_ns, best.lookup_ns, best.bytes_per_entry, best.worst_put_ns,
               best.failed_puts, best.global_depth, best.inserted);
        fflush(stdout);
    }
    return 0;
}
#endif

/* ---- Command line ------------------------------------------------------- */

static int usage()
{
    fprintf(stderr,
            "usage: bench_maps run [-n 10000,1000000] [-l 8,64,512] [-o OPS] [-r REPS]\n"
            "                      [-m sm-cheap,sm-off,sm-pooled,boost,absl,std,limit]\n"
            "                      [-p MIB]\n"
            "       bench_maps grow sm-cheap|sm-off|sm-pooled|boost|absl|std 8|64|512\n"
            "                       [COUNT]\n"
            "       bench_maps prefault MIB\n"
            "       bench_maps crafted [COUNT [LOOKUPS [REPS [BUDGET_S]]]]   (1e5 1e6 1 3)\n");
    return 2;
}

static int run_mode(int argc, char **argv)
{
    std::vector<std::string> sizes = {"10000", "1000000"}, lens = {"8", "64"};
    std::vector<std::string> maps = split("sm-cheap,sm-off,sm-pooled,boost,absl,std,limit");
    uint64_t ops = 4000000;
    int reps = 1;
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string flag = argv[i], value = argv[i + 1];
        if (flag == "-n")
            sizes = split(value);
        else if (flag == "-l")
            lens = split(value);
        else if (flag == "-o")
            ops = parse_count(value);
        else if (flag == "-r")
            reps = std::max(1, atoi(value.c_str()));
        else if (flag == "-m")
            maps = split(value);
        else if (flag == "-p")
            g_prefault_cap_mib = parse_count(value);
        else
            return usage();
    }
    if (argc % 2 != 0 || ops == 0)
        return usage();
    printf("# bench_maps run: ops=%" PRIu64 " reps=%d (fastest of reps) prefault-cap=%" PRIu64
           "MiB\n",
           ops, reps, g_prefault_cap_mib);
    for (const std::string &len : lens) {
        for (const std::string &size : sizes) {
            uint64_t n = parse_count(size);
            if (n == 0)
                return usage();
            if (len == "8")
                bench_all<8>(maps, n, ops, reps);
            else if (len == "64")
                bench_all<64>(maps, n, ops, reps);
            else if (len == "512")
                bench_all<512>(maps, n, ops, reps);
            else
                return usage();
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return run_mode(argc, argv);
    if (argc == 3 && strcmp(argv[1], "prefault") == 0) {
        uint64_t mib = parse_count(argv[2]);
        g_prefault_cap_mib = mib;
        prefault(mib << 20);
        return 0;
    }
    if (argc >= 4 && argc <= 5 && strcmp(argv[1], "grow") == 0) {
        uint64_t count = argc == 5 ? parse_count(argv[4]) : 10000000;
        int rc = 2;
        if (count == 0)
            return usage();
        if (strcmp(argv[3], "8") == 0)
            rc = grow_map<8>(argv[2], count);
        else if (strcmp(argv[3], "64") == 0)
            rc = grow_map<64>(argv[2], count);
        else if (strcmp(argv[3], "512") == 0)
            rc = grow_map<512>(argv[2], count);
        return rc == 0 ? 0 : usage();
    }
#ifdef SM_BENCH_HAVE_SEGMENT_H
    if (argc >= 2 && argc <= 6 && strcmp(argv[1], "crafted") == 0) {
        uint64_t n = argc >= 3 ? parse_count(argv[2]) : 100000;
        uint64_t ops = argc >= 4 ? parse_count(argv[3]) : 1000000;
        int reps = argc >= 5 ? std::max(1, atoi(argv[4])) : 1;
        double budget_s = argc >= 6 ? strtod(argv[5], nullptr) : 3.0;
        return n && ops && budget_s > 0 ? crafted_mode(n, ops, reps, budget_s) : usage();
    }
#endif
    return usage();
}
