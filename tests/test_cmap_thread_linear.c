/*
 * test_cmap_thread_linear.c - every history the concurrent map produces is
 * linearizable, and the checker that says so catches broken maps.
 *
 * Concern: linearizability of put, get, del and update, key by key (see
 * lincheck.h for the recorder, the model and the search).
 *
 * The checker is tested first, without any map: hand-written histories that
 * break the register in each way a concurrent map can (a read of a value
 * overwritten before the read began, a read of a value never written, two
 * updates that both replaced the same value, a read that goes back in time)
 * must be reported, and their correct counterparts must pass; on thousands
 * of small random histories its verdict must equal an exhaustive search
 * over every order of the operations; and the witness it prints for a
 * violation hidden in a long history must be just the operations involved.
 *
 * Then the same driver runs against maps (lincheck_maps.h): a mutex around
 * sm_map and a small seqlock map must pass; the seqlock map with its reader
 * validation skipped (torn reads), with an update that reads and writes
 * under two separate locks (lost updates) and with a per-thread read cache
 * (stale reads) must be caught.  Last, sm_cmap: alone, while another thread
 * grows and shrinks it by thousands of keys, and with large values.
 *
 * Options: --seconds=N runs the sm_cmap checks for N seconds in all (long
 * mode; `make lincheck LINCHECK_SECONDS=N`), printing totals every minute;
 * --threads=N, --keys=N (at most 128) change the shape of the histories.
 * Without them each check is bounded by an operation count and a couple of
 * seconds, so the file runs in seconds, under TSan too.
 */
#include "lincheck_maps.h"
#include "testlib.h"

#include "../src/internal.h" /* cmap_test_faults */

#define VLEN 8 /* values are int64_t[8] */

static double opt_seconds;  /* > 0: long mode */
static int opt_threads = 4; /* recording threads */
static int opt_keys = 8;

/* ---- Hand-written histories -------------------------------------------- */

/* One operation: thread, kind, key, id written, rc, id seen, instants. */
static lc_op op(int thread, int kind, int64_t arg, int rc, int64_t seen, uint64_t inv, uint64_t res)
{
    return (lc_op){.thread = thread,
                   .kind = kind,
                   .key = 0,
                   .arg = arg,
                   .rc = rc,
                   .seen = seen,
                   .inv = inv,
                   .res = res};
}

#define PUT(th, id, inv, res) op(th, LC_PUT, id, 0, 0, inv, res)
#define GET(th, seen, inv, res)                                                                    \
    op(th, LC_GET, 0, (seen) == LC_ABSENT ? SM_ENOENT : 0, seen, inv, res)
#define DEL(th, was_present, inv, res) op(th, LC_DEL, 0, (was_present) ? 0 : SM_ENOENT, 0, inv, res)
#define UPD(th, id, replaced, inv, res) op(th, LC_UPDATE, id, 0, replaced, inv, res)

/* The verdict on ops[0..n) as one key starting absent; prints any report. */
static int verdict(const lc_op *ops, size_t n, int64_t initial)
{
    return lc_check(ops, n, 1, &initial, stdout);
}

/* The verdict, with the report discarded (for expected violations that
 * would only clutter the log). */
static int quiet_verdict(const lc_op *ops, size_t n, int64_t initial)
{
    return lc_check(ops, n, 1, &initial, NULL);
}

static void test_sequential_history_passes(void)
{
    lc_op h[] = {
        PUT(0, 1, 1, 2),  GET(1, 1, 3, 4),   UPD(0, 2, 1, 5, 6),   DEL(1, 1, 7, 8),
        GET(0, 0, 9, 10), DEL(1, 0, 11, 12), UPD(1, 3, 0, 13, 14), GET(0, 3, 15, 16),
    };
    CHECK_EQ(verdict(h, sizeof h / sizeof h[0], LC_ABSENT), LC_OK);
}

