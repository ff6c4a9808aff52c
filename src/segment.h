/*
 * segment.h - one segment of the map: its bytes, its keyed hash, and the
 * primitives that find, claim and vacate a slot in it.
 *
 * A map (map.c) is a directory of segments; a concurrent map (cmap.c) lays
 * the same segments out in the same memory.  Everything here is a static
 * inline function of a geometry (seg_geom: the sizes and offsets derived
 * from a layout) and a segment pointer, never of a map, so both can share
 * it and neither hides state in it.
 *
 * A segment, G groups of 15 slots (G fixed per map; a grown segment has a
 * multiple of it):
 *
 *   offset 0           64                 64 + 16G        slots_off
 *          +-----------+------------------+---------------+------------------------+
 *          | header    | control word 0   | ...  word G-1 | pad | slot 0 ... 15G-1 |
 *          | (64 B)    | (16 B, aligned)  |               |     | (stride B each)  |
 *          +-----------+------------------+---------------+------------------------+
 *
 *   header:  seq (u32) | lock (u32) | depth | count | debt | groups | bad | next (ptr) | pad
 *   slot:    key (int64_t, 8 B) | pad | value (the array, or a pointer to it) | pad
 *
 * Group g owns slots 15g .. 15g+14 and the 16-byte control word at
 * 64 + 16g, one aligned SSE2 load:
 *
 *   byte  15    14    13          1     0
 *        +-----+-----+-----+ ... +-----+-----+
 *        | ofw | t14 | t13 |     | t1  | t0  |
 *        +-----+-----+-----+ ... +-----+-----+
 *
 *   t_i = 0x00        EMPTY: slot i is free
 *   t_i = 0x01        TOMB: vacated at SM_CHECK_FULL, held back until the
 *                     segment is rebuilt (its poison is checked then)
 *   t_i = 0x02..0xFF  slot i is full; the tag of its key (hash bits 0..7,
 *                     0 and 1 folded onto 2 and 3)
 *   ofw               overflow bits: bit (h & 7) is set when a key with
 *                     hash h was placed past this group because it was full.
 *
 * Probing is linear over groups from the home group.  A lookup compares the
 * 15 tags with one instruction, checks the key of each match (a false match
 * has probability about 1/254 per full slot), and stops at the first group
 * whose overflow bit for its hash is clear: a miss nearly always ends in its
 * home group, whatever the load.  The invariant that makes that stop right:
 *
 *     if a key lives in group g, every group from its home group up to g
 *     (exclusive) has the key's overflow bit set.
 *
 * Insertion sets the bit on every full group it passes, deletion never clears
 * one, and only a rebuild (a fresh copy of the segment) starts them at zero.
 * So deletion frees its slot at once (it is EMPTY, reusable by the next
 * insert that reaches the group) and nothing drifts: the cost of stale
 * overflow bits is counted in `debt` (each delete from a group whose overflow
 * byte is set adds one), and the map rebuilds the segment when count + debt
 * reaches the limit (7/8 of the slots), as boost's unordered_flat_map lowers
 * its maximum load.
 *
 * Which hash bits do what.  The directory takes the top bits; the tag bits
 * 0..7; the overflow bit index bits 0..2; the home group a multiply-shift
 * of the 32 bits (h rotated left by 16), dominated by bits 0..15.  The home
 * group thus depends on the low bits, not the top ones: keys that share
 * their top bits (and so a segment) still spread over its groups.
 *
 * Concurrent readers.  Every index a lookup computes is bounded by the
 * geometry (group < G, slot within its group), and a probe visits at most G
 * groups, so a reader running seg_lookup() on memory a writer is changing
 * never leaves the segment and always ends; it may see a torn state, which
 * the concurrent map detects with the header's seq (odd while a writer is
 * inside, bumped on every change) and retries.  sm_map itself leaves seq
 * and lock at zero.
 */
#ifndef SM_SEGMENT_H
#define SM_SEGMENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum {
    SEG_HEADER = 64,   /* bytes before control word 0 */
    SEG_GROUP = 15,    /* slots per group */
    SEG_CTRL = 16,     /* bytes per control word */
    SEG_OFW = 15,      /* index of the overflow byte in a control word */
    CTRL_EMPTY = 0x00, /* free slot */
    CTRL_TOMB = 0x01   /* vacated, not reusable until a rebuild (SM_CHECK_FULL) */
};

