/*
 * profile.c - heap profiles of every live pool, in the format `go tool
 * pprof` reads.
 *
 * What is written.  A gzip-compressed profile.proto message (the schema is
 * github.com/google/pprof/proto/profile.proto) with the four sample types of
 * a Go heap profile, in pprof's order: alloc_objects/count, alloc_space/bytes,
 * inuse_objects/count, inuse_space/bytes.  Each pool keeps its recorded Get
 * call stacks (every Get at SM_CHECK_FULL, a sampled fraction at CHEAP, none
 * at OFF; see pool_each_site), and each stack becomes one sample, labelled
 * with the pool's name or creation number ("pool": "quotes" or "pool-2"), its layout ("layout") and
 * the array size (numeric label "bytes", as Go's heap profiles carry).  pprof picks the last sample
 * type, inuse_space, by default: the bytes handed out and not yet Put, by call stack, which is
 * where a leak or a ghost reference shows.
 *
 * Symbols.  Each distinct return address is a Location (its address minus
 * one, so that it falls inside the call instruction, as the proto asks for
 * non-leaf frames).  dladdr() names the functions it can (those in the
 * dynamic symbol table: exported functions, and every function of a program
 * linked with -rdynamic); those become Function entries and the profile
 * needs no binary to be read.  Every executable segment of every loaded
 * object is a Mapping (from dl_iterate_phdr, with its GNU build ID), the
 * main program first, so that a symbolizer given the binaries can do
 * better.  No mapping claims has_functions: pprof then symbolizes every
 * location it can from the binary (with DWARF, `go tool pprof` adds files
 * and lines, and names static functions), and keeps the dladdr name where
 * it cannot (binary missing, stripped, or rebuilt: the build ID differs).
 *
 * How.  Three phases.  (1) Under the registry lock and each pool's lock,
 * copy the sites (return addresses and counts) and intern the label strings;
 * nothing is written and no symbol is looked up while locks are held.
 * (2) Outside every lock: sort and deduplicate the addresses, look each up
 * with dladdr, collect the mappings, and encode the message into a buffer.
 * The protobuf encoder is the few functions below (varints and
 * length-delimited fields; a nested message is encoded into a scratch buffer
 * and then copied in with its length).  (3) Write the gzip container around
 * the message with open/write.
 *
 * Why no zlib.  The core library depends on libc and pthreads only, so the
 * DEFLATE stream is made of "stored" blocks (RFC 1951 section 3.2.4: up to
 * 65535 raw bytes after a 5-byte header) and the gzip trailer's CRC-32 is
 * computed here.  The file is a valid gzip stream (`gzip -t` accepts it),
 * just not a smaller one: profiles are kilobytes, and pprof reads them the
 * same way.
 *
 * Memory.  Every buffer comes from alc_alloc and is released before
 * returning, so the library holds nothing afterwards.  No stdio and no
 * qsort (which may call malloc behind the installed allocator's back): the
 * file is written with write(2) and the addresses sorted with a heapsort.
 *
 * Cost.  O(S log S) in the number S of recorded return addresses, plus one
 * dladdr per distinct address; the registry lock is held while the sites are
 * copied (pools cannot be created or freed meanwhile), and each pool's lock
 * while its own sites are.  Nothing here touches a hot path.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- A growable buffer ------------------------------------------------- */

/* Bytes, or an array of one element type, from alc_alloc.  The first
 * allocation failure sets `failed`, after which appends are no-ops: callers
 * check once, at the end of a phase, instead of after every append. */
typedef struct pbuf {
    unsigned char *b;
    size_t len, cap;
    bool failed;
} pbuf;

#define PBUF_ALIGN _Alignof(max_align_t)

