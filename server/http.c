/*
 * http.c - safemapd's HTTP port (http.h): health checks, Prometheus
 * metrics, the OpenAPI description and the REST API over the named maps.
 *
 * One libevent evhttp server on its own event_base and thread.  Every
 * request is handled to completion inside its callback (a map operation
 * takes microseconds; /metrics walks the maps once), so the thread needs no
 * lock of its own: shared state is the daemon's atomics and the store,
 * which is thread-safe.  Routing, JSON bodies and content negotiation are
 * pure functions in http_parse.c, fuzzed on their own.
 *
 * The REST API runs the same commands as RESP, through the command layer:
 * GET a key is SM.GETB, PUT is SM.PUT (JSON, so SM.PUT's number parsing
 * applies) or SM.PUTB (raw bytes), DELETE is SM.DEL, each executed with a
 * reply sink that captures the one reply.  So writes reach the map's write
 * observer (the append-only log) exactly as RESP's do, and run inside the
 * store's write gate.  Maps are created and dropped through
 * smd_persist_create/drop, which order the log's create and drop records.
 *
 * Limits: a body over 1 MiB (plus 32 bytes per element of the map's value,
 * for PUT of a key) is refused with 413; evhttp itself refuses anything
 * over the largest such limit before reading it.  Headers are limited to
 * 64 KiB, idle connections close after 60 s.
 *
 * Stopping: smd_http_stop writes to a pipe the loop watches; the loop then
 * closes the listening socket, waits (at most 2 s) until every reply it
 * has started has been written, and ends; the caller joins the thread and
 * frees everything.
 */
#define _GNU_SOURCE
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "http_parse.h"

/* Body limits: the base, and the allowance per value element for JSON. */
#define HTTP_BODY_BASE (1u << 20)
#define HTTP_BODY_PER_ELEM 32u
#define HTTP_BODY_MAX (HTTP_BODY_BASE + HTTP_BODY_PER_ELEM * (size_t)SMC_MAX_LEN)
#define HTTP_HEADERS_MAX (64u << 10)
#define HTTP_IDLE_SECONDS 60
#define HTTP_DRAIN_MS 2000

struct smd_http {
    smd_daemon *d;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    struct event *wake_ev, *drain_ev;
    int wake[2];
    pthread_t thread;
    int thread_started;
    long inflight; /* replies started, not yet written (loop thread) */
    struct timespec drain_end;
};

static const char json_type[] = "application/json";

/* ---- Replies -------------------------------------------------------------- */

static const char *status_reason(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

static void on_complete(struct evhttp_request *req, void *arg)
{
    (void)req;
    smd_http *h = arg;
    h->inflight--;
}

/* Sends code with body (n bytes, may be 0) of content type ctype (NULL: no
 * body).  Every reply goes through here. */
static void reply(struct evhttp_request *req, int code, const char *ctype, const void *body,
                  size_t n)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    struct evbuffer *buf = evbuffer_new();
    if (ctype)
        evhttp_add_header(out, "Content-Type", ctype);
    evhttp_add_header(out, "Cache-Control", "no-store");
    if (buf && n && evbuffer_add(buf, body, n) != 0) {
        evbuffer_free(buf);
        buf = NULL;
    }
    if (!buf) {
        evhttp_send_error(req, 500, "Internal Server Error");
        return;
    }
    evhttp_send_reply(req, code, status_reason(code), buf);
    evbuffer_free(buf);
}

static void reply_sbuf(struct evhttp_request *req, int code, const char *ctype, smd_sbuf *b)
{
    if (b->oom) {
        static const char oom[] = "{\"error\":\"out of memory\",\"code\":\"internal\"}";
        reply(req, 500, json_type, oom, sizeof oom - 1);
        return;
    }
    reply(req, code, ctype, b->p, b->n);
}

/* {"error": msg, "code": ecode} with status code. */
static void reply_error(struct evhttp_request *req, int code, const char *ecode, const char *msg,
                        size_t msg_len)
{
    smd_sbuf b = {0};
    smd_sbuf_adds(&b, "{\"error\":");
    smd_sbuf_json_str(&b, msg, msg_len);
    smd_sbuf_adds(&b, ",\"code\":");
    smd_sbuf_json_str(&b, ecode, strlen(ecode));
    smd_sbuf_adds(&b, "}\n");
    reply_sbuf(req, code, json_type, &b);
    smd_sbuf_free(&b);
}

static void reply_errorf(struct evhttp_request *req, int code, const char *ecode, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));
static void reply_errorf(struct evhttp_request *req, int code, const char *ecode, const char *fmt,
                         ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (k < 0)
        k = 0;
    reply_error(req, code, ecode, msg, (size_t)k < sizeof msg ? (size_t)k : sizeof msg - 1);
}

