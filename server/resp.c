/*
 * resp.c - RESP2/RESP3 request parsing and reply encoding (resp.h).
 *
 * Parsing.  resp_parse is stateless: each call parses from the start of
 * the buffer and either finds a whole command or reports RESP_MORE with a
 * lower bound of the bytes the command needs (every argument not yet seen
 * counts its minimal 6 bytes, "$0\r\n\r\n"; a bulk whose header was seen
 * counts whole), so a transport that waits for that many bytes parses a big
 * command a few times, not once per read.  Arguments point into the buffer;
 * nothing is copied or allocated.  Numbers in headers are strict decimals
 * (no '+', no blanks), header lines are at most 32 bytes, and the bytes
 * after a bulk must be "\r\n".
 *
 * Multibulk "*0" and "*-1" are consumed as empty commands (argc 0), as
 * Redis does.  Inline commands: a line up to "\n" (a "\r" before it is
 * dropped), split at blanks; an argument may be quoted with "..." or '...'
 * (to hold blanks, or be empty) and a closing quote must end the argument.
 * Escapes are not decoded (arguments point into the caller's buffer), so a
 * backslash inside double quotes is refused rather than misread.
 *
 * Encoding.  Appends go to a resp_buf that grows by doubling.  An append
 * that cannot get memory sets oom and leaves the buffer as it was; every
 * later append is then ignored too (a reply with a hole in it would corrupt
 * the stream), until the transport clears oom after dealing with it.
 * Simple strings and errors have CR and LF replaced by blanks, so a message
 * can never break the framing.  Doubles are written as the shortest decimal
 * that reads back as the same double ("inf", "-inf", "nan" for the
 * specials); in RESP2 they are bulk strings and maps are flat arrays.
 */
#include "resp.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_MAX 32 /* bytes of a "*N" or "$L" line, CRLF excluded */

void resp_limits_default(resp_limits *l)
{
    l->max_args = 1024 * 1024;
    l->max_bulk = (size_t)512 * 1024 * 1024;
    l->max_inline = 64 * 1024;
}

/* ---- Parsing ----------------------------------------------------------- */

/* Reads a header line at buf[pos]: its number into *v and the offset after
 * its CRLF into *next.  One pass: digits, then CR LF.  Returns RESP_OK,
 * RESP_MORE or RESP_ERROR. */
static int read_header(const char *buf, size_t len, size_t pos, long long *v, size_t *next)
{
    size_t i = pos;
    int neg = 0;
    if (i < len && buf[i] == '-') {
        neg = 1;
        i++;
    }
    size_t first = i;
    long long x = 0;
    while (i < len && (unsigned char)(buf[i] - '0') <= 9) {
        if (i - first == 18)
            return RESP_ERROR; /* a 19th digit: over any limit */
        x = x * 10 + (buf[i] - '0');
        i++;
    }
    if (i == len)
        return len - pos <= HEADER_MAX ? RESP_MORE : RESP_ERROR;
    size_t digits = i - first;
    if (buf[i] != '\r' || digits == 0 || (buf[first] == '0' && digits > 1))
        return RESP_ERROR;
    if (i + 1 == len)
        return RESP_MORE;
    if (buf[i + 1] != '\n')
        return RESP_ERROR;
    *v = neg ? -x : x;
    *next = i + 2;
    return RESP_OK;
}

static size_t sat_add(size_t a, size_t b)
{
    return a + b < a ? SIZE_MAX : a + b;
}

static size_t sat_mul(size_t a, size_t b)
{
    return b != 0 && a > SIZE_MAX / b ? SIZE_MAX : a * b;
}

