/*
 * persist.c - snapshots and the append-only log of safemapd (persist.h has
 * the model, docs/persistence.md the byte layouts and the guarantees).
 *
 * The file has five parts:
 *
 *   I/O          every system call on a data file goes through io_* (so a
 *                test can make the n-th one fail: smd_persist_fault_at), and
 *                a buffered reader that hands out whole records and tracks
 *                the file offset for messages.
 *   Snapshot     writer (blocks of about 64 KiB, each checksummed, a running
 *                XXH3 of the whole file in the trailer) and loader.
 *   Log          record encoding, the loader/replayer, and the appender:
 *                group commit under one mutex.  A writer queues its record
 *                and waits until a write() (and with "always" an fsync)
 *                covering it has completed; whoever finds no flush in
 *                progress does one for everyone queued, so under load one
 *                fsync acknowledges many writers.  A batching thread (a
 *                daemon worker) queues without waiting and waits once in
 *                smd_persist_flush_thread before it acknowledges the batch.
 *                The everysec thread sleeps a second between fsyncs on a
 *                condition of its own.
 *   Live maps    the maps whose writes are logged, by pointer: a write to a
 *                map already dropped (a command that took its reference
 *                before SM.DROP) is not logged, so replay never meets a put
 *                after the drop of its map.
 *   Saving       SAVE and BGSAVE.  Both start log generation G+1 while writes
 *                are paused and write a snapshot saying "logs from G+1 on";
 *                the old logs are deleted only after the snapshot's rename
 *                and directory fsync.  BGSAVE forks while paused.
 *
 * Fork safety of the BGSAVE child.  Only the forking thread survives, so the
 * child must not need a lock another thread held at the fork.  The child
 * touches: the smc_map pointers collected (with references) by the parent
 * while paused, so no store lock; sm_cmap_each, which locks one segment at a
 * time (a segment lock is held only inside a writing sm_cmap call, and the
 * write gate guarantees no write command is inside one at the fork) and
 * opens read sections (epoch.c registers a thread with a CAS and malloc, no
 * lock, and its atfork handler frees the vanished threads' records); the
 * library's allocator (malloc: glibc resets its locks in the child); xxhash
 * (pure); and write/fsync/rename.  It ends with _exit.  So the one condition
 * is that every sm_cmap write runs inside the write gate.
 */
#define _GNU_SOURCE
#include "persist.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* The element type codes on disk are smc_type's values. */
_Static_assert(SMC_INT8 == 0 && SMC_UINT64 == 7 && SMC_DOUBLE == 9 && SMC_NTYPES == 10,
               "smc_type's values are the on-disk type codes");

#define SNAP_NAME "safemap.snap"
#define LOG_PREFIX "safemap.aof."
#define BYTE_ORDER_MARK 0x01020304u
#define FORMAT_VERSION 1u

static const char SNAP_MAGIC[8] = {'S', 'M', 'A', 'P', 'S', 'N', 'A', 'P'};
static const char LOG_MAGIC[8] = {'S', 'M', 'A', 'P', 'A', 'O', 'F', '1'};

enum { SNAP_HEADER = 48, LOG_HEADER = 32, BLOCK_HEAD = 8, REC_HEAD = 12, SUM = 8 };
enum { BLK_MAP = 1, BLK_ENTRIES = 2, BLK_MAPEND = 3, BLK_TRAILER = 4 };
enum { REC_CREATE = 1, REC_DROP = 2, REC_PUT = 3, REC_DEL = 4 };

/* An entries block is closed once its body passes this. */
#define ENTRIES_TARGET (64u * 1024)
/* Largest block or record body the loaders accept: one value of the
 * largest layout plus its key, name and fixed fields, rounded up. */
#define BODY_MAX (SM_MAX_ARRAY_BYTES + 4096u)
#define READ_CHUNK (1u << 20)

int smd_persist_fault_at;

/* ---- Logging of warnings ------------------------------------------------ */

static smd_persist_log_fn log_fn;
static void *log_ctx;

void smd_persist_set_logger(smd_persist_log_fn fn, void *ctx)
{
    log_fn = fn;
    log_ctx = ctx;
}

__attribute__((format(printf, 2, 3))) static void plog(int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_fn)
        log_fn(level, msg, log_ctx);
    else
        fprintf(stderr, "safemapd: persistence: %s\n", msg);
}