static void reply_not_allowed(struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    reply_errorf(req, 405, "method_not_allowed", "method not allowed; allowed: %s", allow);
}

static int is_get(enum evhttp_cmd_type m)
{
    return m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
}

/* ---- Health and the description ------------------------------------------ */

static void serve_live(smd_http *h, struct evhttp_request *req)
{
    (void)h;
    static const char body[] = "{\"status\":\"live\"}\n";
    reply(req, 200, json_type, body, sizeof body - 1);
}

static void serve_ready(smd_http *h, struct evhttp_request *req)
{
    int state = atomic_load(&h->d->state);
    const char *name = state == SMD_STARTING   ? "starting"
                       : state == SMD_READY    ? "ready"
                       : state == SMD_DRAINING ? "draining"
                                               : "stopped";
    char body[64];
    int n = snprintf(body, sizeof body, "{\"status\":\"%s\"}\n", name);
    reply(req, state == SMD_READY ? 200 : 503, json_type, body, (size_t)n);
}

static void serve_openapi(smd_http *h, struct evhttp_request *req)
{
    (void)h;
    reply(req, 200, json_type, smd_openapi_json, smd_openapi_json_len);
}

/* ---- Metrics ---------------------------------------------------------------- */

static double now_seconds(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped, from a NUL-terminated string. */
static void label(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f);
        if (*s == '\n') {
            fputs("\\n", f);
            continue;
        }
        fputc(*s, f);
    }
}

static void metrics_commands(FILE *f, smd_daemon *d)
{
    family(f, "safemapd_commands_total", "counter", "Commands run (RESP and REST), by command.");
    for (size_t i = 0; i < d->ncmds; i++) {
        fputs("safemapd_commands_total{cmd=\"", f);
        label(f, d->cmds[i].name);
        fprintf(f, "\"} %llu\n", (unsigned long long)atomic_load(&d->cmds[i].calls));
    }
    family(f, "safemapd_command_errors_total", "counter",
           "Commands that replied with an error, by command.");
    for (size_t i = 0; i < d->ncmds; i++) {
        fputs("safemapd_command_errors_total{cmd=\"", f);
        label(f, d->cmds[i].name);
        fprintf(f, "\"} %llu\n", (unsigned long long)atomic_load(&d->cmds[i].errors));
    }
    family(f, "safemapd_command_duration_seconds", "histogram",
           "Time to run a command, by command (buckets of powers of two microseconds).");
    for (size_t i = 0; i < d->ncmds; i++) {
        smd_cmdstat *c = &d->cmds[i];
        uint64_t cum = 0;
        for (int b = 0; b < SMD_LAT_BUCKETS; b++) {
            cum += atomic_load(&c->buckets[b]);
            fputs("safemapd_command_duration_seconds_bucket{cmd=\"", f);
            label(f, c->name);
            fprintf(f, "\",le=\"%.9g\"} %llu\n", ldexp(1e-6, b), (unsigned long long)cum);
        }
        /* Counters are read one by one while workers add to them: keep the
         * total at least the buckets' sum, as the format requires. */
        uint64_t calls = atomic_load(&c->calls);
        if (calls < cum)
            calls = cum;
        fputs("safemapd_command_duration_seconds_bucket{cmd=\"", f);
        label(f, c->name);
        fprintf(f, "\",le=\"+Inf\"} %llu\n", (unsigned long long)calls);
        fputs("safemapd_command_duration_seconds_sum{cmd=\"", f);
        label(f, c->name);
        fprintf(f, "\"} %.9g\n", (double)atomic_load(&c->usec_sum) / 1e6);
        fputs("safemapd_command_duration_seconds_count{cmd=\"", f);
        label(f, c->name);
        fprintf(f, "\"} %llu\n", (unsigned long long)calls);
    }
}

typedef struct map_stat {
    char *name;
    size_t entries, bytes;
} map_stat;

typedef struct map_stats {
    map_stat *v;
    size_t n, cap;
    int oom;
} map_stats;

static int collect_map(smc_map *m, void *ctx)
{
    map_stats *s = ctx;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        map_stat *v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->oom = 1;
            return 1;
        }
        s->v = v;
        s->cap = cap;
    }
    struct sm_cmap_stats st;
    memset(&st, 0, sizeof st);
    sm_cmap_stats(smc_map_cmap(m), &st);
    char *name = strdup(smc_map_name(m));
    if (!name) {
        s->oom = 1;
        return 1;
    }
    s->v[s->n++] = (map_stat){name, st.len, st.bytes};
    return 0;
}

