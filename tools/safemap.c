/*
 * safemap.c - the `safemap` command-line program.
 *
 *   safemap demo [N]        four classic bugs, done and then caught
 *   safemap stats           the built-in demonstration workload, then its
 *                           statistics
 *   safemap metrics         the same workload, then Prometheus text
 *   safemap profile FILE    the same workload, then a pprof heap profile
 *   safemap report          the same workload at SM_CHECK_FULL, then outstanding
 *                           arrays by Get site, and the leak report of
 *                           sm_pool_free
 *   safemap cost            what each check level costs on this machine
 *   safemap help | --help | version | --version
 *
 * stats, metrics, profile and report describe a workload built into this
 * program, not the user's: they show what each diagnostic prints, and the
 * help and their output say so.  A program gets its own by calling the
 * same functions (sm_pool_stats, sm_metrics_write, ...).  The workload
 * (work_run): a pooled map of int64_t[8] grown to 100000 entries and shrunk
 * to 20000, and arrays taken from a second pool by two functions that never
 * give some of them back, so that the report and the profile have
 * outstanding arrays to show.  Its objects stay alive while their
 * diagnostics are written.
 *
 * Exit status: 0 on success, 1 when a command fails or its output cannot be
 * written (`safemap report >/dev/full`), 2 for a usage error.
 */
#include "demo.h"

#include "../src/internal.h" /* chk_level_name: one spelling of the levels */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define TOOL_NOINLINE __attribute__((noinline))
#else
#define TOOL_NOINLINE
#endif

static const char usage[] =
    "usage: safemap <command> [args]\n"
    "\n"
    "  demo [1|2|3|4]  replay four classic bugs: each does its damage without\n"
    "                  checks, then safemap catches it or makes it impossible\n"
    "                    1  a pointer into the map kept across growth\n"
    "                    2  an array Put while still in use; a double Put\n"
    "                    3  int64_t[8] and int64_t[9] layouts meeting\n"
    "                    4  readers during incremental growth (sm_cmap)\n"
    "                  exit status 0 when every bug was caught\n"
    "  cost [--quick]  measure what each check level costs on this machine: ns per\n"
    "                  map put, get, del and pool Get+Put at off, cheap and full\n"
    "\n"
    "Built-in demonstration: the next four commands run a small workload inside\n"
    "this program (a pooled map of int64_t[8], and a pool of 4 KiB buffers some of\n"
    "which are never given back) and show what each diagnostic prints for it.\n"
    "They do not look at your program: to see its own, call the same functions\n"
    "from it (docs/diagnostics.md shows how).\n"
    "  stats           print sm_pool_stats, sm_map_stats and sm_stats_read\n"
    "  metrics         print sm_metrics_write (Prometheus text format)\n"
    "  profile FILE    write sm_profile_write to FILE (go tool pprof -top FILE)\n"
    "  report          run at SM_CHECK_FULL, print sm_pool_report, then free the\n"
    "                  pool with the arrays still out (sm_pool_free's leak report)\n"
    "\n"
    "  help, --help    this text\n"
    "  version, --version\n"
    "                  the version of the library linked\n"
    "\n"
    "Environment: SAFEMAP_CHECK=off|cheap|full, SAFEMAP_DEBUG=trace=1,check=...,sample=N\n"
    "(see docs/diagnostics.md, installed under share/doc/safemap).\n";

/* What stats, metrics, profile and report say about their workload. */
static const char demo_notice[] =
    "built-in demonstration workload, not your program's objects (safemap --help)";

/* ---- The workload --------------------------------------------------------- */

typedef struct work {
    sm_pool *rows;   /* values of the map */
    sm_map *quotes;  /* int64_t -> int64_t[8], pooled */
    sm_pool *bufs;   /* scratch buffers, some never given back */
    void *held[160]; /* what the workload keeps of bufs */
    int nheld;
} work;

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int64_t work_key(uint64_t i)
{
    return (int64_t)(splitmix64(i) >> 1);
}

/* Two Get sites, so that the report and the profile group by something.
 * Each writes into the buffer after the Get, which also keeps the call from
 * becoming a tail jump (the function would then vanish from the stack). */
void *load_batch(sm_pool *p);
TOOL_NOINLINE void *load_batch(sm_pool *p)
{
    uint8_t *b = sm_pool_get(p);
    if (b)
        b[0] = 'b';
    return b;
}

void *open_session(sm_pool *p);
TOOL_NOINLINE void *open_session(sm_pool *p)
{
    uint8_t *b = sm_pool_get(p);
    if (b)
        b[0] = 's';
    return b;
}

