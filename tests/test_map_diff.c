/*
 * test_map_diff.c - differential test: random operation sequences applied to
 * a safemap map and to a reference model must agree at every step.
 *
 * Concern: the map's behaviour as a whole (growth through splits and
 * directory doubling, shrinking through merges, clear, reserve, deletion
 * while iterating) across layouts and check levels.  The engine
 * (diff_engine.h) does each operation on both sides, compares results and
 * values, and checks the length and sm_map_verify() after the step.
 *
 * Each configuration (one row of diff_configs, in diff_engine.h) gets a
 * share of the operations proportional to its weight.  Operations run in
 * phases; each phase draws a target size and biases inserts or deletes
 * towards it, so the map grows to many segments and shrinks back, and the
 * small key ranges that come with small targets make keys collide.
 *
 * sm_map_verify() costs O(capacity), and a segment is ~112 KiB, so verifying
 * literally every one of a million steps would take hours under ASan.  It
 * runs after every step that may change the map's shape (any step that
 * allocated or freed memory, clear, reserve, full passes), at the end of
 * every phase, and in between as often as a time budget allows (see
 * verify_wanted); --verify-every=1 verifies every step.  The operations do
 * not depend on when verification runs, so a replay with --verify-every=1
 * runs the same sequence.
 *
 * Options: --ops=N total operations (default 2M; 40k with --valgrind),
 * --seed=S (or SAFEMAP_TEST_SEED), --verify-every=N, --verify-seconds=S
 * (budget per configuration, default 1.5), a config name to run
 * only that one, --scale=X.  On failure the test prints the seed, the
 * operation number, the last operations and the command that replays it.
 */
#include "../src/segment.h"
#include "diff_engine.h"
#include "testlib.h"

#include <inttypes.h>

/* Keys: some existing ones; the rest dense small ranges (which collide in
 * the map's low hash bits and are hit again soon), extreme values, keys that
 * differ only in their high bits or share their low bits, keys whose hashes
 * share their top 40 bits, and random 64-bit keys (new ones, or misses).  `fresh` and `existing`
 * are extra chances, in percent, of a random key and of an existing key: phases use them to grow
 * and shrink the map quickly. */
static int64_t crafted_key(rng *g, uint64_t range)
{
    /* Crafted against the seed: hashes sharing their top 40 bits, so they
     * pile into one segment, which must grow (and shrink, split and merge)
     * instead of splitting uselessly. */
    seg_hkey k = seg_hkey_from_seed(DIFF_SEED);
    return seg_unhash(&k, 0x5A5A5A5A5A000000ull | rng_below(g, 4 * range + 1024));
}

static int64_t pick_key(rng *g, const model *m, uint64_t range, unsigned fresh, unsigned existing)
{
    if (rng_below(g, 100) < fresh)
        return rng_below(g, 4) ? (int64_t)rng_next(g) : crafted_key(g, range);
    if (m->len && rng_below(g, 100) < existing)
        return m->keys[rng_below(g, m->len)];
    uint64_t r = rng_below(g, 100);
    if (r < 30 && m->len)
        return m->keys[rng_below(g, m->len)];
    if (r < 55)
        return (int64_t)rng_below(g, range) - (int64_t)(range / 4);
    if (r < 62)
        return diff_extreme_keys[rng_below(g, DIFF_NEXTREME)];
    if (r < 70)
        return (int64_t)(rng_below(g, range) << 44);
    if (r < 76)
        return (int64_t)(rng_below(g, range) << 12);
    if (r < 84)
        return crafted_key(g, range);
    return (int64_t)rng_next(g);
}

/* Operations: mostly point operations; rarely reserve, the two kinds of
 * full pass (each costs O(len)) and clear (which would keep the map small). */
