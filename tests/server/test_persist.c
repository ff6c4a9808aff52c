/*
 * test_persist.c - snapshots and the append-only log (server/persist.c).
 *
 * Every test works in a fresh directory under $TMPDIR, writes through the
 * real command layer (SM.PUTB / SM.DEL via smc_map_exec, so the write
 * observer logs them) or straight into the maps, and checks what a second
 * store loads from the directory against the first, map by map and entry by
 * entry (dump_store renders a store as text for that).  Damage is applied
 * to real files: truncation at every offset, a bit flipped at every byte,
 * layouts that do not match, missing generations, and failures injected
 * into the n-th file operation (smd_persist_fault_at).
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "command.h"
#include "persist.h"
#include "store.h"

/* ---- Helpers ----------------------------------------------------------- */

static char errbuf[1024];

/* A fresh directory per call. */
static const char *new_dir(void)
{
    static char dir[256];
    static int seq;
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/test_persist.%d.%d", t && *t ? t : "/tmp", (int)getpid(), seq++);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return NULL;
    return mkdir(dir, 0755) == 0 ? dir : NULL;
}

static void rm_dir(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("  could not remove %s\n", dir);
}

static char *path_of(const char *dir, const char *name)
{
    static char p[2][512];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A memory file holding p[0..n), at offset 0. */
static int mem_fd(const void *p, size_t n)
{
    int fd = memfd_create("persist", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (n && write(fd, p, n) != (ssize_t)n) {
        close(fd);
        return -1;
    }
    lseek(fd, 0, SEEK_SET);
    return fd;
}

/* Replies: only whether it was an error matters here. */
static int reply_errors;
static void r_simple(void *c, const char *s, size_t n)
{
    (void)c, (void)s, (void)n;
}
static void r_error(void *c, const char *s, size_t n)
{
    (void)c;
    reply_errors++;
    printf("  reply error: %.*s\n", (int)n, s);
}
static void r_integer(void *c, long long v)
{
    (void)c, (void)v;
}
static void r_dbl(void *c, double v)
{
    (void)c, (void)v;
}
static void r_bulk(void *c, const void *p, size_t n)
{
    (void)c, (void)p, (void)n;
}
static void r_null(void *c)
{
    (void)c;
}
static void r_n(void *c, size_t n)
{
    (void)c, (void)n;
}
static const smc_reply_ops quiet_ops = {r_simple, r_error, r_integer, r_dbl, r_bulk,
                                        r_null,   r_n,     r_n,       NULL};

/* SM.PUTB / SM.DEL through the command layer (and so the observer). */
static int exec_put(smc_map *m, int64_t key, const void *value)
{
    char k[32];
    snprintf(k, sizeof k, "%lld", (long long)key);
    const char *name = smc_map_name(m);
    smc_arg argv[4] = {
        {"SM.PUTB", 7}, {name, strlen(name)}, {k, strlen(k)}, {value, smc_map_value_size(m)}};
    smc_reply r = {&quiet_ops, NULL, 0};
    return smc_map_exec(m, 4, argv, &r);
}

static int exec_del(smc_map *m, int64_t key)
{
    char k[32];
    snprintf(k, sizeof k, "%lld", (long long)key);
    const char *name = smc_map_name(m);
    smc_arg argv[3] = {{"SM.DEL", 6}, {name, strlen(name)}, {k, strlen(k)}};
    smc_reply r = {&quiet_ops, NULL, 0};
    return smc_map_exec(m, 3, argv, &r);
}

/* A value for key in m, deterministic. */
static void fill_value(smc_map *m, int64_t key, uint64_t salt, unsigned char *v)
{
    size_t n = smc_map_value_size(m);
    uint64_t x = (uint64_t)key * 0x9E3779B97F4A7C15ull ^ salt;
    for (size_t i = 0; i < n; i++) {
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9ull;
        v[i] = (unsigned char)(x >> 56);
    }
}

/* ---- Store dumps: a text rendering, compared whole -------------------- */

typedef struct dump {
    char *p;
    size_t len, cap;
} dump;

static void dump_add(dump *d, const void *p, size_t n)
{
    if (d->len + n + 1 > d->cap) {
        d->cap = (d->len + n + 1) * 2;
        d->p = realloc(d->p, d->cap);
    }
    memcpy(d->p + d->len, p, n);
    d->len += n;
    d->p[d->len] = 0;
}

typedef struct kv {
    int64_t key;
    uint64_t hash;
} kv;

typedef struct kv_list {
    kv *e;
    size_t n, cap;
    size_t vsize;
} kv_list;

static int kv_collect(int64_t key, const void *value, void *ctx)
{
    kv_list *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->e = realloc(l->e, l->cap * sizeof *l->e);
    }
    l->e[l->n++] = (kv){key, XXH3_64bits(value, l->vsize)};
    return 0;
}

static int kv_cmp(const void *a, const void *b)
{
    int64_t x = ((const kv *)a)->key, y = ((const kv *)b)->key;
    return x < y ? -1 : x > y;
}

static int dump_map(smc_map *m, void *ctx)
{
    dump *d = ctx;
    const smc_spec *s = smc_map_spec(m);
    kv_list l = {.vsize = smc_map_value_size(m)};
    sm_cmap_each(smc_map_cmap(m), kv_collect, &l);
    if (l.n)
        qsort(l.e, l.n, sizeof *l.e, kv_cmp);
    char line[400];
    int n = snprintf(line, sizeof line, "map %s %s[%zu]%s n=%zu\n", smc_map_name(m),
                     smc_type_name(s->type), s->len, s->pooled ? " pooled" : "", l.n);
    dump_add(d, line, (size_t)n);
    /* Entries as one hash line, so dumps stay small for big maps. */
    n = snprintf(line, sizeof line, " entries %016llx\n",
                 (unsigned long long)XXH3_64bits(l.e, l.n * sizeof *l.e));
    dump_add(d, line, (size_t)n);
    free(l.e);
    return 0;
}

static char *dump_store(smd_store *st)
{
    dump d = {0};
    dump_add(&d, "", 0);
    smd_store_each(st, dump_map, &d);
    return d.p;
}

/* Loads dir into a fresh store and compares it with st. */
static int same_after_reload(smd_store *st, const char *dir)
{
    smd_store *st2;
    smd_persist *p2 = NULL;
    if (smd_store_new(&st2) != 0)
        return 0;
    int rc = smd_persist_open(&p2, st2, dir, SMD_FSYNC_NO, 0, errbuf, sizeof errbuf);
    if (rc)
        printf("  reload failed: %s\n", errbuf);
    char *a = dump_store(st), *b = dump_store(st2);
    int same = rc == 0 && strcmp(a, b) == 0;
    if (rc == 0 && !same)
        printf("  differs:\n--- memory\n%s--- reloaded\n%s", a, b);
    free(a);
    free(b);
    smd_persist_close(p2);
    smd_store_free(st2);
    return same;
}

static smc_map *create(smd_persist *p, smd_store *st, const char *name, smc_type t, size_t len,
                       int pooled)
{
    smc_spec s = {t, len, pooled};
    if (smd_persist_create(p, st, name, strlen(name), &s) != 0)
        return NULL;
    return smd_store_get(st, name, strlen(name));
}

/* Puts n keys (random-ish, some negative) through the command layer. */
static int put_keys(smc_map *m, size_t n, uint64_t salt)
{
    unsigned char v[SM_MAX_ARRAY_BYTES / 8];
    for (size_t i = 0; i < n; i++) {
        int64_t key = (int64_t)(i * 7919u) - (int64_t)(n * 3);
        fill_value(m, key, salt, v);
        if (exec_put(m, key, v) != 1)
            return -1;
    }
    return 0;
}

/* Straight into the map (not logged). */
static int put_direct(smc_map *m, size_t n, uint64_t salt)
{
    unsigned char v[SM_MAX_ARRAY_BYTES / 8];
    for (size_t i = 0; i < n; i++) {
        int64_t key = (int64_t)(i * 104729u) ^ (int64_t)salt;
        fill_value(m, key, salt, v);
        if (sm_cmap_put(smc_map_cmap(m), key, v) != 0)
            return -1;
    }
    return 0;
}

static int count_logs(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strncmp(e->d_name, "safemap.aof.", 12) == 0;
    if (d)
        closedir(d);
    return n;
}

/* Warnings captured from the persistence logger. */
static char last_warning[1024];
static int warnings;
static void capture_log(int level, const char *msg, void *ctx)
{
    (void)ctx;
    if (level >= 2) {
        warnings++;
        snprintf(last_warning, sizeof last_warning, "%s", msg);
    }
}

/* ---- Round trips ------------------------------------------------------- */

/* Several maps of every kind, one with 1e5 entries, written straight into
 * the maps, SAVE, and loaded back. */
static void test_snapshot_roundtrip(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    if (!CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), 0))
        return;
    struct {
        const char *name;
        smc_type t;
        size_t len;
        int pooled;
        size_t n;
    } maps[] = {
        {"big", SMC_INT64, 1, 0, tl_scaled(100000)},
        {"vec", SMC_FLOAT, 16, 1, 3000},
        {"i8", SMC_INT8, 3, 0, 500},
        {"u16", SMC_UINT16, 7, 1, 700},
        {"dbl", SMC_DOUBLE, 2, 0, 900},
        {"wide", SMC_UINT8, 70000 > SMC_MAX_LEN ? SMC_MAX_LEN : 70000, 1, 20},
        {"empty", SMC_INT32, 4, 0, 0},
    };
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) {
        smc_map *m = create(p, st, maps[i].name, maps[i].t, maps[i].len, maps[i].pooled);
        if (!CHECK(m))
            return;
        CHECK_EQ(put_direct(m, maps[i].n, i + 1), 0);
        smd_store_put(st, m);
    }
    CHECK_EQ(smd_persist_save(p, errbuf, sizeof errbuf), 0);
    smd_persist_info info;
    smd_persist_info_get(p, &info);
    CHECK(info.last_save > 0 && info.last_save_ok);
    CHECK_EQ(info.log_generation, 2);
    CHECK(same_after_reload(st, dir));
    /* The snapshot alone: the log of generation 2 holds nothing. */
    CHECK_EQ(count_logs(dir), 1);
    CHECK(file_exists(path_of(dir, "safemap.aof.2")));
    smd_persist_close(p);
    smd_store_free(st);
    rm_dir(dir);
}

