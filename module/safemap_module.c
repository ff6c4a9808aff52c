/*
 * safemap_module.c - safemap as a Redis/Valkey module (safemap.so): each map
 * is a Redis key of a native data type, served by the same command layer as
 * safemapd (server/command.c).
 *
 * Commands.  SM.CREATE key type N [POOLED] makes the key an empty map; the
 * per-map commands (SM.PUT, SM.PUTB, SM.GET, SM.GETB, SM.MGET, SM.DEL,
 * SM.EXISTS, SM.LEN, SM.SCAN, SM.INFO) open the key, check its type
 * (WRONGTYPE for another type, "ERR unknown map" for a missing key, as
 * safemapd answers) and hand the argument vector to smc_map_exec() with a
 * reply sink made of RedisModule_ReplyWith* calls.  Every command names its
 * key at position 1 and carries the flags Redis Cluster, ACLs and COMMAND
 * GETKEYS read (write/readonly, fast, deny-oom).  A write that changed the
 * map is replicated verbatim (replicas and the AOF) and raises a keyspace
 * event of class 'd' (module) named after the command, e.g. "sm.put".
 *
 * Memory.  The library's allocator is routed to RedisModule_TryAlloc at
 * load time, so a map's segments count in INFO's used_memory, maxmemory and
 * MEMORY USAGE like any other value, and an allocation that fails is
 * SM_ENOMEM ("OOM ...") rather than Redis's out-of-memory abort.
 *
 * The data type ("safemap01", encoding version 1).  RDB payload:
 *
 *     unsigned type            smc_type: 0 int8 ... 9 double
 *     unsigned len             elements per value, 1..65536
 *     unsigned pooled          0 inline, 1 pooled
 *     unsigned value_size      bytes per value (= size of type * len)
 *     unsigned flags           bit 0: values are big-endian (this host's order)
 *     unsigned count           entries
 *     blocks: unsigned n (n > 0), then a string of n * (8 + value_size)
 *             bytes: each entry's key as 8 little-endian bytes, then the
 *             value's bytes; the last block is followed by unsigned 0.
 *
 * Loading checks every field against its range and the blocks against
 * count (and the map's length after the load, so duplicate keys are
 * refused); any mismatch or I/O error frees what was built and returns
 * NULL, so Redis refuses the file or the RESTORE payload and nothing
 * crashes (REDISMODULE_OPTIONS_HANDLE_IO_ERRORS).  A newer encoding version
 * is refused the same way.  The AOF rewrite emits SM.CREATE and one SM.PUTB
 * per entry; DEBUG DIGEST folds the layout and each (key, value) pair as an
 * unordered sequence; COPY builds a new map; a map with many segments is
 * freed in the background (free_effort) when lazyfree is on.
 *
 * Redis runs module commands on its main thread; the forked child of
 * BGSAVE / BGREWRITEAOF reads the map with sm_cmap_each, and a lazy free
 * runs on Redis's background thread with no other user of the map, which
 * the concurrent map allows.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "redismodule.h"
#include "safemap.h"

#define SMM_TYPE_NAME "safemap01" /* 9 characters, as Redis requires */
#define SMM_ENCVER 1
#define SMM_BLOCK_BYTES 65536 /* target size of one RDB block */
#define SMM_STACK_ARGS 32     /* argument vectors up to this go on the stack */
#define SMM_FLAG_BIG_ENDIAN 1u

static RedisModuleType *smm_type;

/* ---- Allocator: the library's memory through Redis's ------------------- */

/* Each block is over-allocated by A = max(align, 16) bytes; the pointer
 * handed out is aligned to A and the raw pointer sits just before it. */
static void *smm_alloc(size_t size, size_t align, void *ctx)
{
    (void)ctx;
    size_t a = align < 16 ? 16 : align;
    if (size > SIZE_MAX - a)
        return NULL;
    char *raw = RedisModule_TryAlloc ? RedisModule_TryAlloc(size + a) : RedisModule_Alloc(size + a);
    if (!raw)
        return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + a - 1) & ~(uintptr_t)(a - 1);
    ((void **)p)[-1] = raw;
    return (void *)p;
}

