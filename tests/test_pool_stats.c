/*
 * test_pool_stats.c - sm_pool_stats(): what a snapshot of a pool counts.
 *
 * Each test runs a known sequence of calls and checks every counter it
 * touches, at each check level: gets and puts (only the calls that handed
 * out or took back an array), news (fresh slots), frees (memory given back
 * by cycles and the idle cap), live and idle arrays and bytes, cycles,
 * reserved bytes against the counting allocator, and misuse events by code.
 * The counters of the fast path live in per-thread caches: the thread tests
 * check that they are summed, including the caches of threads that have
 * exited, and that snapshots taken while threads run move forward.
 *
 * `test_pool_stats thread` runs only the thread tests (CTest
 * test_pool_stats_threads, which `make test-tsan` picks up).
 */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

#include <pthread.h>

enum { LEN = 16 }; /* int64_t[16]: 128 B arrays */
#define ARRAY_BYTES ((size_t)LEN * sizeof(int64_t))

static const int levels[] = {SM_CHECK_OFF, SM_CHECK_CHEAP, SM_CHECK_FULL};

static sm_pool *pool_make(int check, size_t max_idle)
{
    sm_pool_opts o = {
        .layout = SM_LAYOUT(int64_t, LEN), .check = check, .max_idle_bytes = max_idle};
    sm_pool *p = NULL;
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    return p;
}

static struct sm_pool_stats stats_of(sm_pool *p)
{
    struct sm_pool_stats st;
    memset(&st, 0xA5, sizeof st);
    CHECK_EQ(sm_pool_stats(p, &st), 0);
    return st;
}

/* live and idle, arrays and bytes, in one call. */
static int arrays_are(const struct sm_pool_stats *st, size_t live, size_t idle)
{
    int ok = CHECK_EQ(st->live_arrays, live);
    ok &= CHECK_EQ(st->idle_arrays, idle);
    ok &= CHECK_EQ(st->live_bytes, live * ARRAY_BYTES);
    ok &= CHECK_EQ(st->idle_bytes, idle * ARRAY_BYTES);
    return ok;
}

static void test_stats_null_arguments_are_einval(void)
{
    struct sm_pool_stats st;
    sm_pool *p = pool_make(SM_CHECK_CHEAP, 0);
    CHECK_EQ(sm_pool_stats(NULL, &st), SM_EINVAL);
    CHECK_EQ(sm_pool_stats(p, NULL), SM_EINVAL);
    sm_pool_free(p);
}

static void test_new_pool_counts_nothing(void)
{
    for (int l = 0; l < 3; l++) {
        sm_pool *p = pool_make(levels[l], 0);
        struct sm_pool_stats st = stats_of(p);
        CHECK_EQ(st.layout.len, LEN);
        CHECK_EQ(st.layout.elem_size, sizeof(int64_t));
        CHECK(strcmp(st.layout.name, "int64_t[LEN]") == 0); /* as SM_LAYOUT spells it */
        CHECK_EQ(st.check, levels[l]);
        CHECK_EQ(st.gets, 0);
        CHECK_EQ(st.puts, 0);
        CHECK_EQ(st.news, 0);
        CHECK_EQ(st.frees, 0);
        CHECK_EQ(st.cycles, 0);
        arrays_are(&st, 0, 0);
        CHECK(st.reserved_bytes > 0); /* the pool's own structure */
        CHECK(st.reserved_bytes < 16 * 1024);
        for (int i = 0; i < SM_NCODES; i++)
            CHECK_EQ(st.misuse[i], 0);
        sm_pool_free(p);
    }
}

static void test_default_check_level_is_resolved(void)
{
    sm_pool *p = pool_make(SM_CHECK_DEFAULT, 0);
    int want = SM_CHECK_CHEAP;
    const char *env = getenv("SAFEMAP_CHECK");
    if (env && !strcmp(env, "off"))
        want = SM_CHECK_OFF;
    if (env && !strcmp(env, "full"))
        want = SM_CHECK_FULL;
    if (!env || !strcmp(env, "off") || !strcmp(env, "full") || !strcmp(env, "cheap"))
        CHECK_EQ(stats_of(p).check, want);
    sm_pool_free(p);
}

/* Get 10, Put 4, Get 2 (reused, but at FULL the 4 wait in quarantine and
 * the 2 are fresh), Put the rest, two cycles. */
