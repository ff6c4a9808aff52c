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
 * Then the same driver runs against maps: a mutex around sm_map and a small
 * seqlock map written here must pass; the seqlock map with its reader
 * validation skipped (torn reads), with an update that reads and writes
 * under two separate locks (lost updates) and with a per-thread read cache
 * (stale reads) must be caught.
 *
 * Options: --seconds=N runs the real-map checks for N seconds each
 * (long mode; `make lincheck LINCHECK_SECONDS=N`), --threads=N, --keys=N.
 * Without them each check is bounded by an operation count and a couple of
 * seconds, so the file runs in seconds, under TSan too.
 */
#include "lincheck.h"
#include "testlib.h"

#include <sched.h>

#define VLEN 8 /* values are int64_t[8] */

static double opt_seconds;  /* > 0: long mode */
static int opt_threads = 4; /* recording threads */
static int opt_keys = 8;

/* ---- Hand-written histories -------------------------------------------- */

/* One operation: thread, kind, key, id written, rc, id seen, instants. */
static lc_op op(int thread, int kind, int64_t arg, int rc, int64_t seen, uint64_t inv,
                uint64_t res)
{
    return (lc_op){.thread = thread, .kind = kind, .key = 0, .arg = arg, .rc = rc,
                   .seen = seen, .inv = inv, .res = res};
}

#define PUT(th, id, inv, res) op(th, LC_PUT, id, 0, 0, inv, res)
#define GET(th, seen, inv, res) op(th, LC_GET, 0, (seen) == LC_ABSENT ? SM_ENOENT : 0, seen, inv, res)
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
        PUT(0, 1, 1, 2),    GET(1, 1, 3, 4),    UPD(0, 2, 1, 5, 6), DEL(1, 1, 7, 8),
        GET(0, 0, 9, 10),   DEL(1, 0, 11, 12),  UPD(1, 3, 0, 13, 14), GET(0, 3, 15, 16),
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
    lc_op h[] = {PUT(0, 1, 1, 2), PUT(1, 2, 3, 4), GET(2, 1, 5, 6),
                 PUT(0, 3, 1, 2), GET(1, 3, 3, 4)};
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
            case LC_PUT: h[i] = PUT(i, i + 1, 0, 0); break;
            case LC_GET: h[i] = GET(i, seen, 0, 0); break;
            case LC_DEL: h[i] = DEL(i, present, 0, 0); break;
            default: h[i] = UPD(i, i + 1, seen, 0, 0); break;
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
        case LC_PUT: state = o.arg; break;
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

/* ---- Maps to drive --------------------------------------------------------- */

/* sm_map behind one mutex: linearizable by construction. */
typedef struct locked_map {
    pthread_mutex_t mu;
    sm_map *map;
    int split_update; /* broken: update reads and writes in two critical sections */
} locked_map;

