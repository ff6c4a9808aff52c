/*
 * bench_pool.c - the pool workloads (bench/README.md) on one 128 B array
 * (int64_t[16]), for safemap's pool at each check level and for the malloc
 * this executable is linked with.  One executable per allocator
 * (bench_pool_glibc, _jemalloc, _mimalloc, _tcmalloc): linking the allocator
 * replaces malloc/free (and the pool's own slab allocations) process-wide.
 *
 * Workloads, each reported as ns per Get+Put (or malloc+free) pair:
 *   pair      Get then Put of one array, in a loop (LIFO: the same array
 *             comes back every time);
 *   ring1024  a ring of 1024 arrays: each step puts back the oldest and
 *             takes a new one;
 *   xthread   one thread gets arrays and hands them through a lock-free
 *             single-producer ring to another thread, which puts them back.
 *
 * Output: one record per figure, `pool <workload> <source> <ns>`, the fastest
 * of -r runs of -n pairs each, where source is sm-off, sm-cheap, sm-full or
 * this build's allocator name.  Short runs, many of them: a run of 2M pairs
 * fits in a scheduler slice, so the fastest is the machine's real speed
 * even when other work shares the cores.
 *
 * -t TAG appends "@TAG" to the pool's source names: run.sh measures the cost
 * of call-site sampling by running sm-cheap under several
 * SAFEMAP_DEBUG=sample=N settings (read once per process) and tags each.
 * -w WORKLOADS runs only those (pair,ring1024,xthread; default all).
 * Usage: bench_pool [-n PAIRS] [-r REPS] [-s SOURCES] [-t TAG] [-w WORKLOADS].
 */
#define _POSIX_C_SOURCE 200809L
#include "safemap.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef SM_BENCH_ALLOCATOR
#define SM_BENCH_ALLOCATOR "glibc"
#endif

enum { LEN = 16, ARRAY_BYTES = LEN * sizeof(int64_t), RING = 1024, XRING = 4096 };

/* Keeps the compiler from proving a malloc/free pair dead. */
static inline void escape(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* A source of arrays: the pool at one level, or malloc. */
typedef struct source {
    const char *name;
    sm_pool *pool; /* NULL: malloc */
} source;

static inline void *src_get(const source *s)
{
    if (s->pool)
        return sm_pool_get(s->pool);
    return malloc(ARRAY_BYTES);
}

static inline void src_put(const source *s, void *a)
{
    if (s->pool)
        sm_pool_put(s->pool, a);
    else
        free(a);
}

static double run_pair(const source *s, uint64_t n)
{
    double t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        int64_t *a = src_get(s);
        a[0] = (int64_t)i;
        escape(a);
        src_put(s, a);
    }
    return (now_ns() - t0) / (double)n;
}

static double run_ring(const source *s, uint64_t n)
{
    void *ring[RING];
    for (int i = 0; i < RING; i++)
        ring[i] = src_get(s);
    double t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        size_t k = i % RING;
        src_put(s, ring[k]);
        int64_t *a = src_get(s);
        a[0] = (int64_t)i;
        escape(a);
        ring[k] = a;
    }
    double ns = (now_ns() - t0) / (double)n;
    for (int i = 0; i < RING; i++)
        src_put(s, ring[i]);
    return ns;
}

/* ---- xthread: a single-producer single-consumer ring ------------------- */

typedef struct xring {
    _Alignas(64) atomic_size_t head; /* consumer */
    _Alignas(64) atomic_size_t tail; /* producer */
    _Alignas(64) void *slot[XRING];
    const source *src;
    uint64_t n;
} xring;

static void *x_consumer(void *arg)
{
    xring *r = arg;
    size_t head = 0;
    for (uint64_t i = 0; i < r->n; i++) {
        while (atomic_load_explicit(&r->tail, memory_order_acquire) == head)
            ;
        void *a = r->slot[head % XRING];
        atomic_store_explicit(&r->head, ++head, memory_order_release);
        src_put(r->src, a);
    }
    return NULL;
}

