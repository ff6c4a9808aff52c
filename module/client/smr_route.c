/*
 * smr_route.c - sub-map routing over a Redis Cluster with hiredis (see
 * smr_route.h for the convention).
 *
 * A batch is a list of items (one command each: SM.CREATE, SM.PUTB, SM.GETB
 * or SM.LEN on one sub-map).  One pass appends every unfinished item's
 * command to the connection of the master that owns its slot, then reads
 * each connection's replies in the order they were sent and hands them to
 * the batch's reply handler, which marks the item done or leaves it for the
 * next pass.  Between passes that left work the slot table is read again
 * and the client sleeps a little (50 ms, doubling to 500 ms), until the
 * batch's deadline.  Batches are cut into chunks of SMR_CHUNK commands so
 * the buffers stay bounded.
 */
#define _POSIX_C_SOURCE 200809L
#include "smr_route.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SMR_SLOTS 16384
#define SMR_MAX_NODES 64
#define SMR_CHUNK 8192

typedef struct smr_node {
    char host[64];
    int port;
    redisContext *c;
    size_t *order; /* items sent on this connection in this pass */
    size_t n;
} smr_node;

struct smr_route {
    char host[64];
    int port;
    char map[SMR_MAP_MAX + 1];
    unsigned submaps;
    int timeout_ms;
    smr_node nodes[SMR_MAX_NODES];
    int nnodes;
    short slot_node[SMR_SLOTS]; /* -1: no owner known */
    unsigned *sub_slot;         /* slot of each sub-map */
    char err[256];
};

/* ---- Hashing ----------------------------------------------------------- */

uint64_t smr_route_mix(int64_t key)
{
    uint64_t z = (uint64_t)key;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

unsigned smr_route_submap(int64_t key, unsigned submaps)
{
    return submaps ? (unsigned)(smr_route_mix(key) % submaps) : 0;
}

size_t smr_route_submap_name(const char *map, unsigned idx, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s{%u}", map, idx);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

static unsigned crc16(const char *p, size_t n)
{
    unsigned crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (unsigned)(unsigned char)p[i] << 8;
        for (int b = 0; b < 8; b++)
            crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
        crc &= 0xffff;
    }
    return crc;
}

unsigned smr_route_keyslot(const char *key, size_t n)
{
    const char *open = memchr(key, '{', n);
    if (open) {
        size_t rest = n - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) % SMR_SLOTS;
    }
    return crc16(key, n) % SMR_SLOTS;
}

/* ---- Connections and the slot table ------------------------------------ */

static void set_err(smr_route *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
}

const char *smr_route_error(const smr_route *r)
{
    return r->err;
}

static redisContext *connect_to(const char *host, int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c)
        return NULL;
    if (c->err) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, (struct timeval){10, 0});
    return c;
}

static void node_drop(smr_node *nd)
{
    if (nd->c)
        redisFree(nd->c);
    nd->c = NULL;
}

/* The node index for host:port, added when new; -1 when the table is full. */
static int node_index(smr_route *r, const char *host, int port)
{
    for (int i = 0; i < r->nnodes; i++)
        if (r->nodes[i].port == port && strcmp(r->nodes[i].host, host) == 0)
            return i;
    if (r->nnodes == SMR_MAX_NODES)
        return -1;
    smr_node *nd = &r->nodes[r->nnodes];
    memset(nd, 0, sizeof *nd);
    snprintf(nd->host, sizeof nd->host, "%s", host);
    nd->port = port;
    return r->nnodes++;
}

/* CLUSTER SLOTS through c into the table.  0 or -1. */
static int read_slots(smr_route *r, redisContext *c)
{
    redisReply *rep = redisCommand(c, "CLUSTER SLOTS");
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
        set_err(r, "CLUSTER SLOTS: %s",
                rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "no answer");
        if (rep)
            freeReplyObject(rep);
        return -1;
    }
    for (int s = 0; s < SMR_SLOTS; s++)
        r->slot_node[s] = -1;
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            continue;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        redisReply *m = e->element[2];
        const char *host =
            m->element[0]->str && m->element[0]->str[0] ? m->element[0]->str : r->host;
        int idx = node_index(r, host, (int)m->element[1]->integer);
        if (idx < 0 || lo < 0 || hi >= SMR_SLOTS || lo > hi)
            continue;
        for (long long s = lo; s <= hi; s++)
            r->slot_node[s] = (short)idx;
    }
    freeReplyObject(rep);
    return 0;
}