static int pick_op(rng *g, int growing, int shrinking)
{
    uint64_t r = rng_below(g, 20000);
    if (r < 1)
        return DOP_CLEAR;
    if (r < 41)
        return DOP_RESERVE;
    if (r < 51)
        return DOP_ITER;
    if (r < 56)
        return DOP_ITER_DEL;
    r = rng_below(g, 100);
    if (r < 15)
        return DOP_GET;
    if (r < 30)
        return DOP_FIND;
    if (r < (growing ? 65u : shrinking ? 40u : 50u))
        return DOP_PUT;
    if (r < (growing ? 80u : shrinking ? 45u : 60u))
        return DOP_UPSERT;
    return DOP_DEL;
}

/* Phase targets, from nearly empty to many segments of every layout (a
 * segment holds a few thousand small entries).  Small targets are drawn more
 * often: they are cheap and keep keys colliding. */
static const size_t targets[] = {8, 8, 100, 100, 1000, 1000, 4000, 12000, 30000};
#define NTARGETS (sizeof targets / sizeof targets[0])

/* When to call sm_map_verify, which costs O(capacity): always after clear,
 * reserve and full passes, after any step that allocated or freed memory
 * (splits, merges, directory changes), and at the end of each phase.  The
 * other steps are verified as long as verification stays within its time
 * budget: VERIFY_RATIO times the time the operations took, or
 * verify_seconds per configuration spread evenly over the run, whichever is
 * more.  --verify-every=N verifies every Nth step instead (1: every step). */
#define VERIFY_RATIO 2.0
static size_t verify_every;
static double verify_seconds = 1.5;

typedef struct verify_clock {
    double ops, verify; /* seconds spent in each */
    size_t allocs, frees;
    uint64_t count;
} verify_clock;

static int verify_wanted(verify_clock *vc, uint64_t n, uint64_t ops, int op, int phase_ends)
{
    size_t allocs = atomic_load(&cnt.allocs), frees = atomic_load(&cnt.frees);
    int memory_changed = allocs != vc->allocs || frees != vc->frees;
    vc->allocs = allocs;
    vc->frees = frees;
    if (op == DOP_CLEAR || op == DOP_RESERVE || op == DOP_ITER || op == DOP_ITER_DEL ||
        memory_changed || phase_ends)
        return 1;
    if (verify_every)
        return n % verify_every == 0;
    double budget = verify_seconds * (double)n / (double)ops;
    if (budget < VERIFY_RATIO * vc->ops)
        budget = VERIFY_RATIO * vc->ops;
    return vc->verify <= budget;
}

typedef struct trace_entry {
    uint64_t n;
    int op;
    int64_t key;
    uint64_t arg;
    size_t len;
} trace_entry;
#define TRACE 16

static uint64_t base_seed = 20261124;
static size_t total_ops = 2000000;
static char **argv_saved;

static void report_failure(const diff_run *r, const diff_config *c, uint64_t seed, uint64_t n,
                           const trace_entry *trace)
{
    printf("  config %s, seed %" PRIu64 ": operation #%" PRIu64 " failed: %s\n", c->name, base_seed,
           n, r->err);
    printf("  last operations (n op key arg len-before):\n");
    for (uint64_t i = n >= TRACE ? n - TRACE + 1 : 0; i <= n; i++) {
        const trace_entry *t = &trace[i % TRACE];
        printf("    #%" PRIu64 " %s %" PRId64 " %" PRIu64 " %zu\n", t->n, diff_op_names[t->op],
               t->key, t->arg, t->len);
    }
    printf("  replay: %s --seed=%" PRIu64 " --ops=%zu --verify-every=1 %s  (config seed %" PRIu64
           ")\n",
           argv_saved[0], base_seed, total_ops, c->name, seed);
}

/* Runs ops operations of config c from seed; records a failed check on the
 * first disagreement. */
