/*
 * alloc.c - the one door to memory.
 *
 * Every byte the library takes comes from alc_alloc() and goes back through
 * alc_free(), which forward to the allocator installed with
 * sm_set_allocator() (by default aligned_alloc/free).  Keeping one door
 * makes two promises checkable: a test can fail the Nth allocation and see
 * SM_ENOMEM with nothing changed, and after the last map or pool is freed
 * the library holds nothing, which is what makes swapping allocators safe.
 *
 * The counts (blocks and bytes outstanding, calls) are relaxed atomics:
 * they are read by sm_set_allocator(), which the header restricts to
 * moments when no object exists, and by sm_stats_read(), which only needs
 * a recent value.
 */
#include "internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static void *default_alloc(size_t size, size_t align, void *ctx)
{
    (void)ctx;
    if (align < sizeof(void *))
        align = sizeof(void *);
    /* aligned_alloc wants the size to be a multiple of the alignment. */
    size_t rounded = (size + align - 1) & ~(align - 1);
    if (rounded < size)
        return NULL;
    return aligned_alloc(align, rounded);
}

static void default_free(void *p, size_t size, void *ctx)
{
    (void)size;
    (void)ctx;
    free(p);
}

static sm_allocator current = {default_alloc, default_free, NULL};
static atomic_size_t blocks_out, bytes_out;
static _Atomic uint64_t alloc_calls, free_calls;

void *alc_alloc(size_t size, size_t align)
{
    void *p = current.alloc(size, align, current.ctx);
    if (p) {
        atomic_fetch_add_explicit(&blocks_out, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&bytes_out, size, memory_order_relaxed);
        atomic_fetch_add_explicit(&alloc_calls, 1, memory_order_relaxed);
    }
    return p;
}

void alc_free(void *p, size_t size)
{
    if (!p)
        return;
    atomic_fetch_sub_explicit(&blocks_out, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&bytes_out, size, memory_order_relaxed);
    atomic_fetch_add_explicit(&free_calls, 1, memory_order_relaxed);
    current.free(p, size, current.ctx);
}

void alc_stats(size_t *bytes_held, uint64_t *allocs, uint64_t *frees)
{
    *bytes_held = atomic_load_explicit(&bytes_out, memory_order_relaxed);
    *allocs = atomic_load_explicit(&alloc_calls, memory_order_relaxed);
    *frees = atomic_load_explicit(&free_calls, memory_order_relaxed);
}

void sm_set_allocator(const sm_allocator *a)
{
    if (atomic_load_explicit(&blocks_out, memory_order_relaxed) != 0) {
        /* Swapping now would hand blocks to a free() that never saw them. */
        fprintf(stderr, "safemap: sm_set_allocator() called while %zu blocks are held\n",
                (size_t)atomic_load(&blocks_out));
        abort();
    }
    if (a && a->alloc && a->free)
        current = *a;
    else
        current = (sm_allocator){default_alloc, default_free, NULL};
}