__attribute__((format(printf, 4, 5))) static int fail(int code, char *err, size_t errlen,
                                                      const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* fail() for a loader: "FILE: offset OFF: cause". */
__attribute__((format(printf, 6, 0))) static int vfail_at(int code, char *err, size_t errlen,
                                                          const char *file, uint64_t off,
                                                          const char *fmt, va_list ap)
{
    char cause[512];
    vsnprintf(cause, sizeof cause, fmt, ap);
    return fail(code, err, errlen, "%s: offset %" PRIu64 ": %s", file, off, cause);
}

/* ---- Byte encoding (native order; the header's mark says which) -------- */

static void put16(char *p, uint16_t v)
{
    memcpy(p, &v, 2);
}
static void put32(char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static void put64(char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}
static uint16_t get16(const char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static uint32_t get32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---- I/O with fault injection ------------------------------------------ */

static int io_fault(void)
{
    int n = __atomic_load_n(&smd_persist_fault_at, __ATOMIC_RELAXED);
    if (n <= 0)
        return 0;
    if (__atomic_sub_fetch(&smd_persist_fault_at, 1, __ATOMIC_RELAXED) != 0)
        return 0;
    errno = EIO;
    return 1;
}

static int io_open(const char *path, int flags, mode_t mode)
{
    if (io_fault())
        return -1;
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd;
}

/* Writes all n bytes.  0 or -1 (errno set). */
static int io_write(int fd, const void *buf, size_t n)
{
    if (io_fault())
        return -1;
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int io_fsync(int fd)
{
    if (io_fault())
        return -1;
    return fsync(fd);
}

static int io_fdatasync(int fd)
{
    if (io_fault())
        return -1;
    return fdatasync(fd);
}

static int io_rename(const char *from, const char *to)
{
    if (io_fault())
        return -1;
    return rename(from, to);
}

static int io_ftruncate(int fd, off_t len)
{
    if (io_fault())
        return -1;
    return ftruncate(fd, len);
}

static int fsync_dir(const char *dir)
{
    int fd = io_open(dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return -1;
    int rc = io_fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static void path_join(char *out, size_t outlen, const char *dir, const char *name)
{
    snprintf(out, outlen, "%s/%s", dir, name);
}

/* ---- Buffered reader ----------------------------------------------------
 *
 * rd_need(r, n) makes n bytes available at rd_ptr(r), reading big chunks;
 * rd_skip consumes them.  r->off is the file offset of rd_ptr(r), for
 * messages. */

typedef struct reader {
    int fd;
    char *buf;
    size_t cap, pos, len; /* valid bytes buf[pos, len) */
    uint64_t off;
    int ioerr; /* errno of a failed read */
} reader;

static int rd_init(reader *r, int fd)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->cap = READ_CHUNK + BODY_MAX + 64;
    r->buf = malloc(r->cap);
    return r->buf ? 0 : SM_ENOMEM;
}

static void rd_free(reader *r)
{
    free(r->buf);
}

static const char *rd_ptr(const reader *r)
{
    return r->buf + r->pos;
}

static size_t rd_avail(const reader *r)
{
    return r->len - r->pos;
}

/* 1 when n bytes are available, 0 at end of file first, -1 on a read error.
 * n must be at most BODY_MAX + 64. */
static int rd_need(reader *r, size_t n)
{
    if (rd_avail(r) >= n)
        return 1;
    if (r->pos) {
        memmove(r->buf, r->buf + r->pos, rd_avail(r));
        r->len -= r->pos;
        r->pos = 0;
    }
    while (r->len < n) {
        size_t want = r->cap - r->len;
        if (io_fault()) {
            r->ioerr = errno;
            return -1;
        }
        ssize_t got = read(r->fd, r->buf + r->len, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            r->ioerr = errno;
            return -1;
        }
        if (got == 0)
            return 0;
        r->len += (size_t)got;
    }
    return 1;
}

static void rd_skip(reader *r, size_t n)
{
    r->pos += n;
    r->off += n;
}

/* ---- Map names and specs ------------------------------------------------ */

/* Checks a layout read from a file.  NULL when fine, else the cause. */
static const char *spec_check(unsigned type, unsigned pooled, uint64_t len)
{
    if (type >= SMC_NTYPES)
        return "unknown element type code";
    if (pooled > 1)
        return "storage flag is neither inline (0) nor pooled (1)";
    if (len < 1 || len > SMC_MAX_LEN)
        return "element count out of range";
    return NULL;
}

static int name_ok(const char *p, size_t n)
{
    if (n < 1 || n > SMC_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] <= ' ' || p[i] > '~')
            return 0;
    return 1;
}

/* Creates a map while loading: the store's codes into messages. */
static int load_create(smd_store *st, const char *name, size_t n, const smc_spec *spec,
                       const char *file, uint64_t off, char *err, size_t errlen)
{
    int rc = smd_store_create(st, name, n, spec);
    if (rc == SMD_EEXISTS)
        return fail(SM_ECORRUPT, err, errlen, "%s: offset %" PRIu64 ": map '%.*s' created twice",
                    file, off, (int)n, name);
    if (rc == SM_ENOMEM)
        return fail(SM_ENOMEM, err, errlen, "%s: offset %" PRIu64 ": out of memory creating '%.*s'",
                    file, off, (int)n, name);
    if (rc)
        return fail(SM_ECORRUPT, err, errlen,
                    "%s: offset %" PRIu64 ": map '%.*s' refused by the store (%s)", file, off,
                    (int)n, name, sm_strerror(rc));
    return 0;
}

/* ---- Snapshot writer ----------------------------------------------------- */

typedef struct snap_writer {
    int fd;
    char *buf;
    size_t len, cap;
    size_t block;         /* offset in buf of the open block's header */
    XXH3_state_t *whole;  /* every byte before the trailer */
    int err;              /* errno of the first failure */
    uint32_t block_n;     /* entries in the open entries block */
    uint64_t map_entries; /* entries of the map being written */
    uint64_t total;       /* entries of every map */
    size_t vsize;
} snap_writer;

static int sw_flush(snap_writer *w)
{
    if (w->err)
        return -1;
    if (w->len && io_write(w->fd, w->buf, w->len) != 0) {
        w->err = errno;
        return -1;
    }
    w->len = 0;
    return 0;
}

/* Room for n more bytes in buf (it holds at most the open block). */
static int sw_room(snap_writer *w, size_t n)
{
    if (w->len + n <= w->cap)
        return 0;
    size_t cap = w->cap;
    while (cap < w->len + n)
        cap *= 2;
    char *b = realloc(w->buf, cap);
    if (!b) {
        w->err = ENOMEM;
        return -1;
    }
    w->buf = b;
    w->cap = cap;
    return 0;
}

static void sw_begin(snap_writer *w, uint32_t kind)
{
    if (w->err || sw_room(w, BLOCK_HEAD))
        return;
    w->block = w->len;
    put32(w->buf + w->len, kind);
    w->len += BLOCK_HEAD;
}

static void sw_bytes(snap_writer *w, const void *p, size_t n)
{
    if (w->err || sw_room(w, n))
        return;
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

/* Closes the open block: length, checksum, and into the whole-file hash;
 * writes the buffer out once it holds a megabyte. */
static void sw_end(snap_writer *w)
{
    if (w->err || sw_room(w, SUM))
        return;
    char *h = w->buf + w->block;
    put32(h + 4, (uint32_t)(w->len - w->block - BLOCK_HEAD));
    put64(w->buf + w->len, XXH3_64bits(h, w->len - w->block));
    w->len += SUM;
    XXH3_64bits_update(w->whole, w->buf + w->block, w->len - w->block);
    if (w->len >= READ_CHUNK)
        sw_flush(w);
}

static void sw_entries_begin(snap_writer *w)
{
    char fixed[8] = {0};
    sw_begin(w, BLK_ENTRIES);
    sw_bytes(w, fixed, sizeof fixed);
    w->block_n = 0;
}

static void sw_entries_end(snap_writer *w)
{
    if (w->err)
        return;
    put32(w->buf + w->block + BLOCK_HEAD, w->block_n);
    sw_end(w);
}

static int sw_entry(int64_t key, const void *value, void *ctx)
{
    snap_writer *w = ctx;
    char k[8];
    memcpy(k, &key, 8);
    sw_bytes(w, k, 8);
    sw_bytes(w, value, w->vsize);
    w->block_n++;
    w->map_entries++;
    if (!w->err && w->len - w->block >= ENTRIES_TARGET) {
        sw_entries_end(w);
        sw_entries_begin(w);
    }
    return w->err ? -1 : 0;
}

static int sw_map(snap_writer *w, smc_map *m)
{
    const smc_spec *spec = smc_map_spec(m);
    const char *name = smc_map_name(m);
    sm_cmap *cm = smc_map_cmap(m);
    size_t nlen = strlen(name);
    char fixed[24];
    fixed[0] = (char)spec->type;
    fixed[1] = (char)(spec->pooled ? 1 : 0);
    put16(fixed + 2, (uint16_t)nlen);
    put32(fixed + 4, (uint32_t)spec->len);
    put32(fixed + 8, (uint32_t)smc_map_value_size(m));
    put32(fixed + 12, 0);
    put64(fixed + 16, sm_cmap_len(cm));
    sw_begin(w, BLK_MAP);
    sw_bytes(w, fixed, sizeof fixed);
    sw_bytes(w, name, nlen);
    sw_end(w);

    w->vsize = smc_map_value_size(m);
    w->map_entries = 0;
    sw_entries_begin(w);
    int rc = sm_cmap_each(cm, sw_entry, w);
    if (rc == SM_ENOMEM && !w->err)
        w->err = ENOMEM;
    if (w->block_n)
        sw_entries_end(w);
    else if (!w->err)
        w->len = w->block; /* drop the empty block */

    char count[8];
    put64(count, w->map_entries);
    sw_begin(w, BLK_MAPEND);
    sw_bytes(w, count, 8);
    sw_end(w);
    w->total += w->map_entries;
    return w->err ? -1 : 0;
}

static void sw_header(snap_writer *w, uint64_t log_gen, uint32_t nmaps)
{
    char h[SNAP_HEADER] = {0};
    memcpy(h, SNAP_MAGIC, 8);
    put32(h + 8, FORMAT_VERSION);
    put32(h + 12, BYTE_ORDER_MARK);
    put64(h + 16, log_gen);
    put64(h + 24, (uint64_t)time(NULL));
    put32(h + 32, nmaps);
    put64(h + 40, XXH3_64bits(h, 40));
    sw_bytes(w, h, sizeof h);
    XXH3_64bits_update(w->whole, h, sizeof h);
}

static void sw_trailer(snap_writer *w, uint32_t nmaps)
{
    char t[24] = {0};
    put32(t, nmaps);
    put64(t + 8, w->total);
    put64(t + 16, XXH3_64bits_digest(w->whole));
    sw_begin(w, BLK_TRAILER);
    sw_bytes(w, t, sizeof t);
    sw_end(w);
}

/* Writes maps[0..n) to dir/tmp, fsyncs it, renames it to dir/SNAP_NAME and
 * fsyncs dir.  On failure the temporary file is removed and the old
 * snapshot is untouched. */
static int snap_write(const char *dir, const char *tmp, smc_map **maps, size_t n, uint64_t log_gen,
                      char *err, size_t errlen)
{
    char tpath[4352], spath[4352];
    path_join(tpath, sizeof tpath, dir, tmp);
    path_join(spath, sizeof spath, dir, SNAP_NAME);
    snap_writer w = {.fd = -1};
    const char *step = "write";
    w.cap = READ_CHUNK + ENTRIES_TARGET + 4096;
    w.buf = malloc(w.cap);
    w.whole = XXH3_createState();
    if (!w.buf || !w.whole) {
        free(w.buf);
        XXH3_freeState(w.whole);
        return fail(SM_ENOMEM, err, errlen, "%s: out of memory for the snapshot writer", tpath);
    }
    XXH3_64bits_reset(w.whole);
    w.fd = io_open(tpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (w.fd < 0) {
        w.err = errno;
        step = "create";
    }
    if (!w.err) {
        sw_header(&w, log_gen, (uint32_t)n);
        for (size_t i = 0; i < n && !w.err; i++)
            sw_map(&w, maps[i]);
        sw_trailer(&w, (uint32_t)n);
        sw_flush(&w);
    }
    if (!w.err && io_fsync(w.fd) != 0) {
        w.err = errno;
        step = "fsync";
    }
    if (w.fd >= 0 && close(w.fd) != 0 && !w.err)
        w.err = errno;
    if (!w.err && io_rename(tpath, spath) != 0) {
        w.err = errno;
        step = "rename";
    }
    if (!w.err && fsync_dir(dir) != 0) {
        w.err = errno;
        step = "fsync of the directory";
    }
    free(w.buf);
    XXH3_freeState(w.whole);
    if (!w.err)
        return 0;
    if (strcmp(step, "fsync of the directory") != 0)
        unlink(tpath);
    return fail(w.err == ENOMEM ? SM_ENOMEM : SM_EIO, err, errlen, "%s: %s failed: %s", tpath, step,
                strerror(w.err));
}

/* ---- Snapshot loader ---------------------------------------------------- */

typedef struct snap_loader {
    reader r;
    const char *file;
    smd_store *st;
    XXH3_state_t *whole;
    char *err;
    size_t errlen;
    uint32_t nmaps, maps_seen;
    uint64_t total;
    /* the map being loaded */
    smc_map *map;
    size_t vsize;
    uint64_t map_entries;
} snap_loader;

__attribute__((format(printf, 4, 5))) static int sl_fail(snap_loader *l, int code, uint64_t off,
                                                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_at(code, l->err, l->errlen, l->file, off, fmt, ap);
    va_end(ap);
    return rc;
}

/* Reads n bytes or reports why not (what: the thing being read). */
static int sl_need(snap_loader *l, size_t n, const char *what)
{
    int got = rd_need(&l->r, n);
    if (got > 0)
        return 0;
    if (got < 0)
        return sl_fail(l, SM_EIO, l->r.off, "read error: %s", strerror(l->r.ioerr));
    return sl_fail(l, SM_ECORRUPT, l->r.off,
                   "truncated: the file ends inside %s (%zu of %zu bytes present)", what,
                   rd_avail(&l->r), n);
}

static int sl_header(snap_loader *l, uint64_t *log_gen)
{
    int rc = sl_need(l, SNAP_HEADER, "the header");
    if (rc)
        return rc;
    const char *h = rd_ptr(&l->r);
    if (memcmp(h, SNAP_MAGIC, 8) != 0)
        return sl_fail(l, SM_ECORRUPT, 0, "not a safemap snapshot (bad magic)");
    if (get32(h + 12) == __builtin_bswap32(BYTE_ORDER_MARK))
        return sl_fail(l, SM_ECORRUPT, 12, "written on a machine of the other byte order");
    if (get32(h + 12) != BYTE_ORDER_MARK)
        return sl_fail(l, SM_ECORRUPT, 12, "bad byte order mark");
    if (get64(h + 40) != XXH3_64bits(h, 40))
        return sl_fail(l, SM_ECORRUPT, 40, "header checksum mismatch");
    if (get32(h + 8) != FORMAT_VERSION)
        return sl_fail(l, SM_ECORRUPT, 8, "format version %" PRIu32 ", this build reads %u",
                       get32(h + 8), FORMAT_VERSION);
    *log_gen = get64(h + 16);
    l->nmaps = get32(h + 32);
    if (*log_gen < 1)
        return sl_fail(l, SM_ECORRUPT, 16, "log generation 0");
    XXH3_64bits_update(l->whole, h, SNAP_HEADER);
    rd_skip(&l->r, SNAP_HEADER);
    return 0;
}

static int sl_map_begin(snap_loader *l, const char *b, uint32_t len, uint64_t off)
{
    if (l->map)
        return sl_fail(l, SM_ECORRUPT, off, "map block inside map '%s'", smc_map_name(l->map));
    if (l->maps_seen == l->nmaps)
        return sl_fail(l, SM_ECORRUPT, off, "more maps than the header's %" PRIu32, l->nmaps);
    if (len < 24 || len != 24u + get16(b + 2))
        return sl_fail(l, SM_ECORRUPT, off, "map block of %" PRIu32 " bytes", len);
    unsigned type = (unsigned char)b[0], pooled = (unsigned char)b[1];
    size_t nlen = get16(b + 2);
    uint32_t elems = get32(b + 4), vsize = get32(b + 8);
    const char *name = b + 24, *why = spec_check(type, pooled, elems);
    if (why)
        return sl_fail(l, SM_ECORRUPT, off, "map layout: %s", why);
    if (!name_ok(name, nlen))
        return sl_fail(l, SM_ECORRUPT, off, "bad map name");
    if ((uint64_t)smc_type_size((smc_type)type) * elems != vsize)
        return sl_fail(l, SM_ECORRUPT, off,
                       "layout mismatch: map '%.*s' is %s[%" PRIu32 "] but says %" PRIu32
                       "-byte values",
                       (int)nlen, name, smc_type_name((smc_type)type), elems, vsize);
    smc_spec spec = {.type = (smc_type)type, .len = elems, .pooled = (int)pooled};
    int rc = load_create(l->st, name, nlen, &spec, l->file, off, l->err, l->errlen);
    if (rc)
        return rc;
    l->map = smd_store_get(l->st, name, nlen);
    if (!l->map)
        return sl_fail(l, SM_ECORRUPT, off, "map '%.*s' vanished", (int)nlen, name);
    if (smc_map_value_size(l->map) != vsize) {
        smd_store_put(l->st, l->map);
        l->map = NULL;
        return sl_fail(l, SM_ECORRUPT, off, "layout mismatch: the store sizes '%.*s' differently",
                       (int)nlen, name);
    }
    l->vsize = vsize;
    l->map_entries = 0;
    l->maps_seen++;
    return 0;
}

static int sl_entries(snap_loader *l, const char *b, uint32_t len, uint64_t off)
{
    if (!l->map)
        return sl_fail(l, SM_ECORRUPT, off, "entries block outside a map");
    uint32_t n = get32(b);
    size_t stride = 8 + l->vsize;
    if (len < 8 || n == 0 || (len - 8) / stride != n || (len - 8) % stride)
        return sl_fail(l, SM_ECORRUPT, off,
                       "entries block of %" PRIu32 " bytes does not hold %" PRIu32
                       " entries of %zu bytes",
                       len, n, stride);
    sm_cmap *cm = smc_map_cmap(l->map);
    const char *e = b + 8;
    for (uint32_t i = 0; i < n; i++, e += stride) {
        int64_t key;
        memcpy(&key, e, 8);
        int rc = sm_cmap_put(cm, key, e + 8);
        if (rc)
            return sl_fail(l, rc, off, "put into '%s' failed: %s", smc_map_name(l->map),
                           sm_strerror(rc));
    }
    l->map_entries += n;
    return 0;
}

static int sl_map_end(snap_loader *l, const char *b, uint32_t len, uint64_t off)
{
    if (!l->map)
        return sl_fail(l, SM_ECORRUPT, off, "map end block outside a map");
    if (len != 8)
        return sl_fail(l, SM_ECORRUPT, off, "map end block of %" PRIu32 " bytes", len);
    uint64_t want = get64(b);
    size_t have = sm_cmap_len(smc_map_cmap(l->map));
    const char *name = smc_map_name(l->map);
    int rc = 0;
    if (want != l->map_entries)
        rc = sl_fail(l, SM_ECORRUPT, off,
                     "map '%s' should have %" PRIu64 " entries, its blocks hold %" PRIu64, name,
                     want, l->map_entries);
    else if (have != want)
        rc = sl_fail(l, SM_ECORRUPT, off,
                     "map '%s' has duplicate keys (%" PRIu64 " entries, %zu keys)", name, want,
                     have);
    l->total += l->map_entries;
    smd_store_put(l->st, l->map);
    l->map = NULL;
    return rc;
}

static int sl_trailer(snap_loader *l, const char *b, uint32_t len, uint64_t off, uint64_t hash)
{
    if (l->map)
        return sl_fail(l, SM_ECORRUPT, off, "trailer inside map '%s'", smc_map_name(l->map));
    if (len != 24)
        return sl_fail(l, SM_ECORRUPT, off, "trailer of %" PRIu32 " bytes", len);
    if (get32(b) != l->nmaps || l->maps_seen != l->nmaps)
        return sl_fail(l, SM_ECORRUPT, off,
                       "map count: header %" PRIu32 ", trailer %" PRIu32 ", blocks %" PRIu32,
                       l->nmaps, get32(b), l->maps_seen);
    if (get64(b + 8) != l->total)
        return sl_fail(l, SM_ECORRUPT, off, "entry count: trailer %" PRIu64 ", blocks %" PRIu64,
                       get64(b + 8), l->total);
    if (get64(b + 16) != hash)
        return sl_fail(l, SM_ECORRUPT, off, "whole-file checksum mismatch");
    return 0;
}

static const char *block_name(uint32_t kind)
{
    switch (kind) {
    case BLK_MAP:
        return "map";
    case BLK_ENTRIES:
        return "entries";
    case BLK_MAPEND:
        return "map end";
    default:
        return "trailer";
    }
}

/* Reads blocks until the trailer, then insists on the end of the file. */
static int sl_blocks(snap_loader *l)
{
    for (;;) {
        uint64_t off = l->r.off;
        int rc = sl_need(l, BLOCK_HEAD, "a block header");
        if (rc)
            return rc;
        uint32_t kind = get32(rd_ptr(&l->r)), len = get32(rd_ptr(&l->r) + 4);
        if (kind < BLK_MAP || kind > BLK_TRAILER)
            return sl_fail(l, SM_ECORRUPT, off, "unknown block kind %" PRIu32, kind);
        if (len > BODY_MAX)
            return sl_fail(l, SM_ECORRUPT, off, "%s block of %" PRIu32 " bytes is over the limit",
                           block_name(kind), len);
        char what[64];
        snprintf(what, sizeof what, "the %s block at offset %" PRIu64, block_name(kind), off);
        if ((rc = sl_need(l, BLOCK_HEAD + (size_t)len + SUM, what)))
            return rc;
        const char *blk = rd_ptr(&l->r), *body = blk + BLOCK_HEAD;
        if (get64(body + len) != XXH3_64bits(blk, BLOCK_HEAD + (size_t)len))
            return sl_fail(l, SM_ECORRUPT, off, "%s block checksum mismatch", block_name(kind));
        uint64_t hash = XXH3_64bits_digest(l->whole);
        XXH3_64bits_update(l->whole, blk, BLOCK_HEAD + (size_t)len + SUM);
        if (kind == BLK_MAP)
            rc = sl_map_begin(l, body, len, off);
        else if (kind == BLK_ENTRIES)
            rc = sl_entries(l, body, len, off);
        else if (kind == BLK_MAPEND)
            rc = sl_map_end(l, body, len, off);
        else
            rc = sl_trailer(l, body, len, off, hash);
        if (rc)
            return rc;
        rd_skip(&l->r, BLOCK_HEAD + (size_t)len + SUM);
        if (kind == BLK_TRAILER)
            break;
    }
    int more = rd_need(&l->r, 1);
    if (more < 0)
        return sl_fail(l, SM_EIO, l->r.off, "read error: %s", strerror(l->r.ioerr));
    if (more > 0)
        return sl_fail(l, SM_ECORRUPT, l->r.off, "bytes after the trailer");
    return 0;
}

int smd_snapshot_load_fd(smd_store *st, int fd, const char *name, uint64_t *log_gen, char *err,
                         size_t errlen)
{
    snap_loader l = {.file = name, .st = st, .err = err, .errlen = errlen};
    if (rd_init(&l.r, fd) != 0)
        return fail(SM_ENOMEM, err, errlen, "%s: out of memory for the loader", name);
    l.whole = XXH3_createState();
    if (!l.whole) {
        rd_free(&l.r);
        return fail(SM_ENOMEM, err, errlen, "%s: out of memory for the loader", name);
    }
    XXH3_64bits_reset(l.whole);
    uint64_t gen = 0;
    int rc = sl_header(&l, &gen);
    if (!rc)
        rc = sl_blocks(&l);
    if (l.map)
        smd_store_put(st, l.map);
    XXH3_freeState(l.whole);
    rd_free(&l.r);
    if (!rc && log_gen)
        *log_gen = gen;
    return rc;
}

/* ---- Log records -------------------------------------------------------- */

/* Encodes a record into out (which has room for REC_HEAD + body + SUM):
 * fixed holds the body's fixed part (nfixed bytes), then the name, then the
 * value.  Returns the record's size. */
static size_t rec_encode(char *out, unsigned kind, const char *fixed, size_t nfixed,
                         const char *name, size_t nlen, const void *value, size_t vlen)
{
    uint32_t body = (uint32_t)(nfixed + nlen + vlen);
    put32(out, body);
    out[4] = (char)kind;
    out[5] = out[6] = out[7] = 0;
    put32(out + 8, (uint32_t)XXH3_64bits(out, 8));
    char *p = out + REC_HEAD;
    memcpy(p, fixed, nfixed);
    memcpy(p + nfixed, name, nlen);
    if (vlen)
        memcpy(p + nfixed + nlen, value, vlen);
    put64(out + REC_HEAD + body, XXH3_64bits(out, REC_HEAD + (size_t)body));
    return REC_HEAD + (size_t)body + SUM;
}

static size_t rec_size(size_t nfixed, size_t nlen, size_t vlen)
{
    return REC_HEAD + nfixed + nlen + vlen + SUM;
}

/* ---- Log loader ----------------------------------------------------------- */

typedef struct log_loader {
    reader r;
    const char *file;
    smd_store *st;
    char *err;
    size_t errlen;
    smc_map *cached; /* the map of the last put or delete (a reference) */
} log_loader;

__attribute__((format(printf, 4, 5))) static int ll_fail(log_loader *l, int code, uint64_t off,
                                                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail_at(code, l->err, l->errlen, l->file, off, fmt, ap);
    va_end(ap);
    return rc;
}

static void ll_uncache(log_loader *l)
{
    if (l->cached)
        smd_store_put(l->st, l->cached);
    l->cached = NULL;
}

static smc_map *ll_map(log_loader *l, const char *name, size_t nlen)
{
    if (l->cached) {
        const char *cn = smc_map_name(l->cached);
        if (strlen(cn) == nlen && memcmp(cn, name, nlen) == 0)
            return l->cached;
    }
    ll_uncache(l);
    l->cached = smd_store_get(l->st, name, nlen);
    return l->cached;
}

static int ll_create(log_loader *l, const char *b, uint32_t len, uint64_t off)
{
    if (len < 8 || len != 8u + get16(b))
        return ll_fail(l, SM_ECORRUPT, off, "create record of %" PRIu32 " bytes", len);
    size_t nlen = get16(b);
    const char *name = b + 8,
               *why = spec_check((unsigned char)b[2], (unsigned char)b[3], get32(b + 4));
    if (why)
        return ll_fail(l, SM_ECORRUPT, off, "create record: %s", why);
    if (!name_ok(name, nlen))
        return ll_fail(l, SM_ECORRUPT, off, "create record: bad map name");
    smc_spec spec = {
        .type = (smc_type)(unsigned char)b[2], .len = get32(b + 4), .pooled = (unsigned char)b[3]};
    return load_create(l->st, name, nlen, &spec, l->file, off, l->err, l->errlen);
}

static int ll_drop(log_loader *l, const char *b, uint32_t len, uint64_t off)
{
    if (len < 4 || len != 4u + get16(b))
        return ll_fail(l, SM_ECORRUPT, off, "drop record of %" PRIu32 " bytes", len);
    size_t nlen = get16(b);
    ll_uncache(l);
    if (smd_store_drop(l->st, b + 4, nlen) != 0)
        return ll_fail(l, SM_ECORRUPT, off, "drop of map '%.*s', which does not exist", (int)nlen,
                       b + 4);
    return 0;
}

static int ll_write(log_loader *l, unsigned kind, const char *b, uint32_t len, uint64_t off)
{
    if (len < 16)
        return ll_fail(l, SM_ECORRUPT, off, "write record of %" PRIu32 " bytes", len);
    size_t nlen = get16(b), vlen = get32(b + 4);
    if (kind == REC_DEL ? vlen != 0 : vlen == 0)
        return ll_fail(l, SM_ECORRUPT, off, "%s record with a %zu-byte value",
                       kind == REC_DEL ? "delete" : "put", vlen);
    if ((uint64_t)len != 16u + nlen + vlen)
        return ll_fail(l, SM_ECORRUPT, off, "write record of %" PRIu32 " bytes", len);
    int64_t key;
    memcpy(&key, b + 8, 8);
    const char *name = b + 16;
    smc_map *m = ll_map(l, name, nlen);
    if (!m)
        return ll_fail(l, SM_ECORRUPT, off, "%s into map '%.*s', which does not exist",
                       kind == REC_DEL ? "delete" : "put", (int)nlen, name);
    if (kind == REC_DEL) {
        int rc = sm_cmap_del(smc_map_cmap(m), key);
        return rc == SM_ENOENT ? 0 : rc;
    }
    if (vlen != smc_map_value_size(m))
        return ll_fail(l, SM_ECORRUPT, off,
                       "layout mismatch: map '%.*s' has %zu-byte values (%s[%zu]), the record %zu",
                       (int)nlen, name, smc_map_value_size(m), smc_type_name(smc_map_spec(m)->type),
                       smc_map_spec(m)->len, vlen);
    int rc = sm_cmap_put(smc_map_cmap(m), key, name + nlen);
    if (rc)
        return ll_fail(l, rc, off, "put into '%.*s' failed: %s", (int)nlen, name, sm_strerror(rc));
    return 0;
}

static int ll_header(log_loader *l, uint64_t expect_gen)
{
    int got = rd_need(&l->r, LOG_HEADER);
    if (got < 0)
        return ll_fail(l, SM_EIO, 0, "read error: %s", strerror(l->r.ioerr));
    if (got == 0)
        return ll_fail(l, SM_ECORRUPT, 0, "truncated: the file ends inside the header");
    const char *h = rd_ptr(&l->r);
    if (memcmp(h, LOG_MAGIC, 8) != 0)
        return ll_fail(l, SM_ECORRUPT, 0, "not a safemap log (bad magic)");
    if (get32(h + 12) == __builtin_bswap32(BYTE_ORDER_MARK))
        return ll_fail(l, SM_ECORRUPT, 12, "written on a machine of the other byte order");
    if (get64(h + 24) != XXH3_64bits(h, 24))
        return ll_fail(l, SM_ECORRUPT, 24, "header checksum mismatch");
    if (get32(h + 8) != FORMAT_VERSION || get32(h + 12) != BYTE_ORDER_MARK)
        return ll_fail(l, SM_ECORRUPT, 8, "format version %" PRIu32 ", this build reads %u",
                       get32(h + 8), FORMAT_VERSION);
    if (expect_gen && get64(h + 16) != expect_gen)
        return ll_fail(l, SM_ECORRUPT, 16,
                       "generation %" PRIu64 " in the header, %" PRIu64 " in the name",
                       get64(h + 16), expect_gen);
    rd_skip(&l->r, LOG_HEADER);
    return 0;
}

static int all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* Whether the rest of the file (from rd_ptr) is zeros: what a crash that
 * extended the file before its data reached the disk leaves.  -1: read
 * error. */
static int ll_rest_zero(log_loader *l)
{
    for (;;) {
        size_t n = rd_avail(&l->r);
        if (!all_zero(rd_ptr(&l->r), n))
            return 0;
        rd_skip(&l->r, n);
        int got = rd_need(&l->r, 1);
        if (got <= 0)
            return got < 0 ? -1 : 1;
    }
}

/* One record; 1 at a clean end of file, 2 at a torn end. */
static int ll_record(log_loader *l, int allow_torn)
{
    uint64_t off = l->r.off;
    int got = rd_need(&l->r, REC_HEAD);
    if (got < 0)
        return ll_fail(l, SM_EIO, off, "read error: %s", strerror(l->r.ioerr));
    if (got == 0 && rd_avail(&l->r) == 0)
        return 1;
    const char *h = rd_ptr(&l->r);
    if (got == 0) {
        if (allow_torn)
            return 2;
        return ll_fail(l, SM_ECORRUPT, off, "truncated: the file ends inside a record header");
    }
    if (get32(h + 8) != (uint32_t)XXH3_64bits(h, 8)) {
        int z = allow_torn && all_zero(h, REC_HEAD) ? ll_rest_zero(l) : 0;
        if (z > 0)
            return 2;
        return ll_fail(l, z < 0 ? SM_EIO : SM_ECORRUPT, off, "record header checksum mismatch");
    }
    uint32_t len = get32(h);
    unsigned kind = (unsigned char)h[4];
    if (kind < REC_CREATE || kind > REC_DEL || h[5] || h[6] || h[7])
        return ll_fail(l, SM_ECORRUPT, off, "unknown record kind %u", kind);
    if (len > BODY_MAX)
        return ll_fail(l, SM_ECORRUPT, off, "record of %" PRIu32 " bytes is over the limit", len);
    got = rd_need(&l->r, REC_HEAD + (size_t)len + SUM);
    if (got < 0)
        return ll_fail(l, SM_EIO, off, "read error: %s", strerror(l->r.ioerr));
    if (got == 0) {
        if (allow_torn)
            return 2;
        return ll_fail(l, SM_ECORRUPT, off, "truncated: the file ends inside a record");
    }
    h = rd_ptr(&l->r);
    if (get64(h + REC_HEAD + len) != XXH3_64bits(h, REC_HEAD + (size_t)len))
        return ll_fail(l, SM_ECORRUPT, off, "record checksum mismatch");
    const char *b = h + REC_HEAD;
    int rc;
    if (kind == REC_CREATE)
        rc = ll_create(l, b, len, off);
    else if (kind == REC_DROP)
        rc = ll_drop(l, b, len, off);
    else
        rc = ll_write(l, kind, b, len, off);
    if (rc)
        return rc;
    rd_skip(&l->r, REC_HEAD + (size_t)len + SUM);
    return 0;
}

int smd_log_load_fd(smd_store *st, int fd, const char *name, uint64_t expect_gen, int allow_torn,
                    uint64_t *good_end, int *torn, char *err, size_t errlen)
{
    log_loader l = {.file = name, .st = st, .err = err, .errlen = errlen};
    if (rd_init(&l.r, fd) != 0)
        return fail(SM_ENOMEM, err, errlen, "%s: out of memory for the loader", name);
    int rc = ll_header(&l, expect_gen);
    uint64_t end = l.r.off;
    while (rc == 0) {
        end = l.r.off;
        rc = ll_record(&l, allow_torn);
    }
    ll_uncache(&l);
    rd_free(&l.r);
    if (rc < 0)
        return rc;
    if (good_end)
        *good_end = end;
    if (torn)
        *torn = rc == 2;
    return 0;
}

/* ---- Live maps (pointer set, open addressing) -------------------------- */

typedef struct live_set {
    smc_map **slot;
    size_t cap, n; /* cap: a power of two, or 0 */
} live_set;

static size_t live_home(const live_set *s, const smc_map *m)
{
    uint64_t h = (uint64_t)(uintptr_t)m * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 17) & (s->cap - 1);
}

static int live_has(const live_set *s, const smc_map *m)
{
    if (!s->cap)
        return 0;
    for (size_t i = live_home(s, m);; i = (i + 1) & (s->cap - 1)) {
        if (s->slot[i] == m)
            return 1;
        if (!s->slot[i])
            return 0;
    }
}

static void live_insert(live_set *s, smc_map *m)
{
    size_t i = live_home(s, m);
    while (s->slot[i])
        i = (i + 1) & (s->cap - 1);
    s->slot[i] = m;
    s->n++;
}

static int live_add(live_set *s, smc_map *m)
{
    if (live_has(s, m))
        return 0;
    if ((s->n + 1) * 2 > s->cap) {
        live_set g = {.cap = s->cap ? 2 * s->cap : 16};
        g.slot = calloc(g.cap, sizeof *g.slot);
        if (!g.slot)
            return SM_ENOMEM;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i])
                live_insert(&g, s->slot[i]);
        free(s->slot);
        *s = g;
    }
    live_insert(s, m);
    return 0;
}

/* Removes m, shifting back the entries after it that were displaced. */
static void live_del(live_set *s, smc_map *m)
{
    if (!live_has(s, m))
        return;
    size_t i = live_home(s, m), mask = s->cap - 1;
    while (s->slot[i] != m)
        i = (i + 1) & mask;
    s->slot[i] = NULL;
    s->n--;
    for (size_t j = (i + 1) & mask; s->slot[j]; j = (j + 1) & mask) {
        smc_map *e = s->slot[j];
        s->slot[j] = NULL;
        s->n--;
        live_insert(s, e);
    }
}

/* ---- The persistence object ----------------------------------------------- */

struct smd_persist {
    smd_store *st;
    char dir[4096];
    smd_fsync policy;
    int use_log;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Serialises SAVE, BGSAVE, tick and close, which may come from
     * different threads (a worker runs SAVE, the main thread ticks); held
     * while the BGSAVE child's fields below are used. */
    pthread_mutex_t save_mu;
    /* The log.  Byte counters run over the whole life of the object,
     * across generations: appended >= written >= synced. */
    int fd;
    uint64_t gen;
    char *buf, *spare;
    size_t len, cap, spare_cap;
    uint64_t appended, written, synced;
    int flushing, syncing; /* a writer's write(); the thread's fsync */
    int failed;            /* errno of a failed write or fsync; sticky */
    /* The bytes (lost_lo, lost_hi] were queued but never written: a write
     * failed.  A batching thread whose records lie there must not
     * acknowledge them (smd_persist_flush_thread). */
    uint64_t lost_lo, lost_hi;
    uint64_t file_bytes;
    uint64_t records, fsyncs, writes;
    double unsynced_since; /* monotonic time of the oldest unsynced write, 0: none */
    live_set live;

    /* everysec: the thread waits on its own condition (a monotonic clock),
     * so the writers' broadcasts on cv never wake it before its second. */
    pthread_t thread;
    pthread_cond_t sync_cv;
    int thread_on, stop;

    /* BGSAVE */
    pid_t child;
    int child_pipe, child_cancelled;
    uint64_t child_gen;
    char child_tmp[64];

    /* INFO */
    time_t last_save;
    int last_save_ok;
    double load_seconds;
    uint64_t loaded;
};

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void log_name(char *out, size_t n, uint64_t gen)
{
    snprintf(out, n, LOG_PREFIX "%" PRIu64, gen);
}

/* Makes log file gen: header into a temporary, fsync, rename, directory
 * fsync.  Returns the open descriptor (positioned at the end) or a negative
 * code. */
static int log_file_create(const char *dir, uint64_t gen, char *err, size_t errlen)
{
    char name[64], tmp[4400], path[4352];
    log_name(name, sizeof name, gen);
    path_join(path, sizeof path, dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    char h[LOG_HEADER] = {0};
    memcpy(h, LOG_MAGIC, 8);
    put32(h + 8, FORMAT_VERSION);
    put32(h + 12, BYTE_ORDER_MARK);
    put64(h + 16, gen);
    put64(h + 24, XXH3_64bits(h, 24));
    int fd = io_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const char *step = "create";
    if (fd >= 0) {
        step = "write";
        if (io_write(fd, h, sizeof h) == 0 && (step = "fsync", io_fsync(fd) == 0) &&
            (step = "rename", io_rename(tmp, path) == 0) &&
            (step = "fsync of the directory", fsync_dir(dir) == 0))
            return fd;
    }
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return fail(SM_EIO, err, errlen, "%s: %s failed: %s", path, step, strerror(e));
}

/* ---- The appender (group commit) ----------------------------------------- */

/* Queues n bytes; mu held. */
static int log_queue(smd_persist *p, size_t n, char **out)
{
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < p->len + n)
            cap *= 2;
        char *b = realloc(p->buf, cap);
        if (!b)
            return SM_ENOMEM;
        p->buf = b;
        p->cap = cap;
    }
    *out = p->buf + p->len;
    return 0;
}

static void log_queued(smd_persist *p, size_t n)
{
    if (p->appended == p->synced && p->unsynced_since == 0)
        p->unsynced_since = mono_now();
    p->len += n;
    p->appended += n;
    p->records++;
}

/* A write failed at file size good: cut the torn tail so that records
 * appended after a recovery (a new generation) are never behind garbage. */
static void log_failed(smd_persist *p, int e, uint64_t good)
{
    if (!p->failed)
        plog(3, "log %s/" LOG_PREFIX "%" PRIu64 ": write failed (%s); writes fail until a save",
             p->dir, p->gen, strerror(e));
    p->failed = e;
    if (p->lost_hi == p->lost_lo || p->written < p->lost_lo)
        p->lost_lo = p->written;
    if (p->appended > p->lost_hi)
        p->lost_hi = p->appended;
    if (ftruncate(p->fd, (off_t)good) != 0)
        plog(3, "log: cannot cut the torn tail: %s", strerror(errno));
}

/* Waits, mu held, until the queued bytes up to target are written (and
 * fsynced when sync), doing the write for every writer queued when no
 * other thread is. */
static int log_wait(smd_persist *p, uint64_t target, int sync)
{
    while (!p->failed && (sync ? p->synced : p->written) < target) {
        if (p->flushing) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        p->flushing = 1;
        char *b = p->buf;
        size_t n = p->len, bcap = p->cap;
        p->buf = p->spare;
        p->cap = p->spare_cap;
        p->len = 0;
        uint64_t upto = p->appended, size0 = p->file_bytes;
        int fd = p->fd, rc = 0, e = 0;
        pthread_mutex_unlock(&p->mu);
        if (n && io_write(fd, b, n) != 0)
            rc = -1, e = errno;
        if (!rc && sync && io_fdatasync(fd) != 0)
            rc = -1, e = errno;
        pthread_mutex_lock(&p->mu);
        p->spare = b;
        p->spare_cap = bcap;
        p->flushing = 0;
        p->writes += n != 0;
        if (rc) {
            log_failed(p, e, size0);
        } else {
            p->written = upto;
            p->file_bytes += n;
            if (sync) {
                p->fsyncs++;
                p->synced = upto;
                p->unsynced_since = p->synced == p->appended ? 0 : mono_now();
            }
        }
        pthread_cond_broadcast(&p->cv);
    }
    return p->failed ? SM_EIO : 0;
}

/* A batching thread (smd_persist_batch_thread): its persistence object and
 * the end, in appended bytes, of the last record it queued. */
static _Thread_local smd_persist *tl_batch;
static _Thread_local uint64_t tl_target;

/* Queues one record; mu held.  A batching thread returns at once (its
 * smd_persist_flush_thread waits); any other waits per the policy. */
static int log_append(smd_persist *p, unsigned kind, const char *fixed, size_t nfixed,
                      const char *name, size_t nlen, const void *value, size_t vlen)
{
    if (p->failed)
        return SM_EIO;
    size_t n = rec_size(nfixed, nlen, vlen);
    char *at;
    if (log_queue(p, n, &at) != 0)
        return SM_ENOMEM;
    rec_encode(at, kind, fixed, nfixed, name, nlen, value, vlen);
    log_queued(p, n);
    if (tl_batch == p && (kind == REC_PUT || kind == REC_DEL)) {
        tl_target = p->appended;
        return 0;
    }
    return log_wait(p, p->appended, p->policy == SMD_FSYNC_ALWAYS);
}

static int observe(smc_map *m, int64_t key, const void *value, void *ctx)
{
    smd_persist *p = ctx;
    const char *name = smc_map_name(m);
    size_t nlen = strlen(name), vlen = value ? smc_map_value_size(m) : 0;
    char fixed[16];
    put16(fixed, (uint16_t)nlen);
    put16(fixed + 2, 0);
    put32(fixed + 4, (uint32_t)vlen);
    memcpy(fixed + 8, &key, 8);
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    if (live_has(&p->live, m))
        rc = log_append(p, value ? REC_PUT : REC_DEL, fixed, 16, name, nlen, value, vlen);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void smd_persist_batch_thread(smd_persist *p)
{
    tl_batch = p && p->use_log ? p : NULL;
    tl_target = 0;
}

int smd_persist_flush_thread(smd_persist *p)
{
    if (!p || tl_batch != p || !tl_target)
        return 0;
    uint64_t target = tl_target;
    tl_target = 0;
    int sync = p->policy == SMD_FSYNC_ALWAYS;
    pthread_mutex_lock(&p->mu);
    log_wait(p, target, sync);
    /* Done when the bytes are written (fsynced) and were not lost to a
     * failure that a SAVE has since papered over with a new log file. */
    int ok =
        (sync ? p->synced : p->written) >= target && !(target > p->lost_lo && target <= p->lost_hi);
    pthread_mutex_unlock(&p->mu);
    return ok ? 0 : SM_EIO;
}

/* everysec: fsyncs what was written, once a second, without holding up
 * writers (fdatasync runs beside their write()s).  It sleeps a whole
 * second between fsyncs whatever else happens on the log. */
static void *sync_thread(void *arg)
{
    smd_persist *p = arg;
    pthread_mutex_lock(&p->mu);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!p->stop) {
        next.tv_sec += 1;
        struct timespec now;
        for (;;) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (p->stop || now.tv_sec > next.tv_sec ||
                (now.tv_sec == next.tv_sec && now.tv_nsec >= next.tv_nsec))
                break;
            pthread_cond_timedwait(&p->sync_cv, &p->mu, &next);
        }
        if (now.tv_sec > next.tv_sec + 1)
            next = now; /* fell behind (a long fsync): no catching up */
        if (p->stop || p->failed || p->written == p->synced || p->syncing)
            continue;
        uint64_t upto = p->written;
        int fd = p->fd;
        p->syncing = 1;
        pthread_mutex_unlock(&p->mu);
        int rc = io_fdatasync(fd), e = errno;
        pthread_mutex_lock(&p->mu);
        p->syncing = 0;
        if (rc)
            log_failed(p, e, p->file_bytes);
        else if (upto > p->synced) {
            p->fsyncs++;
            p->synced = upto;
            p->unsynced_since = p->synced == p->appended ? 0 : mono_now();
        }
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Writes and fsyncs everything queued; mu held, no flush or sync running
 * afterwards. */
static int log_drain(smd_persist *p)
{
    while (p->flushing || p->syncing)
        pthread_cond_wait(&p->cv, &p->mu);
    if (p->fd < 0)
        return 0;
    int rc = log_wait(p, p->appended, 0);
    if (!rc && p->synced < p->written) {
        if (io_fsync(p->fd) != 0)
            log_failed(p, errno, p->file_bytes), rc = SM_EIO;
        else
            p->synced = p->written;
    }
    if (!rc)
        p->unsynced_since = 0;
    return rc;
}

/* Switches appending to the new generation's file fd (writes paused, mu
 * held): the old file is drained and closed.  A failed old log is left as
 * it is (cut to its last good record); the new file starts clean. */
static void log_rotate(smd_persist *p, int fd, uint64_t gen)
{
    log_drain(p);
    if (p->fd >= 0)
        close(p->fd);
    p->fd = fd;
    p->gen = gen;
    p->failed = 0;
    p->len = 0;
    p->written = p->synced = p->appended;
    p->unsynced_since = 0;
    p->file_bytes = LOG_HEADER;
}

/* ---- Creating and dropping maps ------------------------------------------ */

int smd_persist_create(smd_persist *p, smd_store *st, const char *name, size_t n,
                       const smc_spec *spec)
{
    if (!p || !p->use_log)
        return smd_store_create(st, name, n, spec);
    pthread_mutex_lock(&p->mu);
    if (p->failed) {
        pthread_mutex_unlock(&p->mu);
        return SM_EIO;
    }
    int rc = smd_store_create(st, name, n, spec);
    smc_map *m = rc ? NULL : smd_store_get(st, name, n);
    if (!rc && (!m || live_add(&p->live, m) != 0))
        rc = SM_ENOMEM;
    if (!rc) {
        char fixed[8];
        put16(fixed, (uint16_t)n);
        fixed[2] = (char)spec->type;
        fixed[3] = (char)(spec->pooled ? 1 : 0);
        put32(fixed + 4, (uint32_t)spec->len);
        rc = log_append(p, REC_CREATE, fixed, 8, name, n, NULL, 0);
    }
    if (rc && m) {
        live_del(&p->live, m);
        smd_store_drop(st, name, n);
    }
    if (m)
        smd_store_put(st, m);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int smd_persist_drop(smd_persist *p, smd_store *st, const char *name, size_t n)
{
    if (!p || !p->use_log)
        return smd_store_drop(st, name, n);
    pthread_mutex_lock(&p->mu);
    int rc = p->failed ? SM_EIO : 0;
    smc_map *m = rc ? NULL : smd_store_get(st, name, n);
    if (!rc && !m)
        rc = SM_ENOENT;
    if (!rc) {
        char fixed[4];
        put16(fixed, (uint16_t)n);
        put16(fixed + 2, 0);
        /* Logged first: if the log fails the map stays. */
        rc = log_append(p, REC_DROP, fixed, 4, name, n, NULL, 0);
    }
    if (!rc) {
        live_del(&p->live, m);
        rc = smd_store_drop(st, name, n);
    }
    if (m)
        smd_store_put(st, m);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int smd_persist_log_status(smd_persist *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->mu);
    int rc = p->failed ? SM_EIO : 0;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* ---- Directory scanning ---------------------------------------------------- */

typedef struct gen_list {
    uint64_t *g;
    size_t n, cap;
} gen_list;

static int gen_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A log file's generation from its name, or 0 when it is not one. */
static uint64_t log_gen_of(const char *name)
{
    size_t pl = strlen(LOG_PREFIX);
    if (strncmp(name, LOG_PREFIX, pl) != 0 || !name[pl] || name[pl] == '0')
        return 0;
    uint64_t g = 0;
    for (const char *s = name + pl; *s; s++) {
        if (*s < '0' || *s > '9' || g > UINT64_MAX / 10 - 1)
            return 0;
        g = g * 10 + (uint64_t)(*s - '0');
    }
    return g;
}

/* Lists the logs in dir (sorted) and removes leftover temporary files. */
static int dir_scan(const char *dir, gen_list *out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d)
        return fail(SM_EIO, err, errlen, "%s: cannot list: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if ((strncmp(e->d_name, SNAP_NAME ".tmp", strlen(SNAP_NAME) + 4) == 0) ||
            (strncmp(e->d_name, LOG_PREFIX, strlen(LOG_PREFIX)) == 0 && l > 4 &&
             strcmp(e->d_name + l - 4, ".tmp") == 0)) {
            char path[4352];
            path_join(path, sizeof path, dir, e->d_name);
            unlink(path);
            continue;
        }
        uint64_t g = log_gen_of(e->d_name);
        if (!g)
            continue;
        if (out->n == out->cap) {
            size_t cap = out->cap ? 2 * out->cap : 8;
            uint64_t *ng = realloc(out->g, cap * sizeof *ng);
            if (!ng) {
                rc = fail(SM_ENOMEM, err, errlen, "%s: out of memory listing logs", dir);
                break;
            }
            out->g = ng;
            out->cap = cap;
        }
        out->g[out->n++] = g;
    }
    closedir(d);
    if (!rc && out->n)
        qsort(out->g, out->n, sizeof *out->g, gen_cmp);
    return rc;
}

/* Deletes the logs older than gen. */
static void logs_delete_before(const char *dir, uint64_t gen)
{
    gen_list l = {0};
    if (dir_scan(dir, &l, NULL, 0) == 0) {
        for (size_t i = 0; i < l.n && l.g[i] < gen; i++) {
            char name[64], path[4352];
            log_name(name, sizeof name, l.g[i]);
            path_join(path, sizeof path, dir, name);
            if (unlink(path) != 0)
                plog(2, "cannot delete the old log %s: %s", path, strerror(errno));
        }
    }
    free(l.g);
}

/* ---- Loading at start ------------------------------------------------------ */

static int load_snapshot(smd_persist *p, uint64_t *gen, char *err, size_t errlen)
{
    char path[4352];
    path_join(path, sizeof path, p->dir, SNAP_NAME);
    *gen = 1;
    int fd = io_open(path, O_RDONLY, 0);
    if (fd < 0 && errno == ENOENT)
        return 0;
    if (fd < 0)
        return fail(SM_EIO, err, errlen, "%s: cannot open: %s", path, strerror(errno));
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    int rc = smd_snapshot_load_fd(p->st, fd, path, gen, err, errlen);
    close(fd);
    return rc;
}

/* Replays one log; the last may have a torn tail, which is cut off. */
static int load_log(smd_persist *p, uint64_t gen, int last, char *err, size_t errlen)
{
    char name[64], path[4352];
    log_name(name, sizeof name, gen);
    path_join(path, sizeof path, p->dir, name);
    int fd = io_open(path, last ? O_RDWR : O_RDONLY, 0);
    if (fd < 0)
        return fail(SM_EIO, err, errlen, "%s: cannot open: %s", path, strerror(errno));
    uint64_t end = 0;
    int torn = 0;
    int rc = smd_log_load_fd(p->st, fd, path, gen, last, &end, &torn, err, errlen);
    if (!rc && torn) {
        struct stat sb;
        uint64_t size = fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        plog(2,
             "%s: offset %" PRIu64 ": the last record is cut short (%" PRIu64
             " bytes from there to the end); truncated to the last whole record",
             path, end, size - end);
        if (io_ftruncate(fd, (off_t)end) != 0 || io_fsync(fd) != 0)
            rc = fail(SM_EIO, err, errlen, "%s: cannot truncate the torn tail: %s", path,
                      strerror(errno));
    }
    close(fd);
    return rc;
}

/* Snapshot, then the logs from its generation on (which must follow one
 * another); older logs are deleted.  *cur gets the generation to append
 * to and *have_file whether its file exists. */
static int load_all(smd_persist *p, uint64_t *cur, int *have_file, char *err, size_t errlen)
{
    uint64_t base;
    gen_list logs = {0};
    int rc = load_snapshot(p, &base, err, errlen);
    if (!rc)
        rc = dir_scan(p->dir, &logs, err, errlen);
    size_t first = 0;
    while (!rc && first < logs.n && logs.g[first] < base)
        first++;
    for (size_t i = first; !rc && i < logs.n; i++) {
        uint64_t want = i == first ? base : logs.g[i - 1] + 1;
        if (logs.g[i] != want)
            rc = fail(SM_ECORRUPT, err, errlen,
                      "%s/" LOG_PREFIX "%" PRIu64 ": missing (the logs from generation %" PRIu64
                      " on must all be present; found %" PRIu64 " next)",
                      p->dir, want, base, logs.g[i]);
        else
            rc = load_log(p, logs.g[i], i + 1 == logs.n, err, errlen);
    }
    if (!rc && first)
        logs_delete_before(p->dir, base);
    *cur = first < logs.n ? logs.g[logs.n - 1] : base;
    *have_file = first < logs.n;
    free(logs.g);
    return rc;
}

static int count_entries(smc_map *m, void *ctx)
{
    *(uint64_t *)ctx += sm_cmap_len(smc_map_cmap(m));
    return 0;
}

static int live_fill(smc_map *m, void *ctx)
{
    return live_add(ctx, m);
}

static int log_open_current(smd_persist *p, uint64_t gen, int exists, char *err, size_t errlen)
{
    if (!exists) {
        int fd = log_file_create(p->dir, gen, err, errlen);
        if (fd < 0)
            return fd;
        p->fd = fd;
        p->file_bytes = LOG_HEADER;
        return 0;
    }
    char name[64], path[4352];
    log_name(name, sizeof name, gen);
    path_join(path, sizeof path, p->dir, name);
    p->fd = io_open(path, O_WRONLY | O_APPEND, 0);
    struct stat sb;
    if (p->fd < 0 || fstat(p->fd, &sb) != 0)
        return fail(SM_EIO, err, errlen, "%s: cannot open for appending: %s", path,
                    strerror(errno));
    p->file_bytes = (uint64_t)sb.st_size;
    return 0;
}

static void persist_free(smd_persist *p)
{
    if (p->fd >= 0)
        close(p->fd);
    free(p->buf);
    free(p->spare);
    free(p->live.slot);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->sync_cv);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->save_mu);
    free(p);
}

int smd_persist_open(smd_persist **out, smd_store *st, const char *dir, smd_fsync policy,
                     int use_log, char *err, size_t errlen)
{
    if (!out || !st || !dir || strlen(dir) >= sizeof((smd_persist *)0)->dir)
        return fail(SM_EINVAL, err, errlen, "smd_persist_open: bad argument");
    smd_persist *p = calloc(1, sizeof *p);
    if (!p)
        return fail(SM_ENOMEM, err, errlen, "out of memory");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->save_mu, NULL);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->sync_cv, &ca);
    pthread_condattr_destroy(&ca);
    strcpy(p->dir, dir);
    p->st = st;
    p->policy = policy;
    p->use_log = use_log;
    p->fd = -1;
    p->child_pipe = -1;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        int rc = fail(SM_EIO, err, errlen, "%s: cannot create: %s", dir, strerror(errno));
        persist_free(p);
        return rc;
    }
    double t0 = mono_now();
    uint64_t gen;
    int have_file;
    int rc = load_all(p, &gen, &have_file, err, errlen);
    p->load_seconds = mono_now() - t0;
    p->gen = gen;
    if (!rc)
        smd_store_each(st, count_entries, &p->loaded);
    if (!rc && use_log)
        rc = log_open_current(p, gen, have_file, err, errlen);
    if (!rc && use_log && smd_store_each(st, live_fill, &p->live) != 0)
        rc = fail(SM_ENOMEM, err, errlen, "out of memory");
    if (!rc && use_log && policy == SMD_FSYNC_EVERYSEC) {
        if (pthread_create(&p->thread, NULL, sync_thread, p) != 0)
            rc = fail(SM_ENOMEM, err, errlen, "cannot start the log's fsync thread");
        else
            p->thread_on = 1;
    }
    if (rc) {
        persist_free(p);
        return rc;
    }
    if (use_log)
        smd_store_observe(st, observe, p);
    *out = p;
    return 0;
}

