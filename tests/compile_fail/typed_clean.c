/*
 * typed_clean.c - a user's file: every typed function used the ordinary
 * way, compiled by CTest (tests/CMakeLists.txt, typed_clean_*) with
 * -Wall -Wextra -Wpedantic -Werror as C11 and as C++17, by gcc and clang.
 * It must compile without a single warning.  Two maps, a pool and a
 * concurrent map are defined and many of their functions left unused, as
 * in a real program: unused typed functions must not draw "unused
 * function" warnings.
 */
#include "safemap.h"

#include <stdio.h>

SM_TYPED_POOL(rows, double, 8);
SM_TYPED_MAP(quotes, double, 8);
SM_TYPED_MAP(unused_map, int, 3); /* nothing of it is called */
SM_TYPED_CMAP(live, double, 8);

static void zero_row(double (*row)[8], void *ctx)
{
    (void)ctx;
    for (int i = 0; i < 8; i++)
        (*row)[i] = 0;
}

static const rows_hooks row_hooks = {zero_row, zero_row, 0, 0};

static void add_one(double (*value)[8], int inserted, void *ctx)
{
    (void)inserted;
    (void)ctx;
    (*value)[0] += 1;
}

static int count_entry(int64_t key, const double (*value)[8], void *ctx)
{
    int *n = (int *)ctx;
    *n += key >= 0 && (*value)[0] >= 0;
    return 0;
}

int run_live(void);

int run_live(void)
{
    live *cm = 0;
    if (live_new(&cm) != 0)
        return 1;
    double row[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
    int n = 0;
    int rc = live_put(cm, 1, &row) + live_get(cm, 1, &out) + live_update(cm, 1, add_one, 0) +
             live_each(cm, count_entry, &n);
    if (live_read_begin(cm) == 0) {
        const double(*p)[8] = live_find(cm, 1);
        rc += p != 0;
        live_read_end(cm);
    }
    live_free(cm);
    return rc + n;
}

int run_typed(void);

int run_typed(void)
{
    rows *pool = 0;
    rows_opts po = {SM_CHECK_CHEAP, SM_ZERO_ON_PUT, &row_hooks, 1 << 20, "rows"};
    if (rows_new_opts(&pool, &po) != 0)
        return 1;
    quotes_opts qo = {rows_storage(pool), SM_CHECK_DEFAULT, 100, "quotes", 1, 42};
    quotes *q = 0;
    if (quotes_new_opts(&q, &qo) != 0)
        return 1;
    double row[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int rc = quotes_put(q, 1, &row) + quotes_put(q, 2, &row);
#if !defined(__GNUC__) || defined(__clang__) || defined(__cplusplus) || __STDC_VERSION__ > 201710L
    /* A const row too, except where typed.h says -Wpedantic notes it: gcc
     * before C23 (ISO C11 has no conversion to a pointer to an array of
     * const T). */
    static const double fixed[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    rc += quotes_put(q, 2, &fixed);
#endif
    double out[8];
    rc += quotes_get(q, 1, &out);
    double(*p)[8] = quotes_find(q, 2);
    int inserted = 0;
    double(*u)[8] = quotes_upsert(q, 3, &inserted);
    double sum = p && u ? (*p)[0] + (*u)[0] : 0;
    SM_FOREACH(quotes, q, key, value)
    {
        sum += (double)key + (*value)[7];
    }
    quotes_iter it = quotes_iterate(q);
    int64_t key = 0;
    double(*value)[8] = 0;
    while (quotes_next(&it, &key, &value) == 1)
        sum += (*value)[0];
    struct sm_map_stats ms;
    rc += quotes_stats(q, &ms) + quotes_verify(q) + quotes_reserve(q, 1000) + quotes_del(q, 1);
    quotes_clear(q);
    rc += (int)quotes_len(q);
    quotes_free(q);

    double(*a)[8] = rows_get(pool);
    sm_handle h = rows_handle(pool, a);
    double(*again)[8] = rows_resolve(pool, h);
    rc += again != a;
    rc += rows_put(pool, a);
    rows_cycle(pool);
    struct sm_pool_stats ps;
    rc += rows_stats(pool, &ps);
    rows_free(pool);
    printf("%g\n", sum);
    return rc;
}
