/*
 * http_parse.h - the pure parts of safemapd's HTTP port: routing a request
 * path, reading the JSON bodies of the REST API, content negotiation, and
 * writing JSON and numbers.
 *
 * Nothing here touches a socket, the store or libevent, so every function
 * can be unit-tested and fuzzed on its own (tests/server/fuzz_http.c).  Each
 * one takes untrusted bytes with an explicit length, never reads past it,
 * and reports bad input as a negative return with a short message.
 */
#ifndef SAFEMAP_SERVER_HTTP_PARSE_H
#define SAFEMAP_SERVER_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "command.h"

/* ---- Growable text buffer ------------------------------------------------ */

/* A byte string that grows as it is appended to.  After an allocation
 * failure it stays failed (oom set) and further appends do nothing, so a
 * writer checks once at the end. */
typedef struct smd_sbuf {
    char *p;
    size_t n, cap;
    int oom;
} smd_sbuf;

void smd_sbuf_add(smd_sbuf *b, const void *p, size_t n);
void smd_sbuf_adds(smd_sbuf *b, const char *s);
void smd_sbuf_addf(smd_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string, quotes included (control characters and
 * bytes >= 0x80 that are not valid UTF-8 are written as \u escapes). */
void smd_sbuf_json_str(smd_sbuf *b, const char *s, size_t n);
/* Appends s as a Prometheus label value, without quotes (\\, \" and \n). */
void smd_sbuf_label(smd_sbuf *b, const char *s, size_t n);
void smd_sbuf_free(smd_sbuf *b);

/* ---- Routing ------------------------------------------------------------- */

typedef enum smd_route_kind {
    SMD_ROUTE_NONE,  /* no such path: 404 */
    SMD_ROUTE_BAD,   /* malformed (bad escape, name too long): 400 */
    SMD_ROUTE_LIVE,  /* /health/live */
    SMD_ROUTE_READY, /* /health/ready */
    SMD_ROUTE_METRICS,
    SMD_ROUTE_OPENAPI,
    SMD_ROUTE_MAPS, /* /v1/maps */
    SMD_ROUTE_MAP,  /* /v1/maps/{name} */
    SMD_ROUTE_KEY   /* /v1/maps/{name}/{key} */
} smd_route_kind;

typedef struct smd_route {
    smd_route_kind kind;
    char name[SMC_NAME_MAX + 1]; /* percent-decoded, NUL-terminated */
    size_t name_len;
    char key[32]; /* percent-decoded key text (not yet checked) */
    size_t key_len;
    const char *why;  /* for SMD_ROUTE_BAD: the message */
    const char *code; /* for SMD_ROUTE_BAD: "bad_name" or "bad_key" */
} smd_route;

/* Routes a request path (the part before any '?', still percent-encoded).
 * Always fills *r; returns r->kind. */
smd_route_kind smd_route_parse(const char *path, size_t n, smd_route *r);

/* Percent-decodes s into out (cap bytes).  Returns the decoded length, or
 * -1 for a malformed escape, a decoded NUL byte or too long a result. */
long smd_http_unescape(const char *s, size_t n, char *out, size_t cap);

/* ---- Content negotiation -------------------------------------------------- */

/* Whether a Content-Type header value names media type `type`
 * ("application/json"), ignoring case, parameters and blanks. */
int smd_http_media_is(const char *header, size_t n, const char *type);
/* Whether an Accept header value prefers application/octet-stream to JSON:
 * octet-stream is listed with q > 0 and with a higher q than an explicit
 * application/json.  NULL or empty: no. */
int smd_http_wants_octets(const char *accept, size_t n);

/* ---- JSON input ---------------------------------------------------------- */

/* A body of PUT /v1/maps/{name}: {"type": "int64", "len": 8, "pooled": false}.
 * type is copied (escapes resolved) into type[]. */
typedef struct smd_http_spec {
    char type[16];
    size_t type_len;
    long long len;
    int pooled;
} smd_http_spec;

/* Parses a map-creation body: an object with "type" (string) and "len"
 * (integer), "pooled" (boolean, default false) optional, nothing else.
 * Returns 0, or -1 with a message in err. */
int smd_http_parse_spec(const char *body, size_t n, smd_http_spec *out, char *err, size_t errlen);

/* Parses a value body {"value": [v1, v2, ...]}: each element a JSON number
 * or one of the strings "nan", "inf", "-inf" (any case).  On success
 * vals[0 .. *count) point into body at each element's text (a string's
 * contents without its quotes), in order; at most max are stored and
 * *count is the element count even when larger than max.  Returns 0, or -1
 * with a message in err. */
int smd_http_parse_values(const char *body, size_t n, smc_arg *vals, size_t max, size_t *count,
                          char *err, size_t errlen);

/* Checks that text is one complete, valid JSON document (RFC 8259), nesting
 * at most 64 deep.  Returns 0 or -1 with a message in err. */
int smd_json_check(const char *text, size_t n, char *err, size_t errlen);

/* ---- JSON output of values ------------------------------------------------ */

/* Appends one value of a map, len elements of type t read from bytes (which
 * need not be aligned), as a JSON array.  Integers are written exactly;
 * floats and doubles in the shortest form that reads back to the same
 * value; NaN and infinities as the strings "nan", "inf" and "-inf". */
void smd_http_value_json(smd_sbuf *b, smc_type t, const void *bytes, size_t len);

#endif
