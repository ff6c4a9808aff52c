/*
 * test_pool_misuse.c - every lifecycle misuse of a pool is reported with its
 * code, through the handler, and leaves the pool as it was:
 *   SM_EDOUBLE   an array put back twice (idle, or already released)
 *   SM_EFOREIGN  a heap, stack, interior, never-handed-out or other pool's
 *                pointer
 *   SM_ECORRUPT  a write after Put, found at SM_CHECK_FULL when the array
 *                leaves quarantine, is handed out, is cycled, or the pool is
 *                freed
 *   SM_EINVAL    NULL arguments (no event)
 * The recording handler (support.h) returns, so each call returns its code.
 */
#include "internal.h" /* pool_verify */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

#include <pthread.h>

static sm_pool *pool_make(int check)
{
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 16), .check = check};
    sm_pool *p = NULL;
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    return p;
}

static int event_is(int code, const char *what, const void *object, const void *ptr)
{
    int ok = CHECK_EQ(evlog.last.code, code);
    ok &= CHECK(strcmp(evlog.last.what, what) == 0);
    ok &= CHECK(evlog.last.object == object);
    ok &= CHECK(evlog.last.ptr == ptr);
    ok &= CHECK(strstr(evlog.last.detail, "int64_t[16]") != NULL); /* names the layout */
    return ok;
}

static int detail_has(const char *s)
{
    if (strstr(evlog.last.detail, s))
        return 1;
    printf("  detail was: %s\n", evlog.last.detail);
    return CHECK(strstr(evlog.last.detail, s) != NULL);
}

/* ---- SM_EDOUBLE --------------------------------------------------------- */

static void test_put_twice_reports_double(void)
{
    int levels[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        ev_install();
        sm_pool *p = pool_make(levels[l]);
        void *a = sm_pool_get(p);
        void *b = sm_pool_get(p);
        CHECK_EQ(sm_pool_put(p, a), 0);
        CHECK_EQ(ev_count(), 0);
        CHECK_EQ(sm_pool_put(p, a), SM_EDOUBLE);
        CHECK_EQ(ev_count(), 1);
        event_is(SM_EDOUBLE, "sm_pool_put", p, a);
        detail_has("put back");
        if (levels[l] == SM_CHECK_FULL)
            detail_has("test_pool_misuse"); /* the first Put's call site */
        /* Unchanged: a is handed out once more, and only once. */
        void *c = sm_pool_get(p);
        void *d = sm_pool_get(p);
        if (levels[l] == SM_CHECK_CHEAP)
            CHECK(c == a);
        CHECK(c != d && d != a && c != b && d != b);
        CHECK_EQ(sm_pool_put(p, b), 0);
        CHECK_EQ(sm_pool_put(p, c), 0);
        CHECK_EQ(sm_pool_put(p, d), 0);
        CHECK_EQ(ev_count(), 1);
        sm_pool_free(p);
        CHECK_EQ(ev_count(), 1);
        sm_set_handler(NULL, NULL);
    }
}

typedef struct put_args {
    sm_pool *p;
    void *a;
    int rc;
} put_args;

static void *put_elsewhere(void *arg)
{
    put_args *pa = arg;
    pa->rc = sm_pool_put(pa->p, pa->a);
    return NULL;
}

/* The fast Put knows the array the last Get took from the thread's hot
 * slot without looking it up: a second Put of it, or a Put of it after
 * another thread put it back, or after a cycle, is still a double Put. */
static void test_put_after_lifo_round_trip_reports_double(void)
{
    int levels[] = {SM_CHECK_OFF, SM_CHECK_CHEAP};
    for (int l = 0; l < 2; l++) {
        ev_install();
        sm_pool *p = pool_make(levels[l]);
        void *a = sm_pool_get(p);
        CHECK_EQ(sm_pool_put(p, a), 0);
        void *b = sm_pool_get(p); /* from the hot slot: the same array */
        CHECK(b == a);
        CHECK_EQ(sm_pool_put(p, b), 0);
        CHECK_EQ(sm_pool_put(p, b), SM_EDOUBLE);
        b = sm_pool_get(p);
        put_args pa = {p, b, -1};
        pthread_t t;
        pthread_create(&t, NULL, put_elsewhere, &pa);
        pthread_join(t, NULL);
        CHECK_EQ(pa.rc, 0);
        CHECK_EQ(sm_pool_put(p, b), SM_EDOUBLE); /* idle in the other thread's cache */
        b = sm_pool_get(p);
        CHECK_EQ(sm_pool_put(p, b), 0);
        sm_pool_cycle(p);
        CHECK_EQ(sm_pool_put(p, b), SM_EDOUBLE);
        sm_pool_cycle(p); /* released: its slab went back */
        int rc = sm_pool_put(p, b);
        CHECK(rc == SM_EFOREIGN); /* memory gone: not one of the pool's arrays */
        CHECK_EQ(ev_count(), levels[l] == SM_CHECK_OFF ? 0 : 4);
        CHECK_EQ(pool_verify(p), 0);
        sm_pool_free(p);
        sm_set_handler(NULL, NULL);
    }
}

