/*
 * test_metrics.c - sm_metrics_write(): Prometheus text exposition of every
 * live pool and map.
 *
 * Each test writes the exposition to a temporary file, reads it back and
 * looks for exact lines: the HELP and TYPE lines of a family, and samples
 * whose values must equal what sm_pool_stats() / sm_map_stats() report.
 * The structure of the whole text is checked too: every family's HELP and
 * TYPE come once and before its samples, a family's samples are contiguous
 * (promtool rejects them otherwise), and counters, and only counters, end
 * in _total.  The run uses the counting allocator, so it also shows that
 * metrics leave nothing held, and that when memory runs out the call
 * returns SM_ENOMEM and writes nothing.
 *
 *   test_metrics --write=PATH   writes a representative exposition to PATH
 *                               and exits (tests/promtool_check.sh checks it
 *                               with `promtool check metrics`)
 */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

#include <errno.h>
#include <inttypes.h>

typedef int64_t row8[8];

static void quiet_handler(const sm_event *ev, void *ctx)
{
    (void)ev;
    (void)ctx;
}

/* The exposition as a NUL-terminated string (malloc), or NULL; *rc gets
 * sm_metrics_write's result. */
static char *metrics_text(int *rc)
{
    FILE *f = tmpfile();
    if (!f)
        return NULL;
    *rc = sm_metrics_write(f);
    long n = ftell(f);
    rewind(f);
    char *text = malloc((size_t)n + 1);
    if (text && fread(text, 1, (size_t)n, f) != (size_t)n) {
        free(text);
        text = NULL;
    }
    if (text)
        text[n] = '\0';
    fclose(f);
    return text;
}

/* Whether text has `line` as a whole line. */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

static int count_lines_starting(const char *text, const char *prefix)
{
    int count = 0;
    size_t n = strlen(prefix);
    for (const char *p = text; *p;) {
        if (strncmp(p, prefix, n) == 0)
            count++;
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        p = nl + 1;
    }
    return count;
}

/* The sample line `name{labels} value` must be present. */
#define CHECK_SAMPLE(text, name, labels, fmt, value)                                               \
    do {                                                                                           \
        char want_[512];                                                                           \
        snprintf(want_, sizeof want_, "%s{%s} " fmt, name, labels, value);                         \
        if (!CHECK(has_line(text, want_)))                                                         \
            printf("  missing: %s\n", want_);                                                      \
    } while (0)

/* An unnamed object is labelled by its creation number among its kind
 * ("pool-3"), which does not change from run to run as its address does.
 * Every pool and map of this program is made by pool_make / map_make, which
 * count them and remember the number of the latest ones (an address may
 * come back for a later object: the newest entry wins). */
enum { MADE_MAX = 256 };
typedef struct made_obj {
    const void *obj;
    unsigned seq;
} made_obj;
static made_obj made_pools[MADE_MAX], made_maps[MADE_MAX];
static atomic_uint npools_made, nmaps_made;

static void made_record(made_obj *table, atomic_uint *count, const void *obj)
{
    unsigned seq = atomic_fetch_add(count, 1) + 1;
    table[seq % MADE_MAX] = (made_obj){obj, seq};
}

static unsigned made_seq(const made_obj *table, unsigned count, const void *obj)
{
    for (unsigned i = count; i > 0 && i + MADE_MAX > count; i--)
        if (table[i % MADE_MAX].obj == obj)
            return table[i % MADE_MAX].seq;
    return 0;
}

static void pool_labels(char *buf, size_t n, const sm_pool *p, const char *layout)
{
    unsigned seq = made_seq(made_pools, atomic_load(&npools_made), p);
    snprintf(buf, n, "pool=\"pool-%u\",layout=\"%s\"", seq, layout);
}

static void map_labels(char *buf, size_t n, const sm_map *m, const char *layout,
                       const char *storage)
{
    unsigned seq = made_seq(made_maps, atomic_load(&nmaps_made), m);
    snprintf(buf, n, "map=\"map-%u\",layout=\"%s\",storage=\"%s\"", seq, layout, storage);
}