typedef struct seg {
    _Atomic uint32_t seq;  /* concurrent map: odd while a writer is inside */
    _Atomic uint32_t lock; /* concurrent map: the writers' lock word */
    uint32_t depth;        /* local depth: bits of hash prefix this segment owns */
    uint32_t count;        /* full slots */
    uint32_t debt;         /* TOMBs plus deletes from overflowed groups since the last rebuild */
    uint32_t groups;       /* this segment's group count */
    uint32_t bad;          /* TOMBs found written after their delete: kept out of use */
    uint32_t spare_;       /* keeps next 8-byte aligned */
    struct seg *next;      /* free list, quarantine, withdrawn list */
    char pad_[SEG_HEADER - 8 * sizeof(uint32_t) - sizeof(struct seg *)];
} seg;

_Static_assert(sizeof(seg) == SEG_HEADER, "segment header is one cache line");

/* Sizes and offsets of a segment of some layout, fixed at map creation. */
typedef struct seg_geom {
    uint32_t groups;    /* G */
    uint32_t slots;     /* 15 * G */
    uint32_t limit;     /* count + debt that calls for a rebuild or split: 7/8 of slots */
    uint32_t stride;    /* bytes per slot */
    uint32_t voff;      /* value offset inside a slot */
    uint32_t slots_off; /* offset of slot 0 from the segment's start */
    size_t gstride;     /* bytes per group of slots: SEG_GROUP * stride */
    size_t bytes;       /* the whole segment */
    size_t align;       /* of the segment; at least 64 */
    uint32_t remix;     /* nonzero: place keys by seg_remix(h) (see seg_inner) */
} seg_geom;

static inline size_t seg_round_up(size_t x, size_t a)
{
    return (x + a - 1) & ~(a - 1);
}

/* Fills *g for `groups` groups of slots of `stride` bytes with the value at
 * `voff`, segments aligned to `align` (a power of two >= 64).  Returns false
 * when the segment would not fit the 32-bit offsets. */
static inline bool seg_geom_init(seg_geom *g, size_t groups, size_t stride, size_t voff,
                                 size_t align)
{
    size_t slots = groups * SEG_GROUP;
    size_t off = seg_round_up(SEG_HEADER + groups * SEG_CTRL, align);
    if (groups == 0 || groups > UINT32_MAX / SEG_GROUP || stride > UINT32_MAX || off > UINT32_MAX ||
        slots > (SIZE_MAX - off) / stride)
        return false;
    g->groups = (uint32_t)groups;
    g->slots = (uint32_t)slots;
    g->limit = (uint32_t)(slots - slots / 8);
    g->stride = (uint32_t)stride;
    g->voff = (uint32_t)voff;
    g->slots_off = (uint32_t)off;
    g->gstride = SEG_GROUP * stride;
    g->bytes = off + slots * stride;
    g->align = align;
    g->remix = 0;
    return true;
}

/* ---- The keyed hash -------------------------------------------------------- */

/* The hash key of one map, drawn from its seed. */
typedef struct seg_hkey {
    uint64_t k0, k1;
} seg_hkey;

enum { SEG_FOLD = 32 };
#define SEG_MUL1 0x9E3779B97F4A7C15ull
#define SEG_MUL2 0xD6E8FEB86659FD93ull

static inline seg_hkey seg_hkey_from_seed(uint64_t seed)
{
    /* splitmix64 of the seed for the second word, so that a seed of 0 or a
     * seed with few bits set still keys both steps. */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    seg_hkey k = {seed, z ^ (z >> 31)};
    return k;
}

/* A keyed multiply-xorshift: xor the first key word in, multiply, fold the
 * high half down, add the second key word (carries make it non-linear in
 * both xor and multiply), multiply, fold.  A multiply carries only upward,
 * so the last step must be a fold: without it two keys that differ only in
 * bit 63 would share the low 31 bits of their hashes (home group and tag)
 * whatever the seed.  A bijection of the 64-bit keys for
 * every seed: two keys never share a whole hash.  Two multiplies on the path
 * of every lookup. */
static inline uint64_t seg_hash(const seg_hkey *k, int64_t key)
{
    uint64_t x = (uint64_t)key ^ k->k0;
    x *= SEG_MUL1;
    x ^= x >> SEG_FOLD;
    x += k->k1;
    x *= SEG_MUL2;
    return x ^ (x >> SEG_FOLD);
}

