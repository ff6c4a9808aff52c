/*
 * test_cmap_oom.c - the concurrent map out of memory at every allocation,
 * with readers running.
 *
 * Concern: a call of sm_cmap that runs out of memory returns SM_ENOMEM and
 * leaves the map exactly as it was, readers running at the same time never
 * see anything but whole values, and nothing leaks.
 *
 * The workload (create, grow to K entries, rewrite some through
 * sm_cmap_update, delete two thirds so that segments merge, grow again,
 * iterate) runs once per N = 1, 2, 3, ... with the counting allocator
 * (support.h) failing the Nth allocation, until a run completes without
 * reaching an Nth.  Two modes, as test_map_oom.c has them:
 *
 *   one-shot    only the Nth allocation fails.  After the failed call the
 *               map is compared with the model, the call is retried (it
 *               must now succeed) and the workload goes on.
 *   persistent  the Nth and every later allocation fail.  After the first
 *               failure the map is compared with the model, every entry is
 *               deleted (sm_cmap_del never needs memory) and it is freed.
 *
 * Two reader threads run sm_cmap_get on the workload's keys throughout;
 * every value carries its key, so a torn or misplaced value is seen.  After
 * every failure: the code is SM_ENOMEM, the length and every entry equal
 * the model's, sm_cmap_verify() is 0 and no event was raised.  After every
 * run: nothing is left allocated.
 */
#include "model.h"
#include "support.h"
#include "testlib.h"

typedef int64_t row[8];
#define ROW SM_LAYOUT(int64_t, 8)

static size_t K = 12000;

static void make_row(row r, int64_t key, int64_t salt)
{
    for (int i = 0; i < 8; i++)
        r[i] = key * 8 + i + (salt << 40);
}

static int row_ok(const row r, int64_t key)
{
    int64_t salt = (r[0] - key * 8) >> 40;
    row want;
    make_row(want, key, salt);
    return memcmp(r, want, sizeof want) == 0;
}

/* ---- Readers that run through every failure ------------------------------ */

typedef struct oom_readers {
    pthread_t tid[2];
    sm_cmap *cm;
    atomic_int stop;
    atomic_size_t reads, bad;
} oom_readers;

static void *oom_reader(void *arg)
{
    oom_readers *r = arg;
    rng g = {(uint64_t)(uintptr_t)&g};
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        int64_t key = (int64_t)rng_below(&g, K);
        row v;
        int rc = sm_cmap_get(r->cm, key, v);
        if ((rc != 0 && rc != SM_ENOENT) || (rc == 0 && !row_ok(v, key)))
            atomic_fetch_add(&r->bad, 1);
        atomic_fetch_add_explicit(&r->reads, 1, memory_order_relaxed);
    }
    return NULL;
}

/* ---- One run ------------------------------------------------------------- */

typedef struct oom_run {
    sm_cmap *cm;
    model ref;
    int persistent;
    int broken;
    size_t failures;
} oom_run;

static int same_as_model(oom_run *r, const char *when)
{
    int ok = CHECK_EQ(sm_cmap_len(r->cm), r->ref.len);
    ok &= CHECK_EQ(sm_cmap_verify(r->cm), 0);
    for (size_t i = 0; ok && i < r->ref.len; i++) {
        row v;
        ok &= CHECK_EQ(sm_cmap_get(r->cm, r->ref.keys[i], v), 0);
        ok &= CHECK(memcmp(v, model_value(&r->ref, i), sizeof v) == 0);
    }
    ok &= CHECK_EQ(ev_count(), 0);
    if (!ok)
        printf("  map differs from the model after %s\n", when);
    return ok;
}

/* After a call failed with rc: 1 when the workload should retry it. */
static int after_failure(oom_run *r, int rc, const char *call)
{
    r->failures++;
    if (!CHECK_EQ(rc, SM_ENOMEM) || !same_as_model(r, call)) {
        printf("  %s returned %d\n", call, rc);
        r->broken = 1;
        return 0;
    }
    if (r->persistent)
        return 0;
    cnt_fail_never();
    return 1;
}

static int do_put(oom_run *r, int64_t key, int64_t salt)
{
    row v;
    make_row(v, key, salt);
    for (;;) {
        int rc = sm_cmap_put(r->cm, key, v);
        if (rc == 0)
            break;
        if (!after_failure(r, rc, "sm_cmap_put"))
            return -1;
    }
    model_put(&r->ref, key, v);
    return 0;
}

static void resalt(void *value, int inserted, void *ctx)
{
    int64_t key = *(int64_t *)ctx;
    int64_t *v = value;
    make_row(v, key, inserted ? 1 : ((v[0] - key * 8) >> 40) + 1);
}

static int do_update(oom_run *r, int64_t key)
{
    for (;;) {
        int rc = sm_cmap_update(r->cm, key, resalt, &key);
        if (rc == 0)
            break;
        if (!after_failure(r, rc, "sm_cmap_update"))
            return -1;
    }
    row v;
    size_t i = model_find(&r->ref, key);
    if (i == MODEL_NONE)
        make_row(v, key, 1);
    else
        make_row(v, key, ((((int64_t *)model_value(&r->ref, i))[0] - key * 8) >> 40) + 1);
    model_put(&r->ref, key, v);
    return 0;
}

static int count_entries(int64_t key, const void *value, void *ctx)
{
    (void)key;
    (void)value;
    (*(size_t *)ctx)++;
    return 0;
}

static int do_each(oom_run *r)
{
    for (;;) {
        size_t n = 0;
        int rc = sm_cmap_each(r->cm, count_entries, &n);
        if (rc == 0)
            return CHECK_EQ(n, r->ref.len) ? 0 : -1;
        if (!CHECK_EQ(n, 0) || !after_failure(r, rc, "sm_cmap_each"))
            return -1;
    }
}

