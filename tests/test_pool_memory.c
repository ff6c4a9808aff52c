/*
 * test_pool_memory.c - where the pool's memory goes, through the counting
 * allocator of support.h:
 *   - after sm_pool_free nothing is held, whatever threads did;
 *   - an idle array is given back at the second cycle after its Put, even
 *     one sitting in the cache of a thread that has gone quiet;
 *   - max_idle_bytes is a hard cap, and arrays over it go back at once;
 *   - when the allocator fails, Get returns NULL and the pool is unchanged;
 *     sm_pool_new returns SM_ENOMEM holding nothing.
 */
#include "internal.h" /* pool_verify */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

#include <pthread.h>

enum { LEN = 16 }; /* int64_t[16]: 128 B arrays, 512 to a 64 KiB slab */
#define ARRAY_BYTES (LEN * sizeof(int64_t))

static sm_pool *pool_make(int check, size_t max_idle)
{
    sm_pool_opts o = {
        .layout = SM_LAYOUT(int64_t, LEN), .check = check, .max_idle_bytes = max_idle};
    sm_pool *p = NULL;
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    return p;
}

static void test_free_gives_back_everything(void)
{
    int levels[] = {SM_CHECK_OFF, SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 3; l++) {
        cnt_install();
        sm_pool *p = pool_make(levels[l], 0);
        enum { N = 5000 };
        void **v = malloc(N * sizeof *v);
        for (int i = 0; i < N; i++)
            v[i] = sm_pool_get(p);
        for (int i = 0; i < N; i += 2) /* half idle, half still out */
            CHECK_EQ(sm_pool_put(p, v[i]), 0);
        sm_pool_free(p);
        CHECK_EQ(cnt_blocks(), 0);
        CHECK_EQ(cnt_bytes(), 0);
        CHECK_EQ(atomic_load(&cnt.size_mismatch), 0);
        free(v);
        cnt_uninstall();
    }
}

static void test_idle_arrays_go_back_at_the_second_cycle(void)
{
    int levels[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        cnt_install();
        sm_pool *p = pool_make(levels[l], 0);
        enum { N = 4000 };
        void **v = malloc(N * sizeof *v);
        for (int i = 0; i < N; i++)
            v[i] = sm_pool_get(p);
        for (int i = 0; i < N; i++)
            CHECK_EQ(sm_pool_put(p, v[i]), 0);
        size_t before = cnt_bytes();
        CHECK(before >= N * ARRAY_BYTES);
        sm_pool_cycle(p); /* first cycle: idle arrays become victims */
        CHECK(cnt_bytes() >= N * ARRAY_BYTES);
        sm_pool_cycle(p); /* second: they go back */
        size_t after = cnt_bytes();
        CHECK(after < 16 * 1024); /* the pool's own structures only */
        if (after >= 16 * 1024)
            printf("  held %zu bytes after two cycles\n", after);
        sm_pool_free(p);
        CHECK_EQ(cnt_bytes(), 0);
        free(v);
        cnt_uninstall();
    }
}

static void test_get_after_one_cycle_reuses_victim(void)
{
    sm_pool *p = pool_make(SM_CHECK_CHEAP, 0);
    void *a = sm_pool_get(p);
    CHECK_EQ(sm_pool_put(p, a), 0);
    sm_pool_cycle(p);
    CHECK(sm_pool_get(p) == a); /* a victim can still be reused */
    CHECK_EQ(sm_pool_put(p, a), 0);
    sm_pool_cycle(p);
    sm_pool_cycle(p);
    void *b = sm_pool_get(p); /* a fresh slab: maybe the same address */
    CHECK(b != NULL);
    CHECK_EQ(sm_pool_put(p, b), 0);
    sm_pool_free(p);
}