static sm_pool *pool_make(sm_layout layout, int check)
{
    sm_pool *p = NULL;
    sm_pool_opts o = {.layout = layout, .check = check};
    if (sm_pool_new(&p, &o) != 0)
        return NULL;
    made_record(made_pools, &npools_made, p);
    return p;
}

static sm_map *map_make(int storage, sm_pool *pool, size_t n)
{
    sm_map *m = NULL;
    sm_map_opts o = {
        .layout = SM_LAYOUT(int64_t, 8), .storage = storage, .pool = pool, .check = SM_CHECK_CHEAP};
    if (sm_map_new(&m, &o) != 0)
        return NULL;
    made_record(made_maps, &nmaps_made, m);
    row8 v = {0};
    for (size_t i = 0; i < n; i++) {
        v[0] = (int64_t)i;
        sm_map_put(m, (int64_t)(splitmix64(i) >> 1), v);
    }
    return m;
}

/* ---- Structure --------------------------------------------------------- */

/* The metric name of a sample line: up to '{' or ' '. */
static size_t sample_name_len(const char *line)
{
    size_t n = 0;
    while (line[n] && line[n] != '{' && line[n] != ' ' && line[n] != '\n')
        n++;
    return n;
}

/* Walks the exposition and checks the rules promtool enforces, and
 * Prometheus' naming rules for counters. */
static void check_structure(const char *text)
{
    enum { MAXF = 128 };
    char families[MAXF][96];
    int nfam = 0;
    char current[96] = "", type[32] = "";
    int help_seen = 0, type_seen = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        if (!CHECK(nl != NULL)) /* every line ends in a line feed */
            return;
        char line[1024];
        size_t len = (size_t)(nl - p) < sizeof line - 1 ? (size_t)(nl - p) : sizeof line - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl + 1;
        char name[96];
        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
            int is_help = line[2] == 'H';
            if (sscanf(line + 7, "%95s", name) != 1)
                continue;
            if (strcmp(name, current) != 0) {
                /* A new family: never seen before. */
                for (int i = 0; i < nfam; i++)
                    if (!CHECK(strcmp(families[i], name) != 0))
                        printf("  family %s appears twice\n", name);
                if (nfam < MAXF)
                    snprintf(families[nfam++], sizeof families[0], "%s", name);
                snprintf(current, sizeof current, "%s", name);
                help_seen = type_seen = 0;
                type[0] = '\0';
            }
            if (is_help) {
                CHECK(!help_seen++);
                CHECK(strlen(line) > 7 + strlen(name) + 1); /* a non-empty help text */
            } else {
                CHECK(!type_seen++);
                sscanf(line + 7 + strlen(name), " %31s", type);
                size_t n = strlen(name);
                int total = n > 6 && strcmp(name + n - 6, "_total") == 0;
                if (!CHECK(total == (strcmp(type, "counter") == 0)))
                    printf("  %s is a %s\n", name, type);
            }
            continue;
        }
        CHECK(line[0] != '#');
        size_t n = sample_name_len(line);
        if (!CHECK(n > 0 && n < sizeof name))
            continue;
        memcpy(name, line, n);
        name[n] = '\0';
        /* The sample belongs to the family being described. */
        if (!CHECK(strcmp(name, current) == 0 && help_seen && type_seen))
            printf("  sample of %s outside its family (%s)\n", name, current);
        CHECK(strncmp(name, "safemap_", 8) == 0);
    }
}

/* ---- Tests ------------------------------------------------------------- */

static void test_metrics_null_stream_is_einval(void)
{
    CHECK_EQ(sm_metrics_write(NULL), SM_EINVAL);
}