static int locked_put(void *ctx, int64_t key, const int64_t *value)
{
    locked_map *m = ctx;
    pthread_mutex_lock(&m->mu);
    int rc = sm_map_put(m->map, key, value);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int locked_get(void *ctx, int64_t key, int64_t *out)
{
    locked_map *m = ctx;
    pthread_mutex_lock(&m->mu);
    int rc = sm_map_get(m->map, key, out);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int locked_del(void *ctx, int64_t key)
{
    locked_map *m = ctx;
    pthread_mutex_lock(&m->mu);
    int rc = sm_map_del(m->map, key);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int locked_update(void *ctx, int64_t key, const int64_t *value, int64_t *old,
                         int *inserted)
{
    locked_map *m = ctx;
    pthread_mutex_lock(&m->mu);
    int rc = sm_map_get(m->map, key, old);
    if (m->split_update) {
        /* The bug under test: another writer may slip in here. */
        pthread_mutex_unlock(&m->mu);
        sched_yield();
        pthread_mutex_lock(&m->mu);
    }
    *inserted = rc == SM_ENOENT;
    rc = sm_map_put(m->map, key, value);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int locked_map_open(locked_map *m, lc_target *t, int split_update)
{
    sm_map_opts o = {.layout = SM_LAYOUT(int64_t, VLEN), .storage = SM_INLINE,
                     .check = SM_CHECK_CHEAP};
    pthread_mutex_init(&m->mu, NULL);
    m->split_update = split_update;
    *t = (lc_target){.name = split_update ? "sm_map, update in two critical sections"
                                          : "sm_map behind a mutex",
                     .ctx = m, .value_len = VLEN, .put = locked_put, .get = locked_get,
                     .del = locked_del, .update = locked_update};
    return sm_map_new(&m->map, &o);
}

static void locked_map_close(locked_map *m)
{
    sm_map_free(m->map);
    pthread_mutex_destroy(&m->mu);
}

/* A seqlock per key over a fixed table of the checked keys.  A writer (under
 * the key's mutex) makes the sequence odd, writes, and makes it even again;
 * a reader copies the slot and retries unless the sequence was the same
 * even number before and after.  Writers pause half way through a value so
 * that an unvalidated read is easy to catch in the act.  Every shared word
 * is an atomic, so ThreadSanitizer sees no race even in the broken mode. */
#define SEQ_SLOTS 64

typedef struct seq_slot {
    pthread_mutex_t writer;
    atomic_uint_fast64_t seq;
    atomic_int present;
    _Atomic int64_t v[VLEN];
} seq_slot;

typedef struct seq_map {
    seq_slot slot[SEQ_SLOTS];
    int skip_validation;  /* broken: readers take one unchecked copy */
    int stale_cache;      /* broken: gets answer from a per-thread cache */
} seq_map;

static seq_slot *seq_slot_of(seq_map *m, int64_t key)
{
    int64_t k = (-1 - key) / 1000003; /* inverts lc_map_key */
    return k >= 0 && k < SEQ_SLOTS ? &m->slot[k] : NULL;
}

static void seq_write(seq_slot *s, const int64_t *value)
{
    uint64_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&s->present, value != NULL, memory_order_relaxed);
    for (int i = 0; value && i < VLEN; i++) {
        if (i == VLEN / 2)
            sched_yield();
        atomic_store_explicit(&s->v[i], value[i], memory_order_relaxed);
    }
    atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
}

/* Copies the slot; returns 1 if present. */
static int seq_read(const seq_map *m, seq_slot *s, int64_t *out)
{
    for (;;) {
        uint64_t before = atomic_load_explicit(&s->seq, memory_order_acquire);
        int present = atomic_load_explicit(&s->present, memory_order_relaxed);
        for (int i = 0; present && i < VLEN; i++)
            out[i] = atomic_load_explicit(&s->v[i], memory_order_relaxed);
        if (m->skip_validation)
            return present;
        atomic_thread_fence(memory_order_acquire);
        uint64_t after = atomic_load_explicit(&s->seq, memory_order_relaxed);
        if (before == after && !(before & 1))
            return present;
        sched_yield();
    }
}

static int seq_put(void *ctx, int64_t key, const int64_t *value)
{
    seq_slot *s = seq_slot_of(ctx, key);
    if (!s)
        return SM_EINVAL;
    pthread_mutex_lock(&s->writer);
    seq_write(s, value);
    pthread_mutex_unlock(&s->writer);
    return 0;
}

static int seq_del(void *ctx, int64_t key)
{
    seq_slot *s = seq_slot_of(ctx, key);
    if (!s)
        return SM_EINVAL;
    pthread_mutex_lock(&s->writer);
    int present = atomic_load_explicit(&s->present, memory_order_relaxed);
    if (present)
        seq_write(s, NULL);
    pthread_mutex_unlock(&s->writer);
    return present ? 0 : SM_ENOENT;
}

static int seq_update(void *ctx, int64_t key, const int64_t *value, int64_t *old, int *inserted)
{
    seq_slot *s = seq_slot_of(ctx, key);
    if (!s)
        return SM_EINVAL;
    pthread_mutex_lock(&s->writer);
    *inserted = !atomic_load_explicit(&s->present, memory_order_relaxed);
    for (int i = 0; i < VLEN; i++)
        old[i] = atomic_load_explicit(&s->v[i], memory_order_relaxed);
    seq_write(s, value);
    pthread_mutex_unlock(&s->writer);
    return 0;
}

/* The stale-read bug: each thread remembers the last value it read of each
 * key and answers every other get from that memory. */
static _Thread_local int64_t seq_cache[SEQ_SLOTS][VLEN];
static _Thread_local int seq_cache_state[SEQ_SLOTS]; /* 0 none, 1 absent, 2 value */
static _Thread_local unsigned seq_cache_turn;

static int seq_get(void *ctx, int64_t key, int64_t *out)
{
    seq_map *m = ctx;
    seq_slot *s = seq_slot_of(m, key);
    if (!s)
        return SM_EINVAL;
    size_t k = (size_t)(s - m->slot);
    if (m->stale_cache && seq_cache_state[k] && (++seq_cache_turn & 1)) {
        memcpy(out, seq_cache[k], sizeof seq_cache[k]);
        return seq_cache_state[k] == 2 ? 0 : SM_ENOENT;
    }
    int present = seq_read(m, s, out);
    if (m->stale_cache) {
        memcpy(seq_cache[k], out, sizeof seq_cache[k]);
        seq_cache_state[k] = present ? 2 : 1;
    }
    return present ? 0 : SM_ENOENT;
}

static seq_map *seq_map_new(lc_target *t, const char *name)
{
    seq_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    for (int i = 0; i < SEQ_SLOTS; i++) {
        pthread_mutex_init(&m->slot[i].writer, NULL);
        atomic_init(&m->slot[i].seq, 0);
        atomic_init(&m->slot[i].present, 0);
        for (int j = 0; j < VLEN; j++)
            atomic_init(&m->slot[i].v[j], 0);
    }
    *t = (lc_target){.name = name, .ctx = m, .value_len = VLEN, .put = seq_put,
                     .get = seq_get, .del = seq_del, .update = seq_update};
    return m;
}

static void seq_map_free(seq_map *m)
{
    for (int i = 0; i < SEQ_SLOTS; i++)
        pthread_mutex_destroy(&m->slot[i].writer);
    free(m);
}

/* ---- Running the driver ----------------------------------------------------- */

/* A configuration for a map that must pass: bounded by operations and time
 * in CI, by time alone in long mode. */
static lc_config passing_config(uint64_t max_ops, int churn)
{
    lc_config c = {.threads = opt_threads, .keys = opt_keys, .ops_per_round = 100,
                   .max_ops = opt_seconds > 0 ? 0 : tl_scaled(max_ops),
                   .seconds = opt_seconds > 0 ? opt_seconds : 2.0,
                   .pct_get = 40, .pct_put = 25, .pct_del = 15, .seed = 1, .churn = churn};
    return c;
}

/* A configuration for a broken map: runs until the first violation or a
 * generous time limit. */
static lc_config catching_config(void)
{
    lc_config c = {.threads = opt_threads, .keys = opt_keys, .ops_per_round = 100,
                   .seconds = 10.0, .pct_get = 40, .pct_put = 25, .pct_del = 15, .seed = 2,
                   .stop_at_violation = 1};
    return c;
}

static void report(const lc_target *t, const lc_stats *st, double seconds)
{
    printf("  %s: %llu operations in %llu rounds (%.1f s), longest key history %zu, "
           "%llu violations, %llu torn, %llu unexpected errors, %llu churn operations\n",
           t->name, (unsigned long long)st->ops, (unsigned long long)st->rounds, seconds,
           st->max_key_ops, (unsigned long long)st->violations, (unsigned long long)st->torn,
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
    locked_map m;
    lc_target t;
    if (!CHECK_EQ(locked_map_open(&m, &t, 0), 0))
        return;
    lc_config c = passing_config(200000, 2000);
    expect_linearizable(&t, &c);
    locked_map_close(&m);
}

static void test_seqlock_map_is_linearizable(void)
{
    lc_target t;
    seq_map *m = seq_map_new(&t, "seqlock map");
    if (!CHECK(m != NULL))
        return;
    lc_config c = passing_config(200000, 0);
    expect_linearizable(&t, &c);
    seq_map_free(m);
}

static void test_unvalidated_reads_are_caught(void)
{
    lc_target t;
    seq_map *m = seq_map_new(&t, "seqlock map, reads not validated");
    if (!CHECK(m != NULL))
        return;
    m->skip_validation = 1;
    expect_caught(&t);
    seq_map_free(m);
}

static void test_lost_updates_are_caught(void)
{
    locked_map m;
    lc_target t;
    if (!CHECK_EQ(locked_map_open(&m, &t, 1), 0))
        return;
    expect_caught(&t);
    locked_map_close(&m);
}

static void test_stale_reads_are_caught(void)
{
    lc_target t;
    seq_map *m = seq_map_new(&t, "seqlock map, per-thread read cache");
    if (!CHECK(m != NULL))
        return;
    m->stale_cache = 1;
    expect_caught(&t);
    seq_map_free(m);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    const char *s = tl_option(argc, argv, "seconds");
    if (s)
        opt_seconds = atof(s);
    if ((s = tl_option(argc, argv, "threads")) && atoi(s) > 0)
        opt_threads = atoi(s);
    if ((s = tl_option(argc, argv, "keys")) && atoi(s) > 0 && atoi(s) <= SEQ_SLOTS)
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

    RUN(test_mutex_map_is_linearizable);
    RUN(test_seqlock_map_is_linearizable);
    RUN(test_unvalidated_reads_are_caught);
    RUN(test_lost_updates_are_caught);
    RUN(test_stale_reads_are_caught);
    return tl_finish();
}
