/*
 * fuzz_resp.c - libFuzzer target for the RESP parser and encoder
 * (server/resp.c).  Built as fuzz_resp when SM_BUILD_FUZZ is on (clang);
 * fuzz_resp_replay runs the corpus (tests/server/corpus_resp) through it in
 * every test build.
 *
 * The input is a stream of requests, parsed one after another with small
 * limits.  For each parsed command it checks that the arguments lie inside
 * the bytes consumed, that every shorter prefix of those bytes asks for
 * more (with a lower bound past the prefix and never past the command),
 * and that the arguments encoded as a multibulk parse back to the same
 * arguments.  Every argument also goes through the reply encoder: simple
 * strings and errors must come out as one line, and a double made of the
 * argument's bytes must read back as the same double.  Any failure aborts.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

#define FUZZ_MAX_ARGS 16

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_resp: %s:%d: %s\n", __FILE__, __LINE__, #c);                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_prefixes(const char *cmd, size_t used, const resp_limits *lim)
{
    if (used > 600)
        return; /* quadratic: keep it cheap */
    smc_arg argv[FUZZ_MAX_ARGS];
    for (size_t k = 0; k < used; k++) {
        char *copy = malloc(k ? k : 1); /* exact size: ASan sees an over-read */
        REQUIRE(copy);
        memcpy(copy, cmd, k);
        int argc;
        size_t u, need = 0;
        const char *err = NULL;
        int rc = resp_parse(copy, k, lim, argv, FUZZ_MAX_ARGS, &argc, &u, &need, &err);
        /* An inline line may end early at a LF inside a prefix only if the
         * whole command did: it cannot.  A prefix is never a command. */
        REQUIRE(rc == RESP_MORE);
        REQUIRE(need > k && need <= used);
        free(copy);
    }
}

static void check_round_trip(int argc, const smc_arg *argv, const resp_limits *lim)
{
    resp_buf b;
    resp_buf_init(&b);
    smc_reply r;
    resp_reply_init(&r, &b, 0);
    r.ops->array(r.ctx, (size_t)argc);
    for (int i = 0; i < argc; i++)
        r.ops->bulk(r.ctx, argv[i].p, argv[i].n);
    REQUIRE(!b.oom);
    if (argc == 0) {
        resp_buf_free(&b);
        return;
    }
    smc_arg back[FUZZ_MAX_ARGS];
    int n;
    size_t used, need;
    const char *err;
    REQUIRE(resp_parse(b.p, b.len, lim, back, FUZZ_MAX_ARGS, &n, &used, &need, &err) == RESP_OK);
    REQUIRE(n == argc && used == b.len);
    for (int i = 0; i < argc; i++)
        REQUIRE(back[i].n == argv[i].n && memcmp(back[i].p, argv[i].p, argv[i].n) == 0);
    resp_buf_free(&b);
}

static void check_encoder(const smc_arg *a, int resp3)
{
    resp_buf b;
    resp_buf_init(&b);
    smc_reply r;
    resp_reply_init(&r, &b, resp3);
    r.ops->simple(r.ctx, a->p, a->n);
    REQUIRE(b.len == a->n + 3 && b.p[0] == '+');
    REQUIRE(!memchr(b.p, '\r', b.len - 2) && !memchr(b.p, '\n', b.len - 2));
    b.len = 0;
    r.ops->error(r.ctx, a->p, a->n);
    REQUIRE(b.len == a->n + 3 && b.p[0] == '-');
    REQUIRE(!memchr(b.p, '\r', b.len - 2) && !memchr(b.p, '\n', b.len - 2));
    b.len = 0;
    if (a->n >= sizeof(double)) {
        double d;
        memcpy(&d, a->p, sizeof d);
        r.ops->dbl(r.ctx, d);
        resp_buf_append(&b, "", 1);
        REQUIRE(!b.oom);
        const char *text = resp3 ? b.p + 1 : strstr(b.p, "\r\n") + 2;
        double back = strtod(text, NULL);
        REQUIRE(isnan(d) ? isnan(back) : back == d && signbit(back) == signbit(d));
        b.len = 0;
    }
    long long v = 0;
    memcpy(&v, a->p, a->n < sizeof v ? a->n : sizeof v);
    r.ops->integer(r.ctx, v);
    resp_buf_append(&b, "", 1);
    REQUIRE(strtoll(b.p + 1, NULL, 10) == v);
    resp_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    resp_limits lim = {.max_args = FUZZ_MAX_ARGS, .max_bulk = 4096, .max_inline = 1024};
    const char *buf = (const char *)data;
    size_t pos = 0;
    for (int commands = 0; pos < size && commands < 1000; commands++) {
        smc_arg argv[FUZZ_MAX_ARGS];
        int argc = -1;
        size_t used = 0, need = 0;
        const char *err = NULL;
        int rc =
            resp_parse(buf + pos, size - pos, &lim, argv, FUZZ_MAX_ARGS, &argc, &used, &need, &err);
        if (rc == RESP_ERROR) {
            REQUIRE(err && *err);
            break;
        }
        if (rc == RESP_MORE) {
            REQUIRE(need > size - pos);
            break;
        }
        REQUIRE(rc == RESP_OK);
        REQUIRE(used > 0 && used <= size - pos);
        REQUIRE(argc >= 0 && argc <= FUZZ_MAX_ARGS);
        for (int i = 0; i < argc; i++) {
            REQUIRE(argv[i].p >= buf + pos && argv[i].p + argv[i].n <= buf + pos + used);
            REQUIRE(argv[i].n <= lim.max_bulk);
        }
        check_prefixes(buf + pos, used, &lim);
        check_round_trip(argc, argv, &lim);
        for (int i = 0; i < argc; i++)
            check_encoder(&argv[i], i & 1);
        pos += used;
    }
    return 0;
}
