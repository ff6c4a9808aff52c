/*
 * map.c - the hash map: a directory of segments, each a small table of
 * groups of 15 slots (extendible hashing over the segments of segment.h).
 *
 * Why segments.  A flat table grows by rehashing everything at once: boost's
 * and Abseil's maps stall for seconds at 1e7 entries and need old and new
 * arrays side by side.  Here the table is cut into segments of about 112
 * KiB, found through a directory indexed by the top `gd` bits of the hash
 * (the global depth).  A segment of local depth d <= gd owns the 2^(gd-d)
 * consecutive directory entries that share its d-bit prefix.  When a segment
 * fills, only that segment splits: its entries go to two fresh segments of
 * depth d+1, split on the next hash bit.  If d == gd the directory doubles
 * first (pointers only).  So an insert does at most one segment's worth of
 * work plus, rarely, a directory copy, and every allocation it makes comes
 * before anything changes: a call that fails has changed nothing.
 *
 * Inside a segment (segment.h draws the bytes).  Groups of 15 slots share a
 * 16-byte control word: 15 tags and an overflow byte.  A lookup reads the
 * home group's word, compares all 15 tags at once and stops unless the
 * overflow bit of its hash is set, so a miss nearly always ends in one
 * group at any load.  Deleting empties the slot at once; the overflow bits
 * a deleted key that sat past its home group may leave stale are counted as
 * the segment's debt, and a segment whose count + debt reaches 7/8 of its
 * slots is rebuilt in place (overflow bits recomputed, nothing moves) when
 * mostly debt, or split when really full.  Steady churn therefore reuses
 * slots and rebuilds now and then, and never drifts or grows.
 *
 * Chosen keys.  The hash is keyed by a per-map secret seed (getrandom), so
 * nobody who does not know it can choose colliding keys.  Growth is also
 * bounded when the seed is known: the global depth is capped at
 * log2(segments) + GD_SLACK, and a segment that cannot split usefully (its
 * keys share the split bit, or the cap is reached) grows instead: it is
 * rebuilt with twice as many groups.  Directory entries of grown segments
 * carry a tag bit, so lookups in ordinary segments pay one test for that.
 * Memory stays O(n) and the directory O(n / segment), whatever the keys.
 *
 * Shrinking.  Deletes never move entries (an iterator may be standing on
 * the entry just deleted).  Inserts merge under-filled sibling segments, one
 * at a time, and the directory halves when no segment needs its last bit;
 * deleting the last entry takes the map back to one segment.  Retired
 * segments go on a free list and are reused before fresh memory is touched.
 *
 * Growth tail.  The first touch of a fresh page is a page fault (2-17 us
 * here); a split of a growing map used to take 28 of them at once.  Now a
 * growing map keeps spare segments on the free list, faulted in a page per
 * insert, and the next doubling's directory likewise (spare_step), so an
 * insert rarely pays for more than a page of fresh memory (a map under 16
 * segments keeps no spare).
 *
 * Checks.  At SM_CHECK_CHEAP a second writer is kept out of a map
 * (SM_EBUSY; see "Writers" below) and readers notice a writer through the
 * `inside` flag, as Go's map does; a version counter catches iterators used after a
 * mutation, and a generation table catches iterators used after
 * sm_map_free (at every level).  At SM_CHECK_FULL vacated slots are
 * poisoned and kept out of use (TOMB) until their segment is rebuilt, when
 * the poison is checked; retired segments are poisoned and wait in a
 * byte-budgeted quarantine whose poison is checked before they are freed.  Memory
 * found written is withdrawn, never reused, and the event is the result of
 * the call that found it, raised after the writer flag is released.
 *
 * Writers.  An atomic exchange per mutation (the obvious way to keep two
 * writers out) is a full barrier: about a fifth of a churn round.  So a map
 * is biased to the thread that writes it, as JVMs bias locks.  Each thread
 * has a writer record (wrec) naming the maps it is inside; only that thread
 * writes it.  The map names its owner's record, and the owner enters with
 * plain stores and loads:
 *
 *     rec.in = m; (compiler barrier) owner == rec ?  go on   : undo, slow path
 *
 * Any other thread takes the slow path: it takes the map's `writing` lock
 * by exchange, makes its own record the owner, and calls membarrier(),
 * which runs a full barrier on every running thread of the process.  After
 * that the old owner either had published rec.in = m before its barrier
 * (the newcomer reads the old owner's record, sees it, restores the old
 * owner and reports SM_EBUSY) or reads the new owner after it (it undoes
 * its own store and takes the slow path, finding the lock taken or the
 * newcomer's record set: SM_EBUSY).  Since a thread only ever writes its
 * own record, a late store cannot hide anyone else's.  Two writers are
 * never both inside.  A map handed between threads often (shared under a
 * mutex) stops being biased after HANDOFF_MAX hand-offs, as does one
 * written by a thread already inside WREC_NEST maps (pool hooks writing
 * maps): from then on every mutation holds the lock, one exchange, as
 * without bias.  Where membarrier() is not available (old kernels,
 * valgrind, seccomp) no map is biased.  The `inside` flag only tells
 * readers (best effort) that a writer is in; exclusion never relies on it.
 */
#define _GNU_SOURCE /* syscall (membarrier) */
#include "internal.h"
#include "segment.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum {
    SEG_TARGET_BYTES = 112 * 1024,
    SEG_MAX_SLOTS = 8192,
    QUARANTINE_MIN = 8,          /* retired segments held back at SM_CHECK_FULL, at least */
    QUARANTINE_BYTES = 8u << 20, /* ... and as many as fit in this many bytes */
    FREE_KEEP_MIN = 2,           /* free segments always worth keeping */
    GD_SLACK = 4,                /* global depth <= log2(segments) + GD_SLACK */
    GD_MAX = 40,                 /* and never more than this */
    GROWN = 1,                   /* directory entry tag: the segment has grown */
    SPARE_PAGE = 4096,           /* bytes of the spare segment faulted in per insert */
    SPARE_WANT = 3,              /* free segments to keep: a split takes two, */
    SPARE_SHARE = 32,            /* and one more per this many live segments */
    SPARE_MAX = 64,              /* up to this many */
    SPARE_MIN_SEGS = 16,         /* pre-fault only in maps at least this large */
    DIR_SPARE_MIN_GD = 12,       /* pre-fault the next directory from 32 KiB on */
    GROWN_SIZES = 32,            /* grown segment sizes with a cached geometry */
    HANDOFF_MAX = 64,            /* owner changes before a map stops being biased */
    WREC_NEST = 2,               /* maps one thread can be inside at once, biased */
    WREC_CHUNK = 64              /* writer records allocated at a time */
};

/* A thread's writer record (see "Writers" above): written only by its
 * thread, read by any.  Records are never freed; a thread's goes back to a
 * free list when the thread exits, for the next thread. */
typedef struct wrec {
    _Atomic(const struct sm_map *) in[WREC_NEST]; /* maps this thread is inside */
    unsigned depth;                               /* entries of in[] in use */
    struct wrec *next_free;
    char pad_[64 - WREC_NEST * sizeof(void *) - sizeof(unsigned) - sizeof(void *) - 4];
} wrec;

_Static_assert(sizeof(wrec) == 64, "a writer record is one cache line");

/* What every lookup reads, together at the start of the map. */
typedef struct map_hot {
    uintptr_t *dir; /* 2^gd segment pointers, GROWN-tagged */
    unsigned shift; /* 64 - gd */
    int check;
    int storage;
    size_t vsize; /* bytes per value */
    seg_hkey hkey;
    seg_geom geom; /* of an ordinary segment */
} map_hot;

struct sm_map {
    map_hot hot;
    /* Writers (see "Writers" above). */
    _Atomic int inside;    /* a writer is in: for readers, best effort */
    _Atomic(wrec *) owner; /* the record of the thread the map is biased to */
    _Atomic int writing;   /* the slow path's lock */
    unsigned handoffs;     /* owner changes so far */
    bool unbiased;         /* every mutation holds the lock */
    /* Size and shape. */
    size_t len;
    size_t len_peak; /* high-water length since the map last shrank */
    size_t len_high; /* high-water length since the map was last emptied or reserved */
    unsigned gd;
    size_t nsegs;
    size_t ndeep;       /* segments whose depth == gd; 0 allows halving */
    size_t ngrown;      /* live segments with more groups than geom */
    size_t merge_at;    /* directory index where the next merge check looks */
    uintptr_t *old_dir; /* the directory before the last resize, kept for a reader racing it */
    size_t old_dir_n;
    /* Retired memory. */
    seg *free;
    size_t nfree, keep_free;
    seg *quar_head, *quar_tail;
    size_t nquar, quar_bytes;
    seg *spare;              /* being faulted in, a page per insert (see spare_step) */
    size_t reserved;         /* the n of the last sm_map_reserve */
    uintptr_t *next_dir;     /* 2^(gd+1) entries being faulted in for the next doubling */
    size_t next_dir_n;       /* its entries */
    size_t next_dir_touched; /* bytes of it faulted in so far */
    bool next_dir_todo;      /* next_dir is wanted and not complete */
    size_t spare_touched;    /* bytes of it faulted in so far */
    seg *withdrawn;          /* found written after retirement: never reused */
    size_t nwithdrawn, withdrawn_bytes;
    /* An event found during a mutation, raised once the flag is released. */
    int pend_code;
    const void *pend_ptr;
    char pend_msg[192];
    /* Iteration checks. */
    uint64_t version;
    uint64_t del_from_version; /* version just before the last delete */
    int64_t del_key;
    bool registered;  /* in the registry of live maps (stats.c) */
    bool pool_reffed; /* counted among the pool's users (pool_ref) */
    uint32_t gen_idx; /* this map's entry in the generation table */
    uint64_t gen;
    sm_pool *pool;
    sm_layout layout;
    char name[SM_NAME_MAX];
    /* Statistics (sm_map_stats) and tracing (SAFEMAP_DEBUG=trace=1). */
    uint64_t splits, merges, rebuilds, grows, dir_doublings, dir_halvings;
    _Atomic uint64_t misuse[SM_NCODES]; /* raised from any thread (SM_EBUSY) */
    int trace;
    /* Geometries of grown segments: entry k for base groups << k. */
    seg_geom grown[GROWN_SIZES];
};

/* ---- Segments of this map ------------------------------------------------ */

static inline seg *dir_seg(const sm_map *m, size_t i)
{
    return (seg *)(m->hot.dir[i] & ~(uintptr_t)GROWN);
}

/* The geometry of a grown segment s, from the map's table of grown sizes
 * (seg_acquire fills entry k before it makes a segment of base << k
 * groups, and makes no other size). */
static inline __attribute__((always_inline)) const seg_geom *grown_geom(const sm_map *m,
                                                                        const seg *s)
{
    unsigned k = (unsigned)(__builtin_ctz(s->groups) - __builtin_ctz(m->hot.geom.groups));
    SM_ASSERT(k < GROWN_SIZES && m->grown[k].groups == s->groups);
    return &m->grown[k];
}

/* The geometry of s: the map's, or a grown segment's. */
static inline const seg_geom *seg_geom_of(const sm_map *m, const seg *s)
{
    if (SM_LIKELY(s->groups == m->hot.geom.groups))
        return &m->hot.geom;
    return grown_geom(m, s);
}

static inline uintptr_t dir_entry(const sm_map *m, seg *s)
{
    return (uintptr_t)s | (s->groups != m->hot.geom.groups ? GROWN : 0);
}

static inline void *slot_value(const sm_map *m, char *slot)
{
    if (m->hot.storage == SM_POOLED) {
        void *p;
        memcpy(&p, slot + m->hot.geom.voff, sizeof p);
        return p;
    }
    return slot + m->hot.geom.voff;
}

/* Copies n bytes.  The common value sizes get a copy the compiler inlines;
 * a call to memcpy with a run-time size costs as much as the copy. */
static inline void bytes_copy(void *dst, const void *src, size_t n)
{
    switch (n) {
    case 8:
        memcpy(dst, src, 8);
        break;
    case 16:
        memcpy(dst, src, 16);
        break;
    case 32:
        memcpy(dst, src, 32);
        break;
    case 64:
        memcpy(dst, src, 64);
        break;
    case 128:
        memcpy(dst, src, 128);
        break;
    default:
        memcpy(dst, src, n);
        break;
    }
}

/* The lookup of a delete: key's slot index in its segment, or -1; *sp and
 * *gp get the segment and its geometry. */