static void test_overlapping_reads_may_see_old_then_new(void)
{
    /* put 2 spans [3, 8]: a read inside it may see 1, a later one 2. */
    lc_op h[] = {PUT(0, 1, 1, 2), PUT(0, 2, 3, 8), GET(1, 1, 4, 5), GET(2, 2, 6, 7)};
    CHECK_EQ(verdict(h, 4, LC_ABSENT), LC_OK);
    /* Both reads overlap each other as well: either order is fine. */
    lc_op g[] = {PUT(0, 1, 1, 2), PUT(0, 2, 3, 10), GET(1, 2, 4, 8), GET(2, 1, 5, 9)};
    CHECK_EQ(verdict(g, 4, LC_ABSENT), LC_OK);
}

static void test_read_going_back_in_time_fails(void)
{
    /* The first read saw 2, so put 2 took effect before it ended; a read
     * that begins afterwards cannot see 1 again. */
    lc_op h[] = {PUT(0, 1, 1, 2), PUT(0, 2, 3, 10), GET(1, 2, 4, 5), GET(2, 1, 6, 7)};
    CHECK_EQ(quiet_verdict(h, 4, LC_ABSENT), LC_VIOLATION);
}

static void test_read_of_overwritten_value_fails(void)
{
    lc_op h[] = {PUT(0, 1, 1, 2), PUT(1, 2, 3, 4), GET(2, 1, 5, 6)};
    CHECK_EQ(quiet_verdict(h, 3, LC_ABSENT), LC_VIOLATION);
    /* Control: the read overlapping the second put may see the first. */
    lc_op ok[] = {PUT(0, 1, 1, 2), PUT(1, 2, 3, 6), GET(2, 1, 4, 5)};
    CHECK_EQ(verdict(ok, 3, LC_ABSENT), LC_OK);
}

static void test_read_of_deleted_value_fails(void)
{
    lc_op h[] = {PUT(0, 1, 1, 2), DEL(1, 1, 3, 4), GET(2, 1, 5, 6)};
    CHECK_EQ(quiet_verdict(h, 3, LC_ABSENT), LC_VIOLATION);
    lc_op absent[] = {PUT(0, 1, 1, 2), GET(2, LC_ABSENT, 3, 4)};
    CHECK_EQ(quiet_verdict(absent, 2, LC_ABSENT), LC_VIOLATION);
}

static void test_read_of_never_written_value_fails(void)
{
    lc_op h[] = {PUT(0, 1, 1, 2), GET(1, 7, 3, 4)};
    CHECK_EQ(quiet_verdict(h, 2, LC_ABSENT), LC_VIOLATION);
    /* A torn value decodes to LC_TORN, which no write has. */
    lc_op torn[] = {PUT(0, 1, 1, 4), PUT(1, 2, 2, 5), GET(2, LC_TORN, 3, 6)};
    CHECK_EQ(quiet_verdict(torn, 3, LC_ABSENT), LC_VIOLATION);
}

static void test_lost_update_fails(void)
{
    /* Two overlapping updates both replaced 1: one of them lost the other. */
    lc_op h[] = {PUT(0, 1, 1, 2), UPD(1, 2, 1, 3, 6), UPD(2, 3, 1, 4, 7)};
    CHECK_EQ(quiet_verdict(h, 3, LC_ABSENT), LC_VIOLATION);
    /* Control: the second saw the first's value. */
    lc_op ok[] = {PUT(0, 1, 1, 2), UPD(1, 2, 1, 3, 6), UPD(2, 3, 2, 4, 7)};
    CHECK_EQ(verdict(ok, 3, LC_ABSENT), LC_OK);
}

static void test_del_results_must_match_presence(void)
{
    lc_op twice[] = {PUT(0, 1, 1, 2), DEL(1, 1, 3, 6), DEL(2, 1, 4, 7)};
    CHECK_EQ(quiet_verdict(twice, 3, LC_ABSENT), LC_VIOLATION);
    lc_op ok[] = {PUT(0, 1, 1, 2), DEL(1, 1, 3, 6), DEL(2, 0, 4, 7)};
    CHECK_EQ(verdict(ok, 3, LC_ABSENT), LC_OK);
}

