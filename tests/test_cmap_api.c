/*
 * test_cmap_api.c - the concurrent map's API, one thread: every function,
 * every error code, what a failure leaves unchanged, growth and shrinking,
 * and a differential run against the reference model.
 *
 * Concurrency is tested in test_cmap_threads.c (this file's behaviour with
 * readers and writers racing), out of memory in test_cmap_oom.c.
 */
#include "../src/segment.h"
#include "model.h"
#include "support.h"
#include "testlib.h"

typedef int64_t row[8];
#define ROW SM_LAYOUT(int64_t, 8)

static void make_row(row r, int64_t key, int64_t salt)
{
    for (int i = 0; i < 8; i++)
        r[i] = (int64_t)((uint64_t)key * 31 + (uint64_t)salt * 7 + (uint64_t)i);
}

static sm_cmap *new_cmap(int check)
{
    sm_map_opts o = {.layout = ROW, .check = check, .fixed_seed = 1, .seed = 42};
    sm_cmap *cm = NULL;
    if (!CHECK_EQ(sm_cmap_new(&cm, &o), 0))
        return NULL;
    return cm;
}

/* ---- Creation ---------------------------------------------------------- */

static void test_new_rejects_bad_arguments(void)
{
    sm_cmap *cm = (sm_cmap *)(uintptr_t)1;
    sm_map_opts o = {.layout = ROW};
    CHECK_EQ(sm_cmap_new(NULL, &o), SM_EINVAL);
    CHECK_EQ(sm_cmap_new(&cm, NULL), SM_EINVAL);
    sm_map_opts bad_layout = {.layout = {8, 3, 8, "odd align"}};
    CHECK_EQ(sm_cmap_new(&cm, &bad_layout), SM_EINVAL);
    sm_map_opts zero_len = {.layout = {8, 8, 0, "empty"}};
    CHECK_EQ(sm_cmap_new(&cm, &zero_len), SM_EINVAL);
    sm_map_opts pooled = {.layout = ROW, .storage = SM_POOLED};
    CHECK_EQ(sm_cmap_new(&cm, &pooled), SM_EINVAL);
    sm_map_opts bad_check = {.layout = ROW, .check = 99};
    CHECK_EQ(sm_cmap_new(&cm, &bad_check), SM_EINVAL);
    CHECK(cm == (sm_cmap *)(uintptr_t)1); /* *out set only on success */
}

static void test_new_out_of_memory_leaves_nothing(void)
{
    cnt_install();
    sm_map_opts o = {.layout = ROW, .capacity = 20000};
    size_t failures = 0;
    for (size_t n = 1;; n++) {
        sm_cmap *cm = (sm_cmap *)(uintptr_t)1;
        cnt_fail_nth(n, 0);
        int rc = sm_cmap_new(&cm, &o);
        cnt_fail_never();
        if (rc == 0) {
            sm_cmap_free(cm);
            CHECK_EQ(cnt_blocks(), 0);
            break;
        }
        failures++;
        CHECK_EQ(rc, SM_ENOMEM);
        CHECK(cm == (sm_cmap *)(uintptr_t)1);
        CHECK_EQ(cnt_blocks(), 0);
        if (n > 10000)
            break;
    }
    CHECK(failures > 2); /* the map, the directory and segments were each failed */
    cnt_uninstall();
}

/* ---- Put, get, delete -------------------------------------------------- */

static void test_put_get_del_roundtrip(void)
{
    sm_cmap *cm = new_cmap(SM_CHECK_CHEAP);
    if (!cm)
        return;
    row v, out;
    make_row(v, 5, 1);
    CHECK_EQ(sm_cmap_put(cm, 5, v), 0);
    CHECK_EQ(sm_cmap_len(cm), 1);
    memset(out, 0, sizeof out);
    CHECK_EQ(sm_cmap_get(cm, 5, out), 0);
    CHECK(memcmp(out, v, sizeof v) == 0);
    make_row(v, 5, 2);
    CHECK_EQ(sm_cmap_put(cm, 5, v), 0); /* replace */
    CHECK_EQ(sm_cmap_len(cm), 1);
    CHECK_EQ(sm_cmap_get(cm, 5, out), 0);
    CHECK(memcmp(out, v, sizeof v) == 0);
    CHECK_EQ(sm_cmap_del(cm, 5), 0);
    CHECK_EQ(sm_cmap_len(cm), 0);
    CHECK_EQ(sm_cmap_verify(cm), 0);
    sm_cmap_free(cm);
}

