/*
 * test_pool_api.c - the pool's contract when it is used correctly: options,
 * reuse, alignment, hooks and their order, zeroing, handles, check levels.
 * Misuse is test_pool_misuse.c; memory accounting is test_pool_memory.c.
 */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

#include <stdalign.h>

static int ptr_cmp(const void *x, const void *y)
{
    uintptr_t a = (uintptr_t) * (void *const *)x, b = (uintptr_t) * (void *const *)y;
    return a < b ? -1 : a > b;
}

/* Internal, but the map relies on it for SM_ELAYOUT. */
const sm_layout *pool_layout(const sm_pool *p);

static sm_pool *pool_make(sm_layout l, int check, unsigned flags)
{
    sm_pool_opts o = {.layout = l, .check = check, .flags = flags};
    sm_pool *p = NULL;
    int rc = sm_pool_new(&p, &o);
    CHECK_EQ(rc, 0);
    return p;
}

static void test_new_rejects_bad_options(void)
{
    ev_install();
    cnt_install();
    sm_pool *p = NULL;
    sm_pool_opts good = {.layout = SM_LAYOUT(int64_t, 8), .check = SM_CHECK_CHEAP};
    CHECK_EQ(sm_pool_new(NULL, &good), SM_EINVAL);
    CHECK_EQ(sm_pool_new(&p, NULL), SM_EINVAL);
    sm_layout bad[] = {
        {0, 1, 8, "size 0"},
        {8, 8, 0, "len 0"},
        {8, 3, 8, "align 3"},
        {128, 128, 1, "align 128"},
        {12, 8, 1, "size not a multiple of align"},
        {8, 8, SM_MAX_ARRAY_BYTES / 8 + 1, "too large"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sm_pool_opts o = good;
        o.layout = bad[i];
        CHECK_EQ(sm_pool_new(&p, &o), SM_EINVAL);
    }
    sm_pool_opts o = good;
    o.check = 99;
    CHECK_EQ(sm_pool_new(&p, &o), SM_EINVAL);
    o = good;
    o.flags = 1u << 7;
    CHECK_EQ(sm_pool_new(&p, &o), SM_EINVAL);
    CHECK(p == NULL);
    CHECK_EQ(ev_count(), 0);   /* SM_EINVAL raises no event */
    CHECK_EQ(cnt_blocks(), 0); /* and holds nothing */
    cnt_uninstall();
    sm_set_handler(NULL, NULL);
}

static void test_get_after_put_returns_same_array(void)
{
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 16), SM_CHECK_CHEAP, 0);
    int64_t *a = sm_pool_get(p);
    if (!CHECK(a != NULL))
        return;
    a[0] = 42;
    CHECK_EQ(sm_pool_put(p, a), 0);
    int64_t *b = sm_pool_get(p);
    CHECK(b == a);
    CHECK_EQ(b[0], 42); /* no zeroing asked for: contents stay */
    int64_t *c = sm_pool_get(p);
    CHECK(c != NULL && c != b);
    CHECK_EQ(sm_pool_put(p, b), 0);
    CHECK_EQ(sm_pool_put(p, c), 0);
    sm_pool_free(p);
}

static void test_arrays_are_aligned_and_disjoint(void)
{
    typedef struct {
        alignas(64) char bytes[72];
    } wide;
    size_t n = 3000;
    sm_pool *p = pool_make(SM_LAYOUT(wide, 3), SM_CHECK_CHEAP, 0);
    unsigned char **v = calloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        v[i] = sm_pool_get(p);
        if (!CHECK(v[i] != NULL))
            return;
        CHECK_EQ((uintptr_t)v[i] % 64, 0);
        memset(v[i], (int)(i & 0xff), sizeof(wide) * 3);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < sizeof(wide) * 3; k++)
            if (!CHECK_EQ(v[i][k], i & 0xff))
                break;
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(sm_pool_put(p, v[i]), 0);
    free(v);
    sm_pool_free(p);
}

