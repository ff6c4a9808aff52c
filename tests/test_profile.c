/*
 * test_profile.c - sm_profile_write(): a gzip-compressed profile.proto heap
 * profile of every live pool.
 *
 * The test reads the file back with its own decoders, written from the
 * specifications and sharing nothing with src/profile.c: a gzip reader
 * that accepts exactly what the library promises (a gzip member whose
 * DEFLATE stream is stored blocks) and checks every block's LEN/NLEN, the
 * CRC-32 (a bitwise implementation, itself checked against the standard
 * check value) and ISIZE; and a protobuf reader that knows the fields of
 * profile.proto it needs.  On the decoded profile it checks the sample types
 * and their order, that the values add up to what the pools hold (inuse
 * objects = arrays handed out and not put back), that the Get sites are
 * told apart by function, and that every id refers to something.
 *
 * Call sites are named by dladdr(), which sees exported functions only:
 * tests/profile.cmake links this program with ENABLE_EXPORTS, and the two
 * functions that call Get, profile_get_alpha and profile_get_beta, are not
 * static.  tests/pprof_check.sh runs `go tool pprof -top` on a profile this
 * program writes with --write=PATH.
 */
#define _GNU_SOURCE /* dladdr */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <unistd.h>

#if defined(__GNUC__)
#define T_NOINLINE __attribute__((noinline))
#else
#define T_NOINLINE
#endif

/* ---- The two Get sites ------------------------------------------------- */

void *profile_get_alpha(sm_pool *p);
void *profile_get_beta(sm_pool *p);

/* The empty asm after the call keeps it from becoming a tail call, which
 * would leave no frame of these functions on the stack. */
T_NOINLINE void *profile_get_alpha(sm_pool *p)
{
    void *a = sm_pool_get(p);
    __asm__ volatile("" ::: "memory");
    return a;
}

T_NOINLINE void *profile_get_beta(sm_pool *p)
{
    void *a = sm_pool_get(p);
    __asm__ volatile("" ::: "memory");
    return a;
}

/* ---- Files ------------------------------------------------------------- */

static char path[256];

static void path_init(void)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/safemap-test-profile-%ld.pb.gz", dir && *dir ? dir : "/tmp",
             (long)getpid());
}

static unsigned char *file_read(const char *name, size_t *n)
{
    FILE *f = fopen(name, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    unsigned char *b = malloc(size > 0 ? (size_t)size : 1);
    if (b && fread(b, 1, (size_t)size, f) != (size_t)size) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)size;
    return b;
}

/* ---- gzip with stored blocks ------------------------------------------- */

/* CRC-32 bit by bit (RFC 1952, section 8), no table. */
static uint32_t ref_crc32(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static uint32_t rd_le(const unsigned char *p, int bytes)
{
    uint32_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Decodes z[0..n) into a malloc'd buffer; NULL (and a failed check) if it is
 * not a gzip member of stored blocks with a correct trailer.  *blocks gets
 * the number of DEFLATE blocks. */
static unsigned char *gunzip_stored(const unsigned char *z, size_t n, size_t *out_len, int *blocks)
{
    *blocks = 0;
    if (!CHECK(n >= 10 + 5 + 8) || !CHECK(z[0] == 0x1f && z[1] == 0x8b) || !CHECK(z[2] == 8))
        return NULL;
    CHECK_EQ(z[3], 0); /* no optional header fields */
    size_t pos = 10, len = 0;
    unsigned char *out = malloc(n);
    if (!out)
        return NULL;
    for (int final = 0; !final;) {
        if (!CHECK(pos + 5 <= n))
            goto bad;
        final = z[pos] & 1;
        if (!CHECK_EQ((z[pos] >> 1) & 3, 0)) /* BTYPE 00: stored */
            goto bad;
        uint32_t blen = rd_le(z + pos + 1, 2), nlen = rd_le(z + pos + 3, 2);
        if (!CHECK_EQ(blen ^ 0xFFFF, nlen) || !CHECK(pos + 5 + blen <= n))
            goto bad;
        memcpy(out + len, z + pos + 5, blen);
        len += blen;
        pos += 5 + blen;
        ++*blocks;
    }
    if (!CHECK_EQ(n - pos, 8)) /* the trailer, and nothing after it */
        goto bad;
    if (!CHECK_EQ(rd_le(z + pos, 4), ref_crc32(out, len)) ||
        !CHECK_EQ(rd_le(z + pos + 4, 4), (uint32_t)len))
        goto bad;
    *out_len = len;
    return out;
bad:
    free(out);
    return NULL;
}

/* ---- profile.proto ----------------------------------------------------- */

typedef struct slice {
    const unsigned char *p, *end;
} slice;

static int pb_bad;

static uint64_t pb_varint(slice *s)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (s->p >= s->end) {
            pb_bad = 1;
            return 0;
        }
        unsigned char c = *s->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return v;
    }
    pb_bad = 1;
    return v;
}