int smr_route_refresh(smr_route *r)
{
    /* The seed first, then every node known. */
    redisContext *c = connect_to(r->host, r->port);
    if (c) {
        int rc = read_slots(r, c);
        redisFree(c);
        if (rc == 0)
            return 0;
    }
    for (int i = 0; i < r->nnodes; i++) {
        c = connect_to(r->nodes[i].host, r->nodes[i].port);
        if (!c)
            continue;
        int rc = read_slots(r, c);
        redisFree(c);
        if (rc == 0)
            return 0;
    }
    set_err(r, "no node answered CLUSTER SLOTS");
    return -1;
}

int smr_route_open(smr_route **out, const char *host, int port, const char *map, unsigned submaps,
                   int timeout_ms, char *err, size_t errlen)
{
    if (!map || strlen(map) > SMR_MAP_MAX || submaps < 1 || submaps > 65536 || strlen(host) >= 64) {
        snprintf(err, errlen, "bad arguments (map name up to %d bytes, 1..65536 sub-maps)",
                 SMR_MAP_MAX);
        return -1;
    }
    smr_route *r = calloc(1, sizeof *r);
    if (!r || !(r->sub_slot = calloc(submaps, sizeof *r->sub_slot))) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(r->host, sizeof r->host, "%s", host);
    r->port = port;
    snprintf(r->map, sizeof r->map, "%s", map);
    r->submaps = submaps;
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    for (unsigned i = 0; i < submaps; i++) {
        char name[SMR_MAP_MAX + 16];
        size_t n = smr_route_submap_name(map, i, name, sizeof name);
        r->sub_slot[i] = smr_route_keyslot(name, n);
    }
    if (smr_route_refresh(r) != 0) {
        snprintf(err, errlen, "%s:%d: %s", host, port, r->err);
        smr_route_close(r);
        return -1;
    }
    *out = r;
    return 0;
}

void smr_route_close(smr_route *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nnodes; i++) {
        node_drop(&r->nodes[i]);
        free(r->nodes[i].order);
    }
    free(r->sub_slot);
    free(r);
}

/* ---- Batches ----------------------------------------------------------- */

typedef struct batch batch;
/* Appends item i's command to c.  0 or -1. */
typedef int (*send_fn)(batch *b, size_t i, redisContext *c);
/* Takes item i's reply: 1 done, 0 retry (MOVED, ...), -1 fatal. */
typedef int (*reply_fn)(batch *b, size_t i, redisReply *rep);

struct batch {
    smr_route *r;
    size_t n;
    unsigned *sub; /* each item's sub-map */
    unsigned char *done;
    send_fn send;
    reply_fn reply;
    const int64_t *keys;
    const unsigned char *in;
    unsigned char *out, *found;
    size_t vsize;
    const char *type;
    unsigned len;
    int pooled;
    long long sum;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Is this error one that a slot table refresh and a retry cure? */
static int retryable(const redisReply *rep)
{
    static const char *codes[] = {"MOVED ",      "ASK ",    "TRYAGAIN",
                                  "CLUSTERDOWN", "LOADING", "MASTERDOWN"};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strncmp(rep->str, codes[i], strlen(codes[i])) == 0)
            return 1;
    return 0;
}

/* One pass.  Returns the items left, or -1 on a fatal reply. */
static long batch_pass(batch *b)
{
    smr_route *r = b->r;
    for (int k = 0; k < r->nnodes; k++) {
        smr_node *nd = &r->nodes[k];
        nd->n = 0;
        if (!nd->order && !(nd->order = malloc(SMR_CHUNK * sizeof *nd->order))) {
            set_err(r, "out of memory");
            return -1;
        }
    }
    for (size_t i = 0; i < b->n; i++) {
        if (b->done[i])
            continue;
        short k = r->slot_node[r->sub_slot[b->sub[i]]];
        if (k < 0)
            continue;
        smr_node *nd = &r->nodes[k];
        if (!nd->c && !(nd->c = connect_to(nd->host, nd->port)))
            continue;
        if (b->send(b, i, nd->c) != 0) {
            set_err(r, "out of memory");
            return -1;
        }
        nd->order[nd->n++] = i;
    }
    for (int k = 0; k < r->nnodes; k++) {
        smr_node *nd = &r->nodes[k];
        for (size_t j = 0; j < nd->n && nd->c; j++) {
            void *rep = NULL;
            if (redisGetReply(nd->c, &rep) != REDIS_OK || !rep) {
                set_err(r, "%s:%d: %s", nd->host, nd->port, nd->c->errstr);
                node_drop(nd); /* the rest of its items stay undone */
                break;
            }
            redisReply *rp = rep;
            int rc =
                rp->type == REDIS_REPLY_ERROR && retryable(rp) ? 0 : b->reply(b, nd->order[j], rp);
            if (rp->type == REDIS_REPLY_ERROR && rc == 0)
                set_err(r, "%s", rp->str);
            freeReplyObject(rp);
            if (rc < 0)
                return -1; /* the connection has unread replies: drop it */
            b->done[nd->order[j]] = rc == 1;
        }
    }
    long left = 0;
    for (size_t i = 0; i < b->n; i++)
        left += !b->done[i];
    return left;
}

