/*
 * slab.c - where the pool's arrays live, and how a pointer finds its slot.
 *
 * Arrays are carved from slabs: blocks of slab_bytes (a power of two, at
 * least 64 KiB and at least four arrays) taken from the allocator aligned
 * to their own size, so masking any pointer gives its candidate slab base.
 * Everything the pool knows about an array lives outside it, in the slab's
 * descriptor (pool_internal.h draws one): the array's bytes are the
 * user's, always.
 *
 * Reading a "header" at a masked address could touch memory that is not
 * ours, so a base leads to a descriptor only through the address map, an
 * open-addressing table of this pool's slab bases.  The offset into the
 * slab, divided by the stride with a multiply, gives the slot; an offset
 * that is not a multiple of the stride is an interior pointer.  All O(1).
 * The address map and the slab table are read without the lock (inside a
 * thread cache's window), so a replacement table is published with the
 * world stopped and the old one freed after.
 *
 * The slab table numbers descriptors for handles (a handle is generation,
 * slab number, slot).  A slab whose slots are all FREE goes back at once;
 * its descriptor waits in `spare` for reuse, so its generations continue,
 * until the next cycle frees it and its number remembers the generation to
 * start from.  Threads' caches may still name a spare descriptor (the fast
 * Put's memo): there all its states read FREE, which sends a stale pointer
 * to the slow path; so before reuse for other memory, every cache forgets
 * it (tc_forget_memos, one stop-the-world per reuse, next to the cost of
 * the slab's allocation and first touch).
 *
 * Invariant (lock held): a slab is on the `partial` list exactly when it
 * has a FREE slot and its memory is held; used counts its slots not FREE;
 * freebits has a 1 for each FREE slot and none below word `hint`.
 */
#include "pool_internal.h"

#include <stdio.h>
#include <string.h>

#define AMAP_TOMB ((uintptr_t)1) /* a removed key: probing goes on past it */
#define STAB_FIRST_CAP 16
#define AMAP_FIRST_CAP 16

/* ---- The address map: slab base -> descriptor ---------------------------- */

static inline size_t amap_hash(uintptr_t base)
{
    return (size_t)(((uint64_t)base * 0x9E3779B97F4A7C15ull) >> 29);
}

static size_t amap_bytes(size_t cap)
{
    return sizeof(amap) + cap * (sizeof(uintptr_t) + sizeof(slab *));
}

/* Lock-free: safe under the lock or inside a tcache window.  NULL unless a
 * slab of this pool starts at base. */