/* The next field of a message: 1 and its number, wire type and value (a
 * varint) or contents (length-delimited), or 0 at the end. */
static int pb_next(slice *s, unsigned *field, unsigned *wire, uint64_t *v, slice *sub)
{
    if (s->p >= s->end || pb_bad)
        return 0;
    uint64_t key = pb_varint(s);
    *field = (unsigned)(key >> 3);
    *wire = key & 7;
    switch (*wire) {
    case 0:
        *v = pb_varint(s);
        return !pb_bad;
    case 2: {
        uint64_t n = pb_varint(s);
        if (pb_bad || n > (uint64_t)(s->end - s->p)) {
            pb_bad = 1;
            return 0;
        }
        *sub = (slice){s->p, s->p + n};
        s->p += n;
        return 1;
    }
    default: /* profile.proto has no fixed-width fields */
        pb_bad = 1;
        return 0;
    }
}

/* A repeated varint field, packed or not, appended to vals. */
static void pb_repeated(unsigned wire, uint64_t v, slice *sub, uint64_t *vals, int *n, int max)
{
    if (wire == 0) {
        if (*n < max)
            vals[(*n)++] = v;
        return;
    }
    while (sub->p < sub->end && !pb_bad) {
        uint64_t x = pb_varint(sub);
        if (*n < max)
            vals[(*n)++] = x;
    }
}

enum { MAXV = 8, MAXLOC = 64, MAXLABEL = 8 };

typedef struct label {
    uint64_t key, str, num, num_unit;
} label;

typedef struct sample {
    uint64_t locs[MAXLOC];
    int nlocs;
    uint64_t v[MAXV];
    int nv;
    label labels[MAXLABEL];
    int nlabels;
} sample;

typedef struct location {
    uint64_t id, mapping, address, fn;
} location;

typedef struct function {
    uint64_t id, name, system_name;
} function;

typedef struct mapping {
    uint64_t id, start, limit, offset, file, build_id, has_functions;
} mapping;

typedef struct decoded {
    uint64_t types[MAXV][2];
    int ntypes;
    sample *samples;
    int nsamples;
    location *locs;
    int nlocs;
    function *fns;
    int nfns;
    mapping *maps;
    int nmaps;
    slice *strs;
    int nstrs;
    uint64_t period_type[2], period, time_nanos;
    int ncomments;
    unsigned char *msg; /* the decoded bytes: strs point into them */
} decoded;

#define GROW(arr, n) ((arr) = realloc((arr), sizeof *(arr) * (size_t)((n) + 1)), &(arr)[(n)++])

static void decode_sample(slice s, sample *out)
{
    memset(out, 0, sizeof *out);
    unsigned f, w;
    uint64_t v = 0;
    slice sub;
    while (pb_next(&s, &f, &w, &v, &sub)) {
        if (f == 1)
            pb_repeated(w, v, &sub, out->locs, &out->nlocs, MAXLOC);
        else if (f == 2)
            pb_repeated(w, v, &sub, out->v, &out->nv, MAXV);
        else if (f == 3 && w == 2 && out->nlabels < MAXLABEL) {
            label *l = &out->labels[out->nlabels++];
            memset(l, 0, sizeof *l);
            unsigned lf, lw;
            uint64_t lv = 0;
            slice ls;
            while (pb_next(&sub, &lf, &lw, &lv, &ls)) {
                if (lf == 1)
                    l->key = lv;
                else if (lf == 2)
                    l->str = lv;
                else if (lf == 3)
                    l->num = lv;
                else if (lf == 4)
                    l->num_unit = lv;
            }
        }
    }
}

