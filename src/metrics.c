/*
 * metrics.c - Prometheus text exposition (format 0.0.4) of every live pool
 * and map, and of the process-wide totals.
 *
 * The exposition format wants all samples of one metric family together,
 * after that family's HELP and TYPE lines, so the objects cannot simply be
 * printed one after the other.  Instead the registry is walked once for
 * pools and once for maps, and each object's statistics are copied into a
 * snapshot (with its label set already formatted and escaped); the families
 * are then printed one at a time from the snapshot.  This also means that
 * every family describes the same instant, and that nothing is written to
 * the caller's stream while the registry lock is held (a slow or blocked
 * stream would otherwise stall every sm_*_new and sm_*_free in the
 * process).
 *
 * Naming follows Prometheus' conventions: a safemap_ prefix, base units
 * (bytes), _total on counters and only on counters.  Objects are told apart
 * by labels: pool="quotes" (the name given at creation) or, for an unnamed
 * pool, pool="pool-2" (its creation number, which unlike its address is the
 * same in every run of a deterministic program), with layout="int64_t[8]";
 * map, layout and storage ("inline" or "pooled") for maps.  Each pool and map
 * also has an _info gauge (value 1) carrying its check level.  Misuse
 * events are one counter family per kind of object, with a code label
 * ("SM_EDOUBLE").  The map's probe lengths are a gauge family with a
 * distance label ("0" ... "14", "15+"): the distribution goes down as well
 * as up (deletes), so it is not a Prometheus histogram, whose buckets must
 * be counters.
 *
 * Cost: the snapshot holds the registry lock for O(pools x threads + maps x
 * capacity) (sm_map_stats counts probe lengths over every slot).  Hot paths
 * are untouched.
 *
 * Concurrent maps (sm_cmap) come from their own registry (cmap_each), with
 * the same kind of label: cmap="name" or cmap="cmap-1", and layout and
 * storage.  Their statistics are read without stopping their threads, so
 * they may be taken while the map is in use.
 */
#include "internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- Snapshot ---------------------------------------------------------- */

/* The label set of one object, formatted: `pool="pool-2",layout="..."`. */
typedef struct obj_labels {
    char *text;
    size_t size;
} obj_labels;

typedef struct pool_snap {
    struct sm_pool_stats st;
    obj_labels labels;
} pool_snap;

typedef struct map_snap {
    struct sm_map_stats st;
    obj_labels labels;
} map_snap;

typedef struct cmap_snap {
    struct sm_cmap_stats st;
    obj_labels labels;
} cmap_snap;

/* A growable array of snapshots from alc_alloc; `failed` once memory ran
 * out (the walk goes on, taking nothing more). */
typedef struct snap_vec {
    unsigned char *items;
    size_t n, cap, elem;
    bool failed;
} snap_vec;

static void *vec_push(snap_vec *v)
{
    if (v->failed)
        return NULL;
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 8;
        unsigned char *items = alc_alloc(cap * v->elem, _Alignof(max_align_t));
        if (!items) {
            v->failed = true;
            return NULL;
        }
        if (v->n)
            memcpy(items, v->items, v->n * v->elem);
        alc_free(v->items, v->cap * v->elem);
        v->items = items;
        v->cap = cap;
    }
    return v->items + v->elem * v->n++;
}

/* Appends s to buf[*len..size) as an exposition label value: backslash,
 * double quote and line feed escaped.  Returns false if it does not fit. */
static bool put_escaped(char *buf, size_t size, size_t *len, const char *s)
{
    for (; *s; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        size_t n = esc ? 2 : 1;
        if (size - *len <= n)
            return false;
        memcpy(buf + *len, esc ? esc : s, n);
        *len += n;
    }
    buf[*len] = '\0';
    return true;
}

static bool put_raw(char *buf, size_t size, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (size - *len <= n)
        return false;
    memcpy(buf + *len, s, n + 1);
    *len += n;
    return true;
}

