/*
 * test_typed_cmap.c - SM_TYPED_CMAP, the typed front-end of the concurrent
 * map, used as intended.
 *
 * Concern: SM_TYPED_CMAP(live, int64_t, 8) defines functions over
 * int64_t (*)[8] that behave like the sm_cmap_* calls they wrap: put, get,
 * del, len, the typed read-modify-write (update) and walk (each) callbacks,
 * read sections and find, stats, verify and creation with options (values
 * in a typed pool included); and the typed map serves several threads at
 * once as sm_cmap does.  That a wrong
 * array length does not compile is checked by typed_wrong_len_*
 * (compile_fail/, the cmap_* cases).
 */
#include "safemap.h"
#include "testlib.h"

#include <pthread.h>

SM_TYPED_CMAP(live, int64_t, 8);
SM_TYPED_POOL(rows, int64_t, 8);

/* Row k at version v: every element derived from both, so a torn copy
 * (elements of two versions, or of two keys) is seen as such. */
static void make_row(int64_t (*row)[8], int64_t key, int64_t version)
{
    for (int i = 0; i < 8; i++)
        (*row)[i] = key * 1000003 + version * 8 + i;
}

/* The version of a consistent row of key, or -1. */
static int64_t row_version(const int64_t (*row)[8], int64_t key)
{
    int64_t version = ((*row)[0] - key * 1000003) / 8;
    for (int i = 0; i < 8; i++)
        if ((*row)[i] != key * 1000003 + version * 8 + i)
            return -1;
    return version;
}

static live *live_filled(int64_t n)
{
    live *cm = NULL;
    if (!CHECK_EQ(live_new(&cm), 0))
        return NULL;
    int64_t row[8];
    for (int64_t k = 0; k < n; k++) {
        make_row(&row, k, 0);
        CHECK_EQ(live_put(cm, k, &row), 0);
    }
    return cm;
}

static void test_typed_cmap_put_get_del_len(void)
{
    live *cm = live_filled(1000);
    if (!cm)
        return;
    CHECK_EQ(live_len(cm), 1000);
    int64_t out[8];
    CHECK_EQ(live_get(cm, 500, &out), 0);
    CHECK_EQ(row_version(&out, 500), 0);
    int64_t row[8];
    make_row(&row, 500, 3);
    CHECK_EQ(live_put(cm, 500, &row), 0); /* replaces */
    CHECK_EQ(live_get(cm, 500, &out), 0);
    CHECK_EQ(row_version(&out, 500), 3);
    CHECK_EQ(live_del(cm, 500), 0);
    CHECK_EQ(live_del(cm, 500), SM_ENOENT);
    CHECK_EQ(live_get(cm, 500, &out), SM_ENOENT);
    CHECK_EQ(live_len(cm), 999);
    CHECK_EQ(live_verify(cm), 0);
    live_free(cm);
    live_free(NULL);
}

/* update's callback: counts its calls in *ctx and bumps the version. */
static void bump(int64_t (*value)[8], int inserted, void *ctx)
{
    int *calls = ctx;
    (*calls)++;
    int64_t key = 77;
    int64_t version = inserted ? 0 : row_version(value, key) + 1;
    make_row(value, key, version);
}

static void test_typed_cmap_update_inserts_then_modifies(void)
{
    live *cm = NULL;
    if (!CHECK_EQ(live_new(&cm), 0))
        return;
    int calls = 0;
    CHECK_EQ(live_update(cm, 77, bump, &calls), 0);
    CHECK_EQ(live_update(cm, 77, bump, &calls), 0);
    CHECK_EQ(live_update(cm, 77, bump, &calls), 0);
    CHECK_EQ(calls, 3);
    int64_t out[8];
    CHECK_EQ(live_get(cm, 77, &out), 0);
    CHECK_EQ(row_version(&out, 77), 2);
    CHECK_EQ(live_len(cm), 1);
    CHECK_EQ(live_update(cm, 78, NULL, NULL), SM_EINVAL);
    CHECK_EQ(live_len(cm), 1);
    live_free(cm);
}

