/*
 * test_map_threads.c - two threads writing one map are reported as SM_EBUSY.
 *
 * Concern: the concurrent-writer detector (Go's "concurrent map writes"),
 * at SM_CHECK_CHEAP and above.
 *
 * Deterministic: an allocator that blocks holds thread A inside an
 * sm_map_put that allocates; the main thread then calls every mutating
 * function (and sm_map_get) on the same map.  Each must return SM_EBUSY (NULL
 * from upsert) with an event naming the map, and must change nothing; then
 * A is released and its put completes.
 *
 * Probabilistic: two threads hammer puts on one map with the recording
 * handler installed until an SM_EBUSY is seen, or fail after a few seconds.
 * Every put that returned 0 must be in the map afterwards and every put that
 * returned SM_EBUSY must not: the losing call changed nothing.
 */
#include "support.h"
#include "testlib.h"

#include <signal.h>
#include <unistd.h>

typedef int64_t row[8];
#define ROW SM_LAYOUT(int64_t, 8)

static void make_row(row r, int64_t key)
{
    for (int i = 0; i < 8; i++)
        r[i] = key + i;
}

/* ---- An allocator with a gate ------------------------------------------------ */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_armed;   /* the next allocation by gate_thread waits */
static int gate_blocked; /* gate_thread is waiting inside the allocator */
static int gate_open;
static pthread_t gate_thread;

static void *gate_alloc(size_t size, size_t align, void *ctx)
{
    pthread_mutex_lock(&gate_mu);
    if (gate_armed && pthread_equal(pthread_self(), gate_thread)) {
        gate_armed = 0;
        gate_blocked = 1;
        pthread_cond_broadcast(&gate_cv);
        while (!gate_open)
            pthread_cond_wait(&gate_cv, &gate_mu);
    }
    pthread_mutex_unlock(&gate_mu);
    return cnt_alloc(size, align, ctx);
}

static void gate_install(void)
{
    cnt_install(); /* resets the counters */
    sm_allocator a = {gate_alloc, cnt_free, NULL};
    sm_set_allocator(&a);
    gate_armed = gate_blocked = gate_open = 0;
}

typedef struct writer_a {
    sm_map *map;
    int64_t next_key; /* keys put: 1 .. next_key - 1 */
    int bad_rc;
} writer_a;

/* Thread A: arms the gate for itself and puts new keys until one put has
 * allocated (and so waited at the gate) and returned. */
static void *writer_a_main(void *arg)
{
    writer_a *w = arg;
    pthread_mutex_lock(&gate_mu);
    gate_thread = pthread_self();
    gate_armed = 1;
    pthread_mutex_unlock(&gate_mu);
    row r;
    for (w->next_key = 1; w->next_key < 10000000; w->next_key++) {
        make_row(r, w->next_key);
        int rc = sm_map_put(w->map, w->next_key, r);
        if (rc != 0)
            w->bad_rc = rc;
        pthread_mutex_lock(&gate_mu);
        int done = gate_open;
        pthread_mutex_unlock(&gate_mu);
        if (done) {
            w->next_key++;
            break;
        }
    }
    return NULL;
}

static int all_sevens(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0x77)
            return 0;
    return 1;
}

static void expect_busy_event(sm_map *m, const char *call)
{
    if (!CHECK_EQ(ev_count(), 1) || !CHECK_EQ(evlog.last.code, SM_EBUSY) ||
        !CHECK(evlog.last.object == m))
        printf("  after %s: %d events, last code %d\n", call, ev_count(), evlog.last.code);
    ev_reset();
}

