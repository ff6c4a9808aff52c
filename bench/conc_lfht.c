/*
 * conc_lfht.c - the rculfhash peer of bench_conc.cpp; see conc_lfht.h.
 * Compiled once per flavour with -DBENCH_LFHT_FLAVOUR=qsbr or =memb, which
 * picks liburcu's flavour header (its macros map rcu_read_lock, call_rcu,
 * synchronize_rcu ... onto that flavour) and the prefix of every function.
 *
 * The table: cds_lfht with automatic resizing from 4096 buckets (32 KiB; from
 * 1 bucket a single inserting thread can wait a long time for the lazy
 * resize worker while chains grow: 30 us per insert measured at 2e4
 * entries), hashed with a
 * 64-bit finaliser of the key (rculfhash orders its split lists by the
 * bit-reversed hash, so every bit must be mixed).  A QSBR thread announces
 * a quiescent state every 64 operations, which bounds the memory waiting
 * for a grace period without costing a fence per read.
 */
/* The unprefixed names (rcu_read_lock, call_rcu ...) mapped onto the flavour;
 * calls into the shared libraries, as a program that is not LGPL links them
 * (no _LGPL_SOURCE inlining). */
#define URCU_API_MAP 1
#define BENCH_CAT2(a, b) a##b
#define BENCH_CAT(a, b) BENCH_CAT2(a, b)

#define BENCH_FLAVOUR_qsbr 1
#define BENCH_FLAVOUR_memb 2
#if BENCH_CAT(BENCH_FLAVOUR_, BENCH_LFHT_FLAVOUR) == 1
#include <urcu/urcu-qsbr.h>
#define BENCH_IS_QSBR 1
#elif BENCH_CAT(BENCH_FLAVOUR_, BENCH_LFHT_FLAVOUR) == 2
#include <urcu/urcu-memb.h>
#define BENCH_IS_QSBR 0
#else
#error "BENCH_LFHT_FLAVOUR must be qsbr or memb"
#endif
#include <urcu/rculfhash.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "conc_lfht.h"

#define FN(name) BENCH_CAT(BENCH_CAT(bench_lfht_, BENCH_LFHT_FLAVOUR), BENCH_CAT(_, name))

#define BENCH_LFHT_INITIAL_BUCKETS 4096

struct bench_lfht {
    struct cds_lfht *ht;
};

struct node {
    struct cds_lfht_node ht;
    int64_t key;
    int64_t value[8];
    struct rcu_head rcu;
};

static unsigned long hash_key(int64_t key)
{
    uint64_t x = (uint64_t)key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (unsigned long)x;
}

static int match_key(struct cds_lfht_node *n, const void *key)
{
    return caa_container_of(n, struct node, ht)->key == *(const int64_t *)key;
}

static void free_node(struct rcu_head *head)
{
    free(caa_container_of(head, struct node, rcu));
}

/* QSBR: a quiescent state every 64 operations of this thread. */
static void tick(void)
{
#if BENCH_IS_QSBR
    static __thread unsigned ops;
    if ((++ops & 63) == 0)
        rcu_quiescent_state();
#endif
}

bench_lfht *FN(new)(void)
{
    bench_lfht *t = malloc(sizeof *t);
    if (!t)
        return NULL;
    t->ht = cds_lfht_new(BENCH_LFHT_INITIAL_BUCKETS, 1, 0,
                         CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
    if (!t->ht) {
        free(t);
        return NULL;
    }
    return t;
}

void FN(thread_online)(void)
{
    rcu_register_thread();
}

void FN(thread_offline)(void)
{
    rcu_unregister_thread();
}

void FN(wait_begin)(void)
{
#if BENCH_IS_QSBR
    rcu_thread_offline();
#endif
}

void FN(wait_end)(void)
{
#if BENCH_IS_QSBR
    rcu_thread_online();
#endif
}

int FN(put)(bench_lfht *t, int64_t key, const int64_t value[8])
{
    struct node *n = malloc(sizeof *n);
    if (!n)
        return -1;
    cds_lfht_node_init(&n->ht);
    n->key = key;
    memcpy(n->value, value, sizeof n->value);
    rcu_read_lock();
    struct cds_lfht_node *old = cds_lfht_add_replace(t->ht, hash_key(key), match_key, &key, &n->ht);
    rcu_read_unlock();
    if (old)
        call_rcu(&caa_container_of(old, struct node, ht)->rcu, free_node);
    tick();
    return 0;
}

int FN(get)(bench_lfht *t, int64_t key, int64_t out[8])
{
    struct cds_lfht_iter it;
    int found = 0;
    rcu_read_lock();
    cds_lfht_lookup(t->ht, hash_key(key), match_key, &key, &it);
    struct cds_lfht_node *hit = cds_lfht_iter_get_node(&it);
    if (hit) {
        memcpy(out, caa_container_of(hit, struct node, ht)->value, 8 * sizeof(int64_t));
        found = 1;
    }
    rcu_read_unlock();
    tick();
    return found;
}

int FN(del)(bench_lfht *t, int64_t key)
{
    struct cds_lfht_iter it;
    int deleted = 0;
    rcu_read_lock();
    cds_lfht_lookup(t->ht, hash_key(key), match_key, &key, &it);
    struct cds_lfht_node *hit = cds_lfht_iter_get_node(&it);
    if (hit && cds_lfht_del(t->ht, hit) == 0) {
        call_rcu(&caa_container_of(hit, struct node, ht)->rcu, free_node);
        deleted = 1;
    }
    rcu_read_unlock();
    tick();
    return deleted;
}

/* The caller is a registered thread (thread_online) outside any read-side
 * section, and the only user of the table. */
void FN(free)(bench_lfht *t)
{
    struct cds_lfht_iter it;
    struct cds_lfht_node *n;
    if (!t)
        return;
    rcu_read_lock();
    cds_lfht_for_each(t->ht, &it, n)
    {
        if (cds_lfht_del(t->ht, n) == 0)
            call_rcu(&caa_container_of(n, struct node, ht)->rcu, free_node);
    }
    rcu_read_unlock();
    /* Waits for the deferred frees.  A QSBR thread waits offline: online,
     * it would hold up the very grace periods it waits for. */
    FN(wait_begin)();
    rcu_barrier();
    cds_lfht_destroy(t->ht, NULL);
    FN(wait_end)();
    free(t);
}