/* The multiplicative inverse of an odd a modulo 2^64 (Newton's iteration:
 * each step doubles the correct low bits, from 3 to more than 64). */
static inline uint64_t seg_mul_inverse(uint64_t a)
{
    uint64_t x = a;
    for (int i = 0; i < 5; i++)
        x *= 2 - a * x;
    return x;
}

/* The key whose hash under k is h: seg_hash(k, seg_unhash(k, h)) == h.  For
 * tests and benchmarks that craft keys with chosen hashes. */
static inline int64_t seg_unhash(const seg_hkey *k, uint64_t h)
{
    uint64_t x = h ^ (h >> SEG_FOLD);
    x *= seg_mul_inverse(SEG_MUL2);
    x -= k->k1;
    x ^= x >> SEG_FOLD;
    x *= seg_mul_inverse(SEG_MUL1);
    return (int64_t)(x ^ k->k0);
}

/* The tag stored for hash h: its low byte, with 0 and 1 (EMPTY and TOMB)
 * folded onto 2 and 3.  A table: one load instead of a compare and a
 * select on every lookup. */
#define SEG_T8(b) b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7
#define SEG_T32(b) SEG_T8(b), SEG_T8(b + 8), SEG_T8(b + 16), SEG_T8(b + 24)
static const uint8_t seg_tag_table[256] = {2,
                                           3,
                                           2,
                                           3,
                                           4,
                                           5,
                                           6,
                                           7,
                                           SEG_T8(8),
                                           SEG_T8(16),
                                           SEG_T8(24),
                                           SEG_T32(32),
                                           SEG_T32(64),
                                           SEG_T32(96),
                                           SEG_T32(128),
                                           SEG_T32(160),
                                           SEG_T32(192),
                                           SEG_T32(224)};
#undef SEG_T32
#undef SEG_T8

static inline uint32_t seg_tag(uint64_t h)
{
    return seg_tag_table[h & 0xFF];
}

/* h's bit in an overflow byte. */
static inline uint32_t seg_ofw_bit(uint64_t h)
{
    return 1u << (h & 7);
}

/* h's home group among `groups`: a multiply-shift of h rotated left by 16,
 * so that hash bits 0..15 decide it. */
static inline uint32_t seg_home(uint32_t groups, uint64_t h)
{
    uint64_t rot = (h << 16) | (h >> 48); /* one rotate instruction */
    return (uint32_t)(((uint64_t)(uint32_t)rot * groups) >> 32);
}

/* The slot inside a group where h would rather sit, 0..7: a new key takes
 * the first free slot from there, so that most keys sit where a lookup can
 * prefetch them before it has read the control word. */
static inline uint32_t seg_pref(uint64_t h)
{
    return (uint32_t)(h >> 4) & 7;
}

/* Where a key goes inside a segment (home group, tag, overflow bit,
 * preferred slot) comes from hash bits 0..15, and which segment owns it from
 * the top bits.  Keys chosen by someone who knows the seed to share both
 * (so that one segment cannot split them apart and they all want one home
 * group) would make every probe in that segment walk all of them.  A
 * segment that could not split and grew instead (seg_geom.remix set) places
 * its keys by seg_remix(h), which folds every bit of h into bits 0..31:
 * keys that share bits 0..15 and the prefix differ in the bits between, and
 * land in different groups.  Ordinary segments keep h as it is (one probe
 * costs nothing extra); the segment functions below that take a geometry
 * and a hash apply this themselves. */
