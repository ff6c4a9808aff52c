/*
 * test_pool_typed.c - SM_TYPED_POOL: typed Get and Put, creation with
 * options (check level, zeroing, typed hooks, idle cap, name), statistics,
 * reports, cycles and handles, each behaving as the untyped call it wraps.
 *
 * tests/pool.cmake also compiles this file with -DROW_LEN=4097 (C and C++),
 * which must fail: put_row() hands a uint8_t (*)[4097] to a pool of
 * uint8_t[4096].  The same file compiling with the right length is the
 * control.  (compile_fail/typed_wrong_len.c covers every typed function.)
 */
#include "safemap.h"
#include "testlib.h"

#ifndef ROW_LEN
#define ROW_LEN 4096
#endif

SM_TYPED_POOL(bufs, uint8_t, 4096);
SM_TYPED_POOL(vecs, int64_t, 8);

/* Puts back a row of ROW_LEN bytes: compiles only when ROW_LEN is 4096. */
static int put_row(bufs *b, uint8_t (*row)[ROW_LEN])
{
    return bufs_put(b, row);
}

/* A pool made with o, or NULL (a failed check) when it could not be. */
static vecs *vecs_made(const vecs_opts *o)
{
    vecs *p = NULL;
    return CHECK_EQ(vecs_new_opts(&p, o), 0) ? p : NULL;
}

/* A default pool that has handed out one array and taken it back. */
static vecs *vecs_with_one_idle(void)
{
    vecs *p = NULL;
    if (!CHECK_EQ(vecs_new(&p), 0))
        return NULL;
    int64_t(*a)[8] = vecs_get(p);
    if (CHECK(a != NULL))
        CHECK_EQ(vecs_put(p, a), 0);
    return p;
}

static void test_typed_pool_round_trip(void)
{
    bufs *b;
    if (!CHECK_EQ(bufs_new(&b), 0))
        return;
    uint8_t(*x)[4096] = bufs_get(b);
    if (!CHECK(x != NULL)) {
        bufs_free(b);
        return;
    }
    CHECK_EQ(sizeof *x, 4096);
    (*x)[4095] = 1;
    CHECK_EQ(put_row(b, x), 0);
    CHECK((void *)bufs_get(b) == (void *)x);
    CHECK_EQ(bufs_put(b, x), 0);
    bufs_free(b);
}

/* What the hooks saw. */
struct hook_log {
    int news, gets, puts;
    int64_t (*last)[8];
    int wrong_ctx;
};

static struct hook_log hook_log;

static void on_new(int64_t (*array)[8], void *ctx)
{
    hook_log.news++;
    hook_log.wrong_ctx += ctx != &hook_log;
    for (int i = 0; i < 8; i++)
        (*array)[i] = 7; /* what a fresh array starts as */
}

static void on_get(int64_t (*array)[8], void *ctx)
{
    hook_log.gets++;
    hook_log.wrong_ctx += ctx != &hook_log;
    hook_log.last = array;
}

static void on_put(int64_t (*array)[8], void *ctx)
{
    hook_log.puts++;
    hook_log.wrong_ctx += ctx != &hook_log;
    hook_log.last = array;
}

static const vecs_hooks logging_hooks = {on_new, on_get, on_put, &hook_log};

static void test_typed_pool_hooks_get_the_typed_array_and_ctx(void)
{
    memset(&hook_log, 0, sizeof hook_log);
    vecs_opts o = {.check = SM_CHECK_CHEAP, .hooks = &logging_hooks};
    vecs *p = vecs_made(&o);
    if (!p)
        return;
    int64_t(*a)[8] = vecs_get(p);
    if (!CHECK(a != NULL)) {
        vecs_free(p);
        return;
    }
    CHECK_EQ(hook_log.news, 1);
    CHECK_EQ(hook_log.gets, 1);
    CHECK(hook_log.last == a);
    CHECK((*a)[0] == 7 && (*a)[7] == 7);
    CHECK_EQ(vecs_put(p, a), 0);
    CHECK_EQ(hook_log.puts, 1);
    CHECK(hook_log.last == a);
    int64_t(*b)[8] = vecs_get(p); /* the same array again: not new */
    CHECK(b == a);
    CHECK_EQ(hook_log.news, 1);
    CHECK_EQ(hook_log.gets, 2);
    CHECK_EQ(vecs_put(p, b), 0);
    CHECK_EQ(hook_log.wrong_ctx, 0);
    vecs_free(p);
}