const char *met_object_label(char *buf, size_t n, const char *kind, const char *name, uint64_t seq)
{
    if (name && name[0])
        snprintf(buf, n, "%s", name);
    else
        snprintf(buf, n, "%s-%" PRIu64, kind, seq);
    return buf;
}

/* Formats `kind="label",layout="name"[,storage="..."]` into a block from
 * alc_alloc.  The label and the layout name are the user's strings: they
 * are escaped, and copied so that the snapshot does not point into an
 * object that may be freed once the registry lock is dropped. */
static bool labels_make(obj_labels *out, const char *kind, const char *label, const char *layout,
                        const char *storage)
{
    if (!layout)
        layout = "?";
    size_t size = 64 + strlen(kind) + 2 * strlen(label) + 2 * strlen(layout) + (storage ? 32 : 0);
    char *buf = alc_alloc(size, 1);
    if (!buf)
        return false;
    size_t len = (size_t)snprintf(buf, size, "%s=\"", kind);
    bool ok = put_escaped(buf, size, &len, label) && put_raw(buf, size, &len, "\",layout=\"") &&
              put_escaped(buf, size, &len, layout) && put_raw(buf, size, &len, "\"");
    if (ok && storage)
        ok = put_raw(buf, size, &len, ",storage=\"") && put_raw(buf, size, &len, storage) &&
             put_raw(buf, size, &len, "\"");
    if (!ok) { /* cannot happen: size covers the worst case */
        alc_free(buf, size);
        return false;
    }
    *out = (obj_labels){buf, size};
    return true;
}

static void snap_pool(sm_pool *p, uint64_t seq, void *ctx)
{
    snap_vec *v = ctx;
    pool_snap *s = vec_push(v);
    if (!s)
        return;
    if (sm_pool_stats(p, &s->st) != 0) {
        v->n--;
        return;
    }
    char label[SM_NAME_MAX];
    met_object_label(label, sizeof label, "pool", pool_name(p), seq);
    if (!labels_make(&s->labels, "pool", label, s->st.layout.name, NULL)) {
        v->n--;
        v->failed = true;
    }
}

/* Fills the label set of a map's or concurrent map's snapshot, the last
 * one pushed on v; on failure drops that snapshot and marks v failed. */
static void snap_label(snap_vec *v, obj_labels *labels, const char *kind, const char *name,
                       uint64_t seq, const char *layout, int storage)
{
    char label[SM_NAME_MAX];
    met_object_label(label, sizeof label, kind, name, seq);
    if (!labels_make(labels, kind, label, layout, storage == SM_POOLED ? "pooled" : "inline")) {
        v->n--;
        v->failed = true;
    }
}

static void snap_map(sm_map *m, uint64_t seq, void *ctx)
{
    snap_vec *v = ctx;
    map_snap *s = vec_push(v);
    if (!s)
        return;
    if (sm_map_stats(m, &s->st) != 0) {
        v->n--;
        return;
    }
    snap_label(v, &s->labels, "map", map_name(m), seq, s->st.layout.name, s->st.storage);
}

static void snap_cmap(sm_cmap *cm, const char *name, uint64_t seq, void *ctx)
{
    snap_vec *v = ctx;
    cmap_snap *s = vec_push(v);
    if (!s)
        return;
    if (sm_cmap_stats(cm, &s->st) != 0) {
        v->n--;
        return;
    }
    snap_label(v, &s->labels, "cmap", name, seq, s->st.layout.name, s->st.storage);
}

static void snap_release(snap_vec *v, size_t labels_at)
{
    for (size_t i = 0; i < v->n; i++) {
        obj_labels *l = (obj_labels *)(void *)(v->items + i * v->elem + labels_at);
        alc_free(l->text, l->size);
    }
    alc_free(v->items, v->cap * v->elem);
    *v = (snap_vec){0};
}

/* ---- Families ---------------------------------------------------------- */

/* The statistic a family reports, read from a snapshot by offset. */
typedef enum { K_U64, K_SIZE, K_UINT, K_DOUBLE } field_kind;