static void test_metrics_without_objects_show_process_totals(void)
{
    int rc = -1;
    char *text = metrics_text(&rc);
    if (!CHECK(text))
        return;
    CHECK_EQ(rc, 0);
    CHECK(has_line(text, "# HELP safemap_pools Live pools."));
    CHECK(has_line(text, "# TYPE safemap_pools gauge"));
    CHECK(has_line(text, "safemap_pools 0"));
    CHECK(has_line(text, "safemap_maps 0"));
    CHECK(has_line(text, "safemap_held_bytes 0"));
    CHECK(has_line(text, "# TYPE safemap_misuse_events_total counter"));
    CHECK(strstr(text, "safemap_misuse_events_total{code=\"SM_EDOUBLE\"} ") != NULL);
    /* No object, no per-object family. */
    CHECK(strstr(text, "safemap_pool_") == NULL);
    CHECK(strstr(text, "safemap_map_") == NULL);
    check_structure(text);
    free(text);
}

static void test_metrics_describe_a_pool_as_its_stats_do(void)
{
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP);
    if (!CHECK(p))
        return;
    void *a[5];
    for (int i = 0; i < 5; i++)
        a[i] = sm_pool_get(p);
    sm_pool_put(p, a[4]);
    sm_pool_put(p, a[3]);
    sm_pool_cycle(p);
    struct sm_pool_stats st;
    CHECK_EQ(sm_pool_stats(p, &st), 0);
    int rc = -1;
    char *text = metrics_text(&rc);
    if (!CHECK(text))
        return;
    CHECK_EQ(rc, 0);
    char l[256];
    pool_labels(l, sizeof l, p, "int64_t[8]");
    CHECK(has_line(text, "# HELP safemap_pool_gets_total Arrays handed out by sm_pool_get."));
    CHECK(has_line(text, "# TYPE safemap_pool_gets_total counter"));
    CHECK(has_line(text, "# TYPE safemap_pool_live_bytes gauge"));
    CHECK_SAMPLE(text, "safemap_pool_gets_total", l, "%" PRIu64, st.gets);
    CHECK_SAMPLE(text, "safemap_pool_puts_total", l, "%" PRIu64, st.puts);
    CHECK_SAMPLE(text, "safemap_pool_news_total", l, "%" PRIu64, st.news);
    CHECK_SAMPLE(text, "safemap_pool_frees_total", l, "%" PRIu64, st.frees);
    CHECK_SAMPLE(text, "safemap_pool_cycles_total", l, "%" PRIu64, st.cycles);
    CHECK_SAMPLE(text, "safemap_pool_live_arrays", l, "%zu", st.live_arrays);
    CHECK_SAMPLE(text, "safemap_pool_idle_arrays", l, "%zu", st.idle_arrays);
    CHECK_SAMPLE(text, "safemap_pool_live_bytes", l, "%zu", st.live_bytes);
    CHECK_SAMPLE(text, "safemap_pool_idle_bytes", l, "%zu", st.idle_bytes);
    CHECK_SAMPLE(text, "safemap_pool_reserved_bytes", l, "%zu", st.reserved_bytes);
    CHECK_SAMPLE(text, "safemap_pool_array_bytes", l, "%zu", sizeof(row8));
    char info[320];
    snprintf(info, sizeof info, "safemap_pool_info{%s,check=\"cheap\"} 1", l);
    CHECK(has_line(text, info));
    CHECK_EQ(st.gets, 5);
    CHECK_EQ(st.live_arrays, 3);
    CHECK_EQ(st.live_bytes, 3 * sizeof(row8));
    CHECK(has_line(text, "safemap_pools 1"));
    check_structure(text);
    free(text);
    for (int i = 0; i < 3; i++)
        sm_pool_put(p, a[i]);
    sm_pool_free(p);
}