SM_COLD static long lookup_grown(const sm_map *m, seg *s, uint64_t h, int64_t key,
                                 const seg_geom **gp)
{
    *gp = seg_geom_of(m, s);
    return seg_lookup(*gp, s, h, key);
}

static inline long map_lookup(const sm_map *m, uint64_t h, int64_t key, seg **sp,
                              const seg_geom **gp, uint32_t *home)
{
    uintptr_t e = m->hot.dir[h >> m->hot.shift];
    seg *s = (seg *)(e & ~(uintptr_t)GROWN);
    *sp = s;
    if (SM_UNLIKELY(e & GROWN)) {
        long i = lookup_grown(m, s, h, key, gp);
        *home = seg_home((*gp)->groups, seg_inner(*gp, h));
        return i;
    }
    /* The home group inline, its index computed once; the rest of the
     * probe (rare) starts over in seg_lookup(). */
    const seg_geom *g = &m->hot.geom;
    *gp = g;
    uint32_t grp = seg_home(g->groups, h);
    *home = grp;
    size_t stride = g->stride;
    char *base = (char *)s + g->slots_off + grp * g->gstride;
    __builtin_prefetch(base + seg_pref(h) * stride);
    const uint8_t *w = seg_ctrl(s, grp);
    for (unsigned hit = grp_match(w, seg_tag(h)); hit; hit &= hit - 1) {
        unsigned j = (unsigned)__builtin_ctz(hit);
        if (seg_slot_key(base + j * stride) == key)
            return (long)((size_t)grp * SEG_GROUP + j);
    }
    if (!(w[SEG_OFW] & seg_ofw_bit(h)))
        return -1;
    return seg_lookup(g, s, h, key);
}

/* The slot holding key (hash h), or NULL: the path of every find, get and
 * put, inlined into each.  free_at and home (put only; NULL otherwise) as
 * for seg_find_free_at(). */
SM_COLD static char *find_grown(const sm_map *m, const seg *s, uint64_t h, int64_t key,
                                long *free_at, uint32_t *home)
{
    const seg_geom *g = seg_geom_of(m, s);
    return free_at ? seg_find_free_at(g, s, h, key, free_at, home) : seg_find(g, s, h, key);
}

#if defined(__GNUC__)
#define SM_INLINE_ALWAYS inline __attribute__((always_inline))
#else
#define SM_INLINE_ALWAYS inline
#endif

static SM_INLINE_ALWAYS char *map_find_slot(const sm_map *m, uint64_t h, int64_t key, long *free_at,
                                            uint32_t *home)
{
    uintptr_t e = m->hot.dir[h >> m->hot.shift];
    if (SM_UNLIKELY(e & GROWN))
        return find_grown(m, (const seg *)(e & ~(uintptr_t)GROWN), h, key, free_at, home);
    if (free_at)
        return seg_find_free_at(&m->hot.geom, (const seg *)e, h, key, free_at, home);
    return seg_find(&m->hot.geom, (const seg *)e, h, key);
}

/* ---- Events -------------------------------------------------------------- */

const char *map_name(const sm_map *m)
{
    return m && m->name[0] ? m->name : NULL;
}

/* Raises a misuse event about map m; the detail names the map and its
 * layout after the message. */
SM_COLD static int map_raise(const sm_map *m, int code, const char *what, const void *ptr,
                             const char *msg)
{
    char lay[128];
    chk_layout_format(lay, sizeof lay, &m->layout);
    atomic_fetch_add_explicit(&((sm_map *)(uintptr_t)m)->misuse[-code], 1, memory_order_relaxed);
    if (m->name[0])
        return chk_raise(code, what, m, ptr, "%s; map \"%s\" (%p), layout %s", msg, m->name,
                         (const void *)m, lay);
    return chk_raise(code, what, m, ptr, "%s; map %p, layout %s", msg, (const void *)m, lay);
}

/* Records an event found in the middle of a mutation; write_end() raises
 * the first one after the writer flag is released, so that a handler that
 * never returns cannot leave the map locked. */
SM_COLD static void map_defer(sm_map *m, int code, const void *ptr, const char *msg)
{
    if (m->pend_code)
        return;
    m->pend_code = code;
    m->pend_ptr = ptr;
    snprintf(m->pend_msg, sizeof m->pend_msg, "%s", msg);
}

SM_COLD static int raise_pending(sm_map *m, const char *what)
{
    int code = m->pend_code;
    char msg[sizeof m->pend_msg];
    memcpy(msg, m->pend_msg, sizeof msg);
    m->pend_code = 0;
    return map_raise(m, code, what, m->pend_ptr, msg);
}

SM_COLD static int busy_report(const sm_map *m, const char *what)
{
    return map_raise(m, SM_EBUSY, what, NULL,
                     "concurrent map writes: another thread is inside a mutation of this map");
}

/* ---- Writers ------------------------------------------------------------- */

static _Thread_local wrec *wrec_self __attribute__((tls_model("initial-exec")));
static pthread_once_t wrec_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t wrec_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t wrec_key;
static wrec *wrec_free;
static bool bias_ok; /* membarrier(PRIVATE_EXPEDITED) works, and so does the key */

static void wrec_release(void *p)
{
    wrec *r = p;
    pthread_mutex_lock(&wrec_lock);
    r->next_free = wrec_free;
    wrec_free = r;
    pthread_mutex_unlock(&wrec_lock);
}

static void wrec_prefork(void)
{
    pthread_mutex_lock(&wrec_lock);
}

static void wrec_postfork(void)
{
    pthread_mutex_unlock(&wrec_lock);
}

static void wrec_init(void)
{
    bias_ok = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
              syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0 &&
              pthread_key_create(&wrec_key, wrec_release) == 0 &&
              pthread_atfork(wrec_prefork, wrec_postfork, wrec_postfork) == 0;
}

/* This thread's record, made on its first biased write; NULL where bias is
 * off or memory ran out (the map then holds the lock instead). */
static wrec *wrec_get(void)
{
    if (wrec_self)
        return wrec_self;
    pthread_once(&wrec_once, wrec_init);
    if (!bias_ok)
        return NULL;
    pthread_mutex_lock(&wrec_lock);
    if (!wrec_free) {
        /* Never freed, so that reading any thread's record is always safe
         * (as the generation table's chunks). */
        wrec *chunk = aligned_alloc(64, WREC_CHUNK * sizeof *chunk);
        if (chunk) {
            memset(chunk, 0, WREC_CHUNK * sizeof *chunk);
            for (size_t i = 0; i < WREC_CHUNK; i++) {
                chunk[i].next_free = wrec_free;
                wrec_free = &chunk[i];
            }
        }
    }
    wrec *r = wrec_free;
    if (r)
        wrec_free = r->next_free;
    pthread_mutex_unlock(&wrec_lock);
    if (r && pthread_setspecific(wrec_key, r) != 0) {
        wrec_release(r);
        r = NULL;
    }
    return wrec_self = r;
}

static bool wrec_holds(wrec *r, const sm_map *m)
{
    for (int i = 0; i < WREC_NEST; i++)
        if (atomic_load_explicit(&r->in[i], memory_order_acquire) == m)
            return true;
    return false;
}

static inline void wrec_push(wrec *r, const sm_map *m)
{
    atomic_store_explicit(&r->in[r->depth], m, memory_order_relaxed);
    r->depth++;
}

static inline void wrec_pop(wrec *r)
{
    r->depth--;
    atomic_store_explicit(&r->in[r->depth], NULL, memory_order_release);
}

/* write_begin() the long way: for a thread that is not the owner, a nested
 * write, or a map no longer biased.  Takes the lock; then either moves the
 * bias to this thread (a hand-off: membarrier, then the old owner's record
 * must not hold the map) and enters through its record, or ends the bias
 * for good and enters holding the lock.  Every refusal restores what it
 * changed and reports SM_EBUSY. */
SM_COLD static int write_begin_slow(sm_map *m, const char *what)
{
    wrec *me = wrec_get();
    if (atomic_exchange_explicit(&m->writing, 1, memory_order_acquire))
        return busy_report(m, what);
    if (!m->unbiased) {
        wrec *prev = atomic_load_explicit(&m->owner, memory_order_relaxed);
        bool keep = me && me->depth < WREC_NEST && m->handoffs < HANDOFF_MAX && !wrec_holds(me, m);
        wrec *next = keep ? me : NULL;
        if (prev != next) {
            atomic_store_explicit(&m->owner, next, memory_order_relaxed);
            if (prev) {
                m->handoffs++;
                bool fenced = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
                if (!fenced || wrec_holds(prev, m)) {
                    atomic_store_explicit(&m->owner, prev, memory_order_relaxed);
                    atomic_store_explicit(&m->writing, 0, memory_order_release);
                    return busy_report(m, what);
                }
            }
        }
        if (next) {
            wrec_push(me, m);
            atomic_store_explicit(&m->inside, 1, memory_order_relaxed);
            atomic_store_explicit(&m->writing, 0, memory_order_release);
            return 0;
        }
        m->unbiased = true;
    }
    atomic_store_explicit(&m->inside, 1, memory_order_relaxed);
    return 0;
}

/* Enters a mutation: SM_EBUSY when another one is in progress (see
 * "Writers" above).  The owner's way in is two stores and two loads, none
 * of them a read-modify-write; the loser of a race reports and changes
 * nothing. */
static inline int write_begin(sm_map *m, const char *what)
{
    if (m->hot.check == SM_CHECK_OFF)
        return 0;
    wrec *me = wrec_self;
    if (SM_LIKELY(me && me->depth == 0 &&
                  atomic_load_explicit(&m->owner, memory_order_relaxed) == me)) {
        wrec_push(me, m);
        atomic_signal_fence(memory_order_seq_cst);
        if (SM_LIKELY(atomic_load_explicit(&m->owner, memory_order_relaxed) == me)) {
            atomic_store_explicit(&m->inside, 1, memory_order_relaxed);
            return 0;
        }
        wrec_pop(me);
    }
    return write_begin_slow(m, what);
}

/* Leaves a mutation; returns the code of an event found inside it (raised
 * now), else rc.  Whether the mutation holds the lock or the bias cannot
 * change while it is inside. */
static inline int write_end(sm_map *m, const char *what, int rc)
{
    if (m->hot.check != SM_CHECK_OFF) {
        atomic_store_explicit(&m->inside, 0, memory_order_release);
        if (SM_UNLIKELY(m->unbiased))
            atomic_store_explicit(&m->writing, 0, memory_order_release);
        else
            wrec_pop(wrec_self);
    }
    if (SM_UNLIKELY(m->pend_code))
        return raise_pending(m, what);
    return rc;
}

/* At SM_CHECK_OFF no writer ever sets the flag, so readers test it at every
 * level: one load, no test of the level. */
static inline int read_check(const sm_map *m, const char *what)
{
    if (SM_UNLIKELY(atomic_load_explicit(&m->inside, memory_order_relaxed)))
        return busy_report(m, what);
    return 0;
}

/* ---- Generations: iterators that outlive their map ---------------------- */

/* Each map takes an entry of a process-wide table for its life; the entry's
 * generation is odd while the map lives and is bumped at sm_map_free, so an
 * iterator that copied (entry, generation) can tell that its map is gone
 * without touching the map.  The table grows in chunks that are never freed
 * (12 bytes per entry, entries reused), so reading it is always safe.  Its
 * chunks come from calloc, not the library's allocator: they outlive every
 * map.  A map that cannot get an entry (calloc failed) has generation 0 and
 * its iterators are not checked this way. */
enum { GEN_CHUNK = 4096, GEN_CHUNKS = 4096, GEN_NONE = UINT32_MAX };

typedef struct gen_chunk {
    _Atomic uint64_t gen[GEN_CHUNK];
    uint32_t next_free[GEN_CHUNK];
} gen_chunk;

static gen_chunk *_Atomic gen_chunks[GEN_CHUNKS];
static pthread_mutex_t gen_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t gen_free_head = GEN_NONE, gen_used;

static _Atomic uint64_t *gen_at(uint32_t idx)
{
    gen_chunk *c = atomic_load_explicit(&gen_chunks[idx / GEN_CHUNK], memory_order_acquire);
    return &c->gen[idx % GEN_CHUNK];
}