static void test_initial_state_is_honoured(void)
{
    lc_op h[] = {GET(0, 5, 1, 2)};
    CHECK_EQ(verdict(h, 1, 5), LC_OK);
    CHECK_EQ(quiet_verdict(h, 1, LC_ABSENT), LC_VIOLATION);
}

static void test_failed_call_changes_nothing(void)
{
    /* A put that returned SM_ENOMEM is a no-op: the read still sees 1. */
    lc_op h[] = {PUT(0, 1, 1, 2), op(1, LC_PUT, 2, SM_ENOMEM, 0, 3, 4), GET(2, 1, 5, 6)};
    CHECK_EQ(verdict(h, 3, LC_ABSENT), LC_OK);
}

/* The report of lc_check on a two-key history, in a string. */
static void test_keys_are_checked_independently(void)
{
    lc_op h[] = {PUT(0, 1, 1, 2), PUT(1, 2, 3, 4), GET(2, 1, 5, 6), PUT(0, 3, 1, 2),
                 GET(1, 3, 3, 4)};
    h[3].key = h[4].key = 1; /* key 1 is fine, key 0 is not */
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!CHECK(out != NULL))
        return;
    CHECK_EQ(lc_check(h, 5, 2, NULL, out), LC_VIOLATION);
    fclose(out);
    CHECK(strstr(text, "key 0 is not linearizable") != NULL);
    CHECK(strstr(text, "key 1") == NULL);
    /* Key 1 alone passes. */
    CHECK_EQ(lc_check(h + 3, 2, 2, NULL, stdout), LC_OK);
    free(text);
}

/* ---- Against an exhaustive search ---------------------------------------- */

/* Whether some order of ops[0..n) respects real time and the model:
 * tries every permutation (n <= 7). */
static int brute_linearizable(const lc_op *ops, int n, int64_t state, unsigned used)
{
    if (used == (1u << n) - 1)
        return 1;
    for (int i = 0; i < n; i++) {
        if (used & (1u << i))
            continue;
        /* i may go next only if no other pending op responded before i began. */
        int minimal = 1;
        for (int j = 0; j < n && minimal; j++)
            if (j != i && !(used & (1u << j)) && ops[j].res < ops[i].inv)
                minimal = 0;
        int64_t next;
        if (minimal && lc_step(&ops[i], state, &next) &&
            brute_linearizable(ops, n, next, used | (1u << i)))
            return 1;
    }
    return 0;
}

static void test_checker_agrees_with_exhaustive_search(void)
{
    uint64_t r = 12345;
    int seen_ok = 0, seen_bad = 0, disagree = 0;
    for (int trial = 0; trial < 20000; trial++) {
        lc_op h[7];
        int n = 1 + (int)((r = lc_mix(r + 1)) % 7);
        uint64_t instants[14];
        for (int i = 0; i < 2 * n; i++)
            instants[i] = (uint64_t)i + 1;
        for (int i = 2 * n - 1; i > 0; i--) { /* shuffle the 2n instants */
            int j = (int)((r = lc_mix(r + 1)) % (uint64_t)(i + 1));
            uint64_t t = instants[i];
            instants[i] = instants[j];
            instants[j] = t;
        }
        for (int i = 0; i < n; i++) {
            uint64_t a = instants[2 * i], b = instants[2 * i + 1];
            int kind = (int)((r = lc_mix(r + 1)) % 4);
            int64_t seen = (int64_t)((r = lc_mix(r + 1)) % 4); /* absent or #1..#3 */
            int present = (int)((r >> 8) & 1);
            switch (kind) {
            case LC_PUT:
                h[i] = PUT(i, i + 1, 0, 0);
                break;
            case LC_GET:
                h[i] = GET(i, seen, 0, 0);
                break;
            case LC_DEL:
                h[i] = DEL(i, present, 0, 0);
                break;
            default:
                h[i] = UPD(i, i + 1, seen, 0, 0);
                break;
            }
            h[i].inv = a < b ? a : b;
            h[i].res = a < b ? b : a;
        }
        int64_t initial = (int64_t)((r = lc_mix(r + 1)) % 2 ? 1 : 0);
        int expect = brute_linearizable(h, n, initial, 0) ? LC_OK : LC_VIOLATION;
        int got = quiet_verdict(h, (size_t)n, initial);
        seen_ok += expect == LC_OK;
        seen_bad += expect == LC_VIOLATION;
        if (got != expect && ++disagree <= 3) {
            printf("  disagreement on trial %d (exhaustive %d, checker %d):\n", trial, expect, got);
            for (int i = 0; i < n; i++)
                lc_print_op(stdout, &h[i], 0);
        }
    }
    printf("  20000 histories: %d linearizable, %d not\n", seen_ok, seen_bad);
    CHECK_EQ(disagree, 0);
    /* The generator must produce both kinds, or the comparison proves little. */
    CHECK(seen_ok > 1000);
    CHECK(seen_bad > 1000);
}

