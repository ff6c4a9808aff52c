/*
 * crafted.h - keys chosen to collide inside safemap's map, for the
 * crafted-keys row of bench_maps.  They are built from the map's own keyed
 * hash and its inverse (src/segment.h) for a seed the benchmark fixes
 * (sm_map_opts.fixed_seed), as an attacker who learnt the seed would.
 */
#ifndef SM_BENCH_CRAFTED_H
#define SM_BENCH_CRAFTED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    /* Hashes sharing their top 47 bits: 2^17 distinct hashes have a common
     * 47-bit prefix (any 65,536 of them share 48), the most that 1e5 keys
     * can share.  They all fall into one segment's share of the directory
     * however deep it grows. */
    CRAFT_PREFIX = 1,
    /* Hashes equal in bits 0..15 and 33..63: one home group, one tag and
     * one overflow bit in every segment, and a common 31-bit prefix. */
    CRAFT_HOME = 2
};

/* Fills keys[0..n-1] with n distinct keys of the given kind for a map keyed
 * by `seed`.  Returns 0, or -1 when the kind is unknown or n is more than
 * the kind has room for (2^17). */
int bench_crafted_keys(int kind, uint64_t seed, size_t n, int64_t *keys);

#ifdef __cplusplus
}
#endif

#endif
