/*
 * lincheck_maps.h - maps for the concurrency tests to drive through
 * lc_target (lincheck.h): sm_cmap itself, two maps that are right by
 * construction, and broken variants of them that the tests must catch.
 *
 *   lm_cmap     sm_cmap; update goes through sm_cmap_update().
 *   lm_locked   sm_map behind one mutex: linearizable by construction.
 *               Broken variant: update reads and writes in two critical
 *               sections, so a writer can slip in between (lost updates).
 *   lm_seq      a small table with a seqlock per slot, the reader protocol
 *               sm_cmap uses.  A writer (under the slot's mutex) makes the
 *               sequence odd, writes, and makes it even again; a reader
 *               copies the slot and retries unless it saw the same even
 *               number before and after.  Broken variant: readers skip the
 *               validation (torn reads).  Writers yield half way through a
 *               value, so that an unvalidated read is easy to catch.
 *   lm_stale    wraps any of them: each thread remembers the last value it
 *               read of a key and answers every other get of it from that
 *               memory (stale reads).
 *
 * Every shared word of lm_seq is an atomic, so ThreadSanitizer sees no race
 * even in the broken mode: what breaks is the protocol, not the memory
 * model.  Values are int64_t[len] with len <= LM_MAX_LEN.
 */
#ifndef SM_LINCHECK_MAPS_H
#define SM_LINCHECK_MAPS_H

#include "lincheck.h"

#define LM_MAX_LEN LC_MAX_VALUE_LEN

/* ---- sm_cmap --------------------------------------------------------------- */

typedef struct lm_cmap {
    sm_cmap *map;
    size_t len;
} lm_cmap;

typedef struct lm_cmap_update {
    const int64_t *value;
    int64_t *old;
    int *inserted;
    size_t len;
} lm_cmap_update;

/* The update function: keep the old value, write the new one. */
static inline void lm_cmap_replace(void *value, int inserted, void *ctx)
{
    lm_cmap_update *a = ctx;
    memcpy(a->old, value, a->len * sizeof *a->old);
    *a->inserted = inserted;
    memcpy(value, a->value, a->len * sizeof *a->value);
}

static inline int lm_cmap_put(void *ctx, int64_t key, const int64_t *value)
{
    return sm_cmap_put(((lm_cmap *)ctx)->map, key, value);
}

static inline int lm_cmap_get(void *ctx, int64_t key, int64_t *out)
{
    return sm_cmap_get(((lm_cmap *)ctx)->map, key, out);
}

static inline int lm_cmap_del(void *ctx, int64_t key)
{
    return sm_cmap_del(((lm_cmap *)ctx)->map, key);
}

static inline int lm_cmap_upd(void *ctx, int64_t key, const int64_t *value, int64_t *old,
                              int *inserted)
{
    lm_cmap *m = ctx;
    lm_cmap_update a = {.value = value, .old = old, .inserted = inserted, .len = m->len};
    return sm_cmap_update(m->map, key, lm_cmap_replace, &a);
}

/* Opens an sm_cmap of int64_t[len]; returns what sm_cmap_new returned. */
static inline int lm_cmap_open(lm_cmap *m, lc_target *t, size_t len, const char *name)
{
    sm_map_opts o = {
        .layout = SM_LAYOUT(int64_t, len), .storage = SM_INLINE, .check = SM_CHECK_CHEAP};
    m->len = len;
    *t = (lc_target){.name = name,
                     .ctx = m,
                     .value_len = len,
                     .put = lm_cmap_put,
                     .get = lm_cmap_get,
                     .del = lm_cmap_del,
                     .update = lm_cmap_upd};
    return sm_cmap_new(&m->map, &o);
}

static inline void lm_cmap_close(lm_cmap *m)
{
    sm_cmap_free(m->map);
}

/* ---- sm_map behind a mutex ------------------------------------------------- */

typedef struct lm_locked {
    pthread_mutex_t mu;
    sm_map *map;
    int split_update; /* broken: update reads and writes in two critical sections */
} lm_locked;

