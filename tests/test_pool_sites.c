/*
 * test_pool_sites.c - call sites at SM_CHECK_FULL, where every Get and Put
 * records its stack:
 *   - sm_pool_report() groups the arrays still out by the stack of their
 *     Get, largest group first, with counts, bytes and symbolized frames;
 *   - pool_each_site() (what heap profiles read) has the same totals;
 *   - sm_pool_free() reports leaked arrays on stderr, in the same format;
 *   - misuse events name the sites they have: a double Put both Puts and
 *     the Get, a write after Put the Put and the Get, a foreign Put its
 *     caller;
 *   - the site table lives in the pool's memory and goes with it.
 * Sampled recording at SM_CHECK_CHEAP needs SAFEMAP_DEBUG set before the
 * library's first use: test_pool_debug.c does that in its own process.
 *
 * The functions whose names reports must show are exported (pool.cmake
 * sets ENABLE_EXPORTS) and cannot become tail calls, which would take them
 * off the stack.
 *
 *   test_pool_sites --show    also prints the report, the leak report and
 *                             the events (docs/safety.md quotes them)
 */
#include "internal.h"
#include "support.h"
#include "testlib.h"

#include <unistd.h>

enum { LEN = 16 };
#define ARRAY_BYTES ((size_t)LEN * sizeof(int64_t))

#include "sites.h"

/* A Get at recursion depth n: a different stack for each n. */
void *get_at_depth(sm_pool *p, int n);
T_NOINLINE void *get_at_depth(sm_pool *p, int n)
{
    void *a = n ? get_at_depth(p, n - 1) : sm_pool_get(p);
    AFTER_CALL(a);
    return a;
}

/* A Get down one of 2^n paths through two functions: a different stack for
 * each value of the n low bits. */
void *get_path(sm_pool *p, unsigned bits, int n);
void *get_path0(sm_pool *p, unsigned bits, int n);
void *get_path1(sm_pool *p, unsigned bits, int n);

T_NOINLINE void *get_path0(sm_pool *p, unsigned bits, int n)
{
    void *a = get_path(p, bits, n);
    AFTER_CALL(a);
    return a;
}

T_NOINLINE void *get_path1(sm_pool *p, unsigned bits, int n)
{
    void *a = get_path(p, bits, n);
    AFTER_CALL(a);
    return a;
}

T_NOINLINE void *get_path(sm_pool *p, unsigned bits, int n)
{
    void *a = !n ? sm_pool_get(p) : (bits & 1 ? get_path1 : get_path0)(p, bits >> 1, n - 1);
    AFTER_CALL(a);
    return a;
}

/* n Gets through get, from one call site whatever the compiler unrolls (a
 * stack is every frame, the test's own included). */
static T_NOINLINE void get_n(sm_pool *p, void *(*get)(sm_pool *), void **out, int n)
{
    for (int i = 0; i < n; i++) {
        out[i] = get(p);
        AFTER_CALL(out[i]);
    }
}

/* Gets down paths 0..n-1, each from one call site. */
static T_NOINLINE void get_paths(sm_pool *p, void **out, int n)
{
    for (int d = 0; d < n; d++) {
        out[d] = get_path(p, (unsigned)d, 6);
        AFTER_CALL(out[d]);
    }
}

static sm_pool *pool_make(int check)
{
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 16), .check = check};
    sm_pool *p = NULL;
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    return p;
}

/* ---- capturing output --------------------------------------------------- */

/* The whole content of f, from its start; the caller frees it. */
static char *slurp(FILE *f)
{
    fflush(f);
    long n = ftell(f);
    char *s = malloc((size_t)(n > 0 ? n : 0) + 1);
    rewind(f);
    size_t got = n > 0 ? fread(s, 1, (size_t)n, f) : 0;
    s[got] = 0;
    return s;
}

static char *report_of(sm_pool *p)
{
    FILE *f = tmpfile();
    if (!f)
        return NULL;
    CHECK_EQ(sm_pool_report(p, f), 0);
    char *s = slurp(f);
    fclose(f);
    return s;
}

/* stderr goes to a temporary file until stderr_end(), which returns what
 * was written. */