static void metrics_maps(FILE *f, smd_daemon *d)
{
    map_stats s = {0};
    smd_store_each(d->store, collect_map, &s);
    family(f, "safemapd_maps", "gauge", "Named maps.");
    fprintf(f, "safemapd_maps %zu\n", s.n);
    family(f, "safemapd_map_entries", "gauge", "Entries in a map.");
    for (size_t i = 0; i < s.n; i++) {
        fputs("safemapd_map_entries{map=\"", f);
        label(f, s.v[i].name);
        fprintf(f, "\"} %zu\n", s.v[i].entries);
    }
    family(f, "safemapd_map_bytes", "gauge", "Memory a map holds from the allocator.");
    for (size_t i = 0; i < s.n; i++) {
        fputs("safemapd_map_bytes{map=\"", f);
        label(f, s.v[i].name);
        fprintf(f, "\"} %zu\n", s.v[i].bytes);
        free(s.v[i].name);
    }
    free(s.v);
}

static void metrics_persist(FILE *f, smd_daemon *d)
{
    if (!d->persist)
        return;
    smd_persist_info pi;
    memset(&pi, 0, sizeof pi);
    smd_persist_info_get(d->persist, &pi);
    if (pi.last_save) {
        double age = now_seconds(CLOCK_REALTIME) - (double)pi.last_save;
        family(f, "safemapd_snapshot_age_seconds", "gauge",
               "Seconds since the last successful snapshot (absent: none yet).");
        fprintf(f, "safemapd_snapshot_age_seconds %.3f\n", age < 0 ? 0 : age);
    }
    family(f, "safemapd_snapshot_in_progress", "gauge", "1 while a background save runs.");
    fprintf(f, "safemapd_snapshot_in_progress %d\n", pi.bgsave_in_progress ? 1 : 0);
    family(f, "safemapd_log_lag_seconds", "gauge",
           "Age of the oldest logged write not yet fsynced.");
    fprintf(f, "safemapd_log_lag_seconds %.6f\n", pi.log_lag_seconds);
    family(f, "safemapd_log_bytes", "gauge", "Size of the append-only log being written.");
    fprintf(f, "safemapd_log_bytes %llu\n", (unsigned long long)pi.log_bytes);
    family(f, "safemapd_log_records_total", "counter", "Records appended to the log since start.");
    fprintf(f, "safemapd_log_records_total %llu\n", (unsigned long long)pi.log_records);
}

static void metrics_write(FILE *f, smd_daemon *d)
{
    metrics_commands(f, d);
    family(f, "safemapd_connections", "gauge", "Open RESP client connections.");
    fprintf(f, "safemapd_connections %llu\n",
            (unsigned long long)atomic_load(&d->connections_open));
    family(f, "safemapd_connections_total", "counter", "RESP client connections accepted.");
    fprintf(f, "safemapd_connections_total %llu\n",
            (unsigned long long)atomic_load(&d->connections_total));
    family(f, "safemapd_rejected_connections_total", "counter",
           "RESP connections refused (maxclients).");
    fprintf(f, "safemapd_rejected_connections_total %llu\n",
            (unsigned long long)atomic_load(&d->rejected_connections));
    family(f, "safemapd_oom_rejections_total", "counter", "Writes refused over maxmemory.");
    fprintf(f, "safemapd_oom_rejections_total %llu\n",
            (unsigned long long)atomic_load(&d->oom_rejections));
    family(f, "safemapd_http_requests_total", "counter", "HTTP requests served.");
    fprintf(f, "safemapd_http_requests_total %llu\n",
            (unsigned long long)atomic_load(&d->http_requests));
    metrics_maps(f, d);
    family(f, "safemapd_memory_bytes", "gauge", "Memory the maps hold (what maxmemory limits).");
    fprintf(f, "safemapd_memory_bytes %llu\n", (unsigned long long)smd_memory_used());
    family(f, "safemapd_maxmemory_bytes", "gauge", "The maxmemory setting (0: no limit).");
    fprintf(f, "safemapd_maxmemory_bytes %llu\n", (unsigned long long)d->cfg.maxmemory);
    metrics_persist(f, d);
    family(f, "safemapd_ready", "gauge", "1 when the server is ready (loaded, not draining).");
    fprintf(f, "safemapd_ready %d\n", atomic_load(&d->state) == SMD_READY);
    double up = now_seconds(CLOCK_REALTIME) - d->start_time;
    family(f, "safemapd_uptime_seconds", "gauge", "Seconds since the server started.");
    fprintf(f, "safemapd_uptime_seconds %.3f\n", up < 0 ? 0 : up);
}

static void serve_metrics(smd_http *h, struct evhttp_request *req)
{
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    if (!f) {
        reply_errorf(req, 500, "internal", "out of memory");
        return;
    }
    metrics_write(f, h->d);
    int rc = sm_metrics_write(f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rc != 0) {
        free(text);
        reply_errorf(req, 500, "internal", "metrics could not be written: %s", sm_strerror(rc));
        return;
    }
    reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, n);
    free(text);
}

