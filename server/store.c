/*
 * store.c - safemapd's registry of named maps (store.h).
 *
 * A chained hash table from name to smc_map under a read-write lock that
 * prefers writers (so a create or drop is not starved by a stream of
 * lookups).  The table holds one reference to each map (smc_map_retain /
 * smc_map_release); smd_store_get adds one for the caller, so a map dropped
 * while commands use it is freed by the last of them.  The table doubles
 * when it holds more names than buckets; if that allocation fails the
 * chains just grow longer.
 *
 * The write gate is a second writer-preferring rwlock: write commands hold
 * it shared, smd_store_pause holds it exclusively.  Writer preference means
 * a pause waits only for the writes in progress, not for a stream of new
 * ones; it also means a thread must never enter the gate twice.
 *
 * Fork.  smd_store_create and smd_store_drop are writes: call them inside
 * the gate, so that a child forked while the gate is paused finds the
 * registry lock free and can walk the store.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    smc_map *m;
} entry;

struct smd_store {
    pthread_rwlock_t lock; /* the table */
    entry **buckets;
    size_t nbuckets, count;
    smc_write_fn obs_fn; /* under lock */
    void *obs_ctx;
    atomic_uint_fast64_t generation;
    pthread_rwlock_t gate;
};

static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3u;
    return h;
}

static void rwlock_init_writer_first(pthread_rwlock_t *l)
{
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
#ifdef PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    pthread_rwlock_init(l, &a);
    pthread_rwlockattr_destroy(&a);
}

int smd_store_new(smd_store **out)
{
    smd_store *st = calloc(1, sizeof *st);
    if (!st)
        return SM_ENOMEM;
    st->nbuckets = 64;
    st->buckets = calloc(st->nbuckets, sizeof *st->buckets);
    if (!st->buckets) {
        free(st);
        return SM_ENOMEM;
    }
    rwlock_init_writer_first(&st->lock);
    rwlock_init_writer_first(&st->gate);
    atomic_init(&st->generation, 0);
    *out = st;
    return 0;
}

void smd_store_free(smd_store *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->nbuckets; i++) {
        entry *e = st->buckets[i];
        while (e) {
            entry *next = e->next;
            smc_map_release(e->m);
            free(e);
            e = next;
        }
    }
    free(st->buckets);
    pthread_rwlock_destroy(&st->lock);
    pthread_rwlock_destroy(&st->gate);
    free(st);
}

/* The link that points at name's entry (or the chain's terminating NULL). */
static entry **find_link(smd_store *st, const char *name, size_t n, uint64_t h)
{
    entry **link = &st->buckets[h & (st->nbuckets - 1)];
    for (; *link; link = &(*link)->next) {
        const char *mn = smc_map_name((*link)->m);
        if ((*link)->hash == h && strlen(mn) == n && memcmp(mn, name, n) == 0)
            break;
    }
    return link;
}

static void maybe_grow(smd_store *st)
{
    if (st->count <= st->nbuckets)
        return;
    size_t nb = st->nbuckets * 2;
    entry **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < st->nbuckets; i++) {
        entry *e = st->buckets[i];
        while (e) {
            entry *next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = next;
        }
    }
    free(st->buckets);
    st->buckets = b;
    st->nbuckets = nb;
}

int smd_store_create(smd_store *st, const char *name, size_t n, const smc_spec *spec)
{
    entry *e = malloc(sizeof *e);
    if (!e)
        return SM_ENOMEM;
    smc_map *m;
    int rc = smc_map_new(&m, name, n, spec);
    if (rc != 0) {
        free(e);
        return rc;
    }
    e->m = m;
    e->hash = name_hash(name, n);
    pthread_rwlock_wrlock(&st->lock);
    entry **link = find_link(st, name, n, e->hash);
    if (*link) {
        pthread_rwlock_unlock(&st->lock);
        smc_map_free(m);
        free(e);
        return SMD_EEXISTS;
    }
    if (st->obs_fn)
        smc_map_observe(m, st->obs_fn, st->obs_ctx);
    e->next = NULL;
    *link = e;
    st->count++;
    maybe_grow(st);
    atomic_fetch_add_explicit(&st->generation, 1, memory_order_relaxed);
    pthread_rwlock_unlock(&st->lock);
    return 0;
}

int smd_store_drop(smd_store *st, const char *name, size_t n)
{
    pthread_rwlock_wrlock(&st->lock);
    entry **link = find_link(st, name, n, name_hash(name, n));
    entry *e = *link;
    if (!e) {
        pthread_rwlock_unlock(&st->lock);
        return SM_ENOENT;
    }
    *link = e->next;
    st->count--;
    atomic_fetch_add_explicit(&st->generation, 1, memory_order_relaxed);
    pthread_rwlock_unlock(&st->lock);
    smc_map_release(e->m);
    free(e);
    return 0;
}

smc_map *smd_store_get(smd_store *st, const char *name, size_t n)
{
    pthread_rwlock_rdlock(&st->lock);
    entry *e = *find_link(st, name, n, name_hash(name, n));
    smc_map *m = e ? e->m : NULL;
    if (m)
        smc_map_retain(m);
    pthread_rwlock_unlock(&st->lock);
    return m;
}

void smd_store_put(smd_store *st, smc_map *m)
{
    (void)st;
    smc_map_release(m);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(smc_map_name(*(smc_map *const *)a), smc_map_name(*(smc_map *const *)b));
}

int smd_store_each(smd_store *st, int (*fn)(smc_map *m, void *ctx), void *ctx)
{
    pthread_rwlock_rdlock(&st->lock);
    size_t n = st->count;
    smc_map **all = malloc((n ? n : 1) * sizeof *all);
    if (!all) {
        pthread_rwlock_unlock(&st->lock);
        return SM_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < st->nbuckets; i++)
        for (entry *e = st->buckets[i]; e; e = e->next) {
            smc_map_retain(e->m);
            all[k++] = e->m;
        }
    pthread_rwlock_unlock(&st->lock);
    qsort(all, k, sizeof *all, by_name);
    int rc = 0;
    for (size_t i = 0; i < k; i++) {
        if (rc == 0)
            rc = fn(all[i], ctx);
        smc_map_release(all[i]);
    }
    free(all);
    return rc;
}

size_t smd_store_count(smd_store *st)
{
    pthread_rwlock_rdlock(&st->lock);
    size_t n = st->count;
    pthread_rwlock_unlock(&st->lock);
    return n;
}

uint64_t smd_store_generation(smd_store *st)
{
    return atomic_load_explicit(&st->generation, memory_order_relaxed);
}

void smd_store_observe(smd_store *st, smc_write_fn fn, void *ctx)
{
    pthread_rwlock_wrlock(&st->lock);
    st->obs_fn = fn;
    st->obs_ctx = ctx;
    for (size_t i = 0; i < st->nbuckets; i++)
        for (entry *e = st->buckets[i]; e; e = e->next)
            smc_map_observe(e->m, fn, ctx);
    pthread_rwlock_unlock(&st->lock);
}

void smd_store_gate_enter(smd_store *st)
{
    pthread_rwlock_rdlock(&st->gate);
}

void smd_store_gate_leave(smd_store *st)
{
    pthread_rwlock_unlock(&st->gate);
}

void smd_store_pause(smd_store *st)
{
    pthread_rwlock_wrlock(&st->gate);
}

void smd_store_resume(smd_store *st)
{
    pthread_rwlock_unlock(&st->gate);
}