typedef struct capture {
    FILE *f;
    int saved;
} capture;

static capture stderr_begin(void)
{
    capture c = {tmpfile(), -1};
    fflush(stderr);
    if (c.f) {
        c.saved = dup(2);
        dup2(fileno(c.f), 2);
    }
    return c;
}

static char *stderr_end(capture c)
{
    if (!c.f)
        return NULL;
    fflush(stderr);
    dup2(c.saved, 2);
    close(c.saved);
    fseek(c.f, 0, SEEK_END);
    char *s = slurp(c.f);
    fclose(c.f);
    return s;
}

static int show;

static void shown(const char *title, const char *text)
{
    if (show)
        printf("---- %s\n%s%s", title, text ? text : "(nothing)\n",
               text && *text && text[strlen(text) - 1] != '\n' ? "\n" : "");
}

static int has(const char *text, const char *want)
{
    if (text && strstr(text, want))
        return 1;
    printf("  missing \"%s\" in:\n%s\n", want, text ? text : "(nothing)");
    return CHECK(text && strstr(text, want));
}

/* ---- events, with their whole detail ------------------------------------ */

static struct {
    int count, code;
    char detail[1024];
} seen;

static void keep_event(const sm_event *ev, void *ctx)
{
    (void)ctx;
    seen.count++;
    seen.code = ev->code;
    snprintf(seen.detail, sizeof seen.detail, "%s", ev->detail);
}

static void keep_events(void)
{
    memset(&seen, 0, sizeof seen);
    sm_set_handler(keep_event, NULL);
}

/* ---- the report --------------------------------------------------------- */

static void test_report_groups_outstanding_arrays_by_get_site(void)
{
    sm_pool *p = pool_make(SM_CHECK_FULL);
    void *a[30], *b[20];
    get_n(p, get_from_a, a, 30);
    get_n(p, get_from_b, b, 20);
    for (int i = 0; i < 18; i++) /* a's group becomes the smaller one */
        CHECK_EQ(put_from_c(p, a[i]), 0);

    char *r = report_of(p);
    shown("sm_pool_report at SM_CHECK_FULL", r);
    char want[128];
    snprintf(want, sizeof want,
             "safemap: pool %p int64_t[16]: 32 arrays outstanding (4096 B); "
             "Get call sites: every Get recorded (SM_CHECK_FULL)\n",
             (void *)p);
    if (has(r, want)) {
        const char *gb = strstr(r, "  20 arrays (2560 B) got at:\n    #0 0x");
        const char *ga = strstr(r, "  12 arrays (1536 B) got at:\n    #0 0x");
        CHECK(gb && ga && gb < ga); /* largest group first */
        CHECK(gb && strstr(gb, " in get_from_b+0x") &&
              strstr(gb, " in get_from_b+0x") < (ga ? ga : gb + strlen(gb)));
        CHECK(ga && strstr(ga, " in get_from_a+0x"));
        has(r, "    #1 0x"); /* the frame above: the test itself */
        has(r, "  0 arrays (0 B) whose Get was not recorded\n");
    }
    free(r);

    /* Everything back: only the header and the last line remain. */
    for (int i = 18; i < 30; i++)
        CHECK_EQ(put_from_c(p, a[i]), 0);
    for (int i = 0; i < 20; i++)
        CHECK_EQ(put_from_d(p, b[i]), 0);
    r = report_of(p);
    has(r, "int64_t[16]: 0 arrays outstanding (0 B)");
    CHECK(r && !strstr(r, "got at"));
    free(r);
    sm_pool_free(p);
}

static void test_report_says_what_each_level_records(void)
{
    sm_pool *p = pool_make(SM_CHECK_OFF);
    void *a = get_from_a(p);
    char *r = report_of(p);
    has(r, "1 arrays outstanding (128 B); Get call sites: none recorded (SM_CHECK_OFF)");
    has(r, "  1 arrays (128 B) whose Get was not recorded\n");
    free(r);
    CHECK_EQ(sm_pool_put(p, a), 0);
    sm_pool_free(p);

    p = pool_make(SM_CHECK_CHEAP);
    r = report_of(p);
    unsigned n = chk_debug_get()->sample;
    char want[128];
    if (n > 1)
        snprintf(want, sizeof want,
                 "1 Get in %u recorded (SM_CHECK_CHEAP, SAFEMAP_DEBUG=sample=%u)", n, n);
    else
        snprintf(want, sizeof want, "%s", n ? "every Get recorded" : "none recorded");
    has(r, want);
    free(r);
    sm_pool_free(p);
}