static void test_arrays_in_live_slabs_survive_cycles(void)
{
    cnt_install();
    sm_pool *p = pool_make(SM_CHECK_CHEAP, 0);
    int64_t *a = sm_pool_get(p), *b = sm_pool_get(p);
    a[3] = 33;
    CHECK_EQ(sm_pool_put(p, b), 0);
    sm_pool_cycle(p);
    sm_pool_cycle(p);
    CHECK_EQ(a[3], 33); /* live arrays are never touched */
    CHECK(cnt_bytes() >= 64 * 1024);
    CHECK_EQ(sm_pool_put(p, a), 0);
    sm_pool_cycle(p);
    sm_pool_cycle(p);
    CHECK(cnt_bytes() < 16 * 1024);
    sm_pool_free(p);
    cnt_uninstall();
}

/* ---- a quiet thread's cache is reclaimed by cycles ---------------------- */

typedef struct quiet {
    sm_pool *p;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int phase;
} quiet;

static void *quiet_thread(void *arg)
{
    quiet *q = arg;
    void *v[40];
    for (int i = 0; i < 40; i++)
        v[i] = sm_pool_get(q->p);
    for (int i = 0; i < 40; i++)
        sm_pool_put(q->p, v[i]); /* into this thread's cache */
    pthread_mutex_lock(&q->mu);
    q->phase = 1;
    pthread_cond_broadcast(&q->cv);
    while (q->phase != 2)
        pthread_cond_wait(&q->cv, &q->mu);
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

static void test_quiet_threads_cache_is_reclaimed_by_cycles(void)
{
    cnt_install();
    quiet q = {pool_make(SM_CHECK_CHEAP, 0), PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
               0};
    pthread_t t;
    pthread_create(&t, NULL, quiet_thread, &q);
    pthread_mutex_lock(&q.mu);
    while (q.phase != 1)
        pthread_cond_wait(&q.cv, &q.mu);
    pthread_mutex_unlock(&q.mu);
    CHECK(cnt_bytes() >= 64 * 1024); /* a slab, in the quiet thread's cache */
    sm_pool_cycle(q.p);
    sm_pool_cycle(q.p);
    CHECK(cnt_bytes() < 16 * 1024); /* taken from the cache and given back */
    pthread_mutex_lock(&q.mu);
    q.phase = 2;
    pthread_cond_broadcast(&q.cv);
    pthread_mutex_unlock(&q.mu);
    pthread_join(t, NULL);
    sm_pool_free(q.p);
    CHECK_EQ(cnt_bytes(), 0);
    cnt_uninstall();
}

/* ---- the cap ------------------------------------------------------------ */

static void *churn_thread(void *arg)
{
    sm_pool *p = arg;
    void *v[200];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 200; i++)
            v[i] = sm_pool_get(p);
        for (int i = 0; i < 200; i++)
            sm_pool_put(p, v[i]);
    }
    return NULL;
}

static void test_cap_bounds_idle_memory(void)
{
    /* 10 arrays may be idle; every other array goes back at once. */
    cnt_install();
    sm_pool *p = pool_make(SM_CHECK_CHEAP, 10 * ARRAY_BYTES);
    enum { N = 3000 };
    void **v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++)
        v[i] = sm_pool_get(p);
    size_t full = cnt_bytes();
    for (int i = 0; i < N; i++)
        CHECK_EQ(sm_pool_put(p, v[i]), 0);
    /* At most 10 idle arrays, so at most 10 slabs still held. */
    CHECK(cnt_bytes() <= 10 * 64 * 1024 + 16 * 1024);
    CHECK(cnt_bytes() < full / 2);
    /* Threads share the cap: their caches cannot exceed it either. */
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, churn_thread, p);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(cnt_bytes() <= 10 * 64 * 1024 + 16 * 1024);
    sm_pool_free(p);
    CHECK_EQ(cnt_bytes(), 0);
    free(v);
    cnt_uninstall();
}

static void test_cap_below_one_array_keeps_nothing_idle(void)
{
    int levels[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        cnt_install();
        sm_pool *p = pool_make(levels[l], 1);
        void *v[1000];
        for (int i = 0; i < 1000; i++)
            v[i] = sm_pool_get(p);
        for (int i = 0; i < 1000; i++)
            CHECK_EQ(sm_pool_put(p, v[i]), 0);
        /* Every slab went back; descriptors wait for the next cycle. */
        CHECK(cnt_bytes() < 64 * 1024);
        sm_pool_cycle(p);
        CHECK(cnt_bytes() < 16 * 1024); /* bookkeeping only: no 64 KiB slab */
        sm_pool_free(p);
        CHECK_EQ(cnt_bytes(), 0);
        cnt_uninstall();
    }
}

