/*
 * lincheck.h - records what concurrent threads did to a map and decides
 * whether it could have happened on a map that does one operation at a time.
 *
 * A history is a list of operations, each with the thread that ran it, the
 * key, what it wrote, what it returned, and two instants: its invocation
 * and its response.  The instants come from one shared counter that every
 * thread increments (atomic fetch-add) just before calling the map and just
 * after it returns, so they form one total order that agrees with real time:
 * if A's response instant is below B's invocation instant, A really finished
 * before B began.  No clock is needed.
 *
 * Every value written is unique: a value is an int64_t array whose element
 * 0 is a write id (the writing thread in the high bits, a sequence number in
 * the low bits) and whose other elements are a hash of the key, the id and
 * the index.  A read therefore names the write it saw, and a torn array, an
 * array of another key or bytes never written decode to LC_TORN, an id no
 * write has.
 *
 * The model.  Keys are independent registers that may be absent (state 0)
 * or hold one write id.  put writes; get reads (SM_ENOENT means absent); del
 * writes "absent" and reports whether the key was present (0) or not
 * (SM_ENOENT); update is an atomic read-modify-write that reports the id it
 * replaced (0 when it inserted) and writes a new one.  A call that returned
 * any other error changed nothing, so it is a no-op that fits anywhere.
 *
 * The check.  A history is linearizable when its operations can be put in
 * one order that respects real time (A before B whenever A responded before
 * B was invoked) in which every result is what the model gives.  Because
 * keys are independent registers, the history is linearizable exactly when
 * each key's sub-history is (linearizability is compositional), so each key
 * is checked alone.  The search is the one of Wing and Gong as improved by
 * Lowe: walk the invocation and response events in time order; at an
 * invocation, try to linearize that operation now (its result must match
 * the model) and go on from the next unlinearized event; at a response
 * whose operation is not yet linearized, backtrack.  A set of (operations
 * linearized, register state) pairs already explored prunes the search:
 * reaching the same pair again cannot succeed where it failed before.  With
 * T threads at most T operations are open at once, so the explored pairs
 * stay few; the driver bounds each round's history (threads *
 * ops_per_round / keys operations per key, about 50 by default) so that a
 * check always ends quickly, and a search
 * budget turns a pathological case into LC_GAVE_UP (reported as a failure,
 * never as a pass).
 *
 * The witness.  For a key that fails, lc_check_key() shrinks the history
 * by deleting one operation at a time while the rest stays
 * non-linearizable, until no deletion is left: usually two to five
 * operations remain (a write, the write that replaced it, and a later read
 * that still saw the first).  Only deletions that cannot turn a
 * linearizable history into one that is not are tried: an operation that
 * writes nothing, or a write that a later put overwrites before anything
 * could have read it; and an update or del may be made "blind" (what it
 * read is ignored, what it wrote is kept).  So the witness is itself a
 * proof: whatever it shows is wrong with the map is wrong with the whole
 * history.  A read of an id no write produced (a torn value) is a witness
 * on its own.
 *
 * The driver.  lc_run() drives any map through lc_target (function
 * pointers for put, get, del and update over int64_t[value_len] values):
 * each round, `threads` threads run `ops_per_round` random operations each
 * on `keys` keys, then the main thread reads every key alone (that read
 * ends the round's history and gives the next round its initial state) and
 * checks the round.  Rounds repeat until the operation count or the time
 * budget runs out.  The recorders of a round start together (each waits
 * until all are running), and with `jitter` one call in that many yields
 * the processor just inside its interval: on a machine busy with other
 * work, threads otherwise run their rounds one after another and hardly
 * ever overlap.  Optionally a churn thread grows the map by thousands of
 * other keys and deletes them again throughout, so that the checked keys
 * live through splits, merges and reclamation.
 */
#ifndef SM_LINCHECK_H
#define SM_LINCHECK_H

#include "safemap.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- Values ------------------------------------------------------------ */

#define LC_ABSENT 0    /* the register state of an absent key */
#define LC_TORN (-1)   /* what a value no write produced decodes to */
#define LC_ID_SHIFT 40 /* write id = (thread + 1) << LC_ID_SHIFT | sequence */

static inline uint64_t lc_mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    return x ^ (x >> 33);
}

/* Element i (>= 1) of the value with write id `id` under `key`. */
static inline int64_t lc_element(int64_t key, int64_t id, size_t i)
{
    return (int64_t)lc_mix((uint64_t)key * 0x9e3779b97f4a7c15ull ^ lc_mix((uint64_t)id + i));
}

static inline void lc_value_fill(int64_t *v, size_t len, int64_t key, int64_t id)
{
    v[0] = id;
    for (size_t i = 1; i < len; i++)
        v[i] = lc_element(key, id, i);
}

/* The write id v carries, or LC_TORN when v is not exactly a value some
 * write of this key produced. */
static inline int64_t lc_value_id(const int64_t *v, size_t len, int64_t key)
{
    if (v[0] <= 0)
        return LC_TORN;
    for (size_t i = 1; i < len; i++)
        if (v[i] != lc_element(key, v[0], i))
            return LC_TORN;
    return v[0];
}