static void test_every_array_comes_back_once(void)
{
    size_t n = 20000;
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP, 0);
    void **v = calloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = sm_pool_get(p);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(sm_pool_put(p, v[i]), 0);
    /* Taking n again hands out exactly the same set, each array once. */
    void **w = calloc(n, sizeof *w);
    for (size_t i = 0; i < n; i++)
        w[i] = sm_pool_get(p);
    qsort(v, n, sizeof *v, ptr_cmp);
    qsort(w, n, sizeof *w, ptr_cmp);
    size_t same = 0;
    for (size_t i = 0; i < n; i++)
        same += v[i] == w[i];
    CHECK_EQ(same, n);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(sm_pool_put(p, w[i]), 0);
    free(v);
    free(w);
    sm_pool_free(p);
}

static void test_large_and_tiny_layouts_work(void)
{
    sm_layout layouts[] = {SM_LAYOUT(char, 1), SM_LAYOUT(uint8_t, 3), SM_LAYOUT(double, 9),
                           SM_LAYOUT(uint8_t, 40000), SM_LAYOUT(uint8_t, SM_MAX_ARRAY_BYTES)};
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        sm_pool *p = pool_make(layouts[i], SM_CHECK_DEFAULT, 0);
        size_t bytes = layouts[i].elem_size * layouts[i].len;
        unsigned char *a[5];
        for (int k = 0; k < 5; k++) {
            a[k] = sm_pool_get(p);
            if (!CHECK(a[k] != NULL))
                return;
            memset(a[k], k, bytes);
        }
        for (int k = 0; k < 5; k++) {
            CHECK_EQ(a[k][0], k);
            CHECK_EQ(a[k][bytes - 1], k);
            CHECK_EQ(sm_pool_put(p, a[k]), 0);
        }
        sm_pool_free(p);
    }
}

/* ---- hooks -------------------------------------------------------------- */

typedef struct trace {
    char log[256];
    size_t n;
    int64_t seen_on_put; /* a[0] as on_put saw it */
} trace;

static void trace_add(trace *t, char c)
{
    if (t->n + 1 < sizeof t->log)
        t->log[t->n++] = c;
    t->log[t->n] = 0;
}

static void hook_new(void *a, void *ctx)
{
    ((int64_t *)a)[1] = 7;
    trace_add(ctx, 'N');
}

static void hook_get(void *a, void *ctx)
{
    (void)a;
    trace_add(ctx, 'G');
}

static void hook_put(void *a, void *ctx)
{
    trace *t = ctx;
    t->seen_on_put = ((int64_t *)a)[0];
    trace_add(t, 'P');
}

static void test_hooks_run_in_order(void)
{
    trace t = {{0}, 0, 0};
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 4),
                      .check = SM_CHECK_CHEAP,
                      .on_new = hook_new,
                      .on_get = hook_get,
                      .on_put = hook_put,
                      .hook_ctx = &t};
    sm_pool *p;
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    int64_t *a = sm_pool_get(p); /* fresh: on_new, then on_get */
    CHECK(strcmp(t.log, "NG") == 0);
    CHECK_EQ(a[1], 7);
    a[0] = 99;
    CHECK_EQ(sm_pool_put(p, a), 0); /* on_put, after it is back */
    CHECK(strcmp(t.log, "NGP") == 0);
    CHECK_EQ(t.seen_on_put, 99);
    int64_t *b = sm_pool_get(p); /* recycled: on_get only */
    CHECK(b == a);
    CHECK(strcmp(t.log, "NGPG") == 0);
    CHECK_EQ(sm_pool_put(p, b), 0);
    sm_pool_free(p);
}

