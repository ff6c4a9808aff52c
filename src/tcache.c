/*
 * tcache.c - per-thread caches: finding this thread's cache of a pool,
 * creating and releasing caches, stopping the world, and fork().
 *
 * A thread's cache of a pool holds one "hot" array and a stack (the
 * magazine) of up to mag_max more, touched on the fast path only by the
 * owner, with no lock and no atomic read-modify-write.  The hot slot is what
 * makes a Get+Put pair cheap: Get takes the array and clears a flag
 * (hot_full), and the slot goes on naming the array it lent and its state
 * byte, so that when that same array comes back (the LIFO pattern) Put
 * finds its state byte there and only sets the flag again, with no lookup.
 *
 * Finding the cache.  Each live pool holds a dense index (the lowest free
 * one, taken at sm_pool_new and given back at sm_pool_free); each thread has
 * a table indexed by it, whose entries hold a pool id (never reused) and
 * the cache.  The first TC_INLINE entries are thread-local storage, read
 * inline by the fast paths through %fs (x86-64) at an offset the pool keeps:
 * one id compare, whatever the number of pools.  Before the table, the
 * inline paths look at a front entry at a fixed TLS offset, the cache this
 * thread last looked up out of line: for a thread using one pool at a time
 * that saves the load of the pool's offset from every call's critical path.
 * Indexes beyond TC_INLINE come from a per-thread heap table, reached
 * through the (still lock-free) slow path, so a thread using many pools
 * pays a function call per operation, not a lock: the cost degrades gently
 * instead of falling off a cliff.  An entry whose id is not its pool's
 * belongs to a freed pool (whose caches died with it) and is simply
 * overwritten.  A thread's caches are given back at its exit (a pthread key
 * destructor), each to its pool if that pool still lives.
 *
 * Memos.  A cache also remembers the slab its owner last put into (and the
 * array its hot slot lent): the fast Put trusts them without rechecking
 * the slab, so before a slab descriptor is reused for other memory,
 * tc_forget_memos() stops the world and has every cache forget both.
 *
 * Stopping the world.  sm_pool_cycle() and the replacement of a table that
 * lock-free readers may hold must know that no thread is inside a fast
 * path.  Each cache has an `active` flag its owner raises around the fast
 * path and a `steal` flag the pool raises; the pool raises every `steal`,
 * issues membarrier(2) (a fence on every running thread, so the owner's
 * cheap store/load pair needs no fence of its own), then waits for every
 * `active` to drop.  After that, owners see `steal` and take the locked slow
 * path until it is lowered.  Without membarrier (or under ThreadSanitizer,
 * which does not model it) the owner side uses a real fence.
 *
 * fork().  Only the forking thread exists in the child, so every other
 * thread's cache there is dead, and any lock held at the fork would stay
 * held forever.  The prepare handler takes the registry lock and then every
 * pool's lock, in registry order, and stops each pool's world; the parent
 * handler undoes that.  The child handler gives the dead threads' caches
 * back to their pools (their arrays become idle in the depot: with the world
 * stopped at the fork no owner was changing them), lowers the `steal` flags
 * of its own, re-registers membarrier for the new process, and releases the
 * locks.  So a child may use every pool it inherited: Get, Put, cycle,
 * reports and sm_pool_free.
 */
#define _GNU_SOURCE
#include "pool_internal.h"

#include <sched.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#endif

bool tc_membarrier;
_Thread_local tc_slot tc_tls[TC_INLINE + 1] SM_TLS_MODEL;
_Thread_local tc_slot tc_front SM_TLS_MODEL;

static pthread_once_t tc_once = PTHREAD_ONCE_INIT;
static pthread_key_t tc_key; /* its destructor gives a thread's caches back */
static _Atomic uint64_t tc_next_seed = 1;
static _Thread_local bool tc_keyed SM_TLS_MODEL;
static _Thread_local tc_slot *tc_more; /* entries TC_INLINE.. of the table */
static _Thread_local uint32_t tc_more_cap;

/* Dense pool indexes: bit i set while a pool holds index i. */
static pthread_mutex_t tc_index_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t tc_index_used[TC_INDEX_MAX / 64];

static void tc_thread_exit(void *unused);
static void tc_fork_prepare(void);
static void tc_fork_parent(void);
static void tc_fork_child(void);

