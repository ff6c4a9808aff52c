/*
 * cmap.c - the concurrent map: readers that never lock and never wait for
 * growth, writers that lock one segment, memory freed after its readers.
 *
 * Shape.  As in the single-threaded map, a directory indexed by the top gd
 * bits of the hash points to segments; a segment of local depth d owns the
 * 2^(gd-d) entries sharing its d-bit prefix, and holds a small
 * open-addressed table.  What is added is the protocol that lets any number
 * of threads use it at once:
 *
 *   map ──dir──▶ directory  [ seg0 seg0 seg1 seg2 ]     one atomic pointer
 *                              │         │    │
 *                              ▼         ▼    ▼
 *        segment: seq | lock | depth count debt groups next | ctrl words | slots
 *
 * Readers (sm_cmap_get) take no lock.  Inside an epoch read section they
 * load the directory, the segment, then
 *
 *     q = seq (acquire)        odd: a writer is in a slot, look again
 *                              RETIRED: the segment was replaced, reload dir
 *     probe (seg_lookup); copy the value with relaxed 8-byte atomic loads
 *     acquire fence; seq == q ?  done : retry
 *
 * so a copy that overlapped a write is thrown away: no torn array, no value
 * that was never stored.  (An inline value of eight words, the common
 * int64_t[8], gets one try in registers first, cmap_read64_once; anything
 * unusual hands it to the general loop.)  The value's bytes are read with atomic loads and
 * written with atomic stores, as the C11 memory model requires of a
 * seqlock; the probe's reads are validated the same way (see "Inside a
 * segment" for how they are kept from ThreadSanitizer).
 *
 * Writers lock the segment that owns the key (the lock word in its header),
 * check it is not retired, and change a slot between two increments of
 * seq.  The invariant that makes readers safe:
 *
 *     a live (not retired) segment holds exactly the entries of its hash
 *     range, and its bytes change only while its seq is odd.
 *
 * Growth never writes in place.  A full segment is copied into two fresh
 * segments (or one, to drop tombstones), which are published by storing
 * their pointers into the directory; then the old one is marked RETIRED in
 * its seq and handed to reclamation.  A directory doubling or halving builds
 * a new directory and publishes it with one pointer store.  Directory
 * entries change only under the map's `grow` mutex; lock order is segment,
 * then grow (a second segment only by trylock), then the limbo lock.
 * Readers are never blocked by any of it: at worst they read a retired
 * segment, see RETIRED, and look again.
 *
 * Reclamation (epoch.c).  Retired segments, directories and replaced pooled
 * arrays wait in a FIFO limbo stamped with the epoch of their retirement,
 * and are freed (segments: kept on a free list for reuse, as the map does;
 * arrays: put back in the pool) when every read section that could see them
 * has ended.  The limbo is bounded (limbo_bound: 16 segments or 1/8 of the
 * map): a writer that finds it over waits, outside its own section, for a
 * grace period.
 *
 * Pooled storage is copy-on-write.  A slot holds a pointer to an array from
 * the pool; a put or update fills a fresh array and swaps the pointer inside
 * the seq window, and the old array goes to the limbo.  A published array is
 * never written again, so a reader copies it after validating the pointer,
 * and sm_cmap_find() can hand it out for the rest of a read section.
 *
 * Inside a segment.  The segment is the single-threaded map's (segment.h:
 * groups of 15 slots with a control word each, the keyed hash, lookup,
 * claim and vacate), shared rather than copied.  A reader runs the same
 * seg_lookup() a writer does: segment.h bounds every index and every probe
 * by the geometry, so on bytes a writer is changing it still ends inside the
 * segment, and seq tells the reader to throw the answer away.  The control
 * words and keys it reads are read plainly (ThreadSanitizer is told to
 * ignore those reads: their result is validated, never trusted); the value,
 * the bytes that reach the caller, is copied with 8-byte atomic loads and
 * stored by writers with 8-byte atomic stores.
 *
 * The lock word and seq of segment.h's header are this file's: the lock is
 * a test-and-set spinlock that yields (writers hold it for one slot, or for
 * one segment's copy during a split), and the top bit of seq marks a
 * retired segment.  Once retired, a segment's count and debt are dead (no
 * one reads them) and hold the epoch of its retirement; `next` links the
 * limbo and the free list.
 *
 * Check levels.  Values of SM_INLINE maps are rewritten in place, so no
 * pointer into them is handed out (sm_cmap_find returns NULL); pooled
 * arrays escape a read section only through a kept pointer, which the
 * pool's FULL level poisons once the array is back.  Read sections are
 * checked for balance at CHEAP and FULL (SM_ESTALE).  At FULL
 * a reclaimed segment kept for reuse is poisoned (and marked for ASan and
 * valgrind) until a split takes it again, which checks the poison: a
 * reclamation that freed memory a thread could still see shows up as an
 * ASan report or SM_ECORRUPT instead of a silent read of recycled memory.
 */
#include "epoch.h"
#include "internal.h"
#include "sanitize.h"
#include "segment.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/random.h>
#endif
#if SM_HAVE_TSAN
/* ThreadSanitizer's annotations: reads between the two calls are not
 * recorded, so a validated optimistic read is not reported as a race. */
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define OPTIMISTIC_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define OPTIMISTIC_END() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define OPTIMISTIC_BEGIN() ((void)0)
#define OPTIMISTIC_END() ((void)0)
#endif

enum {
    /* A segment, copied whole by a split: the single-threaded map's size,
     * so both split at the same map sizes (docs/cmap.md, "Figures"). */
    CM_TARGET_BYTES = 112 * 1024,
    CM_MAX_SLOTS = 8192,
    FREE_KEEP_MIN = 2,   /* free segments always worth keeping */
    RECLAIM_EVERY = 16,  /* writes between two tries to reclaim */
    LIMBO_MIN_SEGS = 16, /* the limbo bound: this many segments' bytes, */
    LIMBO_FRACTION = 8,  /* or 1/8 of the map, whichever is larger */
    LOCK_SPINS = 128,    /* spins on a held lock word before yielding */
    CM_GD_MAX = 40,      /* global depth: 2^40 directory entries at most */
    CM_GD_SLACK = 8,     /* depth a segment may reach past log2(segments) */
    VERIFY_TRIES = 1000,
    NODE_SLAB = 64 /* limbo nodes for pooled arrays allocated at a time */
};

/* A function written once and compiled twice (the ordinary and the faulty
 * put), and one kept out of its callers (the general read). */
#if defined(__GNUC__)
#define CM_ALWAYS_INLINE inline __attribute__((always_inline))
#define CM_NOINLINE __attribute__((noinline))
#else
#define CM_ALWAYS_INLINE inline
#define CM_NOINLINE
#endif

#define SEQ_RETIRED ((uint32_t)1 << 31)
#define SEQ_MASK (SEQ_RETIRED - 1)

/* ---- Test faults (internal.h) -------------------------------------------- */

/* Tests set these to break the map on purpose and require their checkers
 * to notice.  Each is read only where it costs nothing when off: in a
 * reader only when seq was odd or its validation failed; a put loads them
 * once and, when any is on, runs a copy of itself compiled with them
 * (cmap_store_faulty), so the ordinary put has no fault test inside. */
_Atomic int cmap_test_faults;

static inline int fault_on(int which)
{
    return SM_UNLIKELY(atomic_load_explicit(&cmap_test_faults, memory_order_relaxed) & which);
}

/* Something waiting in the limbo besides segments (which wait on their own
 * `next` link): a retired directory (this is its first member, array NULL),
 * or a pooled array replaced or deleted (a node of its own). */
typedef struct limbo {
    struct limbo *next;
    uint64_t stamp; /* epoch at retirement */
    size_t bytes;
    void *array;
} limbo;

/* The length is kept in stripes, each on its own cache line and counting
 * the keys whose hash starts with its index, so that writers in different
 * segments do not fight over one line.  A stripe never goes below zero. */
enum { LEN_STRIPES = 16 };
typedef struct len_stripe {
    _Alignas(64) _Atomic size_t n;
} len_stripe;
_Static_assert(LEN_STRIPES == 16, "len_add() indexes stripes by the top 4 hash bits");

typedef struct cdir {
    limbo lim;
    unsigned gd, shift; /* 2^gd entries; index = hash >> shift */
    _Atomic(seg *) seg[];
} cdir;

struct sm_cmap {
    /* Read by every operation. */
    _Atomic(cdir *) dir;
    seg_hkey hkey;
    seg_geom geom;
    size_t vsize;       /* bytes of a value */
    bool v64;           /* inline values of exactly 8 words: sm_cmap_get's fast copy */
    size_t slot_vbytes; /* bytes of a slot's value part: vsize, or a pointer */
    int storage;        /* SM_INLINE or SM_POOLED */
    sm_pool *pool;
    int check;
    int trace;
    len_stripe len[LEN_STRIPES]; /* every insert and delete writes one */
    _Atomic uint64_t read_retries;
    /* Structure, under `grow`. */
    _Alignas(64) pthread_mutex_t grow;
    _Atomic size_t nsegs; /* live segments (read without the lock for bounds) */
    size_t ndeep;         /* live segments with depth == gd */
    uint64_t splits, merges, rebuilds, dir_doublings, dir_halvings;
    /* Retired memory, under `limbo_lock`. */
    pthread_mutex_t limbo_lock;
    seg *limbo_segs, *limbo_segs_tail;   /* FIFO by stamp */
    limbo *limbo_objs, *limbo_objs_tail; /* directories and pooled arrays */
    limbo *spare_nodes;                  /* pooled arrays' free limbo nodes */
    struct node_slab *node_slabs;        /* where they come from; freed with the map */
    size_t nslabs;
    _Atomic size_t limbo_objects;
    _Atomic size_t limbo_bytes; /* changed under the lock, read without */
    size_t limbo_peak;
    uint64_t reclaimed, grace_waits;
    seg *free;
    size_t nfree;
    /* Identity and diagnostics. */
    sm_layout layout;
    char name[SM_NAME_MAX];
    _Atomic uint64_t misuse[SM_NCODES];
    struct sm_cmap *reg_prev, *reg_next;
    uint64_t seq; /* creation number among concurrent maps, from 1 */
    bool named;   /* name came from sm_map_opts.name */
    bool pool_reffed;
};