/* Creates, puts, deletes, drops, a re-create with another layout, through
 * the log only (no save), for each fsync policy. */
static void log_roundtrip(smd_fsync policy)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    if (!CHECK_EQ(smd_persist_open(&p, st, dir, policy, 1, errbuf, sizeof errbuf), 0))
        return;
    smc_map *a = create(p, st, "a", SMC_INT32, 4, 0);
    smc_map *b = create(p, st, "b", SMC_DOUBLE, 3, 1);
    smc_map *c = create(p, st, "c", SMC_UINT8, 1, 0);
    if (!CHECK(a && b && c))
        return;
    /* Fewer with "always": each is an fsync. */
    size_t na = policy == SMD_FSYNC_ALWAYS ? 600 : 2000;
    CHECK_EQ(put_keys(a, na, 1), 0);
    CHECK_EQ(put_keys(b, 500, 2), 0);
    CHECK_EQ(put_keys(c, 100, 3), 0);
    CHECK_EQ(put_keys(a, 300, 4), 0); /* overwrites */
    for (int64_t k = -(int64_t)na * 3; k < 0; k += 7)
        exec_del(a, k);
    smd_store_put(st, c);
    CHECK_EQ(smd_persist_drop(p, st, "c", 1), 0);
    c = create(p, st, "c", SMC_INT64, 2, 1); /* same name, new layout */
    if (!CHECK(c))
        return;
    CHECK_EQ(put_keys(c, 50, 5), 0);
    smd_persist_info info;
    smd_persist_info_get(p, &info);
    CHECK(info.log_records > na + 900);
    CHECK(info.log_bytes > 40 * (na + 900));
    smd_store_put(st, a);
    smd_store_put(st, b);
    smd_store_put(st, c);
    smd_persist_close(p);
    CHECK(same_after_reload(st, dir));
    smd_store_free(st);
    rm_dir(dir);
}

static void test_log_roundtrip_always(void)
{
    log_roundtrip(SMD_FSYNC_ALWAYS);
}
static void test_log_roundtrip_everysec(void)
{
    log_roundtrip(SMD_FSYNC_EVERYSEC);
}
static void test_log_roundtrip_no(void)
{
    log_roundtrip(SMD_FSYNC_NO);
}

/* appendfsync always with several writers: every write is on disk when
 * acknowledged, and one fsync covers many of them. */
enum { GC_THREADS = 4, GC_PUTS = 150 };
static smc_map *gc_map;

static void *gc_writer(void *arg)
{
    int64_t base = (int64_t)(intptr_t)arg * 100000;
    for (int i = 0; i < GC_PUTS; i++) {
        int64_t v = base + i;
        if (exec_put(gc_map, base + i, &v) != 1)
            return (void *)1;
    }
    return NULL;
}

static void test_group_commit(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_ALWAYS, 1, errbuf, sizeof errbuf), 0);
    gc_map = create(p, st, "g", SMC_INT64, 1, 0);
    if (!CHECK(gc_map))
        return;
    pthread_t t[GC_THREADS];
    for (int i = 0; i < GC_THREADS; i++)
        pthread_create(&t[i], NULL, gc_writer, (void *)(intptr_t)i);
    int failed = 0;
    for (int i = 0; i < GC_THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        failed += r != NULL;
    }
    CHECK_EQ(failed, 0);
    smd_persist_info info;
    smd_persist_info_get(p, &info);
    CHECK_EQ(info.log_records, 1 + GC_THREADS * GC_PUTS);
    CHECK_EQ(info.log_pending, 0);
    printf("  %d writes, %llu fsyncs\n", GC_THREADS * GC_PUTS, (unsigned long long)info.log_fsyncs);
    CHECK(info.log_fsyncs < (uint64_t)GC_THREADS * GC_PUTS);
    smd_store_put(st, gc_map);
    smd_persist_close(p);
    CHECK(same_after_reload(st, dir));
    smd_store_free(st);
    rm_dir(dir);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* appendfsync everysec fsyncs at most about once a second however many
 * writes arrive (it used to be woken, and fsync, by every write). */
static void test_everysec_fsync_rate(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    if (!CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_EVERYSEC, 1, errbuf, sizeof errbuf), 0))
        return;
    smc_map *a = create(p, st, "a", SMC_INT64, 8, 0);
    if (!CHECK(a))
        return;
    smd_persist_info i0, i1;
    smd_persist_info_get(p, &i0);
    double t0 = now_s(), t;
    unsigned char v[64] = {1};
    int64_t n = 0, bad = 0;
    while ((t = now_s()) - t0 < 1.2 && n < 5000000) {
        bad += exec_put(a, n % 50000, v) != 1;
        n++;
    }
    smd_persist_info_get(p, &i1);
    uint64_t fs = i1.log_fsyncs - i0.log_fsyncs;
    printf("  %lld writes in %.2f s: %llu fsyncs, %llu write() calls\n", (long long)n, t - t0,
           (unsigned long long)fs, (unsigned long long)(i1.log_writes - i0.log_writes));
    CHECK_EQ(bad, 0);
    CHECK(n > 1000);
    CHECK(fs <= 3);
    /* Unbatched writers each write() their record. */
    CHECK(i1.log_writes - i0.log_writes >= (uint64_t)n / 2);
    smd_store_put(st, a);
    smd_persist_close(p);
    CHECK(same_after_reload(st, dir));
    smd_store_free(st);
    rm_dir(dir);
}

