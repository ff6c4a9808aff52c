/*
 * pool.c - the array pool: Go's sync.Pool, with the lifecycle checked.
 * Get, Put and their fast paths; cycles; handles; users, life cycle and
 * statistics.  The rest of the pool lives next door (pool_internal.h lists
 * the files): slabs and the address map in slab.c, the depot in depot.c,
 * thread caches in tcache.c, call sites in sites.c, events in report.c.
 *
 * The array's bytes are the user's, always: everything the pool knows about
 * an array lives in its slab's descriptor, a state byte per slot (FREE,
 * IDLE, LIVE, ...), a generation, a free bit and the numbers of recorded
 * call stacks.  Get only stores the state byte and Put only loads it to
 * branch, so a Get+Put pair carries no data dependency through it.
 *
 * Where idle arrays wait, nearest first: this thread's cache (a hot slot and
 * a magazine, no lock, no atomic read-modify-write), the depot (under the
 * pool's lock), and at SM_CHECK_FULL a FIFO quarantine of poisoned arrays,
 * checked when they leave it.  FULL bypasses the thread caches: every call
 * locks and records its call stack.
 *
 * The fast paths.  sm_pool_get() and sm_pool_put() are written so that the
 * common case (this thread's cache of the pool found in its TLS table, a
 * plain pool: no hooks, no zeroing, not FULL) is inline code from
 * pool_internal.h with no call and no lock; everything else goes to
 * get_slow()/put_slow(), which find the cache through the full table
 * (tcache.c), so even a thread using hundreds of pools takes no lock for a
 * cached array.  The fast paths check the slot's state for exactly ST_LIVE,
 * which keeps every flagged case (a handle taken, a recorded Get, an array
 * a pooled map owns) off them at no cost.
 *
 * Invariants (pool lock held, world stopped: pool_verify() checks them):
 *   - a slot's state is LIVE (maybe with flags) exactly while the array is
 *     handed out; IDLE while it sits in a cache or the depot; QUAR in
 *     quarantine; PUTTING while on_put runs; CONDEMNED once its poison was
 *     found overwritten (it is never handed out again); FREE when not carved.
 *   - the generation grows by one when a life in which a handle was taken
 *     ends (the state's HANDLED bit says so) and when a slot is released, so
 *     a handle never resolves after its array's Put, and a FREE slot whose
 *     generation is above its slab number's floor has been handed out.
 *   - idle arrays: depot + quarantine + the caches' credits <= idle_limit.
 *   - after a cycle, nothing is in any cache, `current` is empty, and
 *     `victim` holds what was idle before it: so an idle array is released
 *     at the second cycle after its Put.
 *
 * Counting without slowing down.  sm_pool_stats() must not stop anyone, and
 * the Get+Put pair must not pay for it, so the counters of the fast path
 * live in the cache, written only by its owner with plain (relaxed) stores
 * and summed by the snapshot: `puts` counts up, and Gets are counted by the
 * sampling countdown itself, `left`, as base - left, where base moves only
 * under the lock (when the countdown is reloaded), so a snapshot under the
 * lock never sees a torn pair.  Everything else is counted under the lock.
 * Live arrays are gets - puts, idle ones carved - live - condemned.
 *
 * Sampling.  At SM_CHECK_CHEAP one Get in `sample` (SAFEMAP_DEBUG=sample=N)
 * records its call stack: `left` counts down on the fast path, and the Get
 * that finds it at zero takes the slow path, records its stack and draws
 * the next interval.  sites.c says more.
 *
 * Users.  A pooled map registers with pool_ref() and marks the arrays it
 * holds with pool_own() (the ST_OWNED flag), so that sm_pool_close() of a
 * pool in use and sm_pool_put() of an array a map still holds are refused
 * with an event naming the map, instead of crashing later.
 */
#define _GNU_SOURCE
#include "pool_internal.h"

#include <stdlib.h>
#include <time.h>

/* ---- Memory ------------------------------------------------------------ */

/* The pool's door to alc_alloc(): counts what the pool holds. */
void *pool_alloc(sm_pool *p, size_t size, size_t align)
{
    void *mem = alc_alloc(size, align);
    if (mem)
        atomic_fetch_add_explicit(&p->held, size, memory_order_relaxed);
    return mem;
}