static inline void len_add(sm_cmap *cm, uint64_t h, size_t delta)
{
    atomic_fetch_add_explicit(&cm->len[h >> 60].n, delta, memory_order_relaxed);
}

static size_t cmap_len(const sm_cmap *cm)
{
    size_t n = 0;
    for (int i = 0; i < LEN_STRIPES; i++)
        n += atomic_load_explicit(&cm->len[i].n, memory_order_relaxed);
    return n;
}

/* ---- Registry (for metrics) --------------------------------------------- */

/* Live concurrent maps, oldest first: a list of their own (stats.c's
 * registry is the single-threaded maps'), with a creation number for
 * labels that stay the same from run to run. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static sm_cmap *reg_head, *reg_tail;
static uint64_t reg_seq;

static void cmap_register(sm_cmap *cm)
{
    pthread_mutex_lock(&reg_lock);
    cm->seq = ++reg_seq;
    cm->reg_next = NULL;
    cm->reg_prev = reg_tail;
    if (reg_tail)
        reg_tail->reg_next = cm;
    else
        reg_head = cm;
    reg_tail = cm;
    pthread_mutex_unlock(&reg_lock);
}

static void cmap_unregister(sm_cmap *cm)
{
    pthread_mutex_lock(&reg_lock);
    if (cm->reg_prev)
        cm->reg_prev->reg_next = cm->reg_next;
    else
        reg_head = cm->reg_next;
    if (cm->reg_next)
        cm->reg_next->reg_prev = cm->reg_prev;
    else
        reg_tail = cm->reg_prev;
    pthread_mutex_unlock(&reg_lock);
}

void cmap_each(void (*f)(sm_cmap *cm, const char *name, uint64_t seq, void *ctx), void *ctx)
{
    pthread_mutex_lock(&reg_lock);
    for (sm_cmap *cm = reg_head; cm; cm = cm->reg_next)
        f(cm, cm->named ? cm->name : NULL, cm->seq, ctx);
    pthread_mutex_unlock(&reg_lock);
}

/* ---- Hashing ------------------------------------------------------------ */

static inline uint64_t cm_hash(const sm_cmap *cm, int64_t key)
{
    return seg_hash(&cm->hkey, key);
}

/* A secret seed: getrandom(), or failing that the clock and an address. */
static uint64_t random_seed(void)
{
    uint64_t s = 0;
#if defined(__linux__)
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s)
        return s;
#endif
    return seg_hash(&(seg_hkey){chk_now_ns(), (uint64_t)(uintptr_t)&s}, (int64_t)chk_now_ns());
}

/* ---- Bytes read while a writer may be changing them --------------------- */

static inline uint64_t word_load(const void *p)
{
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}

static inline void word_store(void *p, uint64_t v)
{
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
}

/* Copies the words covering n bytes out of a slot (8-aligned) with 8-byte
 * atomic loads, into a buffer of whole words. */
/* Eight words, written out: the compiler does not unroll a loop of atomic
 * loads by itself. */
static inline void words_load8(uint64_t *dst, const char *src)
{
    dst[0] = word_load(src);
    dst[1] = word_load(src + 8);
    dst[2] = word_load(src + 16);
    dst[3] = word_load(src + 24);
    dst[4] = word_load(src + 32);
    dst[5] = word_load(src + 40);
    dst[6] = word_load(src + 48);
    dst[7] = word_load(src + 56);
}

static inline void words_load(uint64_t *dst, const char *src, size_t n)
{
    size_t words = (n + 7) / 8, i = 0;
    for (; i + 8 <= words; i += 8)
        words_load8(dst + i, src + 8 * i);
    for (; i < words; i++)
        dst[i] = word_load(src + 8 * i);
}

/* Copies n bytes out of a slot with 8-byte atomic loads, into memory of any
 * alignment (values too large for a buffer go straight to the caller). */
static void words_load_bytes(void *dst, const char *src, size_t n)
{
    unsigned char *d = dst;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = word_load(src + i);
        memcpy(d + i, &w, 8);
    }
    if (i < n) {
        uint64_t w = word_load(src + i);
        memcpy(d + i, &w, n - i);
    }
}

/* Copies n bytes.  A memcpy of a run-time size is a call that costs as
 * much as the copy of a small value, so the most common size (64 bytes:
 * int64_t[8], double[8]) gets a fixed-size copy the compiler inlines. */
static inline void bytes_out(void *dst, const void *src, size_t n)
{
    if (n == 64)
        memcpy(dst, src, 64);
    else
        memcpy(dst, src, n);
}

/* Copies n bytes into a slot with 8-byte atomic stores (the tail word is
 * padded with zeros). */
static void words_store(char *dst, const void *src, size_t n)
{
    const unsigned char *s = src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        word_store(dst + i, w);
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, s + i, n - i);
        word_store(dst + i, w);
    }
}

/* The acquire fence of a seqlock read: the loads of the copy come before the
 * second read of seq.  (ThreadSanitizer does not model fences; every
 * optimistic access is atomic, so it has nothing to report either way.) */
static inline void read_fence(void)
{
    atomic_thread_fence(memory_order_acquire);
}

/* ---- The lock word ------------------------------------------------------- */

static inline void cpu_relax(void)
{
#if defined(__SSE2__)
    __builtin_ia32_pause();
#endif
}

static void seg_lock_word(seg *s)
{
    unsigned spins = 0;
    while (atomic_exchange_explicit(&s->lock, 1, memory_order_acquire)) {
        while (atomic_load_explicit(&s->lock, memory_order_relaxed)) {
            if (++spins % LOCK_SPINS == 0)
                sched_yield();
            else
                cpu_relax();
        }
    }
}

static bool seg_trylock(seg *s)
{
    return atomic_exchange_explicit(&s->lock, 1, memory_order_acquire) == 0;
}

static void seg_unlock(seg *s)
{
    SM_ASSERT(atomic_load_explicit(&s->lock, memory_order_relaxed) == 1);
    atomic_store_explicit(&s->lock, 0, memory_order_release);
}

static inline bool seg_retired(const seg *s)
{
    return atomic_load_explicit(&s->seq, memory_order_acquire) & SEQ_RETIRED;
}

/* ---- Writing a slot (segment locked) ------------------------------------ */

static inline void seg_write_begin(seg *s)
{
    uint32_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
    SM_ASSERT(!(q & 1) && !(q & SEQ_RETIRED));
    SM_ASSERT(atomic_load_explicit(&s->lock, memory_order_relaxed) == 1);
    atomic_store_explicit(&s->seq, q + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

/* Back to even, skipping the retired bit when the counter wraps. */
static inline void seg_write_end(seg *s)
{
    uint32_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, (q + 1) & SEQ_MASK, memory_order_release);
}

/* Puts key and a slot value (the value, or the pointer to a pooled array)
 * into a free slot of s (between seg_write_begin and _end, or into a segment
 * not yet published).  s is under its limit. */
static void entry_claim(sm_cmap *cm, seg *s, uint64_t h, int64_t key, const void *slotval)
{
    long i = seg_claim(&cm->geom, s, h, key);
    SM_ASSERT(i >= 0);
    words_store(seg_slot(&cm->geom, s, (size_t)i) + cm->geom.voff, slotval, cm->slot_vbytes);
}

static inline bool pooled(const sm_cmap *cm)
{
    return cm->storage == SM_POOLED;
}

/* The array a pooled slot points to. */
static inline void *slot_array(const sm_cmap *cm, const seg *s, size_t i)
{
    return (void *)(uintptr_t)word_load(seg_slot(&cm->geom, s, i) + cm->geom.voff);
}

static inline void slot_array_set(const sm_cmap *cm, seg *s, size_t i, void *array)
{
    word_store(seg_slot(&cm->geom, s, i) + cm->geom.voff, (uint64_t)(uintptr_t)array);
}

SM_COLD static int cmap_raise(sm_cmap *cm, int code, const char *what, const char *msg);

/* ---- Segment memory ----------------------------------------------------- */

/* A clean, unpublished segment: from the free list, or fresh memory. */
/* The bytes of a segment after its header: poisoned while it is free at
 * SM_CHECK_FULL (the header keeps the free-list link). */
static inline char *seg_body(seg *s)
{
    return (char *)s + SEG_HEADER;
}

static inline size_t seg_body_bytes(const sm_cmap *cm)
{
    return cm->geom.bytes - SEG_HEADER;
}

/* A segment from the free list, its poison checked at SM_CHECK_FULL.  One
 * written while free (a reader or writer using memory it could no longer
 * see) is reported and withdrawn: freed, never reused. */
static seg *free_pop(sm_cmap *cm)
{
    for (;;) {
        pthread_mutex_lock(&cm->limbo_lock);
        seg *s = cm->free;
        if (s) {
            cm->free = s->next;
            cm->nfree--;
        }
        pthread_mutex_unlock(&cm->limbo_lock);
        if (!s || cm->check != SM_CHECK_FULL)
            return s;
        bool intact = chk_poison_intact(seg_body(s), seg_body_bytes(cm));
        chk_unpoison(seg_body(s), seg_body_bytes(cm));
        if (intact)
            return s;
        cmap_raise(cm, SM_ECORRUPT, "sm_cmap (segment reuse)",
                   "a segment was written after it was reclaimed");
        alc_free(s, cm->geom.bytes);
    }
}

/* Puts a segment no one can reach on the free list.  Under limbo_lock. */
static void free_push_locked(sm_cmap *cm, seg *s)
{
    if (cm->check == SM_CHECK_FULL)
        chk_poison(seg_body(s), seg_body_bytes(cm));
    s->next = cm->free;
    cm->free = s;
    cm->nfree++;
}

static seg *seg_acquire(sm_cmap *cm, uint32_t depth)
{
    seg *s = free_pop(cm);
    if (!s && !(s = alc_alloc(cm->geom.bytes, cm->geom.align)))
        return NULL;
    seg_reset(&cm->geom, s, depth);
    return s;
}

static void seg_destroy(sm_cmap *cm, seg *s)
{
    alc_free(s, cm->geom.bytes);
}

/* A segment no reader or writer can reach any more: kept for reuse while the
 * free list is short, else freed.  Under limbo_lock. */
static void seg_recycle_locked(sm_cmap *cm, seg *s, seg **to_free)
{
    size_t quarter = atomic_load_explicit(&cm->nsegs, memory_order_relaxed) / 4;
    size_t keep = quarter > FREE_KEEP_MIN ? quarter : FREE_KEEP_MIN;
    if (cm->nfree < keep) {
        free_push_locked(cm, s);
    } else {
        s->next = *to_free;
        *to_free = s;
    }
}

/* Gives back a segment that was never published (an allocation after it
 * failed). */
static void seg_unused(sm_cmap *cm, seg *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&cm->limbo_lock);
    free_push_locked(cm, s);
    pthread_mutex_unlock(&cm->limbo_lock);
}

