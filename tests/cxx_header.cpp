/*
 * cxx_header.cpp - safemap.h from C++17.
 *
 * Concern: the header compiles as C++ (extern "C" linkage, no C-only
 * syntax), SM_LAYOUT gives the same layout as in C, and SM_TYPED_MAP works
 * from C++ against the C library.  Built as a test program so that linking
 * proves the extern "C" names match.
 */
#include "safemap.h"

#include <cstdint>
#include <cstdio>
#include <cstring>

SM_TYPED_MAP(quotes, double, 8);

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

} // namespace

int main()
{
    test_layout_macro_matches_the_type();
    test_untyped_map_from_cxx();
    test_typed_map_from_cxx();
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
