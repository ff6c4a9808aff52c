/*
 * demo_bugs.c - `safemap demo`: four classic bugs of maps of
 * arrays and of array pools, replayed.
 *
 * Each bug is shown twice.  First "without checks": the mistake is made
 * where nothing looks (SM_CHECK_OFF, or a bare free list as Go's sync.Pool
 * is) and the demo prints the damage it does, a value that reads wrong or a
 * write that lands on someone else's data.  Then "with safemap": the same
 * mistake where safemap looks, and the report it prints.
 *
 *   1. A pointer into the map kept across growth.  SM_INLINE storage moves
 *      values when a segment splits; at SM_CHECK_FULL the retired segment is
 *      poisoned and quarantined, so a write through the old pointer is found
 *      when the segment leaves quarantine (SM_ECORRUPT), and ASan reports the
 *      write itself.  SM_POOLED storage never moves a value: the pointer
 *      simply stays valid.
 *   2. An array Put while still in use (SM_ECORRUPT at SM_CHECK_FULL, naming
 *      the Put's call site), and an array Put twice (SM_EDOUBLE at the
 *      default level).
 *   3. int64_t[8] and int64_t[9] meeting: a pool of [9] arrays behind a map
 *      of [8] values (SM_ELAYOUT), and the typed front-end's compile error.
 *   4. Readers during incremental growth: a table that evacuates old buckets
 *      a few at a time, read while a writer empties them (a torn value, a
 *      present key missed), then sm_cmap's readers racing a writer through
 *      splits, doublings and merges (nothing torn or missed, by design).
 *
 * The demo's handler prints each report and returns (see demo_support.c),
 * so one process shows them all.  Every stale access it makes lands in
 * memory the program still owns: the map's own retained segments, a pool's
 * arrays, or blocks the demo's allocator keeps.  The exit status is 0 when
 * every bug was caught as expected.
 *
 * The functions named in reports (take_row, release_row,
 * write_through_old_pointer, use_row_after_put) are external so that the library's call-site
 * symbolizer (dladdr) can name them; the program is linked with -rdynamic.
 */
#include "demo.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Under valgrind memcheck reports the stale writes too; say so. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#if defined(__GNUC__)
#define DEMO_NOINLINE __attribute__((noinline))
#define DEMO_PRINTF(f, a) __attribute__((format(printf, f, a)))
/* Code after a call keeps the compiler from turning it into a jump, which
 * would drop the caller's frame from the call site a report names. */
#define DEMO_NO_TAIL_CALL() __asm__ volatile("" ::: "memory")
#else
#define DEMO_NO_TAIL_CALL()
#define DEMO_NOINLINE
#define DEMO_PRINTF(f, a)
#endif

enum {
    WATCHED = 7,         /* the key whose pointer is kept */
    FIRST_FILL = 100,    /* entries before the pointer is taken */
    GROW_LIMIT = 200000, /* inserts before the demo gives up waiting */
    ALIAS_LIMIT = 20000, /* inserts while looking for a reused old slot */
};

/* ---- Small helpers -------------------------------------------------------- */

static void heading(const char *title)
{
    printf("\n%s\n", title);
    for (const char *c = title; *c; c++)
        putchar('=');
    printf("\n");
}

