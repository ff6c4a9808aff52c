/*
 * test_map_stats.c - what sm_map_stats() and SAFEMAP_DEBUG=trace=1 report
 * about a map: sizes, growth and shrink counters, the probe histogram, misuse
 * counts, and one trace line per split and merge.
 *
 * main() sets SAFEMAP_DEBUG before the first library call (the library reads
 * it once) and sends stderr to a temporary file, so the trace tests can read
 * the lines back.
 */
#define _POSIX_C_SOURCE 200809L
#include "safemap.h"
#include "support.h"
#include "testlib.h"

#include <unistd.h>

static FILE *trace_file;

static sm_map *new_map(int check)
{
    sm_map_opts o = {.layout = SM_LAYOUT(int64_t, 8), .storage = SM_INLINE, .check = check};
    sm_map *m = NULL;
    CHECK_EQ(sm_map_new(&m, &o), 0);
    return m;
}

static void fill(sm_map *m, int64_t from, int64_t to)
{
    int64_t v[8] = {0};
    for (int64_t k = from; k < to; k++) {
        v[0] = k;
        CHECK_EQ(sm_map_put(m, (int64_t)splitmix64((uint64_t)k), v), 0);
    }
}

static void test_stats_of_an_empty_map(void)
{
    sm_map *m = new_map(SM_CHECK_CHEAP);
    struct sm_map_stats st;
    CHECK_EQ(sm_map_stats(m, &st), 0);
    CHECK_EQ(st.len, 0);
    CHECK_EQ(st.segments, 1);
    CHECK(st.capacity > 0);
    CHECK_EQ(st.global_depth, 1);
    CHECK(st.bytes > st.capacity * 72);
    CHECK_EQ(st.splits, 0);
    CHECK(st.load == 0.0);
    CHECK_EQ(st.layout.len, 8);
    CHECK_EQ(st.storage, SM_INLINE);
    CHECK_EQ(st.check, SM_CHECK_CHEAP);
    sm_map_free(m);
}

static void test_stats_rejects_null(void)
{
    struct sm_map_stats st;
    CHECK_EQ(sm_map_stats(NULL, &st), SM_EINVAL);
    sm_map *m = new_map(SM_CHECK_OFF);
    CHECK_EQ(sm_map_stats(m, NULL), SM_EINVAL);
    sm_map_free(m);
}

static void test_growth_counts_splits_and_histogram_counts_every_entry(void)
{
    sm_map *m = new_map(SM_CHECK_CHEAP);
    fill(m, 0, 50000);
    struct sm_map_stats st;
    CHECK_EQ(sm_map_stats(m, &st), 0);
    CHECK_EQ(st.len, 50000);
    CHECK(st.segments >= 32);
    CHECK_EQ(st.splits, st.segments - 1);
    CHECK(st.dir_doublings >= 5);
    CHECK(st.global_depth >= 5);
    CHECK(st.load > 0.3 && st.load < 0.95);
    CHECK(st.load == (double)st.len / (double)st.capacity);
    uint64_t sum = 0;
    for (int i = 0; i < SM_PROBE_BUCKETS; i++)
        sum += st.probe[i];
    CHECK_EQ(sum, st.len);
    CHECK(st.probe[0] > st.len / 4); /* most entries sit at or near home */
    sm_map_free(m);
}

static void test_emptying_counts_merges_and_directory_halvings(void)
{
    sm_map *m = new_map(SM_CHECK_CHEAP);
    fill(m, 0, 30000);
    for (int64_t k = 0; k < 29990; k++)
        CHECK_EQ(sm_map_del(m, (int64_t)splitmix64((uint64_t)k)), 0);
    /* Deletes move nothing; the inserts that follow merge, one segment pair
     * at a time. */
    struct sm_map_stats st;
    CHECK_EQ(sm_map_stats(m, &st), 0);
    CHECK_EQ(st.merges, 0);
    fill(m, 30000, 30100);
    CHECK_EQ(sm_map_stats(m, &st), 0);
    CHECK_EQ(st.len, 110);
    CHECK(st.merges >= 8);
    CHECK(st.dir_halvings >= 3);
    CHECK(st.segments <= 2);
    sm_map_free(m);
}

