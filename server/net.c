/*
 * net.c - safemapd's RESP transport: listener, workers, connections and
 * the dispatch of commands (see net.h for the thread model).
 *
 * A connection costs little while idle: its struct, a read event and
 * nothing else.  Reads land in the worker's shared 64 KiB buffer; only the
 * tail of a request that is not complete yet is copied to a buffer of the
 * connection's own, and reads continue into that buffer until the request
 * is whole.  Likewise replies are encoded into the worker's one reply
 * buffer and written at once; only what the socket does not take is copied
 * to the connection's output queue, which is written when the socket is
 * writable again.  A client whose queue passes the output limit (it does
 * not read its replies) is disconnected.
 *
 * The hot path of a command: resp_parse, a lookup of the command name in a
 * small hash table, the map's name through the worker's cache of map
 * references (valid while the store's generation is unchanged; so the
 * store's lock and the map's reference count are not touched per command),
 * smc_map_exec, and one clock_gettime whose reading ends this command's
 * latency and starts the next one's.  Write commands run inside the store's
 * write gate, entered once for a run of pipelined writes.  Their log records
 * are queued, not written, and one write() (appendfsync always: and one
 * fsync) puts the batch's records in the log right before its replies are
 * sent (log_flush).  Statistics are
 * summed per worker and added to the shared counters every 256 commands or
 * 100 ms, so no shared cache line is written per command.
 *
 * Limits.  resp_parse enforces the argument count and bulk length; a
 * request that breaks them gets "-ERR Protocol error: ..." and the
 * connection is closed after the reply.  A connection that has held part of
 * a request for longer than timeout_partial is closed by the worker's timer
 * (slow-loris clients).  Connections past maxclients are refused by the
 * listener with "-ERR max number of clients reached".
 */
#define _GNU_SOURCE
#include "net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "resp.h"

#define RBUF_SIZE (64 * 1024)
#define WBUF_FLUSH (256 * 1024)   /* a batch's replies past this are written at once */
#define WBUF_KEEP (1024 * 1024)   /* a reply buffer larger than this is freed after use */
#define CONN_BUF_KEEP (64 * 1024) /* a connection's buffers larger than this are freed */
#define ARGV_INIT 256
#define CLOSE_GRACE_NS (10 * 1000000000ull) /* a closed client's last replies wait this long */
#define MAP_CACHE 16                        /* power of two */

/* ---- The command table ------------------------------------------------- */

typedef struct cmdinfo {
    const char *name;
    size_t len;
    int arity;
    unsigned flags;
} cmdinfo;

#define SMD_X_INFO(id, name, arity, flags) {name, sizeof name - 1, arity, flags},
static cmdinfo cmdtab[SMD_NCMDS] = {SMD_COMMANDS(SMD_X_INFO)};
#undef SMD_X_INFO

#define CMD_HASH_SLOTS 128
static unsigned char lower[256];               /* ASCII lower case, without the locale */
static unsigned char cmd_hash[CMD_HASH_SLOTS]; /* index + 1, 0: empty */
static pthread_once_t cmd_once = PTHREAD_ONCE_INIT;

static uint32_t name_hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static void cmdtab_init(void)
{
    for (int i = 0; i < 256; i++)
        lower[i] = (unsigned char)(i >= 'A' && i <= 'Z' ? i + 32 : i);
    for (int i = 0; i < SMD_NCMDS; i++) {
        uint32_t h = name_hash(cmdtab[i].name, cmdtab[i].len) & (CMD_HASH_SLOTS - 1);
        while (cmd_hash[h])
            h = (h + 1) & (CMD_HASH_SLOTS - 1);
        cmd_hash[h] = (unsigned char)(i + 1);
        if (cmdtab[i].flags & SMD_F_MAP) {
            /* The command layer says what its commands do. */
            smc_arg a = {cmdtab[i].name, cmdtab[i].len};
            unsigned f = smc_cmd_flags(&a);
            if (f) {
                cmdtab[i].flags &= ~(SMD_F_READ | SMD_F_WRITE | SMD_F_FAST);
                cmdtab[i].flags |= (f & SMC_CMD_READ ? SMD_F_READ : 0) |
                                   (f & SMC_CMD_WRITE ? SMD_F_WRITE : 0) |
                                   (f & SMC_CMD_FAST ? SMD_F_FAST : 0);
                if (!(f & SMC_CMD_WRITE))
                    cmdtab[i].flags &= ~SMD_F_DENYOOM;
            }
        }
    }
}

/* The command argv[0] names, or -1. */
static int cmd_lookup(const smc_arg *a)
{
    char low[16];
    if (a->n == 0 || a->n > sizeof low)
        return -1;
    for (size_t i = 0; i < a->n; i++)
        low[i] = (char)lower[(unsigned char)a->p[i]];
    uint32_t h = name_hash(low, a->n) & (CMD_HASH_SLOTS - 1);
    for (;;) {
        int k = cmd_hash[h];
        if (!k)
            return -1;
        const cmdinfo *ci = &cmdtab[k - 1];
        if (ci->len == a->n && memcmp(ci->name, low, a->n) == 0)
            return k - 1;
        h = (h + 1) & (CMD_HASH_SLOTS - 1);
    }
}

/* ---- Types ------------------------------------------------------------- */

typedef struct worker worker;

typedef struct conn {
    int fd;
    worker *w;
    struct event *rev, *wev;
    struct conn *prev, *next;
    char *in; /* the unfinished request, in_len bytes */
    size_t in_len, in_cap, need;
    char *out; /* replies the socket has not taken yet: out[out_off..out_len) */
    size_t out_len, out_off, out_cap;
    uint64_t partial_since; /* ns, when the unfinished request began; 0: none */
    uint64_t closing_since; /* ns, when it was closed with replies still unsent */
    uint64_t id;
    char *name;
    unsigned resp3 : 1, authed : 1;
    unsigned closing : 1; /* close once the replies are out */
    unsigned dead : 1;    /* close now */
    unsigned reading : 1; /* rev is added */
} conn;

typedef struct lstat {
    uint64_t calls, errors, ns;
    uint64_t buckets[SMD_LAT_BUCKETS];
} lstat;

typedef struct mcache {
    smc_map *m;
    size_t n;
} mcache;

typedef struct pending_fd {
    int fd;
    uint64_t id;
} pending_fd;

struct worker {
    smd_net *net;
    smd_daemon *d;
    pthread_t thread;
    int inited, started;
    struct event_base *base;
    int notify_rd, notify_wr;
    struct event *notify_ev, *tick_ev, *stats_ev;
    pthread_mutex_t qlock;
    pending_fd *q;
    size_t qlen, qcap;
    int drain_asked, draining;
    int drain_timeout_ms;
    conn *conns;
    size_t nconns;
    char *rbuf;
    resp_buf wbuf;
    smc_reply r2, r3;
    smc_arg *argv;
    size_t argv_cap;
    resp_limits lim;
    size_t qbuf_max;
    mcache cache[MAP_CACHE];
    uint64_t cache_gen;
    lstat stats[SMD_NCMDS];
    unsigned char dirty[SMD_NCMDS];
    unsigned char dirty_list[SMD_NCMDS];
    size_t ndirty;
    uint64_t now; /* ns, CLOCK_MONOTONIC: the end of the last command */
    uint64_t mem_used, mem_at;
    uint64_t log_at;
    int log_failed;
    int gate_held;      /* inside the store's write gate (see gate_release) */
    int log_batching;   /* smd_persist_batch_thread done (see log_flush) */
    uint64_t unflushed; /* commands counted here, not yet in d */
    uint64_t commands, in_bytes, out_bytes;
};

