/*
 * bench_conc.cpp - concurrent maps side by side: safemap's sm_cmap against
 * boost::concurrent_flat_map, liburcu's rculfhash (QSBR and memb flavours)
 * and safemap's single-threaded sm_map behind a pthread_rwlock_t.  Go's
 * sync.Map and map + sync.RWMutex run the same workloads in bench/go
 * (`bench_go conc`).  Keys are those of bench_maps (key(i) = splitmix64(i)
 * >> 1), values int64_t[8], and a read copies the whole value out (no map
 * here hands out a pointer that outlives the call).
 *
 *   sm-cmap    sm_cmap (SM_INLINE, default check level); built only when
 *              include/safemap.h declares it (CMake defines
 *              SM_BENCH_HAVE_CMAP); otherwise absent from every table
 *   sm-rwlock  sm_map (SM_INLINE, default check level) and one
 *              pthread_rwlock_t: reads share it, writes take it alone
 *   sm-map     sm_map alone, no lock: the single-thread reference of `hit`
 *   boost-cfm  boost::concurrent_flat_map<int64_t, std::array<int64_t, 8>>
 *              (Boost 1.83), reads through visit()
 *   urcu-qsbr  rculfhash, QSBR flavour: a quiescent state every 64 operations
 *   urcu-memb  rculfhash, memb flavour (see conc_lfht.h for both)
 *
 * No map is presized.  Modes, each printing one record per figure:
 *
 *   bench_conc mix [-w ReadHeavy,Exchange,RapidGrow] [-t 1,2,4,8]
 *                  [-c CAPACITY] [-o OPS] [-m MAPS]
 *       The libcuckoo universal benchmark mixes as conc-map-bench runs them
 *       (read/insert/remove/update percent): ReadHeavy 98/1/1/0 and
 *       Exchange 10/40/40/10 start from 75% of CAPACITY entries (default
 *       2^20) inserted before the clock starts, RapidGrow 5/80/5/10 from
 *       empty.  OPS (default 2^21) operations in all, split evenly over the
 *       threads.  Thread t owns the keys key(t + T*j): it inserts its next
 *       j, removes its oldest live j, reads and updates a random live j, so
 *       reads hit and threads never collide on a key (they do share
 *       segments, buckets and locks).  Threads start together; the time is
 *       from the start to the last thread's end.
 *         conc WORKLOAD THREADS MAP MOPS_PER_S
 *
 *   bench_conc hit [-n 1000000] [-o OPS] [-m MAPS]
 *       One thread: n entries inserted, then OPS (default 4M) lookups of
 *       key(r % n), r walking a splitmix chain from 12345, as bench_maps'
 *       lookup-hit, each copying the value out and reading v[0] + v[7].
 *         conchit n MAP NS_PER_LOOKUP
 *
 *   bench_conc grow-read [-n 4000000] [-r READERS] [-m MAPS]
 *       One writer inserts key(0 .. n-1) into an empty map while READERS
 *       (default 1) threads look up keys the writer has already inserted,
 *       timing every lookup alone (clock_gettime, ~25 ns of it the clock).
 *       Reports each reader's p99.99 and worst lookup; a lookup that misses
 *       a key already inserted is counted (it must stay 0).  A lookup over
 *       50 us is checked against the reader thread's involuntary context
 *       switches (getrusage RUSAGE_THREAD, read every 16 lookups):
 *       QUIET_WORST_NS is the worst lookup in whose window the kernel did not
 *       preempt the thread, PREEMPTED the slow lookups in whose window it
 *       did (a reader that yields while waiting for a writer is not
 *       excused).
 *         concgrow MAP READERS READER P9999_NS WORST_NS LOOKUPS MISSES WRITER_S
 *                  QUIET_WORST_NS PREEMPTED
 *
 *   bench_conc grow MAP [COUNT]
 *       Grows one map to COUNT (default 1e7) entries from one thread; peak
 *       RSS per entry (run one process per map).
 *         concmem MAP COUNT PEAK_RSS_B_PER_ENTRY GROWTH_RSS_B_PER_ENTRY TOTAL_S
 */