/* ---- Operations and histories ------------------------------------------ */

enum { LC_PUT, LC_GET, LC_DEL, LC_UPDATE };

typedef struct lc_op {
    int thread;   /* -1: the main thread's read at the end of a round */
    int kind;     /* LC_PUT ... LC_UPDATE */
    int key;      /* index of the key, 0 .. keys - 1 */
    int rc;       /* what the call returned */
    int64_t arg;  /* put, update: the id written */
    int64_t seen; /* get with rc 0: the id read; update: the id replaced
                     (LC_ABSENT if it inserted); LC_TORN for a bad value */
    uint64_t inv; /* invocation instant */
    uint64_t res; /* response instant, > inv */
    int blind;    /* set only in witnesses: what the call read is ignored
                     (an update or del kept only for what it wrote) */
} lc_op;

static inline const char *lc_kind_name(int kind)
{
    static const char *const names[] = {"put", "get", "del", "update"};
    return kind >= LC_PUT && kind <= LC_UPDATE ? names[kind] : "?";
}

static inline void lc_print_id(FILE *out, int64_t id)
{
    if (id == LC_ABSENT)
        fprintf(out, "absent");
    else if (id == LC_TORN)
        fprintf(out, "TORN");
    else if (id >> LC_ID_SHIFT == 0) /* hand-written histories use small ids */
        fprintf(out, "#%" PRId64, id);
    else
        fprintf(out, "t%d#%" PRId64, (int)(id >> LC_ID_SHIFT) - 1,
                id & (((int64_t)1 << LC_ID_SHIFT) - 1));
}

/* Whether o returned what the model allows; any other error is a no-op. */
static inline int lc_expected_rc(const lc_op *o)
{
    if (o->rc == 0)
        return 1;
    return o->rc == SM_ENOENT && (o->kind == LC_GET || o->kind == LC_DEL);
}

static inline void lc_print_op(FILE *out, const lc_op *o, uint64_t t0)
{
    fprintf(out, "    [%6" PRIu64 ", %6" PRIu64 "] ", o->inv - t0, o->res - t0);
    if (o->thread < 0)
        fprintf(out, "main ");
    else
        fprintf(out, "t%-3d ", o->thread);
    fprintf(out, "%-6s key %d", lc_kind_name(o->kind), o->key);
    if (o->kind == LC_PUT || o->kind == LC_UPDATE) {
        fprintf(out, " write ");
        lc_print_id(out, o->arg);
    }
    fprintf(out, " -> ");
    if (!lc_expected_rc(o))
        fprintf(out, "error %d", o->rc);
    else if (o->kind == LC_GET)
        lc_print_id(out, o->rc == 0 ? o->seen : LC_ABSENT);
    else if (o->kind == LC_DEL)
        fprintf(out, o->rc == 0 ? "was present" : "was absent");
    else if (o->kind == LC_UPDATE) {
        fprintf(out, "replaced ");
        lc_print_id(out, o->seen);
    } else
        fprintf(out, "ok");
    fprintf(out, o->blind ? " (result not needed)\n" : "\n");
}

/* The model: whether o may take effect in state `state`, and the state after. */
static inline int lc_step(const lc_op *o, int64_t state, int64_t *next)
{
    *next = state;
    switch (o->kind) {
    case LC_PUT:
        if (o->rc == 0)
            *next = o->arg;
        return 1;
    case LC_GET:
        if (o->rc == 0)
            return state != LC_ABSENT && o->seen == state;
        if (o->rc == SM_ENOENT)
            return state == LC_ABSENT;
        return 1;
    case LC_DEL:
        if (o->rc == 0) {
            *next = LC_ABSENT;
            return o->blind || state != LC_ABSENT;
        }
        if (o->rc == SM_ENOENT)
            return state == LC_ABSENT;
        return 1;
    case LC_UPDATE:
        if (o->rc != 0)
            return 1;
        *next = o->arg;
        return o->blind || o->seen == state;
    }
    return 0;
}

/* ---- The search -------------------------------------------------------- */

enum { LC_OK = 0, LC_VIOLATION = 1, LC_GAVE_UP = 2 };

/* Search steps allowed per key history before giving up (a variable so
 * that a test can show what giving up looks like). */
static uint64_t lc_step_budget = 20000000;

/* One invocation or response event in a doubly linked list.  Linearizing
 * an operation unlinks both its events; backtracking relinks them. */
typedef struct lc_event {
    struct lc_event *prev, *next;
    struct lc_event *match; /* invocation: its response */
    int op;                 /* index into the history being checked */
    int is_call;
    uint64_t at;
} lc_event;

static inline int lc_event_order(const void *a, const void *b)
{
    const lc_event *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    /* Equal instants (possible only in hand-written histories): invocations
     * first, so the two operations count as overlapping. */
    return y->is_call - x->is_call;
}

