/*
 * map.c - the hash map: a directory of segments, each a small open-addressed
 * table (extendible hashing).
 *
 * Why segments.  A flat table grows by rehashing everything at once: boost's
 * and Abseil's maps stall for seconds at 1e7 entries and need old and new
 * arrays side by side.  Here the table is cut into segments of about 112
 * KiB, found through a directory indexed by the top `gd` bits of the hash
 * (the global depth).  A segment of local depth d <= gd owns the 2^(gd-d)
 * consecutive directory entries that share its d-bit prefix.  When a segment
 * fills, only that segment splits: its entries go to two fresh segments of
 * depth d+1, split on the next hash bit.  If d == gd the directory doubles
 * first (each entry duplicated in place; pointers only).  So an insert does
 * at most one segment's worth of work plus, rarely, a directory copy, and no
 * allocation is larger than a segment apart from the directory.  The reverse,
 * a merge of two sibling segments, runs when both are nearly empty, and the
 * directory halves when no segment needs its last bit: the map shrinks as it
 * empties.  Retired segments go on a free list and are reused before fresh
 * memory is touched.
 *
 * Inside a segment.  S slots (as many as fit in ~112 KiB, at least 16) and S+16 control
 * bytes.  A control byte is EMPTY (0x80), TOMB (0xFE, a deleted slot), or the
 * 7-bit tag of the key in that slot.  Probing is linear, slot by slot, from
 * the home slot (low hash bits), reading 16 control bytes at a time; the
 * first 16 control bytes are mirrored after the last so a window never needs
 * to wrap.  The invariant that makes lookups stop early:
 *
 *     every key is reachable from its home slot without crossing an EMPTY.
 *
 * Deletion writes TOMB, or EMPTY when the next slot is EMPTY (then trailing
 * tombs before it become EMPTY too), which keeps the invariant.  Tombs are
 * what make churn drift in other maps (golang/go#70886); here a segment whose
 * live plus dead slots reach its limit (7/8 of S) is rebuilt in place, or
 * split only if it really holds 7/8 of its limit in live entries.  Steady
 * churn therefore cleans segments instead of growing them.
 *
 * Slots.  A slot is the key (int64_t) followed by the value at an offset
 * that respects the layout's alignment: the array itself (SM_INLINE) or a
 * pointer to an array from a pool (SM_POOLED).  Every key is legal: emptiness
 * lives in the control bytes, never in the key.
 *
 * Checks.  At SM_CHECK_CHEAP a `writing` flag, taken by atomic exchange,
 * keeps a second writer out of a map (SM_EBUSY) and lets readers notice a
 * writer, as Go's map does; a version counter catches iterators used after a
 * mutation.  At SM_CHECK_FULL vacated
 * slots and retired segments are poisoned (and marked for ASan/Valgrind), and
 * retired segments wait in a FIFO quarantine whose poison is verified before
 * reuse, so a write through a pointer kept across growth is caught.
 */
#include "internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum {
    CTRL_EMPTY = 0x80,
    CTRL_TOMB = 0xFE,
    GROUP = 16,         /* control bytes read per probe step */
    SEG_MIN_SLOTS = 16, /* one probe window */
    SEG_MAX_SLOTS = 8192,
    SEG_TARGET_BYTES = 112 * 1024,
    SEG_HEADER = 64,  /* control bytes start here, cache-line aligned */
    QUARANTINE = 8,   /* retired segments held back at SM_CHECK_FULL */
    FREE_KEEP_MIN = 2 /* free segments always worth keeping */
};

typedef struct seg {
    uint32_t depth; /* local depth: bits of hash prefix this segment owns */
    uint32_t count; /* live entries */
    uint32_t tombs; /* TOMB control bytes */
    uint32_t unused;
    struct seg *next; /* free list / quarantine link */
} seg;

struct sm_map {
    /* Hot: read by every lookup. */
    seg **dir;
    unsigned shift; /* 64 - gd */
    uint32_t slots; /* per segment; any count >= GROUP */
    size_t stride;  /* bytes per slot */
    size_t voff;    /* value offset inside a slot */
    size_t slots_off;
    int check;
    int storage;
    _Atomic int writing;
    /* Size and shape. */
    size_t len;
    size_t len_peak; /* high-water length since the map last shrank */
    size_t vsize;    /* bytes per value */
    size_t seg_bytes;
    size_t seg_align;
    uint32_t limit; /* count + tombs that triggers a rebuild or split */
    unsigned gd;
    size_t nsegs;
    size_t ndeep; /* segments whose depth == gd; 0 allows halving */
    /* Retired memory. */
    seg *free;
    size_t nfree, keep_free;
    seg *quar_head, *quar_tail;
    size_t nquar;
    /* Iteration checks. */
    uint64_t version;
    uint64_t del_from_version; /* version just before the last delete */
    int64_t del_key;
    int64_t iter_key;      /* key the newest iterator step returned */
    uint64_t iter_version; /* map version at that step */
    sm_pool *pool;
    sm_layout layout;
    /* Statistics (sm_map_stats) and tracing (SAFEMAP_DEBUG=trace=1). */
    uint64_t splits, merges, rebuilds, dir_doublings, dir_halvings;
    _Atomic uint64_t misuse[SM_NCODES]; /* raised from any thread (SM_EBUSY) */
    int trace;
};

/* ---- Hashing ------------------------------------------------------------ */

/* A multiply-fold hash: 128-bit product of the key and an odd constant,
 * high half xor low half.  Every output bit depends on every key bit, which
 * matters because the directory uses the top bits, the home slot the low
 * bits 20..31 and the tag bits 0..6. */
static inline uint64_t hash_key(int64_t key)
{
#if defined(__SIZEOF_INT128__)
    __uint128_t r = (__uint128_t)(uint64_t)key * 0x9E3779B97F4A7C15ull;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    uint64_t x = (uint64_t)key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
#endif
}

