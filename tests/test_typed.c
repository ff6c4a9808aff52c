/*
 * test_typed.c - the typed front-end, SM_TYPED_MAP, used as intended.
 *
 * Concern: SM_TYPED_MAP(quotes, double, 8) defines a handle type and
 * functions over double (*)[8] that behave like the untyped calls they
 * wrap: every function, iteration and SM_FOREACH, and creation with
 * options (check level, capacity, name, seed, values in a typed pool).
 * That a wrong array length does not compile is checked by the
 * typed_wrong_len_* tests (compile_fail/), and that user code compiles
 * without warnings by typed_clean_*.
 */
#include "safemap.h"
#include "testlib.h"

SM_TYPED_MAP(quotes, double, 8);
SM_TYPED_POOL(rows, double, 8);

static void make_quote(double (*q)[8], int64_t key)
{
    for (int i = 0; i < 8; i++)
        (*q)[i] = (double)key + i / 8.0;
}

static int is_quote(double (*q)[8], int64_t key)
{
    for (int i = 0; i < 8; i++)
        if ((*q)[i] != (double)key + i / 8.0)
            return 0;
    return 1;
}

/* Misuse events land here instead of aborting. */
static int events;
static int last_event;
static char last_detail[512];

static void record_event(const sm_event *ev, void *ctx)
{
    (void)ctx;
    events++;
    last_event = ev->code;
    snprintf(last_detail, sizeof last_detail, "%s", ev->detail ? ev->detail : "");
}

static quotes *quotes_filled(int64_t n)
{
    quotes *q = NULL;
    if (!CHECK_EQ(quotes_new(&q), 0))
        return NULL;
    double row[8];
    for (int64_t k = 0; k < n; k++) {
        make_quote(&row, k);
        CHECK_EQ(quotes_put(q, k, &row), 0);
    }
    return q;
}