struct smd_net {
    smd_daemon *d;
    struct event_base *base;
    struct evconnlistener *lis;
    struct event *resume_ev; /* re-enables accepting after EMFILE */
    worker *workers;
    int nworkers;
    unsigned rr;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- Replies ----------------------------------------------------------- */

static void reply_simple(smc_reply *r, const char *s)
{
    r->ops->simple(r->ctx, s, strlen(s));
}

static void reply_error(smc_reply *r, const char *s)
{
    r->ops->error(r->ctx, s, strlen(s));
}

static void reply_bulk_str(smc_reply *r, const char *s)
{
    r->ops->bulk(r->ctx, s, strlen(s));
}

static int arg_is(const smc_arg *a, const char *s)
{
    size_t n = strlen(s);
    return a->n == n && strncasecmp(a->p, s, n) == 0;
}

/* Copies an argument for a message: at most cap-1 bytes, line breaks and
 * control bytes as spaces. */
static void arg_show(char *out, size_t cap, const smc_arg *a)
{
    size_t n = a->n < cap - 1 ? a->n : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)a->p[i];
        out[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    out[n] = '\0';
}

static int parse_long(const smc_arg *a, long long *out)
{
    char buf[32];
    if (a->n == 0 || a->n >= sizeof buf)
        return -1;
    memcpy(buf, a->p, a->n);
    buf[a->n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* ---- Connections ------------------------------------------------------- */

static void conn_free(conn *c)
{
    worker *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c->name);
    free(c);
    w->nconns--;
    atomic_fetch_sub_explicit(&w->d->connections_open, 1, memory_order_relaxed);
    if (w->draining && w->nconns == 0)
        event_base_loopbreak(w->base);
}

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);

static void conn_new(worker *w, int fd, uint64_t id)
{
    conn *c = calloc(1, sizeof *c);
    if (c)
        c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_read, c);
    if (!c || !c->rev || event_add(c->rev, NULL) != 0) {
        smd_log(SMD_LOG_WARN, "connection dropped: out of memory", "fd=%d", fd);
        if (c && c->rev)
            event_free(c->rev);
        free(c);
        close(fd);
        atomic_fetch_sub_explicit(&w->d->connections_open, 1, memory_order_relaxed);
        return;
    }
    c->fd = fd;
    c->w = w;
    c->id = id;
    c->reading = 1;
    c->authed = w->d->cfg.requirepass[0] == '\0';
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
}

