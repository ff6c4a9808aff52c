/*
 * test_map_hostile.c - what hostile testing found in the map, each pinned
 * down so that it cannot come back.
 *
 * Concern: keys chosen against a known seed (sharing 47 or 48 leading hash
 * bits, or a home group) keep memory O(n), the directory O(n / segment) and
 * lookups short; a failed put changes nothing (pointers and iterators taken
 * before it stay good); impossible reservations fail at once; two iterators
 * each keep their promise or report SM_ESTALE; an iterator used after
 * sm_map_free reports SM_ESTALE instead of touching freed memory; at
 * SM_CHECK_FULL a deleted slot is not handed to the next insert, and an
 * event found inside a put or a pooled delete is that call's result, with
 * the map left usable even by a handler that never returns; an array a
 * pooled map holds cannot be put back behind its back; a growing map's
 * splits find their memory already faulted in.
 */
#include "../src/sanitize.h" /* SM_HAVE_ASAN, SM_HAVE_TSAN */
#include "../src/segment.h"
#include "support.h"
#include "testlib.h"

#include <setjmp.h>
#include <sys/resource.h>

typedef int64_t row[8];
#define ROW SM_LAYOUT(int64_t, 8)
#define SEED 0x5EEDF00Dull

static sm_map *map_seeded(int check)
{
    sm_map_opts o = {
        .layout = ROW, .storage = SM_INLINE, .check = check, .fixed_seed = 1, .seed = SEED};
    sm_map *m = NULL;
    CHECK_EQ(sm_map_new(&m, &o), 0);
    return m;
}

static void fill_row(row r, int64_t key)
{
    for (int i = 0; i < 8; i++)
        r[i] = (int64_t)((uint64_t)key * 8 + (uint64_t)i);
}

/* Puts every key; returns how many puts failed. */
static size_t put_all(sm_map *m, const int64_t *keys, size_t n)
{
    size_t failed = 0;
    row r;
    for (size_t i = 0; i < n; i++) {
        fill_row(r, keys[i]);
        failed += sm_map_put(m, keys[i], r) != 0;
    }
    return failed;
}

static size_t found_all(sm_map *m, const int64_t *keys, size_t n)
{
    size_t found = 0;
    row r;
    for (size_t i = 0; i < n; i++)
        found += sm_map_get(m, keys[i], r) == 0 && r[0] == (int64_t)((uint64_t)keys[i] * 8);
    return found;
}

/* ---- Chosen keys --------------------------------------------------------- */

/* Memory, directory and probe lengths of a map holding n crafted keys,
 * against the same map holding n ordinary keys. */
static void check_bounded(const int64_t *keys, size_t n, const char *what)
{
    sm_map *m = map_seeded(SM_CHECK_CHEAP);
    if (!m)
        return;
    CHECK_EQ(put_all(m, keys, n), 0);
    CHECK_EQ(found_all(m, keys, n), n);
    CHECK_EQ(sm_map_verify(m), 0);
    struct sm_map_stats st;
    CHECK_EQ(sm_map_stats(m, &st), 0);
    /* Ordinary keys: about 100 B per entry.  O(n) with a small constant. */
    CHECK(st.bytes < n * 400);
    /* The directory stays within 2^GD_SLACK of the segment count. */
    CHECK(((size_t)1 << st.global_depth) <= 32 * (st.segments + st.grown_segments + 1));
    /* Work per lookup, counted: how many groups past their home group the
     * entries sit.  At most a few percent beyond the first two groups. */
    uint64_t far = 0;
    for (int i = 2; i < SM_PROBE_BUCKETS; i++)
        far += st.probe[i];
    printf("  %s: %zu keys, %zu B/entry, depth %u, %zu segments (%zu grown), %llu grows, "
           "%.2f%% beyond the second group\n",
           what, n, st.bytes / n, st.global_depth, st.segments, st.grown_segments,
           (unsigned long long)st.grows, 100.0 * (double)far / (double)n);
    if (strcmp(what, "shared home group") != 0)
        CHECK(far * 20 < n);
    sm_map_free(m);
}