static inline void lc_lift(lc_event *call)
{
    call->prev->next = call->next;
    if (call->next)
        call->next->prev = call->prev;
    lc_event *ret = call->match;
    ret->prev->next = ret->next;
    if (ret->next)
        ret->next->prev = ret->prev;
}

static inline void lc_unlift(lc_event *call)
{
    lc_event *ret = call->match;
    ret->prev->next = ret;
    if (ret->next)
        ret->next->prev = ret;
    call->prev->next = call;
    if (call->next)
        call->next->prev = call;
}

/* The explored (linearized set, state) pairs: open addressing over a pool
 * of bitsets. */
typedef struct lc_memo {
    size_t words;      /* 64-bit words per bitset */
    size_t cap, count; /* slots (a power of two), used slots */
    uint64_t *hashes;  /* 0: empty slot */
    int64_t *states;
    size_t *offsets; /* into pool */
    uint64_t *pool;
    size_t pool_used, pool_cap;
} lc_memo;

static inline uint64_t lc_memo_hash(const uint64_t *bits, size_t words, int64_t state)
{
    uint64_t h = lc_mix((uint64_t)state + 0x51ed27);
    for (size_t i = 0; i < words; i++)
        h = lc_mix(h ^ bits[i]) + i;
    return h | 1;
}

static inline int lc_memo_init(lc_memo *m, size_t words)
{
    memset(m, 0, sizeof *m);
    m->words = words;
    m->cap = 1024;
    m->pool_cap = 1024 * words;
    m->hashes = calloc(m->cap, sizeof *m->hashes);
    m->states = malloc(m->cap * sizeof *m->states);
    m->offsets = malloc(m->cap * sizeof *m->offsets);
    m->pool = malloc(m->pool_cap * sizeof *m->pool);
    return m->hashes && m->states && m->offsets && m->pool;
}

static inline void lc_memo_free(lc_memo *m)
{
    free(m->hashes);
    free(m->states);
    free(m->offsets);
    free(m->pool);
}

static inline int lc_memo_grow(lc_memo *m)
{
    lc_memo bigger = *m;
    bigger.cap = m->cap * 2;
    bigger.hashes = calloc(bigger.cap, sizeof *bigger.hashes);
    bigger.states = malloc(bigger.cap * sizeof *bigger.states);
    bigger.offsets = malloc(bigger.cap * sizeof *bigger.offsets);
    if (!bigger.hashes || !bigger.states || !bigger.offsets) {
        free(bigger.hashes);
        free(bigger.states);
        free(bigger.offsets);
        return 0;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->hashes[i])
            continue;
        size_t j = m->hashes[i] & (bigger.cap - 1);
        while (bigger.hashes[j])
            j = (j + 1) & (bigger.cap - 1);
        bigger.hashes[j] = m->hashes[i];
        bigger.states[j] = m->states[i];
        bigger.offsets[j] = m->offsets[i];
    }
    free(m->hashes);
    free(m->states);
    free(m->offsets);
    *m = bigger;
    return 1;
}

/* Adds the pair; returns 1 if it was new, 0 if already explored, -1 when
 * memory ran out. */
static inline int lc_memo_add(lc_memo *m, const uint64_t *bits, int64_t state)
{
    if ((m->count + 1) * 2 > m->cap && !lc_memo_grow(m))
        return -1;
    uint64_t h = lc_memo_hash(bits, m->words, state);
    size_t j = h & (m->cap - 1);
    for (; m->hashes[j]; j = (j + 1) & (m->cap - 1))
        if (m->hashes[j] == h && m->states[j] == state &&
            memcmp(m->pool + m->offsets[j], bits, m->words * sizeof *bits) == 0)
            return 0;
    if (m->pool_used + m->words > m->pool_cap) {
        uint64_t *p = realloc(m->pool, 2 * m->pool_cap * sizeof *p);
        if (!p)
            return -1;
        m->pool = p;
        m->pool_cap *= 2;
    }
    memcpy(m->pool + m->pool_used, bits, m->words * sizeof *bits);
    m->hashes[j] = h;
    m->states[j] = state;
    m->offsets[j] = m->pool_used;
    m->pool_used += m->words;
    m->count++;
    return 1;
}

/* Decides whether ops[0..n) (all on one key, the register starting in
 * state `initial`) is linearizable: LC_OK, LC_VIOLATION or LC_GAVE_UP. */
