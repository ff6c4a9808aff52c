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
 *                 segment: seq | lock | depth count tombs | ctrl[] | slots[]
 *
 * Readers (sm_cmap_get) take no lock.  Inside an epoch read section they
 * load the directory, the segment, then
 *
 *     q = seq (acquire)        odd: a writer is in a slot, look again
 *                              RETIRED: the segment was replaced, reload dir
 *     probe and copy the value with relaxed 8-byte atomic loads
 *     acquire fence; seq == q ?  done : retry
 *
 * so a copy that overlapped a write is thrown away: no torn array, no value
 * that was never stored.  Every byte a reader touches optimistically is read
 * with an atomic load and written with an atomic store, which is what the
 * C11 memory model (and ThreadSanitizer) require of a seqlock.
 *
 * Writers lock the segment that owns the key (a mutex in its header), check
 * it is not retired, and change a slot between two increments of seq.  The
 * invariant that makes readers safe:
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
 * Reclamation (epoch.c).  Retired segments and directories wait in a FIFO
 * limbo stamped with the epoch of their retirement and are freed (segments:
 * kept on a free list for reuse, as the map does) when every read section
 * that could see them has ended.  The limbo is bounded: a writer that finds
 * it over LIMBO_BOUND waits, outside its own section, for a grace period.
 *
 * Inside a segment.  Slots come in groups of 16 with 16 control bytes each
 * (EMPTY 0x80, TOMB 0xFE, or a 7-bit tag).  A key's probe starts at its home
 * group and moves group by group; a lookup stops at the first group with an
 * EMPTY byte.  A delete writes EMPTY only into a group that still has an
 * EMPTY (so it has never overflowed), TOMB otherwise; a segment whose
 * live + dead slots reach its limit is rebuilt or split.  Groups are
 * 16-byte aligned, so a reader reads a group's control bytes with two
 * aligned 8-byte atomic loads.
 *
 * Check levels.  Values of SM_INLINE maps are rewritten in place, so no
 * pointer into the map is handed out (sm_cmap_find returns NULL); read
 * sections are checked for balance at CHEAP and FULL (SM_ESTALE).
 */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/random.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#ifndef SM_ASSERT
#include <assert.h>
#define SM_ASSERT(c) assert(c)
#endif

enum {
    GROUP = 16,
    CTRL_EMPTY = 0x80,
    CTRL_TOMB = 0xFE,
    SEG_HEADER = 128, /* control bytes start here */
    SEG_TARGET_BYTES = 96 * 1024,
    SEG_MAX_GROUPS = 512,
    FREE_KEEP_MIN = 2,    /* free segments always worth keeping */
    RECLAIM_EVERY = 16,   /* writes between two tries to reclaim */
    LIMBO_MIN_SEGS = 16,  /* the limbo bound: this many segments' bytes, */
    LIMBO_FRACTION = 8,   /* or 1/8 of the map, whichever is larger */
    VERIFY_TRIES = 1000
};

#define SEQ_RETIRED ((uint64_t)1 << 63)

/* Something waiting in the limbo: a segment or a directory. */
typedef struct limbo {
    struct limbo *next;
    uint64_t stamp; /* epoch at retirement */
    size_t bytes;
    int is_dir;
} limbo;

typedef struct cseg {
    _Atomic uint64_t seq; /* even: stable; odd: a slot is changing; SEQ_RETIRED */
    uint32_t depth;       /* fixed for the segment's life */
    uint32_t count;       /* live entries; under lock */
    uint32_t tombs;       /* TOMB control bytes; under lock */
    pthread_mutex_t lock;
    limbo lim;         /* limbo and free-list link once retired */
    struct cseg *free; /* free list */
} cseg;

_Static_assert(sizeof(cseg) <= SEG_HEADER, "segment header must fit before the control bytes");

typedef struct cdir {
    limbo lim;
    unsigned gd, shift; /* 2^gd entries; index = hash >> shift */
    _Atomic(cseg *) seg[];
} cdir;

struct sm_cmap {
    /* Read by every operation. */
    _Atomic(cdir *) dir;
    uint64_t seed;
    uint32_t ngroups, slots, limit;
    size_t stride, voff, vsize, slots_off, seg_bytes, seg_align;
    int check;
    int trace;
    /* Length, on its own line: every insert and delete writes it. */
    _Alignas(64) _Atomic size_t len;
    _Atomic uint64_t read_retries;
    /* Structure, under `grow`. */
    _Alignas(64) pthread_mutex_t grow;
    _Atomic size_t nsegs; /* live segments (read without the lock for bounds) */
    size_t ndeep;         /* live segments with depth == gd */
    uint64_t splits, merges, rebuilds, dir_doublings, dir_halvings;
    /* Retired memory, under `limbo_lock`. */
    pthread_mutex_t limbo_lock;
    limbo *limbo_head, *limbo_tail;
    _Atomic size_t limbo_objects;
    size_t limbo_bytes, limbo_peak;
    uint64_t reclaimed, grace_waits;
    cseg *free;
    size_t nfree;
    /* Identity and diagnostics. */
    sm_layout layout;
    char name[SM_NAME_MAX];
    _Atomic uint64_t misuse[SM_NCODES];
    struct sm_cmap *reg_prev, *reg_next;
};

