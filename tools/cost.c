/*
 * cost.c - `safemap cost`: what each check level costs, measured on this
 * machine, in one process.
 *
 * Four operations, each timed at SM_CHECK_OFF, CHEAP and FULL: a map Put
 * (an SM_INLINE map of int64_t[8] grown from empty to `n` entries, so splits
 * are included), a Get of a present key, a Del, and a pool Get+Put pair of
 * one 128 B array (int64_t[16]) in a loop.  Keys are splitmix64(i) >> 1, as
 * in the benchmarks.  Time is the thread's CPU time, so a run that other
 * work preempts is not charged for the wait, and each figure is the fastest
 * of `reps` runs (caches shared with other work still add noise).  At FULL the pool
 * records the call stack of every Get and Put (backtrace(), microseconds),
 * so its loop is shorter: the per-pair figure is what matters.
 *
 * The levels are interleaved run by run, each going first in turn, so a
 * burst of load elsewhere (or the allocator's first touch of fresh pages)
 * hurts all three alike; read the ratios, which move much less than the
 * nanoseconds.
 */
#include "demo.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { OP_PUT, OP_GET, OP_DEL, OP_POOL, NOPS };
enum { NLEVELS = 3 };

static const int levels[NLEVELS] = {SM_CHECK_OFF, SM_CHECK_CHEAP, SM_CHECK_FULL};
static const char *const op_names[NOPS] = {"map put (grow from empty)", "map get (hit)", "map del",
                                           "pool Get+Put pair"};

/* This thread's CPU time: time spent descheduled (other work on a shared
 * machine) is not counted, as it would be by the wall clock. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int64_t cost_key(uint64_t i)
{
    uint64_t x = i + 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return (int64_t)((x ^ (x >> 31)) >> 1);
}

/* One run of the map operations at one level: ns per op into ns[OP_PUT..DEL].
 * Returns false when memory runs out. */
static bool map_run(int check, uint64_t n, double ns[NOPS])
{
    sm_map *m = NULL;
    sm_map_opts o = {.layout = SM_LAYOUT(int64_t, 8), .check = check, .name = "cost"};
    if (sm_map_new(&m, &o) != 0)
        return false;
    int64_t v[8] = {0};
    bool ok = true;
    double t0 = now_ns();
    for (uint64_t i = 0; i < n && ok; i++) {
        v[0] = (int64_t)i;
        ok = sm_map_put(m, cost_key(i), v) == 0;
    }
    double t1 = now_ns();
    int64_t sum = 0;
    for (uint64_t i = 0; i < n && ok; i++) {
        ok = sm_map_get(m, cost_key((i * 7919) % n), v) == 0;
        sum += v[0];
    }
    double t2 = now_ns();
    for (uint64_t i = 0; i < n && ok; i++)
        ok = sm_map_del(m, cost_key(i)) == 0;
    double t3 = now_ns();
    sm_map_free(m);
    /* The sum of v[0] over every key once: keeps the Gets from being dropped. */
    ok = ok && sum == (int64_t)(n * (n - 1) / 2);
    ns[OP_PUT] = (t1 - t0) / (double)n;
    ns[OP_GET] = (t2 - t1) / (double)n;
    ns[OP_DEL] = (t3 - t2) / (double)n;
    return ok;
}

static bool pool_run(int check, uint64_t pairs, double *ns)
{
    sm_pool *p = NULL;
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 16), .check = check, .name = "cost"};
    if (sm_pool_new(&p, &o) != 0)
        return false;
    bool ok = true;
    double t0 = now_ns();
    for (uint64_t i = 0; i < pairs && ok; i++) {
        int64_t *a = sm_pool_get(p);
        ok = a != NULL;
        if (ok) {
            a[0] = (int64_t)i;
            ok = sm_pool_put(p, a) == 0;
        }
    }
    *ns = (now_ns() - t0) / (double)pairs;
    sm_pool_free(p);
    return ok;
}

int cost_main(int argc, char **argv)
{
    uint64_t n = 100000, pairs = 2000000, full_pairs = 20000;
    int reps = 9;
    if (argc == 2 && strcmp(argv[1], "--quick") == 0) {
        n = 10000;
        pairs = 100000;
        full_pairs = 2000;
        reps = 2;
    } else if (argc != 1) {
        fprintf(stderr, "safemap cost: unexpected argument '%s'; usage: safemap cost [--quick]\n",
                argv[1]);
        return 2;
    }
    double best[NOPS][NLEVELS];
    for (int op = 0; op < NOPS; op++)
        for (int l = 0; l < NLEVELS; l++)
            best[op][l] = 1e300;
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < NLEVELS; i++) {
            int l = (r + i) % NLEVELS; /* each level goes first in some run */
            double ns[NOPS];
            if (!map_run(levels[l], n, ns) ||
                !pool_run(levels[l], levels[l] == SM_CHECK_FULL ? full_pairs : pairs,
                          &ns[OP_POOL])) {
                fprintf(stderr, "safemap cost: a run failed (out of memory?)\n");
                return 1;
            }
            for (int op = 0; op < NOPS; op++)
                if (ns[op] < best[op][l])
                    best[op][l] = ns[op];
        }
    }
    printf("safemap cost: ns per operation at each check level, fastest of %d runs\n"
           "(map: int64_t[8] values, SM_INLINE, %" PRIu64 " keys; pool: one 128 B array)\n\n",
           reps, n);
    printf("| operation | off | cheap | full | cheap/off | full/cheap |\n");
    printf("|---|--:|--:|--:|--:|--:|\n");
    for (int op = 0; op < NOPS; op++)
        printf("| %s | %.1f | %.1f | %.1f | %.2fx | %.1fx |\n", op_names[op], best[op][0],
               best[op][1], best[op][2], best[op][1] / best[op][0], best[op][2] / best[op][1]);
    return 0;
}