struct walk {
    int visits, wrong, stop_after;
    int64_t key_sum;
};

static int visit(int64_t key, const int64_t (*value)[8], void *ctx)
{
    struct walk *w = ctx;
    w->visits++;
    w->key_sum += key;
    w->wrong += row_version(value, key) != 0;
    return w->visits == w->stop_after ? 42 : 0;
}

static void test_typed_cmap_each_visits_every_entry_and_stops(void)
{
    enum { n = 3000 };
    live *cm = live_filled(n);
    if (!cm)
        return;
    struct walk w = {0, 0, 0, 0};
    CHECK_EQ(live_each(cm, visit, &w), 0);
    CHECK_EQ(w.visits, n);
    CHECK_EQ(w.wrong, 0);
    CHECK_EQ(w.key_sum, (int64_t)n * (n - 1) / 2);
    struct walk stop = {0, 0, 10, 0};
    CHECK_EQ(live_each(cm, visit, &stop), 42); /* fn's nonzero value stops the walk */
    CHECK_EQ(stop.visits, 10);
    CHECK_EQ(live_each(cm, NULL, NULL), SM_EINVAL);
    live_free(cm);
}

static void test_typed_cmap_find_inside_a_read_section(void)
{
    live *cm = live_filled(10);
    if (!cm)
        return;
    CHECK_EQ(live_read_begin(cm), 0);
    /* Inline storage is rewritten in place, so find gives no pointer (see
     * sm_cmap_find; the pooled test below gets snapshots). */
    CHECK(live_find(cm, 3) == NULL);
    CHECK(live_find(cm, 1000) == NULL);
    live_read_end(cm);
    live_free(cm);
}

/* Misuse events land here instead of aborting. */
static int events, last_event;

static void record_event(const sm_event *ev, void *ctx)
{
    (void)ctx;
    events++;
    last_event = ev->code;
}

static void test_typed_cmap_over_typed_pool_finds_snapshots(void)
{
    rows *pool = NULL;
    if (!CHECK_EQ(rows_new(&pool), 0))
        return;
    live_opts o = {.pool = rows_storage(pool), .check = SM_CHECK_CHEAP};
    live *cm = NULL;
    if (!CHECK_EQ(live_new_opts(&cm, &o), 0)) {
        rows_free(pool);
        return;
    }
    int64_t row[8];
    make_row(&row, 5, 0);
    CHECK_EQ(live_put(cm, 5, &row), 0);
    struct sm_cmap_stats st;
    CHECK_EQ(live_stats(cm, &st), 0);
    CHECK_EQ(st.storage, SM_POOLED);

    CHECK_EQ(live_read_begin(cm), 0);
    const int64_t(*p)[8] = live_find(cm, 5);
    if (CHECK(p != NULL)) {
        CHECK_EQ(row_version(p, 5), 0);
        make_row(&row, 5, 1);
        CHECK_EQ(live_put(cm, 5, &row), 0); /* a new array; p stays a snapshot */
        CHECK_EQ(row_version(p, 5), 0);
        int64_t out[8];
        CHECK_EQ(live_get(cm, 5, &out), 0);
        CHECK_EQ(row_version(&out, 5), 1);
    }
    CHECK(live_find(cm, 6) == NULL);
    live_read_end(cm);

    /* The pool cannot close under the map. */
    sm_set_handler(record_event, NULL);
    events = 0;
    CHECK_EQ(rows_close(pool), SM_EBUSY);
    sm_set_handler(NULL, NULL);
    CHECK_EQ(events, 1);
    CHECK_EQ(last_event, SM_EBUSY);
    CHECK_EQ(live_verify(cm), 0);
    live_free(cm);
    CHECK_EQ(rows_close(pool), 0);
}

