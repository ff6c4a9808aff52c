/*
 * pool.c - the array pool: Go's sync.Pool, with the lifecycle checked.
 *
 * Memory.  Arrays are carved from slabs: blocks of slab_bytes (a power of
 * two, at least 64 KiB and at least four arrays) taken from alc_alloc()
 * aligned to their own size, so the slab of any pointer is found by masking.
 * Everything the pool knows about an array lives outside it, in the slab's
 * descriptor (a separate block): per slot a state byte (FREE, IDLE, LIVE,
 * ...), a 32-bit generation, a bit in a bitmap of free slots and, at
 * SM_CHECK_FULL, the call site of the last Put.  The array's own bytes are
 * the user's, always.  Get only stores the state byte and Put only loads it
 * to branch, so a Get+Put pair carries no data dependency through it.
 *
 * Finding an array from a pointer.  Masking a pointer gives a candidate slab
 * base, but reading a "header" there could touch memory that is not ours.
 * So the pool keeps a registry (open addressing, keyed by slab base) of its
 * slabs, and only a base found there leads to a descriptor.  The offset into
 * the slab, divided by the stride with a multiply (Lemire's method), gives
 * the slot; an offset that is not a multiple of the stride is an interior
 * pointer.  All O(1).
 *
 * Where idle arrays wait.  Three places, nearest first:
 *   - a per-thread cache (tcache): one "hot" array, then a stack (the
 *     magazine) of up to mag_max more, that only its thread touches on the
 *     fast path, with no lock and no atomic read-modify-write.  The hot slot
 *     is what makes a Get+Put pair cheap: Put stores the caller's pointer
 *     there and Get loads it and stores a constant, so consecutive calls are
 *     chained by one store-to-load forwarding, not by a counter that each
 *     call loads and stores;
 *   - the depot: two vectors under the pool's mutex, `current` (put since the
 *     last cycle) and `victim` (survived one cycle).  A thread cache exchanges
 *     half a magazine at a time with it;
 *   - at SM_CHECK_FULL, a FIFO quarantine of poisoned arrays, checked when
 *     they leave it.  FULL bypasses the thread caches: every call locks.
 *
 * Stopping the world.  sm_pool_cycle() and a few rare internal operations
 * (freeing a registry or slab table that lock-free readers might hold) must
 * know that no thread is inside its fast path.  Each tcache has an `active`
 * flag its owner raises around the fast path and a `steal` flag the pool
 * raises; the pool raises every `steal`, issues membarrier(2) (a fence on
 * every running thread, so the owner's cheap store/load pair needs no fence
 * of its own), then waits for every `active` to drop.  After that, owners see
 * `steal` and take the locked slow path until it is lowered.  Without
 * membarrier (or under ThreadSanitizer) the owner side uses a real fence.
 *
 * Invariants (pool lock held, world running):
 *   - a slot's state is LIVE (maybe | HANDLED) exactly while the array is handed out; IDLE while
 *     it sits in a tcache or the depot; QUAR in quarantine; PUTTING while
 *     on_put runs; CONDEMNED once its poison was found overwritten (it is
 *     never handed out again); FREE when not carved.
 *   - the generation grows by one when a life in which a handle was taken
 *     ends (the state's HANDLED bit says so) and when a slot is released, so
 *     a handle never resolves after its array's Put, and a FREE slot whose
 *     generation is above its slab number's floor has been handed out.
 *   - idle arrays: depot + quarantine + the sum of the tcaches' capacities
 *     (hot slot and magazine: "credits") <= idle_limit, so max_idle_bytes is a hard cap however the
 *     threads' caches fill.
 *   - a slab whose slots are all FREE is given back at once; its descriptor
 *     is kept for reuse (its generations continue) until the next cycle.
 *   - after a cycle, nothing is in any tcache, `current` is empty, and
 *     `victim` holds what was idle before it: so an idle array is released
 *     at the second cycle after its Put.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#endif

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SM_POOL_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define SM_POOL_TSAN 1
#endif
#ifndef SM_POOL_TSAN
#define SM_POOL_TSAN 0
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SM_POOL_VALGRIND 1
#endif
#endif

#if defined(__GNUC__)
#define SM_TLS_MODEL __attribute__((tls_model("initial-exec")))
#define SM_NOINLINE __attribute__((noinline))
#else
#define SM_TLS_MODEL
#define SM_NOINLINE
#endif

/* ---- Constants --------------------------------------------------------- */

enum { ST_FREE, ST_IDLE, ST_LIVE, ST_QUAR, ST_PUTTING, ST_CONDEMNED };
#define ST_HANDLED 0x80u /* with ST_LIVE: a handle was taken in this life */

#define SLAB_MIN_BYTES ((size_t)64 << 10)
#define MAG_BYTES ((size_t)512 << 10) /* idle bytes one thread may cache */
#define MAG_MAX 64
#define QUAR_BYTES ((size_t)1 << 20)
#define QUAR_MAX 256
#define QUAR_MIN 4
#define TLS_ENTRIES 4
#define REG_TOMB ((uintptr_t)1)
#define MAX_REPORTS 8

/* ---- Types ------------------------------------------------------------- */

typedef struct entry {
    void *a;
    _Atomic uint8_t *st; /* the slot's state byte */
} entry;

typedef struct vec {
    entry *v;
    size_t n, cap;
} vec;

typedef struct slab {
    _Atomic uintptr_t base; /* 0 once the memory went back */
    uint32_t number;        /* index in the slab table, for handles */
    uint32_t used;          /* slots not FREE */
    uint32_t hint;          /* first bitmap word that may have a bit set */
    struct slab *next, *prev;
    _Atomic uint32_t *gens;
    uint64_t *freebits; /* 1 = FREE */
    void **sites;       /* SM_CHECK_FULL: where each slot was last put */
    _Atomic uint8_t states[];
} slab;

typedef struct reg {
    size_t mask, filled, live; /* filled counts tombstones too */
    _Atomic uintptr_t *keys;
    _Atomic(slab *) *vals;
} reg;

typedef struct stab_entry {
    _Atomic(slab *) desc;
    uint32_t gen_floor; /* first generation for the next descriptor here */
    uint32_t next_free;
} stab_entry;

typedef struct stab {
    uint32_t cap;
    stab_entry e[];
} stab;

typedef struct tcache {
    _Atomic int active;  /* owner is inside the fast path */
    _Atomic int steal;   /* the pool is stopping the world */
    entry hot;           /* the most recently put array; hot.a NULL when empty */
    bool hot_ok;         /* the cap left room for a hot array */
    uint32_t n, cap;     /* the magazine */
    uintptr_t memo_base; /* last slab the owner put into */
    slab *memo;
    struct tcache *next, *prev;
    entry mag[];
} tcache;

struct sm_pool {
    /* Read on every call; written only at creation. */
    uint64_t id;
    uintptr_t slab_mask;
    uint64_t div_magic;
    uint32_t nslots, stride;
    bool plain; /* no hooks, no zeroing, not FULL */
    int check;
    unsigned flags;
    size_t size; /* bytes of one array */
    uint32_t key;
    unsigned slot_bits;
    size_t slab_bytes;
    uint32_t mag_max;
    size_t idle_limit; /* arrays; SIZE_MAX when uncapped */
    size_t qcap;
    sm_layout layout;
    sm_hook on_new, on_get, on_put;
    void *hook_ctx;