static inline int lc_search(const lc_op *const *ops, size_t n, int64_t initial)
{
    if (n == 0)
        return LC_OK;
    size_t words = (n + 63) / 64;
    lc_event *ev = malloc((2 * n + 1) * sizeof *ev);
    lc_event **stack = malloc(n * sizeof *stack);
    int64_t *saved = malloc(n * sizeof *saved);
    uint64_t *bits = calloc(words, sizeof *bits);
    lc_memo memo;
    int memo_ok = lc_memo_init(&memo, words);
    int verdict = LC_GAVE_UP;
    if (!ev || !stack || !saved || !bits || !memo_ok)
        goto out;

    lc_event *head = &ev[2 * n];
    lc_event *events = ev;
    for (size_t i = 0; i < n; i++) {
        events[2 * i] = (lc_event){.op = (int)i, .is_call = 1, .at = ops[i]->inv};
        events[2 * i + 1] = (lc_event){.op = (int)i, .is_call = 0, .at = ops[i]->res};
    }
    qsort(events, 2 * n, sizeof *events, lc_event_order);
    /* Sorting moved the events: pair each invocation with its response. */
    lc_event **response_of = malloc(n * sizeof *response_of);
    if (!response_of)
        goto out;
    for (size_t i = 0; i < 2 * n; i++)
        if (!events[i].is_call)
            response_of[events[i].op] = &events[i];
    for (size_t i = 0; i < 2 * n; i++)
        if (events[i].is_call)
            events[i].match = response_of[events[i].op];
    free(response_of);
    *head = (lc_event){.op = -1};
    lc_event *prev = head;
    for (size_t i = 0; i < 2 * n; i++) {
        prev->next = &events[i];
        events[i].prev = prev;
        prev = &events[i];
    }
    prev->next = NULL;

    int64_t state = initial;
    size_t depth = 0;
    uint64_t steps = 0;
    lc_event *e = head->next;
    while (head->next) {
        if (++steps > lc_step_budget)
            goto out;
        if (e->is_call) {
            int64_t next;
            if (lc_step(ops[e->op], state, &next)) {
                bits[e->op / 64] |= 1ull << (e->op % 64);
                int added = lc_memo_add(&memo, bits, next);
                if (added < 0)
                    goto out;
                if (added) {
                    stack[depth] = e;
                    saved[depth++] = state;
                    state = next;
                    lc_lift(e);
                    e = head->next;
                    continue;
                }
                bits[e->op / 64] &= ~(1ull << (e->op % 64));
            }
            e = e->next;
        } else {
            /* An operation responded without being linearized: undo the
             * latest choice and try the event after it. */
            if (depth == 0) {
                verdict = LC_VIOLATION;
                goto out;
            }
            lc_event *call = stack[--depth];
            state = saved[depth];
            bits[call->op / 64] &= ~(1ull << (call->op % 64));
            lc_unlift(call);
            e = call->next;
        }
    }
    verdict = LC_OK;
out:
    lc_memo_free(&memo); /* also after a partial lc_memo_init */
    free(ev);
    free(stack);
    free(saved);
    free(bits);
    return verdict;
}

/* Whether o reads the register: a call that returned an error changed and
 * saw nothing, a successful put overwrites without looking, and a blind
 * operation's result is ignored. */
static inline int lc_observes(const lc_op *o)
{
    return lc_expected_rc(o) && o->kind != LC_PUT && !o->blind;
}

/* Whether o writes the register. */
static inline int lc_writes(const lc_op *o)
{
    return o->rc == 0 && o->kind != LC_GET;
}

/* Whether an operation other than ops[i] read the id ops[i] wrote. */
static inline int lc_id_read(const lc_op *const *ops, size_t n, size_t i)
{
    if (ops[i]->kind != LC_PUT && ops[i]->kind != LC_UPDATE)
        return 0;
    for (size_t j = 0; j < n; j++)
        if (j != i && ops[j]->rc == 0 && (ops[j]->kind == LC_GET || ops[j]->kind == LC_UPDATE) &&
            !ops[j]->blind && ops[j]->seen == ops[i]->arg)
            return 1;
    return 0;
}

/* Whether deleting ops[i] keeps every linearizable history linearizable,
 * so that a history still failing without it proves the original fails.
 * True for an operation that writes nothing (deleting a read removes a
 * constraint and nothing else), and for a write that a later blind write
 * overwrites before anything could read it: some put (or blind operation)
 * p begins after the write responded, and no other remaining operation
 * that reads overlaps the span from the write's invocation to p's response
 * (in any linearization, everything between the write and p lies in that
 * span).  "Later" may also be the end of the history. */
static inline int lc_sound_to_delete(const lc_op *const *ops, size_t n, size_t i)
{
    const lc_op *w = ops[i];
    if (!lc_writes(w))
        return 1;
    if (lc_id_read(ops, n, i))
        return 0; /* sound, but the witness would not say where the id came from */
    for (size_t pi = 0; pi <= n; pi++) {
        const lc_op *p = pi < n ? ops[pi] : NULL; /* NULL: the end of time */
        if (p && (pi == i || !lc_writes(p) || lc_observes(p) || p->inv <= w->res))
            continue;
        uint64_t until = p ? p->res : UINT64_MAX;
        int overwritten_unread = 1;
        for (size_t q = 0; q < n && overwritten_unread; q++)
            if (q != i && lc_observes(ops[q]) && ops[q]->res > w->inv && ops[q]->inv < until)
                overwritten_unread = 0;
        if (overwritten_unread)
            return 1;
    }
    return 0;
}

/* Tries to take ops[i] out of a failing ops[0..*n); keeps it out if the rest
 * still fails. */
