/*
 * testlib.h - the smallest harness that does the job.
 *
 * A test is a `static void test_xxx(void)` function.  main() calls
 * tl_init(argc, argv), lists the tests with RUN(test_xxx), and ends with
 * `return tl_finish();`, which prints "N passed, M failed, K skipped"
 * (tests, not checks).
 *
 * CHECK(cond) and CHECK_EQ(a, b) record file:line and the expression when
 * they fail and let the test go on; both evaluate to 1 on success, so a test
 * that cannot continue writes `if (!CHECK(p != NULL)) return;`.
 *
 * SKIP("why") ends the test (it returns from the function it is written in,
 * so write it in the test function itself) and counts it as skipped, not
 * passed: the line reads "skip test_xxx: why".  A test that failed a check
 * before skipping still counts as failed.
 *
 * Exit status of tl_finish(): 1 if any test failed, or if a filter was given
 * and no test matched it ("no test matches"); otherwise 77 when every test
 * that ran was skipped (CTest's SKIP_RETURN_CODE, set for every test_*
 * program, reports the program as skipped); otherwise 0.  A program that
 * cannot run at all (a missing tool, say) returns tl_skip_all("why").
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

/* The exit status of a program whose every test was skipped. */
#define TL_SKIP_STATUS 77

static int tl_passed, tl_failed, tl_skipped;
static int tl_matched; /* tests the filter let through */
static int tl_current_failures;
static const char *tl_current_skip; /* why the current test skipped, or NULL */
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
    tl_matched++;
    tl_current_failures = 0;
    tl_current_skip = NULL;
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
    } else if (tl_current_skip) {
        tl_skipped++;
        printf("skip %s: %s\n", tl_current_name, tl_current_skip);
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

/* Marks the current test skipped; SKIP() also returns from it. */
static inline void tl_skip(const char *why)
{
    tl_current_skip = why && *why ? why : "(no reason given)";
}

#define SKIP(why)                                                                                  \
    do {                                                                                           \
        tl_skip(why);                                                                              \
        return;                                                                                    \
    } while (0)

static inline int tl_finish(void)
{
    printf("%d passed, %d failed, %d skipped\n", tl_passed, tl_failed, tl_skipped);
    if (tl_filter && tl_matched == 0) {
        printf("no test matches \"%s\"\n", tl_filter);
        return 1;
    }
    if (tl_failed)
        return 1;
    return tl_passed == 0 && tl_skipped > 0 ? TL_SKIP_STATUS : 0;
}

/* For main(): the whole program cannot run here, for the reason given. */
static inline int tl_skip_all(const char *why)
{
    printf("skip: %s\n", why);
    printf("0 passed, 0 failed, 0 skipped\n");
    return TL_SKIP_STATUS;
}

#endif /* SM_TESTLIB_H */