static int batch_run(batch *b)
{
    unsigned sub[SMR_CHUNK];
    unsigned char done[SMR_CHUNK];
    size_t total = b->n;
    const int64_t *keys = b->keys;
    const unsigned char *in = b->in;
    unsigned char *out = b->out, *found = b->found;
    for (size_t base = 0; base < total; base += SMR_CHUNK) {
        size_t n = total - base < SMR_CHUNK ? total - base : SMR_CHUNK;
        for (size_t i = 0; i < n; i++) {
            sub[i] = keys ? smr_route_submap(keys[base + i], b->r->submaps) : (unsigned)(base + i);
            done[i] = 0;
        }
        b->n = n;
        b->sub = sub;
        b->done = done;
        b->keys = keys ? keys + base : NULL;
        b->in = in ? in + base * b->vsize : NULL;
        b->out = out ? out + base * b->vsize : NULL;
        b->found = found ? found + base : NULL;
        double deadline = now_ms() + b->r->timeout_ms;
        int pause = 50;
        for (;;) {
            long left = batch_pass(b);
            if (left < 0) {
                for (int k = 0; k < b->r->nnodes; k++)
                    node_drop(&b->r->nodes[k]);
                return -1;
            }
            if (left == 0)
                break;
            if (now_ms() > deadline) {
                char last[256];
                snprintf(last, sizeof last, "%s", b->r->err);
                set_err(b->r, "%ld commands not done after %d ms (last error: %s)", left,
                        b->r->timeout_ms, last);
                return -1;
            }
            sleep_ms(pause);
            pause = pause * 2 > 500 ? 500 : pause * 2;
            smr_route_refresh(b->r);
        }
    }
    return 0;
}

static void sub_name(batch *b, size_t i, char *name, size_t cap)
{
    smr_route_submap_name(b->r->map, b->sub[i], name, cap);
}

static int send_create(batch *b, size_t i, redisContext *c)
{
    char name[SMR_MAP_MAX + 16], len[16];
    sub_name(b, i, name, sizeof name);
    snprintf(len, sizeof len, "%u", b->len);
    const char *argv[] = {"SM.CREATE", name, b->type, len, "POOLED"};
    return redisAppendCommandArgv(c, b->pooled ? 5 : 4, argv, NULL) == REDIS_OK ? 0 : -1;
}

static int reply_create(batch *b, size_t i, redisReply *rep)
{
    (void)i;
    if (rep->type == REDIS_REPLY_STATUS)
        return 1;
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "ERR map '", 9) == 0 &&
        strstr(rep->str, "' exists"))
        return 1;
    set_err(b->r, "SM.CREATE: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    return -1;
}

int smr_route_create(smr_route *r, const char *type, unsigned len, int pooled)
{
    batch b = {.r = r,
               .n = r->submaps,
               .send = send_create,
               .reply = reply_create,
               .type = type,
               .len = len,
               .pooled = pooled};
    return batch_run(&b);
}

static int send_putb(batch *b, size_t i, redisContext *c)
{
    char name[SMR_MAP_MAX + 16], key[24];
    sub_name(b, i, name, sizeof name);
    snprintf(key, sizeof key, "%lld", (long long)b->keys[i]);
    const char *argv[] = {"SM.PUTB", name, key, (const char *)b->in + i * b->vsize};
    size_t lens[] = {7, strlen(name), strlen(key), b->vsize};
    return redisAppendCommandArgv(c, 4, argv, lens) == REDIS_OK ? 0 : -1;
}

