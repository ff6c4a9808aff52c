/*
 * pool.c - the array pool: Go's sync.Pool, with the lifecycle checked.
 *
 * Memory.  Arrays are carved from slabs: blocks of slab_bytes (a power of
 * two, at least 64 KiB and at least four arrays) taken from alc_alloc()
 * aligned to their own size, so the slab of any pointer is found by masking.
 * Everything the pool knows about an array lives outside it, in the slab's
 * descriptor (a separate block): per slot a state byte (FREE, IDLE, LIVE,
 * ...), a 32-bit generation, a bit in a bitmap of free slots and, when call
 * sites are recorded, the numbers of the stacks of its last Get and Put.
 * The array's own bytes are the user's, always.  Get only stores the state
 * byte and Put only loads it to branch, so a Get+Put pair carries no data
 * dependency through it.
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
 *
 * Counting without slowing down.  sm_pool_stats() must not stop anyone, and
 * the Get+Put pair must not pay for it, so the counters of the fast path
 * live in the tcache, written only by its owner with plain (relaxed) stores
 * and summed by the snapshot: `puts` counts up, and Gets are counted by the
 * sampling countdown itself, `left`, as base - left, where base moves only
 * under the lock (when the countdown is reloaded), so a snapshot under the
 * lock never sees a torn pair.  Everything else (news, frees, cycles, and
 * the calls made under the lock: SM_CHECK_FULL, threads without a cache,
 * caches of exited threads) is counted under the lock.  Live arrays are
 * gets - puts, idle ones carved - live - condemned.  The fast paths check
 * the slot's state for exactly LIVE, which keeps every flagged case (a
 * handle was taken, the Get was recorded) off them at no cost.
 *
 * Call sites, GWP-ASan style.  A recorded call stores its stack
 * (backtrace(), up to SITE_DEPTH frames above the library) in the pool's
 * site table, deduplicated by a hash of the return addresses, with per
 * stack counts of Gets, Puts and arrays still out; the slot keeps the
 * stack's number, and a state flag says the number belongs to this life
 * (GSITE: its Get; PSITE: the Put that ended it).  At SM_CHECK_FULL every
 * Get and Put is recorded.  At SM_CHECK_CHEAP one Get in `sample`
 * (SAFEMAP_DEBUG=sample=N) is: `left` counts down on the fast path, and the
 * Get that finds it at zero takes the slow path, records its stack and
 * draws the next interval, uniform in [1, 2N-1].  The Put of a recorded
 * array is recorded too (its GSITE flag sends it off the fast path), so a
 * sampled array's whole life is known, as GWP-ASan knows a sampled
 * allocation's.  backtrace() costs about a microsecond, which is what the
 * sampling rate buys back: see docs/safety.md for the measured cost.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/* A slot's state byte: one of the states in the low bits, and flags. */
enum { ST_FREE, ST_IDLE, ST_LIVE, ST_QUAR, ST_PUTTING, ST_CONDEMNED };
#define ST_BASE 0x0Fu
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
#define TLS_ENTRIES 4
#define REG_TOMB ((uintptr_t)1)
#define MAX_REPORTS 8

#define SITE_DEPTH 16  /* frames kept of a recorded call stack */
#define SITE_SLACK 8   /* frames of the library's own, captured and dropped */
#define SITE_BRIEF 2   /* frames an event's detail names per call site */
#define SITE_MAX 65536 /* distinct stacks per pool; calls beyond are not recorded */
#define SITE_FIRST_CAP 16
#define NO_SAMPLE ((uint64_t)1 << 62) /* a countdown that never runs out */

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
    uint64_t *freebits;            /* 1 = FREE */
    uint32_t *get_site, *put_site; /* site numbers (see ST_GSITE/ST_PSITE); NULL when
                                      the pool records none */
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
    _Atomic int active;    /* owner is inside the fast path */
    _Atomic int steal;     /* the pool is stopping the world */
    entry hot;             /* the most recently put array; hot.a NULL when empty */
    _Atomic uint64_t left; /* Gets before the next recorded one; counts Gets too */
    _Atomic uint64_t puts; /* Puts made by the owner */
    uintptr_t memo_base;   /* last slab the owner put into */
    slab *memo;
    uint32_t n, cap; /* the magazine */
    bool hot_ok;     /* the cap left room for a hot array */
    uint64_t base;   /* lock held: Gets made by the owner = base - left */
    uint64_t rng;    /* the owner's: sampling intervals */
    struct tcache *next, *prev;
    entry mag[];
} tcache;

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

struct sm_pool {
    /* Read on every call; written only at creation. */
    uint64_t id;
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
    site_tab sites;
    /* Statistics kept under the lock; the tcaches keep their own. */
    uint64_t gets_locked, puts_locked; /* calls not counted in a live tcache */
    uint64_t news, frees, cycles;
    size_t carved, condemned; /* slots not FREE; withdrawn for corruption */

    _Atomic size_t held; /* bytes from the allocator, this structure included */
    _Atomic uint64_t misuse[SM_NCODES];

    sm_pool *gnext, *gprev; /* guarded by g_lock */
};

typedef struct tls_entry {
    sm_pool *pool;
    uint64_t id;
    tcache *tc;
} tls_entry;

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

/* ---- Globals ----------------------------------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
static bool g_membarrier; /* registered: owners need only a compiler fence */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static sm_pool *g_pools;
static _Atomic uint64_t g_next_id = 1;
static _Atomic uint64_t g_next_seed = 1;

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

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
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

/* ---- Memory ------------------------------------------------------------ */

/* The pool's door to alc_alloc(): counts what the pool holds. */
static void *pool_alloc(sm_pool *p, size_t size, size_t align)
{
    void *mem = alc_alloc(size, align);
    if (mem)
        atomic_fetch_add_explicit(&p->held, size, memory_order_relaxed);
    return mem;
}