static inline uint8_t hash_tag(uint64_t h)
{
    return (uint8_t)(h & 0x7F);
}

/* ---- Segment access ----------------------------------------------------- */

static inline uint8_t *seg_ctrl(seg *s)
{
    return (uint8_t *)s + SEG_HEADER;
}

static inline char *seg_slot(const sm_map *m, seg *s, size_t i)
{
    return (char *)s + m->slots_off + i * m->stride;
}

static inline int64_t slot_key(const char *slot)
{
    int64_t k;
    memcpy(&k, slot, sizeof k);
    return k;
}

static inline void *slot_value(const sm_map *m, char *slot)
{
    if (m->storage == SM_POOLED) {
        void *p;
        memcpy(&p, slot + m->voff, sizeof p);
        return p;
    }
    return slot + m->voff;
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

/* Sets control byte i and its mirror (for i < GROUP the mirror is at
 * slots + i; otherwise the second store hits i again). */
static inline void ctrl_set(const sm_map *m, seg *s, size_t i, uint8_t v)
{
    uint8_t *c = seg_ctrl(s);
    c[i] = v;
    if (i < GROUP)
        c[m->slots + i] = v;
}

/* The home slot: the low 32 hash bits scaled to [0, slots) by a multiply,
 * so a segment can have any number of slots.  It depends on bits 20..31,
 * the tag on bits 0..6 and the directory on the top bits. */
static inline size_t seg_home(const sm_map *m, uint64_t h)
{
    return (size_t)(((uint64_t)(uint32_t)h * m->slots) >> 32);
}

static inline size_t slot_wrap(const sm_map *m, size_t i)
{
    return i >= m->slots ? i - m->slots : i;
}

static inline size_t slot_prev(const sm_map *m, size_t i)
{
    return (i ? i : m->slots) - 1;
}

static inline bool ctrl_full(uint8_t c)
{
    return c < 0x80;
}

/* Bit i set when control byte i of the window equals v / has its top bit set
 * (EMPTY or TOMB). */
static inline unsigned window_match(const uint8_t *w, uint8_t v)
{
#if defined(__SSE2__)
    __m128i g = _mm_loadu_si128((const __m128i *)(const void *)w);
    return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(g, _mm_set1_epi8((char)v)));
#else
    unsigned r = 0;
    for (unsigned i = 0; i < GROUP; i++)
        r |= (unsigned)(w[i] == v) << i;
    return r;
#endif
}

static inline unsigned window_free(const uint8_t *w)
{
#if defined(__SSE2__)
    __m128i g = _mm_loadu_si128((const __m128i *)(const void *)w);
    return (unsigned)_mm_movemask_epi8(g);
#else
    unsigned r = 0;
    for (unsigned i = 0; i < GROUP; i++)
        r |= (unsigned)(w[i] >> 7) << i;
    return r;
#endif
}

static inline seg *dir_seg(const sm_map *m, uint64_t h)
{
    return m->dir[h >> m->shift];
}

/* Most keys sit in their home slot, and a new key usually lands there:
 * fetching it while the control bytes are still on their way makes the two
 * cache misses of a lookup overlap. */
static inline void seg_prefetch_home(const sm_map *m, seg *s, uint64_t h)
{
    __builtin_prefetch(seg_slot(m, s, seg_home(m, h)));
}

/* The slot holding key, or -1.  Cost: one control window per 16 slots of
 * probe distance, one key comparison per tag match (1/128 per slot). */
static inline long seg_lookup(const sm_map *m, seg *s, uint64_t h, int64_t key)
{
    const uint8_t *ctrl = seg_ctrl(s);
    uint8_t tag = hash_tag(h);
    size_t pos = seg_home(m, h);
    for (;;) {
        const uint8_t *w = ctrl + pos;
        unsigned hit = window_match(w, tag);
        unsigned empty = window_match(w, CTRL_EMPTY);
        /* Slots past the first EMPTY are not on the probe path: tags there
         * would only cost a key comparison (a cache miss) each. */
        hit &= (empty & -empty) - 1;
        while (hit) {
            size_t i = slot_wrap(m, pos + (unsigned)__builtin_ctz(hit));
            if (slot_key(seg_slot(m, s, i)) == key)
                return (long)i;
            hit &= hit - 1;
        }
        if (empty)
            return -1;
        pos = slot_wrap(m, pos + GROUP);
    }
}

/* The first EMPTY or TOMB slot on h's probe path.  The segment always has
 * one: count + tombs < limit < slots. */
static inline size_t seg_free_slot(const sm_map *m, seg *s, uint64_t h)
{
    const uint8_t *ctrl = seg_ctrl(s);
    size_t pos = seg_home(m, h);
    for (;;) {
        unsigned f = window_free(ctrl + pos);
        if (f)
            return slot_wrap(m, pos + (unsigned)__builtin_ctz(f));
        pos = slot_wrap(m, pos + GROUP);
    }
}

/* ---- Segment memory ----------------------------------------------------- */

static void seg_reset(sm_map *m, seg *s, uint32_t depth)
{
    s->depth = depth;
    s->count = 0;
    s->tombs = 0;
    s->next = NULL;
    memset(seg_ctrl(s), CTRL_EMPTY, m->slots + GROUP);
}

/* Raises a misuse event about map m; the detail names the map and its
 * layout after the message. */
SM_COLD static int map_raise(const sm_map *m, int code, const char *what, const void *ptr,
                             const char *msg)
{
    char lay[128];
    chk_layout_format(lay, sizeof lay, &m->layout);
    atomic_fetch_add_explicit(&((sm_map *)(uintptr_t)m)->misuse[-code], 1, memory_order_relaxed);
    return chk_raise(code, what, m, ptr, "%s; map %p, layout %s", msg, (const void *)m, lay);
}

