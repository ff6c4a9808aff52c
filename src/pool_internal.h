/*
 * pool_internal.h - what the pool's source files share.
 *
 * The pool is one module in six files, one concern each (pool.c opens with
 * the design of the whole):
 *
 *   pool.c    pool_   Get, Put and their fast paths, cycles, handles, the
 *                     life cycle, statistics
 *   slab.c    slab_   slabs, the address map (slab base -> descriptor), the
 *                     slab table (number -> descriptor, for handles), slots
 *   depot.c   depot_  idle arrays between threads: the depot, magazine
 *                     exchanges, the idle cap
 *   tcache.c  tc_     per-thread caches: the thread's table of them, creation
 *                     and release, stopping the world, fork()
 *   sites.c   site_   call stacks: capture, the per-pool table, symbolizing
 *   report.c  rpt_    misuse and corruption events, outstanding/leak reports,
 *                     trace lines
 *
 * The Get/Put fast paths live in pool.c and use only the static inline
 * helpers below, so splitting the module costs the hot path nothing: no
 * call leaves pool.c until the slow path.
 *
 * The pool lock.  Everything under "Guarded by lock" in struct sm_pool is
 * changed only with p->lock held, through pool_lock()/pool_unlock(); in
 * debug and sanitizer builds they record the owner so that a function whose
 * comment says "lock held" can assert it (SM_ASSERT(pool_locked(p))).
 */
#ifndef SM_POOL_INTERNAL_H
#define SM_POOL_INTERNAL_H

#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__)
#define SM_TLS_MODEL __attribute__((tls_model("initial-exec")))
#define SM_NOINLINE __attribute__((noinline))
#else
#define SM_TLS_MODEL
#define SM_NOINLINE
#endif

/* ---- Constants --------------------------------------------------------- */

/* A slot's state byte: one of the states in the low bits, and flags.
 *
 *   bit  7        6        5        4        3..0
 *      HANDLED  GSITE    PSITE    OWNED    FREE IDLE LIVE QUAR PUTTING CONDEMNED
 *
 * The fast Put compares the whole byte with ST_LIVE, so any flag sends the
 * array to the slow path at no cost to the common case. */
enum { ST_FREE, ST_IDLE, ST_LIVE, ST_QUAR, ST_PUTTING, ST_CONDEMNED };
#define ST_BASE 0x0Fu
#define ST_OWNED 0x10u   /* with ST_LIVE: a pooled map holds the array (pool_own) */
#define ST_PSITE 0x20u   /* not LIVE: put_site[] is the Put that ended the last life */
#define ST_GSITE 0x40u   /* get_site[] is this life's Get (LIVE), else the last life's */
#define ST_HANDLED 0x80u /* with ST_LIVE: a handle was taken in this life */
#define ST_SITES (ST_GSITE | ST_PSITE)

#define SLAB_MIN_BYTES ((size_t)64 << 10)
#define MAG_BYTES ((size_t)512 << 10) /* idle bytes one thread may cache */
#define MAG_MAX 64
#define QUAR_BYTES ((size_t)1 << 20)
#define QUAR_MAX 256
#define QUAR_MIN 4
#define MAX_REPORTS 8 /* corruptions one call names; the rest are counted */

#define SITE_DEPTH 16  /* frames kept of a recorded call stack */
#define SITE_SLACK 8   /* frames of the library's own, captured and dropped */
#define SITE_BRIEF 2   /* frames an event's detail names per call site */
#define SITE_MAX 65536 /* distinct stacks per pool; calls beyond are not recorded */
#define SITE_FIRST_CAP 16
#define NO_SAMPLE ((uint64_t)1 << 62) /* a countdown that never runs out */

/* Text buffers: one symbolized frame, a brief stack (SITE_BRIEF frames),
 * a formatted layout, an event's detail. */
#define FRAME_CHARS 192
#define BRIEF_CHARS 200
#define LAYOUT_CHARS 160
#define DETAIL_CHARS 384

/* Thread caches.  A pool holds one of TC_INDEX_MAX dense indexes while it
 * lives; a thread finds its cache of the pool at that index of its table:
 * the first TC_INLINE entries are thread-local storage (the fast path),
 * the rest a per-thread heap table (the slow path, still without a lock).
 * A pool created while TC_INDEX_MAX others live gets no index, and every
 * call on it takes the lock. */