static void gen_take(sm_map *m)
{
    pthread_mutex_lock(&gen_lock);
    uint32_t idx = gen_free_head;
    if (idx != GEN_NONE) {
        gen_chunk *c = atomic_load_explicit(&gen_chunks[idx / GEN_CHUNK], memory_order_relaxed);
        gen_free_head = c->next_free[idx % GEN_CHUNK];
    } else if (gen_used < (uint32_t)GEN_CHUNK * GEN_CHUNKS) {
        idx = gen_used;
        if (idx % GEN_CHUNK == 0) {
            gen_chunk *c = calloc(1, sizeof *c);
            if (c)
                atomic_store_explicit(&gen_chunks[idx / GEN_CHUNK], c, memory_order_release);
            else
                idx = GEN_NONE;
        }
        if (idx != GEN_NONE)
            gen_used++;
    }
    m->gen_idx = idx;
    m->gen = idx == GEN_NONE ? 0 : atomic_fetch_add(gen_at(idx), 1) + 1;
    pthread_mutex_unlock(&gen_lock);
}

static void gen_release(sm_map *m)
{
    if (m->gen_idx == GEN_NONE)
        return;
    pthread_mutex_lock(&gen_lock);
    atomic_fetch_add(gen_at(m->gen_idx), 1);
    gen_chunk *c = atomic_load_explicit(&gen_chunks[m->gen_idx / GEN_CHUNK], memory_order_relaxed);
    c->next_free[m->gen_idx % GEN_CHUNK] = gen_free_head;
    gen_free_head = m->gen_idx;
    pthread_mutex_unlock(&gen_lock);
}

static bool gen_alive(uint32_t idx, uint64_t gen)
{
    if (gen == 0)
        return true;
    return atomic_load_explicit(gen_at(idx), memory_order_acquire) == gen;
}

/* ---- Segment memory ------------------------------------------------------ */

static size_t seg_bytes(const sm_map *m, const seg *s)
{
    return seg_geom_of(m, s)->bytes;
}

static void seg_poison_slots(const sm_map *m, seg *s)
{
    const seg_geom *g = seg_geom_of(m, s);
    chk_poison(seg_slot(g, s, 0), (size_t)g->slots * g->stride);
}

static bool seg_poison_intact(const sm_map *m, const seg *s)
{
    const seg_geom *g = seg_geom_of(m, s);
    return chk_poison_intact(seg_slot(g, s, 0), (size_t)g->slots * g->stride);
}

static void seg_free_now(sm_map *m, seg *s)
{
    size_t bytes = seg_bytes(m, s);
    if (m->hot.check == SM_CHECK_FULL) {
        const seg_geom *g = seg_geom_of(m, s);
        chk_unpoison(seg_slot(g, s, 0), (size_t)g->slots * g->stride);
    }
    alc_free(s, bytes);
}

static void seg_withdraw(sm_map *m, seg *s)
{
    s->next = m->withdrawn;
    m->withdrawn = s;
    m->nwithdrawn++;
    m->withdrawn_bytes += seg_bytes(m, s);
}

/* The quarantine's budget: at least QUARANTINE_MIN segments, and more while
 * they take no more than QUARANTINE_BYTES or the bytes of the live segments,
 * whichever is less (a map that shrank keeps little). */
static bool quarantine_over(const sm_map *m)
{
    size_t live = m->nsegs * m->hot.geom.bytes;
    size_t budget = live < QUARANTINE_BYTES ? live : QUARANTINE_BYTES;
    return m->nquar > QUARANTINE_MIN && m->quar_bytes > budget;
}

/* Every segment on the free list is an ordinary one; a spare segment
 * (spare_step) arrives with a zeroed header, so its size is set here. */
static void free_push(sm_map *m, seg *s)
{
    s->groups = m->hot.geom.groups;
    s->next = m->free;
    m->free = s;
    m->nfree++;
}

/* A retired segment known clean goes on the free list when it is an
 * ordinary segment and the list is short, else back to the allocator.  The
 * free list keeps up to a quarter of the live segments, so that a split
 * reuses memory (fresh pages cost a fault each) and a reader racing a writer
 * (misuse, not served) reads retired memory rather than freed memory. */
static void seg_recycle(sm_map *m, seg *s)
{
    size_t keep = m->keep_free > FREE_KEEP_MIN ? m->keep_free : FREE_KEEP_MIN;
    if (s->groups != m->hot.geom.groups || (m->nfree >= keep && m->nfree >= m->nsegs / 4)) {
        seg_free_now(m, s);
        return;
    }
    free_push(m, s);
}

/* Lets the oldest quarantined segments go while the quarantine is over
 * budget, after checking their poison: a clean one is freed, one found
 * written is withdrawn and reported when the call ends. */
static void quarantine_trim(sm_map *m)
{
    while (quarantine_over(m)) {
        seg *old = m->quar_head;
        m->quar_head = old->next;
        if (!m->quar_head)
            m->quar_tail = NULL;
        m->nquar--;
        m->quar_bytes -= seg_bytes(m, old);
        if (seg_poison_intact(m, old)) {
            /* Back to the allocator, not the free list: under ASan freed
             * memory stays unaddressable a while longer. */
            seg_free_now(m, old);
            continue;
        }
        char msg[160];
        snprintf(msg, sizeof msg,
                 "retired segment %p was written after it was retired: a pointer from "
                 "sm_map_find/sm_map_upsert was kept across a mutation (segment withdrawn)",
                 (void *)old);
        map_defer(m, SM_ECORRUPT, old, msg);
        seg_withdraw(m, old);
    }
}

/* Retires s.  At SM_CHECK_FULL it is poisoned whole and queued in the
 * quarantine first. */
static void seg_release(sm_map *m, seg *s)
{
    if (m->hot.check != SM_CHECK_FULL) {
        seg_recycle(m, s);
        return;
    }
    seg_poison_slots(m, s);
    s->next = NULL;
    if (m->quar_tail)
        m->quar_tail->next = s;
    else
        m->quar_head = s;
    m->quar_tail = s;
    m->nquar++;
    m->quar_bytes += seg_bytes(m, s);
    quarantine_trim(m);
}

/* Takes n clean segments of `groups` groups and the given depth, from the
 * free list first: all of them, or none and SM_ENOMEM. */
static int seg_acquire(sm_map *m, uint32_t groups, uint32_t depth, seg **out, int n)
{
    seg_geom tmp;
    if (!seg_geom_init(&tmp, groups, m->hot.geom.stride, m->hot.geom.voff, m->hot.geom.align))
        return SM_ENOMEM;
    if (groups != m->hot.geom.groups) {
        /* A grown size: base << k groups, its geometry cached for lookups. */
        unsigned k = (unsigned)(__builtin_ctz(groups) - __builtin_ctz(m->hot.geom.groups));
        if (k >= GROWN_SIZES || ((size_t)m->hot.geom.groups << k) != groups)
            return SM_ENOMEM;
        tmp.remix = 1; /* it could not split: see seg_remix() */
        m->grown[k] = tmp;
    }
    int from_free = 0;
    if (groups == m->hot.geom.groups)
        for (seg *p = m->free; p && from_free < n; p = p->next)
            from_free++;
    for (int k = from_free; k < n; k++) {
        out[k] = alc_alloc(tmp.bytes, tmp.align);
        if (!out[k]) {
            while (k-- > from_free)
                alc_free(out[k], tmp.bytes);
            return SM_ENOMEM;
        }
        if (m->hot.check == SM_CHECK_FULL)
            chk_poison(seg_slot(&tmp, out[k], 0), (size_t)tmp.slots * tmp.stride);
    }
    for (int k = 0; k < from_free; k++) {
        out[k] = m->free;
        m->free = out[k]->next;
        m->nfree--;
        if (m->keep_free)
            m->keep_free--;
    }
    for (int k = 0; k < n; k++)
        seg_reset(&tmp, out[k], depth);
    return 0;
}

/* ---- Entry placement ----------------------------------------------------- */

/* Claims a free slot for key in s and returns it; the caller fills in the
 * value.  free_at is the slot seg_find_free_at() chose, with home the home
 * group it reported, or -1 to look for one.  s must be below its limit. */
static SM_INLINE_ALWAYS char *entry_claim(sm_map *m, seg *s, const seg_geom *g, uint64_t h,
                                          int64_t key, long free_at, uint32_t home)
{
    long i = free_at;
    if (i < 0)
        i = seg_find_free(g, s, h);
    else if (SM_UNLIKELY((size_t)i - (size_t)home * SEG_GROUP >= SEG_GROUP))
        seg_mark_path(g, s, h, (size_t)i); /* past the home group */
    SM_ASSERT(i >= 0);
    char *slot = seg_slot(g, s, (size_t)i);
    if (m->hot.check == SM_CHECK_FULL)
        chk_unpoison(slot, g->stride);
    seg_fill(g, s, (size_t)i, h, key);
    return slot;
}

/* Vacates slot i.  At SM_CHECK_FULL it is poisoned and kept out of use
 * (TOMB) until the segment is rebuilt. */
static void entry_vacate(sm_map *m, seg *s, const seg_geom *g, size_t i, uint32_t home)
{
    bool full = m->hot.check == SM_CHECK_FULL;
    seg_vacate_home(s, i, home, full);
    if (full)
        chk_poison(seg_slot(g, s, i), g->stride);
}

/* At SM_CHECK_FULL, how many TOMBs of s lost their poison. */
static uint32_t seg_tombs_written(const sm_map *m, const seg *s)
{
    uint32_t bad = 0;
    const seg_geom *g = seg_geom_of(m, s);
    for (uint32_t grp = 0; grp < g->groups; grp++) {
        unsigned t = grp_match(seg_ctrl(s, grp), CTRL_TOMB);
        for (; t; t &= t - 1) {
            size_t i = (size_t)grp * SEG_GROUP + (unsigned)__builtin_ctz(t);
            bad += !chk_poison_intact(seg_slot(g, s, i), g->stride);
        }
    }
    return bad;
}

/* Retires a segment whose entries have been moved out.  At SM_CHECK_FULL
 * its TOMBs are checked first: one written after its delete means a stale
 * pointer, and the segment is withdrawn rather than reused. */
static void seg_retire(sm_map *m, seg *s)
{
    uint32_t bad = m->hot.check == SM_CHECK_FULL ? seg_tombs_written(m, s) : 0;
    if (bad) {
        if (bad == s->bad) { /* reported when they were found */
            seg_withdraw(m, s);
            return;
        }
        char msg[160];
        snprintf(msg, sizeof msg,
                 "a deleted slot of segment %p was written after its delete: a pointer from "
                 "sm_map_find/sm_map_upsert was kept across sm_map_del (segment withdrawn)",
                 (void *)s);
        map_defer(m, SM_ECORRUPT, s, msg);
        seg_withdraw(m, s);
        return;
    }
    seg_release(m, s);
}

/* Moves every entry of src into dst[(h << shift_in) >> (64 - bits)] (bits
 * == 0: all into dst[0]).  The destinations must have room. */
static void seg_move_all(sm_map *m, seg *src, seg **dst, unsigned depth, unsigned bits)
{
    const seg_geom *gs = seg_geom_of(m, src);
    const seg_geom *gd = seg_geom_of(m, dst[0]);
    size_t vbytes = gs->stride - gs->voff;
    for (uint32_t grp = 0; grp < gs->groups; grp++) {
        for (unsigned f = grp_full(seg_ctrl(src, grp)); f; f &= f - 1) {
            size_t i = (size_t)grp * SEG_GROUP + (unsigned)__builtin_ctz(f);
            char *from = seg_slot(gs, src, i);
            int64_t key = seg_slot_key(from);
            uint64_t h = seg_hash(&m->hot.hkey, key);
            size_t k = bits ? (size_t)((h << depth) >> (64 - bits)) : 0;
            char *to = entry_claim(m, dst[k], gd, h, key, -1, 0);
            bytes_copy(to + gd->voff, from + gs->voff, vbytes);
        }
    }
}

/* ---- Directory ----------------------------------------------------------- */

/* First directory index of the range owned by a segment of `depth` at i. */
static inline size_t dir_range_start(const sm_map *m, size_t i, uint32_t depth)
{
    size_t span = (size_t)1 << (m->gd - depth);
    return i & ~(span - 1);
}

static void dir_fill(sm_map *m, size_t start, seg *s)
{
    size_t span = (size_t)1 << (m->gd - s->depth);
    uintptr_t e = dir_entry(m, s);
    for (size_t j = 0; j < span; j++)
        m->hot.dir[start + j] = e;
}

/* Installs d (2^gd entries) as the directory.  The one it replaces is kept
 * until the next resize, so that a reader racing this writer (misuse,
 * detected at best) reads stale pointers rather than freed memory. */