    /* Guarded by lock. */
    pthread_mutex_t lock;
    _Atomic(reg *) reg;
    _Atomic(stab *) stab;
    uint32_t stab_top, stab_free;
    slab *partial; /* slabs with a FREE slot */
    slab *spare;   /* descriptors whose memory went back */
    vec current, victim;
    entry *quar;
    size_t qhead, qn, qreserved;
    tcache *caches;
    size_t credits;

    sm_pool *gnext, *gprev; /* guarded by g_lock */
};

typedef struct tls_entry {
    sm_pool *pool;
    uint64_t id;
    tcache *tc;
} tls_entry;

/* A corruption found while the lock was held, raised after it is dropped. */
typedef struct report {
    void *a;
    void *site;
    size_t off;
    unsigned byte;
} report;

typedef struct reports {
    report r[MAX_REPORTS];
    size_t n, more;
} reports;

/* ---- Globals ----------------------------------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
static bool g_membarrier; /* registered: owners need only a compiler fence */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static sm_pool *g_pools;
static _Atomic uint64_t g_next_id = 1;

static _Thread_local tls_entry tls_ents[TLS_ENTRIES] SM_TLS_MODEL;
static _Thread_local bool tls_keyed SM_TLS_MODEL;

static void tls_destructor(void *unused);

static void once_init(void)
{
    pthread_key_create(&g_key, tls_destructor);
#if defined(__linux__) && defined(__NR_membarrier) && !SM_POOL_TSAN
    g_membarrier = syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
#endif
}

/* ---- Small helpers ----------------------------------------------------- */

static inline unsigned st_load(_Atomic uint8_t *st)
{
    return atomic_load_explicit(st, memory_order_relaxed);
}

static inline void st_store(_Atomic uint8_t *st, unsigned v)
{
    atomic_store_explicit(st, (uint8_t)v, memory_order_relaxed);
}

static inline bool st_live(unsigned v)
{
    return (v & ~ST_HANDLED) == ST_LIVE;
}

static inline uint32_t gen_load(const slab *s, uint32_t idx)
{
    return atomic_load_explicit(&s->gens[idx], memory_order_relaxed);
}

static inline void gen_bump(slab *s, uint32_t idx)
{
    atomic_store_explicit(&s->gens[idx], gen_load(s, idx) + 1, memory_order_relaxed);
}

/* A Put ends the array's life; handles taken during it die with it. */
static inline void life_end(slab *s, uint32_t idx, unsigned v, unsigned next)
{
    if (SM_UNLIKELY(v & ST_HANDLED))
        gen_bump(s, idx);
    st_store(&s->states[idx], next);
}

static size_t next_pow2(size_t x)
{
    size_t p = 1;
    while (p < x)
        p <<= 1;
    return p;
}

static unsigned log2_ceil(size_t x)
{
    unsigned b = 0;
    while (((size_t)1 << b) < x)
        b++;
    return b;
}

/* off / stride when off is a multiple of it (Lemire, "Faster remainder by
 * direct computation", 2019): exact for 32-bit off and 2 <= stride < 2^32. */
static inline bool slot_of_offset(const sm_pool *p, uintptr_t off, uint32_t *idx)
{
    uint64_t lowbits = p->div_magic * (uint64_t)off;
    *idx = (uint32_t)(((unsigned __int128)p->div_magic * off) >> 64);
    return lowbits <= p->div_magic - 1;
}

static inline void *slot_array(const sm_pool *p, uintptr_t base, uint32_t idx)
{
    return (char *)base + (size_t)idx * p->stride;
}

static inline slab *slab_of_state(_Atomic uint8_t *st, uint32_t idx)
{
    return (slab *)(void *)((char *)(st - idx) - offsetof(slab, states));
}

static void site_format(char *buf, size_t n, void *site)
{
    Dl_info info;
    if (!site) {
        snprintf(buf, n, "(call sites are recorded at SM_CHECK_FULL)");
        return;
    }
    if (dladdr(site, &info) && info.dli_fname) {
        const char *file = strrchr(info.dli_fname, '/');
        file = file ? file + 1 : info.dli_fname;
        if (info.dli_sname)
            snprintf(buf, n, "%s+0x%tx (%s)", info.dli_sname, (char *)site - (char *)info.dli_saddr,
                     file);
        else
            snprintf(buf, n, "%p (%s+0x%tx)", site, file, (char *)site - (char *)info.dli_fbase);
        return;
    }
    snprintf(buf, n, "%p", site);
}

/* ---- Stopping the world ------------------------------------------------- */

static inline bool tc_enter(tcache *tc)
{
#if SM_POOL_TSAN
    atomic_store_explicit(&tc->active, 1, memory_order_seq_cst);
    return atomic_load_explicit(&tc->steal, memory_order_seq_cst) == 0;
#else
    atomic_store_explicit(&tc->active, 1, memory_order_relaxed);
    if (SM_LIKELY(g_membarrier))
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(&tc->steal, memory_order_acquire) == 0;
#endif
}

static inline void tc_leave(tcache *tc)
{
    atomic_store_explicit(&tc->active, 0, memory_order_release);
}