static inline int lc_try_delete(const lc_op **ops, size_t *n, size_t i, int64_t initial)
{
    const lc_op *o = ops[i];
    if (!lc_sound_to_delete(ops, *n, i))
        return 0;
    memmove(&ops[i], &ops[i + 1], (*n - i - 1) * sizeof *ops);
    if (lc_search(ops, *n - 1, initial) == LC_VIOLATION) {
        (*n)--;
        return 1;
    }
    memmove(&ops[i + 1], &ops[i], (*n - i - 1) * sizeof *ops);
    ops[i] = o;
    return 0;
}

/* Shrinks a failing history ops[0..*n) in place to a witness.  The
 * operations are copies the shrinking may change (ops[i] points into
 * copies[]).  Two moves, each sound (it cannot make a linearizable history
 * fail), each kept only if the history still fails, repeated until neither
 * applies: deleting an operation (lc_sound_to_delete), and making an update
 * or a del blind, which drops what it read and keeps what it wrote (fewer
 * constraints), so that the writes before it may go too. */
static inline void lc_shrink_copies(const lc_op **ops, size_t *n, lc_op *copies, int64_t initial)
{
    (void)copies;
    int changed = 1;
    while (changed) {
        changed = 0;
        /* Reads first: deleting them frees the writes they pinned. */
        for (int writes_too = 0; writes_too < 2; writes_too++)
            for (size_t i = *n; i-- > 0;)
                if ((writes_too || !lc_writes(ops[i])) && lc_try_delete(ops, n, i, initial))
                    changed = 1;
        for (size_t i = *n; i-- > 0;) {
            lc_op *o = (lc_op *)ops[i]; /* a copy: see above */
            if (!lc_observes(o) || !lc_writes(o))
                continue;
            o->blind = 1;
            if (lc_search(ops, *n, initial) == LC_VIOLATION)
                changed = 1;
            else
                o->blind = 0;
        }
    }
}

/* Shrinks a failing ops[0..*n) in place to a witness (see the file
 * comment).  The caller's operations are not changed: ops[] is repointed to
 * copies, which the caller frees with free(*copies). */
static inline int lc_shrink(const lc_op **ops, size_t *n, int64_t initial, lc_op **copies)
{
    *copies = malloc((*n ? *n : 1) * sizeof **copies);
    if (!*copies)
        return 0;
    for (size_t i = 0; i < *n; i++) {
        (*copies)[i] = *ops[i];
        ops[i] = &(*copies)[i];
    }
    /* A read of an id no write produced (a torn value, or a value never
     * written) fails on its own: it is the whole witness. */
    for (size_t i = 0; i < *n; i++) {
        const lc_op *r = ops[i];
        int reads_id = lc_observes(r) && r->rc == 0 &&
                       (r->kind == LC_GET || r->kind == LC_UPDATE) && r->seen != LC_ABSENT &&
                       r->seen != initial;
        int written = 0;
        for (size_t j = 0; j < *n && reads_id && !written; j++)
            written = lc_writes(ops[j]) && ops[j]->kind != LC_DEL && ops[j]->arg == r->seen;
        if (reads_id && !written) {
            ops[0] = r;
            *n = 1;
            return 1;
        }
    }
    lc_shrink_copies(ops, n, *copies, initial);
    return 1;
}

/* Checks one key's history (ops of that key only, in any order).  On a
 * violation prints the key, the history length and a minimal witness to
 * `out` (if not NULL). */
static inline int lc_check_key(const lc_op *const *ops, size_t n, int key, int64_t initial,
                               FILE *out)
{
    int verdict = lc_search(ops, n, initial);
    if (verdict == LC_OK || !out)
        return verdict;
    if (verdict == LC_GAVE_UP) {
        fprintf(out, "  key %d: gave up after %llu search steps on %zu operations\n", key,
                (unsigned long long)lc_step_budget, n);
        return verdict;
    }
    const lc_op **witness = malloc((n ? n : 1) * sizeof *witness);
    lc_op *copies = NULL;
    if (!witness)
        return verdict;
    memcpy(witness, ops, n * sizeof *ops);
    size_t w = n;
    if (!lc_shrink(witness, &w, initial, &copies)) {
        free(witness);
        return verdict;
    }
    for (size_t i = 1; i < w; i++) /* in invocation order: a few operations */
        for (size_t j = i; j > 0 && witness[j]->inv < witness[j - 1]->inv; j--) {
            const lc_op *o = witness[j];
            witness[j] = witness[j - 1];
            witness[j - 1] = o;
        }
    uint64_t t0 = w ? witness[0]->inv : 0;
    fprintf(out, "  key %d is not linearizable (%zu operations, starting ", key, n);
    lc_print_id(out, initial);
    fprintf(out, "); a minimal witness of %zu:\n", w);
    for (size_t i = 0; i < w; i++)
        lc_print_op(out, witness[i], t0);
    free(witness);
    free(copies);
    return verdict;
}

/* Keys of one history whose witnesses are printed; the others are counted. */
#define LC_REPORTED_KEYS 2