typedef struct family {
    const char *name, *type, *help;
    size_t offset;
    field_kind kind;
} family;

#define POOL_FIELD(f) offsetof(struct sm_pool_stats, f)
#define MAP_FIELD(f) offsetof(struct sm_map_stats, f)
#define CMAP_FIELD(f) offsetof(struct sm_cmap_stats, f)

static const family pool_families[] = {
    {"safemap_pool_gets_total", "counter", "Arrays handed out by sm_pool_get.", POOL_FIELD(gets),
     K_U64},
    {"safemap_pool_puts_total", "counter", "Arrays taken back by sm_pool_put.", POOL_FIELD(puts),
     K_U64},
    {"safemap_pool_news_total", "counter", "Arrays created (first Get of a fresh slot).",
     POOL_FIELD(news), K_U64},
    {"safemap_pool_frees_total", "counter",
     "Arrays whose memory went back to the allocator (cycles, idle cap).", POOL_FIELD(frees),
     K_U64},
    {"safemap_pool_cycles_total", "counter", "sm_pool_cycle calls.", POOL_FIELD(cycles), K_U64},
    {"safemap_pool_live_arrays", "gauge", "Arrays handed out and not yet Put.",
     POOL_FIELD(live_arrays), K_SIZE},
    {"safemap_pool_idle_arrays", "gauge", "Arrays kept for reuse (thread caches included).",
     POOL_FIELD(idle_arrays), K_SIZE},
    {"safemap_pool_live_bytes", "gauge", "Bytes of the arrays handed out and not yet Put.",
     POOL_FIELD(live_bytes), K_SIZE},
    {"safemap_pool_idle_bytes", "gauge", "Bytes of the arrays kept for reuse.",
     POOL_FIELD(idle_bytes), K_SIZE},
    {"safemap_pool_reserved_bytes", "gauge", "Bytes the pool holds from the allocator.",
     POOL_FIELD(reserved_bytes), K_SIZE},
};

static const family map_families[] = {
    {"safemap_map_entries", "gauge", "Entries in the map.", MAP_FIELD(len), K_SIZE},
    {"safemap_map_slots", "gauge", "Slots in live segments (capacity).", MAP_FIELD(capacity),
     K_SIZE},
    {"safemap_map_load_ratio", "gauge", "Entries per slot.", MAP_FIELD(load), K_DOUBLE},
    {"safemap_map_segments", "gauge", "Live segments.", MAP_FIELD(segments), K_SIZE},
    {"safemap_map_free_segments", "gauge", "Retired segments kept for reuse (quarantine included).",
     MAP_FIELD(free_segments), K_SIZE},
    {"safemap_map_bytes", "gauge", "Bytes the map holds from the allocator.", MAP_FIELD(bytes),
     K_SIZE},
    {"safemap_map_directory_depth", "gauge", "Global depth: the directory has 2^depth entries.",
     MAP_FIELD(global_depth), K_UINT},
    {"safemap_map_splits_total", "counter", "Segment splits.", MAP_FIELD(splits), K_U64},
    {"safemap_map_merges_total", "counter", "Segment merges.", MAP_FIELD(merges), K_U64},
    {"safemap_map_rebuilds_total", "counter", "Segments rebuilt in place to drop tombstones.",
     MAP_FIELD(rebuilds), K_U64},
    {"safemap_map_directory_doublings_total", "counter", "Directory doublings.",
     MAP_FIELD(dir_doublings), K_U64},
    {"safemap_map_directory_halvings_total", "counter", "Directory halvings.",
     MAP_FIELD(dir_halvings), K_U64},
};

