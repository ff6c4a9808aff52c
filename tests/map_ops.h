/* map_ops.h - the keys of map_ops.c and map_ops_boost.cpp: key(i) =
 * splitmix64(i) >> 1, the same in both drivers. */
#ifndef SM_MAP_OPS_H
#define SM_MAP_OPS_H

#include <stdint.h>

static inline uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline int64_t key_of(uint64_t i)
{
    return (int64_t)(splitmix64(i) >> 1);
}

#endif
