/*
 * test_testlib.c - the harness reports what happened: a skipped test is
 * counted as skipped, never as passed; a program whose every test skipped
 * exits 77; a filter that matches no test fails the program.
 *
 * The program runs itself: with --demo=MODE it is a small test program
 * over the demo_* tests below, and the real tests start it that way (the
 * path from /proc/self/exe) and check its output and exit status.
 */
#include "testlib.h"

#include <sys/wait.h>
#include <unistd.h>

/* ---- The demo program ----------------------------------------------------- */

static void demo_passes(void)
{
    CHECK_EQ(2 + 2, 4);
}

static void demo_skips(void)
{
    SKIP("not here");
}

static void demo_fails_then_skips(void)
{
    CHECK_EQ(2 + 2, 5);
    SKIP("too late");
}

static int run_demo(const char *mode)
{
    if (strcmp(mode, "skip_all") == 0)
        return tl_skip_all("nothing to test here");
    if (strcmp(mode, "pass_skip") == 0) {
        RUN(demo_passes);
        RUN(demo_skips);
    } else if (strcmp(mode, "skip_only") == 0) {
        RUN(demo_skips);
    } else if (strcmp(mode, "fail_skip") == 0) {
        RUN(demo_fails_then_skips);
    } else {
        printf("unknown demo mode %s\n", mode);
        return 2;
    }
    return tl_finish();
}

/* ---- Running it ----------------------------------------------------------- */

static char demo_output[4096];

/* Runs this program with --demo=mode and the filter (may be ""); returns its
 * exit status, or -1 if it could not run; the output lands in demo_output. */
static int demo(const char *mode, const char *filter)
{
    char self[400];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return -1;
    self[len] = '\0';
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' --demo=%s %s 2>&1", self, mode, filter);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    size_t n = fread(demo_output, 1, sizeof demo_output - 1, f);
    demo_output[n] = '\0';
    int status = pclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int output_has(const char *text)
{
    if (strstr(demo_output, text))
        return 1;
    printf("  expected \"%s\" in:\n%s", text, demo_output);
    return 0;
}

static void test_skip_is_counted_as_skipped_not_passed(void)
{
    CHECK_EQ(demo("pass_skip", ""), 0);
    CHECK(output_has("ok   demo_passes"));
    CHECK(output_has("skip demo_skips: not here\n"));
    CHECK(output_has("1 passed, 0 failed, 1 skipped\n"));
}

static void test_program_whose_tests_all_skip_exits_77(void)
{
    CHECK_EQ(demo("skip_only", ""), TL_SKIP_STATUS);
    CHECK(output_has("0 passed, 0 failed, 1 skipped\n"));
    CHECK_EQ(demo("skip_all", ""), TL_SKIP_STATUS);
    CHECK(output_has("skip: nothing to test here\n"));
}

static void test_failed_check_then_skip_counts_as_failed(void)
{
    CHECK_EQ(demo("fail_skip", ""), 1);
    CHECK(output_has("FAIL demo_fails_then_skips"));
    CHECK(output_has("0 passed, 1 failed, 0 skipped\n"));
}

static void test_filter_matching_no_test_fails(void)
{
    CHECK_EQ(demo("pass_skip", "no_such_test"), 1);
    CHECK(output_has("no test matches \"no_such_test\"\n"));
}

static void test_filter_runs_only_matching_tests(void)
{
    CHECK_EQ(demo("pass_skip", "passes"), 0);
    CHECK(output_has("1 passed, 0 failed, 0 skipped\n"));
    CHECK(strstr(demo_output, "demo_skips") == NULL);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    const char *mode = tl_option(argc, argv, "demo");
    if (mode)
        return run_demo(mode);
    RUN(test_skip_is_counted_as_skipped_not_passed);
    RUN(test_program_whose_tests_all_skip_exits_77);
    RUN(test_failed_check_then_skip_counts_as_failed);
    RUN(test_filter_matching_no_test_fails);
    RUN(test_filter_runs_only_matching_tests);
    return tl_finish();
}