static void test_put_after_release_reports_double(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_CHEAP);
    void *keep = sm_pool_get(p); /* keeps the slab alive */
    void *a = sm_pool_get(p);
    CHECK_EQ(sm_pool_put(p, a), 0);
    sm_pool_cycle(p);
    sm_pool_cycle(p); /* a's slot is released */
    CHECK_EQ(sm_pool_put(p, a), SM_EDOUBLE);
    event_is(SM_EDOUBLE, "sm_pool_put", p, a);
    detail_has("released");
    CHECK_EQ(sm_pool_put(p, keep), 0);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

typedef struct reentry {
    sm_pool *p;
    int rc;
} reentry;

static void put_again(void *a, void *ctx)
{
    reentry *r = ctx;
    r->rc = sm_pool_put(r->p, a);
}

static void test_put_from_on_put_reports_double(void)
{
    /* on_put runs once the array is back: putting it again from the hook is
     * a double Put too, and the outer Put still succeeds. */
    ev_install();
    reentry r = {NULL, 1};
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 16),
                      .check = SM_CHECK_CHEAP,
                      .on_put = put_again,
                      .hook_ctx = &r};
    CHECK_EQ(sm_pool_new(&r.p, &o), 0);
    void *a = sm_pool_get(r.p);
    CHECK_EQ(sm_pool_put(r.p, a), 0);
    CHECK_EQ(r.rc, SM_EDOUBLE);
    event_is(SM_EDOUBLE, "sm_pool_put", r.p, a);
    CHECK(sm_pool_get(r.p) == a);
    CHECK(sm_pool_get(r.p) != a);
    sm_pool_free(r.p);
    sm_set_handler(NULL, NULL);
}

/* ---- SM_EFOREIGN -------------------------------------------------------- */

static void test_put_heap_pointer_is_foreign(void)
{
    int levels[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        ev_install();
        sm_pool *p = pool_make(levels[l]);
        void *a = sm_pool_get(p); /* the pool has a slab */
        int64_t *heap = malloc(16 * sizeof(int64_t));
        CHECK_EQ(sm_pool_put(p, heap), SM_EFOREIGN);
        event_is(SM_EFOREIGN, "sm_pool_put", p, heap);
        detail_has("not in any slab");
        int64_t stack[16];
        CHECK_EQ(sm_pool_put(p, stack), SM_EFOREIGN);
        event_is(SM_EFOREIGN, "sm_pool_put", p, stack);
        CHECK_EQ(sm_pool_put(p, a), 0);
        CHECK_EQ(ev_count(), 2);
        free(heap);
        sm_pool_free(p);
        sm_set_handler(NULL, NULL);
    }
}

static void test_put_interior_pointer_is_foreign(void)
{
    int levels[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        ev_install();
        sm_pool *p = pool_make(levels[l]);
        int64_t *a = sm_pool_get(p);
        CHECK_EQ(sm_pool_put(p, a + 1), SM_EFOREIGN);
        event_is(SM_EFOREIGN, "sm_pool_put", p, a + 1);
        detail_has("interior");
        detail_has("8 bytes into");
        CHECK_EQ(sm_pool_put(p, (char *)a + 1), SM_EFOREIGN);
        /* a is still live: the failed calls changed nothing. */
        CHECK_EQ(sm_pool_put(p, a), 0);
        CHECK_EQ(ev_count(), 2);
        sm_pool_free(p);
        sm_set_handler(NULL, NULL);
    }
}