static void test_churn_rebuilds_instead_of_growing(void)
{
    sm_map *m = new_map(SM_CHECK_CHEAP);
    fill(m, 0, 20000);
    struct sm_map_stats before, after;
    CHECK_EQ(sm_map_stats(m, &before), 0);
    int64_t v[8] = {0};
    for (int64_t i = 0; i < 200000; i++) {
        CHECK_EQ(sm_map_del(m, (int64_t)splitmix64((uint64_t)i)), 0);
        CHECK_EQ(sm_map_put(m, (int64_t)splitmix64((uint64_t)(20000 + i)), v), 0);
    }
    CHECK_EQ(sm_map_stats(m, &after), 0);
    CHECK(after.rebuilds > before.rebuilds);
    CHECK(after.capacity <= before.capacity + before.capacity / 2);
    sm_map_free(m);
}

static void test_misuse_is_counted_per_map(void)
{
    ev_install();
    sm_map *m = new_map(SM_CHECK_CHEAP);
    fill(m, 0, 10);
    sm_iter it = sm_map_iter(m);
    CHECK_EQ(sm_iter_next(&it, NULL, NULL), 1);
    fill(m, 100, 101);
    CHECK_EQ(sm_iter_next(&it, NULL, NULL), SM_ESTALE);
    CHECK_EQ(sm_iter_next(&it, NULL, NULL), SM_ESTALE);
    struct sm_map_stats st;
    CHECK_EQ(sm_map_stats(m, &st), 0);
    CHECK_EQ(st.misuse[-SM_ESTALE], 2);
    CHECK_EQ(st.misuse[-SM_EBUSY], 0);
    sm_map_free(m);
    sm_set_handler(NULL, NULL);
}

/* The trace written since offset `from`, NUL-terminated; caller frees. */
static char *trace_text(long from)
{
    fflush(stderr);
    long n = ftell(trace_file) - from;
    char *buf = calloc(1, (size_t)n + 1);
    if (!buf)
        return NULL;
    FILE *f = fopen("test_map_stats.trace", "r");
    if (f) {
        fseek(f, from, SEEK_SET);
        size_t got = fread(buf, 1, (size_t)n, f);
        buf[got] = 0;
        fclose(f);
    }
    return buf;
}

static void test_trace_prints_one_line_per_split_and_merge(void)
{
    fflush(stderr);
    long from = ftell(trace_file);
    sm_map *m = new_map(SM_CHECK_CHEAP);
    fill(m, 0, 3000);
    for (int64_t k = 0; k < 2990; k++)
        sm_map_del(m, (int64_t)splitmix64((uint64_t)k));
    fill(m, 3000, 3010);
    struct sm_map_stats st;
    sm_map_stats(m, &st);
    char *text = trace_text(from);
    if (!CHECK(text != NULL))
        return;
    char head[64];
    snprintf(head, sizeof head, "safemap: map %p [int64_t[8]] split: depth 0 -> 1,", (void *)m);
    CHECK(strstr(text, head) != NULL);
    snprintf(head, sizeof head, "safemap: map %p [int64_t[8]] merge:", (void *)m);
    CHECK(strstr(text, head) != NULL);
    size_t splits = 0, merges = 0;
    for (const char *p = text; (p = strstr(p, " split: depth ")); p++)
        splits++;
    for (const char *p = text; (p = strstr(p, " merge: depth ")); p++)
        merges++;
    CHECK_EQ(splits, st.splits);
    CHECK(merges >= 1);
    free(text);
    sm_map_free(m);
}

int main(int argc, char **argv)
{
    setenv("SAFEMAP_DEBUG", "trace=1", 1);
    trace_file = freopen("test_map_stats.trace", "w+", stderr);
    tl_init(argc, argv);
    RUN(test_stats_of_an_empty_map);
    RUN(test_stats_rejects_null);
    RUN(test_growth_counts_splits_and_histogram_counts_every_entry);
    RUN(test_emptying_counts_merges_and_directory_halvings);
    RUN(test_churn_rebuilds_instead_of_growing);
    RUN(test_misuse_is_counted_per_map);
    RUN(test_trace_prints_one_line_per_split_and_merge);
    return tl_finish();
}