static void test_hooks_at_full_replay_put_side(void)
{
    /* At FULL the idle array holds poison, so Get re-runs on_put before
     * on_get: what on_put left is what the caller finds. */
    trace t = {{0}, 0, 0};
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 4),
                      .check = SM_CHECK_FULL,
                      .on_new = hook_new,
                      .on_get = hook_get,
                      .on_put = hook_put,
                      .hook_ctx = &t};
    sm_pool *p;
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    int64_t *a = sm_pool_get(p);
    CHECK(strcmp(t.log, "NG") == 0);
    CHECK_EQ(sm_pool_put(p, a), 0);
    CHECK(strcmp(t.log, "NGP") == 0);
    sm_pool_free(p);
}

typedef struct padded {
    char c;    /* 7 bytes of padding follow */
    int64_t x; /* 8 */
    short s;   /* 6 bytes of padding follow */
} padded;

static int all_zero(const void *a, size_t n)
{
    const unsigned char *b = a;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static void test_zero_on_get_clears_padding(void)
{
    int levels[] = {SM_CHECK_OFF, SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 3; l++) {
        cnt_install(); /* fresh memory is 0xA5, never zero by luck */
        sm_pool *p = pool_make(SM_LAYOUT(padded, 5), levels[l], SM_ZERO_ON_GET);
        padded *a = sm_pool_get(p);
        CHECK(all_zero(a, sizeof(padded) * 5));
        memset(a, 0xFF, sizeof(padded) * 5);
        CHECK_EQ(sm_pool_put(p, a), 0);
        padded *b = sm_pool_get(p);
        CHECK(all_zero(b, sizeof(padded) * 5));
        CHECK_EQ(sm_pool_put(p, b), 0);
        sm_pool_free(p);
        cnt_uninstall();
    }
}

static void test_zero_on_put_clears_after_on_put(void)
{
    trace t = {{0}, 0, 0};
    int levels[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        cnt_install();
        sm_pool_opts o = {.layout = SM_LAYOUT(padded, 3),
                          .check = levels[l],
                          .flags = SM_ZERO_ON_PUT,
                          .on_put = hook_put,
                          .hook_ctx = &t};
        sm_pool *p;
        CHECK_EQ(sm_pool_new(&p, &o), 0);
        padded *a = sm_pool_get(p);
        CHECK(all_zero(a, sizeof(padded) * 3)); /* fresh arrays too */
        memset(a, 0xFF, sizeof(padded) * 3);
        CHECK_EQ(sm_pool_put(p, a), 0);
        CHECK_EQ(t.seen_on_put, -1); /* the hook saw the caller's bytes */
        padded *b = sm_pool_get(p);
        CHECK(all_zero(b, sizeof(padded) * 3));
        CHECK_EQ(sm_pool_put(p, b), 0);
        sm_pool_free(p);
        cnt_uninstall();
    }
}

/* ---- handles ------------------------------------------------------------ */

static void test_handle_resolves_until_put(void)
{
    int levels[] = {SM_CHECK_OFF, SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 3; l++) {
        sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), levels[l], 0);
        sm_pool *q = pool_make(SM_LAYOUT(int64_t, 8), levels[l], 0);
        int64_t *a = sm_pool_get(p);
        int64_t *qa = sm_pool_get(q);
        sm_handle h = sm_pool_handle(p, a);
        CHECK(h.bits != 0);
        CHECK(sm_pool_resolve(p, h) == a);
        CHECK(sm_pool_resolve(q, h) == NULL); /* another pool's handle */
        CHECK_EQ(sm_pool_put(p, a), 0);
        CHECK(sm_pool_resolve(p, h) == NULL);
        int64_t *b = sm_pool_get(p);
        if (levels[l] != SM_CHECK_FULL)
            CHECK(b == a); /* same memory, new life */
        else
            CHECK(b != a); /* a waits in quarantine */
        CHECK(sm_pool_resolve(p, h) == NULL);
        sm_handle h2 = sm_pool_handle(p, b);
        CHECK(h2.bits != h.bits);
        CHECK(sm_pool_resolve(p, h2) == b);
        CHECK_EQ(sm_pool_handle(p, NULL).bits, 0);
        CHECK(sm_pool_resolve(p, (sm_handle){0}) == NULL);
        CHECK(sm_pool_resolve(p, (sm_handle){~(uint64_t)0}) == NULL);
        CHECK_EQ(sm_pool_put(p, b), 0);
        CHECK_EQ(sm_pool_handle(p, b).bits, 0); /* idle arrays have no handle */
        CHECK_EQ(sm_pool_put(q, qa), 0);
        sm_pool_free(q);
        sm_pool_free(p);
    }
}

