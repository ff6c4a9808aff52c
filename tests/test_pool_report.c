/*
 * test_pool_report.c - what the default handler prints for each kind of
 * pool misuse, and that it aborts.  Each scenario runs in a forked child
 * with the default handler; the parent reads the child's stderr.
 *
 *   test_pool_report           checks every report
 *   test_pool_report --show    also prints them (docs/safety.md quotes this)
 */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static int show;

/* Keeps the last call of a scenario from becoming a tail jump, which would
 * take the scenario off the stack the report names. */
#define AFTER_CALL(x) __asm__ volatile("" : : "r"(x) : "memory")

static sm_pool *pool_make(int check)
{
    sm_pool *p = NULL;
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 16), .check = check};
    if (sm_pool_new(&p, &o) != 0)
        exit(3);
    return p;
}

void scenario_double_cheap(void);
/* Not static: an exported name is what the report shows for a call site. */
void scenario_double_cheap(void)
{
    sm_pool *p = pool_make(SM_CHECK_CHEAP);
    void *a = sm_pool_get(p);
    sm_pool_put(p, a);
    int rc = sm_pool_put(p, a);
    AFTER_CALL(rc);
}

void scenario_double_full(void);
void scenario_double_full(void)
{
    sm_pool *p = pool_make(SM_CHECK_FULL);
    void *a = sm_pool_get(p);
    sm_pool_put(p, a);
    int rc = sm_pool_put(p, a);
    AFTER_CALL(rc);
}

void scenario_foreign_heap(void);
void scenario_foreign_heap(void)
{
    sm_pool *p = pool_make(SM_CHECK_CHEAP);
    sm_pool_get(p);
    int rc = sm_pool_put(p, malloc(128));
    AFTER_CALL(rc);
}

void scenario_foreign_interior(void);
void scenario_foreign_interior(void)
{
    sm_pool *p = pool_make(SM_CHECK_CHEAP);
    int64_t *a = sm_pool_get(p);
    int rc = sm_pool_put(p, a + 2);
    AFTER_CALL(rc);
}

void scenario_foreign_other_pool(void);
void scenario_foreign_other_pool(void)
{
    sm_pool *p = pool_make(SM_CHECK_CHEAP);
    sm_pool_opts o = {.layout = SM_LAYOUT(double, 16), .check = SM_CHECK_CHEAP};
    sm_pool *q;
    sm_pool_new(&q, &o);
    sm_pool_get(p);
    int rc = sm_pool_put(p, sm_pool_get(q));
    AFTER_CALL(rc);
}

void scenario_corrupt(void);
void scenario_corrupt(void)
{
    sm_pool *p = pool_make(SM_CHECK_FULL);
    int64_t *a = sm_pool_get(p);
    sm_pool_put(p, a);
#ifdef T_ASAN
    ASAN_UNPOISON_MEMORY_REGION(a + 5, 8); /* else ASan reports the write itself */
#endif
    a[5] = 0x1234;
    sm_pool_cycle(p); /* checks the quarantine */
}

void scenario_layout(void);
void scenario_layout(void)
{
    sm_pool *p = pool_make(SM_CHECK_CHEAP);
    sm_map *m = NULL;
    sm_map_opts mo = {
        .layout = SM_LAYOUT(int64_t, 17), .storage = SM_POOLED, .pool = p, .check = SM_CHECK_CHEAP};
    sm_map_new(&m, &mo);
}

/* Runs fn in a child with the default handler; returns its stderr. */
static char *run_child(void (*fn)(void), int *aborted)
{
    int fd[2];
    if (pipe(fd) != 0)
        return NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        sm_set_handler(NULL, NULL);
        fn();
        _exit(0); /* no report: the parent sees a normal exit */
    }
    close(fd[1]);
    size_t cap = 8192, n = 0;
    char *out = malloc(cap);
    ssize_t k;
    while ((k = read(fd[0], out + n, cap - 1 - n)) > 0)
        if ((n += (size_t)k) == cap - 1)
            out = realloc(out, cap *= 2);
    out[n] = 0;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    *aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    return out;
}

static void expect_report(const char *name, void (*fn)(void), const char *const *want)
{
    int aborted = 0;
    char *out = run_child(fn, &aborted);
    if (!CHECK(out != NULL))
        return;
    if (show)
        printf("---- %s\n%s", name, out);
    CHECK(aborted);
    for (const char *const *w = want; *w; w++)
        if (!CHECK(strstr(out, *w) != NULL))
            printf("  missing \"%s\" in:\n%s", *w, out);
    free(out);
}

static void test_double_put_report(void)
{
    const char *want[] = {"SM_EDOUBLE", "sm_pool_put", "int64_t[16]", "already put back", NULL};
    expect_report("SM_EDOUBLE at SM_CHECK_CHEAP", scenario_double_cheap, want);
    const char *want_full[] = {"SM_EDOUBLE", "put back by scenario_double_full",
                               "put back again by scenario_double_full",
                               "got by scenario_double_full", NULL};
    expect_report("SM_EDOUBLE at SM_CHECK_FULL", scenario_double_full, want_full);
}

static void test_foreign_reports(void)
{
    const char *heap[] = {"SM_EFOREIGN", "not in any slab", "put back by scenario_foreign_heap",
                          NULL};
    expect_report("SM_EFOREIGN: heap pointer", scenario_foreign_heap, heap);
    const char *interior[] = {"SM_EFOREIGN", "16 bytes into array", "interior", NULL};
    expect_report("SM_EFOREIGN: interior pointer", scenario_foreign_interior, interior);
    const char *other[] = {"SM_EFOREIGN", "another pool", "double[16]", NULL};
    expect_report("SM_EFOREIGN: another pool's array", scenario_foreign_other_pool, other);
}

static void test_corrupt_report(void)
{
    const char *want[] = {"SM_ECORRUPT",
                          "sm_pool_cycle",
                          "byte 40 is 0x34",
                          "put back by scenario_corrupt",
                          "got by scenario_corrupt",
                          NULL};
    expect_report("SM_ECORRUPT: write after Put", scenario_corrupt, want);
}

static void test_layout_report(void)
{
    const char *want[] = {"SM_ELAYOUT", "int64_t[17]", "int64_t[16]", NULL};
    expect_report("SM_ELAYOUT: map and pool disagree", scenario_layout, want);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    show = tl_option(argc, argv, "show") != NULL || (argc > 1 && !strcmp(argv[1], "--show"));
    RUN(test_double_put_report);
    RUN(test_foreign_reports);
    RUN(test_corrupt_report);
    RUN(test_layout_report);
    return tl_finish();
}