/* ---- The command layer: a sink that captures one reply -------------------- */

typedef struct capture {
    int kind; /* 0 none yet, else 's' 'e' 'i' 'd' 'b' 'n' 'a' 'm' */
    long long i;
    smd_sbuf text; /* simple, error or bulk */
} capture;

static capture *cap_first(void *ctx, int kind)
{
    capture *c = ctx;
    if (c->kind)
        return NULL; /* an element inside an array: not needed */
    c->kind = kind;
    return c;
}

static void cap_simple(void *ctx, const char *s, size_t n)
{
    capture *c = cap_first(ctx, 's');
    if (c)
        smd_sbuf_add(&c->text, s, n);
}

static void cap_error(void *ctx, const char *s, size_t n)
{
    capture *c = ctx;
    /* An error ends the reply: keep it even after a partial array. */
    c->kind = 'e';
    c->text.n = 0;
    smd_sbuf_add(&c->text, s, n);
}

static void cap_integer(void *ctx, long long v)
{
    capture *c = cap_first(ctx, 'i');
    if (c)
        c->i = v;
}

static void cap_dbl(void *ctx, double v)
{
    (void)v;
    cap_first(ctx, 'd');
}

static void cap_bulk(void *ctx, const void *p, size_t n)
{
    capture *c = cap_first(ctx, 'b');
    if (c)
        smd_sbuf_add(&c->text, p, n);
}

static void cap_null(void *ctx)
{
    cap_first(ctx, 'n');
}

static void cap_array(void *ctx, size_t n)
{
    capture *c = cap_first(ctx, 'a');
    if (c)
        c->i = (long long)n;
}

static void cap_map(void *ctx, size_t n)
{
    capture *c = cap_first(ctx, 'm');
    if (c)
        c->i = (long long)n;
}

static const smc_reply_ops cap_ops = {cap_simple, cap_error, cap_integer, cap_dbl, cap_bulk,
                                      cap_null,   cap_array, cap_map,     cap_null};

/* Records one call of command name (lower case) that started at t0. */
static void record_stat(smd_http *h, const char *name, double t0, int error)
{
    double us = (now_seconds(CLOCK_MONOTONIC) - t0) * 1e6;
    smd_cmdstat *st = smd_cmdstat_find(h->d, name);
    if (st)
        smd_cmdstat_record(st, us < 0 ? 0 : (uint64_t)us, error);
}

/* Runs argv on m, recording it in the command statistics; *c gets the
 * reply.  Returns smc_map_exec's code. */
static int run_command(smd_http *h, smc_map *m, int argc, const smc_arg *argv, capture *c)
{
    smc_reply r = {&cap_ops, c, 1};
    double t0 = now_seconds(CLOCK_MONOTONIC);
    int rc = smc_map_exec(m, argc, argv, &r);
    char name[16];
    size_t k = argv[0].n < sizeof name - 1 ? argv[0].n : sizeof name - 1;
    for (size_t i = 0; i < k; i++)
        name[i] = (char)(argv[0].p[i] | 0x20);
    name[k] = '\0';
    record_stat(h, name, t0, rc < 0);
    return rc;
}

/* Replies a command's error: the library's out-of-memory as 507, a failed
 * log write as 500, anything else (bad values) as 400. */
static void reply_command_error(struct evhttp_request *req, int rc, capture *c)
{
    const char *msg = c->kind == 'e' && c->text.p ? c->text.p : "command failed";
    size_t n = c->kind == 'e' && c->text.p ? c->text.n : strlen(msg);
    if (rc == SM_ENOMEM)
        reply_error(req, 507, "out_of_memory", msg, n);
    else if (rc == SM_EIO || rc == SM_ECORRUPT)
        reply_error(req, 500, "internal", msg, n);
    else
        reply_error(req, 400, "bad_value", msg, n);
}

/* ---- REST: maps ------------------------------------------------------------- */

static void map_json(smd_sbuf *b, smc_map *m)
{
    const smc_spec *s = smc_map_spec(m);
    const char *name = smc_map_name(m);
    smd_sbuf_adds(b, "{\"name\":");
    smd_sbuf_json_str(b, name, strlen(name));
    smd_sbuf_addf(b, ",\"type\":\"%s\",\"len\":%zu,\"pooled\":%s,\"entries\":%zu}",
                  smc_type_name(s->type), s->len, s->pooled ? "true" : "false",
                  sm_cmap_len(smc_map_cmap(m)));
}

