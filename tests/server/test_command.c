/*
 * test_command.c - the command layer (server/command.c) and the store
 * (server/store.c), through the RESP encoder: each test runs commands as
 * argument vectors and compares the encoded replies byte for byte.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "testlib.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "command.h"
#include "resp.h"
#include "store.h"

/* ---- Helpers ----------------------------------------------------------- */

static resp_buf out;
static int last_rc;

/* Runs a command given as blank-separated words; the reply is in `out` (NUL
 * terminated), the return value of smc_map_exec in last_rc. */
static const char *run3(smc_map *m, int resp3, const char *line)
{
    char copy[4096];
    smc_arg argv[512];
    int argc = 0;
    snprintf(copy, sizeof copy, "%s", line);
    for (char *save, *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
        argv[argc++] = (smc_arg){w, strlen(w)};
    out.len = 0;
    smc_reply r;
    resp_reply_init(&r, &out, resp3);
    last_rc = smc_map_exec(m, argc, argv, &r);
    resp_buf_append(&out, "", 1);
    out.len--;
    return out.p;
}

static const char *run(smc_map *m, const char *line)
{
    return run3(m, 0, line);
}

static const char *runv(smc_map *m, int resp3, int argc, const smc_arg *argv)
{
    out.len = 0;
    smc_reply r;
    resp_reply_init(&r, &out, resp3);
    last_rc = smc_map_exec(m, argc, argv, &r);
    resp_buf_append(&out, "", 1);
    out.len--;
    return out.p;
}

static smc_map *new_map(const char *name, smc_type t, size_t len, int pooled)
{
    smc_spec s = {t, len, pooled};
    smc_map *m = NULL;
    int rc = smc_map_new(&m, name, strlen(name), &s);
    if (rc != 0)
        printf("  smc_map_new(%s) failed: %d\n", name, rc);
    return m;
}

static smc_arg A(const char *s)
{
    return (smc_arg){s, strlen(s)};
}

#define CHECK_STR(a, b) check_str((a), (b), __FILE__, __LINE__)
static int check_str(const char *a, const char *b, const char *file, int line)
{
    if (strcmp(a, b) == 0)
        return 1;
    tl_fail(file, line, "got \"%s\", want \"%s\"", a, b);
    return 0;
}

#define CHECK_PREFIX(a, b) check_prefix((a), (b), __FILE__, __LINE__)
static int check_prefix(const char *a, const char *b, const char *file, int line)
{
    if (strncmp(a, b, strlen(b)) == 0)
        return 1;
    tl_fail(file, line, "got \"%s\", want it to start with \"%s\"", a, b);
    return 0;
}

/* ---- Types and specs --------------------------------------------------- */

static void test_type_parse_accepts_every_type_in_any_case_and_refuses_others(void)
{
    const char *names[] = {"int8",   "int16",  "int32",  "int64", "uint8",
                           "uint16", "uint32", "uint64", "float", "double"};
    for (int t = 0; t < SMC_NTYPES; t++) {
        smc_type got;
        CHECK(smc_type_parse(names[t], strlen(names[t]), &got) == 0 && got == (smc_type)t);
        CHECK_STR(smc_type_name((smc_type)t), names[t]);
    }
    smc_type got;
    CHECK(smc_type_parse("DOUBLE", 6, &got) == 0 && got == SMC_DOUBLE);
    CHECK(smc_type_parse("Int8", 4, &got) == 0 && got == SMC_INT8);
    CHECK(smc_type_parse("int", 3, &got) == -1);
    CHECK(smc_type_parse("int88", 5, &got) == -1);
    CHECK(smc_type_parse("int8", 3, &got) == -1); /* "int" */
    CHECK(smc_type_parse("", 0, &got) == -1);
    CHECK_EQ(smc_type_size(SMC_INT16), 2);
    CHECK_EQ(smc_type_size(SMC_DOUBLE), 8);
    CHECK_EQ(smc_type_size(SMC_NTYPES), 0);
    CHECK_STR(smc_type_name(SMC_NTYPES), "?");
}

static int spec_parse(const char *line, smc_spec *s)
{
    char copy[256];
    smc_arg argv[8];
    int argc = 0;
    snprintf(copy, sizeof copy, "%s", line);
    for (char *save, *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
        argv[argc++] = (smc_arg){w, strlen(w)};
    out.len = 0;
    smc_reply r;
    resp_reply_init(&r, &out, 0);
    int rc = smc_spec_parse(argc, argv, s, &r);
    resp_buf_append(&out, "", 1);
    out.len--;
    return rc;
}

static void test_spec_parse_reads_type_length_and_pooled(void)
{
    smc_spec s;
    CHECK(spec_parse("int64 8", &s) == 0 && s.type == SMC_INT64 && s.len == 8 && !s.pooled);
    CHECK_EQ(out.len, 0);
    CHECK(spec_parse("Float 65536 pooled", &s) == 0 && s.type == SMC_FLOAT && s.len == 65536 &&
          s.pooled);
}

static void test_spec_parse_refuses_bad_type_length_and_extra_words(void)
{
    smc_spec s = {SMC_INT8, 3, 0};
    CHECK(spec_parse("int64", &s) == -1);
    CHECK_STR(out.p, "-ERR wrong number of arguments for 'sm.create' command\r\n");
    CHECK(spec_parse("int64 8 POOLED x", &s) == -1);
    CHECK(spec_parse("int128 8", &s) == -1);
    CHECK_PREFIX(out.p, "-ERR unknown type 'int128'");
    CHECK(spec_parse("int64 0", &s) == -1);
    CHECK_STR(out.p, "-ERR length '0' is not an integer in 1..65536\r\n");
    CHECK(spec_parse("int64 65537", &s) == -1);
    CHECK(spec_parse("int64 -1", &s) == -1);
    CHECK(spec_parse("int64 08", &s) == -1);
    CHECK(spec_parse("int64 8x", &s) == -1);
    CHECK(spec_parse("int64 8 POOLEDX", &s) == -1);
    CHECK_STR(out.p, "-ERR syntax error: expected POOLED, got 'POOLEDX'\r\n");
    CHECK(s.type == SMC_INT8 && s.len == 3 && !s.pooled); /* untouched */
}

static void test_map_new_refuses_bad_names_and_specs(void)
{
    smc_spec ok = {SMC_INT64, 2, 0};
    smc_map *m = (smc_map *)&ok; /* must stay untouched */
    CHECK_EQ(smc_map_new(&m, "", 0, &ok), SM_EINVAL);
    CHECK_EQ(smc_map_new(&m, "a b", 3, &ok), SM_EINVAL);
    CHECK_EQ(smc_map_new(&m, "a\nb", 3, &ok), SM_EINVAL);
    CHECK_EQ(smc_map_new(&m, "caf\xc3\xa9", 5, &ok), SM_EINVAL);
    char longname[SMC_NAME_MAX + 2];
    memset(longname, 'x', sizeof longname);
    CHECK_EQ(smc_map_new(&m, longname, SMC_NAME_MAX + 1, &ok), SM_EINVAL);
    smc_spec bad = {SMC_NTYPES, 2, 0};
    CHECK_EQ(smc_map_new(&m, "q", 1, &bad), SM_EINVAL);
    bad = (smc_spec){SMC_INT8, 0, 0};
    CHECK_EQ(smc_map_new(&m, "q", 1, &bad), SM_EINVAL);
    bad = (smc_spec){SMC_INT8, SMC_MAX_LEN + 1, 0};
    CHECK_EQ(smc_map_new(&m, "q", 1, &bad), SM_EINVAL);
    CHECK_EQ(smc_map_new(&m, "q", 1, NULL), SM_EINVAL);
    CHECK(m == (smc_map *)&ok);
    CHECK_EQ(smc_map_new(&m, longname, SMC_NAME_MAX, &ok), 0);
    CHECK_EQ(strlen(smc_map_name(m)), SMC_NAME_MAX);
    CHECK_EQ(smc_map_value_size(m), 16);
    CHECK(smc_map_spec(m)->type == SMC_INT64 && smc_map_spec(m)->len == 2);
    CHECK(smc_map_cmap(m) != NULL);
    smc_map_free(m);
    smc_map_free(NULL);
}

/* ---- Keys -------------------------------------------------------------- */

static void test_keys_are_strict_decimal_int64(void)
{
    struct {
        const char *s;
        int ok;
        int64_t v;
    } cases[] = {
        {"0", 1, 0},
        {"-0", 1, 0},
        {"7", 1, 7},
        {"-7", 1, -7},
        {"9223372036854775807", 1, INT64_MAX},
        {"-9223372036854775808", 1, INT64_MIN},
        {"9223372036854775808", 0, 0},
        {"-9223372036854775809", 0, 0},
        {"18446744073709551616", 0, 0},
        {"99999999999999999999999", 0, 0},
        {"", 0, 0},
        {"-", 0, 0},
        {"+1", 0, 0},
        {" 1", 0, 0},
        {"1 ", 0, 0},
        {"0-1", 0, 0},
        {"-0-1", 0, 0},
        {"00 1", 0, 0},
        {"0x1", 0, 0},
        {"00+1", 0, 0},
        {"0009223372036854775808", 0, 0},
        {"-0009223372036854775809", 0, 0},
        /* Leading zeros (redis-benchmark's __rand_int__ pads to 12 digits). */
        {"01", 1, 1},
        {"-01", 1, -1},
        {"000000012345", 1, 12345},
        {"-007", 1, -7},
        {"00", 1, 0},
        {"-00", 1, 0},
        {"0000000000000000000000000000009223372036854775807", 1, INT64_MAX},
        {"-0009223372036854775808", 1, INT64_MIN},
        {"1a", 0, 0},
        {"0x10", 0, 0},
        {"1.0", 0, 0},
        {"--1", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t v = 12345;
        smc_arg a = A(cases[i].s);
        int rc = smc_parse_key(&a, &v);
        if (!CHECK_EQ(rc, cases[i].ok ? 0 : -1))
            printf("    key \"%s\"\n", cases[i].s);
        CHECK_EQ(v, cases[i].ok ? cases[i].v : 12345);
    }
    /* Not NUL-terminated: only n bytes count. */
    smc_arg a = {"123456", 3};
    int64_t v;
    CHECK(smc_parse_key(&a, &v) == 0 && v == 123);
}

/* redis-benchmark's __rand_int__ keys: zero-padded, the same key as without
 * the zeros. */
static void test_zero_padded_keys_name_the_same_key(void)
{
    smc_map *m = new_map("z", SMC_INT64, 1, 0);
    if (!CHECK(m))
        return;
    CHECK_STR(run(m, "SM.PUT z 000000012345 7"), "+OK\r\n");
    CHECK_STR(run(m, "SM.GET z 12345"), "*1\r\n:7\r\n");
    CHECK_STR(run(m, "SM.PUT z -0042 8"), "+OK\r\n");
    CHECK_STR(run(m, "SM.GET z -42"), "*1\r\n:8\r\n");
    CHECK_STR(run(m, "SM.LEN z"), ":2\r\n");
    CHECK_EQ(strncmp(run(m, "SM.GET z 0x10"), "-ERR invalid key", 16), 0);
    smc_map_free(m);
}

/* ---- PUT / GET --------------------------------------------------------- */

static void test_put_then_get_returns_the_values_resp2_and_resp3(void)
{
    smc_map *m = new_map("q", SMC_INT64, 3, 0);
    if (!CHECK(m))
        return;
    CHECK_STR(run(m, "SM.PUT q 5 1 -2 9223372036854775807"), "+OK\r\n");
    CHECK_EQ(last_rc, 1);
    CHECK_STR(run(m, "sm.get q 5"), "*3\r\n:1\r\n:-2\r\n:9223372036854775807\r\n");
    CHECK_EQ(last_rc, 0);
    CHECK_STR(run3(m, 1, "Sm.Get q 5"), "*3\r\n:1\r\n:-2\r\n:9223372036854775807\r\n");
    CHECK_STR(run(m, "SM.PUT q 5 4 5 6"), "+OK\r\n");
    CHECK_STR(run(m, "SM.GET q 5"), "*3\r\n:4\r\n:5\r\n:6\r\n");
    CHECK_STR(run(m, "SM.PUT q -0 0 0 0"), "+OK\r\n");
    CHECK_STR(run(m, "SM.GET q 0"), "*3\r\n:0\r\n:0\r\n:0\r\n");
    smc_map_free(m);
}

static void test_put_with_wrong_count_is_refused_and_changes_nothing(void)
{
    smc_map *m = new_map("q", SMC_INT64, 8, 0);
    if (!CHECK(m))
        return;
    CHECK_STR(run(m, "SM.PUT q 1 1 2 3 4 5 6 7"),
              "-WRONGLEN map 'q' holds int64[8], got 7 values\r\n");
    CHECK_EQ(last_rc, SM_EINVAL);
    CHECK_STR(run(m, "SM.PUT q 1 1 2 3 4 5 6 7 8 9"),
              "-WRONGLEN map 'q' holds int64[8], got 9 values\r\n");
    CHECK_STR(run(m, "SM.PUT q 1 1"), "-WRONGLEN map 'q' holds int64[8], got 1 value\r\n");
    CHECK_STR(run(m, "SM.PUT q 1"), "-ERR wrong number of arguments for 'sm.put' command\r\n");
    CHECK_STR(run(m, "SM.LEN q"), ":0\r\n");
    CHECK_STR(run(m, "SM.GET q 1"), "*-1\r\n");
    smc_map_free(m);
}

static void test_put_with_value_out_of_range_is_refused_and_changes_nothing(void)
{
    struct {
        smc_type t;
        const char *value;
        const char *type;
    } cases[] = {
        {SMC_INT8, "128", "int8"},
        {SMC_INT8, "-129", "int8"},
        {SMC_INT16, "32768", "int16"},
        {SMC_INT16, "-32769", "int16"},
        {SMC_INT32, "2147483648", "int32"},
        {SMC_INT32, "-2147483649", "int32"},
        {SMC_INT64, "9223372036854775808", "int64"},
        {SMC_INT64, "-9223372036854775809", "int64"},
        {SMC_INT64, "123456789012345678901234567890", "int64"},
        {SMC_UINT8, "256", "uint8"},
        {SMC_UINT8, "-1", "uint8"},
        {SMC_UINT16, "65536", "uint16"},
        {SMC_UINT32, "4294967296", "uint32"},
        {SMC_UINT64, "18446744073709551616", "uint64"},
        {SMC_UINT64, "-1", "uint64"},
        {SMC_FLOAT, "1e39", "float"},
        {SMC_FLOAT, "-1e39", "float"},
        {SMC_DOUBLE, "1e309", "double"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        smc_map *m = new_map("r", cases[i].t, 2, 0);
        if (!CHECK(m))
            return;
        char cmd[128], want[128];
        snprintf(cmd, sizeof cmd, "SM.PUT r 1 0 %s", cases[i].value);
        snprintf(want, sizeof want, "-ERR value %s out of range for %s\r\n", cases[i].value,
                 cases[i].type);
        CHECK_STR(run(m, cmd), want);
        CHECK_EQ(last_rc, SM_EINVAL);
        CHECK_STR(run(m, "SM.LEN r"), ":0\r\n");
        smc_map_free(m);
    }
}

static void test_put_with_a_non_number_is_refused_and_changes_nothing(void)
{
    smc_map *mi = new_map("i", SMC_INT32, 1, 0);
    smc_map *mf = new_map("f", SMC_DOUBLE, 1, 0);
    if (!CHECK(mi && mf))
        return;
    const char *bad_int[] = {"1.5", "+1", "01", "1e3", "x", "-", "0x1", "--1", "1-"};
    for (size_t i = 0; i < sizeof bad_int / sizeof bad_int[0]; i++) {
        char cmd[64], want[96];
        snprintf(cmd, sizeof cmd, "SM.PUT i 1 %s", bad_int[i]);
        snprintf(want, sizeof want, "-ERR value '%s' is not an integer\r\n", bad_int[i]);
        CHECK_STR(run(mi, cmd), want);
    }
    const char *bad_real[] = {"abc", "1x", "1.5.5", "--1", "1e", "infinityy"};
    for (size_t i = 0; i < sizeof bad_real / sizeof bad_real[0]; i++) {
        char cmd[64], want[96];
        snprintf(cmd, sizeof cmd, "SM.PUT f 1 %s", bad_real[i]);
        snprintf(want, sizeof want, "-ERR value '%s' is not a number\r\n", bad_real[i]);
        CHECK_STR(run(mf, cmd), want);
    }
    /* Blanks, empty, embedded NUL and over-long text: built by hand. */
    smc_arg argv[4] = {A("SM.PUT"), A("f"), A("1"), A(" 1")};
    CHECK_STR(runv(mf, 0, 4, argv), "-ERR value ' 1' is not a number\r\n");
    argv[3] = A("1 ");
    CHECK_STR(runv(mf, 0, 4, argv), "-ERR value '1 ' is not a number\r\n");
    argv[3] = A("");
    CHECK_STR(runv(mf, 0, 4, argv), "-ERR value '' is not a number\r\n");
    runv(mi, 0, 4, argv);
    CHECK_STR(out.p, "-ERR value '' is not an integer\r\n");
    argv[3] = (smc_arg){"1\0"
                        "2",
                        3};
    runv(mf, 0, 4, argv);
    CHECK_EQ(last_rc, SM_EINVAL);
    char longnum[200];
    memset(longnum, '1', sizeof longnum);
    argv[3] = (smc_arg){longnum, sizeof longnum};
    runv(mf, 0, 4, argv);
    CHECK_PREFIX(out.p, "-ERR value '1111111111111111111111111111111111111111111111111111111111"
                        "111111' is not a number");
    CHECK_STR(run(mi, "SM.LEN i"), ":0\r\n");
    CHECK_STR(run(mf, "SM.LEN f"), ":0\r\n");
    /* The first bad value stops the command: nothing stored. */
    smc_map *m3 = new_map("t", SMC_INT8, 3, 0);
    CHECK_STR(run(m3, "SM.PUT t 1 1 2 300"), "-ERR value 300 out of range for int8\r\n");
    CHECK_STR(run(m3, "SM.EXISTS t 1"), ":0\r\n");
    smc_map_free(m3);
    smc_map_free(mi);
    smc_map_free(mf);
}

static void test_integer_types_round_trip_their_extremes(void)
{
    struct {
        smc_type t;
        const char *lo, *hi;
    } cases[] = {
        {SMC_INT8, "-128", "127"},
        {SMC_INT16, "-32768", "32767"},
        {SMC_INT32, "-2147483648", "2147483647"},
        {SMC_INT64, "-9223372036854775808", "9223372036854775807"},
        {SMC_UINT8, "0", "255"},
        {SMC_UINT16, "0", "65535"},
        {SMC_UINT32, "0", "4294967295"},
        {SMC_UINT64, "0", "9223372036854775807"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        smc_map *m = new_map("e", cases[i].t, 3, 0);
        if (!CHECK(m))
            return;
        char cmd[160], want[160];
        snprintf(cmd, sizeof cmd, "SM.PUT e -5 %s -0 %s", cases[i].lo, cases[i].hi);
        CHECK_STR(run(m, cmd), "+OK\r\n");
        snprintf(want, sizeof want, "*3\r\n:%s\r\n:0\r\n:%s\r\n", cases[i].lo, cases[i].hi);
        CHECK_STR(run(m, "SM.GET e -5"), want);
        CHECK_STR(run3(m, 1, "SM.GET e -5"), want);
        smc_map_free(m);
    }
}

static void test_uint64_above_int64_max_replies_as_a_bulk_string(void)
{
    smc_map *m = new_map("u", SMC_UINT64, 2, 0);
    if (!CHECK(m))
        return;
    CHECK_STR(run(m, "SM.PUT u 1 18446744073709551615 9223372036854775808"), "+OK\r\n");
    CHECK_STR(run(m, "SM.GET u 1"),
              "*2\r\n$20\r\n18446744073709551615\r\n$19\r\n9223372036854775808\r\n");
    smc_map_free(m);
}

static void test_float_and_double_reply_the_shortest_decimals(void)
{
    smc_map *f = new_map("f", SMC_FLOAT, 4, 0);
    smc_map *d = new_map("d", SMC_DOUBLE, 4, 0);
    if (!CHECK(f && d))
        return;
    CHECK_STR(run(f, "SM.PUT f 1 0.1 -2.5 1e30 inf"), "+OK\r\n");
    CHECK_STR(run(f, "SM.GET f 1"),
              "*4\r\n$3\r\n0.1\r\n$4\r\n-2.5\r\n$5\r\n1e+30\r\n$3\r\ninf\r\n");
    CHECK_STR(run3(f, 1, "SM.GET f 1"), "*4\r\n,0.1\r\n,-2.5\r\n,1e+30\r\n,inf\r\n");
    CHECK_STR(run(d, "SM.PUT d 1 0.1 -inf nan 1e-300"), "+OK\r\n");
    CHECK_STR(run(d, "SM.GET d 1"),
              "*4\r\n$3\r\n0.1\r\n$4\r\n-inf\r\n$3\r\nnan\r\n$6\r\n1e-300\r\n");
    CHECK_STR(run3(d, 1, "SM.GET d 1"), "*4\r\n,0.1\r\n,-inf\r\n,nan\r\n,1e-300\r\n");
    CHECK_STR(run(d, "SM.PUT d 2 0.30000000000000004 1 2 3"), "+OK\r\n");
    CHECK_STR(run3(d, 1, "SM.GET d 2"), "*4\r\n,0.30000000000000004\r\n,1\r\n,2\r\n,3\r\n");
    /* Underflow to a subnormal or zero is not an error. */
    CHECK_STR(run(f, "SM.PUT f 2 1e-40 1e-50 0x1p3 -0"), "+OK\r\n");
    CHECK_STR(run(f, "SM.GET f 2"), "*4\r\n$5\r\n1e-40\r\n$1\r\n0\r\n$1\r\n8\r\n$2\r\n-0\r\n");
    smc_map_free(f);
    smc_map_free(d);
}

static void test_get_of_an_absent_key_replies_null(void)
{
    smc_map *m = new_map("q", SMC_INT16, 2, 0);
    if (!CHECK(m))
        return;
    CHECK_STR(run(m, "SM.GET q 1"), "*-1\r\n");
    CHECK_STR(run3(m, 1, "SM.GET q 1"), "_\r\n");
    CHECK_STR(run(m, "SM.GETB q 1"), "$-1\r\n");
    CHECK_STR(run3(m, 1, "SM.GETB q 1"), "_\r\n");
    CHECK_EQ(last_rc, 0);
    CHECK_STR(run(m, "SM.GET q x"), "-ERR invalid key 'x': keys are decimal int64\r\n");
    CHECK_STR(run(m, "SM.GETB q 1.0"), "-ERR invalid key '1.0': keys are decimal int64\r\n");
    CHECK_EQ(last_rc, SM_EINVAL);
    smc_map_free(m);
}

/* ---- PUTB / GETB ------------------------------------------------------- */

static void test_putb_and_getb_round_trip_raw_bytes(void)
{
    smc_map *m = new_map("b", SMC_INT16, 3, 0);
    if (!CHECK(m))
        return;
    char bytes[7] = {'x', 1, 0, 2, 0, '\r', '\n'}; /* odd offset: unaligned */
    smc_arg argv[4] = {A("SM.PUTB"), A("b"), A("9"), {bytes + 1, 6}};
    CHECK_STR(runv(m, 0, 4, argv), "+OK\r\n");
    CHECK_EQ(last_rc, 1);
    run(m, "SM.GETB b 9");
    CHECK(out.len == 12 && memcmp(out.p, "$6\r\n\1\0\2\0\r\n\r\n", 12) == 0);
    int16_t third = (int16_t)(('\n' << 8) | '\r');
    char want[64];
    snprintf(want, sizeof want, "*3\r\n:1\r\n:2\r\n:%d\r\n", third);
    CHECK_STR(run(m, "SM.GET b 9"), want);
    smc_map_free(m);
}

static void test_putb_with_the_wrong_length_is_refused_and_changes_nothing(void)
{
    smc_map *m = new_map("b", SMC_INT64, 8, 0);
    if (!CHECK(m))
        return;
    char bytes[65] = {0};
    smc_arg argv[5] = {A("SM.PUTB"), A("b"), A("1"), {bytes, 63}, A("x")};
    CHECK_STR(runv(m, 0, 4, argv), "-ERR SM.PUTB expects 64 bytes for int64[8], got 63\r\n");
    CHECK_EQ(last_rc, SM_EINVAL);
    argv[3].n = 65;
    CHECK_STR(runv(m, 0, 4, argv), "-ERR SM.PUTB expects 64 bytes for int64[8], got 65\r\n");
    argv[3].n = 64;
    CHECK_STR(runv(m, 0, 5, argv), "-ERR wrong number of arguments for 'sm.putb' command\r\n");
    CHECK_STR(runv(m, 0, 3, argv), "-ERR wrong number of arguments for 'sm.putb' command\r\n");
    argv[2] = A("k");
    CHECK_STR(runv(m, 0, 4, argv), "-ERR invalid key 'k': keys are decimal int64\r\n");
    CHECK_STR(run(m, "SM.LEN b"), ":0\r\n");
    smc_map_free(m);
}

static void test_values_over_4k_go_through_the_heap(void)
{
    smc_map *m = new_map("big", SMC_INT64, SMC_MAX_LEN, 1);
    if (!CHECK(m))
        return;
    size_t n = SMC_MAX_LEN * 8;
    unsigned char *v = malloc(n);
    for (size_t i = 0; i < n; i++)
        v[i] = (unsigned char)(i * 7);
    smc_arg argv[4] = {A("SM.PUTB"), A("big"), A("-3"), {(const char *)v, n}};
    CHECK_STR(runv(m, 0, 4, argv), "+OK\r\n");
    run(m, "SM.GETB big -3");
    CHECK(out.len == n + 11 && memcmp(out.p, "$524288\r\n", 9) == 0 &&
          memcmp(out.p + 9, v, n) == 0);
    run(m, "SM.GET big -3");
    CHECK_PREFIX(out.p, "*65536\r\n:");
    CHECK_STR(run(m, "SM.EXISTS big -3 -3 4"), ":2\r\n");
    /* SM.PUT with 65536 values, through argv. */
    smc_arg *args = malloc((3 + SMC_MAX_LEN) * sizeof *args);
    args[0] = A("SM.PUT");
    args[1] = A("big");
    args[2] = A("5");
    for (size_t i = 0; i < SMC_MAX_LEN; i++)
        args[3 + i] = A(i % 2 ? "-1" : "1");
    CHECK_STR(runv(m, 0, 3 + SMC_MAX_LEN, args), "+OK\r\n");
    run(m, "SM.GET big 5");
    CHECK_PREFIX(out.p, "*65536\r\n:1\r\n:-1\r\n:1\r\n");
    CHECK_STR(run(m, "SM.DEL big 5 -3"), ":2\r\n");
    free(args);
    free(v);
    smc_map_free(m);
}

/* ---- Multi-key commands ------------------------------------------------ */

static void test_mget_replies_values_and_nulls_in_order(void)
{
    smc_map *m = new_map("q", SMC_UINT8, 2, 0);
    if (!CHECK(m))
        return;
    run(m, "SM.PUT q 1 1 2");
    run(m, "SM.PUT q 3 3 4");
    CHECK_STR(run(m, "SM.MGET q 1 2 3 1"),
              "*4\r\n*2\r\n:1\r\n:2\r\n*-1\r\n*2\r\n:3\r\n:4\r\n*2\r\n:1\r\n:2\r\n");
    CHECK_STR(run3(m, 1, "SM.MGET q 2"), "*1\r\n_\r\n");
    CHECK_EQ(last_rc, 0);
    smc_map_free(m);
}

static void test_mget_with_a_bad_key_replies_only_the_error(void)
{
    smc_map *m = new_map("q", SMC_UINT8, 2, 0);
    if (!CHECK(m))
        return;
    run(m, "SM.PUT q 1 1 2");
    CHECK_STR(run(m, "SM.MGET q 1 2 x"), "-ERR invalid key 'x': keys are decimal int64\r\n");
    CHECK_STR(run(m, "SM.MGET q"), "-ERR wrong number of arguments for 'sm.mget' command\r\n");
    smc_map_free(m);
}

static void test_del_counts_removed_keys_and_reports_whether_it_wrote(void)
{
    smc_map *m = new_map("q", SMC_INT32, 1, 0);
    if (!CHECK(m))
        return;
    run(m, "SM.PUT q 1 10");
    run(m, "SM.PUT q 2 20");
    CHECK_STR(run(m, "SM.DEL q 5"), ":0\r\n");
    CHECK_EQ(last_rc, 0);
    CHECK_STR(run(m, "SM.DEL q 1 1 2 3"), ":2\r\n");
    CHECK_EQ(last_rc, 1);
    CHECK_STR(run(m, "SM.LEN q"), ":0\r\n");
    run(m, "SM.PUT q 1 10");
    CHECK_STR(run(m, "SM.DEL q 1 z"), "-ERR invalid key 'z': keys are decimal int64\r\n");
    CHECK_STR(run(m, "SM.LEN q"), ":1\r\n"); /* the bad key stopped it before any delete */
    smc_map_free(m);
}

static void test_exists_counts_present_keys_as_redis_does(void)
{
    smc_map *m = new_map("q", SMC_INT32, 1, 0);
    if (!CHECK(m))
        return;
    run(m, "SM.PUT q 1 10");
    run(m, "SM.PUT q -1 10");
    CHECK_STR(run(m, "SM.EXISTS q 1 -1 1 2"), ":3\r\n");
    CHECK_STR(run(m, "SM.EXISTS q 2"), ":0\r\n");
    CHECK_STR(run(m, "SM.EXISTS q 1 -"), "-ERR invalid key '-': keys are decimal int64\r\n");
    smc_map_free(m);
}

static void test_len_and_info_describe_the_map(void)
{
    smc_map *m = new_map("stats", SMC_INT64, 4, 0);
    if (!CHECK(m))
        return;
    CHECK_STR(run(m, "SM.LEN stats"), ":0\r\n");
    for (int k = 0; k < 100; k++) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "SM.PUT stats %d 1 2 3 %d", k, k);
        run(m, cmd);
    }
    CHECK_STR(run(m, "SM.LEN stats"), ":100\r\n");
    run3(m, 1, "SM.INFO stats");
    CHECK_PREFIX(out.p, "%10\r\n$4\r\nname\r\n$5\r\nstats\r\n$4\r\ntype\r\n$5\r\nint64\r\n"
                        "$3\r\nlen\r\n:4\r\n$6\r\npooled\r\n:0\r\n$7\r\nentries\r\n:100\r\n"
                        "$5\r\nbytes\r\n:");
    CHECK(strstr(out.p, "$8\r\nsegments\r\n:") && strstr(out.p, "$6\r\nsplits\r\n:") &&
          strstr(out.p, "$12\r\nread_retries\r\n:") && strstr(out.p, "$11\r\nlimbo_bytes\r\n:"));
    run(m, "SM.INFO stats");
    CHECK_PREFIX(out.p, "*20\r\n$4\r\nname\r\n");
    CHECK_STR(run(m, "SM.INFO stats x"),
              "-ERR wrong number of arguments for 'sm.info' command\r\n");
    CHECK_STR(run(m, "SM.LEN stats x"), "-ERR wrong number of arguments for 'sm.len' command\r\n");
    smc_map_free(m);
}

/* SM.INFO's "bytes" of a map, or -1. */
static long long info_bytes(smc_map *m)
{
    char cmd[64];
    snprintf(cmd, sizeof cmd, "SM.INFO %s", smc_map_name(m));
    const char *p = strstr(run(m, cmd), "$5\r\nbytes\r\n:");
    return p ? atoll(p + strlen("$5\r\nbytes\r\n:")) : -1;
}

/* smc_map_bytes counts everything the map holds: its own struct (256
 * stripe mutexes), the segments and, when pooled, the pool's values; SM.INFO
 * reports the same number. */
static void test_map_bytes_counts_the_struct_the_table_and_the_pool(void)
{
    CHECK_EQ(smc_map_bytes(NULL), 0);
    for (int pooled = 0; pooled <= 1; pooled++) {
        smc_map *m = new_map(pooled ? "pooled" : "inline", SMC_INT64, 64, pooled);
        if (!CHECK(m))
            return;
        size_t empty = smc_map_bytes(m);
        CHECK(empty >= 256 * sizeof(pthread_mutex_t));
        CHECK_EQ(info_bytes(m), (long long)empty);
        struct sm_cmap_stats st;
        CHECK_EQ(sm_cmap_stats(smc_map_cmap(m), &st), 0);
        CHECK(empty > st.bytes + 256 * sizeof(pthread_mutex_t));
        enum { N = 2000 };
        char v[512] = {0};
        for (int k = 0; k < N; k++) {
            char key[16];
            snprintf(key, sizeof key, "%d", k);
            smc_arg argv[4] = {A("SM.PUTB"), A(smc_map_name(m)), A(key), {v, sizeof v}};
            runv(m, 0, 4, argv);
        }
        size_t full = smc_map_bytes(m);
        CHECK_EQ(info_bytes(m), (long long)full);
        CHECK_EQ(sm_cmap_stats(smc_map_cmap(m), &st), 0);
        CHECK_EQ(st.len, N);
        /* Inline: the values are in the segments; pooled: in the pool,
         * which smc_map_bytes must count beyond the table. */
        CHECK(full >= empty + (size_t)N * sizeof v);
        CHECK(full >=
              st.bytes + 256 * sizeof(pthread_mutex_t) + (pooled ? (size_t)N * sizeof v : 0));
        CHECK(full < empty + (size_t)N * sizeof v * 4);
        printf("  %s: empty %zu bytes, %d x 512-byte values: %zu bytes (table %zu)\n",
               smc_map_name(m), empty, N, full, st.bytes);
        smc_map_free(m);
    }
}

/* ---- SCAN -------------------------------------------------------------- */

/* Runs one SM.SCAN call; fills keys (up to cap) and returns the number, the
 * next cursor in *next; -1 on a reply that does not parse. */
static int scan_once(smc_map *m, const char *cursor, int count, int64_t *keys, int cap, char *next,
                     size_t next_cap)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "SM.SCAN %s %s COUNT %d", smc_map_name(m), cursor, count);
    const char *p = run(m, cmd);
    int curlen, n, used;
    if (sscanf(p, "*2\r\n$%d\r\n%n", &curlen, &used) != 1)
        return -1;
    p += used;
    snprintf(next, next_cap, "%.*s", curlen, p);
    p += curlen + 2;
    if (sscanf(p, "*%d\r\n%n", &n, &used) != 1 || n > cap)
        return -1;
    p += used;
    for (int i = 0; i < n; i++) {
        long long k;
        if (sscanf(p, ":%lld\r\n%n", &k, &used) != 1)
            return -1;
        keys[i] = k;
        p += used;
    }
    return n;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_scan_returns_every_key_once_in_ascending_order(void)
{
    smc_map *m = new_map("s", SMC_INT8, 1, 0);
    if (!CHECK(m))
        return;
    enum { N = 1000 };
    int64_t want[N];
    for (int i = 0; i < N; i++) {
        want[i] = (int64_t)((uint64_t)i * 0x9E3779B97F4A7C15u);
        char cmd[96];
        snprintf(cmd, sizeof cmd, "SM.PUT s %lld 1", (long long)want[i]);
        run(m, cmd);
    }
    qsort(want, N, sizeof want[0], cmp_i64);
    int64_t got[N + 16], page[16];
    int total = 0, calls = 0;
    char cursor[32] = "0", next[32];
    do {
        int n = scan_once(m, cursor, 7, page, 16, next, sizeof next);
        if (!CHECK(n >= 0) || !CHECK(total + n <= N))
            break;
        memcpy(got + total, page, (size_t)n * sizeof page[0]);
        total += n;
        snprintf(cursor, sizeof cursor, "%s", next);
    } while (strcmp(cursor, "0") != 0 && ++calls < 1000);
    CHECK_EQ(total, N);
    for (int i = 0; i < total && i < N; i++)
        if (!CHECK_EQ(got[i], want[i]))
            break;
    /* Default COUNT is 10; an empty map ends at once. */
    run(m, "SM.SCAN s 0");
    CHECK_PREFIX(out.p, "*2\r\n$");
    CHECK(strstr(out.p, "\r\n*10\r\n") != NULL);
    smc_map *e = new_map("e", SMC_INT8, 1, 0);
    CHECK_STR(run(e, "SM.SCAN e 0"), "*2\r\n$1\r\n0\r\n*0\r\n");
    smc_map_free(e);
    smc_map_free(m);
}

static void test_scan_returns_keys_present_throughout_while_the_map_grows(void)
{
    smc_map *m = new_map("g", SMC_INT32, 1, 0);
    if (!CHECK(m))
        return;
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "SM.PUT g %d 0", i * 10);
        run(m, cmd);
    }
    unsigned char seen[N] = {0};
    char cursor[32] = "0", next[32];
    int64_t page[32];
    int added = 0, calls = 0;
    do {
        int n = scan_once(m, cursor, 20, page, 32, next, sizeof next);
        if (!CHECK(n >= 0))
            break;
        for (int i = 0; i < n; i++)
            if (page[i] % 10 == 0 && page[i] >= 0 && page[i] < N * 10) {
                CHECK(!seen[page[i] / 10]); /* at most once */
                seen[page[i] / 10] = 1;
            }
        /* Grow the map between calls: keys before and after the cursor. */
        for (int j = 0; j < 50; j++, added++) {
            char cmd[64];
            snprintf(cmd, sizeof cmd, "SM.PUT g %d 1", (added * 7919) % (N * 10) * 3 + 1);
            run(m, cmd);
        }
        snprintf(cursor, sizeof cursor, "%s", next);
    } while (strcmp(cursor, "0") != 0 && ++calls < 10000);
    int missing = 0;
    for (int i = 0; i < N; i++)
        missing += !seen[i];
    CHECK_EQ(missing, 0);
    smc_map_free(m);
}

