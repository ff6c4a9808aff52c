/*
 * test_http_parse.c - unit tests of the HTTP port's pure parts
 * (server/http_parse.c): routes, percent-decoding, content negotiation, the
 * JSON validator and body readers, and the JSON writers.  The end-to-end
 * behaviour over a running safemapd is tests/server/test_http.py.
 */
#include <math.h>
#include <string.h>

#include "http_parse.h"
#include "testlib.h"

static smd_route_kind route(const char *path, smd_route *r)
{
    return smd_route_parse(path, strlen(path), r);
}

static void test_routes(void)
{
    smd_route r;
    CHECK_EQ(route("/health/live", &r), SMD_ROUTE_LIVE);
    CHECK_EQ(route("/health/ready?x", &r), SMD_ROUTE_READY);
    CHECK_EQ(route("/metrics", &r), SMD_ROUTE_METRICS);
    CHECK_EQ(route("/openapi.json", &r), SMD_ROUTE_OPENAPI);
    CHECK_EQ(route("/v1/maps", &r), SMD_ROUTE_MAPS);
    CHECK_EQ(route("/v1/maps/prices", &r), SMD_ROUTE_MAP);
    CHECK(strcmp(r.name, "prices") == 0 && r.name_len == 6);
    CHECK_EQ(route("/v1/maps/a%2Fb%22c/-42", &r), SMD_ROUTE_KEY);
    CHECK(strcmp(r.name, "a/b\"c") == 0 && strcmp(r.key, "-42") == 0 && r.key_len == 3);
    const char *none[] = {"",
                          "/",
                          "metrics",
                          "/metrics/",
                          "/v1",
                          "/v1/maps/",
                          "/v1/maps//1",
                          "/v1/maps/a/1/",
                          "/v1/maps/a/1/2",
                          "/health",
                          "/health/live/x",
                          "/V1/maps",
                          "//v1/maps",
                          "/v1/mapsx"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        if (!CHECK_EQ(route(none[i], &r), SMD_ROUTE_NONE))
            printf("  path %s\n", none[i]);
    CHECK_EQ(route("/v1/maps/a%zz", &r), SMD_ROUTE_BAD);
    CHECK(r.why != NULL);
    CHECK_EQ(route("/v1/maps/a%00b", &r), SMD_ROUTE_BAD);
    CHECK_EQ(route("/v1/maps/a%4", &r), SMD_ROUTE_BAD);
    CHECK_EQ(route("/v1/maps/a/%zz", &r), SMD_ROUTE_BAD);
    CHECK_EQ(route("/v1/maps/a/123456789012345678901234567890123", &r), SMD_ROUTE_BAD);

    char path[400];
    snprintf(path, sizeof path, "/v1/maps/%0200d", 0);
    CHECK_EQ(route(path, &r), SMD_ROUTE_MAP);
    CHECK_EQ(r.name_len, 200);
    snprintf(path, sizeof path, "/v1/maps/%0201d", 0);
    CHECK_EQ(route(path, &r), SMD_ROUTE_BAD);
    /* The length limit applies after decoding. */
    char enc[700] = "/v1/maps/";
    for (int i = 0; i < 200; i++)
        strcat(enc, "%41");
    CHECK_EQ(route(enc, &r), SMD_ROUTE_MAP);
    CHECK_EQ(r.name_len, 200);
}

static void test_unescape(void)
{
    char out[8];
    CHECK_EQ(smd_http_unescape("a%41%2f", 7, out, sizeof out), 3);
    CHECK(memcmp(out, "aA/", 3) == 0);
    CHECK_EQ(smd_http_unescape("abcdefghi", 9, out, sizeof out), -1); /* too long */
    CHECK_EQ(smd_http_unescape("abcdefgh", 8, out, sizeof out), 8);
    CHECK_EQ(smd_http_unescape("%", 1, out, sizeof out), -1);
    CHECK_EQ(smd_http_unescape("%4", 2, out, sizeof out), -1);
    CHECK_EQ(smd_http_unescape("%g0", 3, out, sizeof out), -1);
    CHECK_EQ(smd_http_unescape("%00", 3, out, sizeof out), -1);
    CHECK_EQ(smd_http_unescape("", 0, out, 0), 0);
}

static int media(const char *h, const char *t)
{
    return smd_http_media_is(h, strlen(h), t);
}

static int octets(const char *a)
{
    return smd_http_wants_octets(a, a ? strlen(a) : 0);
}

static void test_negotiation(void)
{
    CHECK(media("application/json", "application/json"));
    CHECK(media(" Application/JSON ; charset=utf-8", "application/json"));
    CHECK(!media("application/jsonx", "application/json"));
    CHECK(!media("text/plain", "application/json"));
    CHECK(!media("", "application/json"));
    CHECK(!smd_http_media_is(NULL, 0, "application/json"));

    CHECK(octets("application/octet-stream"));
    CHECK(octets("application/octet-stream, */*;q=0.1"));
    CHECK(octets("text/html, application/octet-stream;q=0.5"));
    CHECK(octets("application/json;q=0.4, application/octet-stream;q=0.5"));
    CHECK(!octets(NULL));
    CHECK(!octets(""));
    CHECK(!octets("*/*"));
    CHECK(!octets("application/json, application/octet-stream"));
    CHECK(!octets("application/octet-stream;q=0"));
    CHECK(!octets("application/octet-stream;q=bad"));
    CHECK(!octets("application/octet-stream;q=2"));
}

static int json_ok(const char *s)
{
    char err[128];
    return smd_json_check(s, strlen(s), err, sizeof err) == 0;
}

static void test_json_check(void)
{
    const char *good[] = {"0",
                          "-0",
                          "1.5e+3",
                          "-0.0E-1",
                          "\"\"",
                          "\"\\u00e9\\n\\\"\"",
                          "\"\\ud83d\\ude00\"",
                          "[]",
                          "{}",
                          " [1, {\"a\": null}] ",
                          "true",
                          "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!CHECK(json_ok(good[i])))
            printf("  rejected: %s\n", good[i]);
    const char *bad[] = {"",
                         "01",
                         "+1",
                         "1.",
                         ".5",
                         "1e",
                         "-",
                         "NaN",
                         "[1,]",
                         "{,}",
                         "{\"a\"}",
                         "{\"a\":1,}",
                         "[1 2]",
                         "\"\x01\"",
                         "\"\\x\"",
                         "\"\\u12g4\"",
                         "\"abc",
                         "tru",
                         "nul",
                         "[1] [2]",
                         "\"\xff\"",
                         "\"\xc0\x80\"",
                         "\"\xed\xa0\x80\"",
                         "{1:2}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!CHECK(!json_ok(bad[i])))
            printf("  accepted: %s\n", bad[i]);
    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = '\0';
    CHECK(json_ok(deep));
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = '\0';
    CHECK(!json_ok(deep));
}

static int spec(const char *body, smd_http_spec *s)
{
    char err[160];
    return smd_http_parse_spec(body, strlen(body), s, err, sizeof err);
}

static void test_spec(void)
{
    smd_http_spec s;
    CHECK_EQ(spec("{\"type\":\"int64\",\"len\":8}", &s), 0);
    CHECK(strcmp(s.type, "int64") == 0 && s.len == 8 && s.pooled == 0);
    CHECK_EQ(spec(" { \"pooled\" : true , \"len\" : 65536, \"type\" : \"\\u0064ouble\" } ", &s), 0);
    CHECK(strcmp(s.type, "double") == 0 && s.len == 65536 && s.pooled == 1);
    const char *bad[] = {"",
                         "[]",
                         "{}",
                         "{\"type\":\"int64\"}",
                         "{\"len\":1}",
                         "{\"type\":1,\"len\":1}",
                         "{\"type\":\"int64\",\"len\":0}",
                         "{\"type\":\"int64\",\"len\":65537}",
                         "{\"type\":\"int64\",\"len\":-1}",
                         "{\"type\":\"int64\",\"len\":1.0}",
                         "{\"type\":\"int64\",\"len\":99999999999999999999999}",
                         "{\"type\":\"int64\",\"len\":1,\"len\":1}",
                         "{\"type\":\"int64\",\"len\":1,\"pooled\":\"yes\"}",
                         "{\"type\":\"int64\",\"len\":1,\"other\":1}",
                         "{\"type\":\"int64\",\"len\":1} x",
                         "{\"type\":\"a-type-name-too-long-for-the-buffer\",\"len\":1}",
                         "{\"type\":\"int64\",\"len\":1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!CHECK(spec(bad[i], &s) != 0))
            printf("  accepted: %s\n", bad[i]);
}

static int values(const char *body, smc_arg *v, size_t max, size_t *count)
{
    char err[160];
    return smd_http_parse_values(body, strlen(body), v, max, count, err, sizeof err);
}

static void test_values(void)
{
    smc_arg v[4];
    size_t n;
    const char *body = "{\"value\": [1, -2.5e3, \"nan\", \"-Infinity\"]}";
    CHECK_EQ(values(body, v, 4, &n), 0);
    CHECK_EQ(n, 4);
    CHECK(v[0].n == 1 && v[0].p[0] == '1');
    CHECK(v[1].n == 6 && memcmp(v[1].p, "-2.5e3", 6) == 0);
    CHECK(v[2].n == 3 && memcmp(v[2].p, "nan", 3) == 0);
    CHECK(v[3].n == 9 && memcmp(v[3].p, "-Infinity", 9) == 0);
    CHECK_EQ(values(body, v, 2, &n), 0); /* counts past max */
    CHECK_EQ(n, 4);
    CHECK_EQ(values("{\"value\":[]}", v, 4, &n), 0);
    CHECK_EQ(n, 0);
    const char *bad[] = {"[1]",
                         "{}",
                         "{\"value\":1}",
                         "{\"value\":[null]}",
                         "{\"value\":[true]}",
                         "{\"value\":[\"1\"]}",
                         "{\"value\":[\"n\\u0061n\"]}",
                         "{\"value\":[[1]]}",
                         "{\"value\":[{}]}",
                         "{\"value\":[1],\"value\":[1]}",
                         "{\"value\":[1],\"x\":1}",
                         "{\"value\":[1,]}",
                         "{\"value\":[01]}",
                         "{\"value\":[1]",
                         "{\"value\":[1]}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!CHECK(values(bad[i], v, 4, &n) != 0))
            printf("  accepted: %s\n", bad[i]);
}

static void test_writers(void)
{
    smd_sbuf b = {0};
    smd_sbuf_json_str(&b, "a\"\\\n\x01\xff\xc3\xa9", 8);
    CHECK(strcmp(b.p, "\"a\\\"\\\\\\u000a\\u0001\\ufffd\xc3\xa9\"") == 0);
    smd_sbuf_free(&b);

    double d[4] = {0.1, NAN, -INFINITY, 1e300};
    smd_http_value_json(&b, SMC_DOUBLE, d, 4);
    CHECK(strcmp(b.p, "[0.1,\"nan\",\"-inf\",1e+300]") == 0);
    smd_sbuf_free(&b);
    float f[2] = {0.1f, 16777216.0f};
    smd_http_value_json(&b, SMC_FLOAT, f, 2);
    CHECK(strcmp(b.p, "[0.1,16777216]") == 0);
    smd_sbuf_free(&b);
    uint64_t u = UINT64_MAX;
    smd_http_value_json(&b, SMC_UINT64, &u, 1);
    CHECK(strcmp(b.p, "[18446744073709551615]") == 0);
    smd_sbuf_free(&b);
    int8_t i8[3] = {-128, 0, 127};
    smd_http_value_json(&b, SMC_INT8, i8, 3);
    CHECK(strcmp(b.p, "[-128,0,127]") == 0);
    smd_sbuf_free(&b);
    unsigned char odd[9] = {0};
    int64_t m = INT64_MIN;
    memcpy(odd + 1, &m, 8); /* unaligned */
    smd_http_value_json(&b, SMC_INT64, odd + 1, 1);
    CHECK(strcmp(b.p, "[-9223372036854775808]") == 0);
    smd_sbuf_free(&b);

    smd_sbuf_label(&b, "a\"b\\c\nd", 7);
    CHECK(strcmp(b.p, "a\\\"b\\\\c\\nd") == 0);
    smd_sbuf_free(&b);
    smd_sbuf_addf(&b, "%d-%s", 42, "x");
    CHECK(strcmp(b.p, "42-x") == 0 && b.n == 4);
    smd_sbuf_free(&b);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_routes);
    RUN(test_unescape);
    RUN(test_negotiation);
    RUN(test_json_check);
    RUN(test_spec);
    RUN(test_values);
    RUN(test_writers);
    return tl_finish();
}