/* A batching thread's writes are queued and reach the log with one write()
 * (and with "always" one fsync) at smd_persist_flush_thread; a create in
 * the middle flushes them too; the reload has everything. */
static void batch_policy(smd_fsync policy)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    if (!CHECK_EQ(smd_persist_open(&p, st, dir, policy, 1, errbuf, sizeof errbuf), 0))
        return;
    smc_map *a = create(p, st, "a", SMC_INT32, 4, 0);
    if (!CHECK(a))
        return;
    smd_persist_batch_thread(p);
    smd_persist_info i0, i1, i2;
    for (int round = 0; round < 3; round++) {
        smd_persist_info_get(p, &i0);
        CHECK_EQ(put_keys(a, 200, (uint64_t)round), 0);
        CHECK_EQ(exec_del(a, -600), 1); /* put_keys' first key */
        smd_persist_info_get(p, &i1);
        CHECK_EQ(i1.log_records - i0.log_records, 201);
        CHECK_EQ(i1.log_writes, i0.log_writes); /* queued, not written */
        CHECK_EQ(smd_persist_flush_thread(p), 0);
        CHECK_EQ(smd_persist_flush_thread(p), 0); /* nothing more */
        smd_persist_info_get(p, &i2);
        CHECK_EQ(i2.log_writes - i0.log_writes, 1);
        if (policy == SMD_FSYNC_ALWAYS) {
            CHECK_EQ(i2.log_fsyncs - i0.log_fsyncs, 1);
            CHECK_EQ(i2.log_pending, 0);
        }
    }
    /* A create waits for its record, and so writes the queued puts too. */
    CHECK_EQ(put_keys(a, 50, 9), 0);
    smc_map *b = create(p, st, "b", SMC_UINT8, 1, 0);
    CHECK(b);
    smd_persist_info_get(p, &i1);
    CHECK_EQ(i1.log_writes - i2.log_writes, 1);
    CHECK_EQ(smd_persist_flush_thread(p), 0);
    smd_persist_info_get(p, &i2);
    CHECK_EQ(i2.log_writes, i1.log_writes);
    smd_persist_batch_thread(NULL);
    if (b)
        smd_store_put(st, b);
    smd_store_put(st, a);
    smd_persist_close(p);
    CHECK(same_after_reload(st, dir));
    smd_store_free(st);
    rm_dir(dir);
}

static void test_batch_always(void)
{
    batch_policy(SMD_FSYNC_ALWAYS);
}
static void test_batch_everysec(void)
{
    batch_policy(SMD_FSYNC_EVERYSEC);
}

/* The log's write fails at a batch's flush: the flush reports it (the
 * batch must not be acknowledged), and keeps reporting it after a SAVE
 * started a fresh log; records written before the failure stay good. */
static void test_batch_write_fault(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    smd_persist_set_logger(capture_log, NULL);
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_EVERYSEC, 1, errbuf, sizeof errbuf), 0);
    smc_map *a = create(p, st, "a", SMC_INT64, 1, 0);
    if (!CHECK(a))
        return;
    smd_persist_batch_thread(p);
    CHECK_EQ(put_keys(a, 10, 1), 0);
    CHECK_EQ(smd_persist_flush_thread(p), 0);
    CHECK_EQ(put_keys(a, 10, 2), 0); /* queued; the write fails */
    smd_persist_fault_at = 1;
    CHECK_EQ(smd_persist_flush_thread(p), SM_EIO);
    smd_persist_fault_at = 0;
    CHECK_EQ(smd_persist_log_status(p), SM_EIO);
    int64_t v = 1;
    CHECK(exec_put(a, 5, &v) < 0); /* refused while the log is broken */
    CHECK_EQ(smd_persist_save(p, errbuf, sizeof errbuf), 0);
    CHECK_EQ(smd_persist_flush_thread(p), 0);
    CHECK_EQ(put_keys(a, 10, 3), 0);
    CHECK_EQ(smd_persist_flush_thread(p), 0);
    CHECK(same_after_reload(st, dir));
    /* Lost at a failure (the write of a create, which carries the queued
     * puts), then a SAVE starts a new log before the batch's flush: the
     * flush must still report the loss. */
    CHECK_EQ(put_keys(a, 10, 4), 0);
    smd_persist_fault_at = 1;
    smc_spec s = {SMC_INT8, 1, 0};
    CHECK_EQ(smd_persist_create(p, st, "x", 1, &s), SM_EIO);
    smd_persist_fault_at = 0;
    CHECK_EQ(smd_persist_save(p, errbuf, sizeof errbuf), 0);
    CHECK_EQ(smd_persist_log_status(p), 0);
    CHECK_EQ(smd_persist_flush_thread(p), SM_EIO);
    CHECK_EQ(put_keys(a, 10, 5), 0);
    CHECK_EQ(smd_persist_flush_thread(p), 0);
    CHECK(same_after_reload(st, dir));
    smd_persist_set_logger(NULL, NULL);
    smd_persist_batch_thread(NULL);
    smd_store_put(st, a);
    smd_persist_close(p);
    smd_store_free(st);
    rm_dir(dir);
}

/* Writes, SAVE, more writes, BGSAVE, more writes: the reload has all, and
 * the older logs are gone after each save. */
static void test_save_then_log(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    if (!CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_EVERYSEC, 1, errbuf, sizeof errbuf), 0))
        return;
    smc_map *a = create(p, st, "a", SMC_UINT64, 2, 0);
    if (!CHECK(a))
        return;
    CHECK_EQ(put_keys(a, 1000, 1), 0);
    CHECK_EQ(smd_persist_save(p, errbuf, sizeof errbuf), 0);
    CHECK_EQ(count_logs(dir), 1);
    CHECK_EQ(put_keys(a, 200, 2), 0);
    CHECK(same_after_reload(st, dir));
    CHECK_EQ(smd_persist_bgsave(p, errbuf, sizeof errbuf), 0);
    CHECK_EQ(smd_persist_bgsave(p, errbuf, sizeof errbuf), SM_EBUSY);
    CHECK_EQ(put_keys(a, 100, 3), 0);
    smd_persist_info info;
    for (int i = 0; i < 3000; i++) {
        smd_persist_tick(p);
        smd_persist_info_get(p, &info);
        if (!info.bgsave_in_progress)
            break;
        usleep(10000);
    }
    CHECK(!info.bgsave_in_progress && info.last_save_ok);
    CHECK_EQ(info.log_generation, 3);
    CHECK_EQ(count_logs(dir), 1);
    CHECK(file_exists(path_of(dir, "safemap.aof.3")));
    CHECK_EQ(put_keys(a, 50, 4), 0);
    CHECK(same_after_reload(st, dir));
    smd_store_put(st, a);
    smd_persist_close(p);
    /* Reopened with the log on, it appends to generation 3. */
    smd_store *st2;
    CHECK_EQ(smd_store_new(&st2), 0);
    CHECK_EQ(smd_persist_open(&p, st2, dir, SMD_FSYNC_ALWAYS, 1, errbuf, sizeof errbuf), 0);
    smc_map *a2 = smd_store_get(st2, "a", 1);
    if (CHECK(a2)) {
        CHECK_EQ(put_keys(a2, 10, 5), 0);
        smd_store_put(st2, a2);
    }
    smd_persist_close(p);
    CHECK_EQ(count_logs(dir), 1);
    CHECK(same_after_reload(st2, dir));
    smd_store_free(st2);
    smd_store_free(st);
    rm_dir(dir);
}

static void small_state(smd_persist *p, smd_store *st);

/* SAVE while a BGSAVE runs kills the child and saves; close with a child
 * running kills it too; nothing is lost either way. */
