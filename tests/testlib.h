/*
 * testlib.h - the smallest harness that does the job.
 *
 * A test is a `static void test_xxx(void)` function.  main() calls
 * tl_init(argc, argv), lists the tests with RUN(test_xxx), and ends with
 * `return tl_finish();`, which prints "N passed, M failed" (tests, not
 * checks) and returns non-zero if any test failed.
 *
 * CHECK(cond) and CHECK_EQ(a, b) record file:line and the expression when
 * they fail and let the test go on; both evaluate to 1 on success, so a test
 * that cannot continue writes `if (!CHECK(p != NULL)) return;`.
 *
 * Command line: a bare word runs only the tests whose names contain it;
 * `--valgrind` says the binary runs under valgrind (tests shrink their work
 * and skip what valgrind would rightly flag); `--scale=X` or the
 * SAFEMAP_TEST_SCALE environment variable multiplies the work of the tests
 * that honour tl_scale (default 1).  Other `--name=value` options belong to
 * the test file (tl_option reads them).
 */
#ifndef SM_TESTLIB_H
#define SM_TESTLIB_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int tl_passed, tl_failed;
static int tl_current_failures;
static const char *tl_filter;
static int tl_under_valgrind;
static double tl_scale = 1.0;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static inline void
tl_fail(const char *file, int line, const char *fmt, ...)
{
    /* A check failing in a loop would drown the report; the first few say it all. */
    if (++tl_current_failures > 20)
        return;
    va_list ap;
    va_start(ap, fmt);
    printf("  FAIL %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

static inline int tl_check(int ok, const char *file, int line, const char *expr)
{
    if (!ok)
        tl_fail(file, line, "%s", expr);
    return ok;
}

static inline int tl_check_eq(intmax_t a, intmax_t b, const char *file, int line, const char *ea,
                              const char *eb)
{
    if (a != b)
        tl_fail(file, line, "%s == %s (%jd vs %jd)", ea, eb, a, b);
    return a == b;
}

#define CHECK(cond) tl_check(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_EQ(a, b) tl_check_eq((intmax_t)(a), (intmax_t)(b), __FILE__, __LINE__, #a, #b)

static inline double tl_now(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void tl_init(int argc, char **argv)
{
    const char *env = getenv("SAFEMAP_TEST_SCALE");
    if (env && atof(env) > 0)
        tl_scale = atof(env);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--valgrind") == 0)
            tl_under_valgrind = 1;
        else if (strncmp(argv[i], "--scale=", 8) == 0 && atof(argv[i] + 8) > 0)
            tl_scale = atof(argv[i] + 8);
        else if (argv[i][0] != '-')
            tl_filter = argv[i];
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* The value of option --name=value, or NULL. */
static inline const char *tl_option(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, name, n) == 0 &&
            argv[i][2 + n] == '=')
            return argv[i] + 3 + n;
    return NULL;
}

/* n scaled by tl_scale, at least 1. */
static inline size_t tl_scaled(size_t n)
{
    double s = (double)n * tl_scale;
    return s < 1 ? 1 : (size_t)s;
}

/* tl_begin/tl_end bracket one test; tl_begin returns 0 when the filter
 * excludes it.  RUN() does both for a function; table-driven tests call
 * them directly. */
static double tl_started;
static const char *tl_current_name;

static inline int tl_begin(const char *name)
{
    if (tl_filter && !strstr(name, tl_filter))
        return 0;
    tl_current_failures = 0;
    tl_current_name = name;
    tl_started = tl_now();
    return 1;
}

static inline void tl_end(void)
{
    double ms = (tl_now() - tl_started) * 1e3;
    if (tl_current_failures) {
        tl_failed++;
        printf("FAIL %s (%d failed checks, %.0f ms)\n", tl_current_name, tl_current_failures, ms);
    } else {
        tl_passed++;
        printf("ok   %s (%.0f ms)\n", tl_current_name, ms);
    }
}

static inline void tl_run(const char *name, void (*fn)(void))
{
    if (!tl_begin(name))
        return;
    fn();
    tl_end();
}

#define RUN(fn) tl_run(#fn, fn)

static inline int tl_finish(void)
{
    printf("%d passed, %d failed\n", tl_passed, tl_failed);
    return tl_failed ? 1 : 0;
}

#endif /* SM_TESTLIB_H */