/* ---- Witnesses ----------------------------------------------------------- */

/* A long linearizable history: threads take turns in overlapping pairs over
 * a register; `ops` gets n operations with results from the model. */
static size_t long_valid_history(lc_op *ops, size_t n, uint64_t seed)
{
    int64_t state = LC_ABSENT;
    uint64_t r = seed, now = 1;
    for (size_t i = 0; i < n; i++) {
        int kind = (int)((r = lc_mix(r + 1)) % 4);
        lc_op o = {.thread = (int)(i % 3), .kind = kind, .key = 0};
        o.arg = (int64_t)i + 100;
        /* Linearize at `now`; the interval reaches back into the previous
         * operation's, so neighbours overlap. */
        o.inv = now > 1 ? now - 1 : now;
        o.res = now + 2;
        now += 2;
        switch (kind) {
        case LC_PUT:
            state = o.arg;
            break;
        case LC_GET:
            o.rc = state == LC_ABSENT ? SM_ENOENT : 0;
            o.seen = state;
            break;
        case LC_DEL:
            o.rc = state == LC_ABSENT ? SM_ENOENT : 0;
            state = LC_ABSENT;
            break;
        default:
            o.seen = state;
            state = o.arg;
            break;
        }
        ops[i] = o;
    }
    return n;
}

static void test_witness_is_the_operations_involved(void)
{
    enum { N = 300 };
    lc_op h[N + 1];
    long_valid_history(h, N, 99);
    CHECK_EQ(verdict(h, N, LC_ABSENT), LC_OK);
    /* A read far after the end that saw a put from the middle. */
    size_t victim = 0;
    for (size_t i = N / 2; i < N; i++)
        if (h[i].kind == LC_PUT) {
            victim = i;
            break;
        }
    if (!CHECK(victim > 0))
        return;
    h[N] = GET(7, h[victim].arg, 10 * N, 10 * N + 1);
    const lc_op *ptrs[N + 1];
    for (size_t i = 0; i <= N; i++)
        ptrs[i] = &h[i];
    if (!CHECK_EQ(lc_search(ptrs, N + 1, LC_ABSENT), LC_VIOLATION))
        return;
    size_t w = N + 1;
    lc_op *copies = NULL;
    if (!CHECK(lc_shrink(ptrs, &w, LC_ABSENT, &copies)))
        return;
    /* The stale read, the put it saw, and the later write that replaced
     * it (with at most one more write overlapping that one). */
    CHECK(w == 3 || w == 4);
    int has_read = 0, has_put = 0;
    for (size_t i = 0; i < w; i++) {
        has_read += ptrs[i]->thread == 7;
        has_put += ptrs[i]->kind == LC_PUT && ptrs[i]->arg == h[victim].arg;
    }
    CHECK(has_read && has_put);
    CHECK_EQ(lc_search(ptrs, w, LC_ABSENT), LC_VIOLATION);
    printf("  the witness printed for it:\n");
    lc_check_key(ptrs, w, 0, LC_ABSENT, stdout);
    free(copies);
}