static void test_every_key_is_legal(void)
{
    sm_cmap *cm = new_cmap(SM_CHECK_CHEAP);
    if (!cm)
        return;
    int64_t keys[] = {0, -1, 1, INT64_MIN, INT64_MAX, (int64_t)0x8080808080808080ull};
    size_t n = sizeof keys / sizeof keys[0];
    row v, out;
    for (size_t i = 0; i < n; i++) {
        make_row(v, keys[i], 0);
        CHECK_EQ(sm_cmap_put(cm, keys[i], v), 0);
    }
    for (size_t i = 0; i < n; i++) {
        make_row(v, keys[i], 0);
        CHECK_EQ(sm_cmap_get(cm, keys[i], out), 0);
        CHECK(memcmp(out, v, sizeof v) == 0);
    }
    CHECK_EQ(sm_cmap_len(cm), n);
    sm_cmap_free(cm);
}

static void test_errors_change_nothing(void)
{
    sm_cmap *cm = new_cmap(SM_CHECK_CHEAP);
    if (!cm)
        return;
    row v, out;
    make_row(v, 1, 0);
    CHECK_EQ(sm_cmap_put(cm, 1, v), 0);
    CHECK_EQ(sm_cmap_put(NULL, 1, v), SM_EINVAL);
    CHECK_EQ(sm_cmap_put(cm, 2, NULL), SM_EINVAL);
    CHECK_EQ(sm_cmap_get(NULL, 1, out), SM_EINVAL);
    CHECK_EQ(sm_cmap_get(cm, 1, NULL), SM_EINVAL);
    CHECK_EQ(sm_cmap_del(NULL, 1), SM_EINVAL);
    CHECK_EQ(sm_cmap_update(NULL, 1, NULL, NULL), SM_EINVAL);
    CHECK_EQ(sm_cmap_update(cm, 1, NULL, NULL), SM_EINVAL);
    CHECK_EQ(sm_cmap_each(NULL, NULL, NULL), SM_EINVAL);
    CHECK_EQ(sm_cmap_each(cm, NULL, NULL), SM_EINVAL);
    CHECK_EQ(sm_cmap_verify(NULL), SM_EINVAL);
    CHECK_EQ(sm_cmap_stats(cm, NULL), SM_EINVAL);
    CHECK_EQ(sm_cmap_read_begin(NULL), SM_EINVAL);
    CHECK_EQ(sm_cmap_len(NULL), 0);
    /* Absent keys: SM_ENOENT, out untouched. */
    memset(out, 0x5A, sizeof out);
    row untouched;
    memset(untouched, 0x5A, sizeof untouched);
    CHECK_EQ(sm_cmap_get(cm, 2, out), SM_ENOENT);
    CHECK(memcmp(out, untouched, sizeof out) == 0);
    CHECK_EQ(sm_cmap_del(cm, 2), SM_ENOENT);
    CHECK_EQ(sm_cmap_len(cm), 1);
    CHECK_EQ(sm_cmap_get(cm, 1, out), 0);
    CHECK(memcmp(out, v, sizeof v) == 0);
    sm_cmap_free(NULL); /* a no-op */
    sm_cmap_free(cm);
}

/* ---- Update ------------------------------------------------------------ */

typedef struct upd_ctx {
    int calls, last_inserted;
} upd_ctx;

static void add_one(void *value, int inserted, void *ctx)
{
    upd_ctx *c = ctx;
    int64_t *v = value;
    c->calls++;
    c->last_inserted = inserted;
    if (inserted) {
        /* The value an insert starts from is all zeros. */
        for (int i = 0; i < 8; i++)
            if (v[i] != 0)
                c->last_inserted = -1;
    }
    for (int i = 0; i < 8; i++)
        v[i] += i + 1;
}