static void test_metrics_describe_a_map_as_its_stats_do(void)
{
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP);
    sm_map *in = map_make(SM_INLINE, NULL, 30000);
    sm_map *po = map_make(SM_POOLED, p, 1000);
    if (!CHECK(p && in && po))
        return;
    struct sm_map_stats st;
    CHECK_EQ(sm_map_stats(in, &st), 0);
    int rc = -1;
    char *text = metrics_text(&rc);
    if (!CHECK(text))
        return;
    CHECK_EQ(rc, 0);
    char l[256], lp[256];
    map_labels(l, sizeof l, in, "int64_t[8]", "inline");
    map_labels(lp, sizeof lp, po, "int64_t[8]", "pooled");
    CHECK(has_line(text, "# TYPE safemap_map_entries gauge"));
    CHECK(has_line(text, "# TYPE safemap_map_splits_total counter"));
    CHECK_SAMPLE(text, "safemap_map_entries", l, "%zu", st.len);
    CHECK_SAMPLE(text, "safemap_map_entries", lp, "%d", 1000);
    CHECK_SAMPLE(text, "safemap_map_slots", l, "%zu", st.capacity);
    CHECK_SAMPLE(text, "safemap_map_segments", l, "%zu", st.segments);
    CHECK_SAMPLE(text, "safemap_map_free_segments", l, "%zu", st.free_segments);
    CHECK_SAMPLE(text, "safemap_map_bytes", l, "%zu", st.bytes);
    CHECK_SAMPLE(text, "safemap_map_directory_depth", l, "%u", st.global_depth);
    CHECK_SAMPLE(text, "safemap_map_splits_total", l, "%" PRIu64, st.splits);
    CHECK_SAMPLE(text, "safemap_map_merges_total", l, "%" PRIu64, st.merges);
    CHECK_SAMPLE(text, "safemap_map_rebuilds_total", l, "%" PRIu64, st.rebuilds);
    CHECK_SAMPLE(text, "safemap_map_directory_doublings_total", l, "%" PRIu64, st.dir_doublings);
    CHECK_SAMPLE(text, "safemap_map_directory_halvings_total", l, "%" PRIu64, st.dir_halvings);
    CHECK_SAMPLE(text, "safemap_map_load_ratio", l, "%.17g", st.load);
    CHECK_EQ(st.len, 30000);
    CHECK(st.splits > 0);
    /* The probe distances: one line per bucket, summing to the length. */
    uint64_t sum = 0;
    for (int d = 0; d < SM_PROBE_BUCKETS; d++) {
        char labels[300];
        snprintf(labels, sizeof labels, "%s,distance=\"%d%s\"", l, d,
                 d == SM_PROBE_BUCKETS - 1 ? "+" : "");
        CHECK_SAMPLE(text, "safemap_map_probe_distance_entries", labels, "%" PRIu64, st.probe[d]);
        sum += st.probe[d];
    }
    CHECK_EQ(sum, st.len);
    char info[320];
    snprintf(info, sizeof info, "safemap_map_info{%s,check=\"cheap\"} 1", l);
    CHECK(has_line(text, info));
    CHECK(has_line(text, "safemap_maps 2"));
    check_structure(text);
    free(text);
    sm_map_free(po);
    sm_map_free(in);
    sm_pool_free(p);
}

static void test_metrics_count_misuse_by_code(void)
{
    sm_set_handler(quiet_handler, NULL);
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP);
    if (!CHECK(p))
        return;
    struct sm_stats before;
    sm_stats_read(&before);
    void *a = sm_pool_get(p);
    sm_pool_put(p, a);
    CHECK_EQ(sm_pool_put(p, a), SM_EDOUBLE);
    CHECK_EQ(sm_pool_put(p, a), SM_EDOUBLE);
    int rc = -1;
    char *text = metrics_text(&rc);
    if (!CHECK(text))
        return;
    CHECK_EQ(rc, 0);
    char l[256], labels[300], line[400];
    pool_labels(l, sizeof l, p, "int64_t[8]");
    snprintf(labels, sizeof labels, "%s,code=\"SM_EDOUBLE\"", l);
    CHECK(has_line(text, "# TYPE safemap_pool_misuse_events_total counter"));
    CHECK_SAMPLE(text, "safemap_pool_misuse_events_total", labels, "%d", 2);
    snprintf(labels, sizeof labels, "%s,code=\"SM_EFOREIGN\"", l);
    CHECK_SAMPLE(text, "safemap_pool_misuse_events_total", labels, "%d", 0);
    snprintf(line, sizeof line, "safemap_misuse_events_total{code=\"SM_EDOUBLE\"} %" PRIu64,
             before.misuse[-SM_EDOUBLE] + 2);
    CHECK(has_line(text, line));
    /* Return values are not events: no series for them. */
    CHECK(strstr(text, "SM_ENOENT") == NULL);
    CHECK(strstr(text, "SM_EINVAL") == NULL);
    check_structure(text);
    free(text);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