#define TC_INLINE 8 /* 144 B of static TLS with the sentinel: dlopen leaves little */
#define TC_INDEX_MAX 4096
#define TC_NO_INDEX UINT32_MAX

/* ---- Types ------------------------------------------------------------- */

typedef struct entry {
    void *a;
    _Atomic uint8_t *st; /* the slot's state byte */
} entry;

typedef struct vec {
    entry *v;
    size_t n, cap;
} vec;

/* A slab descriptor, apart from the slab it describes:
 *
 *   +------------------------+  struct slab (base, number, used, links)
 *   | states[nslots]         |  one state byte per slot (see ST_*), to 8 B
 *   | gens[nslots]           |  32-bit generations, for handles
 *   | freebits[nslots / 64]  |  1 = FREE
 *   | get_site[nslots]       |  stack numbers of the last Get and Put,
 *   | put_site[nslots]       |  only when the pool records call sites
 *   +------------------------+
 */
typedef struct slab {
    _Atomic uintptr_t base; /* 0 once the memory went back */
    uint32_t number;        /* index in the slab table, for handles */
    uint32_t used;          /* slots not FREE */
    uint32_t hint;          /* first bitmap word that may have a bit set */
    struct slab *next, *prev;
    _Atomic uint32_t *gens;
    uint64_t *freebits;            /* 1 = FREE */
    uint32_t *get_site, *put_site; /* site numbers (see ST_GSITE/ST_PSITE); NULL when
                                      the pool records none */
    _Atomic uint8_t states[];
} slab;

/* The address map: slab base -> descriptor, open addressing. */
typedef struct amap {
    size_t mask, filled, live; /* filled counts tombstones too */
    _Atomic uintptr_t *keys;
    _Atomic(slab *) *vals;
} amap;

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
    _Atomic int active;    /* owner is inside the fast path */
    _Atomic int steal;     /* the pool is stopping the world */
    entry hot;             /* hot_full: the most recently put array, idle here;
                              else the array the last Get took from here (or
                              NULL), kept so that its Put needs no lookup */
    _Atomic uint64_t left; /* Gets before the next recorded one; counts Gets too */
    _Atomic uint64_t puts; /* Puts made by the owner */
    _Atomic uint64_t slow; /* the owner's calls that left the inline path */
    uintptr_t memo_base;   /* last slab the owner put into; UINTPTR_MAX for
                              none, always none while hot_ok is false */
    slab *memo;            /* its descriptor: retired maybe, never reused
                              or freed while named here (tc_forget_memos) */
    uint32_t n, cap;       /* the magazine */
    bool hot_ok;           /* the cap left room for a hot array */
    bool hot_full;         /* the hot slot holds an idle array */
    uint64_t base;         /* lock held: Gets made by the owner = base - left */
    uint64_t rng;          /* the owner's: sampling intervals */
    struct tcache *next, *prev;
    entry mag[];
} tcache;

/* One entry of a thread's table of caches: the cache of the pool whose id
 * this is (ids are never reused, so a stale entry never matches). */
typedef struct tc_slot {
    uint64_t id;
    tcache *tc;
} tc_slot;
_Static_assert(offsetof(tc_slot, tc) == 8, "tc_cache_fast() reads tc at offset 8");

/* One recorded call stack and what it accounts for (lock held). */
typedef struct site {
    uint64_t hash;
    uint64_t gets, puts; /* recorded calls from this stack */
    uint64_t inuse;      /* recorded Gets whose array is not back */
    uint32_t depth;
    void *pcs[SITE_DEPTH]; /* return addresses, innermost first */
} site;

/* The pool's stacks: v[1..n] (0 names no stack), found by hash in slots. */
typedef struct site_tab {
    site *v;
    uint32_t n, cap; /* cap counts v[0] */
    uint32_t *slots; /* open addressing, 2 * cap of them; 0 = empty */
} site_tab;

/* A user of the pool (a pooled map), named in events. */
typedef struct pool_user {
    const void *user;
    char name[SM_NAME_MAX];
} pool_user;