static int reply_putb(batch *b, size_t i, redisReply *rep)
{
    (void)i;
    if (rep->type == REDIS_REPLY_STATUS)
        return 1;
    set_err(b->r, "SM.PUTB: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    return -1;
}

int smr_route_putb(smr_route *r, size_t n, const int64_t *keys, const void *values, size_t vsize)
{
    batch b = {.r = r,
               .n = n,
               .send = send_putb,
               .reply = reply_putb,
               .keys = keys,
               .in = values,
               .vsize = vsize};
    return batch_run(&b);
}

static int send_getb(batch *b, size_t i, redisContext *c)
{
    char name[SMR_MAP_MAX + 16], key[24];
    sub_name(b, i, name, sizeof name);
    snprintf(key, sizeof key, "%lld", (long long)b->keys[i]);
    const char *argv[] = {"SM.GETB", name, key};
    return redisAppendCommandArgv(c, 3, argv, NULL) == REDIS_OK ? 0 : -1;
}

static int reply_getb(batch *b, size_t i, redisReply *rep)
{
    if (rep->type == REDIS_REPLY_NIL) {
        b->found[i] = 0;
        return 1;
    }
    if (rep->type == REDIS_REPLY_STRING && (size_t)rep->len == b->vsize) {
        memcpy(b->out + i * b->vsize, rep->str, b->vsize);
        b->found[i] = 1;
        return 1;
    }
    set_err(b->r, "SM.GETB: %s",
            rep->type == REDIS_REPLY_ERROR ? rep->str : "a value of the wrong size");
    return -1;
}

int smr_route_getb(smr_route *r, size_t n, const int64_t *keys, void *values, size_t vsize,
                   unsigned char *found)
{
    batch b = {.r = r,
               .n = n,
               .send = send_getb,
               .reply = reply_getb,
               .keys = keys,
               .out = values,
               .vsize = vsize,
               .found = found};
    return batch_run(&b);
}

static int send_len(batch *b, size_t i, redisContext *c)
{
    char name[SMR_MAP_MAX + 16];
    sub_name(b, i, name, sizeof name);
    const char *argv[] = {"SM.LEN", name};
    return redisAppendCommandArgv(c, 2, argv, NULL) == REDIS_OK ? 0 : -1;
}

static int reply_len(batch *b, size_t i, redisReply *rep)
{
    (void)i;
    if (rep->type == REDIS_REPLY_INTEGER) {
        b->sum += rep->integer;
        return 1;
    }
    set_err(b->r, "SM.LEN: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    return -1;
}

long long smr_route_len(smr_route *r)
{
    batch b = {.r = r, .n = r->submaps, .send = send_len, .reply = reply_len};
    return batch_run(&b) == 0 ? b.sum : -1;
}

static size_t type_size(const char *t, size_t n)
{
    static const struct {
        const char *name;
        size_t size;
    } types[] = {{"int8", 1},   {"uint8", 1}, {"int16", 2}, {"uint16", 2}, {"int32", 4},
                 {"uint32", 4}, {"float", 4}, {"int64", 8}, {"uint64", 8}, {"double", 8}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strlen(types[i].name) == n && strncasecmp(types[i].name, t, n) == 0)
            return types[i].size;
    return 0;
}

static int send_info(batch *b, size_t i, redisContext *c)
{
    char name[SMR_MAP_MAX + 16];
    sub_name(b, i, name, sizeof name);
    const char *argv[] = {"SM.INFO", name};
    return redisAppendCommandArgv(c, 2, argv, NULL) == REDIS_OK ? 0 : -1;
}

/* SM.INFO's reply (RESP2: a flat array of fields and values): the value
 * size is the type's size times "len". */
static int reply_info(batch *b, size_t i, redisReply *rep)
{
    (void)i;
    size_t esize = 0, len = 0;
    if (rep->type != REDIS_REPLY_ARRAY) {
        set_err(b->r, "SM.INFO: %s",
                rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        return -1;
    }
    for (size_t k = 0; k + 1 < rep->elements; k += 2) {
        redisReply *f = rep->element[k], *v = rep->element[k + 1];
        if (f->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(f->str, "type") == 0 && v->type == REDIS_REPLY_STRING)
            esize = type_size(v->str, (size_t)v->len);
        else if (strcmp(f->str, "len") == 0 && v->type == REDIS_REPLY_INTEGER)
            len = (size_t)v->integer;
    }
    b->vsize = esize * len;
    return 1;
}

size_t smr_route_value_size(smr_route *r)
{
    batch b = {.r = r, .n = 1, .send = send_info, .reply = reply_info};
    if (batch_run(&b) != 0)
        return 0;
    if (b.vsize == 0)
        set_err(r, "SM.INFO of sub-map 0 gave no type and length");
    return b.vsize;
}