static int parse_multibulk(const char *buf, size_t len, const resp_limits *lim, smc_arg *argv,
                           size_t argv_cap, int *argc, size_t *used, size_t *need, const char **err)
{
    long long count;
    size_t pos;
    int rc = read_header(buf, len, 1, &count, &pos);
    if (rc == RESP_MORE) {
        *need = len + 1;
        return RESP_MORE;
    }
    if (rc == RESP_ERROR) {
        *err = "invalid multibulk length";
        return RESP_ERROR;
    }
    if (count <= 0) {
        *argc = 0;
        *used = pos;
        return RESP_OK;
    }
    if ((unsigned long long)count > lim->max_args || (unsigned long long)count > INT32_MAX) {
        *err = "invalid multibulk length";
        return RESP_ERROR;
    }
    if ((size_t)count > argv_cap) {
        *err = "too many arguments";
        return RESP_ERROR;
    }
    for (size_t i = 0; i < (size_t)count; i++) {
        size_t left = (size_t)count - i - 1; /* arguments after this one */
        if (pos == len) {
            *need = sat_add(pos, sat_mul(left + 1, 6));
            return RESP_MORE;
        }
        if (buf[pos] != '$') {
            *err = "expected '$'";
            return RESP_ERROR;
        }
        long long blen;
        size_t data;
        rc = read_header(buf, len, pos + 1, &blen, &data);
        if (rc == RESP_MORE) {
            size_t lower = sat_add(pos, sat_mul(left + 1, 6));
            *need = lower > len ? lower : len + 1;
            return RESP_MORE;
        }
        if (rc == RESP_ERROR || blen < 0 || (unsigned long long)blen > lim->max_bulk) {
            *err = "invalid bulk length";
            return RESP_ERROR;
        }
        size_t end = sat_add(data, (size_t)blen); /* where the CRLF goes */
        if (end > len || len - end < 2) {
            *need = sat_add(sat_add(end, 2), sat_mul(left, 6));
            return RESP_MORE;
        }
        if (buf[end] != '\r' || buf[end + 1] != '\n') {
            *err = "expected CRLF after bulk data";
            return RESP_ERROR;
        }
        argv[i].p = buf + data;
        argv[i].n = (size_t)blen;
        pos = end + 2;
    }
    *argc = (int)count;
    *used = pos;
    return RESP_OK;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int parse_inline(const char *buf, size_t len, const resp_limits *lim, smc_arg *argv,
                        size_t argv_cap, int *argc, size_t *used, size_t *need, const char **err)
{
    size_t scan = len > lim->max_inline ? lim->max_inline + 1 : len;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl) {
        if (len > lim->max_inline) {
            *err = "too big inline request";
            return RESP_ERROR;
        }
        *need = len + 1;
        return RESP_MORE;
    }
    size_t end = (size_t)(nl - buf);
    size_t cap = argv_cap < lim->max_args ? argv_cap : lim->max_args;
    size_t n = 0, i = 0;
    for (;;) {
        while (i < end && is_blank(buf[i]))
            i++;
        if (i == end)
            break;
        if (n == cap || n == INT32_MAX) {
            *err = "too many arguments";
            return RESP_ERROR;
        }
        size_t start = i;
        if (buf[i] == '"' || buf[i] == '\'') {
            char q = buf[i++];
            start = i;
            while (i < end && buf[i] != q) {
                if (q == '"' && buf[i] == '\\') {
                    *err = "escapes in inline quotes are not supported";
                    return RESP_ERROR;
                }
                i++;
            }
            if (i == end || (i + 1 < end && !is_blank(buf[i + 1]))) {
                *err = "unbalanced quotes in request";
                return RESP_ERROR;
            }
            argv[n].p = buf + start;
            argv[n].n = i - start;
            i++; /* the closing quote */
        } else {
            while (i < end && !is_blank(buf[i]))
                i++;
            argv[n].p = buf + start;
            argv[n].n = i - start;
        }
        n++;
    }
    *argc = (int)n;
    *used = end + 1;
    return RESP_OK;
}

int resp_parse(const char *buf, size_t len, const resp_limits *lim, smc_arg *argv, size_t argv_cap,
               int *argc, size_t *used, size_t *need, const char **err)
{
    resp_limits def;
    size_t need_local;
    const char *err_local;
    if (!lim) {
        resp_limits_default(&def);
        lim = &def;
    }
    if (!need)
        need = &need_local;
    if (!err)
        err = &err_local;
    if (len == 0) {
        *need = 1;
        return RESP_MORE;
    }
    if (buf[0] == '*')
        return parse_multibulk(buf, len, lim, argv, argv_cap, argc, used, need, err);
    return parse_inline(buf, len, lim, argv, argv_cap, argc, used, need, err);
}

/* ---- Buffer ------------------------------------------------------------ */