/* Checks a whole history over keys 0 .. keys - 1, key k starting in state
 * initial[k] (NULL: all absent).  Returns the worst verdict of any key and
 * reports the first LC_REPORTED_KEYS keys that are not LC_OK, then how many
 * more there are. */
static inline int lc_check(const lc_op *ops, size_t n, int keys, const int64_t *initial, FILE *out)
{
    const lc_op **of_key = malloc((n ? n : 1) * sizeof *of_key);
    if (!of_key)
        return LC_GAVE_UP;
    int worst = LC_OK, failed = 0;
    for (int k = 0; k < keys; k++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (ops[i].key == k)
                of_key[m++] = &ops[i];
        int v = lc_check_key(of_key, m, k, initial ? initial[k] : LC_ABSENT,
                             failed < LC_REPORTED_KEYS ? out : NULL);
        failed += v != LC_OK;
        worst = v > worst ? v : worst;
    }
    if (out && failed > LC_REPORTED_KEYS)
        fprintf(out, "  and %d more keys not linearizable\n", failed - LC_REPORTED_KEYS);
    free(of_key);
    return worst;
}

/* ---- Targets ----------------------------------------------------------- */

/* A map under test.  Values are int64_t[value_len] (value_len >= 2).  Each
 * function returns what the map returned.  update writes value and stores
 * in *old the value it replaced (returning 0 and setting *inserted to 1 when
 * the key was absent); it must be atomic for the map to be linearizable. */
typedef struct lc_target {
    const char *name;
    void *ctx;
    size_t value_len;
    int (*put)(void *ctx, int64_t key, const int64_t *value);
    int (*get)(void *ctx, int64_t key, int64_t *out);
    int (*del)(void *ctx, int64_t key);
    int (*update)(void *ctx, int64_t key, const int64_t *value, int64_t *old, int *inserted);
} lc_target;

/* The map key of checked key index k; churn keys are >= 0, so never equal. */
static inline int64_t lc_map_key(int k)
{
    return -1 - (int64_t)k * 1000003;
}

/* ---- The driver -------------------------------------------------------- */

#define LC_MAX_VALUE_LEN 64

typedef struct lc_config {
    int threads;                   /* recording threads, >= 1 */
    int keys;                      /* checked keys, >= 1 */
    int ops_per_round;             /* per thread */
    uint64_t max_ops;              /* stop after this many recorded operations (0: none) */
    double seconds;                /* stop after this long (0: none) */
    int pct_get, pct_put, pct_del; /* the rest are updates (or puts without update) */
    uint64_t seed;
    int churn; /* > 0: a thread grows the map by this many keys and back */
    int stop_at_violation;
    double progress_seconds; /* > 0: print a line of totals this often */
    int jitter;              /* > 0: one call in `jitter` yields the processor after
                                its invocation instant, one after its call, so that
                                operations overlap even on a loaded machine */
} lc_config;

typedef struct lc_stats {
    uint64_t rounds, ops, violations, gave_up;
    uint64_t torn;          /* reads that decoded to LC_TORN */
    uint64_t unexpected_rc; /* calls that returned an error the model does not expect */
    uint64_t churn_ops;
    uint64_t churn_errors; /* churn calls that failed or read a bad value */
    size_t max_key_ops;    /* the longest key history checked */
    uint64_t overlapping;  /* operations that overlapped another on the same
                              key: the ones whose order the map decided */
    double check_seconds;  /* time spent checking (and shrinking witnesses) */
} lc_stats;

typedef struct lc_thread {
    const lc_target *t;
    const lc_config *c;
    struct lc_shared *sh;
    int index;
    uint64_t seq;
    lc_op *ops;
    size_t n;
    uint64_t torn, unexpected_rc;
    pthread_t tid;
} lc_thread;

typedef struct lc_shared {
    atomic_uint_fast64_t clock;
    pthread_barrier_t start, done;
    atomic_int stop; /* read by recorders after the start barrier */
    atomic_int churn_stop;
    atomic_uint_fast64_t arrived; /* recorders that have started, all rounds */
} lc_shared;

static inline uint64_t lc_tick(lc_shared *sh)
{
    return atomic_fetch_add_explicit(&sh->clock, 1, memory_order_seq_cst);
}