struct sm_pool {
    /* Read on every call; written only at creation. */
    uint64_t id;
    uint32_t tls_index;  /* this pool's entry in every thread's table */
    uintptr_t fast_slot; /* where the inline paths find this thread's entry:
                            tc_tls[tls_index] when `fast` and inline, else
                            tc_tls[TC_INLINE] (tc_fast_slot) */
    uintptr_t slab_mask;
    uint64_t div_magic;
    uint32_t nslots, stride;
    bool plain; /* no hooks, no zeroing, not FULL */
    bool fast;  /* plain, and membarrier: the inline fast paths apply */
    int check;
    unsigned sample; /* record 1 Get in sample (FULL: 1; 0: none) */
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
    char name[SM_NAME_MAX]; /* "" when none was given */

    /* Guarded by lock. */
    pthread_mutex_t lock;
#if SM_ASSERT_ON
    _Atomic(pthread_t) lock_owner; /* for SM_ASSERT(pool_locked(p)) */
    _Atomic bool lock_held;
#endif
    _Atomic(amap *) amap;
    _Atomic(stab *) stab;
    uint32_t stab_top, stab_free;
    slab *partial; /* slabs with a FREE slot */
    slab *spare;   /* descriptors whose memory went back */
    vec current, victim;
    entry *quar;
    size_t qhead, qn, qreserved;
    tcache *caches;
    size_t credits;
    site_tab sites;
    pool_user *users; /* pooled maps drawing from the pool */
    size_t nusers, users_cap;
    /* Statistics kept under the lock; the tcaches keep their own. */
    uint64_t gets_locked, puts_locked; /* calls not counted in a live tcache */
    uint64_t news, frees, cycles;
    uint64_t slow_locked;     /* Gets and Puts that took the lock (pool_counters) */
    size_t carved, condemned; /* slots not FREE; withdrawn for corruption */

    _Atomic size_t held; /* bytes from the allocator, this structure included */
    _Atomic uint64_t misuse[SM_NCODES];
};

/* A corruption found while the lock was held, raised after it is dropped,
 * with the first frames of the array's last Put and Get. */
typedef struct report {
    void *a;
    size_t off;
    unsigned byte;
    int put_depth, get_depth;
    void *put_pcs[SITE_BRIEF], *get_pcs[SITE_BRIEF];
} report;

typedef struct reports {
    report r[MAX_REPORTS];
    size_t n, more;
} reports;

/* Where an address is in a pool. */
typedef struct found {
    slab *s;
    uint32_t idx;
    uintptr_t base;
} found;

/* What rpt_put_check() found, for the event raised once the lock is
 * dropped: the text so far, and for a double Put the first frames of the
 * array's last Put and Get (symbolized only then: dladdr() takes the
 * loader's lock, which must not nest inside the pool's). */
typedef struct misuse_text {
    char detail[DETAIL_CHARS];
    const char *now; /* a double Put: where the array is now */
    int put_depth, get_depth;
    void *put_pcs[SITE_BRIEF], *get_pcs[SITE_BRIEF];
} misuse_text;

/* ---- The lock ------------------------------------------------------------ */

static inline void pool_lock(sm_pool *p)
{
    pthread_mutex_lock(&p->lock);
#if SM_ASSERT_ON
    atomic_store_explicit(&p->lock_owner, pthread_self(), memory_order_relaxed);
    atomic_store_explicit(&p->lock_held, true, memory_order_relaxed);
#endif
}

static inline void pool_unlock(sm_pool *p)
{
#if SM_ASSERT_ON
    SM_ASSERT(atomic_load_explicit(&p->lock_held, memory_order_relaxed));
    atomic_store_explicit(&p->lock_held, false, memory_order_relaxed);
#endif
    pthread_mutex_unlock(&p->lock);
}

#if SM_ASSERT_ON
/* True when this thread holds p's lock (debug and sanitizer builds). */
static inline bool pool_locked(const sm_pool *p)
{
    sm_pool *q = (sm_pool *)(uintptr_t)p;
    return atomic_load_explicit(&q->lock_held, memory_order_relaxed) &&
           pthread_equal(atomic_load_explicit(&q->lock_owner, memory_order_relaxed),
                         pthread_self());
}
#endif

/* ---- Small helpers ----------------------------------------------------- */

static inline unsigned st_load(_Atomic uint8_t *st)
{
    return atomic_load_explicit(st, memory_order_relaxed);
}

static inline void st_store(_Atomic uint8_t *st, unsigned v)
{
    atomic_store_explicit(st, (uint8_t)v, memory_order_relaxed);
}

static inline unsigned st_base(unsigned v)
{
    return v & ST_BASE;
}