static inline uint64_t seg_remix(uint64_t h)
{
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

/* The hash that places h's key inside a segment of geometry g. */
static inline uint64_t seg_inner(const seg_geom *g, uint64_t h)
{
    return __builtin_expect(g->remix != 0, 0) ? seg_remix(h) : h;
}

/* ---- Control words ------------------------------------------------------- */

static inline uint8_t *seg_ctrl(const seg *s, uint32_t group)
{
    return (uint8_t *)(uintptr_t)s + SEG_HEADER + (size_t)group * SEG_CTRL;
}

/* The control byte of slot i: 16 (i / 15) + i % 15 = i + i / 15 bytes into
 * the control words (one multiply-shift, not a divide and a remainder). */
static inline uint8_t *seg_ctrl_byte(const seg *s, size_t i)
{
    return (uint8_t *)(uintptr_t)s + SEG_HEADER + i + i / SEG_GROUP;
}

static inline char *seg_slot(const seg_geom *g, const seg *s, size_t i)
{
    return (char *)(uintptr_t)s + g->slots_off + i * g->stride;
}

static inline int64_t seg_slot_key(const char *slot)
{
    int64_t k;
    memcpy(&k, slot, sizeof k);
    return k;
}

/* Bit i (i < 15) set when byte i of the control word w equals v.  The byte is
 * broadcast through a 32-bit register: _mm_set1_epi8 of a byte in memory
 * compiles to a byte store and a wider reload that cannot be forwarded. */
static inline unsigned grp_match(const uint8_t *w, uint32_t v)
{
#if defined(__SSE2__)
    __m128i c = _mm_load_si128((const __m128i *)(const void *)w);
    __m128i t = _mm_set1_epi32((int)(v * 0x01010101u));
    return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(c, t)) & 0x7FFF;
#else
    unsigned r = 0;
    for (unsigned i = 0; i < SEG_GROUP; i++)
        r |= (unsigned)(w[i] == v) << i;
    return r;
#endif
}

/* Bit i set when slot i of the group is EMPTY. */
static inline unsigned grp_empty(const uint8_t *w)
{
#if defined(__SSE2__)
    __m128i c = _mm_load_si128((const __m128i *)(const void *)w);
    return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(c, _mm_setzero_si128())) & 0x7FFF;
#else
    return grp_match(w, CTRL_EMPTY);
#endif
}

/* Bit i set when slot i of the group holds a key (neither EMPTY nor TOMB). */
static inline unsigned grp_full(const uint8_t *w)
{
#if defined(__SSE2__)
    __m128i c = _mm_load_si128((const __m128i *)(const void *)w);
    /* Bytes 0 and 1 are the only ones below 2: saturating 2 - c is zero
     * exactly for c >= 2. */
    __m128i low = _mm_subs_epu8(_mm_set1_epi8(2), c);
    return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(low, _mm_setzero_si128())) & 0x7FFF;
#else
    unsigned r = 0;
    for (unsigned i = 0; i < SEG_GROUP; i++)
        r |= (unsigned)(w[i] >= 2) << i;
    return r;
#endif
}

static inline uint32_t seg_next_group(uint32_t grp, uint32_t groups)
{
    return grp + 1 == groups ? 0 : grp + 1;
}

/* ---- Lookup, claim, vacate ------------------------------------------------- */

/* Starts fetching the slot h would most likely occupy, so that on a hit the
 * value's cache miss overlaps the control word's. */
static inline void seg_prefetch(const seg_geom *g, const seg *s, uint64_t h)
{
    h = seg_inner(g, h);
    size_t i = (size_t)seg_home(g->groups, h) * SEG_GROUP + seg_pref(h);
    __builtin_prefetch(seg_slot(g, s, i));
}

/* The slot of key (hash h) among the tag matches `hit` of the group whose
 * first slot is at base, or NULL. */
static inline char *grp_find(char *base, size_t stride, unsigned hit, int64_t key)
{
    for (; hit; hit &= hit - 1) {
        char *slot = base + (unsigned)__builtin_ctz(hit) * stride;
        if (seg_slot_key(slot) == key)
            return slot;
    }
    return NULL;
}

#if defined(__GNUC__)
#define SEG_NOINLINE __attribute__((noinline, unused))
#else
#define SEG_NOINLINE
#endif

/* The first EMPTY slot of a group with empty mask e (nonzero) whose first
 * slot is first, from h's preferred slot on. */
static inline long grp_free_slot(size_t first, unsigned e, uint64_t h)
{
    unsigned from = e & (~0u << seg_pref(h));
    return (long)(first + (unsigned)__builtin_ctz(from ? from : e));
}

/* seg_find() past the home group: the rare probe of a key whose home group
 * overflowed.  Out of line, so that the common path stays short.  *free_at
 * (unless free_at is NULL) as for seg_find_free_at(). */