static const family cmap_families[] = {
    {"safemap_cmap_entries", "gauge", "Entries in the concurrent map.", CMAP_FIELD(len), K_SIZE},
    {"safemap_cmap_slots", "gauge", "Slots in live segments (capacity).", CMAP_FIELD(capacity),
     K_SIZE},
    {"safemap_cmap_segments", "gauge", "Live segments.", CMAP_FIELD(segments), K_SIZE},
    {"safemap_cmap_bytes", "gauge",
     "Bytes the concurrent map holds from the allocator, memory awaiting reclamation included.",
     CMAP_FIELD(bytes), K_SIZE},
    {"safemap_cmap_directory_depth", "gauge", "Global depth: the directory has 2^depth entries.",
     CMAP_FIELD(global_depth), K_UINT},
    {"safemap_cmap_splits_total", "counter", "Segment splits.", CMAP_FIELD(splits), K_U64},
    {"safemap_cmap_merges_total", "counter", "Segment merges.", CMAP_FIELD(merges), K_U64},
    {"safemap_cmap_rebuilds_total", "counter", "Segments rebuilt to drop tombstones.",
     CMAP_FIELD(rebuilds), K_U64},
    {"safemap_cmap_directory_doublings_total", "counter", "Directory doublings.",
     CMAP_FIELD(dir_doublings), K_U64},
    {"safemap_cmap_directory_halvings_total", "counter", "Directory halvings.",
     CMAP_FIELD(dir_halvings), K_U64},
    {"safemap_cmap_read_retries_total", "counter",
     "Reads that ran again because a writer changed the segment meanwhile.",
     CMAP_FIELD(read_retries), K_U64},
    {"safemap_cmap_limbo_bytes", "gauge", "Bytes retired and waiting for readers to finish.",
     CMAP_FIELD(limbo_bytes), K_SIZE},
    {"safemap_cmap_limbo_objects", "gauge", "Objects retired and waiting for readers to finish.",
     CMAP_FIELD(limbo_objects), K_SIZE},
    {"safemap_cmap_limbo_peak_bytes", "gauge", "The most bytes that ever waited for readers.",
     CMAP_FIELD(limbo_peak_bytes), K_SIZE},
    {"safemap_cmap_limbo_bound_bytes", "gauge",
     "Waiting bytes over which writers wait for readers.", CMAP_FIELD(limbo_bound_bytes), K_SIZE},
    {"safemap_cmap_reclaimed_total", "counter",
     "Retired objects freed once no reader could see them.", CMAP_FIELD(reclaimed), K_U64},
    {"safemap_cmap_grace_waits_total", "counter", "Times a writer waited for readers.",
     CMAP_FIELD(grace_waits), K_U64},
};

/* The event codes, by -code; the others are return values, never counted. */
static const char *const code_names[SM_NCODES] = {
    [-SM_ELAYOUT] = "SM_ELAYOUT",   [-SM_EDOUBLE] = "SM_EDOUBLE", [-SM_EFOREIGN] = "SM_EFOREIGN",
    [-SM_ECORRUPT] = "SM_ECORRUPT", [-SM_ESTALE] = "SM_ESTALE",   [-SM_EBUSY] = "SM_EBUSY"};

/* Output: every fprintf result is folded into `failed`. */
typedef struct writer {
    FILE *out;
    bool failed;
} writer;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
emit(writer *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vfprintf(w->out, fmt, ap) < 0)
        w->failed = true;
    va_end(ap);
}