/* ---- Registry (for metrics) --------------------------------------------- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static sm_cmap *reg_head;

static void cmap_register(sm_cmap *cm)
{
    pthread_mutex_lock(&reg_lock);
    cm->reg_prev = NULL;
    cm->reg_next = reg_head;
    if (reg_head)
        reg_head->reg_prev = cm;
    reg_head = cm;
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
    pthread_mutex_unlock(&reg_lock);
}

void cmap_each(void (*f)(sm_cmap *cm, void *ctx), void *ctx)
{
    pthread_mutex_lock(&reg_lock);
    for (sm_cmap *cm = reg_head; cm; cm = cm->reg_next)
        f(cm, ctx);
    pthread_mutex_unlock(&reg_lock);
}

/* ---- Hashing ------------------------------------------------------------ */

static inline uint64_t fold_mul(uint64_t a, uint64_t b)
{
#if defined(__SIZEOF_INT128__)
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    uint64_t x = a * b;
    return x ^ (x >> 29) ^ (a >> 32) * (b | 1);
#endif
}

/* Two rounds of a folded multiply keyed by the map's secret seed: the top
 * bits pick the directory entry, bits 0..31 the home group, bits 0..6 the
 * tag. */
static inline uint64_t cm_hash(const sm_cmap *cm, int64_t key)
{
    uint64_t x = fold_mul((uint64_t)key ^ cm->seed, 0x9E3779B97F4A7C15ull);
    return fold_mul(x ^ (cm->seed >> 17 | cm->seed << 47), 0xD6E8FEB86659FD93ull);
}

static inline uint8_t hash_tag(uint64_t h)
{
    return (uint8_t)(h & 0x7F);
}

static inline uint32_t home_group(const sm_cmap *cm, uint64_t h)
{
    return (uint32_t)(((uint64_t)(uint32_t)h * cm->ngroups) >> 32);
}

static uint64_t random_seed(void)
{
    uint64_t s = 0;
#if defined(__linux__)
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s)
        return s;
#endif
    /* No entropy source: the clock and an address, which an observer can
     * only guess at. */
    return fold_mul(chk_now_ns() ^ (uint64_t)(uintptr_t)&s, 0x9E3779B97F4A7C15ull);
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

static inline void ctrl_store(uint8_t *c, uint8_t v)
{
    __atomic_store_n(c, v, __ATOMIC_RELAXED);
}

/* Copies n bytes out of a slot (8-aligned) with 8-byte atomic loads. */
static void words_load(void *dst, const char *src, size_t n)
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

/* ---- Segment geometry --------------------------------------------------- */

static inline uint8_t *seg_ctrl(cseg *s)
{
    return (uint8_t *)s + SEG_HEADER;
}

static inline char *seg_slot(const sm_cmap *cm, cseg *s, size_t i)
{
    return (char *)s + cm->slots_off + i * cm->stride;
}

/* Bit i set when control byte i of group g equals v. */
static inline unsigned group_match(const uint8_t *ctrl, uint32_t g, uint8_t v)
{
    const uint8_t *p = ctrl + (size_t)g * GROUP;
    uint64_t lo = word_load(p), hi = word_load(p + 8);
#if defined(__SSE2__)
    __m128i w = _mm_set_epi64x((long long)hi, (long long)lo);
    return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(w, _mm_set1_epi8((char)v)));
#else
    unsigned r = 0;
    for (unsigned i = 0; i < 8; i++) {
        r |= (unsigned)((uint8_t)(lo >> (8 * i)) == v) << i;
        r |= (unsigned)((uint8_t)(hi >> (8 * i)) == v) << (i + 8);
    }
    return r;
#endif
}

/* Bit i set when control byte i of group g is EMPTY or TOMB (top bit set). */
static inline unsigned group_free(const uint8_t *ctrl, uint32_t g)
{
    const uint8_t *p = ctrl + (size_t)g * GROUP;
    uint64_t lo = word_load(p), hi = word_load(p + 8);
#if defined(__SSE2__)
    return (unsigned)_mm_movemask_epi8(_mm_set_epi64x((long long)hi, (long long)lo));
#else
    unsigned r = 0;
    for (unsigned i = 0; i < 8; i++) {
        r |= (unsigned)((lo >> (8 * i + 7)) & 1) << i;
        r |= (unsigned)((hi >> (8 * i + 7)) & 1) << (i + 8);
    }
    return r;
#endif
}

/* The slot holding key, or -1.  Used by readers (racing writers: at most one
 * pass over the groups, whatever the bytes say) and by writers under the
 * lock.  Cost: one group per probe step, one key load per tag match. */