static size_t dir_bytes(unsigned gd)
{
    return sizeof(cdir) + ((size_t)1 << gd) * sizeof(_Atomic(seg *));
}

static cdir *dir_alloc(unsigned gd)
{
    cdir *d = alc_alloc(dir_bytes(gd), _Alignof(cdir));
    if (!d)
        return NULL;
    d->gd = gd;
    d->shift = 64 - gd;
    return d;
}

/* ---- Reclamation -------------------------------------------------------- */

/* A retired segment's count and debt are dead: they keep its stamp. */
static void seg_stamp_set(seg *s, uint64_t stamp)
{
    s->count = (uint32_t)stamp;
    s->debt = (uint32_t)(stamp >> 32);
}

static uint64_t seg_stamp(const seg *s)
{
    return (uint64_t)s->debt << 32 | s->count;
}

static void limbo_account(sm_cmap *cm, size_t bytes)
{
    atomic_fetch_add_explicit(&cm->limbo_objects, 1, memory_order_relaxed);
    size_t now = atomic_fetch_add_explicit(&cm->limbo_bytes, bytes, memory_order_relaxed) + bytes;
    if (now > cm->limbo_peak)
        cm->limbo_peak = now;
}

static void limbo_unaccount(sm_cmap *cm, size_t bytes)
{
    atomic_fetch_sub_explicit(&cm->limbo_objects, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&cm->limbo_bytes, bytes, memory_order_relaxed);
    cm->reclaimed++;
}

/* Hands an unlinked segment to the limbo, stamped with the current epoch. */
static void retire_seg(sm_cmap *cm, seg *s)
{
    seg_stamp_set(s, ep_stamp());
    s->next = NULL;
    pthread_mutex_lock(&cm->limbo_lock);
    if (cm->limbo_segs_tail)
        cm->limbo_segs_tail->next = s;
    else
        cm->limbo_segs = s;
    cm->limbo_segs_tail = s;
    limbo_account(cm, cm->geom.bytes);
    pthread_mutex_unlock(&cm->limbo_lock);
}

/* Hands a directory or a pooled array's node to the limbo. */
static void retire_node(sm_cmap *cm, limbo *l)
{
    l->stamp = ep_stamp();
    l->next = NULL;
    pthread_mutex_lock(&cm->limbo_lock);
    if (cm->limbo_objs_tail)
        cm->limbo_objs_tail->next = l;
    else
        cm->limbo_objs = l;
    cm->limbo_objs_tail = l;
    limbo_account(cm, l->bytes);
    pthread_mutex_unlock(&cm->limbo_lock);
}

static void retire_dir(sm_cmap *cm, cdir *d)
{
    d->lim.bytes = dir_bytes(d->gd);
    d->lim.array = NULL;
    retire_node(cm, &d->lim);
}

/* Limbo nodes for pooled arrays: one per replace or delete, taken from
 * slabs of NODE_SLAB and reused, so that the number of allocations does not
 * follow the churn (nor how quickly readers let the limbo drain). */
typedef struct node_slab {
    struct node_slab *next;
    limbo nodes[NODE_SLAB];
} node_slab;

static limbo *node_get(sm_cmap *cm)
{
    pthread_mutex_lock(&cm->limbo_lock);
    limbo *n = cm->spare_nodes;
    if (n)
        cm->spare_nodes = n->next;
    pthread_mutex_unlock(&cm->limbo_lock);
    if (n)
        return n;
    node_slab *slab = alc_alloc(sizeof *slab, _Alignof(node_slab));
    if (!slab)
        return NULL;
    pthread_mutex_lock(&cm->limbo_lock);
    slab->next = cm->node_slabs;
    cm->node_slabs = slab;
    cm->nslabs++;
    for (size_t i = 1; i < NODE_SLAB; i++) {
        slab->nodes[i].next = cm->spare_nodes;
        cm->spare_nodes = &slab->nodes[i];
    }
    pthread_mutex_unlock(&cm->limbo_lock);
    return &slab->nodes[0];
}

static void node_put(sm_cmap *cm, limbo *n)
{
    if (!n)
        return;
    pthread_mutex_lock(&cm->limbo_lock);
    n->next = cm->spare_nodes;
    cm->spare_nodes = n;
    pthread_mutex_unlock(&cm->limbo_lock);
}

/* Hands a pooled array no longer reachable from the map to the limbo. */
static void retire_array(sm_cmap *cm, limbo *n, void *array)
{
    n->array = array;
    n->bytes = cm->vsize;
    retire_node(cm, n);
}

/* The newest stamp in the limbo (under limbo_lock; the limbo not empty). */
static uint64_t limbo_newest(const sm_cmap *cm)
{
    uint64_t a = cm->limbo_segs_tail ? seg_stamp(cm->limbo_segs_tail) : 0;
    uint64_t b = cm->limbo_objs_tail ? cm->limbo_objs_tail->stamp : 0;
    return a > b ? a : b;
}

static size_t limbo_bound(const sm_cmap *cm)
{
    size_t by_segs = LIMBO_MIN_SEGS * cm->geom.bytes;
    size_t by_map =
        atomic_load_explicit(&cm->nsegs, memory_order_relaxed) * cm->geom.bytes / LIMBO_FRACTION;
    return by_segs > by_map ? by_segs : by_map;
}

/* Frees (or keeps for reuse) everything in the limbo whose grace period is
 * over at epoch now.  Each FIFO is in stamp order, so that is a prefix. */
static void reclaim_until(sm_cmap *cm, uint64_t now)
{
    seg *to_free = NULL;
    limbo *done = NULL;
    pthread_mutex_lock(&cm->limbo_lock);
    while (cm->limbo_segs && ep_safe(seg_stamp(cm->limbo_segs), now)) {
        seg *s = cm->limbo_segs;
        cm->limbo_segs = s->next;
        if (!cm->limbo_segs)
            cm->limbo_segs_tail = NULL;
        limbo_unaccount(cm, cm->geom.bytes);
        seg_recycle_locked(cm, s, &to_free);
    }
    while (cm->limbo_objs && ep_safe(cm->limbo_objs->stamp, now)) {
        limbo *l = cm->limbo_objs;
        cm->limbo_objs = l->next;
        if (!cm->limbo_objs)
            cm->limbo_objs_tail = NULL;
        limbo_unaccount(cm, l->bytes);
        l->next = done;
        done = l;
    }
    pthread_mutex_unlock(&cm->limbo_lock);
    while (to_free) {
        seg *next = to_free->next;
        seg_destroy(cm, to_free);
        to_free = next;
    }
    while (done) {
        limbo *next = done->next;
        if (done->array) {
            sm_pool_put(cm->pool, done->array);
            node_put(cm, done);
        } else {
            alc_free(done, done->bytes); /* a directory: the node is its start */
        }
        done = next;
    }
}

/* Called by writers after their operation, outside their read section.
 * Tries now and then to advance the epoch and free what waited long enough;
 * over the bound, waits for the readers of the moment (unless this thread is
 * itself inside a section, which would wait for itself). */