static void decode_location(slice s, location *out)
{
    memset(out, 0, sizeof *out);
    unsigned f, w;
    uint64_t v = 0;
    slice sub;
    while (pb_next(&s, &f, &w, &v, &sub)) {
        if (f == 1)
            out->id = v;
        else if (f == 2)
            out->mapping = v;
        else if (f == 3)
            out->address = v;
        else if (f == 4 && w == 2) { /* Line: the first function_id */
            unsigned lf, lw;
            uint64_t lv = 0;
            slice ls;
            while (pb_next(&sub, &lf, &lw, &lv, &ls))
                if (lf == 1 && !out->fn)
                    out->fn = lv;
        }
    }
}

static void decode_flat(slice s, uint64_t *fields, int nfields)
{
    memset(fields, 0, sizeof *fields * (size_t)nfields);
    unsigned f, w;
    uint64_t v = 0;
    slice sub;
    while (pb_next(&s, &f, &w, &v, &sub))
        if (w == 0 && f >= 1 && (int)f <= nfields)
            fields[f - 1] = v;
}

static int decode_profile(const unsigned char *msg, size_t n, decoded *d)
{
    memset(d, 0, sizeof *d);
    pb_bad = 0;
    slice s = {msg, msg + n}, sub;
    unsigned f, w;
    uint64_t v = 0;
    while (pb_next(&s, &f, &w, &v, &sub)) {
        uint64_t flat[10];
        switch (f) {
        case 1:
            decode_flat(sub, flat, 2);
            if (d->ntypes < MAXV) {
                d->types[d->ntypes][0] = flat[0];
                d->types[d->ntypes++][1] = flat[1];
            }
            break;
        case 2:
            decode_sample(sub, GROW(d->samples, d->nsamples));
            break;
        case 3: {
            decode_flat(sub, flat, 7);
            mapping *m = GROW(d->maps, d->nmaps);
            *m = (mapping){flat[0], flat[1], flat[2], flat[3], flat[4], flat[5], flat[6]};
            break;
        }
        case 4:
            decode_location(sub, GROW(d->locs, d->nlocs));
            break;
        case 5: {
            decode_flat(sub, flat, 3);
            function *fn = GROW(d->fns, d->nfns);
            *fn = (function){flat[0], flat[1], flat[2]};
            break;
        }
        case 6:
            *GROW(d->strs, d->nstrs) = sub;
            break;
        case 9:
            d->time_nanos = v;
            break;
        case 11:
            decode_flat(sub, d->period_type, 2);
            break;
        case 12:
            d->period = v;
            break;
        case 13:
            d->ncomments++;
            break;
        default:
            break;
        }
    }
    return !pb_bad && s.p == s.end;
}

static void decoded_free(decoded *d)
{
    free(d->samples);
    free(d->locs);
    free(d->fns);
    free(d->maps);
    free(d->strs);
    free(d->msg);
}

/* Whether string index i is `want`. */
static int str_is(const decoded *d, uint64_t i, const char *want)
{
    if (i >= (uint64_t)d->nstrs)
        return 0;
    size_t n = (size_t)(d->strs[i].end - d->strs[i].p);
    return n == strlen(want) && memcmp(d->strs[i].p, want, n) == 0;
}

static const location *loc_by_id(const decoded *d, uint64_t id)
{
    for (int i = 0; i < d->nlocs; i++)
        if (d->locs[i].id == id)
            return &d->locs[i];
    return NULL;
}

static const function *fn_by_id(const decoded *d, uint64_t id)
{
    for (int i = 0; i < d->nfns; i++)
        if (d->fns[i].id == id)
            return &d->fns[i];
    return NULL;
}

/* Whether sample s has a frame in the function named `name`. */
static int sample_in(const decoded *d, const sample *s, const char *name)
{
    for (int i = 0; i < s->nlocs; i++) {
        const location *l = loc_by_id(d, s->locs[i]);
        const function *fn = l && l->fn ? fn_by_id(d, l->fn) : NULL;
        if (fn && str_is(d, fn->name, name))
            return 1;
    }
    return 0;
}

/* Whether sample s has the string label key = want. */
static int sample_label_is(const decoded *d, const sample *s, const char *key, const char *want)
{
    for (int i = 0; i < s->nlabels; i++)
        if (str_is(d, s->labels[i].key, key))
            return str_is(d, s->labels[i].str, want);
    return 0;
}

enum { ALLOC_OBJECTS, ALLOC_SPACE, INUSE_OBJECTS, INUSE_SPACE };