static void test_typed_map_put_get_find_del_len(void)
{
    quotes *q = NULL;
    if (!CHECK_EQ(quotes_new(&q), 0) || !CHECK(q != NULL))
        return;
    CHECK_EQ(quotes_len(q), 0);
    double row[8], out[8];
    for (int64_t k = -500; k < 500; k++) {
        make_quote(&row, k);
        CHECK_EQ(quotes_put(q, k, &row), 0);
    }
    CHECK_EQ(quotes_len(q), 1000);
    CHECK_EQ(quotes_get(q, 7, &out), 0);
    CHECK(is_quote(&out, 7));
    CHECK_EQ(quotes_get(q, 500, &out), SM_ENOENT);

    double(*p)[8] = quotes_find(q, -3);
    if (CHECK(p != NULL)) {
        CHECK(is_quote(p, -3));
        (*p)[1] = 99.5;
        CHECK_EQ(quotes_get(q, -3, &out), 0);
        CHECK(out[1] == 99.5);
    }
    CHECK(quotes_find(q, 1000) == NULL);

    const double fixed[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK_EQ(quotes_put(q, 7, &fixed), 0); /* a const row works too */
    CHECK_EQ(quotes_get(q, 7, &out), 0);
    CHECK(out[7] == 8);

    CHECK_EQ(quotes_del(q, 7), 0);
    CHECK_EQ(quotes_del(q, 7), SM_ENOENT);
    CHECK_EQ(quotes_len(q), 999);
    const quotes *cq = q; /* get, len, stats and verify take a const handle */
    CHECK_EQ(quotes_get(cq, 8, &out), 0);
    CHECK_EQ(quotes_len(cq), 999);
    CHECK_EQ(quotes_verify(cq), 0);
    quotes_free(q);
    quotes_free(NULL);
}

static void test_typed_map_is_a_map(void)
{
    quotes *q = quotes_filled(1);
    if (!q)
        return;
    /* The handle is an sm_map underneath: the untyped calls see the same entries. */
    sm_map *m = (sm_map *)(void *)q;
    CHECK_EQ(sm_map_len(m), 1);
    CHECK_EQ(sm_map_verify(m), 0);
    CHECK(sm_map_find(m, 0) == (void *)quotes_find(q, 0));
    quotes_free(q);
}

static void test_typed_upsert_inserts_zeroed_then_finds(void)
{
    quotes *q = quotes_filled(10);
    if (!q)
        return;
    int inserted = -1;
    double(*p)[8] = quotes_upsert(q, 100, &inserted);
    if (!CHECK(p != NULL))
        goto out;
    CHECK_EQ(inserted, 1);
    for (int i = 0; i < 8; i++)
        CHECK((*p)[i] == 0);
    make_quote(p, 100);
    CHECK_EQ(quotes_len(q), 11);

    double(*again)[8] = quotes_upsert(q, 100, &inserted);
    CHECK_EQ(inserted, 0);
    CHECK(again == quotes_find(q, 100));
    if (CHECK(again != NULL))
        CHECK(is_quote(again, 100));
    /* An existing key keeps its value, and inserted may be NULL. */
    double(*old)[8] = quotes_upsert(q, 3, NULL);
    if (CHECK(old != NULL))
        CHECK(is_quote(old, 3));
    CHECK_EQ(quotes_len(q), 11);
out:
    quotes_free(q);
}

static void test_typed_clear_empties_and_map_stays_usable(void)
{
    quotes *q = quotes_filled(1000);
    if (!q)
        return;
    quotes_clear(q);
    CHECK_EQ(quotes_len(q), 0);
    CHECK(quotes_find(q, 5) == NULL);
    CHECK_EQ(quotes_verify(q), 0);
    double row[8];
    make_quote(&row, 5);
    CHECK_EQ(quotes_put(q, 5, &row), 0);
    CHECK_EQ(quotes_len(q), 1);
    quotes_free(q);
}

static void test_typed_reserve_makes_room_and_stats_see_it(void)
{
    quotes *q = NULL;
    if (!CHECK_EQ(quotes_new(&q), 0))
        return;
    struct sm_map_stats before, after;
    CHECK_EQ(quotes_stats(q, &before), 0);
    CHECK_EQ(quotes_reserve(q, 5000), 0);
    CHECK_EQ(quotes_stats(q, &after), 0);
    CHECK(after.capacity >= 5000);
    CHECK(after.capacity > before.capacity);
    CHECK_EQ(after.len, 0);
    CHECK_EQ(after.layout.len, 8);
    CHECK_EQ(after.layout.elem_size, sizeof(double));
    CHECK_EQ(after.storage, SM_INLINE);
    CHECK_EQ(quotes_verify(q), 0);
    quotes_free(q);
}

static void test_typed_next_visits_every_entry_once(void)
{
    enum { n = 2000 };
    quotes *q = quotes_filled(n);
    if (!q)
        return;
    static unsigned char seen[n];
    memset(seen, 0, sizeof seen);
    quotes_iter it = quotes_iterate(q);
    int64_t key = -1;
    double(*value)[8] = NULL;
    int rc, visits = 0, wrong = 0;
    while ((rc = quotes_next(&it, &key, &value)) == 1) {
        visits++;
        if (key < 0 || key >= n || seen[key]++ || !is_quote(value, key))
            wrong++;
        CHECK(value == quotes_find(q, key));
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(visits, n);
    CHECK_EQ(wrong, 0);
    /* Key and value may each be NULL. */
    it = quotes_iterate(q);
    visits = 0;
    while (quotes_next(&it, NULL, NULL) == 1)
        visits++;
    CHECK_EQ(visits, n);
    quotes_free(q);
}

typedef struct each_tally {
    quotes *q;
    unsigned char seen[2000];
    int visits, wrong;
} each_tally;

static int tally_quote(int64_t key, double (*value)[8], void *ctx)
{
    each_tally *t = ctx;
    t->visits++;
    if (key < 0 || key >= 2000 || t->seen[key]++ || !is_quote(value, key) ||
        value != quotes_find(t->q, key))
        t->wrong++;
    return t->visits == 1500 ? 9 : 0;
}

static void test_typed_each_passes_typed_values_and_stops_on_nonzero(void)
{
    quotes *q = quotes_filled(2000);
    if (!q)
        return;
    static each_tally t;
    memset(&t, 0, sizeof t);
    t.q = q;
    CHECK_EQ(quotes_each(q, tally_quote, &t), 9);
    CHECK_EQ(t.visits, 1500);
    CHECK_EQ(t.wrong, 0);
    CHECK_EQ(quotes_each(q, NULL, NULL), SM_EINVAL);
    quotes_free(q);
}

static void test_typed_foreach_visits_every_entry_and_deletes_behind_it(void)
{
    enum { n = 1000 };
    quotes *q = quotes_filled(n);
    if (!q)
        return;
    int64_t key_sum = 0;
    int visits = 0, wrong = 0;
    SM_FOREACH(quotes, q, key, value)
    {
        visits++;
        key_sum += key;
        wrong += !is_quote(value, key);
        if (key % 2 == 0) /* deleting the entry just visited is allowed */
            CHECK_EQ(quotes_del(q, key), 0);
    }
    CHECK_EQ(visits, n);
    CHECK_EQ(wrong, 0);
    CHECK_EQ(key_sum, (int64_t)n * (n - 1) / 2);
    CHECK_EQ(quotes_len(q), n / 2);
    CHECK_EQ(quotes_verify(q), 0);
    quotes_free(q);
}

static void test_typed_foreach_break_and_continue(void)
{
    quotes *q = quotes_filled(100);
    if (!q)
        return;
    int visits = 0, odd = 0, bodies = 0;
    SM_FOREACH(quotes, q, key, value)
    {
        if (visits == 10)
            break;
        visits++;
        if (key % 2) {
            odd++;
            continue;
        }
        bodies++;
        (*value)[0] = -1; /* value points into the map */
    }
    CHECK_EQ(visits, 10);
    CHECK_EQ(odd + bodies, 10); /* continue skipped the rest of the body */
    int marked = 0;
    SM_FOREACH(quotes, q, key, value)
    {
        marked += (*value)[0] == -1;
        (void)key;
    }
    CHECK_EQ(marked, bodies);
    /* A loop over an empty map runs no body. */
    quotes_clear(q);
    visits = 0;
    SM_FOREACH(quotes, q, key, value)
    {
        visits++;
        (void)key;
        (void)value;
    }
    CHECK_EQ(visits, 0);
    quotes_free(q);
}

static void test_typed_next_reports_stale_after_insert(void)
{
    quotes *q = NULL;
    quotes_opts o = {.check = SM_CHECK_CHEAP};
    if (!CHECK_EQ(quotes_new_opts(&q, &o), 0))
        return;
    double row[8];
    for (int64_t k = 0; k < 10; k++) {
        make_quote(&row, k);
        CHECK_EQ(quotes_put(q, k, &row), 0);
    }
    sm_set_handler(record_event, NULL);
    events = 0;
    quotes_iter it = quotes_iterate(q);
    int64_t key;
    CHECK_EQ(quotes_next(&it, &key, NULL), 1);
    make_quote(&row, 99);
    CHECK_EQ(quotes_put(q, 99, &row), 0); /* a mutation the iterator forbids */
    CHECK_EQ(quotes_next(&it, &key, NULL), SM_ESTALE);
    CHECK_EQ(events, 1);
    CHECK_EQ(last_event, SM_ESTALE);
    sm_set_handler(NULL, NULL);
    quotes_free(q);
}

/* Iteration order as a fingerprint of the hash: keys in the order visited. */
static void order_of(quotes *q, int64_t *keys, int n)
{
    int i = 0;
    SM_FOREACH(quotes, q, key, value)
    {
        (void)value;
        if (i < n)
            keys[i++] = key;
    }
}

static void test_typed_new_opts_passes_check_capacity_and_seed(void)
{
    enum { n = 500 };
    quotes_opts o = {.check = SM_CHECK_FULL, .capacity = 3000, .fixed_seed = 1, .seed = 12345};
    quotes *a = NULL, *b = NULL, *c = NULL;
    CHECK_EQ(quotes_new_opts(&a, &o), 0);
    CHECK_EQ(quotes_new_opts(&b, &o), 0);
    o.seed = 54321;
    CHECK_EQ(quotes_new_opts(&c, &o), 0);
    if (!CHECK(a && b && c))
        goto out;
    struct sm_map_stats st;
    CHECK_EQ(quotes_stats(a, &st), 0);
    CHECK_EQ(st.check, SM_CHECK_FULL);
    CHECK(st.capacity >= 3000);
    CHECK_EQ(st.storage, SM_INLINE);
    double row[8];
    for (int64_t k = 0; k < n; k++) {
        make_quote(&row, k);
        CHECK_EQ(quotes_put(a, k, &row), 0);
        CHECK_EQ(quotes_put(b, k, &row), 0);
        CHECK_EQ(quotes_put(c, k, &row), 0);
    }
    /* The same fixed seed gives the same layout, so the same order; another
     * seed another order (500 keys in the same order by chance: no). */
    static int64_t ka[n], kb[n], kc[n];
    order_of(a, ka, n);
    order_of(b, kb, n);
    order_of(c, kc, n);
    CHECK(memcmp(ka, kb, sizeof ka) == 0);
    CHECK(memcmp(ka, kc, sizeof ka) != 0);
out:
    quotes_free(a);
    quotes_free(b);
    quotes_free(c);
}

/* The name shows in the map's misuse reports. */
static void test_typed_new_opts_passes_the_name(void)
{
    quotes_opts o = {.check = SM_CHECK_CHEAP, .name = "typed_quotes_by_name"};
    quotes *q = NULL;
    if (!CHECK_EQ(quotes_new_opts(&q, &o), 0))
        return;
    double row[8];
    make_quote(&row, 1);
    CHECK_EQ(quotes_put(q, 1, &row), 0);
    sm_set_handler(record_event, NULL);
    events = 0;
    last_detail[0] = '\0';
    quotes_iter it = quotes_iterate(q);
    CHECK_EQ(quotes_next(&it, NULL, NULL), 1);
    CHECK_EQ(quotes_put(q, 2, &row), 0);
    CHECK_EQ(quotes_next(&it, NULL, NULL), SM_ESTALE);
    CHECK_EQ(events, 1);
    if (!CHECK(strstr(last_detail, "map \"typed_quotes_by_name\"") != NULL))
        printf("  detail: %s\n", last_detail);
    sm_set_handler(NULL, NULL);
    quotes_free(q);
}

static void test_typed_new_opts_rejects_null_and_bad_check(void)
{
    quotes *q = NULL;
    CHECK_EQ(quotes_new_opts(&q, NULL), SM_EINVAL);
    CHECK(q == NULL);
    quotes_opts o = {.check = 42};
    CHECK_EQ(quotes_new_opts(&q, &o), SM_EINVAL);
    CHECK(q == NULL);
}

static void test_typed_map_over_typed_pool_takes_its_arrays(void)
{
    rows *pool = NULL;
    if (!CHECK_EQ(rows_new(&pool), 0))
        return;
    quotes_opts o = {.pool = rows_storage(pool), .check = SM_CHECK_CHEAP};
    quotes *q = NULL;
    if (!CHECK_EQ(quotes_new_opts(&q, &o), 0)) {
        rows_free(pool);
        return;
    }
    double row[8];
    for (int64_t k = 0; k < 100; k++) {
        make_quote(&row, k);
        CHECK_EQ(quotes_put(q, k, &row), 0);
    }
    struct sm_map_stats ms;
    CHECK_EQ(quotes_stats(q, &ms), 0);
    CHECK_EQ(ms.storage, SM_POOLED);
    struct sm_pool_stats ps;
    CHECK_EQ(rows_stats(pool, &ps), 0);
    CHECK_EQ(ps.live_arrays, 100);
    /* A value is an array of the pool: its handle resolves to it. */
    double(*p)[8] = quotes_find(q, 42);
    if (CHECK(p != NULL)) {
        CHECK(is_quote(p, 42));
        CHECK(rows_resolve(pool, rows_handle(pool, p)) == p);
    }
    CHECK_EQ(quotes_del(q, 42), 0);
    CHECK_EQ(rows_stats(pool, &ps), 0);
    CHECK_EQ(ps.live_arrays, 99);
    CHECK_EQ(quotes_verify(q), 0);
    /* The pool cannot close under the map: SM_EBUSY, nothing freed. */
    sm_set_handler(record_event, NULL);
    events = 0;
    CHECK_EQ(rows_close(pool), SM_EBUSY);
    sm_set_handler(NULL, NULL);
    CHECK_EQ(events, 1);
    CHECK_EQ(last_event, SM_EBUSY);
    double(*kept)[8] = quotes_find(q, 43); /* the map and its values are intact */
    if (CHECK(kept != NULL))
        CHECK(is_quote(kept, 43));
    quotes_free(q);
    CHECK_EQ(rows_close(pool), 0);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_typed_map_put_get_find_del_len);
    RUN(test_typed_map_is_a_map);
    RUN(test_typed_each_passes_typed_values_and_stops_on_nonzero);
    RUN(test_typed_upsert_inserts_zeroed_then_finds);
    RUN(test_typed_clear_empties_and_map_stays_usable);
    RUN(test_typed_reserve_makes_room_and_stats_see_it);
    RUN(test_typed_next_visits_every_entry_once);
    RUN(test_typed_foreach_visits_every_entry_and_deletes_behind_it);
    RUN(test_typed_foreach_break_and_continue);
    RUN(test_typed_next_reports_stale_after_insert);
    RUN(test_typed_new_opts_passes_check_capacity_and_seed);
    RUN(test_typed_new_opts_passes_the_name);
    RUN(test_typed_new_opts_rejects_null_and_bad_check);
    RUN(test_typed_map_over_typed_pool_takes_its_arrays);
    return tl_finish();
}