static int out_append(conn *c, const char *p, size_t n)
{
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_cap - c->out_len < n) {
        if (c->out_off) { /* reuse the sent part first */
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_cap - c->out_len < n) {
            size_t cap = c->out_cap ? c->out_cap : 16384;
            while (cap - c->out_len < n)
                cap *= 2;
            char *np = realloc(c->out, cap);
            if (!np)
                return -1;
            c->out = np;
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

static void conn_want_write(conn *c, int on)
{
    if (on) {
        if (!c->wev)
            c->wev = event_new(c->w->base, c->fd, EV_WRITE | EV_PERSIST, on_write, c);
        if (c->wev)
            event_add(c->wev, NULL);
        else
            c->dead = 1;
    } else if (c->wev) {
        event_del(c->wev);
    }
}

/* Checks the output limit.  Returns -1 when the client must go. */
static int conn_check_limit(conn *c)
{
    uint64_t pending = c->out_len - c->out_off;
    if (pending <= c->w->d->client_output_limit)
        return 0;
    atomic_fetch_add_explicit(&c->w->d->output_limit_closes, 1, memory_order_relaxed);
    smd_log(SMD_LOG_WARN, "client closed: output buffer over the limit",
            "client_id=%llu pending=%llu limit=%llu", (unsigned long long)c->id,
            (unsigned long long)pending, (unsigned long long)c->w->d->client_output_limit);
    /* Reset rather than close: the kernel drops what it still holds for
     * this client instead of trickling it to a reader that does not read. */
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    return -1;
}

/* Writes the queued output.  Returns 0 (maybe some left) or -1. */
static int conn_write_out(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t k = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (k > 0) {
            c->out_off += (size_t)k;
            c->w->out_bytes += (uint64_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return -1;
    }
    if (c->out_off < c->out_len) {
        conn_want_write(c, 1);
        return conn_check_limit(c);
    }
    c->out_off = c->out_len = 0;
    if (c->out_cap > CONN_BUF_KEEP) {
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    conn_want_write(c, 0);
    return 0;
}

/* The log records of the writes whose replies are in the reply buffer are
 * queued, not yet written (smd_persist_batch_thread): one write() for them
 * all (with appendfsync always, one fsync) before any reply leaves.
 * Returns 0, or -1 when the log failed: those writes must not be
 * acknowledged, so the replies are dropped with the connection. */
static int log_flush(conn *c)
{
#ifdef SMD_HAVE_PERSIST
    worker *w = c->w;
    if (w->log_batching && smd_persist_flush_thread(w->d->persist) != 0) {
        smd_log(SMD_LOG_ERROR, "client closed: its writes could not be logged", "client_id=%llu",
                (unsigned long long)c->id);
        return -1;
    }
#else
    (void)c;
#endif
    return 0;
}

/* Sends the worker's reply buffer to c: at once when nothing is queued,
 * else behind the queue.  Returns 0 or -1 (the connection must close). */
static int conn_flush(conn *c)
{
    worker *w = c->w;
    resp_buf *b = &w->wbuf;
    int rc = 0;
    if (log_flush(c) != 0) {
        b->len = 0;
        b->oom = 0;
        return -1;
    }
    if (c->out_len > c->out_off) {
        rc = b->len && out_append(c, b->p, b->len) != 0 ? -1 : conn_write_out(c);
    } else {
        size_t off = 0;
        while (off < b->len) {
            ssize_t k = write(c->fd, b->p + off, b->len - off);
            if (k > 0) {
                off += (size_t)k;
                continue;
            }
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            rc = -1;
            break;
        }
        w->out_bytes += off;
        if (rc == 0 && off < b->len) {
            rc = out_append(c, b->p + off, b->len - off);
            if (rc == 0) {
                conn_want_write(c, 1);
                rc = conn_check_limit(c);
            }
        }
    }
    b->len = 0;
    b->oom = 0;
    return rc;
}

static int conn_has_output(const conn *c)
{
    return c->out_len > c->out_off;
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    (void)fd;
    (void)what;
    if (conn_write_out(c) != 0 || c->dead || ((c->closing) && !conn_has_output(c)))
        conn_free(c);
}

/* ---- Statistics -------------------------------------------------------- */

static void stat_add(worker *w, int idx, uint64_t ns, int err)
{
    lstat *l = &w->stats[idx];
    uint64_t us = ns / 1000;
    unsigned b = us > 1 ? 64 - (unsigned)__builtin_clzll(us - 1) : 0;
    if (b >= SMD_LAT_BUCKETS)
        b = SMD_LAT_BUCKETS - 1;
    l->calls++;
    l->errors += (uint64_t)(err != 0);
    l->ns += ns;
    l->buckets[b]++;
    w->unflushed++;
    if (!w->dirty[idx]) {
        w->dirty[idx] = 1;
        w->dirty_list[w->ndirty++] = (unsigned char)idx;
    }
}

static void stats_flush(worker *w)
{
    smd_daemon *d = w->d;
    for (size_t i = 0; i < w->ndirty; i++) {
        int idx = w->dirty_list[i];
        lstat *l = &w->stats[idx];
        smd_cmdstat *s = &d->cmds[idx];
        atomic_fetch_add_explicit(&s->calls, l->calls, memory_order_relaxed);
        if (l->errors)
            atomic_fetch_add_explicit(&s->errors, l->errors, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->usec_sum, l->ns / 1000, memory_order_relaxed);
        for (int b = 0; b < SMD_LAT_BUCKETS; b++) {
            if (l->buckets[b]) {
                atomic_fetch_add_explicit(&s->buckets[b], l->buckets[b], memory_order_relaxed);
                l->buckets[b] = 0;
            }
        }
        l->calls = l->errors = 0;
        l->ns %= 1000;
        w->dirty[idx] = 0;
    }
    w->ndirty = 0;
    w->unflushed = 0;
    if (w->commands) {
        atomic_fetch_add_explicit(&d->commands_total, w->commands, memory_order_relaxed);
        w->commands = 0;
    }
    if (w->in_bytes) {
        atomic_fetch_add_explicit(&d->net_input_bytes, w->in_bytes, memory_order_relaxed);
        w->in_bytes = 0;
    }
    if (w->out_bytes) {
        atomic_fetch_add_explicit(&d->net_output_bytes, w->out_bytes, memory_order_relaxed);
        w->out_bytes = 0;
    }
}

/* ---- Map references ---------------------------------------------------- */

static void cache_clear(worker *w)
{
    for (int i = 0; i < MAP_CACHE; i++) {
        if (w->cache[i].m)
            smd_store_put(w->d->store, w->cache[i].m);
        w->cache[i].m = NULL;
    }
}

static uint64_t maps_generation(smd_daemon *d)
{
    return smd_store_generation(d->store) +
           atomic_load_explicit(&d->maps_gen, memory_order_acquire);
}

/* The map named a, held by the cache (no reference for the caller to give
 * back), or NULL. */
static smc_map *map_lookup(worker *w, const smc_arg *a)
{
    uint64_t g = maps_generation(w->d);
    if (g != w->cache_gen) {
        cache_clear(w);
        w->cache_gen = g;
    }
    mcache *e = &w->cache[name_hash(a->p, a->n) & (MAP_CACHE - 1)];
    if (e->m && e->n == a->n && memcmp(smc_map_name(e->m), a->p, a->n) == 0)
        return e->m;
    smc_map *m = smd_store_get(w->d->store, a->p, a->n);
    if (!m)
        return NULL;
    if (e->m)
        smd_store_put(w->d->store, e->m);
    e->m = m;
    e->n = a->n;
    return m;
}

/* The write gate is entered once for a run of pipelined writes rather than
 * once per write: a snapshot's pause waits at most for the rest of one
 * batch, and two atomic operations on the gate's shared line go per run
 * instead of per command. */
static void gate_release(worker *w)
{
    if (w->gate_held) {
        smd_store_gate_leave(w->d->store);
        w->gate_held = 0;
    }
}

static int over_maxmemory(worker *w)
{
    uint64_t max = w->d->cfg.maxmemory;
    if (!max)
        return 0;
    if (w->now - w->mem_at > 1000000 || !w->mem_at) { /* read at most once a ms */
        w->mem_used = smd_memory_used();
        w->mem_at = w->now;
    }
    return w->mem_used >= max;
}

/* ---- Server commands --------------------------------------------------- */

static int cmd_ping(conn *c, int argc, smc_arg *argv, smc_reply *r)
{
    (void)c;
    if (argc > 2) {
        reply_error(r, "ERR wrong number of arguments for 'ping' command");
        return 1;
    }
    if (argc == 2)
        r->ops->bulk(r->ctx, argv[1].p, argv[1].n);
    else
        reply_simple(r, "PONG");
    return 0;
}

/* AUTH's check, shared with HELLO ... AUTH.  user may be NULL. */
static int auth_check(conn *c, const smc_arg *user, const smc_arg *pass, smc_reply *r)
{
    const char *want = c->w->d->cfg.requirepass;
    if (!want[0]) {
        if (!user) {
            reply_error(r, "ERR AUTH <password> called without any password configured for "
                           "the default user. Are you sure your configuration is correct?");
            return -1;
        }
        if (arg_is(user, "default"))
            return 0;
    } else if (!user || arg_is(user, "default")) {
        size_t n = strlen(want);
        unsigned char diff = (unsigned char)(pass->n != n);
        for (size_t i = 0; i < pass->n; i++) /* no early exit on a mismatch */
            diff |= (unsigned char)(pass->p[i] ^ want[i < n ? i : 0]);
        if (!diff) {
            c->authed = 1;
            return 0;
        }
    }
    reply_error(r, "WRONGPASS invalid username-password pair or user is disabled.");
    return -1;
}

static int cmd_auth(conn *c, int argc, smc_arg *argv, smc_reply *r)
{
    if (argc > 3) {
        reply_error(r, "ERR syntax error");
        return 1;
    }
    if (auth_check(c, argc == 3 ? &argv[1] : NULL, &argv[argc - 1], r) != 0)
        return 1;
    reply_simple(r, "OK");
    return 0;
}

static int name_valid(const smc_arg *a)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->p[i] <= ' ' || a->p[i] > '~')
            return 0;
    return 1;
}

static int conn_set_name(conn *c, const smc_arg *a, smc_reply *r)
{
    if (!name_valid(a) || a->n > 1024) {
        reply_error(r, "ERR Client names cannot contain spaces, newlines or special characters.");
        return -1;
    }
    char *s = NULL;
    if (a->n) {
        s = malloc(a->n + 1);
        if (!s) {
            reply_error(r, "ERR out of memory");
            return -1;
        }
        memcpy(s, a->p, a->n);
        s[a->n] = '\0';
    }
    free(c->name);
    c->name = s;
    return 0;
}

static int cmd_hello(conn *c, int argc, smc_arg *argv, smc_reply *r)
{
    int proto = c->resp3 ? 3 : 2, i = 1;
    if (argc >= 2) {
        long long v;
        if (parse_long(&argv[1], &v) != 0) {
            reply_error(r, "ERR Protocol version is not an integer or out of range");
            return 1;
        }
        if (v != 2 && v != 3) {
            reply_error(r, "NOPROTO unsupported protocol version");
            return 1;
        }
        proto = (int)v;
        i = 2;
    }
    const smc_arg *user = NULL, *pass = NULL, *setname = NULL;
    for (; i < argc; i++) {
        if (arg_is(&argv[i], "auth") && i + 2 < argc) {
            user = &argv[i + 1];
            pass = &argv[i + 2];
            i += 2;
        } else if (arg_is(&argv[i], "setname") && i + 1 < argc) {
            setname = &argv[++i];
        } else {
            char s[64];
            arg_show(s, sizeof s, &argv[i]);
            smc_reply_errorf(r, "ERR Syntax error in HELLO option '%s'", s);
            return 1;
        }
    }
    if (pass) {
        if (auth_check(c, user, pass, r) != 0)
            return 1;
    } else if (!c->authed) {
        reply_error(r, "NOAUTH HELLO must be called with the client already authenticated, "
                       "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                       "authenticate the client and select the RESP protocol version at the "
                       "same time");
        return 1;
    }
    if (setname && conn_set_name(c, setname, r) != 0)
        return 1;
    c->resp3 = proto == 3;
    r = c->resp3 ? &c->w->r3 : &c->w->r2; /* the reply already speaks the new protocol */
    r->ops->map(r->ctx, 7);
    reply_bulk_str(r, "server");
    reply_bulk_str(r, "safemapd");
    reply_bulk_str(r, "version");
    reply_bulk_str(r, SMD_VERSION);
    reply_bulk_str(r, "proto");
    r->ops->integer(r->ctx, proto);
    reply_bulk_str(r, "id");
    r->ops->integer(r->ctx, (long long)c->id);
    reply_bulk_str(r, "mode");
    reply_bulk_str(r, "standalone");
    reply_bulk_str(r, "role");
    reply_bulk_str(r, "master");
    reply_bulk_str(r, "modules");
    r->ops->array(r->ctx, 0);
    return 0;
}

static int cmd_info(conn *c, int argc, smc_arg *argv, smc_reply *r)
{
    char section[64] = "";
    stats_flush(c->w); /* this worker's counts, to the command before this one */
    if (argc >= 2)
        arg_show(section, sizeof section, &argv[1]);
    size_t n = 0;
    char *text = smd_info_text(c->w->d, argc >= 2 ? section : NULL, &n);
    if (!text) {
        reply_error(r, "ERR out of memory");
        return 1;
    }
    r->ops->bulk(r->ctx, text, n);
    free(text);
    return 0;
}

static void command_flags(smc_reply *r, unsigned f)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{SMD_F_WRITE, "write"}, {SMD_F_READ, "readonly"},  {SMD_F_DENYOOM, "denyoom"},
                 {SMD_F_ADMIN, "admin"}, {SMD_F_NOAUTH, "no-auth"}, {SMD_F_FAST, "fast"}};
    size_t n = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        n += (f & names[i].bit) != 0;
    r->ops->array(r->ctx, n);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (f & names[i].bit)
            reply_simple(r, names[i].name);
}