static void reclaim_maybe(sm_cmap *cm)
{
#if defined(__GNUC__)
    static _Thread_local unsigned calls __attribute__((tls_model("initial-exec")));
#else
    static _Thread_local unsigned calls;
#endif
    if (atomic_load_explicit(&cm->limbo_objects, memory_order_relaxed) == 0)
        return;
    if (++calls % RECLAIM_EVERY == 0)
        reclaim_until(cm, ep_try_advance());
    if (atomic_load_explicit(&cm->limbo_bytes, memory_order_relaxed) <= limbo_bound(cm) ||
        ep_active())
        return;
    pthread_mutex_lock(&cm->limbo_lock);
    uint64_t stamp = limbo_newest(cm);
    pthread_mutex_unlock(&cm->limbo_lock);
    ep_wait_grace(stamp);
    pthread_mutex_lock(&cm->limbo_lock);
    cm->grace_waits++;
    pthread_mutex_unlock(&cm->limbo_lock);
    reclaim_until(cm, ep_try_advance());
}

/* ---- Finding and locking a key's segment -------------------------------- */

static inline seg *dir_lookup(cdir *d, uint64_t h)
{
    return atomic_load_explicit(&d->seg[h >> d->shift], memory_order_acquire);
}

/* The live segment owning h, locked.  The caller is in a read section, so
 * whatever it loads stays allocated.  `faults`: the test faults of a faulty
 * put (0, a constant, everywhere else). */
static CM_ALWAYS_INLINE seg *seg_lock_as(sm_cmap *cm, uint64_t h, int faults)
{
    for (;;) {
        cdir *d = atomic_load_explicit(&cm->dir, memory_order_acquire);
        seg *s = dir_lookup(d, h);
        if (faults & CMAP_FAULT_YIELD)
            sched_yield(); /* a split may retire s meanwhile */
        seg_lock_word(s);
        if (!seg_retired(s))
            return s;
        seg_unlock(s);
    }
}

static seg *seg_lock(sm_cmap *cm, uint64_t h)
{
    return seg_lock_as(cm, h, 0);
}

/* CMAP_FAULT_LOCK_RETIRED: a put that finds key in a segment a split has
 * retired rewrites the value there (seq and count untouched, so the
 * retirement stands) and reports success: a lost write, as a writer that
 * skipped the retired check would make.  Inline values only (a pooled one
 * would leave the live copy pointing at a freed array).  Whether it did. */
SM_COLD static bool fault_store_retired(sm_cmap *cm, uint64_t h, int64_t key, const void *value)
{
    cdir *d = atomic_load_explicit(&cm->dir, memory_order_acquire);
    seg *s = dir_lookup(d, h);
    if (fault_on(CMAP_FAULT_YIELD))
        sched_yield();
    seg_lock_word(s);
    long i = seg_retired(s) ? seg_lookup(&cm->geom, s, h, key) : -1;
    if (i >= 0)
        words_store(seg_slot(&cm->geom, s, (size_t)i) + cm->geom.voff, value, cm->vsize);
    seg_unlock(s);
    return i >= 0;
}

/* CMAP_FAULT_YIELD on a rewrite: half the value, a yield, the rest, so a
 * reader's copy meets a half-written value. */
SM_COLD static void fault_store_halves(char *dst, const void *src, size_t n)
{
    size_t half = n / 16 * 8;
    words_store(dst, src, half);
    sched_yield();
    words_store(dst + half, (const char *)src + half, n - half);
}

/* ---- Structure: split, rebuild, merge, directory (grow locked) ----------- */

/* One SAFEMAP_DEBUG=trace=1 line per structural change. */
SM_COLD static void trace_change(const sm_cmap *cm, const char *what, uint32_t from, uint32_t to,
                                 uint32_t entries, uint64_t t0)
{
    double us = (double)(chk_now_ns() - t0) / 1e3;
    cdir *d = atomic_load_explicit(&cm->dir, memory_order_relaxed);
    chk_trace("cmap %s [%s] %s: depth %u -> %u, %u entries, %zu segments, dir %zu, len %zu, "
              "%.1f us",
              cm->name, cm->layout.name ? cm->layout.name : "?", what, from, to, entries,
              atomic_load_explicit(&cm->nsegs, memory_order_relaxed), (size_t)1 << d->gd,
              cmap_len(cm), us);
}

/* Publishes a new directory (2x or 1/2 the old) and retires the old. */
static void dir_publish(sm_cmap *cm, cdir *old, cdir *d)
{
    atomic_store_explicit(&cm->dir, d, memory_order_release);
    retire_dir(cm, old);
}

static int dir_double(sm_cmap *cm)
{
    cdir *old = atomic_load_explicit(&cm->dir, memory_order_relaxed);
    if (old->gd >= CM_GD_MAX)
        return SM_ENOMEM;
    cdir *d = dir_alloc(old->gd + 1);
    if (!d)
        return SM_ENOMEM;
    size_t n = (size_t)1 << old->gd;
    for (size_t i = 0; i < n; i++) {
        seg *s = atomic_load_explicit(&old->seg[i], memory_order_relaxed);
        atomic_init(&d->seg[2 * i], s);
        atomic_init(&d->seg[2 * i + 1], s);
    }
    dir_publish(cm, old, d);
    cm->ndeep = 0;
    cm->dir_doublings++;
    return 0;
}

/* Halves the directory while no segment uses its last bit.  Best effort. */
static void dir_try_halve(sm_cmap *cm)
{
    for (;;) {
        cdir *old = atomic_load_explicit(&cm->dir, memory_order_relaxed);
        if (cm->ndeep != 0 || old->gd <= 1)
            return;
        cdir *d = dir_alloc(old->gd - 1);
        if (!d)
            return;
        size_t n = (size_t)1 << d->gd, deep = 0;
        for (size_t i = 0; i < n; i++)
            atomic_init(&d->seg[i], atomic_load_explicit(&old->seg[2 * i], memory_order_relaxed));
        for (size_t i = 0; i < n;) {
            seg *s = atomic_load_explicit(&d->seg[i], memory_order_relaxed);
            deep += s->depth == d->gd;
            i += (size_t)1 << (d->gd - s->depth);
        }
        dir_publish(cm, old, d);
        cm->ndeep = deep;
        cm->dir_halvings++;
    }
}

/* Points the directory range of a segment of depth `depth` containing hash h
 * at s. */
static void dir_fill(cdir *d, uint64_t h, uint32_t depth, seg *s)
{
    size_t span = (size_t)1 << (d->gd - depth);
    size_t start = (size_t)(h >> d->shift) & ~(span - 1);
    for (size_t j = 0; j < span; j++)
        atomic_store_explicit(&d->seg[start + j], s, memory_order_release);
}

/* Copies every entry of src into dst0, or by the hash bit below depth `d`
 * into dst0/dst1.  The destinations are not published yet. */
static void seg_move_all(sm_cmap *cm, seg *src, seg *dst0, seg *dst1, uint32_t d)
{
    const seg_geom *g = &cm->geom;
    for (uint32_t grp = 0; grp < g->groups; grp++) {
        for (unsigned full = grp_full(seg_ctrl(src, grp)); full; full &= full - 1) {
            const char *from =
                seg_slot(g, src, (size_t)grp * SEG_GROUP + (unsigned)__builtin_ctz(full));
            int64_t key = seg_slot_key(from);
            uint64_t h = cm_hash(cm, key);
            seg *dst = dst1 && ((h >> (63 - d)) & 1) ? dst1 : dst0;
            long i = seg_claim(g, dst, h, key);
            SM_ASSERT(i >= 0);
            memcpy(seg_slot(g, dst, (size_t)i) + g->voff, from + g->voff, g->stride - g->voff);
        }
    }
}

/* Marks s replaced: readers that see it look again in the directory. */
static void seg_retire(sm_cmap *cm, seg *s)
{
    atomic_fetch_or_explicit(&s->seq, SEQ_RETIRED, memory_order_seq_cst);
    retire_seg(cm, s);
}

/* Makes room in the full segment s (locked) that owns h: a rebuild into one
 * fresh segment when it is mostly tombstones, else a split into two.  The
 * copy is made before the map's grow lock is taken, so other segments'
 * splits are held up only for the pointer stores.  s is retired on success;
 * on SM_ENOMEM nothing changed (a doubled directory is equivalent). */
/* The deepest a segment may split to: a few bits past what the number of
 * segments needs.  With the secret hash no key pattern comes near it; keys
 * crafted against a known seed to share a long hash prefix would otherwise
 * double the directory once per shared bit, each doubling for one segment's
 * worth of keys. */
static uint32_t depth_cap(const sm_cmap *cm)
{
    size_t segs = atomic_load_explicit(&cm->nsegs, memory_order_relaxed);
    uint32_t bits = 0;
    while (bits < CM_GD_MAX && ((size_t)1 << bits) < segs)
        bits++;
    bits += CM_GD_SLACK;
    return bits < CM_GD_MAX ? bits : CM_GD_MAX;
}