static void emit_header(writer *w, const char *name, const char *type, const char *help)
{
    emit(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A sample value.  Prometheus spells the non-finite ones NaN, +Inf, -Inf. */
static void emit_value(writer *w, const void *base, size_t offset, field_kind kind)
{
    const unsigned char *p = (const unsigned char *)base + offset;
    uint64_t u;
    size_t z;
    unsigned ui;
    double d;
    switch (kind) {
    case K_U64:
        memcpy(&u, p, sizeof u);
        emit(w, " %" PRIu64 "\n", u);
        break;
    case K_SIZE:
        memcpy(&z, p, sizeof z);
        emit(w, " %zu\n", z);
        break;
    case K_UINT:
        memcpy(&ui, p, sizeof ui);
        emit(w, " %u\n", ui);
        break;
    case K_DOUBLE:
        memcpy(&d, p, sizeof d);
        if (isnan(d))
            emit(w, " NaN\n");
        else if (isinf(d))
            emit(w, " %sInf\n", d > 0 ? "+" : "-");
        else
            emit(w, " %.17g\n", d);
        break;
    }
}

/* The families shared by pools and maps, over a snapshot vector whose
 * elements hold their statistics at offset 0 and their labels at
 * labels_at. */
typedef struct object_kind {
    const char *prefix; /* "safemap_pool" */
    const char *what;   /* "pool" */
    const family *families;
    size_t nfamilies;
    size_t labels_at, misuse_at, check_at;
} object_kind;

static const obj_labels *snap_labels(const snap_vec *v, const object_kind *k, size_t i)
{
    return (const obj_labels *)(const void *)(v->items + i * v->elem + k->labels_at);
}

static const void *snap_stats(const snap_vec *v, size_t i)
{
    return v->items + i * v->elem;
}

static void emit_objects(writer *w, const snap_vec *v, const object_kind *k)
{
    if (v->n == 0)
        return;
    char name[96], help[128];
    snprintf(name, sizeof name, "%s_info", k->prefix);
    snprintf(help, sizeof help, "One series per live %s (value 1), with its check level.", k->what);
    emit_header(w, name, "gauge", help);
    for (size_t i = 0; i < v->n; i++) {
        int check;
        memcpy(&check, (const unsigned char *)snap_stats(v, i) + k->check_at, sizeof check);
        emit(w, "%s{%s,check=\"%s\"} 1\n", name, snap_labels(v, k, i)->text, chk_level_name(check));
    }
    for (size_t f = 0; f < k->nfamilies; f++) {
        const family *fam = &k->families[f];
        emit_header(w, fam->name, fam->type, fam->help);
        for (size_t i = 0; i < v->n; i++) {
            emit(w, "%s{%s}", fam->name, snap_labels(v, k, i)->text);
            emit_value(w, snap_stats(v, i), fam->offset, fam->kind);
        }
    }
    snprintf(name, sizeof name, "%s_misuse_events_total", k->prefix);
    snprintf(help, sizeof help, "Misuse events raised by the %s, by code.", k->what);
    emit_header(w, name, "counter", help);
    for (size_t i = 0; i < v->n; i++) {
        uint64_t misuse[SM_NCODES];
        memcpy(misuse, (const unsigned char *)snap_stats(v, i) + k->misuse_at, sizeof misuse);
        for (int c = 0; c < SM_NCODES; c++)
            if (code_names[c])
                emit(w, "%s{%s,code=\"%s\"} %" PRIu64 "\n", name, snap_labels(v, k, i)->text,
                     code_names[c], misuse[c]);
    }
}

static void emit_pool_array_bytes(writer *w, const snap_vec *pools, const object_kind *k)
{
    if (pools->n == 0)
        return;
    emit_header(w, "safemap_pool_array_bytes", "gauge", "Bytes of one array of the pool's layout.");
    for (size_t i = 0; i < pools->n; i++) {
        const struct sm_pool_stats *st = snap_stats(pools, i);
        emit(w, "safemap_pool_array_bytes{%s} %zu\n", snap_labels(pools, k, i)->text,
             st->layout.elem_size * st->layout.len);
    }
}

static void emit_probe_distances(writer *w, const snap_vec *maps, const object_kind *k)
{
    if (maps->n == 0)
        return;
    emit_header(w, "safemap_map_probe_distance_entries", "gauge",
                "Entries by distance from their home slot (distance 15+ counts 15 or more).");
    for (size_t i = 0; i < maps->n; i++) {
        const struct sm_map_stats *st = snap_stats(maps, i);
        for (int d = 0; d < SM_PROBE_BUCKETS; d++)
            emit(w, "safemap_map_probe_distance_entries{%s,distance=\"%d%s\"} %" PRIu64 "\n",
                 snap_labels(maps, k, i)->text, d, d == SM_PROBE_BUCKETS - 1 ? "+" : "",
                 st->probe[d]);
    }
}

static void emit_process(writer *w, const struct sm_stats *st)
{
    emit_header(w, "safemap_pools", "gauge", "Live pools.");
    emit(w, "safemap_pools %zu\n", st->pools);
    emit_header(w, "safemap_maps", "gauge", "Live maps.");
    emit(w, "safemap_maps %zu\n", st->maps);
    emit_header(w, "safemap_held_bytes", "gauge",
                "Bytes held from the allocator now, by every map and pool.");
    emit(w, "safemap_held_bytes %zu\n", st->bytes_held);
    emit_header(w, "safemap_allocator_allocations_total", "counter",
                "Allocator calls that returned memory, since start.");
    emit(w, "safemap_allocator_allocations_total %" PRIu64 "\n", st->allocs);
    emit_header(w, "safemap_allocator_frees_total", "counter", "Allocator frees, since start.");
    emit(w, "safemap_allocator_frees_total %" PRIu64 "\n", st->frees);
    emit_header(w, "safemap_misuse_events_total", "counter",
                "Misuse events raised, all objects (freed ones included), by code.");
    for (int c = 0; c < SM_NCODES; c++)
        if (code_names[c])
            emit(w, "safemap_misuse_events_total{code=\"%s\"} %" PRIu64 "\n", code_names[c],
                 st->misuse[c]);
}

/* ---- The entry point --------------------------------------------------- */

static const object_kind pool_kind = {"safemap_pool",
                                      "pool",
                                      pool_families,
                                      sizeof pool_families / sizeof pool_families[0],
                                      offsetof(pool_snap, labels),
                                      offsetof(struct sm_pool_stats, misuse),
                                      offsetof(struct sm_pool_stats, check)};

static const object_kind map_kind = {"safemap_map",
                                     "map",
                                     map_families,
                                     sizeof map_families / sizeof map_families[0],
                                     offsetof(map_snap, labels),
                                     offsetof(struct sm_map_stats, misuse),
                                     offsetof(struct sm_map_stats, check)};

static const object_kind cmap_kind = {"safemap_cmap",
                                      "concurrent map",
                                      cmap_families,
                                      sizeof cmap_families / sizeof cmap_families[0],
                                      offsetof(cmap_snap, labels),
                                      offsetof(struct sm_cmap_stats, misuse),
                                      offsetof(struct sm_cmap_stats, check)};

int sm_metrics_write(FILE *out)
{
    if (!out)
        return chk_einval("sm_metrics_write", "out is NULL");
    /* The process-wide totals first, so that they do not count the
     * snapshot's own memory. */
    struct sm_stats process;
    sm_stats_read(&process);
    snap_vec pools = {NULL, 0, 0, sizeof(pool_snap), false};
    snap_vec maps = {NULL, 0, 0, sizeof(map_snap), false};
    snap_vec cmaps = {NULL, 0, 0, sizeof(cmap_snap), false};
    reg_each_pool(snap_pool, &pools);
    reg_each_map(snap_map, &maps);
    cmap_each(snap_cmap, &cmaps);

    int rc = SM_ENOMEM;
    if (!pools.failed && !maps.failed && !cmaps.failed) {
        writer w = {out, false};
        emit_process(&w, &process);
        emit_objects(&w, &pools, &pool_kind);
        emit_pool_array_bytes(&w, &pools, &pool_kind);
        emit_objects(&w, &maps, &map_kind);
        emit_probe_distances(&w, &maps, &map_kind);
        emit_objects(&w, &cmaps, &cmap_kind);
        /* A buffered stream reports a full disk only when flushed. */
        if (!w.failed && fflush(out) != 0)
            w.failed = true;
        rc = w.failed ? chk_eio("sm_metrics_write", "writing the exposition") : 0;
    }
    snap_release(&pools, pool_kind.labels_at);
    snap_release(&maps, map_kind.labels_at);
    snap_release(&cmaps, cmap_kind.labels_at);
    return rc;
}