#include <safemap.h>

#include <sys/resource.h>

#include "bench_common.hpp"
#include "conc_lfht.h"

#include <boost/unordered/concurrent_flat_map.hpp>

#include <pthread.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using Row = std::array<int64_t, 8>;

[[noreturn]] static void die(const char *what, int code)
{
    fprintf(stderr, "bench_conc: %s: %s\n", what, sm_strerror(code));
    exit(1);
}

static volatile uint64_t g_sink;

/* ---- Adapters: put (insert or replace), get (copy out), del ------------- */

/* Every adapter: put(k, v); bool get(k, out); bool del(k); and
 * thread_online() / thread_offline(), which each thread calls before its
 * first and after its last operation (liburcu registers its readers), and
 * wait_begin() / wait_end() around a wait for other threads (conc_lfht.h
 * says why QSBR needs them). */
struct NoRegistration {
    static void thread_online() {}
    static void thread_offline() {}
    static void wait_begin() {}
    static void wait_end() {}
};

static sm_map_opts map_opts()
{
    sm_map_opts o{};
    o.layout = SM_LAYOUT(int64_t, 8);
    o.storage = SM_INLINE;
    o.check = SM_CHECK_DEFAULT;
    return o;
}

#ifdef SM_BENCH_HAVE_CMAP
class CmapAdapter : public NoRegistration
{
    sm_cmap *map_ = nullptr;

  public:
    CmapAdapter()
    {
        sm_map_opts o = map_opts();
        int rc = sm_cmap_new(&map_, &o);
        if (rc != 0)
            die("sm_cmap_new", rc);
    }
    ~CmapAdapter()
    {
        sm_cmap_free(map_);
    }
    void put(int64_t k, const Row &v)
    {
        int rc = sm_cmap_put(map_, k, v.data());
        if (rc != 0)
            die("sm_cmap_put", rc);
    }
    bool get(int64_t k, Row &out)
    {
        int rc = sm_cmap_get(map_, k, out.data());
        if (rc != 0 && rc != SM_ENOENT)
            die("sm_cmap_get", rc);
        return rc == 0;
    }
    bool del(int64_t k)
    {
        int rc = sm_cmap_del(map_, k);
        if (rc != 0 && rc != SM_ENOENT)
            die("sm_cmap_del", rc);
        return rc == 0;
    }
};
#endif

/* sm_map alone (Locked = false: one thread only) or behind a
 * pthread_rwlock_t (Locked = true). */
template <bool Locked> class SmMapAdapter : public NoRegistration
{
    sm_map *map_ = nullptr;
    pthread_rwlock_t lock_ = PTHREAD_RWLOCK_INITIALIZER;

  public:
    SmMapAdapter()
    {
        sm_map_opts o = map_opts();
        int rc = sm_map_new(&map_, &o);
        if (rc != 0)
            die("sm_map_new", rc);
    }
    ~SmMapAdapter()
    {
        sm_map_free(map_);
        pthread_rwlock_destroy(&lock_);
    }
    void put(int64_t k, const Row &v)
    {
        if (Locked)
            pthread_rwlock_wrlock(&lock_);
        int rc = sm_map_put(map_, k, v.data());
        if (Locked)
            pthread_rwlock_unlock(&lock_);
        if (rc != 0)
            die("sm_map_put", rc);
    }
    bool get(int64_t k, Row &out)
    {
        if (Locked)
            pthread_rwlock_rdlock(&lock_);
        int rc = sm_map_get(map_, k, out.data());
        if (Locked)
            pthread_rwlock_unlock(&lock_);
        if (rc != 0 && rc != SM_ENOENT)
            die("sm_map_get", rc);
        return rc == 0;
    }
    bool del(int64_t k)
    {
        if (Locked)
            pthread_rwlock_wrlock(&lock_);
        int rc = sm_map_del(map_, k);
        if (Locked)
            pthread_rwlock_unlock(&lock_);
        if (rc != 0 && rc != SM_ENOENT)
            die("sm_map_del", rc);
        return rc == 0;
    }
};

