// map_ops_boost.cpp - map_ops.c's workloads on boost::unordered_flat_map, so
// that callgrind counts the two side by side (see map_ops.c for how to run).
//
//   c++ -O2 -std=c++17 tests/map_ops_boost.cpp -o map_ops_boost
#include "map_ops.h"

#include <boost/unordered/unordered_flat_map.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_TOGGLE_COLLECT
#endif

int main(int argc, char **argv)
{
    if (argc < 3) {
        std::fprintf(stderr, "usage: map_ops_boost insert|hit|miss|churn N\n");
        return 2;
    }
    const char *what = argv[1];
    uint64_t n = std::strtoull(argv[2], nullptr, 10);
    using row = std::array<int64_t, 8>;
    boost::unordered_flat_map<int64_t, row> m;
    row v{};
    int64_t sum = 0;
    bool insert = std::strcmp(what, "insert") == 0;
    auto t0 = std::chrono::steady_clock::now();
    if (insert)
        CALLGRIND_TOGGLE_COLLECT;
    for (uint64_t i = 0; i < n; i++) {
        v[0] = (int64_t)i;
        m.insert_or_assign(key_of(i), v);
    }
    uint64_t ops = n;
    if (!insert) {
        CALLGRIND_TOGGLE_COLLECT;
        t0 = std::chrono::steady_clock::now();
        ops = 1000000;
        if (std::strcmp(what, "hit") == 0) {
            uint64_t r = 12345;
            for (uint64_t i = 0; i < ops; i++) {
                r = splitmix64(r);
                const row &p = m.find(key_of(r % n))->second;
                sum += p[0] + p[7];
            }
        } else if (std::strcmp(what, "miss") == 0) {
            for (uint64_t i = 0; i < ops; i++)
                sum += m.find(key_of(n + i)) != m.end();
        } else {
            for (uint64_t i = 0; i < ops; i++) {
                m.erase(key_of(i));
                m.insert_or_assign(key_of(n + i), v);
            }
        }
    }
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CALLGRIND_TOGGLE_COLLECT;
    std::printf("%s n=%llu ops=%llu ns/op=%.1f (sum %lld)\n", what, (unsigned long long)n,
                (unsigned long long)ops, t * 1e9 / (double)ops, (long long)sum);
    return 0;
}
