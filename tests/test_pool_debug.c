/*
 * test_pool_debug.c - what SAFEMAP_DEBUG turns on in the pool: sampled call
 * sites at SM_CHECK_CHEAP (sample=N) and the trace line of each cycle
 * (trace=1).  SAFEMAP_DEBUG is read once per process, at the library's first
 * use, so main() sets it before anything else from --debug=SETTINGS
 * (default "sample=1,trace=1"); CTest runs the program once per setting
 * (pool.cmake):
 *
 *   test_pool_debug                    sample=1,trace=1: every Get recorded
 *   test_pool_debug_sample7            sample=7,trace=1: about one in seven
 *   test_pool_debug_threads            sample=7, the thread test alone (TSan)
 *
 * With sampling, counts stay exact (the sampling countdown is also the Get
 * counter); recorded arrays plus the "not recorded" line make up the live
 * ones; a recorded array's Put is recorded too.  --show prints the trace
 * lines (docs/safety.md quotes them).
 */
#include "internal.h"
#include "support.h"
#include "testlib.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

enum { LEN = 16 };
#define ARRAY_BYTES ((size_t)LEN * sizeof(int64_t))

#include "sites.h"

static T_NOINLINE void get_n(sm_pool *p, void *(*get)(sm_pool *), void **out, int n)
{
    for (int i = 0; i < n; i++) {
        out[i] = get(p);
        AFTER_CALL(out[i]);
    }
}

static sm_pool *pool_make(int check)
{
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 16), .check = check};
    sm_pool *p = NULL;
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    return p;
}

static unsigned rate(void)
{
    return chk_debug_get()->sample;
}

/* ---- what the recorded sites add up to ---------------------------------- */

typedef struct totals {
    int sites;
    uint64_t alloc, inuse; /* as pool_each_site gives them: scaled by the rate */
} totals;

static void add_site(const pool_site *s, void *ctx)
{
    totals *t = ctx;
    t->sites++;
    t->alloc += s->alloc_objects;
    t->inuse += s->inuse_objects;
    CHECK_EQ(s->alloc_bytes, s->alloc_objects * ARRAY_BYTES);
    CHECK_EQ(s->inuse_bytes, s->inuse_objects * ARRAY_BYTES);
}

static totals totals_of(sm_pool *p)
{
    totals t = {0};
    pool_each_site(p, add_site, &t);
    return t;
}

/* The report's own count of the arrays whose Get was not recorded. */
static long long unrecorded_in_report(sm_pool *p)
{
    FILE *f = tmpfile();
    if (!f)
        return -1;
    CHECK_EQ(sm_pool_report(p, f), 0);
    rewind(f);
    char line[512];
    long long n = -1;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "whose Get was not recorded"))
            sscanf(line, "%lld", &n);
    fclose(f);
    return n;
}

/* Recorded (scaled back) plus unrecorded is every live array. */
static void check_accounting(sm_pool *p)
{
    struct sm_pool_stats st;
    sm_pool_stats(p, &st);
    totals t = totals_of(p);
    CHECK_EQ(t.alloc % rate(), 0);
    CHECK_EQ(t.inuse % rate(), 0);
    long long rest = unrecorded_in_report(p);
    CHECK_EQ((long long)(t.inuse / rate()) + rest, (long long)st.live_arrays);
}

/* ---- tests -------------------------------------------------------------- */

static void test_settings_are_read_once_at_first_use(void)
{
    const char *env = getenv("SAFEMAP_DEBUG");
    CHECK(env != NULL);
    CHECK(rate() >= 1);
    if (env && strstr(env, "trace=1"))
        CHECK(chk_debug_get()->trace);
}

static void test_cheap_records_one_get_in_rate(void)
{
    sm_pool *p = pool_make(SM_CHECK_CHEAP);
    enum { NA = 2100, NB = 700 };
    void **a = malloc(NA * sizeof *a), **b = malloc(NB * sizeof *b);
    get_n(p, get_from_a, a, NA);
    get_n(p, get_from_b, b, NB);
    struct sm_pool_stats st;
    sm_pool_stats(p, &st);
    CHECK_EQ(st.gets, NA + NB); /* exact, sampled or not */
    totals t = totals_of(p);
    uint64_t recorded = t.alloc / rate();
    if (rate() == 1) {
        CHECK_EQ(t.sites, 2);
        CHECK_EQ(recorded, NA + NB);
    } else {
        /* Intervals are uniform in [1, 2N-1]: about (NA + NB) / N. */
        uint64_t expect = (NA + NB) / rate();
        CHECK(recorded >= expect / 2 && recorded <= expect * 2);
    }
    check_accounting(p);

    for (int i = 0; i < NA; i += 2)
        CHECK_EQ(put_from_c(p, a[i]), 0);
    for (int i = 0; i < NB; i++)
        CHECK_EQ(put_from_c(p, b[i]), 0);
    sm_pool_stats(p, &st);
    CHECK_EQ(st.puts, NA / 2 + NB);
    CHECK_EQ(st.live_arrays, NA / 2);
    check_accounting(p);

    get_n(p, get_from_b, b, NB); /* reused arrays, recorded afresh */
    check_accounting(p);
    for (int i = 1; i < NA; i += 2)
        CHECK_EQ(put_from_c(p, a[i]), 0);
    for (int i = 0; i < NB; i++)
        CHECK_EQ(put_from_c(p, b[i]), 0);
    t = totals_of(p);
    CHECK_EQ(t.inuse, 0);
    CHECK_EQ(unrecorded_in_report(p), 0);
    sm_pool_free(p);
    free(a);
    free(b);
}

