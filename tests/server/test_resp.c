/*
 * test_resp.c - the RESP parser and encoder (server/resp.c): whole and
 * partial commands, every rejection, the limits, inline commands, and the
 * bytes of every reply type in RESP2 and RESP3.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "testlib.h"

#include <limits.h>
#include <math.h>

#include "resp.h"

/* ---- Helpers ----------------------------------------------------------- */

static smc_arg argv[64];
static int argc;
static size_t used, need;
static const char *err;

static int parse_lim(const char *buf, size_t len, const resp_limits *lim, size_t cap)
{
    argc = -1;
    used = need = 0;
    err = NULL;
    return resp_parse(buf, len, lim, argv, cap, &argc, &used, &need, &err);
}

static int parse(const char *s)
{
    resp_limits lim;
    resp_limits_default(&lim);
    return parse_lim(s, strlen(s), &lim, 64);
}

static int arg_is(int i, const char *s)
{
    return i < argc && argv[i].n == strlen(s) && memcmp(argv[i].p, s, argv[i].n) == 0;
}

#define CHECK_REFUSED(input, msg)                                                                  \
    do {                                                                                           \
        CHECK_EQ(parse(input), RESP_ERROR);                                                        \
        if (!CHECK(err && strcmp(err, msg) == 0))                                                  \
            printf("    input %s: err \"%s\"\n", #input, err ? err : "(null)");                    \
    } while (0)

static resp_buf b;
static smc_reply r;

static const char *enc(void)
{
    resp_buf_append(&b, "", 1);
    b.len--;
    return b.p;
}

#define CHECK_OUT(want)                                                                            \
    do {                                                                                           \
        const char *got_ = enc();                                                                  \
        if (!CHECK(strcmp(got_, want) == 0))                                                       \
            printf("    got \"%s\"\n", got_);                                                      \
        b.len = 0;                                                                                 \
    } while (0)

/* ---- Multibulk --------------------------------------------------------- */

static void test_multibulk_command_is_parsed_with_arguments_pointing_into_the_buffer(void)
{
    const char *in = "*3\r\n$6\r\nSM.GET\r\n$1\r\nq\r\n$0\r\n\r\n";
    CHECK_EQ(parse(in), RESP_OK);
    CHECK_EQ(argc, 3);
    CHECK(arg_is(0, "SM.GET") && arg_is(1, "q") && arg_is(2, ""));
    CHECK(argv[0].p == in + 8);
    CHECK_EQ(used, strlen(in));
}

static void test_bulk_arguments_may_hold_any_bytes(void)
{
    const char in[] = "*2\r\n$4\r\n\r\n\0*\r\n$3\r\n$1\r\r\n";
    CHECK_EQ(parse_lim(in, sizeof in - 1, NULL, 64), RESP_OK);
    CHECK(argc == 2 && argv[0].n == 4 && memcmp(argv[0].p, "\r\n\0*", 4) == 0);
    CHECK(argv[1].n == 3 && memcmp(argv[1].p, "$1\r", 3) == 0);
}

static void test_every_prefix_of_a_command_asks_for_more_with_a_true_lower_bound(void)
{
    const char *in = "*4\r\n$6\r\nSM.PUT\r\n$1\r\nq\r\n$2\r\n17\r\n$20\r\n12345678901234567890\r\n";
    size_t full = strlen(in);
    for (size_t n = 0; n < full; n++) {
        resp_limits lim;
        resp_limits_default(&lim);
        int rc = parse_lim(in, n, &lim, 64);
        if (!CHECK_EQ(rc, RESP_MORE)) {
            printf("    prefix %zu\n", n);
            continue;
        }
        CHECK(need > n);
        if (!CHECK(need <= full))
            printf("    prefix %zu: need %zu of %zu\n", n, need, full);
    }
    CHECK_EQ(parse(in), RESP_OK);
    CHECK_EQ(used, full);
    /* need may be NULL. */
    CHECK_EQ(resp_parse(in, 3, NULL, argv, 64, &argc, &used, NULL, NULL), RESP_MORE);
}

static void test_need_covers_a_big_bulk_as_soon_as_its_header_arrives(void)
{
    const char *in = "*2\r\n$3\r\nSET\r\n$100000\r\nab";
    CHECK_EQ(parse(in), RESP_MORE);
    CHECK_EQ(need, 13 + 9 + 100000 + 2);
}

static void test_two_commands_back_to_back_are_parsed_one_at_a_time(void)
{
    const char *in = "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n";
    CHECK_EQ(parse(in), RESP_OK);
    CHECK(argc == 1 && arg_is(0, "PING") && used == 14);
    CHECK_EQ(parse(in + used), RESP_OK);
    CHECK(argc == 2 && arg_is(0, "ECHO") && arg_is(1, "hi"));
}

static void test_empty_multibulk_is_consumed_as_an_empty_command(void)
{
    CHECK_EQ(parse("*0\r\n*1\r\n"), RESP_OK);
    CHECK(argc == 0 && used == 4);
    CHECK_EQ(parse("*-1\r\n"), RESP_OK);
    CHECK(argc == 0 && used == 5);
}

static void test_malformed_headers_are_refused(void)
{
    CHECK_REFUSED("*x\r\n", "invalid multibulk length");
    CHECK_REFUSED("*\r\n", "invalid multibulk length");
    CHECK_REFUSED("*01\r\n", "invalid multibulk length");
    CHECK_REFUSED("*+1\r\n", "invalid multibulk length");
    CHECK_REFUSED("* 1\r\n", "invalid multibulk length");
    CHECK_REFUSED("*1\rx", "invalid multibulk length");
    CHECK_REFUSED("*1\n", "invalid multibulk length");
    CHECK_REFUSED("*1111111111111111111111111111111111111", "invalid multibulk length");
    CHECK_REFUSED("*1234567890123456789\r\n", "invalid multibulk length");
    CHECK_REFUSED("*1\r\n:1\r\n", "expected '$'");
    CHECK_REFUSED("*1\r\n*1\r\n", "expected '$'");
    CHECK_REFUSED("*1\r\n$-1\r\n", "invalid bulk length");
    CHECK_REFUSED("*1\r\n$x\r\n", "invalid bulk length");
    CHECK_REFUSED("*1\r\n$01\r\nx\r\n", "invalid bulk length");
    CHECK_REFUSED("*1\r\n$\r\n", "invalid bulk length");
    CHECK_REFUSED("*1\r\n$1\r\r\n", "invalid bulk length");
    CHECK_REFUSED("*1\r\n$1111111111111111111111111111111111111", "invalid bulk length");
    CHECK_REFUSED("*1\r\n$3\r\nabcX\n", "expected CRLF after bulk data");
    CHECK_REFUSED("*1\r\n$3\r\nabc\rX", "expected CRLF after bulk data");
    CHECK_REFUSED("*1\r\n$3\r\nabcd\r\n", "expected CRLF after bulk data");
    /* A number of 19 digits is refused as soon as they are seen; 18
     * digits without their CR yet wait for more. */
    char line[64] = "*";
    memset(line + 1, '1', 19);
    line[20] = '\0';
    CHECK_REFUSED(line, "invalid multibulk length");
    line[19] = '\0';
    CHECK_EQ(parse(line), RESP_MORE);
}

static void test_limits_on_arguments_and_bulk_length_are_enforced(void)
{
    resp_limits lim = {.max_args = 3, .max_bulk = 5, .max_inline = 16};
    const char *four = "*4\r\n";
    CHECK_EQ(parse_lim(four, strlen(four), &lim, 64), RESP_ERROR);
    CHECK(strcmp(err, "invalid multibulk length") == 0);
    const char *three = "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n";
    CHECK_EQ(parse_lim(three, strlen(three), &lim, 64), RESP_OK);
    CHECK_EQ(parse_lim(three, strlen(three), &lim, 2), RESP_ERROR);
    CHECK(strcmp(err, "too many arguments") == 0);
    const char *big = "*1\r\n$6\r\n";
    CHECK_EQ(parse_lim(big, strlen(big), &lim, 64), RESP_ERROR);
    CHECK(strcmp(err, "invalid bulk length") == 0);
    const char *ok = "*1\r\n$5\r\nabcde\r\n";
    CHECK_EQ(parse_lim(ok, strlen(ok), &lim, 64), RESP_OK);
    /* Inline: 16 bytes without a newline wait; 17 are refused. */
    CHECK_EQ(parse_lim("aaaaaaaaaaaaaaaa", 16, &lim, 64), RESP_MORE);
    CHECK_EQ(parse_lim("aaaaaaaaaaaaaaaaa", 17, &lim, 64), RESP_ERROR);
    CHECK(strcmp(err, "too big inline request") == 0);
    CHECK_EQ(parse_lim("a b c d\n", 8, &lim, 64), RESP_ERROR);
    CHECK(strcmp(err, "too many arguments") == 0);
    CHECK_EQ(parse_lim("a b c\n", 6, &lim, 2), RESP_ERROR);
    CHECK_EQ(parse_lim("a b c\n", 6, &lim, 3), RESP_OK);
    /* need saturates instead of overflowing. */
    lim = (resp_limits){.max_args = SIZE_MAX, .max_bulk = SIZE_MAX, .max_inline = 16};
    const char *huge = "*1\r\n$999999999999999999\r\n";
    CHECK_EQ(parse_lim(huge, strlen(huge), &lim, 64), RESP_MORE);
    CHECK(need > strlen(huge));
}

static void test_an_empty_buffer_asks_for_more(void)
{
    CHECK_EQ(parse(""), RESP_MORE);
    CHECK_EQ(need, 1);
    CHECK_EQ(parse("*"), RESP_MORE);
    CHECK_EQ(parse("*2"), RESP_MORE);
    CHECK_EQ(parse("*2\r"), RESP_MORE);
    CHECK_EQ(parse("*2\r\n$"), RESP_MORE);
}

/* ---- Inline ------------------------------------------------------------ */

static void test_inline_command_is_split_at_blanks(void)
{
    CHECK_EQ(parse("  SM.GET\tq   17 \r\n"), RESP_OK);
    CHECK(argc == 3 && arg_is(0, "SM.GET") && arg_is(1, "q") && arg_is(2, "17"));
    CHECK_EQ(used, 18);
    CHECK_EQ(parse("PING\n"), RESP_OK);
    CHECK(argc == 1 && arg_is(0, "PING") && used == 5);
    CHECK_EQ(parse("PING"), RESP_MORE);
    CHECK_EQ(need, 5);
}

static void test_empty_inline_lines_are_consumed_as_empty_commands(void)
{
    CHECK_EQ(parse("\r\nPING\r\n"), RESP_OK);
    CHECK(argc == 0 && used == 2);
    CHECK_EQ(parse("   \t\n"), RESP_OK);
    CHECK(argc == 0 && used == 5);
}

static void test_inline_quotes_hold_blanks_and_empty_arguments(void)
{
    CHECK_EQ(parse("SET \"a b\" '' 'c\"d' \"\"\r\n"), RESP_OK);
    CHECK(argc == 5 && arg_is(0, "SET") && arg_is(1, "a b") && arg_is(2, "") && arg_is(3, "c\"d") &&
          arg_is(4, ""));
    CHECK_EQ(parse("'\\x'\n"), RESP_OK); /* no escapes in single quotes */
    CHECK(argc == 1 && arg_is(0, "\\x"));
    CHECK_EQ(parse("a\"b c\n"), RESP_OK); /* a quote inside a word is a byte */
    CHECK(argc == 2 && arg_is(0, "a\"b"));
}

static void test_unbalanced_or_escaped_inline_quotes_are_refused(void)
{
    CHECK_REFUSED("GET \"abc\n", "unbalanced quotes in request");
    CHECK_REFUSED("GET 'abc\r\n", "unbalanced quotes in request");
    CHECK_REFUSED("GET \"a\"b\n", "unbalanced quotes in request");
    CHECK_REFUSED("GET \"a\\nb\"\n", "escapes in inline quotes are not supported");
}

/* ---- Encoder ----------------------------------------------------------- */

static void test_resp2_encodes_every_reply_type(void)
{
    resp_reply_init(&r, &b, 0);
    CHECK_EQ(r.resp3, 0);
    r.ops->simple(r.ctx, "OK", 2);
    CHECK_OUT("+OK\r\n");
    r.ops->error(r.ctx, "ERR x", 5);
    CHECK_OUT("-ERR x\r\n");
    r.ops->integer(r.ctx, 0);
    r.ops->integer(r.ctx, -42);
    r.ops->integer(r.ctx, LLONG_MIN);
    r.ops->integer(r.ctx, LLONG_MAX);
    CHECK_OUT(":0\r\n:-42\r\n:-9223372036854775808\r\n:9223372036854775807\r\n");
    r.ops->dbl(r.ctx, 1.5);
    r.ops->dbl(r.ctx, -INFINITY);
    CHECK_OUT("$3\r\n1.5\r\n$4\r\n-inf\r\n");
    r.ops->bulk(r.ctx, "a\0b", 3);
    r.ops->bulk(r.ctx, NULL, 0);
    CHECK(b.len == 9 + 6 && memcmp(b.p, "$3\r\na\0b\r\n$0\r\n\r\n", 15) == 0);
    b.len = 0;
    r.ops->null(r.ctx);
    r.ops->null_array(r.ctx);
    CHECK_OUT("$-1\r\n*-1\r\n");
    r.ops->array(r.ctx, 2);
    r.ops->map(r.ctx, 3);
    r.ops->array(r.ctx, 0);
    CHECK_OUT("*2\r\n*6\r\n*0\r\n");
}

static void test_resp3_encodes_every_reply_type(void)
{
    resp_reply_init(&r, &b, 7);
    CHECK_EQ(r.resp3, 1);
    r.ops->dbl(r.ctx, 0.1);
    r.ops->dbl(r.ctx, INFINITY);
    r.ops->dbl(r.ctx, NAN);
    r.ops->dbl(r.ctx, -0.0);
    r.ops->dbl(r.ctx, 1e300);
    r.ops->dbl(r.ctx, 5e-324);
    CHECK_OUT(",0.1\r\n,inf\r\n,nan\r\n,-0\r\n,1e+300\r\n,5e-324\r\n");
    r.ops->null(r.ctx);
    r.ops->null_array(r.ctx);
    CHECK_OUT("_\r\n_\r\n");
    r.ops->map(r.ctx, 3);
    r.ops->array(r.ctx, 1);
    CHECK_OUT("%3\r\n*1\r\n");
    r.ops->simple(r.ctx, "OK", 2);
    r.ops->integer(r.ctx, 5);
    r.ops->bulk(r.ctx, "x", 1);
    CHECK_OUT("+OK\r\n:5\r\n$1\r\nx\r\n");
}

static void test_doubles_are_written_as_their_shortest_decimal(void)
{
    resp_reply_init(&r, &b, 1);
    double vals[] = {0.1,      1.0 / 3, 123456789.125, 1e-310,
                     2.5e-320, -7.0,    1e21,          0.30000000000000004};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        r.ops->dbl(r.ctx, vals[i]);
        const char *s = enc();
        CHECK(s[0] == ',' && strtod(s + 1, NULL) == vals[i]);
        b.len = 0;
    }
    r.ops->dbl(r.ctx, 2.5e-320);
    CHECK_OUT(",2.5e-320\r\n");
    r.ops->dbl(r.ctx, 1.0 / 3);
    CHECK_OUT(",0.3333333333333333\r\n");
}

