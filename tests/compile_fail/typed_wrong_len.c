/*
 * typed_wrong_len.c - must NOT compile: passes a double (*)[9] where
 * SM_TYPED_MAP(quotes, double, 8) wants a double (*)[8].
 *
 * Compiled by CTest (tests/CMakeLists.txt) with -fsyntax-only
 * -Werror=incompatible-pointer-types, once per call (CALL=1 put, 2 get,
 * 3 find) as a test that must fail, and once with ROW_LEN=8 as a control
 * that must succeed, so that the failing tests cannot pass for another
 * reason (a missing include, a typo).
 */
#include "safemap.h"

SM_TYPED_MAP(quotes, double, 8);

#ifndef ROW_LEN
#define ROW_LEN 9
#endif
#ifndef CALL
#define CALL 0 /* every call */
#endif

int use_quotes(quotes *q);

int use_quotes(quotes *q)
{
    double row[ROW_LEN] = {0};
    int rc = 0;
#if CALL == 0 || CALL == 1
    rc += quotes_put(q, 1, &row);
#endif
#if CALL == 0 || CALL == 2
    rc += quotes_get(q, 1, &row);
#endif
#if CALL == 0 || CALL == 3
    double(*p)[ROW_LEN] = quotes_find(q, 1);
    rc += p != 0;
#endif
    return rc;
}
