/*
 * smr.c - command-line tool over smr_route: one logical safemap spread over
 * a Redis Cluster as sub-maps "<map>{0}" ... "<map>{S-1}" (docs/module.md).
 *
 *   smr [-h HOST] [-p PORT] [-S SUBMAPS] [-t TIMEOUT_MS] MAP COMMAND ...
 *     create TYPE N [POOLED]   SM.CREATE on every sub-map
 *     route KEY                the key's sub-map and slot
 *     putb KEY HEX             one value, as hex bytes
 *     getb KEY                 prints the value as hex, or (nil)
 *     len                      entries over all sub-maps
 *     fill COUNT [FIRST]       writes keys FIRST .. FIRST+COUNT-1 (pipelined)
 *                              with values derived from the key (see pattern)
 *     verify COUNT [FIRST]     reads them back and checks every byte; exits
 *                              1 when any is missing or wrong
 *
 * fill and verify print one line of counts and the rate.  Exit status: 0
 * success, 1 a failed check or command, 2 usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smr_route.h"

#define SMR_BATCH 100000

static int usage(void)
{
    fprintf(stderr, "usage: smr [-h HOST] [-p PORT] [-S SUBMAPS] [-t TIMEOUT_MS] MAP "
                    "create TYPE N [POOLED] | route KEY | putb KEY HEX | getb KEY | len | "
                    "fill COUNT [FIRST] | verify COUNT [FIRST]\n");
    return 2;
}

static int parse_ll(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

/* The bytes fill writes for key k: a stream from the key's mix. */
static void pattern(int64_t k, unsigned char *v, size_t vsize)
{
    uint64_t x = smr_route_mix(k ^ 0x5eed);
    for (size_t i = 0; i < vsize; i++) {
        if (i % 8 == 0)
            x = smr_route_mix((int64_t)(x + i));
        v[i] = (unsigned char)(x >> (8 * (i % 8)));
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fill_or_verify(smr_route *r, int verify, long long count, long long first)
{
    size_t vsize = smr_route_value_size(r);
    if (vsize == 0) {
        fprintf(stderr, "smr: %s\n", smr_route_error(r));
        return 1;
    }
    int64_t *keys = malloc(SMR_BATCH * sizeof *keys);
    unsigned char *vals = malloc(SMR_BATCH * vsize), *want = malloc(vsize);
    unsigned char *found = malloc(SMR_BATCH);
    if (!keys || !vals || !want || !found) {
        fprintf(stderr, "smr: out of memory\n");
        return 1;
    }
    long long missing = 0, wrong = 0, done = 0;
    int rc = 0;
    double t0 = now_s();
    for (long long base = 0; base < count && rc == 0; base += SMR_BATCH) {
        size_t n = (size_t)(count - base < SMR_BATCH ? count - base : SMR_BATCH);
        for (size_t i = 0; i < n; i++) {
            keys[i] = (int64_t)(first + base + (long long)i);
            if (!verify)
                pattern(keys[i], vals + i * vsize, vsize);
        }
        rc = verify ? smr_route_getb(r, n, keys, vals, vsize, found)
                    : smr_route_putb(r, n, keys, vals, vsize);
        if (rc != 0) {
            fprintf(stderr, "smr: %s\n", smr_route_error(r));
            break;
        }
        for (size_t i = 0; verify && i < n; i++) {
            if (!found[i]) {
                if (missing++ < 5)
                    fprintf(stderr, "smr: key %lld missing\n", (long long)keys[i]);
                continue;
            }
            pattern(keys[i], want, vsize);
            if (memcmp(want, vals + i * vsize, vsize) != 0 && wrong++ < 5)
                fprintf(stderr, "smr: key %lld has a wrong value\n", (long long)keys[i]);
        }
        done += (long long)n;
    }
    double dt = now_s() - t0;
    printf("%s %lld entries in %.2f s (%.0f/s)", verify ? "verified" : "wrote", done, dt,
           dt > 0 ? done / dt : 0.0);
    if (verify)
        printf(": missing %lld, wrong %lld", missing, wrong);
    printf("\n");
    free(keys);
    free(vals);
    free(want);
    free(found);
    return rc != 0 || missing || wrong || done != count;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long long port = 6379, submaps = 1024, timeout = 30000;
    int i = 1;
    for (; i + 1 < argc && argv[i][0] == '-' && argv[i][1] && !argv[i][2]; i += 2) {
        long long *dst = NULL;
        switch (argv[i][1]) {
        case 'h':
            host = argv[i + 1];
            continue;
        case 'p':
            dst = &port;
            break;
        case 'S':
            dst = &submaps;
            break;
        case 't':
            dst = &timeout;
            break;
        default:
            return usage();
        }
        if (parse_ll(argv[i + 1], dst) != 0)
            return usage();
    }
    if (argc - i < 2 || submaps < 1 || submaps > 65536 || port < 1 || port > 65535)
        return usage();
    const char *map = argv[i], *cmd = argv[i + 1];
    char **args = argv + i + 2;
    int nargs = argc - i - 2;
    long long a = 0, b = 0;
    if (strcmp(cmd, "route") == 0) {
        if (nargs != 1 || parse_ll(args[0], &a) != 0)
            return usage();
        char name[SMR_MAP_MAX + 16];
        unsigned idx = smr_route_submap(a, (unsigned)submaps);
        size_t n = smr_route_submap_name(map, idx, name, sizeof name);
        printf("%s slot %u\n", name, smr_route_keyslot(name, n));
        return 0;
    }
    smr_route *r;
    char err[256];
    if (smr_route_open(&r, host, (int)port, map, (unsigned)submaps, (int)timeout, err,
                       sizeof err) != 0) {
        fprintf(stderr, "smr: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (strcmp(cmd, "create") == 0 &&
        (nargs == 2 || (nargs == 3 && strcmp(args[2], "POOLED") == 0)) &&
        parse_ll(args[1], &a) == 0 && a > 0) {
        rc = smr_route_create(r, args[0], (unsigned)a, nargs == 3) != 0;
    } else if (strcmp(cmd, "putb") == 0 && nargs == 2 && parse_ll(args[0], &a) == 0) {
        size_t n = strlen(args[1]) / 2;
        unsigned char *v = malloc(n + 1);
        for (size_t k = 0; v && k < n; k++) {
            int hi = hexval(args[1][2 * k]), lo = hexval(args[1][2 * k + 1]);
            if (hi < 0 || lo < 0 || strlen(args[1]) % 2) {
                free(v);
                smr_route_close(r);
                return usage();
            }
            v[k] = (unsigned char)(hi << 4 | lo);
        }
        int64_t key = a;
        rc = !v || smr_route_putb(r, 1, &key, v, n) != 0;
        free(v);
    } else if (strcmp(cmd, "getb") == 0 && nargs == 1 && parse_ll(args[0], &a) == 0) {
        size_t vsize = smr_route_value_size(r);
        unsigned char *v = malloc(vsize + 1), found = 0;
        int64_t key = a;
        rc = !vsize || !v || smr_route_getb(r, 1, &key, v, vsize, &found) != 0;
        if (!rc && !found)
            printf("(nil)\n");
        for (size_t k = 0; !rc && found && k < vsize; k++)
            printf("%02x%s", v[k], k + 1 == vsize ? "\n" : "");
        free(v);
    } else if (strcmp(cmd, "len") == 0 && nargs == 0) {
        long long n = smr_route_len(r);
        rc = n < 0;
        if (!rc)
            printf("%lld\n", n);
    } else if ((strcmp(cmd, "fill") == 0 || strcmp(cmd, "verify") == 0) &&
               (nargs == 1 || nargs == 2) && parse_ll(args[0], &a) == 0 && a >= 0 &&
               (nargs == 1 || parse_ll(args[1], &b) == 0)) {
        rc = fill_or_verify(r, cmd[0] == 'v', a, b);
        smr_route_close(r);
        return rc;
    } else {
        smr_route_close(r);
        return usage();
    }
    if (rc)
        fprintf(stderr, "smr: %s\n", smr_route_error(r));
    smr_route_close(r);
    return rc;
}