static void test_save_during_bgsave(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), 0);
    smc_map *a = create(p, st, "a", SMC_INT64, 8, 1);
    if (!CHECK(a))
        return;
    CHECK_EQ(put_keys(a, 20000, 1), 0);
    CHECK_EQ(smd_persist_bgsave(p, errbuf, sizeof errbuf), 0);
    CHECK_EQ(smd_persist_save(p, errbuf, sizeof errbuf), 0);
    smd_persist_info info;
    smd_persist_info_get(p, &info);
    CHECK(!info.bgsave_in_progress && info.last_save_ok);
    CHECK_EQ(count_logs(dir), 1);
    CHECK_EQ(put_keys(a, 100, 2), 0);
    CHECK_EQ(smd_persist_bgsave(p, errbuf, sizeof errbuf), 0);
    smd_store_put(st, a);
    smd_persist_close(p);
    CHECK(same_after_reload(st, dir));
    smd_store_free(st);
    rm_dir(dir);
}

/* Without the log: snapshots only; logs of an earlier run are loaded and
 * the next save retires them. */
static void test_without_log(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_ALWAYS, 1, errbuf, sizeof errbuf), 0);
    small_state(p, st);
    smd_persist_close(p);
    smd_store *st2;
    CHECK_EQ(smd_store_new(&st2), 0);
    CHECK_EQ(smd_persist_open(&p, st2, dir, SMD_FSYNC_ALWAYS, 0, errbuf, sizeof errbuf), 0);
    smc_map *a = smd_store_get(st2, "a", 1);
    if (CHECK(a)) {
        CHECK_EQ(put_keys(a, 30, 9), 0);
        smd_store_put(st2, a);
    }
    smd_persist_info info;
    smd_persist_info_get(p, &info);
    CHECK_EQ(info.log_records, 0);
    CHECK_EQ(count_logs(dir), 1); /* loaded, not yet retired */
    CHECK_EQ(smd_persist_save(p, errbuf, sizeof errbuf), 0);
    CHECK_EQ(count_logs(dir), 0);
    smd_persist_close(p);
    CHECK(same_after_reload(st2, dir));
    smd_store_free(st2);
    smd_store_free(st);
    rm_dir(dir);
}

/* A write in flight on a map being dropped (the command took its
 * reference first) is not logged after the drop: the log replays. */
static void test_write_after_drop(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    if (!CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), 0))
        return;
    smc_map *x = create(p, st, "x", SMC_INT16, 2, 0);
    if (!CHECK(x))
        return;
    CHECK_EQ(put_keys(x, 10, 1), 0);
    CHECK_EQ(smd_persist_drop(p, st, "x", 1), 0);
    CHECK_EQ(put_keys(x, 10, 2), 0); /* the held reference */
    smc_map *y = create(p, st, "x", SMC_INT16, 2, 0);
    CHECK(y);
    CHECK_EQ(put_keys(x, 3, 3), 0);
    smd_store_put(st, x);
    if (y)
        smd_store_put(st, y);
    CHECK_EQ(smd_persist_drop(p, st, "nope", 4), SM_ENOENT);
    smc_spec s = {SMC_INT8, 1, 0};
    CHECK_EQ(smd_persist_create(p, st, "x", 1, &s), SMD_EEXISTS);
    smd_persist_close(p);
    CHECK(same_after_reload(st, dir));
    smd_store_free(st);
    rm_dir(dir);
}

/* ---- Damage: a small snapshot and a small log --------------------------- */

/* A small directory: maps of two layouts, a pooled one, an empty one. */
static void small_state(smd_persist *p, smd_store *st)
{
    smc_map *a = create(p, st, "a", SMC_INT32, 2, 0);
    smc_map *b = create(p, st, "bb", SMC_DOUBLE, 1, 1);
    smc_map *e = create(p, st, "e", SMC_UINT8, 1, 0);
    if (a) {
        put_keys(a, 3, 1);
        exec_del(a, -9);
        smd_store_put(st, a);
    }
    if (b) {
        put_keys(b, 2, 2);
        smd_store_put(st, b);
    }
    if (e)
        smd_store_put(st, e);
}

/* Loads a snapshot image; returns the code, *dumped the loaded store. */
static int load_snap_image(const char *img, size_t n, char **dumped)
{
    smd_store *st;
    if (smd_store_new(&st) != 0)
        return -1000;
    int fd = mem_fd(img, n);
    uint64_t gen = 0;
    int rc = smd_snapshot_load_fd(st, fd, "img", &gen, errbuf, sizeof errbuf);
    close(fd);
    if (dumped)
        *dumped = dump_store(st);
    smd_store_free(st);
    return rc;
}

static int load_log_image(const char *img, size_t n, int allow_torn, uint64_t *end, int *torn,
                          char **dumped)
{
    smd_store *st;
    if (smd_store_new(&st) != 0)
        return -1000;
    int fd = mem_fd(img, n);
    int rc = smd_log_load_fd(st, fd, "img", 0, allow_torn, end, torn, errbuf, sizeof errbuf);
    close(fd);
    if (dumped)
        *dumped = dump_store(st);
    smd_store_free(st);
    return rc;
}

static char *small_snapshot(size_t *len, char **dumped)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!dir || smd_store_new(&st) != 0)
        return NULL;
    if (smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 0, errbuf, sizeof errbuf) != 0)
        return NULL;
    small_state(p, st);
    char *img = NULL;
    if (smd_persist_save(p, errbuf, sizeof errbuf) == 0)
        img = read_file(path_of(dir, "safemap.snap"), len);
    *dumped = dump_store(st);
    smd_persist_close(p);
    smd_store_free(st);
    rm_dir(dir);
    return img;
}

static void test_snapshot_truncated_everywhere(void)
{
    size_t n;
    char *want, *img = small_snapshot(&n, &want);
    if (!CHECK(img))
        return;
    char *got = NULL;
    CHECK_EQ(load_snap_image(img, n, &got), 0);
    CHECK(strcmp(got, want) == 0);
    free(got);
    size_t rejected = 0, named = 0;
    for (size_t len = 0; len < n; len++) {
        int rc = load_snap_image(img, len, NULL);
        rejected += rc == SM_ECORRUPT;
        named += strstr(errbuf, "img: offset ") != NULL && strstr(errbuf, "truncated") != NULL;
        if (rc != SM_ECORRUPT)
            printf("  length %zu of %zu: rc %d (%s)\n", len, n, rc, errbuf);
    }
    CHECK_EQ(rejected, n);
    CHECK_EQ(named, n);
    /* And one more byte at the end. */
    char *longer = malloc(n + 1);
    memcpy(longer, img, n);
    longer[n] = 0;
    CHECK_EQ(load_snap_image(longer, n + 1, NULL), SM_ECORRUPT);
    CHECK(strstr(errbuf, "after the trailer"));
    printf("  %zu truncations of a %zu-byte snapshot rejected\n", rejected, n);
    free(longer);
    free(img);
    free(want);
}

static void test_snapshot_bitflip_everywhere(void)
{
    size_t n;
    char *want, *img = small_snapshot(&n, &want);
    if (!CHECK(img))
        return;
    size_t rejected = 0;
    for (size_t i = 0; i < n; i++)
        for (int bit = 0; bit < 8; bit++) {
            img[i] ^= (char)(1 << bit);
            int rc = load_snap_image(img, n, NULL);
            img[i] ^= (char)(1 << bit);
            rejected += rc == SM_ECORRUPT && strstr(errbuf, "img: offset ");
            if (rc != SM_ECORRUPT)
                printf("  byte %zu bit %d: rc %d\n", i, bit, rc);
        }
    CHECK_EQ(rejected, 8 * n);
    printf("  %zu bit flips of a %zu-byte snapshot rejected\n", rejected, n);
    free(img);
    free(want);
}

