/*
 * test_cmap_stats.c - what sm_cmap_stats() and SAFEMAP_DEBUG=trace=1 report
 * for a concurrent map.
 *
 * Concern: the statistics follow what the map did (splits, merges,
 * doublings, halvings, reclamation), and each split, rebuild and merge
 * writes exactly one trace line naming the map.  main() sets SAFEMAP_DEBUG
 * before the library reads it (it reads it once) and sends stderr to a
 * temporary file, which the trace test reads back.
 */
#include "support.h"
#include "testlib.h"

typedef int64_t row[8];
#define ROW SM_LAYOUT(int64_t, 8)

static FILE *trace_file;
static const char *trace_path = "test_cmap_stats.trace";

static size_t count_lines(const char *text, const char *what)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, what)) != NULL; p++)
        n++;
    return n;
}

/* The trace written since offset `from`, NUL-terminated; the caller frees. */
static char *trace_since(long from)
{
    fflush(trace_file);
    long n = ftell(trace_file) - from;
    char *text = calloc((size_t)n + 1, 1);
    FILE *f = fopen(trace_path, "r");
    if (!text || !f || fseek(f, from, SEEK_SET) != 0 || fread(text, 1, (size_t)n, f) != (size_t)n)
        text[0] = 0;
    if (f)
        fclose(f);
    return text;
}

static void test_stats_and_trace_follow_growth_and_shrinking(void)
{
    long from = ftell(trace_file);
    sm_map_opts o = {.layout = ROW, .name = "quotes", .fixed_seed = 1, .seed = 3};
    sm_cmap *cm = NULL;
    if (!CHECK_EQ(sm_cmap_new(&cm, &o), 0))
        return;
    struct sm_cmap_stats st;
    CHECK_EQ(sm_cmap_stats(cm, &st), 0);
    CHECK_EQ(st.segments, 1);
    CHECK_EQ(st.len, 0);
    CHECK_EQ(st.check, SM_CHECK_CHEAP);
    CHECK_EQ(st.storage, SM_INLINE);
    CHECK_EQ(st.layout.len, 8);
    size_t seg_slots = st.capacity;
    row v = {0};
    size_t n = 200000;
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(sm_cmap_put(cm, (int64_t)i, v), 0);
    CHECK_EQ(sm_cmap_stats(cm, &st), 0);
    CHECK_EQ(st.len, n);
    CHECK_EQ(st.segments, st.splits + 1);
    CHECK_EQ(st.capacity, st.segments * seg_slots);
    CHECK(st.global_depth >= 1 && ((size_t)1 << st.global_depth) >= st.segments);
    CHECK_EQ(st.dir_doublings, st.global_depth - 1);
    CHECK(st.bytes > st.segments * seg_slots * sizeof(row));
    CHECK(st.reclaimed > 0);
    uint64_t splits = st.splits;
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(sm_cmap_del(cm, (int64_t)i), 0);
    CHECK_EQ(sm_cmap_stats(cm, &st), 0);
    CHECK_EQ(st.len, 0);
    CHECK_EQ(st.splits, splits);
    CHECK_EQ(st.segments, st.splits + 1 - st.merges);
    CHECK(st.dir_halvings > 0);
    CHECK(st.limbo_peak_bytes > 0);
    char *text = trace_since(from);
    CHECK_EQ(count_lines(text, "split: "), st.splits);
    CHECK_EQ(count_lines(text, "merge: "), st.merges);
    CHECK_EQ(count_lines(text, "rebuild: "), st.rebuilds);
    CHECK_EQ(count_lines(text, "safemap: cmap quotes [int64_t[8]] "),
             st.splits + st.merges + st.rebuilds);
    free(text);
    sm_cmap_free(cm);
}

int main(int argc, char **argv)
{
    setenv("SAFEMAP_DEBUG", "trace=1", 1);
    trace_file = freopen(trace_path, "w+", stderr);
    if (!trace_file)
        return 1;
    tl_init(argc, argv);
    RUN(test_stats_and_trace_follow_growth_and_shrinking);
    int rc = tl_finish();
    remove(trace_path);
    return rc;
}