/* At SM_CHECK_FULL a retired segment is poisoned whole and queued; the
 * oldest leaves the queue when it is longer than QUARANTINE, after its
 * poison is checked.  Returns the segment that left (or NULL). */
static seg *quarantine_push(sm_map *m, seg *s)
{
    chk_poison(seg_slot(m, s, 0), (size_t)m->slots * m->stride);
    s->next = NULL;
    if (m->quar_tail)
        m->quar_tail->next = s;
    else
        m->quar_head = s;
    m->quar_tail = s;
    if (++m->nquar <= QUARANTINE)
        return NULL;
    seg *old = m->quar_head;
    m->quar_head = old->next;
    if (!m->quar_head)
        m->quar_tail = NULL;
    m->nquar--;
    if (!chk_poison_intact(seg_slot(m, old, 0), (size_t)m->slots * m->stride)) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "retired segment %p was written after it was retired: a pointer from "
                 "sm_map_find/sm_map_upsert was kept across a mutation",
                 (void *)old);
        map_raise(m, SM_ECORRUPT, "sm_map (segment reuse)", old, msg);
    }
    return old;
}

static void seg_release(sm_map *m, seg *s)
{
    if (m->check == SM_CHECK_FULL) {
        s = quarantine_push(m, s);
        if (!s)
            return;
    }
    size_t keep = m->keep_free > FREE_KEEP_MIN ? m->keep_free : FREE_KEEP_MIN;
    if (m->nfree >= keep && m->nfree >= m->nsegs / 4) {
        alc_free(s, m->seg_bytes);
        return;
    }
    s->next = m->free;
    m->free = s;
    m->nfree++;
}

/* A clean segment of the given depth, from the free list when possible. */
static seg *seg_acquire(sm_map *m, uint32_t depth)
{
    seg *s = m->free;
    if (s) {
        m->free = s->next;
        m->nfree--;
        if (m->keep_free)
            m->keep_free--;
    } else {
        s = alc_alloc(m->seg_bytes, m->seg_align);
        if (!s)
            return NULL;
        if (m->check == SM_CHECK_FULL)
            chk_poison(seg_slot(m, s, 0), (size_t)m->slots * m->stride);
    }
    seg_reset(m, s, depth);
    return s;
}

/* ---- Entry placement ---------------------------------------------------- */

static inline void entry_vacate(sm_map *m, seg *s, size_t i)
{
    uint8_t *ctrl = seg_ctrl(s);
    if (ctrl[slot_wrap(m, i + 1)] == CTRL_EMPTY) {
        /* Nothing probes past i, so i and the tombs before it can be EMPTY. */
        ctrl_set(m, s, i, CTRL_EMPTY);
        for (size_t j = slot_prev(m, i); ctrl[j] == CTRL_TOMB; j = slot_prev(m, j)) {
            ctrl_set(m, s, j, CTRL_EMPTY);
            s->tombs--;
        }
    } else {
        ctrl_set(m, s, i, CTRL_TOMB);
        s->tombs++;
    }
    s->count--;
    if (m->check == SM_CHECK_FULL)
        chk_poison(seg_slot(m, s, i), m->stride);
}

/* Claims a free slot on h's path for key and returns it; the caller fills in
 * the value.  The segment must be below its limit. */
static inline char *entry_claim(sm_map *m, seg *s, uint64_t h, int64_t key)
{
    size_t i = seg_free_slot(m, s, h);
    if (seg_ctrl(s)[i] == CTRL_TOMB)
        s->tombs--;
    ctrl_set(m, s, i, hash_tag(h));
    s->count++;
    char *slot = seg_slot(m, s, i);
    if (m->check == SM_CHECK_FULL)
        chk_unpoison(slot, m->stride);
    memcpy(slot, &key, sizeof key);
    return slot;
}

/* Moves every entry of src into dst0/dst1 by hash bit `bit` (from the top);
 * dst1 NULL means all to dst0. */
static void seg_move_all(sm_map *m, seg *src, seg *dst0, seg *dst1, unsigned bit)
{
    const uint8_t *ctrl = seg_ctrl(src);
    for (size_t i = 0; i < m->slots; i++) {
        if (!ctrl_full(ctrl[i]))
            continue;
        char *from = seg_slot(m, src, i);
        int64_t key = slot_key(from);
        uint64_t h = hash_key(key);
        seg *dst = (dst1 && ((h >> (63 - bit)) & 1)) ? dst1 : dst0;
        char *to = entry_claim(m, dst, h, key);
        bytes_copy(to + m->voff, from + m->voff, m->stride - m->voff);
    }
}

/* ---- Directory ---------------------------------------------------------- */

/* First directory index of the range owned by the segment at index i. */
static inline size_t dir_range_start(const sm_map *m, size_t i, uint32_t depth)
{
    size_t span = (size_t)1 << (m->gd - depth);
    return i & ~(span - 1);
}

static void dir_fill(sm_map *m, size_t start, uint32_t depth, seg *s)
{
    size_t span = (size_t)1 << (m->gd - depth);
    for (size_t j = 0; j < span; j++)
        m->dir[start + j] = s;
}

/* Doubles the directory: entry i becomes entries 2i and 2i+1.  O(dir). */
static int dir_double(sm_map *m)
{
    size_t n = (size_t)1 << m->gd;
    if (m->gd >= 48)
        return SM_ENOMEM;
    seg **d = alc_alloc(2 * n * sizeof *d, _Alignof(seg *));
    if (!d)
        return SM_ENOMEM;
    for (size_t i = 0; i < n; i++)
        d[2 * i] = d[2 * i + 1] = m->dir[i];
    alc_free(m->dir, n * sizeof *d);
    m->dir = d;
    m->gd++;
    m->shift--;
    m->ndeep = 0;
    m->dir_doublings++;
    return 0;
}