static void heavy_barrier(void)
{
    (void)g_membarrier;
#if defined(__linux__) && defined(__NR_membarrier) && !SM_POOL_TSAN
    if (g_membarrier) {
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

/* Lock held.  On return no thread is inside a fast path of p, and none will
 * enter one until stw_end(). */
static void stw_begin(sm_pool *p)
{
    if (!p->caches)
        return;
    for (tcache *tc = p->caches; tc; tc = tc->next)
        atomic_store_explicit(&tc->steal, 1, memory_order_seq_cst);
    heavy_barrier();
    for (tcache *tc = p->caches; tc; tc = tc->next)
        while (atomic_load_explicit(&tc->active, memory_order_seq_cst))
            sched_yield();
}

static void stw_end(sm_pool *p)
{
    for (tcache *tc = p->caches; tc; tc = tc->next)
        atomic_store_explicit(&tc->steal, 0, memory_order_release);
}

/* ---- Registry: slab base -> descriptor ---------------------------------- */

static inline size_t reg_hash(uintptr_t base)
{
    return (size_t)(((uint64_t)base * 0x9E3779B97F4A7C15ull) >> 29);
}

static size_t reg_bytes(size_t cap)
{
    return sizeof(reg) + cap * (sizeof(uintptr_t) + sizeof(slab *));
}

/* Lock-free: safe under the lock or inside a tcache window.  NULL unless a
 * slab of this pool starts at base. */
static slab *reg_find(const sm_pool *p, uintptr_t base)
{
    const reg *r = atomic_load_explicit(&((sm_pool *)p)->reg, memory_order_acquire);
    if (!r || base == 0)
        return NULL;
    for (size_t i = reg_hash(base) & r->mask;; i = (i + 1) & r->mask) {
        uintptr_t k = atomic_load_explicit(&r->keys[i], memory_order_acquire);
        if (k == base) {
            slab *s = atomic_load_explicit(&r->vals[i], memory_order_relaxed);
            if (s && atomic_load_explicit(&s->base, memory_order_relaxed) == base)
                return s;
            return NULL;
        }
        if (k == 0)
            return NULL;
    }
}

static void reg_place(reg *r, uintptr_t base, slab *s)
{
    size_t i = reg_hash(base) & r->mask;
    for (;; i = (i + 1) & r->mask) {
        uintptr_t k = atomic_load_explicit(&r->keys[i], memory_order_relaxed);
        if (k == 0 || k == REG_TOMB) {
            if (k == 0)
                r->filled++;
            break;
        }
    }
    atomic_store_explicit(&r->vals[i], s, memory_order_relaxed);
    atomic_store_explicit(&r->keys[i], base, memory_order_release);
    r->live++;
}

/* Lock held.  Makes room for one more slab; SM_ENOMEM leaves all as was. */
static int reg_reserve(sm_pool *p)
{
    reg *old = atomic_load_explicit(&p->reg, memory_order_relaxed);
    if (old && (old->filled + 1) * 2 <= old->mask + 1)
        return 0;
    size_t live = old ? old->live : 0, cap = 16;
    while (cap < (live + 1) * 4)
        cap *= 2;
    reg *r = alc_alloc(reg_bytes(cap), _Alignof(max_align_t));
    if (!r)
        return SM_ENOMEM;
    r->mask = cap - 1;
    r->filled = r->live = 0;
    r->keys = (_Atomic uintptr_t *)(void *)(r + 1);
    r->vals = (_Atomic(slab *) *)(void *)(r->keys + cap);
    for (size_t i = 0; i < cap; i++) {
        atomic_init(&r->keys[i], 0);
        atomic_init(&r->vals[i], NULL);
    }
    if (old) {
        for (size_t i = 0; i <= old->mask; i++) {
            uintptr_t k = atomic_load_explicit(&old->keys[i], memory_order_relaxed);
            if (k != 0 && k != REG_TOMB)
                reg_place(r, k, atomic_load_explicit(&old->vals[i], memory_order_relaxed));
        }
    }
    stw_begin(p);
    atomic_store_explicit(&p->reg, r, memory_order_release);
    stw_end(p);
    if (old)
        alc_free(old, reg_bytes(old->mask + 1));
    return 0;
}

static void reg_remove(sm_pool *p, uintptr_t base)
{
    reg *r = atomic_load_explicit(&p->reg, memory_order_relaxed);
    for (size_t i = reg_hash(base) & r->mask;; i = (i + 1) & r->mask) {
        uintptr_t k = atomic_load_explicit(&r->keys[i], memory_order_relaxed);
        if (k == base) {
            atomic_store_explicit(&r->keys[i], REG_TOMB, memory_order_release);
            atomic_store_explicit(&r->vals[i], NULL, memory_order_relaxed);
            r->live--;
            return;
        }
        if (k == 0)
            return;
    }
}

/* ---- Slab table: number -> descriptor (for handles) --------------------- */

static size_t stab_bytes(uint32_t cap)
{
    return sizeof(stab) + (size_t)cap * sizeof(stab_entry);
}

/* Lock held.  Makes room for a new number; SM_ENOMEM leaves all as was. */
static int stab_reserve(sm_pool *p)
{
    stab *old = atomic_load_explicit(&p->stab, memory_order_relaxed);
    if (p->stab_free || (old && p->stab_top < old->cap))
        return 0;
    uint64_t limit = (uint64_t)1 << (32 - p->slot_bits);
    if (p->stab_top >= limit)
        return SM_ENOMEM; /* handles could not name another slab */
    uint32_t cap = old ? old->cap * 2 : 16;
    if (cap > limit)
        cap = (uint32_t)limit;
    stab *t = alc_alloc(stab_bytes(cap), _Alignof(max_align_t));
    if (!t)
        return SM_ENOMEM;
    t->cap = cap;
    for (uint32_t i = 0; i < cap; i++) {
        atomic_init(&t->e[i].desc, NULL);
        t->e[i].gen_floor = 0;
        t->e[i].next_free = 0;
    }
    if (old) {
        for (uint32_t i = 0; i < old->cap; i++) {
            atomic_init(&t->e[i].desc, atomic_load_explicit(&old->e[i].desc, memory_order_relaxed));
            t->e[i].gen_floor = old->e[i].gen_floor;
            t->e[i].next_free = old->e[i].next_free;
        }
    }
    stw_begin(p);
    atomic_store_explicit(&p->stab, t, memory_order_release);
    stw_end(p);
    if (old)
        alc_free(old, stab_bytes(old->cap));
    return 0;
}

/* ---- Slabs and slots ---------------------------------------------------- */

/* A descriptor: the header, then per slot a state byte (rounded up to 8
 * bytes in all), a generation, a free bit and, at FULL, a call site. */
static size_t desc_states_bytes(const sm_pool *p)
{
    return (p->nslots + 7) & ~(size_t)7;
}

static size_t desc_bytes(const sm_pool *p)
{
    size_t nwords = (p->nslots + 63) / 64;
    size_t b = sizeof(slab) + desc_states_bytes(p) + p->nslots * sizeof(uint32_t);
    b = (b + 7) & ~(size_t)7;
    b += nwords * sizeof(uint64_t);
    if (p->check == SM_CHECK_FULL)
        b += p->nslots * sizeof(void *);
    return b;
}

static void desc_reset_bits(const sm_pool *p, slab *s)
{
    size_t nwords = (p->nslots + 63) / 64;
    for (size_t i = 0; i < nwords; i++)
        s->freebits[i] = ~(uint64_t)0;
    if (p->nslots % 64)
        s->freebits[nwords - 1] = ((uint64_t)1 << (p->nslots % 64)) - 1;
    s->hint = 0;
}

static void partial_link(sm_pool *p, slab *s)
{
    s->prev = NULL;
    s->next = p->partial;
    if (p->partial)
        p->partial->prev = s;
    p->partial = s;
}

static void partial_unlink(sm_pool *p, slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        p->partial = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

/* Lock held.  A slab with every slot FREE; NULL (nothing changed) when
 * memory runs out. */
static slab *slab_new(sm_pool *p)
{
    void *mem = alc_alloc(p->slab_bytes, p->slab_bytes);
    if (!mem)
        return NULL;
    if (reg_reserve(p) != 0)
        goto fail_mem;
    slab *s = p->spare;
    if (s) {
        p->spare = s->next;
    } else {
        if (stab_reserve(p) != 0)
            goto fail_mem;
        s = alc_alloc(desc_bytes(p), 64);
        if (!s)
            goto fail_mem;
        stab *t = atomic_load_explicit(&p->stab, memory_order_relaxed);
        uint32_t number;
        if (p->stab_free) {
            number = p->stab_free;
            p->stab_free = t->e[number].next_free;
        } else {
            number = p->stab_top++;
        }
        s->number = number;
        char *tail = (char *)s + sizeof(slab) + desc_states_bytes(p);
        s->gens = (_Atomic uint32_t *)(void *)tail;
        tail += ((p->nslots * sizeof(uint32_t)) + 7) & ~(size_t)7;
        s->freebits = (uint64_t *)(void *)tail;
        s->sites = p->check == SM_CHECK_FULL
                       ? (void **)(void *)(s->freebits + (p->nslots + 63) / 64)
                       : NULL;
        for (uint32_t i = 0; i < p->nslots; i++) {
            atomic_init(&s->states[i], ST_FREE);
            atomic_init(&s->gens[i], t->e[number].gen_floor);
            if (s->sites)
                s->sites[i] = NULL;
        }
        desc_reset_bits(p, s);
        atomic_store_explicit(&t->e[number].desc, s, memory_order_release);
    }
    s->used = 0;
#ifdef SM_POOL_VALGRIND
    if (p->check == SM_CHECK_FULL)
        VALGRIND_MAKE_MEM_NOACCESS(mem, p->slab_bytes);
#endif
    atomic_store_explicit(&s->base, (uintptr_t)mem, memory_order_release);
    reg_place(atomic_load_explicit(&p->reg, memory_order_relaxed), (uintptr_t)mem, s);
    partial_link(p, s);
    return s;

fail_mem:
    alc_free(mem, p->slab_bytes);
    return NULL;
}

/* Lock held.  The slab's slots are all FREE: its memory goes back. */
static void slab_retire(sm_pool *p, slab *s)
{
    uintptr_t base = atomic_load_explicit(&s->base, memory_order_relaxed);
    partial_unlink(p, s);
    atomic_store_explicit(&s->base, 0, memory_order_release);
    reg_remove(p, base);
    if (p->check == SM_CHECK_FULL)
        chk_unpoison((void *)base, p->slab_bytes);
    alc_free((void *)base, p->slab_bytes);
    s->next = p->spare;
    p->spare = s;
}

/* Lock held.  Takes a FREE slot and marks it LIVE; false when memory runs out. */
static bool slot_carve(sm_pool *p, entry *out)
{
    slab *s = p->partial;
    if (!s && !(s = slab_new(p)))
        return false;
    uint32_t wi = s->hint;
    while (s->freebits[wi] == 0)
        wi++;
    unsigned bit = (unsigned)__builtin_ctzll(s->freebits[wi]);
    s->freebits[wi] &= s->freebits[wi] - 1;
    s->hint = wi;
    uint32_t idx = wi * 64 + bit;
    if (++s->used == p->nslots)
        partial_unlink(p, s);
    uintptr_t base = atomic_load_explicit(&s->base, memory_order_relaxed);
    out->a = slot_array(p, base, idx);
    out->st = &s->states[idx];
    st_store(out->st, ST_LIVE);
    return true;
}

static uint32_t slot_index(const sm_pool *p, const void *a)
{
    uint32_t idx;
    slot_of_offset(p, (uintptr_t)a & ~p->slab_mask, &idx);
    return idx;
}

/* Lock held.  The slot goes back to FREE, and its slab with it when empty. */
static void slot_release(sm_pool *p, entry e)
{
    uint32_t idx = slot_index(p, e.a);
    slab *s = slab_of_state(e.st, idx);
    gen_bump(s, idx); /* a FREE slot that had a life is told from a virgin one */
    st_store(e.st, ST_FREE);
    s->freebits[idx / 64] |= (uint64_t)1 << (idx % 64);
    if (idx / 64 < s->hint)
        s->hint = idx / 64;
    if (s->used-- == p->nslots)
        partial_link(p, s);
    if (s->used == 0)
        slab_retire(p, s);
}

/* ---- Depot -------------------------------------------------------------- */

static bool vec_push(vec *v, entry e)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        entry *nv = alc_alloc(cap * sizeof(entry), _Alignof(entry));
        if (!nv)
            return false;
        if (v->n)
            memcpy(nv, v->v, v->n * sizeof(entry));
        if (v->v)
            alc_free(v->v, v->cap * sizeof(entry));
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = e;
    return true;
}

static void vec_drop(vec *v)
{
    if (v->v)
        alc_free(v->v, v->cap * sizeof(entry));
    v->v = NULL;
    v->n = v->cap = 0;
}

static size_t idle_count(const sm_pool *p)
{
    return p->current.n + p->victim.n + p->qn + p->qreserved;
}

/* Lock held.  Room for one more idle array under the cap? */
static bool idle_room(const sm_pool *p)
{
    return p->idle_limit == SIZE_MAX || idle_count(p) + p->credits < p->idle_limit;
}

/* Lock held.  An array that is coming back goes to the depot, or back to the
 * allocator when the cap (or memory for the depot's vector) says no. */
static void depot_put(sm_pool *p, entry e)
{
    if (!idle_room(p) || !vec_push(&p->current, e)) {
        slot_release(p, e);
        return;
    }
    st_store(e.st, ST_IDLE);
}

static bool depot_pop(sm_pool *p, entry *e)
{
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
static void depot_trim(sm_pool *p)
{
    entry e;
    while (p->idle_limit != SIZE_MAX && idle_count(p) + p->credits > p->idle_limit &&
           (p->victim.n || p->current.n)) {
        depot_pop(p, &e);
        slot_release(p, e);
    }
}

/* Lock held (the owner's own cache, or any cache with the world stopped). */
static void mag_flush(sm_pool *p, tcache *tc, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        depot_put(p, tc->mag[i]);
    memmove(tc->mag, tc->mag + count, (tc->n - count) * sizeof(entry));
    tc->n -= count;
}

static void mag_refill(sm_pool *p, tcache *tc)
{
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
static void cache_put_locked(sm_pool *p, tcache *tc, entry e)
{
    if (!tc || !tc->hot_ok) {
        depot_put(p, e);
        return;
    }
    st_store(e.st, ST_IDLE);
    if (tc->hot.a) {
        if (tc->n == tc->cap && tc->cap)
            mag_flush(p, tc, tc->cap / 2 ? tc->cap / 2 : 1);
        if (tc->n < tc->cap)
            tc->mag[tc->n++] = tc->hot;
        else
            depot_put(p, tc->hot);
    }
    tc->hot = e;
}

/* ---- Thread caches ------------------------------------------------------ */

static size_t tcache_bytes(const sm_pool *p)
{
    return sizeof(tcache) + p->mag_max * sizeof(entry);
}

static size_t tcache_credit(const tcache *tc)
{
    return tc->cap + (tc->hot_ok ? 1 : 0);
}

/* Pool lock held: empties a cache into the depot and unlinks it. */
static void tcache_detach_locked(sm_pool *p, tcache *tc)
{
    if (tc->hot.a)
        depot_put(p, tc->hot);
    tc->hot.a = NULL;
    mag_flush(p, tc, tc->n);
    if (tc->prev)
        tc->prev->next = tc->next;
    else
        p->caches = tc->next;
    if (tc->next)
        tc->next->prev = tc->prev;
    p->credits -= tcache_credit(tc);
}

/* Gives back a thread's cache of a pool that may have been freed since. */
static void tls_release(tls_entry *e)
{
    if (!e->pool)
        return;
    pthread_mutex_lock(&g_lock);
    for (sm_pool *p = g_pools; p; p = p->gnext) {
        if (p == e->pool && p->id == e->id) {
            pthread_mutex_lock(&p->lock);
            tcache_detach_locked(p, e->tc);
            pthread_mutex_unlock(&p->lock);
            alc_free(e->tc, tcache_bytes(p));
            break;
        }
    }
    pthread_mutex_unlock(&g_lock);
    *e = (tls_entry){NULL, 0, NULL};
}

static void tls_destructor(void *unused)
{
    (void)unused;
    for (int i = 0; i < TLS_ENTRIES; i++)
        tls_release(&tls_ents[i]);
}

static inline tcache *tls_fast(const sm_pool *p)
{
    const tls_entry *e = &tls_ents[0];
    if (SM_LIKELY(e->pool == p && p != NULL && e->id == p->id))
        return e->tc;
    return NULL;
}

/* This thread's cache for p, created if need be; NULL if memory ran out
 * (the caller then works under the lock).  Moves it to the front. */
static tcache *tls_get(sm_pool *p)
{
    int i;
    for (i = 0; i < TLS_ENTRIES; i++)
        if (tls_ents[i].pool == p && tls_ents[i].id == p->id)
            break;
    tls_entry found;
    if (i < TLS_ENTRIES) {
        found = tls_ents[i];
    } else {
        pthread_once(&g_once, once_init);
        if (!tls_keyed) {
            pthread_setspecific(g_key, (void *)1);
            tls_keyed = true;
        }
        tcache *tc = alc_alloc(tcache_bytes(p), 64);
        if (!tc)
            return NULL;
        atomic_init(&tc->active, 0);
        atomic_init(&tc->steal, 0);
        tc->n = 0;
        tc->memo_base = UINTPTR_MAX;
        tc->memo = NULL;
        pthread_mutex_lock(&p->lock);
        size_t left = p->idle_limit == SIZE_MAX ? SIZE_MAX : p->idle_limit - p->credits;
        size_t credit = left / 2 < (size_t)p->mag_max + 1 ? left / 2 : (size_t)p->mag_max + 1;
        tc->hot = (entry){NULL, NULL};
        tc->hot_ok = credit > 0;
        tc->cap = credit ? (uint32_t)credit - 1 : 0;
        p->credits += credit;
        depot_trim(p);
        tc->prev = NULL;
        tc->next = p->caches;
        if (p->caches)
            p->caches->prev = tc;
        p->caches = tc;
        pthread_mutex_unlock(&p->lock);
        i = TLS_ENTRIES - 1;
        tls_release(&tls_ents[i]);
        found = (tls_entry){p, p->id, tc};
    }
    memmove(&tls_ents[1], &tls_ents[0], (size_t)i * sizeof(tls_entry));
    tls_ents[0] = found;
    return found.tc;
}

/* ---- Reports ------------------------------------------------------------ */

/* Where the poison of [a, a+size) is first broken; size when intact.
 * Leaves the range marked poisoned for the sanitizers. */
static size_t poison_breach(const sm_pool *p, void *a, unsigned *byte)
{
    if (chk_poison_intact(a, p->size))
        return p->size;
    chk_unpoison(a, p->size);
    const unsigned char *b = a;
    size_t i = 0;
    while (i < p->size && b[i] == CHK_POISON_BYTE)
        i++;
    *byte = i < p->size ? b[i] : 0;
    chk_poison(a, p->size);
    return i;
}

/* Lock held, FULL.  True when the idle array's poison is intact; else the
 * array is condemned (never handed out again) and the breach recorded. */
static bool idle_verify(sm_pool *p, entry e, reports *out)
{
    unsigned byte = 0;
    size_t off = poison_breach(p, e.a, &byte);
    if (off == p->size)
        return true;
    uint32_t idx = slot_index(p, e.a);
    slab *s = slab_of_state(e.st, idx);
    st_store(e.st, ST_CONDEMNED);
    if (out->n < MAX_REPORTS)
        out->r[out->n++] = (report){e.a, s->sites[idx], off, byte};
    else
        out->more++;
    return false;
}

static void reports_raise(sm_pool *p, const char *what, const reports *rs)
{
    char layout[160], site[256];
    chk_layout_format(layout, sizeof layout, &p->layout);
    for (size_t i = 0; i < rs->n; i++) {
        const report *r = &rs->r[i];
        site_format(site, sizeof site, r->site);
        chk_raise(SM_ECORRUPT, what, p, r->a,
                  "array %p of %s was written after it was put back: byte %zu is 0x%02x, "
                  "poison is 0x%02x; put back by %s; the array is withdrawn%s",
                  r->a, layout, r->off, r->byte, CHK_POISON_BYTE, site,
                  rs->more && i + 1 == rs->n ? " (and more arrays like it)" : "");
    }
}

/* Which pool, if any, owns a pointer that p does not.  No lock held. */
static void foreign_describe(const sm_pool *p, const void *a, char *buf, size_t n)
{
    char layout[160];
    pthread_mutex_lock(&g_lock);
    for (sm_pool *q = g_pools; q; q = q->gnext) {
        if (q == p)
            continue;
        pthread_mutex_lock(&q->lock);
        uintptr_t base = (uintptr_t)a & q->slab_mask;
        slab *s = reg_find(q, base);
        uint32_t idx;
        bool exact = s && slot_of_offset(q, (uintptr_t)a - base, &idx) && idx < q->nslots;
        pthread_mutex_unlock(&q->lock);
        if (s) {
            chk_layout_format(layout, sizeof layout, &q->layout);
            snprintf(buf, n, "%p is %s of another pool %p (%s)", a,
                     exact ? "an array" : "inside an array", (const void *)q, layout);
            pthread_mutex_unlock(&g_lock);
            return;
        }
    }
    pthread_mutex_unlock(&g_lock);
    snprintf(buf, n, "%p is not in any slab of this pool (heap, stack or static memory?)", a);
}

/* ---- Validation --------------------------------------------------------- */

typedef struct found {
    slab *s;
    uint32_t idx;
    uintptr_t base;
} found;

/* Lock held (or a tcache window).  0 and *f when a points at an array of p;
 * else SM_EFOREIGN with detail filled in, or f->s NULL when no slab of p
 * contains it (the caller describes that once the lock is dropped). */
static int locate(const sm_pool *p, const void *a, found *f, char *detail, size_t n)
{
    f->base = (uintptr_t)a & p->slab_mask;
    f->s = reg_find(p, f->base);
    if (!f->s)
        return SM_EFOREIGN;
    uintptr_t off = (uintptr_t)a - f->base;
    if (!slot_of_offset(p, off, &f->idx) || f->idx >= p->nslots) {
        uint32_t idx = (uint32_t)(off / p->stride);
        if (idx < p->nslots)
            snprintf(detail, n, "%p is %zu bytes into array %p of this pool (an interior pointer)",
                     a, (size_t)(off - (uintptr_t)idx * p->stride), slot_array(p, f->base, idx));
        else
            snprintf(detail, n, "%p is in the unused tail of a slab of this pool", a);
        return SM_EFOREIGN;
    }
    return 0;
}

/* Lock held.  0 when a is a LIVE array of p; else the code and its detail. */
static int put_check(sm_pool *p, void *a, found *f, char *detail, size_t n)
{
    int rc = locate(p, a, f, detail, n);
    if (rc)
        return rc;
    unsigned v = st_load(&f->s->states[f->idx]);
    char site[256];
    if (st_live(v))
        return 0;
    if (v == ST_FREE) {
        stab *t = atomic_load_explicit(&p->stab, memory_order_relaxed);
        if (gen_load(f->s, f->idx) == t->e[f->s->number].gen_floor) {
            snprintf(detail, n, "%p is a slot of this pool that was never handed out", a);
            return SM_EFOREIGN;
        }
        snprintf(detail, n, "array %p was already put back, and its memory since released", a);
        return SM_EDOUBLE;
    }
    const char *now = v == ST_CONDEMNED ? "withdrawn (corrupted)" : "idle in the pool";
    void *first = f->s->sites ? f->s->sites[f->idx] : NULL;
    if (first) {
        site_format(site, sizeof site, first);
        snprintf(detail, n, "array %p was already put back by %s and is %s", a, site, now);
    } else {
        snprintf(detail, n, "array %p was already put back and is %s (SM_CHECK_FULL records where)",
                 a, now);
    }
    return SM_EDOUBLE;
}

static int raise_misuse(sm_pool *p, int rc, const char *what, const void *a, found *f, char *detail,
                        size_t n)
{
    char layout[160];
    if (rc == SM_EFOREIGN && !f->s)
        foreign_describe(p, a, detail, n);
    chk_layout_format(layout, sizeof layout, &p->layout);
    if (p->check == SM_CHECK_OFF)
        return rc;
    return chk_raise(rc, what, p, a, "%s; pool holds %s", detail, layout);
}

/* ---- Get ---------------------------------------------------------------- */

/* No lock held; the array is LIVE and the caller's.  Zeroing first, then
 * hooks: on_new for fresh memory, a replay of the Put side at FULL (poison
 * replaced what on_put left), and on_get last, just before it is handed out. */
static SM_NOINLINE void *get_finish(sm_pool *p, void *a, bool fresh, bool replay)
{
    if ((p->flags & SM_ZERO_ON_GET) || ((fresh || replay) && (p->flags & SM_ZERO_ON_PUT)))
        memset(a, 0, p->size);
    if (fresh && p->on_new)
        p->on_new(a, p->hook_ctx);
    if (replay && p->on_put)
        p->on_put(a, p->hook_ctx);
    if (p->on_get)
        p->on_get(a, p->hook_ctx);
    return a;
}

static void *get_full(sm_pool *p)
{
    reports rs = {.n = 0, .more = 0};
    entry e;
    bool fresh = false;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (!depot_pop(p, &e)) {
            if (!slot_carve(p, &e)) {
                pthread_mutex_unlock(&p->lock);
                return NULL;
            }
            fresh = true;
            break;
        }
        if (idle_verify(p, e, &rs))
            break;
        /* A corrupted array is withdrawn; the call reports it and fails. */
        pthread_mutex_unlock(&p->lock);
        reports_raise(p, "sm_pool_get", &rs);
        return NULL;
    }
    st_store(e.st, ST_LIVE);
    pthread_mutex_unlock(&p->lock);
    /* A recarved slot may still carry the poison of its last stay. */
    chk_unpoison(e.a, p->size);
#ifdef SM_POOL_VALGRIND
    VALGRIND_MEMPOOL_ALLOC(p, e.a, p->size);
    if (!fresh)
        VALGRIND_MAKE_MEM_DEFINED(e.a, p->size);
#endif
    return get_finish(p, e.a, fresh, !fresh);
}

static SM_NOINLINE void *get_slow(sm_pool *p)
{
    if (!p)
        return NULL;
    if (p->check == SM_CHECK_FULL)
        return get_full(p);
    tcache *tc = tls_get(p);
    entry e;
    if (tc) {
        if (tc_enter(tc) && (tc->hot.a || tc->n)) {
            if (tc->hot.a) {
                e = tc->hot;
                tc->hot.a = NULL;
            } else {
                e = tc->mag[--tc->n];
            }
            st_store(e.st, ST_LIVE);
            tc_leave(tc);
            return p->plain ? e.a : get_finish(p, e.a, false, false);
        }
        tc_leave(tc);
    }
    bool fresh = false;
    pthread_mutex_lock(&p->lock);
    if (tc && tc->cap)
        mag_refill(p, tc);
    if (tc && tc->n) {
        e = tc->mag[--tc->n];
        st_store(e.st, ST_LIVE);
    } else if (depot_pop(p, &e)) {
        st_store(e.st, ST_LIVE);
    } else if (slot_carve(p, &e)) {
        fresh = true;
    } else {
        pthread_mutex_unlock(&p->lock);
        return NULL;
    }
    pthread_mutex_unlock(&p->lock);
    return p->plain ? e.a : get_finish(p, e.a, fresh, false);
}

void *sm_pool_get(sm_pool *p)
{
    tcache *tc = tls_fast(p);
    if (SM_LIKELY(tc != NULL)) {
        if (SM_LIKELY(tc_enter(tc))) {
            entry e = tc->hot;
            if (SM_LIKELY(e.a != NULL)) {
                tc->hot.a = NULL;
            } else if (SM_LIKELY(tc->n != 0)) {
                e = tc->mag[--tc->n];
            } else {
                tc_leave(tc);
                return get_slow(p);
            }
            st_store(e.st, ST_LIVE);
            tc_leave(tc);
            if (SM_LIKELY(p->plain))
                return e.a;
            return get_finish(p, e.a, false, false);
        }
        tc_leave(tc);
    }
    return get_slow(p);
}

/* ---- Put ---------------------------------------------------------------- */

/* No lock held; the slot is PUTTING.  Runs the Put-side hooks, then files the
 * array as idle: this thread's cache if it has room, else the depot. */
static SM_NOINLINE void put_finish(sm_pool *p, entry e)
{
    if (p->on_put)
        p->on_put(e.a, p->hook_ctx);
    if (p->flags & SM_ZERO_ON_PUT)
        memset(e.a, 0, p->size);
    tcache *tc = tls_fast(p); /* hooks may have moved this thread's caches */
    if (tc) {
        if (tc_enter(tc) && tc->hot_ok && (!tc->hot.a || tc->n < tc->cap)) {
            st_store(e.st, ST_IDLE);
            if (tc->hot.a)
                tc->mag[tc->n++] = tc->hot;
            tc->hot = e;
            tc_leave(tc);
            return;
        }
        tc_leave(tc);
    }
    pthread_mutex_lock(&p->lock);
    cache_put_locked(p, tc, e);
    pthread_mutex_unlock(&p->lock);
}

static int put_full(sm_pool *p, void *a, void *site)
{
    char detail[384];
    found f;
    reports rs = {.n = 0, .more = 0};
    pthread_mutex_lock(&p->lock);
    int rc = put_check(p, a, &f, detail, sizeof detail);
    if (rc) {
        pthread_mutex_unlock(&p->lock);
        return raise_misuse(p, rc, "sm_pool_put", a, &f, detail, sizeof detail);
    }
    /* Make room in quarantine first: the oldest array leaves it, checked. */
    size_t qcap = p->qcap < p->idle_limit ? p->qcap : p->idle_limit;
    if (p->qn + p->qreserved >= qcap && p->qn) {
        entry old = p->quar[p->qhead];
        p->qhead = (p->qhead + 1) % p->qcap;
        p->qn--;
        if (!idle_verify(p, old, &rs)) {
            pthread_mutex_unlock(&p->lock);
            reports_raise(p, "sm_pool_put", &rs);
            return SM_ECORRUPT;
        }
        depot_put(p, old);
    }
    bool quarantine = p->qn + p->qreserved < qcap;
    if (quarantine) {
        p->qreserved++;
        depot_trim(p);
    }
    _Atomic uint8_t *st = &f.s->states[f.idx];
    life_end(f.s, f.idx, st_load(st), ST_PUTTING);
    f.s->sites[f.idx] = site;
    pthread_mutex_unlock(&p->lock);

    if (p->on_put)
        p->on_put(a, p->hook_ctx);
    chk_poison(a, p->size);
#ifdef SM_POOL_VALGRIND
    VALGRIND_MEMPOOL_FREE(p, a);
#endif
    pthread_mutex_lock(&p->lock);
    entry e = {a, st};
    if (quarantine) {
        p->qreserved--;
        p->quar[(p->qhead + p->qn) % p->qcap] = e;
        p->qn++;
        st_store(st, ST_QUAR);
    } else {
        slot_release(p, e);
    }
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static SM_NOINLINE int put_slow(sm_pool *p, void *a, void *site)
{
    char detail[384];
    found f;
    if (!p || !a)
        return SM_EINVAL;
    if (p->check == SM_CHECK_FULL)
        return put_full(p, a, site);
    tcache *tc = tls_get(p);
    pthread_mutex_lock(&p->lock);
    int rc = put_check(p, a, &f, detail, sizeof detail);
    if (rc) {
        pthread_mutex_unlock(&p->lock);
        return raise_misuse(p, rc, "sm_pool_put", a, &f, detail, sizeof detail);
    }
    entry e = {a, &f.s->states[f.idx]};
    if (tc) {
        tc->memo_base = f.base;
        tc->memo = f.s;
    }
    life_end(f.s, f.idx, st_load(e.st), ST_PUTTING);
    if (!p->plain) {
        pthread_mutex_unlock(&p->lock);
        put_finish(p, e);
        return 0;
    }
    cache_put_locked(p, tc, e);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int sm_pool_put(sm_pool *p, void *array)
{
    tcache *tc = tls_fast(p);
    if (SM_LIKELY(tc != NULL)) {
        uintptr_t base = (uintptr_t)array & p->slab_mask;
        if (SM_LIKELY(tc_enter(tc)) && SM_LIKELY(base == tc->memo_base)) {
            slab *s = tc->memo;
            uint32_t idx;
            if (SM_LIKELY(atomic_load_explicit(&s->base, memory_order_relaxed) == base) &&
                SM_LIKELY(slot_of_offset(p, (uintptr_t)array - base, &idx)) &&
                SM_LIKELY(idx < p->nslots)) {
                _Atomic uint8_t *st = &s->states[idx];
                unsigned v = st_load(st);
                if (SM_LIKELY(st_live(v)) && SM_LIKELY(p->plain)) {
                    /* Only hot.a: a 16-byte load would not be forwarded from
                     * the 8-byte store Get just made, and would stall. */
                    if (SM_LIKELY(tc->hot.a == NULL) && SM_LIKELY(tc->hot_ok)) {
                        life_end(s, idx, v, ST_IDLE);
                        tc->hot = (entry){array, st};
                        tc_leave(tc);
                        return 0;
                    }
                    if (tc->hot.a && tc->n < tc->cap) {
                        life_end(s, idx, v, ST_IDLE);
                        tc->mag[tc->n++] = tc->hot;
                        tc->hot = (entry){array, st};
                        tc_leave(tc);
                        return 0;
                    }
                }
                if (st_live(v) && !p->plain) {
                    life_end(s, idx, v, ST_PUTTING);
                    tc_leave(tc);
                    put_finish(p, (entry){array, st});
                    return 0;
                }
            }
        }
        tc_leave(tc);
    }
    return put_slow(p, array, __builtin_return_address(0));
}

/* ---- Cycle -------------------------------------------------------------- */

/* Lock held: descriptors of given-back slabs are freed; their numbers
 * remember the next generation so that old handles stay dead. */
static void spare_free(sm_pool *p)
{
    stab *t = atomic_load_explicit(&p->stab, memory_order_relaxed);
    while (p->spare) {
        slab *s = p->spare;
        p->spare = s->next;
        uint32_t top = 0;
        for (uint32_t i = 0; i < p->nslots; i++)
            top = gen_load(s, i) > top ? gen_load(s, i) : top;
        stab_entry *e = &t->e[s->number];
        atomic_store_explicit(&e->desc, NULL, memory_order_relaxed);
        e->gen_floor = top + 1;
        e->next_free = p->stab_free;
        p->stab_free = s->number;
        alc_free(s, desc_bytes(p));
    }
}

void sm_pool_cycle(sm_pool *p)
{
    if (!p)
        return;
    reports rs = {.n = 0, .more = 0};
    pthread_mutex_lock(&p->lock);
    stw_begin(p);
    /* The victims of the last cycle go back. */
    for (size_t i = 0; i < p->victim.n; i++)
        if (p->check != SM_CHECK_FULL || idle_verify(p, p->victim.v[i], &rs))
            slot_release(p, p->victim.v[i]);
    p->victim.n = 0;
    /* What was idle becomes the victims. */
    vec t = p->victim;
    p->victim = p->current;
    p->current = t;
    while (p->qn) {
        entry e = p->quar[p->qhead];
        p->qhead = (p->qhead + 1) % p->qcap;
        p->qn--;
        if (idle_verify(p, e, &rs)) {
            if (vec_push(&p->victim, e))
                st_store(e.st, ST_IDLE);
            else
                slot_release(p, e);
        }
    }
    for (tcache *tc = p->caches; tc; tc = tc->next) {
        if (tc->hot.a && !vec_push(&p->victim, tc->hot))
            slot_release(p, tc->hot);
        tc->hot.a = NULL;
        for (uint32_t i = 0; i < tc->n; i++)
            if (!vec_push(&p->victim, tc->mag[i]))
                slot_release(p, tc->mag[i]);
        tc->n = 0;
        tc->memo_base = UINTPTR_MAX;
        tc->memo = NULL;
    }
    vec_drop(&p->current);
    if (!p->victim.n)
        vec_drop(&p->victim);
    depot_trim(p);
    spare_free(p);
    stw_end(p);
    pthread_mutex_unlock(&p->lock);
    reports_raise(p, "sm_pool_cycle", &rs);
}

/* ---- Handles ------------------------------------------------------------ */

/* A consistent view for readers: this thread's cache window, or the lock. */
static tcache *view_begin(sm_pool *p)
{
    tcache *tc = p->check == SM_CHECK_FULL ? NULL : tls_get(p);
    if (tc && tc_enter(tc))
        return tc;
    if (tc)
        tc_leave(tc);
    pthread_mutex_lock(&p->lock);
    return NULL;
}

static void view_end(sm_pool *p, tcache *tc)
{
    if (tc)
        tc_leave(tc);
    else
        pthread_mutex_unlock(&p->lock);
}

sm_handle sm_pool_handle(sm_pool *p, const void *array)
{
    sm_handle h = {0};
    char detail[384];
    found f;
    if (!p || !array)
        return h;
    tcache *tc = view_begin(p);
    int rc = locate(p, array, &f, detail, sizeof detail);
    if (rc == 0) {
        unsigned v = st_load(&f.s->states[f.idx]);
        if (st_live(v)) {
            st_store(&f.s->states[f.idx], ST_LIVE | ST_HANDLED);
            uint64_t gen = gen_load(f.s, f.idx) ^ p->key;
            h.bits = gen << 32 | (uint64_t)f.s->number << p->slot_bits | f.idx;
        }
    }
    view_end(p, tc);
    if (rc)
        raise_misuse(p, rc, "sm_pool_handle", array, &f, detail, sizeof detail);
    return h;
}

void *sm_pool_resolve(sm_pool *p, sm_handle h)
{
    if (!p || !h.bits)
        return NULL;
    uint32_t lo = (uint32_t)h.bits, gen = (uint32_t)(h.bits >> 32);
    uint32_t number = lo >> p->slot_bits, idx = lo & (((uint32_t)1 << p->slot_bits) - 1);
    void *a = NULL;
    tcache *tc = view_begin(p);
    stab *t = atomic_load_explicit(&p->stab, memory_order_acquire);
    slab *s = t && number < t->cap ? atomic_load_explicit(&t->e[number].desc, memory_order_acquire)
                                   : NULL;
    if (s && idx < p->nslots) {
        unsigned v = st_load(&s->states[idx]);
        uintptr_t base = atomic_load_explicit(&s->base, memory_order_relaxed);
        if (v == (ST_LIVE | ST_HANDLED) && (gen_load(s, idx) ^ p->key) == gen && base)
            a = slot_array(p, base, idx);
    }
    view_end(p, tc);
    return a;
}

/* ---- Life cycle --------------------------------------------------------- */

const sm_layout *pool_layout(const sm_pool *p)
{
    return &p->layout;
}

static uint32_t mix32(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (uint32_t)x;
}

int sm_pool_new(sm_pool **out, const sm_pool_opts *o)
{
    if (!out || !o || chk_layout_valid(&o->layout) != 0)
        return SM_EINVAL;
    int check = chk_level(o->check);
    if (check < 0 || (o->flags & ~(unsigned)(SM_ZERO_ON_GET | SM_ZERO_ON_PUT)))
        return SM_EINVAL;
    pthread_once(&g_once, once_init);

    size_t size = o->layout.elem_size * o->layout.len;
    size_t stride = (size + o->layout.elem_align - 1) & ~(o->layout.elem_align - 1);
    if (stride < 8)
        stride = 8;
    size_t slab_bytes = next_pow2(4 * stride);
    if (slab_bytes < SLAB_MIN_BYTES)
        slab_bytes = SLAB_MIN_BYTES;

    sm_pool *p = alc_alloc(sizeof *p, _Alignof(sm_pool));
    if (!p)
        return SM_ENOMEM;
    memset(p, 0, sizeof *p);
    p->stride = (uint32_t)stride;
    p->size = size;
    p->slab_bytes = slab_bytes;
    p->slab_mask = ~(uintptr_t)(slab_bytes - 1);
    p->nslots = (uint32_t)(slab_bytes / stride);
    p->slot_bits = log2_ceil(p->nslots);
    p->div_magic = UINT64_MAX / stride + 1;
    p->check = check;
    p->flags = o->flags;
    p->on_new = o->on_new;
    p->on_get = o->on_get;
    p->on_put = o->on_put;
    p->hook_ctx = o->hook_ctx;
    p->plain = !o->on_get && !o->on_put && !o->flags && check != SM_CHECK_FULL;
    p->layout = o->layout;
    p->idle_limit = o->max_idle_bytes ? o->max_idle_bytes / stride : SIZE_MAX;
    size_t mag = MAG_BYTES / stride;
    p->mag_max = mag > MAG_MAX ? MAG_MAX : mag < 1 ? 1 : (uint32_t)mag;
    p->stab_top = 1; /* number 0 is never used: a zero handle names nothing */
    if (check == SM_CHECK_FULL) {
        size_t q = QUAR_BYTES / stride;
        p->qcap = q > QUAR_MAX ? QUAR_MAX : q < QUAR_MIN ? QUAR_MIN : q;
        p->quar = alc_alloc(p->qcap * sizeof(entry), _Alignof(entry));
        if (!p->quar) {
            alc_free(p, sizeof *p);
            return SM_ENOMEM;
        }
    }
    pthread_mutex_init(&p->lock, NULL);
#ifdef SM_POOL_VALGRIND
    if (check == SM_CHECK_FULL)
        VALGRIND_CREATE_MEMPOOL(p, 0, 0);
#endif
    pthread_mutex_lock(&g_lock);
    p->id = atomic_fetch_add(&g_next_id, 1);
    p->key = mix32(p->id);
    p->gnext = g_pools;
    if (g_pools)
        g_pools->gprev = p;
    g_pools = p;
    pthread_mutex_unlock(&g_lock);
    *out = p;
    return 0;
}

void sm_pool_free(sm_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&g_lock);
    if (p->gprev)
        p->gprev->gnext = p->gnext;
    else
        g_pools = p->gnext;
    if (p->gnext)
        p->gnext->gprev = p->gprev;
    pthread_mutex_unlock(&g_lock);

    /* A write after the last Put is still caught here. */
    if (p->check == SM_CHECK_FULL) {
        reports rs = {.n = 0, .more = 0};
        for (size_t i = 0; i < p->qn; i++)
            idle_verify(p, p->quar[(p->qhead + i) % p->qcap], &rs);
        for (size_t i = 0; i < p->current.n; i++)
            idle_verify(p, p->current.v[i], &rs);
        for (size_t i = 0; i < p->victim.n; i++)
            idle_verify(p, p->victim.v[i], &rs);
        reports_raise(p, "sm_pool_free", &rs);
    }
    for (int i = 0; i < TLS_ENTRIES; i++)
        if (tls_ents[i].pool == p && tls_ents[i].id == p->id)
            tls_ents[i] = (tls_entry){NULL, 0, NULL};
    while (p->caches) {
        tcache *tc = p->caches;
        p->caches = tc->next;
        alc_free(tc, tcache_bytes(p));
    }
#ifdef SM_POOL_VALGRIND
    if (p->check == SM_CHECK_FULL)
        VALGRIND_DESTROY_MEMPOOL(p);
#endif
    stab *t = atomic_load_explicit(&p->stab, memory_order_relaxed);
    for (uint32_t i = 0; t && i < t->cap; i++) {
        slab *s = atomic_load_explicit(&t->e[i].desc, memory_order_relaxed);
        if (!s)
            continue;
        uintptr_t base = atomic_load_explicit(&s->base, memory_order_relaxed);
        if (base) {
            if (p->check == SM_CHECK_FULL)
                chk_unpoison((void *)base, p->slab_bytes);
            alc_free((void *)base, p->slab_bytes);
        }
        alc_free(s, desc_bytes(p));
    }
    if (t)
        alc_free(t, stab_bytes(t->cap));
    reg *r = atomic_load_explicit(&p->reg, memory_order_relaxed);
    if (r)
        alc_free(r, reg_bytes(r->mask + 1));
    vec_drop(&p->current);
    vec_drop(&p->victim);
    if (p->quar)
        alc_free(p->quar, p->qcap * sizeof(entry));
    pthread_mutex_destroy(&p->lock);
    alc_free(p, sizeof *p);
}