/* ---- out of memory ------------------------------------------------------ */

static void test_new_out_of_memory_holds_nothing(void)
{
    int levels[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        cnt_install();
        bool created = false;
        for (size_t n = 1; n < 100 && !created; n++) {
            cnt_fail_nth(n, 0);
            sm_pool *p = NULL;
            sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, LEN), .check = levels[l]};
            int rc = sm_pool_new(&p, &o);
            cnt_fail_never();
            if (rc == 0) {
                sm_pool_free(p);
                created = true;
                break;
            }
            CHECK_EQ(rc, SM_ENOMEM);
            CHECK(p == NULL);
            CHECK_EQ(cnt_blocks(), 0);
        }
        CHECK(created); /* the sweep reached the end: a run with no failure */
        cnt_uninstall();
    }
}

static void test_get_out_of_memory_changes_nothing(void)
{
    /* Fail the nth allocation for every n the workload makes, until a run
     * injects no failure (the workload's every allocation has been failed
     * once): Get returns NULL, and the pool then goes on as if that call
     * never happened. */
    int levels[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        bool swept = false;
        for (size_t n = 1; n < 10000 && !swept; n++) {
            cnt_install();
            size_t injected = atomic_load(&cnt.failures);
            sm_pool *p = pool_make(levels[l], 0);
            /* FULL records a stack per call: slow under valgrind. */
            int N = levels[l] == SM_CHECK_FULL && tl_under_valgrind ? 600 : 2000;
            void **v = malloc((size_t)N * sizeof *v);
            int got = 0, nulls = 0;
            cnt_fail_nth(n, 0);
            for (int i = 0; i < N; i++) {
                v[got] = sm_pool_get(p);
                if (v[got])
                    got++;
                else
                    nulls++;
                if (i % 3 == 2 && got) /* some churn through the depot */
                    CHECK_EQ(sm_pool_put(p, v[--got]), 0);
            }
            cnt_fail_never();
            swept = atomic_load(&cnt.failures) == injected;
            CHECK(nulls <= 1);
            CHECK_EQ(pool_verify(p), 0);
            /* Every array handed out is distinct and can be put back. */
            for (int i = 0; i < got; i++)
                CHECK_EQ(sm_pool_put(p, v[i]), 0);
            CHECK_EQ(pool_verify(p), 0);
            sm_pool_cycle(p);
            sm_pool_cycle(p);
            sm_pool_free(p);
            CHECK_EQ(cnt_blocks(), 0);
            free(v);
            cnt_uninstall();
        }
        CHECK(swept);
    }
}

static void test_threads_leave_nothing_behind(void)
{
    cnt_install();
    sm_pool *p = pool_make(SM_CHECK_CHEAP, 0);
    for (int round = 0; round < 3; round++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, churn_thread, p);
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
    }
    sm_pool_cycle(p);
    sm_pool_cycle(p);
    CHECK(cnt_bytes() < 16 * 1024); /* exited threads' caches were flushed */
    sm_pool_free(p);
    CHECK_EQ(cnt_bytes(), 0);
    cnt_uninstall();
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_free_gives_back_everything);
    RUN(test_idle_arrays_go_back_at_the_second_cycle);
    RUN(test_get_after_one_cycle_reuses_victim);
    RUN(test_arrays_in_live_slabs_survive_cycles);
    RUN(test_quiet_threads_cache_is_reclaimed_by_cycles);
    RUN(test_cap_bounds_idle_memory);
    RUN(test_cap_below_one_array_keeps_nothing_idle);
    RUN(test_new_out_of_memory_holds_nothing);
    RUN(test_get_out_of_memory_changes_nothing);
    RUN(test_threads_leave_nothing_behind);
    return tl_finish();
}