class BoostCfmAdapter : public NoRegistration
{
    boost::concurrent_flat_map<int64_t, Row> map_;

  public:
    void put(int64_t k, const Row &v)
    {
        map_.insert_or_assign(k, v);
    }
    bool get(int64_t k, Row &out)
    {
        return map_.visit(k, [&out](const auto &entry) { out = entry.second; }) != 0;
    }
    bool del(int64_t k)
    {
        return map_.erase(k) != 0;
    }
};

#define BENCH_LFHT_ADAPTER(Name, flavour)                                                          \
    class Name                                                                                     \
    {                                                                                              \
        bench_lfht *table_;                                                                        \
                                                                                                   \
      public:                                                                                      \
        Name()                                                                                     \
        {                                                                                          \
            table_ = bench_lfht_##flavour##_new();                                                 \
            if (!table_)                                                                           \
                die("cds_lfht_new", SM_ENOMEM);                                                    \
        }                                                                                          \
        ~Name()                                                                                    \
        {                                                                                          \
            bench_lfht_##flavour##_thread_online();                                                \
            bench_lfht_##flavour##_free(table_);                                                   \
            bench_lfht_##flavour##_thread_offline();                                               \
        }                                                                                          \
        static void thread_online()                                                                \
        {                                                                                          \
            bench_lfht_##flavour##_thread_online();                                                \
        }                                                                                          \
        static void thread_offline()                                                               \
        {                                                                                          \
            bench_lfht_##flavour##_thread_offline();                                               \
        }                                                                                          \
        static void wait_begin()                                                                   \
        {                                                                                          \
            bench_lfht_##flavour##_wait_begin();                                                   \
        }                                                                                          \
        static void wait_end()                                                                     \
        {                                                                                          \
            bench_lfht_##flavour##_wait_end();                                                     \
        }                                                                                          \
        void put(int64_t k, const Row &v)                                                          \
        {                                                                                          \
            if (bench_lfht_##flavour##_put(table_, k, v.data()) != 0)                              \
                die("rculfhash put", SM_ENOMEM);                                                   \
        }                                                                                          \
        bool get(int64_t k, Row &out)                                                              \
        {                                                                                          \
            return bench_lfht_##flavour##_get(table_, k, out.data()) != 0;                         \
        }                                                                                          \
        bool del(int64_t k)                                                                        \
        {                                                                                          \
            return bench_lfht_##flavour##_del(table_, k) != 0;                                     \
        }                                                                                          \
    };
BENCH_LFHT_ADAPTER(LfhtQsbrAdapter, qsbr)
BENCH_LFHT_ADAPTER(LfhtMembAdapter, memb)

/* ---- Threads ------------------------------------------------------------ */

/* Runs body(t) on `threads` threads, each registered with the map's flavour
 * of RCU (if any) for its whole life, and joins them. */
template <class Map, class Body> static void run_threads(unsigned threads, Body body)
{
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; t++)
        pool.emplace_back([t, &body] {
            Map::thread_online();
            body(t);
            Map::thread_offline();
        });
    for (std::thread &th : pool)
        th.join();
}

/* A start line: every thread arrives, the last one to arrive takes the
 * start time and lets all go.  Spins (with yields, for oversubscribed runs),
 * between the map's wait_begin() and wait_end(). */
class StartLine
{
    std::atomic<unsigned> waiting_;
    std::atomic<uint64_t> start_{0};

  public:
    explicit StartLine(unsigned threads) : waiting_(threads) {}
    template <class Map> void arrive()
    {
        Map::wait_begin();
        if (waiting_.fetch_sub(1) == 1)
            start_.store(now_ns(), std::memory_order_release);
        while (start_.load(std::memory_order_acquire) == 0)
            std::this_thread::yield();
        Map::wait_end();
    }
    uint64_t start() const
    {
        return start_.load();
    }
};

/* ---- mix ---------------------------------------------------------------- */