/* Halves the directory when no segment uses its last bit.  Best effort: a
 * failed allocation leaves the larger directory in place. */
static void dir_try_halve(sm_map *m)
{
    while (m->ndeep == 0 && m->gd > 1) {
        size_t n = (size_t)1 << m->gd;
        seg **d = alc_alloc(n / 2 * sizeof *d, _Alignof(seg *));
        if (!d)
            return;
        for (size_t i = 0; i < n / 2; i++)
            d[i] = m->dir[2 * i];
        alc_free(m->dir, n * sizeof *d);
        m->dir = d;
        m->gd--;
        m->shift++;
        m->dir_halvings++;
        for (size_t i = 0; i < n / 2; i += (size_t)1 << (m->gd - d[i]->depth))
            m->ndeep += d[i]->depth == m->gd;
    }
}

/* One SAFEMAP_DEBUG=trace=1 line per split or merge (format in
 * docs/diagnostics.md):
 *   map 0x5581 [int64_t[8]] split: depth 6 -> 7, 1393 -> 702 + 691 entries,
 *       65 segments, dir 128, len 90123, 41.2 us
 *   map 0x5581 [int64_t[8]] merge: depth 7 -> 6, 150 + 140 -> 290 entries, ... */
SM_COLD static void trace_segment(const sm_map *m, const char *what, uint32_t from, uint32_t to,
                                  uint32_t a, uint32_t b, uint32_t c, uint64_t t0)
{
    double us = (double)(chk_now_ns() - t0) / 1e3;
    const char *name = m->layout.name ? m->layout.name : "?";
    if (what[0] == 's')
        chk_trace("map %p [%s] split: depth %u -> %u, %u -> %u + %u entries, %zu segments, "
                  "dir %zu, len %zu, %.1f us",
                  (const void *)m, name, from, to, a, b, c, m->nsegs, (size_t)1 << m->gd, m->len,
                  us);
    else
        chk_trace("map %p [%s] merge: depth %u -> %u, %u + %u -> %u entries, %zu segments, "
                  "dir %zu, len %zu, %.1f us",
                  (const void *)m, name, from, to, a, b, c, m->nsegs, (size_t)1 << m->gd, m->len,
                  us);
}

/* ---- Growth and shrinking ----------------------------------------------- */

/* Replaces the segment at directory index i with a clean copy (tombs gone).
 * Bounded: one segment. */
static int seg_rebuild(sm_map *m, size_t i)
{
    seg *old = m->dir[i];
    seg *s = seg_acquire(m, old->depth);
    if (!s)
        return SM_ENOMEM;
    seg_move_all(m, old, s, NULL, 0);
    dir_fill(m, dir_range_start(m, i, old->depth), old->depth, s);
    seg_release(m, old);
    m->rebuilds++;
    return 0;
}

/* Splits the segment at directory index i in two.  Bounded: one segment,
 * plus a directory doubling when its depth is the global depth.  On
 * SM_ENOMEM nothing has changed (a doubled directory is equivalent). */
static int seg_split(sm_map *m, size_t i)
{
    seg *old = m->dir[i];
    if (old->depth == m->gd) {
        int rc = dir_double(m);
        if (rc)
            return rc;
        i *= 2;
    }
    uint32_t d = old->depth;
    seg *lo = seg_acquire(m, d + 1);
    if (!lo)
        return SM_ENOMEM;
    seg *hi = seg_acquire(m, d + 1);
    if (!hi) {
        seg_release(m, lo);
        return SM_ENOMEM;
    }
    uint64_t t0 = m->trace ? chk_now_ns() : 0;
    seg_move_all(m, old, lo, hi, d);
    size_t start = dir_range_start(m, i, d);
    size_t half = (size_t)1 << (m->gd - d - 1);
    dir_fill(m, start, d + 1, lo);
    dir_fill(m, start + half, d + 1, hi);
    m->nsegs++;
    m->splits++;
    if (d + 1 == m->gd)
        m->ndeep += 2;
    seg_release(m, old);
    if (m->trace)
        trace_segment(m, "split", d, d + 1, lo->count + hi->count, lo->count, hi->count, t0);
    return 0;
}

/* Makes room for one more entry in the segment that owns hash h: a rebuild
 * when it is mostly tombs, a split when it is really full.  Sets *deferred
 * when the entry may go into the segment's slack instead (between its limit
 * and 15/16 of its slots), which happens in two cases:
 *
 *  - The map is below its high-water length (churn at a constant size).  A
 *    segment that the fill left nearly full drifts up and down as keys come
 *    and go; splitting it on an upward swing would grow the map for good,
 *    since its halves never get empty enough to merge again.  So under churn
 *    a segment absorbs the swing in its slack, is rebuilt when the slack is
 *    used up, and splits only when it holds more than its limit live.
 *  - The split would need the directory doubled: the doubling is done now
 *    and the split put off to the next insert, so that no single insert pays
 *    for both (each touches fresh memory). */
static int seg_make_room(sm_map *m, uint64_t h, bool *deferred)
{
    size_t i = h >> m->shift;
    seg *s = m->dir[i];
    size_t slack_end = m->slots - m->slots / 16;
    if (s->count < m->limit - m->limit / 8)
        return seg_rebuild(m, i);
    if (m->len < m->len_peak) {
        if (s->count + s->tombs + 1 < slack_end) {
            *deferred = true;
            return 0;
        }
        if (s->count < m->limit)
            return seg_rebuild(m, i);
    }
    if (s->depth == m->gd) {
        int rc = dir_double(m);
        if (rc)
            return rc;
        if (s->count + s->tombs + 1 < slack_end) {
            *deferred = true;
            return 0;
        }
    }
    return seg_split(m, h >> m->shift);
}