static void command_entry(smc_reply *r, int idx)
{
    const cmdinfo *ci = &cmdtab[idx];
    int keyed = (ci->flags & SMD_F_MAP) || idx == SMD_CMD_SM_CREATE || idx == SMD_CMD_SM_DROP;
    r->ops->array(r->ctx, 10);
    reply_bulk_str(r, ci->name);
    r->ops->integer(r->ctx, ci->arity);
    command_flags(r, ci->flags);
    r->ops->integer(r->ctx, keyed);
    r->ops->integer(r->ctx, keyed);
    r->ops->integer(r->ctx, keyed);
    r->ops->array(r->ctx, 1);
    reply_simple(r, ci->flags & SMD_F_MAP ? "@safemap" : "@server");
    r->ops->array(r->ctx, 0);
    r->ops->array(r->ctx, 0);
    r->ops->array(r->ctx, 0);
}

static int cmd_command(conn *c, int argc, smc_arg *argv, smc_reply *r)
{
    (void)c;
    if (argc == 1) {
        r->ops->array(r->ctx, SMD_NCMDS);
        for (int i = 0; i < SMD_NCMDS; i++)
            command_entry(r, i);
        return 0;
    }
    if (arg_is(&argv[1], "count")) {
        r->ops->integer(r->ctx, SMD_NCMDS);
        return 0;
    }
    if (arg_is(&argv[1], "info")) {
        if (argc == 2) {
            r->ops->array(r->ctx, SMD_NCMDS);
            for (int i = 0; i < SMD_NCMDS; i++)
                command_entry(r, i);
            return 0;
        }
        r->ops->array(r->ctx, (size_t)(argc - 2));
        for (int i = 2; i < argc; i++) {
            int idx = cmd_lookup(&argv[i]);
            if (idx < 0)
                r->ops->null(r->ctx);
            else
                command_entry(r, idx);
        }
        return 0;
    }
    if (arg_is(&argv[1], "docs")) {
        r->ops->map(r->ctx, 0);
        return 0;
    }
    if (arg_is(&argv[1], "list")) {
        r->ops->array(r->ctx, SMD_NCMDS);
        for (int i = 0; i < SMD_NCMDS; i++)
            reply_bulk_str(r, cmdtab[i].name);
        return 0;
    }
    char s[64];
    arg_show(s, sizeof s, &argv[1]);
    smc_reply_errorf(r, "ERR unknown subcommand '%s'. Try COMMAND HELP.", s);
    return 1;
}

static int cmd_client(conn *c, int argc, smc_arg *argv, smc_reply *r)
{
    if (arg_is(&argv[1], "id") && argc == 2) {
        r->ops->integer(r->ctx, (long long)c->id);
        return 0;
    }
    if (arg_is(&argv[1], "getname") && argc == 2) {
        if (c->name)
            reply_bulk_str(r, c->name);
        else
            r->ops->null(r->ctx);
        return 0;
    }
    if (arg_is(&argv[1], "setname") && argc == 3) {
        if (conn_set_name(c, &argv[2], r) != 0)
            return 1;
        reply_simple(r, "OK");
        return 0;
    }
    if (arg_is(&argv[1], "setinfo") || arg_is(&argv[1], "no-evict") ||
        arg_is(&argv[1], "no-touch")) {
        reply_simple(r, "OK");
        return 0;
    }
    if ((arg_is(&argv[1], "info") || arg_is(&argv[1], "list")) && argc == 2) {
        char s[1200];
        snprintf(s, sizeof s, "id=%llu name=%s fd=%d resp=%d qbuf=%zu omem=%zu\n",
                 (unsigned long long)c->id, c->name ? c->name : "", c->fd, c->resp3 ? 3 : 2,
                 c->in_len, c->out_len - c->out_off);
        reply_bulk_str(r, s);
        return 0;
    }
    char s[64];
    arg_show(s, sizeof s, &argv[1]);
    smc_reply_errorf(r,
                     "ERR unknown subcommand or wrong number of arguments for '%s'. Try "
                     "CLIENT HELP.",
                     s);
    return 1;
}

static int cmd_config(conn *c, int argc, smc_arg *argv, smc_reply *r)
{
    const smd_config *cf = &c->w->d->cfg;
    if (!arg_is(&argv[1], "get") || argc < 3) {
        if (arg_is(&argv[1], "set"))
            reply_error(r, "ERR CONFIG SET is not supported: restart safemapd with the new "
                           "setting");
        else
            reply_error(r, "ERR unknown CONFIG subcommand or wrong number of arguments");
        return 1;
    }
    char port[16], http[16], threads[16], maxmem[32], maxcl[16], bulk[32];
    snprintf(port, sizeof port, "%d", cf->port);
    snprintf(http, sizeof http, "%d", cf->http_port);
    snprintf(threads, sizeof threads, "%d", cf->threads);
    snprintf(maxmem, sizeof maxmem, "%llu", (unsigned long long)cf->maxmemory);
    snprintf(maxcl, sizeof maxcl, "%d", cf->maxclients);
    snprintf(bulk, sizeof bulk, "%zu", cf->max_bulk);
    const char *kv[][2] = {
        {"port", port},
        {"http-port", http},
        {"threads", threads},
        {"bind", cf->bind},
        {"dir", cf->dir},
        {"appendonly", cf->appendonly ? "yes" : "no"},
        {"appendfsync", cf->appendfsync == SMD_FSYNC_ALWAYS     ? "always"
                        : cf->appendfsync == SMD_FSYNC_EVERYSEC ? "everysec"
                                                                : "no"},
        {"save", ""},
        {"maxmemory", maxmem},
        {"maxmemory-policy", "noeviction"},
        {"maxclients", maxcl},
        {"max-bulk", bulk},
        {"databases", "1"},
    };
    size_t nkv = sizeof kv / sizeof kv[0];
    unsigned char hit[sizeof kv / sizeof kv[0]] = {0};
    size_t n = 0;
    for (int i = 2; i < argc; i++) {
        char pat[128];
        arg_show(pat, sizeof pat, &argv[i]);
        for (size_t k = 0; k < nkv; k++) {
            if (!hit[k] && fnmatch(pat, kv[k][0], FNM_CASEFOLD) == 0) {
                hit[k] = 1;
                n++;
            }
        }
    }
    r->ops->map(r->ctx, n);
    for (size_t k = 0; k < nkv; k++) {
        if (hit[k]) {
            reply_bulk_str(r, kv[k][0]);
            reply_bulk_str(r, kv[k][1]);
        }
    }
    return 0;
}