static double run_xthread(const source *s, uint64_t n)
{
    xring *r = aligned_alloc(64, sizeof *r);
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    r->src = s;
    r->n = n;
    pthread_t t;
    double t0 = now_ns();
    pthread_create(&t, NULL, x_consumer, r);
    size_t tail = 0;
    for (uint64_t i = 0; i < n; i++) {
        int64_t *a = src_get(s);
        a[0] = (int64_t)i;
        while (tail - atomic_load_explicit(&r->head, memory_order_acquire) == XRING)
            ;
        r->slot[tail % XRING] = a;
        atomic_store_explicit(&r->tail, ++tail, memory_order_release);
    }
    pthread_join(t, NULL);
    double ns = (now_ns() - t0) / (double)n;
    free(r);
    return ns;
}

static double fastest_of(double (*fn)(const source *, uint64_t), const source *s, uint64_t n,
                         int reps)
{
    fn(s, n / 10 + 1); /* warm: the first slab, this thread's cache, page faults */
    double best = fn(s, n);
    for (int i = 1; i < reps; i++) {
        double t = fn(s, n);
        best = t < best ? t : best;
    }
    return best;
}

static int wanted(const char *list, const char *name)
{
    if (!list)
        return 1;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t n = 2000000;
    int reps = 15;
    const char *only = NULL, *tag = NULL, *work = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-n"))
            n = (uint64_t)strtod(argv[i + 1], NULL);
        else if (!strcmp(argv[i], "-r"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-s"))
            only = argv[i + 1];
        else if (!strcmp(argv[i], "-t"))
            tag = argv[i + 1];
        else if (!strcmp(argv[i], "-w"))
            work = argv[i + 1];
        else {
            fprintf(stderr, "usage: bench_pool [-n PAIRS] [-r REPS] [-s sm-cheap,glibc,...] "
                            "[-t TAG] [-w pair,ring1024,xthread]\n");
            return 2;
        }
    }
    if (reps < 1)
        reps = 1;
    struct {
        const char *name;
        int check;
    } levels[] = {
        {"sm-off", SM_CHECK_OFF}, {"sm-cheap", SM_CHECK_CHEAP}, {"sm-full", SM_CHECK_FULL}};
    source srcs[4];
    char names[3][64];
    int ns = 0;
    for (int i = 0; i < 3; i++) {
        if (!wanted(only, levels[i].name))
            continue;
        sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, LEN), .check = levels[i].check};
        sm_pool *p;
        if (sm_pool_new(&p, &o) != 0) {
            fprintf(stderr, "bench_pool: sm_pool_new failed\n");
            return 1;
        }
        snprintf(names[i], sizeof names[i], "%s%s%s", levels[i].name, tag ? "@" : "",
                 tag ? tag : "");
        srcs[ns++] = (source){names[i], p};
    }
    if (wanted(only, SM_BENCH_ALLOCATOR))
        srcs[ns++] = (source){SM_BENCH_ALLOCATOR, NULL};

    printf("# bench_pool: int64_t[16] (128 B), fastest of %d runs of %llu pairs\n", reps,
           (unsigned long long)n);
    for (int i = 0; i < ns; i++) {
        /* FULL locks, poisons and checks 128 B and records the call stack
         * (backtrace(), about a microsecond) per call: a hundredth of the work. */
        uint64_t m = srcs[i].pool && !strncmp(srcs[i].name, "sm-full", 7) ? n / 100 : n;
        if (wanted(work, "pair"))
            printf("pool pair %s %.2f\n", srcs[i].name, fastest_of(run_pair, &srcs[i], m, reps));
        if (wanted(work, "ring1024"))
            printf("pool ring1024 %s %.2f\n", srcs[i].name,
                   fastest_of(run_ring, &srcs[i], m, reps));
        if (wanted(work, "xthread"))
            printf("pool xthread %s %.2f\n", srcs[i].name,
                   fastest_of(run_xthread, &srcs[i], m / 4, reps));
        fflush(stdout);
    }
    for (int i = 0; i < ns; i++)
        sm_pool_free(srcs[i].pool);
    return 0;
}