static long seg_probe(const sm_cmap *cm, cseg *s, uint64_t h, int64_t key)
{
    const uint8_t *ctrl = seg_ctrl(s);
    uint8_t tag = hash_tag(h);
    uint32_t g = home_group(cm, h);
    for (uint32_t n = 0; n < cm->ngroups; n++) {
        unsigned hit = group_match(ctrl, g, tag);
        while (hit) {
            size_t i = (size_t)g * GROUP + (unsigned)__builtin_ctz(hit);
            if ((int64_t)word_load(seg_slot(cm, s, i)) == key)
                return (long)i;
            hit &= hit - 1;
        }
        if (group_match(ctrl, g, CTRL_EMPTY))
            return -1;
        g = g + 1 == cm->ngroups ? 0 : g + 1;
    }
    return -1;
}

/* The first EMPTY or TOMB slot on h's probe path; the segment must be under
 * its limit, so there is one.  Writers only. */
static size_t seg_free_slot(const sm_cmap *cm, cseg *s, uint64_t h)
{
    const uint8_t *ctrl = seg_ctrl(s);
    uint32_t g = home_group(cm, h);
    for (;;) {
        unsigned f = group_free(ctrl, g);
        if (f)
            return (size_t)g * GROUP + (unsigned)__builtin_ctz(f);
        g = g + 1 == cm->ngroups ? 0 : g + 1;
    }
}

/* ---- Writing a slot (segment locked) ------------------------------------ */

static inline void seg_write_begin(cseg *s)
{
    uint64_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
    SM_ASSERT(!(q & 1) && !(q & SEQ_RETIRED));
    atomic_store_explicit(&s->seq, q + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static inline void seg_write_end(cseg *s)
{
    uint64_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, q + 1, memory_order_release);
}

/* Puts key and value into a free slot of s (no seq change: the caller
 * brackets it, or s is not yet published). */
static void entry_claim(sm_cmap *cm, cseg *s, uint64_t h, int64_t key, const void *value)
{
    size_t i = seg_free_slot(cm, s, h);
    uint8_t *c = seg_ctrl(s) + i;
    if (*c == CTRL_TOMB)
        s->tombs--;
    char *slot = seg_slot(cm, s, i);
    word_store(slot, (uint64_t)key);
    words_store(slot + cm->voff, value, cm->vsize);
    ctrl_store(c, hash_tag(h));
    s->count++;
}

static void entry_vacate(cseg *s, size_t i)
{
    uint32_t g = (uint32_t)(i / GROUP);
    if (group_match(seg_ctrl(s), g, CTRL_EMPTY)) {
        ctrl_store(seg_ctrl(s) + i, CTRL_EMPTY);
    } else {
        ctrl_store(seg_ctrl(s) + i, CTRL_TOMB);
        s->tombs++;
    }
    s->count--;
}

/* ---- Segment memory ----------------------------------------------------- */

static void seg_reset(sm_cmap *cm, cseg *s, uint32_t depth)
{
    atomic_store_explicit(&s->seq, 0, memory_order_relaxed);
    s->depth = depth;
    s->count = 0;
    s->tombs = 0;
    s->free = NULL;
    memset(seg_ctrl(s), CTRL_EMPTY, (size_t)cm->ngroups * GROUP);
}

/* A clean, unpublished segment: from the free list, or fresh memory. */
static cseg *seg_acquire(sm_cmap *cm, uint32_t depth)
{
    pthread_mutex_lock(&cm->limbo_lock);
    cseg *s = cm->free;
    if (s) {
        cm->free = s->free;
        cm->nfree--;
    }
    pthread_mutex_unlock(&cm->limbo_lock);
    if (!s) {
        s = alc_alloc(cm->seg_bytes, cm->seg_align);
        if (!s)
            return NULL;
        if (pthread_mutex_init(&s->lock, NULL) != 0) {
            alc_free(s, cm->seg_bytes);
            return NULL;
        }
    }
    seg_reset(cm, s, depth);
    return s;
}

static void seg_destroy(sm_cmap *cm, cseg *s)
{
    pthread_mutex_destroy(&s->lock);
    alc_free(s, cm->seg_bytes);
}

/* A segment no reader or writer can reach any more: kept for reuse while the
 * free list is short, else freed.  Under limbo_lock. */
static void seg_recycle_locked(sm_cmap *cm, cseg *s, cseg **to_free)
{
    size_t quarter = atomic_load_explicit(&cm->nsegs, memory_order_relaxed) / 4;
    size_t keep = quarter > FREE_KEEP_MIN ? quarter : FREE_KEEP_MIN;
    if (cm->nfree < keep) {
        s->free = cm->free;
        cm->free = s;
        cm->nfree++;
    } else {
        s->free = *to_free;
        *to_free = s;
    }
}

/* Gives back a segment that was never published (an allocation after it
 * failed). */
static void seg_unused(sm_cmap *cm, cseg *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&cm->limbo_lock);
    s->free = cm->free;
    cm->free = s;
    cm->nfree++;
    pthread_mutex_unlock(&cm->limbo_lock);
}

static size_t dir_bytes(unsigned gd)
{
    return sizeof(cdir) + ((size_t)1 << gd) * sizeof(_Atomic(cseg *));
}

static cdir *dir_alloc(unsigned gd)
{
    cdir *d = alc_alloc(dir_bytes(gd), _Alignof(cdir));
    if (!d)
        return NULL;
    d->gd = gd;
    d->shift = 64 - gd;
    d->lim.is_dir = 1;
    return d;
}