static int cmd_select(conn *c, int argc, smc_arg *argv, smc_reply *r)
{
    (void)c;
    (void)argc;
    long long v;
    if (parse_long(&argv[1], &v) != 0) {
        reply_error(r, "ERR value is not an integer or out of range");
        return 1;
    }
    if (v != 0) {
        reply_error(r, "ERR DB index is out of range");
        return 1;
    }
    reply_simple(r, "OK");
    return 0;
}

static int cmd_save(conn *c, int bg, smc_reply *r)
{
#ifdef SMD_HAVE_PERSIST
    smd_persist *p = c->w->d->persist;
    if (p) {
        char err[512] = "";
        int rc = bg ? smd_persist_bgsave(p, err, sizeof err) : smd_persist_save(p, err, sizeof err);
        if (rc == 0) {
            reply_simple(r, bg ? "Background saving started" : "OK");
            return 0;
        }
        if (bg && rc == SM_EBUSY) {
            reply_error(r, "ERR Background save already in progress");
            return 1;
        }
        smd_log(SMD_LOG_ERROR, bg ? "bgsave failed" : "save failed", "err=\"%s\"", err);
        smc_reply_errorf(r, "ERR %s", err[0] ? err : sm_strerror(rc));
        return 1;
    }
#else
    (void)c;
    (void)bg;
#endif
    reply_error(r, "ERR persistence is not available in this server");
    return 1;
}

static int cmd_lastsave(conn *c, smc_reply *r)
{
    long long t = 0;
#ifdef SMD_HAVE_PERSIST
    if (c->w->d->persist) {
        smd_persist_info pi;
        memset(&pi, 0, sizeof pi);
        smd_persist_info_get(c->w->d->persist, &pi);
        t = (long long)pi.last_save;
    }
#else
    (void)c;
#endif
    r->ops->integer(r->ctx, t);
    return 0;
}

static int cmd_shutdown(conn *c, int argc, smc_arg *argv, smc_reply *r)
{
    int mode = 0;
    for (int i = 1; i < argc; i++) {
        if (arg_is(&argv[i], "nosave"))
            mode = -1;
        else if (arg_is(&argv[i], "save"))
            mode = 1;
        else if (!arg_is(&argv[i], "now") && !arg_is(&argv[i], "force")) {
            reply_error(r, "ERR syntax error");
            return 1;
        }
    }
    atomic_store(&c->w->d->shutdown_save, mode);
    atomic_store(&c->w->d->shutdown_now, 1);
    smd_log(SMD_LOG_INFO, "SHUTDOWN received", "client_id=%llu save=%d", (unsigned long long)c->id,
            mode);
    kill(getpid(), SIGTERM); /* the main thread drains, as for a signal */
    c->closing = 1;          /* as Redis: no reply, the connection closes */
    return 0;
}

static int write_refused(worker *w, const cmdinfo *ci, smc_reply *r)
{
    if ((ci->flags & SMD_F_DENYOOM) && over_maxmemory(w)) {
        atomic_fetch_add_explicit(&w->d->oom_rejections, 1, memory_order_relaxed);
        reply_error(r, "OOM command not allowed when used memory > 'maxmemory'.");
        return 1;
    }
#ifdef SMD_HAVE_PERSIST
    if (w->d->persist && (w->now - w->log_at > 1000000 || !w->log_at)) {
        w->log_failed = smd_persist_log_status(w->d->persist) != 0; /* at most once a ms */
        w->log_at = w->now;
    }
    if (w->log_failed) {
        reply_error(r, "MISCONF the append-only log could not be written: writes are refused "
                       "until a SAVE or BGSAVE succeeds (see the server log)");
        return 1;
    }
#endif
    return 0;
}

static int cmd_create(conn *c, int argc, smc_arg *argv, smc_reply *r)
{
    smd_daemon *d = c->w->d;
    smc_spec spec;
    if (smc_spec_parse(argc - 2, argv + 2, &spec, r) != 0)
        return 1;
    smd_store_gate_enter(d->store);
#ifdef SMD_HAVE_PERSIST
    int rc = smd_persist_create(d->persist, d->store, argv[1].p, argv[1].n, &spec);
#else
    int rc = smd_store_create(d->store, argv[1].p, argv[1].n, &spec);
#endif
    smd_store_gate_leave(d->store);
    char name[SMC_NAME_MAX + 1];
    arg_show(name, sizeof name, &argv[1]);
    switch (rc) {
    case 0:
        reply_simple(r, "OK");
        return 0;
    case SMD_EEXISTS:
        smc_reply_errorf(r, "ERR map '%s' exists", name);
        return 1;
    case SM_EINVAL:
        smc_reply_errorf(r, "ERR invalid map name '%s' (1-%d printable bytes, no spaces)", name,
                         SMC_NAME_MAX);
        return 1;
    case SM_ENOMEM:
        reply_error(r, "OOM out of memory creating the map");
        return 1;
    default:
        smc_reply_errorf(r, "ERR %s creating map '%s'", sm_strerror(rc), name);
        return 1;
    }
}

static int cmd_drop(conn *c, smc_arg *argv, smc_reply *r)
{
    smd_daemon *d = c->w->d;
    smd_store_gate_enter(d->store);
#ifdef SMD_HAVE_PERSIST
    int rc = smd_persist_drop(d->persist, d->store, argv[1].p, argv[1].n);
#else
    int rc = smd_store_drop(d->store, argv[1].p, argv[1].n);
#endif
    smd_store_gate_leave(d->store);
    if (rc == 0) {
        cache_clear(c->w); /* let go of our reference now */
        reply_simple(r, "OK");
        return 0;
    }
    char name[SMC_NAME_MAX + 1];
    arg_show(name, sizeof name, &argv[1]);
    if (rc == SM_ENOENT)
        smc_reply_errorf(r, "ERR unknown map '%s'", name);
    else
        smc_reply_errorf(r, "ERR %s dropping map '%s'", sm_strerror(rc), name);
    return 1;
}

typedef struct name_list {
    char **v;
    size_t n, cap;
    int oom;
} name_list;

static int list_add(smc_map *m, void *ctx)
{
    name_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **nv = realloc(l->v, cap * sizeof *nv);
        if (!nv) {
            l->oom = 1;
            return 1;
        }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n] = strdup(smc_map_name(m));
    if (!l->v[l->n]) {
        l->oom = 1;
        return 1;
    }
    l->n++;
    return 0;
}

static int cmd_list(conn *c, smc_reply *r)
{
    name_list l = {0};
    smd_store_each(c->w->d->store, list_add, &l);
    if (l.oom)
        reply_error(r, "ERR out of memory");
    else
        r->ops->array(r->ctx, l.n);
    for (size_t i = 0; i < l.n; i++) {
        if (!l.oom)
            reply_bulk_str(r, l.v[i]);
        free(l.v[i]);
    }
    free(l.v);
    return l.oom;
}