static void test_update_inserts_zeroed_then_modifies(void)
{
    sm_cmap *cm = new_cmap(SM_CHECK_CHEAP);
    if (!cm)
        return;
    upd_ctx c = {0, 0};
    CHECK_EQ(sm_cmap_update(cm, 9, add_one, &c), 0);
    CHECK_EQ(c.last_inserted, 1);
    CHECK_EQ(sm_cmap_update(cm, 9, add_one, &c), 0);
    CHECK_EQ(c.last_inserted, 0);
    CHECK_EQ(c.calls, 2);
    row out;
    CHECK_EQ(sm_cmap_get(cm, 9, out), 0);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(out[i], 2 * (i + 1));
    CHECK_EQ(sm_cmap_len(cm), 1);
    sm_cmap_free(cm);
}

/* ---- Iteration --------------------------------------------------------- */

typedef struct each_ctx {
    model *ref;
    size_t visits, wrong;
    size_t stop_after;
} each_ctx;

static int each_check(int64_t key, const void *value, void *ctx)
{
    each_ctx *c = ctx;
    size_t i = model_find(c->ref, key);
    if (i == MODEL_NONE || c->ref->mark[i] || memcmp(value, model_value(c->ref, i), sizeof(row)))
        c->wrong++;
    else
        c->ref->mark[i] = 1;
    c->visits++;
    return c->stop_after && c->visits == c->stop_after ? 7 : 0;
}

static void test_each_visits_every_entry_once(void)
{
    sm_cmap *cm = new_cmap(SM_CHECK_CHEAP);
    if (!cm)
        return;
    model ref;
    model_init(&ref, sizeof(row));
    for (size_t i = 0; i < 50000; i++) {
        int64_t k = (int64_t)splitmix64(i);
        row v;
        make_row(v, k, 3);
        CHECK_EQ(sm_cmap_put(cm, k, v), 0);
        model_put(&ref, k, v);
    }
    each_ctx c = {&ref, 0, 0, 0};
    CHECK_EQ(sm_cmap_each(cm, each_check, &c), 0);
    CHECK_EQ(c.visits, ref.len);
    CHECK_EQ(c.wrong, 0);
    /* A nonzero return stops the walk and is returned. */
    for (size_t i = 0; i < ref.len; i++)
        ref.mark[i] = 0;
    each_ctx s = {&ref, 0, 0, 10};
    CHECK_EQ(sm_cmap_each(cm, each_check, &s), 7);
    CHECK_EQ(s.visits, 10);
    model_destroy(&ref);
    sm_cmap_free(cm);
}

/* ---- Read sections ----------------------------------------------------- */

static void test_read_sections_nest_and_misuse_is_reported(void)
{
    ev_install();
    sm_cmap *cm = new_cmap(SM_CHECK_CHEAP);
    if (!cm)
        return;
    row v, out;
    make_row(v, 3, 0);
    CHECK_EQ(sm_cmap_put(cm, 3, v), 0);
    CHECK_EQ(sm_cmap_read_begin(cm), 0);
    CHECK_EQ(sm_cmap_read_begin(cm), 0);
    CHECK_EQ(sm_cmap_get(cm, 3, out), 0);
    /* Writing inside a section is allowed and must not wait for itself. */
    for (int64_t k = 100; k < 30000; k++)
        CHECK_EQ(sm_cmap_put(cm, k, v), 0);
    sm_cmap_read_end(cm);
    CHECK(sm_cmap_find(cm, 3) == NULL); /* SM_INLINE: no pointer is handed out */
    sm_cmap_read_end(cm);
    CHECK_EQ(ev_count(), 0);
    /* Outside a section: find and an unmatched end are reported. */
    CHECK(sm_cmap_find(cm, 3) == NULL);
    CHECK_EQ(ev_count(), 1);
    CHECK_EQ(evlog.last.code, SM_ESTALE);
    sm_cmap_read_end(cm);
    CHECK_EQ(ev_count(), 2);
    CHECK_EQ(evlog.last.code, SM_ESTALE);
    CHECK(strstr(evlog.last.what, "sm_cmap_read_end") != NULL);
    struct sm_cmap_stats st;
    CHECK_EQ(sm_cmap_stats(cm, &st), 0);
    CHECK_EQ(st.misuse[-SM_ESTALE], 2);
    sm_cmap_free(cm);
    /* At SM_CHECK_OFF nothing is checked. */
    ev_reset();
    cm = new_cmap(SM_CHECK_OFF);
    if (!cm)
        return;
    CHECK(sm_cmap_find(cm, 3) == NULL);
    sm_cmap_read_end(cm);
    CHECK_EQ(ev_count(), 0);
    sm_cmap_free(cm);
    sm_set_handler(NULL, NULL);
}

