/*
 * cxx_header.cpp - safemap.h from C++17.
 *
 * Concern: the header compiles as C++ (extern "C" linkage, no C-only
 * syntax), SM_LAYOUT gives the same layout as in C, and SM_TYPED_MAP,
 * SM_TYPED_POOL and SM_TYPED_CMAP work from C++ against the C library:
 * options, iteration and SM_FOREACH, typed hooks, a typed map over a typed
 * pool, the concurrent map's typed callbacks.  Built as a
 * test program so that linking proves the extern "C" names match.
 */
#include "safemap.h"

#include <cstdint>
#include <cstdio>
#include <cstring>

SM_TYPED_MAP(quotes, double, 8);
SM_TYPED_POOL(rows, double, 8);
SM_TYPED_CMAP(live, double, 8);

namespace
{

int passed, failed, checks_failed;

void check(bool ok, const char *what, int line)
{
    if (ok)
        return;
    std::printf("  FAIL cxx_header.cpp:%d: %s\n", line, what);
    checks_failed++;
}

/* Counts a test as passed when no check failed since `before`. */
void end_test(const char *name, int before)
{
    bool ok = checks_failed == before;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", name);
    (ok ? passed : failed)++;
}
#define CHECK(cond) check((cond), #cond, __LINE__)

struct Padded {
    char c;
    double d;
};

struct alignas(64) Wide {
    unsigned char b[64];
};

void test_layout_macro_matches_the_type()
{
    int before = checks_failed;
    sm_layout l = SM_LAYOUT(Padded, 3);
    CHECK(l.elem_size == sizeof(Padded));
    CHECK(l.elem_align == alignof(Padded));
    CHECK(l.len == 3);
    CHECK(std::strcmp(l.name, "Padded[3]") == 0);
    sm_layout w = SM_LAYOUT(Wide, 2);
    CHECK(w.elem_align == 64 && w.elem_size == 64);
    end_test("test_layout_macro_matches_the_type", before);
}

void test_untyped_map_from_cxx()
{
    int before = checks_failed;
    sm_map_opts o{};
    o.layout = SM_LAYOUT(int64_t, 8);
    o.storage = SM_INLINE;
    o.check = SM_CHECK_DEFAULT;
    sm_map *m = nullptr;
    CHECK(sm_map_new(&m, &o) == 0);
    if (m) {
        int64_t row[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8] = {};
        CHECK(sm_map_put(m, INT64_MIN, row) == 0);
        CHECK(sm_map_get(m, INT64_MIN, out) == 0);
        CHECK(std::memcmp(row, out, sizeof row) == 0);
        CHECK(sm_map_len(m) == 1);
        sm_iter it = sm_map_iter(m);
        int64_t key = 0;
        CHECK(sm_iter_next(&it, &key, nullptr) == 1 && key == INT64_MIN);
        CHECK(sm_map_verify(m) == 0);
        sm_map_free(m);
    }
    CHECK(std::strstr(sm_strerror(SM_ENOENT), "SM_ENOENT") != nullptr);
    end_test("test_untyped_map_from_cxx", before);
}

void test_typed_map_from_cxx()
{
    int before = checks_failed;
    quotes *q = nullptr;
    CHECK(quotes_new(&q) == 0);
    if (q) {
        double row[8] = {0.5, 1, 2, 3, 4, 5, 6, 7.5}, out[8] = {};
        CHECK(quotes_put(q, 42, &row) == 0);
        CHECK(quotes_get(q, 42, &out) == 0 && out[7] == 7.5);
        double(*p)[8] = quotes_find(q, 42);
        CHECK(p != nullptr && (*p)[0] == 0.5);
        CHECK(quotes_len(q) == 1);
        CHECK(quotes_del(q, 42) == 0);
        CHECK(quotes_len(q) == 0);
        quotes_free(q);
    }
    end_test("test_typed_map_from_cxx", before);
}

int hook_gets;

void count_get(double (*row)[8], void *ctx)
{
    (*row)[0] = 1.5;
    hook_gets += ctx == &hook_gets;
}

void test_typed_pool_and_pooled_map_from_cxx()
{
    int before = checks_failed;
    static const rows_hooks hooks = {nullptr, count_get, nullptr, &hook_gets};
    rows_opts po{};
    po.check = SM_CHECK_CHEAP;
    po.hooks = &hooks;
    rows *pool = nullptr;
    CHECK(rows_new_opts(&pool, &po) == 0);
    double(*a)[8] = pool ? rows_get(pool) : nullptr;
    CHECK(a != nullptr && (*a)[0] == 1.5 && hook_gets == 1);
    if (a) {
        CHECK(rows_resolve(pool, rows_handle(pool, a)) == a);
        CHECK(rows_put(pool, a) == 0);
    }
    quotes_opts qo{};
    qo.pool = pool ? rows_storage(pool) : nullptr;
    qo.capacity = 100;
    quotes *q = nullptr;
    CHECK(pool && quotes_new_opts(&q, &qo) == 0);
    if (q) {
        double row[8] = {};
        for (int64_t k = 0; k < 50; k++) {
            row[1] = static_cast<double>(k);
            CHECK(quotes_put(q, k, &row) == 0);
        }
        int inserted = 0;
        double(*u)[8] = quotes_upsert(q, 1000, &inserted);
        CHECK(u != nullptr && inserted == 1);
        struct sm_map_stats st;
        CHECK(quotes_stats(q, &st) == 0 && st.storage == SM_POOLED && st.len == 51);
        int visits = 0, wrong = 0;
        SM_FOREACH(quotes, q, key, value)
        {
            visits++;
            wrong += key != 1000 && (*value)[1] != static_cast<double>(key);
        }
        CHECK(visits == 51 && wrong == 0);
        quotes_iter it = quotes_iterate(q);
        int64_t key = 0;
        double(*value)[8] = nullptr;
        visits = 0;
        while (quotes_next(&it, &key, &value) == 1)
            visits += value == quotes_find(q, key);
        CHECK(visits == 51);
        CHECK(quotes_reserve(q, 500) == 0 && quotes_verify(q) == 0);
        quotes_clear(q);
        CHECK(quotes_len(q) == 0);
        quotes_free(q);
    }
    rows_free(pool);
    end_test("test_typed_pool_and_pooled_map_from_cxx", before);
}

void add_half(double (*value)[8], int inserted, void *ctx)
{
    (*value)[0] += inserted ? 0.5 : 1;
    *static_cast<int *>(ctx) += 1;
}

int sum_first(int64_t key, const double (*value)[8], void *ctx)
{
    *static_cast<double *>(ctx) += (*value)[0] + static_cast<double>(key);
    return 0;
}

void test_typed_cmap_from_cxx()
{
    int before = checks_failed;
    live_opts o{};
    o.capacity = 64;
    live *cm = nullptr;
    CHECK(live_new_opts(&cm, &o) == 0);
    if (cm) {
        double row[8] = {2, 0, 0, 0, 0, 0, 0, 9}, out[8] = {};
        CHECK(live_put(cm, 3, &row) == 0);
        CHECK(live_get(cm, 3, &out) == 0 && out[7] == 9);
        int calls = 0;
        CHECK(live_update(cm, 4, add_half, &calls) == 0); /* inserted: 0.5 */
        CHECK(live_update(cm, 4, add_half, &calls) == 0); /* then 1.5 */
        CHECK(calls == 2);
        double sum = 0;
        CHECK(live_each(cm, sum_first, &sum) == 0);
        CHECK(sum == 2 + 3 + 1.5 + 4);
        CHECK(live_read_begin(cm) == 0);
        const double(*p)[8] = live_find(cm, 3);
        CHECK(static_cast<const void *>(p) == sm_cmap_find(reinterpret_cast<sm_cmap *>(cm), 3));
        live_read_end(cm);
        CHECK(live_del(cm, 3) == 0 && live_len(cm) == 1 && live_verify(cm) == 0);
        struct sm_cmap_stats st;
        CHECK(live_stats(cm, &st) == 0 && st.len == 1);
        live_free(cm);
    }
    end_test("test_typed_cmap_from_cxx", before);
}

} // namespace

int main()
{
    test_layout_macro_matches_the_type();
    test_untyped_map_from_cxx();
    test_typed_map_from_cxx();
    test_typed_pool_and_pooled_map_from_cxx();
    test_typed_cmap_from_cxx();
    std::printf("%d passed, %d failed, 0 skipped\n", passed, failed);
    return failed ? 1 : 0;
}
