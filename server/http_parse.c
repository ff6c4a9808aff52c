/*
 * http_parse.c - the pure parts of safemapd's HTTP port (http_parse.h).
 *
 * Routing splits the path into at most four segments and matches them
 * against the fixed routes; map names and keys are percent-decoded into
 * fixed buffers in the route, so a request never allocates to be routed.
 *
 * JSON input is read by a small recursive-descent parser over (text,
 * length) that validates as it goes (RFC 8259: number grammar, string
 * escapes, UTF-8, no trailing bytes) and limits nesting to 64 levels.  The
 * REST bodies are tiny fixed shapes, so the parser builds no tree: the
 * body readers walk the top-level object's members and skip, after
 * checking, anything they do not want.  Values are handed on as slices of
 * the body: the command layer parses numbers (SM.PUT's own rules), so the
 * HTTP and RESP paths accept the same values.
 *
 * JSON output is a growable buffer (smd_sbuf) that stays failed after an
 * allocation failure, so writers check once at the end.
 */
#define _POSIX_C_SOURCE 200809L
#include "http_parse.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- smd_sbuf ------------------------------------------------------------ */

static int sbuf_reserve(smd_sbuf *b, size_t more)
{
    if (b->oom)
        return -1;
    if (b->cap - b->n > more)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n <= more) {
        if (cap > SIZE_MAX / 2) {
            b->oom = 1;
            return -1;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void smd_sbuf_add(smd_sbuf *b, const void *p, size_t n)
{
    if (sbuf_reserve(b, n) < 0)
        return;
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void smd_sbuf_adds(smd_sbuf *b, const char *s)
{
    smd_sbuf_add(b, s, strlen(s));
}

void smd_sbuf_addf(smd_sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0 || sbuf_reserve(b, (size_t)k + 1) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

void smd_sbuf_free(smd_sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x3fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void smd_sbuf_json_str(smd_sbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    smd_sbuf_add(b, "\"", 1);
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            smd_sbuf_add(b, e, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            smd_sbuf_addf(b, "\\u%04x", c);
            i++;
        } else {
            size_t k = utf8_len(u + i, n - i);
            if (k == 0) {
                smd_sbuf_adds(b, "\\ufffd");
                i++;
            } else {
                smd_sbuf_add(b, s + i, k);
                i += k;
            }
        }
    }
    smd_sbuf_add(b, "\"", 1);
}

void smd_sbuf_label(smd_sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\')
            smd_sbuf_add(b, "\\\\", 2);
        else if (s[i] == '"')
            smd_sbuf_add(b, "\\\"", 2);
        else if (s[i] == '\n')
            smd_sbuf_add(b, "\\n", 2);
        else
            smd_sbuf_add(b, s + i, 1);
    }
}

/* ---- Routing ------------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long smd_http_unescape(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (n - i < 3)
                return -1;
            int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0 || o >= cap)
            return -1;
        out[o++] = (char)c;
    }
    return (long)o;
}

/* Whether s[0..n) is exactly the NUL-terminated lit. */
static int seg_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static smd_route_kind route_bad(smd_route *r, const char *code, const char *why)
{
    r->kind = SMD_ROUTE_BAD;
    r->code = code;
    r->why = why;
    return r->kind;
}

smd_route_kind smd_route_parse(const char *path, size_t n, smd_route *r)
{
    memset(r, 0, sizeof *r);
    r->kind = SMD_ROUTE_NONE;
    const void *q = memchr(path, '?', n);
    if (q)
        n = (size_t)((const char *)q - path);
    if (n == 0 || path[0] != '/')
        return r->kind;

    /* Split into segments after the leading '/'; at most 4 matter. */
    const char *seg[4];
    size_t len[4], nseg = 0;
    size_t i = 1;
    for (;;) {
        size_t start = i;
        while (i < n && path[i] != '/')
            i++;
        if (nseg == 4)
            return r->kind; /* too many segments */
        seg[nseg] = path + start;
        len[nseg] = i - start;
        nseg++;
        if (i >= n)
            break;
        i++; /* skip '/' */
    }
    for (size_t k = 0; k < nseg; k++)
        if (len[k] == 0)
            return r->kind; /* empty segment: "//" or a trailing '/' */

    if (nseg == 1) {
        if (seg_is(seg[0], len[0], "metrics"))
            r->kind = SMD_ROUTE_METRICS;
        else if (seg_is(seg[0], len[0], "openapi.json"))
            r->kind = SMD_ROUTE_OPENAPI;
        return r->kind;
    }
    if (nseg == 2 && seg_is(seg[0], len[0], "health")) {
        if (seg_is(seg[1], len[1], "live"))
            r->kind = SMD_ROUTE_LIVE;
        else if (seg_is(seg[1], len[1], "ready"))
            r->kind = SMD_ROUTE_READY;
        return r->kind;
    }
    if (!seg_is(seg[0], len[0], "v1") || !seg_is(seg[1], len[1], "maps"))
        return r->kind;
    if (nseg == 2) {
        r->kind = SMD_ROUTE_MAPS;
        return r->kind;
    }
    long k = smd_http_unescape(seg[2], len[2], r->name, SMC_NAME_MAX);
    if (k < 0) {
        r->name[0] = '\0';
        return route_bad(r, "bad_name",
                         "bad map name: a malformed escape, a NUL byte or longer than 200 bytes");
    }
    r->name_len = (size_t)k;
    r->name[k] = '\0';
    if (nseg == 3) {
        r->kind = SMD_ROUTE_MAP;
        return r->kind;
    }
    k = smd_http_unescape(seg[3], len[3], r->key, sizeof r->key - 1);
    if (k < 0) {
        r->key[0] = '\0';
        return route_bad(r, "bad_key", "bad key: not a decimal 64-bit integer");
    }
    r->key_len = (size_t)k;
    r->key[k] = '\0';
    r->kind = SMD_ROUTE_KEY;
    return r->kind;
}

/* ---- Content negotiation -------------------------------------------------- */

static int is_blank(int c)
{
    return c == ' ' || c == '\t';
}

/* Trims blanks from both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n && is_blank((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_blank((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

static int media_eq(const char *s, size_t n, const char *type)
{
    return strlen(type) == n && strncasecmp(s, type, n) == 0;
}

int smd_http_media_is(const char *header, size_t n, const char *type)
{
    if (!header)
        return 0;
    const char *semi = memchr(header, ';', n);
    if (semi)
        n = (size_t)(semi - header);
    trim(&header, &n);
    return media_eq(header, n, type);
}

/* The q of one Accept element's parameters (after the media range), 1 when
 * absent, 0 when malformed. */
static double accept_q(const char *p, size_t n)
{
    while (n) {
        const char *semi = memchr(p, ';', n);
        size_t len = semi ? (size_t)(semi - p) : n;
        const char *param = p;
        size_t plen = len;
        trim(&param, &plen);
        if (plen >= 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
            char buf[16];
            size_t vlen = plen - 2;
            if (vlen == 0 || vlen >= sizeof buf)
                return 0;
            memcpy(buf, param + 2, vlen);
            buf[vlen] = '\0';
            char *end;
            double q = strtod(buf, &end);
            if (*end != '\0' || !(q >= 0 && q <= 1))
                return 0;
            return q;
        }
        if (!semi)
            break;
        n -= len + 1;
        p = semi + 1;
    }
    return 1;
}

int smd_http_wants_octets(const char *accept, size_t n)
{
    if (!accept)
        return 0;
    double q_oct = 0, q_json = 0;
    while (n) {
        const char *comma = memchr(accept, ',', n);
        size_t len = comma ? (size_t)(comma - accept) : n;
        const char *semi = memchr(accept, ';', len);
        const char *m = accept;
        size_t mlen = semi ? (size_t)(semi - accept) : len;
        trim(&m, &mlen);
        double q = semi ? accept_q(semi + 1, len - (size_t)(semi + 1 - accept)) : 1;
        if (media_eq(m, mlen, "application/octet-stream") && q > q_oct)
            q_oct = q;
        if (media_eq(m, mlen, "application/json") && q > q_json)
            q_json = q;
        if (!comma)
            break;
        n -= len + 1;
        accept = comma + 1;
    }
    return q_oct > 0 && q_oct > q_json;
}

/* ---- JSON input ---------------------------------------------------------- */

#define JSON_MAX_DEPTH 64

typedef struct jp {
    const char *s;
    size_t n, i;
    int depth;
    const char *err;
} jp;

static int jp_fail(jp *p, const char *why)
{
    if (!p->err)
        p->err = why;
    return -1;
}

static void jp_ws(jp *p)
{
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->i++;
    }
}

static int jp_peek(jp *p)
{
    return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

static int jp_lit(jp *p, const char *lit)
{
    size_t k = strlen(lit);
    if (p->n - p->i < k || memcmp(p->s + p->i, lit, k) != 0)
        return jp_fail(p, "invalid JSON: unexpected token");
    p->i += k;
    return 0;
}

/* A string at p->i (which is '"'): validates it and returns the raw
 * contents (escapes unresolved) in *s, *len; *esc says whether any escape
 * appears. */
static int jp_string(jp *p, const char **s, size_t *len, int *esc)
{
    p->i++; /* opening quote */
    size_t start = p->i;
    int any = 0;
    while (p->i < p->n) {
        unsigned c = (unsigned char)p->s[p->i];
        if (c == '"') {
            *s = p->s + start;
            *len = p->i - start;
            if (esc)
                *esc = any;
            p->i++;
            return 0;
        }
        if (c < 0x20)
            return jp_fail(p, "invalid JSON: control character in a string");
        if (c == '\\') {
            any = 1;
            if (p->i + 1 >= p->n)
                break;
            char e = p->s[p->i + 1];
            if (e == 'u') {
                if (p->n - p->i < 6)
                    break;
                for (int k = 2; k < 6; k++)
                    if (hexval((unsigned char)p->s[p->i + (size_t)k]) < 0)
                        return jp_fail(p, "invalid JSON: bad \\u escape");
                p->i += 6;
            } else if (strchr("\"\\/bfnrt", e) && e != '\0') {
                p->i += 2;
            } else {
                return jp_fail(p, "invalid JSON: bad escape in a string");
            }
            continue;
        }
        size_t k = utf8_len((const unsigned char *)p->s + p->i, p->n - p->i);
        if (k == 0)
            return jp_fail(p, "invalid JSON: a string is not UTF-8");
        p->i += k;
    }
    return jp_fail(p, "invalid JSON: unterminated string");
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* A number at p->i: validates the grammar; *integral says it has neither a
 * fraction nor an exponent. */
static int jp_number(jp *p, const char **s, size_t *len, int *integral)
{
    size_t start = p->i;
    int intg = 1;
    if (jp_peek(p) == '-')
        p->i++;
    if (jp_peek(p) == '0') {
        p->i++;
    } else if (is_digit(jp_peek(p))) {
        while (is_digit(jp_peek(p)))
            p->i++;
    } else {
        return jp_fail(p, "invalid JSON: bad number");
    }
    if (jp_peek(p) == '.') {
        intg = 0;
        p->i++;
        if (!is_digit(jp_peek(p)))
            return jp_fail(p, "invalid JSON: bad number");
        while (is_digit(jp_peek(p)))
            p->i++;
    }
    if (jp_peek(p) == 'e' || jp_peek(p) == 'E') {
        intg = 0;
        p->i++;
        if (jp_peek(p) == '+' || jp_peek(p) == '-')
            p->i++;
        if (!is_digit(jp_peek(p)))
            return jp_fail(p, "invalid JSON: bad number");
        while (is_digit(jp_peek(p)))
            p->i++;
    }
    if (s)
        *s = p->s + start;
    if (len)
        *len = p->i - start;
    if (integral)
        *integral = intg;
    return 0;
}

static int jp_value(jp *p);

/* Skips the rest of an array or object whose opening bracket is consumed. */
static int jp_container(jp *p, int close)
{
    if (++p->depth > JSON_MAX_DEPTH)
        return jp_fail(p, "invalid JSON: nested too deep");
    jp_ws(p);
    if (jp_peek(p) == close) {
        p->i++;
        p->depth--;
        return 0;
    }
    for (;;) {
        jp_ws(p);
        if (close == '}') {
            const char *s;
            size_t len;
            if (jp_peek(p) != '"')
                return jp_fail(p, "invalid JSON: expected a member name");
            if (jp_string(p, &s, &len, NULL) < 0)
                return -1;
            jp_ws(p);
            if (jp_peek(p) != ':')
                return jp_fail(p, "invalid JSON: expected ':'");
            p->i++;
            jp_ws(p);
        }
        if (jp_value(p) < 0)
            return -1;
        jp_ws(p);
        int c = jp_peek(p);
        p->i++;
        if (c == close)
            break;
        if (c != ',')
            return jp_fail(p, "invalid JSON: expected ',' or a closing bracket");
    }
    p->depth--;
    return 0;
}

/* Validates and skips one value at p->i (blanks before it already skipped). */
static int jp_value(jp *p)
{
    const char *s;
    size_t len;
    switch (jp_peek(p)) {
    case '{':
        p->i++;
        return jp_container(p, '}');
    case '[':
        p->i++;
        return jp_container(p, ']');
    case '"':
        return jp_string(p, &s, &len, NULL);
    case 't':
        return jp_lit(p, "true");
    case 'f':
        return jp_lit(p, "false");
    case 'n':
        return jp_lit(p, "null");
    case -1:
        return jp_fail(p, "invalid JSON: unexpected end");
    default:
        return jp_number(p, NULL, NULL, NULL);
    }
}

/* After the top-level value: only blanks may follow. */
static int jp_end(jp *p)
{
    jp_ws(p);
    if (p->i != p->n)
        return jp_fail(p, "invalid JSON: bytes after the value");
    return 0;
}

static int set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return -1;
}

int smd_json_check(const char *text, size_t n, char *err, size_t errlen)
{
    jp p = {text, n, 0, 0, NULL};
    jp_ws(&p);
    if (jp_value(&p) < 0 || jp_end(&p) < 0)
        return set_err(err, errlen, p.err);
    return 0;
}

/* Resolves the escapes of a validated string's raw contents into out (cap
 * bytes, NUL-terminated).  Returns the length, or -1 if it does not fit or
 * holds a NUL or an unpaired surrogate. */
static long json_unescape(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned cp;
        if (s[i] != '\\') {
            if (o + 1 >= cap)
                return -1;
            out[o++] = s[i++];
            continue;
        }
        char e = s[i + 1];
        i += 2;
        if (e != 'u') {
            const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
            cp = (unsigned char)to[strchr(from, e) - from];
        } else {
            cp = 0;
            for (int k = 0; k < 4; k++)
                cp = cp * 16 + (unsigned)hexval((unsigned char)s[i + (size_t)k]);
            i += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return -1;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (n - i < 6 || s[i] != '\\' || s[i + 1] != 'u')
                    return -1;
                unsigned lo = 0;
                for (int k = 2; k < 6; k++) {
                    int h = hexval((unsigned char)s[i + (size_t)k]);
                    if (h < 0)
                        return -1;
                    lo = lo * 16 + (unsigned)h;
                }
                if (lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            }
        }
        if (cp == 0)
            return -1;
        unsigned char enc[4];
        size_t k;
        if (cp < 0x80) {
            enc[0] = (unsigned char)cp;
            k = 1;
        } else if (cp < 0x800) {
            enc[0] = (unsigned char)(0xc0 | (cp >> 6));
            enc[1] = (unsigned char)(0x80 | (cp & 0x3f));
            k = 2;
        } else if (cp < 0x10000) {
            enc[0] = (unsigned char)(0xe0 | (cp >> 12));
            enc[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
            enc[2] = (unsigned char)(0x80 | (cp & 0x3f));
            k = 3;
        } else {
            enc[0] = (unsigned char)(0xf0 | (cp >> 18));
            enc[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
            enc[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
            enc[3] = (unsigned char)(0x80 | (cp & 0x3f));
            k = 4;
        }
        if (o + k >= cap)
            return -1;
        memcpy(out + o, enc, k);
        o += k;
    }
    out[o] = '\0';
    return (long)o;
}

/* Reads a member name at p->i into key (cap bytes); a name that does not
 * fit comes back as "" (an unknown member).  Consumes the ':' after it. */
static int jp_member(jp *p, char *key, size_t cap)
{
    const char *s;
    size_t len;
    jp_ws(p);
    if (jp_peek(p) != '"')
        return jp_fail(p, "invalid JSON: expected a member name");
    if (jp_string(p, &s, &len, NULL) < 0)
        return -1;
    if (json_unescape(s, len, key, cap) < 0)
        key[0] = '\0';
    jp_ws(p);
    if (jp_peek(p) != ':')
        return jp_fail(p, "invalid JSON: expected ':'");
    p->i++;
    jp_ws(p);
    return 0;
}

/* After a member's value: 1 at '}' (consumed), 0 at ',' (consumed). */
static int jp_next_member(jp *p)
{
    jp_ws(p);
    int c = jp_peek(p);
    p->i++;
    if (c == '}')
        return 1;
    if (c == ',')
        return 0;
    return jp_fail(p, "invalid JSON: expected ',' or '}'");
}

/* Opens the top-level object; 1 when it is empty ("{}"). */
static int jp_open_object(jp *p)
{
    jp_ws(p);
    if (jp_peek(p) != '{')
        return jp_fail(p, "the body must be a JSON object");
    p->i++;
    p->depth = 1;
    jp_ws(p);
    if (jp_peek(p) == '}') {
        p->i++;
        return 1;
    }
    return 0;
}

/* Parses an integral JSON number's text into *out, or fails. */
static int json_integer(const char *s, size_t len, long long *out)
{
    char buf[32];
    if (len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (*end != '\0' || errno != 0)
        return -1;
    *out = v;
    return 0;
}

int smd_http_parse_spec(const char *body, size_t n, smd_http_spec *out, char *err, size_t errlen)
{
    jp p = {body, n, 0, 0, NULL};
    smd_http_spec spec = {{0}, 0, 0, 0};
    int have_type = 0, have_len = 0, have_pooled = 0;
    int r = jp_open_object(&p);
    while (r == 0) {
        char key[16];
        if (jp_member(&p, key, sizeof key) < 0)
            return set_err(err, errlen, p.err);
        if (strcmp(key, "type") == 0 && !have_type) {
            const char *s;
            size_t len;
            if (jp_peek(&p) != '"')
                return set_err(err, errlen, "\"type\" must be a string such as \"int64\"");
            if (jp_string(&p, &s, &len, NULL) < 0)
                return set_err(err, errlen, p.err);
            long k = json_unescape(s, len, spec.type, sizeof spec.type);
            if (k < 0)
                return set_err(err, errlen, "unknown \"type\"");
            spec.type_len = (size_t)k;
            have_type = 1;
        } else if (strcmp(key, "len") == 0 && !have_len) {
            const char *s;
            size_t len;
            int integral;
            int c = jp_peek(&p);
            if (c != '-' && !is_digit(c))
                return set_err(err, errlen, "\"len\" must be an integer");
            if (jp_number(&p, &s, &len, &integral) < 0)
                return set_err(err, errlen, p.err);
            if (!integral || json_integer(s, len, &spec.len) < 0 || spec.len < 1 ||
                spec.len > SMC_MAX_LEN)
                return set_err(err, errlen, "\"len\" must be an integer from 1 to 65536");
            have_len = 1;
        } else if (strcmp(key, "pooled") == 0 && !have_pooled) {
            if (jp_peek(&p) == 't' && jp_lit(&p, "true") == 0)
                spec.pooled = 1;
            else if (jp_peek(&p) == 'f' && jp_lit(&p, "false") == 0)
                spec.pooled = 0;
            else
                return set_err(err, errlen, "\"pooled\" must be true or false");
            have_pooled = 1;
        } else {
            return set_err(err, errlen,
                           "unknown or repeated member: the body takes \"type\", \"len\" and "
                           "\"pooled\"");
        }
        r = jp_next_member(&p);
    }
    if (r < 0 || jp_end(&p) < 0)
        return set_err(err, errlen, p.err);
    if (!have_type || !have_len)
        return set_err(err, errlen, "the body needs \"type\" and \"len\"");
    *out = spec;
    return 0;
}

/* Whether a string element of a value is one of the non-finite names. */
static int nonfinite_name(const char *s, size_t n)
{
    static const char *const names[] = {"nan",      "inf",       "-inf",     "+inf",
                                        "infinity", "-infinity", "+infinity"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && strncasecmp(s, names[i], n) == 0)
            return 1;
    return 0;
}

/* The array of a value body, at p->i. */
static int parse_value_array(jp *p, smc_arg *vals, size_t max, size_t *count)
{
    size_t k = 0;
    if (jp_peek(p) != '[')
        return jp_fail(p, "\"value\" must be an array of numbers");
    p->i++;
    jp_ws(p);
    if (jp_peek(p) == ']') {
        p->i++;
        *count = 0;
        return 0;
    }
    for (;;) {
        const char *s;
        size_t len;
        int esc;
        jp_ws(p);
        int c = jp_peek(p);
        if (c == '"') {
            if (jp_string(p, &s, &len, &esc) < 0)
                return -1;
            if (esc || !nonfinite_name(s, len))
                return jp_fail(p, "a value element must be a number, \"nan\", \"inf\" or \"-inf\"");
        } else if (c == '-' || is_digit(c)) {
            if (jp_number(p, &s, &len, NULL) < 0)
                return -1;
        } else {
            return jp_fail(p, "a value element must be a number, \"nan\", \"inf\" or \"-inf\"");
        }
        if (k < max) {
            vals[k].p = s;
            vals[k].n = len;
        }
        k++;
        jp_ws(p);
        c = jp_peek(p);
        p->i++;
        if (c == ']')
            break;
        if (c != ',')
            return jp_fail(p, "invalid JSON: expected ',' or ']'");
    }
    *count = k;
    return 0;
}

int smd_http_parse_values(const char *body, size_t n, smc_arg *vals, size_t max, size_t *count,
                          char *err, size_t errlen)
{
    jp p = {body, n, 0, 0, NULL};
    int have_value = 0;
    size_t k = 0;
    int r = jp_open_object(&p);
    while (r == 0) {
        char key[16];
        if (jp_member(&p, key, sizeof key) < 0)
            return set_err(err, errlen, p.err);
        if (strcmp(key, "value") != 0 || have_value)
            return set_err(err, errlen, "unknown or repeated member: the body takes \"value\"");
        if (parse_value_array(&p, vals, max, &k) < 0)
            return set_err(err, errlen, p.err);
        have_value = 1;
        r = jp_next_member(&p);
    }
    if (r < 0 || jp_end(&p) < 0)
        return set_err(err, errlen, p.err);
    if (!have_value)
        return set_err(err, errlen, "the body needs \"value\"");
    *count = k;
    return 0;
}

/* ---- JSON output of values ------------------------------------------------ */

static void add_double(smd_sbuf *b, double v, int is_float)
{
    if (isnan(v)) {
        smd_sbuf_adds(b, "\"nan\"");
        return;
    }
    if (isinf(v)) {
        smd_sbuf_adds(b, v < 0 ? "\"-inf\"" : "\"inf\"");
        return;
    }
    char buf[40];
    int max = is_float ? 9 : 17;
    for (int prec = 1; prec <= max; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (is_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    smd_sbuf_adds(b, buf);
}

void smd_http_value_json(smd_sbuf *b, smc_type t, const void *bytes, size_t len)
{
    const unsigned char *p = bytes;
    smd_sbuf_add(b, "[", 1);
    for (size_t i = 0; i < len; i++) {
        if (i)
            smd_sbuf_add(b, ",", 1);
        switch (t) {
#define INT_CASE(T, ctype, fmt, cast)                                                              \
    case T: {                                                                                      \
        ctype v;                                                                                   \
        memcpy(&v, p + i * sizeof v, sizeof v);                                                    \
        smd_sbuf_addf(b, fmt, (cast)v);                                                            \
        break;                                                                                     \
    }
            INT_CASE(SMC_INT8, int8_t, "%d", int)
            INT_CASE(SMC_INT16, int16_t, "%d", int)
            INT_CASE(SMC_INT32, int32_t, "%" PRId32, int32_t)
            INT_CASE(SMC_INT64, int64_t, "%" PRId64, int64_t)
            INT_CASE(SMC_UINT8, uint8_t, "%u", unsigned)
            INT_CASE(SMC_UINT16, uint16_t, "%u", unsigned)
            INT_CASE(SMC_UINT32, uint32_t, "%" PRIu32, uint32_t)
            INT_CASE(SMC_UINT64, uint64_t, "%" PRIu64, uint64_t)
#undef INT_CASE
        case SMC_FLOAT: {
            float v;
            memcpy(&v, p + i * sizeof v, sizeof v);
            add_double(b, v, 1);
            break;
        }
        case SMC_DOUBLE: {
            double v;
            memcpy(&v, p + i * sizeof v, sizeof v);
            add_double(b, v, 0);
            break;
        }
        default:
            smd_sbuf_adds(b, "null");
            break;
        }
    }
    smd_sbuf_add(b, "]", 1);
}