static void test_typed_pool_hooks_may_be_partial(void)
{
    static const vecs_hooks only_put = {NULL, NULL, on_put, &hook_log};
    memset(&hook_log, 0, sizeof hook_log);
    vecs_opts o = {.hooks = &only_put};
    vecs *p = vecs_made(&o);
    if (!p)
        return;
    int64_t(*a)[8] = vecs_get(p);
    if (CHECK(a != NULL))
        CHECK_EQ(vecs_put(p, a), 0);
    CHECK_EQ(hook_log.news + hook_log.gets, 0);
    CHECK_EQ(hook_log.puts, 1);
    vecs_free(p);
}

static void test_typed_pool_zero_on_get(void)
{
    vecs_opts o = {.flags = SM_ZERO_ON_GET};
    vecs *p = vecs_made(&o);
    if (!p)
        return;
    int64_t(*a)[8] = vecs_get(p);
    if (!CHECK(a != NULL)) {
        vecs_free(p);
        return;
    }
    for (int i = 0; i < 8; i++)
        (*a)[i] = i + 1;
    CHECK_EQ(vecs_put(p, a), 0);
    int64_t(*b)[8] = vecs_get(p);
    if (CHECK(b != NULL)) {
        int nonzero = 0;
        for (int i = 0; i < 8; i++)
            nonzero += (*b)[i] != 0;
        CHECK_EQ(nonzero, 0);
        CHECK_EQ(vecs_put(p, b), 0);
    }
    vecs_free(p);
}

static void test_typed_pool_idle_cap_and_stats(void)
{
    enum { n = 64 };
    vecs_opts o = {.check = SM_CHECK_OFF, .max_idle_bytes = 4 * sizeof(int64_t[8])};
    vecs *p = vecs_made(&o);
    if (!p)
        return;
    int64_t(*a[n])[8];
    for (int i = 0; i < n; i++)
        CHECK((a[i] = vecs_get(p)) != NULL);
    struct sm_pool_stats st;
    CHECK_EQ(vecs_stats(p, &st), 0);
    CHECK_EQ(st.check, SM_CHECK_OFF);
    CHECK_EQ(st.layout.len, 8);
    CHECK_EQ(st.layout.elem_size, sizeof(int64_t));
    CHECK_EQ(st.gets, n);
    CHECK_EQ(st.live_arrays, n);
    for (int i = 0; i < n; i++)
        if (a[i])
            CHECK_EQ(vecs_put(p, a[i]), 0);
    CHECK_EQ(vecs_stats(p, &st), 0);
    CHECK_EQ(st.puts, n);
    CHECK_EQ(st.live_arrays, 0);
    CHECK(st.idle_bytes <= 4 * sizeof(int64_t[8]));
    CHECK(st.frees > 0);
    vecs_free(p);
}

static void test_typed_pool_cycle_returns_idle_arrays(void)
{
    vecs *p = vecs_with_one_idle();
    if (!p)
        return;
    struct sm_pool_stats st;
    CHECK_EQ(vecs_stats(p, &st), 0);
    CHECK_EQ(st.idle_arrays, 1);
    vecs_cycle(p);
    vecs_cycle(p); /* an idle array goes back at the second cycle */
    CHECK_EQ(vecs_stats(p, &st), 0);
    CHECK_EQ(st.cycles, 2);
    CHECK_EQ(st.idle_arrays, 0);
    CHECK_EQ(st.frees, 1);
    vecs_free(p);
}

