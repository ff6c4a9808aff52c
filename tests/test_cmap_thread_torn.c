/*
 * test_cmap_thread_torn.c - readers of sm_cmap never see a torn, impossible
 * or stale value, and never miss a key that is present, while writers
 * rewrite values and the map grows to a million entries and shrinks back.
 *
 * Concern: what one sm_cmap_get() may return while other threads write.
 *
 * Every value checks itself: element 0 is a version and every other element
 * a hash of the key, the version and the index (lincheck.h's values), so a
 * copy that mixes two writes, a value of another key, or bytes never written
 * decode to LC_TORN.
 *
 * Stale reads.  Each rewritten key has one writer, which raises its version
 * by one per put and publishes two numbers per key: `started` (stored before
 * the put) and `completed` (stored after it returned).  A reader loads
 * completed, calls get, then loads started; the version it read must lie
 * between them.  Below `completed` is a stale read: that put had returned
 * before the get began.  Above `started` is a value from the future, a
 * version no put had begun.  A reader also checks that the versions it
 * reads of one key never go back.
 *
 * Growth.  While the rewriting goes on, a grower thread inserts a million
 * other keys (more in long mode), splitting segments and doubling the
 * directory many times, then deletes them all, merging and halving back.
 * The rewritten keys are present throughout, so a reader that finds one of
 * them absent has caught a split or merge that hid a live entry.
 *
 * Iteration.  Meanwhile a walker calls sm_cmap_each() again and again: each
 * walk must visit every key present throughout it exactly once, no key
 * twice, and only whole values.
 *
 * The readers can fail.  The same scenario, without the grower, must pass
 * on two maps that are right by construction and must catch two that are
 * not (lincheck_maps.h): one that answers some reads from a per-thread
 * memory (stale values) and a seqlock table whose readers skip validation
 * (torn values).
 *
 * Updates.  Threads increment counters with sm_cmap_update() while readers
 * read them: every value read is whole, each counter ends at exactly the
 * number of increments (no lost update), and readers never see a counter go
 * down.
 *
 * Options: --seconds=N (long mode: cycles of growth and shrinking for 3/4
 * of N seconds, then increments for 1/4), --entries=N (the size grown to;
 * default 1e6, 1e5 in sanitizer builds, 4e6 in long mode).
 */
#include "lincheck_maps.h"
#include "testlib.h"

#define VLEN 8         /* values are int64_t[8] */
#define STABLE_KEYS 64 /* rewritten keys, present throughout */
#define READERS 2

#include "../src/sanitize.h" /* SM_HAVE_ASAN, SM_HAVE_TSAN */
#include "../src/internal.h" /* cmap_test_faults */

static double opt_seconds;
static size_t opt_entries;

/* ---- The map and what the writers publish ---------------------------------- */

typedef struct shared {
    const lc_target *t; /* the map: rewritten keys and grower keys */
    atomic_int stop;
    _Atomic int64_t started[STABLE_KEYS];
    _Atomic int64_t completed[STABLE_KEYS];
    _Atomic uint64_t progress; /* the grower's position: see grower_main */
    uint64_t cycles;           /* growth cycles done (grower only) */
    int grower_rc;             /* first unexpected return code of the grower */
    int64_t size;              /* the size grown to; 0: no grower */
} shared;

/* Stable key k's map key; grower keys are 1000 .. 1000 + size - 1. */
static int64_t stable_key(int k)
{
    return -1 - (int64_t)k;
}

static int64_t grow_key(uint64_t i)
{
    return 1000 + (int64_t)i;
}

/* ---- Threads ------------------------------------------------------------------- */

/* The one writer of the stable keys: rewrites them round-robin with rising
 * versions until told to stop. */
static void *rewriter_main(void *arg)
{
    shared *sh = arg;
    int64_t value[VLEN];
    int64_t version = 1;
    while (!atomic_load(&sh->stop)) {
        version++;
        for (int k = 0; k < STABLE_KEYS; k++) {
            atomic_store(&sh->started[k], version);
            lc_value_fill(value, VLEN, stable_key(k), version);
            if (sh->t->put(sh->t->ctx, stable_key(k), value) != 0)
                atomic_store(&sh->stop, 2); /* reported by the test */
            atomic_store(&sh->completed[k], version);
        }
    }
    return NULL;
}

