/*
 * test_pool_users.c - a pool's name, its users, the arrays a map holds,
 * and reports that fail to write.
 *
 * Freeing a pool that a pooled map still used crashed later; putting back
 * an array a pooled map still held was accepted at CHEAP, so a second map
 * could share it; sm_pool_report to a full device returned 0.  A pooled
 * map calls pool_ref()/pool_unref() and pool_own()/pool_disown(); these
 * tests make those calls as the map does.
 */
#include "internal.h" /* pool_ref, pool_own, pool_verify, pool_name */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

static sm_pool *pool_make(int check, const char *name)
{
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 16), .check = check, .name = name};
    sm_pool *p = NULL;
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    return p;
}

static void detail_has(const char *s)
{
    if (!CHECK(strstr(evlog.last.detail, s) != NULL))
        printf("  detail was: %s\n  wanted: %s\n", evlog.last.detail, s);
}

static void test_name_is_copied_and_used(void)
{
    char name[SM_NAME_MAX + 20];
    memset(name, 'q', sizeof name - 1);
    name[sizeof name - 1] = 0;
    sm_pool *p = pool_make(SM_CHECK_CHEAP, name);
    name[0] = 'X'; /* the pool kept its own copy */
    CHECK(pool_name(p) != NULL && pool_name(p)[0] == 'q');
    CHECK_EQ(strlen(pool_name(p)), SM_NAME_MAX - 1);
    sm_pool_free(p);

    p = pool_make(SM_CHECK_CHEAP, "quotes");
    CHECK(strcmp(pool_name(p), "quotes") == 0);
    ev_install();
    int64_t local[16];
    CHECK_EQ(sm_pool_put(p, local), SM_EFOREIGN);
    CHECK_EQ(ev_count(), 1);
    detail_has("\"quotes\"");
    sm_set_handler(NULL, NULL);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    void *a = sm_pool_get(p);
    CHECK_EQ(sm_pool_report(p, f), 0);
    fclose(f);
    CHECK(text && strstr(text, "quotes: 1 arrays outstanding") != NULL);
    free(text);
    sm_pool_put(p, a);
    sm_pool_free(p);

    p = pool_make(SM_CHECK_CHEAP, NULL);
    CHECK(pool_name(p) == NULL);
    sm_pool_free(p);
}

static void test_close_of_a_pool_in_use_is_busy_and_frees_nothing(void)
{
    int levels[] = {SM_CHECK_OFF, SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 3; l++) {
        ev_install();
        sm_pool *p = pool_make(levels[l], "rows");
        int map_a, map_b; /* stand-ins for two pooled maps */
        CHECK_EQ(pool_ref(p, &map_a, "quotes"), 0);
        CHECK_EQ(pool_ref(p, &map_b, NULL), 0);
        void *a = sm_pool_get(p);
        CHECK_EQ(sm_pool_close(p), SM_EBUSY);
        CHECK_EQ(ev_count(), 1);
        CHECK_EQ(evlog.last.code, SM_EBUSY);
        CHECK(evlog.last.object == p);
        detail_has("map \"quotes\"");
        detail_has("2 pooled maps");
        /* Nothing was freed: the pool works on. */
        CHECK_EQ(sm_pool_put(p, a), 0);
        a = sm_pool_get(p);
        CHECK(a != NULL);
        CHECK_EQ(sm_pool_put(p, a), 0);
        CHECK_EQ(pool_verify(p), 0);
        struct sm_pool_stats st;
        CHECK_EQ(sm_pool_stats(p, &st), 0);
        CHECK_EQ(st.misuse[-SM_EBUSY], 1);
        pool_unref(p, &map_a);
        CHECK_EQ(sm_pool_close(p), SM_EBUSY);
        detail_has("1 pooled map");
        pool_unref(p, &map_b);
        CHECK_EQ(ev_count(), 2);
        CHECK_EQ(sm_pool_close(p), 0);
        CHECK_EQ(ev_count(), 2);
        sm_set_handler(NULL, NULL);
    }
    CHECK_EQ(sm_pool_close(NULL), 0);
}

/* The concurrent map registers with its pool: closing the pool under it is
 * refused and names it, and works once the map is gone. */
static void test_close_under_a_concurrent_map_is_busy(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_CHEAP, "rows");
    sm_cmap *cm = NULL;
    sm_map_opts mo = {
        .layout = SM_LAYOUT(int64_t, 16), .storage = SM_POOLED, .pool = p, .name = "quotes"};
    if (!CHECK_EQ(sm_cmap_new(&cm, &mo), 0)) {
        sm_pool_free(p);
        return;
    }
    int64_t v[16] = {7};
    CHECK_EQ(sm_cmap_put(cm, 1, v), 0);
    CHECK_EQ(sm_pool_close(p), SM_EBUSY);
    CHECK_EQ(ev_count(), 1);
    detail_has("map \"quotes\"");
    CHECK_EQ(pool_verify(p), 0);
    sm_cmap_free(cm);
    CHECK_EQ(sm_pool_close(p), 0);
    CHECK_EQ(ev_count(), 1);
    sm_set_handler(NULL, NULL);
}