static void test_typed_pool_handles_resolve_until_put(void)
{
    vecs *p = NULL, *q = NULL;
    CHECK_EQ(vecs_new(&p), 0);
    CHECK_EQ(vecs_new(&q), 0);
    int64_t(*a)[8] = p && q ? vecs_get(p) : NULL;
    if (CHECK(a != NULL)) {
        sm_handle h = vecs_handle(p, a);
        CHECK(h.bits != 0);
        CHECK(vecs_resolve(p, h) == a);
        CHECK(vecs_resolve(q, h) == NULL); /* another pool's handle */
        CHECK_EQ(vecs_put(p, a), 0);
        CHECK(vecs_resolve(p, h) == NULL);
    }
    vecs_free(p);
    vecs_free(q);
}

/* Counts the lines of f holding text. */
static int lines_with(FILE *f, const char *text)
{
    char line[1024];
    int n = 0;
    rewind(f);
    while (fgets(line, sizeof line, f))
        n += strstr(line, text) != NULL;
    return n;
}

static void test_typed_pool_report_lists_outstanding_arrays(void)
{
    vecs_opts o = {.check = SM_CHECK_FULL};
    vecs *p = vecs_made(&o);
    if (!p)
        return;
    int64_t(*a)[8] = vecs_get(p);
    FILE *f = tmpfile();
    if (CHECK(f != NULL) && CHECK(a != NULL)) {
        CHECK_EQ(vecs_report(p, f), 0);
        CHECK_EQ(lines_with(f, "1 arrays outstanding"), 1);
    }
    if (a)
        CHECK_EQ(vecs_put(p, a), 0);
    if (f)
        fclose(f);
    vecs_free(p);
}

static int events;
static char last_detail[512];

static void record_event(const sm_event *ev, void *ctx)
{
    (void)ctx;
    events++;
    snprintf(last_detail, sizeof last_detail, "%s", ev->detail ? ev->detail : "");
}

/* The name shows in the pool's misuse reports. */
static void test_typed_pool_new_opts_passes_the_name(void)
{
    vecs_opts o = {.check = SM_CHECK_CHEAP, .name = "typed_vecs_by_name"};
    vecs *p = vecs_made(&o);
    if (!p)
        return;
    int64_t(*a)[8] = vecs_get(p);
    if (CHECK(a != NULL)) {
        CHECK_EQ(vecs_put(p, a), 0);
        sm_set_handler(record_event, NULL);
        events = 0;
        CHECK_EQ(vecs_put(p, a), SM_EDOUBLE);
        sm_set_handler(NULL, NULL);
        CHECK_EQ(events, 1);
        if (!CHECK(strstr(last_detail, "\"typed_vecs_by_name\"") != NULL))
            printf("  detail: %s\n", last_detail);
    }
    vecs_free(p);
}

static void test_typed_pool_close_frees_an_idle_pool(void)
{
    vecs *p = vecs_with_one_idle();
    if (!p)
        return;
    struct sm_stats before, after;
    sm_stats_read(&before);
    CHECK_EQ(vecs_close(p), 0);
    sm_stats_read(&after);
    CHECK_EQ(after.pools, before.pools - 1);
    CHECK_EQ(vecs_close(NULL), 0);
}

static void test_typed_pool_new_opts_rejects_null_and_bad_flags(void)
{
    vecs *p = NULL;
    CHECK_EQ(vecs_new_opts(&p, NULL), SM_EINVAL);
    CHECK(p == NULL);
    vecs_opts o = {.flags = 1u << 9};
    CHECK_EQ(vecs_new_opts(&p, &o), SM_EINVAL);
    CHECK(p == NULL);
}

#ifndef SM_POOL_TYPED_NO_MAIN
int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_typed_pool_round_trip);
    RUN(test_typed_pool_hooks_get_the_typed_array_and_ctx);
    RUN(test_typed_pool_hooks_may_be_partial);
    RUN(test_typed_pool_zero_on_get);
    RUN(test_typed_pool_idle_cap_and_stats);
    RUN(test_typed_pool_cycle_returns_idle_arrays);
    RUN(test_typed_pool_handles_resolve_until_put);
    RUN(test_typed_pool_report_lists_outstanding_arrays);
    RUN(test_typed_pool_new_opts_passes_the_name);
    RUN(test_typed_pool_close_frees_an_idle_pool);
    RUN(test_typed_pool_new_opts_rejects_null_and_bad_flags);
    return tl_finish();
}
#endif
