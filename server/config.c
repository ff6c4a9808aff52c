/*
 * config.c - safemapd's settings: defaults, flags and the configuration
 * file (see config.h).
 *
 * One table lists every option with its kind; flags and file lines both go
 * through opt_apply(), so an option behaves the same wherever it is given.
 * Values are checked as they are applied: the first bad one stops the
 * parse with a message that names it.
 */
#define _GNU_SOURCE
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef enum {
    OPT_PORT,
    OPT_HTTP_PORT,
    OPT_THREADS,
    OPT_BIND,
    OPT_DIR,
    OPT_APPENDFSYNC,
    OPT_APPENDONLY,
    OPT_REQUIREPASS,
    OPT_MAXMEMORY,
    OPT_MAXCLIENTS,
    OPT_MAX_BULK,
    OPT_MAX_ARGS,
    OPT_LOGFILE,
    OPT_TIMEOUT_PARTIAL,
    OPT_OUTPUT_LIMIT,
    OPT_SHUTDOWN_DELAY,
    OPT_CONFIG,
} opt_id;

typedef struct opt {
    const char *name;
    opt_id id;
    const char *help;
} opt;

static const opt opts[] = {
    {"port", OPT_PORT, "RESP port (default 7379; 0 is not allowed)"},
    {"http-port", OPT_HTTP_PORT, "HTTP port for health, metrics and REST (default 7380)"},
    {"threads", OPT_THREADS, "worker threads (default: number of cores)"},
    {"bind", OPT_BIND, "address to listen on (default 127.0.0.1)"},
    {"dir", OPT_DIR, "data directory for the snapshot and log (default .)"},
    {"appendfsync", OPT_APPENDFSYNC, "always | everysec | no (default everysec)"},
    {"appendonly", OPT_APPENDONLY, "yes | no: append-only log (default yes)"},
    {"requirepass", OPT_REQUIREPASS, "password clients must AUTH with (default none)"},
    {"maxmemory", OPT_MAXMEMORY, "map memory limit, e.g. 100mb, 1gb (default 0: none)"},
    {"maxclients", OPT_MAXCLIENTS, "most connected clients (default 10000)"},
    {"max-bulk", OPT_MAX_BULK, "largest request argument, e.g. 8mb (default 64mb)"},
    {"max-args", OPT_MAX_ARGS, "most arguments in one request (default 1048576)"},
    {"logfile", OPT_LOGFILE, "log file (default: standard error)"},
    {"timeout-partial", OPT_TIMEOUT_PARTIAL,
     "seconds a partly received request may wait for the rest (default 10)"},
    {"client-output-limit", OPT_OUTPUT_LIMIT,
     "unsent reply bytes before a client is disconnected (default 64mb)"},
    {"shutdown-delay-ms", OPT_SHUTDOWN_DELAY,
     "after SIGTERM, keep serving this long with /health/ready at 503 (default 0)"},
    {"config", OPT_CONFIG, "configuration file: \"name value\" lines"},
};
#define NOPTS (sizeof opts / sizeof opts[0])

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

void smd_config_defaults(smd_daemon *d)
{
    smd_config *c = &d->cfg;
    memset(c, 0, sizeof *c);
    snprintf(c->bind, sizeof c->bind, "127.0.0.1");
    c->port = 7379;
    c->http_port = 7380;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    c->threads = n > 0 ? (int)(n > 64 ? 64 : n) : 1;
    snprintf(c->dir, sizeof c->dir, ".");
    c->appendfsync = SMD_FSYNC_EVERYSEC;
    c->appendonly = 1;
    c->maxmemory = 0;
    c->maxclients = 10000;
    c->max_bulk = (size_t)64 << 20; /* a value is at most 1 MiB (SM_MAX_ARRAY_BYTES) */
    c->max_args = (size_t)1024 * 1024;
    d->config_file[0] = '\0';
    d->timeout_partial_ms = 10000;
    d->client_output_limit = (uint64_t)64 << 20;
}

int smd_parse_size(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {{"", 1},
                 {"b", 1},
                 {"k", 1000},
                 {"kb", 1024},
                 {"m", 1000 * 1000},
                 {"mb", 1024 * 1024},
                 {"g", 1000 * 1000 * 1000},
                 {"gb", (uint64_t)1024 * 1024 * 1024}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].suffix) != 0)
            continue;
        if (v > UINT64_MAX / units[i].mul)
            return -1;
        *out = v * units[i].mul;
        return 0;
    }
    return -1;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_yesno(const char *s, int *out)
{
    if (strcasecmp(s, "yes") == 0 || strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0)
        *out = 1;
    else if (strcasecmp(s, "no") == 0 || strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

static int copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap)
        return -1;
    memcpy(dst, s, n + 1);
    return 0;
}