static void test_put_other_pools_array_is_foreign(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_CHEAP);
    sm_pool *q = pool_make(SM_CHECK_CHEAP);
    void *pa = sm_pool_get(p);
    void *qa = sm_pool_get(q);
    CHECK_EQ(sm_pool_put(p, qa), SM_EFOREIGN);
    event_is(SM_EFOREIGN, "sm_pool_put", p, qa);
    detail_has("another pool");
    CHECK_EQ(sm_pool_put(q, qa), 0);
    CHECK_EQ(sm_pool_put(p, pa), 0);
    sm_pool_free(q);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

static void test_put_slot_never_handed_out_is_foreign(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_CHEAP);
    int64_t *a = sm_pool_get(p);
    int64_t *next = a + 16; /* the neighbouring slot, never carved */
    CHECK_EQ(sm_pool_put(p, next), SM_EFOREIGN);
    detail_has("never handed out");
    CHECK_EQ(sm_pool_put(p, a), 0);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

static void test_null_arguments_are_einval(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_CHEAP);
    CHECK_EQ(sm_pool_put(p, NULL), SM_EINVAL);
    CHECK_EQ(sm_pool_put(NULL, p), SM_EINVAL);
    CHECK(sm_pool_get(NULL) == NULL);
    CHECK_EQ(sm_pool_handle(NULL, p).bits, 0);
    CHECK(sm_pool_resolve(NULL, (sm_handle){1}) == NULL);
    sm_pool_cycle(NULL);
    sm_pool_free(NULL);
    CHECK_EQ(ev_count(), 0);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

static void test_off_level_returns_codes_without_events(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_OFF);
    int64_t *a = sm_pool_get(p);
    CHECK_EQ(sm_pool_put(p, a + 1), SM_EFOREIGN);
    CHECK_EQ(sm_pool_put(p, a), 0);
    CHECK_EQ(sm_pool_put(p, a), SM_EDOUBLE);
    CHECK_EQ(ev_count(), 0);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

/* ---- SM_ECORRUPT -------------------------------------------------------- */

static void test_write_after_put_is_corrupt_when_leaving_quarantine(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_FULL);
    enum { N = 600 }; /* more than the quarantine holds */
    void *v[N];
    for (int i = 0; i < N; i++)
        v[i] = sm_pool_get(p);
    CHECK_EQ(sm_pool_put(p, v[0]), 0);
    scribble_at(v[0], 40, 8);
    int rc = 0, i;
    for (i = 1; i < N && rc == 0; i++)
        rc = sm_pool_put(p, v[i]);
    CHECK_EQ(rc, SM_ECORRUPT);
    CHECK_EQ(ev_count(), 1);
    event_is(SM_ECORRUPT, "sm_pool_put", p, v[0]);
    detail_has("written after");
    detail_has("byte 40 is 0x2a");
    detail_has("test_pool_misuse"); /* where v[0] was put back */
    /* The event is that Put's result, but the Put itself was done: v[i-1]
     * is back in the pool (a second Put of it is a double Put). */
    CHECK_EQ(sm_pool_put(p, v[i - 1]), SM_EDOUBLE);
    CHECK_EQ(ev_count(), 2);
    event_is(SM_EDOUBLE, "sm_pool_put", p, v[i - 1]);
    CHECK_EQ(pool_verify(p), 0);
    for (; i < N; i++)
        CHECK_EQ(sm_pool_put(p, v[i]), 0);
    /* The corrupted array is withdrawn: never handed out again. */
    void *bad = v[0];
    for (int k = 0; k < N; k++) {
        v[k] = sm_pool_get(p);
        CHECK(v[k] != bad);
    }
    for (int k = 0; k < N; k++)
        CHECK_EQ(sm_pool_put(p, v[k]), 0);
    CHECK_EQ(ev_count(), 2);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