static void test_scan_covers_the_extreme_keys(void)
{
    smc_map *m = new_map("x", SMC_INT8, 1, 0);
    if (!CHECK(m))
        return;
    run(m, "SM.PUT x 9223372036854775807 1");
    run(m, "SM.PUT x -9223372036854775808 1");
    run(m, "SM.PUT x 0 1");
    run(m, "SM.PUT x -1 1");
    /* Cursor 2^63 is "from key 0" (keys biased by 2^63). */
    CHECK_STR(run(m, "SM.SCAN x 0 COUNT 2"),
              "*2\r\n$19\r\n9223372036854775808\r\n*2\r\n:-9223372036854775808\r\n:-1\r\n");
    CHECK_STR(run(m, "SM.SCAN x 9223372036854775808 COUNT 2"),
              "*2\r\n$1\r\n0\r\n*2\r\n:0\r\n:9223372036854775807\r\n");
    /* The last key is INT64_MAX and COUNT is filled: the cursor wraps to 0. */
    CHECK_STR(run(m, "SM.SCAN x 9223372036854775809 count 1"),
              "*2\r\n$1\r\n0\r\n*1\r\n:9223372036854775807\r\n");
    CHECK_STR(run(m, "SM.SCAN x 18446744073709551615 COUNT 5"),
              "*2\r\n$1\r\n0\r\n*1\r\n:9223372036854775807\r\n");
    smc_map_free(m);
}