static void dir_install(sm_map *m, uintptr_t *d, unsigned gd)
{
    alc_free(m->old_dir, m->old_dir_n * sizeof *m->old_dir);
    m->old_dir = m->hot.dir;
    m->old_dir_n = (size_t)1 << m->gd;
    m->hot.dir = d;
    m->gd = gd;
    m->hot.shift = 64 - gd;
    /* A spare directory made for the old depth fits no more. */
    alc_free(m->next_dir, m->next_dir_n * sizeof *d);
    m->next_dir = NULL;
    m->next_dir_n = 0;
    m->next_dir_touched = 0;
    m->next_dir_todo = gd >= DIR_SPARE_MIN_GD && m->hot.check != SM_CHECK_FULL;
}

static uintptr_t *dir_alloc(unsigned gd)
{
    return alc_alloc(((size_t)1 << gd) * sizeof(uintptr_t), _Alignof(uintptr_t));
}

/* A directory of 2^gd entries for a doubling: the spare one faulted in
 * ahead (see spare_step) when it is ready and of that size, else fresh. */
static uintptr_t *dir_take(sm_map *m, unsigned gd)
{
    uintptr_t *d = m->next_dir;
    if (!d || m->next_dir_todo || m->next_dir_n != (size_t)1 << gd)
        return dir_alloc(gd);
    m->next_dir = NULL;
    m->next_dir_n = 0;
    m->next_dir_touched = 0;
    return d;
}

/* Doubles the directory into d (allocated by the caller): entry i becomes
 * entries 2i and 2i+1.  O(dir). */
static void dir_double(sm_map *m, uintptr_t *d)
{
    size_t n = (size_t)1 << m->gd;
    for (size_t i = 0; i < n; i++)
        d[2 * i] = d[2 * i + 1] = m->hot.dir[i];
    dir_install(m, d, m->gd + 1);
    m->ndeep = 0;
    m->dir_doublings++;
}

/* Halves the directory when no segment uses its last bit.  Best effort: a
 * failed allocation leaves the larger directory in place. */
static void dir_try_halve(sm_map *m)
{
    while (m->ndeep == 0 && m->gd > 1) {
        size_t n = (size_t)1 << m->gd;
        uintptr_t *d = dir_alloc(m->gd - 1);
        if (!d)
            return;
        for (size_t i = 0; i < n / 2; i++)
            d[i] = m->hot.dir[2 * i];
        dir_install(m, d, m->gd - 1);
        m->dir_halvings++;
        m->merge_at = 0;
        for (size_t i = 0; i < n / 2; i += (size_t)1 << (m->gd - dir_seg(m, i)->depth))
            m->ndeep += dir_seg(m, i)->depth == m->gd;
    }
}

/* The deepest the directory may go for the current number of segments. */
static unsigned gd_cap(const sm_map *m)
{
    unsigned bits = 0;
    while (bits < GD_MAX && ((size_t)1 << bits) < m->nsegs)
        bits++;
    bits += GD_SLACK;
    return bits < GD_MAX ? bits : GD_MAX;
}

/* One SAFEMAP_DEBUG=trace=1 line per split, merge, grow or rebuild (format
 * in docs/diagnostics.md):
 *   map "quotes" [int64_t[8]] split: depth 6 -> 7, 1393 -> 702 + 691 entries,
 *       65 segments, dir 128, len 90123, 41.2 us */
SM_COLD static void trace_line(const sm_map *m, const char *event, uint64_t t0, const char *what)
{
    char label[SM_NAME_MAX + 32];
    if (m->name[0])
        snprintf(label, sizeof label, "\"%s\"", m->name);
    else
        snprintf(label, sizeof label, "%p", (const void *)m);
    chk_trace("map %s [%s] %s: %s, %zu segments, dir %zu, len %zu, %.1f us", label,
              m->layout.name ? m->layout.name : "?", event, what, m->nsegs, (size_t)1 << m->gd,
              m->len, (double)(chk_now_ns() - t0) / 1e3);
}

/* ---- Growth and shrinking ------------------------------------------------ */

/* The group count for a segment that must hold `count` entries at most 3/4
 * of its limit: the map's, or a power-of-two multiple of it. */
static uint32_t groups_for(const sm_map *m, size_t count)
{
    uint64_t groups = m->hot.geom.groups;
    while (count * 8 > (uint64_t)groups * SEG_GROUP * 7 * 3 / 4 && groups < UINT32_MAX / 2)
        groups *= 2;
    return (uint32_t)groups;
}

/* Rebuilds s in place: every overflow bit recomputed from the keys that
 * really sit past their home group, every TOMB made EMPTY, the debt paid.
 * No entry moves and nothing is allocated, so it cannot fail.  At
 * SM_CHECK_FULL a TOMB whose poison was overwritten stays a TOMB for good
 * (that memory is withdrawn) and is reported when the call ends.
 * O(segment), about one hash per entry. */
static void seg_refresh(sm_map *m, seg *s)
{
    const seg_geom *g = seg_geom_of(m, s);
    bool full = m->hot.check == SM_CHECK_FULL;
    uint32_t bad = 0;
    for (uint32_t grp = 0; grp < g->groups; grp++)
        seg_ctrl(s, grp)[SEG_OFW] = 0;
    for (uint32_t grp = 0; grp < g->groups; grp++) {
        uint8_t *w = seg_ctrl(s, grp);
        for (unsigned t = full ? grp_match(w, CTRL_TOMB) : 0; t; t &= t - 1) {
            unsigned j = (unsigned)__builtin_ctz(t);
            if (chk_poison_intact(seg_slot(g, s, (size_t)grp * SEG_GROUP + j), g->stride))
                w[j] = CTRL_EMPTY;
            else
                bad++;
        }
        for (unsigned f = grp_full(w); f; f &= f - 1) {
            size_t i = (size_t)grp * SEG_GROUP + (unsigned)__builtin_ctz(f);
            uint64_t h = seg_inner(g, seg_hash(&m->hot.hkey, seg_slot_key(seg_slot(g, s, i))));
            uint8_t bit = (uint8_t)seg_ofw_bit(h);
            for (uint32_t at = seg_home(g->groups, h); at != grp;
                 at = seg_next_group(at, g->groups))
                seg_ctrl(s, at)[SEG_OFW] |= bit;
        }
    }
    if (bad > s->bad)
        map_defer(m, SM_ECORRUPT, s,
                  "a deleted slot was written after its delete: a pointer from "
                  "sm_map_find/sm_map_upsert was kept across sm_map_del (slot withdrawn)");
    s->bad = bad;
    s->debt = bad;
    m->rebuilds++;
}

/* Replaces the segment at directory index i with a clean copy of `groups`
 * groups (the same: a rebuild in place, seg_refresh; more: the segment
 * grows; fewer: it shrinks back).  Allocates first.  O(segment). */
static int seg_rebuild(sm_map *m, size_t i, uint32_t groups)
{
    seg *old = dir_seg(m, i), *s;
    if (groups == old->groups) {
        uint64_t t0 = m->trace ? chk_now_ns() : 0;
        seg_refresh(m, old);
        if (m->trace) {
            char what[96];
            snprintf(what, sizeof what, "depth %u, %u entries, in place", old->depth, old->count);
            trace_line(m, "rebuild", t0, what);
        }
        return 0;
    }
    int rc = seg_acquire(m, groups, old->depth, &s, 1);
    if (rc)
        return rc;
    uint64_t t0 = m->trace ? chk_now_ns() : 0;
    seg_move_all(m, old, &s, 0, 0);
    dir_fill(m, dir_range_start(m, i, old->depth), s);
    uint32_t base = m->hot.geom.groups;
    m->ngrown += (s->groups != base) - (old->groups != base);
    const char *event = groups > old->groups ? "grow" : groups < old->groups ? "shrink" : "rebuild";
    if (groups > old->groups)
        m->grows++;
    else
        m->rebuilds++;
    if (m->trace) {
        char what[96];
        snprintf(what, sizeof what, "depth %u, %u -> %u groups, %u entries", old->depth,
                 old->groups, groups, s->count);
        trace_line(m, event, t0, what);
    }
    seg_retire(m, old);
    return 0;
}

/* Counts, among up to `limit` entries of s, those whose hash bit (63 -
 * depth) is set; *seen gets how many entries it looked at. */
static size_t seg_count_bit(const sm_map *m, const seg *s, size_t limit, size_t *seen)
{
    const seg_geom *g = seg_geom_of(m, s);
    size_t ones = 0, n = 0;
    for (uint32_t grp = 0; grp < g->groups && n < limit; grp++)
        for (unsigned f = grp_full(seg_ctrl(s, grp)); f && n < limit; f &= f - 1, n++) {
            size_t i = (size_t)grp * SEG_GROUP + (unsigned)__builtin_ctz(f);
            uint64_t h = seg_hash(&m->hot.hkey, seg_slot_key(seg_slot(g, s, i)));
            ones += (h >> (63 - s->depth)) & 1;
        }
    *seen = n;
    return ones;
}

/* Whether splitting s on its next hash bit leaves about an eighth of its
 * entries or more on each side.  Keys crafted to share that bit fail this,
 * and the segment grows instead of splitting into a full and an empty half.
 * A sample of 64 entries settles the common case (random keys put 32 +- 4
 * on a side; the sample must show 8); only a lopsided sample pays for
 * counting them all.  So every split leaves each half at least an eighth
 * of a full segment (the sample errs by a few entries), which bounds the
 * segments chosen keys can cost at 8 per segment's worth of entries. */
static bool split_useful(const sm_map *m, const seg *s)
{
    size_t seen, ones = seg_count_bit(m, s, 64, &seen);
    if (seen == 64 && ones >= 8 && seen - ones >= 8)
        return true;
    ones = seg_count_bit(m, s, SIZE_MAX, &seen);
    size_t zeros = seen - ones;
    return (ones < zeros ? ones : zeros) >= seen / 8;
}

/* Splits the segment at directory index i in two, doubling the directory
 * first when its depth is the global depth.  Every allocation comes first:
 * on SM_ENOMEM nothing has changed.  Sets *deferred, having only doubled the
 * directory, when the segment still has slack: the split then waits for the
 * next insert, so that no single insert pays for both.  O(segment), plus
 * O(dir) for a doubling. */
static int seg_split(sm_map *m, size_t i, bool slack, bool *deferred)
{
    seg *old = dir_seg(m, i);
    uint32_t d = old->depth;
    uintptr_t *nd = NULL;
    if (d == m->gd) {
        nd = dir_take(m, m->gd + 1);
        if (!nd)
            return SM_ENOMEM;
        if (slack) {
            dir_double(m, nd);
            *deferred = true;
            return 0;
        }
    }
    seg *half[2];
    uint32_t groups = groups_for(m, old->count);
    if (groups > old->groups)
        groups = old->groups;
    int rc = seg_acquire(m, groups, d + 1, half, 2);
    if (rc) {
        alc_free(nd, ((size_t)1 << (m->gd + 1)) * sizeof *nd);
        return rc;
    }
    if (nd) {
        dir_double(m, nd);
        i *= 2;
    }
    uint64_t t0 = m->trace ? chk_now_ns() : 0;
    seg_move_all(m, old, half, d, 1);
    size_t start = dir_range_start(m, i, d);
    size_t span = (size_t)1 << (m->gd - d - 1);
    dir_fill(m, start, half[0]);
    dir_fill(m, start + span, half[1]);
    m->nsegs++;
    m->splits++;
    uint32_t base = m->hot.geom.groups;
    m->ngrown += (half[0]->groups != base) + (half[1]->groups != base) - (old->groups != base);
    if (d + 1 == m->gd)
        m->ndeep += 2;
    if (m->trace) {
        char what[96];
        snprintf(what, sizeof what, "depth %u -> %u, %u -> %u + %u entries", d, d + 1,
                 half[0]->count + half[1]->count, half[0]->count, half[1]->count);
        trace_line(m, "split", t0, what);
    }
    seg_retire(m, old);
    return 0;
}

/* Makes room for one more entry in the segment that owns hash h: a rebuild
 * when it is mostly debt, a split when it is really full, a grow when a
 * split would not help (see split_useful and gd_cap).  Sets *deferred when
 * the entry may go into the segment's slack instead (between its limit and
 * 15/16 of its slots), which happens in two cases:
 *
 *  - The map is below its high-water length (churn at a constant size).  A
 *    segment that the fill left nearly full drifts up and down as keys come
 *    and go; splitting it on an upward swing would grow the map for good,
 *    since its halves never get empty enough to merge again.  So under churn
 *    a segment absorbs the swing in its slack, is rebuilt when the slack is
 *    used up, and splits only when it holds more than its limit live.
 *  - The split needs the directory doubled: the doubling is done now and the
 *    split put off to the next insert into the segment. */