void resp_buf_init(resp_buf *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void resp_buf_free(resp_buf *b)
{
    free(b->p);
    resp_buf_init(b);
}

/* Room for n more bytes.  Returns the place to write them, or NULL (oom). */
static char *buf_room(resp_buf *b, size_t n)
{
    if (b->oom)
        return NULL;
    if (b->cap - b->len >= n)
        return b->p + b->len;
    size_t want = b->len + n;
    if (want < b->len) {
        b->oom = 1;
        return NULL;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap = cap * 2 > cap ? cap * 2 : want;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return NULL;
    }
    b->p = p;
    b->cap = cap;
    return b->p + b->len;
}

int resp_buf_append(resp_buf *b, const void *p, size_t n)
{
    char *w = buf_room(b, n);
    if (!w)
        return -1;
    if (n)
        memcpy(w, p, n);
    b->len += n;
    return 0;
}

void resp_buf_consume(resp_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

/* ---- Encoding ---------------------------------------------------------- */

static const char digit_pairs[] = "00010203040506070809101112131415161718192021222324"
                                  "25262728293031323334353637383940414243444546474849"
                                  "50515253545556575859606162636465666768697071727374"
                                  "75767778798081828384858687888990919293949596979899";

/* Writes v in decimal at w; returns the bytes written (at most 20). */
static size_t fmt_ll(char *w, long long v)
{
    if (v >= 0 && v < 10) {
        w[0] = (char)('0' + v);
        return 1;
    }
    char tmp[24];
    unsigned long long u = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
    size_t n = sizeof tmp;
    while (u >= 100) {
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        tmp[--n] = digit_pairs[d + 1];
        tmp[--n] = digit_pairs[d];
    }
    if (u >= 10) {
        tmp[--n] = digit_pairs[u * 2 + 1];
        tmp[--n] = digit_pairs[u * 2];
    } else {
        tmp[--n] = (char)('0' + u);
    }
    size_t k = 0;
    if (v < 0)
        w[k++] = '-';
    memcpy(w + k, tmp + n, sizeof tmp - n);
    return k + sizeof tmp - n;
}

/* "<c><v>\r\n" */
static void put_header(resp_buf *b, char c, long long v)
{
    char *w = buf_room(b, 24);
    if (!w)
        return;
    w[0] = c;
    size_t k = 1 + fmt_ll(w + 1, v);
    w[k++] = '\r';
    w[k++] = '\n';
    b->len += k;
}

static void put_line(resp_buf *b, char c, const char *s, size_t n)
{
    char *w = buf_room(b, n + 3);
    if (!w)
        return;
    w[0] = c;
    for (size_t i = 0; i < n; i++)
        w[1 + i] = s[i] == '\r' || s[i] == '\n' ? ' ' : s[i];
    w[n + 1] = '\r';
    w[n + 2] = '\n';
    b->len += n + 3;
}

static void put_bulk(resp_buf *b, const void *p, size_t n)
{
    char *w = buf_room(b, n + 26);
    if (!w)
        return;
    w[0] = '$';
    size_t k = 1 + fmt_ll(w + 1, (long long)n);
    w[k++] = '\r';
    w[k++] = '\n';
    if (n)
        memcpy(w + k, p, n);
    k += n;
    w[k++] = '\r';
    w[k++] = '\n';
    b->len += k;
}

static size_t fmt_double(char *out, size_t cap, double v)
{
    if (isnan(v))
        return (size_t)snprintf(out, cap, "nan");
    if (isinf(v))
        return (size_t)snprintf(out, cap, v < 0 ? "-inf" : "inf");
    int n = 0;
    /* 15 digits print a normal double's shortest decimal when one that short
     * exists; subnormals have fewer significant bits and start at 1. */
    for (int prec = v != 0 && fabs(v) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        n = snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            break;
    }
    return (size_t)n;
}

static void enc_simple(void *ctx, const char *s, size_t n)
{
    put_line(ctx, '+', s, n);
}

static void enc_error(void *ctx, const char *s, size_t n)
{
    put_line(ctx, '-', s, n);
}

static void enc_integer(void *ctx, long long v)
{
    put_header(ctx, ':', v);
}

static void enc_bulk(void *ctx, const void *p, size_t n)
{
    put_bulk(ctx, p, n);
}

static void enc_array(void *ctx, size_t n)
{
    put_header(ctx, '*', (long long)n);
}

static void enc2_dbl(void *ctx, double v)
{
    char txt[40];
    put_bulk(ctx, txt, fmt_double(txt, sizeof txt, v));
}

static void enc2_null(void *ctx)
{
    resp_buf_append(ctx, "$-1\r\n", 5);
}

static void enc2_null_array(void *ctx)
{
    resp_buf_append(ctx, "*-1\r\n", 5);
}

static void enc2_map(void *ctx, size_t n)
{
    put_header(ctx, '*', (long long)(2 * n));
}

static void enc3_dbl(void *ctx, double v)
{
    char txt[40];
    put_line(ctx, ',', txt, fmt_double(txt, sizeof txt, v));
}

static void enc3_null(void *ctx)
{
    resp_buf_append(ctx, "_\r\n", 3);
}

static void enc3_map(void *ctx, size_t n)
{
    put_header(ctx, '%', (long long)n);
}

static const smc_reply_ops resp2_ops = {
    .simple = enc_simple,
    .error = enc_error,
    .integer = enc_integer,
    .dbl = enc2_dbl,
    .bulk = enc_bulk,
    .null = enc2_null,
    .array = enc_array,
    .map = enc2_map,
    .null_array = enc2_null_array,
};

static const smc_reply_ops resp3_ops = {
    .simple = enc_simple,
    .error = enc_error,
    .integer = enc_integer,
    .dbl = enc3_dbl,
    .bulk = enc_bulk,
    .null = enc3_null,
    .array = enc_array,
    .map = enc3_map,
    .null_array = enc3_null,
};

void resp_reply_init(smc_reply *r, resp_buf *b, int resp3)
{
    r->ops = resp3 ? &resp3_ops : &resp2_ops;
    r->ctx = b;
    r->resp3 = resp3 ? 1 : 0;
}