static int work_run(work *w, int check)
{
    memset(w, 0, sizeof *w);
    sm_pool_opts ro = {.layout = SM_LAYOUT(int64_t, 8), .check = check, .name = "rows"};
    sm_pool_opts bo = {.layout = SM_LAYOUT(uint8_t, 4096), .check = check, .name = "bufs"};
    if (sm_pool_new(&w->rows, &ro) || sm_pool_new(&w->bufs, &bo))
        return 1;
    sm_map_opts mo = {.layout = SM_LAYOUT(int64_t, 8),
                      .storage = SM_POOLED,
                      .pool = w->rows,
                      .check = check,
                      .name = "quotes"};
    if (sm_map_new(&w->quotes, &mo))
        return 1;
    int64_t v[8] = {0};
    for (uint64_t i = 0; i < 100000; i++) {
        v[0] = (int64_t)i;
        if (sm_map_put(w->quotes, work_key(i), v))
            return 1;
    }
    for (uint64_t i = 0; i < 80000; i++)
        sm_map_del(w->quotes, work_key(i));
    /* The deleted values' arrays are idle in rows: two cycles give them back. */
    sm_pool_cycle(w->rows);
    sm_pool_cycle(w->rows);
    /* bufs: 1000 Get/Put round trips from load_batch, of which 100 are kept;
     * 50 more kept from open_session. */
    for (int i = 0; i < 1000; i++) {
        void *b = load_batch(w->bufs);
        if (!b)
            return 1;
        if (i % 10 == 0)
            w->held[w->nheld++] = b;
        else
            sm_pool_put(w->bufs, b);
    }
    for (int i = 0; i < 50; i++) {
        void *b = open_session(w->bufs);
        if (!b)
            return 1;
        w->held[w->nheld++] = b;
    }
    sm_pool_cycle(w->bufs);
    return 0;
}

/* Frees the workload's objects; with leak, bufs is freed with its arrays
 * still out (at SM_CHECK_FULL, sm_pool_free then reports them). */
static void work_free(work *w, bool leak)
{
    for (int i = 0; i < w->nheld && !leak; i++)
        sm_pool_put(w->bufs, w->held[i]);
    sm_map_free(w->quotes);
    sm_pool_free(w->rows);
    sm_pool_free(w->bufs);
}

/* Runs the workload for command cmd; on failure cleans up, says so, and
 * returns false. */
static bool work_start(work *w, int check, const char *cmd)
{
    if (work_run(w, check) == 0)
        return true;
    work_free(w, false);
    fprintf(stderr, "safemap %s: the workload ran out of memory\n", cmd);
    return false;
}

/* ---- stats ---------------------------------------------------------------- */

static void print_misuse(const uint64_t misuse[SM_NCODES])
{
    printf("  misuse:");
    int any = 0;
    for (int i = 4; i < SM_NCODES; i++) {
        if (misuse[i]) {
            const char *name = sm_strerror(-i);
            printf(" %.*s=%" PRIu64, (int)strcspn(name, ":"), name, misuse[i]);
            any = 1;
        }
    }
    printf("%s\n", any ? "" : " none");
}

static void print_pool_stats(const char *name, sm_pool *p)
{
    struct sm_pool_stats s;
    if (sm_pool_stats(p, &s) != 0)
        return;
    printf("pool %s: %s, check %s\n", name, s.layout.name, chk_level_name(s.check));
    printf("  gets %" PRIu64 ", puts %" PRIu64 ", news %" PRIu64 ", frees %" PRIu64
           ", cycles %" PRIu64 "\n",
           s.gets, s.puts, s.news, s.frees, s.cycles);
    printf("  live %zu arrays (%zu B), idle %zu arrays (%zu B), reserved %zu B\n", s.live_arrays,
           s.live_bytes, s.idle_arrays, s.idle_bytes, s.reserved_bytes);
    print_misuse(s.misuse);
}

static void print_map_stats(const char *name, const sm_map *m)
{
    struct sm_map_stats s;
    if (sm_map_stats(m, &s) != 0)
        return;
    printf("map %s: %s, %s, check %s\n", name, s.layout.name,
           s.storage == SM_POOLED ? "pooled" : "inline", chk_level_name(s.check));
    printf("  len %zu, capacity %zu, load %.3f, %zu segments (+%zu free), global depth %u, "
           "%zu B\n",
           s.len, s.capacity, s.load, s.segments, s.free_segments, s.global_depth, s.bytes);
    printf("  splits %" PRIu64 ", merges %" PRIu64 ", rebuilds %" PRIu64
           ", directory doublings %" PRIu64 ", halvings %" PRIu64 "\n",
           s.splits, s.merges, s.rebuilds, s.dir_doublings, s.dir_halvings);
    printf("  probe lengths:");
    for (int i = 0; i < SM_PROBE_BUCKETS; i++)
        if (s.probe[i])
            printf(" %d%s:%" PRIu64, i, i == SM_PROBE_BUCKETS - 1 ? "+" : "", s.probe[i]);
    printf("\n");
    print_misuse(s.misuse);
}