static void run_config(const diff_config *c, uint64_t seed, size_t ops)
{
    diff_run r;
    int rc = diff_open(&r, c);
    if (!CHECK_EQ(rc, 0)) {
        diff_close(&r);
        return;
    }
    rng g = {seed};
    trace_entry trace[TRACE];
    memset(trace, 0, sizeof trace);
    size_t target = 0, phase_end = 0, max_len = 0;
    verify_clock vc = {0, 0, 0, 0, 0};
    r.verify = 0; /* verified here, to time it */
    for (uint64_t n = 0; n < ops; n++) {
        if (n == phase_end) {
            target = targets[rng_below(&g, NTARGETS)];
            phase_end = n + (target * 3 > 3000 ? target * 3 : 3000);
        }
        int growing = r.ref.len < target * 9 / 10;
        int shrinking = r.ref.len > target + target / 10;
        int op = pick_op(&g, growing, shrinking);
        unsigned fresh = growing && (op == DOP_PUT || op == DOP_UPSERT) ? 80 : 0;
        unsigned existing = shrinking && op == DOP_DEL ? 80 : 0;
        int64_t key = pick_key(&g, &r.ref, 2 * target + 16, fresh, existing);
        uint64_t arg = rng_next(&g);
        trace[n % TRACE] = (trace_entry){n, op, key, arg, r.ref.len};
        double t0 = tl_now();
        int step_rc = diff_step(&r, op, key, arg);
        double t1 = tl_now();
        vc.ops += t1 - t0;
        if (step_rc == 0 && verify_wanted(&vc, n, ops, op, n + 1 == phase_end || n + 1 == ops)) {
            vc.count++;
            int vrc = sm_map_verify(r.map);
            vc.verify += tl_now() - t1;
            if (vrc != 0)
                step_rc = diff_fail(&r, "sm_map_verify returned %d", vrc);
        }
        if (step_rc != 0) {
            CHECK(!"map and model disagree");
            report_failure(&r, c, seed, n, trace);
            diff_close(&r);
            return;
        }
        if (r.ref.len > max_len)
            max_len = r.ref.len;
    }
    if (diff_check_all(&r) != 0) {
        CHECK(!"final contents differ");
        printf("  config %s, seed %" PRIu64 ": %s\n", c->name, base_seed, r.err);
    }
    printf("  %s: %zu ops (%.1f s), %" PRIu64 " verified (%.1f s), max len %zu\n", c->name, ops,
           vc.ops, vc.count, vc.verify, max_len);
    diff_close(&r);
    CHECK_EQ(cnt_blocks(), 0);
    CHECK_EQ(cnt_bytes(), 0);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    argv_saved = argv;
    /* A disagreement must be reported by this test, not by an abort. */
    ev_install();
    cnt_install();
    if (tl_under_valgrind)
        total_ops = 40000;
    const char *seconds = tl_option(argc, argv, "verify-seconds");
    if (seconds)
        verify_seconds = atof(seconds);
    verify_seconds *= tl_scale;
    const char *every = tl_option(argc, argv, "verify-every");
    if (every)
        verify_every = (size_t)strtoull(every, NULL, 10);
    const char *opt = tl_option(argc, argv, "ops");
    if (opt)
        total_ops = (size_t)strtoull(opt, NULL, 10);
    total_ops = tl_scaled(total_ops);
    const char *seed_opt = tl_option(argc, argv, "seed");
    if (!seed_opt)
        seed_opt = getenv("SAFEMAP_TEST_SEED");
    if (seed_opt)
        base_seed = strtoull(seed_opt, NULL, 0);
    printf("seed %" PRIu64 ", %zu operations\n", base_seed, total_ops);

    unsigned weights = 0;
    for (size_t i = 0; i < DIFF_NCONFIGS; i++)
        weights += diff_configs[i].weight;
    for (size_t i = 0; i < DIFF_NCONFIGS; i++) {
        if (!tl_begin(diff_configs[i].name))
            continue;
        size_t ops = total_ops / weights * diff_configs[i].weight;
        run_config(&diff_configs[i], splitmix64(base_seed ^ (uint64_t)i), ops);
        CHECK_EQ(ev_count(), 0);
        ev_reset();
        tl_end();
    }
    return tl_finish();
}