static void test_metrics_escape_label_values(void)
{
    sm_layout odd = {8, 8, 4, "say \"hi\"\\\nbye"};
    sm_pool *p = pool_make(odd, SM_CHECK_CHEAP);
    if (!CHECK(p))
        return;
    int rc = -1;
    char *text = metrics_text(&rc);
    if (!CHECK(text))
        return;
    CHECK_EQ(rc, 0);
    char l[256];
    pool_labels(l, sizeof l, p, "say \\\"hi\\\"\\\\\\nbye");
    CHECK_SAMPLE(text, "safemap_pool_gets_total", l, "%d", 0);
    check_structure(text);
    free(text);
    sm_pool_free(p);
}

static void test_metrics_list_every_object_in_each_family_once(void)
{
    enum { NPOOLS = 5, NMAPS = 4 };
    sm_pool *pools[NPOOLS];
    sm_map *maps[NMAPS];
    for (int i = 0; i < NPOOLS; i++)
        pools[i] = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP);
    for (int i = 0; i < NMAPS; i++)
        maps[i] = map_make(i % 2 ? SM_POOLED : SM_INLINE, pools[0], 100 * (size_t)i);
    int rc = -1;
    char *text = metrics_text(&rc);
    if (!CHECK(text))
        return;
    CHECK_EQ(rc, 0);
    CHECK_EQ(count_lines_starting(text, "safemap_pool_gets_total{"), NPOOLS);
    CHECK_EQ(count_lines_starting(text, "safemap_map_entries{"), NMAPS);
    CHECK_EQ(count_lines_starting(text, "safemap_map_probe_distance_entries{"),
             NMAPS * SM_PROBE_BUCKETS);
    CHECK_EQ(count_lines_starting(text, "safemap_pool_misuse_events_total{"), NPOOLS * 6);
    CHECK_EQ(count_lines_starting(text, "# TYPE safemap_pool_gets_total "), 1);
    check_structure(text);
    free(text);
    for (int i = 0; i < NMAPS; i++)
        sm_map_free(maps[i]);
    for (int i = 0; i < NPOOLS; i++)
        sm_pool_free(pools[i]);
}

/* Fail the Nth allocation for every N until the call succeeds: each failure
 * is SM_ENOMEM with nothing written and nothing left held. */
static void test_metrics_out_of_memory_writes_nothing(void)
{
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP);
    sm_map *m = map_make(SM_INLINE, NULL, 100);
    if (!CHECK(p && m))
        return;
    size_t held = cnt_bytes();
    int rc = SM_ENOMEM, n;
    for (n = 1; n < 100 && rc == SM_ENOMEM; n++) {
        cnt_fail_nth((size_t)n, 0);
        FILE *f = tmpfile();
        if (!CHECK(f))
            break;
        rc = sm_metrics_write(f);
        cnt_fail_never();
        if (rc == SM_ENOMEM)
            CHECK_EQ(ftell(f), 0);
        fclose(f);
        CHECK_EQ(cnt_bytes(), held);
    }
    CHECK_EQ(rc, 0);
    CHECK(n > 2); /* at least one allocation was failed */
    sm_map_free(m);
    sm_pool_free(p);
}