static void test_scan_refuses_a_bad_cursor_or_count(void)
{
    smc_map *m = new_map("x", SMC_INT8, 1, 0);
    if (!CHECK(m))
        return;
    CHECK_STR(run(m, "SM.SCAN x -1"), "-ERR invalid cursor '-1'\r\n");
    CHECK_STR(run(m, "SM.SCAN x 18446744073709551616"),
              "-ERR invalid cursor '18446744073709551616'\r\n");
    CHECK_STR(run(m, "SM.SCAN x 0 COUNT 0"), "-ERR COUNT '0' is not an integer in 1..16777216\r\n");
    CHECK_STR(run(m, "SM.SCAN x 0 COUNT 16777217"),
              "-ERR COUNT '16777217' is not an integer in 1..16777216\r\n");
    CHECK_STR(run(m, "SM.SCAN x 0 MATCH 1"), "-ERR syntax error: expected COUNT, got 'MATCH'\r\n");
    CHECK_STR(run(m, "SM.SCAN x 0 COUNT"),
              "-ERR wrong number of arguments for 'sm.scan' command\r\n");
    CHECK_STR(run(m, "SM.SCAN x"), "-ERR wrong number of arguments for 'sm.scan' command\r\n");
    CHECK_STR(run(m, "SM.SCAN x 0 COUNT 1 COUNT 2"),
              "-ERR wrong number of arguments for 'sm.scan' command\r\n");
    smc_map_free(m);
}

