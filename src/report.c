/*
 * report.c - what the pool tells people: misuse and corruption events,
 * outstanding and leak reports, cycle trace lines.
 *
 * Every event goes through chk_event() (check.c), which counts it once,
 * process-wide and in the pool's own misuse[] counts, formats it once and
 * hands it to the handler; the text is built here from what the pool knows
 * about the array: where it is now, and the call sites of its last Get and
 * Put when they were recorded (sites.c).  Nothing here runs with a pool
 * lock held except where a comment says so: finding the facts needs the
 * lock, naming call sites (dladdr) must not have it, so the facts are
 * copied out (misuse_text, reports) and the lock dropped first.
 *
 * Corruption is found at SM_CHECK_FULL when an idle array leaves
 * quarantine, the depot (at a cycle) or the pool (at free) with its poison
 * overwritten.  Such an array is withdrawn (CONDEMNED: never handed out
 * again, its memory released with the pool), and the call that found it
 * reports SM_ECORRUPT as its result.
 */
#include "pool_internal.h"

#include <stdlib.h>

/* A pool named for humans: address, name, layout (pool_describe). */
#define POOL_CHARS (LAYOUT_CHARS + SM_NAME_MAX + 48)
/* How a pool records Get call sites, for a report's first line. */
#define RECORDING_CHARS 128
/* "; got by " and a brief stack. */
#define GOT_BY_CHARS (BRIEF_CHARS + sizeof "; got by ")

/* "; got by f+0x1 (m) < g+0x2 (m)", or "" when the Get was not recorded. */
static void got_by(char *buf, size_t n, void *const *pcs, int depth)
{
    char brief[BRIEF_CHARS];
    buf[0] = 0;
    if (depth <= 0)
        return;
    site_brief(brief, sizeof brief, pcs, depth);
    snprintf(buf, n, "; got by %s", brief);
}