/* n keys whose hashes under SEED are hash_of(i), through check_bounded. */
static void crafted(size_t n, uint64_t (*hash_of)(size_t i), const char *what)
{
    seg_hkey k = seg_hkey_from_seed(SEED);
    int64_t *keys = malloc(n * sizeof *keys);
    if (!CHECK(keys != NULL))
        return;
    for (size_t i = 0; i < n; i++)
        keys[i] = seg_unhash(&k, hash_of(i));
    check_bounded(keys, n, what);
    free(keys);
}

static uint64_t top48(size_t i)
{
    return 0xABCDEF0123450000ull | i;
}

static uint64_t top47(size_t i)
{
    return 0x7766554433220000ull << 1 | i;
}

/* The low 16 bits decide the home group (and the tag): keep them, vary the
 * rest, so that every key of a segment starts at the same group. */
static uint64_t low16(size_t i)
{
    return splitmix64(i) << 16 | 0x4242;
}

/* The low 16 bits and the top 31 shared, bits 16..32 varied: every key
 * lands in one segment that cannot split, and all want one home group.
 * Before grown segments placed keys by a remix of the whole hash, every
 * probe there walked all of them (1e5 keys: 2,000x slower lookups). */
static uint64_t home_and_prefix(size_t i)
{
    return (0x5A5AC3C3A5A53C3Cull & ~(0x1FFFFull << 16)) | (uint64_t)i << 16;
}

static void test_keys_sharing_48_top_hash_bits_stay_bounded(void)
{
    crafted(65536, top48, "48 shared bits"); /* every hash with those bits */
}

static void test_1e5_keys_sharing_47_top_hash_bits_stay_bounded(void)
{
    crafted(100000, top47, "47 shared bits");
}

static void test_1e5_keys_sharing_a_home_group_stay_bounded(void)
{
    crafted(100000, low16, "shared home group");
}

static void test_1e5_keys_sharing_a_home_group_and_a_prefix_stay_bounded(void)
{
    crafted(100000, home_and_prefix, "shared home group and prefix");
}

static void test_random_seeds_differ_between_maps(void)
{
    sm_map_opts o = {.layout = SM_LAYOUT(int64_t, 1), .storage = SM_INLINE};
    sm_map *a = NULL, *b = NULL;
    CHECK_EQ(sm_map_new(&a, &o), 0);
    CHECK_EQ(sm_map_new(&b, &o), 0);
    /* Same keys, same order of puts: the iteration orders (hash order) of
     * two randomly seeded maps differ. */
    for (int64_t key = 0; key < 64; key++) {
        CHECK_EQ(sm_map_put(a, key, &key), 0);
        CHECK_EQ(sm_map_put(b, key, &key), 0);
    }
    sm_iter ia = sm_map_iter(a), ib = sm_map_iter(b);
    int64_t ka, kb;
    int same = 0;
    while (sm_iter_next(&ia, &ka, NULL) == 1 && sm_iter_next(&ib, &kb, NULL) == 1)
        same += ka == kb;
    CHECK(same < 64);
    sm_map_free(a);
    sm_map_free(b);
}

/* ---- A failed put changes nothing ------------------------------------------ */

static void test_failed_put_keeps_pointers_and_iterators(void)
{
    cnt_install();
    ev_install();
    size_t failures = 0;
    for (size_t nth = 1; nth < 40; nth++) {
        sm_map *m = map_seeded(SM_CHECK_CHEAP);
        if (!m)
            break;
        row r;
        fill_row(r, 0);
        int64_t key = 0;
        /* Fill up to the edge of a split. */
        for (; key < 1300; key++) {
            fill_row(r, key);
            CHECK_EQ(sm_map_put(m, key, r), 0);
        }
        void *p = sm_map_find(m, 7);
        sm_iter it = sm_map_iter(m);
        cnt_fail_nth(nth, 1);
        int rc = 0;
        while (rc == 0 && key < 5000) {
            fill_row(r, key);
            rc = sm_map_put(m, key++, r);
        }
        cnt_fail_never();
        if (rc == 0) {
            sm_map_free(m);
            continue;
        }
        failures++;
        CHECK_EQ(rc, SM_ENOMEM);
        CHECK(sm_map_find(m, key - 1) == NULL);
        /* The puts before the failing one were done (and made the iterator
         * stale); only when the first put failed is the iterator still good. */
        CHECK(sm_map_find(m, 7) != NULL);
        if (sm_map_len(m) == 1300) {
            CHECK(sm_map_find(m, 7) == p);
            int64_t k;
            CHECK_EQ(sm_iter_next(&it, &k, NULL), 1);
        }
        CHECK_EQ(sm_map_verify(m), 0);
        sm_map_free(m);
    }
    CHECK(failures > 0);
    CHECK_EQ(ev_count(), 0);
    sm_set_handler(NULL, NULL);
    cnt_uninstall();
}

