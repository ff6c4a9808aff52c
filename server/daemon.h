/*
 * daemon.h - what safemapd's parts share: the configuration, the run state
 * that health checks report, and the per-command statistics that metrics
 * export.
 */
#ifndef SAFEMAP_SERVER_DAEMON_H
#define SAFEMAP_SERVER_DAEMON_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "persist.h"
#include "store.h"

typedef struct smd_config {
    char bind[64];  /* default "127.0.0.1" */
    int port;       /* RESP, default 7379; 0 is refused */
    int http_port;  /* default 7380; 0 is refused */
    int threads;    /* workers; default: number of cores */
    char dir[4096]; /* data directory, default "." */
    smd_fsync appendfsync;
    int appendonly;        /* log on (default 1) */
    char requirepass[256]; /* empty: no AUTH needed */
    uint64_t maxmemory;    /* bytes; 0: no limit */
    int maxclients;        /* default 10000 */
    size_t max_bulk;       /* request limits */
    size_t max_args;
    char logfile[4096]; /* empty: stderr */
} smd_config;

/* Run state, read by /health and written by the main thread. */
enum { SMD_STARTING, SMD_READY, SMD_DRAINING, SMD_STOPPED };

/* Per-command counters and latency histograms (microseconds, buckets of
 * powers of two up to ~8 s), kept per worker thread and summed on read. */
#define SMD_LAT_BUCKETS 24

typedef struct smd_cmdstat {
    const char *name; /* "sm.get", "ping", ... lower case */
    _Atomic uint64_t calls, errors;
    _Atomic uint64_t usec_sum;
    _Atomic uint64_t buckets[SMD_LAT_BUCKETS]; /* bucket i: <= 2^i us */
} smd_cmdstat;

typedef struct smd_daemon {
    smd_config cfg;
    smd_store *store;
    smd_persist *persist; /* NULL when there is no persistence */
    _Atomic int state;
    _Atomic uint64_t connections_total, connections_open, rejected_connections;
    _Atomic uint64_t http_requests;
    _Atomic uint64_t oom_rejections;
    double start_time; /* seconds, CLOCK_REALTIME */
    smd_cmdstat *cmds; /* ncmds entries */
    size_t ncmds;
    /* Added by the daemon's own code (main.c, net.c, daemon.c). */
    _Atomic uint64_t maps_gen; /* bumped when a map is created or dropped */
    _Atomic uint64_t commands_total, protocol_errors, output_limit_closes, partial_timeouts;
    _Atomic uint64_t net_input_bytes, net_output_bytes;
    _Atomic int shutdown_save;    /* SHUTDOWN: -1 NOSAVE, 0 default, 1 SAVE */
    char config_file[4096];       /* --config, "" when none */
    int timeout_partial_ms;       /* a partial request older than this is closed */
    uint64_t client_output_limit; /* bytes of unsent replies before a client is closed */
    int shutdown_delay_ms;        /* after SIGTERM: serve on this long while DRAINING */
    _Atomic int shutdown_now;     /* SHUTDOWN asked: no delay */
} smd_daemon;

/* Finds a command's statistics by its (lower-case) name, or NULL. */
smd_cmdstat *smd_cmdstat_find(smd_daemon *d, const char *name);
/* Records one call of usec microseconds. */
void smd_cmdstat_record(smd_cmdstat *c, uint64_t usec, int error);

/* Memory held by the maps, for maxmemory and metrics (sm_stats_read). */
uint64_t smd_memory_used(void);

/* ---- Added by the daemon (daemon.c) ------------------------------------ */

/* Builds d->cmds: one entry per command safemapd knows (server commands and
 * the per-map commands), in a fixed order.  Returns 0 or SM_ENOMEM. */
int smd_cmdstats_init(smd_daemon *d);
void smd_cmdstats_free(smd_daemon *d);

/* A map was created or dropped: cached name lookups must be redone.  Code
 * outside the RESP path that creates or drops maps (HTTP) calls this. */
void smd_daemon_maps_changed(smd_daemon *d);

/* INFO's text ("# Server\r\nredis_version:...\r\n..."), for section
 * (NULL, "all", "default" or one name, any case).  Returns a malloc'ed
 * NUL-terminated string (*len bytes) or NULL when out of memory. */
char *smd_info_text(smd_daemon *d, const char *section, size_t *len);

/* Structured logging: one line per event, key=value pairs,
 *   ts=2024-05-01T12:00:00.123Z level=info msg="listening" port=7379
 * kvfmt (may be NULL) is a printf format for the pairs after msg.  Lines are
 * written whole with one write(), so threads never interleave. */
enum { SMD_LOG_DEBUG, SMD_LOG_INFO, SMD_LOG_WARN, SMD_LOG_ERROR };
void smd_log(int level, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sends the log to path (appending), or to stderr when path is empty.
 * Returns 0 or -errno. */
int smd_log_open(const char *path);
/* Reopens the log file (SIGHUP, after rotation).  Returns 0 or -errno. */
int smd_log_reopen(void);

#define SMD_VERSION "0.1.0"

#endif