/* A small log, and the state and file size after each record. */
#define SMALL_OPS 9
static char *small_log(size_t *len, uint64_t *bound, char **states)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!dir || smd_store_new(&st) != 0)
        return NULL;
    if (smd_persist_open(&p, st, dir, SMD_FSYNC_ALWAYS, 1, errbuf, sizeof errbuf) != 0)
        return NULL;
    smd_persist_info info;
    int k = 0;
    smd_persist_info_get(p, &info);
    bound[k] = info.log_bytes;
    states[k++] = dump_store(st);
    smc_spec sa = {SMC_INT32, 2, 0}, sb = {SMC_DOUBLE, 1, 1};
    unsigned char v[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    for (int op = 0; op < SMALL_OPS - 1; op++) {
        smc_map *a = smd_store_get(st, "a", 1);
        switch (op) {
        case 0:
            smd_persist_create(p, st, "a", 1, &sa);
            break;
        case 1:
        case 2:
        case 3:
            exec_put(a, op * 10 - 15, v + op);
            break;
        case 4:
            exec_del(a, 15);
            break;
        case 5:
            smd_persist_create(p, st, "bb", 2, &sb);
            break;
        case 6:
            smd_persist_drop(p, st, "a", 1);
            break;
        case 7: {
            smc_map *b = smd_store_get(st, "bb", 2);
            exec_put(b, -1, v);
            smd_store_put(st, b);
            break;
        }
        }
        if (a)
            smd_store_put(st, a);
        smd_persist_info_get(p, &info);
        bound[k] = info.log_bytes;
        states[k++] = dump_store(st);
    }
    char *img = read_file(path_of(dir, "safemap.aof.1"), len);
    smd_persist_close(p);
    smd_store_free(st);
    rm_dir(dir);
    return img;
}

static void test_log_truncated_everywhere(void)
{
    size_t n;
    uint64_t bound[SMALL_OPS];
    char *states[SMALL_OPS];
    char *img = small_log(&n, bound, states);
    if (!CHECK(img))
        return;
    CHECK_EQ(bound[SMALL_OPS - 1], n);
    CHECK_EQ(bound[0], 32);
    size_t ok = 0, strict_ok = 0;
    for (size_t len = 0; len <= n; len++) {
        int k = -1;
        for (int i = 0; i < SMALL_OPS; i++)
            if (bound[i] <= len)
                k = i;
        uint64_t end = 0;
        int torn = -1;
        char *got = NULL;
        int rc = load_log_image(img, len, 1, &end, &torn, &got);
        if (k < 0) {
            ok += rc == SM_ECORRUPT && strstr(errbuf, "header");
        } else {
            int good = rc == 0 && end == bound[k] && torn == (bound[k] != len) &&
                       strcmp(got, states[k]) == 0;
            if (!good)
                printf("  length %zu: rc %d end %llu torn %d (%s)\n", len, rc,
                       (unsigned long long)end, torn, rc ? errbuf : "");
            ok += good;
        }
        free(got);
        /* Without allow_torn only whole records load. */
        rc = load_log_image(img, len, 0, &end, &torn, NULL);
        strict_ok += (rc == 0) == (k >= 0 && bound[k] == len);
    }
    CHECK_EQ(ok, n + 1);
    CHECK_EQ(strict_ok, n + 1);
    printf("  %zu truncations of a %zu-byte log: each loaded to its last whole record\n", ok, n);
    for (int i = 0; i < SMALL_OPS; i++)
        free(states[i]);
    free(img);
}

static void test_log_bitflip_everywhere(void)
{
    size_t n;
    uint64_t bound[SMALL_OPS];
    char *states[SMALL_OPS];
    char *img = small_log(&n, bound, states);
    if (!CHECK(img))
        return;
    size_t rejected = 0;
    for (size_t i = 0; i < n; i++)
        for (int bit = 0; bit < 8; bit++) {
            img[i] ^= (char)(1 << bit);
            uint64_t end;
            int torn;
            int rc = load_log_image(img, n, 1, &end, &torn, NULL);
            img[i] ^= (char)(1 << bit);
            rejected += rc == SM_ECORRUPT && strstr(errbuf, "img: offset ");
            if (rc != SM_ECORRUPT)
                printf("  byte %zu bit %d: rc %d\n", i, bit, rc);
        }
    CHECK_EQ(rejected, 8 * n);
    printf("  %zu bit flips of a %zu-byte log rejected\n", rejected, n);
    for (int i = 0; i < SMALL_OPS; i++)
        free(states[i]);
    free(img);
}

/* A torn last log through smd_persist_open: cut to its last whole record
 * on disk, with a warning naming the file and offset. */
static void test_torn_log_truncated_on_open(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_ALWAYS, 1, errbuf, sizeof errbuf), 0);
    small_state(p, st);
    smd_persist_close(p);
    size_t n;
    char *img = read_file(path_of(dir, "safemap.aof.1"), &n);
    if (!CHECK(img))
        return;
    /* The first 20 bytes of a record again: cut short, as a crash
     * mid-append leaves it. */
    int fd = open(path_of(dir, "safemap.aof.1"), O_WRONLY | O_APPEND);
    CHECK_EQ(write(fd, img + 32, 20), 20);
    close(fd);
    smd_persist_set_logger(capture_log, NULL);
    warnings = 0;
    smd_store *st2;
    CHECK_EQ(smd_store_new(&st2), 0);
    CHECK_EQ(smd_persist_open(&p, st2, dir, SMD_FSYNC_ALWAYS, 1, errbuf, sizeof errbuf), 0);
    CHECK_EQ(warnings, 1);
    CHECK(strstr(last_warning, "safemap.aof.1: offset ") && strstr(last_warning, "cut short"));
    smd_persist_close(p);
    struct stat sb;
    CHECK(stat(path_of(dir, "safemap.aof.1"), &sb) == 0 && (size_t)sb.st_size == n);
    /* A zero-filled tail (the file grew, its data never reached the disk). */
    char zeros[100] = {0};
    fd = open(path_of(dir, "safemap.aof.1"), O_WRONLY | O_APPEND);
    CHECK_EQ(write(fd, zeros, sizeof zeros), (ssize_t)sizeof zeros);
    close(fd);
    smd_store_free(st2);
    CHECK_EQ(smd_store_new(&st2), 0);
    warnings = 0;
    CHECK_EQ(smd_persist_open(&p, st2, dir, SMD_FSYNC_ALWAYS, 1, errbuf, sizeof errbuf), 0);
    CHECK_EQ(warnings, 1);
    smd_persist_close(p);
    CHECK(stat(path_of(dir, "safemap.aof.1"), &sb) == 0 && (size_t)sb.st_size == n);
    smd_persist_set_logger(NULL, NULL);
    CHECK(same_after_reload(st, dir));
    CHECK(same_after_reload(st2, dir));
    free(img);
    smd_store_free(st2);
    smd_store_free(st);
    rm_dir(dir);
}

/* ---- Layouts and generations -------------------------------------------- */

/* A log record encoded independently of persist.c (docs/persistence.md). */
static size_t enc_record(char *out, unsigned kind, const void *body, uint32_t len)
{
    memcpy(out, &len, 4);
    out[4] = (char)kind;
    out[5] = out[6] = out[7] = 0;
    uint32_t hc = (uint32_t)XXH3_64bits(out, 8);
    memcpy(out + 8, &hc, 4);
    memcpy(out + 12, body, len);
    uint64_t sum = XXH3_64bits(out, 12 + (size_t)len);
    memcpy(out + 12 + len, &sum, 8);
    return 20 + (size_t)len;
}

static size_t enc_log_header(char *out, uint64_t gen)
{
    uint32_t ver = 1, bom = 0x01020304;
    memcpy(out, "SMAPAOF1", 8);
    memcpy(out + 8, &ver, 4);
    memcpy(out + 12, &bom, 4);
    memcpy(out + 16, &gen, 8);
    uint64_t h = XXH3_64bits(out, 24);
    memcpy(out + 24, &h, 8);
    return 32;
}