/* ---- Dispatch ---------------------------------------------------------- */

static void test_wrong_arity_is_refused_for_every_command(void)
{
    smc_map *m = new_map("q", SMC_INT8, 1, 0);
    if (!CHECK(m))
        return;
    const char *cases[][2] = {
        {"SM.PUT q", "sm.put"},     {"SM.PUTB q 1", "sm.putb"}, {"SM.GET q", "sm.get"},
        {"SM.GET q 1 2", "sm.get"}, {"SM.GETB q", "sm.getb"},   {"SM.GETB q 1 2", "sm.getb"},
        {"SM.MGET q", "sm.mget"},   {"SM.DEL q", "sm.del"},     {"SM.EXISTS q", "sm.exists"},
        {"SM.LEN", "sm.len"},       {"SM.SCAN q", "sm.scan"},   {"SM.INFO", "sm.info"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char want[128];
        snprintf(want, sizeof want, "-ERR wrong number of arguments for '%s' command\r\n",
                 cases[i][1]);
        CHECK_STR(run(m, cases[i][0]), want);
        CHECK_EQ(last_rc, SM_EINVAL);
    }
    smc_map_free(m);
}

static void test_unknown_commands_are_refused(void)
{
    smc_map *m = new_map("q", SMC_INT8, 1, 0);
    if (!CHECK(m))
        return;
    CHECK_STR(run(m, "SM.CREATE q int8 1"), "-ERR unknown command 'SM.CREATE'\r\n");
    CHECK_STR(run(m, "GET q"), "-ERR unknown command 'GET'\r\n");
    CHECK_STR(run(m, "SM.GETX q 1"), "-ERR unknown command 'SM.GETX'\r\n");
    CHECK_STR(runv(m, 0, 0, NULL), "-ERR empty command\r\n");
    CHECK_EQ(last_rc, SM_EINVAL);
    smc_map_free(m);
}

static void test_cmd_flags_classify_the_commands(void)
{
    struct {
        const char *name;
        unsigned flags;
    } cases[] = {
        {"sm.put", SMC_CMD_WRITE | SMC_CMD_FAST},
        {"SM.PUTB", SMC_CMD_WRITE | SMC_CMD_FAST},
        {"sm.get", SMC_CMD_READ | SMC_CMD_FAST},
        {"sm.getb", SMC_CMD_READ | SMC_CMD_FAST},
        {"sm.mget", SMC_CMD_READ | SMC_CMD_FAST},
        {"sm.del", SMC_CMD_WRITE},
        {"sm.exists", SMC_CMD_READ | SMC_CMD_FAST},
        {"sm.len", SMC_CMD_READ | SMC_CMD_FAST},
        {"sm.scan", SMC_CMD_READ},
        {"sm.info", SMC_CMD_READ},
        {"sm.create", 0},
        {"get", 0},
        {"", 0},
        {"sm.putbb", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        smc_arg a = A(cases[i].name);
        if (!CHECK_EQ(smc_cmd_flags(&a), cases[i].flags))
            printf("    %s\n", cases[i].name);
    }
    CHECK_EQ(smc_cmd_flags(NULL), 0);
}

static void test_errorf_truncates_long_messages(void)
{
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    out.len = 0;
    smc_reply r;
    resp_reply_init(&r, &out, 0);
    smc_reply_errorf(&r, "ERR %s", big);
    CHECK(out.len == 1 + 511 + 2 && memcmp(out.p, "-ERR aaa", 8) == 0);
}

/* ---- Pooled maps ------------------------------------------------------- */

static void test_pooled_maps_behave_as_inline_ones(void)
{
    smc_map *m = new_map("p", SMC_DOUBLE, 2, 1);
    if (!CHECK(m))
        return;
    CHECK_STR(run(m, "SM.PUT p 1 1.5 2.5"), "+OK\r\n");
    CHECK_STR(run(m, "SM.PUT p 1 3.5 4.5"), "+OK\r\n");
    CHECK_STR(run(m, "SM.GET p 1"), "*2\r\n$3\r\n3.5\r\n$3\r\n4.5\r\n");
    CHECK_STR(run(m, "SM.MGET p 1 2"), "*2\r\n*2\r\n$3\r\n3.5\r\n$3\r\n4.5\r\n*-1\r\n");
    CHECK_STR(run(m, "SM.EXISTS p 1 2 1"), ":2\r\n");
    CHECK_STR(run(m, "SM.EXISTS p 1 x"), "-ERR invalid key 'x': keys are decimal int64\r\n");
    run3(m, 1, "SM.INFO p");
    CHECK(strstr(out.p, "$6\r\npooled\r\n:1\r\n") != NULL);
    CHECK_STR(run(m, "SM.DEL p 1"), ":1\r\n");
    CHECK_STR(run(m, "SM.LEN p"), ":0\r\n");
    run(m, "SM.PUT p 7 0 0"); /* freed with the map, pool after */
    smc_map_free(m);
}

/* ---- Observer ---------------------------------------------------------- */

typedef struct obs_log {
    int64_t keys[64];
    int64_t vals[64];
    int dels[64];
    int n;
    int fail_at; /* call number that returns an error; -1 none */
    smc_map *seen_map;
} obs_log;

static int record(smc_map *m, int64_t key, const void *value, void *ctx)
{
    obs_log *l = ctx;
    l->seen_map = m;
    if (l->n < 64) {
        l->keys[l->n] = key;
        l->dels[l->n] = value == NULL;
        l->vals[l->n] = 0;
        if (value)
            memcpy(&l->vals[l->n], value, sizeof(int64_t));
    }
    return l->n++ == l->fail_at ? SM_EIO : 0;
}

static void test_observer_sees_each_write_and_delete(void)
{
    smc_map *m = new_map("o", SMC_INT64, 1, 0);
    if (!CHECK(m))
        return;
    obs_log l = {.fail_at = -1};
    run(m, "SM.PUT o 1 5"); /* before the observer: not seen */
    smc_map_observe(m, record, &l);
    run(m, "SM.PUT o 2 6");
    int64_t v = 7;
    smc_arg argv[4] = {A("SM.PUTB"), A("o"), A("3"), {(const char *)&v, 8}};
    runv(m, 0, 4, argv);
    run(m, "SM.DEL o 1 9 2");
    run(m, "SM.PUT o 2 bad"); /* refused: not seen */
    run(m, "SM.GET o 3");     /* a read: not seen */
    CHECK_EQ(l.n, 4);
    CHECK(l.seen_map == m);
    CHECK(l.keys[0] == 2 && !l.dels[0] && l.vals[0] == 6);
    CHECK(l.keys[1] == 3 && !l.dels[1] && l.vals[1] == 7);
    CHECK(l.keys[2] == 1 && l.dels[2]);
    CHECK(l.keys[3] == 2 && l.dels[3]);
    smc_map_observe(m, NULL, NULL);
    run(m, "SM.PUT o 4 1");
    CHECK_EQ(l.n, 4);
    smc_map_free(m);
}

static void test_observer_failure_is_reported_after_the_write(void)
{
    smc_map *m = new_map("o", SMC_INT64, 1, 0);
    if (!CHECK(m))
        return;
    obs_log l = {.fail_at = 0};
    smc_map_observe(m, record, &l);
    CHECK_STR(run(m, "SM.PUT o 1 5"),
              "-ERR the write was applied but could not be logged (SM_EIO: a write to a file or "
              "stream failed)\r\n");
    CHECK(last_rc < 0);
    CHECK_STR(run(m, "SM.GET o 1"), "*1\r\n:5\r\n");
    run(m, "SM.PUT o 2 5");
    l.fail_at = 2;
    CHECK_PREFIX(run(m, "SM.DEL o 1 2"), "-ERR the write was applied");
    CHECK_EQ(l.n, 3); /* the second delete did not run */
    CHECK_STR(run(m, "SM.LEN o"), ":1\r\n");
    l.fail_at = 3;
    int64_t v = 1;
    smc_arg argv[4] = {A("SM.PUTB"), A("o"), A("9"), {(const char *)&v, 8}};
    CHECK_PREFIX(runv(m, 0, 4, argv), "-ERR the write was applied");
    smc_map_free(m);
}

/* Two threads write increasing values to the same keys; the observer logs
 * per key the last value it saw.  If calls for a key arrived out of order,
 * the log's last value would differ from the map's. */
enum { ORD_KEYS = 8, ORD_WRITES = 20000 };
typedef struct ord_ctx {
    pthread_mutex_t mu;
    int64_t last[ORD_KEYS];
    int out_of_order;
} ord_ctx;

static int ord_record(smc_map *m, int64_t key, const void *value, void *ctx)
{
    (void)m;
    ord_ctx *o = ctx;
    int64_t v;
    memcpy(&v, value, sizeof v);
    pthread_mutex_lock(&o->mu);
    o->last[key] = v;
    pthread_mutex_unlock(&o->mu);
    return 0;
}

typedef struct ord_thread {
    smc_map *m;
    int id;
    pthread_barrier_t *start;
} ord_thread;

static void *ord_writer(void *arg)
{
    ord_thread *t = arg;
    resp_buf b;
    resp_buf_init(&b);
    smc_reply r;
    resp_reply_init(&r, &b, 0);
    pthread_barrier_wait(t->start);
    for (int i = 0; i < ORD_WRITES; i++) {
        char key[8], val[24];
        snprintf(key, sizeof key, "%d", i % ORD_KEYS);
        snprintf(val, sizeof val, "%d", i * 2 + t->id);
        smc_arg argv[4] = {A("SM.PUT"), A("o"), A(key), A(val)};
        b.len = 0;
        smc_map_exec(t->m, 4, argv, &r);
    }
    resp_buf_free(&b);
    return NULL;
}

static void test_observer_sees_one_keys_writes_in_the_order_they_took_effect(void)
{
    smc_map *m = new_map("o", SMC_INT64, 1, 0);
    if (!CHECK(m))
        return;
    ord_ctx o = {.mu = PTHREAD_MUTEX_INITIALIZER};
    smc_map_observe(m, ord_record, &o);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    ord_thread t[2] = {{m, 0, &start}, {m, 1, &start}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, ord_writer, &t[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int k = 0; k < ORD_KEYS; k++) {
        int64_t v;
        CHECK_EQ(sm_cmap_get(smc_map_cmap(m), k, &v), 0);
        CHECK_EQ(v, o.last[k]);
    }
    smc_map_free(m);
}

static void test_refcounted_map_is_freed_by_the_last_release(void)
{
    smc_map *m = new_map("rc", SMC_INT8, 1, 1);
    if (!CHECK(m))
        return;
    smc_map_retain(m);
    smc_map_release(m);
    run(m, "SM.PUT rc 1 1"); /* still alive (ASan would say otherwise) */
    CHECK_STR(run(m, "SM.LEN rc"), ":1\r\n");
    smc_map_release(m); /* the last: freed (LeakSanitizer checks) */
    smc_map_release(NULL);
}

/* ---- Out of memory ----------------------------------------------------- */

/* An allocator that fails once `budget` allocations have been made. */
static long oom_budget = -1;

static void *budget_alloc(size_t size, size_t align, void *ctx)
{
    (void)ctx;
    if (oom_budget == 0)
        return NULL;
    if (oom_budget > 0)
        oom_budget--;
    size_t rounded = (size + align - 1) / align * align;
    return aligned_alloc(align, rounded ? rounded : align);
}

static void budget_free(void *p, size_t size, void *ctx)
{
    (void)size;
    (void)ctx;
    free(p);
}

static void test_a_put_that_runs_out_of_memory_replies_oom_and_changes_nothing(void)
{
    sm_allocator a = {budget_alloc, budget_free, NULL};
    sm_set_allocator(&a);
    oom_budget = 0;
    smc_map *m = NULL;
    smc_spec s = {SMC_INT64, 1, 0};
    CHECK_EQ(smc_map_new(&m, "o", 1, &s), SM_ENOMEM);
    s.pooled = 1;
    CHECK_EQ(smc_map_new(&m, "o", 1, &s), SM_ENOMEM);
    CHECK(m == NULL);
    /* With a growing budget, maps get made and their puts run out. */
    int saw_oom = 0;
    for (long budget = 1; budget < 400 && saw_oom < 2; budget++) {
        oom_budget = budget;
        s.pooled = budget % 2;
        if (smc_map_new(&m, "o", 1, &s) != 0)
            continue;
        long stored = 0;
        for (long k = 0; k < 100000; k++) {
            char cmd[64];
            snprintf(cmd, sizeof cmd, "SM.PUT o %ld %ld", k, k);
            run(m, cmd);
            if (last_rc == 1) {
                stored++;
                continue;
            }
            CHECK_PREFIX(out.p, "-OOM SM_ENOMEM");
            CHECK_EQ(last_rc, SM_ENOMEM);
            saw_oom++;
            /* Nothing changed: the key is absent, the others are there. */
            oom_budget = -1;
            snprintf(cmd, sizeof cmd, "SM.EXISTS o %ld", k);
            CHECK_STR(run(m, cmd), ":0\r\n");
            char want[32];
            snprintf(want, sizeof want, ":%ld\r\n", stored);
            CHECK_STR(run(m, "SM.LEN o"), want);
            break;
        }
        oom_budget = -1;
        smc_map_free(m);
        m = NULL;
    }
    CHECK_EQ(saw_oom, 2);
    oom_budget = -1;
    sm_set_allocator(NULL);
}

/* ---- Store ------------------------------------------------------------- */

static void test_store_creates_finds_and_drops_maps(void)
{
    smd_store *st;
    if (!CHECK(smd_store_new(&st) == 0))
        return;
    smc_spec s = {SMC_INT64, 2, 0};
    uint64_t gen = smd_store_generation(st);
    CHECK_EQ(smd_store_create(st, "a", 1, &s), 0);
    CHECK_EQ(smd_store_generation(st), gen + 1);
    CHECK_EQ(smd_store_create(st, "a", 1, &s), SMD_EEXISTS);
    CHECK_EQ(smd_store_create(st, "b c", 3, &s), SM_EINVAL);
    smc_spec bad = {SMC_INT64, 0, 0};
    CHECK_EQ(smd_store_create(st, "z", 1, &bad), SM_EINVAL);
    CHECK_EQ(smd_store_generation(st), gen + 1);
    CHECK_EQ(smd_store_count(st), 1);
    smc_map *m = smd_store_get(st, "a", 1);
    if (CHECK(m != NULL)) {
        CHECK_STR(smc_map_name(m), "a");
        smd_store_put(st, m);
    }
    CHECK(smd_store_get(st, "b", 1) == NULL);
    smc_map *prefix = smd_store_get(st, "ab", 1); /* n bytes of the name only */
    if (CHECK(prefix != NULL))
        smd_store_put(st, prefix);
    CHECK(smd_store_get(st, "aa", 2) == NULL);
    CHECK_EQ(smd_store_drop(st, "a", 1), 0);
    CHECK_EQ(smd_store_generation(st), gen + 2);
    CHECK_EQ(smd_store_drop(st, "a", 1), SM_ENOENT);
    CHECK(smd_store_get(st, "a", 1) == NULL);
    CHECK_EQ(smd_store_count(st), 0);
    CHECK_EQ(smd_store_create(st, "a", 1, &s), 0); /* the name is free again */
    smd_store_free(st);
    smd_store_free(NULL);
}

static void test_store_dropped_map_lives_until_its_last_user_puts_it_back(void)
{
    smd_store *st;
    if (!CHECK(smd_store_new(&st) == 0))
        return;
    smc_spec s = {SMC_INT64, 1, 1};
    CHECK_EQ(smd_store_create(st, "m", 1, &s), 0);
    smc_map *m = smd_store_get(st, "m", 1);
    if (!CHECK(m))
        return;
    CHECK_EQ(smd_store_drop(st, "m", 1), 0);
    CHECK_STR(run(m, "SM.PUT m 1 1"), "+OK\r\n"); /* still usable */
    smd_store_put(st, m);                         /* freed here */
    smd_store_free(st);
}

typedef struct each_ctx {
    char names[64][16];
    int n, stop_at;
} each_ctx;

static int each_fn(smc_map *m, void *ctx)
{
    each_ctx *e = ctx;
    snprintf(e->names[e->n], sizeof e->names[0], "%s", smc_map_name(m));
    return ++e->n == e->stop_at ? 42 : 0;
}

static void test_store_each_visits_maps_in_name_order_and_stops_on_nonzero(void)
{
    smd_store *st;
    if (!CHECK(smd_store_new(&st) == 0))
        return;
    smc_spec s = {SMC_INT8, 1, 0};
    const char *names[] = {"m", "b", "zz", "a", "c1", "c0"};
    for (size_t i = 0; i < 6; i++)
        CHECK_EQ(smd_store_create(st, names[i], strlen(names[i]), &s), 0);
    each_ctx e = {.stop_at = -1};
    CHECK_EQ(smd_store_each(st, each_fn, &e), 0);
    CHECK_EQ(e.n, 6);
    const char *sorted[] = {"a", "b", "c0", "c1", "m", "zz"};
    for (int i = 0; i < 6 && i < e.n; i++)
        CHECK_STR(e.names[i], sorted[i]);
    e = (each_ctx){.stop_at = 2};
    CHECK_EQ(smd_store_each(st, each_fn, &e), 42);
    CHECK_EQ(e.n, 2);
    smd_store_free(st);
    smd_store *empty;
    CHECK_EQ(smd_store_new(&empty), 0);
    e = (each_ctx){.stop_at = -1};
    CHECK_EQ(smd_store_each(empty, each_fn, &e), 0);
    CHECK_EQ(e.n, 0);
    smd_store_free(empty);
}

static void test_store_holds_many_maps(void)
{
    smd_store *st;
    if (!CHECK(smd_store_new(&st) == 0))
        return;
    smc_spec s = {SMC_INT8, 1, 0};
    char name[32];
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof name, "map%d", i);
        CHECK_EQ(smd_store_create(st, name, strlen(name), &s), 0);
    }
    CHECK_EQ(smd_store_count(st), 500);
    for (int i = 0; i < 500; i += 2) {
        snprintf(name, sizeof name, "map%d", i);
        CHECK_EQ(smd_store_drop(st, name, strlen(name)), 0);
    }
    int found = 0;
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof name, "map%d", i);
        smc_map *m = smd_store_get(st, name, strlen(name));
        if (m) {
            found++;
            CHECK(i % 2 == 1);
            CHECK_STR(smc_map_name(m), name);
            smd_store_put(st, m);
        }
    }
    CHECK_EQ(found, 250);
    smd_store_free(st);
}

