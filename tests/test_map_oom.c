/*
 * test_map_oom.c - out of memory at every allocation, SQLite style.
 *
 * Concern: a call that runs out of memory returns SM_ENOMEM (NULL from
 * sm_map_upsert), leaves the map exactly as it was, and leaks nothing.
 *
 * The workload below (create, grow to K entries, reserve, upsert, delete,
 * clear, refill) runs once per N = 1, 2, 3, ... with the counting allocator
 * (support.h) failing the Nth allocation, until a run completes without
 * reaching an Nth allocation.  Two modes, as in SQLite's test_malloc.c:
 *
 *   one-shot    only the Nth allocation fails.  After the failed call the
 *               map is compared with the model, the call is retried (it must
 *               now succeed) and the workload goes on to the end.
 *   persistent  the Nth and every later allocation fail.  After the first
 *               failure every entry is deleted (sm_map_del never needs
 *               memory), and the map is freed.
 *
 * The sweeps run SM_INLINE maps at each check level and, when the pool is
 * built (SM_TEST_HAVE_POOL), SM_POOLED maps, whose pool fails too.
 *
 * After every failure: the code is SM_ENOMEM, sm_map_len and every entry
 * equal the model's, sm_map_verify() is 0, and no event was raised.  After
 * every run: sm_map_free leaves 0 bytes and 0 blocks outstanding.
 */
#include "model.h"
#include "support.h"
#include "testlib.h"

typedef int64_t row[8];
#define ROW SM_LAYOUT(int64_t, 8)

static size_t K = 20000;

typedef struct oom_run {
    sm_map *map;
    sm_pool *pool; /* SM_POOLED runs: where the values come from */
    int storage;
    model ref;
    int persistent;
    int broken; /* a check failed: stop the run */
    size_t failures;
} oom_run;

static void make_row(row r, int64_t key, int64_t salt)
{
    for (int i = 0; i < 8; i++)
        r[i] = key ^ (salt << 32) ^ i;
}

static int64_t key_of(size_t i)
{
    return (int64_t)(splitmix64(i) >> 1);
}

/* The map equals the model: same length, every model entry present with its
 * value, and iteration returns nothing else. */
static int same_as_model(oom_run *r, const char *when)
{
    int ok = CHECK_EQ(sm_map_len(r->map), r->ref.len);
    ok &= CHECK_EQ(sm_map_verify(r->map), 0);
    for (size_t i = 0; ok && i < r->ref.len; i++) {
        void *p = sm_map_find(r->map, r->ref.keys[i]);
        ok &= CHECK(p && memcmp(p, model_value(&r->ref, i), sizeof(row)) == 0);
    }
    size_t visits = 0;
    sm_iter it = sm_map_iter(r->map);
    int64_t k;
    while (ok && sm_iter_next(&it, &k, NULL) == 1) {
        visits++;
        ok &= CHECK(model_find(&r->ref, k) != MODEL_NONE);
    }
    ok &= CHECK_EQ(visits, r->ref.len);
    ok &= CHECK_EQ(ev_count(), 0);
    if (!ok)
        printf("  map differs from the model %s\n", when);
    return ok;
}

/* Called after a call returned failure rc (0 when it succeeded). Returns 1
 * when the workload should retry the call (one-shot mode). */
static int after_failure(oom_run *r, int rc, const char *call)
{
    r->failures++;
    if (!CHECK_EQ(rc, SM_ENOMEM)) {
        printf("  %s returned %d\n", call, rc);
        r->broken = 1;
        return 0;
    }
    if (!same_as_model(r, call)) {
        r->broken = 1;
        return 0;
    }
    if (r->persistent)
        return 0;
    cnt_fail_never();
    return 1;
}

/* Each returns 0 to go on, -1 to stop the workload. */
static int do_put(oom_run *r, int64_t key, int64_t salt)
{
    row v;
    make_row(v, key, salt);
    for (;;) {
        int rc = sm_map_put(r->map, key, v);
        if (rc == 0)
            break;
        if (!after_failure(r, rc, "sm_map_put"))
            return -1;
    }
    model_put(&r->ref, key, v);
    return 0;
}