static size_t enc_put(char *out, const char *name, int64_t key, const void *v, uint32_t vlen)
{
    char body[512];
    uint16_t nl = (uint16_t)strlen(name), z = 0;
    memcpy(body, &nl, 2);
    memcpy(body + 2, &z, 2);
    memcpy(body + 4, &vlen, 4);
    memcpy(body + 8, &key, 8);
    memcpy(body + 16, name, nl);
    memcpy(body + 16 + nl, v, vlen);
    return enc_record(out, 3, body, 16u + nl + vlen);
}

static size_t enc_create(char *out, const char *name, unsigned type, unsigned pooled, uint32_t len)
{
    char body[256];
    uint16_t nl = (uint16_t)strlen(name);
    memcpy(body, &nl, 2);
    body[2] = (char)type;
    body[3] = (char)pooled;
    memcpy(body + 4, &len, 4);
    memcpy(body + 8, name, nl);
    return enc_record(out, 1, body, 8u + nl);
}

/* A snapshot with map "a" int32[4]; then a log whose put into "a" carries
 * 8 bytes: rejected as a layout mismatch naming file, offset and sizes. */
static void test_layout_mismatch(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), 0);
    smc_map *a = create(p, st, "a", SMC_INT32, 4, 0);
    if (!CHECK(a))
        return;
    put_keys(a, 5, 1);
    smd_store_put(st, a);
    CHECK_EQ(smd_persist_save(p, errbuf, sizeof errbuf), 0);
    smd_persist_close(p);
    smd_store_free(st);

    char img[1024];
    size_t n = enc_log_header(img, 2);
    uint64_t v = 42;
    n += enc_put(img + n, "a", 7, &v, 8);
    CHECK_EQ(write_file(path_of(dir, "safemap.aof.2"), img, n), 0);
    CHECK_EQ(smd_store_new(&st), 0);
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), SM_ECORRUPT);
    CHECK(strstr(errbuf, "safemap.aof.2: offset 32: layout mismatch: map 'a' has 16-byte values"));
    printf("  %s\n", errbuf);
    smd_store_free(st);

    /* The right size loads. */
    char v16[16] = {1};
    n = enc_log_header(img, 2);
    n += enc_put(img + n, "a", 7, v16, 16);
    /* A create of a map the snapshot has: rejected. */
    size_t n2 = n + enc_create(img + n, "a", SMC_INT32, 0, 4);
    CHECK_EQ(write_file(path_of(dir, "safemap.aof.2"), img, n), 0);
    CHECK_EQ(smd_store_new(&st), 0);
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), 0);
    smd_persist_close(p);
    smd_store_free(st);
    CHECK_EQ(write_file(path_of(dir, "safemap.aof.2"), img, n2), 0);
    CHECK_EQ(smd_store_new(&st), 0);
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), SM_ECORRUPT);
    CHECK(strstr(errbuf, "created twice"));
    smd_store_free(st);

    /* A put into a map nobody created; a bad type code. */
    n = enc_log_header(img, 2);
    n += enc_put(img + n, "zz", 7, v16, 16);
    CHECK_EQ(write_file(path_of(dir, "safemap.aof.2"), img, n), 0);
    CHECK_EQ(smd_store_new(&st), 0);
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), SM_ECORRUPT);
    CHECK(strstr(errbuf, "'zz', which does not exist"));
    smd_store_free(st);
    n = enc_log_header(img, 2);
    n += enc_create(img + n, "t", 10, 0, 4);
    CHECK_EQ(write_file(path_of(dir, "safemap.aof.2"), img, n), 0);
    CHECK_EQ(smd_store_new(&st), 0);
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), SM_ECORRUPT);
    CHECK(strstr(errbuf, "unknown element type"));
    smd_store_free(st);
    /* A log whose header names another generation than its file name. */
    n = enc_log_header(img, 3);
    CHECK_EQ(write_file(path_of(dir, "safemap.aof.2"), img, n), 0);
    CHECK_EQ(smd_store_new(&st), 0);
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), SM_ECORRUPT);
    CHECK(strstr(errbuf, "generation 3 in the header, 2 in the name"));
    smd_store_free(st);
    rm_dir(dir);
}

/* Re-seals a snapshot image after an edit: every block checksum and the
 * trailer's whole-file hash recomputed, so only the edit's meaning is
 * left for the loader to reject. */
static void reseal(char *img, size_t n)
{
    uint64_t h = XXH3_64bits(img, 40);
    memcpy(img + 40, &h, 8);
    XXH3_state_t *whole = XXH3_createState();
    XXH3_64bits_reset(whole);
    XXH3_64bits_update(whole, img, 48);
    for (size_t off = 48; off + 16 <= n;) {
        uint32_t kind, len;
        memcpy(&kind, img + off, 4);
        memcpy(&len, img + off + 4, 4);
        if (off + 16 + len > n)
            break;
        if (kind == 4) {
            uint64_t d = XXH3_64bits_digest(whole);
            memcpy(img + off + 8 + 16, &d, 8);
        }
        uint64_t sum = XXH3_64bits(img + off, 8 + (size_t)len);
        memcpy(img + off + 8 + len, &sum, 8);
        XXH3_64bits_update(whole, img + off, 16 + (size_t)len);
        off += 16 + len;
    }
    XXH3_freeState(whole);
}

/* Offset of the first block of a kind. */
static size_t find_block(const char *img, size_t n, uint32_t want)
{
    for (size_t off = 48; off + 16 <= n;) {
        uint32_t kind, len;
        memcpy(&kind, img + off, 4);
        memcpy(&len, img + off + 4, 4);
        if (kind == want)
            return off;
        off += 16 + len;
    }
    return 0;
}

static void expect_semantic(const char *img0, size_t n, size_t at, const void *bytes, size_t nbytes,
                            const char *msg)
{
    char *img = malloc(n);
    memcpy(img, img0, n);
    memcpy(img + at, bytes, nbytes);
    reseal(img, n);
    int rc = load_snap_image(img, n, NULL);
    if (!CHECK_EQ(rc, SM_ECORRUPT) || !CHECK(strstr(errbuf, msg)))
        printf("  wanted \"%s\", got \"%s\"\n", msg, errbuf);
    free(img);
}

static void test_snapshot_semantic_errors(void)
{
    size_t n;
    char *want, *img = small_snapshot(&n, &want);
    if (!CHECK(img))
        return;
    /* Resealing an unedited image changes nothing. */
    char *copy = malloc(n);
    memcpy(copy, img, n);
    reseal(copy, n);
    CHECK(memcmp(copy, img, n) == 0);
    free(copy);
    size_t map = find_block(img, n, 1), ent = find_block(img, n, 2), end = find_block(img, n, 3);
    if (!CHECK(map && ent && end))
        return;
    uint32_t v32 = 12;
    unsigned char b = 10;
    uint64_t v64 = 99;
    int64_t k;
    expect_semantic(img, n, map + 8 + 8, &v32, 4, "layout mismatch: map 'a' is int32[2]");
    expect_semantic(img, n, map + 8, &b, 1, "unknown element type code");
    b = 2;
    expect_semantic(img, n, map + 8 + 1, &b, 1, "storage flag");
    v32 = 0;
    expect_semantic(img, n, map + 8 + 4, &v32, 4, "element count out of range");
    b = ' ';
    expect_semantic(img, n, map + 8 + 24, &b, 1, "bad map name");
    expect_semantic(img, n, end + 8, &v64, 8, "should have 99 entries");
    memcpy(&k, img + ent + 8 + 8, 8); /* the first key, written over the second */
    expect_semantic(img, n, ent + 8 + 8 + 16, &k, 8, "duplicate keys");
    v32 = 2;
    expect_semantic(img, n, 32, &v32, 4, "more maps than the header's 2");
    v32 = 4;
    expect_semantic(img, n, 32, &v32, 4, "map count: header 4, trailer 3, blocks 3");
    v32 = 2;
    expect_semantic(img, n, 8, &v32, 4, "format version 2, this build reads 1");
    v32 = 0x04030201;
    expect_semantic(img, n, 12, &v32, 4, "other byte order");
    expect_semantic(img, n, 0, "X", 1, "not a safemap snapshot");
    free(img);
    free(want);
}

