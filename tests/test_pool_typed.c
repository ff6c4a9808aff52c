/*
 * test_pool_typed.c - SM_TYPED_POOL: the array length is part of the type.
 *
 * As a test program it uses bufs (uint8_t[4096]) correctly.  tests/pool.cmake
 * also compiles this file with -DROW_LEN=4097 (C with
 * -Werror=incompatible-pointer-types, and C++), which must fail: a
 * uint8_t (*)[4097] is not a uint8_t (*)[4096].  The same file compiling with
 * the right length is the control.
 */
#include "safemap.h"
#include "testlib.h"

#ifndef ROW_LEN
#define ROW_LEN 4096
#endif

SM_TYPED_POOL(bufs, uint8_t, 4096);

/* Puts back a row of ROW_LEN bytes: compiles only when ROW_LEN is 4096. */
static int put_row(bufs *b, uint8_t (*row)[ROW_LEN])
{
    return bufs_put(b, row);
}

static void test_typed_pool_round_trip(void)
{
    bufs *b;
    CHECK_EQ(bufs_new(&b), 0);
    uint8_t(*x)[4096] = bufs_get(b);
    if (!CHECK(x != NULL))
        return;
    CHECK_EQ(sizeof *x, 4096);
    (*x)[4095] = 1;
    CHECK_EQ(put_row(b, x), 0);
    CHECK((void *)bufs_get(b) == (void *)x);
    CHECK_EQ(bufs_put(b, x), 0);
    bufs_free(b);
}

#ifndef SM_POOL_TYPED_NO_MAIN
int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_typed_pool_round_trip);
    return tl_finish();
}
#endif
