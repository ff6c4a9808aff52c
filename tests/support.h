/*
 * support.h - instruments the tests share: a counting allocator that can fail
 * on demand, a handler that records misuse events, and a deterministic
 * random number generator.
 *
 * Counting allocator.  cnt_install() makes every allocation of the library
 * go through cnt_alloc(), which keeps the bytes and blocks outstanding, the
 * peak, and the number of allocation calls.  Each block carries a small
 * header with its size, so cnt_free() can check the library's promise that
 * free receives the size it asked for.  Fresh memory is filled with 0xA5:
 * the library never asks for zeroed memory and must not behave as if it got
 * it.  Fault injection follows SQLite's test_malloc.c: cnt.fail_at = N makes
 * the Nth allocation call from now fail; with cnt.fail_persist every later
 * one fails too.
 *
 * Event log.  ev_install() installs a handler that copies every event
 * (its strings live only during the call) and returns, so the call that
 * raised it returns the code.  It is thread-safe.
 */
#ifndef SM_TEST_SUPPORT_H
#define SM_TEST_SUPPORT_H

#include "safemap.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Random numbers ---------------------------------------------------- */

static inline uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

typedef struct rng {
    uint64_t state;
} rng;

static inline uint64_t rng_next(rng *r)
{
    r->state += 0x9e3779b97f4a7c15ull;
    uint64_t x = r->state;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Uniform in [0, n); n > 0.  The modulo bias is irrelevant here. */
static inline uint64_t rng_below(rng *r, uint64_t n)
{
    return rng_next(r) % n;
}

/* ---- Counting allocator ------------------------------------------------ */

#define CNT_FILL 0xA5
#define CNT_MAGIC 0x5AFE3A9C0FFEE000ull

typedef struct cnt_state {
    atomic_size_t bytes, blocks, peak_bytes;
    atomic_size_t allocs;        /* alloc calls, successful or not */
    atomic_size_t frees;         /* free calls */
    atomic_size_t failures;      /* alloc calls that were made to fail */
    atomic_size_t size_mismatch; /* frees whose size differs from the alloc */
    atomic_size_t bad_align;     /* align not a power of two */
    atomic_size_t fail_at;       /* 0: never; N: the Nth call from arming fails */
    atomic_int fail_persist;     /* after fail_at, every call fails */
    atomic_size_t armed_at;      /* allocs when fail_at was set */
} cnt_state;

static cnt_state cnt;

typedef struct cnt_header {
    size_t size;
    size_t offset; /* from the start of the underlying block to the user pointer */
    uint64_t magic;
} cnt_header;

static inline void *cnt_alloc(size_t size, size_t align, void *ctx)
{
    (void)ctx;
    size_t call = atomic_fetch_add(&cnt.allocs, 1) + 1;
    size_t fail_at = atomic_load(&cnt.fail_at);
    if (fail_at) {
        size_t nth = call - atomic_load(&cnt.armed_at);
        if (nth == fail_at || (nth > fail_at && atomic_load(&cnt.fail_persist))) {
            atomic_fetch_add(&cnt.failures, 1);
            return NULL;
        }
    }
    if (align == 0 || (align & (align - 1)) != 0) {
        atomic_fetch_add(&cnt.bad_align, 1);
        return NULL;
    }
    if (align < _Alignof(max_align_t))
        align = _Alignof(max_align_t);
    /* The header sits just below the user pointer, which keeps its alignment. */
    size_t offset = (sizeof(cnt_header) + align - 1) & ~(align - 1);
    size_t total = (offset + size + align - 1) & ~(align - 1);
    unsigned char *block = aligned_alloc(align, total);
    if (!block)
        return NULL;
    unsigned char *p = block + offset;
    cnt_header h = {size, offset, CNT_MAGIC};
    memcpy(p - sizeof h, &h, sizeof h);
    memset(p, CNT_FILL, size);
    size_t now = atomic_fetch_add(&cnt.bytes, size) + size;
    atomic_fetch_add(&cnt.blocks, 1);
    size_t peak = atomic_load(&cnt.peak_bytes);
    while (now > peak && !atomic_compare_exchange_weak(&cnt.peak_bytes, &peak, now))
        ;
    return p;
}

static inline void cnt_free(void *ptr, size_t size, void *ctx)
{
    (void)ctx;
    if (!ptr)
        return;
    unsigned char *p = ptr;
    cnt_header h;
    memcpy(&h, p - sizeof h, sizeof h);
    if (h.magic != CNT_MAGIC || h.size != size)
        atomic_fetch_add(&cnt.size_mismatch, 1);
    atomic_fetch_sub(&cnt.bytes, h.size);
    atomic_fetch_sub(&cnt.blocks, 1);
    atomic_fetch_add(&cnt.frees, 1);
    free(p - h.offset);
}

/* Installs the counting allocator with fresh counters.  Only while the
 * library holds no memory (see sm_set_allocator). */
static inline void cnt_install(void)
{
    atomic_store(&cnt.bytes, 0);
    atomic_store(&cnt.blocks, 0);
    atomic_store(&cnt.peak_bytes, 0);
    atomic_store(&cnt.allocs, 0);
    atomic_store(&cnt.frees, 0);
    atomic_store(&cnt.failures, 0);
    atomic_store(&cnt.size_mismatch, 0);
    atomic_store(&cnt.bad_align, 0);
    atomic_store(&cnt.fail_at, 0);
    atomic_store(&cnt.fail_persist, 0);
    atomic_store(&cnt.armed_at, 0);
    sm_allocator a = {cnt_alloc, cnt_free, NULL};
    sm_set_allocator(&a);
}

static inline void cnt_uninstall(void)
{
    sm_set_allocator(NULL);
}

/* Fails the nth allocation call from now (n >= 1); persist: and all after. */
static inline void cnt_fail_nth(size_t n, int persist)
{
    atomic_store(&cnt.armed_at, atomic_load(&cnt.allocs));
    atomic_store(&cnt.fail_persist, persist);
    atomic_store(&cnt.fail_at, n);
}

static inline void cnt_fail_never(void)
{
    atomic_store(&cnt.fail_at, 0);
    atomic_store(&cnt.fail_persist, 0);
}

static inline size_t cnt_bytes(void)
{
    return atomic_load(&cnt.bytes);
}

static inline size_t cnt_blocks(void)
{
    return atomic_load(&cnt.blocks);
}

/* ---- Event log --------------------------------------------------------- */

typedef struct ev_record {
    int code;
    char what[64];
    const void *object;
    const void *ptr;
    char detail[256];
} ev_record;

typedef struct ev_log {
    pthread_mutex_t mu;
    int count;
    ev_record first, last;
} ev_log;

static ev_log evlog = {
    PTHREAD_MUTEX_INITIALIZER, 0, {0, "", NULL, NULL, ""}, {0, "", NULL, NULL, ""}};

static inline void ev_copy(ev_record *r, const sm_event *ev)
{
    r->code = ev->code;
    snprintf(r->what, sizeof r->what, "%s", ev->what ? ev->what : "(null)");
    r->object = ev->object;
    r->ptr = ev->ptr;
    snprintf(r->detail, sizeof r->detail, "%s", ev->detail ? ev->detail : "(null)");
}

static inline void ev_handler(const sm_event *ev, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&evlog.mu);
    if (evlog.count == 0)
        ev_copy(&evlog.first, ev);
    ev_copy(&evlog.last, ev);
    evlog.count++;
    pthread_mutex_unlock(&evlog.mu);
}

