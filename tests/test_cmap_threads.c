/*
 * test_cmap_threads.c - the concurrent map with readers and writers racing.
 *
 * Concern: what sm_cmap promises when threads overlap.  Readers never see a
 * torn value or one that was never stored, while a writer grows the map to a
 * million entries and shrinks it back; writers on one map lose nothing;
 * iteration sees every stable entry exactly once while others churn; the
 * memory waiting for readers stays bounded even while a reader holds a read
 * section open; a thread that dies inside a section does not block
 * reclamation.  Every value carries its own check: element i is derived
 * from the key, a version and i, so a value torn between two writes, or
 * taken from another key's slot, fails.
 *
 * Run it under ThreadSanitizer too (the build's SM_TSAN option): the sizes
 * shrink there, the races it looks for do not.  --scale=X multiplies the
 * work.  The linearizability and stale-read tests are
 * test_cmap_thread_linear.c and test_cmap_thread_torn.c.
 */
#include "support.h"
#include "testlib.h"

#include <sched.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if SM_HAVE_TSAN
enum { SLOW = 10 }; /* TSan costs 5-15x: one tenth of the work */
#else
enum { SLOW = 1 };
#endif

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};
    nanosleep(&ts, NULL);
}

typedef int64_t row[8];
#define ROW SM_LAYOUT(int64_t, 8)

/* Element 0 is the version; the others are derived from key, version and
 * position. */
static void make_row(row r, int64_t key, int64_t version)
{
    r[0] = version;
    for (int i = 1; i < 8; i++)
        r[i] =
            (int64_t)splitmix64((uint64_t)key * 1000003u + (uint64_t)version * 31u + (uint64_t)i);
}

static int row_ok(const row r, int64_t key)
{
    row want;
    make_row(want, key, r[0]);
    return memcmp(r, want, sizeof want) == 0;
}

static sm_cmap *new_cmap(void)
{
    sm_map_opts o = {.layout = ROW, .name = "threads"};
    sm_cmap *cm = NULL;
    if (!CHECK_EQ(sm_cmap_new(&cm, &o), 0))
        return NULL;
    return cm;
}

/* ---- Readers ------------------------------------------------------------- */

typedef struct reader {
    pthread_t tid;
    sm_cmap *cm;
    int64_t span;        /* keys 0 .. span-1 */
    int64_t max_version; /* no value may carry a later version */
    atomic_int *stop;
    uint64_t seed;
    size_t hits, misses, torn, impossible;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    rng g = {r->seed};
    while (!atomic_load_explicit(r->stop, memory_order_relaxed)) {
        int64_t key = (int64_t)rng_below(&g, (uint64_t)r->span);
        row v;
        int rc = sm_cmap_get(r->cm, key, v);
        if (rc == SM_ENOENT) {
            r->misses++;
        } else if (rc != 0) {
            r->impossible++;
        } else {
            r->hits++;
            if (!row_ok(v, key))
                r->torn++;
            else if (v[0] < 1 || v[0] > r->max_version)
                r->impossible++;
        }
    }
    return NULL;
}

static void readers_start(reader *rs, int n, sm_cmap *cm, int64_t span, int64_t max_version,
                          atomic_int *stop)
{
    for (int i = 0; i < n; i++) {
        rs[i] = (reader){.cm = cm,
                         .span = span,
                         .max_version = max_version,
                         .stop = stop,
                         .seed = 77 + (uint64_t)i};
        pthread_create(&rs[i].tid, NULL, reader_main, &rs[i]);
    }
}

/* Stops and joins the readers; checks what they saw. */
static void readers_finish(reader *rs, int n, atomic_int *stop)
{
    atomic_store(stop, 1);
    size_t hits = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(rs[i].tid, NULL);
        CHECK_EQ(rs[i].torn, 0);
        CHECK_EQ(rs[i].impossible, 0);
        hits += rs[i].hits;
    }
    CHECK(hits > 0); /* the readers really read values */
}

/* ---- Growth to a million and back, with readers --------------------------- */

