/*
 * epoch.c - epoch-based reclamation: when memory a reader may be looking at
 * can be freed.
 *
 * The concurrent map (cmap.c) lets readers walk its directory and segments
 * without any lock, so a writer that replaces a segment cannot free the old
 * one at once: a reader may be copying out of it.  This file tells the
 * writer when it may.
 *
 * The scheme.  A global epoch counter E only grows.  Each thread that reads
 * owns a record holding 0 (not reading) or the value of E it saw when its
 * current read section began.  A retired object is stamped with E at the
 * moment it became unreachable (after the pointer store that unlinked it).
 * E may advance from e to e+1 only when every record is 0 or e, and:
 *
 *     an object retired at epoch r may be freed once E >= r + 2.
 *
 * Why 2: a reader that can still reach the object began before the unlink,
 * so its record holds r or less, which blocks E from passing r + 1 until
 * that reader leaves.  Once E = r + 2 every reader that holds a record
 * began after E became r + 1, which was after the unlink was visible.
 *
 * Read sections are the hot path: two atomic operations on the thread's own
 * cache line and no shared write.  Writers pay for the epoch: a try to
 * advance walks every record (one per thread that ever read, reused after
 * the thread exits), and happens only when something was retired.
 *
 * Registration is automatic: the first section of a thread takes a free
 * record (or makes one) and a pthread key's destructor gives it back when
 * the thread exits, so a thread that dies inside a section does not block
 * reclamation forever.  Records come from malloc, not from the library's
 * allocator, because they outlive every map: they are kept (and reused) for
 * the life of the process, one 64-byte record per thread that ever read at
 * the same time as others.
 *
 * After fork() only the forking thread exists in the child: a handler
 * releases every other record, or a section open in a vanished thread would
 * hold the child's reclamation forever.
 *
 * Why not liburcu.  The core library depends only on libc and pthreads, and
 * liburcu would be its first outside dependency; its QSBR, memb and signal
 * flavours also need every reader thread registered by hand (a forgotten
 * registration is a silent use-after-free).  What the map needs fits in this
 * file, and a missing registration is impossible by construction.
 *
 * The limbo (a FIFO of retired objects, oldest first) is kept by the caller
 * under its own lock; this file only stamps and releases them.
 */
#include "epoch.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifndef SM_ASSERT
#include <assert.h>
#define SM_ASSERT(c) assert(c)
#endif

enum { EP_FIRST = 2 }; /* the first epoch; 0 marks a record not reading */

/* One record per cache line, so that readers do not share lines. */
typedef union ep_slot {
    ep_rec rec;
    char line[64];
} ep_slot;

_Atomic uint64_t ep_global = EP_FIRST;
static _Atomic(ep_rec *) registry;
_Thread_local ep_rec *ep_self EP_TLS_MODEL;
static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_ok;

/* Runs at thread exit: the record goes back for reuse, reading or not. */
static void ep_thread_exit(void *arg)
{
    ep_rec *r = arg;
    r->nest = 0;
    atomic_store_explicit(&r->epoch, 0, memory_order_release);
    atomic_store_explicit(&r->in_use, 0, memory_order_release);
    ep_self = NULL;
}

/* In the child of fork() only the forking thread lives on: the records of
 * the others, maybe caught inside a read section, are released, or the
 * child's writers would wait for readers that no longer exist. */
static void ep_after_fork_child(void)
{
    for (ep_rec *r = atomic_load_explicit(&registry, memory_order_relaxed); r; r = r->next) {
        if (r == ep_self)
            continue;
        r->nest = 0;
        atomic_store_explicit(&r->epoch, 0, memory_order_relaxed);
        atomic_store_explicit(&r->in_use, 0, memory_order_relaxed);
    }
}

static void ep_key_init(void)
{
    key_ok = pthread_key_create(&exit_key, ep_thread_exit) == 0 &&
             pthread_atfork(NULL, NULL, ep_after_fork_child) == 0;
}

static ep_rec *ep_register(void)
{
    pthread_once(&key_once, ep_key_init);
    if (!key_ok)
        return NULL;
    ep_rec *r;
    for (r = atomic_load_explicit(&registry, memory_order_acquire); r; r = r->next) {
        int idle = 0;
        if (atomic_compare_exchange_strong(&r->in_use, &idle, 1))
            break;
    }
    if (!r) {
        ep_slot *slot = aligned_alloc(sizeof(ep_slot), sizeof(ep_slot));
        if (!slot)
            return NULL;
        memset(slot, 0, sizeof *slot);
        r = &slot->rec;
        atomic_init(&r->epoch, 0);
        atomic_init(&r->in_use, 1);
        r->next = atomic_load_explicit(&registry, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(&registry, &r->next, r, memory_order_release,
                                                      memory_order_relaxed))
            ;
    }
    if (pthread_setspecific(exit_key, r) != 0) {
        atomic_store_explicit(&r->in_use, 0, memory_order_release);
        return NULL;
    }
    ep_self = r;
    return r;
}

int ep_enter_first(void)
{
    if (!ep_register())
        return SM_ENOMEM;
    return ep_enter();
}

uint64_t ep_stamp(void)
{
    /* A read-modify-write is a full barrier: the unlink the caller just
     * stored comes before the epoch read here, in every thread's view. */
    return atomic_fetch_add_explicit(&ep_global, 0, memory_order_seq_cst);
}

uint64_t ep_try_advance(void)
{
    uint64_t e = atomic_fetch_add_explicit(&ep_global, 0, memory_order_seq_cst);
    for (ep_rec *r = atomic_load_explicit(&registry, memory_order_acquire); r; r = r->next) {
        uint64_t seen = atomic_load_explicit(&r->epoch, memory_order_seq_cst);
        if (seen != 0 && seen != e)
            return e;
    }
    if (atomic_compare_exchange_strong_explicit(&ep_global, &e, e + 1, memory_order_seq_cst,
                                                memory_order_seq_cst))
        return e + 1;
    return e; /* another thread advanced it (e now holds the new value) */
}

bool ep_safe(uint64_t stamp, uint64_t now)
{
    return now >= stamp + 2;
}

void ep_wait_grace(uint64_t stamp)
{
    SM_ASSERT(!ep_active());
    while (!ep_safe(stamp, ep_try_advance()))
        sched_yield();
}