static int run_map_cmd(conn *c, const cmdinfo *ci, int argc, smc_arg *argv, smc_reply *r)
{
    worker *w = c->w;
    smc_map *m = map_lookup(w, &argv[1]);
    if (!m) {
        char name[SMC_NAME_MAX + 1];
        arg_show(name, sizeof name, &argv[1]);
        smc_reply_errorf(r, "ERR unknown map '%s'", name);
        return 1;
    }
    if (!(ci->flags & SMD_F_WRITE))
        return smc_map_exec(m, argc, argv, r) < 0;
    if (write_refused(w, ci, r))
        return 1;
    if (!w->gate_held) { /* held until the batch ends or a server command runs */
        smd_store_gate_enter(w->d->store);
        w->gate_held = 1;
    }
#ifdef SMD_HAVE_PERSIST
    if (!w->log_batching && w->d->persist) { /* set once the server is loaded */
        smd_persist_batch_thread(w->d->persist);
        w->log_batching = 1;
    }
#endif
    return smc_map_exec(m, argc, argv, r) < 0;
}

static void reply_unknown(smc_reply *r, int argc, smc_arg *argv)
{
    char msg[512], a[130];
    arg_show(a, sizeof a, &argv[0]);
    int n = snprintf(msg, sizeof msg, "ERR unknown command '%s', with args beginning with: ", a);
    for (int i = 1; i < argc && n < 128 + 64; i++) {
        arg_show(a, sizeof a, &argv[i]);
        n += snprintf(msg + n, sizeof msg - (size_t)n, "'%s' ", a);
    }
    reply_error(r, msg);
}

static int run_server_cmd(conn *c, int idx, int argc, smc_arg *argv, smc_reply *r)
{
    switch (idx) {
    case SMD_CMD_PING:
        return cmd_ping(c, argc, argv, r);
    case SMD_CMD_ECHO:
        r->ops->bulk(r->ctx, argv[1].p, argv[1].n);
        return 0;
    case SMD_CMD_HELLO:
        return cmd_hello(c, argc, argv, r);
    case SMD_CMD_AUTH:
        return cmd_auth(c, argc, argv, r);
    case SMD_CMD_INFO:
        return cmd_info(c, argc, argv, r);
    case SMD_CMD_COMMAND:
        return cmd_command(c, argc, argv, r);
    case SMD_CMD_CLIENT:
        return cmd_client(c, argc, argv, r);
    case SMD_CMD_CONFIG:
        return cmd_config(c, argc, argv, r);
    case SMD_CMD_SELECT:
        return cmd_select(c, argc, argv, r);
    case SMD_CMD_DBSIZE:
        r->ops->integer(r->ctx, (long long)smd_store_count(c->w->d->store));
        return 0;
    case SMD_CMD_QUIT:
        reply_simple(r, "OK");
        c->closing = 1;
        return 0;
    case SMD_CMD_SAVE:
        return cmd_save(c, 0, r);
    case SMD_CMD_BGSAVE:
        return cmd_save(c, 1, r);
    case SMD_CMD_LASTSAVE:
        return cmd_lastsave(c, r);
    case SMD_CMD_SHUTDOWN:
        return cmd_shutdown(c, argc, argv, r);
    case SMD_CMD_SM_CREATE:
        return cmd_create(c, argc, argv, r);
    case SMD_CMD_SM_DROP:
        return cmd_drop(c, argv, r);
    case SMD_CMD_SM_LIST:
        return cmd_list(c, r);
    }
    reply_error(r, "ERR command not implemented");
    return 1;
}

static void dispatch(conn *c, int argc, smc_arg *argv, smc_reply *r)
{
    worker *w = c->w;
    int idx = cmd_lookup(&argv[0]);
    w->commands++;
    if (idx < 0) {
        if (!c->authed)
            reply_error(r, "NOAUTH Authentication required.");
        else
            reply_unknown(r, argc, argv);
        return;
    }
    const cmdinfo *ci = &cmdtab[idx];
    int err;
    if (!c->authed && !(ci->flags & SMD_F_NOAUTH)) {
        reply_error(r, "NOAUTH Authentication required.");
        err = 1;
    } else if (ci->arity > 0 ? argc != ci->arity : argc < -ci->arity) {
        smc_reply_errorf(r, "ERR wrong number of arguments for '%s' command", ci->name);
        err = 1;
    } else if (ci->flags & SMD_F_MAP) {
        err = run_map_cmd(c, ci, argc, argv, r);
    } else if ((ci->flags & SMD_F_WRITE) && write_refused(w, ci, r)) {
        err = 1;
    } else {
        gate_release(w); /* SAVE pauses, SM.CREATE enters: never while held */
        err = run_server_cmd(c, idx, argc, argv, r);
    }
    uint64_t t = now_ns();
    stat_add(w, idx, t - w->now, err);
    w->now = t;
}

/* ---- Reading and parsing ----------------------------------------------- */

/* After a parse error: was it only argv being too small for a request the
 * limits allow?  Then grows argv and returns 1 (parse again). */
static int argv_grow_for(worker *w, const char *p, size_t n)
{
    if (n < 2 || p[0] != '*')
        return 0;
    size_t count = 0, i = 1;
    for (; i < n && i < 20 && p[i] >= '0' && p[i] <= '9'; i++)
        count = count * 10 + (size_t)(p[i] - '0');
    if (i == 1 || count <= w->argv_cap || count > w->lim.max_args)
        return 0;
    smc_arg *nv = realloc(w->argv, count * sizeof *nv);
    if (!nv)
        return 0;
    w->argv = nv;
    w->argv_cap = count;
    return 1;
}

static void protocol_error(conn *c, const char *err)
{
    worker *w = c->w;
    smc_reply *r = c->resp3 ? &w->r3 : &w->r2;
    smc_reply_errorf(r, "ERR Protocol error: %s", err ? err : "invalid request");
    atomic_fetch_add_explicit(&w->d->protocol_errors, 1, memory_order_relaxed);
    smd_log(SMD_LOG_INFO, "client closed: protocol error", "client_id=%llu err=\"%s\"",
            (unsigned long long)c->id, err ? err : "invalid request");
    c->closing = 1;
}

/* Runs every whole command in data[0..len).  Returns the bytes used. */
static size_t conn_process(conn *c, const char *data, size_t len)
{
    worker *w = c->w;
    size_t off = 0;
    while (off < len && !c->closing && !c->dead) {
        int argc = 0;
        size_t used = 0, need = 0;
        const char *err = NULL;
        int rc = resp_parse(data + off, len - off, &w->lim, w->argv, w->argv_cap, &argc, &used,
                            &need, &err);
        if (rc == RESP_MORE) {
            c->need = need;
            if (need > w->qbuf_max)
                protocol_error(c, "request larger than the query buffer limit");
            break;
        }
        if (rc != RESP_OK) {
            if (argv_grow_for(w, data + off, len - off))
                continue;
            protocol_error(c, err);
            break;
        }
        off += used;
        c->need = 0;
        if (argc == 0)
            continue;
        dispatch(c, argc, w->argv, c->resp3 ? &w->r3 : &w->r2);
        if (w->wbuf.oom) {
            smd_log(SMD_LOG_ERROR, "client closed: out of memory for its replies", "client_id=%llu",
                    (unsigned long long)c->id);
            c->dead = 1;
            break;
        }
        if (w->wbuf.len >= WBUF_FLUSH && conn_flush(c) != 0) {
            c->dead = 1;
            break;
        }
    }
    gate_release(w);
    return off;
}

/* Room in c->in for the next read: the buffer doubles as bytes arrive (up
 * to what the request needs), so memory follows the bytes received, not the
 * lengths a client announces.  Returns 0 or -1 (over the limit, or no
 * memory). */