static int list_one(smc_map *m, void *ctx)
{
    smd_sbuf *b = ctx;
    if (b->n > 1)
        smd_sbuf_add(b, ",", 1);
    map_json(b, m);
    return 0;
}

static void serve_maps(smd_http *h, struct evhttp_request *req)
{
    if (!is_get(evhttp_request_get_command(req))) {
        reply_not_allowed(req, "GET, HEAD");
        return;
    }
    smd_sbuf b = {0};
    smd_sbuf_add(&b, "[", 1);
    int rc = smd_store_each(h->d->store, list_one, &b);
    smd_sbuf_adds(&b, "]\n");
    if (rc != 0)
        b.oom = 1;
    reply_sbuf(req, 200, json_type, &b);
    smd_sbuf_free(&b);
}

/* Whether writes that may grow memory are refused: replies 507 if so. */
static int over_maxmemory(smd_http *h, struct evhttp_request *req)
{
    uint64_t max = h->d->cfg.maxmemory;
    if (max == 0 || smd_memory_used() <= max)
        return 0;
    atomic_fetch_add(&h->d->oom_rejections, 1);
    reply_errorf(req, 507, "out_of_memory",
                 "OOM command not allowed when used memory > 'maxmemory'");
    return 1;
}

/* The request body, or NULL with n = 0. */
static const char *body_of(struct evhttp_request *req, size_t *n)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *n = evbuffer_get_length(in);
    if (*n == 0)
        return "";
    return (const char *)evbuffer_pullup(in, -1);
}

/* Checks the body's size against limit and its type against JSON.
 * Returns 0, or -1 after replying. */
static int json_body_ok(struct evhttp_request *req, size_t limit)
{
    size_t n = evbuffer_get_length(evhttp_request_get_input_buffer(req));
    if (n > limit) {
        reply_errorf(req, 413, "too_large", "the body is %zu bytes, over the limit of %zu", n,
                     limit);
        return -1;
    }
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (ct && !smd_http_media_is(ct, strlen(ct), json_type)) {
        reply_errorf(req, 415, "unsupported_media_type", "the body must be application/json");
        return -1;
    }
    return 0;
}

static void map_create(smd_http *h, struct evhttp_request *req, const smd_route *rt)
{
    if (json_body_ok(req, HTTP_BODY_BASE) < 0)
        return;
    size_t n;
    const char *body = body_of(req, &n);
    if (!body) {
        reply_errorf(req, 500, "internal", "out of memory");
        return;
    }
    char err[160];
    smd_http_spec hs;
    if (smd_http_parse_spec(body, n, &hs, err, sizeof err) < 0) {
        reply_error(req, 400, "bad_request", err, strlen(err));
        return;
    }
    smc_spec spec = {SMC_INT64, (size_t)hs.len, hs.pooled};
    if (smc_type_parse(hs.type, hs.type_len, &spec.type) != 0) {
        reply_errorf(req, 400, "bad_request",
                     "unknown \"type\": int8, int16, int32, int64, uint8, uint16, uint32, "
                     "uint64, float or double");
        return;
    }
    if (over_maxmemory(h, req))
        return;
    smd_daemon *d = h->d;
    double t0 = now_seconds(CLOCK_MONOTONIC);
    smd_store_gate_enter(d->store);
    int rc = smd_persist_create(d->persist, d->store, rt->name, rt->name_len, &spec);
    smd_store_gate_leave(d->store);
    record_stat(h, "sm.create", t0, rc != 0);
    if (rc == SMD_EEXISTS) {
        reply_errorf(req, 409, "exists", "map '%s' exists", rt->name);
        return;
    }
    if (rc == SM_EINVAL) {
        reply_errorf(req, 400, "bad_name",
                     "bad map name: 1 to 200 printable ASCII characters, no space");
        return;
    }
    if (rc != 0) {
        reply_errorf(req, rc == SM_ENOMEM ? 507 : 500,
                     rc == SM_ENOMEM ? "out_of_memory" : "internal", "map not created: %s",
                     sm_strerror(rc));
        return;
    }
    smd_daemon_maps_changed(d);
    smc_map *m = smd_store_get(d->store, rt->name, rt->name_len);
    smd_sbuf b = {0};
    if (m) {
        map_json(&b, m);
        smd_store_put(d->store, m);
    } else {
        smd_sbuf_adds(&b, "{}"); /* dropped again already */
    }
    smd_sbuf_add(&b, "\n", 1);
    smd_sbuf loc = {0};
    smd_sbuf_adds(&loc, evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)));
    if (!loc.oom)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc.p);
    smd_sbuf_free(&loc);
    reply_sbuf(req, 201, json_type, &b);
    smd_sbuf_free(&b);
}

