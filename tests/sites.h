/*
 * sites.h - distinct call sites for the tests that read recorded stacks
 * (test_pool_sites.c, test_pool_debug.c).
 *
 * Each function is external (so dladdr names it), never inlined, and does
 * something after its call into the pool, so the call is not a tail jump
 * that would take the function off the stack.  Include once per program.
 */
#ifndef SM_TEST_SITES_H
#define SM_TEST_SITES_H

#include "safemap.h"

#if defined(__GNUC__)
#define T_NOINLINE __attribute__((noinline))
#else
#define T_NOINLINE
#endif

/* Keeps a call from being the function's last act (a tail jump). */
#define AFTER_CALL(x) __asm__ volatile("" : : "r"(x) : "memory")

void *get_from_a(sm_pool *p);
T_NOINLINE void *get_from_a(sm_pool *p)
{
    void *a = sm_pool_get(p);
    AFTER_CALL(a);
    return a;
}

void *get_from_b(sm_pool *p);
T_NOINLINE void *get_from_b(sm_pool *p)
{
    void *a = sm_pool_get(p);
    AFTER_CALL(a);
    return a;
}

int put_from_c(sm_pool *p, void *a);
T_NOINLINE int put_from_c(sm_pool *p, void *a)
{
    int rc = sm_pool_put(p, a);
    AFTER_CALL(rc);
    return rc;
}

int put_from_d(sm_pool *p, void *a);
T_NOINLINE int put_from_d(sm_pool *p, void *a)
{
    int rc = sm_pool_put(p, a);
    AFTER_CALL(rc);
    return rc;
}

#endif /* SM_TEST_SITES_H */