static int conn_in_reserve(conn *c)
{
    size_t max = c->w->qbuf_max;
    if (c->in_len >= max)
        return -1; /* at the limit and still not whole */
    if (c->in_cap - c->in_len >= 4096)
        return 0;
    size_t want = c->in_cap * 2;
    if (want < c->in_len + 16384)
        want = c->in_len + 16384;
    if (c->need > c->in_len && want > c->need)
        want = c->need > c->in_len + 16384 ? c->need : c->in_len + 16384;
    if (want > max)
        want = max;
    char *np = realloc(c->in, want);
    if (!np)
        return -1;
    c->in = np;
    c->in_cap = want;
    return 0;
}

/* Keeps the unused tail data[used..len) for the next read. */
static int conn_keep_tail(conn *c, const char *data, size_t len, size_t used)
{
    size_t left = len - used;
    if (data != c->in) {
        if (left) {
            /* Room for what came, not for what the request says will come:
             * a header alone never makes the server allocate its length. */
            size_t cap = left + 16384;
            if (c->in_cap < cap) {
                char *np = realloc(c->in, cap);
                if (!np)
                    return -1;
                c->in = np;
                c->in_cap = cap;
            }
            memcpy(c->in, data + used, left);
        }
    } else if (used && left) {
        memmove(c->in, c->in + used, left);
    }
    c->in_len = left;
    if (!left) {
        c->partial_since = 0;
        if (c->in_cap) { /* an idle connection holds no buffer */
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    } else if (used || !c->partial_since) {
        c->partial_since = c->w->now;
    }
    return 0;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    worker *w = c->w;
    (void)what;
    char *data;
    ssize_t k;
    if (c->in_len == 0) {
        data = w->rbuf;
        k = read(fd, w->rbuf, RBUF_SIZE);
    } else {
        if (conn_in_reserve(c) != 0) {
            w->now = now_ns();
            protocol_error(c, "request larger than the query buffer limit");
            c->in_len = 0;
            if (conn_flush(c) != 0 || !conn_has_output(c))
                conn_free(c);
            else if (c->reading) {
                event_del(c->rev);
                c->reading = 0;
            }
            return;
        }
        data = c->in;
        k = read(fd, c->in + c->in_len, c->in_cap - c->in_len);
    }
    if (k == 0) {
        conn_free(c);
        return;
    }
    if (k < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_free(c);
        return;
    }
    w->in_bytes += (uint64_t)k;
    size_t len = (data == c->in ? c->in_len : 0) + (size_t)k;
    w->now = now_ns();
    size_t used = conn_process(c, data, len);
    if (!c->dead && !c->closing && conn_keep_tail(c, data, len, used) != 0) {
        smd_log(SMD_LOG_ERROR, "client closed: out of memory for its request", "client_id=%llu",
                (unsigned long long)c->id);
        c->dead = 1;
    }
    int rc = c->dead ? -1 : conn_flush(c);
    if (w->unflushed >= 256) /* else the 100 ms timer adds them */
        stats_flush(w);
    if (rc != 0 || c->dead || (c->closing && !conn_has_output(c))) {
        conn_free(c);
    } else if (c->closing && c->reading) {
        event_del(c->rev);
        c->reading = 0;
        c->closing_since = w->now;
    }
    if (w->wbuf.cap > WBUF_KEEP)
        resp_buf_free(&w->wbuf);
}

/* ---- Workers ----------------------------------------------------------- */

static void worker_start_drain(worker *w)
{
    w->draining = 1;
    conn *c = w->conns;
    while (c) {
        conn *next = c->next;
        if (c->reading) {
            event_del(c->rev);
            c->reading = 0;
        }
        c->closing = 1;
        if (!conn_has_output(c))
            conn_free(c); /* may break the loop when it is the last */
        c = next;
    }
    if (w->nconns == 0) {
        event_base_loopbreak(w->base);
        return;
    }
    struct timeval tv = {w->drain_timeout_ms / 1000, (w->drain_timeout_ms % 1000) * 1000};
    event_base_loopexit(w->base, &tv);
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    worker *w = arg;
    char buf[256];
    (void)what;
    while (read(fd, buf, sizeof buf) > 0)
        ;
    pending_fd local[64];
    for (;;) {
        pthread_mutex_lock(&w->qlock);
        size_t n = w->qlen < 64 ? w->qlen : 64;
        if (n) {
            memcpy(local, w->q, n * sizeof *local);
            memmove(w->q, w->q + n, (w->qlen - n) * sizeof *local);
            w->qlen -= n;
        }
        int drain = w->drain_asked;
        pthread_mutex_unlock(&w->qlock);
        for (size_t i = 0; i < n; i++) {
            if (drain || w->draining) {
                close(local[i].fd);
                atomic_fetch_sub_explicit(&w->d->connections_open, 1, memory_order_relaxed);
            } else {
                conn_new(w, local[i].fd, local[i].id);
            }
        }
        if (n == 0) {
            if (drain && !w->draining)
                worker_start_drain(w);
            return;
        }
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    worker *w = arg;
    (void)fd;
    (void)what;
    uint64_t now = now_ns();
    uint64_t limit = (uint64_t)w->d->timeout_partial_ms * 1000000u;
    conn *c = w->conns;
    while (c) {
        conn *next = c->next;
        if (c->partial_since && now - c->partial_since > limit) {
            atomic_fetch_add_explicit(&w->d->partial_timeouts, 1, memory_order_relaxed);
            smd_log(SMD_LOG_INFO, "client closed: partial request timed out",
                    "client_id=%llu buffered=%zu timeout_ms=%d", (unsigned long long)c->id,
                    c->in_len, w->d->timeout_partial_ms);
            conn_free(c);
        } else if (c->closing_since && now - c->closing_since > CLOSE_GRACE_NS) {
            conn_free(c); /* closed, and its last replies were not read in time */
        }
        c = next;
    }
    if (maps_generation(w->d) != w->cache_gen) { /* let dropped maps go */
        cache_clear(w);
        w->cache_gen = maps_generation(w->d);
    }
}

static void on_stats(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    stats_flush(arg);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    sigset_t set; /* signals go to the main thread (faults stay with the thread) */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    event_base_dispatch(w->base);
    while (w->conns)
        conn_free(w->conns);
    cache_clear(w);
    stats_flush(w);
    return NULL;
}

static void worker_destroy(worker *w)
{
    if (!w->inited)
        return;
    if (w->notify_ev)
        event_free(w->notify_ev);
    if (w->tick_ev)
        event_free(w->tick_ev);
    if (w->stats_ev)
        event_free(w->stats_ev);
    if (w->base)
        event_base_free(w->base);
    if (w->notify_rd >= 0)
        close(w->notify_rd);
    if (w->notify_wr >= 0)
        close(w->notify_wr);
    for (size_t i = 0; i < w->qlen; i++)
        close(w->q[i].fd);
    free(w->q);
    free(w->rbuf);
    free(w->argv);
    resp_buf_free(&w->wbuf);
    if (w->inited)
        pthread_mutex_destroy(&w->qlock);
}

static int worker_init(worker *w, smd_net *n, char *err, size_t errlen)
{
    smd_daemon *d = n->d;
    w->net = n;
    w->d = d;
    w->notify_rd = w->notify_wr = -1;
    pthread_mutex_init(&w->qlock, NULL);
    w->inited = 1;
    resp_buf_init(&w->wbuf);
    resp_reply_init(&w->r2, &w->wbuf, 0);
    resp_reply_init(&w->r3, &w->wbuf, 1);
    resp_limits_default(&w->lim);
    w->lim.max_args = d->cfg.max_args;
    w->lim.max_bulk = d->cfg.max_bulk;
    size_t q = d->cfg.max_bulk * 2 + (1u << 20);
    w->qbuf_max = q < ((size_t)64 << 20)  ? (size_t)64 << 20
                  : q > ((size_t)1 << 30) ? (size_t)1 << 30
                                          : q;
    w->argv_cap = ARGV_INIT < d->cfg.max_args ? ARGV_INIT : d->cfg.max_args;
    w->argv = malloc(w->argv_cap * sizeof *w->argv);
    w->rbuf = malloc(RBUF_SIZE);
    w->cache_gen = maps_generation(d);
    struct event_config *ec = event_config_new();
    if (ec) {
        event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
        w->base = event_base_new_with_config(ec);
        event_config_free(ec);
    }
    int p[2];
    if (!w->argv || !w->rbuf || !w->base || pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot set up a worker thread: %s",
                 strerror(errno ? errno : ENOMEM));
        return -1;
    }
    w->notify_rd = p[0];
    w->notify_wr = p[1];
    w->notify_ev = event_new(w->base, w->notify_rd, EV_READ | EV_PERSIST, on_notify, w);
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    int period = d->timeout_partial_ms / 4;
    period = period < 10 ? 10 : period > 1000 ? 1000 : period;
    struct timeval tv = {period / 1000, (period % 1000) * 1000};
    w->stats_ev = event_new(w->base, -1, EV_PERSIST, on_stats, w);
    struct timeval stv = {0, 100000};
    if (!w->notify_ev || !w->tick_ev || !w->stats_ev || event_add(w->notify_ev, NULL) != 0 ||
        event_add(w->tick_ev, &tv) != 0 || event_add(w->stats_ev, &stv) != 0) {
        snprintf(err, errlen, "cannot set up a worker thread's events");
        return -1;
    }
    return 0;
}

static int worker_push(worker *w, int fd, uint64_t id)
{
    pthread_mutex_lock(&w->qlock);
    if (w->qlen == w->qcap) {
        size_t cap = w->qcap ? w->qcap * 2 : 64;
        pending_fd *nq = realloc(w->q, cap * sizeof *nq);
        if (!nq) {
            pthread_mutex_unlock(&w->qlock);
            return -1;
        }
        w->q = nq;
        w->qcap = cap;
    }
    w->q[w->qlen++] = (pending_fd){fd, id};
    pthread_mutex_unlock(&w->qlock);
    char b = 1;
    if (write(w->notify_wr, &b, 1) < 0 && errno != EAGAIN)
        return 0; /* the fd is queued; the next notify delivers it */
    return 0;
}

/* ---- The listener ------------------------------------------------------ */

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    smd_net *n = arg;
    smd_daemon *d = n->d;
    (void)l;
    (void)sa;
    (void)salen;
    int state = atomic_load_explicit(&d->state, memory_order_relaxed);
    if (state != SMD_READY && state != SMD_DRAINING) {
        close(fd);
        return;
    }
    if (atomic_load_explicit(&d->connections_open, memory_order_relaxed) >=
        (uint64_t)d->cfg.maxclients) {
        static const char msg[] = "-ERR max number of clients reached\r\n";
        ssize_t k = send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)k;
        close(fd);
        atomic_fetch_add_explicit(&d->rejected_connections, 1, memory_order_relaxed);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    atomic_fetch_add_explicit(&d->connections_open, 1, memory_order_relaxed);
    uint64_t id = atomic_fetch_add_explicit(&d->connections_total, 1, memory_order_relaxed) + 1;
    worker *w = &n->workers[n->rr++ % (unsigned)n->nworkers];
    if (worker_push(w, fd, id) != 0) {
        close(fd);
        atomic_fetch_sub_explicit(&d->connections_open, 1, memory_order_relaxed);
    }
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    smd_net *n = arg;
    (void)fd;
    (void)what;
    if (n->lis && atomic_load(&n->d->state) == SMD_READY)
        evconnlistener_enable(n->lis);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    smd_net *n = arg;
    int e = EVUTIL_SOCKET_ERROR();
    smd_log(SMD_LOG_WARN, "accept failed", "err=\"%s\"", strerror(e));
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        /* Out of descriptors: pause accepting for 100 ms instead of spinning. */
        evconnlistener_disable(l);
        struct timeval tv = {0, 100000};
        evtimer_add(n->resume_ev, &tv);
    }
}