static inline bool st_live(unsigned v)
{
    return st_base(v) == ST_LIVE;
}

/* A move between the states of an array that is not LIVE keeps the site
 * flags: they still describe the life that ended. */
static inline void st_move(_Atomic uint8_t *st, unsigned next)
{
    st_store(st, (st_load(st) & ST_SITES) | next);
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

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
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

/* The pool's name for humans: its own, else its layout's, else "?". */
static inline const char *pool_label(const sm_pool *p)
{
    return p->name[0] ? p->name : p->layout.name ? p->layout.name : "?";
}

/* ---- The owner's window on its cache (tcache.c explains) ---------------- */

/* membarrier(2) is registered: owners need only a compiler fence. */
extern bool tc_membarrier;

/* This thread's table of caches, first TC_INLINE entries (tcache.c), and
 * one more that never holds a cache (id 0 is no pool's): the inline paths
 * of a pool without an entry here look at that one and miss. */
extern _Thread_local tc_slot tc_tls[TC_INLINE + 1] SM_TLS_MODEL;

/* On x86-64 the inline paths address the thread's entry relative to the
 * %fs segment: the pool keeps the entry's offset from the thread pointer
 * (the same in every thread, as tc_tls is in static TLS), so the lookup is
 * one load through %fs, with no read of the thread pointer itself; indexing
 * tc_tls in C would read it first, a load more on every call's critical
 * path (about 0.8 ns a Get+Put pair, measured).  Elsewhere the pool keeps
 * the index. */
#if defined(__x86_64__) && defined(__SEG_FS) && defined(__linux__)
#define TC_SEG_FS 1
#else
#define TC_SEG_FS 0
#endif

/* This thread's most recently looked-up cache (by tc_get, for a `fast`
 * pool): read at a fixed TLS offset, it costs the inline paths one load
 * less than the table, which is what a thread using one pool at a time
 * sees on every call. */
extern _Thread_local tc_slot tc_front SM_TLS_MODEL;

/* The table part of tc_cache_fast(). */
static inline bool tc_cache_indexed(const sm_pool *p, tcache **out)
{
#if TC_SEG_FS
    /* Both words of the entry, through %fs (tc_slot: id, then tc).  ISO C
     * has no segment-relative pointer (GCC's __seg_fs is GNU C only). */
    uint64_t id;
    tcache *tc;
    __asm__ volatile("movq %%fs:(%2), %0\n\tmovq %%fs:8(%2), %1"
                     : "=&r"(id), "=r"(tc)
                     : "r"(p->fast_slot));
#else
    const tc_slot *e = &tc_tls[p->fast_slot];
    uint64_t id = e->id;
    tcache *tc = e->tc;
#endif
    if (SM_UNLIKELY(id != p->id))
        return false;
    *out = tc;
    return true;
}

/* The inline paths' lookup: true and *out when this thread's front entry
 * or TLS table holds a cache of p and p is `fast`; false otherwise (p NULL
 * too).  The front entry needs no load from p before its own load. */
static inline bool tc_cache_fast(const sm_pool *p, tcache **out)
{
    if (SM_UNLIKELY(p == NULL))
        return false;
    if (SM_LIKELY(tc_front.id == p->id)) {
        *out = tc_front.tc;
        return true;
    }
    return tc_cache_indexed(p, out);
}

/* This thread's cache of p when the TLS table has it, else NULL.  p NULL
 * gives NULL. */
static inline tcache *tc_fast(const sm_pool *p)
{
    if (SM_UNLIKELY(p == NULL))
        return NULL;
    uint32_t i = p->tls_index;
    if (SM_LIKELY(i < TC_INLINE)) {
        const tc_slot *e = &tc_tls[i];
        if (SM_LIKELY(e->id == p->id))
            return e->tc;
    }
    return NULL;
}

/* Raises `active`, then reports whether the pool lets the owner in (no
 * stop-the-world in progress).  tc_leave() ends the window either way. */
static inline bool tc_enter(tcache *tc)
{
#if SM_HAVE_TSAN
    atomic_store_explicit(&tc->active, 1, memory_order_seq_cst);
    return atomic_load_explicit(&tc->steal, memory_order_seq_cst) == 0;
#else
    atomic_store_explicit(&tc->active, 1, memory_order_relaxed);
    if (SM_LIKELY(tc_membarrier))
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(&tc->steal, memory_order_acquire) == 0;
#endif
}

/* tc_enter() for pools whose `fast` flag says membarrier is registered. */
static inline bool tc_enter_fast(tcache *tc)
{
    atomic_store_explicit(&tc->active, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    return atomic_load_explicit(&tc->steal, memory_order_acquire) == 0;
}

static inline void tc_leave(tcache *tc)
{
    atomic_store_explicit(&tc->active, 0, memory_order_release);
}

/* The owner's: Gets are counted by the countdown, so one store does both. */
static inline void tc_count_get(tcache *tc, uint64_t left)
{
    atomic_store_explicit(&tc->left, left - 1, memory_order_relaxed);
}

static inline void tc_count_put(tcache *tc)
{
    atomic_store_explicit(&tc->puts, atomic_load_explicit(&tc->puts, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static inline void tc_count_slow(tcache *tc)
{
    atomic_store_explicit(&tc->slow, atomic_load_explicit(&tc->slow, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* ---- pool.c -------------------------------------------------------------- */

/* The pool's door to alc_alloc(): counts what the pool holds. */
void *pool_alloc(sm_pool *p, size_t size, size_t align);
void pool_release(sm_pool *p, void *mem, size_t size);

/* ---- slab.c -------------------------------------------------------------- */

/* Lock held.  Takes a FREE slot and marks it LIVE; false when memory runs
 * out (nothing changed). */
bool slab_carve(sm_pool *p, entry *out);
/* Lock held.  The slot goes back to FREE, and its slab with it when empty. */
void slab_release(sm_pool *p, entry e);
/* The slot number of an array of p. */
uint32_t slab_index(const sm_pool *p, const void *a);
/* Lock held (or a tcache window).  0 and *f when a points at an array of p;
 * else SM_EFOREIGN with detail filled in, or f->s NULL when no slab of p
 * contains it. */
int slab_locate(const sm_pool *p, const void *a, found *f, char *detail, size_t n);
/* Lock held: descriptors of given-back slabs are freed. */
void slab_spare_free(sm_pool *p);
/* The slab table, for handles: the descriptor numbered `number`, or NULL. */
slab *slab_numbered(sm_pool *p, uint32_t number);
/* The generation a never-used slot of descriptor `number` starts at. */
uint32_t slab_gen_floor(const sm_pool *p, uint32_t number);
/* Every slab, descriptor and table goes back (sm_pool_free). */
void slab_free_all(sm_pool *p);
/* Calls f on every carved slot (lock held; pool_verify). */
void slab_each_slot(sm_pool *p, void (*f)(sm_pool *p, slab *s, uint32_t idx, void *ctx), void *ctx);

/* ---- depot.c ------------------------------------------------------------- */

bool depot_vec_push(sm_pool *p, vec *v, entry e);
void depot_vec_drop(sm_pool *p, vec *v);
/* Lock held.  Arrays idle outside the thread caches. */
size_t depot_idle_count(const sm_pool *p);
/* Lock held.  An array coming back goes to the depot (IDLE), or back to the
 * allocator when the idle cap (or memory for the depot) says no. */
void depot_put(sm_pool *p, entry e);
bool depot_pop(sm_pool *p, entry *e);
/* Lock held.  Releases idle arrays until the cap holds again. */
void depot_trim(sm_pool *p);
/* Lock held (the owner's cache, or any cache with the world stopped). */
void depot_mag_flush(sm_pool *p, tcache *tc, uint32_t count);
void depot_mag_refill(sm_pool *p, tcache *tc);
/* Lock held, the owner's cache (or NULL): files an array as idle there, or
 * in the depot when the cache has no room. */
void depot_cache_put(sm_pool *p, tcache *tc, entry e);

/* ---- tcache.c ------------------------------------------------------------ */

/* Once per process: the thread-exit key, membarrier, fork handlers. */
void tc_init(void);
/* The pool's fast_slot for a TLS table index (TC_INLINE: the entry that
 * never matches). */
uintptr_t tc_fast_slot(uint32_t index);
/* A dense index for a new pool (TC_NO_INDEX when none is left); given back
 * by tc_index_put at sm_pool_free. */
uint32_t tc_index_take(void);
void tc_index_put(uint32_t index);
/* This thread's cache for p, created if need be; NULL if memory ran out
 * (the caller then works under the lock). */
tcache *tc_get(sm_pool *p);
/* Frees this thread's heap part of the table (sm_pool_close of the last
 * pool: the library then holds nothing, as sm_set_allocator() requires;
 * other threads free theirs when they exit). */
void tc_table_release(void);
/* Lock held.  Empties a cache into the depot and unlinks it; its counts go
 * to the pool's.  The caller frees it. */
void tc_detach_locked(sm_pool *p, tcache *tc);
size_t tc_bytes(const sm_pool *p);
/* Lock held.  On return no thread is inside a fast path of p, and none will
 * enter one until tc_stw_end(). */
void tc_stw_begin(sm_pool *p);
void tc_stw_end(sm_pool *p);
/* Lock held.  Every cache forgets the slab it last put into (its memo),
 * with the world stopped: before a descriptor is reused for another slab,
 * as the fast Put trusts a memo without rechecking the slab's base. */
void tc_forget_memos(sm_pool *p);
/* Lock held, the cache's owner or the world stopped: empties the hot slot
 * and forgets the array it last lent. */
static inline void tc_hot_clear(tcache *tc)
{
    tc->hot_full = false;
    tc->hot = (entry){NULL, NULL};
}
/* Lock held, the owner: counts the Get that found the countdown at zero and
 * starts the next sampling interval. */
void tc_resample(const sm_pool *p, tcache *tc);
/* Lock held.  Gets and Puts so far, the caches' included. */
void tc_counts_locked(const sm_pool *p, uint64_t *gets, uint64_t *puts);
size_t tc_live_locked(const sm_pool *p);

/* ---- sites.c ------------------------------------------------------------- */

/* The caller's stack from the frame that returns to ra; the depth. */
int site_capture(void **pcs, const void *ra);
/* One frame, "function+0x1d (module)" or "module+0x1234". */
void site_frame_format(char *buf, size_t n, const void *pc);
/* The first SITE_BRIEF frames on one line, or "not recorded". */
void site_brief(char *buf, size_t n, void *const *pcs, int depth);
void site_drop(sm_pool *p);
/* Copies the first frames of stack id (0: none) for a report. */
int site_brief_copy(const sm_pool *p, uint32_t id, void **pcs);
/* Lock held.  A Get of e is recorded: its stack counted, named by the slot. */
void site_record_get(sm_pool *p, entry e, void *const *pcs, int depth);
/* Lock held.  The Put of slot idx (state v, LIVE) is recorded when pcs has
 * a stack.  Returns the site flags the slot keeps for the life that ends. */
unsigned site_record_put(sm_pool *p, slab *s, uint32_t idx, unsigned v, void *const *pcs,
                         int depth);

/* ---- report.c ------------------------------------------------------------ */

/* Lock held, FULL.  True when the idle array's poison is intact; else the
 * array is condemned (never handed out again) and the breach recorded. */
bool rpt_idle_verify(sm_pool *p, entry e, reports *out);
/* No lock held.  One SM_ECORRUPT event per recorded breach; returns
 * SM_ECORRUPT when there was one, else 0. */
int rpt_raise_corrupt(sm_pool *p, const char *what, const reports *rs);
/* Lock held.  0 when a is a LIVE array of p that no map owns; else the
 * code and its text. */
int rpt_put_check(sm_pool *p, void *a, found *f, misuse_text *m);
/* No lock held.  Raises the event (not at OFF) for what rpt_put_check
 * found, naming the call being made (ra: its return address) and what it
 * did ("put back", "put back again"). */
int rpt_raise_misuse(sm_pool *p, int rc, const char *what, const char *verb, const void *a,
                     const found *f, misuse_text *m, const void *ra);
/* sm_pool_report()'s format; `what` is "outstanding" or "leaked at
 * sm_pool_free". */
int rpt_write(sm_pool *p, FILE *out, const char *what);
/* What one cycle did, for the trace line. */
typedef struct cycle_trace {
    uint64_t cycle;
    size_t idle, victims, freed, live, reserved;
} cycle_trace;
void rpt_trace_cycle(const sm_pool *p, const cycle_trace *t, double us);
/* "map "quotes" (0x...)" for each user, comma-separated (lock held). */
void rpt_users(const sm_pool *p, char *buf, size_t n);

#endif /* SM_POOL_INTERNAL_H */