static int seg_make_room(sm_map *m, uint64_t h, bool *deferred)
{
    size_t i = h >> m->hot.shift;
    seg *s = dir_seg(m, i);
    const seg_geom *g = seg_geom_of(m, s);
    bool slack = s->count + s->debt + 1 < g->slots - g->slots / 16;
    if (s->count < g->limit - g->limit / 8)
        return seg_rebuild(m, i, s->groups);
    if (m->len < m->len_peak) {
        if (slack) {
            *deferred = true;
            return 0;
        }
        if (s->count < g->limit)
            return seg_rebuild(m, i, s->groups);
    }
    if ((s->depth == m->gd && m->gd >= gd_cap(m)) || !split_useful(m, s))
        return seg_rebuild(m, i, s->groups * 2);
    return seg_split(m, i, slack && s->depth == m->gd, deferred);
}

/* Merges the segment at index i with its sibling when both are ordinary,
 * at the same depth, and together under half a segment's limit; shrinks a
 * grown segment that has emptied to a quarter.  Best effort: nothing
 * happens when memory is short.  O(segment). */
static void seg_try_merge(sm_map *m, size_t i)
{
    seg *s = dir_seg(m, i);
    uint32_t d = s->depth, base = m->hot.geom.groups, half = m->hot.geom.limit / 2;
    if (s->groups != base) {
        uint32_t want = groups_for(m, s->count);
        if (want < s->groups / 2)
            (void)seg_rebuild(m, i, want);
        return;
    }
    if (d == 0 || s->count > half)
        return;
    size_t span = (size_t)1 << (m->gd - d);
    size_t start = dir_range_start(m, i, d);
    seg *sib = dir_seg(m, start ^ span);
    if (sib->depth != d || sib->groups != base || s->count + sib->count > half)
        return;
    seg *merged;
    if (seg_acquire(m, base, d - 1, &merged, 1))
        return;
    uint64_t t0 = m->trace ? chk_now_ns() : 0;
    unsigned a = s->count, b = sib->count;
    seg_move_all(m, s, &merged, 0, 0);
    seg_move_all(m, sib, &merged, 0, 0);
    dir_fill(m, start & ~span, merged);
    m->nsegs--;
    if (d == m->gd)
        m->ndeep -= 2;
    seg_retire(m, s);
    seg_retire(m, sib);
    m->merges++;
    m->len_peak = m->len;
    if (m->trace) {
        char what[96];
        snprintf(what, sizeof what, "depth %u -> %u, %u + %u -> %u entries", d, d - 1, a, b,
                 merged->count);
        trace_line(m, "merge", t0, what);
    }
    dir_try_halve(m);
}

/* After a successful put: when the map has lost half its entries and holds
 * less than a quarter of what its segments could, look at one more segment
 * (round robin) for a merge.  So a map emptied by deletes shrinks as inserts
 * resume, one segment per insert at most; a map that was reserved for more
 * than it holds is left alone. */
SM_COLD static void merge_step_now(sm_map *m)
{
    size_t n = (size_t)1 << m->gd;
    size_t i = m->merge_at < n ? m->merge_at : 0;
    seg *s = dir_seg(m, i);
    m->merge_at = dir_range_start(m, i, s->depth) + ((size_t)1 << (m->gd - s->depth));
    seg_try_merge(m, i);
}

static inline void map_merge_step(sm_map *m)
{
    if (SM_UNLIKELY(m->nsegs >= 2 && m->len * 2 <= m->len_high &&
                    m->len * 4 <= m->nsegs * (size_t)m->hot.geom.limit))
        merge_step_now(m);
}

/* ---- Creation ------------------------------------------------------------ */

static void map_shape(sm_map *m)
{
    size_t align = m->layout.elem_align > 8 ? m->layout.elem_align : 8;
    size_t vbytes = m->hot.storage == SM_POOLED ? sizeof(void *) : m->hot.vsize;
    size_t voff = seg_round_up(sizeof(int64_t), align);
    size_t stride = seg_round_up(voff + vbytes, align);
    /* Segments are sized in bytes, not slots: the group count is whatever
     * fits, so segment memory (and the cost of a split) is the same for
     * every layout. */
    size_t groups = SEG_TARGET_BYTES / (SEG_CTRL + SEG_GROUP * stride);
    if (groups > SEG_MAX_SLOTS / SEG_GROUP)
        groups = SEG_MAX_SLOTS / SEG_GROUP;
    if (groups < 1)
        groups = 1;
    seg_geom_init(&m->hot.geom, groups, stride, voff, align > 64 ? align : 64);
}

/* One empty segment of depth 0 and a directory of two. */
static int map_init_table(sm_map *m)
{
    uintptr_t *d = dir_alloc(1);
    if (!d)
        return SM_ENOMEM;
    seg *s;
    if (seg_acquire(m, m->hot.geom.groups, 0, &s, 1)) {
        alc_free(d, 2 * sizeof *d);
        return SM_ENOMEM;
    }
    d[0] = d[1] = (uintptr_t)s;
    m->hot.dir = d;
    m->gd = 1;
    m->hot.shift = 63;
    m->nsegs = 1;
    m->ndeep = 0;
    return 0;
}

static int map_check_opts(const sm_map_opts *o, int *level)
{
    if (!o)
        return chk_einval("sm_map_new", "opts is NULL");
    int rc = chk_layout_check(&o->layout, "sm_map_new", "opts->layout");
    if (rc)
        return rc;
    if (o->storage != SM_INLINE && o->storage != SM_POOLED)
        return chk_einval("sm_map_new", "opts->storage is %d, not SM_INLINE or SM_POOLED",
                          o->storage);
    if (o->storage == SM_POOLED && !o->pool)
        return chk_einval("sm_map_new", "opts->pool is NULL with SM_POOLED storage");
    *level = chk_level(o->check);
    if (*level < 0)
        return chk_einval("sm_map_new", "opts->check is %d, not an SM_CHECK_* level", o->check);
    if (o->storage == SM_POOLED && !chk_layout_equal(pool_layout(o->pool), &o->layout)) {
        char a[128], b[128];
        chk_layout_format(a, sizeof a, &o->layout);
        chk_layout_format(b, sizeof b, pool_layout(o->pool));
        return chk_raise(SM_ELAYOUT, "sm_map_new", NULL, o->pool,
                         "map layout %s does not match pool %p layout %s", a, (const void *)o->pool,
                         b);
    }
    return 0;
}

/* The secret seed of a new map: 8 bytes from getrandom().  Should that fail
 * (no entropy source at all), a mix of the clock, the map's address and a
 * counter: unique per map, but guessable by someone who can read the clock,
 * so the map then relies on its bounded growth (see the opening) alone. */
static uint64_t map_random_seed(const sm_map *m)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    static _Atomic uint64_t counter;
    seg_hkey k = seg_hkey_from_seed(chk_now_ns() ^ ((uint64_t)time(NULL) << 32) ^
                                    (uint64_t)(uintptr_t)m ^ atomic_fetch_add(&counter, 1) << 48);
    return k.k1;
}

int sm_map_new(sm_map **out, const sm_map_opts *o)
{
    int level;
    if (!out)
        return chk_einval("sm_map_new", "out is NULL");
    int rc = map_check_opts(o, &level);
    if (rc)
        return rc;
    sm_map *m = alc_alloc(sizeof *m, _Alignof(sm_map));
    if (!m)
        return SM_ENOMEM;
    memset(m, 0, sizeof *m);
    m->layout = o->layout;
    m->hot.storage = o->storage;
    m->pool = o->pool;
    m->hot.check = level;
    m->hot.vsize = o->layout.elem_size * o->layout.len;
    m->hot.hkey = seg_hkey_from_seed(o->fixed_seed ? o->seed : map_random_seed(m));
    if (o->name)
        snprintf(m->name, sizeof m->name, "%s", o->name);
    m->trace = chk_debug_get()->trace;
    m->gen_idx = GEN_NONE;
    atomic_init(&m->writing, 0);
    atomic_init(&m->inside, 0);
    atomic_init(&m->owner, NULL);
    map_shape(m);
    if (m->pool) {
        /* The pool refuses to be freed while this map draws from it. */
        rc = pool_ref(m->pool, m, map_name(m));
        if (rc) {
            alc_free(m, sizeof *m);
            return rc;
        }
        m->pool_reffed = true;
    }
    rc = map_init_table(m);
    if (rc == 0 && o->capacity)
        rc = sm_map_reserve(m, o->capacity);
    if (rc) {
        sm_map_free(m);
        return rc;
    }
    gen_take(m);
    reg_map_add(m);
    m->registered = true;
    *out = m;
    return 0;
}

/* ---- Values -------------------------------------------------------------- */

/* Fills a freshly claimed slot's value: a copy of value, or zeroes; for a
 * pooled map into `array`, taken from the pool beforehand. */
static void value_init(sm_map *m, char *slot, const void *value, void *array)
{
    void *dst = slot + m->hot.geom.voff;
    if (m->hot.storage == SM_POOLED) {
        memcpy(dst, &array, sizeof array);
        dst = array;
    }
    if (value)
        bytes_copy(dst, value, m->hot.vsize);
    else
        memset(dst, 0, m->hot.vsize);
}

/* Gives a pooled value back to the pool: no longer the map's (pool_disown),
 * then Put.  Returns the pool's code. */
static int value_give_back(sm_map *m, void *array)
{
    int rc = pool_disown(m->pool, array);
    int prc = sm_pool_put(m->pool, array);
    return prc ? prc : rc;
}

/* Gives every pooled value of s back to the pool. */
static void seg_drop_values(sm_map *m, seg *s)
{
    if (m->hot.storage != SM_POOLED)
        return;
    const seg_geom *g = seg_geom_of(m, s);
    for (uint32_t grp = 0; grp < g->groups; grp++)
        for (unsigned f = grp_full(seg_ctrl(s, grp)); f; f &= f - 1) {
            size_t i = (size_t)grp * SEG_GROUP + (unsigned)__builtin_ctz(f);
            value_give_back(m, slot_value(m, seg_slot(g, s, i)));
        }
}

/* Calls f on each distinct segment once. */
static void map_each_seg(sm_map *m, void (*f)(sm_map *, seg *))
{
    size_t n = (size_t)1 << m->gd;
    for (size_t i = 0; i < n;) {
        seg *s = dir_seg(m, i);
        i += (size_t)1 << (m->gd - s->depth);
        f(m, s);
    }
}

static void seg_free_chain(sm_map *m, seg *s)
{
    while (s) {
        seg *next = s->next;
        seg_free_now(m, s);
        s = next;
    }
}

void sm_map_free(sm_map *m)
{
    if (!m)
        return;
    if (m->registered)
        reg_map_del(m);
    gen_release(m);
    if (m->hot.dir) {
        map_each_seg(m, seg_drop_values);
        map_each_seg(m, seg_free_now);
        alc_free(m->hot.dir, ((size_t)1 << m->gd) * sizeof *m->hot.dir);
    }
    alc_free(m->old_dir, m->old_dir_n * sizeof *m->old_dir);
    seg_free_chain(m, m->free);
    seg_free_chain(m, m->quar_head);
    seg_free_chain(m, m->withdrawn);
    alc_free(m->spare, m->hot.geom.bytes);
    alc_free(m->next_dir, m->next_dir_n * sizeof *m->next_dir);
    if (m->pool_reffed)
        pool_unref(m->pool, m);
    alc_free(m, sizeof *m);
}

/* ---- Growth tail: fresh memory faulted in ahead ----------------------------- */

/* A split needs two clean segments; the one it retires goes back on the
 * free list, so a growing map takes one fresh segment per split, and the
 * first touch of each of its pages is a page fault (2-17 us on these
 * machines, 28 pages for a 112 KiB segment): that, not the move, made the
 * worst inserts.  So while the free list holds fewer than a split may need,
 * each insert faults in one page of a spare segment; once whole, the spare
 * joins the free list, and the next split finds its memory resident.  One
 * store per insert while a spare is in progress (a split comes every few
 * hundred inserts, a spare takes 28), none otherwise; never at
 * SM_CHECK_FULL (fresh segments are poisoned whole there anyway), in maps
 * under SPARE_MIN_SEGS segments (memory they would not use), or below
 * the size last reserved (a reserved map must not allocate while it fills
 * up to it).  An
 * allocation failure here is absorbed: there is no spare, nothing else. */
