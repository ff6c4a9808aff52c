/*
 * config.h - safemapd's settings: defaults, command-line flags and the
 * configuration file.
 *
 * Every setting has one name, used both as a flag (--maxmemory 1gb or
 * --maxmemory=1gb) and as a line of the configuration file ("maxmemory 1gb",
 * '#' starts a comment).  The file named by --config is read first, then the
 * flags, so flags override the file.  A bad value is reported with the
 * option's name (and the file's line) and the caller exits with status 2.
 */
#ifndef SAFEMAP_SERVER_CONFIG_H
#define SAFEMAP_SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "daemon.h"

/* Fills d->cfg and the daemon's other settings with their defaults. */
void smd_config_defaults(smd_daemon *d);

/* What smd_config_parse found. */
#define SMD_CONFIG_RUN 0  /* settings complete: run */
#define SMD_CONFIG_EXIT 1 /* --help or --version printed: exit 0 */
#define SMD_CONFIG_BAD 2  /* a bad flag or value: err says which; exit 2 */

/* Applies the config file (if --config names one) and then argv. */
int smd_config_parse(smd_daemon *d, int argc, char **argv, char *err, size_t errlen);

/* Parses a size such as "100mb", "1gb", "512k" or "4096" (k/m/g are powers
 * of 1000 and kb/mb/gb of 1024, as Redis reads them).  Returns 0 or -1. */
int smd_parse_size(const char *s, uint64_t *out);

#endif
