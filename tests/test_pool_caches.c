/*
 * test_pool_caches.c - per-thread caches serve any number of pools.
 *
 * A thread once had four cache entries: with a fifth pool in use, every
 * Get+Put took the allocator, the global lock and the pool's lock (from
 * 7-14 ns to over 200 ns a pair).  Now each pool has an index into the
 * thread's table of caches.  Tested without timing, by the pool's own
 * counters: with pools used round-robin from one thread, no call takes a
 * lock or the allocator once each cache exists, and up to the TLS part of
 * the table (8 pools) none even leaves the inline path.
 */
#include "internal.h" /* pool_counters, pool_verify */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

#include <pthread.h>

enum { ROUNDS = 20000 };

/* Before any pool exists: SAFEMAP_DEBUG=sample=N is read once. */
static unsigned sample_rate(void)
{
    return chk_debug_get()->sample;
}

static void make_pools(sm_pool **pools, int n)
{
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 16), .check = SM_CHECK_CHEAP};
    for (int i = 0; i < n; i++) {
        pools[i] = NULL;
        CHECK_EQ(sm_pool_new(&pools[i], &o), 0);
    }
}

static void sum_counters(sm_pool **pools, int n, pool_counts *sum)
{
    memset(sum, 0, sizeof *sum);
    sum->inline_paths = true;
    for (int i = 0; i < n; i++) {
        pool_counts c;
        pool_counters(pools[i], &c);
        sum->slow += c.slow;
        sum->locked += c.locked;
        sum->caches += c.caches;
        sum->inline_paths &= c.inline_paths;
    }
}

/* Gets and Puts pairs across the pools in turn; returns the allocator calls
 * made meanwhile. */
static uint64_t round_robin(sm_pool **pools, int n, int rounds)
{
    struct sm_stats before, after;
    sm_stats_read(&before);
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n; i++) {
            int64_t *a = sm_pool_get(pools[i]);
            a[0] = r;
            sm_pool_put(pools[i], a);
        }
    }
    sm_stats_read(&after);
    return after.allocs - before.allocs;
}

static void run_pools(int n, bool expect_inline)
{
    sm_pool *pools[64];
    make_pools(pools, n);
    round_robin(pools, n, 1); /* each pool's first slab and this thread's cache */
    pool_counts before, after;
    sum_counters(pools, n, &before);
    CHECK_EQ(before.caches, n);
    uint64_t allocs = round_robin(pools, n, ROUNDS);
    sum_counters(pools, n, &after);
    /* At SM_CHECK_CHEAP one Get in SAFEMAP_DEBUG=sample (100000 by default)
     * is recorded on purpose, under the lock; apart from those, not one
     * lock or allocator call, whatever the number of pools (before, every
     * call past the fourth pool took both). */
    uint64_t calls = 2 * (uint64_t)ROUNDS * (uint64_t)n, sampled = calls / 1000;
    CHECK(allocs <= sampled);
    CHECK(after.locked - before.locked <= sampled);
    if (expect_inline && after.inline_paths)
        CHECK(after.slow - before.slow <= sampled);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(pool_verify(pools[i]), 0);
        sm_pool_free(pools[i]);
    }
}

static void test_eight_pools_round_robin_stay_inline(void)
{
    if (sample_rate() != 0 && sample_rate() < 100000) {
        tl_skip("SAFEMAP_DEBUG=sample is dense: recorded calls take the lock on purpose");
        return;
    }
    run_pools(8, true);
}

static void test_forty_pools_round_robin_take_no_lock(void)
{
    if (sample_rate() != 0 && sample_rate() < 100000) {
        tl_skip("SAFEMAP_DEBUG=sample is dense: recorded calls take the lock on purpose");
        return;
    }
    struct sm_stats st;
    sm_stats_read(&st);
    size_t held = st.bytes_held;
    run_pools(40, false);
    /* With the last pool freed, this thread's table went too. */
    sm_stats_read(&st);
    if (st.pools == 0)
        CHECK_EQ(st.bytes_held, held);
}

/* A freed pool's index is reused by the next pool; this thread's stale
 * entry for it must not be taken for the new pool's cache. */
static void test_index_reuse_does_not_confuse_caches(void)
{
    sm_pool *a[3], *b[3];
    make_pools(a, 3);
    round_robin(a, 3, 10);
    sm_pool_free(a[1]);
    make_pools(b, 1);
    round_robin(b, 1, 100);
    pool_counts c;
    pool_counters(b[0], &c);
    CHECK_EQ(c.caches, 1);
    CHECK_EQ(pool_verify(b[0]), 0);
    sm_pool_free(b[0]);
    sm_pool_free(a[0]);
    sm_pool_free(a[2]);
}

typedef struct many {
    sm_pool **pools;
    int n;
} many;

static void *use_many(void *arg)
{
    many *m = arg;
    round_robin(m->pools, m->n, 100);
    return NULL;
}

/* A thread that used more pools than its TLS table holds gives every cache
 * and its heap table back when it exits: nothing stays behind. */
static void test_thread_exit_gives_back_every_cache(void)
{
    struct sm_stats before, after;
    sm_stats_read(&before);
    sm_pool *pools[40];
    make_pools(pools, 40);
    many m = {pools, 40};
    pthread_t t;
    pthread_create(&t, NULL, use_many, &m);
    pthread_join(t, NULL);
    size_t caches = 0;
    for (int i = 0; i < 40; i++) {
        pool_counts c;
        pool_counters(pools[i], &c);
        caches += c.caches;
        CHECK_EQ(pool_verify(pools[i]), 0);
        sm_pool_free(pools[i]);
    }
    CHECK_EQ(caches, 0);
    sm_stats_read(&after);
    CHECK_EQ(after.bytes_held, before.bytes_held);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_eight_pools_round_robin_stay_inline);
    RUN(test_forty_pools_round_robin_take_no_lock);
    RUN(test_index_reuse_does_not_confuse_caches);
    RUN(test_thread_exit_gives_back_every_cache);
    return tl_finish();
}