/* Faults in the next page of [p, p + bytes), *touched bytes of which are
 * done; true once all of it is. */
static bool fault_in_page(void *p, size_t *touched, size_t bytes)
{
    volatile char *c = p;
    c[*touched] = 0;
    *touched += SPARE_PAGE;
    if (*touched < bytes)
        return false;
    c[bytes - 1] = 0;
    return true;
}

SM_COLD static void spare_step(sm_map *m)
{
    size_t bytes = m->hot.geom.bytes;
    if (!m->spare) {
        m->spare = alc_alloc(bytes, m->hot.geom.align);
        m->spare_touched = 0;
        if (!m->spare)
            return;
    }
    if (!fault_in_page(m->spare, &m->spare_touched, bytes))
        return;
    free_push(m, m->spare);
    m->spare = NULL;
}

/* The same for the directory: from 2^DIR_SPARE_MIN_GD entries on, a fresh
 * directory (tens of pages at 1e7 entries) made every doubling's worst
 * insert.  So after each resize the next doubling's directory is
 * allocated and faulted in a page per insert; dir_take() hands it over. */
SM_COLD static void dir_spare_step(sm_map *m)
{
    size_t n = (size_t)1 << (m->gd + 1), bytes = n * sizeof *m->next_dir;
    if (!m->next_dir) {
        m->next_dir = dir_alloc(m->gd + 1);
        if (!m->next_dir) {
            m->next_dir_todo = false; /* absorbed: the doubling allocates */
            return;
        }
        m->next_dir_n = n;
        m->next_dir_touched = 0;
    }
    if (fault_in_page(m->next_dir, &m->next_dir_touched, bytes))
        m->next_dir_todo = false;
}

/* How many free segments a growing map keeps ready.  Splits come in waves
 * (segments filled at the same pace fill at about the same time), faster
 * than one spare per 28 inserts can follow, so the reserve grows with the
 * map: one more per SPARE_SHARE live segments (3% of its memory), at most
 * SPARE_MAX (7 MiB).  Growing to 4e6 entries, inserts that took more than
 * 10 page faults went from 117 (with 3 spares) to 15, all of them splits
 * of maps still under SPARE_MIN_SEGS segments. */
static inline size_t spare_want(const sm_map *m)
{
    size_t want = SPARE_WANT + m->nsegs / SPARE_SHARE;
    return want < SPARE_MAX ? want : SPARE_MAX;
}

static inline void spare_maybe(sm_map *m)
{
    if (SM_UNLIKELY(m->nfree < spare_want(m)) && m->nsegs >= SPARE_MIN_SEGS &&
        m->hot.check != SM_CHECK_FULL && m->len > m->reserved)
        spare_step(m);
    else if (SM_UNLIKELY(m->next_dir_todo) && m->len > m->reserved)
        dir_spare_step(m);
}

/* ---- Mutation ------------------------------------------------------------ */

enum { NEED_ARRAY = 1 };

/* The bookkeeping of every insert, after the entry is in place. */
static inline void insert_done(sm_map *m)
{
    if (++m->len > m->len_peak)
        m->len_peak = m->len;
    if (m->len > m->len_high)
        m->len_high = m->len;
    m->version++;
    spare_maybe(m);
}

/* Splits, grows or rebuilds the segment of hash h, full to its limit, until
 * it has room (or the work is deferred: the segment is then still below its
 * slot count); *sp and *gp get the segment of h now.  Out of line: it runs
 * about once per segment's worth of inserts. */
SM_COLD static int insert_make_room(sm_map *m, uint64_t h, seg **sp, const seg_geom **gp)
{
    bool deferred = false;
    while ((*sp)->count + (*sp)->debt >= (*gp)->limit && !deferred) {
        int rc = seg_make_room(m, h, &deferred);
        if (rc)
            return rc;
        m->version++; /* entries moved: iterators are stale */
        *sp = dir_seg(m, h >> m->hot.shift);
        *gp = seg_geom_of(m, *sp);
    }
    return 0;
}

/* The slot for key, inserting it when absent (value copied, or zeroed when
 * value is NULL) into `array` for a pooled map.  Returns 0 with *slot set
 * and *inserted telling which; NEED_ARRAY when a pooled map needs an array
 * first; SM_ENOMEM with the map unchanged. */
static SM_INLINE_ALWAYS int map_insert(sm_map *m, int64_t key, const void *value, void *array,
                                       char **slot, int *inserted)
{
    uint64_t h = seg_hash(&m->hot.hkey, key);
    long free_at;
    uint32_t home;
    *slot = map_find_slot(m, h, key, &free_at, &home);
    if (*slot) {
        *inserted = 0;
        return 0;
    }
    seg *s = dir_seg(m, h >> m->hot.shift);
    const seg_geom *g = seg_geom_of(m, s);
    if (m->hot.storage == SM_POOLED && !array)
        return NEED_ARRAY;
    if (SM_UNLIKELY(s->count + s->debt >= g->limit)) {
        int rc = insert_make_room(m, h, &s, &g);
        if (rc)
            return rc;
        free_at = -1;
    }
    *slot = entry_claim(m, s, g, h, key, free_at, home);
    value_init(m, *slot, value, array);
    *inserted = 1;
    insert_done(m);
    return 0;
}

/* put into a map with inline storage, inside its mutation: the slot for
 * key, out of line, for every case put_fast() leaves. */
SM_COLD static int put_slow(sm_map *m, int64_t key, const void *value)
{
    char *slot;
    int inserted;
    int rc = map_insert(m, key, value, NULL, &slot, &inserted);
    if (!rc && !inserted) {
        bytes_copy(slot + m->hot.geom.voff, value, m->hot.vsize);
        m->version++;
    }
    return rc;
}

/* put_fast() of an absent key into ordinary segment s at its limit: make
 * room (often deferred under churn, which changes nothing), then claim as
 * map_insert() does, without probing for the key again. */
SM_COLD static int put_at_limit(sm_map *m, uint64_t h, int64_t key, const void *value, seg *s)
{
    const seg_geom *g = &m->hot.geom;
    int rc = insert_make_room(m, h, &s, &g);
    if (rc)
        return rc;
    char *slot = entry_claim(m, s, g, h, key, -1, 0);
    bytes_copy(slot + g->voff, value, m->hot.vsize);
    insert_done(m);
    return 0;
}

/* put into a map with inline storage, inside its mutation, as a straight
 * line for the common cases: an ordinary segment, the key in its home
 * group (replaced) or absent with a free slot there (added, no overflow bit
 * to set; a segment at its limit first makes room).  Anything else, and
 * SM_CHECK_FULL's poison, goes to put_slow(). */
static inline int put_fast(sm_map *m, int64_t key, const void *value)
{
    uint64_t h = seg_hash(&m->hot.hkey, key);
    uintptr_t e = m->hot.dir[h >> m->hot.shift];
    if (SM_UNLIKELY((e & GROWN) || m->hot.check == SM_CHECK_FULL))
        return put_slow(m, key, value);
    seg *s = (seg *)e;
    const seg_geom *g = &m->hot.geom;
    uint32_t grp;
    const uint8_t *w;
    char *slot = seg_find_home(g, s, h, key, &grp, &w);
    if (slot) {
        bytes_copy(slot + g->voff, value, m->hot.vsize);
        m->version++;
        return 0;
    }
    unsigned empty = grp_empty(w);
    if (SM_UNLIKELY(!empty || (w[SEG_OFW] & seg_ofw_bit(h))))
        return put_slow(m, key, value);
    if (SM_UNLIKELY(s->count + s->debt >= g->limit))
        return put_at_limit(m, h, key, value, s);
    size_t i = (size_t)grp_free_slot((size_t)grp * SEG_GROUP, empty, h);
    slot = seg_slot(g, s, i);
    memcpy(slot, &key, sizeof key);
    ((uint8_t *)(uintptr_t)w)[i - (size_t)grp * SEG_GROUP] = (uint8_t)seg_tag(h);
    s->count++;
    bytes_copy(slot + g->voff, value, m->hot.vsize);
    insert_done(m);
    return 0;
}

/* put and upsert: the slot for key inside a mutation, which is still open
 * on success (0) and closed on failure.  A pooled map that
 * needs a new array leaves the mutation to get it (a pool event raised
 * there finds the map unlocked) and comes back; an array it then does not
 * need goes back to the pool. */
static int map_write(sm_map *m, int64_t key, const void *value, const char *what, char **slot,
                     int *inserted)
{
    int rc = write_begin(m, what);
    if (rc)
        return rc;
    void *array = NULL;
    while ((rc = map_insert(m, key, value, array, slot, inserted)) == NEED_ARRAY) {
        /* Only pooled maps get here, and only before anything changed. */
        write_end(m, what, 0);
        array = sm_pool_get(m->pool);
        if (!array)
            return SM_ENOMEM;
        rc = pool_own(m->pool, array); /* a user's sm_pool_put of it is now refused */
        if (rc) {
            sm_pool_put(m->pool, array);
            return rc;
        }
        rc = write_begin(m, what);
        if (rc) {
            value_give_back(m, array);
            return rc;
        }
    }
    if (rc)
        rc = write_end(m, what, rc);
    if (array && (rc || !*inserted))
        value_give_back(m, array);
    return rc;
}

/* sm_map_put() of a pooled map: map_write() gets the array a new entry
 * needs from the pool outside the mutation. */
SM_COLD static int put_pooled(sm_map *m, int64_t key, const void *value)
{
    int inserted = 0;
    char *slot = NULL;
    int rc = map_write(m, key, value, "sm_map_put", &slot, &inserted);
    if (rc < 0)
        return rc;
    if (!inserted) {
        bytes_copy(slot_value(m, slot), value, m->hot.vsize);
        m->version++;
    }
    map_merge_step(m);
    return write_end(m, "sm_map_put", 0);
}

int sm_map_put(sm_map *m, int64_t key, const void *value)
{
    if (!m || !value)
        return chk_einval("sm_map_put", "%s is NULL", m ? "value" : "m");
    if (SM_UNLIKELY(m->hot.storage == SM_POOLED))
        return put_pooled(m, key, value);
    /* Inline storage: no array to get, so map_write()'s loop is not needed. */
    int rc = write_begin(m, "sm_map_put");
    if (rc)
        return rc;
    rc = put_fast(m, key, value);
    if (SM_UNLIKELY(rc))
        return write_end(m, "sm_map_put", rc);
    map_merge_step(m);
    return write_end(m, "sm_map_put", 0);
}

void *sm_map_upsert(sm_map *m, int64_t key, int *inserted)
{
    int ins = 0;
    char *slot = NULL;
    if (inserted)
        *inserted = 0;
    if (!m || map_write(m, key, NULL, "sm_map_upsert", &slot, &ins) < 0)
        return NULL;
    if (write_end(m, "sm_map_upsert", 0))
        return NULL;
    if (inserted)
        *inserted = ins;
    return slot_value(m, slot);
}

/* Drops a segment's entries and leaves it clean at the given depth. */
static void seg_empty(sm_map *m, seg *s, uint32_t depth)
{
    seg_drop_values(m, s);
    const seg_geom *g = seg_geom_of(m, s);
    if (m->hot.check == SM_CHECK_FULL) {
        if (seg_tombs_written(m, s) > s->bad)
            map_defer(m, SM_ECORRUPT, s,
                      "a deleted slot was written after its delete: a pointer from "
                      "sm_map_find/sm_map_upsert was kept across sm_map_del");
        seg_poison_slots(m, s);
    }
    seg_reset(g, s, depth);
}

/* Takes the map back to one empty ordinary segment and a directory of two.
 * keep puts every other ordinary segment on the free list for reuse
 * (sm_map_clear); otherwise they are released and the free list keeps only
 * its usual few.  When even the small directory cannot be allocated the
 * segments are emptied in place.  O(segments). */