/* ---- Reclamation -------------------------------------------------------- */

/* Hands an unlinked object to the limbo, stamped with the current epoch. */
static void retire(sm_cmap *cm, limbo *l, size_t bytes, int is_dir)
{
    l->stamp = ep_stamp();
    l->bytes = bytes;
    l->is_dir = is_dir;
    l->next = NULL;
    pthread_mutex_lock(&cm->limbo_lock);
    if (cm->limbo_tail)
        cm->limbo_tail->next = l;
    else
        cm->limbo_head = l;
    cm->limbo_tail = l;
    atomic_fetch_add_explicit(&cm->limbo_objects, 1, memory_order_relaxed);
    cm->limbo_bytes += bytes;
    if (cm->limbo_bytes > cm->limbo_peak)
        cm->limbo_peak = cm->limbo_bytes;
    pthread_mutex_unlock(&cm->limbo_lock);
}

static size_t limbo_bound(const sm_cmap *cm)
{
    size_t by_segs = LIMBO_MIN_SEGS * cm->seg_bytes;
    size_t by_map =
        atomic_load_explicit(&cm->nsegs, memory_order_relaxed) * cm->seg_bytes / LIMBO_FRACTION;
    return by_segs > by_map ? by_segs : by_map;
}

/* Frees (or keeps for reuse) everything in the limbo whose grace period is
 * over at epoch now.  The FIFO is in stamp order, so that is a prefix. */
static void reclaim_until(sm_cmap *cm, uint64_t now)
{
    cseg *to_free = NULL;
    limbo *dirs = NULL;
    pthread_mutex_lock(&cm->limbo_lock);
    while (cm->limbo_head && ep_safe(cm->limbo_head->stamp, now)) {
        limbo *l = cm->limbo_head;
        cm->limbo_head = l->next;
        if (!cm->limbo_head)
            cm->limbo_tail = NULL;
        atomic_fetch_sub_explicit(&cm->limbo_objects, 1, memory_order_relaxed);
        cm->limbo_bytes -= l->bytes;
        cm->reclaimed++;
        if (l->is_dir) {
            l->next = dirs;
            dirs = l;
        } else {
            seg_recycle_locked(cm, (cseg *)(void *)((char *)l - offsetof(cseg, lim)), &to_free);
        }
    }
    pthread_mutex_unlock(&cm->limbo_lock);
    while (to_free) {
        cseg *next = to_free->free;
        seg_destroy(cm, to_free);
        to_free = next;
    }
    while (dirs) {
        limbo *next = dirs->next;
        alc_free(dirs, dirs->bytes);
        dirs = next;
    }
}

/* Called by writers after their operation, outside their read section.
 * Tries now and then to advance the epoch and free what waited long enough;
 * over the bound, waits for the readers of the moment (unless this thread is
 * itself inside a section, which would wait for itself). */
static void reclaim_maybe(sm_cmap *cm)
{
    static _Thread_local unsigned calls;
    if (atomic_load_explicit(&cm->limbo_objects, memory_order_relaxed) == 0)
        return;
    if (++calls % RECLAIM_EVERY == 0)
        reclaim_until(cm, ep_try_advance());
    pthread_mutex_lock(&cm->limbo_lock);
    bool over = cm->limbo_bytes > limbo_bound(cm) && cm->limbo_tail;
    uint64_t stamp = over ? cm->limbo_tail->stamp : 0;
    pthread_mutex_unlock(&cm->limbo_lock);
    if (!over || ep_active())
        return;
    ep_wait_grace(stamp);
    pthread_mutex_lock(&cm->limbo_lock);
    cm->grace_waits++;
    pthread_mutex_unlock(&cm->limbo_lock);
    reclaim_until(cm, ep_try_advance());
}

/* ---- Finding and locking a key's segment -------------------------------- */

static inline cseg *dir_lookup(cdir *d, uint64_t h)
{
    return atomic_load_explicit(&d->seg[h >> d->shift], memory_order_acquire);
}

/* The live segment owning h, locked.  The caller is in a read section, so
 * whatever it loads stays allocated. */
static cseg *seg_lock(sm_cmap *cm, uint64_t h)
{
    for (;;) {
        cdir *d = atomic_load_explicit(&cm->dir, memory_order_acquire);
        cseg *s = dir_lookup(d, h);
        pthread_mutex_lock(&s->lock);
        if (!(atomic_load_explicit(&s->seq, memory_order_relaxed) & SEQ_RETIRED))
            return s;
        pthread_mutex_unlock(&s->lock);
    }
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
              atomic_load_explicit(&cm->len, memory_order_relaxed), us);
}

/* Publishes a new directory (2x or 1/2 the old) and retires the old. */
static void dir_publish(sm_cmap *cm, cdir *old, cdir *d)
{
    atomic_store_explicit(&cm->dir, d, memory_order_release);
    retire(cm, &old->lim, dir_bytes(old->gd), 1);
}