static int parse_port(const char *name, const char *v, int *out, char *err, size_t errlen)
{
    long n;
    if (parse_int(v, 0, 65535, &n) != 0)
        return fail(err, errlen, "--%s: '%s' is not a port number (1-65535)", name, v);
    if (n == 0)
        return fail(err, errlen,
                    "--%s: port 0 is not allowed (safemapd listens on a fixed port; pick one "
                    "in 1-65535)",
                    name);
    *out = (int)n;
    return 0;
}

static int opt_apply(smd_daemon *d, const opt *o, const char *v, char *err, size_t errlen)
{
    smd_config *c = &d->cfg;
    long n;
    uint64_t sz;
    switch (o->id) {
    case OPT_PORT:
        return parse_port(o->name, v, &c->port, err, errlen);
    case OPT_HTTP_PORT:
        return parse_port(o->name, v, &c->http_port, err, errlen);
    case OPT_THREADS:
        if (parse_int(v, 1, 256, &n) != 0)
            return fail(err, errlen, "--threads: '%s' is not a thread count (1-256)", v);
        c->threads = (int)n;
        return 0;
    case OPT_BIND: {
        unsigned char addr[16];
        if (inet_pton(AF_INET, v, addr) != 1 && inet_pton(AF_INET6, v, addr) != 1)
            return fail(err, errlen, "--bind: '%s' is not an IPv4 or IPv6 address", v);
        return copy_str(c->bind, sizeof c->bind, v);
    }
    case OPT_DIR:
        if (!*v || copy_str(c->dir, sizeof c->dir, v) != 0)
            return fail(err, errlen, "--dir: '%s' is empty or too long", v);
        return 0;
    case OPT_APPENDFSYNC:
        if (strcasecmp(v, "always") == 0)
            c->appendfsync = SMD_FSYNC_ALWAYS;
        else if (strcasecmp(v, "everysec") == 0)
            c->appendfsync = SMD_FSYNC_EVERYSEC;
        else if (strcasecmp(v, "no") == 0)
            c->appendfsync = SMD_FSYNC_NO;
        else
            return fail(err, errlen, "--appendfsync: '%s' is not always, everysec or no", v);
        return 0;
    case OPT_APPENDONLY:
        if (parse_yesno(v, &c->appendonly) != 0)
            return fail(err, errlen, "--appendonly: '%s' is not yes or no", v);
        return 0;
    case OPT_REQUIREPASS:
        if (copy_str(c->requirepass, sizeof c->requirepass, v) != 0)
            return fail(err, errlen, "--requirepass: longer than %zu bytes",
                        sizeof c->requirepass - 1);
        return 0;
    case OPT_MAXMEMORY:
        if (smd_parse_size(v, &sz) != 0)
            return fail(err, errlen, "--maxmemory: '%s' is not a size (e.g. 100mb, 1gb)", v);
        c->maxmemory = sz;
        return 0;
    case OPT_MAXCLIENTS:
        if (parse_int(v, 1, 1000000, &n) != 0)
            return fail(err, errlen, "--maxclients: '%s' is not a count (1-1000000)", v);
        c->maxclients = (int)n;
        return 0;
    case OPT_MAX_BULK:
        if (smd_parse_size(v, &sz) != 0 || sz < 16 || sz > ((uint64_t)4 << 30))
            return fail(err, errlen, "--max-bulk: '%s' is not a size from 16 to 4gb", v);
        c->max_bulk = (size_t)sz;
        return 0;
    case OPT_MAX_ARGS:
        if (parse_int(v, 3, 16 * 1024 * 1024, &n) != 0)
            return fail(err, errlen, "--max-args: '%s' is not a count (3-16777216)", v);
        c->max_args = (size_t)n;
        return 0;
    case OPT_LOGFILE:
        if (copy_str(c->logfile, sizeof c->logfile, v) != 0)
            return fail(err, errlen, "--logfile: path too long");
        return 0;
    case OPT_TIMEOUT_PARTIAL: {
        char *end;
        errno = 0;
        double s = strtod(v, &end);
        if (errno || end == v || *end || !(s >= 0.01 && s <= 86400))
            return fail(err, errlen, "--timeout-partial: '%s' is not seconds (0.01-86400)", v);
        d->timeout_partial_ms = (int)(s * 1000 + 0.5);
        return 0;
    }
    case OPT_OUTPUT_LIMIT:
        if (smd_parse_size(v, &sz) != 0 || sz < 1024)
            return fail(err, errlen, "--client-output-limit: '%s' is not a size of 1kb or more", v);
        d->client_output_limit = sz;
        return 0;
    case OPT_SHUTDOWN_DELAY:
        if (parse_int(v, 0, 600000, &n) != 0)
            return fail(err, errlen, "--shutdown-delay-ms: '%s' is not milliseconds (0-600000)", v);
        d->shutdown_delay_ms = (int)n;
        return 0;
    case OPT_CONFIG:
        return copy_str(d->config_file, sizeof d->config_file, v);
    }
    return fail(err, errlen, "--%s: unhandled option", o->name);
}