static void test_generation_gap(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), 0);
    small_state(p, st);
    /* Generation 3 present, 2 missing. */
    smd_persist_close(p);
    char img[64];
    size_t n = enc_log_header(img, 3);
    CHECK_EQ(write_file(path_of(dir, "safemap.aof.3"), img, n), 0);
    smd_store *st2;
    CHECK_EQ(smd_store_new(&st2), 0);
    CHECK_EQ(smd_persist_open(&p, st2, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), SM_ECORRUPT);
    CHECK(strstr(errbuf, "safemap.aof.2: missing"));
    smd_store_free(st2);
    /* With 2 present, both replay. */
    n = enc_log_header(img, 2);
    CHECK_EQ(write_file(path_of(dir, "safemap.aof.2"), img, n), 0);
    CHECK(same_after_reload(st, dir));
    /* A cut-short record in a log that is not the last: an error. */
    size_t len;
    char *l1 = read_file(path_of(dir, "safemap.aof.1"), &len);
    if (CHECK(l1)) {
        CHECK_EQ(write_file(path_of(dir, "safemap.aof.1"), l1, len - 3), 0);
        CHECK_EQ(smd_store_new(&st2), 0);
        CHECK_EQ(smd_persist_open(&p, st2, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf),
                 SM_ECORRUPT);
        CHECK(strstr(errbuf, "safemap.aof.1: offset") && strstr(errbuf, "truncated"));
        smd_store_free(st2);
    }
    free(l1);
    smd_store_free(st);
    rm_dir(dir);
}

/* ---- BGSAVE against writers ------------------------------------------- */

/* Each writer w owns keys w*K .. w*K+K-1 of maps "a" and "b" and writes
 * sequence number s to key w*K + s%K of both, inside one gate hold.  At any
 * instant outside the gate both maps hold, for each writer, the K numbers
 * S-K+1 .. S (some S).  A snapshot taken at one point in time must show
 * that for every writer, with the same S in both maps. */
enum { WRITERS = 2, K = 64 };
static smd_store *bg_st;
static atomic_int bg_stop;

static void *bg_writer(void *arg)
{
    int w = (int)(intptr_t)arg;
    smc_map *a = smd_store_get(bg_st, "a", 1), *b = smd_store_get(bg_st, "b", 1);
    for (uint64_t s = 0; !atomic_load(&bg_stop) && s < 50000000; s++) {
        int64_t key = w * K + (int64_t)(s % K);
        smd_store_gate_enter(bg_st);
        exec_put(a, key, &s);
        exec_put(b, key, &s);
        smd_store_gate_leave(bg_st);
    }
    smd_store_put(bg_st, a);
    smd_store_put(bg_st, b);
    return NULL;
}

typedef struct window {
    uint64_t lo[WRITERS], hi[WRITERS];
    int count[WRITERS];
} window;

static int window_add(int64_t key, const void *value, void *ctx)
{
    window *wd = ctx;
    uint64_t s;
    memcpy(&s, value, 8);
    int w = (int)(key / K);
    if (w < 0 || w >= WRITERS)
        return 1;
    if (wd->count[w]++ == 0 || s < wd->lo[w])
        wd->lo[w] = s;
    if (wd->count[w] == 1 || s > wd->hi[w])
        wd->hi[w] = s;
    if (s % K != (uint64_t)(key % K))
        return 1;
    return 0;
}

static void test_bgsave_point_in_time(void)
{
    const char *dir = new_dir();
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&bg_st), 0))
        return;
    CHECK_EQ(smd_persist_open(&p, bg_st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), 0);
    smc_map *a = create(p, bg_st, "a", SMC_UINT64, 1, 0);
    smc_map *b = create(p, bg_st, "b", SMC_UINT64, 1, 1);
    if (!CHECK(a && b))
        return;
    /* Start with every key written once, so each writer's window is full. */
    for (uint64_t s = 0; s < K; s++)
        for (int w = 0; w < WRITERS; w++) {
            exec_put(a, w * K + (int64_t)s, &s);
            exec_put(b, w * K + (int64_t)s, &s);
        }
    smd_store_put(bg_st, a);
    smd_store_put(bg_st, b);
    atomic_store(&bg_stop, 0);
    pthread_t t[WRITERS];
    for (int w = 0; w < WRITERS; w++)
        pthread_create(&t[w], NULL, bg_writer, (void *)(intptr_t)w);
    int snapshots = 0, consistent = 0, moved = 0;
    uint64_t last_hi = 0;
    for (int round = 0; round < 5; round++) {
        usleep(20000);
        if (smd_persist_bgsave(p, errbuf, sizeof errbuf) != 0) {
            printf("  bgsave: %s\n", errbuf);
            continue;
        }
        smd_persist_info info;
        for (int i = 0; i < 3000; i++) {
            smd_persist_tick(p);
            smd_persist_info_get(p, &info);
            if (!info.bgsave_in_progress)
                break;
            usleep(5000);
        }
        if (!info.last_save_ok)
            continue;
        snapshots++;
        /* Load the snapshot alone and check the windows. */
        smd_store *s2;
        smd_store_new(&s2);
        int fd = open(path_of(dir, "safemap.snap"), O_RDONLY);
        uint64_t gen;
        int rc = smd_snapshot_load_fd(s2, fd, "snap", &gen, errbuf, sizeof errbuf);
        close(fd);
        smc_map *a2 = smd_store_get(s2, "a", 1), *b2 = smd_store_get(s2, "b", 1);
        window wa = {0}, wb = {0};
        int ok = rc == 0 && a2 && b2 && sm_cmap_each(smc_map_cmap(a2), window_add, &wa) == 0 &&
                 sm_cmap_each(smc_map_cmap(b2), window_add, &wb) == 0;
        for (int w = 0; ok && w < WRITERS; w++)
            ok = wa.count[w] == K && wa.hi[w] - wa.lo[w] == K - 1 && wa.lo[w] == wb.lo[w] &&
                 wa.hi[w] == wb.hi[w] && wb.count[w] == K;
        consistent += ok;
        if (!ok)
            printf("  round %d: snapshot not at one point in time (rc %d)\n", round, rc);
        moved += wa.hi[0] != last_hi;
        last_hi = wa.hi[0];
        if (a2)
            smd_store_put(s2, a2);
        if (b2)
            smd_store_put(s2, b2);
        smd_store_free(s2);
    }
    atomic_store(&bg_stop, 1);
    for (int w = 0; w < WRITERS; w++)
        pthread_join(t[w], NULL);
    CHECK_EQ(snapshots, 5);
    CHECK_EQ(consistent, snapshots);
    CHECK(moved >= 3); /* the writers really ran between snapshots */
    smd_persist_close(p);
    /* Snapshot + the logs after it: the final state. */
    CHECK(same_after_reload(bg_st, dir));
    smd_store_free(bg_st);
    rm_dir(dir);
}

/* ---- Failures injected into every file operation ------------------------ */

/* SAVE with the n-th file operation failing, for every n until a SAVE
 * succeeds untouched: each failure returns an error naming the file, the
 * old snapshot stays byte for byte (unless the rename had happened), and
 * the directory still loads to the state in memory. */