/* One step of a scenario: what the program does, then what follows. */
static void step(const char *action, const char *fmt, ...) DEMO_PRINTF(2, 3);
static void step(const char *action, const char *fmt, ...)
{
    va_list ap;
    printf("    %-24s ", action);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

static void row_fill(int64_t v[8], int64_t key)
{
    for (int i = 0; i < 8; i++)
        v[i] = key * 100 + i;
}

static sm_pool *pool_make(sm_layout layout, int check)
{
    sm_pool *p = NULL;
    sm_pool_opts o = {.layout = layout, .check = check};
    if (sm_pool_new(&p, &o) != 0) {
        fprintf(stderr, "safemap demo: sm_pool_new failed\n");
        exit(3);
    }
    return p;
}

static sm_map *map_make(int storage, sm_pool *pool, int check)
{
    sm_map *m = NULL;
    sm_map_opts o = {
        .layout = SM_LAYOUT(int64_t, 8), .storage = storage, .pool = pool, .check = check};
    if (sm_map_new(&m, &o) != 0) {
        fprintf(stderr, "safemap demo: sm_map_new failed\n");
        exit(3);
    }
    return m;
}

static void map_fill(sm_map *m, int64_t from, int64_t to)
{
    int64_t v[8];
    for (int64_t k = from; k < to; k++) {
        row_fill(v, k);
        /* SM_ECORRUPT: this put found memory written through the stale
         * pointer (the handler has the event); the put itself was done. */
        int rc = sm_map_put(m, k, v);
        if (rc != 0 && rc != SM_ECORRUPT) {
            fprintf(stderr, "safemap demo: sm_map_put failed\n");
            exit(3);
        }
    }
}

/* Inserts fresh keys (from *next on) until key's value has moved away from
 * p, that is until its segment split.  Returns the inserts made. */
static size_t grow_until_moved(sm_map *m, int64_t key, const void *p, int64_t *next)
{
    size_t n = 0;
    while (sm_map_find(m, key) == p && n < GROW_LIMIT) {
        map_fill(m, *next, *next + 1);
        ++*next;
        n++;
    }
    return n;
}

static const char *verdict(bool ok)
{
    return ok ? "caught" : "NOT CAUGHT";
}

/* ---- AddressSanitizer and valgrind ----------------------------------------- */

/* Prints the lines of an ASan report that say what and where: the ERROR
 * line, the access, the top frames of its stack, the SUMMARY.  True when it
 * is a use-after-poison report. */
static bool print_asan_report(const char *out)
{
    int frames = 0;
    bool first_stack = true;
    const char *line = out;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)(n < sizeof buf ? n : sizeof buf - 1), line);
        const char *t = buf + strspn(buf, " ");
        bool frame = t[0] == '#' && t[1] >= '0' && t[1] <= '9';
        if (!frame && frames)
            first_stack = false;
        if (frame && first_stack && frames++ < 3)
            printf("      %s\n", buf);
        else if (strstr(buf, "AddressSanitizer") || strstr(buf, " of size "))
            printf("      %s\n", buf);
        line += n + (end != NULL);
    }
    return strstr(out, "use-after-poison") != NULL;
}

/* Runs fn in a child; ASan ends the child at the bad access, and the parent
 * prints the report.  True when ASan reported use-after-poison. */
static bool asan_in_child(void (*fn)(void *ctx), const char *what)
{
    char *out = NULL;
    int status = 0;
    printf("  with AddressSanitizer (this program is built with it): %s, in a child\n", what);
    if (demo_run_child(fn, NULL, &out, &status) != 0) {
        printf("    could not fork: skipped\n");
        return true;
    }
    bool caught = print_asan_report(out);
    if (!caught)
        demo_print_indented("      | ", out, 20);
    printf("    %s: %s\n", verdict(caught),
           caught ? "use-after-poison, reported at the write itself"
                  : "ASan did not report the write");
    free(out);
    return caught;
}

static void asan_hint(const char *n)
{
    printf("  with AddressSanitizer: this program is built without it.  Build it with\n"
           "      cmake -S . -B build/asan -DSM_ASAN=ON -DCMAKE_C_COMPILER=clang\n"
           "      cmake --build build/asan --target safemap_cli\n"
           "      build/asan/tools/safemap demo %s\n"
           "    and ASan reports the stale write where it happens, as use-after-poison.\n",
           n);
    if (RUNNING_ON_VALGRIND)
        printf("    Under valgrind, memcheck has just reported it as an \"Invalid write of "
               "size 8\" (stderr).\n");
    else
        printf("    Under valgrind (valgrind %s demo %s) memcheck reports it as an Invalid "
               "write.\n",
               "safemap", n);
}

/* ---- Bug 1: a pointer kept across growth ----------------------------------- */

/* The stale write, in a function of its own so that ASan's stack names it. */
void write_through_old_pointer(int64_t *p, int64_t v);
DEMO_NOINLINE void write_through_old_pointer(int64_t *p, int64_t v)
{
    *(volatile int64_t *)p = v;
}

/* The first live entry whose value is at p, or false. */
static bool value_at(sm_map *m, const void *p, int64_t *key)
{
    sm_iter it = sm_map_iter(m);
    int64_t k;
    void *v;
    while (sm_iter_next(&it, &k, &v) == 1) {
        if (v == p) {
            *key = k;
            return true;
        }
    }
    return false;
}