static void test_handles_stay_dead_across_many_lives(void)
{
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP, 0);
    sm_handle old[64];
    for (int i = 0; i < 64; i++) {
        void *a = sm_pool_get(p);
        old[i] = sm_pool_handle(p, a);
        CHECK_EQ(sm_pool_put(p, a), 0);
        if (i % 16 == 15) {
            sm_pool_cycle(p); /* memory goes back and comes again */
            sm_pool_cycle(p);
        }
    }
    void *live[8];
    for (int i = 0; i < 8; i++)
        live[i] = sm_pool_get(p);
    for (int i = 0; i < 64; i++)
        CHECK(sm_pool_resolve(p, old[i]) == NULL);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(sm_pool_put(p, live[i]), 0);
    sm_pool_free(p);
}

static void test_handle_of_foreign_pointer_raises(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP, 0);
    int64_t local[8];
    CHECK_EQ(sm_pool_handle(p, local).bits, 0);
    CHECK_EQ(ev_count(), 1);
    CHECK_EQ(evlog.last.code, SM_EFOREIGN);
    CHECK(strcmp(evlog.last.what, "sm_pool_handle") == 0);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

/* ---- levels, layout, typed front-end ------------------------------------ */

static void test_pool_layout_is_kept(void)
{
    sm_pool *p = pool_make(SM_LAYOUT(double, 9), SM_CHECK_CHEAP, 0);
    const sm_layout *l = pool_layout(p);
    CHECK_EQ(l->elem_size, sizeof(double));
    CHECK_EQ(l->elem_align, _Alignof(double));
    CHECK_EQ(l->len, 9);
    CHECK(strcmp(l->name, "double[9]") == 0);
    sm_pool_free(p);
}

static void test_default_level_reads_environment(void)
{
    /* Observable difference: FULL finds a write after Put at sm_pool_free. */
    const char *levels[] = {"full", "cheap", "off", NULL};
    int expect[] = {1, 0, 0, 0};
    for (int i = 0; i < 4; i++) {
        if (levels[i])
            setenv("SAFEMAP_CHECK", levels[i], 1);
        else
            unsetenv("SAFEMAP_CHECK");
        ev_install();
        sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_DEFAULT, 0);
        int64_t *a = sm_pool_get(p);
        CHECK_EQ(sm_pool_put(p, a), 0);
        if (expect[i])
            scribble_at(a, 0, 1);
        sm_pool_free(p);
        CHECK_EQ(ev_count(), expect[i]);
        sm_set_handler(NULL, NULL);
    }
    unsetenv("SAFEMAP_CHECK");
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_new_rejects_bad_options);
    RUN(test_get_after_put_returns_same_array);
    RUN(test_arrays_are_aligned_and_disjoint);
    RUN(test_every_array_comes_back_once);
    RUN(test_large_and_tiny_layouts_work);
    RUN(test_hooks_run_in_order);
    RUN(test_hooks_at_full_replay_put_side);
    RUN(test_zero_on_get_clears_padding);
    RUN(test_zero_on_put_clears_after_on_put);
    RUN(test_handle_resolves_until_put);
    RUN(test_handles_stay_dead_across_many_lives);
    RUN(test_handle_of_foreign_pointer_raises);
    RUN(test_pool_layout_is_kept);
    RUN(test_default_level_reads_environment);
    return tl_finish();
}