static void fault_saves(int bg)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_ALWAYS, 1, errbuf, sizeof errbuf), 0);
    small_state(p, st);
    CHECK_EQ(smd_persist_save(p, errbuf, sizeof errbuf), 0);
    smc_map *a = smd_store_get(st, "a", 1);
    int failures = 0, n;
    smd_persist_set_logger(capture_log, NULL);
    for (n = 1; n < 100; n++) {
        last_warning[0] = 0;
        CHECK_EQ(put_keys(a, 5, (uint64_t)n), 0);
        size_t before_len;
        char *before = read_file(path_of(dir, "safemap.snap"), &before_len);
        smd_persist_fault_at = n;
        int rc;
        if (bg) {
            rc = smd_persist_bgsave(p, errbuf, sizeof errbuf);
            smd_persist_info info = {.bgsave_in_progress = 1};
            for (int i = 0; rc == 0 && i < 3000 && info.bgsave_in_progress; i++) {
                usleep(2000);
                smd_persist_tick(p);
                smd_persist_info_get(p, &info);
            }
            if (rc == 0 && !info.last_save_ok)
                rc = -1;
        } else {
            rc = smd_persist_save(p, errbuf, sizeof errbuf);
        }
        int fired = smd_persist_fault_at == 0 || bg;
        smd_persist_fault_at = 0;
        size_t after_len;
        char *after = read_file(path_of(dir, "safemap.snap"), &after_len);
        if (rc) {
            failures++;
            int kept =
                before && after && before_len == after_len && memcmp(before, after, after_len) == 0;
            int renamed = strstr(bg ? last_warning : errbuf, "fsync of the directory") != NULL;
            if (!CHECK(kept || renamed))
                printf("  fault %d: the old snapshot changed (%s)\n", n, errbuf);
            if (!bg && !CHECK(strstr(errbuf, dir)))
                printf("  fault %d: %s\n", n, errbuf);
        }
        free(before);
        free(after);
        CHECK(same_after_reload(st, dir));
        if (rc == 0 && (!fired || bg))
            break;
    }
    smd_persist_set_logger(NULL, NULL);
    smd_store_put(st, a);
    printf("  %d injected failures, each left a loadable directory\n", failures);
    CHECK(failures >= (bg ? 3 : 5));
    CHECK(n < 100);
    smd_persist_close(p);
    smd_store_free(st);
    rm_dir(dir);
}

static void test_save_faults(void)
{
    fault_saves(0);
}

static void test_bgsave_faults(void)
{
    fault_saves(1);
}

/* The log's write or fsync fails: the command fails, later writes fail,
 * the failure shows in INFO, and a SAVE (new log file) recovers; nothing
 * acknowledged is lost. */
static void test_log_write_fault(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    smd_persist_set_logger(capture_log, NULL);
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_ALWAYS, 1, errbuf, sizeof errbuf), 0);
    smc_map *a = create(p, st, "a", SMC_INT64, 1, 0);
    if (!CHECK(a))
        return;
    CHECK_EQ(put_keys(a, 10, 1), 0);
    for (int n = 1; n <= 2; n++) { /* the write, then the fsync */
        smd_persist_fault_at = n;
        int64_t v = 5;
        CHECK(exec_put(a, 12345, &v) < 0);
        smd_persist_fault_at = 0;
        CHECK_EQ(smd_persist_log_status(p), SM_EIO);
        CHECK(exec_put(a, 12346, &v) < 0);
        smc_spec s = {SMC_INT8, 1, 0};
        CHECK_EQ(smd_persist_create(p, st, "new", 3, &s), SM_EIO);
        CHECK(smd_store_get(st, "new", 3) == NULL);
        smd_persist_info info;
        smd_persist_info_get(p, &info);
        CHECK(info.log_failed);
        CHECK_EQ(smd_persist_save(p, errbuf, sizeof errbuf), 0);
        CHECK_EQ(smd_persist_log_status(p), 0);
        CHECK_EQ(put_keys(a, 10, 2), 0);
        CHECK(same_after_reload(st, dir));
    }
    smd_persist_set_logger(NULL, NULL);
    smd_store_put(st, a);
    smd_persist_close(p);
    smd_store_free(st);
    rm_dir(dir);
}

/* Read and open failures while loading: SM_EIO with the file's name. */
static void test_load_faults(void)
{
    const char *dir = new_dir();
    smd_store *st;
    smd_persist *p;
    if (!CHECK(dir) || !CHECK_EQ(smd_store_new(&st), 0))
        return;
    CHECK_EQ(smd_persist_open(&p, st, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf), 0);
    small_state(p, st);
    CHECK_EQ(smd_persist_save(p, errbuf, sizeof errbuf), 0);
    smc_map *a = smd_store_get(st, "a", 1);
    if (CHECK(a)) {
        put_keys(a, 20, 7); /* into the log after the snapshot */
        smd_store_put(st, a);
    }
    smd_persist_close(p);
    int failures = 0, n;
    for (n = 1; n < 50; n++) {
        smd_store *st2;
        smd_store_new(&st2);
        smd_persist_fault_at = n;
        int rc = smd_persist_open(&p, st2, dir, SMD_FSYNC_NO, 1, errbuf, sizeof errbuf);
        int fired = smd_persist_fault_at == 0;
        smd_persist_fault_at = 0;
        if (rc) {
            failures++;
            CHECK(rc == SM_EIO && strstr(errbuf, dir));
        } else {
            smd_persist_close(p);
        }
        smd_store_free(st2);
        if (!fired)
            break;
    }
    CHECK(failures >= 4);
    CHECK(same_after_reload(st, dir));
    smd_store_free(st);
    rm_dir(dir);
}

/* --write-corpus=DIR: the seeds of tests/server/corpus_persist (a selector
 * byte, then the file: see fuzz_persist.c). */
static int write_seed(const char *dir, const char *name, int sel, const char *img, size_t n)
{
    char *b = malloc(n + 1);
    b[0] = (char)sel;
    memcpy(b + 1, img, n);
    int rc = write_file(path_of(dir, name), b, n + 1);
    free(b);
    return rc;
}

static int write_corpus(const char *dir)
{
    size_t sn, ln;
    char *want, *snap = small_snapshot(&sn, &want);
    uint64_t bound[SMALL_OPS];
    char *states[SMALL_OPS];
    char *log = small_log(&ln, bound, states);
    if (!snap || !log)
        return 1;
    int rc = write_seed(dir, "snap_small", 0, snap, sn) | write_seed(dir, "log_small", 1, log, ln) |
             write_seed(dir, "log_torn", 3, log, ln - 5) |
             write_seed(dir, "snap_cut", 0, snap, sn / 2);
    snap[sn / 3] ^= 4;
    log[ln / 2] ^= 1;
    rc |= write_seed(dir, "snap_flip", 0, snap, sn) | write_seed(dir, "log_flip", 3, log, ln);
    free(snap);
    free(log);
    free(want);
    for (int i = 0; i < SMALL_OPS; i++)
        free(states[i]);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    const char *corpus = tl_option(argc, argv, "write-corpus");
    if (corpus)
        return write_corpus(corpus);
    RUN(test_snapshot_roundtrip);
    RUN(test_log_roundtrip_always);
    RUN(test_log_roundtrip_everysec);
    RUN(test_log_roundtrip_no);
    RUN(test_group_commit);
    RUN(test_everysec_fsync_rate);
    RUN(test_batch_always);
    RUN(test_batch_everysec);
    RUN(test_batch_write_fault);
    RUN(test_save_then_log);
    RUN(test_write_after_drop);
    RUN(test_save_during_bgsave);
    RUN(test_without_log);
    RUN(test_snapshot_truncated_everywhere);
    RUN(test_snapshot_bitflip_everywhere);
    RUN(test_log_truncated_everywhere);
    RUN(test_log_bitflip_everywhere);
    RUN(test_torn_log_truncated_on_open);
    RUN(test_layout_mismatch);
    RUN(test_snapshot_semantic_errors);
    RUN(test_generation_gap);
    RUN(test_bgsave_point_in_time);
    RUN(test_save_faults);
    RUN(test_bgsave_faults);
    RUN(test_log_write_fault);
    RUN(test_load_faults);
    return tl_finish();
}