static void bug1_without_checks(void)
{
    printf("  without checks: SM_INLINE storage, SM_CHECK_OFF\n");
    demo_keep_freed_begin();
    sm_map *m = map_make(SM_INLINE, NULL, SM_CHECK_OFF);
    int64_t next = FIRST_FILL + 1, v[8];
    map_fill(m, 1, next);
    int64_t *p = sm_map_find(m, WATCHED);
    step("p = sm_map_find(m, 7)", "-> %p, p[0] = %" PRId64, (void *)p, p[0]);
    size_t n = grow_until_moved(m, WATCHED, p, &next);
    char what[64];
    snprintf(what, sizeof what, "%zu more inserts", n);
    step(what, "key 7's segment splits: its values move");
    step("sm_map_find(m, 7)", "-> %p", sm_map_find(m, WATCHED));

    row_fill(v, WATCHED);
    v[0] = 777;
    sm_map_put(m, WATCHED, v);
    step("sm_map_put(m, 7, {777})", "p[0] still reads %" PRId64 ": a stale value", p[0]);
    p[0] = -1;
    sm_map_get(m, WATCHED, v);
    step("p[0] = -1", "sm_map_get(m, 7) gives %" PRId64 ": the write is lost", v[0]);

    /* The retired segment goes on the map's free list and is reused by a
     * later split: p then points into another key's value. */
    int64_t victim = 0;
    size_t more = 0;
    bool aliased = false;
    while (!aliased && more < ALIAS_LIMIT) {
        map_fill(m, next, next + 16);
        next += 16;
        more += 16;
        /* Another key's value: the segment may also come back holding key 7
         * in the same slot, which shows nothing. */
        aliased = value_at(m, p, &victim) && victim != WATCHED;
    }
    if (aliased) {
        snprintf(what, sizeof what, "%zu more inserts", more);
        step(what, "the old segment is reused: p points at key %" PRId64 "'s value", victim);
        p[0] = -1;
        sm_map_get(m, victim, v);
        step("p[0] = -1", "sm_map_get(m, %" PRId64 ") gives %" PRId64 ": another key is corrupted",
             victim, v[0]);
    }
    sm_map_free(m);
    demo_keep_freed_end();
    printf("    (In a real program the old segment may be back in malloc: a use-after-free.\n"
           "    The demo's allocator keeps it, so that the demo itself stays well defined.)\n");
}

/* Bug 1 up to the stale write, at SM_CHECK_FULL.  Returns the map; *next is
 * the next fresh key. */
static sm_map *bug1_full_until_write(int64_t *next, bool quiet, bool uninstrumented)
{
    sm_map *m = map_make(SM_INLINE, NULL, SM_CHECK_FULL);
    *next = FIRST_FILL + 1;
    map_fill(m, 1, *next);
    int64_t *p = sm_map_find(m, WATCHED);
    size_t n = grow_until_moved(m, WATCHED, p, next);
    if (!quiet) {
        char what[64];
        snprintf(what, sizeof what, "%zu more inserts", n);
        step("p = sm_map_find(m, 7)", "-> %p", (void *)p);
        step(what, "key 7's segment splits; the old one is filled with poison");
        step("", "(0xdb) and waits in the map's quarantine before reuse");
        step("p[0] = -1", "through the old pointer%s",
             uninstrumented ? ", from code ASan does not instrument" : "");
        fflush(stdout);
    }
    if (uninstrumented)
        demo_write_unchecked(p, -1);
    else
        write_through_old_pointer(p, -1);
    return m;
}

static void bug1_asan_child(void *ctx)
{
    (void)ctx;
    int64_t next;
    sm_map *m = bug1_full_until_write(&next, true, false);
    printf("the write through the old pointer was not reported\n");
    sm_map_free(m);
}

static bool bug1_with_safemap(void)
{
    printf("  with safemap: SM_INLINE storage, SM_CHECK_FULL\n");
    int64_t next;
    sm_map *m = bug1_full_until_write(&next, false, DEMO_ASAN);
    step("more inserts", "until that segment leaves quarantine and its poison is checked:");
    fflush(stdout);
    demo_events_clear();
    size_t n = 0;
    while (demo_events(SM_ECORRUPT) == 0 && n < GROW_LIMIT) {
        map_fill(m, next, next + 1);
        next++;
        n++;
    }
    bool caught = demo_events(SM_ECORRUPT) > 0;
    printf("    %s: SM_ECORRUPT, %zu inserts after the stale write\n", verdict(caught), n);
    sm_map_free(m);
    return caught;
}

static void bug1_pooled(void)
{
    printf("  the fix by design: SM_POOLED storage (values live in pool arrays, never move)\n");
    sm_pool *pool = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP);
    sm_map *m = map_make(SM_POOLED, pool, SM_CHECK_CHEAP);
    map_fill(m, 1, FIRST_FILL + 1);
    int64_t *p = sm_map_find(m, WATCHED);
    step("p = sm_map_find(m, 7)", "-> %p", (void *)p);
    struct sm_map_stats before, after;
    int have_stats = sm_map_stats(m, &before) == 0;
    map_fill(m, FIRST_FILL + 1, 20001);
    have_stats = have_stats && sm_map_stats(m, &after) == 0;
    if (have_stats)
        step("19900 more inserts", "%" PRIu64 " segment splits (sm_map_stats)",
             after.splits - before.splits);
    else
        step("19900 more inserts", "segments split");
    int64_t *q = sm_map_find(m, WATCHED);
    int64_t v[8];
    step("sm_map_find(m, 7)", "-> %p, %s", (void *)q, q == p ? "the same" : "MOVED");
    p[0] = -1;
    sm_map_get(m, WATCHED, v);
    step("p[0] = -1", "sm_map_get(m, 7) gives %" PRId64 "%s", v[0],
         q == p && v[0] == -1 ? ": the pointer is still valid" : ": UNEXPECTED");
    sm_map_free(m);
    sm_pool_free(pool);
}