static void test_metrics_stream_error_is_reported(void)
{
    FILE *f = fopen("/dev/full", "w");
    if (!CHECK(f != NULL))
        return;
    setvbuf(f, NULL, _IONBF, 0); /* every write reaches the device and fails */
    errno = 0;
    CHECK_EQ(sm_metrics_write(f), SM_EIO);
    CHECK_EQ(errno, ENOSPC);
    CHECK(strstr(sm_last_error(), "sm_metrics_write") != NULL);
    fclose(f);
}

/* With stdio's buffering the device's refusal shows only when the buffer
 * is flushed: sm_metrics_write flushes, so the error is still its own. */
static void test_metrics_buffered_stream_error_is_reported(void)
{
    FILE *f = fopen("/dev/full", "w");
    if (!CHECK(f != NULL))
        return;
    CHECK_EQ(sm_metrics_write(f), SM_EIO);
    fclose(f);
}

/* Unnamed objects are labelled by creation number, never by address (which
 * changes from run to run). */
static void test_metrics_label_unnamed_objects_by_creation_number(void)
{
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP);
    sm_pool *q = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP);
    sm_map *m = map_make(SM_INLINE, NULL, 10);
    if (!CHECK(p && q && m))
        return;
    unsigned pseq = made_seq(made_pools, atomic_load(&npools_made), p);
    unsigned mseq = made_seq(made_maps, atomic_load(&nmaps_made), m);
    int rc = -1;
    char *text = metrics_text(&rc);
    if (CHECK(text)) {
        char line[256];
        snprintf(line, sizeof line,
                 "safemap_pool_info{pool=\"pool-%u\",layout=\"int64_t[8]\",check=\"cheap\"} 1",
                 pseq);
        CHECK(has_line(text, line));
        snprintf(line, sizeof line,
                 "safemap_pool_info{pool=\"pool-%u\",layout=\"int64_t[8]\",check=\"cheap\"} 1",
                 pseq + 1);
        CHECK(has_line(text, line));
        snprintf(line, sizeof line,
                 "safemap_map_info{map=\"map-%u\",layout=\"int64_t[8]\",storage=\"inline\","
                 "check=\"cheap\"} 1",
                 mseq);
        CHECK(has_line(text, line));
        CHECK(strstr(text, "\"0x") == NULL);
    }
    free(text);
    sm_map_free(m);
    sm_pool_free(q);
    sm_pool_free(p);
}

/* Pools are safe to use from any thread, so metrics may be taken while
 * other threads create, use and free them (maps are not: sm_map_stats, like
 * any read of a map, must not overlap a mutation of it). */
typedef struct churn_arg {
    atomic_int stop;
    int check;
} churn_arg;

static void *pool_churn(void *arg)
{
    churn_arg *c = arg;
    while (!atomic_load(&c->stop)) {
        sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), c->check);
        if (!p)
            break;
        void *a[16];
        for (int i = 0; i < 16; i++)
            a[i] = sm_pool_get(p);
        for (int i = 0; i < 16; i += 2)
            sm_pool_put(p, a[i]);
        sm_pool_cycle(p);
        for (int i = 1; i < 16; i += 2)
            sm_pool_put(p, a[i]);
        sm_pool_free(p);
    }
    return NULL;
}

static void test_metrics_while_other_threads_create_use_and_free_pools(void)
{
    enum { THREADS = 3 };
    pthread_t t[THREADS];
    churn_arg arg[THREADS];
    for (int i = 0; i < THREADS; i++) {
        atomic_init(&arg[i].stop, 0);
        arg[i].check = i == 0 ? SM_CHECK_FULL : SM_CHECK_CHEAP;
        pthread_create(&t[i], NULL, pool_churn, &arg[i]);
    }
    sm_map *m = map_make(SM_INLINE, NULL, 1000);
    int failures = 0, rounds = tl_under_valgrind ? 5 : 300;
    for (int r = 0; r < rounds; r++) {
        int rc = -1;
        char *text = metrics_text(&rc);
        if (!text || rc != 0)
            failures++;
        else if (r % 50 == 0)
            check_structure(text);
        free(text);
    }
    for (int i = 0; i < THREADS; i++) {
        atomic_store(&arg[i].stop, 1);
        pthread_join(t[i], NULL);
    }
    CHECK_EQ(failures, 0);
    sm_map_free(m);
}