static void test_report_null_arguments_are_einval(void)
{
    sm_pool *p = pool_make(SM_CHECK_FULL);
    CHECK_EQ(sm_pool_report(NULL, stdout), SM_EINVAL);
    CHECK_EQ(sm_pool_report(p, NULL), SM_EINVAL);
    sm_pool_free(p);
}

/* Out of memory for the report's copy: SM_ENOMEM, nothing written. */
static void test_report_without_memory_writes_nothing(void)
{
    cnt_install();
    sm_pool *p = pool_make(SM_CHECK_FULL);
    void *a = get_from_a(p);
    FILE *f = tmpfile();
    if (f) {
        cnt_fail_nth(1, 0);
        CHECK_EQ(sm_pool_report(p, f), SM_ENOMEM);
        cnt_fail_never();
        CHECK_EQ(ftell(f), 0);
        fclose(f);
    }
    CHECK_EQ(sm_pool_put(p, a), 0);
    sm_pool_free(p);
    CHECK_EQ(cnt_blocks(), 0);
    cnt_uninstall();
}

/* ---- pool_each_site: the profile's view --------------------------------- */

typedef struct totals {
    int sites;
    uint64_t alloc_objects, alloc_bytes, inuse_objects, inuse_bytes;
    int deepest;
} totals;

static void add_site(const pool_site *s, void *ctx)
{
    totals *t = ctx;
    t->sites++;
    t->alloc_objects += s->alloc_objects;
    t->alloc_bytes += s->alloc_bytes;
    t->inuse_objects += s->inuse_objects;
    t->inuse_bytes += s->inuse_bytes;
    t->deepest = s->depth > t->deepest ? s->depth : t->deepest;
    CHECK(s->depth >= 1 && s->depth <= 16);
    CHECK(s->pcs[0] != NULL);
}

static void test_each_site_totals_match_the_calls(void)
{
    sm_pool *p = pool_make(SM_CHECK_FULL);
    void *a[10], *b[5];
    get_n(p, get_from_a, a, 10);
    get_n(p, get_from_b, b, 5);
    for (int i = 0; i < 7; i++)
        CHECK_EQ(put_from_c(p, a[i]), 0);
    get_n(p, get_from_a, a, 7); /* a second round from a: the same stack */
    for (int i = 0; i < 4; i++)
        CHECK_EQ(put_from_d(p, a[i]), 0);

    totals t = {0};
    pool_each_site(p, add_site, &t);
    /* Three: get_from_a's second round is called from another line (a stack
     * is every frame); Put stacks are not Get sites. */
    CHECK_EQ(t.sites, 3);
    CHECK_EQ(t.alloc_objects, 22);
    CHECK_EQ(t.alloc_bytes, 22 * ARRAY_BYTES);
    CHECK_EQ(t.inuse_objects, 11);
    CHECK_EQ(t.inuse_bytes, 11 * ARRAY_BYTES);
    struct sm_pool_stats st;
    sm_pool_stats(p, &st);
    CHECK_EQ(st.live_arrays, t.inuse_objects);
    CHECK_EQ(st.gets, t.alloc_objects);

    for (int i = 4; i < 10; i++)
        CHECK_EQ(put_from_d(p, a[i]), 0);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(put_from_d(p, b[i]), 0);
    memset(&t, 0, sizeof t);
    pool_each_site(p, add_site, &t);
    CHECK_EQ(t.alloc_objects, 22);
    CHECK_EQ(t.inuse_objects, 0);
    sm_pool_free(p);
}

/* Distinct stacks, more than the table's first size: it grows, keeps its
 * counts, and goes back with the pool. */