static bool bug1(void)
{
    heading("Bug 1: a pointer kept across growth");
    printf("A pointer from sm_map_find() is kept while the map grows.  Inline values move\n"
           "when their segment splits, as Go's map moves them when it evacuates buckets.\n\n");
    bug1_without_checks();
    bool caught = bug1_with_safemap();
    if (DEMO_ASAN)
        caught &= asan_in_child(bug1_asan_child, "the same steps, a plain write");
    else
        asan_hint("1");
    bug1_pooled();
    return caught;
}

/* ---- Bug 2: Put while still in use, and Put twice --------------------------- */

/* Takes a row from a pool, and gives it back: the call sites reports name. */
int64_t *take_row(sm_pool *p);
DEMO_NOINLINE int64_t *take_row(sm_pool *p)
{
    int64_t *row = sm_pool_get(p);
    DEMO_NO_TAIL_CALL();
    return row;
}

int release_row(sm_pool *p, int64_t *row);
DEMO_NOINLINE int release_row(sm_pool *p, int64_t *row)
{
    int rc = sm_pool_put(p, row);
    DEMO_NO_TAIL_CALL();
    return rc;
}

/* The late write of a row already given back, in its own function for
 * ASan's stack. */
void use_row_after_put(int64_t *row, int64_t v);
DEMO_NOINLINE void use_row_after_put(int64_t *row, int64_t v)
{
    ((volatile int64_t *)row)[5] = v;
}

/* A bare free list, as Go's sync.Pool is: Put takes any pointer, twice too. */
typedef struct bare_pool {
    void *idle[4];
    int n;
} bare_pool;

static void *bare_get(bare_pool *bp)
{
    return bp->n ? bp->idle[--bp->n] : calloc(8, sizeof(int64_t));
}

static void bare_put(bare_pool *bp, void *a)
{
    if (bp->n < 4)
        bp->idle[bp->n++] = a;
}

static void bug2_without_checks(void)
{
    printf("  without checks: a Put while in use, SM_CHECK_OFF\n");
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_OFF);
    int64_t *row = take_row(p);
    row_fill(row, 1);
    step("row = take_row(p)", "-> %p", (void *)row);
    release_row(p, row);
    step("release_row(p, row)", "puts it back, but the caller keeps using row");
    int64_t *next = take_row(p);
    row_fill(next, 2);
    step("next = take_row(p)", "-> %p%s", (void *)next, next == row ? ", the same array" : "");
    step("", "its new owner fills it: next[5] = %" PRId64, next[5]);
    row[5] = 666;
    step("row[5] = 666", "the old owner's late write: next[5] now reads %" PRId64, next[5]);
    sm_pool_put(p, next);
    sm_pool_free(p);

    printf("  without checks: a double Put, on a bare free list (sync.Pool takes any "
           "pointer)\n");
    bare_pool bp = {{0}, 0};
    int64_t *a = bare_get(&bp);
    bare_put(&bp, a);
    bare_put(&bp, a);
    step("put(a); put(a)", "both accepted");
    int64_t *x = bare_get(&bp), *y = bare_get(&bp);
    step("x = get(); y = get()", "-> %p and %p%s", (void *)x, (void *)y,
         x == y ? ": one array, two owners" : "");
    x[0] = 1;
    y[0] = 2;
    step("x[0] = 1; y[0] = 2", "x[0] reads %" PRId64, x[0]);
    free(a);
}

static void bug2_asan_child(void *ctx)
{
    (void)ctx;
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_FULL);
    int64_t *row = take_row(p);
    release_row(p, row);
    use_row_after_put(row, 666);
    printf("the write after Put was not reported\n");
    sm_pool_free(p);
}