/* sample=1: every Get and Put is recorded at CHEAP, as at FULL, so a double
 * Put names the first Put. */
static void test_cheap_double_put_names_a_recorded_put(void)
{
    if (rate() != 1)
        return;
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_CHEAP);
    void *a = get_from_a(p);
    CHECK_EQ(put_from_c(p, a), 0);
    CHECK_EQ(put_from_c(p, a), SM_EDOUBLE);
    CHECK(strstr(evlog.last.detail, "already put back by put_from_c+0x") != NULL);
    if (!strstr(evlog.last.detail, "already put back by put_from_c+0x"))
        printf("  detail: %s\n", evlog.last.detail);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

static void test_off_records_nothing(void)
{
    sm_pool *p = pool_make(SM_CHECK_OFF);
    void *a[10];
    get_n(p, get_from_a, a, 10);
    CHECK_EQ(totals_of(p).sites, 0);
    CHECK_EQ(unrecorded_in_report(p), 10);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(sm_pool_put(p, a[i]), 0);
    sm_pool_free(p);
}

/* stderr into a temporary file, for the trace lines. */
static char *stderr_of_cycle(sm_pool *p)
{
    FILE *f = tmpfile();
    if (!f)
        return NULL;
    fflush(stderr);
    int saved = dup(2);
    dup2(fileno(f), 2);
    sm_pool_cycle(p);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long n = ftell(f);
    char *s = malloc((size_t)(n > 0 ? n : 0) + 1);
    rewind(f);
    s[n > 0 ? fread(s, 1, (size_t)n, f) : 0] = 0;
    fclose(f);
    return s;
}

typedef struct trace_line {
    void *pool;
    char layout[32];
    unsigned long long cycle;
    size_t idle, victim, freed, freed_bytes, live, live_bytes, reserved;
    double us;
} trace_line;

/* "safemap: pool 0x... [int64_t[16]] cycle 1: idle 4 -> victim 4, freed 0
 * (0 B), live 6 (768 B), reserved 66432 B, 3 us".  The layout's name may
 * hold brackets and spaces: it ends at "] cycle ". */
static int show;

static int trace_parse(const char *s, trace_line *t)
{
    if (show && s)
        printf("%s", s);
    int at = 0, end = 0;
    const char *close = strstr(s, "] cycle ");
    int ok = sscanf(s, "safemap: pool %p [%n", &t->pool, &at) == 1 && at && close &&
             close - (s + at) < (long)sizeof t->layout;
    if (ok) {
        memcpy(t->layout, s + at, (size_t)(close - (s + at)));
        t->layout[close - (s + at)] = 0;
        ok = sscanf(close,
                    "] cycle %llu: idle %zu -> victim %zu, freed %zu (%zu B), live %zu (%zu B), "
                    "reserved %zu B, %lf us\n%n",
                    &t->cycle, &t->idle, &t->victim, &t->freed, &t->freed_bytes, &t->live,
                    &t->live_bytes, &t->reserved, &t->us, &end) == 9 &&
             close[end] == 0;
    }
    if (!ok)
        printf("  not one trace line: \"%s\"\n", s);
    return ok;
}