/* ---- Saving ------------------------------------------------------------------ */

/* The maps to save, each with a reference (writes paused, so the set is
 * stable). */
typedef struct map_list {
    smc_map **m;
    size_t n, cap;
    smd_store *st;
} map_list;

static int collect_ref(map_list *l, smc_map *m)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        smc_map **nm = realloc(l->m, cap * sizeof *nm);
        if (!nm)
            return SM_ENOMEM;
        l->m = nm;
        l->cap = cap;
    }
    l->m[l->n++] = m;
    return 0;
}

static void release(map_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        smd_store_put(l->st, l->m[i]);
    free(l->m);
    l->m = NULL;
    l->n = 0;
}

/* Names first (smd_store_each), references after (smd_store_get), so
 * that the store's lock is never taken inside its own iteration. */
typedef struct name_list {
    char **name;
    size_t n, cap;
} name_list;

static int collect_name(smc_map *m, void *ctx)
{
    name_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **nn = realloc(l->name, cap * sizeof *nn);
        if (!nn)
            return SM_ENOMEM;
        l->name = nn;
        l->cap = cap;
    }
    l->name[l->n] = strdup(smc_map_name(m));
    return l->name[l->n++] ? 0 : SM_ENOMEM;
}

static int collect_maps(smd_store *st, map_list *out)
{
    name_list names = {0};
    int rc = smd_store_each(st, collect_name, &names);
    out->st = st;
    for (size_t i = 0; i < names.n; i++) {
        if (!rc && names.name[i]) {
            smc_map *m = smd_store_get(st, names.name[i], strlen(names.name[i]));
            if (m && collect_ref(out, m) != 0) {
                smd_store_put(st, m);
                rc = SM_ENOMEM;
            }
        }
        free(names.name[i]);
    }
    free(names.name);
    if (rc)
        release(out);
    return rc;
}