static bool bug2_with_safemap(void)
{
    printf("  with safemap: a Put while in use, SM_CHECK_FULL\n");
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_FULL);
    int64_t *row = take_row(p);
    row_fill(row, 1);
    step("row = take_row(p)", "-> %p", (void *)row);
    release_row(p, row);
    step("release_row(p, row)", "the array is filled with poison and waits in quarantine");
    step("row[5] = 666", "the late write%s",
         DEMO_ASAN ? ", from code ASan does not instrument" : "");
    fflush(stdout);
    if (DEMO_ASAN)
        demo_write_unchecked(&row[5], 666);
    else
        use_row_after_put(row, 666);
    step("sm_pool_cycle(p)", "checks the quarantine:");
    fflush(stdout);
    demo_events_clear();
    sm_pool_cycle(p);
    bool corrupt = demo_events(SM_ECORRUPT) > 0;
    printf("    %s: SM_ECORRUPT, naming the array, the byte and the Put's call site\n",
           verdict(corrupt));
    sm_pool_free(p);

    if (DEMO_ASAN)
        corrupt &= asan_in_child(bug2_asan_child, "a plain write after Put");
    else
        asan_hint("2");

    printf("  with safemap: a double Put, SM_CHECK_CHEAP (the default)\n");
    p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_CHEAP);
    int64_t *a = take_row(p);
    step("a = take_row(p)", "-> %p", (void *)a);
    demo_events_clear();
    int rc1 = release_row(p, a);
    step("release_row(p, a)", "returns %d", rc1);
    step("release_row(p, a)", "again:");
    fflush(stdout);
    int rc2 = release_row(p, a);
    bool doubled = rc1 == 0 && rc2 == SM_EDOUBLE && demo_events(SM_EDOUBLE) == 1;
    step("", "returned %.*s, and the pool is unchanged", (int)strcspn(sm_strerror(rc2), ":"),
         sm_strerror(rc2));
    printf("    %s: SM_EDOUBLE (at SM_CHECK_FULL the report names the first Put too)\n",
           verdict(doubled));
    sm_pool_free(p);
    return corrupt && doubled;
}

static bool bug2(void)
{
    heading("Bug 2: an array Put while still in use, and a double Put");
    printf("An array goes back to the pool while its owner still writes to it, or goes\n"
           "back twice; either way the pool hands it to a second owner.\n\n");
    bug2_without_checks();
    return bug2_with_safemap();
}

/* ---- Bug 3: [8] and [9] layouts meeting ----------------------------------- */

static void bug3_without_checks(void)
{
    printf("  without checks: int64_t[9] arrays (through void *) and code written for "
           "int64_t[8]\n");
    sm_pool *p9 = pool_make(SM_LAYOUT(int64_t, 9), SM_CHECK_OFF);
    int64_t *a = sm_pool_get(p9);
    for (int i = 0; i < 9; i++)
        a[i] = 0x5ec2e7;
    step("a = sm_pool_get(p9)", "an owner fills a[0..8] with 0x5ec2e7 and puts it back");
    sm_pool_put(p9, a);
    int64_t *b = sm_pool_get(p9);
    step("b = sm_pool_get(p9)", "-> %p%s", (void *)b, b == a ? ", the same array" : "");
    memset(b, 0, sizeof(int64_t[8])); /* the [8] code's idea of a reset */
    step("memset(b, 0, 64)", "the [8] code's reset: b[8] still reads 0x%" PRIx64 "%s",
         (uint64_t)b[8], b[8] == 0x5ec2e7 ? "," : "");
    if (b[8] == 0x5ec2e7)
        step("", "the old owner's data reaches the new owner");
    printf("    (The other way round, a [9] reset of an [8] array writes 8 bytes past its "
           "end.)\n");
    sm_pool_put(p9, b);
    sm_pool_free(p9);
}

static const char typed_snippet[] = "#include <safemap.h>\n"
                                    "\n"
                                    "SM_TYPED_MAP(quotes, double, 8); /* int64_t -> double[8] */\n"
                                    "\n"
                                    "int main(void)\n"
                                    "{\n"
                                    "    quotes *q;\n"
                                    "    double row[%d] = {101.5, 101.7};\n"
                                    "    if (quotes_new(&q) != 0)\n"
                                    "        return 1;\n"
                                    "    quotes_put(q, 42, &row);\n"
                                    "    quotes_free(q);\n"
                                    "    return 0;\n"
                                    "}\n";

static const char expected_diagnostic[] =
    "typed_row.c: In function 'main':\n"
    "typed_row.c:11:23: error: passing argument 3 of 'quotes_put' from incompatible pointer "
    "type [-Werror=incompatible-pointer-types]\n"
    "   11 |     quotes_put(q, 42, &row);\n"
    "      |                       ^~~~\n"
    "      |                       |\n"
    "      |                       double (*)[9]\n"
    "note: expected 'const double (*)[8]' but argument is of type 'double (*)[9]'\n";

static bool write_file(const char *dir, const char *name, int len)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    fprintf(f, typed_snippet, len);
    return fclose(f) == 0;
}

static void remove_file(const char *dir, const char *name)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static int exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Compiles the snippet with double[9] (must fail) and double[8] (must
 * compile).  Returns 1 when the compiler rejected the first for its type,
 * 0 when it accepted it, -1 when the demo could not run the compiler. */