static bool buf_reserve(pbuf *b, size_t more)
{
    if (b->failed)
        return false;
    if (more <= b->cap - b->len)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < more) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    unsigned char *nb = alc_alloc(cap, PBUF_ALIGN);
    if (!nb) {
        b->failed = true;
        return false;
    }
    if (b->len)
        memcpy(nb, b->b, b->len);
    alc_free(b->b, b->cap);
    b->b = nb;
    b->cap = cap;
    return true;
}

static void buf_put(pbuf *b, const void *p, size_t n)
{
    if (n == 0 || !buf_reserve(b, n))
        return;
    memcpy(b->b + b->len, p, n);
    b->len += n;
}

static void buf_byte(pbuf *b, unsigned char c)
{
    buf_put(b, &c, 1);
}

static void buf_release(pbuf *b)
{
    alc_free(b->b, b->cap);
    *b = (pbuf){NULL, 0, 0, false};
}

/* Typed views of a buffer used as an array. */
#define BUF_AT(buf, type, i) (((type *)(void *)(buf)->b)[i])
#define BUF_COUNT(buf, type) ((buf)->len / sizeof(type))

/* ---- Protobuf encoding ------------------------------------------------- */

enum { WIRE_VARINT = 0, WIRE_LEN = 2 };

static size_t pb_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static void pb_varint(pbuf *b, uint64_t v)
{
    unsigned char tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (unsigned char)v;
    buf_put(b, tmp, n);
}

static void pb_key(pbuf *b, unsigned field, unsigned wire)
{
    pb_varint(b, (uint64_t)field << 3 | wire);
}

/* A uint64/int64/bool field; proto3 omits zero, the default. int64 values
 * are encoded as their two's complement (not zigzag), as the schema's
 * int64 type requires; every value here is non-negative anyway. */
static void pb_uint(pbuf *b, unsigned field, uint64_t v)
{
    if (v == 0)
        return;
    pb_key(b, field, WIRE_VARINT);
    pb_varint(b, v);
}

/* A length-delimited field: bytes, a string or a nested message.  Written
 * even when empty (string_table[0] must be ""). */
static void pb_bytes(pbuf *b, unsigned field, const void *p, size_t n)
{
    pb_key(b, field, WIRE_LEN);
    pb_varint(b, n);
    buf_put(b, p, n);
}

/* A packed repeated varint field. */
static void pb_packed(pbuf *b, unsigned field, const uint64_t *v, size_t n)
{
    size_t size = 0;
    for (size_t i = 0; i < n; i++)
        size += pb_varint_size(v[i]);
    pb_key(b, field, WIRE_LEN);
    pb_varint(b, size);
    for (size_t i = 0; i < n; i++)
        pb_varint(b, v[i]);
}

/* Field numbers, from profile.proto. */
enum {
    PROFILE_SAMPLE_TYPE = 1,
    PROFILE_SAMPLE = 2,
    PROFILE_MAPPING = 3,
    PROFILE_LOCATION = 4,
    PROFILE_FUNCTION = 5,
    PROFILE_STRING_TABLE = 6,
    PROFILE_TIME_NANOS = 9,
    PROFILE_PERIOD_TYPE = 11,
    PROFILE_PERIOD = 12,
    PROFILE_COMMENT = 13,
    VALUETYPE_TYPE = 1,
    VALUETYPE_UNIT = 2,
    SAMPLE_LOCATION_ID = 1,
    SAMPLE_VALUE = 2,
    SAMPLE_LABEL = 3,
    LABEL_KEY = 1,
    LABEL_STR = 2,
    LABEL_NUM = 3,
    LABEL_NUM_UNIT = 4,
    MAPPING_ID = 1,
    MAPPING_START = 2,
    MAPPING_LIMIT = 3,
    MAPPING_OFFSET = 4,
    MAPPING_FILENAME = 5,
    MAPPING_BUILD_ID = 6,
    LOCATION_ID = 1,
    LOCATION_MAPPING_ID = 2,
    LOCATION_ADDRESS = 3,
    LOCATION_LINE = 4,
    LINE_FUNCTION_ID = 1,
    FUNCTION_ID = 1,
    FUNCTION_NAME = 2,
    FUNCTION_SYSTEM_NAME = 3
};