/* The outcome of a save, for INFO (read by other threads: under mu). */
static void save_result(smd_persist *p, int ok)
{
    pthread_mutex_lock(&p->mu);
    p->last_save_ok = ok;
    if (ok)
        p->last_save = time(NULL);
    pthread_mutex_unlock(&p->mu);
}

/* The BGSAVE child's pid (0: none), read by INFO: under mu. */
static void set_child(smd_persist *p, pid_t pid)
{
    pthread_mutex_lock(&p->mu);
    p->child = pid;
    pthread_mutex_unlock(&p->mu);
}

static void snap_tmp_name(char *out, size_t n, pid_t pid)
{
    snprintf(out, n, SNAP_NAME ".tmp.%ld", (long)pid);
}

/* The BGSAVE child is done (status from waitpid): installs its result. */
static void child_finish(smd_persist *p, int status)
{
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    char msg[600] = "";
    if (!ok && p->child_pipe >= 0) {
        ssize_t got = read(p->child_pipe, msg, sizeof msg - 1);
        msg[got > 0 ? got : 0] = 0;
    }
    if (ok) {
        logs_delete_before(p->dir, p->child_gen);
        plog(1, "BGSAVE done: %s/" SNAP_NAME " holds the logs before generation %" PRIu64, p->dir,
             p->child_gen);
    } else {
        char path[4352];
        path_join(path, sizeof path, p->dir, p->child_tmp);
        unlink(path);
        if (p->child_cancelled)
            plog(1, "BGSAVE cancelled: a SAVE or the shutdown took over");
        else if (WIFSIGNALED(status))
            plog(3, "BGSAVE failed: the child died of signal %d", WTERMSIG(status));
        else
            plog(3, "BGSAVE failed: %s", msg[0] ? msg : "the child exited with an error");
    }
    save_result(p, ok);
    if (p->child_pipe >= 0)
        close(p->child_pipe);
    p->child_pipe = -1;
    set_child(p, 0);
    p->child_cancelled = 0;
}