static void membarrier_register(void)
{
#if defined(__linux__) && defined(__NR_membarrier) && !SM_HAVE_TSAN
    tc_membarrier = syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
#endif
}

static void once_init(void)
{
    pthread_key_create(&tc_key, tc_thread_exit);
    membarrier_register();
    pthread_atfork(tc_fork_prepare, tc_fork_parent, tc_fork_child);
}

void tc_init(void)
{
    pthread_once(&tc_once, once_init);
}

uintptr_t tc_fast_slot(uint32_t index)
{
    uint32_t i = index < TC_INLINE ? index : TC_INLINE;
#if TC_SEG_FS
    /* %fs:0 holds the thread pointer itself (the x86-64 TLS ABI). */
    uintptr_t tp;
    __asm__("movq %%fs:0, %0" : "=r"(tp));
    return (uintptr_t)&tc_tls[i] - tp;
#else
    return i;
#endif
}

uint32_t tc_index_take(void)
{
    uint32_t index = TC_NO_INDEX;
    pthread_mutex_lock(&tc_index_lock);
    for (uint32_t w = 0; w < TC_INDEX_MAX / 64; w++) {
        if (~tc_index_used[w]) {
            unsigned bit = (unsigned)__builtin_ctzll(~tc_index_used[w]);
            tc_index_used[w] |= (uint64_t)1 << bit;
            index = w * 64 + bit;
            break;
        }
    }
    pthread_mutex_unlock(&tc_index_lock);
    return index;
}

void tc_index_put(uint32_t index)
{
    if (index == TC_NO_INDEX)
        return;
    pthread_mutex_lock(&tc_index_lock);
    SM_ASSERT(tc_index_used[index / 64] & (uint64_t)1 << (index % 64));
    tc_index_used[index / 64] &= ~((uint64_t)1 << (index % 64));
    pthread_mutex_unlock(&tc_index_lock);
}

/* ---- Stopping the world ------------------------------------------------- */

static void heavy_barrier(void)
{
#if defined(__linux__) && defined(__NR_membarrier) && !SM_HAVE_TSAN
    if (tc_membarrier) {
        if (syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
            /* Registered, so this cannot fail; if it did, fast paths would race. */
            fprintf(stderr, "safemap: membarrier failed\n");
            abort();
        }
        return;
    }
#endif
    atomic_thread_fence(memory_order_seq_cst);
}

void tc_stw_begin(sm_pool *p)
{
    SM_ASSERT(pool_locked(p));
    if (!p->caches)
        return;
    for (tcache *tc = p->caches; tc; tc = tc->next)
        atomic_store_explicit(&tc->steal, 1, memory_order_seq_cst);
    heavy_barrier();
    for (tcache *tc = p->caches; tc; tc = tc->next)
        while (atomic_load_explicit(&tc->active, memory_order_seq_cst))
            sched_yield();
}

void tc_stw_end(sm_pool *p)
{
    SM_ASSERT(pool_locked(p));
    for (tcache *tc = p->caches; tc; tc = tc->next)
        atomic_store_explicit(&tc->steal, 0, memory_order_release);
}

void tc_forget_memos(sm_pool *p)
{
    tc_stw_begin(p);
    for (tcache *tc = p->caches; tc; tc = tc->next) {
        tc->memo_base = UINTPTR_MAX;
        tc->memo = NULL;
        if (!tc->hot_full) /* the lent array's descriptor may be the one */
            tc->hot = (entry){NULL, NULL};
    }
    tc_stw_end(p);
}

/* ---- Thread caches ------------------------------------------------------ */

size_t tc_bytes(const sm_pool *p)
{
    return sizeof(tcache) + p->mag_max * sizeof(entry);
}

static size_t tc_credit(const tcache *tc)
{
    return tc->cap + (tc->hot_ok ? 1 : 0);
}