struct Mix {
    const char *name;
    unsigned read, insert, remove, update; /* percent, summing to 100 */
    double prefill;                        /* fraction of the capacity */
};

static const Mix kMixes[] = {
    {"ReadHeavy", 98, 1, 1, 0, 0.75},
    {"Exchange", 10, 40, 40, 10, 0.75},
    {"RapidGrow", 5, 80, 5, 10, 0.0},
};

template <class Map>
static double run_mix(const Mix &mix, unsigned threads, uint64_t capacity, uint64_t ops)
{
    Map map;
    uint64_t prefill = (uint64_t)((double)capacity * mix.prefill) / threads;
    uint64_t per_thread = ops / threads;
    StartLine line(threads);
    std::vector<uint64_t> ends(threads, 0);
    run_threads<Map>(threads, [&](unsigned t) {
        auto key_of = [t, threads](uint64_t j) { return key(t + (uint64_t)threads * j); };
        Row v{};
        /* Live keys of this thread: key_of(j) for lo <= j < hi. */
        uint64_t lo = 0, hi = 0, rng = 0x5eed0000u + t, sink = 0;
        for (; hi < prefill; hi++) {
            v[0] = (int64_t)hi;
            map.put(key_of(hi), v);
        }
        line.arrive<Map>();
        for (uint64_t i = 0; i < per_thread; i++) {
            rng = splitmix64(rng);
            unsigned pick = (unsigned)(rng % 100);
            uint64_t live = hi - lo, any = lo + (live ? (rng >> 8) % live : 0);
            if (pick < mix.read) {
                if (map.get(key_of(any), v))
                    sink += (uint64_t)v[0] + (uint64_t)v[7];
            } else if (pick < mix.read + mix.insert) {
                v[0] = (int64_t)hi;
                map.put(key_of(hi), v);
                hi++;
            } else if (pick < mix.read + mix.insert + mix.remove) {
                if (live) {
                    map.del(key_of(lo));
                    lo++;
                }
            } else if (live) {
                v[0] = (int64_t)(any + i);
                map.put(key_of(any), v);
            }
        }
        ends[t] = now_ns();
        g_sink = sink;
    });
    uint64_t end = 0;
    for (uint64_t e : ends)
        end = std::max(end, e);
    return (double)(per_thread * threads) / (double)(end - line.start()) * 1e3; /* Mops/s */
}

/* ---- hit ---------------------------------------------------------------- */

template <class Map> static double run_hit(uint64_t n, uint64_t ops)
{
    Map map;
    double ns = 0;
    run_threads<Map>(1, [&](unsigned) {
        Row v{};
        for (uint64_t i = 0; i < n; i++) {
            v[0] = (int64_t)i;
            map.put(key(i), v);
        }
        uint64_t r = 12345, sink = 0;
        uint64_t t0 = now_ns();
        for (uint64_t i = 0; i < ops; i++) {
            r = splitmix64(r);
            if (map.get(key(r % n), v))
                sink += (uint64_t)v[0] + (uint64_t)v[7];
        }
        ns = (double)(now_ns() - t0) / (double)ops;
        g_sink = sink;
    });
    return ns;
}

/* ---- grow-read ---------------------------------------------------------- */

/* Involuntary context switches of the calling thread so far: the kernel
 * preempting it.  Voluntary ones (a reader yielding while it waits for a
 * writer inside its segment) are the map's doing and are not counted. */
static uint64_t thread_switches()
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (uint64_t)ru.ru_nivcsw;
}

