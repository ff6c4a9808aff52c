/*
 * test_typed.c - the typed front-end, SM_TYPED_MAP, used as intended.
 *
 * Concern: SM_TYPED_MAP(quotes, double, 8) defines a handle type and
 * functions over double (*)[8] that compile cleanly under the project's
 * flags and behave like the untyped calls they wrap.  That the wrong array
 * length is refused at compile time is checked by the typed_wrong_len_*
 * tests (compile_fail/typed_wrong_len.c).
 */
#include "safemap.h"
#include "testlib.h"

SM_TYPED_MAP(quotes, double, 8);

static void make_quote(double (*q)[8], int64_t key)
{
    for (int i = 0; i < 8; i++)
        (*q)[i] = (double)key + i / 8.0;
}

static void test_typed_map_put_get_find_del_len(void)
{
    quotes *q = NULL;
    if (!CHECK_EQ(quotes_new(&q), 0) || !CHECK(q != NULL))
        return;
    CHECK_EQ(quotes_len(q), 0);
    double row[8], out[8];
    for (int64_t k = -500; k < 500; k++) {
        make_quote(&row, k);
        CHECK_EQ(quotes_put(q, k, &row), 0);
    }
    CHECK_EQ(quotes_len(q), 1000);
    CHECK_EQ(quotes_get(q, 7, &out), 0);
    make_quote(&row, 7);
    CHECK(memcmp(out, row, sizeof row) == 0);
    CHECK_EQ(quotes_get(q, 500, &out), SM_ENOENT);

    double(*p)[8] = quotes_find(q, -3);
    if (CHECK(p != NULL)) {
        CHECK((*p)[0] == -3.0 && (*p)[7] == -3.0 + 7 / 8.0);
        (*p)[1] = 99.5;
        CHECK_EQ(quotes_get(q, -3, &out), 0);
        CHECK(out[1] == 99.5);
    }
    CHECK(quotes_find(q, 1000) == NULL);

    const double fixed[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK_EQ(quotes_put(q, 7, &fixed), 0); /* a const row works too */
    CHECK_EQ(quotes_get(q, 7, &out), 0);
    CHECK(out[7] == 8);

    CHECK_EQ(quotes_del(q, 7), 0);
    CHECK_EQ(quotes_del(q, 7), SM_ENOENT);
    CHECK_EQ(quotes_len(q), 999);
    const quotes *cq = q; /* get and len take a const handle */
    CHECK_EQ(quotes_get(cq, 8, &out), 0);
    CHECK_EQ(quotes_len(cq), 999);
    quotes_free(q);
    quotes_free(NULL);
}

static void test_typed_map_is_a_map(void)
{
    quotes *q = NULL;
    if (!CHECK_EQ(quotes_new(&q), 0))
        return;
    double row[8];
    make_quote(&row, 1);
    CHECK_EQ(quotes_put(q, 1, &row), 0);
    /* The handle is an sm_map underneath: the untyped calls see the same entries. */
    sm_map *m = (sm_map *)(void *)q;
    CHECK_EQ(sm_map_len(m), 1);
    CHECK_EQ(sm_map_verify(m), 0);
    CHECK(sm_map_find(m, 1) == (void *)quotes_find(q, 1));
    quotes_free(q);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_typed_map_put_get_find_del_len);
    RUN(test_typed_map_is_a_map);
    return tl_finish();
}