static void map_collapse(sm_map *m, bool keep)
{
    size_t n = (size_t)1 << m->gd;
    seg *first = NULL;
    for (size_t i = 0; i < n && !first; i += (size_t)1 << (m->gd - dir_seg(m, i)->depth))
        if (dir_seg(m, i)->groups == m->hot.geom.groups)
            first = dir_seg(m, i);
    uintptr_t *d = dir_alloc(1);
    seg *fresh = NULL;
    if (!d || (!first && seg_acquire(m, m->hot.geom.groups, 0, &fresh, 1))) {
        alc_free(d, 2 * sizeof *d);
        for (size_t i = 0; i < n; i += (size_t)1 << (m->gd - dir_seg(m, i)->depth))
            seg_empty(m, dir_seg(m, i), dir_seg(m, i)->depth);
        return;
    }
    m->nsegs = 1; /* so that seg_release keeps only the usual few */
    for (size_t i = 0; i < n;) {
        seg *s = dir_seg(m, i);
        i += (size_t)1 << (m->gd - s->depth);
        seg_empty(m, s, 0);
        if (s == first)
            continue;
        if (keep && s->groups == m->hot.geom.groups)
            free_push(m, s);
        else
            seg_release(m, s);
    }
    if (keep)
        m->keep_free = m->nfree;
    while (!keep && m->nfree > FREE_KEEP_MIN) { /* spares of the map that was */
        seg *s = m->free;
        m->free = s->next;
        m->nfree--;
        seg_free_now(m, s);
    }
    quarantine_trim(m);
    if (!first)
        first = fresh;
    d[0] = d[1] = (uintptr_t)first;
    dir_install(m, d, 1);
    m->nsegs = 1;
    m->ndeep = 0;
    m->ngrown = 0;
    m->len_peak = 0;
    m->len_high = 0;
    m->merge_at = 0;
}

void sm_map_clear(sm_map *m)
{
    if (!m || write_begin(m, "sm_map_clear"))
        return;
    map_collapse(m, true);
    m->len = 0;
    m->version++;
    write_end(m, "sm_map_clear", 0);
}

/* The bookkeeping of every successful delete, after the slot is vacated. */
static inline void del_done(sm_map *m, int64_t key)
{
    m->len--;
    /* No entry moves here: an iterator standing on this entry goes on. */
    m->del_key = key;
    m->del_from_version = m->version;
    m->version++;
    if (SM_UNLIKELY(m->len == 0) && (m->nsegs > 1 || m->ngrown))
        map_collapse(m, false);
}

/* sm_map_del() inside its mutation, for every case: a grown segment, a key
 * past its home group, a pooled value, SM_CHECK_FULL's TOMBs. */
SM_COLD static int del_slow(sm_map *m, int64_t key, uint64_t h)
{
    int rc;
    seg *s;
    const seg_geom *g;
    uint32_t home;
    long i = map_lookup(m, h, key, &s, &g, &home);
    if (i < 0)
        return write_end(m, "sm_map_del", SM_ENOENT);
    void *array = m->hot.storage == SM_POOLED ? slot_value(m, seg_slot(g, s, (size_t)i)) : NULL;
    entry_vacate(m, s, g, (size_t)i, home);
    del_done(m, key);
    rc = write_end(m, "sm_map_del", 0);
    if (array) {
        /* After the flag is released: an event the pool raises is this
         * call's result, and a handler that does not return leaves the map
         * usable.  A refused array is the pool's to withdraw. */
        int prc = value_give_back(m, array);
        if (rc == 0)
            rc = prc;
    }
    return rc;
}

/* The common delete as a straight line: an ordinary segment, the key in
 * its home group, inline storage, a check level that leaves no TOMB; the
 * slot is EMPTY at once and, being in its home group, adds no debt. */
int sm_map_del(sm_map *m, int64_t key)
{
    if (!m)
        return chk_einval("sm_map_del", "m is NULL");
    int rc = write_begin(m, "sm_map_del");
    if (rc)
        return rc;
    uint64_t h = seg_hash(&m->hot.hkey, key);
    uintptr_t e = m->hot.dir[h >> m->hot.shift];
    if (SM_UNLIKELY((e & GROWN) || m->hot.storage == SM_POOLED || m->hot.check == SM_CHECK_FULL))
        return del_slow(m, key, h);
    seg *s = (seg *)e;
    const seg_geom *g = &m->hot.geom;
    uint32_t grp = seg_home(g->groups, h);
    size_t stride = g->stride;
    char *base = (char *)s + g->slots_off + grp * g->gstride;
    __builtin_prefetch(base + seg_pref(h) * stride);
    uint8_t *w = seg_ctrl(s, grp);
    for (unsigned hit = grp_match(w, seg_tag(h)); hit; hit &= hit - 1) {
        unsigned j = (unsigned)__builtin_ctz(hit);
        if (seg_slot_key(base + j * stride) == key) {
            w[j] = CTRL_EMPTY;
            s->count--;
            del_done(m, key);
            return write_end(m, "sm_map_del", 0);
        }
    }
    if (!(w[SEG_OFW] & seg_ofw_bit(h)))
        return write_end(m, "sm_map_del", SM_ENOENT);
    return del_slow(m, key, h);
}

/* ---- Reserve ------------------------------------------------------------- */

/* The depth at which n entries spread evenly fill segments to 5/8 of their
 * limit, or -1 when this machine could not hold n entries. */
static int reserve_depth(const sm_map *m, size_t n)
{
    size_t per_seg = (size_t)m->hot.geom.limit * 5 / 8;
    int want = 0;
    while (want <= GD_MAX && ((size_t)1 << want) * per_seg < n)
        want++;
    if (want > GD_MAX)
        return -1;
    /* 2^want segments must fit in a 47-bit address space, and in the
     * machine's memory: asking for more would only fault pages in until the
     * allocator or the kernel gives up. */
    if ((uint64_t)m->hot.geom.bytes > ((uint64_t)1 << 47) >> want)
        return -1;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 &&
        ((uint64_t)m->hot.geom.bytes << want) / (uint64_t)page > (uint64_t)pages)
        return -1;
    return want;
}

/* The ordinary segments reserve must add: each of depth d < want becomes
 * 2^(want - d) segments.  Grown segments are left alone (their keys do not
 * spread). */
static size_t reserve_count(const sm_map *m, unsigned want)
{
    size_t n = (size_t)1 << m->gd, add = 0;
    for (size_t i = 0; i < n;) {
        seg *s = dir_seg(m, i);
        i += (size_t)1 << (m->gd - s->depth);
        if (s->depth < want && s->groups == m->hot.geom.groups)
            add += (size_t)1 << (want - s->depth);
    }
    return add;
}

int sm_map_reserve(sm_map *m, size_t n)
{
    if (!m)
        return chk_einval("sm_map_reserve", "m is NULL");
    int want = reserve_depth(m, n);
    if (want < 0)
        return SM_ENOMEM; /* impossible at once: nothing is tried */
    int rc = write_begin(m, "sm_map_reserve");
    if (rc)
        return rc;
    size_t add = reserve_count(m, (unsigned)want);
    if (add == 0)
        return write_end(m, "sm_map_reserve", 0);
    /* All the memory first, so that a failure changes nothing. */
    unsigned gd = (unsigned)want > m->gd ? (unsigned)want : m->gd;
    uintptr_t *d = gd > m->gd ? dir_alloc(gd) : NULL;
    seg **fresh = alc_alloc(add * sizeof *fresh, _Alignof(seg *));
    if ((gd > m->gd && !d) || !fresh ||
        seg_acquire(m, m->hot.geom.groups, (uint32_t)want, fresh, (int)add)) {
        alc_free(d, ((size_t)1 << gd) * sizeof *d);
        alc_free(fresh, add * sizeof *fresh);
        return write_end(m, "sm_map_reserve", SM_ENOMEM);
    }
    size_t old_n = (size_t)1 << m->gd, next = 0;
    uintptr_t *nd = d ? d : m->hot.dir;
    unsigned old_gd = m->gd;
    if (d)
        for (size_t i = 0; i < old_n; i++)
            for (size_t j = 0; j < ((size_t)1 << (gd - old_gd)); j++)
                d[(i << (gd - old_gd)) + j] = m->hot.dir[i];
    for (size_t i = 0; i < ((size_t)1 << gd);) {
        seg *s = (seg *)(nd[i] & ~(uintptr_t)GROWN);
        size_t span = (size_t)1 << (gd - s->depth);
        if (s->depth < (unsigned)want && s->groups == m->hot.geom.groups) {
            unsigned bits = (unsigned)want - s->depth;
            seg **parts = fresh + next;
            next += (size_t)1 << bits;
            seg_move_all(m, s, parts, s->depth, bits);
            for (size_t k = 0; k < ((size_t)1 << bits); k++)
                for (size_t j = 0; j < ((size_t)1 << (gd - (unsigned)want)); j++)
                    nd[i + (k << (gd - (unsigned)want)) + j] = (uintptr_t)parts[k];
            m->nsegs += ((size_t)1 << bits) - 1;
            m->splits += ((size_t)1 << bits) - 1;
            seg_retire(m, s);
        }
        i += span;
    }
    if (d) {
        m->dir_doublings += gd - old_gd;
        dir_install(m, d, gd);
    }
    m->ndeep = 0;
    for (size_t i = 0; i < ((size_t)1 << m->gd); i += (size_t)1 << (m->gd - dir_seg(m, i)->depth))
        m->ndeep += dir_seg(m, i)->depth == m->gd;
    alc_free(fresh, add * sizeof *fresh);
    m->len_high = m->len;
    m->reserved = n;
    m->version++;
    return write_end(m, "sm_map_reserve", 0);
}

/* ---- Lookup -------------------------------------------------------------- */

/* The common case of find and get as a straight line: an ordinary segment
 * and the key's home group.  Returns key's slot or NULL; *more is set when
 * that does not decide it (the home group's overflow bit for h is set), and
 * the caller goes on with map_find_rest().  A grown segment is searched
 * whole by one call.  Nothing here
 * needs to outlive a call, so the fast path keeps no stack frame. */
static SM_INLINE_ALWAYS char *map_find_home(const sm_map *m, uint64_t h, int64_t key, bool *more)
{
    uintptr_t e = m->hot.dir[h >> m->hot.shift];
    if (SM_UNLIKELY(e & GROWN)) {
        *more = false;
        return find_grown(m, (const seg *)(e & ~(uintptr_t)GROWN), h, key, NULL, NULL);
    }
    uint32_t grp;
    const uint8_t *w;
    char *slot = seg_find_home(&m->hot.geom, (const seg *)e, h, key, &grp, &w);
    *more = !slot && (w[SEG_OFW] & seg_ofw_bit(h));
    return slot;
}

/* The whole lookup, for the rare case map_find_home() leaves open: it
 * probes the home group again, then on. */
SM_COLD static char *map_find_rest(const sm_map *m, uint64_t h, int64_t key)
{
    return map_find_slot(m, h, key, NULL, NULL);
}

SM_COLD static void *find_rest(const sm_map *m, uint64_t h, int64_t key)
{
    char *slot = map_find_rest(m, h, key);
    return slot ? slot_value(m, slot) : NULL;
}

/* sm_map_find() while the writer flag is up: the report, then (when the
 * handler lets the call go on) the lookup the long way.  Out of line, so
 * that the fast path makes no call it must come back from. */
SM_COLD static void *find_busy(sm_map *m, int64_t key)
{
    if (read_check(m, "sm_map_find"))
        return NULL;
    return find_rest(m, seg_hash(&m->hot.hkey, key), key);
}

void *sm_map_find(sm_map *m, int64_t key)
{
    if (!m)
        return NULL;
    if (SM_UNLIKELY(atomic_load_explicit(&m->inside, memory_order_relaxed)))
        return find_busy(m, key);
    uint64_t h = seg_hash(&m->hot.hkey, key);
    bool more;
    char *slot = map_find_home(m, h, key, &more);
    if (SM_UNLIKELY(more))
        return find_rest(m, h, key);
    return slot ? slot_value(m, slot) : NULL;
}

int sm_map_get(const sm_map *m, int64_t key, void *out)
{
    if (!m || !out)
        return chk_einval("sm_map_get", "%s is NULL", m ? "out" : "m");
    int rc = read_check(m, "sm_map_get");
    if (rc)
        return rc;
    uint64_t h = seg_hash(&m->hot.hkey, key);
    bool more;
    char *slot = map_find_home(m, h, key, &more);
    if (SM_UNLIKELY(more))
        slot = map_find_rest(m, h, key);
    if (!slot)
        return SM_ENOENT;
    bytes_copy(out, slot_value(m, slot), m->hot.vsize);
    return 0;
}

size_t sm_map_len(const sm_map *m)
{
    return m ? m->len : 0;
}

/* ---- Iteration ----------------------------------------------------------- */

enum { ITER_FRESH, ITER_RETURNED, ITER_DONE };

sm_iter sm_map_iter(sm_map *m)
{
    sm_iter it;
    memset(&it, 0, sizeof it);
    it.map_ = m;
    it.version_ = m ? m->version : 0;
    it.state_ = m ? ITER_FRESH : ITER_DONE;
    it.gen_idx_ = m ? m->gen_idx : 0;
    it.gen_ = m ? m->gen : 0;
    return it;
}

