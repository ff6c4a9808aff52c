/*
 * daemon.c - safemapd's shared state: per-command statistics, the memory
 * figure maxmemory is checked against, INFO's text and the structured log.
 *
 * Statistics.  d->cmds has one entry per command of net.h's SMD_COMMANDS, in
 * that order, so the RESP workers index it directly; each worker sums its
 * calls locally and adds them here every 256 commands or 100 ms, so the
 * shared atomics are not touched per command.  HTTP records its calls with
 * smd_cmdstat_record and reads the entries with relaxed loads.
 *
 * The log.  One line per event, "ts=... level=... msg="..." k=v ...", built
 * in a stack buffer and written with one write() to a descriptor that
 * SIGHUP replaces in place (dup2), so threads never interleave lines and a
 * rotation never loses one.
 */
#define _GNU_SOURCE
#include "daemon.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "safemap.h"

/* ---- Command statistics ------------------------------------------------ */

#define SMD_X_NAME(id, name, arity, flags) name,
static const char *const cmd_names[SMD_NCMDS] = {SMD_COMMANDS(SMD_X_NAME)};
#undef SMD_X_NAME

int smd_cmdstats_init(smd_daemon *d)
{
    smd_cmdstat *c = calloc(SMD_NCMDS, sizeof *c);
    if (!c)
        return SM_ENOMEM;
    for (size_t i = 0; i < SMD_NCMDS; i++)
        c[i].name = cmd_names[i];
    d->cmds = c;
    d->ncmds = SMD_NCMDS;
    return 0;
}

void smd_cmdstats_free(smd_daemon *d)
{
    free(d->cmds);
    d->cmds = NULL;
    d->ncmds = 0;
}

smd_cmdstat *smd_cmdstat_find(smd_daemon *d, const char *name)
{
    if (!d || !name)
        return NULL;
    for (size_t i = 0; i < d->ncmds; i++)
        if (strcasecmp(d->cmds[i].name, name) == 0)
            return &d->cmds[i];
    return NULL;
}

void smd_cmdstat_record(smd_cmdstat *c, uint64_t usec, int error)
{
    if (!c)
        return;
    unsigned b = 0;
    if (usec > 1)
        b = 64 - (unsigned)__builtin_clzll(usec - 1);
    if (b >= SMD_LAT_BUCKETS)
        b = SMD_LAT_BUCKETS - 1;
    atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed);
    if (error)
        atomic_fetch_add_explicit(&c->errors, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->usec_sum, usec, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->buckets[b], 1, memory_order_relaxed);
}

uint64_t smd_memory_used(void)
{
    struct sm_stats s;
    sm_stats_read(&s);
    return s.bytes_held;
}

void smd_daemon_maps_changed(smd_daemon *d)
{
    atomic_fetch_add_explicit(&d->maps_gen, 1, memory_order_release);
}

/* ---- The log ----------------------------------------------------------- */

static int log_fd = 2;
static char log_path[4096];