static void pool_release(sm_pool *p, void *mem, size_t size)
{
    atomic_fetch_sub_explicit(&p->held, size, memory_order_relaxed);
    alc_free(mem, size);
}

/* ---- Call stacks -------------------------------------------------------- */

/* The caller's stack, innermost first, from the frame that returns to ra
 * (the return address of the public call: the library's own frames above it
 * are dropped).  Returns the depth, at most SITE_DEPTH.  About a
 * microsecond: backtrace() unwinds with the DWARF tables. */
static SM_NOINLINE int stack_capture(void **pcs, const void *ra)
{
    void *buf[SITE_DEPTH + SITE_SLACK];
    int n = backtrace(buf, SITE_DEPTH + SITE_SLACK);
    int first = 0;
    while (first < n && buf[first] != ra)
        first++;
    if (first == n) /* not seen (an unwinder without tables): drop our own frame */
        first = n > 1 ? 1 : 0;
    int depth = n - first < SITE_DEPTH ? n - first : SITE_DEPTH;
    memcpy(pcs, buf + first, (size_t)depth * sizeof *pcs);
    return depth;
}

/* One frame for humans: "function+0x1d (module)", or "module+0x1234" (an
 * address addr2line takes) when the function has no dynamic symbol. */
static void frame_format(char *buf, size_t n, const void *pc)
{
    Dl_info info;
    struct link_map *map = NULL;
    /* A return address can be the first byte after its function: look up
     * the call instruction instead. */
    const char *call = (const char *)pc - 1;
    if (!dladdr1(call, &info, (void **)&map, RTLD_DL_LINKMAP) || !info.dli_fname) {
        snprintf(buf, n, "%p", pc);
        return;
    }
    const char *file = strrchr(info.dli_fname, '/');
    file = file ? file + 1 : info.dli_fname;
    if (info.dli_sname && info.dli_saddr)
        snprintf(buf, n, "%s+0x%tx (%s)", info.dli_sname,
                 (const char *)pc - (const char *)info.dli_saddr, file);
    else
        snprintf(
            buf, n, "%s+0x%zx", *file ? file : "?",
            (size_t)((uintptr_t)pc - (map ? (uintptr_t)map->l_addr : (uintptr_t)info.dli_fbase)));
}

/* The first SITE_BRIEF frames on one line, "f+0x1 (m) < g+0x2 (m)", or
 * "not recorded". */
