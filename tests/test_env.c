/*
 * test_env.c - how SAFEMAP_CHECK and SAFEMAP_DEBUG are read: levels in any
 * case and with blanks around them, and a one-line warning on stderr for
 * anything not understood (which then leaves the default in place), never
 * a silent fallback.
 *
 * SAFEMAP_DEBUG is read once per process, so each case runs this program
 * again as a child (`test_env --child`) with the variables set; the child
 * prints what the library resolved, then the parent reads the child's
 * stdout and stderr together:
 *
 *   level=full trace=0 check=default sample=100000
 *   safemap: warning: ...        (one line per value not understood)
 */
#include "safemap.h"
#include "testlib.h"

#include "../src/internal.h"

#include <stdlib.h>
#include <unistd.h>

/* The child: the level SM_CHECK_DEFAULT resolves to (as a pool created
 * with it reports), and the parsed SAFEMAP_DEBUG. */
static int child_main(void)
{
    sm_pool *p = NULL;
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 4), .check = SM_CHECK_DEFAULT};
    if (sm_pool_new(&p, &o) != 0)
        return 2;
    struct sm_pool_stats st;
    sm_pool_stats(p, &st);
    /* A second object: a bad SAFEMAP_CHECK is reported once, not per object. */
    sm_pool *q = NULL;
    if (sm_pool_new(&q, &o) != 0)
        return 2;
    const chk_debug *d = chk_debug_get();
    printf("level=%s trace=%d check=%s sample=%u\n", chk_level_name(st.check), d->trace,
           chk_level_name(d->check), d->sample);
    fflush(stdout);
    sm_pool_free(q);
    sm_pool_free(p);
    return 0;
}

static char self[4096];

/* Runs the child with the two variables (NULL: unset) and returns its
 * output, stdout then stderr interleaved as written (malloc). */
static char *run_child(const char *check, const char *debug)
{
    if (check)
        setenv("SAFEMAP_CHECK", check, 1);
    else
        unsetenv("SAFEMAP_CHECK");
    if (debug)
        setenv("SAFEMAP_DEBUG", debug, 1);
    else
        unsetenv("SAFEMAP_DEBUG");
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' --child 2>&1", self);
    FILE *f = popen(cmd, "r");
    unsetenv("SAFEMAP_CHECK");
    unsetenv("SAFEMAP_DEBUG");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    size_t got;
    while (out && (got = fread(out + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *grown = realloc(out, cap *= 2);
            if (!grown)
                free(out);
            out = grown;
        }
    }
    int status = pclose(f);
    if (!out)
        return NULL;
    out[n] = '\0';
    if (status != 0) {
        printf("  child failed (%d): %s\n", status, out);
        free(out);
        return NULL;
    }
    return out;
}

static int count_warnings(const char *out)
{
    int n = 0;
    for (const char *p = out; (p = strstr(p, "safemap: warning: ")) != NULL; p++)
        n++;
    return n;
}

/* The child's report must contain `want`, with `warnings` warning lines,
 * each mentioning `mention` when given. */
static void expect(const char *check, const char *debug, const char *want, int warnings,
                   const char *mention)
{
    char *out = run_child(check, debug);
    if (!CHECK(out != NULL))
        return;
    int ok = CHECK(strstr(out, want) != NULL);
    ok &= CHECK_EQ(count_warnings(out), warnings);
    if (mention)
        ok &= CHECK(strstr(out, mention) != NULL);
    if (!ok)
        printf("  SAFEMAP_CHECK=[%s] SAFEMAP_DEBUG=[%s] gave:\n%s", check ? check : "(unset)",
               debug ? debug : "(unset)", out);
    free(out);
}

static void test_env_unset_means_cheap(void)
{
    expect(NULL, NULL, "level=cheap trace=0 check=default sample=100000", 0, NULL);
}

static void test_env_check_levels_in_lower_case(void)
{
    expect("off", NULL, "level=off ", 0, NULL);
    expect("cheap", NULL, "level=cheap ", 0, NULL);
    expect("full", NULL, "level=full ", 0, NULL);
}

static void test_env_check_ignores_case_and_blanks(void)
{
    expect("FULL", NULL, "level=full ", 0, NULL);
    expect("Full", NULL, "level=full ", 0, NULL);
    expect(" full ", NULL, "level=full ", 0, NULL);
    expect("\tOff\n", NULL, "level=off ", 0, NULL);
}

static void test_env_check_unknown_warns_once_and_means_cheap(void)
{
    /* Two pools are created: still one warning. */
    expect("fulll", NULL, "level=cheap ", 1, "SAFEMAP_CHECK=\"fulll\"");
    expect("2", NULL, "level=cheap ", 1, "not off, cheap or full");
}

static void test_env_check_empty_is_unset(void)
{
    expect("", NULL, "level=cheap ", 0, NULL);
    expect("  ", NULL, "level=cheap ", 0, NULL);
}

static void test_env_debug_items(void)
{
    expect(NULL, "trace=1,sample=7,check=full", "level=full trace=1 check=full sample=7", 0, NULL);
    expect(NULL, " Sample = 0 , CHECK=Off ", "level=off trace=0 check=off sample=0", 0, NULL);
    expect(NULL, "sample=4294967295", "sample=4294967295", 0, NULL);
    /* An empty item (doubled or trailing comma) is no mistake. */
    expect(NULL, "trace=1,,sample=9,", "trace=1 check=default sample=9", 0, NULL);
}

static void test_env_check_takes_precedence_over_debug_check(void)
{
    expect("off", "check=full", "level=off trace=0 check=full", 0, NULL);
}

static void test_env_debug_bad_sample_warns_and_keeps_default(void)
{
    expect(NULL, "sample=abc", "sample=100000", 1, "sample=abc");
    expect(NULL, "sample=-1", "sample=100000", 1, "sample=-1");
    expect(NULL, "sample=4294967296", "sample=100000", 1, "sample=4294967296");
    expect(NULL, "sample=99999999999999999999999", "sample=100000", 1, "keeping sample=100000");
    expect(NULL, "sample=", "sample=100000", 1, NULL);
    expect(NULL, "sample=12abc", "sample=100000", 1, NULL);
}

static void test_env_debug_other_mistakes_warn(void)
{
    expect(NULL, "check=fast", "level=cheap trace=0 check=default", 1, "check=fast");
    expect(NULL, "trace=yes", "trace=0", 1, "trace=yes");
    expect(NULL, "trace", "trace=0", 1, "not name=value");
    expect(NULL, "tracee=1", "trace=0", 1, "unknown name");
    /* Each bad item is reported; the good ones still apply. */
    expect(NULL, "sample=x,trace=1,colour=red", "trace=1 check=default sample=100000", 2, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0)
        return child_main();
    tl_init(argc, argv);
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        printf("FAIL: cannot find this program (/proc/self/exe)\n");
        return 1;
    }
    self[n] = '\0';
    RUN(test_env_unset_means_cheap);
    RUN(test_env_check_levels_in_lower_case);
    RUN(test_env_check_ignores_case_and_blanks);
    RUN(test_env_check_unknown_warns_once_and_means_cheap);
    RUN(test_env_check_empty_is_unset);
    RUN(test_env_debug_items);
    RUN(test_env_check_takes_precedence_over_debug_check);
    RUN(test_env_debug_bad_sample_warns_and_keeps_default);
    RUN(test_env_debug_other_mistakes_warn);
    return tl_finish();
}
