/*
 * persist.h - durability for safemapd: snapshots and the append-only log.
 *
 * A snapshot ("safemap.snap") is one file holding every map at one point in
 * time: a header (magic, format version, byte order, the log generation it
 * covers), then per map its name and layout and its entries in checksummed
 * blocks, then a trailer with the counts and a checksum of the whole.  It is
 * written to a temporary file in the data directory, fsynced, renamed over
 * the old snapshot, and the directory is fsynced, so a crash leaves the old
 * snapshot or the new one, never a mix.  BGSAVE forks: the write gate
 * (smd_store_pause) is held for the instant of the fork, so the child sees a
 * point in time and writes it while the parent keeps serving.
 *
 * The append-only log records each acknowledged write (create, drop, put,
 * delete) as checksummed records, in numbered files ("safemap.aof.1",
 * "safemap.aof.2", ...): a generation.  Every snapshot starts a new
 * generation at its point in time (writes are paused then), and records the
 * generation in its header: the snapshot holds every write of the older
 * generations, which are deleted once the snapshot is safely renamed into
 * place.  Until then the old files stay, so a crash at any moment, or a
 * failed save, loses nothing.  With appendfsync "always" a write is fsynced
 * before it is acknowledged (group commit: one fsync covers every writer
 * waiting at that moment); "everysec" and "no" write() each record before
 * the acknowledgement (a killed process loses nothing) and fsync once a
 * second from a background thread ("everysec") or leave it to the kernel
 * ("no").  A batching thread (smd_persist_batch_thread) defers that wait to
 * the end of its batch, so a pipelined batch costs one write() (and with
 * "always" one fsync), as Redis writes its AOF buffer once per event-loop
 * iteration.
 *
 * Loading at start: the snapshot, then every log from the snapshot's
 * generation on, in order.  The loader checks every length, checksum and
 * layout before using it and rejects truncation, corruption and layout
 * mismatches with a message naming the file, offset and cause; it never
 * crashes on any input.  A last log whose last record is cut short (a crash
 * mid-append) is truncated to its last whole record, with a warning.
 * docs/persistence.md has the byte layouts and the guarantees.
 */
#ifndef SAFEMAP_SERVER_PERSIST_H
#define SAFEMAP_SERVER_PERSIST_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "store.h"

typedef enum { SMD_FSYNC_ALWAYS, SMD_FSYNC_EVERYSEC, SMD_FSYNC_NO } smd_fsync;

typedef struct smd_persist smd_persist;

/* Opens persistence in directory dir (made if missing; snapshot
 * "safemap.snap", logs "safemap.aof.<generation>"), loads them into st
 * (which must be empty) and, with use_log, starts logging st's writes (it
 * installs the store's write observer; with everysec, a thread).  Without
 * use_log existing logs are still loaded, and only snapshots are written.
 * On failure returns a negative code (SM_EIO: a file could not be read or
 * written; SM_ECORRUPT: a file is truncated, corrupt or does not match;
 * SM_ENOMEM) and writes "file: offset N: cause" into err (errlen bytes); st
 * may then hold part of the data and should be discarded. */
int smd_persist_open(smd_persist **out, smd_store *st, const char *dir, smd_fsync policy,
                     int use_log, char *err, size_t errlen);
/* Stops the log's thread, flushes and fsyncs it, closes files.  A BGSAVE
 * still running is killed (its snapshot is not installed; nothing is lost:
 * the logs it would have replaced stay).  Does not save: for a save on
 * shutdown call smd_persist_save first.  NULL is a no-op. */
void smd_persist_close(smd_persist *p);

/* SAVE: writes a snapshot now, in the calling thread; writes are paused
 * for the whole SAVE (reads go on), so call it outside the write gate.  A
 * BGSAVE in progress is killed first.  Returns 0 or a negative code with a
 * message in err; the old snapshot is kept on failure. */
int smd_persist_save(smd_persist *p, char *err, size_t errlen);
/* BGSAVE: forks a child that writes the snapshot.  Returns 0 when started,
 * SM_EBUSY when one is already running, or another negative code with a
 * message (the log file for the next generation could not be made, fork
 * failed).  Writes are paused only for the fork; call it outside the write
 * gate. */
int smd_persist_bgsave(smd_persist *p, char *err, size_t errlen);
/* Call periodically (e.g. every 100 ms from a timer): reaps a finished
 * child and installs its snapshot. */
void smd_persist_tick(smd_persist *p);

