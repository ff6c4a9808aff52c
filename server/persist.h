/*
 * persist.h - durability for safemapd: snapshots and the append-only log.
 *
 * A snapshot is one file holding every map at one point in time: a header
 * (magic, format version, byte order), then per map its name and layout and
 * its entries in checksummed blocks, then a trailer with the counts and a
 * checksum of the whole.  It is written to a temporary file in the data
 * directory, fsynced, renamed over the old snapshot, and the directory is
 * fsynced, so a crash leaves the old snapshot or the new one, never a mix.
 * BGSAVE forks: the write gate (smd_store_pause) is held for the instant of
 * the fork, so the child sees a point in time and writes it while the
 * parent keeps serving.
 *
 * The append-only log records each acknowledged write (create, drop, put,
 * delete) after the last snapshot, as checksummed records.  With
 * appendfsync "always" a write is fsynced before it is acknowledged;
 * "everysec" fsyncs once a second from a background thread; "no" leaves it
 * to the kernel.  A snapshot truncates the log (the log is restarted after
 * the snapshot's rename).
 *
 * Loading at start: snapshot, then the log.  The loader checks every length,
 * checksum and layout before using it and rejects truncation, corruption and
 * layout mismatches with a message naming the file, offset and cause; it
 * never crashes on any input.  A log whose last record is cut short (a crash
 * mid-append) is truncated to its last whole record, with a warning.
 */
#ifndef SAFEMAP_SERVER_PERSIST_H
#define SAFEMAP_SERVER_PERSIST_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "store.h"

typedef enum { SMD_FSYNC_ALWAYS, SMD_FSYNC_EVERYSEC, SMD_FSYNC_NO } smd_fsync;

typedef struct smd_persist smd_persist;

/* Opens persistence in directory dir (snapshot "safemap.snap", log
 * "safemap.aof"), loads both into st (which must be empty) and starts
 * logging st's writes (it installs the store's write observer).  On failure
 * returns a negative code and writes a message into err (errlen bytes); st
 * may then hold part of the data and should be discarded. */
int smd_persist_open(smd_persist **out, smd_store *st, const char *dir, smd_fsync policy,
                     int use_log, char *err, size_t errlen);
/* Stops the log's thread, flushes and fsyncs it, closes files. */
void smd_persist_close(smd_persist *p);

/* SAVE: writes a snapshot now, in the calling thread; writes are paused
 * for the whole SAVE (reads go on).  Returns 0 or a negative code with a
 * message in err; the old snapshot is kept on failure. */
int smd_persist_save(smd_persist *p, char *err, size_t errlen);
/* BGSAVE: forks a child that writes the snapshot.  Returns 0 when started,
 * SM_EBUSY when one is already running. */
int smd_persist_bgsave(smd_persist *p, char *err, size_t errlen);
/* Call periodically (e.g. every 100 ms from a timer): reaps a finished
 * child and installs its snapshot. */
void smd_persist_tick(smd_persist *p);

/* For INFO and metrics. */
typedef struct smd_persist_info {
    time_t last_save;          /* 0: never */
    int last_save_ok;          /* last SAVE/BGSAVE succeeded */
    int bgsave_in_progress;
    uint64_t log_bytes;        /* size of the log */
    uint64_t log_pending;      /* bytes written but not yet fsynced */
    double log_lag_seconds;    /* age of the oldest write not yet fsynced */
    uint64_t log_records;      /* records appended since start */
    double load_seconds;       /* time the start-up load took */
} smd_persist_info;
void smd_persist_info_get(smd_persist *p, smd_persist_info *out);

#endif