static int seg_grow(sm_cmap *cm, seg *s, uint64_t h)
{
    uint32_t d = s->depth;
    bool split = s->count >= cm->geom.limit - cm->geom.limit / 4;
    if (split && d >= depth_cap(cm))
        return SM_ENOMEM; /* a chosen-key flood: refuse, as if memory ran out */
    uint64_t t0 = cm->trace ? chk_now_ns() : 0;
    seg *a = seg_acquire(cm, split ? d + 1 : d);
    seg *b = split && a ? seg_acquire(cm, d + 1) : NULL;
    if (!a || (split && !b)) {
        seg_unused(cm, a);
        return SM_ENOMEM;
    }
    seg_move_all(cm, s, a, b, d);
    pthread_mutex_lock(&cm->grow);
    cdir *dir = atomic_load_explicit(&cm->dir, memory_order_relaxed);
    if (split && d == dir->gd) {
        int rc = dir_double(cm);
        if (rc) {
            pthread_mutex_unlock(&cm->grow);
            seg_unused(cm, a);
            seg_unused(cm, b);
            return rc;
        }
        dir = atomic_load_explicit(&cm->dir, memory_order_relaxed);
    }
    if (split) {
        /* h's prefix of d bits, then each half of the range. */
        uint64_t lo_h = d ? h >> (64 - d) << (64 - d) : 0;
        uint64_t hi_h = lo_h | (uint64_t)1 << (63 - d);
        dir_fill(dir, lo_h, d + 1, a);
        dir_fill(dir, hi_h, d + 1, b);
        atomic_fetch_add_explicit(&cm->nsegs, 1, memory_order_relaxed);
        cm->splits++;
        if (d + 1 == dir->gd)
            cm->ndeep += 2;
    } else {
        dir_fill(dir, h, d, a);
        cm->rebuilds++;
    }
    seg_retire(cm, s);
    if (cm->trace)
        trace_change(cm, split ? "split" : "rebuild", d, split ? d + 1 : d, s->count, t0);
    pthread_mutex_unlock(&cm->grow);
    return 0;
}

/* After a delete: merges s (locked) with its sibling when both are at the
 * same depth and together under half a segment's limit.  Best effort: the
 * sibling is only tried (never waited for), and no memory means no merge. */
static void seg_try_merge(sm_cmap *cm, seg *s, uint64_t h)
{
    uint32_t d = s->depth;
    if (d == 0 || s->count > cm->geom.limit / 4)
        return;
    uint64_t sib_h = h ^ (uint64_t)1 << (64 - d);
    cdir *dir = atomic_load_explicit(&cm->dir, memory_order_acquire);
    seg *sib = dir_lookup(dir, sib_h);
    if (sib == s || !seg_trylock(sib))
        return;
    if (seg_retired(sib) || sib->depth != d || s->count + sib->count > cm->geom.limit / 2) {
        seg_unlock(sib);
        return;
    }
    uint64_t t0 = cm->trace ? chk_now_ns() : 0;
    seg *m = seg_acquire(cm, d - 1);
    if (!m) {
        seg_unlock(sib);
        return;
    }
    seg_move_all(cm, s, m, NULL, 0);
    seg_move_all(cm, sib, m, NULL, 0);
    pthread_mutex_lock(&cm->grow);
    dir = atomic_load_explicit(&cm->dir, memory_order_relaxed);
    dir_fill(dir, h, d - 1, m);
    if (d == dir->gd)
        cm->ndeep -= 2;
    atomic_fetch_sub_explicit(&cm->nsegs, 1, memory_order_relaxed);
    cm->merges++;
    seg_retire(cm, s);
    seg_retire(cm, sib);
    if (cm->trace)
        trace_change(cm, "merge", d, d - 1, m->count, t0);
    dir_try_halve(cm);
    pthread_mutex_unlock(&cm->grow);
    seg_unlock(sib);
}

/* ---- Creation and destruction ------------------------------------------- */

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) & ~(a - 1);
}

/* Slots of key then value, 8-aligned at least (values are copied in 8-byte
 * words); segments of about CM_TARGET_BYTES.  false when the layout's
 * segment would not fit segment.h's offsets. */
static bool cmap_geometry(sm_cmap *cm, const sm_layout *l)
{
    size_t align = l->elem_align > 8 ? l->elem_align : 8;
    cm->vsize = l->elem_size * l->len;
    cm->slot_vbytes = pooled(cm) ? sizeof(void *) : cm->vsize;
    if (pooled(cm))
        align = 8;
    size_t stride = align_up(align + cm->slot_vbytes, align);
    cm->v64 = !pooled(cm) && cm->vsize == 64;
    size_t groups = CM_TARGET_BYTES / (SEG_CTRL + SEG_GROUP * stride);
    if (groups > CM_MAX_SLOTS / SEG_GROUP)
        groups = CM_MAX_SLOTS / SEG_GROUP;
    if (groups < 1)
        groups = 1;
    return seg_geom_init(&cm->geom, groups, stride, align, align > 64 ? align : 64);
}

static void cmap_destroy(sm_cmap *cm);

/* Gives every array of a pooled segment back to the pool (sm_cmap_free). */
static void seg_put_arrays(sm_cmap *cm, seg *s)
{
    for (uint32_t grp = 0; grp < cm->geom.groups; grp++)
        for (unsigned full = grp_full(seg_ctrl(s, grp)); full; full &= full - 1)
            sm_pool_put(cm->pool,
                        slot_array(cm, s, (size_t)grp * SEG_GROUP + (unsigned)__builtin_ctz(full)));
}

/* The first directory: 2^gd entries, one segment each (gd >= 1), or one
 * segment of depth 0 behind two entries. */
static int cmap_build(sm_cmap *cm, unsigned gd)
{
    cdir *d = dir_alloc(gd);
    if (!d)
        return SM_ENOMEM;
    size_t n = (size_t)1 << gd;
    for (size_t i = 0; i < n; i++)
        atomic_init(&d->seg[i], NULL);
    atomic_init(&cm->dir, d);
    uint32_t depth = gd == 1 ? 0 : gd;
    for (size_t i = 0; i < n; i++) {
        if (depth == 0 && i == 1) {
            atomic_init(&d->seg[1], atomic_load_explicit(&d->seg[0], memory_order_relaxed));
            break;
        }
        seg *s = seg_acquire(cm, depth);
        if (!s)
            return SM_ENOMEM;
        atomic_init(&d->seg[i], s);
        atomic_fetch_add_explicit(&cm->nsegs, 1, memory_order_relaxed);
    }
    cm->ndeep = depth == gd ? n : 0;
    return 0;
}

int sm_cmap_new(sm_cmap **out, const sm_map_opts *o)
{
    if (!out || !o)
        return chk_einval("sm_cmap_new", "%s is NULL", out ? "opts" : "out");
    int rc = chk_layout_check(&o->layout, "sm_cmap_new", "opts->layout");
    if (rc)
        return rc;
    if (o->storage != SM_INLINE && o->storage != SM_POOLED)
        return chk_einval("sm_cmap_new", "opts->storage is %d, not SM_INLINE or SM_POOLED",
                          o->storage);
    if (o->storage == SM_POOLED && !o->pool)
        return chk_einval("sm_cmap_new", "opts->pool is NULL with SM_POOLED storage");
    int level = chk_level(o->check);
    if (level < 0)
        return chk_einval("sm_cmap_new", "opts->check is %d, not an SM_CHECK_* level", o->check);
    if (o->storage == SM_POOLED && !chk_layout_equal(pool_layout(o->pool), &o->layout)) {
        char a[128], b[128];
        chk_layout_format(a, sizeof a, &o->layout);
        chk_layout_format(b, sizeof b, pool_layout(o->pool));
        return chk_raise(SM_ELAYOUT, "sm_cmap_new", NULL, o->pool,
                         "cmap layout %s does not match pool %p layout %s", a,
                         (const void *)o->pool, b);
    }
    sm_cmap *cm = alc_alloc(sizeof *cm, _Alignof(sm_cmap));
    if (!cm)
        return SM_ENOMEM;
    memset(cm, 0, sizeof *cm);
    cm->check = level;
    cm->trace = chk_debug_get()->trace;
    cm->layout = o->layout;
    cm->storage = o->storage;
    cm->pool = o->storage == SM_POOLED ? o->pool : NULL;
    cm->hkey = seg_hkey_from_seed(o->fixed_seed ? o->seed : random_seed());
    cm->named = o->name != NULL;
    if (o->name)
        snprintf(cm->name, sizeof cm->name, "%s", o->name);
    else
        snprintf(cm->name, sizeof cm->name, "%p", (void *)cm);
    if (!cmap_geometry(cm, &o->layout)) {
        alc_free(cm, sizeof *cm);
        return chk_einval("sm_cmap_new", "opts->layout is too large for a segment");
    }
    if (pthread_mutex_init(&cm->grow, NULL) != 0) {
        alc_free(cm, sizeof *cm);
        return SM_ENOMEM;
    }
    if (pthread_mutex_init(&cm->limbo_lock, NULL) != 0) {
        pthread_mutex_destroy(&cm->grow);
        alc_free(cm, sizeof *cm);
        return SM_ENOMEM;
    }
    /* capacity entries spread evenly fill each segment to at most 5/8. */
    unsigned gd = 1;
    size_t per_seg = (size_t)cm->geom.limit * 5 / 8;
    while (gd < 40 && o->capacity / per_seg >= ((size_t)1 << gd))
        gd++;
    if (o->capacity > per_seg && gd >= 40) {
        cmap_destroy(cm);
        return chk_einval("sm_cmap_new", "opts->capacity %zu is impossible", o->capacity);
    }
    rc = cmap_build(cm, o->capacity > per_seg ? gd : 1);
    if (!rc && cm->pool)
        rc = pool_ref(cm->pool, cm, cm->name);
    if (rc) {
        cmap_destroy(cm);
        return rc;
    }
    cm->pool_reffed = cm->pool != NULL;
    cmap_register(cm);
    *out = cm;
    return 0;
}

