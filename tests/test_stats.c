/*
 * test_stats.c - sm_stats_read(), the process-wide totals (Go's
 * runtime.MemStats for safemap): live objects, bytes held, allocator calls
 * and misuse events by code.
 *
 * The whole file runs under the counting allocator of support.h, installed
 * before the first object exists, so "bytes held" can be checked against
 * what the allocator itself saw.
 */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

typedef int64_t row8[8];

/* Events by code, as a handler that returns sees them. */
static uint64_t seen[SM_NCODES];

static void count_handler(const sm_event *ev, void *ctx)
{
    (void)ctx;
    if (ev->code < 0 && -ev->code < SM_NCODES)
        seen[-ev->code]++;
}

static sm_map *map_make(int storage, sm_pool *pool)
{
    sm_map *m = NULL;
    sm_map_opts o = {
        .layout = SM_LAYOUT(int64_t, 8), .storage = storage, .pool = pool, .check = SM_CHECK_CHEAP};
    return sm_map_new(&m, &o) == 0 ? m : NULL;
}

static sm_pool *pool_make(sm_layout layout, int check)
{
    sm_pool *p = NULL;
    sm_pool_opts o = {.layout = layout, .check = check};
    return sm_pool_new(&p, &o) == 0 ? p : NULL;
}

/* NULL is a no-op: it neither crashes nor disturbs the counters (reading
 * them takes no memory and makes no allocator call). */
static void test_stats_read_null_is_ignored(void)
{
    struct sm_stats before, after;
    sm_stats_read(&before);
    sm_stats_read(NULL);
    sm_stats_read(&after);
    CHECK_EQ(after.allocs, before.allocs);
    CHECK_EQ(after.frees, before.frees);
    CHECK_EQ(after.bytes_held, before.bytes_held);
    CHECK_EQ(after.maps + after.pools, before.maps + before.pools);
}

static void test_stats_count_live_maps_and_pools(void)
{
    struct sm_stats before, during, after;
    sm_stats_read(&before);
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP);
    sm_map *a = map_make(SM_INLINE, NULL);
    sm_map *b = map_make(SM_POOLED, p);
    if (!CHECK(p && a && b))
        return;
    sm_stats_read(&during);
    CHECK_EQ(during.pools, before.pools + 1);
    CHECK_EQ(during.maps, before.maps + 2);
    sm_map_free(b);
    sm_map_free(a);
    sm_pool_free(p);
    sm_stats_read(&after);
    CHECK_EQ(after.pools, before.pools);
    CHECK_EQ(after.maps, before.maps);
}

static void test_stats_bytes_held_match_the_allocator_and_return_to_zero(void)
{
    struct sm_stats st;
    sm_stats_read(&st);
    CHECK_EQ(st.bytes_held, 0);
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_FULL);
    sm_map *m = map_make(SM_POOLED, p);
    if (!CHECK(p && m))
        return;
    row8 v = {1};
    for (int64_t k = 0; k < 5000; k++)
        CHECK_EQ(sm_map_put(m, k, v), 0);
    void *held = sm_pool_get(p);
    CHECK(held != NULL);
    sm_stats_read(&st);
    CHECK(st.bytes_held > 5000 * sizeof(row8));
    CHECK_EQ(st.bytes_held, cnt_bytes());
    sm_pool_put(p, held);
    sm_map_free(m);
    sm_pool_free(p);
    sm_stats_read(&st);
    CHECK_EQ(st.bytes_held, 0);
    CHECK_EQ(cnt_bytes(), 0);
}

static void test_stats_allocs_and_frees_advance_and_balance(void)
{
    struct sm_stats before, during, after;
    size_t cnt_allocs = atomic_load(&cnt.allocs), cnt_frees = atomic_load(&cnt.frees);
    sm_stats_read(&before);
    sm_map *m = map_make(SM_INLINE, NULL);
    if (!CHECK(m))
        return;
    row8 v = {0};
    for (int64_t k = 0; k < 20000; k++) /* enough to split segments */
        sm_map_put(m, (int64_t)splitmix64((uint64_t)k), v);
    sm_stats_read(&during);
    CHECK(during.allocs > before.allocs + 1);
    for (int64_t k = 0; k < 20000; k++) /* and to merge them again */
        sm_map_del(m, (int64_t)splitmix64((uint64_t)k));
    sm_map_free(m);
    sm_stats_read(&after);
    CHECK(after.frees > during.frees);
    CHECK(after.allocs >= during.allocs);
    /* Every allocation of this test was given back, and the library's
     * counts agree with the allocator's own. */
    CHECK_EQ(after.allocs - before.allocs, after.frees - before.frees);
    CHECK_EQ(after.allocs - before.allocs, atomic_load(&cnt.allocs) - cnt_allocs);
    CHECK_EQ(after.frees - before.frees, atomic_load(&cnt.frees) - cnt_frees);
}