/* ---- Growth and shrinking ---------------------------------------------- */

static void test_grows_and_shrinks_back(void)
{
    cnt_install();
    sm_cmap *cm = new_cmap(SM_CHECK_CHEAP);
    if (!cm)
        return;
    size_t n = tl_under_valgrind ? 30000 : 300000;
    row v, out;
    for (size_t i = 0; i < n; i++) {
        make_row(v, (int64_t)i, 0);
        CHECK_EQ(sm_cmap_put(cm, (int64_t)i, v), 0);
    }
    struct sm_cmap_stats big;
    CHECK_EQ(sm_cmap_stats(cm, &big), 0);
    CHECK_EQ(big.len, n);
    CHECK(big.splits > 0 && big.segments > 8);
    CHECK_EQ(sm_cmap_verify(cm), 0);
    for (size_t i = 0; i < n; i++) {
        make_row(v, (int64_t)i, 0);
        if (!CHECK_EQ(sm_cmap_get(cm, (int64_t)i, out), 0) || !CHECK(!memcmp(out, v, sizeof v)))
            break;
    }
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(sm_cmap_del(cm, (int64_t)i), 0);
    struct sm_cmap_stats small;
    CHECK_EQ(sm_cmap_stats(cm, &small), 0);
    CHECK_EQ(small.len, 0);
    CHECK(small.merges > 0);
    CHECK(small.segments <= 2);
    CHECK(small.global_depth <= 2);
    CHECK(small.dir_halvings > 0);
    /* Everything retired is accounted for, and bounded. */
    CHECK(small.limbo_peak_bytes <= big.limbo_bound_bytes + 4 * (big.bytes / big.segments));
    CHECK(small.reclaimed > 0);
    CHECK(cnt_bytes() < big.bytes / 4);
    CHECK_EQ(sm_cmap_verify(cm), 0);
    sm_cmap_free(cm);
    CHECK_EQ(cnt_blocks(), 0);
    cnt_uninstall();
}

static void test_capacity_presizes(void)
{
    sm_map_opts o = {.layout = ROW, .capacity = 200000, .fixed_seed = 1, .seed = 7};
    sm_cmap *cm = NULL;
    if (!CHECK_EQ(sm_cmap_new(&cm, &o), 0))
        return;
    struct sm_cmap_stats st;
    sm_cmap_stats(cm, &st);
    CHECK(st.segments >= 16);
    row v;
    for (size_t i = 0; i < 200000; i++) {
        make_row(v, (int64_t)i, 0);
        CHECK_EQ(sm_cmap_put(cm, (int64_t)splitmix64(i), v), 0);
    }
    sm_cmap_stats(cm, &st);
    CHECK_EQ(st.splits, 0);
    sm_cmap_free(cm);
    sm_map_opts huge = {.layout = ROW, .capacity = SIZE_MAX};
    CHECK_EQ(sm_cmap_new(&cm, &huge), SM_EINVAL);
}

/* Values of any size: a tail shorter than a word, and values larger than the
 * reader's stack copy. */