/* Merges the segment at index i with its sibling when both are at the same
 * depth and together under half a segment's limit.  Best effort. */
static void seg_try_merge(sm_map *m, size_t i)
{
    seg *s = m->dir[i];
    uint32_t d = s->depth;
    if (d == 0 || s->count > m->limit / 2)
        return;
    size_t span = (size_t)1 << (m->gd - d);
    size_t start = dir_range_start(m, i, d);
    seg *sib = m->dir[start ^ span];
    if (sib->depth != d || s->count + sib->count > m->limit / 2)
        return;
    seg *merged = seg_acquire(m, d - 1);
    if (!merged)
        return;
    uint64_t t0 = m->trace ? chk_now_ns() : 0;
    uint32_t a = s->count, b = sib->count;
    seg_move_all(m, s, merged, NULL, 0);
    seg_move_all(m, sib, merged, NULL, 0);
    dir_fill(m, (start & ~span), d - 1, merged);
    m->nsegs--;
    if (d == m->gd)
        m->ndeep -= 2;
    seg_release(m, s);
    seg_release(m, sib);
    m->merges++;
    m->len_peak = m->len;
    dir_try_halve(m);
    if (m->trace)
        trace_segment(m, "merge", d, d - 1, a, b, merged->count, t0);
}

/* ---- Checks ------------------------------------------------------------- */

SM_COLD static int busy_report(const sm_map *m, const char *what)
{
    return map_raise(m, SM_EBUSY, what, NULL,
                     "concurrent map writes: another thread is inside a mutation of this map");
}

/* Enters a mutation: SM_EBUSY when another one is in progress.  The flag is
 * taken with an atomic exchange, so two writers can never both be inside;
 * the loser reports and leaves the flag to the winner.  Readers only load
 * it (relaxed), as Go's hashWriting, which catches a read during a write in
 * practice. */
static inline int write_begin(sm_map *m, const char *what)
{
    if (m->check == SM_CHECK_OFF)
        return 0;
    if (SM_UNLIKELY(atomic_exchange_explicit(&m->writing, 1, memory_order_acquire)))
        return busy_report(m, what);
    return 0;
}

static inline void write_end(sm_map *m)
{
    if (m->check != SM_CHECK_OFF)
        atomic_store_explicit(&m->writing, 0, memory_order_release);
}

static inline int read_check(const sm_map *m, const char *what)
{
    if (m->check != SM_CHECK_OFF &&
        SM_UNLIKELY(atomic_load_explicit(&m->writing, memory_order_relaxed)))
        return busy_report(m, what);
    return 0;
}

/* ---- Creation ----------------------------------------------------------- */

static size_t round_up(size_t x, size_t a)
{
    return (x + a - 1) & ~(a - 1);
}

static void map_shape(sm_map *m)
{
    size_t align = m->layout.elem_align > 8 ? m->layout.elem_align : 8;
    size_t vbytes = m->storage == SM_POOLED ? sizeof(void *) : m->vsize;
    m->voff = round_up(sizeof(int64_t), align);
    m->stride = round_up(m->voff + vbytes, align);
    /* Segments are sized in bytes, not slots: the slot count is whatever
     * fits, so segment memory (and the cost of a split) is the same for
     * every layout. */
    size_t s = SEG_TARGET_BYTES / m->stride;
    if (s > SEG_MAX_SLOTS)
        s = SEG_MAX_SLOTS;
    if (s < SEG_MIN_SLOTS)
        s = SEG_MIN_SLOTS;
    m->slots = (uint32_t)s;
    m->limit = (uint32_t)(s - s / 8);
    m->seg_align = align > 64 ? align : 64;
    m->slots_off = round_up(SEG_HEADER + s + GROUP, m->seg_align);
    m->seg_bytes = m->slots_off + (size_t)s * m->stride;
}

/* Empties the map down to one segment of depth 0 and a directory of two. */
static int map_init_table(sm_map *m)
{
    seg **d = alc_alloc(2 * sizeof *d, _Alignof(seg *));
    if (!d)
        return SM_ENOMEM;
    seg *s = seg_acquire(m, 0);
    if (!s) {
        alc_free(d, 2 * sizeof *d);
        return SM_ENOMEM;
    }
    d[0] = d[1] = s;
    m->dir = d;
    m->gd = 1;
    m->shift = 63;
    m->nsegs = 1;
    m->ndeep = 0;
    return 0;
}