/* The version an iterator may continue at: its own, or the one right after
 * the deletion of the entry it last returned.  Iterators keep their state
 * to themselves: the map is only read. */
static bool iter_version_ok(sm_iter *it)
{
    const sm_map *m = it->map_;
    if (m->version == it->version_)
        return true;
    if (it->state_ == ITER_RETURNED && m->version == it->version_ + 1 &&
        m->del_from_version == it->version_ && m->del_key == it->key_) {
        it->version_ = m->version;
        return true;
    }
    return false;
}

SM_COLD static int iter_stale(const sm_iter *it)
{
    char msg[160];
    snprintf(msg, sizeof msg,
             "iterator used after the map changed (version %llu, now %llu); only "
             "deleting the entry just returned is allowed",
             (unsigned long long)it->version_, (unsigned long long)it->map_->version);
    return map_raise(it->map_, SM_ESTALE, "sm_iter_next", NULL, msg);
}

SM_COLD static int iter_orphan(sm_iter *it)
{
    const void *was = it->map_;
    it->state_ = ITER_DONE;
    it->map_ = NULL;
    return chk_raise(SM_ESTALE, "sm_iter_next", NULL, NULL,
                     "iterator used after its map %p was freed", was);
}

/* The walk of sm_map_each over one segment: every full slot, a group's
 * control word at a time.  Returns fn's nonzero value or SM_ESTALE. */
static int each_seg(sm_map *m, seg *s, sm_map_each_fn fn, void *ctx)
{
    const seg_geom *g = seg_geom_of(m, s);
    uint64_t version = m->version;
    bool checked = m->hot.check != SM_CHECK_OFF;
    char *slots = (char *)s + g->slots_off;
    unsigned next = grp_full(seg_ctrl(s, 0));
    for (uint32_t grp = 0; grp < g->groups; grp++) {
        char *base = slots + grp * g->gstride;
        unsigned full = next;
        /* The next group's entries are fetched while fn runs on these; its
         * control word is read once, here. */
        next = grp + 1 < g->groups ? grp_full(seg_ctrl(s, grp + 1)) : 0;
        for (unsigned f = next; f; f &= f - 1)
            __builtin_prefetch(base + g->gstride + (unsigned)__builtin_ctz(f) * g->stride);
        for (unsigned f = full; f; f &= f - 1) {
            char *p = base + (unsigned)__builtin_ctz(f) * g->stride;
            int rc = fn(seg_slot_key(p), slot_value(m, p), ctx);
            if (SM_UNLIKELY(checked && m->version != version))
                return map_raise(m, SM_ESTALE, "sm_map_each", NULL,
                                 "the map changed inside sm_map_each's callback; collect the "
                                 "keys and change the map after the walk");
            if (rc)
                return rc;
        }
    }
    return 0;
}

int sm_map_each(sm_map *m, sm_map_each_fn fn, void *ctx)
{
    if (!m || !fn)
        return chk_einval("sm_map_each", "%s is NULL", m ? "fn" : "m");
    int rc = read_check(m, "sm_map_each");
    if (rc)
        return rc;
    size_t n = (size_t)1 << m->gd;
    for (size_t i = 0; i < n;) {
        seg *s = dir_seg(m, i);
        i += (size_t)1 << (m->gd - s->depth);
        rc = each_seg(m, s, fn, ctx);
        if (rc)
            return rc;
    }
    return 0;
}

int sm_iter_next(sm_iter *it, int64_t *key, void **value)
{
    if (!it || it->state_ == ITER_DONE || !it->map_)
        return 0;
    if (!gen_alive(it->gen_idx_, it->gen_))
        return iter_orphan(it);
    sm_map *m = it->map_;
    if (m->hot.check != SM_CHECK_OFF && !iter_version_ok(it))
        return iter_stale(it);
    size_t n = (size_t)1 << m->gd;
    size_t di = it->dir_, next = it->state_ == ITER_FRESH ? 0 : it->slot_ + 1;
    while (di < n) {
        seg *s = dir_seg(m, di);
        const seg_geom *g = seg_geom_of(m, s);
        for (uint32_t grp = (uint32_t)(next / SEG_GROUP); grp < g->groups; grp++) {
            unsigned f = grp_full(seg_ctrl(s, grp));
            if (grp == next / SEG_GROUP)
                f &= ~0u << (next % SEG_GROUP);
            if (!f)
                continue;
            size_t i = (size_t)grp * SEG_GROUP + (unsigned)__builtin_ctz(f);
            char *p = seg_slot(g, s, i);
            it->dir_ = di;
            it->slot_ = i;
            it->key_ = seg_slot_key(p);
            it->state_ = ITER_RETURNED;
            if (key)
                *key = it->key_;
            if (value)
                *value = slot_value(m, p);
            return 1;
        }
        di = dir_range_start(m, di, s->depth) + ((size_t)1 << (m->gd - s->depth));
        next = 0;
    }
    it->state_ = ITER_DONE;
    return 0;
}

/* ---- Verification -------------------------------------------------------- */

static int corrupt(const sm_map *m, const char *fmt, size_t a, size_t b)
{
    char detail[160];
    snprintf(detail, sizeof detail, fmt, a, b);
    return map_raise(m, SM_ECORRUPT, "sm_map_verify", NULL, detail);
}

/* Checks one key of s in slot i: its tag, its home segment, and the
 * overflow bits on the groups between its home group and its own. */
static int key_verify(const sm_map *m, const seg *s, const seg_geom *g, size_t start, size_t i)
{
    uint64_t h = seg_hash(&m->hot.hkey, seg_slot_key(seg_slot(g, s, i)));
    uint64_t in = seg_inner(g, h); /* places the key inside s */
    uint32_t at = (uint32_t)(i / SEG_GROUP);
    if (seg_ctrl(s, at)[i % SEG_GROUP] != seg_tag(in))
        return corrupt(m, "tag mismatch at slot %zu (dir %zu)", i, start);
    if (s->depth && (h >> (64 - s->depth)) != (start >> (m->gd - s->depth)))
        return corrupt(m, "key in slot %zu is not in its home segment (dir %zu)", i, start);
    for (uint32_t grp = seg_home(g->groups, in); grp != at; grp = seg_next_group(grp, g->groups))
        if (!(seg_ctrl(s, grp)[SEG_OFW] & seg_ofw_bit(in)))
            return corrupt(m, "key in slot %zu unreachable: no overflow bit in group %zu", i, grp);
    return 0;
}

/* Checks one segment: control bytes, counts, every key (key_verify), and
 * poison in every free slot at SM_CHECK_FULL. */
static int seg_verify(const sm_map *m, const seg *s, size_t start, size_t *live)
{
    const seg_geom *g = seg_geom_of(m, s);
    bool grown = (m->hot.dir[start] & GROWN) != 0;
    if (grown != (s->groups != m->hot.geom.groups))
        return corrupt(m, "directory entry %zu: grown tag wrong (%zu groups)", start, s->groups);
    size_t count = 0, tombs = 0;
    for (uint32_t grp = 0; grp < g->groups; grp++) {
        const uint8_t *w = seg_ctrl(s, grp);
        for (size_t j = 0; j < SEG_GROUP; j++) {
            size_t i = (size_t)grp * SEG_GROUP + j;
            if (w[j] >= 2) {
                int rc = key_verify(m, s, g, start, i);
                if (rc)
                    return rc;
                count++;
                continue;
            }
            tombs += w[j] == CTRL_TOMB;
            if (w[j] == CTRL_TOMB && m->hot.check != SM_CHECK_FULL)
                return corrupt(m, "TOMB at slot %zu (dir %zu) below SM_CHECK_FULL", i, start);
            if (m->hot.check == SM_CHECK_FULL && !chk_poison_intact(seg_slot(g, s, i), g->stride))
                return corrupt(m, "vacated slot %zu (dir %zu) written after delete", i, start);
        }
    }
    if (count != s->count || tombs > s->debt)
        return corrupt(m, "segment counts wrong (dir %zu, %zu live)", start, count);
    if (count + s->debt >= g->slots)
        return corrupt(m, "segment full (dir %zu, %zu used)", start, count + s->debt);
    *live += count;
    return 0;
}

int sm_map_verify(const sm_map *m)
{
    if (!m)
        return chk_einval("sm_map_verify", "m is NULL");
    size_t n = (size_t)1 << m->gd, live = 0, segs = 0, deep = 0, grown = 0;
    if (m->hot.shift != 64 - m->gd)
        return corrupt(m, "shift %zu does not match depth %zu", m->hot.shift, m->gd);
    for (size_t i = 0; i < n;) {
        seg *s = dir_seg(m, i);
        if (s->depth > m->gd)
            return corrupt(m, "segment depth %zu above global depth %zu", s->depth, m->gd);
        size_t span = (size_t)1 << (m->gd - s->depth);
        if (i % span)
            return corrupt(m, "segment range at %zu misaligned (span %zu)", i, span);
        for (size_t j = i; j < i + span; j++)
            if (m->hot.dir[j] != m->hot.dir[i])
                return corrupt(m, "directory entry %zu breaks the range at %zu", j, i);
        int rc = seg_verify(m, s, i, &live);
        if (rc)
            return rc;
        segs++;
        deep += s->depth == m->gd;
        grown += s->groups != m->hot.geom.groups;
        i += span;
    }
    if (live != m->len)
        return corrupt(m, "length %zu but %zu live entries", m->len, live);
    if (segs != m->nsegs || deep != m->ndeep || grown != m->ngrown)
        return corrupt(m, "segment count %zu or deep count %zu wrong", segs, deep);
    return 0;
}

/* ---- Statistics ---------------------------------------------------------- */

/* Adds each entry of s to the probe histogram by how many groups past its
 * home group it sits. */
static void seg_probe_hist(const sm_map *m, const seg *s, uint64_t *hist)
{
    const seg_geom *g = seg_geom_of(m, s);
    for (uint32_t grp = 0; grp < g->groups; grp++)
        for (unsigned f = grp_full(seg_ctrl(s, grp)); f; f &= f - 1) {
            size_t i = (size_t)grp * SEG_GROUP + (unsigned)__builtin_ctz(f);
            uint64_t h = seg_hash(&m->hot.hkey, seg_slot_key(seg_slot(g, s, i)));
            uint32_t dist = seg_probe_len(g, h, i);
            hist[dist < SM_PROBE_BUCKETS - 1 ? dist : SM_PROBE_BUCKETS - 1]++;
        }
}

static size_t chain_bytes(const sm_map *m, const seg *s)
{
    size_t b = 0;
    for (; s; s = s->next)
        b += seg_bytes(m, s);
    return b;
}

int sm_map_stats(const sm_map *m, struct sm_map_stats *out)
{
    if (!m || !out)
        return chk_einval("sm_map_stats", "%s is NULL", m ? "out" : "m");
    memset(out, 0, sizeof *out);
    out->layout = m->layout;
    out->storage = m->hot.storage;
    out->check = m->hot.check;
    out->len = m->len;
    out->segments = m->nsegs;
    out->grown_segments = m->ngrown;
    out->free_segments = m->nfree + m->nquar;
    out->withdrawn_segments = m->nwithdrawn;
    out->global_depth = m->gd;
    out->splits = m->splits;
    out->merges = m->merges;
    out->rebuilds = m->rebuilds;
    out->grows = m->grows;
    out->dir_doublings = m->dir_doublings;
    out->dir_halvings = m->dir_halvings;
    for (int c = 0; c < SM_NCODES; c++)
        out->misuse[c] = atomic_load_explicit(&m->misuse[c], memory_order_relaxed);
    size_t n = (size_t)1 << m->gd, live_bytes = 0;
    for (size_t i = 0; i < n;) {
        seg *s = dir_seg(m, i);
        const seg_geom *g = seg_geom_of(m, s);
        i += (size_t)1 << (m->gd - s->depth);
        out->capacity += g->slots;
        live_bytes += g->bytes;
        seg_probe_hist(m, s, out->probe);
    }
    out->bytes = live_bytes + chain_bytes(m, m->free) + chain_bytes(m, m->quar_head) +
                 m->withdrawn_bytes + (m->spare ? m->hot.geom.bytes : 0) +
                 (n + m->old_dir_n + m->next_dir_n) * sizeof *m->hot.dir + sizeof *m;
    out->load = out->capacity ? (double)m->len / (double)out->capacity : 0;
    return 0;
}