static void test_stats_follow_gets_puts_and_cycles(void)
{
    for (int l = 0; l < 3; l++) {
        sm_pool *p = pool_make(levels[l], 0);
        size_t fresh = levels[l] == SM_CHECK_FULL ? 2 : 0;
        void *a[10];
        for (int i = 0; i < 10; i++)
            a[i] = sm_pool_get(p);
        struct sm_pool_stats st = stats_of(p);
        CHECK_EQ(st.gets, 10);
        CHECK_EQ(st.puts, 0);
        CHECK_EQ(st.news, 10);
        arrays_are(&st, 10, 0);
        CHECK(st.reserved_bytes >= 64 * 1024); /* a slab */

        for (int i = 0; i < 4; i++)
            CHECK_EQ(sm_pool_put(p, a[i]), 0);
        st = stats_of(p);
        CHECK_EQ(st.gets, 10);
        CHECK_EQ(st.puts, 4);
        arrays_are(&st, 6, 4);

        a[0] = sm_pool_get(p);
        a[1] = sm_pool_get(p);
        st = stats_of(p);
        CHECK_EQ(st.gets, 12);
        CHECK_EQ(st.news, 10 + fresh);
        arrays_are(&st, 8, 2 + fresh);

        for (int i = 0; i < 10; i++)
            if (i != 2 && i != 3)
                CHECK_EQ(sm_pool_put(p, a[i]), 0);
        st = stats_of(p);
        CHECK_EQ(st.puts, 12);
        arrays_are(&st, 0, 10 + fresh);

        sm_pool_cycle(p); /* idle arrays become victims: nothing freed yet */
        st = stats_of(p);
        CHECK_EQ(st.cycles, 1);
        CHECK_EQ(st.frees, 0);
        arrays_are(&st, 0, 10 + fresh);
        size_t before = st.reserved_bytes;

        sm_pool_cycle(p); /* the victims go back, and their slab with them */
        st = stats_of(p);
        CHECK_EQ(st.cycles, 2);
        CHECK_EQ(st.frees, 10 + fresh);
        arrays_are(&st, 0, 0);
        CHECK(st.reserved_bytes + 64 * 1024 <= before);
        CHECK_EQ(st.gets, 12);
        CHECK_EQ(st.puts, 12);
        CHECK_EQ(st.news, 10 + fresh);
        sm_pool_free(p);
    }
}

/* Every byte the pool takes is in reserved_bytes: its change follows the
 * counting allocator's exactly (the registry of live objects, which also
 * allocates, does not change while the pool lives). */
static void test_reserved_bytes_follow_the_allocator(void)
{
    for (int l = 0; l < 3; l++) {
        cnt_install();
        sm_pool *p = pool_make(levels[l], 0);
        size_t other = cnt_bytes() - stats_of(p).reserved_bytes;
        enum { N = 3000 };
        void **v = malloc(N * sizeof *v);
        for (int i = 0; i < N; i++)
            v[i] = sm_pool_get(p);
        CHECK_EQ(stats_of(p).reserved_bytes + other, cnt_bytes());
        for (int i = 0; i < N; i += 3)
            CHECK_EQ(sm_pool_put(p, v[i]), 0);
        CHECK_EQ(stats_of(p).reserved_bytes + other, cnt_bytes());
        sm_pool_cycle(p);
        sm_pool_cycle(p);
        CHECK_EQ(stats_of(p).reserved_bytes + other, cnt_bytes());
        for (int i = 0; i < N; i++)
            if (i % 3)
                CHECK_EQ(sm_pool_put(p, v[i]), 0);
        sm_pool_cycle(p);
        sm_pool_cycle(p);
        struct sm_pool_stats st = stats_of(p);
        CHECK_EQ(st.reserved_bytes + other, cnt_bytes());
        CHECK(st.reserved_bytes < 32 * 1024);
        CHECK_EQ(st.frees, N);
        sm_pool_free(p);
        CHECK_EQ(cnt_bytes(), 0);
        free(v);
        cnt_uninstall();
    }
}