/* ---- The string table -------------------------------------------------- */

/* Interned strings: string i is at bytes + offs[i] (NUL-terminated); an
 * open-addressed table of (index + 1), 0 for empty, finds a string again.
 * Index 0 is "", as the format requires. */
typedef struct strtab {
    pbuf bytes, offs; /* offs: uint32_t */
    uint32_t *slots;
    size_t nslots;
    bool failed;
} strtab;

static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static size_t str_count(const strtab *t)
{
    return BUF_COUNT(&t->offs, uint32_t);
}

static const char *str_at(const strtab *t, size_t i)
{
    return (const char *)t->bytes.b + BUF_AT(&t->offs, uint32_t, i);
}

static bool str_grow(strtab *t)
{
    size_t nslots = t->nslots ? 2 * t->nslots : 64;
    uint32_t *slots = alc_alloc(nslots * sizeof *slots, _Alignof(uint32_t));
    if (!slots)
        return false;
    memset(slots, 0, nslots * sizeof *slots);
    for (size_t i = 0; i < str_count(t); i++) {
        const char *s = str_at(t, i);
        size_t h = (size_t)str_hash(s, strlen(s)) & (nslots - 1);
        while (slots[h])
            h = (h + 1) & (nslots - 1);
        slots[h] = (uint32_t)i + 1;
    }
    alc_free(t->slots, t->nslots * sizeof *t->slots);
    t->slots = slots;
    t->nslots = nslots;
    return true;
}

/* The index of s[0..n) in the table, adding it if new; 0 (the empty
 * string) once memory ran out, with t->failed set. */
static uint32_t str_intern_n(strtab *t, const char *s, size_t n)
{
    if (t->failed)
        return 0;
    if (2 * (str_count(t) + 1) > t->nslots && !str_grow(t)) {
        t->failed = true;
        return 0;
    }
    uint64_t hash = str_hash(s, n);
    size_t h = (size_t)hash & (t->nslots - 1);
    for (; t->slots[h]; h = (h + 1) & (t->nslots - 1)) {
        const char *have = str_at(t, t->slots[h] - 1);
        if (strncmp(have, s, n) == 0 && have[n] == '\0')
            return t->slots[h] - 1;
    }
    uint32_t index = (uint32_t)str_count(t);
    uint32_t off = (uint32_t)t->bytes.len;
    buf_put(&t->bytes, s, n);
    buf_byte(&t->bytes, '\0');
    buf_put(&t->offs, &off, sizeof off);
    if (t->bytes.failed || t->offs.failed || t->bytes.len > UINT32_MAX) {
        t->failed = true;
        return 0;
    }
    t->slots[h] = index + 1;
    return index;
}

static uint32_t str_intern(strtab *t, const char *s)
{
    return str_intern_n(t, s ? s : "", s ? strlen(s) : 0);
}

static void str_release(strtab *t)
{
    buf_release(&t->bytes);
    buf_release(&t->offs);
    alc_free(t->slots, t->nslots * sizeof *t->slots);
    *t = (strtab){0};
}

/* ---- Phase 1: copy the sites ------------------------------------------- */

enum { V_ALLOC_OBJECTS, V_ALLOC_SPACE, V_INUSE_OBJECTS, V_INUSE_SPACE, NVALUES };

/* One recorded Get stack, copied out of its pool. */
typedef struct site_rec {
    uint32_t pool_str, layout_str; /* label values */
    uint64_t array_bytes;
    size_t pc_first; /* its return addresses: pcs[pc_first .. + depth) */
    size_t depth;
    uint64_t values[NVALUES];
} site_rec;

