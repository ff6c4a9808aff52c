/*
 * command.c - the command layer: parses a per-map command's arguments, runs
 * it against an smc_map (an sm_cmap plus an element type) and describes the
 * reply through an smc_reply sink.
 *
 * Arguments.  Keys are strict decimal int64 (smc_parse_key; leading zeros
 * are accepted, as redis-benchmark's __rand_int__ sends them).  Values of
 * integer types are parsed the same way and range-checked against the
 * element type; float and double go through strtof/strtod with the whole
 * argument consumed (inf and nan are accepted, overflow is not).  Every
 * argument of a command is checked before anything is written, so a command
 * that fails has changed nothing (the one exception: a multi-key SM.DEL
 * whose library call fails half-way, which the library does only when
 * memory runs out).
 *
 * Values.  A value is len elements of the type, native byte order, the same
 * bytes SM.PUTB takes and SM.GETB returns.  Reads copy the value with
 * sm_cmap_get into a buffer on the stack (heap above 4 KiB).  SM.GET
 * replies with integers for integer types (a uint64 above INT64_MAX as a
 * bulk string of its decimal digits, since RESP integers are signed) and,
 * for float and double, RESP3 doubles or RESP2 bulk strings holding the
 * shortest decimal that reads back as the same value.
 *
 * Observed writes.  When a write observer is installed (the daemon's
 * append-only log), each write takes one of 256 mutexes chosen by the key
 * and holds it across the map write and the observer call, so the observer
 * sees one key's writes in the order they took effect.  Without an observer
 * no lock is taken.  Install the observer before the map is served.
 *
 * SM.SCAN.  The library's iteration has no resume point, so the cursor is a
 * position in key order: cursor 0 starts at the smallest key; a cursor c > 0
 * means "keys k with (uint64)k ^ 2^63 >= c", i.e. keys in ascending signed
 * order from that point.  Each call walks the whole map (sm_cmap_each) and
 * keeps the COUNT smallest keys at or after the cursor in a bounded max-heap,
 * then replies them in ascending order with the cursor just past the last;
 * 0 when there is nothing after it.  Every key present for the whole scan is
 * returned exactly once, keys come back sorted, and a call holds O(COUNT)
 * memory.  The cost is honest: each call is O(n log COUNT) over a map of n
 * entries, so a whole scan is O(n^2 / COUNT); use a large COUNT for big maps.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "command.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SMC_STRIPES 256
#define SMC_STACK_VALUE 4096 /* values up to this size are read into the stack */
#define SMC_SCAN_DEFAULT 10
#define SMC_SCAN_MAX ((long long)1 << 24)

struct smc_map {
    sm_cmap *cm;
    sm_pool *pool; /* pooled maps only */
    smc_spec spec;
    size_t vsize;
    _Atomic(smc_write_fn) obs_fn;
    void *_Atomic obs_ctx;
    atomic_size_t refs;
    pthread_mutex_t stripes[SMC_STRIPES];
    char name[]; /* NUL-terminated */
};

/* ---- Element types ----------------------------------------------------- */

typedef struct type_info {
    const char *name;
    size_t size;
    int is_float, is_signed;
    long long min;
    unsigned long long max;
} type_info;

static const type_info types[SMC_NTYPES] = {
    [SMC_INT8] = {"int8", 1, 0, 1, INT8_MIN, INT8_MAX},
    [SMC_INT16] = {"int16", 2, 0, 1, INT16_MIN, INT16_MAX},
    [SMC_INT32] = {"int32", 4, 0, 1, INT32_MIN, INT32_MAX},
    [SMC_INT64] = {"int64", 8, 0, 1, INT64_MIN, INT64_MAX},
    [SMC_UINT8] = {"uint8", 1, 0, 0, 0, UINT8_MAX},
    [SMC_UINT16] = {"uint16", 2, 0, 0, 0, UINT16_MAX},
    [SMC_UINT32] = {"uint32", 4, 0, 0, 0, UINT32_MAX},
    [SMC_UINT64] = {"uint64", 8, 0, 0, 0, UINT64_MAX},
    [SMC_FLOAT] = {"float", 4, 1, 1, 0, 0},
    [SMC_DOUBLE] = {"double", 8, 1, 1, 0, 0},
};

int smc_type_parse(const char *s, size_t n, smc_type *out)
{
    for (int t = 0; t < SMC_NTYPES; t++) {
        if (strlen(types[t].name) == n && strncasecmp(types[t].name, s, n) == 0) {
            *out = (smc_type)t;
            return 0;
        }
    }
    return -1;
}

const char *smc_type_name(smc_type t)
{
    return (unsigned)t < SMC_NTYPES ? types[t].name : "?";
}