static void smm_free(void *p, size_t size, void *ctx)
{
    (void)size;
    (void)ctx;
    if (p)
        RedisModule_Free(((void **)p)[-1]);
}

/* ---- Reply sink -------------------------------------------------------- */

/* Copies s into buf as a C string, control bytes (CR, LF...) made blanks so
 * a user's argument echoed in a message cannot break the protocol. */
static const char *smm_cstr(char *buf, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)s[i] < ' ' ? ' ' : s[i];
    buf[n] = '\0';
    return buf;
}

static void rs_simple(void *ctx, const char *s, size_t n)
{
    char buf[128];
    RedisModule_ReplyWithSimpleString(ctx, smm_cstr(buf, sizeof buf, s, n));
}

static void rs_error(void *ctx, const char *s, size_t n)
{
    char buf[600];
    RedisModule_ReplyWithError(ctx, smm_cstr(buf, sizeof buf, s, n));
}

static void rs_integer(void *ctx, long long v)
{
    RedisModule_ReplyWithLongLong(ctx, v);
}

static void rs_dbl(void *ctx, double v)
{
    RedisModule_ReplyWithDouble(ctx, v);
}

static void rs_bulk(void *ctx, const void *p, size_t n)
{
    RedisModule_ReplyWithStringBuffer(ctx, p, n);
}

static void rs_null(void *ctx)
{
    RedisModule_ReplyWithNull(ctx);
}

static void rs_array(void *ctx, size_t n)
{
    RedisModule_ReplyWithArray(ctx, (long)n);
}

static void rs_map(void *ctx, size_t n)
{
    RedisModule_ReplyWithMap(ctx, (long)n);
}

static void rs_null_array(void *ctx)
{
    RedisModule_ReplyWithNullArray(ctx);
}

static const smc_reply_ops smm_reply_ops = {
    rs_simple, rs_error, rs_integer, rs_dbl, rs_bulk, rs_null, rs_array, rs_map, rs_null_array,
};

static smc_reply smm_reply(RedisModuleCtx *ctx, int need_resp3)
{
    smc_reply r = {&smm_reply_ops, ctx, 0};
    if (need_resp3)
        r.resp3 = (RedisModule_GetContextFlags(ctx) & REDISMODULE_CTX_FLAGS_RESP3) != 0;
    return r;
}

/* ---- Helpers ----------------------------------------------------------- */

/* A map name for the library from a key name: printable bytes kept, others
 * made '_', at most SMC_NAME_MAX.  Returns the length. */
static size_t smm_map_name(const RedisModuleString *key, char *out)
{
    size_t n = 0;
    const char *p = key ? RedisModule_StringPtrLen(key, &n) : "map";
    if (!key)
        n = 3;
    if (n > SMC_NAME_MAX)
        n = SMC_NAME_MAX;
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)p[i] <= ' ' || (unsigned char)p[i] > '~' ? '_' : p[i];
    if (n == 0)
        out[n++] = '_';
    out[n] = '\0';
    return n;
}

static int smm_reply_errorf(RedisModuleCtx *ctx, const char *fmt, const RedisModuleString *key)
{
    char name[SMC_NAME_MAX + 1];
    smm_map_name(key, name);
    char msg[SMC_NAME_MAX + 128];
    snprintf(msg, sizeof msg, fmt, name);
    return RedisModule_ReplyWithError(ctx, msg);
}

static int smm_is_big_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 0;
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---- Commands ---------------------------------------------------------- */