/* Reads path, checks the container and every cross-reference; fills *d. */
static int load_profile(decoded *d, int *blocks)
{
    memset(d, 0, sizeof *d);
    size_t zn = 0, n = 0;
    unsigned char *z = file_read(path, &zn);
    if (!CHECK(z))
        return 0;
    int dummy;
    unsigned char *msg = gunzip_stored(z, zn, &n, blocks ? blocks : &dummy);
    free(z);
    if (!msg)
        return 0;
    int ok = CHECK(decode_profile(msg, n, d));
    d->msg = msg;
    if (!ok)
        return 0;
    /* The string table starts with "", and every index is in it. */
    CHECK(d->nstrs > 0 && str_is(d, 0, ""));
    static const char *const want[4][2] = {{"alloc_objects", "count"},
                                           {"alloc_space", "bytes"},
                                           {"inuse_objects", "count"},
                                           {"inuse_space", "bytes"}};
    CHECK_EQ(d->ntypes, 4);
    for (int i = 0; i < 4 && i < d->ntypes; i++)
        CHECK(str_is(d, d->types[i][0], want[i][0]) && str_is(d, d->types[i][1], want[i][1]));
    CHECK(d->time_nanos > 0);
    CHECK(d->period_type[0] < (uint64_t)d->nstrs && d->period_type[1] < (uint64_t)d->nstrs);
    for (int i = 0; i < d->nsamples; i++) {
        const sample *s = &d->samples[i];
        CHECK_EQ(s->nv, 4);
        for (int k = 0; k < s->nlocs; k++)
            CHECK(loc_by_id(d, s->locs[k]) != NULL);
        for (int k = 0; k < s->nlabels; k++)
            CHECK(s->labels[k].key < (uint64_t)d->nstrs && s->labels[k].str < (uint64_t)d->nstrs);
    }
    for (int i = 0; i < d->nlocs; i++) {
        const location *l = &d->locs[i];
        CHECK_EQ(l->id, i + 1);
        CHECK(l->address != 0);
        CHECK(l->mapping <= (uint64_t)d->nmaps);
        if (l->mapping) {
            const mapping *m = &d->maps[l->mapping - 1];
            CHECK(l->address >= m->start && l->address < m->limit);
        }
        CHECK(!l->fn || fn_by_id(d, l->fn) != NULL);
    }
    for (int i = 0; i < d->nfns; i++) {
        CHECK_EQ(d->fns[i].id, i + 1);
        CHECK(d->fns[i].name > 0 && d->fns[i].name < (uint64_t)d->nstrs);
    }
    for (int i = 0; i < d->nmaps; i++) {
        CHECK_EQ(d->maps[i].id, i + 1);
        CHECK(d->maps[i].start < d->maps[i].limit);
        CHECK(d->maps[i].file > 0 && d->maps[i].file < (uint64_t)d->nstrs);
    }
    return 1;
}

static void sum_values(const decoded *d, uint64_t sums[4])
{
    memset(sums, 0, 4 * sizeof sums[0]);
    for (int i = 0; i < d->nsamples; i++)
        for (int k = 0; k < 4 && k < d->samples[i].nv; k++)
            sums[k] += d->samples[i].v[k];
}

/* Every pool of this program is made here and counted: an unnamed pool is
 * labelled by its creation number ("pool-3") in the profile. */
static atomic_uint npools_made;

static sm_pool *pool_make(sm_layout layout, int check)
{
    sm_pool *p = NULL;
    sm_pool_opts o = {.layout = layout, .check = check};
    if (sm_pool_new(&p, &o) != 0)
        return NULL;
    atomic_fetch_add(&npools_made, 1);
    return p;
}

/* Whether dladdr can name our own functions (the program is linked with
 * exported symbols, as profile.cmake asks). */
static int names_visible(void)
{
    Dl_info info;
    void *(*fn)(sm_pool *) = profile_get_alpha;
    void *addr;
    memcpy(&addr, &fn, sizeof addr);
    return dladdr(addr, &info) && info.dli_sname &&
           strcmp(info.dli_sname, "profile_get_alpha") == 0;
}

/* ---- Tests ------------------------------------------------------------- */

static void test_profile_reference_crc_is_the_standard_one(void)
{
    CHECK_EQ(ref_crc32((const unsigned char *)"123456789", 9), 0xCBF43926u);
}