static void busy_while_a_allocates(int check)
{
    gate_install();
    ev_install();
    sm_map_opts o = {.layout = ROW, .storage = SM_INLINE, .check = check};
    sm_map *m = NULL;
    if (!CHECK_EQ(sm_map_new(&m, &o), 0))
        return;
    row r;
    make_row(r, 0);
    CHECK_EQ(sm_map_put(m, 0, r), 0);

    writer_a w = {m, 0, 0};
    pthread_t a;
    if (!CHECK_EQ(pthread_create(&a, NULL, writer_a_main, &w), 0)) {
        sm_map_free(m);
        return;
    }
    pthread_mutex_lock(&gate_mu);
    while (!gate_blocked)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);

    /* A is inside sm_map_put.  Every mutation from here is a second writer. */
    make_row(r, -5);
    CHECK_EQ(sm_map_put(m, -5, r), SM_EBUSY);
    expect_busy_event(m, "sm_map_put");
    CHECK_EQ(sm_map_put(m, 0, r), SM_EBUSY); /* replacing too */
    expect_busy_event(m, "sm_map_put (replace)");
    CHECK_EQ(sm_map_del(m, 0), SM_EBUSY);
    expect_busy_event(m, "sm_map_del");
    int inserted = -1;
    CHECK(sm_map_upsert(m, -6, &inserted) == NULL);
    expect_busy_event(m, "sm_map_upsert");
    CHECK_EQ(sm_map_reserve(m, 100000), SM_EBUSY);
    expect_busy_event(m, "sm_map_reserve");
    sm_map_clear(m);
    expect_busy_event(m, "sm_map_clear");
    row out;
    memset(out, 0x77, sizeof out);
    CHECK_EQ(sm_map_get(m, 0, out), SM_EBUSY); /* a reader during a write */
    expect_busy_event(m, "sm_map_get");
    CHECK(all_sevens(out, sizeof out));

    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    pthread_join(a, NULL);

    /* A's puts all happened; none of the second writer's did. */
    CHECK_EQ(w.bad_rc, 0);
    CHECK_EQ(ev_count(), 0);
    CHECK_EQ(sm_map_len(m), (size_t)w.next_key);
    CHECK_EQ(sm_map_verify(m), 0);
    CHECK(sm_map_find(m, -5) == NULL);
    CHECK(sm_map_find(m, -6) == NULL);
    for (int64_t k = 0; k < w.next_key; k++) {
        row want;
        make_row(want, k);
        void *p = sm_map_find(m, k);
        CHECK(p && memcmp(p, want, sizeof want) == 0);
    }
    /* The map is usable again from this thread. */
    CHECK_EQ(sm_map_put(m, -5, r), 0);
    CHECK_EQ(sm_map_del(m, 0), 0);
    CHECK_EQ(ev_count(), 0);
    sm_map_free(m);
    CHECK_EQ(cnt_blocks(), 0);
    cnt_uninstall();
}

static void test_second_writer_is_busy_at_cheap(void)
{
    busy_while_a_allocates(SM_CHECK_CHEAP);
}

static void test_second_writer_is_busy_at_full(void)
{
    busy_while_a_allocates(SM_CHECK_FULL);
}

static void test_second_writer_is_busy_at_default(void)
{
    busy_while_a_allocates(SM_CHECK_DEFAULT);
}

/* ---- Two threads hammering --------------------------------------------------- */

#define ROUND_KEYS 200000

typedef struct hammer {
    sm_map *map;
    int64_t base;
    unsigned char *rc; /* per key: 0 put, 1 busy, 2 other */
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    row r;
    for (int64_t i = 0; i < ROUND_KEYS; i++) {
        make_row(r, h->base + i);
        int rc = sm_map_put(h->map, h->base + i, r);
        h->rc[i] = rc == 0 ? 0 : rc == SM_EBUSY ? 1 : 2;
    }
    return NULL;
}