static SEG_NOINLINE char *seg_find_on(const seg_geom *g, const seg *s, uint64_t h, int64_t key,
                                      uint32_t grp, long *free_at)
{
    char *slots = (char *)(uintptr_t)s + g->slots_off;
    for (uint32_t n = 1; n < g->groups; n++) {
        grp = seg_next_group(grp, g->groups);
        const uint8_t *w = seg_ctrl(s, grp);
        char *slot = grp_find(slots + grp * g->gstride, g->stride, grp_match(w, seg_tag(h)), key);
        if (slot)
            return slot;
        if (free_at && *free_at < 0 && grp_empty(w))
            *free_at = grp_free_slot((size_t)grp * SEG_GROUP, grp_empty(w), h);
        if (!(w[SEG_OFW] & seg_ofw_bit(h)))
            return NULL;
    }
    return NULL;
}

/* The home group of a lookup: its index and control word in *grp and *w,
 * and key's slot there or NULL.  h is the in-segment hash, seg_inner(g, h):
 * unlike the functions below, this one does not apply it.  Starts fetching the slot the key most
 * likely occupies before it reads the control word, so that on a hit the
 * two cache misses overlap. */
static inline char *seg_find_home(const seg_geom *g, const seg *s, uint64_t h, int64_t key,
                                  uint32_t *grp, const uint8_t **w)
{
    size_t stride = g->stride;
    *grp = seg_home(g->groups, h);
    char *base = (char *)(uintptr_t)s + g->slots_off + *grp * g->gstride;
    __builtin_prefetch(base + seg_pref(h) * stride);
    *w = seg_ctrl(s, *grp);
    return grp_find(base, stride, grp_match(*w, seg_tag(h)), key);
}

/* The slot holding key (hash h) as a pointer, or NULL; then *free_at is the
 * slot a new key with hash h would take (the one seg_find_free() returns),
 * or -1 when the probe ended before any group with an EMPTY slot, and *home
 * is h's home group (seg_home()).  So an insert probes once. */
static inline char *seg_find_free_at(const seg_geom *g, const seg *s, uint64_t h, int64_t key,
                                     long *free_at, uint32_t *home)
{
    h = seg_inner(g, h);
    uint32_t grp;
    const uint8_t *w;
    char *slot = seg_find_home(g, s, h, key, &grp, &w);
    *home = grp;
    if (slot)
        return slot;
    unsigned e = grp_empty(w);
    *free_at = e ? grp_free_slot((size_t)grp * SEG_GROUP, e, h) : -1;
    if (!(w[SEG_OFW] & seg_ofw_bit(h)))
        return NULL;
    return seg_find_on(g, s, h, key, grp, free_at);
}

/* The slot holding key (hash h) as a pointer, or NULL: seg_lookup() for the
 * paths that want the slot's address, not its index (find and get). */
static inline char *seg_find(const seg_geom *g, const seg *s, uint64_t h, int64_t key)
{
    h = seg_inner(g, h);
    uint32_t grp;
    const uint8_t *w;
    char *slot = seg_find_home(g, s, h, key, &grp, &w);
    if (slot || !(w[SEG_OFW] & seg_ofw_bit(h)))
        return slot;
    return seg_find_on(g, s, h, key, grp, NULL);
}

/* The slot holding key (hash h), or -1.  Visits at most g->groups groups,
 * and every index stays inside the segment whatever the control bytes hold.
 * Cost: one control word per group probed (nearly always one), one key
 * comparison per tag match. */
static inline long seg_lookup(const seg_geom *g, const seg *s, uint64_t h, int64_t key)
{
    h = seg_inner(g, h);
    uint32_t tag = seg_tag(h), ofw = seg_ofw_bit(h);
    uint32_t grp = seg_home(g->groups, h);
    for (uint32_t n = 0; n < g->groups; n++) {
        const uint8_t *w = seg_ctrl(s, grp);
        for (unsigned hit = grp_match(w, tag); hit; hit &= hit - 1) {
            size_t i = (size_t)grp * SEG_GROUP + (unsigned)__builtin_ctz(hit);
            if (seg_slot_key(seg_slot(g, s, i)) == key)
                return (long)i;
        }
        if (!(w[SEG_OFW] & ofw))
            return -1;
        grp = seg_next_group(grp, g->groups);
    }
    return -1;
}

/* The free slot a new key with hash h takes: the first EMPTY slot of the
 * first group on its probe path that has one, from its preferred slot on.
 * Sets h's overflow bit on every full group passed (that is what keeps the
 * invariant).  The segment must hold fewer than its limit (count + debt <
 * limit < slots), so a free slot exists; returns -1 if none does (a broken
 * segment), having changed nothing but overflow bits. */