/* For INFO and metrics. */
typedef struct smd_persist_info {
    time_t last_save; /* 0: never */
    int last_save_ok; /* last SAVE/BGSAVE succeeded */
    int bgsave_in_progress;
    uint64_t log_bytes;      /* size of the log */
    uint64_t log_pending;    /* bytes written but not yet fsynced */
    double log_lag_seconds;  /* age of the oldest write not yet fsynced */
    uint64_t log_records;    /* records appended since start */
    double load_seconds;     /* time the start-up load took */
    uint64_t log_generation; /* the log file being appended to */
    int log_failed;          /* a log write failed (smd_persist_log_status) */
    uint64_t loaded_entries; /* entries loaded at start (snapshot + log) */
    uint64_t log_fsyncs;     /* fsyncs of the log since start */
    uint64_t log_writes;     /* write() calls that appended to the log since start */
} smd_persist_info;
void smd_persist_info_get(smd_persist *p, smd_persist_info *out);

/* ---- Creating and dropping maps ------------------------------------------
 *
 * Map creation and removal go through these so that the log orders them
 * correctly against the writes to the map: the map becomes visible and its
 * create record is queued under one lock, so no put to it can be logged
 * before it exists; a drop is logged and the map stops being logged at once,
 * so a write still in flight on a dropped map (a command that took its
 * reference before the drop) is not logged after the drop.  Both wait for
 * the record as a write does (fsync with "always").  p may be NULL (no
 * persistence): then they are smd_store_create and smd_store_drop.  Call
 * them inside the write gate, as any write.
 *
 * Return smd_store_create's / smd_store_drop's codes, or SM_EIO when the log
 * could not be written (then the map was not created / not dropped). */
int smd_persist_create(smd_persist *p, smd_store *st, const char *name, size_t n,
                       const smc_spec *spec);
int smd_persist_drop(smd_persist *p, smd_store *st, const char *name, size_t n);

/* ---- Batching a thread's writes ------------------------------------------
 *
 * A thread that answers many writes at once (a daemon worker serving a
 * pipelined batch) calls smd_persist_batch_thread(p) once; from then on the
 * records of its puts and deletes are queued in the log's one shared buffer
 * (in the order the writes took effect, as for any thread) and the thread
 * does not wait for them.  Before it acknowledges any of those writes it
 * calls smd_persist_flush_thread(p), which returns once everything it queued
 * has been written by one write() for the whole queue (every thread's
 * records so far), and with "always" fsynced: one write() and at most one
 * fsync per batch instead of per record.  A nonzero return (SM_EIO: the log
 * failed) means some of the thread's writes since its last flush may not be
 * in the log: they must not be acknowledged (drop the connection).  Creates
 * and drops still wait (they flush the thread's queued records too).  Other
 * threads (HTTP) are unaffected.  p NULL or without a log: no-ops. */
void smd_persist_batch_thread(smd_persist *p);
int smd_persist_flush_thread(smd_persist *p);

/* Whether the log can take writes: 0, or SM_EIO after a write or fsync of
 * the log failed (every logged write then fails until a SAVE or BGSAVE
 * starts a new log file).  A daemon may refuse writes while it is nonzero. */
int smd_persist_log_status(smd_persist *p);

/* Where warnings and errors go (truncated logs, failed BGSAVEs): level is
 * 0 debug, 1 info, 2 warn, 3 error (the daemon's SMD_LOG_* numbers).  NULL
 * restores the default, one line on stderr.  Set once, before
 * smd_persist_open. */
typedef void (*smd_persist_log_fn)(int level, const char *msg, void *ctx);
void smd_persist_set_logger(smd_persist_log_fn fn, void *ctx);

/* ---- Single files, for tests, fuzzing and tools ---------------------------
 *
 * Load one snapshot or one log from an open descriptor (read from its
 * current offset to its end) into st; name is used in messages.  The
 * snapshot loader sets *log_gen to the generation in its header.  The log
 * loader checks the file's generation against expect_gen (0: any); with
 * allow_torn a record cut short at the end is accepted: *good_end gets the
 * offset just past the last whole record and *torn 1 (the caller truncates
 * the file there); without it a cut-short record is an error.  Both return
 * 0 or a negative code with "name: offset N: cause" in err. */
int smd_snapshot_load_fd(smd_store *st, int fd, const char *name, uint64_t *log_gen, char *err,
                         size_t errlen);
int smd_log_load_fd(smd_store *st, int fd, const char *name, uint64_t expect_gen, int allow_torn,
                    uint64_t *good_end, int *torn, char *err, size_t errlen);

/* Fault injection for tests: when set to n > 0, the n-th file operation
 * (open, write, fsync, rename, ...) of this module from then on fails with
 * EIO; 0 (the default) injects nothing. */
extern int smd_persist_fault_at;

#endif