typedef struct profile {
    strtab strs;
    pbuf sites;        /* site_rec */
    pbuf pcs;          /* uintptr_t, as recorded */
    pbuf locs;         /* uintptr_t, sorted and distinct: location i+1 */
    pbuf loc_fn;       /* uint32_t per location: function id, 0 when unnamed */
    pbuf loc_map;      /* uint32_t per location: mapping id, 0 when none */
    pbuf fn_names;     /* uint32_t per function: its name's string index */
    pbuf fn_of_str;    /* uint32_t per string: the function named so, or 0 */
    pbuf maps;         /* map_rec */
    uint32_t pool_str; /* the label keys, interned up front */
    uint32_t layout_str, bytes_str;
    /* The pool being copied (phase 1 callbacks). */
    uint32_t cur_pool, cur_layout;
    uint64_t cur_bytes;
} profile;

static void copy_site(const pool_site *site, void *ctx)
{
    profile *pr = ctx;
    size_t depth = site->depth > 0 ? (size_t)site->depth : 0;
    site_rec r = {pr->cur_pool,
                  pr->cur_layout,
                  pr->cur_bytes,
                  BUF_COUNT(&pr->pcs, uintptr_t),
                  depth,
                  {site->alloc_objects, site->alloc_bytes, site->inuse_objects, site->inuse_bytes}};
    for (size_t i = 0; i < depth; i++) {
        uintptr_t pc = (uintptr_t)site->pcs[i];
        buf_put(&pr->pcs, &pc, sizeof pc);
    }
    buf_put(&pr->sites, &r, sizeof r);
}

static void copy_pool(sm_pool *p, uint64_t seq, void *ctx)
{
    profile *pr = ctx;
    const sm_layout *l = pool_layout(p);
    char label[SM_NAME_MAX];
    met_object_label(label, sizeof label, "pool", pool_name(p), seq);
    pr->cur_pool = str_intern(&pr->strs, label);
    pr->cur_layout = str_intern(&pr->strs, l->name ? l->name : "?");
    pr->cur_bytes = (uint64_t)l->elem_size * l->len;
    pool_each_site(p, copy_site, pr);
}

/* ---- Phase 2: locations, functions, mappings --------------------------- */

/* Restores the max-heap order below a[i] in a[0..n). */
static void sift_down(uintptr_t *a, size_t i, size_t n)
{
    for (size_t child; (child = 2 * i + 1) < n; i = child) {
        if (child + 1 < n && a[child + 1] > a[child])
            child++;
        if (a[i] >= a[child])
            return;
        uintptr_t t = a[i];
        a[i] = a[child];
        a[child] = t;
    }
}

/* Sorts a[0..n) ascending: heapsort, in place, no allocation. */
static void sort_addrs(uintptr_t *a, size_t n)
{
    for (size_t k = n / 2; k-- > 0;)
        sift_down(a, k, n);
    for (size_t end = n; end-- > 1;) {
        uintptr_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(a, 0, end);
    }
}

/* The address a location stands for: inside the call instruction that the
 * return address follows. */
static uintptr_t call_addr(uintptr_t return_addr)
{
    return return_addr ? return_addr - 1 : 0;
}

/* Location ids are positions in the sorted, distinct addresses, plus one. */
static void build_locations(profile *pr)
{
    size_t n = BUF_COUNT(&pr->pcs, uintptr_t);
    buf_put(&pr->locs, pr->pcs.b, n * sizeof(uintptr_t));
    if (pr->locs.failed)
        return;
    uintptr_t *a = (uintptr_t *)(void *)pr->locs.b;
    for (size_t i = 0; i < n; i++)
        a[i] = call_addr(a[i]);
    sort_addrs(a, n);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (distinct == 0 || a[distinct - 1] != a[i])
            a[distinct++] = a[i];
    pr->locs.len = distinct * sizeof(uintptr_t);
}

