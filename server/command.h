/*
 * command.h - the command layer: one map's commands, independent of the
 * transport that carries them.
 *
 * safemapd (RESP and HTTP) and the Redis/Valkey module serve the same
 * commands.  Both hand this layer a command as an argument vector of byte
 * strings and a reply sink; the layer parses the arguments, runs the command
 * against an smc_map and describes the reply through the sink's callbacks,
 * never touching a socket.  The transport decides how a reply is encoded
 * (RESP2, RESP3, JSON or a Redis module reply).
 *
 * An smc_map is an sm_cmap plus the element type that gives its bytes a
 * meaning (int8 ... uint64, float, double) and a name.  Any number of threads
 * may run commands on one smc_map at once.
 *
 * Errors follow Redis's style: the sink's error callback receives the whole
 * message with its code first ("ERR ...", "WRONGTYPE ...", "OOM ..."), and
 * the library's error names appear in the message ("ERR SM_ENOMEM ...").
 * A command that fails has changed nothing.
 */
#ifndef SAFEMAP_SERVER_COMMAND_H
#define SAFEMAP_SERVER_COMMAND_H

#include <stddef.h>
#include <stdint.h>

#include "safemap.h"

/* ---- Element types ----------------------------------------------------- */

typedef enum smc_type {
    SMC_INT8,
    SMC_INT16,
    SMC_INT32,
    SMC_INT64,
    SMC_UINT8,
    SMC_UINT16,
    SMC_UINT32,
    SMC_UINT64,
    SMC_FLOAT,
    SMC_DOUBLE,
    SMC_NTYPES
} smc_type;

/* The most elements a map's value may have (bytes: SM_MAX_ARRAY_BYTES). */
#define SMC_MAX_LEN 65536
/* Longest map name, in bytes (printable ASCII other than space). */
#define SMC_NAME_MAX 200

/* Parses a type name ("int8" ... "double", any case).  Returns 0 or -1. */
int smc_type_parse(const char *s, size_t n, smc_type *out);
const char *smc_type_name(smc_type t);
size_t smc_type_size(smc_type t);

/* ---- Arguments and replies --------------------------------------------- */

typedef struct smc_arg {
    const char *p; /* not NUL-terminated */
    size_t n;
} smc_arg;

/* A reply sink.  Each callback appends one element; array(n) and map(n)
 * announce that the next n elements (map: n key-value pairs, 2n elements)
 * belong to them.  A RESP2 transport writes a map as a flat array and a
 * double as a bulk string; resp3 tells the layer which is in force, for the
 * few replies whose shape differs (SM.GET: numbers, or bulk strings). */
typedef struct smc_reply_ops {
    void (*simple)(void *ctx, const char *s, size_t n);
    void (*error)(void *ctx, const char *s, size_t n);
    void (*integer)(void *ctx, long long v);
    void (*dbl)(void *ctx, double v);
    void (*bulk)(void *ctx, const void *p, size_t n);
    void (*null)(void *ctx);
    void (*array)(void *ctx, size_t n);
    void (*map)(void *ctx, size_t n);
    /* Optional (may be NULL: null is used instead): the absence of an
     * array, for RESP2's "*-1" (SM.GET of an absent key). */
    void (*null_array)(void *ctx);
} smc_reply_ops;

typedef struct smc_reply {
    const smc_reply_ops *ops;
    void *ctx;
    int resp3;
} smc_reply;

/* printf-style error reply: smc_reply_errorf(r, "ERR unknown map '%s'", n). */
void smc_reply_errorf(smc_reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- Maps -------------------------------------------------------------- */

typedef struct smc_map smc_map;

/* Creation parameters, as SM.CREATE name type N [POOLED] gives them. */
typedef struct smc_spec {
    smc_type type;
    size_t len; /* elements per value, 1..SMC_MAX_LEN */
    int pooled; /* values in a pool (SM_POOLED) rather than inline */
} smc_spec;

/* Parses "type N [POOLED]" (argv after the map name).  Returns 0, or -1
 * after replying with the error. */
int smc_spec_parse(int argc, const smc_arg *argv, smc_spec *out, smc_reply *r);

/* Creates a map.  name is copied.  Returns 0, SM_EINVAL (bad name or spec)
 * or SM_ENOMEM; *out set only on success. */
int smc_map_new(smc_map **out, const char *name, size_t name_len, const smc_spec *spec);
void smc_map_free(smc_map *m);

/* Reference counting, for the store: smc_map_new returns a map holding one
 * reference; smc_map_retain adds one, smc_map_release drops one and frees
 * the map (as smc_map_free) when it was the last.  Both are thread-safe. */
void smc_map_retain(smc_map *m);
void smc_map_release(smc_map *m);

const char *smc_map_name(const smc_map *m);
const smc_spec *smc_map_spec(const smc_map *m);
size_t smc_map_value_size(const smc_map *m); /* bytes of one value */
sm_cmap *smc_map_cmap(smc_map *m);
/* Every byte the map holds: the smc_map itself (its 256 stripe mutexes and
 * its name), the cmap's segments and directory (sm_cmap_stats' bytes) and,
 * for a pooled map, its pool's reserved bytes.  SM.INFO's "bytes" and the
 * module's MEMORY USAGE.  O(1) in the entries; thread-safe; 0 for NULL. */
size_t smc_map_bytes(smc_map *m);

/* A write observer: called for every successful write of a command, while
 * the writes to that key are ordered (so calls for one key arrive in the
 * order their writes took effect).  value is NULL for a delete.  Used by the
 * daemon's append-only log; the module leaves it unset.  A nonzero return
 * fails the command with "ERR" and the observer's message... the write has
 * then already happened: an observer must not fail except on a fatal error. */
typedef int (*smc_write_fn)(smc_map *m, int64_t key, const void *value, void *ctx);
void smc_map_observe(smc_map *m, smc_write_fn fn, void *ctx);

/* Runs one per-map command.  argv[0] is the command name (SM.PUT, SM.PUTB,
 * SM.GET, SM.GETB, SM.MGET, SM.DEL, SM.EXISTS, SM.LEN, SM.SCAN, SM.INFO; any
 * case), argv[1] the map's name (already resolved to m by the caller), the
 * rest the command's arguments.  Replies exactly once through r.  Returns
 * 0 when the command ran, 1 when it was a write that changed the map, or a
 * negative code when it failed (the error was replied). */
int smc_map_exec(smc_map *m, int argc, const smc_arg *argv, smc_reply *r);

/* Which command argv[0] names: its flags, or 0 when it is not a per-map
 * command. */
#define SMC_CMD_READ 1u
#define SMC_CMD_WRITE 2u
#define SMC_CMD_FAST 4u
unsigned smc_cmd_flags(const smc_arg *name);

/* Parses a decimal int64 key.  Returns 0 or -1.  Strict: an optional '-',
 * then one or more digits, nothing else (no blanks, no '+', no "0x"), in
 * range.  Unlike Redis's integers, leading zeros are accepted and ignored
 * ("000000012345" is 12345, "-007" is -7, "-0" and "00" are 0), because
 * redis-benchmark's __rand_int__ sends zero-padded keys. */
int smc_parse_key(const smc_arg *a, int64_t *out);

#endif