/* SM.CREATE key type N [POOLED] */
static int smm_cmd_create(RedisModuleCtx *ctx, RedisModuleString **argv, int argc)
{
    if (argc < 4 || argc > 5)
        return RedisModule_WrongArity(ctx);
    RedisModuleKey *key = RedisModule_OpenKey(ctx, argv[1], REDISMODULE_READ | REDISMODULE_WRITE);
    int kt = RedisModule_KeyType(key);
    if (kt != REDISMODULE_KEYTYPE_EMPTY) {
        int ours =
            kt == REDISMODULE_KEYTYPE_MODULE && RedisModule_ModuleTypeGetType(key) == smm_type;
        RedisModule_CloseKey(key);
        if (!ours)
            return RedisModule_ReplyWithError(ctx, REDISMODULE_ERRORMSG_WRONGTYPE);
        return smm_reply_errorf(ctx, "ERR map '%s' exists", argv[1]);
    }
    smc_arg spec_args[3];
    for (int i = 2; i < argc; i++)
        spec_args[i - 2].p = RedisModule_StringPtrLen(argv[i], &spec_args[i - 2].n);
    smc_reply r = smm_reply(ctx, 0);
    smc_spec spec;
    if (smc_spec_parse(argc - 2, spec_args, &spec, &r) != 0) {
        RedisModule_CloseKey(key);
        return REDISMODULE_OK;
    }
    char name[SMC_NAME_MAX + 1];
    size_t nlen = smm_map_name(argv[1], name);
    smc_map *m;
    int rc = smc_map_new(&m, name, nlen, &spec);
    if (rc != 0) {
        RedisModule_CloseKey(key);
        if (rc == SM_ENOMEM)
            return RedisModule_ReplyWithError(ctx, "OOM out of memory creating the map");
        smc_reply_errorf(&r, "ERR %s creating the map", sm_strerror(rc));
        return REDISMODULE_OK;
    }
    RedisModule_ModuleTypeSetValue(key, smm_type, m);
    RedisModule_CloseKey(key);
    RedisModule_ReplicateVerbatim(ctx);
    RedisModule_NotifyKeyspaceEvent(ctx, REDISMODULE_NOTIFY_MODULE, "sm.create", argv[1]);
    return RedisModule_ReplyWithSimpleString(ctx, "OK");
}

/* The per-map commands: the command layer does the work. */
static int smm_cmd_map(RedisModuleCtx *ctx, RedisModuleString **argv, int argc)
{
    if (argc < 2)
        return RedisModule_WrongArity(ctx);
    smc_arg stack[SMM_STACK_ARGS];
    smc_arg *args = stack;
    if (argc > SMM_STACK_ARGS) {
        args = RedisModule_TryAlloc ? RedisModule_TryAlloc((size_t)argc * sizeof *args)
                                    : RedisModule_Alloc((size_t)argc * sizeof *args);
        if (!args)
            return RedisModule_ReplyWithError(ctx, "OOM out of memory");
    }
    for (int i = 0; i < argc; i++)
        args[i].p = RedisModule_StringPtrLen(argv[i], &args[i].n);
    unsigned flags = smc_cmd_flags(&args[0]);
    int write = (flags & SMC_CMD_WRITE) != 0;
    RedisModuleKey *key = RedisModule_OpenKey(
        ctx, argv[1], write ? REDISMODULE_READ | REDISMODULE_WRITE : REDISMODULE_READ);
    int kt = RedisModule_KeyType(key);
    int rc = -1;
    if (kt == REDISMODULE_KEYTYPE_EMPTY) {
        smm_reply_errorf(ctx, "ERR unknown map '%s'", argv[1]);
    } else if (kt != REDISMODULE_KEYTYPE_MODULE || RedisModule_ModuleTypeGetType(key) != smm_type) {
        RedisModule_ReplyWithError(ctx, REDISMODULE_ERRORMSG_WRONGTYPE);
    } else {
        /* Only SM.GET and SM.MGET reply differently under RESP3 (numbers). */
        int need_resp3 = (args[0].n == 6 && (args[0].p[3] | 32) == 'g') ||
                         (args[0].n == 7 && (args[0].p[3] | 32) == 'm');
        smc_reply r = smm_reply(ctx, need_resp3);
        rc = smc_map_exec(RedisModule_ModuleTypeGetValue(key), argc, args, &r);
    }
    RedisModule_CloseKey(key);
    if (rc == 1) {
        char ev[16];
        size_t n = args[0].n < sizeof ev - 1 ? args[0].n : sizeof ev - 1;
        for (size_t i = 0; i < n; i++) {
            char c = args[0].p[i];
            ev[i] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
        }
        ev[n] = '\0';
        RedisModule_ReplicateVerbatim(ctx);
        RedisModule_NotifyKeyspaceEvent(ctx, REDISMODULE_NOTIFY_MODULE, ev, argv[1]);
    }
    if (args != stack)
        RedisModule_Free(args);
    return REDISMODULE_OK;
}

