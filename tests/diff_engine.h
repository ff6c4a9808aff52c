/*
 * diff_engine.h - applies one operation to a safemap map and to the
 * reference model (model.h) and checks that they agree.
 *
 * The differential test drives it with random operations and the fuzzer
 * with operations decoded from its input; both get the same checks.  After
 * every step the engine checks that the lengths agree and that
 * sm_map_verify() returns 0 (the caller may clear run->verify for a step:
 * verification costs O(capacity)).  A step returns 0, or -1 with a message in
 * run->err; the caller decides what a failure means (report and stop, or
 * abort for the fuzzer).
 *
 * Values are byte patterns derived from the key and a running stamp, so
 * every write is distinguishable from the last one.  Padding bytes are part
 * of the pattern: the map copies values whole.
 *
 * A configuration (diff_config) names a layout, a storage mode and a check
 * level.  SM_POOLED configurations need the pool (sm_pool_new), which the
 * tests build compiles in when src/pool.c exists (SM_TEST_HAVE_POOL); for
 * them the engine also checks that a value's address is stable while its
 * key lives.
 */
#ifndef SM_TEST_DIFF_ENGINE_H
#define SM_TEST_DIFF_ENGINE_H

#include "model.h"
#include "support.h"

#include <inttypes.h>
#include <stdarg.h>

typedef struct diff_config {
    const char *name;
    sm_layout layout;
    int storage;     /* SM_INLINE or SM_POOLED */
    int check;       /* SM_CHECK_* */
    unsigned weight; /* share of the operations; costlier layouts get less */
} diff_config;

typedef struct diff_padded {
    char c;
    double d;
    short s;
} diff_padded;

#define DIFF_CONFIG_ROWS(NAME, LAYOUT, WEIGHT)                                                     \
    {NAME "/inline/off", LAYOUT, SM_INLINE, SM_CHECK_OFF, WEIGHT},                                 \
        {NAME "/inline/cheap", LAYOUT, SM_INLINE, SM_CHECK_CHEAP, WEIGHT},                         \
    {                                                                                              \
        NAME "/inline/full", LAYOUT, SM_INLINE, SM_CHECK_FULL, WEIGHT                              \
    }

/* The one table of configurations, shared by the differential test and the
 * fuzzer.  SM_POOLED rows join when the pool exists. */
static const diff_config diff_configs[] = {
    DIFF_CONFIG_ROWS("u8x1", SM_LAYOUT(uint8_t, 1), 4),
    DIFF_CONFIG_ROWS("i64x8", SM_LAYOUT(int64_t, 8), 4),
    DIFF_CONFIG_ROWS("paddedx3", SM_LAYOUT(diff_padded, 3), 3),
    DIFF_CONFIG_ROWS("i64x64", SM_LAYOUT(int64_t, 64), 2),
#ifdef SM_TEST_HAVE_POOL
    {"u8x1/pooled/cheap", SM_LAYOUT(uint8_t, 1), SM_POOLED, SM_CHECK_CHEAP, 2},
    {"i64x8/pooled/off", SM_LAYOUT(int64_t, 8), SM_POOLED, SM_CHECK_OFF, 2},
    {"i64x8/pooled/cheap", SM_LAYOUT(int64_t, 8), SM_POOLED, SM_CHECK_CHEAP, 2},
    {"i64x8/pooled/full", SM_LAYOUT(int64_t, 8), SM_POOLED, SM_CHECK_FULL, 2},
    {"paddedx3/pooled/cheap", SM_LAYOUT(diff_padded, 3), SM_POOLED, SM_CHECK_CHEAP, 2},
    {"i64x64/pooled/full", SM_LAYOUT(int64_t, 64), SM_POOLED, SM_CHECK_FULL, 1},
#endif
};
#define DIFF_NCONFIGS (sizeof diff_configs / sizeof diff_configs[0])

/* Keys worth trying in every map: no int64_t value is reserved. */
/* The hash seed of every map of the differential test. */
#define DIFF_SEED 0xD1FFull

static const int64_t diff_extreme_keys[] = {
    0,
    1,
    -1,
    2,
    -2,
    INT64_MIN,
    INT64_MIN + 1,
    INT64_MAX,
    INT64_MAX - 1,
    INT32_MAX,
    INT32_MIN,
    (int64_t)1 << 32,
    -((int64_t)1 << 32),
    (int64_t)1 << 62,
};
#define DIFF_NEXTREME (sizeof diff_extreme_keys / sizeof diff_extreme_keys[0])