static void test_odd_and_large_layouts(void)
{
    size_t lens[] = {1, 3, 13, 5000};
    for (size_t t = 0; t < sizeof lens / sizeof lens[0]; t++) {
        sm_map_opts o = {.layout = {1, 1, lens[t], "uint8_t[n]"}};
        sm_cmap *cm = NULL;
        if (!CHECK_EQ(sm_cmap_new(&cm, &o), 0))
            continue;
        unsigned char *v = malloc(lens[t]), *out = malloc(lens[t]);
        for (int64_t k = 0; k < 200; k++) {
            memset(v, (int)(k & 0xFF), lens[t]);
            v[lens[t] - 1] = (unsigned char)(k * 7);
            CHECK_EQ(sm_cmap_put(cm, k, v), 0);
        }
        for (int64_t k = 0; k < 200; k++) {
            memset(v, (int)(k & 0xFF), lens[t]);
            v[lens[t] - 1] = (unsigned char)(k * 7);
            CHECK_EQ(sm_cmap_get(cm, k, out), 0);
            CHECK(memcmp(out, v, lens[t]) == 0);
        }
        CHECK_EQ(sm_cmap_verify(cm), 0);
        free(v);
        free(out);
        sm_cmap_free(cm);
    }
}

/* The hash is keyed: the same seed gives the same order, another seed
 * another order. */
static int record_key(int64_t key, const void *value, void *ctx)
{
    (void)value;
    int64_t **p = ctx;
    *(*p)++ = key;
    return 0;
}