/* Arrays Put over max_idle_bytes go back at once, and are counted. */
static void test_frees_count_arrays_over_the_idle_cap(void)
{
    for (int l = 0; l < 3; l++) {
        sm_pool *p = pool_make(levels[l], 8 * ARRAY_BYTES);
        void *a[40];
        for (int i = 0; i < 40; i++)
            a[i] = sm_pool_get(p);
        for (int i = 0; i < 40; i++)
            CHECK_EQ(sm_pool_put(p, a[i]), 0);
        struct sm_pool_stats st = stats_of(p);
        CHECK_EQ(st.gets, 40);
        CHECK_EQ(st.puts, 40);
        CHECK(st.idle_arrays <= 8);
        CHECK_EQ(st.frees + st.idle_arrays, 40);
        CHECK_EQ(st.live_arrays, 0);
        sm_pool_free(p);
    }
}

static void hook_count(void *array, void *ctx)
{
    (void)array;
    (*(int *)ctx)++;
}

/* Pools with hooks and zeroing, and arrays with handles, take other paths. */
static void test_hooks_zeroing_and_handles_are_counted(void)
{
    for (int l = 0; l < 3; l++) {
        int calls = 0;
        sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, LEN),
                          .check = levels[l],
                          .flags = SM_ZERO_ON_GET,
                          .on_new = hook_count,
                          .on_get = hook_count,
                          .on_put = hook_count,
                          .hook_ctx = &calls};
        sm_pool *p = NULL;
        if (!CHECK_EQ(sm_pool_new(&p, &o), 0))
            return;
        void *a[6];
        for (int i = 0; i < 6; i++)
            a[i] = sm_pool_get(p);
        sm_handle h = sm_pool_handle(p, a[0]);
        CHECK(sm_pool_resolve(p, h) == a[0]);
        for (int i = 0; i < 6; i++)
            CHECK_EQ(sm_pool_put(p, a[i]), 0);
        CHECK(sm_pool_resolve(p, h) == NULL);
        a[0] = sm_pool_get(p);
        size_t fresh = levels[l] == SM_CHECK_FULL; /* the 6 are in quarantine */
        struct sm_pool_stats st = stats_of(p);
        CHECK_EQ(st.gets, 7);
        CHECK_EQ(st.puts, 6);
        CHECK_EQ(st.news, 6 + fresh);
        arrays_are(&st, 1, 5 + fresh);
        CHECK_EQ(sm_pool_put(p, a[0]), 0);
        sm_pool_free(p);
    }
}

/* misuse[-code] counts the events the pool raised; a refused Put is not a
 * Put.  At OFF no event is raised, so none is counted. */
static void test_misuse_is_counted_by_code(void)
{
    for (int l = 0; l < 3; l++) {
        ev_install();
        sm_pool *p = pool_make(levels[l], 0);
        int64_t *a = sm_pool_get(p), *b = sm_pool_get(p);
        CHECK_EQ(sm_pool_put(p, a), 0);
        CHECK_EQ(sm_pool_put(p, a), SM_EDOUBLE);
        CHECK_EQ(sm_pool_put(p, a), SM_EDOUBLE);
        CHECK_EQ(sm_pool_put(p, b + 1), SM_EFOREIGN);
        int64_t local[LEN];
        CHECK_EQ(sm_pool_put(p, local), SM_EFOREIGN);
        sm_handle h = sm_pool_handle(p, local);
        CHECK_EQ(h.bits, 0);
        CHECK_EQ(sm_pool_put(p, NULL), SM_EINVAL);
        struct sm_pool_stats st = stats_of(p);
        int raised = levels[l] != SM_CHECK_OFF;
        CHECK_EQ(st.misuse[-SM_EDOUBLE], 2 * raised);
        CHECK_EQ(st.misuse[-SM_EFOREIGN], 3 * raised);
        CHECK_EQ(ev_count(), 5 * raised);
        for (int i = 0; i < SM_NCODES; i++)
            if (i != -SM_EDOUBLE && i != -SM_EFOREIGN)
                CHECK_EQ(st.misuse[i], 0);
        CHECK_EQ(st.gets, 2);
        CHECK_EQ(st.puts, 1);
        arrays_are(&st, 1, 1);
        CHECK_EQ(sm_pool_put(p, b), 0);
        sm_pool_free(p);
        sm_set_handler(NULL, NULL);
    }
}

