/*
 * depot.c - idle arrays between threads: the depot, magazines, the idle cap.
 *
 * An idle array waits in one of three places, nearest first: its thread's
 * cache (tcache.c), the depot here, and at SM_CHECK_FULL the quarantine
 * (pool.c).  The depot is two vectors under the pool's lock: `current`,
 * put since the last cycle, and `victim`, which survived one cycle; Get
 * takes from current first.  A thread cache trades half a magazine at a
 * time with the depot, so the lock is taken once per many calls.
 *
 * Invariant (lock held): depot + quarantine + the caches' credits (each
 * cache's hot slot and magazine capacity) <= idle_limit, so max_idle_bytes
 * is a hard cap however the threads' caches fill.  An array that would
 * break it goes back to the allocator instead.
 */
#include "pool_internal.h"

#include <string.h>

#define DEPOT_FIRST_CAP 64

bool depot_vec_push(sm_pool *p, vec *v, entry e)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : DEPOT_FIRST_CAP;
        entry *nv = pool_alloc(p, cap * sizeof(entry), _Alignof(entry));
        if (!nv)
            return false;
        if (v->n)
            memcpy(nv, v->v, v->n * sizeof(entry));
        if (v->v)
            pool_release(p, v->v, v->cap * sizeof(entry));
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = e;
    return true;
}

void depot_vec_drop(sm_pool *p, vec *v)
{
    if (v->v)
        pool_release(p, v->v, v->cap * sizeof(entry));
    v->v = NULL;
    v->n = v->cap = 0;
}

size_t depot_idle_count(const sm_pool *p)
{
    return p->current.n + p->victim.n + p->qn + p->qreserved;
}

/* Lock held.  Room for one more idle array under the cap? */
static bool idle_room(const sm_pool *p)
{
    return p->idle_limit == SIZE_MAX || depot_idle_count(p) + p->credits < p->idle_limit;
}

/* Lock held.  An array that is coming back goes to the depot, or back to the
 * allocator when the cap (or memory for the depot's vector) says no. */
void depot_put(sm_pool *p, entry e)
{
    SM_ASSERT(pool_locked(p));
    if (!idle_room(p) || !depot_vec_push(p, &p->current, e)) {
        slab_release(p, e);
        return;
    }
    st_move(e.st, ST_IDLE);
}

bool depot_pop(sm_pool *p, entry *e)
{
    SM_ASSERT(pool_locked(p));
    if (p->current.n) {
        *e = p->current.v[--p->current.n];
        return true;
    }
    if (p->victim.n) {
        *e = p->victim.v[--p->victim.n];
        return true;
    }
    return false;
}

/* Lock held.  Releases idle arrays until the cap holds again. */
void depot_trim(sm_pool *p)
{
    SM_ASSERT(pool_locked(p));
    entry e;
    while (p->idle_limit != SIZE_MAX && depot_idle_count(p) + p->credits > p->idle_limit &&
           (p->victim.n || p->current.n)) {
        depot_pop(p, &e);
        slab_release(p, e);
    }
}

/* Lock held (the owner's own cache, or any cache with the world stopped). */
void depot_mag_flush(sm_pool *p, tcache *tc, uint32_t count)
{
    SM_ASSERT(pool_locked(p));
    for (uint32_t i = 0; i < count; i++)
        depot_put(p, tc->mag[i]);
    memmove(tc->mag, tc->mag + count, (tc->n - count) * sizeof(entry));
    tc->n -= count;
}

void depot_mag_refill(sm_pool *p, tcache *tc)
{
    SM_ASSERT(pool_locked(p));
    uint32_t want = tc->cap / 2 ? tc->cap / 2 : 1;
    entry e;
    while (tc->n < want && depot_pop(p, &e))
        tc->mag[tc->n++] = e;
    /* The stack's top should be the most recently put: reverse what came. */
    for (uint32_t i = 0, j = tc->n ? tc->n - 1 : 0; i < j; i++, j--) {
        entry t = tc->mag[i];
        tc->mag[i] = tc->mag[j];
        tc->mag[j] = t;
    }
}

/* Lock held, the owner's cache: files an array as idle there (hot slot, the
 * previous hot one pushed down), making room by sending the older half of
 * the magazine to the depot; or to the depot when the cache has no room. */
void depot_cache_put(sm_pool *p, tcache *tc, entry e)
{
    SM_ASSERT(pool_locked(p));
    if (!tc || !tc->hot_ok) {
        depot_put(p, e);
        return;
    }
    st_move(e.st, ST_IDLE);
    if (tc->hot_full) {
        if (tc->n == tc->cap && tc->cap)
            depot_mag_flush(p, tc, tc->cap / 2 ? tc->cap / 2 : 1);
        if (tc->n < tc->cap)
            tc->mag[tc->n++] = tc->hot;
        else
            depot_put(p, tc->hot);
    }
    tc->hot = e;
    tc->hot_full = true;
}