static void test_seed_decides_order(void)
{
    enum { N = 3000 };
    static int64_t a[N], b[N], c[N];
    int64_t *orders[] = {a, b, c};
    uint64_t seeds[] = {1, 1, 2};
    for (int m = 0; m < 3; m++) {
        sm_map_opts o = {.layout = ROW, .fixed_seed = 1, .seed = seeds[m]};
        sm_cmap *cm = NULL;
        if (!CHECK_EQ(sm_cmap_new(&cm, &o), 0))
            return;
        row v = {0};
        for (int64_t k = 0; k < N; k++)
            sm_cmap_put(cm, k, v);
        int64_t *p = orders[m];
        sm_cmap_each(cm, record_key, &p);
        sm_cmap_free(cm);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
}

/* Keys crafted against a known seed so that their hashes share the top 40
 * bits: each split sends them all to one half.  The directory must stay
 * small; the map refuses (SM_ENOMEM) instead of doubling once per bit. */
static void test_chosen_keys_cannot_blow_up_the_directory(void)
{
    uint64_t seed = 12345;
    sm_map_opts o = {.layout = ROW, .fixed_seed = 1, .seed = seed};
    sm_cmap *cm = NULL;
    if (!CHECK_EQ(sm_cmap_new(&cm, &o), 0))
        return;
    seg_hkey hk = seg_hkey_from_seed(seed);
    size_t stored = 0, refused = 0;
    row v;
    for (uint64_t i = 0; i < 20000; i++) {
        int64_t key = seg_unhash(&hk, 0xABCDEF1234000000ull | (i & 0xFFFFFF));
        make_row(v, key, 0);
        int rc = sm_cmap_put(cm, key, v);
        stored += rc == 0;
        refused += rc == SM_ENOMEM;
    }
    CHECK_EQ(stored + refused, 20000);
    CHECK(refused > 0);
    struct sm_cmap_stats st;
    CHECK_EQ(sm_cmap_stats(cm, &st), 0);
    CHECK(st.global_depth <= 16);
    CHECK(st.bytes < (size_t)64 << 20);
    CHECK_EQ(st.len, stored);
    CHECK_EQ(sm_cmap_verify(cm), 0);
    sm_cmap_free(cm);
}

/* ---- SM_CHECK_FULL: free segments are poisoned --------------------------- */

/* An allocator that remembers the large blocks the library holds (segments,
 * big directories), so that the test can find a reclaimed segment. */
enum { BIG_BLOCK = 16384, MAX_BIG = 4096 };
static void *big_blocks[MAX_BIG];
static size_t nbig;

static void *rec_alloc(size_t size, size_t align, void *ctx)
{
    void *p = cnt_alloc(size, align, ctx);
    if (p && size >= BIG_BLOCK && nbig < MAX_BIG)
        big_blocks[nbig++] = p;
    return p;
}

static void rec_free(void *p, size_t size, void *ctx)
{
    for (size_t i = 0; i < nbig; i++)
        if (big_blocks[i] == p)
            big_blocks[i] = big_blocks[--nbig];
    cnt_free(p, size, ctx);
}

/* Whether a block's bytes past its first cache lines are poisoned (a free
 * segment's body), asking ASan rather than reading when it watches. */
static int body_poisoned(const unsigned char *b)
{
#ifdef T_ASAN
    return __asan_region_is_poisoned((void *)(uintptr_t)(b + 128), 64) != NULL;
#else
    for (int i = 128; i < 192; i++)
        if (b[i] != 0xDB)
            return 0;
    return 1;
#endif
}

static void test_full_poisons_free_segments_and_finds_writes(void)
{
    cnt_install();
    nbig = 0;
    sm_allocator a = {rec_alloc, rec_free, NULL};
    sm_set_allocator(&a);
    ev_install();
    sm_cmap *cm = new_cmap(SM_CHECK_FULL);
    if (!cm)
        return;
    row v;
    size_t n = 100000;
    for (size_t i = 0; i < n; i++) {
        make_row(v, (int64_t)i, 0);
        CHECK_EQ(sm_cmap_put(cm, (int64_t)i, v), 0);
    }
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(sm_cmap_del(cm, (int64_t)i), 0);
    CHECK_EQ(ev_count(), 0); /* poisoning and reuse raise nothing on their own */
    unsigned char *free_seg = NULL;
    for (size_t i = 0; i < nbig && !free_seg; i++)
        if (body_poisoned(big_blocks[i]))
            free_seg = big_blocks[i];
    if (CHECK(free_seg != NULL)) {
        scribble_at(free_seg, 4096, 8);
        for (size_t i = 0; i < n; i++) {
            make_row(v, (int64_t)i, 1);
            CHECK_EQ(sm_cmap_put(cm, (int64_t)i, v), 0);
        }
        CHECK_EQ(ev_count(), 1);
        CHECK_EQ(evlog.first.code, SM_ECORRUPT);
        CHECK(strstr(evlog.first.what, "segment reuse") != NULL);
        CHECK_EQ(sm_cmap_verify(cm), 0);
        CHECK_EQ(sm_cmap_len(cm), n);
    }
    sm_cmap_free(cm);
    CHECK_EQ(cnt_blocks(), 0);
    sm_set_handler(NULL, NULL);
    cnt_uninstall();
}

/* ---- Differential: random operations against the model ----------------- */

static void differential(sm_cmap *cm)
{
    model ref;
    model_init(&ref, sizeof(row));
    rng r = {2024};
    size_t ops = tl_scaled(tl_under_valgrind ? 20000 : 400000);
    uint64_t space = 5000;
    for (size_t op = 0; op < ops; op++) {
        /* The key space breathes so that segments split and merge. */
        if (op % 50000 == 0)
            space = space == 5000 ? 60000 : 5000;
        int64_t k = (int64_t)rng_below(&r, space) - 100;
        uint64_t what = rng_below(&r, 100);
        row v, out;
        if (what < 45) {
            make_row(v, k, (int64_t)op);
            if (!CHECK_EQ(sm_cmap_put(cm, k, v), 0))
                break;
            model_put(&ref, k, v);
        } else if (what < 85) {
            int rc = sm_cmap_del(cm, k);
            int had = model_del(&ref, k);
            if (!CHECK_EQ(rc, had ? 0 : SM_ENOENT))
                break;
        } else if (what < 95) {
            size_t i = model_find(&ref, k);
            int rc = sm_cmap_get(cm, k, out);
            if (!CHECK_EQ(rc, i == MODEL_NONE ? SM_ENOENT : 0))
                break;
            if (i != MODEL_NONE && !CHECK(!memcmp(out, model_value(&ref, i), sizeof out)))
                break;
        } else {
            upd_ctx c = {0, 0};
            CHECK_EQ(sm_cmap_update(cm, k, add_one, &c), 0);
            size_t i = model_find(&ref, k);
            row nv = {0};
            if (i != MODEL_NONE)
                memcpy(nv, model_value(&ref, i), sizeof nv);
            for (int e = 0; e < 8; e++)
                nv[e] += e + 1;
            model_put(&ref, k, nv);
        }
        if (!CHECK_EQ(sm_cmap_len(cm), ref.len))
            break;
        if (op % 40000 == 0 && !CHECK_EQ(sm_cmap_verify(cm), 0))
            break;
    }
    CHECK_EQ(sm_cmap_verify(cm), 0);
    for (size_t i = 0; i < ref.len; i++)
        ref.mark[i] = 0;
    each_ctx c = {&ref, 0, 0, 0};
    CHECK_EQ(sm_cmap_each(cm, each_check, &c), 0);
    CHECK_EQ(c.visits, ref.len);
    CHECK_EQ(c.wrong, 0);
    model_destroy(&ref);
}

static void test_differential_against_model(void)
{
    sm_cmap *cm = new_cmap(SM_CHECK_CHEAP);
    if (!cm)
        return;
    differential(cm);
    sm_cmap_free(cm);
}

/* ---- Pooled storage ----------------------------------------------------- */

static sm_pool *new_pool(int check)
{
    sm_pool_opts po = {.layout = ROW, .check = check};
    sm_pool *p = NULL;
    CHECK_EQ(sm_pool_new(&p, &po), 0);
    return p;
}

static sm_cmap *new_pooled(sm_pool *p, int check)
{
    sm_map_opts o = {.layout = ROW, .storage = SM_POOLED, .pool = p, .check = check};
    sm_cmap *cm = NULL;
    if (!CHECK_EQ(sm_cmap_new(&cm, &o), 0))
        return NULL;
    return cm;
}

static size_t pool_live(sm_pool *p)
{
    struct sm_pool_stats st;
    sm_pool_stats(p, &st);
    return st.live_arrays;
}

static void test_pooled_rejects_a_pool_of_another_layout(void)
{
    ev_install();
    sm_pool_opts po = {.layout = SM_LAYOUT(int64_t, 9)};
    sm_pool *p9 = NULL;
    if (!CHECK_EQ(sm_pool_new(&p9, &po), 0))
        return;
    sm_map_opts o = {.layout = ROW, .storage = SM_POOLED, .pool = p9};
    sm_cmap *cm = NULL;
    CHECK_EQ(sm_cmap_new(&cm, &o), SM_ELAYOUT);
    CHECK(cm == NULL);
    CHECK_EQ(ev_count(), 1);
    CHECK_EQ(evlog.last.code, SM_ELAYOUT);
    sm_map_opts no_pool = {.layout = ROW, .storage = SM_POOLED};
    CHECK_EQ(sm_cmap_new(&cm, &no_pool), SM_EINVAL);
    sm_pool_free(p9);
    sm_set_handler(NULL, NULL);
}

/* A pointer from sm_cmap_find() is a snapshot: a put replaces the array
 * (copy on write), and the old one stays readable until the section ends. */
static void test_pooled_find_gives_a_stable_snapshot(void)
{
    sm_pool *p = new_pool(SM_CHECK_CHEAP);
    sm_cmap *cm = p ? new_pooled(p, SM_CHECK_CHEAP) : NULL;
    if (!cm)
        return;
    row v1, v2, out;
    make_row(v1, 4, 1);
    make_row(v2, 4, 2);
    CHECK_EQ(sm_cmap_put(cm, 4, v1), 0);
    CHECK_EQ(sm_cmap_read_begin(cm), 0);
    const int64_t *snap = sm_cmap_find(cm, 4);
    if (CHECK(snap != NULL)) {
        CHECK(memcmp(snap, v1, sizeof v1) == 0);
        CHECK_EQ(sm_cmap_put(cm, 4, v2), 0);
        CHECK(memcmp(snap, v1, sizeof v1) == 0); /* unchanged under the reader */
        const int64_t *now = sm_cmap_find(cm, 4);
        CHECK(now != snap && now && memcmp(now, v2, sizeof v2) == 0);
        CHECK(sm_cmap_find(cm, 5) == NULL);
    }
    sm_cmap_read_end(cm);
    CHECK_EQ(sm_cmap_get(cm, 4, out), 0);
    CHECK(memcmp(out, v2, sizeof v2) == 0);
    CHECK_EQ(sm_cmap_del(cm, 4), 0);
    CHECK_EQ(sm_cmap_get(cm, 4, out), SM_ENOENT);
    sm_cmap_free(cm);
    CHECK_EQ(pool_live(p), 0); /* every array went back, the replaced one too */
    sm_pool_free(p);
}

/* A pooled pointer kept past sm_cmap_read_end() and written through: once
 * its readers are gone the array is back in the pool, and at the pool's
 * SM_CHECK_FULL the write is found (SM_ECORRUPT) when the array leaves the
 * pool's quarantine. */
static void test_pooled_pointer_escaping_a_section_is_caught_at_full(void)
{
    ev_install();
    sm_pool *p = new_pool(SM_CHECK_FULL);
    sm_cmap *cm = p ? new_pooled(p, SM_CHECK_FULL) : NULL;
    if (!cm)
        return;
    row v;
    make_row(v, 1, 0);
    CHECK_EQ(sm_cmap_put(cm, 1, v), 0);
    CHECK_EQ(sm_cmap_read_begin(cm), 0);
    int64_t *kept = (int64_t *)(uintptr_t)sm_cmap_find(cm, 1);
    sm_cmap_read_end(cm);
    if (!CHECK(kept != NULL))
        return;
    make_row(v, 1, 1);
    CHECK_EQ(sm_cmap_put(cm, 1, v), 0); /* the kept array is replaced */
    /* Writes until the replaced array has gone back to the pool (the map's
     * limbo then holds nothing older), then the stray write. */
    for (int64_t k = 2; k < 2000; k++)
        CHECK_EQ(sm_cmap_put(cm, k, v), 0);
    scribble_at(kept, 8, 8);
    for (int64_t round = 0; round < 200 && ev_count() == 0; round++)
        for (int64_t k = 2; k < 2000; k++)
            sm_cmap_put(cm, k, v); /* each replace puts an array back */
    CHECK(ev_count() >= 1);
    CHECK_EQ(evlog.first.code, SM_ECORRUPT);
    CHECK(evlog.first.ptr == kept);
    sm_cmap_free(cm);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

static void test_pooled_differential_against_model(void)
{
    sm_pool *p = new_pool(SM_CHECK_CHEAP);
    sm_cmap *cm = p ? new_pooled(p, SM_CHECK_CHEAP) : NULL;
    if (!cm)
        return;
    differential(cm);
    struct sm_cmap_stats st;
    CHECK_EQ(sm_cmap_stats(cm, &st), 0);
    CHECK_EQ(st.storage, SM_POOLED);
    /* Live arrays: the entries plus the replaced ones still waiting. */
    CHECK(pool_live(p) >= st.len);
    sm_cmap_free(cm);
    CHECK_EQ(pool_live(p), 0);
    sm_pool_free(p);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_new_rejects_bad_arguments);
    RUN(test_new_out_of_memory_leaves_nothing);
    RUN(test_put_get_del_roundtrip);
    RUN(test_every_key_is_legal);
    RUN(test_errors_change_nothing);
    RUN(test_update_inserts_zeroed_then_modifies);
    RUN(test_each_visits_every_entry_once);
    RUN(test_read_sections_nest_and_misuse_is_reported);
    RUN(test_grows_and_shrinks_back);
    RUN(test_capacity_presizes);
    RUN(test_odd_and_large_layouts);
    RUN(test_seed_decides_order);
    RUN(test_chosen_keys_cannot_blow_up_the_directory);
    RUN(test_full_poisons_free_segments_and_finds_writes);
    RUN(test_differential_against_model);
    RUN(test_pooled_rejects_a_pool_of_another_layout);
    RUN(test_pooled_find_gives_a_stable_snapshot);
    RUN(test_pooled_differential_against_model);
    RUN(test_pooled_pointer_escaping_a_section_is_caught_at_full);
    return tl_finish();
}