static int listen_socket(const smd_config *cf, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, cf->bind, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)cf->port);
        sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, cf->bind, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)cf->port);
        sl = sizeof *s6;
    } else {
        snprintf(err, errlen, "--bind: '%s' is not an address", cf->bind);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 511) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cf->bind, cf->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int smd_net_start(smd_net **out, smd_daemon *d, struct event_base *base, char *err, size_t errlen)
{
    pthread_once(&cmd_once, cmdtab_init);
    smd_net *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return SM_ENOMEM;
    }
    n->d = d;
    n->base = base;
    n->nworkers = d->cfg.threads > 0 ? d->cfg.threads : 1;
    n->workers = calloc((size_t)n->nworkers, sizeof *n->workers);
    n->resume_ev = evtimer_new(base, on_resume, n);
    int fd = n->workers && n->resume_ev ? listen_socket(&d->cfg, err, errlen) : -1;
    if (fd < 0) {
        if (!n->workers || !n->resume_ev)
            snprintf(err, errlen, "out of memory");
        smd_net_free(n);
        return SM_EIO;
    }
    n->lis =
        evconnlistener_new(base, on_accept, n,
                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED, 0, fd);
    if (!n->lis) {
        close(fd);
        snprintf(err, errlen, "cannot listen on %s:%d: libevent listener failed", d->cfg.bind,
                 d->cfg.port);
        smd_net_free(n);
        return SM_EIO;
    }
    evconnlistener_set_error_cb(n->lis, on_accept_error);
    for (int i = 0; i < n->nworkers; i++) {
        worker *w = &n->workers[i];
        if (worker_init(w, n, err, errlen) != 0) {
            smd_net_free(n);
            return SM_ENOMEM;
        }
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            snprintf(err, errlen, "cannot start a worker thread: %s", strerror(errno));
            smd_net_free(n);
            return SM_ENOMEM;
        }
        w->started = 1;
    }
    *out = n;
    return 0;
}

void smd_net_enable(smd_net *n)
{
    if (n && n->lis)
        evconnlistener_enable(n->lis);
}

void smd_net_stop_listening(smd_net *n)
{
    if (n && n->lis) {
        evconnlistener_free(n->lis);
        n->lis = NULL;
    }
}

void smd_net_drain(smd_net *n, int timeout_ms)
{
    if (!n)
        return;
    for (int i = 0; i < n->nworkers; i++) {
        worker *w = &n->workers[i];
        if (!w->started)
            continue;
        pthread_mutex_lock(&w->qlock);
        w->drain_asked = 1;
        w->drain_timeout_ms = timeout_ms;
        pthread_mutex_unlock(&w->qlock);
        char b = 1;
        ssize_t k = write(w->notify_wr, &b, 1);
        (void)k;
    }
    for (int i = 0; i < n->nworkers; i++) {
        worker *w = &n->workers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
        w->started = 0;
    }
}

void smd_net_free(smd_net *n)
{
    if (!n)
        return;
    smd_net_stop_listening(n);
    smd_net_drain(n, 0);
    if (n->workers)
        for (int i = 0; i < n->nworkers; i++)
            worker_destroy(&n->workers[i]);
    if (n->resume_ev)
        event_free(n->resume_ev);
    free(n->workers);
    free(n);
}