static const opt *opt_find(const char *name, size_t n)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opts[i].name) == n && strncasecmp(opts[i].name, name, n) == 0)
            return &opts[i];
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: safemapd [--option value ...]\n\n"
               "A Redis-protocol server for safemap's concurrent maps.\n\noptions:\n");
    for (size_t i = 0; i < NOPTS; i++)
        fprintf(f, "  --%-20s %s\n", opts[i].name, opts[i].help);
    fprintf(f, "  --%-20s %s\n  --%-20s %s\n", "help", "this text", "version", "print the version");
    fprintf(f, "\nEvery option may also be a line \"name value\" of the --config file;\n"
               "flags given on the command line override the file.\n");
}

/* Strips blanks at both ends and one pair of surrounding quotes. */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
        s[n - 1] = '\0';
        s++;
    }
    return s;
}

static int config_file_load(smd_daemon *d, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(err, errlen, "--config: cannot open '%s': %s", path, strerror(errno));
    char line[8192];
    int lineno = 0, rc = 0;
    char sub[512];
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        size_t nl = strcspn(s, " \t");
        const opt *o = opt_find(s, nl);
        if (!o || o->id == OPT_CONFIG) {
            rc = fail(err, errlen, "%s:%d: unknown option '%.*s'", path, lineno, (int)nl, s);
            break;
        }
        char *v = trim(s + nl);
        if (opt_apply(d, o, v, sub, sizeof sub) != 0)
            rc = fail(err, errlen, "%s:%d: %s", path, lineno, sub);
    }
    if (rc == 0 && ferror(f))
        rc = fail(err, errlen, "--config: error reading '%s'", path);
    fclose(f);
    return rc;
}

/* One pass over argv: the option at argv[*i] and its value. */
static int flag_next(int argc, char **argv, int *i, const opt **o, const char **v, int *special,
                     char *err, size_t errlen)
{
    const char *a = argv[*i];
    *special = 0;
    *o = NULL;
    *v = NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        *special = 'h';
        return 0;
    }
    if (strcmp(a, "--version") == 0 || strcmp(a, "-v") == 0) {
        *special = 'v';
        return 0;
    }
    if (strncmp(a, "--", 2) != 0)
        return fail(err, errlen, "unexpected argument '%s' (options start with --; see --help)", a);
    a += 2;
    const char *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    *o = opt_find(a, n);
    if (!*o)
        return fail(err, errlen, "unknown option '--%.*s' (see --help)", (int)n, a);
    if (eq) {
        *v = eq + 1;
    } else {
        if (*i + 1 >= argc)
            return fail(err, errlen, "--%s needs a value", (*o)->name);
        *v = argv[++*i];
    }
    return 0;
}

int smd_config_parse(smd_daemon *d, int argc, char **argv, char *err, size_t errlen)
{
    const opt *o = NULL; /* set by flag_next; initialised for gcc -O3's -Wmaybe-uninitialized */
    const char *v = NULL;
    int special = 0;
    /* First pass: --help, --version and --config. */
    for (int i = 1; i < argc; i++) {
        if (flag_next(argc, argv, &i, &o, &v, &special, err, errlen) != 0)
            return SMD_CONFIG_BAD;
        if (special == 'h') {
            usage(stdout);
            return SMD_CONFIG_EXIT;
        }
        if (special == 'v') {
            printf("safemapd %s\n", SMD_VERSION);
            return SMD_CONFIG_EXIT;
        }
        if (o->id == OPT_CONFIG && opt_apply(d, o, v, err, errlen) != 0)
            return fail(err, errlen, "--config: path too long"), SMD_CONFIG_BAD;
    }
    if (d->config_file[0] && config_file_load(d, d->config_file, err, errlen) != 0)
        return SMD_CONFIG_BAD;
    for (int i = 1; i < argc; i++) {
        if (flag_next(argc, argv, &i, &o, &v, &special, err, errlen) != 0)
            return SMD_CONFIG_BAD;
        if (o->id != OPT_CONFIG && opt_apply(d, o, v, err, errlen) != 0)
            return SMD_CONFIG_BAD;
    }
    if (d->cfg.port == d->cfg.http_port)
        return fail(err, errlen, "--port and --http-port are both %d; they must differ",
                    d->cfg.port),
               SMD_CONFIG_BAD;
    return SMD_CONFIG_RUN;
}