static void test_failed_first_put_of_a_split_keeps_pointers(void)
{
    /* The put that needs the split is the one that fails: every earlier
     * pointer and iterator must survive it. */
    cnt_install();
    size_t checked = 0;
    for (size_t nth = 1; nth <= 3; nth++) {
        sm_map *m = map_seeded(SM_CHECK_CHEAP);
        if (!m)
            break;
        row r;
        int64_t key = 0;
        for (;;) {
            struct sm_map_stats st;
            sm_map_stats(m, &st);
            if (st.len >= 1365) /* the segment's limit: the next put splits */
                break;
            fill_row(r, key);
            sm_map_put(m, key++, r);
        }
        void *p = sm_map_find(m, 3);
        sm_iter it = sm_map_iter(m);
        cnt_fail_nth(nth, 1);
        fill_row(r, key);
        int rc = sm_map_put(m, key, r);
        cnt_fail_never();
        if (rc == SM_ENOMEM) {
            checked++;
            CHECK(sm_map_find(m, 3) == p);
            int64_t k;
            CHECK_EQ(sm_iter_next(&it, &k, NULL), 1);
            struct sm_map_stats st;
            sm_map_stats(m, &st);
            CHECK_EQ(st.splits, 0);
            CHECK_EQ(st.dir_doublings, 0);
        }
        sm_map_free(m);
    }
    CHECK(checked > 0);
    cnt_uninstall();
}

/* ---- Impossible sizes ------------------------------------------------------ */

static void test_impossible_reserve_fails_at_once(void)
{
    cnt_install();
    sm_map *m = map_seeded(SM_CHECK_CHEAP);
    if (!m)
        return;
    size_t bytes = cnt_bytes(), allocs = atomic_load(&cnt.allocs);
    size_t huge[] = {SIZE_MAX, SIZE_MAX / 2, (size_t)1 << 40, (size_t)1 << 36};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++)
        CHECK_EQ(sm_map_reserve(m, huge[i]), SM_ENOMEM);
    CHECK_EQ(atomic_load(&cnt.allocs), allocs); /* not even tried */
    CHECK_EQ(cnt_bytes(), bytes);
    CHECK_EQ(sm_map_verify(m), 0);
    sm_map_free(m);
    sm_map_opts o = {.layout = ROW, .storage = SM_INLINE, .capacity = SIZE_MAX};
    sm_map *big = NULL;
    CHECK_EQ(sm_map_new(&big, &o), SM_ENOMEM);
    CHECK(big == NULL);
    CHECK_EQ(cnt_bytes(), 0);
    cnt_uninstall();
}

static void test_failed_reserve_changes_nothing(void)
{
    cnt_install();
    for (size_t nth = 1; nth <= 6; nth++) {
        sm_map *m = map_seeded(SM_CHECK_CHEAP);
        if (!m)
            break;
        int64_t keys[100];
        for (int i = 0; i < 100; i++)
            keys[i] = i;
        put_all(m, keys, 100);
        void *p = sm_map_find(m, 5);
        size_t bytes = cnt_bytes();
        cnt_fail_nth(nth, 0);
        int rc = sm_map_reserve(m, 50000);
        cnt_fail_never();
        if (rc == SM_ENOMEM) {
            CHECK(sm_map_find(m, 5) == p);
            CHECK_EQ(cnt_bytes(), bytes);
            struct sm_map_stats st;
            sm_map_stats(m, &st);
            CHECK_EQ(st.segments, 1);
        } else {
            CHECK_EQ(rc, 0);
        }
        CHECK_EQ(found_all(m, keys, 100), 100);
        CHECK_EQ(sm_map_verify(m), 0);
        sm_map_free(m);
    }
    cnt_uninstall();
}