static void test_cr_and_lf_in_simple_strings_and_errors_become_blanks(void)
{
    resp_reply_init(&r, &b, 0);
    r.ops->error(r.ctx, "ERR a\r\nb", 8);
    r.ops->simple(r.ctx, "x\ny", 3);
    CHECK_OUT("-ERR a  b\r\n+x y\r\n");
}

static void test_replies_are_appended_and_consumed(void)
{
    resp_buf_free(&b);
    resp_reply_init(&r, &b, 0);
    char big[10000];
    memset(big, 'z', sizeof big);
    for (int i = 0; i < 100; i++)
        r.ops->bulk(r.ctx, big, sizeof big);
    CHECK_EQ(b.len, 100 * (sizeof big + 10));
    CHECK(b.cap >= b.len && !b.oom);
    CHECK_EQ(resp_buf_append(&b, "+OK\r\n", 5), 0);
    resp_buf_consume(&b, 100 * (sizeof big + 10));
    CHECK_OUT("+OK\r\n");
    CHECK_EQ(resp_buf_append(&b, "abc", 3), 0);
    resp_buf_consume(&b, 1);
    CHECK_OUT("bc");
    resp_buf_append(&b, "abc", 3);
    resp_buf_consume(&b, 99);
    CHECK_EQ(b.len, 0);
}