static void stack_brief(char *buf, size_t n, void *const *pcs, int depth)
{
    size_t used = 0;
    if (depth <= 0) {
        snprintf(buf, n, "not recorded");
        return;
    }
    buf[0] = 0;
    for (int i = 0; i < depth && i < SITE_BRIEF && used + 1 < n; i++) {
        char frame[192];
        frame_format(frame, sizeof frame, pcs[i]);
        int k = snprintf(buf + used, n - used, "%s%s", i ? " < " : "", frame);
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

/* ---- Site table (lock held) ---------------------------------------------- */

static uint64_t stack_hash(void *const *pcs, int depth)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)depth;
    for (int i = 0; i < depth; i++) {
        h ^= (uint64_t)(uintptr_t)pcs[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h;
}

static size_t site_slots_bytes(uint32_t cap)
{
    return 2 * (size_t)cap * sizeof(uint32_t);
}

static void site_place(uint32_t *slots, uint32_t cap, const site *v, uint32_t id)
{
    uint32_t mask = 2 * cap - 1;
    uint32_t i = (uint32_t)v[id].hash & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = id;
}

/* Room for one more stack; false (nothing changed) when memory runs out. */
static bool site_grow(sm_pool *p)
{
    site_tab *t = &p->sites;
    if (t->n + 1 < t->cap)
        return true;
    uint32_t cap = t->cap ? 2 * t->cap : SITE_FIRST_CAP;
    site *v = pool_alloc(p, (size_t)cap * sizeof *v, _Alignof(site));
    uint32_t *slots = v ? pool_alloc(p, site_slots_bytes(cap), _Alignof(uint32_t)) : NULL;
    if (!slots) {
        if (v)
            pool_release(p, v, (size_t)cap * sizeof *v);
        return false;
    }
    memset(slots, 0, site_slots_bytes(cap));
    if (t->n)
        memcpy(v + 1, t->v + 1, (size_t)t->n * sizeof *v);
    for (uint32_t id = 1; id <= t->n; id++)
        site_place(slots, cap, v, id);
    if (t->v) {
        pool_release(p, t->v, (size_t)t->cap * sizeof *t->v);
        pool_release(p, t->slots, site_slots_bytes(t->cap));
    }
    t->v = v;
    t->slots = slots;
    t->cap = cap;
    return true;
}

/* The number of this stack in the table, added if new; 0 when it cannot be
 * (no memory, or SITE_MAX stacks already). */
static uint32_t site_intern(sm_pool *p, void *const *pcs, int depth)
{
    site_tab *t = &p->sites;
    if (depth <= 0)
        return 0;
    uint64_t h = stack_hash(pcs, depth);
    if (t->slots) {
        uint32_t mask = 2 * t->cap - 1;
        for (uint32_t i = (uint32_t)h & mask; t->slots[i]; i = (i + 1) & mask) {
            const site *e = &t->v[t->slots[i]];
            if (e->hash == h && e->depth == (uint32_t)depth &&
                memcmp(e->pcs, pcs, (size_t)depth * sizeof *pcs) == 0)
                return t->slots[i];
        }
    }
    if (t->n + 1 >= SITE_MAX || !site_grow(p))
        return 0;
    uint32_t id = ++t->n;
    site *e = &t->v[id];
    memset(e, 0, sizeof *e);
    e->hash = h;
    e->depth = (uint32_t)depth;
    memcpy(e->pcs, pcs, (size_t)depth * sizeof *pcs);
    site_place(t->slots, t->cap, t->v, id);
    return id;
}

static void site_drop(sm_pool *p)
{
    site_tab *t = &p->sites;
    if (t->v) {
        pool_release(p, t->v, (size_t)t->cap * sizeof *t->v);
        pool_release(p, t->slots, site_slots_bytes(t->cap));
    }
    memset(t, 0, sizeof *t);
}

/* Copies the first frames of stack id (0: none) for a report. */
static int site_brief_copy(const sm_pool *p, uint32_t id, void **pcs)
{
    if (!id)
        return 0;
    const site *e = &p->sites.v[id];
    int depth = e->depth < SITE_BRIEF ? (int)e->depth : SITE_BRIEF;
    memcpy(pcs, e->pcs, (size_t)depth * sizeof *pcs);
    return depth;
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
    reg *r = pool_alloc(p, reg_bytes(cap), _Alignof(max_align_t));
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
        pool_release(p, old, reg_bytes(old->mask + 1));
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
    stab *t = pool_alloc(p, stab_bytes(cap), _Alignof(max_align_t));
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
        pool_release(p, old, stab_bytes(old->cap));
    return 0;
}

/* ---- Slabs and slots ---------------------------------------------------- */

/* A descriptor: the header, then per slot a state byte (rounded up to 8
 * bytes in all), a generation, a free bit and, when the pool records call
 * sites, the numbers of its last Get's and Put's stacks. */
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
    if (p->sample)
        b += 2 * (size_t)p->nslots * sizeof(uint32_t);
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
    void *mem = pool_alloc(p, p->slab_bytes, p->slab_bytes);
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
        s = pool_alloc(p, desc_bytes(p), 64);
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
        s->get_site = s->put_site = NULL;
        if (p->sample) {
            s->get_site = (uint32_t *)(void *)(s->freebits + (p->nslots + 63) / 64);
            s->put_site = s->get_site + p->nslots;
        }
        for (uint32_t i = 0; i < p->nslots; i++) {
            atomic_init(&s->states[i], ST_FREE);
            atomic_init(&s->gens[i], t->e[number].gen_floor);
            if (s->get_site)
                s->get_site[i] = s->put_site[i] = 0;
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
    pool_release(p, mem, p->slab_bytes);
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
    pool_release(p, (void *)base, p->slab_bytes);
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
    p->carved++;
    p->news++;
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
    st_move(e.st, ST_FREE);
    p->carved--;
    p->frees++;
    s->freebits[idx / 64] |= (uint64_t)1 << (idx % 64);
    if (idx / 64 < s->hint)
        s->hint = idx / 64;
    if (s->used-- == p->nslots)
        partial_link(p, s);
    if (s->used == 0)
        slab_retire(p, s);
}

/* ---- Depot -------------------------------------------------------------- */

static bool vec_push(sm_pool *p, vec *v, entry e)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
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

static void vec_drop(sm_pool *p, vec *v)
{
    if (v->v)
        pool_release(p, v->v, v->cap * sizeof(entry));
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
    if (!idle_room(p) || !vec_push(p, &p->current, e)) {
        slot_release(p, e);
        return;
    }
    st_move(e.st, ST_IDLE);
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
    st_move(e.st, ST_IDLE);
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

/* ---- Counting and sampling ---------------------------------------------- */

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
static void tc_resample(const sm_pool *p, tcache *tc)
{
    uint64_t next = tc_interval(p, tc);
    tc->base += 1 + next; /* was base - 0; now one more Get */
    atomic_store_explicit(&tc->left, next, memory_order_relaxed);
}

/* Lock held.  Gets and Puts so far, the tcaches' included (those are read
 * while their owners run: approximate by the calls in flight). */
static void counts_locked(const sm_pool *p, uint64_t *gets, uint64_t *puts)
{
    uint64_t g = p->gets_locked, u = p->puts_locked;
    for (const tcache *tc = p->caches; tc; tc = tc->next) {
        g += tc->base - atomic_load_explicit(&((tcache *)tc)->left, memory_order_relaxed);
        u += atomic_load_explicit(&((tcache *)tc)->puts, memory_order_relaxed);
    }
    *gets = g;
    *puts = u;
}

static size_t live_locked(const sm_pool *p)
{
    uint64_t gets, puts;
    counts_locked(p, &gets, &puts);
    return gets > puts ? (size_t)(gets - puts) : 0;
}

/* Pool lock held: empties a cache into the depot and unlinks it; its counts
 * go to the pool's. */
static void tcache_detach_locked(sm_pool *p, tcache *tc)
{
    p->gets_locked += tc->base - atomic_load_explicit(&tc->left, memory_order_relaxed);
    p->puts_locked += atomic_load_explicit(&tc->puts, memory_order_relaxed);
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
            pool_release(p, e->tc, tcache_bytes(p));
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

/* This thread's cache for p if it is the most recent one, else NULL.  An
 * entry in use always has a cache, so testing it first rules out p NULL. */
static inline tcache *tls_fast(const sm_pool *p)
{
    const tls_entry *e = &tls_ents[0];
    tcache *tc = e->tc;
    if (SM_LIKELY(e->pool == p) && SM_LIKELY(tc != NULL) && SM_LIKELY(e->id == p->id))
        return tc;
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
        tcache *tc = pool_alloc(p, tcache_bytes(p), 64);
        if (!tc)
            return NULL;
        atomic_init(&tc->active, 0);
        atomic_init(&tc->steal, 0);
        tc->n = 0;
        tc->memo_base = UINTPTR_MAX;
        tc->memo = NULL;
        tc->rng =
            mix64(atomic_fetch_add_explicit(&g_next_seed, 1, memory_order_relaxed) ^ p->id << 32) |
            1;
        uint64_t first = tc_interval(p, tc);
        atomic_init(&tc->left, first);
        atomic_init(&tc->puts, 0);
        tc->base = first;
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
    unsigned v = st_load(e.st);
    st_move(e.st, ST_CONDEMNED);
    p->condemned++;
    if (out->n == MAX_REPORTS) {
        out->more++;
        return false;
    }
    report *r = &out->r[out->n++];
    *r = (report){.a = e.a, .off = off, .byte = byte};
    if (s->put_site && (v & ST_PSITE))
        r->put_depth = site_brief_copy(p, s->put_site[idx], r->put_pcs);
    if (s->get_site && (v & ST_GSITE))
        r->get_depth = site_brief_copy(p, s->get_site[idx], r->get_pcs);
    return false;
}

static void reports_raise(sm_pool *p, const char *what, const reports *rs)
{
    char layout[160], put[200], get[200];
    chk_layout_format(layout, sizeof layout, &p->layout);
    for (size_t i = 0; i < rs->n; i++) {
        const report *r = &rs->r[i];
        stack_brief(put, sizeof put, r->put_pcs, r->put_depth);
        get[0] = 0;
        if (r->get_depth) {
            memcpy(get, "; got by ", 10);
            stack_brief(get + 9, sizeof get - 9, r->get_pcs, r->get_depth);
        }
        atomic_fetch_add_explicit(&p->misuse[-SM_ECORRUPT], 1, memory_order_relaxed);
        chk_raise(SM_ECORRUPT, what, p, r->a,
                  "array %p of %s was written after it was put back: byte %zu is 0x%02x, "
                  "poison is 0x%02x; put back by %s%s; the array is withdrawn%s",
                  r->a, layout, r->off, r->byte, CHK_POISON_BYTE, put, get,
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

/* What put_check() found, for the event raised once the lock is dropped:
 * the text so far, and for a double Put the first frames of the array's
 * last Put and Get (symbolized only then: dladdr() takes the loader's lock,
 * which must not nest inside the pool's). */
typedef struct misuse_text {
    char detail[384];
    const char *now; /* a double Put: where the array is now */
    int put_depth, get_depth;
    void *put_pcs[SITE_BRIEF], *get_pcs[SITE_BRIEF];
} misuse_text;

/* Lock held.  0 when a is a LIVE array of p; else the code and its text. */
static int put_check(sm_pool *p, void *a, found *f, misuse_text *m)
{
    m->now = NULL;
    m->put_depth = m->get_depth = 0;
    int rc = locate(p, a, f, m->detail, sizeof m->detail);
    if (rc)
        return rc;
    unsigned v = st_load(&f->s->states[f->idx]);
    if (st_live(v))
        return 0;
    if (st_base(v) == ST_FREE) {
        stab *t = atomic_load_explicit(&p->stab, memory_order_relaxed);
        if (gen_load(f->s, f->idx) == t->e[f->s->number].gen_floor) {
            snprintf(m->detail, sizeof m->detail,
                     "%p is a slot of this pool that was never handed out", a);
            return SM_EFOREIGN;
        }
    }
    m->now = st_base(v) == ST_FREE        ? "its memory since released"
             : st_base(v) == ST_CONDEMNED ? "is withdrawn (corrupted)"
                                          : "is idle in the pool";
    if (f->s->put_site && (v & ST_PSITE))
        m->put_depth = site_brief_copy(p, f->s->put_site[f->idx], m->put_pcs);
    if (f->s->get_site && (v & ST_GSITE))
        m->get_depth = site_brief_copy(p, f->s->get_site[f->idx], m->get_pcs);
    return SM_EDOUBLE;
}

/* No lock held.  Raises the event (not at OFF) naming, besides what
 * put_check found, the call being made: ra is its return address. */
static int raise_misuse(sm_pool *p, int rc, const char *what, const void *a, const found *f,
                        misuse_text *m, const void *ra)
{
    char layout[160], here[200], put[200], get[220];
    void *pcs[SITE_DEPTH];
    if (rc == SM_EFOREIGN && !f->s)
        foreign_describe(p, a, m->detail, sizeof m->detail);
    if (p->check == SM_CHECK_OFF)
        return rc;
    chk_layout_format(layout, sizeof layout, &p->layout);
    stack_brief(here, sizeof here, pcs, stack_capture(pcs, ra));
    get[0] = 0;
    if (rc == SM_EDOUBLE) {
        if (m->put_depth) {
            stack_brief(put, sizeof put, m->put_pcs, m->put_depth);
            snprintf(m->detail, sizeof m->detail, "array %p was already put back by %s, and %s", a,
                     put, m->now);
        } else {
            snprintf(m->detail, sizeof m->detail,
                     "array %p was already put back (that Put was not recorded), and %s", a,
                     m->now);
        }
        if (m->get_depth) {
            memcpy(get, "; got by ", 10);
            stack_brief(get + 9, sizeof get - 9, m->get_pcs, m->get_depth);
        }
    }
    atomic_fetch_add_explicit(&p->misuse[-rc], 1, memory_order_relaxed);
    const char *call = strcmp(what, "sm_pool_put") != 0 ? "called"
                       : rc == SM_EDOUBLE               ? "put back again"
                                                        : "put back";
    return chk_raise(rc, what, p, a, "%s; pool holds %s; %s by %s%s", m->detail, layout, call, here,
                     get);
}

/* ---- Recording call sites (lock held) ----------------------------------- */

/* A Get of e is recorded: its stack is counted, and named by the slot. */
static void record_get(sm_pool *p, entry e, void *const *pcs, int depth)
{
    uint32_t id = site_intern(p, pcs, depth);
    if (!id)
        return;
    uint32_t idx = slot_index(p, e.a);
    slab *s = slab_of_state(e.st, idx);
    site *g = &p->sites.v[id];
    g->gets++;
    g->inuse++;
    s->get_site[idx] = id;
    st_store(e.st, ST_LIVE | ST_GSITE);
}

/* The Put of slot idx (state v, LIVE) is recorded when pcs has a stack.
 * Returns the site flags the slot keeps for the life that ends. */
static unsigned record_put(sm_pool *p, slab *s, uint32_t idx, unsigned v, void *const *pcs,
                           int depth)
{
    unsigned flags = v & ST_GSITE;
    if (flags)
        p->sites.v[s->get_site[idx]].inuse--;
    uint32_t id = s->put_site ? site_intern(p, pcs, depth) : 0;
    if (id) {
        p->sites.v[id].puts++;
        s->put_site[idx] = id;
        flags |= ST_PSITE;
    }
    return flags;
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

/* Lock-free, in the owner's window: the most recently put array. */
static inline bool tc_pop(tcache *tc, entry *e)
{
    *e = tc->hot;
    if (SM_LIKELY(e->a != NULL)) {
        tc->hot.a = NULL;
        return true;
    }
    if (SM_LIKELY(tc->n != 0)) {
        *e = tc->mag[--tc->n];
        return true;
    }
    return false;
}

/* FULL: every call under the lock, and every call recorded. */
static void *get_full(sm_pool *p, const void *ra)
{
    reports rs = {.n = 0, .more = 0};
    void *pcs[SITE_DEPTH];
    int depth = stack_capture(pcs, ra);
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
    p->gets_locked++;
    record_get(p, e, pcs, depth);
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

/* Everything sm_pool_get() does not do inline: hooks, no membarrier, an
 * empty cache, FULL, and the Get the sampling countdown chose (ra is the
 * return address of sm_pool_get, where the recorded stack starts). */
static SM_NOINLINE void *get_slow(sm_pool *p, const void *ra)
{
    if (!p)
        return NULL;
    if (p->check == SM_CHECK_FULL)
        return get_full(p, ra);
    tcache *tc = tls_get(p);
    uint64_t left = tc ? atomic_load_explicit(&tc->left, memory_order_relaxed) : 0;
    entry e;
    if (tc && left) {
        if (tc_enter(tc) && tc_pop(tc, &e)) {
            st_store(e.st, ST_LIVE);
            tc_count_get(tc, left);
            tc_leave(tc);
            return p->plain ? e.a : get_finish(p, e.a, false, false);
        }
        tc_leave(tc);
    }
    /* With a cache and left at zero, this Get is the one to record. */
    void *pcs[SITE_DEPTH];
    int depth = tc && !left && p->sample ? stack_capture(pcs, ra) : 0;
    bool fresh = false;
    pthread_mutex_lock(&p->lock);
    if (tc && tc->hot.a) {
        e = tc->hot; /* the owner's cache, under the lock: no cycle can run */
        tc->hot.a = NULL;
        st_store(e.st, ST_LIVE);
    } else {
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
    }
    if (!tc)
        p->gets_locked++;
    else if (left)
        tc_count_get(tc, left);
    else
        tc_resample(p, tc);
    if (depth)
        record_get(p, e, pcs, depth);
    pthread_mutex_unlock(&p->lock);
    return p->plain ? e.a : get_finish(p, e.a, fresh, false);
}

void *sm_pool_get(sm_pool *p)
{
    tcache *tc = tls_fast(p);
    if (SM_LIKELY(tc != NULL) && SM_LIKELY(p->fast)) {
        if (SM_LIKELY(tc_enter_fast(tc))) {
            uint64_t left = atomic_load_explicit(&tc->left, memory_order_relaxed);
            entry e;
            if (SM_LIKELY(left != 0) && SM_LIKELY(tc_pop(tc, &e))) {
                tc_count_get(tc, left);
                st_store(e.st, ST_LIVE);
                tc_leave(tc);
                return e.a;
            }
        }
        tc_leave(tc);
    }
    return get_slow(p, __builtin_return_address(0));
}

/* ---- Put ---------------------------------------------------------------- */

/* The owner's window: is there room for one more array in the cache? */
static inline bool tc_room(const tcache *tc)
{
    /* Only hot.a: a 16-byte load would not be forwarded from the 8-byte
     * store Get just made, and would stall. */
    return tc->hot.a == NULL ? tc->hot_ok : tc->n < tc->cap;
}

/* Files e as the hot array, the previous one pushed onto the magazine. */
static inline void tc_push(tcache *tc, entry e)
{
    if (tc->hot.a)
        tc->mag[tc->n++] = tc->hot;
    tc->hot = e;
}

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
        if (tc_enter(tc) && tc_room(tc)) {
            st_move(e.st, ST_IDLE);
            tc_push(tc, e);
            tc_leave(tc);
            return;
        }
        tc_leave(tc);
    }
    pthread_mutex_lock(&p->lock);
    cache_put_locked(p, tc, e);
    pthread_mutex_unlock(&p->lock);
}

/* FULL: every call under the lock, and every call recorded. */
static int put_full(sm_pool *p, void *a, const void *ra)
{
    misuse_text m;
    found f;
    reports rs = {.n = 0, .more = 0};
    void *pcs[SITE_DEPTH];
    int depth = stack_capture(pcs, ra);
    pthread_mutex_lock(&p->lock);
    int rc = put_check(p, a, &f, &m);
    if (rc) {
        pthread_mutex_unlock(&p->lock);
        return raise_misuse(p, rc, "sm_pool_put", a, &f, &m, ra);
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
    unsigned v = st_load(st);
    unsigned flags = record_put(p, f.s, f.idx, v, pcs, depth);
    p->puts_locked++;
    life_end(f.s, f.idx, v, ST_PUTTING | flags);
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
        st_move(st, ST_QUAR);
    } else {
        slot_release(p, e);
    }
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* Lock-free, in the owner's window: the Put of a LIVE array whose Get was
 * not recorded (a handle may have been taken).  False, nothing done, when
 * it needs the lock: no room, a recorded Get, or misuse to report. */
static bool put_cached(sm_pool *p, tcache *tc, void *a)
{
    char unused[160];
    found f;
    bool done = false, finish = false;
    if (tc_enter(tc) && locate(p, a, &f, unused, sizeof unused) == 0) {
        _Atomic uint8_t *st = &f.s->states[f.idx];
        unsigned v = st_load(st);
        if (st_live(v) && !(v & ST_GSITE) && (!p->plain || tc_room(tc))) {
            tc->memo_base = f.base;
            tc->memo = f.s;
            life_end(f.s, f.idx, v, p->plain ? ST_IDLE : ST_PUTTING);
            if (p->plain)
                tc_push(tc, (entry){a, st});
            tc_count_put(tc);
            done = true;
            finish = !p->plain;
        }
    }
    tc_leave(tc);
    if (finish)
        put_finish(p, (entry){a, &f.s->states[f.idx]});
    return done;
}

/* Under the lock: checks, and records the Put of an array whose Get was
 * recorded (its stack taken with the lock dropped). */
static int put_locked(sm_pool *p, tcache *tc, void *a, const void *ra)
{
    misuse_text m;
    found f;
    void *pcs[SITE_DEPTH];
    int depth = -1; /* not taken */
    unsigned v;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        int rc = put_check(p, a, &f, &m);
        if (rc) {
            pthread_mutex_unlock(&p->lock);
            return raise_misuse(p, rc, "sm_pool_put", a, &f, &m, ra);
        }
        v = st_load(&f.s->states[f.idx]);
        if (!(v & ST_GSITE) || depth >= 0)
            break;
        pthread_mutex_unlock(&p->lock);
        depth = stack_capture(pcs, ra);
    }
    entry e = {a, &f.s->states[f.idx]};
    unsigned flags = v & ST_GSITE ? record_put(p, f.s, f.idx, v, pcs, depth) : 0;
    if (tc) {
        tc->memo_base = f.base;
        tc->memo = f.s;
        tc_count_put(tc);
    } else {
        p->puts_locked++;
    }
    life_end(f.s, f.idx, v, ST_PUTTING | flags);
    if (!p->plain) {
        pthread_mutex_unlock(&p->lock);
        put_finish(p, e);
        return 0;
    }
    cache_put_locked(p, tc, e);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* Everything sm_pool_put() does not do inline; ra is its return address. */
static SM_NOINLINE int put_slow(sm_pool *p, void *a, const void *ra)
{
    if (!p || !a)
        return SM_EINVAL;
    if (p->check == SM_CHECK_FULL)
        return put_full(p, a, ra);
    tcache *tc = tls_get(p);
    if (tc && put_cached(p, tc, a))
        return 0;
    return put_locked(p, tc, a, ra);
}

int sm_pool_put(sm_pool *p, void *array)
{
    tcache *tc = tls_fast(p);
    if (SM_LIKELY(tc != NULL) && SM_LIKELY(p->fast)) {
        uintptr_t base = (uintptr_t)array & p->slab_mask;
        if (SM_LIKELY(tc_enter_fast(tc)) && SM_LIKELY(base == tc->memo_base)) {
            slab *s = tc->memo;
            uint32_t idx;
            if (SM_LIKELY(atomic_load_explicit(&s->base, memory_order_relaxed) == base) &&
                SM_LIKELY(slot_of_offset(p, (uintptr_t)array - base, &idx)) &&
                SM_LIKELY(idx < p->nslots)) {
                _Atomic uint8_t *st = &s->states[idx];
                /* Exactly LIVE: a taken handle or a recorded Get (flags)
                 * takes the slow path, at no cost here.  The common case,
                 * an empty hot slot, is tested first and alone (tc_room()
                 * and tc_push() in one, unrolled). */
                if (SM_LIKELY(st_load(st) == ST_LIVE)) {
                    if (SM_LIKELY(tc->hot.a == NULL) && SM_LIKELY(tc->hot_ok)) {
                        st_store(st, ST_IDLE);
                        tc->hot = (entry){array, st};
                        tc_count_put(tc);
                        tc_leave(tc);
                        return 0;
                    }
                    if (tc->hot.a && tc->n < tc->cap) {
                        st_store(st, ST_IDLE);
                        tc->mag[tc->n++] = tc->hot;
                        tc->hot = (entry){array, st};
                        tc_count_put(tc);
                        tc_leave(tc);
                        return 0;
                    }
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
        pool_release(p, s, desc_bytes(p));
    }
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* What one cycle did, for the trace line (see docs/safety.md). */
typedef struct cycle_trace {
    uint64_t cycle;
    size_t idle, victims, freed, live, reserved;
} cycle_trace;

static void trace_cycle(const sm_pool *p, const cycle_trace *t, double us)
{
    chk_trace("pool %p [%s] cycle %llu: idle %zu -> victim %zu, freed %zu (%zu B), "
              "live %zu (%zu B), reserved %zu B, %.0f us",
              (const void *)p, p->layout.name ? p->layout.name : "?", (unsigned long long)t->cycle,
              t->idle, t->victims, t->freed, t->freed * p->size, t->live, t->live * p->size,
              t->reserved, us);
}

void sm_pool_cycle(sm_pool *p)
{
    if (!p)
        return;
    bool trace = chk_debug_get()->trace != 0;
    double t0 = trace ? now_us() : 0;
    cycle_trace tr;
    reports rs = {.n = 0, .more = 0};
    pthread_mutex_lock(&p->lock);
    stw_begin(p);
    uint64_t frees = p->frees;
    tr.idle = idle_count(p);
    for (tcache *tc = p->caches; tc; tc = tc->next)
        tr.idle += tc->n + (tc->hot.a != NULL);
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
            if (vec_push(p, &p->victim, e))
                st_move(e.st, ST_IDLE);
            else
                slot_release(p, e);
        }
    }
    for (tcache *tc = p->caches; tc; tc = tc->next) {
        if (tc->hot.a && !vec_push(p, &p->victim, tc->hot))
            slot_release(p, tc->hot);
        tc->hot.a = NULL;
        for (uint32_t i = 0; i < tc->n; i++)
            if (!vec_push(p, &p->victim, tc->mag[i]))
                slot_release(p, tc->mag[i]);
        tc->n = 0;
        tc->memo_base = UINTPTR_MAX;
        tc->memo = NULL;
    }
    vec_drop(p, &p->current);
    if (!p->victim.n)
        vec_drop(p, &p->victim);
    depot_trim(p);
    spare_free(p);
    tr.cycle = ++p->cycles;
    tr.victims = p->victim.n;
    tr.freed = (size_t)(p->frees - frees);
    tr.live = live_locked(p);
    tr.reserved = atomic_load_explicit(&p->held, memory_order_relaxed);
    stw_end(p);
    pthread_mutex_unlock(&p->lock);
    reports_raise(p, "sm_pool_cycle", &rs);
    if (trace)
        trace_cycle(p, &tr, now_us() - t0);
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
    misuse_text m;
    found f;
    if (!p || !array)
        return h;
    tcache *tc = view_begin(p);
    int rc = locate(p, array, &f, m.detail, sizeof m.detail);
    if (rc == 0) {
        unsigned v = st_load(&f.s->states[f.idx]);
        if (st_live(v)) {
            st_store(&f.s->states[f.idx], v | ST_HANDLED);
            uint64_t gen = gen_load(f.s, f.idx) ^ p->key;
            h.bits = gen << 32 | (uint64_t)f.s->number << p->slot_bits | f.idx;
        }
    }
    view_end(p, tc);
    if (rc)
        raise_misuse(p, rc, "sm_pool_handle", array, &f, &m, __builtin_return_address(0));
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
        if (st_live(v) && (v & ST_HANDLED) && (gen_load(s, idx) ^ p->key) == gen && base)
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
    atomic_init(&p->held, sizeof *p);
    for (int i = 0; i < SM_NCODES; i++)
        atomic_init(&p->misuse[i], 0);
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
    p->fast = p->plain && g_membarrier && !SM_POOL_TSAN;
    p->sample = check == SM_CHECK_FULL ? 1 : check == SM_CHECK_CHEAP ? chk_debug_get()->sample : 0;
    p->layout = o->layout;
    p->idle_limit = o->max_idle_bytes ? o->max_idle_bytes / stride : SIZE_MAX;
    size_t mag = MAG_BYTES / stride;
    p->mag_max = mag > MAG_MAX ? MAG_MAX : mag < 1 ? 1 : (uint32_t)mag;
    p->stab_top = 1; /* number 0 is never used: a zero handle names nothing */
    if (check == SM_CHECK_FULL) {
        size_t q = QUAR_BYTES / stride;
        p->qcap = q > QUAR_MAX ? QUAR_MAX : q < QUAR_MIN ? QUAR_MIN : q;
        p->quar = pool_alloc(p, p->qcap * sizeof(entry), _Alignof(entry));
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
    p->key = (uint32_t)mix64(p->id);
    p->gnext = g_pools;
    if (g_pools)
        g_pools->gprev = p;
    g_pools = p;
    pthread_mutex_unlock(&g_lock);
    reg_pool_add(p);
    *out = p;
    return 0;
}

static int report_write(sm_pool *p, FILE *out, const char *what);

void sm_pool_free(sm_pool *p)
{
    if (!p)
        return;
    reg_pool_del(p);
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
        /* Leaks: a report, not an event. */
        size_t live = live_locked(p);
        if (live && report_write(p, stderr, "leaked at sm_pool_free") != 0)
            fprintf(stderr, "safemap: pool %p %s: %zu arrays leaked at sm_pool_free (%zu B)\n",
                    (void *)p, p->layout.name ? p->layout.name : "?", live, live * p->size);
    }
    for (int i = 0; i < TLS_ENTRIES; i++)
        if (tls_ents[i].pool == p && tls_ents[i].id == p->id)
            tls_ents[i] = (tls_entry){NULL, 0, NULL};
    while (p->caches) {
        tcache *tc = p->caches;
        p->caches = tc->next;
        pool_release(p, tc, tcache_bytes(p));
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
            pool_release(p, (void *)base, p->slab_bytes);
        }
        pool_release(p, s, desc_bytes(p));
    }
    if (t)
        pool_release(p, t, stab_bytes(t->cap));
    reg *r = atomic_load_explicit(&p->reg, memory_order_relaxed);
    if (r)
        pool_release(p, r, reg_bytes(r->mask + 1));
    vec_drop(p, &p->current);
    vec_drop(p, &p->victim);
    if (p->quar)
        pool_release(p, p->quar, p->qcap * sizeof(entry));
    site_drop(p);
    pthread_mutex_destroy(&p->lock);
    alc_free(p, sizeof *p);
}

/* ---- Statistics and reports --------------------------------------------- */

int sm_pool_stats(sm_pool *p, struct sm_pool_stats *out)
{
    if (!p || !out)
        return SM_EINVAL;
    memset(out, 0, sizeof *out);
    out->layout = p->layout;
    out->check = p->check;
    pthread_mutex_lock(&p->lock);
    counts_locked(p, &out->gets, &out->puts);
    out->news = p->news;
    out->frees = p->frees;
    out->cycles = p->cycles;
    size_t kept = p->carved - p->condemned; /* live or idle (or being put) */
    pthread_mutex_unlock(&p->lock);
    size_t live = out->gets > out->puts ? (size_t)(out->gets - out->puts) : 0;
    out->live_arrays = live < kept ? live : kept;
    out->idle_arrays = kept - out->live_arrays;
    out->live_bytes = out->live_arrays * p->size;
    out->idle_bytes = out->idle_arrays * p->size;
    out->reserved_bytes = atomic_load_explicit(&p->held, memory_order_relaxed);
    for (int i = 0; i < SM_NCODES; i++)
        out->misuse[i] = atomic_load_explicit(&p->misuse[i], memory_order_relaxed);
    return 0;
}

void pool_each_site(sm_pool *p, void (*f)(const pool_site *site, void *ctx), void *ctx)
{
    if (!p || !f)
        return;
    uint64_t scale = p->sample; /* one recorded Get stands for `sample` */
    pthread_mutex_lock(&p->lock);
    for (uint32_t id = 1; id <= p->sites.n; id++) {
        const site *e = &p->sites.v[id];
        if (!e->gets)
            continue; /* a Put stack */
        pool_site ps = {(const void *const *)e->pcs, (int)e->depth,    e->gets * scale,
                        e->gets * scale * p->size,   e->inuse * scale, e->inuse * scale * p->size};
        f(&ps, ctx);
    }
    pthread_mutex_unlock(&p->lock);
}

/* One Get stack of a report, copied out of the table. */
typedef struct group {
    uint64_t count;
    uint32_t depth;
    void *pcs[SITE_DEPTH];
} group;

static int group_order(const void *a, const void *b)
{
    const group *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return (uintptr_t)x->pcs[0] < (uintptr_t)y->pcs[0]   ? -1
           : (uintptr_t)x->pcs[0] > (uintptr_t)y->pcs[0] ? 1
                                                         : 0;
}

/* How this pool records Get call sites, for a report's first line. */
static void recording_format(const sm_pool *p, char *buf, size_t n)
{
    if (p->check == SM_CHECK_FULL)
        snprintf(buf, n, "every Get recorded (SM_CHECK_FULL)");
    else if (p->check == SM_CHECK_OFF)
        snprintf(buf, n, "none recorded (SM_CHECK_OFF)");
    else if (p->sample == 0)
        snprintf(buf, n, "none recorded (SAFEMAP_DEBUG=sample=0)");
    else if (p->sample == 1)
        snprintf(buf, n, "every Get recorded (SM_CHECK_CHEAP, SAFEMAP_DEBUG=sample=1)");
    else
        snprintf(buf, n, "1 Get in %u recorded (SM_CHECK_CHEAP, SAFEMAP_DEBUG=sample=%u)",
                 p->sample, p->sample);
}

/* The format of sm_pool_report() (safemap.h): the arrays handed out and not
 * back, grouped by the stack of their Get, largest group first.  `what` is
 * "outstanding" or "leaked at sm_pool_free".  The groups are copied under
 * the lock and written after it is dropped. */
static int report_write(sm_pool *p, FILE *out, const char *what)
{
    group *g = NULL;
    size_t k = 0, cap = 0;
    uint64_t recorded = 0;
    pthread_mutex_lock(&p->lock);
    for (uint32_t id = 1; id <= p->sites.n; id++)
        cap += p->sites.v[id].inuse != 0;
    if (cap && !(g = alc_alloc(cap * sizeof *g, _Alignof(group)))) {
        pthread_mutex_unlock(&p->lock);
        return SM_ENOMEM;
    }
    for (uint32_t id = 1; id <= p->sites.n; id++) {
        const site *e = &p->sites.v[id];
        if (!e->inuse)
            continue;
        g[k].count = e->inuse;
        g[k].depth = e->depth;
        memcpy(g[k].pcs, e->pcs, e->depth * sizeof *e->pcs);
        recorded += e->inuse;
        k++;
    }
    size_t live = live_locked(p);
    pthread_mutex_unlock(&p->lock);
    if (k)
        qsort(g, k, sizeof *g, group_order);

    char how[128], frame[256];
    recording_format(p, how, sizeof how);
    fprintf(out, "safemap: pool %p %s: %zu arrays %s (%zu B); Get call sites: %s\n", (void *)p,
            p->layout.name ? p->layout.name : "?", live, what, live * p->size, how);
    for (size_t i = 0; i < k; i++) {
        fprintf(out, "  %llu arrays (%llu B) got at:\n", (unsigned long long)g[i].count,
                (unsigned long long)(g[i].count * p->size));
        for (uint32_t d = 0; d < g[i].depth; d++) {
            frame_format(frame, sizeof frame, g[i].pcs[d]);
            fprintf(out, "    #%u %p in %s\n", d, g[i].pcs[d], frame);
        }
    }
    size_t rest = live > recorded ? live - (size_t)recorded : 0;
    fprintf(out, "  %zu arrays (%zu B) whose Get was not recorded\n", rest, rest * p->size);
    if (g)
        alc_free(g, cap * sizeof *g);
    return 0;
}

int sm_pool_report(sm_pool *p, FILE *out)
{
    if (!p || !out)
        return SM_EINVAL;
    return report_write(p, out, "outstanding");
}
