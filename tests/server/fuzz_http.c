/*
 * fuzz_http.c - libFuzzer target for the HTTP port's parsing
 * (server/http_parse.c): routing, percent-decoding, content negotiation,
 * the JSON body readers and the JSON writers.  Built as fuzz_http when
 * SM_BUILD_FUZZ is on (clang); fuzz_http_replay runs the corpus
 * (tests/server/corpus_http) through it in every test build.
 *
 * The first byte of the input picks the function, the rest is its input,
 * copied into an allocation of exactly its size (so ASan sees any read past
 * the end).  Beyond "never crashes", it checks what must hold:
 *   - a routed name or key is no longer than its buffer, NUL-free and
 *     NUL-terminated; unescaping never writes past its capacity;
 *   - a body the spec or value reader accepts is valid JSON (smd_json_check),
 *     and the value slices lie inside the body in order;
 *   - everything the writers produce (strings of any bytes, values of any
 *     type made from the input's bytes) is valid JSON, and a value written
 *     for a float or double map reads back (through smd_http_parse_values)
 *     as the same number of elements.
 * Any failure aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_http: %s:%d: %s\n", __FILE__, __LINE__, #c);                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void fuzz_route(const char *p, size_t n)
{
    smd_route r;
    smd_route_kind k = smd_route_parse(p, n, &r);
    REQUIRE(k == r.kind);
    REQUIRE(r.name_len <= SMC_NAME_MAX && r.name[r.name_len] == '\0');
    REQUIRE(r.key_len < sizeof r.key && r.key[r.key_len] == '\0');
    REQUIRE(memchr(r.name, '\0', r.name_len) == NULL);
    if (k == SMD_ROUTE_BAD)
        REQUIRE(r.why != NULL);
    if (k == SMD_ROUTE_KEY)
        REQUIRE(r.name_len > 0 && r.key_len > 0);
}

static void fuzz_unescape(const char *p, size_t n)
{
    size_t cap = n ? (unsigned char)p[0] % 64 : 0;
    char *out = malloc(cap ? cap : 1);
    REQUIRE(out);
    long k = smd_http_unescape(n ? p + 1 : p, n ? n - 1 : 0, out, cap);
    REQUIRE(k >= -1 && (k < 0 || (size_t)k <= cap));
    if (k > 0)
        REQUIRE(memchr(out, '\0', (size_t)k) == NULL);
    free(out);
}

static void fuzz_headers(const char *p, size_t n)
{
    (void)smd_http_media_is(p, n, "application/json");
    (void)smd_http_media_is(p, n, "application/octet-stream");
    int w = smd_http_wants_octets(p, n);
    REQUIRE(w == 0 || w == 1);
}

static void fuzz_spec(const char *p, size_t n)
{
    smd_http_spec s;
    char err[128];
    if (smd_http_parse_spec(p, n, &s, err, sizeof err) == 0) {
        REQUIRE(smd_json_check(p, n, err, sizeof err) == 0);
        REQUIRE(s.len >= 1 && s.len <= SMC_MAX_LEN);
        REQUIRE(s.type_len < sizeof s.type && s.type[s.type_len] == '\0');
        REQUIRE(s.pooled == 0 || s.pooled == 1);
    } else {
        REQUIRE(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
    }
}

static void fuzz_values(const char *p, size_t n)
{
    smc_arg vals[8];
    size_t count = 0;
    char err[128];
    if (smd_http_parse_values(p, n, vals, 8, &count, err, sizeof err) != 0)
        return;
    REQUIRE(smd_json_check(p, n, err, sizeof err) == 0);
    const char *prev = p;
    for (size_t i = 0; i < count && i < 8; i++) {
        REQUIRE(vals[i].p >= prev && vals[i].p + vals[i].n <= p + n && vals[i].n > 0);
        prev = vals[i].p + vals[i].n;
    }
}

static void fuzz_writers(const char *p, size_t n)
{
    char err[128];
    smd_sbuf b = {0};
    smd_sbuf_json_str(&b, p, n);
    REQUIRE(!b.oom && smd_json_check(b.p, b.n, err, sizeof err) == 0);
    smd_sbuf_free(&b);

    if (n == 0)
        return;
    smc_type t = (smc_type)((unsigned char)p[0] % SMC_NTYPES);
    static const size_t size[SMC_NTYPES] = {1, 2, 4, 8, 1, 2, 4, 8, 4, 8};
    size_t len = (n - 1) / size[t];
    smd_sbuf_adds(&b, "{\"value\":");
    smd_http_value_json(&b, t, p + 1, len);
    smd_sbuf_adds(&b, "}");
    REQUIRE(!b.oom && smd_json_check(b.p, b.n, err, sizeof err) == 0);
    if (len > 0 && (t == SMC_FLOAT || t == SMC_DOUBLE)) {
        smc_arg vals[1];
        size_t count = 0;
        REQUIRE(smd_http_parse_values(b.p, b.n, vals, 1, &count, err, sizeof err) == 0);
        REQUIRE(count == len);
    }
    smd_sbuf_free(&b);
}

static void fuzz_json(const char *p, size_t n)
{
    char err[128];
    if (smd_json_check(p, n, err, sizeof err) != 0)
        REQUIRE(err[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t n = size - 1;
    char *p = malloc(n ? n : 1); /* exact size: ASan sees an over-read */
    if (!p)
        return 0;
    if (n)
        memcpy(p, data + 1, n);
    switch (data[0] % 7) {
    case 0:
        fuzz_route(p, n);
        break;
    case 1:
        fuzz_unescape(p, n);
        break;
    case 2:
        fuzz_headers(p, n);
        break;
    case 3:
        fuzz_spec(p, n);
        break;
    case 4:
        fuzz_values(p, n);
        break;
    case 5:
        fuzz_writers(p, n);
        break;
    default:
        fuzz_json(p, n);
        break;
    }
    free(p);
    return 0;
}