static int do_upsert(oom_run *r, int64_t key)
{
    for (;;) {
        int inserted = -1;
        int had = model_find(&r->ref, key) != MODEL_NONE;
        void *p = sm_map_upsert(r->map, key, &inserted);
        if (p) {
            if (!CHECK_EQ(inserted, !had)) {
                r->broken = 1;
                return -1;
            }
            if (!had) {
                row zero = {0};
                model_put(&r->ref, key, zero);
            }
            row v;
            make_row(v, key, 7);
            memcpy(p, v, sizeof v);
            model_put(&r->ref, key, v);
            return 0;
        }
        if (!after_failure(r, SM_ENOMEM, "sm_map_upsert"))
            return -1;
    }
}

static int do_reserve(oom_run *r, size_t n)
{
    for (;;) {
        int rc = sm_map_reserve(r->map, n);
        if (rc == 0)
            return 0;
        if (!after_failure(r, rc, "sm_map_reserve"))
            return -1;
    }
}

static int do_del(oom_run *r, int64_t key)
{
    int had = model_del(&r->ref, key);
    if (!CHECK_EQ(sm_map_del(r->map, key), had ? 0 : SM_ENOENT)) {
        r->broken = 1;
        return -1;
    }
    return 0;
}

#ifdef SM_TEST_HAVE_POOL
/* The pool for an SM_POOLED run; its creation may fail like any call. */
static int do_new_pool(oom_run *r, int check)
{
    sm_pool_opts po;
    memset(&po, 0, sizeof po);
    po.layout = ROW;
    po.check = check;
    for (;;) {
        int rc = sm_pool_new(&r->pool, &po);
        if (rc == 0)
            return 0;
        r->pool = NULL;
        r->failures++;
        if (!CHECK_EQ(rc, SM_ENOMEM) || !CHECK_EQ(cnt_blocks(), 0)) {
            r->broken = 1;
            return -1;
        }
        if (r->persistent)
            return -1;
        cnt_fail_never();
    }
}
#endif

static int do_new(oom_run *r, int check, size_t capacity)
{
    sm_map_opts o = {.layout = ROW, .storage = r->storage, .check = check, .capacity = capacity};
#ifdef SM_TEST_HAVE_POOL
    if (r->storage == SM_POOLED) {
        if (do_new_pool(r, check))
            return -1;
        o.pool = r->pool;
    }
#endif
    size_t blocks_before = cnt_blocks();
    for (;;) {
        sm_map *sentinel = (sm_map *)&o;
        r->map = sentinel;
        int rc = sm_map_new(&r->map, &o);
        if (rc == 0)
            return 0;
        CHECK(r->map == sentinel);
        r->map = NULL;
        r->failures++;
        if (!CHECK_EQ(rc, SM_ENOMEM) || !CHECK_EQ(cnt_blocks(), blocks_before)) {
            r->broken = 1;
            return -1;
        }
        if (r->persistent)
            return -1;
        cnt_fail_never();
    }
}

static int workload(oom_run *r, int check)
{
    if (do_new(r, check, 0))
        return -1;
    for (size_t i = 0; i < K; i++)
        if (do_put(r, key_of(i), 1))
            return -1;
    if (do_reserve(r, 2 * K))
        return -1;
    for (size_t i = K / 2; i < K + K / 2; i++) /* half existing, half new */
        if (do_upsert(r, key_of(i)))
            return -1;
    for (size_t i = 0; i < K / 4; i++)
        if (do_del(r, key_of(i)))
            return -1;
    sm_map_clear(r->map);
    model_clear(&r->ref);
    if (!same_as_model(r, "after clear"))
        return r->broken = 1, -1;
    for (size_t i = 0; i < K; i += 2)
        if (do_put(r, key_of(i + 3 * K), 2))
            return -1;
    return 0;
}

/* One run with the Nth allocation failing.  Returns 1 if the Nth allocation
 * was reached (so N + 1 is worth trying), 0 if not, -1 if a check failed. */