/* A representative exposition for promtool: pools at each check level,
 * one with misuse, inline and pooled maps, an awkward layout name, named
 * and unnamed objects. */
static int write_sample(const char *path)
{
    sm_set_handler(quiet_handler, NULL);
    sm_layout odd = {8, 8, 4, "say \"hi\"\\\nbye"};
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_FULL);
    sm_pool *q = pool_make(odd, SM_CHECK_OFF);
    sm_map *in = map_make(SM_INLINE, NULL, 20000);
    sm_map *po = map_make(SM_POOLED, p, 500);
    if (!p || !q || !in || !po)
        return 2;
    /* Named objects too, one name needing escapes. */
    sm_pool *named = NULL;
    sm_map *nm = NULL;
    sm_pool_opts no = {.layout = SM_LAYOUT(int64_t, 8), .name = "quotes \"eu\"\\1"};
    sm_map_opts mo = {.layout = SM_LAYOUT(int64_t, 8), .name = "orders"};
    sm_cmap *cm = NULL;
    if (sm_pool_new(&named, &no) != 0 || sm_map_new(&nm, &mo) != 0 || sm_cmap_new(&cm, &mo) != 0)
        return 2;
    row8 row = {0};
    for (int64_t k = 0; k < 5000; k++)
        sm_cmap_put(cm, k, row);
    void *a = sm_pool_get(p);
    sm_pool_put(p, a);
    sm_pool_put(p, a); /* SM_EDOUBLE */
    void *b = sm_pool_get(q);
    FILE *f = fopen(path, "w");
    if (!f)
        return 2;
    int rc = sm_metrics_write(f);
    if (fclose(f) != 0 || rc != 0)
        return 1;
    sm_pool_put(q, b);
    sm_cmap_free(cm);
    sm_map_free(nm);
    sm_pool_free(named);
    sm_map_free(po);
    sm_map_free(in);
    sm_pool_free(q);
    sm_pool_free(p);
    return 0;
}

/* A pool given a name is labelled by it (escaped like any label value), so
 * its series keep their identity from run to run and across restarts. */
static void test_metrics_label_named_pools_by_name(void)
{
    sm_pool *p = NULL, *q = NULL;
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 8), .check = SM_CHECK_CHEAP, .name = "quotes"};
    if (!CHECK_EQ(sm_pool_new(&p, &o), 0))
        return;
    made_record(made_pools, &npools_made, p);
    o.name = "say \"hi\"";
    if (!CHECK_EQ(sm_pool_new(&q, &o), 0)) {
        sm_pool_free(p);
        return;
    }
    made_record(made_pools, &npools_made, q);
    int rc = -1;
    char *text = metrics_text(&rc);
    if (CHECK(text)) {
        CHECK_EQ(rc, 0);
        CHECK(has_line(text, "safemap_pool_info{pool=\"quotes\",layout=\"int64_t[8]\","
                             "check=\"cheap\"} 1"));
        CHECK(has_line(text, "safemap_pool_gets_total{pool=\"say \\\"hi\\\"\","
                             "layout=\"int64_t[8]\"} 0"));
        check_structure(text);
    }
    free(text);
    sm_pool_free(q);
    sm_pool_free(p);
}

/* A named map is labelled by its name, an unnamed one by its number. */
static void test_metrics_label_named_maps_by_name(void)
{
    sm_map *m = NULL;
    sm_map_opts o = {.layout = SM_LAYOUT(int64_t, 8), .check = SM_CHECK_CHEAP, .name = "quotes"};
    if (!CHECK_EQ(sm_map_new(&m, &o), 0))
        return;
    made_record(made_maps, &nmaps_made, m);
    int rc = -1;
    char *text = metrics_text(&rc);
    if (CHECK(text)) {
        CHECK_EQ(rc, 0);
        CHECK(has_line(text, "safemap_map_entries{map=\"quotes\",layout=\"int64_t[8]\","
                             "storage=\"inline\"} 0"));
        check_structure(text);
    }
    free(text);
    sm_map_free(m);
}

