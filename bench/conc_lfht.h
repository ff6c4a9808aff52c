/*
 * conc_lfht.h - liburcu's lock-free resizable hash table (rculfhash) with
 * int64_t keys and int64_t[8] values, behind a small C interface that
 * bench_conc.cpp drives like every other concurrent map.
 *
 * One implementation (conc_lfht.c) is compiled twice, once per RCU flavour:
 * QSBR (readers cost nothing, every thread must announce quiescent states)
 * and memb (read-side sections are two fenceless stores; grace periods use
 * membarrier).  Each copy has its own prefix, bench_lfht_qsbr_ and
 * bench_lfht_memb_, because liburcu selects the flavour per translation unit.
 *
 * Every thread that touches a table calls thread_online() first and
 * thread_offline() when it is done (liburcu needs its readers registered),
 * and brackets any wait for another thread with wait_begin() / wait_end():
 * a QSBR thread that waits while online holds up every grace period, and
 * a grace period holds liburcu's registry lock, so a thread still
 * registering would wait for the waiter, which waits for it.
 * Values live in nodes that never change once published: put replaces the
 * node and frees the old one after a grace period, so a reader's copy is
 * never torn.
 */
#ifndef SM_BENCH_CONC_LFHT_H
#define SM_BENCH_CONC_LFHT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bench_lfht bench_lfht;

#define BENCH_LFHT_DECLARE(flavour)                                                                \
    bench_lfht *bench_lfht_##flavour##_new(void);                                                  \
    void bench_lfht_##flavour##_free(bench_lfht *t);                                               \
    void bench_lfht_##flavour##_thread_online(void);                                               \
    void bench_lfht_##flavour##_thread_offline(void);                                              \
    void bench_lfht_##flavour##_wait_begin(void);                                                  \
    void bench_lfht_##flavour##_wait_end(void);                                                    \
    int bench_lfht_##flavour##_put(bench_lfht *t, int64_t key, const int64_t value[8]);            \
    int bench_lfht_##flavour##_get(bench_lfht *t, int64_t key, int64_t out[8]);                    \
    int bench_lfht_##flavour##_del(bench_lfht *t, int64_t key);

/* new: an empty table of 4096 buckets that resizes itself (no presizing).  put: inserts or
 * replaces; 0, or -1 when memory runs out.  get: 1 and a copy of the value,
 * or 0 when absent.  del: 1 when it deleted, 0 when absent.  free: deletes
 * everything and waits for the deferred frees; no other thread may use the
 * table. */
BENCH_LFHT_DECLARE(qsbr)
BENCH_LFHT_DECLARE(memb)

#ifdef __cplusplus
}
#endif

#endif
