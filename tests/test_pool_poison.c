/*
 * test_pool_poison.c - a write after Put, seen by the tools.
 *
 *   test_pool_poison write-after-put
 *       Gets an array from an SM_CHECK_FULL pool, puts it back, and writes
 *       to it.  Under AddressSanitizer the write itself is reported as
 *       "use-after-poison"; under valgrind memcheck as "Invalid write" into a
 *       block freed by sm_pool_put.  tests/pool.cmake runs it that way and
 *       expects those reports.  Without either tool the pool finds the
 *       overwritten poison itself at sm_pool_free (SM_ECORRUPT, printed).
 *
 *   test_pool_poison            (no argument: the CTest of every build)
 *       Checks the same write is caught by the pool's own poison check
 *       (SM_ECORRUPT), with the sanitizer marks lifted for the write, and
 *       that the marks are back when the array leaves the pool.
 */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

/* Prints the event and returns, so the run ends normally after the tools
 * have spoken (CTest counts a killed process as failed whatever it printed). */
static void print_event(const sm_event *ev, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "safemap: %s in %s: %s\n", sm_strerror(ev->code), ev->what, ev->detail);
}

static int write_after_put(void)
{
    sm_set_handler(print_event, NULL);
    sm_pool *p;
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 16), .check = SM_CHECK_FULL};
    if (sm_pool_new(&p, &o) != 0)
        return 2;
    int64_t *a = sm_pool_get(p);
    a[3] = 1;
    sm_pool_put(p, a);
    printf("writing to %p after sm_pool_put\n", (void *)a);
    fflush(stdout);
    ((volatile int64_t *)a)[3] = 2; /* the bug */
    sm_pool_free(p);                /* the pool's own check: SM_ECORRUPT */
    return 0;
}

static void test_write_after_put_is_caught_by_the_pool(void)
{
    ev_install();
    sm_pool *p;
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 16), .check = SM_CHECK_FULL};
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    int64_t *a = sm_pool_get(p);
    CHECK_EQ(sm_pool_put(p, a), 0);
#ifdef T_ASAN
    CHECK(__asan_address_is_poisoned(a));
    CHECK(__asan_address_is_poisoned(a + 15));
    ASAN_UNPOISON_MEMORY_REGION(a + 3, 8);
#endif
#ifdef VALGRIND_MAKE_MEM_DEFINED
    VALGRIND_MAKE_MEM_DEFINED(a + 3, 8);
#endif
    a[3] = 2;
    sm_pool_free(p);
    CHECK_EQ(ev_count(), 1);
    CHECK_EQ(evlog.last.code, SM_ECORRUPT);
    CHECK(strstr(evlog.last.detail, "byte 24") != NULL);
    sm_set_handler(NULL, NULL);
}

static void test_arrays_handed_out_are_not_poisoned(void)
{
    sm_pool *p;
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 16), .check = SM_CHECK_FULL};
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    void *v[600];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 600; i++) {
            v[i] = sm_pool_get(p);
#ifdef T_ASAN
            CHECK(__asan_region_is_poisoned(v[i], 128) == NULL);
#endif
            memset(v[i], i, 128); /* would trip ASan/valgrind if still marked */
        }
        for (int i = 0; i < 600; i++)
            CHECK_EQ(sm_pool_put(p, v[i]), 0);
        if (round == 1) {
            sm_pool_cycle(p);
            sm_pool_cycle(p);
        }
    }
    sm_pool_free(p);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "write-after-put") == 0)
        return write_after_put();
    tl_init(argc, argv);
    RUN(test_write_after_put_is_caught_by_the_pool);
    RUN(test_arrays_handed_out_are_not_poisoned);
    return tl_finish();
}