static void child_kill(smd_persist *p)
{
    if (!p->child)
        return;
    p->child_cancelled = 1;
    kill(p->child, SIGKILL);
    int status = 0;
    while (waitpid(p->child, &status, 0) < 0 && errno == EINTR)
        ;
    child_finish(p, status);
}

void smd_persist_tick(smd_persist *p)
{
    if (!p || pthread_mutex_trylock(&p->save_mu) != 0)
        return; /* a SAVE or BGSAVE is starting: next tick */
    int status = 0;
    if (p->child && waitpid(p->child, &status, WNOHANG) == p->child)
        child_finish(p, status);
    pthread_mutex_unlock(&p->save_mu);
}

/* Starts generation p->gen + 1 for a snapshot (writes must be paused):
 * the log file fd (made beforehand, or -1 without a log) takes the
 * writes from here on.  Returns the new generation. */
static uint64_t next_generation(smd_persist *p, int fd)
{
    pthread_mutex_lock(&p->mu);
    uint64_t ng = p->gen + 1;
    if (p->use_log)
        log_rotate(p, fd, ng);
    else
        p->gen = ng;
    pthread_mutex_unlock(&p->mu);
    return ng;
}

/* The next generation's log file, made before writes are paused. */
static int prepare_log(smd_persist *p, char *err, size_t errlen)
{
    if (!p->use_log)
        return -1;
    return log_file_create(p->dir, p->gen + 1, err, errlen);
}