template <class Map> static void run_grow_read(const char *name, uint64_t n, unsigned readers)
{
    Map map;
    std::atomic<uint64_t> inserted{0};
    std::atomic<bool> done{false};
    std::vector<std::unique_ptr<LatencyLog>> logs;
    for (unsigned r = 0; r < readers; r++)
        logs.emplace_back(new LatencyLog());
    std::vector<uint64_t> misses(readers, 0), quiet_worst(readers, 0), preempted(readers, 0);
    double writer_s = 0;
    StartLine line(readers + 1);
    run_threads<Map>(readers + 1, [&](unsigned t) {
        Row v{};
        if (t == 0) { /* the writer */
            line.arrive<Map>();
            uint64_t t0 = now_ns();
            for (uint64_t i = 0; i < n; i++) {
                v[0] = (int64_t)i;
                map.put(key(i), v);
                inserted.store(i + 1, std::memory_order_release);
            }
            writer_s = (double)(now_ns() - t0) * 1e-9;
            done.store(true, std::memory_order_release);
            return;
        }
        LatencyLog &log = *logs[t - 1];
        uint64_t rng = 0xfeed0000u + t, sink = 0, n_looked = 0;
        uint64_t switches = thread_switches();
        line.arrive<Map>();
        while (!done.load(std::memory_order_acquire)) {
            uint64_t have = inserted.load(std::memory_order_acquire);
            if (have == 0)
                continue;
            if ((++n_looked & 15) == 0)
                switches = thread_switches();
            rng = splitmix64(rng);
            int64_t k = key(rng % have);
            uint64_t t0 = now_ns();
            bool hit = map.get(k, v);
            uint64_t ns = now_ns() - t0;
            log.add(ns);
            if (ns > 50000) { /* was the thread switched out meanwhile? */
                uint64_t now = thread_switches();
                if (now != switches)
                    preempted[t - 1]++;
                else
                    quiet_worst[t - 1] = std::max(quiet_worst[t - 1], ns);
                switches = now;
            } else {
                quiet_worst[t - 1] = std::max(quiet_worst[t - 1], ns);
            }
            if (hit)
                sink += (uint64_t)v[0];
            else
                misses[t - 1]++;
        }
        g_sink = sink;
    });
    for (unsigned r = 0; r < readers; r++)
        printf("concgrow %s %u %u %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %.2f %" PRIu64
               " %" PRIu64 "\n",
               name, readers, r + 1, logs[r]->quantile(0.9999), logs[r]->worst(), logs[r]->count(),
               misses[r], writer_s, quiet_worst[r], preempted[r]);
    fflush(stdout);
}

/* ---- grow (memory) ------------------------------------------------------ */

template <class Map> static void run_grow(const char *name, uint64_t count)
{
    size_t base_rss = current_rss_bytes();
    uint64_t t0 = now_ns();
    Map map;
    run_threads<Map>(1, [&](unsigned) {
        Row v{};
        for (uint64_t i = 0; i < count; i++) {
            v[0] = (int64_t)i;
            map.put(key(i), v);
        }
    });
    double total_s = (double)(now_ns() - t0) * 1e-9;
    size_t peak = peak_rss_bytes();
    printf("concmem %s %" PRIu64 " %.1f %.1f %.2f\n", name, count, (double)peak / (double)count,
           (double)(peak - base_rss) / (double)count, total_s);
    fflush(stdout);
}

/* ---- Dispatch and command line ------------------------------------------ */

/* The maps this build has, in report order. */
static const char *all_maps()
{
#ifdef SM_BENCH_HAVE_CMAP
    return "sm-cmap,sm-rwlock,boost-cfm,urcu-qsbr,urcu-memb";
#else
    return "sm-rwlock,boost-cfm,urcu-qsbr,urcu-memb";
#endif
}

/* One map type per name; Visit is a generic lambda taking a Map* tag. */
template <class Visit> static bool dispatch(const std::string &name, Visit visit)
{
#ifdef SM_BENCH_HAVE_CMAP
    if (name == "sm-cmap")
        return visit(static_cast<CmapAdapter *>(nullptr)), true;
#endif
    if (name == "sm-rwlock")
        return visit(static_cast<SmMapAdapter<true> *>(nullptr)), true;
    if (name == "sm-map")
        return visit(static_cast<SmMapAdapter<false> *>(nullptr)), true;
    if (name == "boost-cfm")
        return visit(static_cast<BoostCfmAdapter *>(nullptr)), true;
    if (name == "urcu-qsbr")
        return visit(static_cast<LfhtQsbrAdapter *>(nullptr)), true;
    if (name == "urcu-memb")
        return visit(static_cast<LfhtMembAdapter *>(nullptr)), true;
    return false;
}

