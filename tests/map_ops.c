/*
 * map_ops.c - one map workload at a time, for counting instructions per
 * operation with callgrind (exact and free of noise, unlike a timer on a
 * shared machine).  Not a test: docs/map.md quotes its counts.
 *
 *   cc -O2 -std=c11 -Iinclude tests/map_ops.c build/gcc/libsafemap.a -lpthread -o map_ops
 *   valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file=/dev/null \
 *       ./map_ops hit 1000000 2>&1 | grep refs
 *
 * Only the named workload is counted (CALLGRIND_TOGGLE_COLLECT around it),
 * and the program prints the operations it did; instructions / operations
 * is the figure.  Workloads, over keys key(i) = splitmix64(i) >> 1 and
 * int64_t[8] values, a map of n entries built first (not counted unless
 * the workload is insert):
 *
 *   insert  n puts into an empty map
 *   hit     OPS lookups of key(r % n), r a splitmix chain; reads v[0] + v[7]
 *   miss    OPS lookups of key(n + i)
 *   churn   OPS rounds of: delete key(i), put key(n + i)
 *
 * Without valgrind it prints nanoseconds per operation as well (rough: one
 * run, wall clock).
 */
#define _POSIX_C_SOURCE 200809L
#include "map_ops.h"
#include "safemap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_TOGGLE_COLLECT
#endif

enum { OPS = 1000000 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: map_ops insert|hit|miss|churn N [off|cheap]\n");
        return 2;
    }
    const char *what = argv[1];
    uint64_t n = strtoull(argv[2], NULL, 10);
    int check = argc > 3 && strcmp(argv[3], "off") == 0 ? SM_CHECK_OFF : SM_CHECK_CHEAP;
    sm_map_opts o = {.layout = SM_LAYOUT(int64_t, 8),
                     .storage = SM_INLINE,
                     .check = check,
                     .fixed_seed = 1,
                     .seed = 42};
    sm_map *m;
    if (sm_map_new(&m, &o))
        return 1;
    int64_t v[8] = {0}, sum = 0;
    int insert = strcmp(what, "insert") == 0;
    double t0 = 0;
    if (insert) {
        CALLGRIND_TOGGLE_COLLECT;
        t0 = now();
    }
    for (uint64_t i = 0; i < n; i++) {
        v[0] = (int64_t)i;
        sm_map_put(m, key_of(i), v);
    }
    uint64_t ops = n;
    if (!insert) {
        CALLGRIND_TOGGLE_COLLECT;
        t0 = now();
        ops = OPS;
        if (strcmp(what, "hit") == 0) {
            uint64_t r = 12345;
            for (uint64_t i = 0; i < ops; i++) {
                r = splitmix64(r);
                const int64_t *p = sm_map_find(m, key_of(r % n));
                sum += p[0] + p[7];
            }
        } else if (strcmp(what, "miss") == 0) {
            for (uint64_t i = 0; i < ops; i++)
                sum += sm_map_find(m, key_of(n + i)) != NULL;
        } else {
            for (uint64_t i = 0; i < ops; i++) {
                sm_map_del(m, key_of(i));
                sm_map_put(m, key_of(n + i), v);
            }
        }
    }
    double t = now() - t0;
    CALLGRIND_TOGGLE_COLLECT;
    printf("%s n=%llu ops=%llu ns/op=%.1f (sum %lld)\n", what, (unsigned long long)n,
           (unsigned long long)ops, t * 1e9 / (double)ops, (long long)sum);
    sm_map_free(m);
    return 0;
}