/* Concurrent maps have their own families, labelled like maps: by name, or
 * by creation number among concurrent maps. */
static void test_metrics_describe_a_concurrent_map_as_its_stats_do(void)
{
    sm_cmap *named = NULL, *plain = NULL;
    sm_map_opts o = {.layout = SM_LAYOUT(int64_t, 8), .check = SM_CHECK_CHEAP, .name = "ticks"};
    if (!CHECK_EQ(sm_cmap_new(&named, &o), 0))
        return;
    o.name = NULL;
    if (!CHECK_EQ(sm_cmap_new(&plain, &o), 0)) {
        sm_cmap_free(named);
        return;
    }
    row8 v = {0};
    for (int64_t k = 0; k < 20000; k++)
        CHECK_EQ(sm_cmap_put(named, k, v), 0);
    struct sm_cmap_stats st;
    CHECK_EQ(sm_cmap_stats(named, &st), 0);
    int rc = -1;
    char *text = metrics_text(&rc);
    if (CHECK(text)) {
        CHECK_EQ(rc, 0);
        const char *l = "cmap=\"ticks\",layout=\"int64_t[8]\",storage=\"inline\"";
        CHECK(has_line(text, "# TYPE safemap_cmap_entries gauge"));
        CHECK(has_line(text, "# TYPE safemap_cmap_splits_total counter"));
        CHECK_SAMPLE(text, "safemap_cmap_entries", l, "%zu", st.len);
        CHECK_SAMPLE(text, "safemap_cmap_segments", l, "%zu", st.segments);
        CHECK_SAMPLE(text, "safemap_cmap_splits_total", l, "%" PRIu64, st.splits);
        CHECK_SAMPLE(text, "safemap_cmap_limbo_bound_bytes", l, "%zu", st.limbo_bound_bytes);
        CHECK_EQ(st.len, 20000);
        CHECK(st.splits > 0);
        char info[256];
        snprintf(info, sizeof info, "safemap_cmap_info{%s,check=\"cheap\"} 1", l);
        CHECK(has_line(text, info));
        /* The unnamed one, by its number among concurrent maps. */
        CHECK(strstr(text, "safemap_cmap_entries{cmap=\"cmap-") != NULL);
        CHECK_EQ(count_lines_starting(text, "safemap_cmap_entries{"), 2);
        CHECK_EQ(count_lines_starting(text, "safemap_cmap_misuse_events_total{"), 2 * 6);
        check_structure(text);
    }
    free(text);
    sm_cmap_free(plain);
    sm_cmap_free(named);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    const char *out = tl_option(argc, argv, "write");
    if (out)
        return write_sample(out);
    cnt_install();
    RUN(test_metrics_null_stream_is_einval);
    RUN(test_metrics_without_objects_show_process_totals);
    RUN(test_metrics_describe_a_pool_as_its_stats_do);
    RUN(test_metrics_describe_a_map_as_its_stats_do);
    RUN(test_metrics_count_misuse_by_code);
    RUN(test_metrics_escape_label_values);
    RUN(test_metrics_list_every_object_in_each_family_once);
    RUN(test_metrics_out_of_memory_writes_nothing);
    RUN(test_metrics_stream_error_is_reported);
    RUN(test_metrics_buffered_stream_error_is_reported);
    RUN(test_metrics_label_unnamed_objects_by_creation_number);
    RUN(test_metrics_label_named_pools_by_name);
    RUN(test_metrics_label_named_maps_by_name);
    RUN(test_metrics_describe_a_concurrent_map_as_its_stats_do);
    RUN(test_metrics_while_other_threads_create_use_and_free_pools);
    if (cnt_bytes() != 0) {
        printf("FAIL: %zu bytes still held\n", cnt_bytes());
        return 1;
    }
    cnt_uninstall();
    return tl_finish();
}