static int save_locked(smd_persist *p, char *err, size_t errlen)
{
    child_kill(p);
    int fd = prepare_log(p, err, errlen);
    if (p->use_log && fd < 0) {
        save_result(p, 0);
        return fd;
    }
    smd_store_pause(p->st);
    uint64_t ng = next_generation(p, fd);
    map_list maps = {0};
    int rc = collect_maps(p->st, &maps);
    if (rc)
        fail(rc, err, errlen, "out of memory listing the maps");
    else
        rc = snap_write(p->dir, SNAP_NAME ".tmp", maps.m, maps.n, ng, err, errlen);
    release(&maps);
    smd_store_resume(p->st);
    save_result(p, rc == 0);
    if (rc)
        return rc;
    logs_delete_before(p->dir, ng);
    return 0;
}

int smd_persist_save(smd_persist *p, char *err, size_t errlen)
{
    if (!p)
        return fail(SM_EINVAL, err, errlen, "persistence is off");
    pthread_mutex_lock(&p->save_mu);
    int rc = save_locked(p, err, errlen);
    pthread_mutex_unlock(&p->save_mu);
    return rc;
}

/* The BGSAVE child: writes the snapshot, reports a failure through the
 * pipe, and leaves without running the parent's exit handlers. */
static void child_main(smd_persist *p, map_list *maps, uint64_t gen, int wfd)
{
    char tmp[64], msg[600];
    snap_tmp_name(tmp, sizeof tmp, getpid());
    int rc = snap_write(p->dir, tmp, maps->m, maps->n, gen, msg, sizeof msg);
    if (rc) {
        ssize_t w = write(wfd, msg, strlen(msg));
        (void)w;
    }
    _exit(rc ? 1 : 0);
}