static void map_drop(smd_http *h, struct evhttp_request *req, const smd_route *rt)
{
    smd_daemon *d = h->d;
    double t0 = now_seconds(CLOCK_MONOTONIC);
    smd_store_gate_enter(d->store);
    int rc = smd_persist_drop(d->persist, d->store, rt->name, rt->name_len);
    smd_store_gate_leave(d->store);
    record_stat(h, "sm.drop", t0, rc != 0);
    if (rc == SM_ENOENT) {
        reply_errorf(req, 404, "no_map", "no map '%s'", rt->name);
        return;
    }
    if (rc != 0) {
        reply_errorf(req, 500, "internal", "map not dropped: %s", sm_strerror(rc));
        return;
    }
    smd_daemon_maps_changed(d);
    reply(req, 204, NULL, NULL, 0);
}

static void map_info(smd_http *h, struct evhttp_request *req, const smd_route *rt)
{
    smc_map *m = smd_store_get(h->d->store, rt->name, rt->name_len);
    if (!m) {
        reply_errorf(req, 404, "no_map", "no map '%s'", rt->name);
        return;
    }
    smd_sbuf b = {0};
    map_json(&b, m);
    smd_sbuf_add(&b, "\n", 1);
    smd_store_put(h->d->store, m);
    reply_sbuf(req, 200, json_type, &b);
    smd_sbuf_free(&b);
}

static void serve_map(smd_http *h, struct evhttp_request *req, const smd_route *rt)
{
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
    case EVHTTP_REQ_HEAD:
        map_info(h, req, rt);
        return;
    case EVHTTP_REQ_PUT:
    case EVHTTP_REQ_POST:
        map_create(h, req, rt);
        return;
    case EVHTTP_REQ_DELETE:
        map_drop(h, req, rt);
        return;
    default:
        reply_not_allowed(req, "GET, HEAD, PUT, POST, DELETE");
        return;
    }
}

/* ---- REST: keys --------------------------------------------------------------- */

static void key_get(smd_http *h, struct evhttp_request *req, smc_map *m, const smd_route *rt)
{
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    int raw = smd_http_wants_octets(accept, accept ? strlen(accept) : 0);
    smc_arg argv[3] = {{"SM.GETB", 7}, {rt->name, rt->name_len}, {rt->key, rt->key_len}};
    capture c = {0};
    int rc = run_command(h, m, 3, argv, &c);
    size_t vsize = smc_map_value_size(m);
    if (rc < 0) {
        reply_command_error(req, rc, &c);
    } else if (c.kind == 'n') {
        reply_errorf(req, 404, "no_key", "no key %s in map '%s'", rt->key, rt->name);
    } else if (c.kind != 'b' || c.text.oom || c.text.n != vsize) {
        reply_errorf(req, 500, "internal", "unexpected reply from SM.GETB");
    } else if (raw) {
        reply(req, 200, "application/octet-stream", c.text.p, c.text.n);
    } else {
        smd_sbuf b = {0};
        smd_sbuf_addf(&b, "{\"key\":%s,\"value\":", rt->key);
        const smc_spec *s = smc_map_spec(m);
        smd_http_value_json(&b, s->type, c.text.p, s->len);
        smd_sbuf_adds(&b, "}\n");
        reply_sbuf(req, 200, json_type, &b);
        smd_sbuf_free(&b);
    }
    smd_sbuf_free(&c.text);
}

/* Replies to a finished SM.PUT/SM.PUTB. */
static void put_done(struct evhttp_request *req, int rc, capture *c)
{
    if (rc < 0)
        reply_command_error(req, rc, c);
    else
        reply(req, 204, NULL, NULL, 0);
}