static int usage()
{
    fprintf(stderr,
            "usage: bench_conc mix [-w ReadHeavy,Exchange,RapidGrow] [-t 1,2,4,8] [-c CAPACITY]\n"
            "                      [-o OPS] [-m MAPS]\n"
            "       bench_conc hit [-n 1000000] [-o OPS] [-m MAPS]\n"
            "       bench_conc grow-read [-n 4000000] [-r READERS] [-m MAPS]\n"
            "       bench_conc grow MAP [COUNT]\n"
            "maps in this build: %s (and sm-map for hit)\n",
            all_maps());
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    std::string mode = argv[1];
    if (mode == "grow") {
        if (argc < 3 || argc > 4)
            return usage();
        uint64_t count = argc == 4 ? parse_count(argv[3]) : 10000000;
        std::string name = argv[2];
        if (count == 0 || !dispatch(name, [&](auto *tag) {
                run_grow<std::remove_pointer_t<decltype(tag)>>(argv[2], count);
            }))
            return usage();
        return 0;
    }
    std::vector<std::string> workloads = {"ReadHeavy", "Exchange", "RapidGrow"};
    std::vector<std::string> thread_counts = {"1", "2", "4", "8"};
    std::vector<std::string> maps = split(all_maps());
    if (mode == "hit") /* the single-thread reference joins the default list */
        maps.push_back("sm-map");
    uint64_t capacity = 1u << 20, ops = 0, n = 0;
    unsigned readers = 1;
    if (argc % 2 != 0)
        return usage();
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string flag = argv[i], value = argv[i + 1];
        if (flag == "-w")
            workloads = split(value);
        else if (flag == "-t")
            thread_counts = split(value);
        else if (flag == "-c")
            capacity = parse_count(value);
        else if (flag == "-o")
            ops = parse_count(value);
        else if (flag == "-m")
            maps = split(value);
        else if (flag == "-n")
            n = parse_count(value);
        else if (flag == "-r")
            readers = (unsigned)std::max(1, atoi(value.c_str()));
        else
            return usage();
    }
    for (const std::string &m : maps)
        if (!dispatch(m, [](auto *) {}))
            return usage();
    if (mode == "mix") {
        ops = ops ? ops : 2u << 20;
        printf("# bench_conc mix: capacity=%" PRIu64 " ops=%" PRIu64 " cores=%u\n", capacity, ops,
               std::thread::hardware_concurrency());
        for (const std::string &w : workloads) {
            const Mix *mix = nullptr;
            for (const Mix &m : kMixes)
                if (w == m.name)
                    mix = &m;
            if (!mix)
                return usage();
            for (const std::string &tc : thread_counts) {
                unsigned threads = (unsigned)atoi(tc.c_str());
                if (threads == 0)
                    return usage();
                for (const std::string &m : maps) {
                    double mops = 0;
                    dispatch(m, [&](auto *tag) {
                        mops = run_mix<std::remove_pointer_t<decltype(tag)>>(*mix, threads,
                                                                             capacity, ops);
                    });
                    printf("conc %s %u %s %.3f\n", mix->name, threads, m.c_str(), mops);
                    fflush(stdout);
                }
            }
        }
        return 0;
    }
    if (mode == "hit") {
        n = n ? n : 1000000;
        ops = ops ? ops : 4000000;
        for (const std::string &m : maps) {
            double ns = 0;
            dispatch(
                m, [&](auto *tag) { ns = run_hit<std::remove_pointer_t<decltype(tag)>>(n, ops); });
            printf("conchit %" PRIu64 " %s %.2f\n", n, m.c_str(), ns);
            fflush(stdout);
        }
        return 0;
    }
    if (mode == "grow-read") {
        n = n ? n : 4000000;
        for (const std::string &m : maps)
            dispatch(m, [&](auto *tag) {
                run_grow_read<std::remove_pointer_t<decltype(tag)>>(m.c_str(), n, readers);
            });
        return 0;
    }
    return usage();
}