static void test_two_threads_putting_see_busy(void)
{
    cnt_install();
    ev_install();
    int busy_seen = 0;
    double deadline = tl_now() + 5.0;
    unsigned char *rc[2] = {malloc(ROUND_KEYS), malloc(ROUND_KEYS)};
    for (int round = 0; !busy_seen && tl_now() < deadline; round++) {
        sm_map_opts o = {.layout = ROW, .storage = SM_INLINE, .check = SM_CHECK_CHEAP};
        sm_map *m = NULL;
        if (!CHECK_EQ(sm_map_new(&m, &o), 0))
            break;
        hammer h[2] = {{m, 0, rc[0]}, {m, (int64_t)1 << 40, rc[1]}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            CHECK_EQ(pthread_create(&t[i], NULL, hammer_main, &h[i]), 0);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);

        size_t put = 0, busy = 0, other = 0;
        for (int i = 0; i < 2; i++)
            for (int64_t k = 0; k < ROUND_KEYS; k++) {
                void *p = sm_map_find(m, h[i].base + k);
                switch (rc[i][k]) {
                case 0:
                    put++;
                    CHECK(p != NULL);
                    break;
                case 1:
                    busy++;
                    CHECK(p == NULL);
                    break;
                default:
                    other++;
                    break;
                }
            }
        CHECK_EQ(other, 0);
        CHECK_EQ(sm_map_len(m), put);
        CHECK_EQ(sm_map_verify(m), 0);
        CHECK_EQ(ev_count(), (int)busy);
        if (busy) {
            busy_seen = 1;
            CHECK_EQ(evlog.first.code, SM_EBUSY);
            CHECK(evlog.first.object == m);
            printf("  round %d: %zu puts, %zu SM_EBUSY\n", round, put, busy);
        }
        ev_reset();
        sm_map_free(m);
        if (tl_current_failures)
            break;
    }
    CHECK(busy_seen);
    free(rc[0]);
    free(rc[1]);
    CHECK_EQ(cnt_blocks(), 0);
    cnt_uninstall();
}

/* A map corrupted by two writers that both got in can loop forever; fail
 * in bounded time instead of waiting for the CTest timeout. */
/* ---- A map handed between threads ------------------------------------------ */

#define HANDOFF_TURNS 200 /* past the point where a map stops being biased */
#define TURN_PUTS 50

typedef struct turns {
    sm_map *map;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int turn; /* 0..2*HANDOFF_TURNS: thread turn % 2 writes */
    int bad;  /* calls that did not return 0 */
} turns;

typedef struct turn_arg {
    turns *t;
    int me;
} turn_arg;