static inline int lm_locked_put(void *ctx, int64_t key, const int64_t *value)
{
    lm_locked *m = ctx;
    pthread_mutex_lock(&m->mu);
    int rc = sm_map_put(m->map, key, value);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static inline int lm_locked_get(void *ctx, int64_t key, int64_t *out)
{
    lm_locked *m = ctx;
    pthread_mutex_lock(&m->mu);
    int rc = sm_map_get(m->map, key, out);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static inline int lm_locked_del(void *ctx, int64_t key)
{
    lm_locked *m = ctx;
    pthread_mutex_lock(&m->mu);
    int rc = sm_map_del(m->map, key);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static inline int lm_locked_update(void *ctx, int64_t key, const int64_t *value, int64_t *old,
                                   int *inserted)
{
    lm_locked *m = ctx;
    pthread_mutex_lock(&m->mu);
    int rc = sm_map_get(m->map, key, old);
    if (m->split_update) {
        /* The bug: another writer may slip in here. */
        pthread_mutex_unlock(&m->mu);
        sched_yield();
        pthread_mutex_lock(&m->mu);
    }
    *inserted = rc == SM_ENOENT;
    rc = sm_map_put(m->map, key, value);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static inline int lm_locked_open(lm_locked *m, lc_target *t, size_t len, int split_update)
{
    sm_map_opts o = {
        .layout = SM_LAYOUT(int64_t, len), .storage = SM_INLINE, .check = SM_CHECK_CHEAP};
    pthread_mutex_init(&m->mu, NULL);
    m->split_update = split_update;
    *t = (lc_target){.name = split_update ? "sm_map, update in two critical sections"
                                          : "sm_map behind a mutex",
                     .ctx = m,
                     .value_len = len,
                     .put = lm_locked_put,
                     .get = lm_locked_get,
                     .del = lm_locked_del,
                     .update = lm_locked_update};
    int rc = sm_map_new(&m->map, &o);
    if (rc != 0)
        pthread_mutex_destroy(&m->mu);
    return rc;
}

static inline void lm_locked_close(lm_locked *m)
{
    sm_map_free(m->map);
    pthread_mutex_destroy(&m->mu);
}

/* ---- A seqlock table --------------------------------------------------------- */

#define LM_SEQ_SLOTS 256 /* keys it can hold; a slot, once claimed, keeps its key */

typedef struct lm_seq_slot {
    atomic_int claimed; /* 1 once `key` is set; never reset */
    _Atomic int64_t key;
    pthread_mutex_t writer;
    atomic_uint_fast64_t seq; /* even: stable; odd: being written */
    atomic_int present;
    _Atomic int64_t v[LM_MAX_LEN];
} lm_seq_slot;

typedef struct lm_seq {
    lm_seq_slot slot[LM_SEQ_SLOTS];
    pthread_mutex_t claim; /* serialises claiming slots */
    size_t len;
    int skip_validation; /* broken: readers take one unchecked copy */
} lm_seq;

/* The slot holding key, or NULL; with `claim`, claims a free one for it
 * (NULL when the table is full). */
static inline lm_seq_slot *lm_seq_find(lm_seq *m, int64_t key, int claim)
{
    size_t start = (size_t)(lc_mix((uint64_t)key) % LM_SEQ_SLOTS);
    for (int locked = 0; locked < 2; locked++) {
        for (size_t i = 0; i < LM_SEQ_SLOTS; i++) {
            lm_seq_slot *s = &m->slot[(start + i) % LM_SEQ_SLOTS];
            if (!atomic_load_explicit(&s->claimed, memory_order_acquire)) {
                if (!locked)
                    break;
                atomic_store_explicit(&s->key, key, memory_order_relaxed);
                atomic_store_explicit(&s->claimed, 1, memory_order_release);
                pthread_mutex_unlock(&m->claim);
                return s;
            }
            if (atomic_load_explicit(&s->key, memory_order_relaxed) == key) {
                if (locked)
                    pthread_mutex_unlock(&m->claim);
                return s;
            }
        }
        if (!claim)
            return NULL;
        if (!locked)
            pthread_mutex_lock(&m->claim); /* look again, then claim */
    }
    pthread_mutex_unlock(&m->claim);
    return NULL;
}

static inline void lm_seq_write(lm_seq *m, lm_seq_slot *s, const int64_t *value)
{
    uint64_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&s->present, value != NULL, memory_order_relaxed);
    for (size_t i = 0; value && i < m->len; i++) {
        if (i == m->len / 2)
            sched_yield(); /* a writer preempted half way */
        atomic_store_explicit(&s->v[i], value[i], memory_order_relaxed);
    }
    atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
}

/* Copies the slot into out; returns 1 if the key was present. */
static inline int lm_seq_read(const lm_seq *m, lm_seq_slot *s, int64_t *out)
{
    for (;;) {
        uint64_t before = atomic_load_explicit(&s->seq, memory_order_acquire);
        int present = atomic_load_explicit(&s->present, memory_order_relaxed);
        for (size_t i = 0; present && i < m->len; i++)
            out[i] = atomic_load_explicit(&s->v[i], memory_order_relaxed);
        if (m->skip_validation)
            return present;
        atomic_thread_fence(memory_order_acquire);
        uint64_t after = atomic_load_explicit(&s->seq, memory_order_relaxed);
        if (before == after && !(before & 1))
            return present;
        sched_yield();
    }
}

static inline int lm_seq_put(void *ctx, int64_t key, const int64_t *value)
{
    lm_seq_slot *s = lm_seq_find(ctx, key, 1);
    if (!s)
        return SM_ENOMEM;
    pthread_mutex_lock(&s->writer);
    lm_seq_write(ctx, s, value);
    pthread_mutex_unlock(&s->writer);
    return 0;
}

static inline int lm_seq_get(void *ctx, int64_t key, int64_t *out)
{
    lm_seq_slot *s = lm_seq_find(ctx, key, 0);
    return s && lm_seq_read(ctx, s, out) ? 0 : SM_ENOENT;
}

static inline int lm_seq_del(void *ctx, int64_t key)
{
    lm_seq_slot *s = lm_seq_find(ctx, key, 0);
    if (!s)
        return SM_ENOENT;
    pthread_mutex_lock(&s->writer);
    int present = atomic_load_explicit(&s->present, memory_order_relaxed);
    if (present)
        lm_seq_write(ctx, s, NULL);
    pthread_mutex_unlock(&s->writer);
    return present ? 0 : SM_ENOENT;
}

static inline int lm_seq_update(void *ctx, int64_t key, const int64_t *value, int64_t *old,
                                int *inserted)
{
    lm_seq *m = ctx;
    lm_seq_slot *s = lm_seq_find(m, key, 1);
    if (!s)
        return SM_ENOMEM;
    pthread_mutex_lock(&s->writer);
    *inserted = !atomic_load_explicit(&s->present, memory_order_relaxed);
    for (size_t i = 0; i < m->len; i++)
        old[i] = atomic_load_explicit(&s->v[i], memory_order_relaxed);
    lm_seq_write(m, s, value);
    pthread_mutex_unlock(&s->writer);
    return 0;
}

static inline lm_seq *lm_seq_new(lc_target *t, size_t len, int skip_validation)
{
    lm_seq *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->claim, NULL);
    m->len = len;
    m->skip_validation = skip_validation;
    for (int i = 0; i < LM_SEQ_SLOTS; i++) {
        lm_seq_slot *s = &m->slot[i];
        atomic_init(&s->claimed, 0);
        atomic_init(&s->key, 0);
        pthread_mutex_init(&s->writer, NULL);
        atomic_init(&s->seq, 0);
        atomic_init(&s->present, 0);
        for (int j = 0; j < LM_MAX_LEN; j++)
            atomic_init(&s->v[j], 0);
    }
    *t = (lc_target){.name = skip_validation ? "seqlock map, reads not validated" : "seqlock map",
                     .ctx = m,
                     .value_len = len,
                     .put = lm_seq_put,
                     .get = lm_seq_get,
                     .del = lm_seq_del,
                     .update = lm_seq_update};
    return m;
}

static inline void lm_seq_free(lm_seq *m)
{
    for (int i = 0; i < LM_SEQ_SLOTS; i++)
        pthread_mutex_destroy(&m->slot[i].writer);
    pthread_mutex_destroy(&m->claim);
    free(m);
}

/* ---- Stale reads, around any map ------------------------------------------ */

#define LM_STALE_WAYS 64 /* per-thread memory: one key per way */

typedef struct lm_stale {
    lc_target inner;
} lm_stale;

typedef struct lm_stale_way {
    int state; /* 0 empty, 1 remembered absent, 2 remembered value */
    int64_t key;
    int64_t value[LM_MAX_LEN];
} lm_stale_way;

static _Thread_local lm_stale_way lm_stale_memory[LM_STALE_WAYS];
static _Thread_local unsigned lm_stale_turn;

static inline int lm_stale_get(void *ctx, int64_t key, int64_t *out)
{
    lm_stale *w = ctx;
    size_t len = w->inner.value_len;
    lm_stale_way *way = &lm_stale_memory[lc_mix((uint64_t)key) % LM_STALE_WAYS];
    if (way->state && way->key == key && (++lm_stale_turn & 1)) {
        memcpy(out, way->value, len * sizeof *out);
        return way->state == 2 ? 0 : SM_ENOENT;
    }
    int rc = w->inner.get(w->inner.ctx, key, out);
    if (rc == 0 || rc == SM_ENOENT) {
        way->state = rc == 0 ? 2 : 1;
        way->key = key;
        memcpy(way->value, out, len * sizeof *out);
    }
    return rc;
}

static inline int lm_stale_put(void *ctx, int64_t key, const int64_t *value)
{
    lm_stale *w = ctx;
    return w->inner.put(w->inner.ctx, key, value);
}

static inline int lm_stale_del(void *ctx, int64_t key)
{
    lm_stale *w = ctx;
    return w->inner.del(w->inner.ctx, key);
}

static inline int lm_stale_update(void *ctx, int64_t key, const int64_t *value, int64_t *old,
                                  int *inserted)
{
    lm_stale *w = ctx;
    return w->inner.update(w->inner.ctx, key, value, old, inserted);
}

/* Wraps *inner (which must outlive the wrapper) into *t. */
static inline void lm_stale_wrap(lm_stale *w, lc_target *t, const lc_target *inner,
                                 const char *name)
{
    w->inner = *inner;
    *t = (lc_target){.name = name,
                     .ctx = w,
                     .value_len = inner->value_len,
                     .put = lm_stale_put,
                     .get = lm_stale_get,
                     .del = lm_stale_del,
                     .update = inner->update ? lm_stale_update : NULL};
}

#endif /* SM_LINCHECK_MAPS_H */