static void cmap_destroy(sm_cmap *cm)
{
    cdir *d = atomic_load_explicit(&cm->dir, memory_order_relaxed);
    if (d) {
        size_t n = (size_t)1 << d->gd;
        for (size_t i = 0; i < n;) {
            seg *s = atomic_load_explicit(&d->seg[i], memory_order_relaxed);
            if (!s)
                break;
            i += (size_t)1 << (d->gd - s->depth);
            if (pooled(cm))
                seg_put_arrays(cm, s);
            seg_destroy(cm, s);
        }
        alc_free(d, dir_bytes(d->gd));
    }
    reclaim_until(cm, UINT64_MAX);
    while (cm->node_slabs) {
        node_slab *next = cm->node_slabs->next;
        alc_free(cm->node_slabs, sizeof *cm->node_slabs);
        cm->node_slabs = next;
    }
    if (cm->pool_reffed)
        pool_unref(cm->pool, cm);
    while (cm->free) {
        seg *next = cm->free->next;
        if (cm->check == SM_CHECK_FULL)
            chk_unpoison(seg_body(cm->free), seg_body_bytes(cm));
        seg_destroy(cm, cm->free);
        cm->free = next;
    }
    pthread_mutex_destroy(&cm->limbo_lock);
    pthread_mutex_destroy(&cm->grow);
    alc_free(cm, sizeof *cm);
}

void sm_cmap_free(sm_cmap *cm)
{
    if (!cm)
        return;
    cmap_unregister(cm);
    cmap_destroy(cm);
}

/* ---- Reads -------------------------------------------------------------- */

/* Copies key's value into out under the segment's seq, for any layout and
 * storage.  In a read section.  Values of up to SM_CMAP_COPY_MAX bytes go
 * through a buffer (out untouched until the copy is validated), larger ones
 * straight into out. */
CM_NOINLINE static int cmap_read(sm_cmap *cm, uint64_t h, int64_t key, void *out)
{
    uint64_t stack[SM_CMAP_COPY_MAX / 8];
    uint64_t *buf = cm->vsize <= sizeof stack && !pooled(cm) ? stack : NULL;
    unsigned spins = 0;
    cdir *d = atomic_load_explicit(&cm->dir, memory_order_acquire);
    seg *s = dir_lookup(d, h);
    /* The slot the key most likely sits in, fetched while seq and the
     * control word are on their way: the two cache misses overlap. */
    seg_prefetch(&cm->geom, s, h);
    for (;;) {
        uint32_t q = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (q & SEQ_RETIRED) {
            d = atomic_load_explicit(&cm->dir, memory_order_acquire);
            s = dir_lookup(d, h);
            continue;
        }
        if ((q & 1) && !fault_on(CMAP_FAULT_SKIP_VALIDATE)) {
            /* A writer is inside one slot: a few stores, unless it was
             * preempted there. */
            if (++spins % 64 == 0)
                sched_yield();
            continue;
        }
        OPTIMISTIC_BEGIN();
        long i = seg_lookup(&cm->geom, s, h, key);
        OPTIMISTIC_END();
        const void *array = NULL;
        if (i >= 0 && pooled(cm))
            array = slot_array(cm, s, (size_t)i);
        else if (i >= 0 && buf)
            words_load(buf, seg_slot(&cm->geom, s, (size_t)i) + cm->geom.voff, cm->vsize);
        else if (i >= 0)
            words_load_bytes(out, seg_slot(&cm->geom, s, (size_t)i) + cm->geom.voff, cm->vsize);
        read_fence();
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) == q ||
            fault_on(CMAP_FAULT_SKIP_VALIDATE)) {
            if (i < 0)
                return SM_ENOENT;
            /* A pooled array is never written once published, and stays
             * allocated while this read section lasts: copy it now. */
            if (array)
                bytes_out(out, array, cm->vsize);
            else if (buf)
                bytes_out(out, buf, cm->vsize);
            return 0;
        }
        atomic_fetch_add_explicit(&cm->read_retries, 1, memory_order_relaxed);
    }
}

enum { CM_AGAIN = 1 }; /* cmap_read64_once: the general read takes over */

/* One try at an inline value of exactly eight words (int64_t[8],
 * double[8]: the common case).  With no loop around it, the words go from
 * the slot to registers and, once validated, to out.  0, SM_ENOENT, or
 * CM_AGAIN when a writer was in the segment, it was retired, or the copy
 * did not validate. */
static inline int cmap_read64_once(sm_cmap *cm, uint64_t h, int64_t key, void *out)
{
    cdir *d = atomic_load_explicit(&cm->dir, memory_order_acquire);
    seg *s = dir_lookup(d, h);
    uint32_t q = atomic_load_explicit(&s->seq, memory_order_acquire);
    if (SM_UNLIKELY(q & (SEQ_RETIRED | 1)))
        return CM_AGAIN;
    /* The key's home group only (it prefetches the key's likely slot);
     * past it, when h's overflow bit says the key may lie further on, the
     * general read probes on. */
    uint32_t grp;
    const uint8_t *ctrl;
    OPTIMISTIC_BEGIN();
    const char *slot = seg_find_home(&cm->geom, s, h, key, &grp, &ctrl);
    bool more = !slot && (ctrl[SEG_OFW] & seg_ofw_bit(h));
    OPTIMISTIC_END();
    if (SM_UNLIKELY(more))
        return CM_AGAIN;
    /* Eight scalars, not an array: an array would be copied through the
     * stack. */
    uint64_t w0 = 0, w1 = 0, w2 = 0, w3 = 0, w4 = 0, w5 = 0, w6 = 0, w7 = 0;
    if (slot) {
        const char *v = slot + cm->geom.voff;
        w0 = word_load(v);
        w1 = word_load(v + 8);
        w2 = word_load(v + 16);
        w3 = word_load(v + 24);
        w4 = word_load(v + 32);
        w5 = word_load(v + 40);
        w6 = word_load(v + 48);
        w7 = word_load(v + 56);
    }
    read_fence();
    if (SM_UNLIKELY(atomic_load_explicit(&s->seq, memory_order_relaxed) != q) &&
        !fault_on(CMAP_FAULT_SKIP_VALIDATE)) {
        atomic_fetch_add_explicit(&cm->read_retries, 1, memory_order_relaxed);
        return CM_AGAIN;
    }
    if (!slot)
        return SM_ENOENT;
    char *o = out;
    memcpy(o, &w0, 8);
    memcpy(o + 8, &w1, 8);
    memcpy(o + 16, &w2, 8);
    memcpy(o + 24, &w3, 8);
    memcpy(o + 32, &w4, 8);
    memcpy(o + 40, &w5, 8);
    memcpy(o + 48, &w6, 8);
    memcpy(o + 56, &w7, 8);
    return 0;
}

int sm_cmap_get(sm_cmap *cm, int64_t key, void *out)
{
    if (!cm || !out)
        return chk_einval("sm_cmap_get", "%s is NULL", cm ? "out" : "cm");
    int rc = ep_enter();
    if (rc)
        return rc;
    uint64_t h = cm_hash(cm, key);
    rc = SM_LIKELY(cm->v64) ? cmap_read64_once(cm, h, key, out) : CM_AGAIN;
    if (rc == CM_AGAIN)
        rc = cmap_read(cm, h, key, out);
    ep_exit();
    return rc;
}

size_t sm_cmap_len(sm_cmap *cm)
{
    return cm ? cmap_len(cm) : 0;
}

/* Raises a misuse event about cm. */
SM_COLD static int cmap_raise(sm_cmap *cm, int code, const char *what, const char *msg)
{
    char lay[128];
    chk_layout_format(lay, sizeof lay, &cm->layout);
    return chk_event(code, cm->misuse, what, cm, NULL, "%s; cmap %s, layout %s", msg, cm->name,
                     lay);
}

int sm_cmap_read_begin(sm_cmap *cm)
{
    if (!cm)
        return chk_einval("sm_cmap_read_begin", "cm is NULL");
    return ep_enter();
}

void sm_cmap_read_end(sm_cmap *cm)
{
    if (!cm)
        return;
    if (!ep_active()) {
        if (cm->check != SM_CHECK_OFF)
            cmap_raise(cm, SM_ESTALE, "sm_cmap_read_end",
                       "read section ended but none is open in this thread");
        return;
    }
    ep_exit();
}

/* The array key's pooled slot points to, or NULL.  In a read section. */
static const void *cmap_find_array(sm_cmap *cm, uint64_t h, int64_t key)
{
    for (;;) {
        cdir *d = atomic_load_explicit(&cm->dir, memory_order_acquire);
        seg *s = dir_lookup(d, h);
        uint32_t q = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (q & (SEQ_RETIRED | 1)) {
            sched_yield();
            continue;
        }
        OPTIMISTIC_BEGIN();
        long i = seg_lookup(&cm->geom, s, h, key);
        OPTIMISTIC_END();
        const void *array = i >= 0 ? slot_array(cm, s, (size_t)i) : NULL;
        read_fence();
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) == q)
            return array;
        atomic_fetch_add_explicit(&cm->read_retries, 1, memory_order_relaxed);
    }
}

const void *sm_cmap_find(sm_cmap *cm, int64_t key)
{
    if (!cm)
        return NULL;
    if (!ep_active()) {
        if (cm->check != SM_CHECK_OFF)
            cmap_raise(cm, SM_ESTALE, "sm_cmap_find",
                       "called outside a read section: open one with sm_cmap_read_begin()");
        return NULL;
    }
    /* SM_INLINE values are rewritten in place: no stable pointer exists. */
    if (!pooled(cm))
        return NULL;
    return cmap_find_array(cm, cm_hash(cm, key), key);
}

/* ---- Writes ------------------------------------------------------------- */

/* Pooled storage is copy-on-write: a put or update fills a fresh array from
 * the pool and swaps the slot's pointer, and the old array waits in the
 * limbo for its readers.  Both the array and the limbo node are taken before
 * anything changes, so running out of memory changes nothing. */
