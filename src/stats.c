/*
 * stats.c - the registry of live objects, and process-wide totals.
 *
 * Metrics and heap profiles describe "every live pool and map", so each map
 * and pool registers itself when created and leaves when freed.  The
 * registry is two intrusive-free arrays of pointers under one mutex: it is
 * touched only at creation, destruction and by the (rare) walkers, never on
 * a hot path.  Its arrays are taken from the library's allocator like every
 * other byte, and released when the last object leaves, so that the
 * library holds nothing once every object is freed.
 *
 * A registration that cannot get memory is dropped silently: the object
 * works, it is only missing from metrics and profiles.  That keeps
 * sm_map_new()/sm_pool_new() from failing for a diagnostic's sake.
 *
 * The pool relies on the registry too: a thread's caches are given back at
 * its exit only to pools still registered, a foreign pointer is looked up
 * in the other registered pools, and fork() holds the registry lock (then
 * each pool's lock) across the fork, so that the child finds every list
 * consistent.  Lock order: the registry lock before any pool's lock.
 */
#include "internal.h"

#include <pthread.h>
#include <string.h>

/* seq numbers the objects of one kind in order of creation, from 1: a label
 * for metrics and profiles that, unlike the address, is the same in every
 * run of a deterministic program. */
typedef struct reg_entry {
    void *obj;
    uint64_t seq;
} reg_entry;

typedef struct reg_list {
    reg_entry *items;
    size_t len, cap;
    uint64_t created;
} reg_list;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static reg_list reg_maps, reg_pools;

static void list_add(reg_list *l, void *obj)
{
    uint64_t seq = ++l->created;
    if (l->len == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        reg_entry *items = alc_alloc(cap * sizeof *items, _Alignof(reg_entry));
        if (!items)
            return;
        if (l->len)
            memcpy(items, l->items, l->len * sizeof *items);
        alc_free(l->items, l->cap * sizeof *items);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->len++] = (reg_entry){obj, seq};
}

static void list_del(reg_list *l, void *obj)
{
    for (size_t i = 0; i < l->len; i++) {
        if (l->items[i].obj == obj) {
            l->items[i] = l->items[--l->len];
            break;
        }
    }
    if (l->len == 0 && l->items) {
        alc_free(l->items, l->cap * sizeof *l->items);
        l->items = NULL;
        l->cap = 0;
    }
}

static void locked_add(reg_list *l, void *obj)
{
    pthread_mutex_lock(&reg_lock);
    list_add(l, obj);
    pthread_mutex_unlock(&reg_lock);
}

static void locked_del(reg_list *l, void *obj)
{
    pthread_mutex_lock(&reg_lock);
    list_del(l, obj);
    pthread_mutex_unlock(&reg_lock);
}

void reg_map_add(sm_map *m)
{
    locked_add(&reg_maps, m);
}

void reg_map_del(sm_map *m)
{
    locked_del(&reg_maps, m);
}

void reg_pool_add(sm_pool *p)
{
    locked_add(&reg_pools, p);
}

void reg_pool_del(sm_pool *p)
{
    locked_del(&reg_pools, p);
}

void reg_each_map(void (*f)(sm_map *m, uint64_t seq, void *ctx), void *ctx)
{
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < reg_maps.len; i++)
        f(reg_maps.items[i].obj, reg_maps.items[i].seq, ctx);
    pthread_mutex_unlock(&reg_lock);
}

void reg_each_pool_held(void (*f)(sm_pool *p, uint64_t seq, void *ctx), void *ctx)
{
    for (size_t i = 0; i < reg_pools.len; i++)
        f(reg_pools.items[i].obj, reg_pools.items[i].seq, ctx);
}

void reg_each_pool(void (*f)(sm_pool *p, uint64_t seq, void *ctx), void *ctx)
{
    pthread_mutex_lock(&reg_lock);
    reg_each_pool_held(f, ctx);
    pthread_mutex_unlock(&reg_lock);
}

void reg_hold(void)
{
    pthread_mutex_lock(&reg_lock);
}

void reg_release(void)
{
    pthread_mutex_unlock(&reg_lock);
}

void reg_counts(size_t *maps, size_t *pools)
{
    pthread_mutex_lock(&reg_lock);
    *maps = reg_maps.len;
    *pools = reg_pools.len;
    pthread_mutex_unlock(&reg_lock);
}

void sm_stats_read(struct sm_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    reg_counts(&out->maps, &out->pools);
    alc_stats(&out->bytes_held, &out->allocs, &out->frees);
    chk_misuse_counts(out->misuse);
}