static void grow_and_shrink_under_readers(sm_cmap *cm, int64_t n)
{
    atomic_int stop = 0;
    reader rs[2];
    readers_start(rs, 2, cm, n, 3, &stop);
    row v;
    /* Version 1 on the way up, 2 for a rewrite of every third key, 3 for
     * updates through sm_cmap_update; then everything goes. */
    for (int64_t k = 0; k < n; k++) {
        make_row(v, k, 1);
        if (!CHECK_EQ(sm_cmap_put(cm, k, v), 0))
            break;
    }
    struct sm_cmap_stats big;
    sm_cmap_stats(cm, &big);
    for (int64_t k = 0; k < n; k += 3) {
        make_row(v, k, 2);
        CHECK_EQ(sm_cmap_put(cm, k, v), 0);
    }
    CHECK_EQ(sm_cmap_len(cm), (size_t)n);
    CHECK_EQ(sm_cmap_verify(cm), 0);
    for (int64_t k = 0; k < n; k++)
        if (!CHECK_EQ(sm_cmap_del(cm, k), 0))
            break;
    readers_finish(rs, 2, &stop);
    struct sm_cmap_stats small;
    sm_cmap_stats(cm, &small);
    CHECK(big.splits > 0 && big.dir_doublings > 0);
    CHECK(small.merges > 0 && small.dir_halvings > 0);
    CHECK_EQ(small.len, 0);
    CHECK(small.segments <= 2);
    /* The bound follows the map's size; it was largest at the top. */
    CHECK(small.limbo_peak_bytes <= big.limbo_bound_bytes + 4 * (big.bytes / big.segments));
    CHECK_EQ(sm_cmap_verify(cm), 0);
    size_t reads = 0;
    for (int i = 0; i < 2; i++)
        reads += rs[i].hits + rs[i].misses;
    printf("  %lld keys: %zu segments and %.1f B per entry at the top; %zu reads, %llu "
           "retried; limbo peak %zu B (bound %zu B), %llu grace waits\n",
           (long long)n, big.segments, (double)big.bytes / (double)big.len, reads,
           (unsigned long long)small.read_retries, small.limbo_peak_bytes, big.limbo_bound_bytes,
           (unsigned long long)small.grace_waits);
}

static void test_readers_never_see_torn_values_through_growth_and_shrink(void)
{
    sm_cmap *cm = new_cmap();
    if (!cm)
        return;
    grow_and_shrink_under_readers(
        cm, (int64_t)tl_scaled(1000000 / SLOW / (tl_under_valgrind ? 20 : 1)));
    sm_cmap_free(cm);
}

/* The same with SM_POOLED storage: every put replaces the array (copy on
 * write) and the old one goes back to the pool after its readers. */
static void test_pooled_readers_never_see_torn_values(void)
{
    sm_pool_opts po = {.layout = ROW};
    sm_pool *p = NULL;
    if (!CHECK_EQ(sm_pool_new(&p, &po), 0))
        return;
    sm_map_opts o = {.layout = ROW, .storage = SM_POOLED, .pool = p, .name = "pooled"};
    sm_cmap *cm = NULL;
    if (CHECK_EQ(sm_cmap_new(&cm, &o), 0)) {
        grow_and_shrink_under_readers(cm, (int64_t)tl_scaled(300000 / SLOW));
        sm_cmap_free(cm);
        struct sm_pool_stats st;
        sm_pool_stats(p, &st);
        CHECK_EQ(st.live_arrays, 0);
    }
    sm_pool_free(p);
}

/* ---- Two writers, two readers ------------------------------------------- */

typedef struct writer {
    pthread_t tid;
    sm_cmap *cm;
    int64_t first, span, stride; /* keys first, first+stride, ... below span */
    size_t rounds;
    uint8_t *present; /* by key index: what this writer left */
    int64_t *version;
    size_t errors;
} writer;

