/*
 * test_config.c - safemapd's settings (server/config.c): defaults, sizes,
 * flags, the configuration file, flags over the file, and a clear error
 * naming the option for every bad value.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "testlib.h"

static int parse(smd_daemon *d, char *err, size_t errlen, int argc, const char **argv)
{
    smd_config_defaults(d);
    return smd_config_parse(d, argc, (char **)argv, err, errlen);
}

static void test_defaults(void)
{
    static smd_daemon d;
    char err[512] = "";
    const char *argv[] = {"safemapd"};
    CHECK_EQ(parse(&d, err, sizeof err, 1, argv), SMD_CONFIG_RUN);
    CHECK(strcmp(d.cfg.bind, "127.0.0.1") == 0);
    CHECK_EQ(d.cfg.port, 7379);
    CHECK_EQ(d.cfg.http_port, 7380);
    CHECK(d.cfg.threads >= 1);
    CHECK_EQ(d.cfg.appendonly, 1);
    CHECK_EQ(d.cfg.appendfsync, SMD_FSYNC_EVERYSEC);
    CHECK_EQ(d.cfg.maxmemory, 0);
    CHECK_EQ(d.cfg.maxclients, 10000);
    CHECK_EQ(d.timeout_partial_ms, 10000);
    CHECK(strcmp(d.cfg.dir, ".") == 0);
}

static void test_sizes(void)
{
    uint64_t v = 0;
    CHECK(smd_parse_size("100mb", &v) == 0 && v == 100u << 20);
    CHECK(smd_parse_size("1GB", &v) == 0 && v == 1u << 30);
    CHECK(smd_parse_size("1g", &v) == 0 && v == 1000000000u);
    CHECK(smd_parse_size("512k", &v) == 0 && v == 512000u);
    CHECK(smd_parse_size("4096", &v) == 0 && v == 4096u);
    CHECK(smd_parse_size("0", &v) == 0 && v == 0);
    CHECK(smd_parse_size("", &v) != 0);
    CHECK(smd_parse_size("mb", &v) != 0);
    CHECK(smd_parse_size("-1", &v) != 0);
    CHECK(smd_parse_size("12parsecs", &v) != 0);
    CHECK(smd_parse_size("99999999999999999999", &v) != 0);
    CHECK(smd_parse_size("99999999999gb", &v) != 0);
}

static void test_flags(void)
{
    static smd_daemon d;
    char err[512] = "";
    const char *argv[] = {"safemapd",          "--port", "7000",          "--http-port=7001",
                          "--threads",         "3",      "--bind",        "::1",
                          "--maxmemory",       "1gb",    "--appendfsync", "always",
                          "--appendonly",      "no",     "--requirepass", "pw",
                          "--timeout-partial", "0.25",   "--maxclients",  "12",
                          "--max-bulk",        "1mb",    "--dir",         "/tmp"};
    CHECK_EQ(parse(&d, err, sizeof err, (int)(sizeof argv / sizeof argv[0]), argv), SMD_CONFIG_RUN);
    CHECK_EQ(d.cfg.port, 7000);
    CHECK_EQ(d.cfg.http_port, 7001);
    CHECK_EQ(d.cfg.threads, 3);
    CHECK(strcmp(d.cfg.bind, "::1") == 0);
    CHECK_EQ(d.cfg.maxmemory, (uint64_t)1 << 30);
    CHECK_EQ(d.cfg.appendfsync, SMD_FSYNC_ALWAYS);
    CHECK_EQ(d.cfg.appendonly, 0);
    CHECK(strcmp(d.cfg.requirepass, "pw") == 0);
    CHECK_EQ(d.timeout_partial_ms, 250);
    CHECK_EQ(d.cfg.maxclients, 12);
    CHECK_EQ(d.cfg.max_bulk, 1u << 20);
    CHECK(strcmp(d.cfg.dir, "/tmp") == 0);
}

static void test_bad_values(void)
{
    static const struct {
        const char *flag, *value, *expect;
    } cases[] = {
        {"--port", "0", "port 0"},
        {"--port", "65536", "--port"},
        {"--port", "12x", "--port"},
        {"--http-port", "0", "--http-port"},
        {"--threads", "0", "--threads"},
        {"--threads", "many", "--threads"},
        {"--bind", "localhost", "--bind"},
        {"--maxmemory", "big", "--maxmemory"},
        {"--maxclients", "0", "--maxclients"},
        {"--appendfsync", "yes", "--appendfsync"},
        {"--appendonly", "2", "--appendonly"},
        {"--max-bulk", "1", "--max-bulk"},
        {"--timeout-partial", "-1", "--timeout-partial"},
        {"--nosuch", "1", "--nosuch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        static smd_daemon d;
        char err[512] = "";
        const char *argv[] = {"safemapd", cases[i].flag, cases[i].value};
        int rc = parse(&d, err, sizeof err, 3, argv);
        if (!CHECK_EQ(rc, SMD_CONFIG_BAD) || !CHECK(strstr(err, cases[i].expect) != NULL))
            fprintf(stderr, "  %s %s: rc %d, err '%s'\n", cases[i].flag, cases[i].value, rc, err);
    }
    static smd_daemon d;
    char err[512] = "";
    const char *missing[] = {"safemapd", "--port"};
    CHECK_EQ(parse(&d, err, sizeof err, 2, missing), SMD_CONFIG_BAD);
    CHECK(strstr(err, "--port needs a value") != NULL);
    const char *same[] = {"safemapd", "--port", "7000", "--http-port", "7000"};
    CHECK_EQ(parse(&d, err, sizeof err, 5, same), SMD_CONFIG_BAD);
}

static void test_file(void)
{
    char path[] = "/tmp/smd-config-XXXXXX";
    int fd = mkstemp(path);
    if (!CHECK(fd >= 0))
        return;
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# safemapd test\n\n  port 7100\nmaxmemory  100mb  \nrequirepass \"a b\"\n"
               "appendfsync no # not a comment: a bad value\n");
    fclose(f);
    static smd_daemon d;
    char err[512] = "";
    const char *argv[] = {"safemapd", "--config", path, "--port", "7200"};
    CHECK_EQ(parse(&d, err, sizeof err, 5, argv), SMD_CONFIG_BAD);
    CHECK(strstr(err, ":6:") != NULL && strstr(err, "--appendfsync") != NULL);

    f = fopen(path, "w");
    fprintf(f, "# safemapd test\n\n  port 7100\nmaxmemory  100mb  \nrequirepass \"a b\"\n"
               "appendfsync no\nthreads 2\n");
    fclose(f);
    CHECK_EQ(parse(&d, err, sizeof err, 5, argv), SMD_CONFIG_RUN);
    CHECK_EQ(d.cfg.port, 7200); /* the flag wins */
    CHECK_EQ(d.cfg.maxmemory, 100u << 20);
    CHECK(strcmp(d.cfg.requirepass, "a b") == 0);
    CHECK_EQ(d.cfg.appendfsync, SMD_FSYNC_NO);
    CHECK_EQ(d.cfg.threads, 2);

    f = fopen(path, "w");
    fprintf(f, "nosuch 1\n");
    fclose(f);
    CHECK_EQ(parse(&d, err, sizeof err, 3, argv), SMD_CONFIG_BAD);
    CHECK(strstr(err, ":1: unknown option 'nosuch'") != NULL);
    unlink(path);

    const char *none[] = {"safemapd", "--config", "/nonexistent/safemapd.conf"};
    CHECK_EQ(parse(&d, err, sizeof err, 3, none), SMD_CONFIG_BAD);
    CHECK(strstr(err, "--config") != NULL);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_defaults);
    RUN(test_sizes);
    RUN(test_flags);
    RUN(test_bad_values);
    RUN(test_file);
    return tl_finish();
}
