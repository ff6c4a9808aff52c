/*
 * test_pool_fork.c - fork() while another thread uses the pool.
 *
 * The child of a fork has only the forking thread.  Before the pool handled
 * fork, a child forked while another thread was inside Get/Put could find
 * that thread's cache still marked active (sm_pool_cycle then waited for it
 * forever) or a pool lock copied while held (Get/Put hung).  Here a thread
 * hammers Get/Put on two pools while the main thread forks children; each
 * child uses both pools (Get, Put, cycle, stats, verify, free) and exits.
 * A child that hangs is killed by its own alarm and fails the test; the
 * parent also gives up waiting after a deadline.
 */
#define _DEFAULT_SOURCE /* usleep */
#include "internal.h"   /* pool_verify */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

enum { CHILDREN = 20, CHILD_SECONDS = 5 };

static atomic_int stop;

static sm_pool *pool_make(int check)
{
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 16), .check = check, .name = "forked"};
    sm_pool *p = NULL;
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    return p;
}

static void *hammer(void *arg)
{
    sm_pool **pools = arg;
    void *held[8];
    uint64_t i = 0;
    while (!atomic_load(&stop)) {
        sm_pool *p = pools[i++ & 1];
        for (int k = 0; k < 8; k++)
            held[k] = sm_pool_get(p);
        for (int k = 0; k < 8; k++)
            sm_pool_put(p, held[k]);
        if ((i & 1023) == 0)
            sm_pool_cycle(p);
    }
    return NULL;
}

/* The child's work: 0 when every step did what it should. */
static int child_work(sm_pool **pools)
{
    alarm(CHILD_SECONDS); /* a hang ends in SIGALRM, which the parent sees */
    for (int k = 0; k < 2; k++) {
        sm_pool *p = pools[k];
        void *a[100];
        for (int i = 0; i < 100; i++)
            if (!(a[i] = sm_pool_get(p)))
                return 1;
        for (int i = 0; i < 100; i++)
            if (sm_pool_put(p, a[i]) != 0)
                return 2;
        sm_pool_cycle(p);
        sm_pool_cycle(p);
        if (pool_verify(p) != 0)
            return 3;
        struct sm_pool_stats st;
        if (sm_pool_stats(p, &st) != 0)
            return 4;
        pool_counts c;
        pool_counters(p, &c);
        if (c.caches > 1) /* the dead thread's cache is gone: at most ours */
            return 5;
        sm_pool_free(p);
    }
    return 0;
}

static void test_fork_while_another_thread_uses_the_pool(void)
{
    sm_pool *pools[2] = {pool_make(SM_CHECK_CHEAP), pool_make(SM_CHECK_OFF)};
    if (!pools[0] || !pools[1])
        return;
    atomic_store(&stop, 0);
    pthread_t t;
    pthread_create(&t, NULL, hammer, pools);
    usleep(10000);
    int ok = 0;
    for (int c = 0; c < CHILDREN; c++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(child_work(pools));
        if (!CHECK(pid > 0))
            break;
        int status = 0;
        double deadline = tl_now() + CHILD_SECONDS + 5;
        pid_t got = 0;
        while ((got = waitpid(pid, &status, WNOHANG)) == 0 && tl_now() < deadline)
            usleep(2000);
        if (got == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
        if (CHECK(got == pid) && CHECK(WIFEXITED(status)) && CHECK_EQ(WEXITSTATUS(status), 0))
            ok++;
        else
            printf("  child %d: %s %d\n", c, WIFSIGNALED(status) ? "killed by signal" : "exit",
                   WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        usleep(1000 * (c % 3)); /* fork at different points of the loop */
    }
    CHECK_EQ(ok, CHILDREN);
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    /* The parent's pools are intact and usable. */
    for (int k = 0; k < 2; k++) {
        void *a = sm_pool_get(pools[k]);
        CHECK(a != NULL);
        CHECK_EQ(sm_pool_put(pools[k], a), 0);
        CHECK_EQ(pool_verify(pools[k]), 0);
        sm_pool_free(pools[k]);
    }
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_fork_while_another_thread_uses_the_pool);
    return tl_finish();
}
