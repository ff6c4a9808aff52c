/*
 * epoch.h - read sections and retirement epochs (epoch.c), for the
 * concurrent map.
 *
 * Entering and leaving a read section is the hot path of every read of the
 * concurrent map, so those two are static inline here: a load of the
 * thread's record (initial-exec TLS), a nesting count, and one atomic
 * operation on the record's own cache line.  Everything else, registering
 * a thread and deciding when memory may be freed, is in epoch.c, whose
 * opening explains the scheme.
 */
#ifndef SM_EPOCH_H
#define SM_EPOCH_H

#include "internal.h"

#include <stdatomic.h>

/* One per thread that reads; reused after the thread exits. */
typedef struct ep_rec {
    _Atomic uint64_t epoch; /* 0, or the global epoch seen when the section began */
    unsigned nest;          /* sections open; touched by the owner only */
    _Atomic int in_use;     /* owned by a live thread */
    struct ep_rec *next;    /* registry link; records are never unlinked */
} ep_rec;

/* Initial-exec: a read section costs an %fs-relative load, not a call to
 * __tls_get_addr (the library is loaded with the program, not dlopen'ed
 * late into a process short of static TLS). */
#if defined(__GNUC__)
#define EP_TLS_MODEL __attribute__((tls_model("initial-exec")))
#else
#define EP_TLS_MODEL
#endif

/* The calling thread's record, NULL until its first section. */
extern _Thread_local ep_rec *ep_self EP_TLS_MODEL;
extern _Atomic uint64_t ep_global;

/* The first section of a thread: registers it, then enters.  0 or
 * SM_ENOMEM (no record could be had). */
int ep_enter_first(void);

/* Enters a read section of the calling thread (they nest): until the
 * matching ep_exit(), nothing retired after this point is freed.  0, or
 * SM_ENOMEM on the thread's first section when it cannot be registered. */
static inline int ep_enter(void)
{
    ep_rec *r = ep_self;
    if (SM_UNLIKELY(!r))
        return ep_enter_first();
    if (r->nest++ == 0) {
        /* The exchange is a full barrier: the record is visible before any
         * pointer of the map is read. */
        uint64_t e = atomic_load_explicit(&ep_global, memory_order_relaxed);
        atomic_exchange_explicit(&r->epoch, e, memory_order_seq_cst);
    }
    return 0;
}

static inline void ep_exit(void)
{
    ep_rec *r = ep_self;
    SM_ASSERT(r && r->nest > 0);
    if (--r->nest == 0)
        atomic_store_explicit(&r->epoch, 0, memory_order_release);
}

/* Whether the calling thread is inside a read section. */
static inline bool ep_active(void)
{
    return ep_self && ep_self->nest > 0;
}

/* The epoch to stamp on an object just unlinked (a full barrier first). */
uint64_t ep_stamp(void);
/* Advances the global epoch when every reader has seen it; returns it. */
uint64_t ep_try_advance(void);
/* Whether an object stamped `stamp` may be freed at global epoch `now`. */
bool ep_safe(uint64_t stamp, uint64_t now);
/* Waits until an object stamped `stamp` may be freed.  Never inside a read
 * section of the calling thread (it would wait for itself). */
void ep_wait_grace(uint64_t stamp);

#endif /* SM_EPOCH_H */