static void bump(void *value, int inserted, void *ctx)
{
    int64_t key = *(int64_t *)ctx;
    int64_t *v = value;
    make_row(v, key, inserted ? 1 : v[0] + 1);
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    rng g = {(uint64_t)w->first + 5};
    size_t nkeys = (size_t)((w->span - w->first + w->stride - 1) / w->stride);
    for (size_t r = 0; r < w->rounds; r++) {
        size_t idx = (size_t)rng_below(&g, nkeys);
        int64_t key = w->first + (int64_t)idx * w->stride;
        uint64_t what = rng_below(&g, 10);
        if (what < 5) {
            row v;
            make_row(v, key, ++w->version[idx]);
            w->errors += sm_cmap_put(w->cm, key, v) != 0;
            w->present[idx] = 1;
        } else if (what < 8) {
            int rc = sm_cmap_del(w->cm, key);
            w->errors += rc != (w->present[idx] ? 0 : SM_ENOENT);
            w->present[idx] = 0;
        } else {
            w->errors += sm_cmap_update(w->cm, key, bump, &key) != 0;
            w->version[idx] = w->present[idx] ? w->version[idx] + 1 : 1;
            w->present[idx] = 1;
        }
    }
    return NULL;
}

static void test_writers_and_readers_share_one_map(void)
{
    sm_cmap *cm = new_cmap();
    if (!cm)
        return;
    int64_t span = 200000 / SLOW;
    size_t rounds = tl_scaled(600000 / SLOW);
    writer ws[2];
    for (int i = 0; i < 2; i++) {
        size_t nkeys = (size_t)span / 2;
        ws[i] = (writer){.cm = cm,
                         .first = i,
                         .span = span,
                         .stride = 2,
                         .rounds = rounds,
                         .present = calloc(nkeys, 1),
                         .version = calloc(nkeys, sizeof(int64_t))};
    }
    atomic_int stop = 0;
    reader rs[2];
    readers_start(rs, 2, cm, span, INT64_MAX, &stop);
    for (int i = 0; i < 2; i++)
        pthread_create(&ws[i].tid, NULL, writer_main, &ws[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(ws[i].tid, NULL);
    readers_finish(rs, 2, &stop);
    /* The map holds exactly what the writers left, at their last versions. */
    size_t expect = 0;
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(ws[i].errors, 0);
        for (size_t idx = 0; idx < (size_t)span / 2; idx++) {
            int64_t key = ws[i].first + (int64_t)idx * 2;
            row v;
            int rc = sm_cmap_get(cm, key, v);
            if (ws[i].present[idx]) {
                expect++;
                if (!CHECK_EQ(rc, 0) || !CHECK(row_ok(v, key)) ||
                    !CHECK_EQ(v[0], ws[i].version[idx]))
                    break;
            } else if (!CHECK_EQ(rc, SM_ENOENT)) {
                break;
            }
        }
        free(ws[i].present);
        free(ws[i].version);
    }
    CHECK_EQ(sm_cmap_len(cm), expect);
    CHECK_EQ(sm_cmap_verify(cm), 0);
    sm_cmap_free(cm);
}

/* ---- Updates are atomic ------------------------------------------------- */

enum { HOT_KEYS = 64, UPDATERS = 4 };

typedef struct updater {
    pthread_t tid;
    sm_cmap *cm;
    size_t rounds;
} updater;

static void add_one(void *value, int inserted, void *ctx)
{
    (void)inserted;
    (void)ctx;
    int64_t *v = value;
    for (int i = 0; i < 8; i++)
        v[i] += 1;
}

static void *updater_main(void *arg)
{
    updater *u = arg;
    for (size_t r = 0; r < u->rounds; r++)
        sm_cmap_update(u->cm, (int64_t)(r % HOT_KEYS), add_one, NULL);
    return NULL;
}

static void test_concurrent_updates_lose_nothing(void)
{
    sm_cmap *cm = new_cmap();
    if (!cm)
        return;
    size_t rounds = tl_scaled(100000 / SLOW) / HOT_KEYS * HOT_KEYS;
    updater us[UPDATERS];
    for (int i = 0; i < UPDATERS; i++) {
        us[i] = (updater){.cm = cm, .rounds = rounds};
        pthread_create(&us[i].tid, NULL, updater_main, &us[i]);
    }
    for (int i = 0; i < UPDATERS; i++)
        pthread_join(us[i].tid, NULL);
    int64_t want = (int64_t)(rounds / HOT_KEYS * UPDATERS);
    for (int64_t k = 0; k < HOT_KEYS; k++) {
        row v;
        if (!CHECK_EQ(sm_cmap_get(cm, k, v), 0))
            break;
        for (int i = 0; i < 8; i++)
            CHECK_EQ(v[i], want);
    }
    CHECK_EQ(sm_cmap_len(cm), HOT_KEYS);
    sm_cmap_free(cm);
}

/* ---- Iteration while writers churn ----------------------------------------- */

typedef struct churner {
    pthread_t tid;
    sm_cmap *cm;
    int64_t base, span;
    atomic_int *stop;
    size_t passes;
} churner;

/* Fills and empties a key range again and again: segments split and merge
 * under the iteration. */
static void *churner_main(void *arg)
{
    churner *c = arg;
    row v;
    while (!atomic_load(c->stop)) {
        for (int64_t k = c->base; k < c->base + c->span; k++) {
            make_row(v, k, 1);
            sm_cmap_put(c->cm, k, v);
        }
        for (int64_t k = c->base; k < c->base + c->span; k++)
            sm_cmap_del(c->cm, k);
        c->passes++;
    }
    return NULL;
}

typedef struct seen {
    uint8_t *count; /* per stable key */
    int64_t stable;
    size_t bad;
} seen;

static int count_stable(int64_t key, const void *value, void *ctx)
{
    seen *s = ctx;
    if (!row_ok(value, key))
        s->bad++;
    if (key >= 0 && key < s->stable && s->count[key] < 255)
        s->count[key]++;
    return 0;
}

static void test_each_sees_stable_entries_exactly_once_under_churn(void)
{
    sm_cmap *cm = new_cmap();
    if (!cm)
        return;
    int64_t stable = 40000 / SLOW;
    row v;
    for (int64_t k = 0; k < stable; k++) {
        make_row(v, k, 1);
        CHECK_EQ(sm_cmap_put(cm, k, v), 0);
    }
    atomic_int stop = 0;
    churner c = {.cm = cm, .base = 1 << 30, .span = 60000 / SLOW, .stop = &stop};
    pthread_create(&c.tid, NULL, churner_main, &c);
    seen s = {calloc((size_t)stable, 1), stable, 0};
    int passes = 0;
    double until = tl_now() + 1.0;
    while (passes < 3 || (tl_now() < until && passes < 50)) {
        memset(s.count, 0, (size_t)stable);
        CHECK_EQ(sm_cmap_each(cm, count_stable, &s), 0);
        size_t wrong = 0;
        for (int64_t k = 0; k < stable; k++)
            wrong += s.count[k] != 1;
        if (!CHECK_EQ(wrong, 0))
            break;
        passes++;
    }
    atomic_store(&stop, 1);
    pthread_join(c.tid, NULL);
    CHECK_EQ(s.bad, 0);
    CHECK(c.passes > 0); /* the churn really overlapped the passes */
    free(s.count);
    CHECK_EQ(sm_cmap_verify(cm), 0);
    sm_cmap_free(cm);
}

/* ---- Bounded limbo while a reader holds a section --------------------------- */

typedef struct holder {
    pthread_t tid;
    sm_cmap *cm;
    atomic_int opened, release;
    int exit_inside; /* leave the thread without ending the section */
} holder;

static void *holder_main(void *arg)
{
    holder *h = arg;
    sm_cmap_read_begin(h->cm);
    atomic_store(&h->opened, 1);
    if (h->exit_inside)
        return NULL;
    while (!atomic_load(&h->release))
        sleep_ms(1);
    sm_cmap_read_end(h->cm);
    return NULL;
}

typedef struct grower {
    pthread_t tid;
    sm_cmap *cm;
    int64_t n;
    atomic_llong done;
} grower;

static void *grower_main(void *arg)
{
    grower *g = arg;
    row v;
    for (int64_t k = 0; k < g->n; k++) {
        make_row(v, k, 1);
        sm_cmap_put(g->cm, k, v);
        atomic_store_explicit(&g->done, k + 1, memory_order_relaxed);
    }
    return NULL;
}

static void test_writer_waits_for_an_open_section_at_the_limbo_bound(void)
{
    sm_cmap *cm = new_cmap();
    if (!cm)
        return;
    holder h = {.cm = cm};
    pthread_create(&h.tid, NULL, holder_main, &h);
    while (!atomic_load(&h.opened))
        sleep_ms(1);
    grower g = {.cm = cm, .n = 400000 / SLOW};
    pthread_create(&g.tid, NULL, grower_main, &g);
    /* The writer retires segments that the open section may see, so the
     * limbo fills to its bound and the writer then waits. */
    long long last = -1;
    int still = 0;
    double give_up = tl_now() + 30;
    while (still < 20 && tl_now() < give_up) {
        sleep_ms(5);
        long long now = atomic_load(&g.done);
        still = now == last && now < g.n ? still + 1 : 0;
        last = now;
    }
    struct sm_cmap_stats st;
    sm_cmap_stats(cm, &st);
    CHECK(last < g.n); /* held up by the section */
    CHECK(st.limbo_bytes >= st.limbo_bound_bytes);
    size_t seg_bytes = st.bytes / (st.segments + st.limbo_objects);
    CHECK(st.limbo_bytes <= st.limbo_bound_bytes + 4 * seg_bytes);
    atomic_store(&h.release, 1);
    pthread_join(h.tid, NULL);
    pthread_join(g.tid, NULL);
    sm_cmap_stats(cm, &st);
    CHECK_EQ(st.len, (size_t)g.n);
    CHECK(st.grace_waits > 0);
    CHECK(st.limbo_peak_bytes <= st.limbo_bound_bytes + 4 * seg_bytes);
    sm_cmap_free(cm);
}

static void test_thread_exiting_inside_a_section_does_not_block_reclamation(void)
{
    sm_cmap *cm = new_cmap();
    if (!cm)
        return;
    holder h = {.cm = cm, .exit_inside = 1};
    pthread_create(&h.tid, NULL, holder_main, &h);
    pthread_join(h.tid, NULL);
    grower g = {.cm = cm, .n = 300000 / SLOW};
    pthread_create(&g.tid, NULL, grower_main, &g);
    double give_up = tl_now() + 60;
    while (atomic_load(&g.done) < g.n && tl_now() < give_up)
        sleep_ms(5);
    CHECK_EQ(atomic_load(&g.done), g.n); /* a writer that needed a grace period got one */
    if (atomic_load(&g.done) < g.n) {
        printf("  the writer is stuck waiting for a dead thread: giving up\n");
        exit(1);
    }
    pthread_join(g.tid, NULL);
    struct sm_cmap_stats st;
    sm_cmap_stats(cm, &st);
    CHECK(st.grace_waits > 0 || st.reclaimed > 0);
    sm_cmap_free(cm);
}

/* fork() while another thread is inside a read section: in the child that
 * thread is gone, and a writer needing a grace period must not wait for it. */
static void test_child_of_fork_is_not_held_by_a_parent_thread_section(void)
{
#if SM_HAVE_TSAN
    SKIP("ThreadSanitizer does not support fork() with other threads running");
#else
    sm_cmap *cm = new_cmap();
    if (!cm)
        return;
    holder h = {.cm = cm};
    pthread_create(&h.tid, NULL, holder_main, &h);
    while (!atomic_load(&h.opened))
        sleep_ms(1);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        /* Growing retires segments: were the dead thread's record still
         * counted, nothing would be reclaimed and, past the limbo bound,
         * the writer would wait for it forever (the alarm ends that). */
        alarm(30);
        grower g = {.cm = cm, .n = 300000 / SLOW};
        grower_main(&g);
        struct sm_cmap_stats st;
        sm_cmap_stats(cm, &st);
        _exit(st.len == (size_t)g.n && st.reclaimed > 0 ? 0 : 3);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    atomic_store(&h.release, 1);
    pthread_join(h.tid, NULL);
    sm_cmap_free(cm);
#endif
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_readers_never_see_torn_values_through_growth_and_shrink);
    RUN(test_pooled_readers_never_see_torn_values);
    RUN(test_writers_and_readers_share_one_map);
    RUN(test_concurrent_updates_lose_nothing);
    RUN(test_each_sees_stable_entries_exactly_once_under_churn);
    RUN(test_writer_waits_for_an_open_section_at_the_limbo_bound);
    RUN(test_thread_exiting_inside_a_section_does_not_block_reclamation);
    RUN(test_child_of_fork_is_not_held_by_a_parent_thread_section);
    return tl_finish();
}