/* A search that runs out of budget is a failure with its own report, never
 * a pass. */
static void test_giving_up_is_reported_not_passed(void)
{
    enum { N = 200 };
    lc_op h[N];
    long_valid_history(h, N, 7);
    CHECK_EQ(verdict(h, N, LC_ABSENT), LC_OK);
    uint64_t budget = lc_step_budget;
    lc_step_budget = 10;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (CHECK(out != NULL)) {
        CHECK_EQ(lc_check(h, N, 1, NULL, out), LC_GAVE_UP);
        fclose(out);
        CHECK(strstr(text, "key 0: gave up after 10 search steps") != NULL);
        free(text);
    }
    lc_step_budget = budget;
}

/* ---- Running the driver ----------------------------------------------------- */

/* A configuration for a map that must pass: bounded by an operation count
 * and two seconds in CI (one for the maps that are only controls).  In long mode the sm_cmap checks
 * share the time given (the other maps keep their CI bounds). */
static lc_config passing_config(uint64_t max_ops, int churn, int is_cmap)
{
    int long_mode = opt_seconds > 0 && is_cmap;
    lc_config c = {.threads = opt_threads,
                   .keys = opt_keys,
                   .ops_per_round = 100,
                   .max_ops = long_mode ? 0 : tl_scaled(max_ops),
                   .seconds = long_mode ? opt_seconds / 3
                              : is_cmap ? 2.0
                                        : 1.0,
                   .pct_get = 40,
                   .pct_put = 25,
                   .pct_del = 15,
                   .seed = 1,
                   .churn = churn,
                   .progress_seconds = long_mode ? 60 : 0,
                   .jitter = 16,
                   .stop_at_violation = 1 /* one witness says it; hours of them do not */};
    return c;
}

/* A configuration for a broken map: runs until the first violation or a
 * generous time limit. */
static lc_config catching_config(void)
{
    lc_config c = {.threads = opt_threads,
                   .keys = opt_keys,
                   .ops_per_round = 100,
                   .seconds = 10.0,
                   .pct_get = 40,
                   .pct_put = 25,
                   .pct_del = 15,
                   .seed = 2,
                   .stop_at_violation = 1,
                   .jitter = 16};
    return c;
}

static void report(const lc_target *t, const lc_stats *st, double seconds)
{
    printf("  %s: %llu operations (%.1f%% overlapping another on their key) in %llu rounds "
           "(%.1f s, %.2f s of it checking), longest key history %zu, %llu violations, %llu "
           "torn, %llu unexpected errors, %llu churn operations\n",
           t->name, (unsigned long long)st->ops,
           st->ops ? 100.0 * (double)st->overlapping / (double)st->ops : 0.0,
           (unsigned long long)st->rounds, seconds, st->check_seconds, st->max_key_ops,
           (unsigned long long)st->violations, (unsigned long long)st->torn,
           (unsigned long long)st->unexpected_rc, (unsigned long long)st->churn_ops);
}

static void expect_linearizable(const lc_target *t, const lc_config *c)
{
    lc_stats st;
    double t0 = tl_now();
    int v = lc_run(t, c, &st, stdout);
    report(t, &st, tl_now() - t0);
    CHECK_EQ(v, LC_OK);
    CHECK_EQ(st.torn, 0);
    CHECK_EQ(st.unexpected_rc, 0);
    CHECK_EQ(st.churn_errors, 0);
    CHECK(st.ops >= (uint64_t)c->threads * (uint64_t)c->ops_per_round);
    /* A run in which no two operations on a key overlapped would prove
     * nothing about concurrency. */
    CHECK(c->threads < 2 || st.overlapping > 0);
}