static void test_a_failed_append_keeps_the_buffer_and_stops_later_appends(void)
{
    resp_buf_free(&b);
    resp_reply_init(&r, &b, 1);
    r.ops->integer(r.ctx, 1);
    CHECK_EQ(resp_buf_append(&b, "x", SIZE_MAX), -1); /* cannot be had */
    CHECK(b.oom);
    CHECK_EQ(b.len, 4);
    r.ops->integer(r.ctx, 2);
    r.ops->bulk(r.ctx, "abc", 3);
    CHECK_EQ(resp_buf_append(&b, "y", 1), -1);
    CHECK_EQ(b.len, 4);
    CHECK(memcmp(b.p, ":1\r\n", 4) == 0);
    b.oom = 0; /* the transport dealt with it */
    r.ops->integer(r.ctx, 3);
    CHECK(b.len == 8 && memcmp(b.p, ":1\r\n:3\r\n", 8) == 0);
    b.len = 0;
}

/* A reply from the command layer goes through the same sink. */
static void test_errorf_goes_through_the_sink(void)
{
    resp_reply_init(&r, &b, 0);
    smc_reply_errorf(&r, "ERR unknown map '%s'", "m");
    CHECK_OUT("-ERR unknown map 'm'\r\n");
}

int main(int argc_, char **argv_)
{
    tl_init(argc_, argv_);
    resp_buf_init(&b);
    RUN(test_multibulk_command_is_parsed_with_arguments_pointing_into_the_buffer);
    RUN(test_bulk_arguments_may_hold_any_bytes);
    RUN(test_every_prefix_of_a_command_asks_for_more_with_a_true_lower_bound);
    RUN(test_need_covers_a_big_bulk_as_soon_as_its_header_arrives);
    RUN(test_two_commands_back_to_back_are_parsed_one_at_a_time);
    RUN(test_empty_multibulk_is_consumed_as_an_empty_command);
    RUN(test_malformed_headers_are_refused);
    RUN(test_limits_on_arguments_and_bulk_length_are_enforced);
    RUN(test_an_empty_buffer_asks_for_more);
    RUN(test_inline_command_is_split_at_blanks);
    RUN(test_empty_inline_lines_are_consumed_as_empty_commands);
    RUN(test_inline_quotes_hold_blanks_and_empty_arguments);
    RUN(test_unbalanced_or_escaped_inline_quotes_are_refused);
    RUN(test_resp2_encodes_every_reply_type);
    RUN(test_resp3_encodes_every_reply_type);
    RUN(test_doubles_are_written_as_their_shortest_decimal);
    RUN(test_cr_and_lf_in_simple_strings_and_errors_become_blanks);
    RUN(test_replies_are_appended_and_consumed);
    RUN(test_a_failed_append_keeps_the_buffer_and_stops_later_appends);
    RUN(test_errorf_goes_through_the_sink);
    resp_buf_free(&b);
    return tl_finish();
}