static slab *amap_find(const sm_pool *p, uintptr_t base)
{
    const amap *r = atomic_load_explicit(&((sm_pool *)p)->amap, memory_order_acquire);
    if (!r || base == 0)
        return NULL;
    for (size_t i = amap_hash(base) & r->mask;; i = (i + 1) & r->mask) {
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

static void amap_place(amap *r, uintptr_t base, slab *s)
{
    size_t i = amap_hash(base) & r->mask;
    for (;; i = (i + 1) & r->mask) {
        uintptr_t k = atomic_load_explicit(&r->keys[i], memory_order_relaxed);
        if (k == 0 || k == AMAP_TOMB) {
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
static int amap_reserve(sm_pool *p)
{
    SM_ASSERT(pool_locked(p));
    amap *old = atomic_load_explicit(&p->amap, memory_order_relaxed);
    if (old && (old->filled + 1) * 2 <= old->mask + 1)
        return 0;
    size_t live = old ? old->live : 0, cap = AMAP_FIRST_CAP;
    while (cap < (live + 1) * 4)
        cap *= 2;
    amap *r = pool_alloc(p, amap_bytes(cap), _Alignof(max_align_t));
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
            if (k != 0 && k != AMAP_TOMB)
                amap_place(r, k, atomic_load_explicit(&old->vals[i], memory_order_relaxed));
        }
    }
    tc_stw_begin(p);
    atomic_store_explicit(&p->amap, r, memory_order_release);
    tc_stw_end(p);
    if (old)
        pool_release(p, old, amap_bytes(old->mask + 1));
    return 0;
}

static void amap_remove(sm_pool *p, uintptr_t base)
{
    amap *r = atomic_load_explicit(&p->amap, memory_order_relaxed);
    for (size_t i = amap_hash(base) & r->mask;; i = (i + 1) & r->mask) {
        uintptr_t k = atomic_load_explicit(&r->keys[i], memory_order_relaxed);
        if (k == base) {
            atomic_store_explicit(&r->keys[i], AMAP_TOMB, memory_order_release);
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
    SM_ASSERT(pool_locked(p));
    stab *old = atomic_load_explicit(&p->stab, memory_order_relaxed);
    if (p->stab_free || (old && p->stab_top < old->cap))
        return 0;
    uint64_t limit = (uint64_t)1 << (32 - p->slot_bits);
    if (p->stab_top >= limit)
        return SM_ENOMEM; /* handles could not name another slab */
    uint32_t cap = old ? old->cap * 2 : STAB_FIRST_CAP;
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
    tc_stw_begin(p);
    atomic_store_explicit(&p->stab, t, memory_order_release);
    tc_stw_end(p);
    if (old)
        pool_release(p, old, stab_bytes(old->cap));
    return 0;
}

/* ---- Slabs and slots ---------------------------------------------------- */

/* A descriptor: the header, then per slot a state byte (rounded up to 8
 * bytes in all), a generation, a free bit and, when the pool records call
 * sites, the numbers of its last Get's and Put's stacks.  One state byte
 * more than slots: an offset that is an exact multiple of the stride can
 * name the partial slot at the slab's end, whose state stays FREE, so the
 * fast Put needs no bounds test. */
static size_t desc_states_bytes(const sm_pool *p)
{
    return (p->nslots + 1 + 7) & ~(size_t)7;
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
    SM_ASSERT(pool_locked(p));
    void *mem = pool_alloc(p, p->slab_bytes, p->slab_bytes);
    if (!mem)
        return NULL;
    if (amap_reserve(p) != 0)
        goto fail_mem;
    slab *s = p->spare;
    if (s) {
        /* A thread's memo may still name this descriptor under its old
         * base; every memo is forgotten before it describes another slab. */
        tc_forget_memos(p);
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
        atomic_init(&s->states[p->nslots], ST_FREE); /* the partial slot */
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
#if SM_HAVE_VALGRIND
    if (p->check == SM_CHECK_FULL)
        VALGRIND_MAKE_MEM_NOACCESS(mem, p->slab_bytes);
#endif
    atomic_store_explicit(&s->base, (uintptr_t)mem, memory_order_release);
    amap_place(atomic_load_explicit(&p->amap, memory_order_relaxed), (uintptr_t)mem, s);
    partial_link(p, s);
    return s;

fail_mem:
    pool_release(p, mem, p->slab_bytes);
    return NULL;
}

/* Lock held.  The slab's slots are all FREE: its memory goes back. */
static void slab_retire(sm_pool *p, slab *s)
{
    SM_ASSERT(pool_locked(p));
    uintptr_t base = atomic_load_explicit(&s->base, memory_order_relaxed);
    partial_unlink(p, s);
    atomic_store_explicit(&s->base, 0, memory_order_release);
    amap_remove(p, base);
    if (p->check == SM_CHECK_FULL)
        chk_unpoison((void *)base, p->slab_bytes);
    pool_release(p, (void *)base, p->slab_bytes);
    s->next = p->spare;
    p->spare = s;
}

/* Lock held.  Takes a FREE slot and marks it LIVE; false when memory runs out. */
bool slab_carve(sm_pool *p, entry *out)
{
    SM_ASSERT(pool_locked(p));
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
    SM_ASSERT(idx < p->nslots && st_base(st_load(&s->states[idx])) == ST_FREE);
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

uint32_t slab_index(const sm_pool *p, const void *a)
{
    uint32_t idx;
    slot_of_offset(p, (uintptr_t)a & ~p->slab_mask, &idx);
    return idx;
}

/* Lock held.  The slot goes back to FREE, and its slab with it when empty. */
void slab_release(sm_pool *p, entry e)
{
    SM_ASSERT(pool_locked(p));
    uint32_t idx = slab_index(p, e.a);
    slab *s = slab_of_state(e.st, idx);
    SM_ASSERT(s->used > 0 && p->carved > 0);
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

/* ---- Finding an array ---------------------------------------------------- */

int slab_locate(const sm_pool *p, const void *a, found *f, char *detail, size_t n)
{
    f->base = (uintptr_t)a & p->slab_mask;
    f->s = amap_find(p, f->base);
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

/* ---- Spare descriptors --------------------------------------------------- */

/* Lock held: descriptors of given-back slabs are freed; their numbers
 * remember the next generation so that old handles stay dead. */
void slab_spare_free(sm_pool *p)
{
    SM_ASSERT(pool_locked(p));
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

slab *slab_numbered(sm_pool *p, uint32_t number)
{
    stab *t = atomic_load_explicit(&p->stab, memory_order_acquire);
    return t && number < t->cap ? atomic_load_explicit(&t->e[number].desc, memory_order_acquire)
                                : NULL;
}

uint32_t slab_gen_floor(const sm_pool *p, uint32_t number)
{
    stab *t = atomic_load_explicit(&((sm_pool *)p)->stab, memory_order_relaxed);
    return t->e[number].gen_floor;
}

void slab_each_slot(sm_pool *p, void (*f)(sm_pool *p, slab *s, uint32_t idx, void *ctx), void *ctx)
{
    SM_ASSERT(pool_locked(p));
    stab *t = atomic_load_explicit(&p->stab, memory_order_relaxed);
    for (uint32_t i = 0; t && i < t->cap; i++) {
        slab *s = atomic_load_explicit(&t->e[i].desc, memory_order_relaxed);
        if (s && atomic_load_explicit(&s->base, memory_order_relaxed))
            for (uint32_t idx = 0; idx < p->nslots; idx++)
                f(p, s, idx, ctx);
    }
}

void slab_free_all(sm_pool *p)
{
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
    amap *r = atomic_load_explicit(&p->amap, memory_order_relaxed);
    if (r)
        pool_release(p, r, amap_bytes(r->mask + 1));
}