static uint64_t tc_random(tcache *tc)
{
    uint64_t x = tc->rng; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    tc->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Fast Gets before the next recorded one: uniform in [0, 2N-2], so that one
 * Get in N is recorded on average, at no fixed stride a loop could alias. */
static uint64_t tc_interval(const sm_pool *p, tcache *tc)
{
    if (!p->sample)
        return NO_SAMPLE;
    if (p->sample == 1)
        return 0;
    return tc_random(tc) % (2 * (uint64_t)p->sample - 1);
}

/* Lock held, the owner: counts the Get that found the countdown at zero and
 * starts the next interval.  base moves only here, under the lock, so a
 * snapshot (under the lock) reads base and left as a pair. */
void tc_resample(const sm_pool *p, tcache *tc)
{
    SM_ASSERT(pool_locked(p));
    uint64_t next = tc_interval(p, tc);
    tc->base += 1 + next; /* was base - 0; now one more Get */
    atomic_store_explicit(&tc->left, next, memory_order_relaxed);
}

/* Lock held.  Gets and Puts so far, the tcaches' included (those are read
 * while their owners run: approximate by the calls in flight). */
void tc_counts_locked(const sm_pool *p, uint64_t *gets, uint64_t *puts)
{
    SM_ASSERT(pool_locked(p));
    uint64_t g = p->gets_locked, u = p->puts_locked;
    for (const tcache *tc = p->caches; tc; tc = tc->next) {
        g += tc->base - atomic_load_explicit(&((tcache *)tc)->left, memory_order_relaxed);
        u += atomic_load_explicit(&((tcache *)tc)->puts, memory_order_relaxed);
    }
    *gets = g;
    *puts = u;
}

size_t tc_live_locked(const sm_pool *p)
{
    SM_ASSERT(pool_locked(p));
    uint64_t gets, puts;
    tc_counts_locked(p, &gets, &puts);
    return gets > puts ? (size_t)(gets - puts) : 0;
}

/* Pool lock held: empties a cache into the depot and unlinks it; its counts
 * go to the pool's. */
void tc_detach_locked(sm_pool *p, tcache *tc)
{
    SM_ASSERT(pool_locked(p));
    p->gets_locked += tc->base - atomic_load_explicit(&tc->left, memory_order_relaxed);
    p->puts_locked += atomic_load_explicit(&tc->puts, memory_order_relaxed);
    if (tc->hot_full)
        depot_put(p, tc->hot);
    tc_hot_clear(tc);
    depot_mag_flush(p, tc, tc->n);
    if (tc->prev)
        tc->prev->next = tc->next;
    else
        p->caches = tc->next;
    if (tc->next)
        tc->next->prev = tc->prev;
    p->credits -= tc_credit(tc);
}

/* ---- This thread's table -------------------------------------------------- */

/* This thread's entry at index i, growing the heap part if need be; NULL
 * when memory for it runs out. */
static tc_slot *slot_at(uint32_t i)
{
    if (i < TC_INLINE)
        return &tc_tls[i];
    uint32_t j = i - TC_INLINE;
    if (j >= tc_more_cap) {
        uint32_t cap = tc_more_cap ? tc_more_cap : TC_INLINE;
        while (cap <= j)
            cap *= 2;
        tc_slot *more = alc_alloc(cap * sizeof *more, _Alignof(tc_slot));
        if (!more)
            return NULL;
        memset(more, 0, cap * sizeof *more);
        if (tc_more_cap) {
            memcpy(more, tc_more, tc_more_cap * sizeof *more);
            alc_free(tc_more, tc_more_cap * sizeof *more);
        }
        tc_more = more;
        tc_more_cap = cap;
    }
    return &tc_more[j];
}

/* A new cache of p for this thread, linked into the pool; NULL when memory
 * runs out. */
static tcache *tc_create(sm_pool *p)
{
    tcache *tc = pool_alloc(p, tc_bytes(p), 64);
    if (!tc)
        return NULL;
    atomic_init(&tc->active, 0);
    atomic_init(&tc->steal, 0);
    tc->n = 0;
    tc->memo_base = UINTPTR_MAX;
    tc->memo = NULL;
    tc->rng =
        mix64(atomic_fetch_add_explicit(&tc_next_seed, 1, memory_order_relaxed) ^ p->id << 32) | 1;
    uint64_t first = tc_interval(p, tc);
    atomic_init(&tc->left, first);
    atomic_init(&tc->puts, 0);
    atomic_init(&tc->slow, 0);
    tc->base = first;
    pool_lock(p);
    size_t left = p->idle_limit == SIZE_MAX ? SIZE_MAX : p->idle_limit - p->credits;
    size_t credit = left / 2 < (size_t)p->mag_max + 1 ? left / 2 : (size_t)p->mag_max + 1;
    tc_hot_clear(tc);
    tc->hot_ok = credit > 0;
    tc->cap = credit ? (uint32_t)credit - 1 : 0;
    p->credits += credit;
    depot_trim(p);
    tc->prev = NULL;
    tc->next = p->caches;
    if (p->caches)
        p->caches->prev = tc;
    p->caches = tc;
    pool_unlock(p);
    return tc;
}

tcache *tc_get(sm_pool *p)
{
    if (p->tls_index == TC_NO_INDEX)
        return NULL;
    tc_slot *e = slot_at(p->tls_index);
    if (!e)
        return NULL;
    if (e->id == p->id) {
        if (p->fast)
            tc_front = *e;
        return e->tc;
    }
    /* Empty, or a freed pool's (its cache went with it). */
    tc_init();
    if (!tc_keyed) {
        pthread_setspecific(tc_key, (void *)1);
        tc_keyed = true;
    }
    tcache *tc = tc_create(p);
    if (!tc)
        return NULL;
    *e = (tc_slot){p->id, tc};
    if (p->fast)
        tc_front = *e;
    return tc;
}

/* Registry walk at thread exit: p's cache of this thread, if any, goes back. */
static void release_mine(sm_pool *p, uint64_t seq, void *ctx)
{
    (void)seq;
    (void)ctx;
    if (p->tls_index == TC_NO_INDEX)
        return;
    tc_slot *e = p->tls_index < TC_INLINE                 ? &tc_tls[p->tls_index]
                 : p->tls_index - TC_INLINE < tc_more_cap ? &tc_more[p->tls_index - TC_INLINE]
                                                          : NULL;
    if (!e || e->id != p->id)
        return;
    pool_lock(p);
    tc_detach_locked(p, e->tc);
    pool_unlock(p);
    pool_release(p, e->tc, tc_bytes(p));
    *e = (tc_slot){0, NULL};
}

void tc_table_release(void)
{
    if (tc_more)
        alc_free(tc_more, tc_more_cap * sizeof *tc_more);
    tc_more = NULL;
    tc_more_cap = 0;
}

static void tc_thread_exit(void *unused)
{
    (void)unused;
    reg_each_pool(release_mine, NULL);
    memset(tc_tls, 0, sizeof tc_tls);
    tc_front = (tc_slot){0, NULL};
    tc_table_release();
}

/* ---- fork() ---------------------------------------------------------------- */

static void fork_lock(sm_pool *p, uint64_t seq, void *ctx)
{
    (void)seq;
    (void)ctx;
    pool_lock(p);
    tc_stw_begin(p);
}

static void fork_unlock(sm_pool *p, uint64_t seq, void *ctx)
{
    (void)seq;
    (void)ctx;
    tc_stw_end(p);
    pool_unlock(p);
}

/* Is tc this (the forking) thread's cache of p? */
static bool mine(const sm_pool *p, const tcache *tc)
{
    uint32_t i = p->tls_index;
    const tc_slot *e = i < TC_INLINE                 ? &tc_tls[i]
                       : i - TC_INLINE < tc_more_cap ? &tc_more[i - TC_INLINE]
                                                     : NULL;
    return e && e->id == p->id && e->tc == tc;
}

static void fork_child_pool(sm_pool *p, uint64_t seq, void *ctx)
{
    (void)seq;
    (void)ctx;
#if SM_ASSERT_ON
    /* The lock was taken by this very thread, which the child keeps. */
    atomic_store_explicit(&p->lock_owner, pthread_self(), memory_order_relaxed);
#endif
    tcache *tc = p->caches;
    while (tc) {
        tcache *next = tc->next;
        if (!mine(p, tc)) {
            tc_detach_locked(p, tc);
            pool_release(p, tc, tc_bytes(p));
        }
        tc = next;
    }
    tc_stw_end(p);
    pool_unlock(p);
}

static void tc_fork_prepare(void)
{
    reg_hold();
    reg_each_pool_held(fork_lock, NULL);
}

static void tc_fork_parent(void)
{
    reg_each_pool_held(fork_unlock, NULL);
    reg_release();
}

static void tc_fork_child(void)
{
    membarrier_register();
    pthread_mutex_init(&tc_index_lock, NULL);
    reg_each_pool_held(fork_child_pool, NULL);
    reg_release();
}
