/*
 * resp.h - RESP2/RESP3 request parsing and reply encoding.
 *
 * The parser is incremental and allocation-free: it reads a command from a
 * buffer that holds whatever has arrived so far and either returns a whole
 * command (argument pointers into the buffer), asks for more bytes, or
 * rejects the input with a message (the connection is then answered with
 * "-ERR Protocol error: ..." and closed, as Redis does).  It accepts
 * multibulk requests (*N\r\n$len\r\n...) and inline commands (a line of
 * blank-separated words, for telnet and redis-cli's inline mode), with
 * limits on argument count, bulk length and inline line length, so no input
 * can make it use unbounded memory.
 *
 * The encoder appends RESP2 or RESP3 replies to a growable buffer and
 * provides the smc_reply sink for the command layer.
 */
#ifndef SAFEMAP_SERVER_RESP_H
#define SAFEMAP_SERVER_RESP_H

#include <stddef.h>

#include "command.h"

typedef struct resp_limits {
    size_t max_args;   /* arguments in one command (default 1024*1024) */
    size_t max_bulk;   /* bytes in one argument (default 512 MiB, as Redis) */
    size_t max_inline; /* bytes in an inline command line (default 64 KiB) */
} resp_limits;

void resp_limits_default(resp_limits *l);

#define RESP_OK 0       /* one command parsed */
#define RESP_MORE 1     /* incomplete: read more bytes and call again */
#define RESP_ERROR (-1) /* malformed or over a limit: see err */

/* Parses one command from buf[0..len).  On RESP_OK: *argc arguments in
 * argv (at most argv_cap; more is RESP_ERROR unless argv_cap >= max_args),
 * pointing into buf, and *used bytes consumed.  An empty inline line is
 * consumed and reported as *argc == 0.  On RESP_MORE, *need (if not NULL) is
 * a lower bound of the bytes the whole command needs, so a transport can
 * reject an oversized request early.  On RESP_ERROR, *err is a static
 * message.  argv must hold argv_cap entries. */
int resp_parse(const char *buf, size_t len, const resp_limits *lim, smc_arg *argv, size_t argv_cap,
               int *argc, size_t *used, size_t *need, const char **err);

/* A reply buffer. */
typedef struct resp_buf {
    char *p;
    size_t len, cap;
    int oom; /* an append failed: the buffer was kept as it was before it */
} resp_buf;

void resp_buf_init(resp_buf *b);
void resp_buf_free(resp_buf *b);

/* Appends raw bytes (an already encoded reply, "+OK\r\n").  Returns 0, or
 * -1 when memory ran out (oom set, buffer unchanged).  Once oom is set every
 * append, these and the sink's, is ignored until the caller clears it, so
 * a reply is never written with a hole in it. */
int resp_buf_append(resp_buf *b, const void *p, size_t n);
/* Drops the first n bytes (those written to the socket). */
void resp_buf_consume(resp_buf *b, size_t n);

/* A sink that encodes into b, as RESP3 when resp3 is set, else RESP2
 * (maps as flat arrays, doubles as bulk strings, null as "$-1", an absent
 * array as "*-1").  Simple strings and errors have CR/LF replaced by
 * blanks. */
void resp_reply_init(smc_reply *r, resp_buf *b, int resp3);

#endif