/* ---- Iterators ------------------------------------------------------------- */

static void test_two_iterators_each_keep_their_promise_or_are_stale(void)
{
    ev_install();
    sm_map *m = map_seeded(SM_CHECK_CHEAP);
    if (!m)
        return;
    size_t n = 20000;
    int64_t *keys = malloc(n * sizeof *keys);
    unsigned char *seen = calloc(n, 1);
    if (!CHECK(keys && seen))
        return;
    for (size_t i = 0; i < n; i++)
        keys[i] = (int64_t)i;
    put_all(m, keys, n);
    sm_iter a = sm_map_iter(m), b = sm_map_iter(m);
    int64_t ka, kb;
    CHECK_EQ(sm_iter_next(&b, &kb, NULL), 1);
    CHECK_EQ(sm_iter_next(&b, &kb, NULL), 1);
    /* a deletes every entry it is given; b, which stood elsewhere, is stale
     * and says so. */
    size_t visits = 0;
    int rc;
    while ((rc = sm_iter_next(&a, &ka, NULL)) == 1) {
        CHECK(ka >= 0 && (size_t)ka < n && !seen[ka]);
        seen[ka] = 1;
        visits++;
        CHECK_EQ(sm_map_del(m, ka), 0);
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(visits, n);
    CHECK_EQ(sm_map_len(m), 0);
    ev_reset();
    CHECK_EQ(sm_iter_next(&b, &kb, NULL), SM_ESTALE);
    CHECK_EQ(ev_count(), 1);
    free(keys);
    free(seen);
    sm_map_free(m);
    sm_set_handler(NULL, NULL);
}

static void test_iterator_after_map_free_is_stale_at_every_level(void)
{
    ev_install();
    int levels[] = {SM_CHECK_OFF, SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (size_t l = 0; l < 3; l++) {
        sm_map *m = map_seeded(levels[l]);
        if (!m)
            return;
        int64_t keys[50];
        for (int i = 0; i < 50; i++)
            keys[i] = i;
        put_all(m, keys, 50);
        sm_iter it = sm_map_iter(m);
        int64_t k;
        CHECK_EQ(sm_iter_next(&it, &k, NULL), 1);
        sm_map_free(m);
        /* A new map may well sit at the same address. */
        sm_map *other = map_seeded(levels[l]);
        ev_reset();
        CHECK_EQ(sm_iter_next(&it, &k, NULL), SM_ESTALE);
        CHECK_EQ(ev_count(), 1);
        CHECK_EQ(sm_iter_next(&it, &k, NULL), 0); /* and then it is over */
        sm_map_free(other);
    }
    sm_set_handler(NULL, NULL);
}

/* ---- Growth tail ------------------------------------------------------------ */

static long page_faults(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt;
}

/* A growing map faults its next segment in a page per insert, so a split
 * finds its memory resident: counted in page faults per put (not time),
 * only a put that doubles the directory takes more than a handful. */
static void test_growth_faults_memory_in_ahead_of_splits(void)
{
#if SM_HAVE_ASAN || SM_HAVE_TSAN
    SKIP("the sanitizer's shadow memory adds faults of its own");
#endif
    if (tl_under_valgrind)
        SKIP("valgrind counts faults of its own");
    sm_map *m = map_seeded(SM_CHECK_CHEAP);
    if (!m)
        return;
    row r;
    size_t n = 400000, heavy = 0;
    for (size_t i = 0; i < n; i++) {
        fill_row(r, (int64_t)i);
        long before = page_faults();
        CHECK_EQ(sm_map_put(m, (int64_t)splitmix64(i), r), 0);
        heavy += page_faults() - before > 10;
    }
    struct sm_map_stats st;
    CHECK_EQ(sm_map_stats(m, &st), 0);
    printf("  %zu puts: %zu took more than 10 page faults; %llu splits, %llu directory doublings\n",
           n, heavy, (unsigned long long)st.splits, (unsigned long long)st.dir_doublings);
    /* Without the spare every split is one of them (511 of 511 here). */
    CHECK(heavy <= st.dir_doublings + st.splits / 20);
    sm_map_free(m);
}

/* ---- SM_CHECK_FULL ----------------------------------------------------------- */

static void test_deleted_slot_is_not_reused_at_full(void)
{
    sm_map *m = map_seeded(SM_CHECK_FULL);
    if (!m)
        return;
    row r;
    fill_row(r, 1);
    CHECK_EQ(sm_map_put(m, 1, r), 0);
    void *old = sm_map_find(m, 1);
    CHECK_EQ(sm_map_del(m, 1), 0);
    /* A fresh insert of the same key (same home group, same preferred slot)
     * must land elsewhere while the old slot is held back. */
    CHECK_EQ(sm_map_put(m, 1, r), 0);
    CHECK(sm_map_find(m, 1) != old);
    for (int64_t key = 2; key < 200; key++) {
        fill_row(r, key);
        CHECK_EQ(sm_map_put(m, key, r), 0);
        CHECK(sm_map_find(m, key) != old);
    }
    CHECK_EQ(sm_map_verify(m), 0);
    sm_map_free(m);
}

static jmp_buf escape;
static int escapes;

static void escaping_handler(const sm_event *ev, void *ctx)
{
    (void)ev;
    (void)ctx;
    escapes++;
    longjmp(escape, 1);
}

/* A write through a pointer kept across growth lands in a retired segment;
 * the put that finds it (when the segment leaves quarantine) returns
 * SM_ECORRUPT.  With a handler that longjmps out, the map stays usable. */
static void test_corruption_found_in_put_is_its_result_and_map_stays_usable(void)
{
    for (int escaping = 0; escaping < 2; escaping++) {
        sm_map *m = map_seeded(SM_CHECK_FULL);
        if (!m)
            return;
        ev_install();
        if (escaping)
            sm_set_handler(escaping_handler, NULL);
        escapes = 0;
        row r;
        fill_row(r, 0);
        CHECK_EQ(sm_map_put(m, 0, r), 0);
        char *p = sm_map_find(m, 0);
        volatile int64_t key = 1;
        while (sm_map_find(m, 0) == (void *)p) {
            fill_row(r, key);
            CHECK_EQ(sm_map_put(m, key, r), 0);
            key++;
        }
        scribble_at(p, 8, 8); /* the segment is in quarantine now */
        volatile int found = 0;
        if (setjmp(escape) == 0) {
            while (!found && key < 400000) {
                fill_row(r, key);
                int rc = sm_map_put(m, key, r);
                key++;
                if (rc == SM_ECORRUPT)
                    found = 1;
                else
                    CHECK_EQ(rc, 0);
            }
        } else {
            found = 1;
        }
        CHECK(found);
        CHECK_EQ(escapes, escaping);
        if (!escaping)
            CHECK_EQ(ev_count(), 1);
        sm_set_handler(ev_handler, NULL);
        /* Usable: the flag was released before the event was raised. */
        fill_row(r, -1);
        CHECK_EQ(sm_map_put(m, -1, r), 0);
        struct sm_map_stats st;
        CHECK_EQ(sm_map_stats(m, &st), 0);
        CHECK_EQ(st.withdrawn_segments, 1);
        CHECK_EQ(sm_map_verify(m), 0);
        sm_map_free(m);
        sm_set_handler(NULL, NULL);
    }
}

#ifdef SM_TEST_HAVE_POOL
/* A map at SM_CHECK_CHEAP drawing its values from a new pool at pool_check. */
static sm_map *pooled_map(int pool_check, sm_pool **pool)
{
    sm_pool_opts po = {.layout = ROW, .check = pool_check};
    if (!CHECK_EQ(sm_pool_new(pool, &po), 0))
        return NULL;
    sm_map_opts o = {.layout = ROW, .storage = SM_POOLED, .pool = *pool, .check = SM_CHECK_CHEAP};
    sm_map *m = NULL;
    CHECK_EQ(sm_map_new(&m, &o), 0);
    return m;
}

/* An array a pooled map holds, put back to the pool by the user, is refused
 * at SM_CHECK_CHEAP (the map marks its arrays as its own), so a second map
 * can never share it; the map's own delete then gives it back cleanly. */
static void test_putting_back_a_pooled_maps_array_is_refused(void)
{
    ev_install();
    sm_pool *pool = NULL;
    sm_map *m = pooled_map(SM_CHECK_CHEAP, &pool);
    if (!m)
        return;
    row r;
    fill_row(r, 5);
    CHECK_EQ(sm_map_put(m, 5, r), 0);
    ev_reset();
    CHECK_EQ(sm_pool_put(pool, sm_map_find(m, 5)), SM_EDOUBLE);
    CHECK_EQ(ev_count(), 1);
    CHECK_EQ(sm_map_del(m, 5), 0);
    CHECK(sm_map_find(m, 5) == NULL);
    CHECK_EQ(sm_map_put(m, 6, r), 0);
    sm_map_free(m);
    sm_pool_free(pool);
    sm_set_handler(NULL, NULL);
}

/* The pool finds, while taking back the array of a pooled delete, another
 * array written after its Put (here: by the test, behind the sanitizers'
 * backs): the delete returns the pool's SM_ECORRUPT, and the map is not
 * left locked. */
static void test_pooled_delete_returns_corruption_the_pool_found(void)
{
    ev_install();
    sm_pool *pool = NULL;
    sm_map *m = pooled_map(SM_CHECK_FULL, &pool);
    if (!m)
        return;
    row r;
    int64_t n = 5000;
    for (int64_t k = 0; k < n; k++) {
        fill_row(r, k);
        CHECK_EQ(sm_map_put(m, k, r), 0);
    }
    void *stray = sm_pool_get(pool);
    CHECK_EQ(sm_pool_put(pool, stray), 0);
    scribble_at(stray, 0, 8); /* written after its Put */
    ev_reset();
    int64_t k = 0, corrupt = 0;
    for (; k < n && !corrupt; k++) {
        int rc = sm_map_del(m, k);
        if (rc == SM_ECORRUPT)
            corrupt = 1;
        else
            CHECK_EQ(rc, 0);
    }
    CHECK(corrupt);
    CHECK(ev_count() >= 1);
    CHECK(sm_map_find(m, k - 1) == NULL); /* that delete was done */
    CHECK_EQ(sm_map_put(m, -1, r), 0);    /* and the map is not locked */
    CHECK_EQ(sm_map_verify(m), 0);
    sm_map_free(m);
    sm_pool_free(pool);
    sm_set_handler(NULL, NULL);
}
#endif

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_keys_sharing_48_top_hash_bits_stay_bounded);
    RUN(test_1e5_keys_sharing_47_top_hash_bits_stay_bounded);
    RUN(test_1e5_keys_sharing_a_home_group_stay_bounded);
    RUN(test_1e5_keys_sharing_a_home_group_and_a_prefix_stay_bounded);
    RUN(test_random_seeds_differ_between_maps);
    RUN(test_failed_put_keeps_pointers_and_iterators);
    RUN(test_failed_first_put_of_a_split_keeps_pointers);
    RUN(test_impossible_reserve_fails_at_once);
    RUN(test_failed_reserve_changes_nothing);
    RUN(test_two_iterators_each_keep_their_promise_or_are_stale);
    RUN(test_iterator_after_map_free_is_stale_at_every_level);
    RUN(test_growth_faults_memory_in_ahead_of_splits);
    RUN(test_deleted_slot_is_not_reused_at_full);
    RUN(test_corruption_found_in_put_is_its_result_and_map_stays_usable);
#ifdef SM_TEST_HAVE_POOL
    RUN(test_putting_back_a_pooled_maps_array_is_refused);
    RUN(test_pooled_delete_returns_corruption_the_pool_found);
#endif
    return tl_finish();
}