static inline void lc_one_op(lc_thread *th, uint64_t *rng)
{
    const lc_target *t = th->t;
    const lc_config *c = th->c;
    int64_t value[LC_MAX_VALUE_LEN];
    *rng = lc_mix(*rng + 0x9e3779b97f4a7c15ull);
    int k = (int)(*rng % (uint64_t)c->keys);
    int64_t key = lc_map_key(k);
    int dice = (int)((*rng >> 32) % 100);
    lc_op o = {.thread = th->index, .key = k};
    if (dice < c->pct_get)
        o.kind = LC_GET;
    else if (dice < c->pct_get + c->pct_put)
        o.kind = LC_PUT;
    else if (dice < c->pct_get + c->pct_put + c->pct_del)
        o.kind = LC_DEL;
    else
        o.kind = t->update ? LC_UPDATE : LC_PUT;
    if (o.kind == LC_PUT || o.kind == LC_UPDATE) {
        o.arg = ((int64_t)(th->index + 1) << LC_ID_SHIFT) | (int64_t)++th->seq;
        lc_value_fill(value, t->value_len, key, o.arg);
    }
    int64_t old[LC_MAX_VALUE_LEN];
    int inserted = 0;
    o.inv = lc_tick(th->sh);
    if (c->jitter > 0 && (*rng >> 40) % (uint64_t)c->jitter == 0)
        sched_yield();
    switch (o.kind) {
    case LC_PUT:
        o.rc = t->put(t->ctx, key, value);
        break;
    case LC_GET:
        o.rc = t->get(t->ctx, key, value);
        break;
    case LC_DEL:
        o.rc = t->del(t->ctx, key);
        break;
    case LC_UPDATE:
        o.rc = t->update(t->ctx, key, value, old, &inserted);
        break;
    }
    if (c->jitter > 0 && (*rng >> 48) % (uint64_t)c->jitter == 0)
        sched_yield();
    o.res = lc_tick(th->sh);
    if (o.kind == LC_GET && o.rc == 0)
        o.seen = lc_value_id(value, t->value_len, key);
    if (o.kind == LC_UPDATE && o.rc == 0)
        o.seen = inserted ? LC_ABSENT : lc_value_id(old, t->value_len, key);
    if (o.seen == LC_TORN)
        th->torn++;
    if (!lc_expected_rc(&o))
        th->unexpected_rc++;
    th->ops[th->n++] = o;
}

static inline void *lc_recorder_main(void *arg)
{
    lc_thread *th = arg;
    uint64_t rng = th->c->seed * 0x100000001b3ull + (uint64_t)th->index * 0x632be59bd9b4e019ull;
    for (uint64_t round = 1;; round++) {
        pthread_barrier_wait(&th->sh->start);
        if (atomic_load(&th->sh->stop))
            break;
        /* Leaving a barrier takes a while: wait until every recorder runs,
         * or the first would be done before the last began. */
        atomic_fetch_add(&th->sh->arrived, 1);
        while (atomic_load(&th->sh->arrived) < round * (uint64_t)th->c->threads)
            sched_yield();
        th->n = 0;
        for (int i = 0; i < th->c->ops_per_round; i++)
            lc_one_op(th, &rng);
        pthread_barrier_wait(&th->sh->done);
    }
    return NULL;
}

typedef struct lc_churn {
    const lc_target *t;
    const lc_config *c;
    lc_shared *sh;
    uint64_t ops, errors;
    pthread_t tid;
} lc_churn;

/* Grows the map by c->churn keys, reading some back, then deletes them;
 * again and again, so that the checked keys' segments split and merge. */
static inline void *lc_churn_main(void *arg)
{
    lc_churn *ch = arg;
    const lc_target *t = ch->t;
    int64_t value[LC_MAX_VALUE_LEN];
    int64_t id = 1;
    while (!atomic_load_explicit(&ch->sh->churn_stop, memory_order_relaxed)) {
        for (int64_t k = 0; k < ch->c->churn; k++) {
            lc_value_fill(value, t->value_len, k, id + k);
            if (t->put(t->ctx, k, value) != 0)
                ch->errors++;
            if (k % 7 == 0 && (t->get(t->ctx, k / 2, value) != 0 ||
                               lc_value_id(value, t->value_len, k / 2) != id + k / 2))
                ch->errors++;
            if (++ch->ops % 256 == 0)
                sched_yield(); /* leave the recorders their share */
        }
        for (int64_t k = 0; k < ch->c->churn; k++) {
            if (t->del(t->ctx, k) != 0)
                ch->errors++;
            if (++ch->ops % 256 == 0)
                sched_yield();
        }
        id += ch->c->churn;
    }
    return NULL;
}

/* How many of ops[0..n) overlap in time another operation on the same key. */
static inline uint64_t lc_count_overlapping(const lc_op *ops, size_t n)
{
    uint64_t overlapping = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (j != i && ops[j].key == ops[i].key && ops[j].inv < ops[i].res &&
                ops[i].inv < ops[j].res) {
                overlapping++;
                break;
            }
    return overlapping;
}

static inline double lc_seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs rounds against t until c->max_ops or c->seconds, checking each.
 * The checked keys must be absent when it starts.  Reports violations to
 * `out` and returns the worst verdict (LC_OK, LC_VIOLATION, LC_GAVE_UP);
 * torn values and unexpected errors are in *st (and make rounds fail too). */