/* Grows the map by sh->size keys and deletes them again, one cycle in CI,
 * as many as fit in the time in long mode.  `progress` counts its steps:
 * it is raised after each put and before each del, so at progress p the
 * keys of grow_present(p) are in the map for certain (see there). */
static void *grower_main(void *arg)
{
    shared *sh = arg;
    int64_t value[VLEN];
    uint64_t size = (uint64_t)sh->size;
    double t0 = tl_now();
    do {
        uint64_t base = sh->cycles * 2 * size;
        for (uint64_t i = 0; i < size && !sh->grower_rc; i++) {
            lc_value_fill(value, VLEN, grow_key(i), (int64_t)sh->cycles + 1);
            int rc = sh->t->put(sh->t->ctx, grow_key(i), value);
            if (rc != 0)
                sh->grower_rc = rc;
            atomic_store_explicit(&sh->progress, base + i + 1, memory_order_release);
        }
        for (uint64_t i = size; i-- > 0 && !sh->grower_rc;) {
            atomic_store_explicit(&sh->progress, base + 2 * size - i, memory_order_release);
            int rc = sh->t->del(sh->t->ctx, grow_key(i));
            if (rc != 0)
                sh->grower_rc = rc;
        }
        sh->cycles++;
    } while (opt_seconds > 0 && tl_now() - t0 < opt_seconds * 0.75 && !sh->grower_rc);
    return NULL;
}

typedef struct reader {
    shared *sh;
    pthread_t tid;
    uint64_t seed;
    uint64_t reads, grown_reads;
    uint64_t torn, stale, future, backwards, missing, bad_rc, grown_missing;
    int64_t last[STABLE_KEYS];
} reader;

static void read_stable(reader *r, int k)
{
    shared *sh = r->sh;
    int64_t value[VLEN];
    int64_t completed = atomic_load(&sh->completed[k]);
    int rc = sh->t->get(sh->t->ctx, stable_key(k), value);
    int64_t started = atomic_load(&sh->started[k]);
    r->reads++;
    if (rc == SM_ENOENT) {
        r->missing++;
        return;
    }
    if (rc != 0) {
        r->bad_rc++;
        return;
    }
    int64_t v = lc_value_id(value, VLEN, stable_key(k));
    if (v == LC_TORN)
        r->torn++;
    else if (v < completed)
        r->stale++;
    else if (v > started)
        r->future++;
    else if (v < r->last[k])
        r->backwards++;
    else
        r->last[k] = v;
}

/* How many grower keys (from index 0 up) are certainly present at progress
 * p: the grower inserts in ascending order and deletes in descending order,
 * 2 * size steps per cycle. */
static uint64_t grow_present(uint64_t p, uint64_t size)
{
    uint64_t r = p % (2 * size);
    return r <= size ? r : 2 * size - r;
}

/* A grower key present at the progress seen before the read and at the one
 * seen after, within one cycle, was present throughout: it must be found.
 * Any value read must be whole. */
static void read_grown(reader *r, uint64_t i)
{
    shared *sh = r->sh;
    uint64_t size = (uint64_t)sh->size;
    int64_t value[VLEN];
    uint64_t before = atomic_load_explicit(&sh->progress, memory_order_acquire);
    int rc = sh->t->get(sh->t->ctx, grow_key(i), value);
    uint64_t after = atomic_load_explicit(&sh->progress, memory_order_acquire);
    int present_throughout = before / (2 * size) == after / (2 * size) &&
                             i < grow_present(before, size) && i < grow_present(after, size);
    r->grown_reads++;
    if (rc == 0 && lc_value_id(value, VLEN, grow_key(i)) == LC_TORN)
        r->torn++;
    else if (rc == SM_ENOENT && present_throughout)
        r->grown_missing++;
    else if (rc != 0 && rc != SM_ENOENT)
        r->bad_rc++;
}