/* ---- Data type --------------------------------------------------------- */

typedef struct save_ctx {
    RedisModuleIO *io;
    unsigned char *buf;
    size_t vsize, n, cap; /* entries buffered, entries per block */
} save_ctx;

static void save_flush(save_ctx *s)
{
    if (s->n == 0)
        return;
    RedisModule_SaveUnsigned(s->io, s->n);
    RedisModule_SaveStringBuffer(s->io, (const char *)s->buf, s->n * (8 + s->vsize));
    s->n = 0;
}

static int save_visit(int64_t key, const void *value, void *ctx)
{
    save_ctx *s = ctx;
    unsigned char *e = s->buf + s->n * (8 + s->vsize);
    put_le64(e, (uint64_t)key);
    memcpy(e + 8, value, s->vsize);
    if (++s->n == s->cap)
        save_flush(s);
    return 0;
}

static size_t block_entries(size_t vsize)
{
    size_t n = SMM_BLOCK_BYTES / (8 + vsize);
    return n ? n : 1;
}

static void smm_rdb_save(RedisModuleIO *io, void *value)
{
    smc_map *m = value;
    const smc_spec *spec = smc_map_spec(m);
    sm_cmap *cm = smc_map_cmap(m);
    size_t vsize = smc_map_value_size(m);
    RedisModule_SaveUnsigned(io, (uint64_t)spec->type);
    RedisModule_SaveUnsigned(io, spec->len);
    RedisModule_SaveUnsigned(io, (uint64_t)spec->pooled);
    RedisModule_SaveUnsigned(io, vsize);
    RedisModule_SaveUnsigned(io, smm_is_big_endian() ? SMM_FLAG_BIG_ENDIAN : 0);
    RedisModule_SaveUnsigned(io, sm_cmap_len(cm));
    save_ctx s = {io, NULL, vsize, 0, block_entries(vsize)};
    s.buf = RedisModule_Alloc(s.cap * (8 + vsize));
    int rc = sm_cmap_each(cm, save_visit, &s);
    save_flush(&s);
    RedisModule_Free(s.buf);
    if (rc != 0) /* the count will not match: the file is refused on load */
        RedisModule_LogIOError(io, "warning", "safemap: saving a map failed: %s", sm_strerror(rc));
    RedisModule_SaveUnsigned(io, 0);
}

static void *smm_load_fail(RedisModuleIO *io, smc_map *m, const char *why)
{
    RedisModule_LogIOError(io, "warning", "safemap: refusing a map payload: %s", why);
    smc_map_free(m);
    return NULL;
}