static int run_once(size_t nth, int persistent, int check, int storage)
{
    oom_run r;
    memset(&r, 0, sizeof r);
    r.persistent = persistent;
    r.storage = storage;
    model_init(&r.ref, sizeof(row));
    size_t blocks_before = cnt_blocks();
    size_t injected = atomic_load(&cnt.failures);
    cnt_fail_nth(nth, persistent);
    int rc = workload(&r, check);
    if (r.map && !r.broken) {
        if (rc == 0) {
            same_as_model(&r, "at the end");
        } else if (persistent) {
            /* Out of memory for good: deleting must still work. */
            size_t n = r.ref.len;
            for (size_t i = 0; i < n; i++)
                if (do_del(&r, r.ref.keys[0]))
                    break;
            CHECK_EQ(sm_map_len(r.map), 0);
            CHECK_EQ(sm_map_verify(r.map), 0);
        }
    }
    sm_map_free(r.map);
#ifdef SM_TEST_HAVE_POOL
    sm_pool_free(r.pool);
#endif
    cnt_fail_never();
    CHECK_EQ(cnt_blocks(), blocks_before);
    CHECK_EQ(cnt_bytes(), 0);
    model_destroy(&r.ref);
    if (r.broken || tl_current_failures) {
        printf("  at N = %zu (%s, check %d, storage %d)\n", nth,
               persistent ? "persistent" : "one-shot", check, storage);
        return -1;
    }
    /* The allocator's count, not r.failures: a failure the library absorbed
     * (and recovered from) still means the Nth allocation was reached. */
    return atomic_load(&cnt.failures) > injected;
}

static void sweep(int persistent, int check, int storage)
{
    size_t nth = 1;
    int rc;
    double t0 = tl_now();
    while ((rc = run_once(nth, persistent, check, storage)) == 1)
        nth++;
    printf("  %s, check %d, storage %d: N = 1..%zu, %.2f s\n",
           persistent ? "persistent" : "one-shot", check, storage, nth, tl_now() - t0);
    CHECK(nth > 1); /* the workload allocates */
    CHECK_EQ(ev_count(), 0);
    CHECK_EQ(atomic_load(&cnt.size_mismatch), 0);
}

static void test_every_failing_allocation_one_shot_cheap(void)
{
    sweep(0, SM_CHECK_CHEAP, SM_INLINE);
}

static void test_every_failing_allocation_persistent_cheap(void)
{
    sweep(1, SM_CHECK_CHEAP, SM_INLINE);
}

static void test_every_failing_allocation_one_shot_full(void)
{
    sweep(0, SM_CHECK_FULL, SM_INLINE);
}

static void test_every_failing_allocation_persistent_off(void)
{
    sweep(1, SM_CHECK_OFF, SM_INLINE);
}

#ifdef SM_TEST_HAVE_POOL
/* SM_POOLED: values come from the pool, whose allocations fail too. */
static void test_every_failing_allocation_one_shot_pooled(void)
{
    sweep(0, SM_CHECK_CHEAP, SM_POOLED);
}

static void test_every_failing_allocation_persistent_pooled(void)
{
    sweep(1, SM_CHECK_FULL, SM_POOLED);
}
#endif

/* sm_map_new with a capacity allocates several pieces at once; each failing
 * one must undo the others. */
static void test_new_with_capacity_fails_cleanly(void)
{
    for (size_t nth = 1; nth < 100000; nth++) {
        sm_map_opts o = {
            .layout = ROW, .storage = SM_INLINE, .check = SM_CHECK_CHEAP, .capacity = 5000};
        sm_map *m = NULL;
        size_t before = atomic_load(&cnt.failures);
        cnt_fail_nth(nth, 0);
        int rc = sm_map_new(&m, &o);
        size_t failures = atomic_load(&cnt.failures) - before;
        cnt_fail_never();
        if (rc == 0) {
            CHECK_EQ(sm_map_len(m), 0);
            CHECK_EQ(sm_map_verify(m), 0);
            sm_map_free(m);
            CHECK_EQ(cnt_blocks(), 0);
            if (failures == 0)
                break;
            continue; /* a failed allocation was retried or absorbed: fine */
        }
        if (!CHECK_EQ(rc, SM_ENOMEM) || !CHECK(m == NULL) || !CHECK_EQ(cnt_blocks(), 0)) {
            printf("  at N = %zu\n", nth);
            break;
        }
    }
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    const char *k = tl_option(argc, argv, "k");
    if (k)
        K = (size_t)strtoull(k, NULL, 10);
    K = tl_scaled(K);
    printf("K = %zu\n", K);
    cnt_install();
    ev_install();
    RUN(test_new_with_capacity_fails_cleanly);
    RUN(test_every_failing_allocation_one_shot_cheap);
    RUN(test_every_failing_allocation_persistent_cheap);
    RUN(test_every_failing_allocation_one_shot_full);
    RUN(test_every_failing_allocation_persistent_off);
#ifdef SM_TEST_HAVE_POOL
    RUN(test_every_failing_allocation_one_shot_pooled);
    RUN(test_every_failing_allocation_persistent_pooled);
#endif
    sm_set_handler(NULL, NULL);
    cnt_uninstall();
    return tl_finish();
}