static void test_site_table_grows_and_goes_with_the_pool(void)
{
    cnt_install();
    sm_pool *p = pool_make(SM_CHECK_FULL);
    enum { PATHS = 40 };
    void *a[PATHS];
    volatile int rounds = 3; /* a loop the compiler cannot unroll: one call site */
    for (int r = 0; r < rounds; r++) {
        get_paths(p, a, PATHS);
        for (int d = 0; r + 1 < rounds && d < PATHS; d++)
            CHECK_EQ(sm_pool_put(p, a[d]), 0);
    }
    void *deep = get_at_depth(p, 30);
    totals t = {0};
    pool_each_site(p, add_site, &t);
    CHECK_EQ(t.sites, PATHS + 1);
    CHECK_EQ(t.alloc_objects, 3 * PATHS + 1);
    CHECK_EQ(t.inuse_objects, PATHS + 1);
    CHECK_EQ(t.deepest, 16); /* stacks are cut at 16 frames */
    for (int d = 0; d < PATHS; d++)
        CHECK_EQ(sm_pool_put(p, a[d]), 0);
    CHECK_EQ(sm_pool_put(p, deep), 0);
    sm_pool_free(p);
    CHECK_EQ(cnt_blocks(), 0);
    CHECK_EQ(cnt_bytes(), 0);
    cnt_uninstall();
}

/* When the table cannot grow, calls go on, unrecorded. */
static void test_recording_without_memory_loses_only_the_site(void)
{
    cnt_install();
    sm_pool *p = pool_make(SM_CHECK_FULL);
    void *warm = get_from_a(p); /* the slab and the first table */
    void *a[40];
    cnt_fail_nth(1, 1);
    for (int d = 0; d < 40; d++)
        a[d] = get_path(p, (unsigned)d, 6); /* new stacks: the table would grow */
    cnt_fail_never();
    int got = 0;
    for (int d = 0; d < 40; d++)
        got += a[d] != NULL;
    totals t = {0};
    pool_each_site(p, add_site, &t);
    struct sm_pool_stats st;
    sm_pool_stats(p, &st);
    CHECK_EQ(st.live_arrays, 1 + (size_t)got);
    CHECK(t.inuse_objects < st.live_arrays);
    char *r = report_of(p);
    char want[80];
    snprintf(want, sizeof want, "%llu arrays (%llu B) whose Get was not recorded",
             (unsigned long long)(st.live_arrays - t.inuse_objects),
             (unsigned long long)((st.live_arrays - t.inuse_objects) * ARRAY_BYTES));
    has(r, want);
    free(r);
    for (int d = 0; d < 40; d++)
        if (a[d])
            CHECK_EQ(sm_pool_put(p, a[d]), 0);
    CHECK_EQ(sm_pool_put(p, warm), 0);
    sm_pool_free(p);
    CHECK_EQ(cnt_blocks(), 0);
    cnt_uninstall();
}

/* ---- leaks at free ------------------------------------------------------ */

static void test_free_reports_leaked_arrays_at_full(void)
{
    sm_pool *p = pool_make(SM_CHECK_FULL);
    void *a[2], *b[2];
    get_n(p, get_from_a, a, 2);
    get_n(p, get_from_b, b, 2);
    CHECK_EQ(put_from_c(p, b[1]), 0);
    CHECK(a[0] && a[1] && b[0]); /* 3 left out: leaked */
    char want[160];
    snprintf(want, sizeof want,
             "safemap: pool %p int64_t[16]: 3 arrays leaked at sm_pool_free (384 B); "
             "Get call sites: every Get recorded (SM_CHECK_FULL)\n",
             (void *)p);
    capture cap = stderr_begin();
    sm_pool_free(p); /* a report, not an event: no abort */
    char *err = stderr_end(cap);
    shown("sm_pool_free at SM_CHECK_FULL with arrays out (stderr)", err);
    if (has(err, want)) {
        const char *ga = strstr(err, "  2 arrays (256 B) got at:\n    #0 0x");
        const char *gb = strstr(err, "  1 arrays (128 B) got at:\n    #0 0x");
        CHECK(ga && gb && ga < gb);
        CHECK(ga && strstr(ga, " in get_from_a+0x"));
        CHECK(gb && strstr(gb, " in get_from_b+0x"));
        has(err, "  0 arrays (0 B) whose Get was not recorded\n");
    }
    free(err);
}