static int bgsave_locked(smd_persist *p, char *err, size_t errlen)
{
    if (p->child)
        return fail(SM_EBUSY, err, errlen, "a BGSAVE is already in progress");
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return fail(SM_EIO, err, errlen, "BGSAVE: pipe failed: %s", strerror(errno));
    int fd = prepare_log(p, err, errlen);
    if (p->use_log && fd < 0) {
        close(pfd[0]);
        close(pfd[1]);
        save_result(p, 0);
        return fd;
    }
    smd_store_pause(p->st);
    uint64_t ng = next_generation(p, fd);
    map_list maps = {0};
    int rc = collect_maps(p->st, &maps);
    pid_t pid = -1;
    int e = 0;
    if (!rc) {
        pid = fork();
        e = errno;
        if (pid == 0)
            child_main(p, &maps, ng, pfd[1]);
    }
    smd_store_resume(p->st);
    release(&maps);
    close(pfd[1]);
    if (rc || pid < 0) {
        close(pfd[0]);
        save_result(p, 0);
        return rc ? fail(rc, err, errlen, "out of memory listing the maps")
                  : fail(SM_EIO, err, errlen, "BGSAVE: fork failed: %s", strerror(e));
    }
    set_child(p, pid);
    p->child_pipe = pfd[0];
    p->child_gen = ng;
    snap_tmp_name(p->child_tmp, sizeof p->child_tmp, pid);
    return 0;
}