size_t smc_type_size(smc_type t)
{
    return (unsigned)t < SMC_NTYPES ? types[t].size : 0;
}

/* ---- Replies ----------------------------------------------------------- */

void smc_reply_errorf(smc_reply *r, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    r->ops->error(r->ctx, buf, (size_t)n);
}

static void reply_simple(smc_reply *r, const char *s)
{
    r->ops->simple(r->ctx, s, strlen(s));
}

static void reply_bulk_str(smc_reply *r, const char *s)
{
    r->ops->bulk(r->ctx, s, strlen(s));
}

static void reply_null_array(smc_reply *r)
{
    if (r->ops->null_array)
        r->ops->null_array(r->ctx);
    else
        r->ops->null(r->ctx);
}

/* A library error: "OOM ..." for SM_ENOMEM, "ERR ..." otherwise. */
static int reply_lib_error(smc_reply *r, int code)
{
    smc_reply_errorf(r, "%s %s", code == SM_ENOMEM ? "OOM" : "ERR", sm_strerror(code));
    return code;
}

static int reply_arity(smc_reply *r, const char *cmd)
{
    smc_reply_errorf(r, "ERR wrong number of arguments for '%s' command", cmd);
    return SM_EINVAL;
}

/* At most 64 bytes of a user's argument, for messages. */
#define ARG_SHOWN(a) (int)((a)->n > 64 ? 64 : (a)->n), (a)->p

static int reply_bad_key(smc_reply *r, const smc_arg *a)
{
    smc_reply_errorf(r, "ERR invalid key '%.*s': keys are decimal int64", ARG_SHOWN(a));
    return SM_EINVAL;
}

/* ---- Numbers ----------------------------------------------------------- */

/* Strict unsigned decimal: digits, no leading zero but "0".  *neg reports a
 * leading '-' (allowed only when allow_neg).  Returns 0 or -1 (syntax or
 * over UINT64_MAX). */