static void test_free_is_silent_without_leaks_or_below_full(void)
{
    int levels[] = {SM_CHECK_OFF, SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 3; l++) {
        sm_pool *p = pool_make(levels[l]);
        void *a = get_from_a(p);
        if (levels[l] == SM_CHECK_FULL)
            CHECK_EQ(put_from_c(p, a), 0); /* FULL: nothing out */
        capture cap = stderr_begin();
        sm_pool_free(p);
        char *err = stderr_end(cap);
        CHECK(err && err[0] == 0);
        free(err);
    }
}

/* ---- misuse events name their sites ------------------------------------- */

static void test_double_put_names_both_puts_and_the_get(void)
{
    keep_events();
    sm_pool *p = pool_make(SM_CHECK_FULL);
    void *a = get_from_a(p);
    CHECK_EQ(put_from_c(p, a), 0);
    CHECK_EQ(put_from_d(p, a), SM_EDOUBLE);
    shown("SM_EDOUBLE detail at SM_CHECK_FULL", seen.detail);
    CHECK_EQ(seen.count, 1);
    has(seen.detail, "was already put back by put_from_c+0x");
    has(seen.detail, "put back again by put_from_d+0x");
    has(seen.detail, "got by get_from_a+0x");
    has(seen.detail, "int64_t[16]");
    /* The frame above each: " < " and the caller. */
    has(seen.detail, "(test_pool_sites) < ");
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

static void test_foreign_put_names_its_caller(void)
{
    keep_events();
    int levels[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        seen.count = 0;
        sm_pool *p = pool_make(levels[l]);
        int64_t local[LEN];
        CHECK_EQ(put_from_d(p, local), SM_EFOREIGN);
        shown(levels[l] == SM_CHECK_FULL ? "SM_EFOREIGN detail at SM_CHECK_FULL"
                                         : "SM_EFOREIGN detail at SM_CHECK_CHEAP",
              seen.detail);
        CHECK_EQ(seen.count, 1);
        has(seen.detail, "not in any slab");
        has(seen.detail, "put back by put_from_d+0x");
        sm_pool_free(p);
    }
    sm_set_handler(NULL, NULL);
}

static void test_write_after_put_names_the_put_and_the_get(void)
{
    keep_events();
    sm_pool *p = pool_make(SM_CHECK_FULL);
    int64_t *a = get_from_b(p);
    CHECK_EQ(put_from_c(p, a), 0);
#ifdef T_ASAN
    ASAN_UNPOISON_MEMORY_REGION(a + 2, 8); /* else ASan reports the write itself */
#endif
#ifdef VALGRIND_MAKE_MEM_UNDEFINED
    VALGRIND_MAKE_MEM_UNDEFINED(a + 2, 8);
#endif
    a[2] = 7;
    sm_pool_cycle(p);
    shown("SM_ECORRUPT detail at SM_CHECK_FULL", seen.detail);
    CHECK_EQ(seen.count, 1);
    CHECK_EQ(seen.code, SM_ECORRUPT);
    has(seen.detail, "byte 16 is 0x07");
    has(seen.detail, "put back by put_from_c+0x");
    has(seen.detail, "got by get_from_b+0x");
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    show = tl_option(argc, argv, "show") != NULL || (argc > 1 && !strcmp(argv[1], "--show"));
    RUN(test_report_groups_outstanding_arrays_by_get_site);
    RUN(test_report_says_what_each_level_records);
    RUN(test_report_null_arguments_are_einval);
    RUN(test_report_without_memory_writes_nothing);
    RUN(test_each_site_totals_match_the_calls);
    RUN(test_site_table_grows_and_goes_with_the_pool);
    RUN(test_recording_without_memory_loses_only_the_site);
    RUN(test_free_reports_leaked_arrays_at_full);
    RUN(test_free_is_silent_without_leaks_or_below_full);
    RUN(test_double_put_names_both_puts_and_the_get);
    RUN(test_foreign_put_names_its_caller);
    RUN(test_write_after_put_names_the_put_and_the_get);
    return tl_finish();
}