static uint64_t location_id(const profile *pr, uintptr_t return_addr)
{
    const uintptr_t *a = (const uintptr_t *)(const void *)pr->locs.b;
    uintptr_t key = call_addr(return_addr);
    size_t lo = 0, hi = BUF_COUNT(&pr->locs, uintptr_t);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo + 1; /* every recorded address is there */
}

/* The function id for a name, creating it on first use. */
static uint32_t function_id(profile *pr, uint32_t name)
{
    uint32_t zero = 0;
    while (BUF_COUNT(&pr->fn_of_str, uint32_t) <= name && !pr->fn_of_str.failed)
        buf_put(&pr->fn_of_str, &zero, sizeof zero);
    if (pr->fn_of_str.failed)
        return 0;
    uint32_t *slot = &BUF_AT(&pr->fn_of_str, uint32_t, name);
    if (*slot == 0) {
        buf_put(&pr->fn_names, &name, sizeof name);
        *slot = (uint32_t)BUF_COUNT(&pr->fn_names, uint32_t);
    }
    return *slot;
}

static void name_locations(profile *pr)
{
    size_t n = BUF_COUNT(&pr->locs, uintptr_t);
    for (size_t i = 0; i < n; i++) {
        uint32_t fn = 0;
        Dl_info info;
        uintptr_t addr = BUF_AT(&pr->locs, uintptr_t, i);
        if (dladdr((void *)addr, &info) && info.dli_sname && info.dli_sname[0])
            fn = function_id(pr, str_intern(&pr->strs, info.dli_sname));
        buf_put(&pr->loc_fn, &fn, sizeof fn);
    }
}

/* One executable segment of a loaded object. */
typedef struct map_rec {
    uintptr_t start, limit, offset;
    uint32_t file, build_id; /* string indexes */
} map_rec;

/* The GNU build ID of an object, as lowercase hex, from its PT_NOTE
 * segments in memory; "" when it has none. */
static void build_id_hex(const struct dl_phdr_info *info, char *out, size_t n)
{
    out[0] = '\0';
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        const unsigned char *end = p + ph->p_memsz;
        while ((size_t)(end - p) >= sizeof(ElfW(Nhdr))) {
            ElfW(Nhdr) nh;
            memcpy(&nh, p, sizeof nh);
            size_t name_len = (nh.n_namesz + 3u) & ~3u, desc_len = (nh.n_descsz + 3u) & ~3u;
            const unsigned char *name = p + sizeof nh, *desc = name + name_len;
            if ((size_t)(end - name) < name_len || (size_t)(end - desc) < desc_len)
                break;
            if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && memcmp(name, "GNU", 4) == 0 &&
                2 * (size_t)nh.n_descsz < n) {
                for (size_t k = 0; k < nh.n_descsz; k++)
                    snprintf(out + 2 * k, 3, "%02x", desc[k]);
                return;
            }
            p = desc + desc_len;
        }
    }
}

static int collect_mapping(struct dl_phdr_info *info, size_t size, void *ctx)
{
    (void)size;
    profile *pr = ctx;
    char exe[PATH_MAX];
    const char *file = info->dlpi_name;
    if (!file || !file[0]) {
        /* The main program is listed first, with no name. */
        if (BUF_COUNT(&pr->maps, map_rec) != 0)
            return 0;
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0)
            return 0;
        exe[n] = '\0';
        file = exe;
    } else if (file[0] != '/') {
        return 0; /* the vDSO and the like: no file to symbolize from */
    }
    char build_id[2 * 64 + 1];
    build_id_hex(info, build_id, sizeof build_id);
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        /* Page-aligned, as /proc/self/maps shows it and pprof expects. */
        uintptr_t start = info->dlpi_addr + ph->p_vaddr, end = start + ph->p_memsz;
        map_rec m = {start & ~(page - 1), (end + page - 1) & ~(page - 1),
                     ph->p_offset & ~(page - 1), str_intern(&pr->strs, file),
                     str_intern(&pr->strs, build_id)};
        buf_put(&pr->maps, &m, sizeof m);
    }
    return 0;
}

