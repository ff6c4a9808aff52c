/*
 * crafted.c - builds the keys of crafted.h: pick the hashes, then invert
 * the map's keyed hash (seg_unhash) to get the keys that produce them.  C,
 * not C++, because src/segment.h is C11 (it uses _Atomic).
 */
#include "crafted.h"

#include <segment.h>

/* Arbitrary fixed bits for the parts of the hash that all keys share. */
#define CRAFT_BITS 0x5A5AC3C3A5A53C3Cull

int bench_crafted_keys(int kind, uint64_t seed, size_t n, int64_t *keys)
{
    const size_t room = (size_t)1 << 17;
    if (n > room || (kind != CRAFT_PREFIX && kind != CRAFT_HOME))
        return -1;
    seg_hkey hk = seg_hkey_from_seed(seed);
    for (size_t i = 0; i < n; i++) {
        uint64_t h;
        if (kind == CRAFT_PREFIX) /* i in bits 0..16, the rest fixed */
            h = (CRAFT_BITS & ~(uint64_t)(room - 1)) | (uint64_t)i;
        else /* i in bits 16..32, the rest fixed */
            h = (CRAFT_BITS & ~((uint64_t)(room - 1) << 16)) | (uint64_t)i << 16;
        keys[i] = seg_unhash(&hk, h);
    }
    return 0;
}
