/*
 * test_pool_slabs.c - slab descriptors and the per-thread memo, white-box.
 *
 * The fast Put finds an array's state byte through the slab its thread last
 * put into (the memo) without rechecking that slab's base: that is safe only
 * because a descriptor whose slab went back is never reused for another
 * slab while a thread's memo still names it (slab_new has every memo
 * forgotten first).  Without that rule, a stale pointer into a slab that
 * went back would be read through the descriptor's new slab: a Put of it
 * would mark someone else's live array idle and cache freed memory.
 *
 * The test needs a slab to go back while a memo names it, and no cycle in
 * between (a cycle forgets every memo anyway), so it empties the cache by
 * hand under the pool's lock: hence this file includes the pool's private
 * header.  The allocator keeps freed blocks aside until the end, so the
 * stale pointer's memory is never handed out again and never unmapped.
 */
#include "pool_internal.h"
#include "safemap.h"
#include "support.h"
#include "testlib.h"

enum { LEN = 2048, GRAVE_MAX = 256 }; /* 16 KiB arrays: four to a 64 KiB slab */

/* An allocator whose frees wait in a graveyard until grave_empty(). */
static void *grave[GRAVE_MAX];
static int graves;

static void *grave_alloc(size_t size, size_t align, void *ctx)
{
    (void)ctx;
    if (align < sizeof(void *))
        align = sizeof(void *);
    return aligned_alloc(align, (size + align - 1) & ~(align - 1));
}

static void grave_free(void *mem, size_t size, void *ctx)
{
    (void)size;
    (void)ctx;
    if (graves < GRAVE_MAX)
        grave[graves++] = mem;
    else
        free(mem);
}

static void grave_empty(void)
{
    for (int i = 0; i < graves; i++)
        free(grave[i]);
    graves = 0;
}

static void test_reused_descriptor_is_not_reached_through_a_stale_memo(void)
{
    sm_allocator al = {grave_alloc, grave_free, NULL};
    sm_set_allocator(&al);
    ev_install();
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, LEN), .check = SM_CHECK_CHEAP};
    sm_pool *p = NULL;
    if (!CHECK_EQ(sm_pool_new(&p, &o), 0))
        return;
    if (!p->fast) {
        tl_skip("no inline fast paths in this build (ThreadSanitizer or no membarrier)");
        sm_pool_free(p);
        sm_set_handler(NULL, NULL);
        sm_set_allocator(NULL);
        grave_empty();
        return;
    }
    int64_t *x = sm_pool_get(p);
    CHECK_EQ(sm_pool_put(p, x), 0); /* x idle in this thread's hot slot */
    tcache *tc = tc_get(p);
    uintptr_t old_base = (uintptr_t)x & p->slab_mask;
    if (!CHECK(tc && tc->memo_base == old_base && tc->memo != NULL))
        return;
    slab *d = tc->memo;

    /* x leaves the cache and goes back: its slab, now empty, goes back too
     * and its descriptor waits on the spare list, still named by the memo. */
    pool_lock(p);
    CHECK(tc->hot_full && tc->hot.a == x);
    entry e = tc->hot;
    tc_hot_clear(tc);
    slab_release(p, e);
    CHECK(atomic_load(&d->base) == 0);
    pool_unlock(p);

    /* The next Get needs a slab: the spare descriptor is reused for new
     * memory (the graveyard keeps the old block from coming back). */
    int64_t *y = sm_pool_get(p);
    if (!CHECK(y != NULL))
        return;
    CHECK(((uintptr_t)y & p->slab_mask) != old_base);
    CHECK(atomic_load(&d->base) == ((uintptr_t)y & p->slab_mask)); /* d reused */
    CHECK(tc->memo_base != old_base);                              /* forgotten before the reuse */

    /* A stale Put of x must not reach y's slot through d. */
    CHECK_EQ(sm_pool_put(p, x), SM_EFOREIGN);
    CHECK_EQ(ev_count(), 1);
    CHECK_EQ(pool_verify(p), 0);
    CHECK_EQ(sm_pool_put(p, y), 0); /* y was still live */
    CHECK_EQ(pool_verify(p), 0);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
    sm_set_allocator(NULL);
    grave_empty();
}

/* The same for the array a Get lent from the hot slot: the slot keeps its
 * state byte so that its Put needs no lookup, and must forget it before the
 * descriptor is reused. */
static void test_reused_descriptor_is_not_reached_through_a_stale_lent_array(void)
{
    sm_allocator al = {grave_alloc, grave_free, NULL};
    sm_set_allocator(&al);
    ev_install();
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, LEN), .check = SM_CHECK_CHEAP};
    sm_pool *p = NULL;
    if (!CHECK_EQ(sm_pool_new(&p, &o), 0))
        return;
    if (!p->fast) {
        tl_skip("no inline fast paths in this build (ThreadSanitizer or no membarrier)");
        sm_pool_free(p);
        sm_set_handler(NULL, NULL);
        sm_set_allocator(NULL);
        grave_empty();
        return;
    }
    int64_t *x = sm_pool_get(p);
    CHECK_EQ(sm_pool_put(p, x), 0);
    CHECK(sm_pool_get(p) == x); /* lent from the hot slot */
    tcache *tc = tc_get(p);
    uintptr_t old_base = (uintptr_t)x & p->slab_mask;
    if (!CHECK(tc && !tc->hot_full && tc->hot.a == x))
        return;
    /* As if another thread had put x back and the idle cap released it:
     * its slab goes back, the descriptor waits on the spare list. */
    pool_lock(p);
    slab *d = tc->memo;
    slab_release(p, tc->hot);
    CHECK(atomic_load(&d->base) == 0);
    pool_unlock(p);

    int64_t *y = sm_pool_get(p);
    if (!CHECK(y != NULL))
        return;
    CHECK(((uintptr_t)y & p->slab_mask) != old_base);
    CHECK(atomic_load(&d->base) == ((uintptr_t)y & p->slab_mask)); /* d reused */
    CHECK(tc->hot.a != x);                                         /* forgotten before the reuse */

    CHECK_EQ(sm_pool_put(p, x), SM_EFOREIGN);
    CHECK_EQ(ev_count(), 1);
    CHECK_EQ(sm_pool_put(p, y), 0);
    CHECK_EQ(pool_verify(p), 0);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
    sm_set_allocator(NULL);
    grave_empty();
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_reused_descriptor_is_not_reached_through_a_stale_memo);
    RUN(test_reused_descriptor_is_not_reached_through_a_stale_lent_array);
    return tl_finish();
}
