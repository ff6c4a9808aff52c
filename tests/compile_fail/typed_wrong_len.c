/*
 * typed_wrong_len.c - one wrong use of the typed front-end per case: with
 * ROW_LEN=9 each case hands a double[9] to SM_TYPED_MAP(quotes, double, 8),
 * SM_TYPED_POOL(rows, double, 8) or SM_TYPED_CMAP(live, double, 8), and
 * must NOT compile; with ROW_LEN=8 the same code is right and must compile.
 *
 * Run by compile_fail/check.cmake (tests/CMakeLists.txt, typed_wrong_len_*)
 * with no warning flags at all: the error must come from the header, not
 * from -Werror.  Each case is compiled alone (-DCASE_put, ...), expecting
 * an error that names the double[9] type; the control compiles every case
 * at once with ROW_LEN=8, so a case cannot fail for a reason other than
 * the length (a typo, a missing declaration).
 */
#include "safemap.h"

SM_TYPED_MAP(quotes, double, 8);
SM_TYPED_POOL(rows, double, 8);
SM_TYPED_POOL(wide, double, ROW_LEN);
SM_TYPED_CMAP(live, double, 8);

#ifdef CASE_hooks
static void hook(double (*array)[ROW_LEN], void *ctx)
{
    (void)array;
    (void)ctx;
}
#endif

#ifdef CASE_cmap_update
static void bump(double (*value)[ROW_LEN], int inserted, void *ctx)
{
    (*value)[0] += inserted;
    (void)ctx;
}
#endif

#ifdef CASE_cmap_each
static int visit(int64_t key, const double (*value)[ROW_LEN], void *ctx)
{
    (void)ctx;
    return key == 1 && (*value)[0] > 0;
}
#endif

int use_typed(quotes *q, rows *pool, wide *other);
int use_live(live *cm, wide *other);

int use_typed(quotes *q, rows *pool, wide *other)
{
    double row[ROW_LEN] = {0};
    double(*p)[ROW_LEN] = 0;
    int rc = 0;
    (void)other;
#ifdef CASE_put /* the row to copy in */
    rc += quotes_put(q, 1, &row);
#endif
#ifdef CASE_get /* the buffer to copy out to */
    rc += quotes_get(q, 1, &row);
#endif
#ifdef CASE_find /* the pointer receiving the value's address */
    p = quotes_find(q, 1);
#endif
#ifdef CASE_upsert
    p = quotes_upsert(q, 1, 0);
#endif
#ifdef CASE_next /* the iterator's value pointer */
    quotes_iter it = quotes_iterate(q);
    int64_t key;
    rc += quotes_next(&it, &key, &p);
#endif
#ifdef CASE_pool_put
    rc += rows_put(pool, &row);
#endif
#ifdef CASE_pool_get
    p = rows_get(pool);
#endif
#ifdef CASE_handle
    rc += rows_handle(pool, &row).bits != 0;
#endif
#ifdef CASE_resolve
    sm_handle h = {0};
    p = rows_resolve(pool, h);
#endif
#ifdef CASE_hooks /* a hook for another length */
    static const rows_hooks hooks = {hook, 0, 0, 0};
    rc += hooks.ctx != 0;
#endif
#ifdef CASE_storage /* a map of double[8] over a pool of double[ROW_LEN] */
    quotes_opts o = {wide_storage(other), 0, 0, 0, 0, 0};
    rc += o.check;
#endif
    (void)pool;
    return rc + (p != 0) + (int)row[0];
}

int use_live(live *cm, wide *other)
{
    double row[ROW_LEN] = {0};
    const double(*p)[ROW_LEN] = 0;
    int rc = 0;
#ifdef CASE_cmap_put
    rc += live_put(cm, 1, &row);
#endif
#ifdef CASE_cmap_get
    rc += live_get(cm, 1, &row);
#endif
#ifdef CASE_cmap_find /* the pointer receiving the value's address */
    p = live_find(cm, 1);
#endif
#ifdef CASE_cmap_update /* a callback for another length */
    rc += live_update(cm, 1, bump, 0);
#endif
#ifdef CASE_cmap_each
    rc += live_each(cm, visit, 0);
#endif
#ifdef CASE_cmap_storage /* a cmap of double[8] over a pool of double[ROW_LEN] */
    live_opts o = {wide_storage(other), 0, 0, 0, 0, 0};
    rc += o.check;
#endif
    (void)other;
    return rc + (p != 0) + (int)row[0];
}