int smd_log_open(const char *path)
{
    if (!path || !*path) {
        log_path[0] = '\0';
        log_fd = 2;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    snprintf(log_path, sizeof log_path, "%s", path);
    log_fd = fd;
    return 0;
}

int smd_log_reopen(void)
{
    if (!log_path[0])
        return 0;
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    /* dup2 swaps the file under the same descriptor: a thread writing at
     * this instant writes whole lines to the old file or the new one. */
    int rc = dup2(fd, log_fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void smd_log(int level, const char *msg, const char *kvfmt, ...)
{
    char line[2048];
    size_t cap = sizeof line - 1, n;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    if (level < SMD_LOG_DEBUG || level > SMD_LOG_ERROR)
        level = SMD_LOG_ERROR;
    n = strftime(line, cap, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, cap - n, ".%03ldZ level=%s msg=\"", ts.tv_nsec / 1000000,
                          level_names[level]);
    for (const char *p = msg ? msg : ""; *p && n < cap - 8; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            line[n++] = '\\';
            line[n++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            n += (size_t)snprintf(line + n, cap - n, "\\x%02x", ch);
        } else {
            line[n++] = (char)ch;
        }
    }
    line[n++] = '"';
    if (kvfmt && *kvfmt && n < cap - 1) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, kvfmt);
        int k = vsnprintf(line + n, cap - n, kvfmt, ap);
        va_end(ap);
        if (k > 0)
            n += (size_t)k < cap - n ? (size_t)k : cap - n - 1;
    }
    /* No raw newline may split the line. */
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    ssize_t w = write(log_fd, line, n);
    (void)w;
}

/* ---- INFO -------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)k < b->cap - b->len) {
            b->len += (size_t)k;
            return;
        }
        size_t ncap = b->cap * 2 + (size_t)k + 1;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

static void human(char *out, size_t n, uint64_t v)
{
    static const char units[] = "BKMGT";
    double x = (double)v;
    int u = 0;
    while (x >= 1024 && u < 4) {
        x /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, n, "%lluB", (unsigned long long)v);
    else
        snprintf(out, n, "%.2f%c", x, units[u]);
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, rss = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &rss) != 2)
        rss = 0;
    fclose(f);
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static double now_real(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t ld(_Atomic uint64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

static const char *state_name(int s)
{
    switch (s) {
    case SMD_STARTING:
        return "starting";
    case SMD_READY:
        return "ready";
    case SMD_DRAINING:
        return "draining";
    default:
        return "stopped";
    }
}

static void info_server(smd_daemon *d, sbuf *b)
{
    struct utsname u;
    if (uname(&u) != 0)
        memset(&u, 0, sizeof u);
    double up = now_real() - d->start_time;
    if (up < 0)
        up = 0;
    sb_printf(b,
              "# Server\r\nredis_version:7.2.0\r\nsafemap_version:%s\r\nredis_mode:standalone\r\n"
              "os:%s %s %s\r\narch_bits:%d\r\nmultiplexing_api:libevent\r\nprocess_id:%ld\r\n"
              "tcp_port:%d\r\nhttp_port:%d\r\nbind:%s\r\nthreads:%d\r\nuptime_in_seconds:%llu\r\n"
              "uptime_in_days:%llu\r\nstate:%s\r\nconfig_file:%s\r\n\r\n",
              SMD_VERSION, u.sysname, u.release, u.machine, (int)(sizeof(void *) * 8),
              (long)getpid(), d->cfg.port, d->cfg.http_port, d->cfg.bind, d->cfg.threads,
              (unsigned long long)up, (unsigned long long)(up / 86400),
              state_name(atomic_load(&d->state)), d->config_file);
}

static void info_clients(smd_daemon *d, sbuf *b)
{
    sb_printf(b, "# Clients\r\nconnected_clients:%llu\r\nmaxclients:%d\r\n\r\n",
              (unsigned long long)ld(&d->connections_open), d->cfg.maxclients);
}

static void info_memory(smd_daemon *d, sbuf *b)
{
    uint64_t used = smd_memory_used(), rss = rss_bytes();
    char h1[32], h2[32], h3[32];
    human(h1, sizeof h1, used);
    human(h2, sizeof h2, rss);
    human(h3, sizeof h3, d->cfg.maxmemory);
    sb_printf(b,
              "# Memory\r\nused_memory:%llu\r\nused_memory_human:%s\r\nused_memory_rss:%llu\r\n"
              "used_memory_rss_human:%s\r\nmaxmemory:%llu\r\nmaxmemory_human:%s\r\n"
              "maxmemory_policy:noeviction\r\noom_rejections:%llu\r\n\r\n",
              (unsigned long long)used, h1, (unsigned long long)rss, h2,
              (unsigned long long)d->cfg.maxmemory, h3, (unsigned long long)ld(&d->oom_rejections));
}

static const char *fsync_name(smd_fsync f)
{
    return f == SMD_FSYNC_ALWAYS ? "always" : f == SMD_FSYNC_EVERYSEC ? "everysec" : "no";
}

static void info_persistence(smd_daemon *d, sbuf *b)
{
    sb_printf(b, "# Persistence\r\nloading:%d\r\npersistence:%s\r\n",
              atomic_load(&d->state) == SMD_STARTING, d->persist ? "on" : "off");
#ifdef SMD_HAVE_PERSIST
    if (d->persist) {
        smd_persist_info pi;
        memset(&pi, 0, sizeof pi);
        smd_persist_info_get(d->persist, &pi);
        sb_printf(b,
                  "dir:%s\r\nrdb_last_save_time:%lld\r\nrdb_last_bgsave_status:%s\r\n"
                  "rdb_bgsave_in_progress:%d\r\naof_enabled:%d\r\nappendfsync:%s\r\n"
                  "aof_current_size:%llu\r\naof_pending_bytes:%llu\r\naof_lag_seconds:%.3f\r\n"
                  "aof_records:%llu\r\nload_seconds:%.3f\r\n",
                  d->cfg.dir, (long long)pi.last_save, pi.last_save_ok ? "ok" : "err",
                  pi.bgsave_in_progress, d->cfg.appendonly, fsync_name(d->cfg.appendfsync),
                  (unsigned long long)pi.log_bytes, (unsigned long long)pi.log_pending,
                  pi.log_lag_seconds, (unsigned long long)pi.log_records, pi.load_seconds);
    }
#endif
    sb_printf(b, "\r\n");
}

static void info_stats(smd_daemon *d, sbuf *b)
{
    sb_printf(
        b,
        "# Stats\r\ntotal_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n"
        "rejected_connections:%llu\r\ntotal_net_input_bytes:%llu\r\n"
        "total_net_output_bytes:%llu\r\nprotocol_errors:%llu\r\n"
        "client_output_limit_disconnections:%llu\r\npartial_timeout_disconnections:%llu\r\n"
        "oom_rejections:%llu\r\nhttp_requests:%llu\r\n\r\n",
        (unsigned long long)ld(&d->connections_total), (unsigned long long)ld(&d->commands_total),
        (unsigned long long)ld(&d->rejected_connections),
        (unsigned long long)ld(&d->net_input_bytes), (unsigned long long)ld(&d->net_output_bytes),
        (unsigned long long)ld(&d->protocol_errors),
        (unsigned long long)ld(&d->output_limit_closes),
        (unsigned long long)ld(&d->partial_timeouts), (unsigned long long)ld(&d->oom_rejections),
        (unsigned long long)ld(&d->http_requests));
}

static void info_commandstats(smd_daemon *d, sbuf *b)
{
    sb_printf(b, "# Commandstats\r\n");
    for (size_t i = 0; i < d->ncmds; i++) {
        smd_cmdstat *c = &d->cmds[i];
        uint64_t calls = ld(&c->calls), usec = ld(&c->usec_sum), errs = ld(&c->errors);
        if (!calls)
            continue;
        sb_printf(b, "cmdstat_%s:calls=%llu,usec=%llu,usec_per_call=%.2f,failed_calls=%llu\r\n",
                  c->name, (unsigned long long)calls, (unsigned long long)usec,
                  (double)usec / (double)calls, (unsigned long long)errs);
    }
    sb_printf(b, "\r\n");
}

static int info_map(smc_map *m, void *ctx)
{
    sbuf *b = ctx;
    const smc_spec *s = smc_map_spec(m);
    sb_printf(b, "map_%s:type=%s,len=%zu,pooled=%d,entries=%zu\r\n", smc_map_name(m),
              smc_type_name(s->type), s->len, s->pooled, sm_cmap_len(smc_map_cmap(m)));
    return 0;
}

static void info_maps(smd_daemon *d, sbuf *b)
{
    sb_printf(b, "# Maps\r\nmaps:%zu\r\n", d->store ? smd_store_count(d->store) : 0);
    if (d->store)
        smd_store_each(d->store, info_map, b);
    sb_printf(b, "\r\n");
}

typedef struct info_section {
    const char *name;
    void (*fn)(smd_daemon *, sbuf *);
    int by_default;
} info_section;

static const info_section sections[] = {
    {"server", info_server, 1}, {"clients", info_clients, 1},
    {"memory", info_memory, 1}, {"persistence", info_persistence, 1},
    {"stats", info_stats, 1},   {"commandstats", info_commandstats, 0},
    {"maps", info_maps, 1},     {"keyspace", info_maps, 0},
};

char *smd_info_text(smd_daemon *d, const char *section, size_t *len)
{
    sbuf b = {malloc(4096), 0, 4096, 0};
    if (!b.p)
        return NULL;
    b.p[0] = '\0';
    int all =
        section && (strcasecmp(section, "all") == 0 || strcasecmp(section, "everything") == 0);
    int dflt = !section || !*section || strcasecmp(section, "default") == 0;
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        const info_section *s = &sections[i];
        int want = all    ? strcmp(s->name, "keyspace") != 0
                   : dflt ? s->by_default
                          : strcasecmp(section, s->name) == 0;
        if (want)
            s->fn(d, &b);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    /* Drop the blank line after the last section, as Redis does. */
    if (b.len >= 2 && b.p[b.len - 2] == '\r' && b.len >= 4 && b.p[b.len - 4] == '\r')
        b.len -= 2;
    b.p[b.len] = '\0';
    *len = b.len;
    return b.p;
}