static void key_put(smd_http *h, struct evhttp_request *req, smc_map *m, const smd_route *rt)
{
    const smc_spec *s = smc_map_spec(m);
    size_t vsize = smc_map_value_size(m);
    size_t limit = HTTP_BODY_BASE + HTTP_BODY_PER_ELEM * s->len;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *ct = evhttp_find_header(in, "Content-Type");
    int raw = ct && smd_http_media_is(ct, strlen(ct), "application/octet-stream");
    size_t n = evbuffer_get_length(evhttp_request_get_input_buffer(req));
    if (n > limit) {
        reply_errorf(req, 413, "too_large", "the body is %zu bytes, over the limit of %zu", n,
                     limit);
        return;
    }
    if (ct && !raw && !smd_http_media_is(ct, strlen(ct), json_type)) {
        reply_errorf(req, 415, "unsupported_media_type",
                     "the body must be application/json or application/octet-stream");
        return;
    }
    const char *body = body_of(req, &n);
    if (!body) {
        reply_errorf(req, 500, "internal", "out of memory");
        return;
    }
    smc_arg karg = {rt->key, rt->key_len}; /* checked by serve_key */
    if (raw && n != vsize) {
        reply_errorf(req, 400, "bad_value", "the body must be exactly %zu bytes (%s[%zu]), not %zu",
                     vsize, smc_type_name(s->type), s->len, n);
        return;
    }
    smc_arg *argv = malloc((3 + (raw ? 1 : s->len)) * sizeof *argv);
    if (!argv) {
        reply_errorf(req, 507, "out_of_memory", "out of memory");
        return;
    }
    argv[1] = (smc_arg){rt->name, rt->name_len};
    argv[2] = karg;
    int argc;
    if (raw) {
        argv[0] = (smc_arg){"SM.PUTB", 7};
        argv[3] = (smc_arg){body, n};
        argc = 4;
    } else {
        char err[160];
        size_t count;
        if (smd_http_parse_values(body, n, argv + 3, s->len, &count, err, sizeof err) < 0) {
            reply_error(req, 400, "bad_value", err, strlen(err));
            free(argv);
            return;
        }
        if (count != s->len) {
            reply_errorf(req, 400, "bad_value",
                         "\"value\" must have %zu elements (%s[%zu]), not %zu", s->len,
                         smc_type_name(s->type), s->len, count);
            free(argv);
            return;
        }
        argv[0] = (smc_arg){"SM.PUT", 6};
        argc = 3 + (int)s->len;
    }
    if (!over_maxmemory(h, req)) {
        capture c = {0};
        smd_store_gate_enter(h->d->store);
        int rc = run_command(h, m, argc, argv, &c);
        smd_store_gate_leave(h->d->store);
        put_done(req, rc, &c);
        smd_sbuf_free(&c.text);
    }
    free(argv);
}

static void key_del(smd_http *h, struct evhttp_request *req, smc_map *m, const smd_route *rt)
{
    smc_arg argv[3] = {{"SM.DEL", 6}, {rt->name, rt->name_len}, {rt->key, rt->key_len}};
    capture c = {0};
    smd_store_gate_enter(h->d->store);
    int rc = run_command(h, m, 3, argv, &c);
    smd_store_gate_leave(h->d->store);
    if (rc < 0)
        reply_command_error(req, rc, &c);
    else if (c.kind == 'i' && c.i == 0)
        reply_errorf(req, 404, "no_key", "no key %s in map '%s'", rt->key, rt->name);
    else
        reply(req, 204, NULL, NULL, 0);
    smd_sbuf_free(&c.text);
}

static void serve_key(smd_http *h, struct evhttp_request *req, const smd_route *rt)
{
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    if (!is_get(method) && method != EVHTTP_REQ_PUT && method != EVHTTP_REQ_DELETE) {
        reply_not_allowed(req, "GET, HEAD, PUT, DELETE");
        return;
    }
    int64_t key;
    smc_arg karg = {rt->key, rt->key_len};
    if (smc_parse_key(&karg, &key) != 0) {
        reply_errorf(req, 400, "bad_key", "bad key '%s': not a decimal 64-bit integer", rt->key);
        return;
    }
    smc_map *m = smd_store_get(h->d->store, rt->name, rt->name_len);
    if (!m) {
        reply_errorf(req, 404, "no_map", "no map '%s'", rt->name);
        return;
    }
    if (is_get(method))
        key_get(h, req, m, rt);
    else if (method == EVHTTP_REQ_PUT)
        key_put(h, req, m, rt);
    else
        key_del(h, req, m, rt);
    smd_store_put(h->d->store, m);
}

/* ---- Dispatch ------------------------------------------------------------------ */

static void on_request(struct evhttp_request *req, void *arg)
{
    smd_http *h = arg;
    atomic_fetch_add(&h->d->http_requests, 1);
    h->inflight++;
    evhttp_request_set_on_complete_cb(req, on_complete, h);

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path) {
        reply_errorf(req, 400, "bad_request", "bad request target");
        return;
    }
    smd_route rt;
    smd_route_parse(path, strlen(path), &rt);
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    switch (rt.kind) {
    case SMD_ROUTE_NONE:
        reply_errorf(req, 404, "not_found", "no such path");
        return;
    case SMD_ROUTE_BAD:
        reply_error(req, 400, rt.code, rt.why, strlen(rt.why));
        return;
    case SMD_ROUTE_MAPS:
        serve_maps(h, req);
        return;
    case SMD_ROUTE_MAP:
        serve_map(h, req, &rt);
        return;
    case SMD_ROUTE_KEY:
        serve_key(h, req, &rt);
        return;
    default:
        break;
    }
    if (!is_get(method)) {
        reply_not_allowed(req, "GET, HEAD");
        return;
    }
    if (rt.kind == SMD_ROUTE_LIVE)
        serve_live(h, req);
    else if (rt.kind == SMD_ROUTE_READY)
        serve_ready(h, req);
    else if (rt.kind == SMD_ROUTE_METRICS)
        serve_metrics(h, req);
    else
        serve_openapi(h, req);
}