static int compile_typed(const char *cc, const char *inc, const char *dir)
{
    char idir[PATH_MAX + 2];
    snprintf(idir, sizeof idir, "-I%s", inc);
    char *argv[] = {
        (char *)cc,    "-std=c11", "-fsyntax-only", "-Werror=incompatible-pointer-types", idir,
        "typed_row.c", NULL};
    char *out = NULL;
    int status = 0;
    if (!write_file(dir, "typed_row.c", 9) || !write_file(dir, "typed_row_ok.c", 8))
        return -1;
    printf("    $ %s -std=c11 -fsyntax-only -Werror=incompatible-pointer-types -I%s "
           "typed_row.c\n",
           cc, inc);
    if (demo_run_command(argv, dir, &out, &status) != 0)
        return -1;
    int wrong = exit_code(status);
    if (wrong == 127 || wrong == 126) {
        printf("    (%s could not be run)\n", cc);
        free(out);
        return -1;
    }
    demo_print_indented("    ", out, 24);
    bool typed_error = wrong != 0 && strstr(out, "incompatible") != NULL;
    free(out);

    argv[5] = "typed_row_ok.c";
    if (demo_run_command(argv, dir, &out, &status) != 0)
        return -1;
    int right = exit_code(status);
    if (right != 0) {
        printf("    but the control, the same file with double row[8], does not compile "
               "either:\n");
        demo_print_indented("    | ", out, 12);
        free(out);
        return -1;
    }
    free(out);
    printf("    (the same file with double row[8] compiles)\n");
    return typed_error ? 1 : 0;
}

static bool bug3_compile(void)
{
    printf("  with safemap at compile time: SM_TYPED_MAP puts the length in the type, so a\n"
           "  double (*)[9] passed for a double (*)[8] does not compile\n");
    printf("    typed_row.c:\n");
    char src[1024];
    snprintf(src, sizeof src, typed_snippet, 9);
    demo_print_indented("    | ", src, 0);

    const char *cc = getenv("CC");
    if (!cc || !*cc || strchr(cc, ' '))
        cc = "cc";
    char incbuf[PATH_MAX];
    const char *inc = demo_include_dir(incbuf, sizeof incbuf);
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/safemap-demo-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int result = -1;
    if (inc && mkdtemp(dir)) {
        result = compile_typed(cc, inc, dir);
        remove_file(dir, "typed_row.c");
        remove_file(dir, "typed_row_ok.c");
        rmdir(dir);
    } else if (!inc) {
        printf("    (safemap.h not found: set SAFEMAP_INCLUDE_DIR to the directory holding it)\n");
    }
    if (result == 1) {
        printf("    caught: does not compile\n");
        return true;
    }
    if (result == 0) {
        printf("    NOT CAUGHT: the compiler accepted a double (*)[9]\n");
        return false;
    }
    printf("    not shown: no working C compiler.  What gcc 12 prints for it:\n");
    demo_print_indented("    ", expected_diagnostic, 0);
    printf("    To reproduce: save the file above as typed_row.c and run\n"
           "      cc -std=c11 -fsyntax-only -Werror=incompatible-pointer-types "
           "-I<dir of safemap.h> typed_row.c\n");
    return true;
}

static bool bug3(void)
{
    heading("Bug 3: [8] and [9] layouts meeting");
    printf("int64_t[8] and int64_t[9] differ by 8 bytes: a reset or copy sized for one,\n"
           "applied to the other, truncates or overruns.\n\n");
    bug3_without_checks();

    printf("  with safemap at run time: a map of int64_t[8] over a pool of int64_t[9]\n");
    sm_pool *p9 = pool_make(SM_LAYOUT(int64_t, 9), SM_CHECK_CHEAP);
    sm_map *m = NULL;
    sm_map_opts o = {
        .layout = SM_LAYOUT(int64_t, 8), .storage = SM_POOLED, .pool = p9, .check = SM_CHECK_CHEAP};
    step("sm_map_new(&m, &o)", "o = {SM_LAYOUT(int64_t, 8), SM_POOLED, p9, ...}:");
    fflush(stdout);
    demo_events_clear();
    int rc = sm_map_new(&m, &o);
    bool layout = rc == SM_ELAYOUT && m == NULL && demo_events(SM_ELAYOUT) == 1;
    step("", "returned %.*s; no map was made", (int)strcspn(sm_strerror(rc), ":"), sm_strerror(rc));
    printf("    %s: SM_ELAYOUT\n", verdict(layout));
    sm_map_free(m);
    sm_pool_free(p9);

    return bug3_compile() && layout;
}

/* ---- Bug 4: readers during incremental growth ------------------------------ */

/* A table that grows as Go's maps did before 1.24: when it doubles, the old
 * buckets stay in place and each insert evacuates one of them into the new
 * array, clearing it behind itself.  A lookup looks in the old bucket while
 * it is not yet evacuated.  Nothing stops a second thread from reading
 * while a writer evacuates; Go's runtime can only sometimes notice
 * ("concurrent map read and map write").  The steps are interleaved by hand
 * here, so the race happens every time. */