static inline void ev_reset(void)
{
    pthread_mutex_lock(&evlog.mu);
    evlog.count = 0;
    memset(&evlog.first, 0, sizeof evlog.first);
    memset(&evlog.last, 0, sizeof evlog.last);
    pthread_mutex_unlock(&evlog.mu);
}

/* Installs the recording handler with an empty log. */
static inline void ev_install(void)
{
    ev_reset();
    sm_set_handler(ev_handler, NULL);
}

static inline int ev_count(void)
{
    pthread_mutex_lock(&evlog.mu);
    int n = evlog.count;
    pthread_mutex_unlock(&evlog.mu);
    return n;
}

/* ---- Writes behind the sanitizers' backs ------------------------------ */

/* The library's own detection (ASan, valgrind's client requests), so
 * that tests and library never disagree about which tool is there. */
#include "../src/sanitize.h"
#if SM_HAVE_ASAN
#define T_ASAN 1
#endif

/* Writes n bytes at a + off behind the sanitizers' backs, as a stray DMA or
 * an uninstrumented library would: the pool's own poison check must find it.
 * (test_pool_poison.c shows the sanitizers catching the plain write.) */
static inline void scribble_at(void *a, size_t off, size_t n)
{
    unsigned char *b = (unsigned char *)a + off;
#ifdef T_ASAN
    ASAN_UNPOISON_MEMORY_REGION(b, n);
#endif
#ifdef VALGRIND_MAKE_MEM_DEFINED
    VALGRIND_MAKE_MEM_DEFINED(b, n);
#endif
    memset(b, 0x2A, n);
#ifdef T_ASAN
    ASAN_POISON_MEMORY_REGION(b, n);
#endif
#ifdef VALGRIND_MAKE_MEM_NOACCESS
    VALGRIND_MAKE_MEM_NOACCESS(b, n);
#endif
}

#endif /* SM_TEST_SUPPORT_H */