static void map_locations(profile *pr)
{
    dl_iterate_phdr(collect_mapping, pr);
    if (pr->maps.failed)
        return;
    size_t nmaps = BUF_COUNT(&pr->maps, map_rec);
    for (size_t i = 0; i < BUF_COUNT(&pr->locs, uintptr_t); i++) {
        uintptr_t addr = BUF_AT(&pr->locs, uintptr_t, i);
        uint32_t id = 0;
        for (size_t k = 0; k < nmaps && !id; k++) {
            const map_rec *m = &BUF_AT(&pr->maps, map_rec, k);
            if (addr >= m->start && addr < m->limit)
                id = (uint32_t)k + 1;
        }
        buf_put(&pr->loc_map, &id, sizeof id);
    }
}

/* ---- Phase 2: the message ---------------------------------------------- */

static void encode_value_type(pbuf *out, pbuf *msg, unsigned field, uint32_t type, uint32_t unit)
{
    msg->len = 0;
    pb_uint(msg, VALUETYPE_TYPE, type);
    pb_uint(msg, VALUETYPE_UNIT, unit);
    pb_bytes(out, field, msg->b, msg->len);
}

static void encode_label(pbuf *msg, pbuf *label, uint32_t key, uint32_t str, uint64_t num,
                         uint32_t num_unit)
{
    label->len = 0;
    pb_uint(label, LABEL_KEY, key);
    pb_uint(label, LABEL_STR, str);
    pb_uint(label, LABEL_NUM, num);
    pb_uint(label, LABEL_NUM_UNIT, num_unit);
    pb_bytes(msg, SAMPLE_LABEL, label->b, label->len);
}

static void encode_samples(profile *pr, pbuf *out, pbuf *msg, pbuf *label, pbuf *ids)
{
    for (size_t s = 0; s < BUF_COUNT(&pr->sites, site_rec); s++) {
        const site_rec *r = &BUF_AT(&pr->sites, site_rec, s);
        ids->len = 0;
        for (size_t i = 0; i < r->depth; i++) {
            uint64_t id = location_id(pr, BUF_AT(&pr->pcs, uintptr_t, r->pc_first + i));
            buf_put(ids, &id, sizeof id);
        }
        if (ids->failed)
            return;
        msg->len = 0;
        pb_packed(msg, SAMPLE_LOCATION_ID, (const uint64_t *)(void *)ids->b, r->depth);
        pb_packed(msg, SAMPLE_VALUE, r->values, NVALUES);
        encode_label(msg, label, pr->pool_str, r->pool_str, 0, 0);
        encode_label(msg, label, pr->layout_str, r->layout_str, 0, 0);
        encode_label(msg, label, pr->bytes_str, 0, r->array_bytes, pr->bytes_str);
        pb_bytes(out, PROFILE_SAMPLE, msg->b, msg->len);
    }
}

static void encode_mappings(profile *pr, pbuf *out, pbuf *msg)
{
    for (size_t k = 0; k < BUF_COUNT(&pr->maps, map_rec); k++) {
        const map_rec *m = &BUF_AT(&pr->maps, map_rec, k);
        msg->len = 0;
        pb_uint(msg, MAPPING_ID, k + 1);
        pb_uint(msg, MAPPING_START, m->start);
        pb_uint(msg, MAPPING_LIMIT, m->limit);
        pb_uint(msg, MAPPING_OFFSET, m->offset);
        pb_uint(msg, MAPPING_FILENAME, m->file);
        pb_uint(msg, MAPPING_BUILD_ID, m->build_id);
        /* has_functions stays false (see the top of the file). */
        pb_bytes(out, PROFILE_MAPPING, msg->b, msg->len);
    }
}