void pool_release(sm_pool *p, void *mem, size_t size)
{
    atomic_fetch_sub_explicit(&p->held, size, memory_order_relaxed);
    alc_free(mem, size);
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
    if (SM_LIKELY(tc->hot_full)) {
        *e = tc->hot; /* stays as the lent array: its Put needs no lookup */
        tc->hot_full = false;
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
    int depth = site_capture(pcs, ra);
    entry e;
    bool fresh = false;
    pool_lock(p);
    /* A corrupted idle array is withdrawn and the next one tried: the event
     * says what was found, and the caller still gets an array. */
    for (;;) {
        if (!depot_pop(p, &e)) {
            if (!slab_carve(p, &e)) {
                pool_unlock(p);
                rpt_raise_corrupt(p, "sm_pool_get", &rs);
                return NULL;
            }
            fresh = true;
            break;
        }
        if (rpt_idle_verify(p, e, &rs))
            break;
    }
    st_store(e.st, ST_LIVE);
    p->gets_locked++;
    p->slow_locked++;
    site_record_get(p, e, pcs, depth);
    pool_unlock(p);
    rpt_raise_corrupt(p, "sm_pool_get", &rs);
    /* A recarved slot may still carry the poison of its last stay. */
    chk_unpoison(e.a, p->size);
#if SM_HAVE_VALGRIND
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
    tcache *tc = tc_get(p);
    uint64_t left = tc ? atomic_load_explicit(&tc->left, memory_order_relaxed) : 0;
    entry e;
    if (tc)
        tc_count_slow(tc);
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
    int depth = tc && !left && p->sample ? site_capture(pcs, ra) : 0;
    bool fresh = false;
    pool_lock(p);
    p->slow_locked++;
    if (tc && tc->hot_full) {
        e = tc->hot; /* the owner's cache, under the lock: no cycle can run */
        tc->hot_full = false;
        st_store(e.st, ST_LIVE);
    } else {
        if (tc && tc->cap)
            depot_mag_refill(p, tc);
        if (tc && tc->n) {
            e = tc->mag[--tc->n];
            st_store(e.st, ST_LIVE);
        } else if (depot_pop(p, &e)) {
            st_store(e.st, ST_LIVE);
        } else if (slab_carve(p, &e)) {
            fresh = true;
        } else {
            pool_unlock(p);
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
        site_record_get(p, e, pcs, depth);
    pool_unlock(p);
    return p->plain ? e.a : get_finish(p, e.a, fresh, false);
}

void *sm_pool_get(sm_pool *p)
{
    tcache *tc;
    if (SM_LIKELY(tc_cache_fast(p, &tc))) { /* false for p NULL */
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
    return !tc->hot_full ? tc->hot_ok : tc->n < tc->cap;
}

/* Files e as the hot array, the previous one pushed onto the magazine. */
static inline void tc_push(tcache *tc, entry e)
{
    if (tc->hot_full)
        tc->mag[tc->n++] = tc->hot;
    tc->hot = e;
    tc->hot_full = true;
}

/* No lock held; the slot is PUTTING.  Runs the Put-side hooks, then files the
 * array as idle: this thread's cache if it has room, else the depot. */
static SM_NOINLINE void put_finish(sm_pool *p, entry e)
{
    if (p->on_put)
        p->on_put(e.a, p->hook_ctx);
    if (p->flags & SM_ZERO_ON_PUT)
        memset(e.a, 0, p->size);
    tcache *tc = tc_fast(p); /* hooks may have moved this thread's caches */
    if (tc) {
        if (tc_enter(tc) && tc_room(tc)) {
            st_move(e.st, ST_IDLE);
            tc_push(tc, e);
            tc_leave(tc);
            return;
        }
        tc_leave(tc);
    }
    pool_lock(p);
    p->slow_locked++;
    depot_cache_put(p, tc, e);
    pool_unlock(p);
}

/* What a refused Put was doing, for its event. */
static const char *put_verb(int rc)
{
    return rc == SM_EDOUBLE ? "put back again" : "put back";
}

/* FULL: every call under the lock, and every call recorded.  An array found
 * corrupted while making room in quarantine is withdrawn and reported, and
 * this array is taken all the same: the call returns SM_ECORRUPT. */
static int put_full(sm_pool *p, void *a, const void *ra)
{
    misuse_text m;
    found f;
    reports rs = {.n = 0, .more = 0};
    void *pcs[SITE_DEPTH];
    int depth = site_capture(pcs, ra);
    pool_lock(p);
    p->slow_locked++;
    int rc = rpt_put_check(p, a, &f, &m);
    if (rc) {
        pool_unlock(p);
        return rpt_raise_misuse(p, rc, "sm_pool_put", put_verb(rc), a, &f, &m, ra);
    }
    /* Make room in quarantine first: the oldest array leaves it, checked. */
    size_t qcap = p->qcap < p->idle_limit ? p->qcap : p->idle_limit;
    if (p->qn + p->qreserved >= qcap && p->qn) {
        entry old = p->quar[p->qhead];
        p->qhead = (p->qhead + 1) % p->qcap;
        p->qn--;
        /* A corrupted one is withdrawn; this Put goes on all the same. */
        if (rpt_idle_verify(p, old, &rs))
            depot_put(p, old);
    }
    bool quarantine = p->qn + p->qreserved < qcap;
    if (quarantine) {
        p->qreserved++;
        depot_trim(p);
    }
    _Atomic uint8_t *st = &f.s->states[f.idx];
    unsigned v = st_load(st);
    unsigned flags = site_record_put(p, f.s, f.idx, v, pcs, depth);
    p->puts_locked++;
    life_end(f.s, f.idx, v, ST_PUTTING | flags);
    pool_unlock(p);

    if (p->on_put)
        p->on_put(a, p->hook_ctx);
    chk_poison(a, p->size);
#if SM_HAVE_VALGRIND
    VALGRIND_MEMPOOL_FREE(p, a);
#endif
    pool_lock(p);
    entry e = {a, st};
    if (quarantine) {
        p->qreserved--;
        p->quar[(p->qhead + p->qn) % p->qcap] = e;
        p->qn++;
        st_move(st, ST_QUAR);
    } else {
        slab_release(p, e);
    }
    pool_unlock(p);
    return rpt_raise_corrupt(p, "sm_pool_put", &rs);
}

/* Lock-free, in the owner's window: the Put of a LIVE array whose Get was
 * not recorded (a handle may have been taken).  False, nothing done, when
 * it needs the lock: no room, a recorded Get, or misuse to report. */
static bool put_cached(sm_pool *p, tcache *tc, void *a)
{
    char unused[DETAIL_CHARS];
    found f;
    bool done = false, finish = false;
    if (tc_enter(tc) && slab_locate(p, a, &f, unused, sizeof unused) == 0) {
        _Atomic uint8_t *st = &f.s->states[f.idx];
        unsigned v = st_load(st);
        /* LIVE, maybe with a handle taken: not recorded, not a map's. */
        if ((v & ~ST_HANDLED) == ST_LIVE && (!p->plain || tc_room(tc))) {
            if (tc->hot_ok) {
                tc->memo_base = f.base;
                tc->memo = f.s;
            }
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
        pool_lock(p);
        p->slow_locked += depth < 0;
        int rc = rpt_put_check(p, a, &f, &m);
        if (rc) {
            pool_unlock(p);
            return rpt_raise_misuse(p, rc, "sm_pool_put", put_verb(rc), a, &f, &m, ra);
        }
        v = st_load(&f.s->states[f.idx]);
        if (!(v & ST_GSITE) || depth >= 0)
            break;
        pool_unlock(p);
        depth = site_capture(pcs, ra);
    }
    entry e = {a, &f.s->states[f.idx]};
    unsigned flags = v & ST_GSITE ? site_record_put(p, f.s, f.idx, v, pcs, depth) : 0;
    if (tc) {
        if (tc->hot_ok) {
            tc->memo_base = f.base;
            tc->memo = f.s;
        }
        tc_count_put(tc);
    } else {
        p->puts_locked++;
    }
    life_end(f.s, f.idx, v, ST_PUTTING | flags);
    if (!p->plain) {
        pool_unlock(p);
        put_finish(p, e);
        return 0;
    }
    depot_cache_put(p, tc, e);
    pool_unlock(p);
    return 0;
}

/* Everything sm_pool_put() does not do inline; ra is its return address. */
static SM_NOINLINE int put_slow(sm_pool *p, void *a, const void *ra)
{
    if (!p || !a)
        return chk_einval("sm_pool_put", "%s is NULL", p ? "array" : "pool");
    if (p->check == SM_CHECK_FULL)
        return put_full(p, a, ra);
    tcache *tc = tc_get(p);
    if (tc)
        tc_count_slow(tc);
    if (tc && put_cached(p, tc, a))
        return 0;
    return put_locked(p, tc, a, ra);
}

/* The fast Put's lookup: the state byte of array, found through the slab
 * this thread last put into, or NULL.  The memo's descriptor is never
 * reused for another slab while named (tc_forget_memos): if its slab went
 * back, every state reads FREE, and the slow path finds out. */
static inline _Atomic uint8_t *memo_state(const sm_pool *p, const tcache *tc, const void *array)
{
    uintptr_t base = (uintptr_t)array & p->slab_mask;
    uint32_t idx;
    if (SM_LIKELY(base == tc->memo_base) &&
        SM_LIKELY(slot_of_offset(p, (uintptr_t)array - base, &idx)))
        return &tc->memo->states[idx]; /* idx <= nslots */
    return NULL;
}

int sm_pool_put(sm_pool *p, void *array)
{
    tcache *tc;
    if (SM_LIKELY(tc_cache_fast(p, &tc))) { /* false for p NULL */
        if (SM_LIKELY(tc_enter_fast(tc))) {
            /* Exactly LIVE: a taken handle, a recorded Get, a map's array
             * (flags) take the slow path, at no cost here. */
            _Atomic uint8_t *st;
            if (SM_LIKELY(!tc->hot_full)) {
                /* LIFO: the array the last Get took from the hot slot comes
                 * back; the slot still names it and its state byte.  (No
                 * hint: a ring of arrays takes the other branch every time,
                 * and both lay out best as the compiler chooses.) */
                if (array == tc->hot.a) {
                    st = tc->hot.st;
                    if (SM_LIKELY(st_load(st) == ST_LIVE)) {
                        st_store(st, ST_IDLE);
                        tc->hot_full = true;
                        tc_count_put(tc);
                        tc_leave(tc);
                        return 0;
                    }
                } else if ((st = memo_state(p, tc, array)) && st_load(st) == ST_LIVE) {
                    st_store(st, ST_IDLE); /* a memo implies hot_ok */
                    tc->hot = (entry){array, st};
                    tc->hot_full = true;
                    tc_count_put(tc);
                    tc_leave(tc);
                    return 0;
                }
            } else if (tc->n < tc->cap && (st = memo_state(p, tc, array)) &&
                       st_load(st) == ST_LIVE) {
                st_store(st, ST_IDLE);
                tc->mag[tc->n++] = tc->hot;
                tc->hot = (entry){array, st};
                tc_count_put(tc);
                tc_leave(tc);
                return 0;
            }
        }
        tc_leave(tc);
    }
    return put_slow(p, array, __builtin_return_address(0));
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

void sm_pool_cycle(sm_pool *p)
{
    if (!p)
        return;
    bool trace = chk_debug_get()->trace != 0;
    double t0 = trace ? now_us() : 0;
    cycle_trace tr;
    reports rs = {.n = 0, .more = 0};
    pool_lock(p);
    tc_stw_begin(p);
    uint64_t frees = p->frees;
    tr.idle = depot_idle_count(p);
    for (tcache *tc = p->caches; tc; tc = tc->next)
        tr.idle += tc->n + tc->hot_full;
    /* The victims of the last cycle go back. */
    for (size_t i = 0; i < p->victim.n; i++)
        if (p->check != SM_CHECK_FULL || rpt_idle_verify(p, p->victim.v[i], &rs))
            slab_release(p, p->victim.v[i]);
    p->victim.n = 0;
    /* What was idle becomes the victims. */
    vec t = p->victim;
    p->victim = p->current;
    p->current = t;
    while (p->qn) {
        entry e = p->quar[p->qhead];
        p->qhead = (p->qhead + 1) % p->qcap;
        p->qn--;
        if (rpt_idle_verify(p, e, &rs)) {
            if (depot_vec_push(p, &p->victim, e))
                st_move(e.st, ST_IDLE);
            else
                slab_release(p, e);
        }
    }
    for (tcache *tc = p->caches; tc; tc = tc->next) {
        if (tc->hot_full && !depot_vec_push(p, &p->victim, tc->hot))
            slab_release(p, tc->hot);
        tc_hot_clear(tc);
        for (uint32_t i = 0; i < tc->n; i++)
            if (!depot_vec_push(p, &p->victim, tc->mag[i]))
                slab_release(p, tc->mag[i]);
        tc->n = 0;
        tc->memo_base = UINTPTR_MAX;
        tc->memo = NULL;
    }
    depot_vec_drop(p, &p->current);
    if (!p->victim.n)
        depot_vec_drop(p, &p->victim);
    depot_trim(p);
    slab_spare_free(p);
    tr.cycle = ++p->cycles;
    tr.victims = p->victim.n;
    tr.freed = (size_t)(p->frees - frees);
    tr.live = tc_live_locked(p);
    tr.reserved = atomic_load_explicit(&p->held, memory_order_relaxed);
    tc_stw_end(p);
    pool_unlock(p);
    rpt_raise_corrupt(p, "sm_pool_cycle", &rs);
    if (trace)
        rpt_trace_cycle(p, &tr, now_us() - t0);
}

/* ---- Handles ------------------------------------------------------------ */

/* A consistent view for readers: this thread's cache window, or the lock. */
static tcache *view_begin(sm_pool *p)
{
    tcache *tc = p->check == SM_CHECK_FULL ? NULL : tc_get(p);
    if (tc && tc_enter(tc))
        return tc;
    if (tc)
        tc_leave(tc);
    pool_lock(p);
    return NULL;
}

static void view_end(sm_pool *p, tcache *tc)
{
    if (tc)
        tc_leave(tc);
    else
        pool_unlock(p);
}

sm_handle sm_pool_handle(sm_pool *p, const void *array)
{
    sm_handle h = {0};
    misuse_text m;
    found f;
    if (!p || !array)
        return h;
    tcache *tc = view_begin(p);
    int rc = slab_locate(p, array, &f, m.detail, sizeof m.detail);
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
        rpt_raise_misuse(p, rc, "sm_pool_handle", "called", array, &f, &m,
                         __builtin_return_address(0));
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
    slab *s = slab_numbered(p, number);
    if (s && idx < p->nslots) {
        unsigned v = st_load(&s->states[idx]);
        uintptr_t base = atomic_load_explicit(&s->base, memory_order_relaxed);
        if (st_live(v) && (v & ST_HANDLED) && (gen_load(s, idx) ^ p->key) == gen && base)
            a = slot_array(p, base, idx);
    }
    view_end(p, tc);
    return a;
}

/* ---- Arrays a pooled map holds -------------------------------------------- */

/* Sets or clears ST_OWNED on a LIVE array of p: inline when the array is
 * the one this thread's last Get lent or in the slab it last put into (a
 * map marks an array just after its Get), else through a view. */
static int own_set(sm_pool *p, void *array, bool own)
{
    char unused[DETAIL_CHARS];
    found f;
    if (!p || !array)
        return SM_EINVAL;
    tcache *tc;
    if (tc_cache_fast(p, &tc)) {
        if (SM_LIKELY(tc_enter_fast(tc))) {
            _Atomic uint8_t *st =
                array == tc->hot.a && !tc->hot_full ? tc->hot.st : memo_state(p, tc, array);
            unsigned v = st ? st_load(st) : 0;
            if (st && st_live(v) && ((v & ST_OWNED) != 0) != own) {
                st_store(st, own ? v | ST_OWNED : v & ~ST_OWNED);
                tc_leave(tc);
                return 0;
            }
        }
        tc_leave(tc);
    }
    tc = view_begin(p);
    int rc = slab_locate(p, array, &f, unused, sizeof unused);
    if (rc == 0) {
        _Atomic uint8_t *st = &f.s->states[f.idx];
        unsigned v = st_load(st);
        if (!st_live(v) || ((v & ST_OWNED) != 0) == own)
            rc = SM_EDOUBLE;
        else
            st_store(st, own ? v | ST_OWNED : v & ~ST_OWNED);
    }
    view_end(p, tc);
    return rc;
}

int pool_own(sm_pool *p, void *array)
{
    return own_set(p, array, true);
}

int pool_disown(sm_pool *p, void *array)
{
    return own_set(p, array, false);
}

/* ---- Users ------------------------------------------------------------------ */

int pool_ref(sm_pool *p, const void *user, const char *user_name)
{
    if (!p || !user)
        return SM_EINVAL;
    pool_lock(p);
    if (p->nusers == p->users_cap) {
        size_t cap = p->users_cap ? 2 * p->users_cap : 4;
        pool_user *u = pool_alloc(p, cap * sizeof *u, _Alignof(pool_user));
        if (!u) {
            pool_unlock(p);
            return SM_ENOMEM;
        }
        if (p->nusers)
            memcpy(u, p->users, p->nusers * sizeof *u);
        if (p->users)
            pool_release(p, p->users, p->users_cap * sizeof *u);
        p->users = u;
        p->users_cap = cap;
    }
    pool_user *u = &p->users[p->nusers++];
    u->user = user;
    snprintf(u->name, sizeof u->name, "%s", user_name ? user_name : "");
    pool_unlock(p);
    return 0;
}

void pool_unref(sm_pool *p, const void *user)
{
    if (!p)
        return;
    pool_lock(p);
    for (size_t i = 0; i < p->nusers; i++) {
        if (p->users[i].user == user) {
            p->users[i] = p->users[--p->nusers];
            break;
        }
    }
    if (p->nusers == 0 && p->users) {
        pool_release(p, p->users, p->users_cap * sizeof *p->users);
        p->users = NULL;
        p->users_cap = 0;
    }
    pool_unlock(p);
}

/* ---- Life cycle --------------------------------------------------------- */

const sm_layout *pool_layout(const sm_pool *p)
{
    return &p->layout;
}

const char *pool_name(const sm_pool *p)
{
    return p->name[0] ? p->name : NULL;
}

/* The sizes that follow from the layout. */
static void geometry(sm_pool *p, const sm_layout *l)
{
    size_t size = l->elem_size * l->len;
    size_t stride = (size + l->elem_align - 1) & ~(l->elem_align - 1);
    if (stride < 8)
        stride = 8;
    size_t slab_bytes = next_pow2(4 * stride);
    if (slab_bytes < SLAB_MIN_BYTES)
        slab_bytes = SLAB_MIN_BYTES;
    p->stride = (uint32_t)stride;
    p->size = size;
    p->slab_bytes = slab_bytes;
    p->slab_mask = ~(uintptr_t)(slab_bytes - 1);
    p->nslots = (uint32_t)(slab_bytes / stride);
    p->slot_bits = log2_ceil(p->nslots);
    p->div_magic = UINT64_MAX / stride + 1;
    size_t mag = MAG_BYTES / stride;
    p->mag_max = mag > MAG_MAX ? MAG_MAX : mag < 1 ? 1 : (uint32_t)mag;
}

int sm_pool_new(sm_pool **out, const sm_pool_opts *o)
{
    static _Atomic uint64_t next_id = 1;
    if (!out)
        return chk_einval("sm_pool_new", "out is NULL");
    if (!o)
        return chk_einval("sm_pool_new", "opts is NULL");
    int rc = chk_layout_check(&o->layout, "sm_pool_new", "opts->layout");
    if (rc != 0)
        return rc;
    int check = chk_level(o->check);
    if (check < 0)
        return chk_einval("sm_pool_new", "opts->check is %d, not an SM_CHECK_* level", o->check);
    if (o->flags & ~(unsigned)(SM_ZERO_ON_GET | SM_ZERO_ON_PUT))
        return chk_einval("sm_pool_new",
                          "opts->flags has bits 0x%x set that are not SM_ZERO_ON_GET or "
                          "SM_ZERO_ON_PUT",
                          o->flags & ~(unsigned)(SM_ZERO_ON_GET | SM_ZERO_ON_PUT));
    tc_init();

    sm_pool *p = alc_alloc(sizeof *p, _Alignof(sm_pool));
    if (!p)
        return SM_ENOMEM;
    memset(p, 0, sizeof *p);
    atomic_init(&p->held, sizeof *p);
    for (int i = 0; i < SM_NCODES; i++)
        atomic_init(&p->misuse[i], 0);
    geometry(p, &o->layout);
    p->check = check;
    p->flags = o->flags;
    p->on_new = o->on_new;
    p->on_get = o->on_get;
    p->on_put = o->on_put;
    p->hook_ctx = o->hook_ctx;
    p->plain = !o->on_get && !o->on_put && !o->flags && check != SM_CHECK_FULL;
    p->fast = p->plain && tc_membarrier && !SM_HAVE_TSAN;
    p->sample = check == SM_CHECK_FULL ? 1 : check == SM_CHECK_CHEAP ? chk_debug_get()->sample : 0;
    p->layout = o->layout;
    if (o->name)
        snprintf(p->name, sizeof p->name, "%s", o->name);
    p->idle_limit = o->max_idle_bytes ? o->max_idle_bytes / p->stride : SIZE_MAX;
    p->stab_top = 1; /* number 0 is never used: a zero handle names nothing */
    if (check == SM_CHECK_FULL) {
        size_t q = QUAR_BYTES / p->stride;
        p->qcap = q > QUAR_MAX ? QUAR_MAX : q < QUAR_MIN ? QUAR_MIN : q;
        p->quar = pool_alloc(p, p->qcap * sizeof(entry), _Alignof(entry));
        if (!p->quar) {
            alc_free(p, sizeof *p);
            return SM_ENOMEM;
        }
    }
    pthread_mutex_init(&p->lock, NULL);
#if SM_HAVE_VALGRIND
    if (check == SM_CHECK_FULL)
        VALGRIND_CREATE_MEMPOOL(p, 0, 0);
#endif
    p->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    p->key = (uint32_t)mix64(p->id);
    p->tls_index = tc_index_take();
    p->fast_slot = tc_fast_slot(p->fast ? p->tls_index : TC_NO_INDEX);
    reg_pool_add(p);
    *out = p;
    return 0;
}

/* At FULL: a write after the last Put is still caught here, and arrays
 * still out are reported as leaks (a report, not an event). */
static void free_checks(sm_pool *p)
{
    reports rs = {.n = 0, .more = 0};
    pool_lock(p);
    for (size_t i = 0; i < p->qn; i++)
        rpt_idle_verify(p, p->quar[(p->qhead + i) % p->qcap], &rs);
    for (size_t i = 0; i < p->current.n; i++)
        rpt_idle_verify(p, p->current.v[i], &rs);
    for (size_t i = 0; i < p->victim.n; i++)
        rpt_idle_verify(p, p->victim.v[i], &rs);
    size_t live = tc_live_locked(p);
    pool_unlock(p);
    rpt_raise_corrupt(p, "sm_pool_free", &rs);
    if (live && rpt_write(p, stderr, "leaked at sm_pool_free") != 0)
        fprintf(stderr, "safemap: pool %p %s: %zu arrays leaked at sm_pool_free (%zu B)\n",
                (void *)p, pool_label(p), live, live * p->size);
}

int sm_pool_close(sm_pool *p)
{
    if (!p)
        return 0;
    pool_lock(p);
    size_t nusers = p->nusers;
    char users[DETAIL_CHARS];
    rpt_users(p, users, sizeof users);
    pool_unlock(p);
    if (nusers)
        return chk_event(SM_EBUSY, p->misuse, "sm_pool_close", p, NULL,
                         "pool %p \"%s\" is still used by %zu pooled map%s: %s; free %s first "
                         "(nothing was freed)",
                         (void *)p, pool_label(p), nusers, nusers == 1 ? "" : "s", users,
                         nusers == 1 ? "it" : "them");
    reg_pool_del(p);
    if (p->check == SM_CHECK_FULL)
        free_checks(p);
    while (p->caches) {
        tcache *tc = p->caches;
        p->caches = tc->next;
        pool_release(p, tc, tc_bytes(p));
    }
    tc_index_put(p->tls_index);
#if SM_HAVE_VALGRIND
    if (p->check == SM_CHECK_FULL)
        VALGRIND_DESTROY_MEMPOOL(p);
#endif
    slab_free_all(p);
    depot_vec_drop(p, &p->current);
    depot_vec_drop(p, &p->victim);
    if (p->quar)
        pool_release(p, p->quar, p->qcap * sizeof(entry));
    site_drop(p);
    pthread_mutex_destroy(&p->lock);
    alc_free(p, sizeof *p);
    size_t maps, pools;
    reg_counts(&maps, &pools);
    if (pools == 0)
        tc_table_release();
    return 0;
}

void sm_pool_free(sm_pool *p)
{
    (void)sm_pool_close(p);
}

/* ---- Statistics and checks ----------------------------------------------- */

int sm_pool_stats(sm_pool *p, struct sm_pool_stats *out)
{
    if (!p || !out)
        return chk_einval("sm_pool_stats", "%s is NULL", p ? "out" : "pool");
    memset(out, 0, sizeof *out);
    out->layout = p->layout;
    out->check = p->check;
    pool_lock(p);
    tc_counts_locked(p, &out->gets, &out->puts);
    out->news = p->news;
    out->frees = p->frees;
    out->cycles = p->cycles;
    size_t kept = p->carved - p->condemned; /* live or idle (or being put) */
    pool_unlock(p);
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

void pool_counters(sm_pool *p, pool_counts *out)
{
    memset(out, 0, sizeof *out);
    pool_lock(p);
    out->locked = p->slow_locked;
    for (const tcache *tc = p->caches; tc; tc = tc->next)
        out->slow += atomic_load_explicit(&((tcache *)tc)->slow, memory_order_relaxed);
    for (const tcache *tc = p->caches; tc; tc = tc->next)
        out->caches++;
    out->inline_paths = p->fast;
    pool_unlock(p);
}

/* What pool_verify() counts while it walks the slots. */
typedef struct tally {
    size_t by_state[ST_BASE + 1];
    size_t owned_not_live, bad_bits, bad_used;
    slab *last;
    uint32_t used;
} tally;

static void tally_slot(sm_pool *p, slab *s, uint32_t idx, void *ctx)
{
    tally *t = ctx;
    unsigned v = st_load(&s->states[idx]);
    unsigned base = st_base(v);
    t->by_state[base]++;
    if ((v & ST_OWNED) && base != ST_LIVE)
        t->owned_not_live++;
    bool free_bit = (s->freebits[idx / 64] >> (idx % 64)) & 1;
    if (free_bit != (base == ST_FREE))
        t->bad_bits++;
    if (s != t->last) {
        t->last = s;
        t->used = 0;
    }
    t->used += base != ST_FREE;
    if (idx + 1 == p->nslots && t->used != s->used)
        t->bad_used++;
}

/* One broken invariant: says which on stderr, and fails. */
static int broken(const sm_pool *p, const char *what, size_t got, size_t want)
{
    fprintf(stderr, "safemap: pool_verify: pool %p %s: %s (%zu, expected %zu)\n", (const void *)p,
            pool_label(p), what, got, want);
    return SM_ECORRUPT;
}

int pool_verify(sm_pool *p)
{
    tally t;
    memset(&t, 0, sizeof t);
    pool_lock(p);
    tc_stw_begin(p);
    slab_each_slot(p, tally_slot, &t);
    size_t cached = 0, credits = 0, in_tc_idle = 0;
    for (tcache *tc = p->caches; tc; tc = tc->next) {
        cached += tc->n + tc->hot_full;
        credits += tc->cap + (tc->hot_ok ? 1 : 0);
        for (uint32_t i = 0; i < tc->n; i++)
            in_tc_idle += st_base(st_load(tc->mag[i].st)) == ST_IDLE;
        if (tc->hot_full)
            in_tc_idle += st_base(st_load(tc->hot.st)) == ST_IDLE;
    }
    size_t depot = p->current.n + p->victim.n, carved = 0;
    for (unsigned i = 0; i <= ST_BASE; i++)
        carved += i == ST_FREE ? 0 : t.by_state[i];
    int rc = 0;
    if (t.bad_bits)
        rc = broken(p, "slots whose free bit disagrees with their state", t.bad_bits, 0);
    else if (t.bad_used)
        rc = broken(p, "slabs whose used count disagrees with their slots", t.bad_used, 0);
    else if (carved != p->carved)
        rc = broken(p, "slots not FREE", carved, p->carved);
    else if (t.by_state[ST_CONDEMNED] != p->condemned)
        rc = broken(p, "CONDEMNED slots", t.by_state[ST_CONDEMNED], p->condemned);
    else if (t.by_state[ST_QUAR] != p->qn)
        rc = broken(p, "QUAR slots", t.by_state[ST_QUAR], p->qn);
    else if (t.by_state[ST_IDLE] != depot + cached || in_tc_idle != cached)
        rc = broken(p, "IDLE slots", t.by_state[ST_IDLE], depot + cached);
    else if (t.owned_not_live)
        rc = broken(p, "slots owned by a map but not LIVE", t.owned_not_live, 0);
    else if (credits != p->credits)
        rc = broken(p, "cache credits", credits, p->credits);
    else if (p->idle_limit != SIZE_MAX && depot_idle_count(p) + p->credits > p->idle_limit)
        rc = broken(p, "idle arrays and credits over the cap", depot_idle_count(p) + p->credits,
                    p->idle_limit);
    tc_stw_end(p);
    pool_unlock(p);
    return rc;
}