typedef struct cow {
    void *array;
    limbo *node;
} cow;

static int cow_prepare(sm_cmap *cm, const void *value, cow *c)
{
    c->array = sm_pool_get(cm->pool);
    c->node = c->array ? node_get(cm) : NULL;
    if (!c->node) {
        if (c->array)
            sm_pool_put(cm->pool, c->array);
        c->array = NULL;
        return SM_ENOMEM;
    }
    if (value)
        memcpy(c->array, value, cm->vsize);
    return 0;
}

/* Gives back what a cow did not use. */
static void cow_finish(sm_cmap *cm, cow *c, bool array_used, bool node_used)
{
    if (c->array && !array_used)
        sm_pool_put(cm->pool, c->array);
    if (!node_used)
        node_put(cm, c->node);
}

/* Inserts or replaces key with value in its segment, growing it first when
 * full.  In a read section.  `faults`: the test faults in force (0, a
 * constant, in the put everyone runs; see cmap_store). */
static CM_ALWAYS_INLINE int cmap_store_as(sm_cmap *cm, uint64_t h, int64_t key, const void *value,
                                          int faults)
{
    cow c = {NULL, NULL};
    if (pooled(cm)) {
        int rc = cow_prepare(cm, value, &c);
        if (rc)
            return rc;
    }
    if (!pooled(cm) && (faults & CMAP_FAULT_LOCK_RETIRED) && fault_store_retired(cm, h, key, value))
        return 0;
    for (;;) {
        seg *s = seg_lock_as(cm, h, faults);
        long i = seg_lookup(&cm->geom, s, h, key);
        if (i >= 0) {
            void *old = pooled(cm) ? slot_array(cm, s, (size_t)i) : NULL;
            char *slot = seg_slot(&cm->geom, s, (size_t)i) + cm->geom.voff;
            seg_write_begin(s);
            if (old)
                slot_array_set(cm, s, (size_t)i, c.array);
            else if (faults & CMAP_FAULT_YIELD)
                fault_store_halves(slot, value, cm->vsize);
            else
                words_store(slot, value, cm->vsize);
            seg_write_end(s);
            seg_unlock(s);
            if (old)
                retire_array(cm, c.node, old);
            cow_finish(cm, &c, true, true);
            return 0;
        }
        if (s->count + s->debt >= cm->geom.limit) {
            int rc = seg_grow(cm, s, h);
            seg_unlock(s);
            if (rc) {
                cow_finish(cm, &c, false, false);
                return rc;
            }
            continue;
        }
        seg_write_begin(s);
        entry_claim(cm, s, h, key, pooled(cm) ? (const void *)&c.array : value);
        seg_write_end(s);
        len_add(cm, h, 1);
        seg_unlock(s);
        cow_finish(cm, &c, true, false);
        return 0;
    }
}

/* A put with test faults switched on, compiled apart. */
SM_COLD static int cmap_store_faulty(sm_cmap *cm, uint64_t h, int64_t key, const void *value)
{
    return cmap_store_as(cm, h, key, value,
                         atomic_load_explicit(&cmap_test_faults, memory_order_relaxed));
}

static int cmap_store(sm_cmap *cm, uint64_t h, int64_t key, const void *value)
{
    if (SM_UNLIKELY(atomic_load_explicit(&cmap_test_faults, memory_order_relaxed)))
        return cmap_store_faulty(cm, h, key, value);
    return cmap_store_as(cm, h, key, value, 0);
}

int sm_cmap_put(sm_cmap *cm, int64_t key, const void *value)
{
    if (!cm || !value)
        return chk_einval("sm_cmap_put", "%s is NULL", cm ? "value" : "cm");
    int rc = ep_enter();
    if (rc)
        return rc;
    rc = cmap_store(cm, cm_hash(cm, key), key, value);
    ep_exit();
    reclaim_maybe(cm);
    return rc;
}

int sm_cmap_del(sm_cmap *cm, int64_t key)
{
    if (!cm)
        return chk_einval("sm_cmap_del", "cm is NULL");
    /* A pooled array goes to the limbo; without memory for its node, it is
     * put back after waiting for the readers, which a thread inside a read
     * section of its own cannot do. */
    limbo *node = pooled(cm) ? node_get(cm) : NULL;
    if (pooled(cm) && !node && ep_active())
        return SM_ENOMEM;
    int rc = ep_enter();
    if (rc) {
        node_put(cm, node);
        return rc;
    }
    uint64_t h = cm_hash(cm, key);
    seg *s = seg_lock(cm, h);
    long i = seg_lookup(&cm->geom, s, h, key);
    void *old = NULL;
    if (i < 0) {
        rc = SM_ENOENT;
    } else {
        old = pooled(cm) ? slot_array(cm, s, (size_t)i) : NULL;
        seg_write_begin(s);
        seg_vacate(s, (size_t)i, false);
        seg_write_end(s);
        len_add(cm, h, (size_t)-1);
        seg_try_merge(cm, s, h);
    }
    seg_unlock(s);
    ep_exit();
    if (old && node) {
        retire_array(cm, node, old);
        node = NULL;
    } else if (old) {
        ep_wait_grace(ep_stamp());
        sm_pool_put(cm->pool, old);
    }
    node_put(cm, node);
    reclaim_maybe(cm);
    return rc;
}

int sm_cmap_update(sm_cmap *cm, int64_t key, sm_cmap_update_fn fn, void *ctx)
{
    if (!cm || !fn)
        return chk_einval("sm_cmap_update", "%s is NULL", cm ? "fn" : "cm");
    uint64_t stack[SM_CMAP_COPY_MAX / 8];
    size_t words = (cm->vsize + 7) / 8;
    uint64_t *buf = stack;
    cow c = {NULL, NULL};
    int rc = 0;
    if (pooled(cm))
        rc = cow_prepare(cm, NULL, &c);
    else if (cm->vsize > sizeof stack && !(buf = alc_alloc(8 * words, 8)))
        rc = SM_ENOMEM;
    if (rc)
        return rc;
    rc = ep_enter();
    if (rc)
        goto out;
    uint64_t h = cm_hash(cm, key);
    for (;;) {
        seg *s = seg_lock(cm, h);
        long i = seg_lookup(&cm->geom, s, h, key);
        if (i < 0 && s->count + s->debt >= cm->geom.limit) {
            rc = seg_grow(cm, s, h);
            seg_unlock(s);
            if (rc)
                break;
            continue;
        }
        /* fn works on a private copy: the value in the map, readers' view,
         * changes only with the one write below. */
        void *value = pooled(cm) ? c.array : (void *)buf;
        void *old = i >= 0 && pooled(cm) ? slot_array(cm, s, (size_t)i) : NULL;
        if (old)
            memcpy(value, old, cm->vsize);
        else if (i >= 0)
            words_load(buf, seg_slot(&cm->geom, s, (size_t)i) + cm->geom.voff, cm->vsize);
        else
            memset(value, 0, cm->vsize);
        fn(value, i < 0, ctx);
        seg_write_begin(s);
        if (old)
            slot_array_set(cm, s, (size_t)i, c.array);
        else if (i >= 0)
            words_store(seg_slot(&cm->geom, s, (size_t)i) + cm->geom.voff, buf, cm->vsize);
        else
            entry_claim(cm, s, h, key, pooled(cm) ? (const void *)&c.array : buf);
        seg_write_end(s);
        if (i < 0)
            len_add(cm, h, 1);
        seg_unlock(s);
        if (old)
            retire_array(cm, c.node, old);
        cow_finish(cm, &c, true, old != NULL);
        c.array = NULL;
        c.node = NULL;
        break;
    }
    ep_exit();
    reclaim_maybe(cm);
out:
    cow_finish(cm, &c, false, false);
    if (buf != stack)
        alc_free(buf, 8 * words);
    return rc;
}

/* ---- Iteration ---------------------------------------------------------- */

/* Copies the entries of the live segment owning hash `pos` into buf (key,
 * then value, stride bytes each) and returns how many; *depth gets the
 * segment's depth, which fixes the range it covered. */
static size_t seg_snapshot(sm_cmap *cm, uint64_t pos, char *buf, uint32_t *depth)
{
    const seg_geom *g = &cm->geom;
    seg *s = seg_lock(cm, pos);
    /* A merge since the previous segment may have made this one's range
     * start before pos: what lies below pos was visited already. */
    uint32_t d = s->depth;
    uint64_t start = d ? pos >> (64 - d) << (64 - d) : 0;
    size_t n = 0;
    for (uint32_t grp = 0; grp < g->groups; grp++) {
        for (unsigned full = grp_full(seg_ctrl(s, grp)); full; full &= full - 1) {
            const char *slot =
                seg_slot(g, s, (size_t)grp * SEG_GROUP + (unsigned)__builtin_ctz(full));
            if (start < pos && cm_hash(cm, seg_slot_key(slot)) < pos)
                continue;
            memcpy(buf + n++ * g->stride, slot, g->stride);
        }
    }
    *depth = d;
    seg_unlock(s);
    return n;
}