/* "pool 0x... \"name\" holding int64_t[16] (16 x 8 B, align 8)" */
static void pool_describe(const sm_pool *p, char *buf, size_t n)
{
    char layout[LAYOUT_CHARS];
    chk_layout_format(layout, sizeof layout, &p->layout);
    if (p->name[0])
        snprintf(buf, n, "pool %p \"%s\" holding %s", (const void *)p, p->name, layout);
    else
        snprintf(buf, n, "pool %p holding %s", (const void *)p, layout);
}

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
bool rpt_idle_verify(sm_pool *p, entry e, reports *out)
{
    SM_ASSERT(pool_locked(p));
    unsigned byte = 0;
    size_t off = poison_breach(p, e.a, &byte);
    if (off == p->size)
        return true;
    uint32_t idx = slab_index(p, e.a);
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

int rpt_raise_corrupt(sm_pool *p, const char *what, const reports *rs)
{
    char pool[POOL_CHARS], put[BRIEF_CHARS], get[GOT_BY_CHARS];
    if (rs->n == 0)
        return 0;
    pool_describe(p, pool, sizeof pool);
    for (size_t i = 0; i < rs->n; i++) {
        const report *r = &rs->r[i];
        site_brief(put, sizeof put, r->put_pcs, r->put_depth);
        got_by(get, sizeof get, r->get_pcs, r->get_depth);
        chk_event(SM_ECORRUPT, p->misuse, what, p, r->a,
                  "array %p of %s was written after it was put back: byte %zu is 0x%02x, "
                  "poison is 0x%02x; put back by %s%s; the array is withdrawn%s",
                  r->a, pool, r->off, r->byte, CHK_POISON_BYTE, put, get,
                  rs->more && i + 1 == rs->n ? " (and more arrays like it)" : "");
    }
    return SM_ECORRUPT;
}

/* For foreign_describe(): the first other pool whose slab holds a. */
typedef struct foreign_search {
    const sm_pool *self;
    const void *a;
    char *buf;
    size_t n;
    bool found;
} foreign_search;

static void foreign_try(sm_pool *q, uint64_t seq, void *ctx)
{
    (void)seq;
    foreign_search *fs = ctx;
    char unused[DETAIL_CHARS], pool[POOL_CHARS];
    found f;
    if (fs->found || q == fs->self)
        return;
    pool_lock(q);
    int rc = slab_locate(q, fs->a, &f, unused, sizeof unused);
    pool_unlock(q);
    if (!f.s)
        return;
    pool_describe(q, pool, sizeof pool);
    snprintf(fs->buf, fs->n, "%p is %s of another %s", fs->a,
             rc == 0 ? "an array" : "inside an array", pool);
    fs->found = true;
}

/* Which pool, if any, owns a pointer that p does not.  No lock held. */
static void foreign_describe(const sm_pool *p, const void *a, char *buf, size_t n)
{
    foreign_search fs = {p, a, buf, n, false};
    reg_each_pool(foreign_try, &fs);
    if (!fs.found)
        snprintf(buf, n, "%p is not in any slab of this pool (heap, stack or static memory?)", a);
}

void rpt_users(const sm_pool *p, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < p->nusers && used + 1 < n; i++) {
        const pool_user *u = &p->users[i];
        int k = u->name[0] ? snprintf(buf + used, n - used, "%smap \"%s\" (%p)", i ? ", " : "",
                                      u->name, u->user)
                           : snprintf(buf + used, n - used, "%smap %p", i ? ", " : "", u->user);
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

/* Lock held.  0 when a is a LIVE array of p that no map owns; else the
 * code and its text. */
int rpt_put_check(sm_pool *p, void *a, found *f, misuse_text *m)
{
    SM_ASSERT(pool_locked(p));
    m->now = NULL;
    m->put_depth = m->get_depth = 0;
    int rc = slab_locate(p, a, f, m->detail, sizeof m->detail);
    if (rc)
        return rc;
    unsigned v = st_load(&f->s->states[f->idx]);
    if (st_live(v) && !(v & ST_OWNED))
        return 0;
    if (st_live(v)) {
        char users[DETAIL_CHARS / 2];
        rpt_users(p, users, sizeof users);
        snprintf(m->detail, sizeof m->detail,
                 "array %p is a value still held by a pooled map (%s): delete its key from the "
                 "map instead, and the map puts the array back",
                 a, users[0] ? users : "a map");
        return SM_EDOUBLE;
    }
    if (st_base(v) == ST_FREE && gen_load(f->s, f->idx) == slab_gen_floor(p, f->s->number)) {
        snprintf(m->detail, sizeof m->detail, "%p is a slot of this pool that was never handed out",
                 a);
        return SM_EFOREIGN;
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

int rpt_raise_misuse(sm_pool *p, int rc, const char *what, const char *verb, const void *a,
                     const found *f, misuse_text *m, const void *ra)
{
    char pool[POOL_CHARS], here[BRIEF_CHARS], put[BRIEF_CHARS], get[GOT_BY_CHARS];
    void *pcs[SITE_DEPTH];
    if (rc == SM_EFOREIGN && !f->s)
        foreign_describe(p, a, m->detail, sizeof m->detail);
    if (p->check == SM_CHECK_OFF)
        return rc;
    pool_describe(p, pool, sizeof pool);
    site_brief(here, sizeof here, pcs, site_capture(pcs, ra));
    get[0] = 0;
    if (rc == SM_EDOUBLE && m->now) {
        if (m->put_depth) {
            site_brief(put, sizeof put, m->put_pcs, m->put_depth);
            snprintf(m->detail, sizeof m->detail, "array %p was already put back by %s, and %s", a,
                     put, m->now);
        } else {
            snprintf(m->detail, sizeof m->detail,
                     "array %p was already put back (that Put was not recorded), and %s", a,
                     m->now);
        }
        got_by(get, sizeof get, m->get_pcs, m->get_depth);
    }
    return chk_event(rc, p->misuse, what, p, a, "%s; %s; %s by %s%s", m->detail, pool, verb, here,
                     get);
}

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
int rpt_write(sm_pool *p, FILE *out, const char *what)
{
    group *g = NULL;
    size_t k = 0, cap = 0;
    uint64_t recorded = 0;
    pool_lock(p);
    for (uint32_t id = 1; id <= p->sites.n; id++)
        cap += p->sites.v[id].inuse != 0;
    if (cap && !(g = alc_alloc(cap * sizeof *g, _Alignof(group)))) {
        pool_unlock(p);
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
    size_t live = tc_live_locked(p);
    pool_unlock(p);
    if (k)
        qsort(g, k, sizeof *g, group_order);

    char how[RECORDING_CHARS], frame[FRAME_CHARS];
    recording_format(p, how, sizeof how);
    fprintf(out, "safemap: pool %p %s: %zu arrays %s (%zu B); Get call sites: %s\n", (void *)p,
            pool_label(p), live, what, live * p->size, how);
    for (size_t i = 0; i < k; i++) {
        fprintf(out, "  %llu arrays (%llu B) got at:\n", (unsigned long long)g[i].count,
                (unsigned long long)(g[i].count * p->size));
        for (uint32_t d = 0; d < g[i].depth; d++) {
            site_frame_format(frame, sizeof frame, g[i].pcs[d]);
            fprintf(out, "    #%u %p in %s\n", d, g[i].pcs[d], frame);
        }
    }
    size_t rest = live > recorded ? live - (size_t)recorded : 0;
    fprintf(out, "  %zu arrays (%zu B) whose Get was not recorded\n", rest, rest * p->size);
    if (g)
        alc_free(g, cap * sizeof *g);
    /* A full disk or a closed pipe shows only when the buffer goes out. */
    if (fflush(out) != 0 || ferror(out))
        return SM_EIO;
    return 0;
}

int sm_pool_report(sm_pool *p, FILE *out)
{
    if (!p || !out)
        return chk_einval("sm_pool_report", "%s is NULL", p ? "out" : "pool");
    return rpt_write(p, out, "outstanding");
}

void rpt_trace_cycle(const sm_pool *p, const cycle_trace *t, double us)
{
    chk_trace("pool %p [%s] cycle %llu: idle %zu -> victim %zu, freed %zu (%zu B), "
              "live %zu (%zu B), reserved %zu B, %.0f us",
              (const void *)p, pool_label(p), (unsigned long long)t->cycle, t->idle, t->victims,
              t->freed, t->freed * p->size, t->live, t->live * p->size, t->reserved, us);
}