static void test_profile_rejects_bad_paths(void)
{
    CHECK_EQ(sm_profile_write(NULL), SM_EINVAL);
    CHECK_EQ(sm_profile_write(""), SM_EINVAL);
    CHECK(strstr(sm_last_error(), "path is empty") != NULL);
}

/* A directory that does not exist is an I/O failure, not a bad argument:
 * SM_EIO with errno from open(2), named in sm_last_error(). */
static void test_profile_missing_directory_is_eio(void)
{
    errno = 0;
    CHECK_EQ(sm_profile_write("/nonexistent-safemap-dir/heap.pb.gz"), SM_EIO);
    CHECK_EQ(errno, ENOENT);
    CHECK(strstr(sm_last_error(), "/nonexistent-safemap-dir/heap.pb.gz") != NULL);
    CHECK(strstr(sm_last_error(), strerror(ENOENT)) != NULL);
}

static void test_profile_without_pools_is_a_valid_empty_profile(void)
{
    if (!CHECK_EQ(sm_profile_write(path), 0))
        return;
    decoded d;
    int blocks = 0;
    if (load_profile(&d, &blocks)) {
        CHECK_EQ(d.nsamples, 0);
        CHECK_EQ(d.nlocs, 0);
        CHECK_EQ(blocks, 1);
        CHECK_EQ(d.ncomments, 1);
    }
    decoded_free(&d);
    unlink(path);
}

static void test_profile_counts_outstanding_arrays_by_get_site(void)
{
    sm_pool *small = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_FULL);
    sm_pool *large = pool_make(SM_LAYOUT(int64_t, 64), SM_CHECK_FULL);
    if (!CHECK(small && large))
        return;
    unsigned large_seq = atomic_load(&npools_made), small_seq = large_seq - 1;
    void *a[4], *b[5], *c[2];
    for (int i = 0; i < 4; i++)
        a[i] = profile_get_alpha(small);
    for (int i = 0; i < 5; i++)
        b[i] = profile_get_beta(large);
    for (int i = 0; i < 2; i++)
        c[i] = profile_get_alpha(large);
    CHECK_EQ(sm_pool_put(small, a[3]), 0);
    /* Expected: 11 Gets, 10 outstanding. */
    const uint64_t s8 = sizeof(int64_t[8]), s64 = sizeof(int64_t[64]);
    uint64_t want[4] = {11, 4 * s8 + 7 * s64, 10, 3 * s8 + 7 * s64};

    if (!CHECK_EQ(sm_profile_write(path), 0))
        return;
    decoded d;
    if (load_profile(&d, NULL)) {
        uint64_t sums[4];
        sum_values(&d, sums);
        for (int k = 0; k < 4; k++)
            if (!CHECK_EQ(sums[k], want[k]))
                printf("  (value %d)\n", k);
        CHECK(d.nsamples >= 3); /* one per (pool, stack) */
        /* The labels name each pool (by creation number, the same in
         * every run) and its layout. */
        char small_addr[32], large_addr[32];
        snprintf(small_addr, sizeof small_addr, "pool-%u", small_seq);
        snprintf(large_addr, sizeof large_addr, "pool-%u", large_seq);
        uint64_t in_small = 0, in_large = 0;
        for (int i = 0; i < d.nsamples; i++) {
            const sample *s = &d.samples[i];
            if (sample_label_is(&d, s, "pool", small_addr)) {
                CHECK(sample_label_is(&d, s, "layout", "int64_t[8]"));
                in_small += s->v[INUSE_OBJECTS];
            } else if (sample_label_is(&d, s, "pool", large_addr)) {
                CHECK(sample_label_is(&d, s, "layout", "int64_t[64]"));
                in_large += s->v[INUSE_OBJECTS];
            }
        }
        CHECK_EQ(in_small, 3);
        CHECK_EQ(in_large, 7);
        /* The main program is the first mapping. */
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0 && CHECK(d.nmaps > 0)) {
            exe[n] = '\0';
            CHECK(str_is(&d, d.maps[0].file, exe));
        }
        /* By call site: alpha holds 3 + 2 arrays, beta 5.  profile.cmake
         * links this program with its symbols exported, so dladdr names
         * them; if it cannot, that is a failure, not a reason to skip. */
        if (CHECK(names_visible())) {
            uint64_t alpha = 0, beta = 0;
            for (int i = 0; i < d.nsamples; i++) {
                if (sample_in(&d, &d.samples[i], "profile_get_alpha"))
                    alpha += d.samples[i].v[INUSE_OBJECTS];
                if (sample_in(&d, &d.samples[i], "profile_get_beta"))
                    beta += d.samples[i].v[INUSE_OBJECTS];
            }
            CHECK_EQ(alpha, 5);
            CHECK_EQ(beta, 5);
        }
    }
    decoded_free(&d);
    unlink(path);
    for (int i = 0; i < 3; i++)
        sm_pool_put(small, a[i]);
    for (int i = 0; i < 5; i++)
        sm_pool_put(large, b[i]);
    for (int i = 0; i < 2; i++)
        sm_pool_put(large, c[i]);
    sm_pool_free(large);
    sm_pool_free(small);
}