static void expect_caught(const lc_target *t)
{
    lc_config c = catching_config();
    lc_stats st;
    double t0 = tl_now();
    printf("  the checker's report on a deliberately broken map (expected):\n");
    int v = lc_run(t, &c, &st, stdout);
    report(t, &st, tl_now() - t0);
    CHECK_EQ(v, LC_VIOLATION);
}

static void test_mutex_map_is_linearizable(void)
{
    lm_locked m;
    lc_target t;
    if (!CHECK_EQ(lm_locked_open(&m, &t, VLEN, 0), 0))
        return;
    lc_config c = passing_config(200000, 2000, 0);
    expect_linearizable(&t, &c);
    lm_locked_close(&m);
}

static void test_seqlock_map_is_linearizable(void)
{
    lc_target t;
    lm_seq *m = lm_seq_new(&t, VLEN, 0);
    if (!CHECK(m != NULL))
        return;
    lc_config c = passing_config(200000, 0, 0);
    expect_linearizable(&t, &c);
    lm_seq_free(m);
}

static void test_unvalidated_reads_are_caught(void)
{
    lc_target t;
    lm_seq *m = lm_seq_new(&t, VLEN, 1);
    if (!CHECK(m != NULL))
        return;
    expect_caught(&t);
    lm_seq_free(m);
}

static void test_lost_updates_are_caught(void)
{
    lm_locked m;
    lc_target t;
    if (!CHECK_EQ(lm_locked_open(&m, &t, VLEN, 1), 0))
        return;
    expect_caught(&t);
    lm_locked_close(&m);
}

static void test_stale_reads_are_caught(void)
{
    lc_target inner, t;
    lm_seq *m = lm_seq_new(&inner, VLEN, 0);
    if (!CHECK(m != NULL))
        return;
    lm_stale w;
    lm_stale_wrap(&w, &t, &inner, "seqlock map, per-thread read cache");
    expect_caught(&t);
    lm_seq_free(m);
}

/* An sm_cmap of int64_t[len] must pass; with churn > 0 another thread grows
 * and shrinks it by that many keys throughout.  Afterwards it must verify. */
static void expect_cmap_linearizable(size_t len, const char *name, uint64_t max_ops, int churn,
                                     uint64_t seed)
{
    lm_cmap m;
    lc_target t;
    if (!CHECK_EQ(lm_cmap_open(&m, &t, len, name), 0))
        return;
    lc_config c = passing_config(max_ops, churn, 1);
    c.seed = seed;
    expect_linearizable(&t, &c);
    CHECK_EQ(sm_cmap_verify(m.map), 0);
    lm_cmap_close(&m);
}

static void test_cmap_is_linearizable(void)
{
    expect_cmap_linearizable(8, "sm_cmap int64_t[8]", 1000000, 0, 1);
}

/* The checked keys live through splits, merges and directory resizes: a
 * churn thread grows the map by 20,000 other keys and deletes them, over
 * and over. */
static void test_cmap_is_linearizable_through_growth(void)
{
    expect_cmap_linearizable(8, "sm_cmap int64_t[8], growing and shrinking", 1000000, 20000, 3);
}

/* Larger values take longer to copy, so a reader overlaps a writer more
 * often. */
static void test_cmap_is_linearizable_with_large_values(void)
{
    expect_cmap_linearizable(64, "sm_cmap int64_t[64], growing and shrinking", 500000, 5000, 4);
}

/* The real sm_cmap broken on purpose (internal.h's test faults) must be
 * caught too, or the passes above would prove nothing about it.  The run
 * stops at the first violation; the budget is generous for a loaded
 * 2-core machine (with the yields on it is caught in well under a second). */