static void workload(oom_run *r)
{
    for (size_t i = 0; i < K; i++)
        if (do_put(r, (int64_t)i, 0))
            return;
    for (size_t i = 0; i < K; i += 7)
        if (do_update(r, (int64_t)i))
            return;
    for (size_t i = 0; i < K; i++) {
        if (i % 3 == 0)
            continue;
        if (!CHECK_EQ(sm_cmap_del(r->cm, (int64_t)i), 0)) {
            r->broken = 1;
            return;
        }
        model_del(&r->ref, (int64_t)i);
    }
    for (size_t i = 0; i < K; i++)
        if (i % 3 && do_put(r, (int64_t)i, 2))
            return;
    if (do_each(r))
        return;
    same_as_model(r, "the workload");
}

/* Runs the workload with the nth allocation failing.  Returns 1 when the
 * run finished without reaching an nth allocation, 0 when it reached it, -1
 * when a check failed. */
static int run_once(size_t n, int persistent, int check, int storage)
{
    oom_run r = {.persistent = persistent};
    model_init(&r.ref, sizeof(row));
    ev_install();
    sm_pool *pool = NULL;
    sm_pool_opts po = {.layout = ROW, .check = check};
    if (storage == SM_POOLED && !CHECK_EQ(sm_pool_new(&pool, &po), 0))
        return -1;
    size_t injected = atomic_load(&cnt.failures);
    cnt_fail_nth(n, persistent);
    sm_map_opts o = {.layout = ROW,
                     .storage = storage,
                     .pool = pool,
                     .check = check,
                     .fixed_seed = 1,
                     .seed = 99};
    int rc = sm_cmap_new(&r.cm, &o);
    int finished = 0;
    if (rc != 0) {
        CHECK_EQ(rc, SM_ENOMEM);
    } else {
        oom_readers rd = {.cm = r.cm};
        for (int t = 0; t < 2; t++)
            pthread_create(&rd.tid[t], NULL, oom_reader, &rd);
        workload(&r);
        atomic_store(&rd.stop, 1);
        for (int t = 0; t < 2; t++)
            pthread_join(rd.tid[t], NULL);
        CHECK_EQ(atomic_load(&rd.bad), 0);
        /* Done when the nth allocation was never reached (a failure that
         * the map absorbs, such as a merge put off, counts as reached). */
        finished = atomic_load(&cnt.failures) == injected;
        if (persistent && r.failures) {
            for (size_t i = 0; i < r.ref.len; i++)
                CHECK_EQ(sm_cmap_del(r.cm, r.ref.keys[i]), 0);
            CHECK_EQ(sm_cmap_len(r.cm), 0);
            CHECK_EQ(sm_cmap_verify(r.cm), 0);
        }
        sm_cmap_free(r.cm);
    }
    cnt_fail_never();
    sm_pool_free(pool);
    CHECK_EQ(cnt_blocks(), 0);
    sm_set_handler(NULL, NULL);
    model_destroy(&r.ref);
    return r.broken ? -1 : finished;
}

static void sweep(int persistent, int check, int storage)
{
    cnt_install();
    /* A run with no failure injected says how many allocations the workload
     * makes.  The count varies a little between runs (freed segments are
     * reused only once the readers' grace period is over), so the sweep
     * covers at least that many and then ends after two runs in a row that
     * did not reach their nth allocation. */
    size_t before = atomic_load(&cnt.allocs);
    if (run_once(SIZE_MAX / 2, persistent, check, storage) != 1) {
        CHECK(!"a run with no failure injected reached its failure");
        cnt_uninstall();
        return;
    }
    size_t baseline = atomic_load(&cnt.allocs) - before;
    size_t n = 1;
    for (int unreached = 0; (n <= baseline || unreached < 2) && n < 100000; n++) {
        int rc = run_once(n, persistent, check, storage);
        if (rc < 0)
            break;
        unreached = rc ? unreached + 1 : 0;
    }
    printf("  %s sweep, %s, check level %d: %zu allocations failed in turn (a clean run "
           "makes %zu)\n",
           persistent ? "persistent" : "one-shot", storage == SM_POOLED ? "pooled" : "inline",
           check, n, baseline);
    CHECK(baseline > 4); /* the workload really allocates: the sweep covered something */
    CHECK(n > baseline);
    cnt_uninstall();
}

static void test_one_shot_failures_change_nothing(void)
{
    sweep(0, SM_CHECK_CHEAP, SM_INLINE);
}

static void test_persistent_failures_change_nothing(void)
{
    sweep(1, SM_CHECK_CHEAP, SM_INLINE);
}

static void test_one_shot_failures_at_off(void)
{
    sweep(0, SM_CHECK_OFF, SM_INLINE);
}

/* Pooled: the pool's slabs and the limbo's nodes fail too. */
static void test_pooled_one_shot_failures_change_nothing(void)
{
    sweep(0, SM_CHECK_CHEAP, SM_POOLED);
}

static void test_pooled_persistent_failures_change_nothing(void)
{
    sweep(1, SM_CHECK_CHEAP, SM_POOLED);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    const char *k = tl_option(argc, argv, "k");
    if (k)
        K = (size_t)atol(k);
    /* Every sweep runs the workload once per allocation: under a sanitizer
     * a smaller one. */
    if ((SM_HAVE_TSAN || SM_HAVE_ASAN) && !k)
        K = 2000;
    if (tl_under_valgrind && !k)
        K = 3000;
    RUN(test_one_shot_failures_change_nothing);
    RUN(test_persistent_failures_change_nothing);
    RUN(test_one_shot_failures_at_off);
    RUN(test_pooled_one_shot_failures_change_nothing);
    RUN(test_pooled_persistent_failures_change_nothing);
    return tl_finish();
}