enum { EVAC_OLD = 4, EVAC_SLOTS = 4 };

typedef struct evac_bucket {
    int used;
    int64_t keys[EVAC_SLOTS];
    int64_t vals[EVAC_SLOTS][8];
} evac_bucket;

typedef struct evac_table {
    evac_bucket old[EVAC_OLD], new_[2 * EVAC_OLD];
    int evacuated[EVAC_OLD];
} evac_table;

static size_t evac_home(int64_t key, size_t nbuckets)
{
    return (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 32) % nbuckets;
}

static void evac_insert_old(evac_table *t, int64_t key)
{
    evac_bucket *b = &t->old[evac_home(key, EVAC_OLD)];
    b->keys[b->used] = key;
    row_fill(b->vals[b->used], key);
    b->used++;
}

/* Moves old bucket i to the new array and clears it. */
static void evac_bucket_move(evac_table *t, size_t i)
{
    evac_bucket *b = &t->old[i];
    for (int j = 0; j < b->used; j++) {
        evac_bucket *to = &t->new_[evac_home(b->keys[j], 2 * EVAC_OLD)];
        to->keys[to->used] = b->keys[j];
        memcpy(to->vals[to->used], b->vals[j], sizeof b->vals[j]);
        to->used++;
    }
    memset(b, 0, sizeof *b);
    t->evacuated[i] = 1;
}

static void bug4_without_checks(void)
{
    printf("  without checks: a table growing incrementally, one reader, one writer\n");
    static evac_table t;
    memset(&t, 0, sizeof t);
    int64_t key = 0;
    for (int64_t k = 1; k <= 8; k++) {
        if (t.old[evac_home(k, EVAC_OLD)].used < EVAC_SLOTS)
            evac_insert_old(&t, k);
        if (!key)
            key = k;
    }
    size_t b = evac_home(key, EVAC_OLD);
    evac_bucket *ob = &t.old[b];
    int slot = 0;
    while (ob->keys[slot] != key)
        slot++;
    int64_t got[8];
    step("reader: get(k)", "k = %" PRId64 " is in old bucket %zu, not evacuated: read there", key,
         b);
    memcpy(got, ob->vals[slot], 4 * sizeof got[0]);
    step("reader: copy v[0..3]", "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64, got[0], got[1],
         got[2], got[3]);
    evac_bucket_move(&t, b);
    step("writer: put(...)", "its growth step evacuates old bucket %zu and clears it", b);
    memcpy(got + 4, ob->vals[slot] + 4, 4 * sizeof got[0]);
    step("reader: copy v[4..7]",
         "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 "   <- from the cleared bucket", got[4],
         got[5], got[6], got[7]);
    int64_t want[8];
    row_fill(want, key);
    bool torn = memcmp(got, want, sizeof got) != 0;
    printf("    %s: the reader returns a value that was never stored (v[7] should be %" PRId64
           ")\n",
           torn ? "torn" : "unexpectedly whole", want[7]);
    /* A lookup that starts now and still finds the table in its old state
     * (a stale 'evacuated' flag) misses a key that is present. */
    bool found = false;
    for (int j = 0; j < ob->used; j++)
        found |= ob->keys[j] == key;
    step("reader: get(k) again", "looks in old bucket %zu with a stale view: %s", b,
         found ? "found" : "absent, though k was never deleted");
    printf("\n");
}

/* Readers of sm_cmap racing a writer that grows the map and shrinks it. */
typedef struct cmap_reader {
    pthread_t tid;
    sm_cmap *cm;
    int64_t stable; /* keys 0 .. stable-1 are present throughout */
    atomic_int *stop;
    long reads, torn, missing;
} cmap_reader;

static void *cmap_reader_main(void *arg)
{
    cmap_reader *r = arg;
    uint64_t x = (uint64_t)(uintptr_t)r;
    while (!atomic_load_explicit(r->stop, memory_order_relaxed)) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int64_t key = (int64_t)((x >> 33) % (uint64_t)r->stable), v[8], want[8];
        int rc = sm_cmap_get(r->cm, key, v);
        row_fill(want, key);
        r->missing += rc != 0;
        r->torn += rc == 0 && memcmp(v, want, sizeof v) != 0;
        r->reads++;
    }
    return NULL;
}

