/*
 * test_map_segment.c - the segment primitives of src/segment.h on their own.
 *
 * Concern: the keyed hash is a bijection with a working inverse and really
 * depends on the seed; a key claimed into a segment is found again, an
 * absent key is not, and a vacated slot is free again (EMPTY) or held back
 * (TOMB); overflow bits let a lookup past a full group; lookups stay inside
 * the segment whatever its control bytes hold.
 */
#include "../src/segment.h"
#include "support.h"
#include "testlib.h"

#include <stdlib.h>

static seg *new_seg(seg_geom *g, size_t groups)
{
    CHECK(seg_geom_init(g, groups, 16, 8, 64));
    seg *s = aligned_alloc(g->align, seg_round_up(g->bytes, g->align));
    if (s)
        seg_reset(g, s, 0);
    return s;
}

static void test_unhash_inverts_hash_for_any_seed(void)
{
    for (uint64_t seed = 0; seed < 50; seed++) {
        seg_hkey k = seg_hkey_from_seed(splitmix64(seed));
        for (uint64_t i = 0; i < 1000; i++) {
            int64_t key = (int64_t)splitmix64(i * 977 + seed);
            CHECK_EQ(seg_unhash(&k, seg_hash(&k, key)), key);
            uint64_t h = splitmix64(i);
            CHECK_EQ(seg_hash(&k, seg_unhash(&k, h)), h);
        }
    }
}

static void test_hash_depends_on_the_seed(void)
{
    seg_hkey a = seg_hkey_from_seed(1), b = seg_hkey_from_seed(2);
    int same_top = 0;
    for (int64_t key = 0; key < 1000; key++)
        same_top += seg_hash(&a, key) >> 56 == seg_hash(&b, key) >> 56;
    CHECK(same_top < 30); /* 1000/256 expected by chance */
}

/* Keys that differ only in their top bits must not share the low bits of
 * their hashes (home group and tag): a multiply alone carries only upward. */
static void test_keys_differing_in_top_bits_spread_their_low_hash_bits(void)
{
    seg_hkey k = seg_hkey_from_seed(11);
    int same_low = 0;
    for (uint64_t i = 1; i < 256; i++) {
        int64_t a = (int64_t)splitmix64(i), b = (int64_t)((uint64_t)a ^ (i << 56));
        same_low += (seg_hash(&k, a) & 0xFFFF) == (seg_hash(&k, b) & 0xFFFF);
    }
    CHECK(same_low < 3);
}

static void test_tags_are_never_empty_or_tomb(void)
{
    for (uint64_t h = 0; h < 1024; h++)
        CHECK(seg_tag(h) >= 2 && seg_tag(h) <= 0xFF);
}

static void test_claimed_keys_are_found_and_absent_keys_are_not(void)
{
    seg_geom g;
    seg *s = new_seg(&g, 8);
    if (!CHECK(s != NULL))
        return;
    seg_hkey k = seg_hkey_from_seed(7);
    for (int64_t key = 0; key < (int64_t)g.limit; key++)
        CHECK(seg_claim(&g, s, seg_hash(&k, key), key) >= 0);
    CHECK_EQ(s->count, g.limit);
    for (int64_t key = 0; key < (int64_t)g.limit; key++) {
        long i = seg_lookup(&g, s, seg_hash(&k, key), key);
        if (CHECK(i >= 0))
            CHECK_EQ(seg_slot_key(seg_slot(&g, s, (size_t)i)), key);
    }
    for (int64_t key = 1000; key < 2000; key++)
        CHECK_EQ(seg_lookup(&g, s, seg_hash(&k, key), key), -1);
    free(s);
}

static void test_keys_sharing_a_home_group_overflow_and_are_found(void)
{
    seg_geom g;
    seg *s = new_seg(&g, 4);
    if (!CHECK(s != NULL))
        return;
    seg_hkey k = seg_hkey_from_seed(9);
    /* 40 hashes whose rotated low 32 bits are equal apart from the tag byte:
     * one home group, so they must spill over two more groups. */
    int64_t keys[40];
    for (int i = 0; i < 40; i++) {
        keys[i] = seg_unhash(&k, 0x1234000000000000ull | (uint64_t)(i + 2));
        CHECK(seg_claim(&g, s, seg_hash(&k, keys[i]), keys[i]) >= 0);
    }
    uint32_t home = seg_home(g.groups, seg_hash(&k, keys[0]));
    CHECK(seg_ctrl(s, home)[SEG_OFW] != 0);
    for (int i = 0; i < 40; i++)
        CHECK(seg_lookup(&g, s, seg_hash(&k, keys[i]), keys[i]) >= 0);
    free(s);
}

static void test_vacated_slot_is_reused_but_tomb_is_not(void)
{
    seg_geom g;
    seg *s = new_seg(&g, 1);
    if (!CHECK(s != NULL))
        return;
    seg_hkey k = seg_hkey_from_seed(3);
    long i = seg_claim(&g, s, seg_hash(&k, 5), 5);
    seg_vacate(s, (size_t)i, false);
    CHECK_EQ(s->count, 0);
    CHECK_EQ(seg_lookup(&g, s, seg_hash(&k, 5), 5), -1);
    CHECK_EQ(seg_claim(&g, s, seg_hash(&k, 5), 5), i);
    seg_vacate(s, (size_t)i, true);
    CHECK_EQ(s->debt, 1);
    CHECK(seg_claim(&g, s, seg_hash(&k, 5), 5) != i);
    long i5 = seg_lookup(&g, s, seg_hash(&k, 5), 5);
    long i6 = seg_claim(&g, s, seg_hash(&k, 6), 6);
    CHECK(i5 >= 0 && i6 >= 0 && i5 != i6 && i6 != i);
    CHECK_EQ(grp_full(seg_ctrl(s, 0)), 1u << (unsigned)i5 | 1u << (unsigned)i6);
    free(s);
}

static void test_lookup_on_garbage_control_bytes_stays_inside(void)
{
    seg_geom g;
    seg *s = new_seg(&g, 3);
    if (!CHECK(s != NULL))
        return;
    /* Every tag matches and every overflow bit is set: the probe must still
     * stop after visiting each group once. */
    for (uint32_t grp = 0; grp < g.groups; grp++)
        memset(seg_ctrl(s, grp), 0xFF, SEG_CTRL);
    memset(seg_slot(&g, s, 0), 0, (size_t)g.slots * g.stride);
    uint64_t h = 0xFF;
    CHECK_EQ(seg_lookup(&g, s, h, 42), -1);
    CHECK_EQ(seg_claim(&g, s, h, 42), -1);
    free(s);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_unhash_inverts_hash_for_any_seed);
    RUN(test_hash_depends_on_the_seed);
    RUN(test_keys_differing_in_top_bits_spread_their_low_hash_bits);
    RUN(test_tags_are_never_empty_or_tomb);
    RUN(test_claimed_keys_are_found_and_absent_keys_are_not);
    RUN(test_keys_sharing_a_home_group_overflow_and_are_found);
    RUN(test_vacated_slot_is_reused_but_tomb_is_not);
    RUN(test_lookup_on_garbage_control_bytes_stays_inside);
    return tl_finish();
}