static int dir_double(sm_cmap *cm)
{
    cdir *old = atomic_load_explicit(&cm->dir, memory_order_relaxed);
    if (old->gd >= 48)
        return SM_ENOMEM;
    cdir *d = dir_alloc(old->gd + 1);
    if (!d)
        return SM_ENOMEM;
    size_t n = (size_t)1 << old->gd;
    for (size_t i = 0; i < n; i++) {
        cseg *s = atomic_load_explicit(&old->seg[i], memory_order_relaxed);
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
            cseg *s = atomic_load_explicit(&d->seg[i], memory_order_relaxed);
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
static void dir_fill(cdir *d, uint64_t h, uint32_t depth, cseg *s)
{
    size_t span = (size_t)1 << (d->gd - depth);
    size_t start = (size_t)(h >> d->shift) & ~(span - 1);
    for (size_t j = 0; j < span; j++)
        atomic_store_explicit(&d->seg[start + j], s, memory_order_release);
}

/* Copies every entry of src into dst0, or by the hash bit below depth `d`
 * into dst0/dst1.  The destinations are not published yet. */
static void seg_move_all(sm_cmap *cm, cseg *src, cseg *dst0, cseg *dst1, uint32_t d)
{
    const uint8_t *ctrl = seg_ctrl(src);
    size_t n = (size_t)cm->ngroups * GROUP;
    for (size_t i = 0; i < n; i++) {
        if (ctrl[i] & 0x80)
            continue;
        const char *slot = seg_slot(cm, src, i);
        int64_t key = (int64_t)word_load(slot);
        uint64_t h = cm_hash(cm, key);
        cseg *dst = dst1 && ((h >> (63 - d)) & 1) ? dst1 : dst0;
        size_t j = seg_free_slot(cm, dst, h);
        char *to = seg_slot(cm, dst, j);
        memcpy(to, slot, cm->stride);
        seg_ctrl(dst)[j] = hash_tag(h);
        dst->count++;
    }
}

/* Marks s replaced: readers that see it look again in the directory. */
static void seg_retire(sm_cmap *cm, cseg *s)
{
    atomic_fetch_or_explicit(&s->seq, SEQ_RETIRED, memory_order_seq_cst);
    retire(cm, &s->lim, cm->seg_bytes, 0);
}

/* Makes room in the full segment s (locked) that owns h: a rebuild into one
 * fresh segment when it is mostly tombstones, else a split into two.  The
 * copy is made before the map's grow lock is taken, so other segments'
 * splits are held up only for the pointer stores.  s is retired on success;
 * on SM_ENOMEM nothing changed (a doubled directory is equivalent). */
static int seg_grow(sm_cmap *cm, cseg *s, uint64_t h)
{
    uint32_t d = s->depth;
    bool split = s->count >= cm->limit - cm->limit / 4;
    uint64_t t0 = cm->trace ? chk_now_ns() : 0;
    cseg *a = seg_acquire(cm, split ? d + 1 : d);
    cseg *b = split && a ? seg_acquire(cm, d + 1) : NULL;
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
static void seg_try_merge(sm_cmap *cm, cseg *s, uint64_t h)
{
    uint32_t d = s->depth;
    if (d == 0 || s->count > cm->limit / 4)
        return;
    uint64_t sib_h = h ^ (uint64_t)1 << (64 - d);
    cdir *dir = atomic_load_explicit(&cm->dir, memory_order_acquire);
    cseg *sib = dir_lookup(dir, sib_h);
    if (sib == s || pthread_mutex_trylock(&sib->lock) != 0)
        return;
    if ((atomic_load_explicit(&sib->seq, memory_order_relaxed) & SEQ_RETIRED) || sib->depth != d ||
        s->count + sib->count > cm->limit / 2) {
        pthread_mutex_unlock(&sib->lock);
        return;
    }
    uint64_t t0 = cm->trace ? chk_now_ns() : 0;
    cseg *m = seg_acquire(cm, d - 1);
    if (!m) {
        pthread_mutex_unlock(&sib->lock);
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
    pthread_mutex_unlock(&sib->lock);
}

/* ---- Creation and destruction ------------------------------------------- */

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) & ~(a - 1);
}

static int cmap_geometry(sm_cmap *cm, const sm_layout *l)
{
    size_t align = l->elem_align > 8 ? l->elem_align : 8;
    cm->vsize = l->elem_size * l->len;
    cm->voff = align;
    cm->stride = align_up(cm->voff + cm->vsize, align);
    size_t groups = SEG_TARGET_BYTES / (GROUP * cm->stride);
    if (groups < 1)
        groups = 1;
    if (groups > SEG_MAX_GROUPS)
        groups = SEG_MAX_GROUPS;
    cm->ngroups = (uint32_t)groups;
    cm->slots = cm->ngroups * GROUP;
    cm->limit = cm->slots - cm->slots / 8;
    cm->seg_align = align > 64 ? align : 64;
    cm->slots_off = align_up(SEG_HEADER + cm->slots, cm->seg_align);
    cm->seg_bytes = cm->slots_off + (size_t)cm->slots * cm->stride;
    return 0;
}

static void cmap_destroy(sm_cmap *cm);

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
        cseg *s = seg_acquire(cm, depth);
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
    if (o->storage != SM_INLINE)
        return chk_einval("sm_cmap_new", "opts->storage is %d: only SM_INLINE is supported",
                          o->storage);
    int level = chk_level(o->check);
    if (level < 0)
        return chk_einval("sm_cmap_new", "opts->check is %d, not an SM_CHECK_* level", o->check);
    sm_cmap *cm = alc_alloc(sizeof *cm, _Alignof(sm_cmap));
    if (!cm)
        return SM_ENOMEM;
    memset(cm, 0, sizeof *cm);
    cm->check = level;
    cm->trace = chk_debug_get()->trace;
    cm->layout = o->layout;
    cm->seed = o->fixed_seed ? o->seed : random_seed();
    if (o->name)
        snprintf(cm->name, sizeof cm->name, "%s", o->name);
    else
        snprintf(cm->name, sizeof cm->name, "%p", (void *)cm);
    cmap_geometry(cm, &o->layout);
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
    size_t per_seg = (size_t)cm->limit * 5 / 8;
    while (gd < 40 && o->capacity / per_seg >= ((size_t)1 << gd))
        gd++;
    if (o->capacity > per_seg && gd >= 40) {
        cmap_destroy(cm);
        return chk_einval("sm_cmap_new", "opts->capacity %zu is impossible", o->capacity);
    }
    rc = cmap_build(cm, o->capacity > per_seg ? gd : 1);
    if (rc) {
        cmap_destroy(cm);
        return rc;
    }
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
            cseg *s = atomic_load_explicit(&d->seg[i], memory_order_relaxed);
            if (!s)
                break;
            i += (size_t)1 << (d->gd - s->depth);
            seg_destroy(cm, s);
        }
        alc_free(d, dir_bytes(d->gd));
    }
    reclaim_until(cm, UINT64_MAX);
    while (cm->free) {
        cseg *next = cm->free->free;
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

/* Copies key's value into out under the segment's seq.  In a read section. */
static int cmap_read(sm_cmap *cm, uint64_t h, int64_t key, void *out, void *buf)
{
    unsigned spins = 0;
    cdir *d = atomic_load_explicit(&cm->dir, memory_order_acquire);
    cseg *s = dir_lookup(d, h);
    for (;;) {
        uint64_t q = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (q & SEQ_RETIRED) {
            d = atomic_load_explicit(&cm->dir, memory_order_acquire);
            s = dir_lookup(d, h);
            continue;
        }
        if (q & 1) {
            /* A writer is inside one slot: a few stores, unless it was
             * preempted there. */
            if (++spins % 64 == 0)
                sched_yield();
            continue;
        }
        long i = seg_probe(cm, s, h, key);
        if (i >= 0)
            words_load(buf, seg_slot(cm, s, (size_t)i) + cm->voff, cm->vsize);
        read_fence();
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) == q) {
            if (i < 0)
                return SM_ENOENT;
            if (buf != out)
                memcpy(out, buf, cm->vsize);
            return 0;
        }
        atomic_fetch_add_explicit(&cm->read_retries, 1, memory_order_relaxed);
    }
}