static inline int lc_run(const lc_target *t, const lc_config *c, lc_stats *st, FILE *out)
{
    memset(st, 0, sizeof *st);
    if (c->threads < 1 || c->keys < 1 || c->ops_per_round < 1 || t->value_len < 2 ||
        t->value_len > LC_MAX_VALUE_LEN)
        return LC_GAVE_UP;
    lc_shared sh;
    memset(&sh, 0, sizeof sh);
    atomic_init(&sh.clock, 1);
    atomic_init(&sh.stop, 0);
    atomic_init(&sh.churn_stop, 0);
    atomic_init(&sh.arrived, 0);
    pthread_barrier_init(&sh.start, NULL, (unsigned)c->threads + 1);
    pthread_barrier_init(&sh.done, NULL, (unsigned)c->threads + 1);
    size_t round_ops = (size_t)c->threads * (size_t)c->ops_per_round + (size_t)c->keys;
    lc_op *history = malloc(round_ops * sizeof *history);
    lc_thread *th = calloc((size_t)c->threads, sizeof *th);
    int64_t *initial = calloc((size_t)c->keys, sizeof *initial);
    size_t *count = calloc((size_t)c->keys, sizeof *count);
    if (!history || !th || !initial || !count) {
        free(history);
        free(th);
        free(initial);
        free(count);
        return LC_GAVE_UP;
    }
    for (int i = 0; i < c->threads; i++) {
        th[i] = (lc_thread){.t = t, .c = c, .sh = &sh, .index = i};
        th[i].ops = malloc((size_t)c->ops_per_round * sizeof *th[i].ops);
        pthread_create(&th[i].tid, NULL, lc_recorder_main, &th[i]);
    }
    lc_churn churn = {.t = t, .c = c, .sh = &sh};
    if (c->churn > 0)
        pthread_create(&churn.tid, NULL, lc_churn_main, &churn);

    int worst = LC_OK;
    double started = lc_seconds_now(), last_progress = started;
    int64_t value[LC_MAX_VALUE_LEN];
    for (;;) {
        pthread_barrier_wait(&sh.start);
        pthread_barrier_wait(&sh.done);
        size_t n = 0;
        for (int i = 0; i < c->threads; i++) {
            memcpy(history + n, th[i].ops, th[i].n * sizeof *history);
            n += th[i].n;
        }
        /* Every recorder is parked at the barrier: read each key alone. */
        for (int k = 0; k < c->keys; k++) {
            lc_op o = {.thread = -1, .kind = LC_GET, .key = k};
            o.inv = lc_tick(&sh);
            o.rc = t->get(t->ctx, lc_map_key(k), value);
            o.res = lc_tick(&sh);
            if (o.rc == 0)
                o.seen = lc_value_id(value, t->value_len, lc_map_key(k));
            if (!lc_expected_rc(&o))
                st->unexpected_rc++;
            if (o.seen == LC_TORN)
                st->torn++;
            history[n++] = o;
        }
        memset(count, 0, (size_t)c->keys * sizeof *count);
        for (size_t i = 0; i < n; i++)
            count[history[i].key]++;
        st->overlapping += lc_count_overlapping(history, n);
        for (int k = 0; k < c->keys; k++)
            st->max_key_ops = count[k] > st->max_key_ops ? count[k] : st->max_key_ops;
        double check_started = lc_seconds_now();
        int v = lc_check(history, n, c->keys, initial, out);
        st->check_seconds += lc_seconds_now() - check_started;
        if (v == LC_VIOLATION)
            st->violations++;
        if (v == LC_GAVE_UP)
            st->gave_up++;
        worst = v > worst ? v : worst;
        if (v != LC_OK && out)
            fprintf(out, "  (%s, round %llu)\n", t->name, (unsigned long long)st->rounds);
        /* The round's closing reads are its last operations: the next round
         * starts from what they saw. */
        for (size_t i = n - (size_t)c->keys; i < n; i++)
            initial[history[i].key] = history[i].rc == 0 ? history[i].seen : LC_ABSENT;
        st->rounds++;
        st->ops += n;
        if (c->progress_seconds > 0 && out &&
            lc_seconds_now() - last_progress >= c->progress_seconds) {
            last_progress = lc_seconds_now();
            fprintf(out, "  %s: %.0f s, %llu operations, %llu rounds, %llu violations\n", t->name,
                    last_progress - started, (unsigned long long)st->ops,
                    (unsigned long long)st->rounds, (unsigned long long)st->violations);
            fflush(out);
        }
        int done = (c->max_ops && st->ops >= c->max_ops) ||
                   (c->seconds > 0 && lc_seconds_now() - started >= c->seconds) ||
                   (c->stop_at_violation && worst != LC_OK);
        if (done) {
            atomic_store(&sh.stop, 1);
            pthread_barrier_wait(&sh.start);
            break;
        }
    }
    for (int i = 0; i < c->threads; i++) {
        pthread_join(th[i].tid, NULL);
        st->torn += th[i].torn;
        st->unexpected_rc += th[i].unexpected_rc;
        free(th[i].ops);
    }
    if (c->churn > 0) {
        atomic_store(&sh.churn_stop, 1);
        pthread_join(churn.tid, NULL);
        st->churn_ops = churn.ops;
        st->churn_errors = churn.errors;
    }
    pthread_barrier_destroy(&sh.start);
    pthread_barrier_destroy(&sh.done);
    free(history);
    free(th);
    free(initial);
    free(count);
    return worst;
}

#endif /* SM_LINCHECK_H */