static void test_put_of_an_array_a_map_owns_is_double(void)
{
    int levels[] = {SM_CHECK_OFF, SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 3; l++) {
        ev_install();
        sm_pool *p = pool_make(levels[l], NULL);
        int map;
        CHECK_EQ(pool_ref(p, &map, "quotes"), 0);
        void *a = sm_pool_get(p);
        CHECK_EQ(pool_own(p, a), 0);
        CHECK_EQ(pool_own(p, a), SM_EDOUBLE); /* owned already */
        /* The map still holds a: giving it back behind the map's back is
         * refused, with an event naming the map (none at OFF). */
        CHECK_EQ(sm_pool_put(p, a), SM_EDOUBLE);
        CHECK_EQ(ev_count(), levels[l] == SM_CHECK_OFF ? 0 : 1);
        if (levels[l] != SM_CHECK_OFF) {
            CHECK_EQ(evlog.last.code, SM_EDOUBLE);
            CHECK(evlog.last.ptr == a);
            detail_has("still held by a pooled map (map \"quotes\"");
        }
        /* a is still live and still the map's: a second Get never returns it. */
        void *b = sm_pool_get(p);
        CHECK(b != NULL && b != a);
        CHECK_EQ(pool_verify(p), 0);
        /* The map lets go, then puts it back: accepted. */
        CHECK_EQ(pool_disown(p, a), 0);
        CHECK_EQ(pool_disown(p, a), SM_EDOUBLE);
        CHECK_EQ(sm_pool_put(p, a), 0);
        CHECK_EQ(sm_pool_put(p, b), 0);
        CHECK_EQ(pool_own(p, a), SM_EDOUBLE); /* not live any more */
        int64_t local[16];
        CHECK_EQ(pool_own(p, local), SM_EFOREIGN);
        CHECK_EQ(pool_own(NULL, a), SM_EINVAL);
        CHECK_EQ(pool_verify(p), 0);
        pool_unref(p, &map);
        sm_pool_free(p);
        sm_set_handler(NULL, NULL);
    }
}

/* The usual order: a map takes an array and marks it at once, so the mark
 * is set through the thread's cache (the array its Get just lent), and a
 * Put behind the map's back is refused all the same. */
static void test_array_owned_right_after_get_is_refused(void)
{
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_CHEAP, NULL);
    for (int round = 0; round < 3; round++) {
        void *a = sm_pool_get(p);
        CHECK_EQ(pool_own(p, a), 0);
        CHECK_EQ(sm_pool_put(p, a), SM_EDOUBLE);
        CHECK_EQ(pool_disown(p, a), 0);
        CHECK_EQ(sm_pool_put(p, a), 0);
    }
    CHECK_EQ(ev_count(), 3);
    CHECK_EQ(pool_verify(p), 0);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

/* A handle taken on an owned array keeps the ownership (and vice versa). */
static void test_owned_array_keeps_its_handle(void)
{
    sm_pool *p = pool_make(SM_CHECK_CHEAP, NULL);
    void *a = sm_pool_get(p);
    sm_handle h = sm_pool_handle(p, a);
    CHECK_EQ(pool_own(p, a), 0);
    CHECK(sm_pool_resolve(p, h) == a);
    CHECK_EQ(pool_disown(p, a), 0);
    CHECK_EQ(sm_pool_put(p, a), 0);
    CHECK(sm_pool_resolve(p, h) == NULL);
    sm_pool_free(p);
}

static void test_report_to_a_full_device_is_eio(void)
{
    FILE *full = fopen("/dev/full", "w");
    if (!full) {
        tl_skip("no /dev/full");
        return;
    }
    sm_pool *p = pool_make(SM_CHECK_FULL, "rows");
    void *a = sm_pool_get(p);
    CHECK_EQ(sm_pool_report(p, full), SM_EIO);
    fclose(full);
    FILE *null = fopen("/dev/null", "w");
    if (CHECK(null != NULL)) {
        CHECK_EQ(sm_pool_report(p, null), 0);
        fclose(null);
    }
    CHECK_EQ(sm_pool_put(p, a), 0);
    sm_pool_free(p);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_name_is_copied_and_used);
    RUN(test_close_of_a_pool_in_use_is_busy_and_frees_nothing);
    RUN(test_close_under_a_concurrent_map_is_busy);
    RUN(test_put_of_an_array_a_map_owns_is_double);
    RUN(test_array_owned_right_after_get_is_refused);
    RUN(test_owned_array_keeps_its_handle);
    RUN(test_report_to_a_full_device_is_eio);
    return tl_finish();
}