static void *reader_main(void *arg)
{
    reader *r = arg;
    uint64_t x = r->seed;
    while (!atomic_load_explicit(&r->sh->stop, memory_order_relaxed)) {
        x = lc_mix(x + 1);
        if ((x & 1) || r->sh->size == 0) {
            read_stable(r, (int)((x >> 8) % STABLE_KEYS));
        } else {
            /* Near the growing edge half the time: that is where the splits are. */
            uint64_t size = (uint64_t)r->sh->size;
            uint64_t edge =
                grow_present(atomic_load_explicit(&r->sh->progress, memory_order_relaxed), size);
            uint64_t span = (x & 2) && edge > 0 ? (edge < 4096 ? edge : 4096) : size;
            uint64_t base = (x & 2) && edge > span ? edge - span : 0;
            read_grown(r, base + (x >> 8) % span);
        }
    }
    return NULL;
}

/* ---- Iteration ---------------------------------------------------------------------- */

/* A thread that walks the map with sm_cmap_each() again and again while the
 * others run.  In each walk, every stable key (present throughout) must be
 * visited exactly once, every grower key present for the whole walk exactly
 * once, no key twice, and every value visited must be whole. */
typedef struct walker {
    shared *sh;
    sm_cmap *map;
    pthread_t tid;
    unsigned char *grown_visits; /* per grower key, in the current walk */
    unsigned char stable_visits[STABLE_KEYS];
    uint64_t walks, visits;
    uint64_t torn, twice, missed, foreign, errors;
} walker;

static void count_visit(walker *w, unsigned char *visits)
{
    if (*visits)
        w->twice++;
    else
        *visits = 1;
}

static int walk_visit(int64_t key, const void *value, void *ctx)
{
    walker *w = ctx;
    w->visits++;
    if (lc_value_id(value, VLEN, key) == LC_TORN)
        w->torn++;
    if (key < 0 && key >= stable_key(STABLE_KEYS - 1))
        count_visit(w, &w->stable_visits[-1 - key]);
    else if (key >= grow_key(0) && key < grow_key((uint64_t)w->sh->size))
        count_visit(w, &w->grown_visits[key - grow_key(0)]);
    else
        w->foreign++;
    return 0;
}