static void test_trace_prints_one_line_per_cycle(void)
{
    if (!chk_debug_get()->trace)
        return;
    int levels[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        sm_pool *p = pool_make(levels[l]);
        void *a[10];
        get_n(p, get_from_a, a, 10);
        for (int i = 0; i < 4; i++)
            CHECK_EQ(sm_pool_put(p, a[i]), 0);
        trace_line t;
        char *s = stderr_of_cycle(p);
        struct sm_pool_stats st;
        sm_pool_stats(p, &st);
        if (CHECK(s && trace_parse(s, &t))) {
            CHECK(t.pool == (void *)p);
            CHECK(strcmp(t.layout, "int64_t[16]") == 0);
            CHECK_EQ(t.cycle, 1);
            CHECK_EQ(t.idle, 4);
            CHECK_EQ(t.victim, 4);
            CHECK_EQ(t.freed, 0);
            CHECK_EQ(t.freed_bytes, 0);
            CHECK_EQ(t.live, 6);
            CHECK_EQ(t.live_bytes, 6 * ARRAY_BYTES);
            CHECK_EQ(t.reserved, st.reserved_bytes);
            CHECK(t.us >= 0 && t.us < 1e6); /* ten arrays: well under a second */
        }
        free(s);
        s = stderr_of_cycle(p);
        sm_pool_stats(p, &st);
        if (CHECK(s && trace_parse(s, &t))) {
            CHECK_EQ(t.cycle, 2);
            CHECK_EQ(t.idle, 4);
            CHECK_EQ(t.victim, 0);
            CHECK_EQ(t.freed, 4);
            CHECK_EQ(t.freed_bytes, 4 * ARRAY_BYTES);
            CHECK_EQ(t.live, 6);
            CHECK_EQ(t.reserved, st.reserved_bytes);
        }
        free(s);
        for (int i = 4; i < 10; i++)
            CHECK_EQ(sm_pool_put(p, a[i]), 0);
        sm_pool_free(p);
    }
}

/* ---- threads: sampled Gets in one thread, their Puts in another ---------- */

enum { ROUNDS = 20000, RING = 64 };

typedef struct handoff {
    sm_pool *p;
    int rounds;
    void *ring[RING];
    atomic_size_t head, tail;
} handoff;

static void *producer(void *arg)
{
    handoff *h = arg;
    size_t tail = 0;
    for (int i = 0; i < h->rounds; i++) {
        void *a = get_from_a(h->p);
        void *b = get_from_b(h->p); /* got and put here */
        CHECK_EQ(sm_pool_put(h->p, b), 0);
        while (tail - atomic_load(&h->head) == RING)
            sched_yield();
        h->ring[tail % RING] = a;
        atomic_store(&h->tail, ++tail);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    handoff *h = arg;
    size_t head = 0;
    for (int i = 0; i < h->rounds; i++) {
        while (atomic_load(&h->tail) == head)
            sched_yield();
        void *a = h->ring[head % RING];
        atomic_store(&h->head, ++head);
        CHECK_EQ(put_from_c(h->p, a), 0);
    }
    return NULL;
}

static void test_threads_sampled_gets_put_elsewhere(void)
{
    int levels[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        sm_pool *p = pool_make(levels[l]);
        handoff h;
        memset(&h, 0, sizeof h);
        h.p = p;
        h.rounds =
            levels[l] == SM_CHECK_FULL || rate() == 1 || tl_under_valgrind ? ROUNDS / 20 : ROUNDS;
        atomic_init(&h.head, 0);
        atomic_init(&h.tail, 0);
        pthread_t th[2];
        pthread_create(&th[0], NULL, producer, &h);
        pthread_create(&th[1], NULL, consumer, &h);
        struct sm_pool_stats st;
        for (int i = 0; i < 50; i++) /* snapshots while they run */
            sm_pool_stats(p, &st);
        pthread_join(th[0], NULL);
        pthread_join(th[1], NULL);
        sm_pool_stats(p, &st);
        CHECK_EQ(st.gets, 2 * (uint64_t)h.rounds);
        CHECK_EQ(st.puts, 2 * (uint64_t)h.rounds);
        CHECK_EQ(st.live_arrays, 0);
        totals t = totals_of(p);
        CHECK_EQ(t.inuse, 0);
        CHECK(levels[l] == SM_CHECK_CHEAP || t.alloc == 2 * (uint64_t)h.rounds);
        sm_pool_free(p);
    }
}

int main(int argc, char **argv)
{
    /* Before the library's first use: it reads SAFEMAP_DEBUG once. */
    const char *debug = tl_option(argc, argv, "debug");
    setenv("SAFEMAP_DEBUG", debug ? debug : "sample=1,trace=1", 1);
    tl_init(argc, argv);
    show = tl_option(argc, argv, "show") != NULL || (argc > 1 && !strcmp(argv[1], "--show"));
    RUN(test_settings_are_read_once_at_first_use);
    RUN(test_cheap_records_one_get_in_rate);
    RUN(test_cheap_double_put_names_a_recorded_put);
    RUN(test_off_records_nothing);
    RUN(test_trace_prints_one_line_per_cycle);
    RUN(test_threads_sampled_gets_put_elsewhere);
    return tl_finish();
}
