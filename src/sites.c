/*
 * sites.c - call stacks: capturing them, keeping them per pool, naming them.
 *
 * GWP-ASan style.  A recorded call stores its stack (backtrace(), up to
 * SITE_DEPTH frames above the library) in the pool's site table,
 * deduplicated by a hash of the return addresses, with per-stack counts of
 * Gets, Puts and arrays still out; the slot keeps the stack's number, and a
 * state flag says the number belongs to this life (ST_GSITE: its Get;
 * ST_PSITE: the Put that ended it).  At SM_CHECK_FULL every Get and Put is
 * recorded; at SM_CHECK_CHEAP one Get in `sample` (pool.c and tcache.c
 * hold the countdown), and the Put of a recorded array too, so a sampled
 * array's whole life is known.  backtrace() costs about a microsecond,
 * which is what sampling buys back (docs/safety.md has the measurements).
 *
 * Symbolizing (dladdr) takes the loader's lock, so it is done only with no
 * pool lock held: events and reports copy the numbers out first.
 *
 * Invariant (lock held): v[1..n] are distinct stacks; each is in `slots` at
 * the end of its probe run; a LIVE slot with ST_GSITE has get_site naming a
 * stack whose inuse counts it.
 */
#define _GNU_SOURCE
#include "pool_internal.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>

/* ---- Call stacks -------------------------------------------------------- */

/* The caller's stack, innermost first, from the frame that returns to ra
 * (the return address of the public call: the library's own frames above it
 * are dropped).  Returns the depth, at most SITE_DEPTH.  About a
 * microsecond: backtrace() unwinds with the DWARF tables. */
SM_NOINLINE int site_capture(void **pcs, const void *ra)
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
void site_frame_format(char *buf, size_t n, const void *pc)
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
void site_brief(char *buf, size_t n, void *const *pcs, int depth)
{
    size_t used = 0;
    if (depth <= 0) {
        snprintf(buf, n, "not recorded");
        return;
    }
    buf[0] = 0;
    for (int i = 0; i < depth && i < SITE_BRIEF && used + 1 < n; i++) {
        char frame[FRAME_CHARS];
        site_frame_format(frame, sizeof frame, pcs[i]);
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

void site_drop(sm_pool *p)
{
    site_tab *t = &p->sites;
    if (t->v) {
        pool_release(p, t->v, (size_t)t->cap * sizeof *t->v);
        pool_release(p, t->slots, site_slots_bytes(t->cap));
    }
    memset(t, 0, sizeof *t);
}

/* Copies the first frames of stack id (0: none) for a report. */
int site_brief_copy(const sm_pool *p, uint32_t id, void **pcs)
{
    if (!id)
        return 0;
    const site *e = &p->sites.v[id];
    int depth = e->depth < SITE_BRIEF ? (int)e->depth : SITE_BRIEF;
    memcpy(pcs, e->pcs, (size_t)depth * sizeof *pcs);
    return depth;
}

/* ---- Recording call sites (lock held) ----------------------------------- */

/* A Get of e is recorded: its stack is counted, and named by the slot. */
void site_record_get(sm_pool *p, entry e, void *const *pcs, int depth)
{
    SM_ASSERT(pool_locked(p));
    uint32_t id = site_intern(p, pcs, depth);
    if (!id)
        return;
    uint32_t idx = slab_index(p, e.a);
    slab *s = slab_of_state(e.st, idx);
    site *g = &p->sites.v[id];
    g->gets++;
    g->inuse++;
    s->get_site[idx] = id;
    st_store(e.st, ST_LIVE | ST_GSITE);
}

/* The Put of slot idx (state v, LIVE) is recorded when pcs has a stack.
 * Returns the site flags the slot keeps for the life that ends. */
unsigned site_record_put(sm_pool *p, slab *s, uint32_t idx, unsigned v, void *const *pcs, int depth)
{
    SM_ASSERT(pool_locked(p));
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

void pool_each_site(sm_pool *p, void (*f)(const pool_site *site, void *ctx), void *ctx)
{
    if (!p || !f)
        return;
    uint64_t scale = p->sample; /* one recorded Get stands for `sample` */
    pool_lock(p);
    for (uint32_t id = 1; id <= p->sites.n; id++) {
        const site *e = &p->sites.v[id];
        if (!e->gets)
            continue; /* a Put stack */
        pool_site ps = {(const void *const *)e->pcs, (int)e->depth,    e->gets * scale,
                        e->gets * scale * p->size,   e->inuse * scale, e->inuse * scale * p->size};
        f(&ps, ctx);
    }
    pool_unlock(p);
}