static void test_stats_count_every_misuse_event_by_code(void)
{
    memset(seen, 0, sizeof seen);
    sm_set_handler(count_handler, NULL);
    struct sm_stats before, after;
    sm_stats_read(&before);

    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP);
    sm_pool *p9 = pool_make(SM_LAYOUT(int64_t, 9), SM_CHECK_CHEAP);
    sm_map *m = map_make(SM_INLINE, NULL);
    if (!CHECK(p && p9 && m))
        return;
    /* SM_EDOUBLE twice, SM_EFOREIGN once. */
    void *a = sm_pool_get(p);
    CHECK_EQ(sm_pool_put(p, a), 0);
    CHECK_EQ(sm_pool_put(p, a), SM_EDOUBLE);
    CHECK_EQ(sm_pool_put(p, a), SM_EDOUBLE);
    int64_t local[8];
    CHECK_EQ(sm_pool_put(p, local), SM_EFOREIGN);
    /* SM_ELAYOUT: a map over a pool of [9] arrays. */
    sm_map *bad = NULL;
    sm_map_opts o = {
        .layout = SM_LAYOUT(int64_t, 8), .storage = SM_POOLED, .pool = p9, .check = SM_CHECK_CHEAP};
    CHECK_EQ(sm_map_new(&bad, &o), SM_ELAYOUT);
    /* SM_ESTALE: an iterator used after a mutation. */
    row8 v = {0};
    sm_map_put(m, 1, v);
    sm_iter it = sm_map_iter(m);
    sm_map_put(m, 2, v);
    int64_t key;
    void *val;
    CHECK_EQ(sm_iter_next(&it, &key, &val), SM_ESTALE);
    /* Plain return values raise nothing and count nothing. */
    CHECK_EQ(sm_map_get(m, 99, v), SM_ENOENT);
    CHECK_EQ(sm_pool_put(p, NULL), SM_EINVAL);
    CHECK_EQ(sm_map_new(NULL, &o), SM_EINVAL);

    sm_stats_read(&after);
    CHECK_EQ(seen[-SM_EDOUBLE], 2);
    CHECK_EQ(seen[-SM_EFOREIGN], 1);
    CHECK_EQ(seen[-SM_ELAYOUT], 1);
    CHECK_EQ(seen[-SM_ESTALE], 1);
    for (int c = 0; c < SM_NCODES; c++) {
        if (!CHECK_EQ(after.misuse[c] - before.misuse[c], seen[c]))
            printf("  (code %d)\n", -c);
    }
    for (int c = 0; c <= -SM_EINVAL; c++)
        CHECK_EQ(after.misuse[c], 0);

    sm_map_free(m);
    sm_pool_free(p9);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

static void test_stats_misuse_at_check_off_returns_the_code_and_counts_nothing(void)
{
    memset(seen, 0, sizeof seen);
    sm_set_handler(count_handler, NULL);
    struct sm_stats before, after;
    sm_stats_read(&before);
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_OFF);
    if (!CHECK(p))
        return;
    void *a = sm_pool_get(p);
    sm_pool_put(p, a);
    CHECK_EQ(sm_pool_put(p, a), SM_EDOUBLE);
    sm_stats_read(&after);
    /* No event was raised, so none is counted. */
    for (int c = 0; c < SM_NCODES; c++)
        CHECK_EQ(after.misuse[c] - before.misuse[c], seen[c]);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    cnt_install(); /* before the first object: the library holds nothing yet */
    RUN(test_stats_read_null_is_ignored);
    RUN(test_stats_count_live_maps_and_pools);
    RUN(test_stats_bytes_held_match_the_allocator_and_return_to_zero);
    RUN(test_stats_allocs_and_frees_advance_and_balance);
    RUN(test_stats_count_every_misuse_event_by_code);
    RUN(test_stats_misuse_at_check_off_returns_the_code_and_counts_nothing);
    if (cnt_bytes() != 0 || atomic_load(&cnt.size_mismatch) != 0) {
        printf("FAIL: %zu bytes still held, %zu frees with the wrong size\n", cnt_bytes(),
               (size_t)atomic_load(&cnt.size_mismatch));
        return 1;
    }
    cnt_uninstall();
    return tl_finish();
}