static void expect_cmap_caught(int faults, size_t len, int churn, const char *name)
{
    lm_cmap m;
    lc_target t;
    if (!CHECK_EQ(lm_cmap_open(&m, &t, len, name), 0))
        return;
    lc_config c = catching_config();
    c.churn = churn;
    c.seconds = 30.0;
    lc_stats st;
    printf("  the checker's report on sm_cmap with a fault switched on (expected):\n");
    atomic_store(&cmap_test_faults, faults);
    double t0 = tl_now();
    int v = lc_run(&t, &c, &st, stdout);
    atomic_store(&cmap_test_faults, 0);
    report(&t, &st, tl_now() - t0);
    CHECK_EQ(v, LC_VIOLATION);
    lm_cmap_close(&m);
}

/* Readers that ignore seq return torn values: int64_t[8] (sm_cmap_get's
 * own copy of eight words) and int64_t[64] (the copy of any size). */
static void test_cmap_without_validation_is_caught(void)
{
    expect_cmap_caught(CMAP_FAULT_SKIP_VALIDATE | CMAP_FAULT_YIELD, VLEN, 0,
                       "sm_cmap int64_t[8], reads not validated");
    expect_cmap_caught(CMAP_FAULT_SKIP_VALIDATE | CMAP_FAULT_YIELD, 64, 0,
                       "sm_cmap int64_t[64], reads not validated");
}

/* A put into a segment a split or merge just retired is lost: a later read
 * returns the value it replaced.  The churn thread makes the retirements. */
static void test_cmap_writing_retired_segments_is_caught(void)
{
    expect_cmap_caught(CMAP_FAULT_LOCK_RETIRED | CMAP_FAULT_YIELD, VLEN, 20000,
                       "sm_cmap int64_t[8], puts into retired segments");
}

/* Control: the yields alone (which only widen windows) break nothing. */
static void test_cmap_with_yields_is_linearizable(void)
{
    lm_cmap m;
    lc_target t;
    if (!CHECK_EQ(lm_cmap_open(&m, &t, VLEN, "sm_cmap int64_t[8], yielding in its windows"), 0))
        return;
    lc_config c = passing_config(200000, 20000, 1);
    c.seconds = 2.0;
    atomic_store(&cmap_test_faults, CMAP_FAULT_YIELD);
    expect_linearizable(&t, &c);
    atomic_store(&cmap_test_faults, 0);
    CHECK_EQ(sm_cmap_verify(m.map), 0);
    lm_cmap_close(&m);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    const char *s = tl_option(argc, argv, "seconds");
    if (s)
        opt_seconds = atof(s);
    if ((s = tl_option(argc, argv, "threads")) && atoi(s) > 0)
        opt_threads = atoi(s);
    if ((s = tl_option(argc, argv, "keys")) && atoi(s) > 0 && atoi(s) <= LM_SEQ_SLOTS / 2)
        opt_keys = atoi(s);

    RUN(test_sequential_history_passes);
    RUN(test_overlapping_reads_may_see_old_then_new);
    RUN(test_read_going_back_in_time_fails);
    RUN(test_read_of_overwritten_value_fails);
    RUN(test_read_of_deleted_value_fails);
    RUN(test_read_of_never_written_value_fails);
    RUN(test_lost_update_fails);
    RUN(test_del_results_must_match_presence);
    RUN(test_initial_state_is_honoured);
    RUN(test_failed_call_changes_nothing);
    RUN(test_keys_are_checked_independently);
    RUN(test_checker_agrees_with_exhaustive_search);
    RUN(test_witness_is_the_operations_involved);
    RUN(test_giving_up_is_reported_not_passed);

    RUN(test_mutex_map_is_linearizable);
    RUN(test_seqlock_map_is_linearizable);
    RUN(test_unvalidated_reads_are_caught);
    RUN(test_lost_updates_are_caught);
    RUN(test_stale_reads_are_caught);

    RUN(test_cmap_is_linearizable);
    RUN(test_cmap_is_linearizable_through_growth);
    RUN(test_cmap_is_linearizable_with_large_values);
    RUN(test_cmap_with_yields_is_linearizable);
    RUN(test_cmap_without_validation_is_caught);
    RUN(test_cmap_writing_retired_segments_is_caught);
    return tl_finish();
}