int smd_persist_bgsave(smd_persist *p, char *err, size_t errlen)
{
    if (!p)
        return fail(SM_EINVAL, err, errlen, "persistence is off");
    pthread_mutex_lock(&p->save_mu);
    int rc = bgsave_locked(p, err, errlen);
    pthread_mutex_unlock(&p->save_mu);
    return rc;
}

void smd_persist_info_get(smd_persist *p, smd_persist_info *out)
{
    memset(out, 0, sizeof *out);
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    out->last_save = p->last_save;
    out->last_save_ok = p->last_save_ok;
    out->bgsave_in_progress = p->child != 0;
    out->log_bytes = p->file_bytes + p->len;
    out->log_pending = p->appended - p->synced;
    out->log_lag_seconds = p->unsynced_since ? mono_now() - p->unsynced_since : 0;
    out->log_records = p->records;
    out->load_seconds = p->load_seconds;
    out->log_generation = p->gen;
    out->log_failed = p->failed != 0;
    out->loaded_entries = p->loaded;
    out->log_fsyncs = p->fsyncs;
    out->log_writes = p->writes;
    pthread_mutex_unlock(&p->mu);
}

void smd_persist_close(smd_persist *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->save_mu);
    child_kill(p);
    pthread_mutex_unlock(&p->save_mu);
    if (p->use_log)
        smd_store_observe(p->st, NULL, NULL);
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_cond_broadcast(&p->sync_cv);
    pthread_mutex_unlock(&p->mu);
    if (p->thread_on)
        pthread_join(p->thread, NULL);
    pthread_mutex_lock(&p->mu);
    log_drain(p);
    pthread_mutex_unlock(&p->mu);
    persist_free(p);
}