static void encode_locations(profile *pr, pbuf *out, pbuf *msg, pbuf *line)
{
    for (size_t i = 0; i < BUF_COUNT(&pr->locs, uintptr_t); i++) {
        uint32_t fn = BUF_AT(&pr->loc_fn, uint32_t, i);
        msg->len = 0;
        pb_uint(msg, LOCATION_ID, i + 1);
        pb_uint(msg, LOCATION_MAPPING_ID, BUF_AT(&pr->loc_map, uint32_t, i));
        pb_uint(msg, LOCATION_ADDRESS, BUF_AT(&pr->locs, uintptr_t, i));
        if (fn) {
            line->len = 0;
            pb_uint(line, LINE_FUNCTION_ID, fn);
            pb_bytes(msg, LOCATION_LINE, line->b, line->len);
        }
        pb_bytes(out, PROFILE_LOCATION, msg->b, msg->len);
    }
}

static void encode_functions(profile *pr, pbuf *out, pbuf *msg)
{
    for (size_t f = 0; f < BUF_COUNT(&pr->fn_names, uint32_t); f++) {
        uint32_t name = BUF_AT(&pr->fn_names, uint32_t, f);
        msg->len = 0;
        pb_uint(msg, FUNCTION_ID, f + 1);
        pb_uint(msg, FUNCTION_NAME, name);
        pb_uint(msg, FUNCTION_SYSTEM_NAME, name);
        pb_bytes(out, PROFILE_FUNCTION, msg->b, msg->len);
    }
}

static const char comment_text[] =
    "safemap heap profile: one sample per recorded Get call stack (every Get at "
    "SM_CHECK_FULL; at SM_CHECK_CHEAP a sampled fraction, counts scaled by the rate)";

/* Encodes the whole profile into out.  Every string is interned before the
 * first byte is encoded, so the string table can come in field order. */
static bool encode_profile(profile *pr, pbuf *out)
{
    strtab *st = &pr->strs;
    uint32_t types[NVALUES][2] = {
        {str_intern(st, "alloc_objects"), str_intern(st, "count")},
        {str_intern(st, "alloc_space"), str_intern(st, "bytes")},
        {str_intern(st, "inuse_objects"), str_intern(st, "count")},
        {str_intern(st, "inuse_space"), str_intern(st, "bytes")},
    };
    uint32_t space = str_intern(st, "space"), bytes = str_intern(st, "bytes");
    uint32_t comment = str_intern(st, comment_text);
    /* Each step reads what the previous one built: stop at the first
     * failure. */
    build_locations(pr);
    if (st->failed || pr->locs.failed)
        return false;
    name_locations(pr);
    if (st->failed || pr->loc_fn.failed || pr->fn_names.failed || pr->fn_of_str.failed)
        return false;
    map_locations(pr);
    if (st->failed || pr->maps.failed || pr->loc_map.failed)
        return false;

    pbuf msg = {0}, inner = {0}, ids = {0};
    for (int v = 0; v < NVALUES; v++)
        encode_value_type(out, &msg, PROFILE_SAMPLE_TYPE, types[v][0], types[v][1]);
    encode_samples(pr, out, &msg, &inner, &ids);
    encode_mappings(pr, out, &msg);
    encode_locations(pr, out, &msg, &inner);
    encode_functions(pr, out, &msg);
    for (size_t i = 0; i < str_count(st); i++) {
        const char *s = str_at(st, i);
        pb_bytes(out, PROFILE_STRING_TABLE, s, strlen(s));
    }
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) == 0)
        pb_uint(out, PROFILE_TIME_NANOS,
                (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec);
    encode_value_type(out, &msg, PROFILE_PERIOD_TYPE, space, bytes);
    pb_uint(out, PROFILE_PERIOD, 1);
    pb_key(out, PROFILE_COMMENT, WIRE_VARINT);
    pb_varint(out, comment);
    bool ok = !msg.failed && !inner.failed && !ids.failed && !out->failed;
    buf_release(&msg);
    buf_release(&inner);
    buf_release(&ids);
    return ok;
}