/* ---- Start and stop ------------------------------------------------------------ */

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    smd_http *h = arg;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int late = now.tv_sec > h->drain_end.tv_sec ||
               (now.tv_sec == h->drain_end.tv_sec && now.tv_nsec >= h->drain_end.tv_nsec);
    if (h->inflight <= 0 || late)
        event_base_loopbreak(h->base);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    smd_http *h = arg;
    char c;
    while (read(fd, &c, 1) > 0) {
    }
    if (h->sock) {
        evhttp_del_accept_socket(h->http, h->sock);
        h->sock = NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &h->drain_end);
    h->drain_end.tv_sec += HTTP_DRAIN_MS / 1000;
    h->drain_end.tv_nsec += (long)(HTTP_DRAIN_MS % 1000) * 1000000L;
    if (h->drain_end.tv_nsec >= 1000000000L) {
        h->drain_end.tv_sec++;
        h->drain_end.tv_nsec -= 1000000000L;
    }
    struct timeval tick = {0, 10 * 1000};
    event_add(h->drain_ev, &tick);
    on_drain_tick(-1, 0, h);
}

static void *http_main(void *arg)
{
    smd_http *h = arg;
    event_base_dispatch(h->base);
    return NULL;
}

static void http_free(smd_http *h)
{
    if (h->http)
        evhttp_free(h->http); /* closes the listener and every connection */
    if (h->wake_ev)
        event_free(h->wake_ev);
    if (h->drain_ev)
        event_free(h->drain_ev);
    if (h->base)
        event_base_free(h->base);
    if (h->wake[0] >= 0)
        close(h->wake[0]);
    if (h->wake[1] >= 0)
        close(h->wake[1]);
    free(h);
}

static int start_fail(smd_http *h, char *err, size_t errlen, int code, const char *fmt,
                      const char *detail)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, detail);
    http_free(h);
    return code;
}

int smd_http_start(smd_http **out, smd_daemon *d, char *err, size_t errlen)
{
    smd_http *h = calloc(1, sizeof *h);
    if (!h) {
        if (err && errlen)
            snprintf(err, errlen, "HTTP: out of memory");
        return SM_ENOMEM;
    }
    h->d = d;
    h->wake[0] = h->wake[1] = -1;
    if (pipe2(h->wake, O_NONBLOCK | O_CLOEXEC) != 0)
        return start_fail(h, err, errlen, SM_EIO, "HTTP: pipe: %s", strerror(errno));
    h->base = event_base_new();
    h->http = h->base ? evhttp_new(h->base) : NULL;
    h->wake_ev = h->base ? event_new(h->base, h->wake[0], EV_READ | EV_PERSIST, on_wake, h) : NULL;
    h->drain_ev = h->base ? event_new(h->base, -1, EV_PERSIST, on_drain_tick, h) : NULL;
    if (!h->http || !h->wake_ev || !h->drain_ev || event_add(h->wake_ev, NULL) != 0)
        return start_fail(h, err, errlen, SM_ENOMEM, "HTTP: %s", "cannot set up the event loop");
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(h->http, (ev_ssize_t)HTTP_BODY_MAX);
    evhttp_set_max_headers_size(h->http, HTTP_HEADERS_MAX);
    evhttp_set_timeout(h->http, HTTP_IDLE_SECONDS);
    evhttp_set_gencb(h->http, on_request, h);
    errno = 0;
    h->sock = evhttp_bind_socket_with_handle(h->http, d->cfg.bind, (ev_uint16_t)d->cfg.http_port);
    if (!h->sock) {
        char what[160];
        snprintf(what, sizeof what, "%s:%d: %s", d->cfg.bind, d->cfg.http_port,
                 errno ? strerror(errno) : "cannot bind");
        return start_fail(h, err, errlen, SM_EIO, "HTTP: cannot listen on %s", what);
    }
    int rc = pthread_create(&h->thread, NULL, http_main, h);
    if (rc != 0)
        return start_fail(h, err, errlen, SM_ENOMEM, "HTTP: cannot start its thread: %s",
                          strerror(rc));
    h->thread_started = 1;
    *out = h;
    return 0;
}

void smd_http_stop(smd_http *h)
{
    if (!h)
        return;
    if (h->thread_started) {
        char c = 's';
        while (write(h->wake[1], &c, 1) < 0 && errno == EINTR) {
        }
        pthread_join(h->thread, NULL);
    }
    http_free(h);
}