int sm_cmap_get(sm_cmap *cm, int64_t key, void *out)
{
    if (!cm || !out)
        return chk_einval("sm_cmap_get", "%s is NULL", cm ? "out" : "cm");
    uint64_t buf[SM_CMAP_COPY_MAX / 8];
    int rc = ep_enter();
    if (rc)
        return rc;
    rc = cmap_read(cm, cm_hash(cm, key), key, out, cm->vsize <= sizeof buf ? (void *)buf : out);
    ep_exit();
    return rc;
}

size_t sm_cmap_len(sm_cmap *cm)
{
    return cm ? atomic_load_explicit(&cm->len, memory_order_relaxed) : 0;
}

/* Raises a misuse event about cm. */
SM_COLD static int cmap_raise(sm_cmap *cm, int code, const char *what, const char *msg)
{
    char lay[128];
    chk_layout_format(lay, sizeof lay, &cm->layout);
    atomic_fetch_add_explicit(&cm->misuse[-code], 1, memory_order_relaxed);
    return chk_raise(code, what, cm, NULL, "%s; cmap %s, layout %s", msg, cm->name, lay);
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

const void *sm_cmap_find(sm_cmap *cm, int64_t key)
{
    (void)key;
    if (!cm)
        return NULL;
    if (!ep_active() && cm->check != SM_CHECK_OFF)
        cmap_raise(cm, SM_ESTALE, "sm_cmap_find",
                   "called outside a read section: open one with sm_cmap_read_begin()");
    /* SM_INLINE values are rewritten in place: no stable pointer exists. */
    return NULL;
}

/* ---- Writes ------------------------------------------------------------- */

/* Inserts or replaces key with value in its segment, growing it first when
 * full.  In a read section. */
static int cmap_store(sm_cmap *cm, uint64_t h, int64_t key, const void *value)
{
    for (;;) {
        cseg *s = seg_lock(cm, h);
        long i = seg_probe(cm, s, h, key);
        if (i >= 0) {
            seg_write_begin(s);
            words_store(seg_slot(cm, s, (size_t)i) + cm->voff, value, cm->vsize);
            seg_write_end(s);
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
        if (s->count + s->tombs >= cm->limit) {
            int rc = seg_grow(cm, s, h);
            pthread_mutex_unlock(&s->lock);
            if (rc)
                return rc;
            continue;
        }
        seg_write_begin(s);
        entry_claim(cm, s, h, key, value);
        seg_write_end(s);
        atomic_fetch_add_explicit(&cm->len, 1, memory_order_relaxed);
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
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
    int rc = ep_enter();
    if (rc)
        return rc;
    uint64_t h = cm_hash(cm, key);
    cseg *s = seg_lock(cm, h);
    long i = seg_probe(cm, s, h, key);
    if (i < 0) {
        rc = SM_ENOENT;
    } else {
        seg_write_begin(s);
        entry_vacate(s, (size_t)i);
        seg_write_end(s);
        atomic_fetch_sub_explicit(&cm->len, 1, memory_order_relaxed);
        seg_try_merge(cm, s, h);
    }
    pthread_mutex_unlock(&s->lock);
    ep_exit();
    reclaim_maybe(cm);
    return rc;
}

int sm_cmap_update(sm_cmap *cm, int64_t key, sm_cmap_update_fn fn, void *ctx)
{
    if (!cm || !fn)
        return chk_einval("sm_cmap_update", "%s is NULL", cm ? "fn" : "cm");
    uint64_t stack[SM_CMAP_COPY_MAX / 8];
    void *buf = stack;
    if (cm->vsize > sizeof stack && !(buf = alc_alloc(cm->vsize, 8)))
        return SM_ENOMEM;
    int rc = ep_enter();
    if (rc)
        goto out;
    uint64_t h = cm_hash(cm, key);
    for (;;) {
        cseg *s = seg_lock(cm, h);
        long i = seg_probe(cm, s, h, key);
        if (i < 0 && s->count + s->tombs >= cm->limit) {
            rc = seg_grow(cm, s, h);
            pthread_mutex_unlock(&s->lock);
            if (rc)
                break;
            continue;
        }
        if (i >= 0)
            words_load(buf, seg_slot(cm, s, (size_t)i) + cm->voff, cm->vsize);
        else
            memset(buf, 0, cm->vsize);
        fn(buf, i < 0, ctx);
        seg_write_begin(s);
        if (i >= 0)
            words_store(seg_slot(cm, s, (size_t)i) + cm->voff, buf, cm->vsize);
        else
            entry_claim(cm, s, h, key, buf);
        seg_write_end(s);
        if (i < 0)
            atomic_fetch_add_explicit(&cm->len, 1, memory_order_relaxed);
        pthread_mutex_unlock(&s->lock);
        break;
    }
    ep_exit();
    reclaim_maybe(cm);
out:
    if (buf != stack)
        alc_free(buf, cm->vsize);
    return rc;
}

/* ---- Iteration ---------------------------------------------------------- */

/* Copies the entries of the live segment owning hash `pos` into buf (key,
 * then value, stride bytes each) and returns how many; *depth gets the
 * segment's depth, which fixes the range it covered. */
static size_t seg_snapshot(sm_cmap *cm, uint64_t pos, char *buf, uint32_t *depth)
{
    cseg *s = seg_lock(cm, pos);
    const uint8_t *ctrl = seg_ctrl(s);
    size_t n = 0, slots = (size_t)cm->ngroups * GROUP;
    for (size_t i = 0; i < slots; i++)
        if (!(ctrl[i] & 0x80))
            memcpy(buf + n++ * cm->stride, seg_slot(cm, s, i), cm->stride);
    *depth = s->depth;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int sm_cmap_each(sm_cmap *cm, sm_cmap_each_fn fn, void *ctx)
{
    if (!cm || !fn)
        return chk_einval("sm_cmap_each", "%s is NULL", cm ? "fn" : "cm");
    size_t bytes = (size_t)cm->slots * cm->stride;
    char *buf = alc_alloc(bytes, cm->seg_align);
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
        ep_exit();
        for (size_t i = 0; i < n && rc == 0; i++) {
            int64_t key;
            memcpy(&key, buf + i * cm->stride, sizeof key);
            rc = fn(key, buf + i * cm->stride + cm->voff, ctx);
        }
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

/* Checks one segment (locked) whose range starts at directory index start. */
static int seg_verify(sm_cmap *cm, cseg *s, size_t start, unsigned gd, size_t *live)
{
    const uint8_t *ctrl = seg_ctrl(s);
    size_t count = 0, tombs = 0, slots = (size_t)cm->ngroups * GROUP;
    if (atomic_load_explicit(&s->seq, memory_order_relaxed) & 1)
        return corrupt(cm, "segment at dir %zu has an odd sequence (%zu) while locked", start,
                       (size_t)atomic_load_explicit(&s->seq, memory_order_relaxed));
    for (size_t i = 0; i < slots; i++) {
        if (ctrl[i] == CTRL_TOMB) {
            tombs++;
            continue;
        }
        if (ctrl[i] == CTRL_EMPTY)
            continue;
        if (ctrl[i] & 0x80)
            return corrupt(cm, "bad control byte at slot %zu (dir %zu)", i, start);
        count++;
        int64_t key = (int64_t)word_load(seg_slot(cm, s, i));
        uint64_t h = cm_hash(cm, key);
        if (hash_tag(h) != ctrl[i])
            return corrupt(cm, "tag mismatch at slot %zu (dir %zu)", i, start);
        if (s->depth && (h >> (64 - s->depth)) != (start >> (gd - s->depth)))
            return corrupt(cm, "key in slot %zu is not in its home segment (dir %zu)", i, start);
        for (uint32_t g = home_group(cm, h); g != i / GROUP; g = (g + 1) % cm->ngroups)
            if (group_match(ctrl, g, CTRL_EMPTY))
                return corrupt(cm, "key in slot %zu unreachable: EMPTY in group %zu", i, g);
        if (seg_probe(cm, s, h, key) != (long)i)
            return corrupt(cm, "key in slot %zu found elsewhere (dir %zu)", i, start);
    }
    if (count != s->count || tombs != s->tombs)
        return corrupt(cm, "segment counts wrong (dir %zu, %zu live)", start, count);
    if (count + tombs > cm->limit)
        return corrupt(cm, "segment over its limit (dir %zu, %zu used)", start, count + tombs);
    *live += count;
    return 0;
}

/* Locks every live segment of directory d, in directory order.  Returns how
 * many, or 0 when one turned out retired (all unlocked again: try later). */
static size_t lock_all(cdir *d)
{
    size_t n = (size_t)1 << d->gd, locked = 0;
    for (size_t i = 0; i < n;) {
        cseg *s = atomic_load_explicit(&d->seg[i], memory_order_acquire);
        pthread_mutex_lock(&s->lock);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) & SEQ_RETIRED) {
            /* Its directory entries may already name its successors. */
            pthread_mutex_unlock(&s->lock);
            break;
        }
        locked++;
        i += (size_t)1 << (d->gd - s->depth);
        if (i == n)
            return locked;
    }
    /* The segments locked so far cannot have changed: walk them again. */
    for (size_t i = 0; locked > 0; locked--) {
        cseg *s = atomic_load_explicit(&d->seg[i], memory_order_relaxed);
        pthread_mutex_unlock(&s->lock);
        i += (size_t)1 << (d->gd - s->depth);
    }
    return 0;
}

static void unlock_all(cdir *d)
{
    size_t n = (size_t)1 << d->gd;
    for (size_t i = 0; i < n;) {
        cseg *s = atomic_load_explicit(&d->seg[i], memory_order_relaxed);
        i += (size_t)1 << (d->gd - s->depth);
        pthread_mutex_unlock(&s->lock);
    }
}

/* With every segment and the grow lock held: the whole map is still. */
static int verify_still(sm_cmap *cm, cdir *d)
{
    size_t n = (size_t)1 << d->gd, live = 0, segs = 0, deep = 0;
    if (d->shift != 64 - d->gd)
        return corrupt(cm, "shift %zu does not match depth %zu", d->shift, d->gd);
    for (size_t i = 0; i < n;) {
        cseg *s = atomic_load_explicit(&d->seg[i], memory_order_relaxed);
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
    if (live != atomic_load_explicit(&cm->len, memory_order_relaxed))
        return corrupt(cm, "length %zu but %zu live entries",
                       atomic_load_explicit(&cm->len, memory_order_relaxed), live);
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
    out->storage = SM_INLINE;
    out->check = cm->check;
    out->len = atomic_load_explicit(&cm->len, memory_order_relaxed);
    out->read_retries = atomic_load_explicit(&cm->read_retries, memory_order_relaxed);
    pthread_mutex_lock(&cm->grow);
    cdir *d = atomic_load_explicit(&cm->dir, memory_order_relaxed);
    out->segments = atomic_load_explicit(&cm->nsegs, memory_order_relaxed);
    out->capacity = out->segments * cm->slots;
    out->global_depth = d->gd;
    out->splits = cm->splits;
    out->merges = cm->merges;
    out->rebuilds = cm->rebuilds;
    out->dir_doublings = cm->dir_doublings;
    out->dir_halvings = cm->dir_halvings;
    out->limbo_bound_bytes = limbo_bound(cm);
    size_t live_bytes = out->segments * cm->seg_bytes + dir_bytes(d->gd);
    pthread_mutex_unlock(&cm->grow);
    pthread_mutex_lock(&cm->limbo_lock);
    out->limbo_bytes = cm->limbo_bytes;
    out->limbo_objects = atomic_load_explicit(&cm->limbo_objects, memory_order_relaxed);
    out->limbo_peak_bytes = cm->limbo_peak;
    out->reclaimed = cm->reclaimed;
    out->grace_waits = cm->grace_waits;
    out->bytes = live_bytes + cm->limbo_bytes + cm->nfree * cm->seg_bytes + sizeof *cm;
    pthread_mutex_unlock(&cm->limbo_lock);
    for (int c = 0; c < SM_NCODES; c++)
        out->misuse[c] = atomic_load_explicit(&cm->misuse[c], memory_order_relaxed);
    return 0;
}