static void test_typed_cmap_new_opts_passes_check_capacity_and_seed(void)
{
    live_opts o = {.check = SM_CHECK_FULL, .capacity = 5000, .fixed_seed = 1, .seed = 99};
    live *a = NULL, *b = NULL;
    CHECK_EQ(live_new_opts(&a, &o), 0);
    CHECK_EQ(live_new_opts(&b, &o), 0);
    if (!CHECK(a && b)) {
        live_free(a);
        live_free(b);
        return;
    }
    struct sm_cmap_stats st;
    CHECK_EQ(live_stats(a, &st), 0);
    CHECK_EQ(st.check, SM_CHECK_FULL);
    CHECK(st.capacity >= 5000);
    CHECK_EQ(st.layout.len, 8);
    CHECK_EQ(st.layout.elem_size, sizeof(int64_t));
    int64_t row[8];
    for (int64_t k = 0; k < 200; k++) {
        make_row(&row, k, 0);
        CHECK_EQ(live_put(a, k, &row), 0);
        CHECK_EQ(live_put(b, k, &row), 0);
    }
    /* The same fixed seed, the same inserts: the same walk order. */
    struct walk wa = {0, 0, 50, 0}, wb = {0, 0, 50, 0};
    CHECK_EQ(live_each(a, visit, &wa), 42);
    CHECK_EQ(live_each(b, visit, &wb), 42);
    CHECK_EQ(wa.key_sum, wb.key_sum);
    live_free(a);
    live_free(b);
}

static void test_typed_cmap_new_opts_rejects_null_and_bad_check(void)
{
    live *cm = NULL;
    CHECK_EQ(live_new_opts(&cm, NULL), SM_EINVAL);
    CHECK(cm == NULL);
    live_opts o = {.check = 42};
    CHECK_EQ(live_new_opts(&cm, &o), SM_EINVAL);
    CHECK(cm == NULL);
}

/* ---- Threads ------------------------------------------------------------- */

enum { KEYS = 64 };

struct shared {
    live *cm;
    int rounds;
    int torn; /* reads that saw an inconsistent row (readers only) */
};

static void *writer(void *arg)
{
    struct shared *s = arg;
    int64_t row[8];
    for (int r = 1; r <= s->rounds; r++) {
        int64_t key = r % KEYS;
        make_row(&row, key, r);
        if (live_put(s->cm, key, &row) != 0)
            break;
    }
    return NULL;
}

static void *reader(void *arg)
{
    struct shared *s = arg;
    int64_t out[8];
    int torn = 0;
    for (int r = 0; r < s->rounds; r++) {
        int64_t key = (r * 7) % KEYS;
        if (live_get(s->cm, key, &out) == 0)
            torn += row_version(&out, key) < 0;
    }
    s->torn = torn;
    return NULL;
}

static void test_typed_cmap_readers_never_see_a_torn_row(void)
{
    live *cm = live_filled(KEYS);
    if (!cm)
        return;
    struct shared w = {cm, (int)tl_scaled(200000), 0}, r = w;
    pthread_t tw, tr;
    CHECK_EQ(pthread_create(&tw, NULL, writer, &w), 0);
    CHECK_EQ(pthread_create(&tr, NULL, reader, &r), 0);
    pthread_join(tw, NULL);
    pthread_join(tr, NULL);
    CHECK_EQ(r.torn, 0);
    CHECK_EQ(live_len(cm), KEYS);
    CHECK_EQ(live_verify(cm), 0);
    live_free(cm);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_typed_cmap_put_get_del_len);
    RUN(test_typed_cmap_update_inserts_then_modifies);
    RUN(test_typed_cmap_each_visits_every_entry_and_stops);
    RUN(test_typed_cmap_find_inside_a_read_section);
    RUN(test_typed_cmap_over_typed_pool_finds_snapshots);
    RUN(test_typed_cmap_new_opts_passes_check_capacity_and_seed);
    RUN(test_typed_cmap_new_opts_rejects_null_and_bad_check);
    RUN(test_typed_cmap_readers_never_see_a_torn_row);
    return tl_finish();
}
