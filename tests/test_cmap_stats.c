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

/* The library's walk over live concurrent maps, for metrics (src/internal.h;
 * the tests link the static library, where it is visible). */
void cmap_each(void (*f)(sm_cmap *cm, const char *name, uint64_t seq, void *ctx), void *ctx);

typedef struct walk {
    int n;
    sm_cmap *maps[4];
    const char *names[4];
    uint64_t seqs[4];
} walk;

static void record_map(sm_cmap *cm, const char *name, uint64_t seq, void *ctx)
{
    walk *w = ctx;
    if (w->n < 4) {
        w->maps[w->n] = cm;
        w->names[w->n] = name;
        w->seqs[w->n] = seq;
    }
    w->n++;
}

static void test_live_maps_are_listed_with_name_and_creation_number(void)
{
    sm_map_opts named = {.layout = ROW, .name = "orders"}, unnamed = {.layout = ROW};
    sm_cmap *a = NULL, *b = NULL;
    if (!CHECK_EQ(sm_cmap_new(&a, &named), 0) || !CHECK_EQ(sm_cmap_new(&b, &unnamed), 0))
        return;
    walk w = {0};
    cmap_each(record_map, &w);
    if (CHECK_EQ(w.n, 2)) {
        CHECK(w.maps[0] == a && w.maps[1] == b); /* oldest first */
        CHECK(w.names[0] && strcmp(w.names[0], "orders") == 0);
        CHECK(w.names[1] == NULL);
        CHECK(w.seqs[1] == w.seqs[0] + 1);
    }
    sm_cmap_free(a);
    walk after = {0};
    cmap_each(record_map, &after);
    CHECK_EQ(after.n, 1);
    CHECK(after.maps[0] == b && after.seqs[0] == w.seqs[1]);
    sm_cmap_free(b);
}

int main(int argc, char **argv)
{
    setenv("SAFEMAP_DEBUG", "trace=1", 1);
    trace_file = freopen(trace_path, "w+", stderr);
    if (!trace_file)
        return 1;
    tl_init(argc, argv);
    RUN(test_stats_and_trace_follow_growth_and_shrinking);
    RUN(test_live_maps_are_listed_with_name_and_creation_number);
    int rc = tl_finish();
    remove(trace_path);
    return rc;
}
