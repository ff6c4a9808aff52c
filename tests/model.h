/*
 * model.h - the reference map the differential tests and the fuzzer compare
 * safemap against.
 *
 * It is built to be obviously right rather than fast: entries live densely
 * in three parallel arrays (keys, values, a scratch mark), and a chained hash
 * index maps a key to its dense position.  Deleting swaps the last entry into
 * the hole, so the dense arrays never have gaps and a full pass over the
 * model is a loop from 0 to len.  Memory comes from malloc, never from the
 * library's allocator, so the model is invisible to allocation counting and
 * fault injection.  Allocation failure of the model itself aborts: it is the
 * test's fault, not the library's.
 */
#ifndef SM_TEST_MODEL_H
#define SM_TEST_MODEL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_NONE SIZE_MAX

typedef struct model {
    size_t vsize; /* bytes per value */
    size_t len, cap;
    int64_t *keys;
    unsigned char *vals; /* cap * vsize */
    uint32_t *mark;      /* per entry, for the caller (iteration checks) */
    size_t *next;        /* chain link: dense index + 1; 0 ends the chain */
    size_t *heads;       /* nbuckets chain heads, dense index + 1 */
    size_t nbuckets;     /* a power of two */
} model;

static inline void *model_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "model: out of memory\n");
        abort();
    }
    return q;
}

static inline size_t model_bucket(const model *m, int64_t key)
{
    uint64_t x = (uint64_t)key * 0x9e3779b97f4a7c15ull;
    x ^= x >> 29;
    return (size_t)(x & (m->nbuckets - 1));
}

static inline void model_init(model *m, size_t vsize)
{
    memset(m, 0, sizeof *m);
    m->vsize = vsize;
    m->nbuckets = 64;
    m->heads = calloc(m->nbuckets, sizeof *m->heads);
    if (!m->heads)
        abort();
}

static inline void model_destroy(model *m)
{
    free(m->keys);
    free(m->vals);
    free(m->mark);
    free(m->next);
    free(m->heads);
    memset(m, 0, sizeof *m);
}

static inline void *model_value(const model *m, size_t i)
{
    return m->vals + i * m->vsize;
}

/* Dense index of key, or MODEL_NONE. */
static inline size_t model_find(const model *m, int64_t key)
{
    for (size_t at = m->heads[model_bucket(m, key)]; at; at = m->next[at - 1])
        if (m->keys[at - 1] == key)
            return at - 1;
    return MODEL_NONE;
}

static inline void model_rehash(model *m, size_t nbuckets)
{
    free(m->heads);
    m->nbuckets = nbuckets;
    m->heads = calloc(nbuckets, sizeof *m->heads);
    if (!m->heads)
        abort();
    for (size_t i = 0; i < m->len; i++) {
        size_t b = model_bucket(m, m->keys[i]);
        m->next[i] = m->heads[b];
        m->heads[b] = i + 1;
    }
}

/* Inserts or replaces key's value (vsize bytes); returns its dense index. */
static inline size_t model_put(model *m, int64_t key, const void *value)
{
    size_t i = model_find(m, key);
    if (i == MODEL_NONE) {
        if (m->len == m->cap) {
            m->cap = m->cap ? 2 * m->cap : 64;
            m->keys = model_xrealloc(m->keys, m->cap * sizeof *m->keys);
            m->vals = model_xrealloc(m->vals, m->cap * m->vsize);
            m->mark = model_xrealloc(m->mark, m->cap * sizeof *m->mark);
            m->next = model_xrealloc(m->next, m->cap * sizeof *m->next);
        }
        i = m->len++;
        m->keys[i] = key;
        m->mark[i] = 0;
        size_t b = model_bucket(m, key);
        m->next[i] = m->heads[b];
        m->heads[b] = i + 1;
        if (m->len > m->nbuckets)
            model_rehash(m, 2 * m->nbuckets);
    }
    memcpy(model_value(m, i), value, m->vsize);
    return i;
}

/* Unlinks dense index i from its chain. */
static inline void model_unlink(model *m, size_t i)
{
    size_t *link = &m->heads[model_bucket(m, m->keys[i])];
    while (*link != i + 1)
        link = &m->next[*link - 1];
    *link = m->next[i];
}

/* Deletes key; returns 1 if it was present.  The last entry moves into the
 * hole, so dense indices other than the deleted one may change. */
static inline int model_del(model *m, int64_t key)
{
    size_t i = model_find(m, key);
    if (i == MODEL_NONE)
        return 0;
    model_unlink(m, i);
    size_t last = m->len - 1;
    if (i != last) {
        model_unlink(m, last);
        m->keys[i] = m->keys[last];
        m->mark[i] = m->mark[last];
        memcpy(model_value(m, i), model_value(m, last), m->vsize);
        size_t b = model_bucket(m, m->keys[i]);
        m->next[i] = m->heads[b];
        m->heads[b] = i + 1;
    }
    m->len--;
    return 1;
}

static inline void model_clear(model *m)
{
    m->len = 0;
    memset(m->heads, 0, m->nbuckets * sizeof *m->heads);
}

#endif /* SM_TEST_MODEL_H */