/* A named pool's samples carry its name. */
static void test_profile_labels_a_named_pool_by_name(void)
{
    sm_pool *p = NULL;
    sm_pool_opts o = {.layout = SM_LAYOUT(int64_t, 8), .check = SM_CHECK_FULL, .name = "quotes"};
    if (!CHECK_EQ(sm_pool_new(&p, &o), 0))
        return;
    atomic_fetch_add(&npools_made, 1);
    void *a = profile_get_alpha(p);
    if (CHECK_EQ(sm_profile_write(path), 0)) {
        decoded d;
        if (load_profile(&d, NULL)) {
            int named = 0;
            for (int i = 0; i < d.nsamples; i++)
                named += sample_label_is(&d, &d.samples[i], "pool", "quotes");
            CHECK_EQ(named, 1);
        }
        decoded_free(&d);
    }
    unlink(path);
    sm_pool_put(p, a);
    sm_pool_free(p);
}

static void test_profile_leaves_pools_without_recorded_sites_out(void)
{
    sm_pool *off = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_OFF);
    if (!CHECK(off))
        return;
    void *a = profile_get_alpha(off);
    if (!CHECK_EQ(sm_profile_write(path), 0))
        return;
    decoded d;
    if (load_profile(&d, NULL))
        CHECK_EQ(d.nsamples, 0);
    decoded_free(&d);
    unlink(path);
    sm_pool_put(off, a);
    sm_pool_free(off);
}

static void test_profile_longer_than_one_stored_block_spans_several(void)
{
    enum { NAME = 50000 };
    char *name1 = malloc(NAME + 1), *name2 = malloc(NAME + 1);
    if (!CHECK(name1 && name2))
        return;
    memset(name1, 'x', NAME);
    memset(name2, 'y', NAME);
    name1[NAME] = name2[NAME] = '\0';
    sm_layout l1 = {8, 8, 8, name1}, l2 = {8, 8, 8, name2};
    sm_pool *p1 = pool_make(l1, SM_CHECK_FULL), *p2 = pool_make(l2, SM_CHECK_FULL);
    if (!CHECK(p1 && p2))
        return;
    void *a1 = profile_get_alpha(p1), *a2 = profile_get_beta(p2);
    if (CHECK_EQ(sm_profile_write(path), 0)) {
        decoded d;
        int blocks = 0;
        if (load_profile(&d, &blocks)) {
            CHECK(blocks >= 2);
            uint64_t sums[4];
            sum_values(&d, sums);
            CHECK_EQ(sums[INUSE_OBJECTS], 2);
            int found = 0;
            for (int i = 0; i < d.nstrs; i++)
                found += str_is(&d, (uint64_t)i, name1) + str_is(&d, (uint64_t)i, name2);
            CHECK_EQ(found, 2);
        }
        decoded_free(&d);
    }
    unlink(path);
    sm_pool_put(p1, a1);
    sm_pool_put(p2, a2);
    sm_pool_free(p1);
    sm_pool_free(p2);
    free(name1);
    free(name2);
}

/* Fail the Nth allocation for every N until the call succeeds: each failure
 * is SM_ENOMEM, leaves no file and nothing held. */