enum diff_op {
    DOP_PUT,
    DOP_GET,
    DOP_FIND,
    DOP_UPSERT,
    DOP_DEL,
    DOP_CLEAR,
    DOP_RESERVE,
    DOP_ITER,     /* a full pass, compared with the model */
    DOP_ITER_DEL, /* a full pass deleting some of the entries it returns */
    DOP_COUNT
};

static const char *const diff_op_names[DOP_COUNT] = {
    "put", "get", "find", "upsert", "del", "clear", "reserve", "iter", "iter_del",
};

typedef struct diff_run {
    const diff_config *config;
    sm_map *map;
    sm_pool *pool;
    model ref;
    size_t vsize, align;
    uint64_t stamp;     /* bumped for every value written */
    uint32_t pass;      /* iteration pass, for model marks */
    unsigned char *buf; /* one value */
    unsigned char *out; /* one value, for sm_map_get */
    unsigned char *zero;
    int verify; /* call sm_map_verify after each step (the caller may thin it out) */
    int pinned; /* SM_POOLED: pin_key's value must stay at pin_ptr */
    int64_t pin_key;
    void *pin_ptr;
    char err[512];
} diff_run;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static inline int
diff_fail(diff_run *r, const char *fmt, ...)
{
    if (r->err[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, sizeof r->err, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Creates the map (and pool) for config c.  Returns 0 or the library's code. */
static inline int diff_open(diff_run *r, const diff_config *c)
{
    memset(r, 0, sizeof *r);
    r->config = c;
    r->verify = 1;
    r->vsize = c->layout.elem_size * c->layout.len;
    r->align = c->layout.elem_align;
    model_init(&r->ref, r->vsize);
    r->buf = malloc(r->vsize);
    r->out = malloc(r->vsize);
    r->zero = calloc(1, r->vsize);
    if (!r->buf || !r->out || !r->zero)
        abort();
    /* A fixed seed: a failing sequence replays exactly, and keys can be
     * crafted against it (see pick_key in test_map_diff.c). */
    sm_map_opts o = {.layout = c->layout,
                     .storage = c->storage,
                     .check = c->check,
                     .fixed_seed = 1,
                     .seed = DIFF_SEED};
#ifdef SM_TEST_HAVE_POOL
    if (c->storage == SM_POOLED) {
        sm_pool_opts po;
        memset(&po, 0, sizeof po);
        po.layout = c->layout;
        po.check = c->check;
        int rc = sm_pool_new(&r->pool, &po);
        if (rc)
            return rc;
        o.pool = r->pool;
    }
#endif
    return sm_map_new(&r->map, &o);
}

static inline void diff_close(diff_run *r)
{
    sm_map_free(r->map);
#ifdef SM_TEST_HAVE_POOL
    sm_pool_free(r->pool);
#endif
    model_destroy(&r->ref);
    free(r->buf);
    free(r->out);
    free(r->zero);
    r->map = NULL;
    r->pool = NULL;
}

/* A fresh pattern for key in r->buf. */
static inline void diff_make_value(diff_run *r, int64_t key)
{
    uint64_t seed = splitmix64((uint64_t)key ^ (++r->stamp << 17));
    for (size_t i = 0; i < r->vsize; i += 8) {
        uint64_t x = splitmix64(seed + i);
        size_t n = r->vsize - i < 8 ? r->vsize - i : 8;
        memcpy(r->buf + i, &x, n);
    }
}

static inline int diff_aligned(const diff_run *r, const void *p)
{
    return ((uintptr_t)p % r->align) == 0;
}

/* Compares the map's value for the model's entry i at p. */
static inline int diff_same_value(diff_run *r, const char *where, size_t i, const void *p)
{
    if (!diff_aligned(r, p))
        return diff_fail(r, "%s: key %" PRId64 ": value %p not aligned to %zu", where,
                         r->ref.keys[i], p, r->align);
    if (memcmp(p, model_value(&r->ref, i), r->vsize) != 0)
        return diff_fail(r, "%s: key %" PRId64 ": value differs from the model", where,
                         r->ref.keys[i]);
    return 0;
}

static inline int diff_put(diff_run *r, int64_t key)
{
    diff_make_value(r, key);
    int rc = sm_map_put(r->map, key, r->buf);
    if (rc != 0)
        return diff_fail(r, "put %" PRId64 ": returned %d (%s)", key, rc, sm_strerror(rc));
    model_put(&r->ref, key, r->buf);
    return 0;
}

static inline int diff_get(diff_run *r, int64_t key)
{
    memset(r->out, 0xEE, r->vsize);
    int rc = sm_map_get(r->map, key, r->out);
    size_t i = model_find(&r->ref, key);
    if (i == MODEL_NONE) {
        if (rc != SM_ENOENT)
            return diff_fail(r, "get %" PRId64 ": absent key returned %d", key, rc);
        for (size_t b = 0; b < r->vsize; b++)
            if (r->out[b] != 0xEE)
                return diff_fail(r, "get %" PRId64 ": SM_ENOENT but wrote to out", key);
        return 0;
    }
    if (rc != 0)
        return diff_fail(r, "get %" PRId64 ": present key returned %d", key, rc);
    if (memcmp(r->out, model_value(&r->ref, i), r->vsize) != 0)
        return diff_fail(r, "get %" PRId64 ": value differs from the model", key);
    return 0;
}

static inline void diff_pin(diff_run *r, int64_t key, void *p)
{
    if (r->config->storage != SM_POOLED)
        return;
    r->pinned = 1;
    r->pin_key = key;
    r->pin_ptr = p;
}

static inline int diff_find(diff_run *r, int64_t key, uint64_t arg)
{
    void *p = sm_map_find(r->map, key);
    size_t i = model_find(&r->ref, key);
    if (i == MODEL_NONE)
        return p ? diff_fail(r, "find %" PRId64 ": absent key gave a pointer", key) : 0;
    if (!p)
        return diff_fail(r, "find %" PRId64 ": present key gave NULL", key);
    if (diff_same_value(r, "find", i, p))
        return -1;
    if (arg & 1) { /* write through the pointer: it is the live value */
        diff_make_value(r, key);
        memcpy(p, r->buf, r->vsize);
        model_put(&r->ref, key, r->buf);
    }
    if (arg & 2)
        diff_pin(r, key, p);
    return 0;
}

static inline int diff_upsert(diff_run *r, int64_t key, uint64_t arg)
{
    int inserted = -1;
    size_t i = model_find(&r->ref, key);
    void *p = sm_map_upsert(r->map, key, &inserted);
    if (!p)
        return diff_fail(r, "upsert %" PRId64 ": returned NULL", key);
    if (!diff_aligned(r, p))
        return diff_fail(r, "upsert %" PRId64 ": value %p not aligned to %zu", key, p, r->align);
    if (inserted != (i == MODEL_NONE))
        return diff_fail(r, "upsert %" PRId64 ": inserted=%d but key was %s", key, inserted,
                         i == MODEL_NONE ? "absent" : "present");
    if (i == MODEL_NONE) {
        if (memcmp(p, r->zero, r->vsize) != 0)
            return diff_fail(r, "upsert %" PRId64 ": new value not zeroed", key);
        model_put(&r->ref, key, r->zero);
    } else if (diff_same_value(r, "upsert", i, p)) {
        return -1;
    }
    if (arg & 1) {
        diff_make_value(r, key);
        memcpy(p, r->buf, r->vsize);
        model_put(&r->ref, key, r->buf);
    }
    if (arg & 2)
        diff_pin(r, key, p);
    return 0;
}

static inline int diff_del(diff_run *r, int64_t key)
{
    int rc = sm_map_del(r->map, key);
    int had = model_del(&r->ref, key);
    if (rc != (had ? 0 : SM_ENOENT))
        return diff_fail(r, "del %" PRId64 ": returned %d, key was %s", key, rc,
                         had ? "present" : "absent");
    return 0;
}

static inline int diff_reserve(diff_run *r, uint64_t arg)
{
    size_t n = (arg % 4 == 0) ? r->ref.len / 2 : r->ref.len + (size_t)(arg >> 2) % 1024;
    int rc = sm_map_reserve(r->map, n);
    if (rc != 0)
        return diff_fail(r, "reserve %zu: returned %d", n, rc);
    return 0;
}

/* Decides from (key, arg) whether an iteration step acts on this entry:
 * with probability (arg % 5) / 4, so passes range from none to all. */
static inline int diff_pick(int64_t key, uint64_t arg)
{
    return splitmix64((uint64_t)key ^ arg) % 4 < (arg % 5);
}

/* One full pass.  Every model entry must come back exactly once with its
 * value.  With arg & 8, some values are rewritten through the iterator's
 * pointer; with del, some entries are deleted as they are returned (the one
 * mutation iteration allows), and with arg & 16 the map is verified right
 * after the first few such deletes (verification costs O(capacity)). */
static inline int diff_iterate(diff_run *r, uint64_t arg, int del)
{
    const char *name = del ? "iter_del" : "iter";
    uint32_t pass = ++r->pass;
    size_t expect = r->ref.len, visited = 0, deleted = 0;
    sm_iter it = sm_map_iter(r->map);
    int64_t key;
    void *value;
    int rc;
    while ((rc = sm_iter_next(&it, &key, &value)) == 1) {
        size_t i = model_find(&r->ref, key);
        if (i == MODEL_NONE)
            return diff_fail(r, "%s: returned key %" PRId64 " that is absent (or deleted)", name,
                             key);
        if (r->ref.mark[i] == pass)
            return diff_fail(r, "%s: returned key %" PRId64 " twice", name, key);
        r->ref.mark[i] = pass;
        visited++;
        if (!value)
            return diff_fail(r, "%s: key %" PRId64 " with a NULL value", name, key);
        if (diff_same_value(r, name, i, value))
            return -1;
        if (!diff_pick(key, arg))
            continue;
        if (del) {
            int drc = sm_map_del(r->map, key);
            if (drc != 0)
                return diff_fail(r, "iter_del: del of current key %" PRId64 " returned %d", key,
                                 drc);
            model_del(&r->ref, key);
            if ((arg & 16) && deleted++ < 3 && sm_map_verify(r->map) != 0)
                return diff_fail(r, "iter_del: sm_map_verify failed after deleting %" PRId64, key);
        } else if (arg & 8) {
            diff_make_value(r, key);
            memcpy(value, r->buf, r->vsize);
            model_put(&r->ref, key, r->buf);
        }
    }
    if (rc != 0)
        return diff_fail(r, "%s: sm_iter_next returned %d after %zu entries", name, rc, visited);
    if (visited != expect)
        return diff_fail(r, "%s: visited %zu entries, the model had %zu", name, visited, expect);
    return 0;
}

/* Compares every model entry with the map through sm_map_get. */
static inline int diff_check_all(diff_run *r)
{
    for (size_t i = 0; i < r->ref.len; i++)
        if (diff_get(r, r->ref.keys[i]))
            return -1;
    return 0;
}

/* The checks after every step: length, sm_map_verify, and (SM_POOLED) the
 * pinned value's address. */
static inline int diff_after_step(diff_run *r)
{
    size_t len = sm_map_len(r->map);
    if (len != r->ref.len)
        return diff_fail(r, "sm_map_len is %zu, the model has %zu", len, r->ref.len);
    int rc = r->verify ? sm_map_verify(r->map) : 0;
    if (rc != 0)
        return diff_fail(r, "sm_map_verify returned %d", rc);
    if (r->pinned) {
        if (model_find(&r->ref, r->pin_key) == MODEL_NONE) {
            r->pinned = 0;
        } else if (sm_map_find(r->map, r->pin_key) != r->pin_ptr) {
            return diff_fail(r, "SM_POOLED value of key %" PRId64 " moved", r->pin_key);
        }
    }
    return 0;
}

/* Applies op (a diff_op) with key and a free argument to map and model. */
static inline int diff_step(diff_run *r, int op, int64_t key, uint64_t arg)
{
    int rc = 0;
    switch (op) {
    case DOP_PUT:
        rc = diff_put(r, key);
        break;
    case DOP_GET:
        rc = diff_get(r, key);
        break;
    case DOP_FIND:
        rc = diff_find(r, key, arg);
        break;
    case DOP_UPSERT:
        rc = diff_upsert(r, key, arg);
        break;
    case DOP_DEL:
        rc = diff_del(r, key);
        break;
    case DOP_CLEAR:
        sm_map_clear(r->map);
        model_clear(&r->ref);
        break;
    case DOP_RESERVE:
        rc = diff_reserve(r, arg);
        break;
    case DOP_ITER:
        rc = diff_iterate(r, arg, 0);
        break;
    case DOP_ITER_DEL:
        rc = diff_iterate(r, arg, 1);
        break;
    default:
        return diff_fail(r, "unknown op %d", op);
    }
    return rc ? rc : diff_after_step(r);
}

#endif /* SM_TEST_DIFF_ENGINE_H */