static int parse_u64(const char *p, size_t n, int allow_neg, int *neg, unsigned long long *out)
{
    *neg = 0;
    if (n > 0 && p[0] == '-' && allow_neg) {
        *neg = 1;
        p++;
        n--;
    }
    if (n == 0 || n > 20 || (p[0] == '0' && n > 1))
        return -1;
    unsigned long long v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)p[i] - '0';
        if (d > 9)
            return -1;
        if (v > (ULLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int smc_parse_key(const smc_arg *a, int64_t *out)
{
    /* Leading zeros are skipped (redis-benchmark's __rand_int__ pads keys
     * to 12 digits); the one zero of "0" / "-0" stays. */
    const char *p = a->p;
    size_t n = a->n;
    int neg = n > 0 && p[0] == '-', unused;
    size_t z = (size_t)neg;
    while (z + 1 < n && p[z] == '0')
        z++;
    unsigned long long u;
    if (parse_u64(p + z, n - z, 0, &unused, &u) != 0)
        return -1;
    if (neg) {
        if (u > (unsigned long long)INT64_MAX + 1)
            return -1;
        *out = u == (unsigned long long)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    } else {
        if (u > INT64_MAX)
            return -1;
        *out = (int64_t)u;
    }
    return 0;
}

/* Parses one element of type t from a into dst (t's size bytes).  Returns 0,
 * or -1 after replying with the error. */
static int parse_elem(smc_type t, const smc_arg *a, void *dst, smc_reply *r)
{
    const type_info *ti = &types[t];
    if (ti->is_float) {
        char buf[128];
        if (a->n == 0 || a->n >= sizeof buf || a->p[0] == ' ' || a->p[0] == '\t' ||
            memchr(a->p, '\0', a->n))
            goto not_number;
        memcpy(buf, a->p, a->n);
        buf[a->n] = '\0';
        if ((unsigned char)buf[0] <= ' ')
            goto not_number;
        char *end;
        errno = 0;
        if (t == SMC_FLOAT) {
            float f = strtof(buf, &end);
            if (end != buf + a->n)
                goto not_number;
            if (errno == ERANGE && isinf(f))
                goto out_of_range;
            memcpy(dst, &f, sizeof f);
        } else {
            double d = strtod(buf, &end);
            if (end != buf + a->n)
                goto not_number;
            if (errno == ERANGE && isinf(d))
                goto out_of_range;
            memcpy(dst, &d, sizeof d);
        }
        return 0;
    }
    int neg;
    unsigned long long u;
    if (parse_u64(a->p, a->n, 1, &neg, &u) != 0) {
        /* A well-formed integer too big for 64 bits is out of range too. */
        size_t digits = a->n - (a->n > 0 && a->p[0] == '-');
        int all_digits = digits > 0 && (a->p[a->n - digits] != '0' || digits == 1);
        for (size_t i = a->n - digits; all_digits && i < a->n; i++)
            all_digits = a->p[i] >= '0' && a->p[i] <= '9';
        if (all_digits)
            goto out_of_range;
        smc_reply_errorf(r, "ERR value '%.*s' is not an integer", ARG_SHOWN(a));
        return -1;
    }
    if (neg && u == 0)
        neg = 0; /* "-0" */
    if (neg ? (!ti->is_signed || u > (unsigned long long)(-(ti->min + 1)) + 1) : u > ti->max)
        goto out_of_range;
    int64_t s =
        neg ? (u == (unsigned long long)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u) : (int64_t)u;
    switch (ti->size) {
    case 1: {
        uint8_t v = (uint8_t)s;
        memcpy(dst, &v, 1);
        break;
    }
    case 2: {
        uint16_t v = (uint16_t)s;
        memcpy(dst, &v, 2);
        break;
    }
    case 4: {
        uint32_t v = (uint32_t)s;
        memcpy(dst, &v, 4);
        break;
    }
    default: {
        uint64_t v = neg ? (uint64_t)s : u;
        memcpy(dst, &v, 8);
        break;
    }
    }
    return 0;
not_number:
    smc_reply_errorf(r, "ERR value '%.*s' is not a number", ARG_SHOWN(a));
    return -1;
out_of_range:
    smc_reply_errorf(r, "ERR value %.*s out of range for %s", ARG_SHOWN(a), ti->name);
    return -1;
}

/* The shortest decimal that reads back as v (as a float when is_float). */
static size_t format_real(char *out, size_t cap, double v, int is_float)
{
    if (isnan(v))
        return (size_t)snprintf(out, cap, "nan");
    if (isinf(v))
        return (size_t)snprintf(out, cap, v < 0 ? "-inf" : "inf");
    /* A normal value that a shorter decimal reads back as prints as that
     * decimal at 6 (float) or 15 (double) digits; a subnormal has fewer
     * significant bits, so its search starts at 1 digit. */
    int lo = is_float ? 6 : 15, hi = is_float ? 9 : 17;
    if (v != 0 && fabs(v) < (is_float ? FLT_MIN : DBL_MIN))
        lo = 1;
    int n = 0;
    for (int prec = lo; prec <= hi; prec++) {
        n = snprintf(out, cap, "%.*g", prec, v);
        if (prec == hi)
            break;
        if (is_float ? strtof(out, NULL) == (float)v : strtod(out, NULL) == v)
            break;
    }
    return (size_t)n;
}

/* ---- Maps -------------------------------------------------------------- */

static int name_valid(const char *name, size_t n)
{
    if (n == 0 || n > SMC_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] <= ' ' || (unsigned char)name[i] > '~')
            return 0;
    return 1;
}

static int spec_valid(const smc_spec *s)
{
    return s && (unsigned)s->type < SMC_NTYPES && s->len >= 1 && s->len <= SMC_MAX_LEN &&
           types[s->type].size * s->len <= SM_MAX_ARRAY_BYTES;
}

int smc_spec_parse(int argc, const smc_arg *argv, smc_spec *out, smc_reply *r)
{
    if (argc < 2 || argc > 3) {
        reply_arity(r, "sm.create");
        return -1;
    }
    smc_spec s = {0};
    if (smc_type_parse(argv[0].p, argv[0].n, &s.type) != 0) {
        smc_reply_errorf(r,
                         "ERR unknown type '%.*s' (int8, int16, int32, int64, uint8, uint16, "
                         "uint32, uint64, float, double)",
                         ARG_SHOWN(&argv[0]));
        return -1;
    }
    int neg;
    unsigned long long len;
    if (parse_u64(argv[1].p, argv[1].n, 0, &neg, &len) != 0 || len < 1 || len > SMC_MAX_LEN) {
        smc_reply_errorf(r, "ERR length '%.*s' is not an integer in 1..%d", ARG_SHOWN(&argv[1]),
                         SMC_MAX_LEN);
        return -1;
    }
    s.len = (size_t)len;
    if (argc == 3) {
        if (argv[2].n != 6 || strncasecmp(argv[2].p, "POOLED", 6) != 0) {
            smc_reply_errorf(r, "ERR syntax error: expected POOLED, got '%.*s'",
                             ARG_SHOWN(&argv[2]));
            return -1;
        }
        s.pooled = 1;
    }
    *out = s;
    return 0;
}

int smc_map_new(smc_map **out, const char *name, size_t name_len, const smc_spec *spec)
{
    if (!out || !name || !name_valid(name, name_len) || !spec_valid(spec))
        return SM_EINVAL;
    smc_map *m = calloc(1, sizeof *m + name_len + 1);
    if (!m)
        return SM_ENOMEM;
    memcpy(m->name, name, name_len);
    m->spec = *spec;
    m->vsize = types[spec->type].size * spec->len;
    sm_layout layout = {types[spec->type].size, types[spec->type].size, spec->len,
                        types[spec->type].name};
    int rc = 0;
    if (spec->pooled) {
        sm_pool_opts po = {.layout = layout, .name = m->name};
        rc = sm_pool_new(&m->pool, &po);
        if (rc != 0) {
            free(m);
            return rc;
        }
    }
    sm_map_opts mo = {.layout = layout,
                      .storage = spec->pooled ? SM_POOLED : SM_INLINE,
                      .pool = m->pool,
                      .name = m->name};
    rc = sm_cmap_new(&m->cm, &mo);
    if (rc != 0) {
        sm_pool_free(m->pool);
        free(m);
        return rc;
    }
    for (int i = 0; i < SMC_STRIPES; i++)
        pthread_mutex_init(&m->stripes[i], NULL);
    atomic_init(&m->obs_fn, NULL);
    atomic_init(&m->obs_ctx, NULL);
    atomic_init(&m->refs, 1);
    *out = m;
    return 0;
}

void smc_map_free(smc_map *m)
{
    if (!m)
        return;
    sm_cmap_free(m->cm);
    sm_pool_free(m->pool);
    for (int i = 0; i < SMC_STRIPES; i++)
        pthread_mutex_destroy(&m->stripes[i]);
    free(m);
}

void smc_map_retain(smc_map *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void smc_map_release(smc_map *m)
{
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        smc_map_free(m);
}

const char *smc_map_name(const smc_map *m)
{
    return m->name;
}

const smc_spec *smc_map_spec(const smc_map *m)
{
    return &m->spec;
}

size_t smc_map_value_size(const smc_map *m)
{
    return m->vsize;
}

sm_cmap *smc_map_cmap(smc_map *m)
{
    return m->cm;
}

void smc_map_observe(smc_map *m, smc_write_fn fn, void *ctx)
{
    atomic_store_explicit(&m->obs_ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&m->obs_fn, fn, memory_order_release);
}

/* ---- Writes ------------------------------------------------------------ */

static pthread_mutex_t *stripe_of(smc_map *m, int64_t key)
{
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15u;
    return &m->stripes[h >> 56];
}

/* Puts (value) or deletes (NULL) key, calling the observer under the key's
 * stripe when one is installed.  Returns the library's code; *obs_rc is the
 * observer's nonzero return, if any. */
static int map_write(smc_map *m, int64_t key, const void *value, int *obs_rc)
{
    *obs_rc = 0;
    smc_write_fn fn = atomic_load_explicit(&m->obs_fn, memory_order_acquire);
    if (!fn)
        return value ? sm_cmap_put(m->cm, key, value) : sm_cmap_del(m->cm, key);
    pthread_mutex_t *mu = stripe_of(m, key);
    pthread_mutex_lock(mu);
    int rc = value ? sm_cmap_put(m->cm, key, value) : sm_cmap_del(m->cm, key);
    if (rc == 0)
        *obs_rc = fn(m, key, value, atomic_load_explicit(&m->obs_ctx, memory_order_relaxed));
    pthread_mutex_unlock(mu);
    return rc;
}

static int reply_obs_error(smc_reply *r, int obs_rc)
{
    smc_reply_errorf(r, "ERR the write was applied but could not be logged (%s)",
                     sm_strerror(obs_rc < 0 ? obs_rc : SM_EIO));
    return SM_EIO;
}

/* ---- Value buffers ----------------------------------------------------- */

typedef struct vbuf {
    _Alignas(16) unsigned char stack[SMC_STACK_VALUE];
    unsigned char *p;
} vbuf;

static int vbuf_init(vbuf *b, size_t n)
{
    b->p = n <= sizeof b->stack ? b->stack : malloc(n);
    return b->p ? 0 : SM_ENOMEM;
}

static void vbuf_free(vbuf *b)
{
    if (b->p != b->stack)
        free(b->p);
}

/* Replies one value as SM.GET does. */
static void reply_value(smc_map *m, const unsigned char *v, smc_reply *r)
{
    const type_info *ti = &types[m->spec.type];
    size_t len = m->spec.len;
    r->ops->array(r->ctx, len);
    for (size_t i = 0; i < len; i++) {
        const unsigned char *e = v + i * ti->size;
        char txt[40];
        switch (m->spec.type) {
        case SMC_FLOAT: {
            float f;
            memcpy(&f, e, sizeof f);
            size_t n = format_real(txt, sizeof txt, f, 1);
            if (r->resp3)
                r->ops->dbl(r->ctx, isnan(f) || isinf(f) ? (double)f : strtod(txt, NULL));
            else
                r->ops->bulk(r->ctx, txt, n);
            break;
        }
        case SMC_DOUBLE: {
            double d;
            memcpy(&d, e, sizeof d);
            if (r->resp3)
                r->ops->dbl(r->ctx, d);
            else
                r->ops->bulk(r->ctx, txt, format_real(txt, sizeof txt, d, 0));
            break;
        }
        case SMC_INT8: {
            int8_t x;
            memcpy(&x, e, 1);
            r->ops->integer(r->ctx, x);
            break;
        }
        case SMC_INT16: {
            int16_t x;
            memcpy(&x, e, 2);
            r->ops->integer(r->ctx, x);
            break;
        }
        case SMC_INT32: {
            int32_t x;
            memcpy(&x, e, 4);
            r->ops->integer(r->ctx, x);
            break;
        }
        case SMC_INT64: {
            int64_t x;
            memcpy(&x, e, 8);
            r->ops->integer(r->ctx, x);
            break;
        }
        case SMC_UINT8:
            r->ops->integer(r->ctx, e[0]);
            break;
        case SMC_UINT16: {
            uint16_t x;
            memcpy(&x, e, 2);
            r->ops->integer(r->ctx, x);
            break;
        }
        case SMC_UINT32: {
            uint32_t x;
            memcpy(&x, e, 4);
            r->ops->integer(r->ctx, x);
            break;
        }
        default: {
            uint64_t x;
            memcpy(&x, e, 8);
            if (x <= INT64_MAX) {
                r->ops->integer(r->ctx, (long long)x);
            } else {
                int n = snprintf(txt, sizeof txt, "%llu", (unsigned long long)x);
                r->ops->bulk(r->ctx, txt, (size_t)n);
            }
            break;
        }
        }
    }
}

/* Checks that every argument from first on is a key.  Returns 0 or an error
 * code after replying. */
static int check_keys(int argc, const smc_arg *argv, int first, smc_reply *r)
{
    int64_t k;
    for (int i = first; i < argc; i++)
        if (smc_parse_key(&argv[i], &k) != 0)
            return reply_bad_key(r, &argv[i]);
    return 0;
}

/* ---- Commands ---------------------------------------------------------- */

static int cmd_put(smc_map *m, int argc, const smc_arg *argv, smc_reply *r)
{
    int64_t key;
    if (smc_parse_key(&argv[2], &key) != 0)
        return reply_bad_key(r, &argv[2]);
    size_t nvals = (size_t)argc - 3;
    if (nvals != m->spec.len) {
        smc_reply_errorf(r, "WRONGLEN map '%s' holds %s[%zu], got %zu value%s", m->name,
                         types[m->spec.type].name, m->spec.len, nvals, nvals == 1 ? "" : "s");
        return SM_EINVAL;
    }
    vbuf b;
    if (vbuf_init(&b, m->vsize) != 0)
        return reply_lib_error(r, SM_ENOMEM);
    size_t esize = types[m->spec.type].size;
    int rc = 0;
    for (size_t i = 0; i < nvals && rc == 0; i++)
        if (parse_elem(m->spec.type, &argv[3 + i], b.p + i * esize, r) != 0)
            rc = SM_EINVAL;
    if (rc == 0) {
        int obs_rc;
        rc = map_write(m, key, b.p, &obs_rc);
        if (rc != 0)
            reply_lib_error(r, rc);
        else if (obs_rc != 0)
            rc = reply_obs_error(r, obs_rc);
        else
            reply_simple(r, "OK");
    }
    vbuf_free(&b);
    return rc == 0 ? 1 : rc;
}

static int cmd_putb(smc_map *m, int argc, const smc_arg *argv, smc_reply *r)
{
    (void)argc;
    int64_t key;
    if (smc_parse_key(&argv[2], &key) != 0)
        return reply_bad_key(r, &argv[2]);
    if (argv[3].n != m->vsize) {
        smc_reply_errorf(r, "ERR SM.PUTB expects %zu bytes for %s[%zu], got %zu", m->vsize,
                         types[m->spec.type].name, m->spec.len, argv[3].n);
        return SM_EINVAL;
    }
    const void *src = argv[3].p;
    vbuf b = {.p = NULL};
    if (((uintptr_t)src & (types[m->spec.type].size - 1)) != 0) {
        /* The library copies bytes, but hand it an aligned value anyway. */
        if (vbuf_init(&b, m->vsize) != 0)
            return reply_lib_error(r, SM_ENOMEM);
        memcpy(b.p, src, m->vsize);
        src = b.p;
    }
    int obs_rc;
    int rc = map_write(m, key, src, &obs_rc);
    if (b.p)
        vbuf_free(&b);
    if (rc != 0)
        return reply_lib_error(r, rc);
    if (obs_rc != 0)
        return reply_obs_error(r, obs_rc);
    reply_simple(r, "OK");
    return 1;
}

/* Reads key into b.  Returns 0, SM_ENOENT or another library code. */
static int read_value(smc_map *m, int64_t key, vbuf *b)
{
    return sm_cmap_get(m->cm, key, b->p);
}

static int cmd_get_common(smc_map *m, const smc_arg *argv, smc_reply *r, int raw)
{
    int64_t key;
    if (smc_parse_key(&argv[2], &key) != 0)
        return reply_bad_key(r, &argv[2]);
    vbuf b;
    if (vbuf_init(&b, m->vsize) != 0)
        return reply_lib_error(r, SM_ENOMEM);
    int rc = read_value(m, key, &b);
    if (rc == SM_ENOENT) {
        if (raw)
            r->ops->null(r->ctx);
        else
            reply_null_array(r);
        rc = 0;
    } else if (rc != 0) {
        reply_lib_error(r, rc);
    } else if (raw) {
        r->ops->bulk(r->ctx, b.p, m->vsize);
    } else {
        reply_value(m, b.p, r);
    }
    vbuf_free(&b);
    return rc;
}

static int cmd_get(smc_map *m, int argc, const smc_arg *argv, smc_reply *r)
{
    (void)argc;
    return cmd_get_common(m, argv, r, 0);
}

static int cmd_getb(smc_map *m, int argc, const smc_arg *argv, smc_reply *r)
{
    (void)argc;
    return cmd_get_common(m, argv, r, 1);
}

static int cmd_mget(smc_map *m, int argc, const smc_arg *argv, smc_reply *r)
{
    int rc = check_keys(argc, argv, 2, r);
    if (rc != 0)
        return rc;
    vbuf b;
    if (vbuf_init(&b, m->vsize) != 0)
        return reply_lib_error(r, SM_ENOMEM);
    /* A library failure here (only SM_ENOMEM registering the thread's first
     * read) would come after the array header: check the first read before
     * replying anything, later ones cannot fail that way. */
    int64_t key;
    smc_parse_key(&argv[2], &key);
    rc = read_value(m, key, &b);
    if (rc != 0 && rc != SM_ENOENT) {
        vbuf_free(&b);
        return reply_lib_error(r, rc);
    }
    r->ops->array(r->ctx, (size_t)argc - 2);
    for (int i = 2; i < argc; i++) {
        if (i > 2) {
            smc_parse_key(&argv[i], &key);
            rc = read_value(m, key, &b);
        }
        if (rc == 0)
            reply_value(m, b.p, r);
        else
            reply_null_array(r);
    }
    vbuf_free(&b);
    return 0;
}

static int cmd_exists(smc_map *m, int argc, const smc_arg *argv, smc_reply *r)
{
    int rc = check_keys(argc, argv, 2, r);
    if (rc != 0)
        return rc;
    long long n = 0;
    if (m->pool && sm_cmap_read_begin(m->cm) == 0) {
        /* Pooled: the array's address says it all, nothing to copy. */
        for (int i = 2; i < argc; i++) {
            int64_t key;
            smc_parse_key(&argv[i], &key);
            n += sm_cmap_find(m->cm, key) != NULL;
        }
        sm_cmap_read_end(m->cm);
        r->ops->integer(r->ctx, n);
        return 0;
    }
    vbuf b;
    if (vbuf_init(&b, m->vsize) != 0)
        return reply_lib_error(r, SM_ENOMEM);
    for (int i = 2; i < argc; i++) {
        int64_t key;
        smc_parse_key(&argv[i], &key);
        rc = read_value(m, key, &b);
        if (rc == 0)
            n++;
        else if (rc != SM_ENOENT)
            break;
    }
    vbuf_free(&b);
    if (rc != 0 && rc != SM_ENOENT)
        return reply_lib_error(r, rc);
    r->ops->integer(r->ctx, n);
    return 0;
}

static int cmd_del(smc_map *m, int argc, const smc_arg *argv, smc_reply *r)
{
    int rc = check_keys(argc, argv, 2, r);
    if (rc != 0)
        return rc;
    long long n = 0;
    for (int i = 2; i < argc; i++) {
        int64_t key;
        int obs_rc;
        smc_parse_key(&argv[i], &key);
        rc = map_write(m, key, NULL, &obs_rc);
        if (rc == SM_ENOENT)
            continue;
        if (rc != 0)
            return reply_lib_error(r, rc);
        if (obs_rc != 0)
            return reply_obs_error(r, obs_rc);
        n++;
    }
    r->ops->integer(r->ctx, n);
    return n > 0;
}

static int cmd_len(smc_map *m, int argc, const smc_arg *argv, smc_reply *r)
{
    (void)argc;
    (void)argv;
    r->ops->integer(r->ctx, (long long)sm_cmap_len(m->cm));
    return 0;
}

static void reply_field_int(smc_reply *r, const char *name, long long v)
{
    reply_bulk_str(r, name);
    r->ops->integer(r->ctx, v);
}

/* smc_map_bytes with the cmap's statistics for the caller; 0 when the
 * statistics cannot be read (then *st is zeroed). */
static size_t map_bytes(smc_map *m, struct sm_cmap_stats *st)
{
    if (sm_cmap_stats(m->cm, st) != 0) {
        memset(st, 0, sizeof *st);
        return 0;
    }
    size_t bytes = sizeof *m + strlen(m->name) + 1 + st->bytes;
    if (m->pool) {
        struct sm_pool_stats ps;
        if (sm_pool_stats(m->pool, &ps) == 0)
            bytes += ps.reserved_bytes;
    }
    return bytes;
}

size_t smc_map_bytes(smc_map *m)
{
    struct sm_cmap_stats st;
    return m ? map_bytes(m, &st) : 0;
}

static int cmd_info(smc_map *m, int argc, const smc_arg *argv, smc_reply *r)
{
    (void)argc;
    (void)argv;
    struct sm_cmap_stats st;
    size_t bytes = map_bytes(m, &st);
    if (bytes == 0)
        return reply_lib_error(r, SM_EINVAL);
    r->ops->map(r->ctx, 10);
    reply_bulk_str(r, "name");
    reply_bulk_str(r, m->name);
    reply_bulk_str(r, "type");
    reply_bulk_str(r, types[m->spec.type].name);
    reply_field_int(r, "len", (long long)m->spec.len);
    reply_field_int(r, "pooled", m->spec.pooled);
    reply_field_int(r, "entries", (long long)st.len);
    reply_field_int(r, "bytes", (long long)bytes);
    reply_field_int(r, "segments", (long long)st.segments);
    reply_field_int(r, "splits", (long long)st.splits);
    reply_field_int(r, "read_retries", (long long)st.read_retries);
    reply_field_int(r, "limbo_bytes", (long long)st.limbo_bytes);
    return 0;
}

/* SM.SCAN: a bounded max-heap of the smallest biased keys >= from. */
typedef struct scan_ctx {
    uint64_t from;
    uint64_t *heap; /* biased keys, max at heap[0] */
    size_t n, cap, limit;
    int oom;
} scan_ctx;

static uint64_t bias(int64_t k)
{
    return (uint64_t)k ^ ((uint64_t)1 << 63);
}

static void heap_down(uint64_t *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, big = i;
        if (l < n && h[l] > h[big])
            big = l;
        if (l + 1 < n && h[l + 1] > h[big])
            big = l + 1;
        if (big == i)
            return;
        uint64_t t = h[i];
        h[i] = h[big];
        h[big] = t;
        i = big;
    }
}

static int scan_visit(int64_t key, const void *value, void *ctx)
{
    (void)value;
    scan_ctx *s = ctx;
    uint64_t b = bias(key);
    if (b < s->from)
        return 0;
    if (s->n == s->limit) {
        if (b >= s->heap[0])
            return 0;
        s->heap[0] = b;
        heap_down(s->heap, s->n, 0);
        return 0;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap * 2 > s->limit ? s->limit : s->cap * 2;
        uint64_t *h = realloc(s->heap, cap * sizeof *h);
        if (!h) {
            s->oom = 1;
            return 1;
        }
        s->heap = h;
        s->cap = cap;
    }
    size_t i = s->n++;
    s->heap[i] = b;
    while (i > 0 && s->heap[(i - 1) / 2] < s->heap[i]) {
        uint64_t t = s->heap[i];
        s->heap[i] = s->heap[(i - 1) / 2];
        s->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
    return 0;
}

static int cmd_scan(smc_map *m, int argc, const smc_arg *argv, smc_reply *r)
{
    int neg;
    unsigned long long from, count = SMC_SCAN_DEFAULT;
    if (parse_u64(argv[2].p, argv[2].n, 0, &neg, &from) != 0) {
        smc_reply_errorf(r, "ERR invalid cursor '%.*s'", ARG_SHOWN(&argv[2]));
        return SM_EINVAL;
    }
    if (argc == 5) {
        if (argv[3].n != 5 || strncasecmp(argv[3].p, "COUNT", 5) != 0) {
            smc_reply_errorf(r, "ERR syntax error: expected COUNT, got '%.*s'",
                             ARG_SHOWN(&argv[3]));
            return SM_EINVAL;
        }
        if (parse_u64(argv[4].p, argv[4].n, 0, &neg, &count) != 0 || count < 1 ||
            count > SMC_SCAN_MAX) {
            smc_reply_errorf(r, "ERR COUNT '%.*s' is not an integer in 1..%lld",
                             ARG_SHOWN(&argv[4]), SMC_SCAN_MAX);
            return SM_EINVAL;
        }
    }
    scan_ctx s = {.from = from, .limit = (size_t)count};
    s.cap = s.limit < 64 ? s.limit : 64;
    s.heap = malloc(s.cap * sizeof *s.heap);
    if (!s.heap)
        return reply_lib_error(r, SM_ENOMEM);
    int rc = sm_cmap_each(m->cm, scan_visit, &s);
    if (s.oom || (rc != 0 && rc != 1)) {
        free(s.heap);
        return reply_lib_error(r, s.oom ? SM_ENOMEM : rc);
    }
    /* Heap sort in place: ascending. */
    for (size_t end = s.n; end > 1; end--) {
        uint64_t t = s.heap[0];
        s.heap[0] = s.heap[end - 1];
        s.heap[end - 1] = t;
        heap_down(s.heap, end - 1, 0);
    }
    uint64_t next = s.n == s.limit ? s.heap[s.n - 1] + 1 : 0; /* wraps to 0 past INT64_MAX */
    char txt[24];
    int tn = snprintf(txt, sizeof txt, "%llu", (unsigned long long)next);
    r->ops->array(r->ctx, 2);
    r->ops->bulk(r->ctx, txt, (size_t)tn);
    r->ops->array(r->ctx, s.n);
    for (size_t i = 0; i < s.n; i++)
        r->ops->integer(r->ctx, (long long)(int64_t)(s.heap[i] ^ ((uint64_t)1 << 63)));
    free(s.heap);
    return 0;
}

typedef int (*cmd_fn)(smc_map *m, int argc, const smc_arg *argv, smc_reply *r);

typedef struct cmd_def {
    const char *name; /* lower case */
    size_t len;
    cmd_fn fn;
    int min_argc, max_argc; /* max -1: any */
    unsigned flags;
} cmd_def;

static const cmd_def cmds[] = {
    {"sm.put", 6, cmd_put, 4, -1, SMC_CMD_WRITE | SMC_CMD_FAST},
    {"sm.putb", 7, cmd_putb, 4, 4, SMC_CMD_WRITE | SMC_CMD_FAST},
    {"sm.get", 6, cmd_get, 3, 3, SMC_CMD_READ | SMC_CMD_FAST},
    {"sm.getb", 7, cmd_getb, 3, 3, SMC_CMD_READ | SMC_CMD_FAST},
    {"sm.mget", 7, cmd_mget, 3, -1, SMC_CMD_READ | SMC_CMD_FAST},
    {"sm.del", 6, cmd_del, 3, -1, SMC_CMD_WRITE},
    {"sm.exists", 9, cmd_exists, 3, -1, SMC_CMD_READ | SMC_CMD_FAST},
    {"sm.len", 6, cmd_len, 2, 2, SMC_CMD_READ | SMC_CMD_FAST},
    {"sm.scan", 7, cmd_scan, 3, 5, SMC_CMD_READ},
    {"sm.info", 7, cmd_info, 2, 2, SMC_CMD_READ},
};

/* ASCII case-insensitive: lower is the lower-case name (strncasecmp would
 * consult the locale on the hot path). */
static int name_is(const char *lower, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

static const cmd_def *cmd_find(const smc_arg *name)
{
    if (!name || name->n < 5 || name->n > 9)
        return NULL;
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (cmds[i].len == name->n && name_is(cmds[i].name, name->p, name->n))
            return &cmds[i];
    return NULL;
}

unsigned smc_cmd_flags(const smc_arg *name)
{
    const cmd_def *c = cmd_find(name);
    return c ? c->flags : 0;
}

int smc_map_exec(smc_map *m, int argc, const smc_arg *argv, smc_reply *r)
{
    const cmd_def *c = argc > 0 ? cmd_find(&argv[0]) : NULL;
    if (!c) {
        if (argc > 0)
            smc_reply_errorf(r, "ERR unknown command '%.*s'", ARG_SHOWN(&argv[0]));
        else
            smc_reply_errorf(r, "ERR empty command");
        return SM_EINVAL;
    }
    if (argc < c->min_argc || (c->max_argc >= 0 && argc > c->max_argc) ||
        (c->fn == cmd_scan && argc == 4))
        return reply_arity(r, c->name);
    return c->fn(m, argc, argv, r);
}