static void test_profile_out_of_memory_leaves_no_file(void)
{
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_FULL);
    if (!CHECK(p))
        return;
    void *a = profile_get_alpha(p), *b = profile_get_beta(p);
    size_t held = cnt_bytes();
    int rc = SM_ENOMEM, n;
    for (n = 1; n < 1000 && rc == SM_ENOMEM; n++) {
        unlink(path);
        cnt_fail_nth((size_t)n, 0);
        rc = sm_profile_write(path);
        cnt_fail_never();
        if (rc == SM_ENOMEM)
            CHECK(access(path, F_OK) != 0);
        CHECK_EQ(cnt_bytes(), held);
    }
    CHECK_EQ(rc, 0);
    CHECK(n > 2);
    decoded d;
    if (load_profile(&d, NULL)) {
        uint64_t sums[4];
        sum_values(&d, sums);
        CHECK_EQ(sums[INUSE_OBJECTS], 2);
    }
    decoded_free(&d);
    unlink(path);
    sm_pool_put(p, a);
    sm_pool_put(p, b);
    sm_pool_free(p);
}

static void test_profile_failed_write_removes_the_file(void)
{
    /* /dev/full accepts the open and fails every write; it is no regular
     * file, so it must not be unlinked either. */
    if (!CHECK(access("/dev/full", W_OK) == 0))
        return;
    errno = 0;
    CHECK_EQ(sm_profile_write("/dev/full"), SM_EIO);
    CHECK_EQ(errno, ENOSPC);
    CHECK(strstr(sm_last_error(), "writing /dev/full") != NULL);
    CHECK(access("/dev/full", F_OK) == 0);
}

/* Pools may be created, used and freed by other threads while a profile
 * is written. */
static atomic_int churn_stop;

static void *pool_churn(void *arg)
{
    (void)arg;
    while (!atomic_load(&churn_stop)) {
        sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_FULL);
        if (!p)
            break;
        void *a[8];
        for (int i = 0; i < 8; i++)
            a[i] = i % 2 ? profile_get_alpha(p) : profile_get_beta(p);
        for (int i = 0; i < 8; i++)
            sm_pool_put(p, a[i]);
        sm_pool_free(p);
    }
    return NULL;
}

static void test_profile_while_other_threads_create_use_and_free_pools(void)
{
    enum { THREADS = 3 };
    pthread_t t[THREADS];
    atomic_store(&churn_stop, 0);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, pool_churn, NULL);
    int failures = 0, rounds = tl_under_valgrind ? 3 : 100;
    for (int r = 0; r < rounds; r++) {
        if (sm_profile_write(path) != 0) {
            failures++;
            continue;
        }
        if (r % 25 == 0) {
            decoded d;
            load_profile(&d, NULL);
            decoded_free(&d);
        }
    }
    atomic_store(&churn_stop, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(failures, 0);
    unlink(path);
}

/* For tests/pprof_check.sh: a profile with both sites holding arrays. */
static int write_for_pprof(const char *out)
{
    sm_pool *p = pool_make(SM_LAYOUT(int64_t, 8), SM_CHECK_FULL);
    sm_pool *q = pool_make(SM_LAYOUT(int64_t, 64), SM_CHECK_FULL);
    if (!p || !q)
        return 2;
    void *a[3], *b[5];
    for (int i = 0; i < 3; i++)
        a[i] = profile_get_alpha(p);
    for (int i = 0; i < 5; i++)
        b[i] = profile_get_beta(q);
    int rc = sm_profile_write(out);
    for (int i = 0; i < 3; i++)
        sm_pool_put(p, a[i]);
    for (int i = 0; i < 5; i++)
        sm_pool_put(q, b[i]);
    sm_pool_free(q);
    sm_pool_free(p);
    if (rc != 0) {
        fprintf(stderr, "sm_profile_write: %s\n", sm_strerror(rc));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    const char *out = tl_option(argc, argv, "write");
    if (out)
        return write_for_pprof(out);
    path_init();
    cnt_install();
    RUN(test_profile_reference_crc_is_the_standard_one);
    RUN(test_profile_rejects_bad_paths);
    RUN(test_profile_missing_directory_is_eio);
    RUN(test_profile_without_pools_is_a_valid_empty_profile);
    RUN(test_profile_counts_outstanding_arrays_by_get_site);
    RUN(test_profile_labels_a_named_pool_by_name);
    RUN(test_profile_leaves_pools_without_recorded_sites_out);
    RUN(test_profile_longer_than_one_stored_block_spans_several);
    RUN(test_profile_out_of_memory_leaves_no_file);
    RUN(test_profile_failed_write_removes_the_file);
    RUN(test_profile_while_other_threads_create_use_and_free_pools);
    if (cnt_bytes() != 0) {
        printf("FAIL: %zu bytes still held\n", cnt_bytes());
        return 1;
    }
    cnt_uninstall();
    return tl_finish();
}