static void test_store_observer_applies_to_present_and_future_maps(void)
{
    smd_store *st;
    if (!CHECK(smd_store_new(&st) == 0))
        return;
    smc_spec s = {SMC_INT64, 1, 0};
    CHECK_EQ(smd_store_create(st, "before", 6, &s), 0);
    obs_log l = {.fail_at = -1};
    smd_store_observe(st, record, &l);
    CHECK_EQ(smd_store_create(st, "after", 5, &s), 0);
    smc_map *a = smd_store_get(st, "before", 6), *b = smd_store_get(st, "after", 5);
    if (CHECK(a && b)) {
        run(a, "SM.PUT before 1 1");
        CHECK(l.n == 1 && l.seen_map == a);
        run(b, "SM.PUT after 2 2");
        CHECK(l.n == 2 && l.seen_map == b);
    }
    smd_store_put(st, a);
    smd_store_put(st, b);
    smd_store_free(st);
}

typedef struct gate_ctx {
    smd_store *st;
    _Atomic int phase;
} gate_ctx;

static void *pauser(void *arg)
{
    gate_ctx *g = arg;
    smd_store_pause(g->st);
    atomic_store(&g->phase, 1);
    smd_store_resume(g->st);
    return NULL;
}

static void test_store_pause_waits_for_the_writes_in_the_gate(void)
{
    smd_store *st;
    if (!CHECK(smd_store_new(&st) == 0))
        return;
    gate_ctx g = {.st = st};
    smd_store_gate_enter(st);
    smd_store_gate_enter(st); /* two writers (as two threads would) */
    pthread_t th;
    pthread_create(&th, NULL, pauser, &g);
    usleep(20000);
    CHECK_EQ(atomic_load(&g.phase), 0);
    smd_store_gate_leave(st);
    usleep(20000);
    CHECK_EQ(atomic_load(&g.phase), 0);
    smd_store_gate_leave(st);
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&g.phase), 1);
    smd_store_pause(st);
    smd_store_resume(st);
    smd_store_free(st);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    resp_buf_init(&out);
    RUN(test_type_parse_accepts_every_type_in_any_case_and_refuses_others);
    RUN(test_spec_parse_reads_type_length_and_pooled);
    RUN(test_spec_parse_refuses_bad_type_length_and_extra_words);
    RUN(test_map_new_refuses_bad_names_and_specs);
    RUN(test_keys_are_strict_decimal_int64);
    RUN(test_zero_padded_keys_name_the_same_key);
    RUN(test_put_then_get_returns_the_values_resp2_and_resp3);
    RUN(test_put_with_wrong_count_is_refused_and_changes_nothing);
    RUN(test_put_with_value_out_of_range_is_refused_and_changes_nothing);
    RUN(test_put_with_a_non_number_is_refused_and_changes_nothing);
    RUN(test_integer_types_round_trip_their_extremes);
    RUN(test_uint64_above_int64_max_replies_as_a_bulk_string);
    RUN(test_float_and_double_reply_the_shortest_decimals);
    RUN(test_get_of_an_absent_key_replies_null);
    RUN(test_putb_and_getb_round_trip_raw_bytes);
    RUN(test_putb_with_the_wrong_length_is_refused_and_changes_nothing);
    RUN(test_values_over_4k_go_through_the_heap);
    RUN(test_mget_replies_values_and_nulls_in_order);
    RUN(test_mget_with_a_bad_key_replies_only_the_error);
    RUN(test_del_counts_removed_keys_and_reports_whether_it_wrote);
    RUN(test_exists_counts_present_keys_as_redis_does);
    RUN(test_len_and_info_describe_the_map);
    RUN(test_map_bytes_counts_the_struct_the_table_and_the_pool);
    RUN(test_scan_returns_every_key_once_in_ascending_order);
    RUN(test_scan_returns_keys_present_throughout_while_the_map_grows);
    RUN(test_scan_covers_the_extreme_keys);
    RUN(test_scan_refuses_a_bad_cursor_or_count);
    RUN(test_wrong_arity_is_refused_for_every_command);
    RUN(test_unknown_commands_are_refused);
    RUN(test_cmd_flags_classify_the_commands);
    RUN(test_errorf_truncates_long_messages);
    RUN(test_pooled_maps_behave_as_inline_ones);
    RUN(test_observer_sees_each_write_and_delete);
    RUN(test_observer_failure_is_reported_after_the_write);
    RUN(test_observer_sees_one_keys_writes_in_the_order_they_took_effect);
    RUN(test_refcounted_map_is_freed_by_the_last_release);
    RUN(test_a_put_that_runs_out_of_memory_replies_oom_and_changes_nothing);
    RUN(test_store_creates_finds_and_drops_maps);
    RUN(test_store_dropped_map_lives_until_its_last_user_puts_it_back);
    RUN(test_store_each_visits_maps_in_name_order_and_stops_on_nonzero);
    RUN(test_store_holds_many_maps);
    RUN(test_store_observer_applies_to_present_and_future_maps);
    RUN(test_store_pause_waits_for_the_writes_in_the_gate);
    resp_buf_free(&out);
    return tl_finish();
}
