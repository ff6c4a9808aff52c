/*
 * test_errors.c - what a failing call tells its caller: sm_version(),
 * sm_strerror(), and sm_last_error(), the thread's text behind its last
 * SM_EINVAL or SM_EIO, which names the argument or field that was wrong.
 */
#include "safemap.h"
#include "testlib.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_version_matches_header(void)
{
    CHECK(strcmp(sm_version(), SAFEMAP_VERSION_STRING) == 0);
    char built[32];
    snprintf(built, sizeof built, "%d.%d.%d", SAFEMAP_VERSION_MAJOR, SAFEMAP_VERSION_MINOR,
             SAFEMAP_VERSION_PATCH);
    CHECK(strcmp(sm_version(), built) == 0);
}

static void test_strerror_names_every_code(void)
{
    for (int code = 0; code > -SM_NCODES; code--)
        CHECK(strncmp(sm_strerror(code), "SM_", 3) == 0);
    CHECK(strstr(sm_strerror(SM_EIO), "SM_EIO") != NULL);
    CHECK(strcmp(sm_strerror(-SM_NCODES), "unknown error") == 0);
}

static void test_last_error_names_the_layout_field(void)
{
    sm_pool *p = NULL;
    sm_pool_opts o = {.layout = {8, 3, 4, "bad"}};
    CHECK_EQ(sm_pool_new(&p, &o), SM_EINVAL);
    CHECK(p == NULL);
    CHECK(strstr(sm_last_error(), "elem_align is 3, not a power of two") != NULL);

    o.layout = (sm_layout){8, 8, 0, "empty"};
    CHECK_EQ(sm_pool_new(&p, &o), SM_EINVAL);
    CHECK(strstr(sm_last_error(), "len is 0") != NULL);
}

static void test_last_error_names_the_function_and_argument(void)
{
    CHECK_EQ(sm_profile_write(NULL), SM_EINVAL);
    CHECK(strstr(sm_last_error(), "sm_profile_write") != NULL);
    CHECK(strstr(sm_last_error(), "path") != NULL);
    CHECK_EQ(sm_metrics_write(NULL), SM_EINVAL);
    CHECK(strstr(sm_last_error(), "sm_metrics_write") != NULL);
    CHECK(strstr(sm_last_error(), "out") != NULL);
}

static void test_pool_einval_names_the_argument(void)
{
    sm_pool *p = NULL;
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 4), .check = 42};
    CHECK_EQ(sm_pool_new(&p, &o), SM_EINVAL);
    CHECK(p == NULL);
    CHECK(strstr(sm_last_error(), "sm_pool_new: opts->check is 42") != NULL);
    o.check = SM_CHECK_CHEAP;
    o.flags = 1u << 7;
    CHECK_EQ(sm_pool_new(&p, &o), SM_EINVAL);
    CHECK(strstr(sm_last_error(), "opts->flags has bits 0x80") != NULL);
    CHECK_EQ(sm_pool_new(&p, NULL), SM_EINVAL);
    CHECK(strstr(sm_last_error(), "sm_pool_new: opts is NULL") != NULL);
    o.flags = 0;
    if (!CHECK_EQ(sm_pool_new(&p, &o), 0))
        return;
    CHECK_EQ(sm_pool_put(p, NULL), SM_EINVAL);
    CHECK(strstr(sm_last_error(), "sm_pool_put: array is NULL") != NULL);
    CHECK_EQ(sm_pool_stats(p, NULL), SM_EINVAL);
    CHECK(strstr(sm_last_error(), "sm_pool_stats: out is NULL") != NULL);
    CHECK_EQ(sm_pool_report(p, NULL), SM_EINVAL);
    CHECK(strstr(sm_last_error(), "sm_pool_report: out is NULL") != NULL);
    sm_pool_free(p);
}

static void test_last_error_survives_a_later_success(void)
{
    CHECK_EQ(sm_profile_write(""), SM_EINVAL);
    const char *before = sm_last_error();
    char copy[256];
    snprintf(copy, sizeof copy, "%s", before);
    CHECK(copy[0] != 0);
    sm_pool *p = NULL;
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 4)};
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    sm_pool_free(p);
    CHECK(strcmp(sm_last_error(), copy) == 0);
}

static void *fail_in_thread(void *arg)
{
    char *seen = arg;
    /* A fresh thread starts with no error text. */
    snprintf(seen, 256, "%s", sm_last_error());
    sm_metrics_write(NULL);
    return NULL;
}

static void test_last_error_is_per_thread(void)
{
    CHECK_EQ(sm_profile_write(NULL), SM_EINVAL);
    char seen[256] = "not run";
    pthread_t t;
    if (!CHECK(pthread_create(&t, NULL, fail_in_thread, seen) == 0))
        return;
    pthread_join(t, NULL);
    CHECK(strcmp(seen, "") == 0);
    /* The other thread's failure did not overwrite this thread's text. */
    CHECK(strstr(sm_last_error(), "sm_profile_write") != NULL);
}

/* The default handler's report (it aborts, so a forked child raises the
 * event) ends with what to do about it. */
static char *default_report_of_double_put(int *signal_out)
{
    int fds[2];
    if (pipe(fds) != 0)
        return NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        sm_pool *p = NULL;
        sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 4), .check = SM_CHECK_CHEAP};
        if (sm_pool_new(&p, &o) != 0)
            _exit(3);
        void *a = sm_pool_get(p);
        sm_pool_put(p, a);
        sm_pool_put(p, a); /* SM_EDOUBLE: the default handler reports and aborts */
        _exit(4);
    }
    close(fds[1]);
    static char out[8192];
    size_t n = 0;
    ssize_t got;
    while (n < sizeof out - 1 && (got = read(fds[0], out + n, sizeof out - 1 - n)) > 0)
        n += (size_t)got;
    out[n] = '\0';
    close(fds[0]);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return NULL;
    *signal_out = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return out;
}

static void test_default_report_ends_with_the_remedy(void)
{
    int sig = 0;
    const char *out = default_report_of_double_put(&sig);
    if (!CHECK(out != NULL))
        return;
    CHECK_EQ(sig, SIGABRT);
    CHECK(strstr(out, "safemap: SM_EDOUBLE") == out);
    const char *remedy = strstr(out, "\n  remedy: ");
    if (!CHECK(remedy != NULL)) {
        printf("  report:\n%s", out);
        return;
    }
    CHECK(strstr(remedy, "SAFEMAP_CHECK=full") != NULL);
    CHECK(strstr(remedy, "-rdynamic") != NULL);
    CHECK(strstr(remedy, "sm_set_handler") != NULL);
    /* The remedy is the last line. */
    CHECK(strchr(remedy + 1, '\n') == out + strlen(out) - 1);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_version_matches_header);
    RUN(test_strerror_names_every_code);
    RUN(test_last_error_names_the_layout_field);
    RUN(test_last_error_names_the_function_and_argument);
    RUN(test_pool_einval_names_the_argument);
    RUN(test_last_error_survives_a_later_success);
    RUN(test_last_error_is_per_thread);
    RUN(test_default_report_ends_with_the_remedy);
    return tl_finish();
}