/* A withdrawn (corrupted) array is neither live nor idle. */
static void test_corruption_is_counted_and_withdrawn(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_FULL, 0);
    int64_t *a = sm_pool_get(p), *b = sm_pool_get(p);
    CHECK_EQ(sm_pool_put(p, a), 0);
    scribble_at(a + 3, 0, 8);
    sm_pool_cycle(p);
    struct sm_pool_stats st = stats_of(p);
    CHECK_EQ(st.misuse[-SM_ECORRUPT], 1);
    CHECK_EQ(ev_count(), 1);
    arrays_are(&st, 1, 0);
    CHECK_EQ(sm_pool_put(p, b), 0);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

/* ---- threads ------------------------------------------------------------ */

enum { ROUNDS = 20000, KEEP = 100 };

typedef struct worker {
    sm_pool *p;
    int rounds;
    void *kept[KEEP];
    int nkept;
    void *handoff[KEEP]; /* got here, put by the other thread */
} worker;

static void *worker_run(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < w->rounds; i++) {
        void *a = sm_pool_get(w->p);
        if (i % (w->rounds / KEEP) == 0 && w->nkept < KEEP) {
            w->handoff[w->nkept] = sm_pool_get(w->p);
            w->kept[w->nkept++] = a;
        } else {
            sm_pool_put(w->p, a);
        }
    }
    return NULL;
}

typedef struct watcher {
    sm_pool *p;
    atomic_int stop;
    int snapshots, backwards;
} watcher;

/* Snapshots while the workers run: gets and puts never go backwards. */
static void *watcher_run(void *arg)
{
    watcher *w = arg;
    uint64_t gets = 0, puts = 0;
    do { /* at least once, however the threads are scheduled */
        struct sm_pool_stats st;
        sm_pool_stats(w->p, &st);
        w->backwards += st.gets < gets || st.puts < puts;
        gets = st.gets;
        puts = st.puts;
        w->snapshots++;
    } while (!atomic_load(&w->stop));
    return NULL;
}

/* Two threads' caches, summed; after they exit, their counts stay. */
static void test_thread_counters_are_summed(void)
{
    int lv[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        sm_pool *p = pool_make(lv[l], 0);
        /* FULL records a stack per call: a microsecond, much more under valgrind. */
        int rounds = lv[l] == SM_CHECK_FULL || tl_under_valgrind ? ROUNDS / 10 : ROUNDS;
        worker w[2];
        memset(w, 0, sizeof w);
        watcher wt;
        memset(&wt, 0, sizeof wt);
        wt.p = p;
        atomic_init(&wt.stop, 0);
        pthread_t t[2], tw;
        pthread_create(&tw, NULL, watcher_run, &wt);
        for (int i = 0; i < 2; i++) {
            w[i].p = p;
            w[i].rounds = rounds;
            pthread_create(&t[i], NULL, worker_run, &w[i]);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        atomic_store(&wt.stop, 1);
        pthread_join(tw, NULL);
        CHECK(wt.snapshots > 0);
        CHECK_EQ(wt.backwards, 0);

        /* Each worker got rounds + KEEP arrays and put back rounds - KEEP. */
        struct sm_pool_stats st = stats_of(p);
        CHECK_EQ(st.gets, 2 * (rounds + KEEP));
        CHECK_EQ(st.puts, 2 * (rounds - KEEP));
        CHECK_EQ(st.live_arrays, 4 * KEEP);
        /* Now each thread's arrays go back from this one. */
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < w[i].nkept; k++) {
                CHECK_EQ(sm_pool_put(p, w[i].kept[k]), 0);
                CHECK_EQ(sm_pool_put(p, w[i].handoff[k]), 0);
            }
        st = stats_of(p);
        CHECK_EQ(st.gets, 2 * (rounds + KEEP));
        CHECK_EQ(st.puts, 2 * (rounds + KEEP));
        CHECK_EQ(st.live_arrays, 0);
        CHECK_EQ(st.idle_arrays + st.frees, st.news);
        sm_pool_free(p);
    }
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_stats_null_arguments_are_einval);
    RUN(test_new_pool_counts_nothing);
    RUN(test_default_check_level_is_resolved);
    RUN(test_stats_follow_gets_puts_and_cycles);
    RUN(test_reserved_bytes_follow_the_allocator);
    RUN(test_frees_count_arrays_over_the_idle_cap);
    RUN(test_hooks_zeroing_and_handles_are_counted);
    RUN(test_misuse_is_counted_by_code);
    RUN(test_corruption_is_counted_and_withdrawn);
    RUN(test_thread_counters_are_summed);
    return tl_finish();
}