static int cmd_stats(void)
{
    work w;
    if (!work_start(&w, SM_CHECK_DEFAULT, "stats"))
        return 1;
    printf("# safemap stats: %s\n", demo_notice);
    print_pool_stats("rows", w.rows);
    print_pool_stats("bufs", w.bufs);
    print_map_stats("quotes", w.quotes);
    struct sm_stats g;
    sm_stats_read(&g);
    printf("process: %zu pools, %zu maps, %zu B held, %" PRIu64 " allocations, %" PRIu64 " frees\n",
           g.pools, g.maps, g.bytes_held, g.allocs, g.frees);
    print_misuse(g.misuse);
    work_free(&w, false);
    return 0;
}

/* ---- metrics, profile, report --------------------------------------------- */

static int cmd_metrics(void)
{
    work w;
    if (!work_start(&w, SM_CHECK_DEFAULT, "metrics"))
        return 1;
    /* stdout stays pure exposition text; the notice goes to stderr. */
    fprintf(stderr, "safemap metrics: %s\n", demo_notice);
    int rc = sm_metrics_write(stdout);
    int saved = errno;
    work_free(&w, false);
    if (rc == SM_EIO)
        fprintf(stderr, "safemap metrics: cannot write the metrics: %s\n", strerror(saved));
    else if (rc)
        fprintf(stderr, "safemap metrics: %s\n", sm_strerror(rc));
    return rc != 0;
}

static int cmd_profile(const char *path)
{
    work w;
    /* FULL records every Get's stack; CHEAP only a sample of them. */
    if (!work_start(&w, SM_CHECK_FULL, "profile"))
        return 1;
    int rc = sm_profile_write(path);
    int saved = errno;
    work_free(&w, false);
    if (rc == SM_EIO) {
        fprintf(stderr, "safemap profile: cannot write %s: %s\n", path, strerror(saved));
        return 1;
    }
    if (rc) {
        fprintf(stderr, "safemap profile: %s: %s\n", path, sm_strerror(rc));
        return 1;
    }
    printf("wrote %s, the heap profile of the %s; read it with: go tool pprof -top %s\n", path,
           demo_notice, path);
    return 0;
}

static int cmd_report(void)
{
    work w;
    if (!work_start(&w, SM_CHECK_FULL, "report"))
        return 1;
    printf("# safemap report: %s\n", demo_notice);
    int rc = sm_pool_report(w.bufs, stdout);
    if (rc == SM_EIO)
        fprintf(stderr, "safemap report: cannot write the report: %s\n", strerror(errno));
    else if (rc)
        fprintf(stderr, "safemap report: %s\n", sm_strerror(rc));
    fflush(stdout);
    fprintf(stderr, "\nsm_pool_free with those arrays still out (the leak report, on stderr):\n");
    work_free(&w, true);
    return rc != 0;
}

/* ---- main ----------------------------------------------------------------- */

/* A command's output is only delivered once stdout is flushed: a full disk
 * or a closed pipe shows here, and turns success into failure. */
static int finish(int status)
{
    errno = 0;
    bool failed = fflush(stdout) != 0 || ferror(stdout);
    if (failed && status == 0) /* a failed command has said why already */
        fprintf(stderr, "safemap: cannot write the output: %s\n",
                errno ? strerror(errno) : "write error");
    return failed && status == 0 ? 1 : status;
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "safemap: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nRun 'safemap --help' for the commands.\n");
    return 2;
}

/* Commands that take no argument refuse one rather than ignore it. */
static bool no_extra(int argc, char **argv, int *status)
{
    if (argc <= 2)
        return true;
    *status = usage_error("unexpected argument '%s'", argv[2]);
    return false;
}

static int run(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    int status = 0;
    if (strcmp(cmd, "demo") == 0)
        return demo_main(argc - 1, argv + 1);
    if (strcmp(cmd, "cost") == 0)
        return cost_main(argc - 1, argv + 1);
    if (strcmp(cmd, "stats") == 0)
        return no_extra(argc, argv, &status) ? cmd_stats() : status;
    if (strcmp(cmd, "metrics") == 0)
        return no_extra(argc, argv, &status) ? cmd_metrics() : status;
    if (strcmp(cmd, "report") == 0)
        return no_extra(argc, argv, &status) ? cmd_report() : status;
    if (strcmp(cmd, "profile") == 0) {
        if (argc < 3)
            return usage_error("%s: missing FILE (safemap profile FILE)", "profile");
        if (argc > 3)
            return usage_error("unexpected argument '%s'", argv[3]);
        return cmd_profile(argv[2]);
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        /* The library's own version: the one actually linked. */
        printf("safemap %s\n", sm_version());
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    return usage_error("unknown command '%s'", cmd);
}

int main(int argc, char **argv)
{
    return finish(run(argc, argv));
}