/* Writes on its turns only, under the mutex: a legal hand-off each turn. */
static void *turn_main(void *arg)
{
    turn_arg *a = arg;
    turns *t = a->t;
    row r;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (t->turn < 2 * HANDOFF_TURNS && t->turn % 2 != a->me)
            pthread_cond_wait(&t->cv, &t->mu);
        if (t->turn >= 2 * HANDOFF_TURNS)
            break;
        for (int i = 0; i < TURN_PUTS; i++) {
            int64_t key = (int64_t)t->turn * TURN_PUTS + i;
            make_row(r, key);
            t->bad += sm_map_put(t->map, key, r) != 0;
        }
        if (t->turn > 0) /* and one delete of the other thread's keys */
            t->bad += sm_map_del(t->map, (int64_t)(t->turn - 1) * TURN_PUTS) != 0;
        t->turn++;
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* A map handed back and forth under a mutex (400 hand-offs: biased to
 * each writer in turn, then no longer biased) is never reported busy and
 * keeps every write. */
static void test_map_handed_between_threads_under_a_mutex_reports_nothing(void)
{
    ev_install();
    sm_map_opts o = {.layout = ROW, .storage = SM_INLINE, .check = SM_CHECK_CHEAP};
    turns t = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    if (!CHECK_EQ(sm_map_new(&t.map, &o), 0))
        return;
    turn_arg args[2] = {{&t, 0}, {&t, 1}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, turn_main, &args[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(t.bad, 0);
    CHECK_EQ(ev_count(), 0);
    CHECK_EQ(sm_map_len(t.map), (size_t)(2 * HANDOFF_TURNS * TURN_PUTS - (2 * HANDOFF_TURNS - 1)));
    CHECK_EQ(sm_map_verify(t.map), 0);
    row r;
    CHECK_EQ(sm_map_get(t.map, 1, r), 0);
    CHECK_EQ(r[0], 1);
    CHECK_EQ(sm_map_get(t.map, 0, r), SM_ENOENT);

    /* No longer biased: two threads racing are still kept apart. */
    int busy_seen = 0;
    unsigned char *rc[2] = {malloc(ROUND_KEYS), malloc(ROUND_KEYS)};
    double deadline = tl_now() + 5.0;
    for (int round = 1; !busy_seen && tl_now() < deadline; round++) {
        hammer h[2] = {{t.map, (int64_t)round << 42, rc[0]},
                       {t.map, ((int64_t)round << 42) + ((int64_t)1 << 40), rc[1]}};
        pthread_t w[2];
        size_t before = sm_map_len(t.map), put = 0;
        for (int i = 0; i < 2; i++)
            CHECK_EQ(pthread_create(&w[i], NULL, hammer_main, &h[i]), 0);
        for (int i = 0; i < 2; i++)
            pthread_join(w[i], NULL);
        for (int i = 0; i < 2; i++)
            for (int64_t k = 0; k < ROUND_KEYS; k++) {
                put += rc[i][k] == 0;
                busy_seen |= rc[i][k] == 1;
                CHECK(rc[i][k] != 2);
            }
        CHECK_EQ(sm_map_len(t.map), before + put);
        CHECK_EQ(sm_map_verify(t.map), 0);
        if (tl_current_failures)
            break;
    }
    CHECK(busy_seen);
    ev_reset();
    free(rc[0]);
    free(rc[1]);
    sm_map_free(t.map);
}

/* ---- Readers only ------------------------------------------------------------ */

typedef struct reader_job {
    sm_map *map;
    size_t n;
    size_t visited, found;
} reader_job;

static void *reader_main(void *arg)
{
    reader_job *j = arg;
    for (int pass = 0; pass < 3; pass++) {
        sm_iter it = sm_map_iter(j->map);
        int64_t key;
        void *v;
        while (sm_iter_next(&it, &key, &v) == 1)
            j->visited += ((const int64_t *)v)[0] == key;
        row r;
        for (size_t i = 0; i < j->n; i++)
            j->found += sm_map_get(j->map, (int64_t)i, r) == 0 && r[0] == (int64_t)i;
    }
    return NULL;
}

/* Several threads only reading one map (iterating and getting) share
 * nothing they write: the iterators keep their state to themselves.  Under
 * ThreadSanitizer this test fails on any data race; elsewhere it checks
 * that every reader saw every entry each pass. */
static void test_readers_only_share_nothing_they_write(void)
{
    sm_map_opts o = {.layout = ROW, .storage = SM_INLINE, .check = SM_CHECK_CHEAP};
    sm_map *m = NULL;
    if (!CHECK_EQ(sm_map_new(&m, &o), 0))
        return;
    size_t n = 20000;
    row r;
    for (size_t i = 0; i < n; i++) {
        make_row(r, (int64_t)i);
        CHECK_EQ(sm_map_put(m, (int64_t)i, r), 0);
    }
    reader_job jobs[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (reader_job){.map = m, .n = n};
        CHECK_EQ(pthread_create(&t[i], NULL, reader_main, &jobs[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(jobs[i].visited, 3 * n);
        CHECK_EQ(jobs[i].found, 3 * n);
    }
    sm_map_free(m);
}

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "test_map_threads: watchdog: no progress in 60 s (a hang)\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(1);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    signal(SIGALRM, watchdog);
    alarm(60);
    unsetenv("SAFEMAP_CHECK"); /* SM_CHECK_DEFAULT means SM_CHECK_CHEAP here */
    RUN(test_second_writer_is_busy_at_cheap);
    RUN(test_second_writer_is_busy_at_full);
    RUN(test_second_writer_is_busy_at_default);
    RUN(test_two_threads_putting_see_busy);
    RUN(test_map_handed_between_threads_under_a_mutex_reports_nothing);
    RUN(test_readers_only_share_nothing_they_write);
    sm_set_handler(NULL, NULL);
    return tl_finish();
}