static void *smm_rdb_load(RedisModuleIO *io, int encver)
{
    if (encver != SMM_ENCVER)
        return smm_load_fail(io, NULL, "unknown encoding version (a newer module wrote it)");
    uint64_t type = RedisModule_LoadUnsigned(io);
    uint64_t len = RedisModule_LoadUnsigned(io);
    uint64_t pooled = RedisModule_LoadUnsigned(io);
    uint64_t vsize = RedisModule_LoadUnsigned(io);
    uint64_t flags = RedisModule_LoadUnsigned(io);
    uint64_t count = RedisModule_LoadUnsigned(io);
    if (RedisModule_IsIOError(io))
        return smm_load_fail(io, NULL, "short header");
    if (type >= SMC_NTYPES || len < 1 || len > SMC_MAX_LEN || pooled > 1)
        return smm_load_fail(io, NULL, "bad layout");
    if (vsize != smc_type_size((smc_type)type) * len || vsize > SM_MAX_ARRAY_BYTES)
        return smm_load_fail(io, NULL, "value size does not match the layout");
    if (flags != (smm_is_big_endian() ? SMM_FLAG_BIG_ENDIAN : 0))
        return smm_load_fail(io, NULL, "written on a host of the other byte order");
    smc_spec spec = {(smc_type)type, (size_t)len, (int)pooled};
    char name[SMC_NAME_MAX + 1];
    size_t nlen =
        smm_map_name(RedisModule_GetKeyNameFromIO ? RedisModule_GetKeyNameFromIO(io) : NULL, name);
    smc_map *m;
    if (smc_map_new(&m, name, nlen, &spec) != 0)
        return smm_load_fail(io, NULL, "out of memory");
    sm_cmap *cm = smc_map_cmap(m);
    size_t esize = 8 + (size_t)vsize, per_block = block_entries((size_t)vsize);
    uint64_t loaded = 0;
    for (;;) {
        uint64_t n = RedisModule_LoadUnsigned(io);
        if (RedisModule_IsIOError(io))
            return smm_load_fail(io, m, "short block header");
        if (n == 0)
            break;
        if (n > per_block || n > count - loaded)
            return smm_load_fail(io, m, "block larger than the count");
        size_t blen = 0;
        char *buf = RedisModule_LoadStringBuffer(io, &blen);
        if (RedisModule_IsIOError(io) || !buf) {
            if (buf)
                RedisModule_Free(buf);
            return smm_load_fail(io, m, "short block");
        }
        if (blen != n * esize) {
            RedisModule_Free(buf);
            return smm_load_fail(io, m, "block size does not match its entries");
        }
        int rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            const unsigned char *e = (const unsigned char *)buf + i * esize;
            rc = sm_cmap_put(cm, (int64_t)get_le64(e), e + 8);
        }
        RedisModule_Free(buf);
        if (rc != 0)
            return smm_load_fail(io, m, sm_strerror(rc));
        loaded += n;
    }
    if (loaded != count || sm_cmap_len(cm) != count)
        return smm_load_fail(io, m, "entries do not match the count (or repeat a key)");
    return m;
}

typedef struct aof_ctx {
    RedisModuleIO *aof;
    RedisModuleString *key;
    size_t vsize;
} aof_ctx;

static int aof_visit(int64_t key, const void *value, void *ctx)
{
    aof_ctx *a = ctx;
    RedisModule_EmitAOF(a->aof, "SM.PUTB", "slb", a->key, (long long)key, (const char *)value,
                        a->vsize);
    return 0;
}

static void smm_aof_rewrite(RedisModuleIO *aof, RedisModuleString *key, void *value)
{
    smc_map *m = value;
    const smc_spec *spec = smc_map_spec(m);
    if (spec->pooled)
        RedisModule_EmitAOF(aof, "SM.CREATE", "sclc", key, smc_type_name(spec->type),
                            (long long)spec->len, "POOLED");
    else
        RedisModule_EmitAOF(aof, "SM.CREATE", "scl", key, smc_type_name(spec->type),
                            (long long)spec->len);
    aof_ctx a = {aof, key, smc_map_value_size(m)};
    int rc = sm_cmap_each(smc_map_cmap(m), aof_visit, &a);
    if (rc != 0)
        RedisModule_LogIOError(aof, "warning", "safemap: AOF rewrite of a map failed: %s",
                               sm_strerror(rc));
}

/* MEMORY USAGE: everything the map holds (the smc_map with its stripes,
 * the segments, a pooled map's pool), as SM.INFO's "bytes". */
static size_t smm_mem_usage(const void *value)
{
    return smc_map_bytes((smc_map *)value);
}

typedef struct digest_ctx {
    RedisModuleDigest *md;
    size_t vsize;
} digest_ctx;

static int digest_visit(int64_t key, const void *value, void *ctx)
{
    digest_ctx *d = ctx;
    RedisModule_DigestAddLongLong(d->md, key);
    RedisModule_DigestAddStringBuffer(d->md, (const char *)value, d->vsize);
    RedisModule_DigestEndSequence(d->md);
    return 0;
}

static void smm_digest(RedisModuleDigest *md, void *value)
{
    smc_map *m = value;
    const smc_spec *spec = smc_map_spec(m);
    RedisModule_DigestAddLongLong(md, spec->type);
    RedisModule_DigestAddLongLong(md, (long long)spec->len);
    RedisModule_DigestAddLongLong(md, spec->pooled);
    RedisModule_DigestEndSequence(md);
    digest_ctx d = {md, smc_map_value_size(m)};
    sm_cmap_each(smc_map_cmap(m), digest_visit, &d);
}

