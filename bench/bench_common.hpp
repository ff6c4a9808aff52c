/*
 * bench_common.hpp - what the two C++ benchmarks (bench_maps.cpp and
 * bench_conc.cpp) share: the workload keys, the clock, the process's memory
 * figures and an exact latency log.  Header-only; every function is static
 * or inline, so each program gets its own copy.
 */
#ifndef SM_BENCH_COMMON_HPP
#define SM_BENCH_COMMON_HPP

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The i-th key of every workload: non-negative.  splitmix64 is a bijection,
 * so two indices share a key only when their mixes differ in the dropped
 * low bit alone (odds about 2^-63 per pair). */
static inline int64_t key(uint64_t i)
{
    return (int64_t)(splitmix64(i) >> 1);
}

static inline uint64_t now_ns()
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static inline size_t current_rss_bytes()
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static inline size_t peak_rss_bytes()
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (size_t)u.ru_maxrss * 1024;
}

/* Single-operation latencies, exact: a count per nanosecond below 64 us,
 * and the slow ones kept individually (there are few).  Not thread-safe:
 * one log per thread. */
class LatencyLog
{
    static const uint64_t kFine = 65536;
    std::vector<uint32_t> fine_;
    std::vector<uint64_t> slow_;
    uint64_t count_ = 0;

  public:
    LatencyLog() : fine_(kFine, 0)
    {
        slow_.reserve(1 << 16);
    }
    void add(uint64_t ns)
    {
        count_++;
        if (ns < kFine)
            fine_[ns]++;
        else
            slow_.push_back(ns);
    }
    uint64_t count() const
    {
        return count_;
    }
    /* The latency at quantile q (0 < q <= 1): the ceil(q * count)-th
     * smallest; 0 for an empty log. */
    uint64_t quantile(double q)
    {
        if (count_ == 0)
            return 0;
        uint64_t rank = (uint64_t)((double)count_ * q + 0.999999), seen = 0;
        rank = std::max<uint64_t>(rank, 1);
        for (uint64_t ns = 0; ns < kFine; ns++) {
            seen += fine_[ns];
            if (seen >= rank)
                return ns;
        }
        std::sort(slow_.begin(), slow_.end());
        return slow_[std::min<uint64_t>(rank - seen, slow_.size()) - 1];
    }
    uint64_t worst()
    {
        return quantile(1.0);
    }
};

/* "a,b,c" -> {"a", "b", "c"}: the comma lists of the command lines. */
static inline std::vector<std::string> split(const std::string &list)
{
    std::vector<std::string> parts;
    size_t start = 0, comma;
    while ((comma = list.find(',', start)) != std::string::npos) {
        parts.push_back(list.substr(start, comma - start));
        start = comma + 1;
    }
    parts.push_back(list.substr(start));
    return parts;
}

/* A count from the command line; accepts 1e6.  0 for anything else. */
static inline uint64_t parse_count(const std::string &s)
{
    return (uint64_t)strtod(s.c_str(), nullptr);
}

#endif