static void profile_release(profile *pr)
{
    str_release(&pr->strs);
    pbuf *bufs[] = {&pr->sites,   &pr->pcs,      &pr->locs,      &pr->loc_fn,
                    &pr->loc_map, &pr->fn_names, &pr->fn_of_str, &pr->maps};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        buf_release(bufs[i]);
}

/* ---- Phase 3: the gzip container --------------------------------------- */

/* CRC-32 as gzip uses it (IEEE 802.3, reflected polynomial 0xEDB88320).
 * The table is built on the stack per call: 2 K operations, no shared
 * state to initialise. */
static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

static void le16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void le32(unsigned char *p, uint32_t v)
{
    le16(p, v & 0xFFFF);
    le16(p + 2, v >> 16);
}

static bool write_all(int fd, const void *p, size_t n)
{
    const unsigned char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w == 0)
            errno = EIO; /* no progress and no reason given */
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

#define STORED_MAX 65535u /* bytes in one stored DEFLATE block */

/* Writes msg[0..n) as a gzip member (RFC 1952) whose DEFLATE stream is
 * stored blocks: a final block bit, BTYPE 00, then LEN and its complement
 * NLEN, then the bytes.  An empty message is one empty final block. */
static bool write_gzip(int fd, const unsigned char *msg, size_t n)
{
    /* ID1 ID2, CM = 8 (deflate), FLG = 0, MTIME = 0 (none), XFL = 0, OS = 3 (Unix) */
    static const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    if (!write_all(fd, header, sizeof header))
        return false;
    size_t done = 0;
    do {
        size_t len = n - done < STORED_MAX ? n - done : STORED_MAX;
        unsigned char block[5];
        block[0] = done + len == n; /* BFINAL, BTYPE = 00 */
        le16(block + 1, (uint32_t)len);
        le16(block + 3, (uint32_t)~len & 0xFFFF);
        if (!write_all(fd, block, sizeof block) || !write_all(fd, msg + done, len))
            return false;
        done += len;
    } while (done < n);
    unsigned char trailer[8];
    le32(trailer, crc32_of(msg, n));
    le32(trailer + 4, (uint32_t)n); /* ISIZE: the length modulo 2^32 */
    return write_all(fd, trailer, sizeof trailer);
}

/* Creates path and writes the gzip stream.  Returns 0, or SM_EIO with
 * errno that of the failing call and the detail for sm_last_error(); on a
 * failed write the file is removed (only if it is a regular file: a device
 * such as /dev/stdout is left alone). */
static int write_file(const char *path, const unsigned char *msg, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return chk_eio("sm_profile_write", "cannot create %s", path);
    bool ok = write_gzip(fd, msg, n);
    int saved = errno;
    struct stat st;
    bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    if (close(fd) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (ok)
        return 0;
    if (regular)
        unlink(path);
    errno = saved;
    return chk_eio("sm_profile_write", "writing %s", path);
}

/* ---- The entry point --------------------------------------------------- */

int sm_profile_write(const char *path)
{
    if (!path)
        return chk_einval("sm_profile_write", "path is NULL");
    if (!path[0])
        return chk_einval("sm_profile_write", "path is empty");
    profile pr = {0};
    pbuf out = {0};
    int rc = SM_ENOMEM;
    str_intern(&pr.strs, ""); /* string 0 */
    pr.pool_str = str_intern(&pr.strs, "pool");
    pr.layout_str = str_intern(&pr.strs, "layout");
    pr.bytes_str = str_intern(&pr.strs, "bytes");
    reg_each_pool(copy_pool, &pr);
    if (!pr.strs.failed && !pr.sites.failed && !pr.pcs.failed && encode_profile(&pr, &out))
        rc = write_file(path, out.b, out.len);
    int saved = errno;
    buf_release(&out);
    profile_release(&pr);
    errno = saved;
    return rc;
}