static void smm_free_value(void *value)
{
    smc_map_release(value);
}

/* Allocations a free gives back, roughly: one per segment.  Redis frees a
 * value in the background when this is over 64 and lazyfree is on. */
static size_t smm_free_effort(RedisModuleString *key, const void *value)
{
    (void)key;
    struct sm_cmap_stats st;
    if (sm_cmap_stats(smc_map_cmap((smc_map *)value), &st) != 0)
        return 1;
    return st.segments + st.len / 1024 + 1;
}

static int copy_visit(int64_t key, const void *value, void *ctx)
{
    return sm_cmap_put(ctx, key, value);
}

static void *smm_copy(RedisModuleString *fromkey, RedisModuleString *tokey, const void *value)
{
    (void)fromkey;
    smc_map *src = (smc_map *)value;
    char name[SMC_NAME_MAX + 1];
    size_t nlen = smm_map_name(tokey, name);
    smc_map *m;
    if (smc_map_new(&m, name, nlen, smc_map_spec(src)) != 0)
        return NULL;
    if (sm_cmap_each(smc_map_cmap(src), copy_visit, smc_map_cmap(m)) != 0) {
        smc_map_free(m);
        return NULL;
    }
    return m;
}

/* ---- Loading ----------------------------------------------------------- */

typedef struct smm_cmd {
    const char *name;
    RedisModuleCmdFunc fn;
    const char *flags;
} smm_cmd;

static const smm_cmd smm_cmds[] = {
    {"sm.create", smm_cmd_create, "write deny-oom"},
    {"sm.put", smm_cmd_map, "write deny-oom fast"},
    {"sm.putb", smm_cmd_map, "write deny-oom fast"},
    {"sm.get", smm_cmd_map, "readonly fast"},
    {"sm.getb", smm_cmd_map, "readonly fast"},
    {"sm.mget", smm_cmd_map, "readonly fast"},
    {"sm.del", smm_cmd_map, "write"},
    {"sm.exists", smm_cmd_map, "readonly fast"},
    {"sm.len", smm_cmd_map, "readonly fast"},
    {"sm.scan", smm_cmd_map, "readonly"},
    {"sm.info", smm_cmd_map, "readonly"},
};

static int smm_allocator_set;

__attribute__((visibility("default"))) int RedisModule_OnLoad(RedisModuleCtx *ctx,
                                                              RedisModuleString **argv, int argc)
{
    (void)argv;
    (void)argc;
    if (RedisModule_Init(ctx, "safemap", 1, REDISMODULE_APIVER_1) == REDISMODULE_ERR)
        return REDISMODULE_ERR;
    if (!smm_allocator_set) {
        sm_allocator a = {smm_alloc, smm_free, NULL};
        sm_set_allocator(&a);
        smm_allocator_set = 1;
    }
    RedisModule_SetModuleOptions(ctx, REDISMODULE_OPTIONS_HANDLE_IO_ERRORS);
    RedisModuleTypeMethods tm = {
        .version = REDISMODULE_TYPE_METHOD_VERSION,
        .rdb_load = smm_rdb_load,
        .rdb_save = smm_rdb_save,
        .aof_rewrite = smm_aof_rewrite,
        .mem_usage = smm_mem_usage,
        .digest = smm_digest,
        .free = smm_free_value,
        .free_effort = smm_free_effort,
        .copy = smm_copy,
    };
    smm_type = RedisModule_CreateDataType(ctx, SMM_TYPE_NAME, SMM_ENCVER, &tm);
    if (!smm_type) {
        RedisModule_Log(ctx, "warning", "safemap: cannot create the data type " SMM_TYPE_NAME);
        return REDISMODULE_ERR;
    }
    for (size_t i = 0; i < sizeof smm_cmds / sizeof smm_cmds[0]; i++)
        if (RedisModule_CreateCommand(ctx, smm_cmds[i].name, smm_cmds[i].fn, smm_cmds[i].flags, 1,
                                      1, 1) == REDISMODULE_ERR) {
            RedisModule_Log(ctx, "warning", "safemap: cannot register %s", smm_cmds[i].name);
            return REDISMODULE_ERR;
        }
    return REDISMODULE_OK;
}