static int map_check_opts(const sm_map_opts *o, int *level)
{
    if (!o || chk_layout_valid(&o->layout))
        return SM_EINVAL;
    if (o->storage != SM_INLINE && o->storage != SM_POOLED)
        return SM_EINVAL;
    if (o->storage == SM_POOLED && !o->pool)
        return SM_EINVAL;
    *level = chk_level(o->check);
    if (*level < 0)
        return SM_EINVAL;
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

int sm_map_new(sm_map **out, const sm_map_opts *o)
{
    int level;
    if (!out)
        return SM_EINVAL;
    int rc = map_check_opts(o, &level);
    if (rc)
        return rc;
    sm_map *m = alc_alloc(sizeof *m, _Alignof(sm_map));
    if (!m)
        return SM_ENOMEM;
    memset(m, 0, sizeof *m);
    m->layout = o->layout;
    m->storage = o->storage;
    m->pool = o->pool;
    m->check = level;
    m->vsize = o->layout.elem_size * o->layout.len;
    m->trace = chk_debug_get()->trace;
    atomic_init(&m->writing, 0);
    map_shape(m);
    rc = map_init_table(m);
    if (rc == 0 && o->capacity)
        rc = sm_map_reserve(m, o->capacity);
    if (rc) {
        sm_map_free(m);
        return rc;
    }
    reg_map_add(m);
    *out = m;
    return 0;
}

/* ---- Values ------------------------------------------------------------- */

/* Fills a freshly claimed slot's value: a copy of value, or zeroes. */
static int value_init(sm_map *m, char *slot, const void *value)
{
    void *dst = slot + m->voff;
    if (m->storage == SM_POOLED) {
        dst = sm_pool_get(m->pool);
        if (!dst)
            return SM_ENOMEM;
        memcpy(slot + m->voff, &dst, sizeof dst);
    }
    if (value)
        bytes_copy(dst, value, m->vsize);
    else
        memset(dst, 0, m->vsize);
    return 0;
}

static void value_drop(sm_map *m, char *slot)
{
    if (m->storage == SM_POOLED)
        sm_pool_put(m->pool, slot_value(m, slot));
}

static void seg_drop_values(sm_map *m, seg *s)
{
    if (m->storage != SM_POOLED)
        return;
    const uint8_t *ctrl = seg_ctrl(s);
    for (size_t i = 0; i < m->slots; i++)
        if (ctrl_full(ctrl[i]))
            value_drop(m, seg_slot(m, s, i));
}

/* Calls f on each distinct segment once. */
static void map_each_seg(sm_map *m, void (*f)(sm_map *, seg *))
{
    size_t n = (size_t)1 << m->gd;
    for (size_t i = 0; i < n;) {
        seg *s = m->dir[i];
        i += (size_t)1 << (m->gd - s->depth);
        f(m, s);
    }
}

static void seg_free_now(sm_map *m, seg *s)
{
    if (m->check == SM_CHECK_FULL)
        chk_unpoison(seg_slot(m, s, 0), (size_t)m->slots * m->stride);
    alc_free(s, m->seg_bytes);
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
    reg_map_del(m);
    if (m->dir) {
        map_each_seg(m, seg_drop_values);
        map_each_seg(m, seg_free_now);
        alc_free(m->dir, ((size_t)1 << m->gd) * sizeof *m->dir);
    }
    seg_free_chain(m, m->free);
    seg_free_chain(m, m->quar_head);
    alc_free(m, sizeof *m);
}

/* ---- Mutation ----------------------------------------------------------- */

/* The slot for key, inserting it when absent (value copied, or zeroed when
 * value is NULL).  *inserted tells which.  NULL on SM_ENOMEM, with the map
 * unchanged. */
static char *map_insert(sm_map *m, int64_t key, const void *value, int *inserted, int *err)
{
    uint64_t h = hash_key(key);
    seg *s = dir_seg(m, h);
    seg_prefetch_home(m, s, h);
    long i = seg_lookup(m, s, h, key);
    if (i >= 0) {
        *inserted = 0;
        return seg_slot(m, s, (size_t)i);
    }
    bool deferred = false;
    while (s->count + s->tombs >= m->limit && !deferred) {
        *err = seg_make_room(m, h, &deferred);
        if (*err)
            return NULL;
        m->version++; /* entries moved: iterators are stale */
        s = dir_seg(m, h);
    }
    char *slot = entry_claim(m, s, h, key);
    *err = value_init(m, slot, value);
    if (*err) {
        entry_vacate(m, s, (size_t)(slot - seg_slot(m, s, 0)) / m->stride);
        return NULL;
    }
    if (++m->len > m->len_peak)
        m->len_peak = m->len;
    m->version++;
    *inserted = 1;
    return slot;
}

int sm_map_put(sm_map *m, int64_t key, const void *value)
{
    if (!m || !value)
        return SM_EINVAL;
    int rc = write_begin(m, "sm_map_put");
    if (rc)
        return rc;
    int inserted = 0;
    rc = 0;
    char *slot = map_insert(m, key, value, &inserted, &rc);
    if (slot && !inserted) {
        bytes_copy(slot_value(m, slot), value, m->vsize);
        m->version++;
    }
    write_end(m);
    return rc;
}

void *sm_map_upsert(sm_map *m, int64_t key, int *inserted)
{
    int ins = 0, rc = 0;
    if (!m || write_begin(m, "sm_map_upsert"))
        return NULL;
    char *slot = map_insert(m, key, NULL, &ins, &rc);
    write_end(m);
    if (inserted)
        *inserted = ins;
    return slot ? slot_value(m, slot) : NULL;
}

/* Drops a segment's entries and leaves it clean at the given depth. */
static void seg_empty(sm_map *m, seg *s, uint32_t depth)
{
    seg_drop_values(m, s);
    if (m->check == SM_CHECK_FULL) {
        uint8_t *ctrl = seg_ctrl(s);
        for (size_t i = 0; i < m->slots; i++)
            if (ctrl_full(ctrl[i]))
                chk_poison(seg_slot(m, s, i), m->stride);
    }
    seg_reset(m, s, depth);
}

/* Takes the map back to one empty segment (the first one, reused) and a
 * directory of two.  keep puts every other segment on the free list for
 * reuse (sm_map_clear); otherwise they are released and the free list keeps
 * only its usual few.  When even the small directory cannot be allocated the
 * segments are emptied in place.  O(segments). */
static void map_collapse(sm_map *m, bool keep)
{
    size_t n = (size_t)1 << m->gd;
    seg **old = m->dir;
    seg **d = alc_alloc(2 * sizeof *d, _Alignof(seg *));
    if (!d) {
        for (size_t i = 0; i < n; i += (size_t)1 << (m->gd - old[i]->depth))
            seg_empty(m, old[i], old[i]->depth);
        return;
    }
    unsigned gd = m->gd;
    seg *first = old[0];
    m->nsegs = 1;
    for (size_t i = (size_t)1 << (gd - first->depth); i < n;) {
        seg *s = old[i];
        i += (size_t)1 << (gd - s->depth);
        seg_empty(m, s, 0);
        if (keep) {
            s->next = m->free;
            m->free = s;
            m->nfree++;
        } else {
            seg_release(m, s);
        }
    }
    seg_empty(m, first, 0);
    alc_free(old, n * sizeof *old);
    if (keep)
        m->keep_free = m->nfree;
    d[0] = d[1] = first;
    m->dir = d;
    m->gd = 1;
    m->shift = 63;
    m->ndeep = 0;
    m->len_peak = 0;
}

void sm_map_clear(sm_map *m)
{
    if (!m || write_begin(m, "sm_map_clear"))
        return;
    map_collapse(m, true);
    m->len = 0;
    m->version++;
    write_end(m);
}

int sm_map_del(sm_map *m, int64_t key)
{
    if (!m)
        return SM_EINVAL;
    int rc = write_begin(m, "sm_map_del");
    if (rc)
        return rc;
    uint64_t h = hash_key(key);
    size_t di = h >> m->shift;
    seg *s = m->dir[di];
    seg_prefetch_home(m, s, h);
    long i = seg_lookup(m, s, h, key);
    if (i < 0) {
        write_end(m);
        return SM_ENOENT;
    }
    value_drop(m, seg_slot(m, s, (size_t)i));
    entry_vacate(m, s, (size_t)i);
    m->len--;
    /* Deleting what an iterator just returned must not move other entries
     * under it, so that case skips the merge. */
    bool iter_current = key == m->iter_key && m->iter_version == m->version;
    m->del_key = key;
    m->del_from_version = m->version;
    m->version++;
    if (iter_current)
        m->iter_version = m->version;
    else
        seg_try_merge(m, di);
    if (m->len == 0 && m->nsegs > 1)
        map_collapse(m, false);
    write_end(m);
    return 0;
}

int sm_map_reserve(sm_map *m, size_t n)
{
    if (!m)
        return SM_EINVAL;
    int rc = write_begin(m, "sm_map_reserve");
    if (rc)
        return rc;
    /* Split until every segment would sit at most 5/8 full with n entries
     * spread evenly, so the next inserts rarely split.  i always indexes the
     * start of a segment's directory range. */
    size_t per_seg = m->limit * 5 / 8;
    unsigned want = 0;
    while (want < 40 && ((size_t)1 << want) * per_seg < n)
        want++;
    bool changed = false;
    size_t i = 0;
    while (rc == 0 && i < ((size_t)1 << m->gd)) {
        seg *s = m->dir[i];
        if (s->depth >= want) {
            i += (size_t)1 << (m->gd - s->depth);
            continue;
        }
        unsigned gd = m->gd;
        rc = seg_split(m, i);
        changed |= rc == 0;
        if (m->gd != gd)
            i *= 2;
    }
    if (changed)
        m->version++;
    write_end(m);
    return rc;
}

/* ---- Lookup ------------------------------------------------------------- */

void *sm_map_find(sm_map *m, int64_t key)
{
    if (!m || read_check(m, "sm_map_find"))
        return NULL;
    uint64_t h = hash_key(key);
    seg *s = dir_seg(m, h);
    seg_prefetch_home(m, s, h);
    long i = seg_lookup(m, s, h, key);
    return i < 0 ? NULL : slot_value(m, seg_slot(m, s, (size_t)i));
}

int sm_map_get(const sm_map *m, int64_t key, void *out)
{
    if (!m || !out)
        return SM_EINVAL;
    int rc = read_check(m, "sm_map_get");
    if (rc)
        return rc;
    uint64_t h = hash_key(key);
    seg *s = dir_seg(m, h);
    long i = seg_lookup(m, s, h, key);
    if (i < 0)
        return SM_ENOENT;
    bytes_copy(out, slot_value(m, seg_slot(m, s, (size_t)i)), m->vsize);
    return 0;
}

size_t sm_map_len(const sm_map *m)
{
    return m ? m->len : 0;
}

/* ---- Iteration ---------------------------------------------------------- */

enum { ITER_FRESH, ITER_RETURNED, ITER_DONE };

sm_iter sm_map_iter(sm_map *m)
{
    sm_iter it;
    memset(&it, 0, sizeof it);
    it.map_ = m;
    it.version_ = m ? m->version : 0;
    it.state_ = m ? ITER_FRESH : ITER_DONE;
    return it;
}

/* The version an iterator may continue at: its own, or the one right after
 * the deletion of the entry it last returned. */
static bool iter_version_ok(sm_iter *it)
{
    sm_map *m = it->map_;
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

int sm_iter_next(sm_iter *it, int64_t *key, void **value)
{
    if (!it || it->state_ == ITER_DONE || !it->map_)
        return 0;
    sm_map *m = it->map_;
    if (m->check != SM_CHECK_OFF && !iter_version_ok(it))
        return iter_stale(it);
    size_t n = (size_t)1 << m->gd;
    size_t di = it->dir_, slot = it->state_ == ITER_FRESH ? 0 : it->slot_ + 1;
    while (di < n) {
        seg *s = m->dir[di];
        const uint8_t *ctrl = seg_ctrl(s);
        for (; slot < m->slots; slot++) {
            if (!ctrl_full(ctrl[slot]))
                continue;
            char *p = seg_slot(m, s, slot);
            it->dir_ = di;
            it->slot_ = slot;
            it->key_ = slot_key(p);
            it->state_ = ITER_RETURNED;
            m->iter_key = it->key_;
            m->iter_version = m->version;
            if (key)
                *key = it->key_;
            if (value)
                *value = slot_value(m, p);
            return 1;
        }
        di = dir_range_start(m, di, s->depth) + ((size_t)1 << (m->gd - s->depth));
        slot = 0;
    }
    it->state_ = ITER_DONE;
    return 0;
}

/* ---- Verification ------------------------------------------------------- */

static int corrupt(const sm_map *m, const char *fmt, size_t a, size_t b)
{
    char detail[160];
    snprintf(detail, sizeof detail, fmt, a, b);
    return map_raise(m, SM_ECORRUPT, "sm_map_verify", NULL, detail);
}

/* Checks one segment: mirror bytes, counts, every key's tag, home segment
 * and probe path, and poison in vacated slots at SM_CHECK_FULL. */
static int seg_verify(const sm_map *m, seg *s, size_t start, size_t *live)
{
    const uint8_t *ctrl = seg_ctrl(s);
    size_t count = 0, tombs = 0;
    for (size_t i = 0; i < GROUP; i++)
        if (ctrl[m->slots + i] != ctrl[i])
            return corrupt(m, "control mirror byte %zu differs (segment at dir %zu)", i, start);
    for (size_t i = 0; i < m->slots; i++) {
        char *slot = seg_slot(m, s, i);
        if (ctrl[i] == CTRL_TOMB)
            tombs++;
        if (!ctrl_full(ctrl[i])) {
            if (ctrl[i] != CTRL_TOMB && ctrl[i] != CTRL_EMPTY)
                return corrupt(m, "bad control byte at slot %zu (dir %zu)", i, start);
            if (m->check == SM_CHECK_FULL && !chk_poison_intact(slot, m->stride))
                return corrupt(m, "vacated slot %zu (dir %zu) written after delete", i, start);
            continue;
        }
        count++;
        uint64_t h = hash_key(slot_key(slot));
        if (hash_tag(h) != ctrl[i])
            return corrupt(m, "tag mismatch at slot %zu (dir %zu)", i, start);
        if (s->depth && (h >> (64 - s->depth)) != (start >> (m->gd - s->depth)))
            return corrupt(m, "key in slot %zu is not in its home segment (dir %zu)", i, start);
        for (size_t j = seg_home(m, h); j != i; j = slot_wrap(m, j + 1))
            if (ctrl[j] == CTRL_EMPTY)
                return corrupt(m, "key in slot %zu unreachable: EMPTY at slot %zu", i, j);
    }
    if (count != s->count || tombs != s->tombs)
        return corrupt(m, "segment counts wrong (dir %zu, %zu live)", start, count);
    if (count + tombs >= m->slots)
        return corrupt(m, "segment full (dir %zu, %zu used)", start, count + tombs);
    *live += count;
    return 0;
}

int sm_map_verify(const sm_map *m)
{
    if (!m)
        return SM_EINVAL;
    size_t n = (size_t)1 << m->gd, live = 0, segs = 0, deep = 0;
    if (m->shift != 64 - m->gd)
        return corrupt(m, "shift %zu does not match depth %zu", m->shift, m->gd);
    for (size_t i = 0; i < n;) {
        seg *s = m->dir[i];
        if (s->depth > m->gd)
            return corrupt(m, "segment depth %zu above global depth %zu", s->depth, m->gd);
        size_t span = (size_t)1 << (m->gd - s->depth);
        if (i % span)
            return corrupt(m, "segment range at %zu misaligned (span %zu)", i, span);
        for (size_t j = i; j < i + span; j++)
            if (m->dir[j] != s)
                return corrupt(m, "directory entry %zu breaks the range at %zu", j, i);
        int rc = seg_verify(m, s, i, &live);
        if (rc)
            return rc;
        segs++;
        deep += s->depth == m->gd;
        i += span;
    }
    if (live != m->len)
        return corrupt(m, "length %zu but %zu live entries", m->len, live);
    if (segs != m->nsegs || deep != m->ndeep)
        return corrupt(m, "segment count %zu or deep count %zu wrong", segs, deep);
    return 0;
}

/* ---- Statistics --------------------------------------------------------- */

/* Adds each entry of s to the probe histogram by its distance from home. */
static void seg_probe_hist(const sm_map *m, seg *s, uint64_t *hist)
{
    const uint8_t *ctrl = seg_ctrl(s);
    for (size_t i = 0; i < m->slots; i++) {
        if (!ctrl_full(ctrl[i]))
            continue;
        size_t home = seg_home(m, hash_key(slot_key(seg_slot(m, s, i))));
        size_t dist = i >= home ? i - home : i + m->slots - home;
        hist[dist < SM_PROBE_BUCKETS - 1 ? dist : SM_PROBE_BUCKETS - 1]++;
    }
}

int sm_map_stats(const sm_map *m, struct sm_map_stats *out)
{
    if (!m || !out)
        return SM_EINVAL;
    memset(out, 0, sizeof *out);
    out->layout = m->layout;
    out->storage = m->storage;
    out->check = m->check;
    out->len = m->len;
    out->segments = m->nsegs;
    out->capacity = m->nsegs * m->slots;
    out->free_segments = m->nfree + m->nquar;
    out->bytes = (m->nsegs + out->free_segments) * m->seg_bytes +
                 ((size_t)1 << m->gd) * sizeof *m->dir + sizeof *m;
    out->global_depth = m->gd;
    out->load = out->capacity ? (double)m->len / (double)out->capacity : 0;
    out->splits = m->splits;
    out->merges = m->merges;
    out->rebuilds = m->rebuilds;
    out->dir_doublings = m->dir_doublings;
    out->dir_halvings = m->dir_halvings;
    for (int c = 0; c < SM_NCODES; c++)
        out->misuse[c] = atomic_load_explicit(&m->misuse[c], memory_order_relaxed);
    size_t n = (size_t)1 << m->gd;
    for (size_t i = 0; i < n;) {
        seg *s = m->dir[i];
        i += (size_t)1 << (m->gd - s->depth);
        seg_probe_hist(m, s, out->probe);
    }
    return 0;
}