static void test_write_after_put_is_corrupt_at_get(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_FULL);
    void *a = sm_pool_get(p);
    CHECK_EQ(sm_pool_put(p, a), 0);
    sm_pool_cycle(p); /* out of quarantine, into the depot, still poisoned */
    scribble_at(a, 0, 1);
    /* Not out of memory: a is withdrawn, the event says so, and the Get
     * hands out another array. */
    void *b = sm_pool_get(p);
    CHECK(b != NULL && b != a);
    CHECK_EQ(ev_count(), 1);
    event_is(SM_ECORRUPT, "sm_pool_get", p, a);
    detail_has("written after");
    CHECK_EQ(pool_verify(p), 0);
    void *c = sm_pool_get(p); /* the pool goes on, without a */
    CHECK(c != NULL && c != a && c != b);
    CHECK_EQ(sm_pool_put(p, b), 0);
    CHECK_EQ(sm_pool_put(p, c), 0);
    sm_pool_free(p);
    CHECK_EQ(ev_count(), 1);
    sm_set_handler(NULL, NULL);
}

/* A pooled map's put draws its array from the pool: a corrupted idle array
 * met on the way must be reported as corruption, never as out of memory. */
static void test_pooled_map_put_meets_corrupt_array_not_enomem(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_FULL);
    sm_map *m = NULL;
    sm_map_opts mo = {
        .layout = SM_LAYOUT(int64_t, 16), .storage = SM_POOLED, .pool = p, .check = SM_CHECK_FULL};
    if (!CHECK_EQ(sm_map_new(&m, &mo), 0))
        return;
    void *a = sm_pool_get(p);
    CHECK_EQ(sm_pool_put(p, a), 0);
    sm_pool_cycle(p); /* out of quarantine, into the depot, still poisoned */
    scribble_at(a, 8, 1);
    int64_t v[16] = {42};
    int rc = sm_map_put(m, 7, v);
    CHECK(rc != SM_ENOMEM);
    CHECK_EQ(rc, 0); /* the map got another array */
    CHECK_EQ(ev_count(), 1);
    event_is(SM_ECORRUPT, "sm_pool_get", p, a);
    int64_t out[16] = {0};
    CHECK_EQ(sm_map_get(m, 7, out), 0);
    CHECK_EQ(out[0], 42);
    CHECK_EQ(pool_verify(p), 0);
    sm_map_free(m);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

static void test_write_after_put_is_corrupt_at_cycle_and_free(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_FULL);
    void *a = sm_pool_get(p), *b = sm_pool_get(p);
    CHECK_EQ(sm_pool_put(p, a), 0);
    CHECK_EQ(sm_pool_put(p, b), 0);
    scribble_at(a, 127, 1);
    sm_pool_cycle(p);
    CHECK_EQ(ev_count(), 1);
    event_is(SM_ECORRUPT, "sm_pool_cycle", p, a);
    detail_has("byte 127");
    scribble_at(b, 3, 2);
    sm_pool_free(p);
    CHECK_EQ(ev_count(), 2);
    CHECK_EQ(evlog.last.code, SM_ECORRUPT);
    CHECK(strcmp(evlog.last.what, "sm_pool_free") == 0);
    CHECK(evlog.last.ptr == b);
    sm_set_handler(NULL, NULL);
}

static void test_events_are_raised_on_any_thread_level_combo(void)
{
    /* The fast path (thread cache warm) reports the same as the slow one. */
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_CHEAP);
    void *v[100];
    for (int i = 0; i < 100; i++)
        v[i] = sm_pool_get(p);
    for (int i = 0; i < 100; i++)
        CHECK_EQ(sm_pool_put(p, v[i]), 0);
    for (int i = 0; i < 100; i++)
        CHECK_EQ(sm_pool_put(p, v[i]), SM_EDOUBLE);
    CHECK_EQ(ev_count(), 100);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_put_twice_reports_double);
    RUN(test_put_after_lifo_round_trip_reports_double);
    RUN(test_put_after_release_reports_double);
    RUN(test_put_from_on_put_reports_double);
    RUN(test_put_heap_pointer_is_foreign);
    RUN(test_put_interior_pointer_is_foreign);
    RUN(test_put_other_pools_array_is_foreign);
    RUN(test_put_slot_never_handed_out_is_foreign);
    RUN(test_null_arguments_are_einval);
    RUN(test_off_level_returns_codes_without_events);
    RUN(test_write_after_put_is_corrupt_when_leaving_quarantine);
    RUN(test_write_after_put_is_corrupt_at_get);
    RUN(test_pooled_map_put_meets_corrupt_array_not_enomem);
    RUN(test_write_after_put_is_corrupt_at_cycle_and_free);
    RUN(test_events_are_raised_on_any_thread_level_combo);
    return tl_finish();
}