static void *walker_main(void *arg)
{
    walker *w = arg;
    shared *sh = w->sh;
    uint64_t size = (uint64_t)sh->size;
    while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        memset(w->stable_visits, 0, sizeof w->stable_visits);
        memset(w->grown_visits, 0, size);
        uint64_t before = atomic_load_explicit(&sh->progress, memory_order_acquire);
        if (sm_cmap_each(w->map, walk_visit, w) != 0)
            w->errors++;
        uint64_t after = atomic_load_explicit(&sh->progress, memory_order_acquire);
        for (int k = 0; k < STABLE_KEYS; k++)
            w->missed += !w->stable_visits[k];
        if (before / (2 * size) == after / (2 * size)) {
            uint64_t a = grow_present(before, size), b = grow_present(after, size);
            for (uint64_t i = 0; i < (a < b ? a : b); i++)
                w->missed += !w->grown_visits[i];
        }
        w->walks++;
        /* Leave the processors to the others most of the time. */
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

/* ---- Tests ------------------------------------------------------------------------ */

/* The self-check itself: what the readers rely on to see a torn value. */
static void test_values_check_themselves(void)
{
    int64_t a[VLEN], b[VLEN], mixed[VLEN];
    lc_value_fill(a, VLEN, 5, 7);
    lc_value_fill(b, VLEN, 5, 8);
    CHECK_EQ(lc_value_id(a, VLEN, 5), 7);
    CHECK_EQ(lc_value_id(b, VLEN, 5), 8);
    /* Any mix of two versions, at any split point, is caught. */
    for (int split = 1; split < VLEN; split++) {
        memcpy(mixed, a, (size_t)split * sizeof *a);
        memcpy(mixed + split, b + split, (size_t)(VLEN - split) * sizeof *b);
        CHECK_EQ(lc_value_id(mixed, VLEN, 5), LC_TORN);
        memcpy(mixed, b, (size_t)split * sizeof *b);
        memcpy(mixed + split, a + split, (size_t)(VLEN - split) * sizeof *a);
        CHECK_EQ(lc_value_id(mixed, VLEN, 5), LC_TORN);
    }
    /* Another key's value, zeros (an insert seen half done), one flipped bit. */
    CHECK_EQ(lc_value_id(a, VLEN, 6), LC_TORN);
    memset(mixed, 0, sizeof mixed);
    CHECK_EQ(lc_value_id(mixed, VLEN, 5), LC_TORN);
    memcpy(mixed, a, sizeof a);
    mixed[VLEN - 1] ^= 1;
    CHECK_EQ(lc_value_id(mixed, VLEN, 5), LC_TORN);
}

/* What the readers found, summed. */
typedef struct findings {
    uint64_t reads, grown_reads;
    uint64_t torn, stale, future, backwards, missing, grown_missing, bad_rc;
} findings;

static findings sum_findings(const reader *r, int n)
{
    findings f = {0};
    for (int i = 0; i < n; i++) {
        f.reads += r[i].reads;
        f.grown_reads += r[i].grown_reads;
        f.torn += r[i].torn;
        f.stale += r[i].stale;
        f.future += r[i].future;
        f.backwards += r[i].backwards;
        f.missing += r[i].missing;
        f.grown_missing += r[i].grown_missing;
        f.bad_rc += r[i].bad_rc;
    }
    return f;
}

static uint64_t wrong_reads(const findings *f)
{
    return f->torn + f->stale + f->future + f->backwards + f->missing + f->grown_missing +
           f->bad_rc;
}

static void print_findings(const char *name, const findings *f)
{
    printf("  %s: %llu reads of rewritten keys, %llu of growing keys; torn %llu, stale %llu, "
           "future %llu, backwards %llu, missing %llu + %llu, errors %llu\n",
           name, (unsigned long long)f->reads, (unsigned long long)f->grown_reads,
           (unsigned long long)f->torn, (unsigned long long)f->stale, (unsigned long long)f->future,
           (unsigned long long)f->backwards, (unsigned long long)f->missing,
           (unsigned long long)f->grown_missing, (unsigned long long)f->bad_rc);
}

/* The scenario: the stable keys are put, then a rewriter, READERS readers
 * and (size > 0) a grower run on t, and a walker on `walk` (which must be
 * the map behind t) unless it is NULL.  With a grower, it ends when the
 * grower is done; without, after `seconds`.  Returns 0 if the writers saw
 * only success. */
static int run_scenario(const lc_target *t, int64_t size, double seconds, findings *out,
                        walker *walk)
{
    shared *sh = calloc(1, sizeof *sh);
    if (!sh)
        return -1;
    sh->t = t;
    sh->size = size;
    int64_t value[VLEN];
    int failed = 0;
    for (int k = 0; k < STABLE_KEYS; k++) {
        lc_value_fill(value, VLEN, stable_key(k), 1);
        failed |= t->put(t->ctx, stable_key(k), value) != 0;
        atomic_store(&sh->started[k], 1);
        atomic_store(&sh->completed[k], 1);
    }
    reader r[READERS];
    pthread_t rewriter, grower;
    for (int i = 0; i < READERS; i++) {
        r[i] = (reader){.sh = sh, .seed = 77 + (uint64_t)i};
        pthread_create(&r[i].tid, NULL, reader_main, &r[i]);
    }
    pthread_create(&rewriter, NULL, rewriter_main, sh);
    if (walk) {
        walk->sh = sh;
        pthread_create(&walk->tid, NULL, walker_main, walk);
    }
    double t0 = tl_now();
    if (size > 0) {
        pthread_create(&grower, NULL, grower_main, sh);
        pthread_join(grower, NULL);
        printf("  grew to %lld entries and back %llu times in %.1f s\n", (long long)sh->size,
               (unsigned long long)sh->cycles, tl_now() - t0);
    } else {
        struct timespec tick = {0, 10 * 1000 * 1000};
        while (tl_now() - t0 < seconds)
            nanosleep(&tick, NULL);
    }
    failed |= atomic_exchange(&sh->stop, 1) == 2;
    pthread_join(rewriter, NULL);
    for (int i = 0; i < READERS; i++)
        pthread_join(r[i].tid, NULL);
    if (walk)
        pthread_join(walk->tid, NULL);
    failed |= sh->grower_rc != 0;
    *out = sum_findings(r, READERS);
    free(sh);
    return failed ? -1 : 0;
}

/* sm_cmap through rewriting, growth to a million entries and shrinking. */
static void test_reads_are_whole_current_and_present_through_growth(void)
{
    lm_cmap m;
    lc_target t;
    if (!CHECK_EQ(lm_cmap_open(&m, &t, VLEN, "sm_cmap int64_t[8]"), 0))
        return;
    findings f;
    walker w = {.map = m.map, .grown_visits = calloc(opt_entries, 1)};
    if (!CHECK(w.grown_visits != NULL)) {
        lm_cmap_close(&m);
        return;
    }
    CHECK_EQ(run_scenario(&t, (int64_t)opt_entries, 0, &f, &w), 0);
    print_findings(t.name, &f);
    CHECK_EQ(wrong_reads(&f), 0);
    printf("  %llu walks with sm_cmap_each visited %llu entries; torn %llu, twice %llu, "
           "missed %llu, foreign %llu, errors %llu\n",
           (unsigned long long)w.walks, (unsigned long long)w.visits, (unsigned long long)w.torn,
           (unsigned long long)w.twice, (unsigned long long)w.missed, (unsigned long long)w.foreign,
           (unsigned long long)w.errors);
    CHECK_EQ(w.torn + w.twice + w.missed + w.foreign + w.errors, 0);
    free(w.grown_visits);
    /* The readers and the walker must really have run alongside the writers. */
    CHECK(f.reads > 1000);
    CHECK(f.grown_reads > 1000);
    CHECK(w.walks > 0);
    /* Quiet now: the length is exact and the structure sound. */
    CHECK_EQ(sm_cmap_len(m.map), STABLE_KEYS);
    CHECK_EQ(sm_cmap_verify(m.map), 0);
    lm_cmap_close(&m);
}

/* The same readers must catch a map that gets it wrong.  These maps hold
 * only the stable keys, so they run without the grower, for a second. */
static void test_stale_reads_of_a_broken_map_are_caught(void)
{
    lm_locked m;
    lc_target inner, t;
    if (!CHECK_EQ(lm_locked_open(&m, &inner, VLEN, 0), 0))
        return;
    lm_stale w;
    lm_stale_wrap(&w, &t, &inner, "sm_map behind a mutex, per-thread read cache");
    findings f;
    CHECK_EQ(run_scenario(&t, 0, 1.0, &f, NULL), 0);
    print_findings(t.name, &f);
    CHECK(f.stale + f.backwards > 0);
    lm_locked_close(&m);
}

static void test_torn_reads_of_a_broken_map_are_caught(void)
{
    lc_target t;
    lm_seq *m = lm_seq_new(&t, VLEN, 1);
    if (!CHECK(m != NULL))
        return;
    findings f;
    CHECK_EQ(run_scenario(&t, 0, 1.0, &f, NULL), 0);
    print_findings(t.name, &f);
    CHECK(f.torn > 0);
    lm_seq_free(m);
}

/* Control for the two above: the same scenario on maps that are right. */
static void test_correct_maps_pass_the_same_readers(void)
{
    lm_locked m;
    lc_target t;
    if (!CHECK_EQ(lm_locked_open(&m, &t, VLEN, 0), 0))
        return;
    findings f;
    CHECK_EQ(run_scenario(&t, 0, 0.5, &f, NULL), 0);
    print_findings(t.name, &f);
    CHECK_EQ(wrong_reads(&f), 0);
    lm_locked_close(&m);
    lm_seq *s = lm_seq_new(&t, VLEN, 0);
    if (!CHECK(s != NULL))
        return;
    CHECK_EQ(run_scenario(&t, 0, 0.5, &f, NULL), 0);
    print_findings(t.name, &f);
    CHECK_EQ(wrong_reads(&f), 0);
    lm_seq_free(s);
}

/* The same readers on the real sm_cmap broken on purpose (internal.h's test
 * faults): run in short slices (with `grow` > 0, one growth cycle of that
 * many keys each) until the readers report what `wrong` counts, or a budget
 * generous for a loaded 2-core machine runs out.  Returns what they found. */
static uint64_t cmap_fault_findings(int faults, int64_t grow, uint64_t (*wrong)(const findings *),
                                    const char *name)
{
    lm_cmap m;
    lc_target t;
    if (!CHECK_EQ(lm_cmap_open(&m, &t, VLEN, name), 0))
        return 0;
    findings f = {0};
    uint64_t found = 0;
    int slices = 0;
    double t0 = tl_now();
    atomic_store(&cmap_test_faults, faults);
    while (!found && tl_now() - t0 < 30.0) {
        CHECK_EQ(run_scenario(&t, grow, 0.25, &f, NULL), 0);
        found = wrong(&f);
        slices++;
    }
    atomic_store(&cmap_test_faults, 0);
    printf("  after %d slices, %.2f s:\n", slices, tl_now() - t0);
    print_findings(t.name, &f);
    lm_cmap_close(&m);
    return found;
}

static uint64_t torn_reads(const findings *f)
{
    return f->torn;
}

static uint64_t lost_writes(const findings *f)
{
    return f->stale + f->backwards;
}

/* Readers that keep a copy a writer overlapped return torn values. */
static void test_torn_reads_of_cmap_without_validation_are_caught(void)
{
    CHECK(cmap_fault_findings(CMAP_FAULT_SKIP_VALIDATE | CMAP_FAULT_YIELD, 0, torn_reads,
                              "sm_cmap int64_t[8], reads not validated") > 0);
}

/* A rewrite into a segment growth just retired is lost: readers see the
 * version it replaced after the rewrite completed. */
static void test_lost_writes_to_retired_cmap_segments_are_caught(void)
{
    CHECK(cmap_fault_findings(CMAP_FAULT_LOCK_RETIRED | CMAP_FAULT_YIELD, 4000, lost_writes,
                              "sm_cmap int64_t[8], puts into retired segments") > 0);
}

/* ---- Counters through sm_cmap_update ------------------------------------------------ */

#define COUNTERS 4
#define INCREMENTERS 2

typedef struct counting {
    sm_cmap *map;
    atomic_int stop;     /* readers (and, in long mode, incrementers) stop */
    uint64_t increments; /* per incrementer, when not in long mode */
} counting;

typedef struct increment_ctx {
    int64_t key;
    int torn;
} increment_ctx;

/* The update function: the value must be whole (or zeros when inserted);
 * the next value is the next count. */
static void increment(void *value, int inserted, void *ctx)
{
    increment_ctx *c = ctx;
    int64_t *v = value;
    int64_t count = 0;
    if (!inserted) {
        count = lc_value_id(v, VLEN, c->key);
        if (count == LC_TORN) {
            c->torn = 1;
            return; /* leave it: the test fails anyway */
        }
    }
    lc_value_fill(v, VLEN, c->key, count + 1);
}

typedef struct incrementer {
    counting *cnt;
    pthread_t tid;
    int index;
    uint64_t done, torn, bad_rc;
} incrementer;

static void *incrementer_main(void *arg)
{
    incrementer *in = arg;
    for (uint64_t i = 0;; i++) {
        if (opt_seconds > 0 ? atomic_load(&in->cnt->stop) != 0 : i == in->cnt->increments)
            break;
        increment_ctx c = {.key = (int64_t)((i + (uint64_t)in->index) % COUNTERS)};
        if (sm_cmap_update(in->cnt->map, c.key, increment, &c) != 0)
            in->bad_rc++;
        else
            in->done++;
        in->torn += (uint64_t)c.torn;
    }
    return NULL;
}

typedef struct counter_reader {
    counting *cnt;
    pthread_t tid;
    uint64_t reads, torn, backwards, bad_rc;
    int64_t last[COUNTERS];
} counter_reader;

static void *counter_reader_main(void *arg)
{
    counter_reader *r = arg;
    int64_t value[VLEN];
    for (uint64_t i = 0; !atomic_load_explicit(&r->cnt->stop, memory_order_relaxed); i++) {
        int64_t key = (int64_t)(i % COUNTERS);
        int rc = sm_cmap_get(r->cnt->map, key, value);
        r->reads++;
        if (rc == SM_ENOENT)
            continue;
        if (rc != 0) {
            r->bad_rc++;
            continue;
        }
        int64_t count = lc_value_id(value, VLEN, key);
        if (count == LC_TORN)
            r->torn++;
        else if (count < r->last[key])
            r->backwards++;
        else
            r->last[key] = count;
    }
    return NULL;
}

static void test_updates_are_atomic_and_none_is_lost(void)
{
    sm_map_opts o = {
        .layout = SM_LAYOUT(int64_t, VLEN), .storage = SM_INLINE, .check = SM_CHECK_CHEAP};
    counting cnt = {.increments = tl_scaled(100000)};
    if (!CHECK_EQ(sm_cmap_new(&cnt.map, &o), 0))
        return;
    atomic_init(&cnt.stop, 0);
    counter_reader rd = {.cnt = &cnt};
    incrementer in[INCREMENTERS];
    pthread_create(&rd.tid, NULL, counter_reader_main, &rd);
    for (int i = 0; i < INCREMENTERS; i++) {
        in[i] = (incrementer){.cnt = &cnt, .index = i};
        pthread_create(&in[i].tid, NULL, incrementer_main, &in[i]);
    }
    if (opt_seconds > 0) {
        double q = opt_seconds / 4;
        struct timespec quarter = {(time_t)q, (long)((q - (double)(time_t)q) * 1e9)};
        nanosleep(&quarter, NULL);
        atomic_store(&cnt.stop, 1);
    }
    int64_t increments = 0;
    for (int i = 0; i < INCREMENTERS; i++) {
        pthread_join(in[i].tid, NULL);
        CHECK_EQ(in[i].torn, 0);
        CHECK_EQ(in[i].bad_rc, 0);
        increments += (int64_t)in[i].done;
    }
    atomic_store(&cnt.stop, 1);
    pthread_join(rd.tid, NULL);
    CHECK_EQ(rd.torn, 0);
    CHECK_EQ(rd.backwards, 0);
    CHECK_EQ(rd.bad_rc, 0);
    int64_t total = 0, value[VLEN];
    for (int64_t key = 0; key < COUNTERS; key++) {
        if (!CHECK_EQ(sm_cmap_get(cnt.map, key, value), 0))
            continue;
        total += lc_value_id(value, VLEN, key);
    }
    CHECK_EQ(total, increments);
    CHECK(increments > 0);
    printf("  %lld increments, %llu concurrent reads\n", (long long)increments,
           (unsigned long long)rd.reads);
    sm_cmap_free(cnt.map);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    const char *s = tl_option(argc, argv, "seconds");
    if (s)
        opt_seconds = atof(s);
    /* Sanitizer builds run several times slower: they grow to fewer entries. */
    opt_entries = SM_HAVE_TSAN || SM_HAVE_ASAN ? 100000 : 1000000;
    if (opt_seconds > 0)
        opt_entries = 4000000;
    if ((s = tl_option(argc, argv, "entries")) && atol(s) > 0)
        opt_entries = (size_t)atol(s);
    opt_entries = tl_scaled(opt_entries);

    RUN(test_values_check_themselves);
    RUN(test_reads_are_whole_current_and_present_through_growth);
    RUN(test_correct_maps_pass_the_same_readers);
    RUN(test_stale_reads_of_a_broken_map_are_caught);
    RUN(test_torn_reads_of_a_broken_map_are_caught);
    RUN(test_torn_reads_of_cmap_without_validation_are_caught);
    RUN(test_lost_writes_to_retired_cmap_segments_are_caught);
    RUN(test_updates_are_atomic_and_none_is_lost);
    return tl_finish();
}