static bool bug4_with_safemap(void)
{
    enum { READERS = 2, STABLE = 20000 };
    /* Under valgrind every access costs some fifty times more. */
    const int GROW = RUNNING_ON_VALGRIND ? 40000 : 300000;
    printf("  with safemap: sm_cmap, %d reader threads, one writer growing it to %d entries\n"
           "  and back while they read keys that are present throughout\n",
           READERS, STABLE + GROW);
    sm_cmap *cm = NULL;
    sm_map_opts o = {.layout = SM_LAYOUT(int64_t, 8), .name = "demo"};
    if (sm_cmap_new(&cm, &o) != 0) {
        fprintf(stderr, "safemap demo: sm_cmap_new failed\n");
        exit(3);
    }
    int64_t v[8];
    for (int64_t k = 0; k < STABLE; k++) {
        row_fill(v, k);
        sm_cmap_put(cm, k, v);
    }
    atomic_int stop = 0;
    cmap_reader rs[READERS];
    for (int i = 0; i < READERS; i++) {
        rs[i] = (cmap_reader){.cm = cm, .stable = STABLE, .stop = &stop};
        pthread_create(&rs[i].tid, NULL, cmap_reader_main, &rs[i]);
    }
    for (int64_t k = STABLE; k < STABLE + GROW; k++) {
        row_fill(v, k);
        sm_cmap_put(cm, k, v);
    }
    struct sm_cmap_stats top;
    sm_cmap_stats(cm, &top);
    for (int64_t k = STABLE; k < STABLE + GROW; k++)
        sm_cmap_del(cm, k);
    atomic_store(&stop, 1);
    long reads = 0, torn = 0, missing = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(rs[i].tid, NULL);
        reads += rs[i].reads;
        torn += rs[i].torn;
        missing += rs[i].missing;
    }
    struct sm_cmap_stats st;
    sm_cmap_stats(cm, &st);
    step("writer",
         "%" PRIu64 " splits, %" PRIu64 " directory doublings, %" PRIu64 " merges, %" PRIu64
         " halvings",
         st.splits, st.dir_doublings, st.merges, st.dir_halvings);
    step("readers",
         "%ld reads: %ld torn, %ld missing; %" PRIu64 " copies overlapped a write and "
         "were redone",
         reads, torn, missing, st.read_retries);
    step("memory", "at most %zu B waited for readers before it was freed (bound %zu B)",
         st.limbo_peak_bytes, top.limbo_bound_bytes);
    sm_cmap_free(cm);
    bool ok = reads > 0 && torn == 0 && missing == 0;
    printf("    %s: a reader copies a value under its segment's sequence number and\n"
           "    retries when a writer overlapped; growth writes fresh segments and\n"
           "    frees the old ones only after the readers that could see them left\n",
           ok ? "impossible by design" : "FAILED");
    return ok;
}

static bool bug4(void)
{
    heading("Bug 4: readers during incremental growth");
    printf("A map that grows by evacuating old buckets a few at a time serves readers\n"
           "from buckets a writer is emptying: unless every access is locked, a\n"
           "reader sees a value half old and half cleared, or misses a present key.\n\n");
    bug4_without_checks();
    return bug4_with_safemap();
}

/* ---- Entry point ----------------------------------------------------------- */

/* The bugs, in the order `safemap demo N` numbers them: a new one is one
 * more entry in each table. */
static bool (*const bugs[])(void) = {bug1, bug2, bug3, bug4};
static const char *const names[] = {
    "a pointer kept across growth", "an array Put while in use; a double Put",
    "[8] and [9] layouts meeting", "readers during incremental growth"};
enum { NBUGS = sizeof bugs / sizeof bugs[0] };
_Static_assert(sizeof names / sizeof names[0] == NBUGS, "one name per bug");

int demo_main(int argc, char **argv)
{
    int only = 0;
    char extra;
    if (argc > 2) {
        fprintf(stderr, "safemap demo: unexpected argument '%s'; usage: safemap demo [N]\n",
                argv[2]);
        return 2;
    }
    if (argc == 2 && (sscanf(argv[1], "%d%c", &only, &extra) != 1 || only < 1 || only > NBUGS)) {
        fprintf(stderr, "safemap demo: '%s' is not a bug number from 1 to %d\n", argv[1], NBUGS);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("safemap demo: four classic bugs, each first doing its damage\n"
           "without checks, then caught by safemap.  Reports are printed by a handler\n"
           "installed with sm_set_handler() that returns; the default handler prints the\n"
           "same report to stderr and aborts.%s\n",
           DEMO_ASAN ? "  (Built with AddressSanitizer.)" : "");
    demo_handler_install();
    bool ok[NBUGS];
    for (int i = 0; i < NBUGS; i++)
        ok[i] = true;
    for (int i = 0; i < NBUGS; i++)
        if (!only || only == i + 1)
            ok[i] = bugs[i]();
    demo_handler_remove();

    heading("Summary");
    int caught = 0, ran = 0;
    for (int i = 0; i < NBUGS; i++) {
        if (only && only != i + 1)
            continue;
        ran++;
        caught += ok[i];
        printf("  bug %d, %-42s %s\n", i + 1, names[i], ok[i] ? "caught" : "NOT CAUGHT");
    }
    printf("%d of %d bugs caught\n", caught, ran);
    return caught == ran ? 0 : 1;
}