int sm_cmap_each(sm_cmap *cm, sm_cmap_each_fn fn, void *ctx)
{
    if (!cm || !fn)
        return chk_einval("sm_cmap_each", "%s is NULL", cm ? "fn" : "cm");
    size_t stride = cm->geom.stride, bytes = (size_t)cm->geom.slots * stride;
    char *buf = alc_alloc(bytes, cm->geom.align);
    if (!buf)
        return SM_ENOMEM;
    /* Walk the hash space in order, one segment's range at a time: ranges
     * are disjoint and cover it, so an entry present throughout is in
     * exactly one snapshot. */
    uint64_t pos = 0;
    int rc = 0;
    for (;;) {
        uint32_t depth;
        rc = ep_enter();
        if (rc)
            break;
        size_t n = seg_snapshot(cm, pos, buf, &depth);
        /* The read section stays open while fn runs: the pooled arrays the
         * snapshot points to stay allocated. */
        for (size_t i = 0; i < n && rc == 0; i++) {
            const char *entry = buf + i * stride;
            int64_t key;
            memcpy(&key, entry, sizeof key);
            const void *value = entry + cm->geom.voff;
            if (pooled(cm))
                memcpy(&value, entry + cm->geom.voff, sizeof value);
            rc = fn(key, value, ctx);
        }
        ep_exit();
        if (rc || depth == 0)
            break;
        uint64_t prefix = pos >> (64 - depth);
        if (prefix + 1 == (uint64_t)1 << depth)
            break;
        pos = (prefix + 1) << (64 - depth);
    }
    alc_free(buf, bytes);
    return rc;
}

/* ---- Verification ------------------------------------------------------- */

SM_COLD static int corrupt(sm_cmap *cm, const char *fmt, size_t a, size_t b)
{
    char msg[160];
    snprintf(msg, sizeof msg, fmt, a, b);
    return cmap_raise(cm, SM_ECORRUPT, "sm_cmap_verify", msg);
}

/* Checks one segment (locked) whose range starts at directory index start:
 * control bytes, each key's tag, home segment and probe path, counts. */
static int seg_verify(sm_cmap *cm, seg *s, size_t start, unsigned gd, size_t *live)
{
    const seg_geom *g = &cm->geom;
    size_t count = 0;
    if (atomic_load_explicit(&s->seq, memory_order_relaxed) & 1)
        return corrupt(cm, "segment at dir %zu has an odd sequence (%zu) while locked", start,
                       (size_t)atomic_load_explicit(&s->seq, memory_order_relaxed));
    if (s->groups != g->groups)
        return corrupt(cm, "segment at dir %zu has %zu groups", start, s->groups);
    for (uint32_t grp = 0; grp < g->groups; grp++) {
        const uint8_t *w = seg_ctrl(s, grp);
        for (unsigned j = 0; j < SEG_GROUP; j++) {
            size_t i = (size_t)grp * SEG_GROUP + j;
            if (w[j] == CTRL_EMPTY)
                continue;
            if (w[j] == CTRL_TOMB)
                return corrupt(cm, "TOMB at slot %zu (dir %zu): never written here", i, start);
            count++;
            int64_t key = seg_slot_key(seg_slot(g, s, i));
            uint64_t h = cm_hash(cm, key);
            if (seg_tag(h) != w[j])
                return corrupt(cm, "tag mismatch at slot %zu (dir %zu)", i, start);
            if (s->depth && (h >> (64 - s->depth)) != (start >> (gd - s->depth)))
                return corrupt(cm, "key in slot %zu is not in its home segment (dir %zu)", i,
                               start);
            if (seg_lookup(g, s, h, key) != (long)i)
                return corrupt(cm, "key in slot %zu not found by its probe (dir %zu)", i, start);
        }
    }
    if (count != s->count)
        return corrupt(cm, "segment count wrong (dir %zu, %zu live)", start, count);
    if (count + s->debt > g->limit)
        return corrupt(cm, "segment over its limit (dir %zu, %zu used)", start, count + s->debt);
    *live += count;
    return 0;
}

/* Locks every live segment of directory d, in directory order.  Returns how
 * many, or 0 when one turned out retired (all unlocked again: try later). */
static size_t lock_all(cdir *d)
{
    size_t n = (size_t)1 << d->gd, locked = 0;
    for (size_t i = 0; i < n;) {
        seg *s = atomic_load_explicit(&d->seg[i], memory_order_acquire);
        seg_lock_word(s);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) & SEQ_RETIRED) {
            /* Its directory entries may already name its successors. */
            seg_unlock(s);
            break;
        }
        locked++;
        i += (size_t)1 << (d->gd - s->depth);
        if (i == n)
            return locked;
    }
    /* The segments locked so far cannot have changed: walk them again. */
    for (size_t i = 0; locked > 0; locked--) {
        seg *s = atomic_load_explicit(&d->seg[i], memory_order_relaxed);
        seg_unlock(s);
        i += (size_t)1 << (d->gd - s->depth);
    }
    return 0;
}

static void unlock_all(cdir *d)
{
    size_t n = (size_t)1 << d->gd;
    for (size_t i = 0; i < n;) {
        seg *s = atomic_load_explicit(&d->seg[i], memory_order_relaxed);
        i += (size_t)1 << (d->gd - s->depth);
        seg_unlock(s);
    }
}

/* With every segment and the grow lock held: the whole map is still. */
static int verify_still(sm_cmap *cm, cdir *d)
{
    size_t n = (size_t)1 << d->gd, live = 0, segs = 0, deep = 0;
    if (d->shift != 64 - d->gd)
        return corrupt(cm, "shift %zu does not match depth %zu", d->shift, d->gd);
    for (size_t i = 0; i < n;) {
        seg *s = atomic_load_explicit(&d->seg[i], memory_order_relaxed);
        if (s->depth > d->gd)
            return corrupt(cm, "segment depth %zu above global depth %zu", s->depth, d->gd);
        size_t span = (size_t)1 << (d->gd - s->depth);
        if (i % span)
            return corrupt(cm, "segment range at %zu misaligned (span %zu)", i, span);
        for (size_t j = i; j < i + span; j++)
            if (atomic_load_explicit(&d->seg[j], memory_order_relaxed) != s)
                return corrupt(cm, "directory entry %zu breaks the range at %zu", j, i);
        int rc = seg_verify(cm, s, i, d->gd, &live);
        if (rc)
            return rc;
        segs++;
        deep += s->depth == d->gd;
        i += span;
    }
    if (live != cmap_len(cm))
        return corrupt(cm, "length %zu but %zu live entries", cmap_len(cm), live);
    if (segs != atomic_load_explicit(&cm->nsegs, memory_order_relaxed) || deep != cm->ndeep)
        return corrupt(cm, "segment count %zu or deep count %zu wrong", segs, deep);
    return 0;
}

int sm_cmap_verify(sm_cmap *cm)
{
    if (!cm)
        return chk_einval("sm_cmap_verify", "cm is NULL");
    int rc = ep_enter();
    if (rc)
        return rc;
    for (int tries = 0;; tries++) {
        cdir *d = atomic_load_explicit(&cm->dir, memory_order_acquire);
        if (!lock_all(d)) {
            if (tries == VERIFY_TRIES) {
                rc = corrupt(cm, "segments kept changing over %zu tries (last dir depth %zu)",
                             (size_t)tries, d->gd);
                break;
            }
            sched_yield();
            continue;
        }
        pthread_mutex_lock(&cm->grow);
        /* Locked segments cannot be replaced, so the directory can only have
         * been resized (the same segments); check the current one. */
        cdir *now = atomic_load_explicit(&cm->dir, memory_order_relaxed);
        rc = verify_still(cm, now);
        pthread_mutex_unlock(&cm->grow);
        unlock_all(d);
        break;
    }
    ep_exit();
    return rc;
}

/* ---- Statistics --------------------------------------------------------- */

int sm_cmap_stats(sm_cmap *cm, struct sm_cmap_stats *out)
{
    if (!cm || !out)
        return chk_einval("sm_cmap_stats", "%s is NULL", cm ? "out" : "cm");
    memset(out, 0, sizeof *out);
    out->layout = cm->layout;
    out->storage = cm->storage;
    out->check = cm->check;
    out->len = cmap_len(cm);
    out->read_retries = atomic_load_explicit(&cm->read_retries, memory_order_relaxed);
    pthread_mutex_lock(&cm->grow);
    cdir *d = atomic_load_explicit(&cm->dir, memory_order_relaxed);
    out->segments = atomic_load_explicit(&cm->nsegs, memory_order_relaxed);
    out->capacity = out->segments * cm->geom.slots;
    out->global_depth = d->gd;
    out->splits = cm->splits;
    out->merges = cm->merges;
    out->rebuilds = cm->rebuilds;
    out->dir_doublings = cm->dir_doublings;
    out->dir_halvings = cm->dir_halvings;
    out->limbo_bound_bytes = limbo_bound(cm);
    size_t live_bytes = out->segments * cm->geom.bytes + dir_bytes(d->gd);
    pthread_mutex_unlock(&cm->grow);
    pthread_mutex_lock(&cm->limbo_lock);
    out->limbo_bytes = atomic_load_explicit(&cm->limbo_bytes, memory_order_relaxed);
    out->limbo_objects = atomic_load_explicit(&cm->limbo_objects, memory_order_relaxed);
    out->limbo_peak_bytes = cm->limbo_peak;
    out->reclaimed = cm->reclaimed;
    out->grace_waits = cm->grace_waits;
    out->bytes = live_bytes + out->limbo_bytes + cm->nfree * cm->geom.bytes +
                 cm->nslabs * sizeof(node_slab) + sizeof *cm;
    pthread_mutex_unlock(&cm->limbo_lock);
    for (int c = 0; c < SM_NCODES; c++)
        out->misuse[c] = atomic_load_explicit(&cm->misuse[c], memory_order_relaxed);
    return 0;
}
