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
    char bind[64];       /* default "127.0.0.1" */
    int port;            /* RESP, default 7379; 0 is refused */
    int http_port;       /* default 7380; 0 is refused */
    int threads;         /* workers; default: number of cores */
    char dir[4096];      /* data directory, default "." */
    smd_fsync appendfsync;
    int appendonly;      /* log on (default 1) */
    char requirepass[256]; /* empty: no AUTH needed */
    uint64_t maxmemory;  /* bytes; 0: no limit */
    int maxclients;      /* default 10000 */
    size_t max_bulk;     /* request limits */
    size_t max_args;
    char logfile[4096];  /* empty: stderr */
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
} smd_daemon;

/* Finds a command's statistics by its (lower-case) name, or NULL. */
smd_cmdstat *smd_cmdstat_find(smd_daemon *d, const char *name);
/* Records one call of usec microseconds. */
void smd_cmdstat_record(smd_cmdstat *c, uint64_t usec, int error);

/* Memory held by the maps, for maxmemory and metrics (sm_stats_read). */
uint64_t smd_memory_used(void);

#endif