static inline long seg_find_free(const seg_geom *g, seg *s, uint64_t h)
{
    h = seg_inner(g, h);
    uint32_t ofw = seg_ofw_bit(h);
    uint32_t grp = seg_home(g->groups, h);
    for (uint32_t n = 0; n < g->groups; n++) {
        uint8_t *w = seg_ctrl(s, grp);
        unsigned e = grp_empty(w);
        if (e)
            return grp_free_slot((size_t)grp * SEG_GROUP, e, h);
        w[SEG_OFW] |= (uint8_t)ofw;
        grp = seg_next_group(grp, g->groups);
    }
    return -1;
}

/* Fills free slot i with key (hash h): the key first, then the tag that
 * makes it visible.  The caller writes the value. */
static inline void seg_fill(const seg_geom *g, seg *s, size_t i, uint64_t h, int64_t key)
{
    h = seg_inner(g, h);
    memcpy(seg_slot(g, s, i), &key, sizeof key);
    *seg_ctrl_byte(s, i) = (uint8_t)seg_tag(h);
    s->count++;
}

/* Sets h's overflow bit on the groups from its home group up to the group
 * of slot i (exclusive): what seg_find_free() does on its way to i, for a
 * caller that found i with seg_find_free_at(). */
static inline void seg_mark_path(const seg_geom *g, seg *s, uint64_t h, size_t i)
{
    h = seg_inner(g, h);
    uint32_t at = (uint32_t)(i / SEG_GROUP);
    for (uint32_t grp = seg_home(g->groups, h); grp != at; grp = seg_next_group(grp, g->groups))
        seg_ctrl(s, grp)[SEG_OFW] |= (uint8_t)seg_ofw_bit(h);
}

/* seg_find_free() then seg_fill(): the slot now holding key, or -1. */
static inline long seg_claim(const seg_geom *g, seg *s, uint64_t h, int64_t key)
{
    long i = seg_find_free(g, s, h);
    if (i >= 0)
        seg_fill(g, s, (size_t)i, h, key);
    return i;
}

/* Vacates full slot i: EMPTY, free for the next insert; or, with tomb, TOMB,
 * kept out of use until the segment is rebuilt.  A slot whose group has
 * overflowed adds to the debt, as a TOMB does. */
static inline void seg_vacate(seg *s, size_t i, bool tomb)
{
    uint8_t *w = seg_ctrl(s, (uint32_t)(i / SEG_GROUP));
    unsigned j = (unsigned)(i % SEG_GROUP);
    w[j] = tomb ? CTRL_TOMB : CTRL_EMPTY;
    s->debt += tomb || w[SEG_OFW] != 0;
    s->count--;
}

/* seg_vacate() for a caller that knows the home group of the key in slot i
 * (for its hash h, seg_home(g->groups, h)): only a key that
 * sat past its home group adds to the debt, since only such a key can leave
 * overflow bits behind that no key needs any more (a delete from the home
 * group leaves none).  Far fewer rebuilds under churn than seg_vacate's
 * rule, which has to assume the worst. */
static inline void seg_vacate_home(seg *s, size_t i, uint32_t home, bool tomb)
{
    uint32_t grp = (uint32_t)(i / SEG_GROUP);
    seg_ctrl(s, grp)[i % SEG_GROUP] = tomb ? CTRL_TOMB : CTRL_EMPTY;
    s->debt += tomb || grp != home;
    s->count--;
}

/* A clean segment: every slot EMPTY, no overflow bits, no debt. */
static inline void seg_reset(const seg_geom *g, seg *s, uint32_t depth)
{
    atomic_init(&s->seq, 0);
    atomic_init(&s->lock, 0);
    s->depth = depth;
    s->count = 0;
    s->debt = 0;
    s->groups = g->groups;
    s->bad = 0;
    s->next = NULL;
    memset(seg_ctrl(s, 0), 0, (size_t)g->groups * SEG_CTRL);
}

/* How many groups a probe for h walks in s before it finds key's slot i (0
 * when i is in the home group).  For statistics and verification. */
static inline uint32_t seg_probe_len(const seg_geom *g, uint64_t h, size_t i)
{
    h = seg_inner(g, h);
    uint32_t home = seg_home(g->groups, h), at = (uint32_t)(i / SEG_GROUP);
    return at >= home ? at - home : at + g->groups - home;
}

#endif /* SM_SEGMENT_H */
