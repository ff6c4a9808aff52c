/*
 * net.h - safemapd's RESP transport: the listener, the worker threads and
 * the commands they dispatch.
 *
 * memcached's model: the main thread owns the listening socket (on the main
 * event_base, which also takes the signals) and hands each accepted
 * connection to a worker thread, round robin, through the worker's queue
 * and notify pipe.  Each worker runs its own event_base and serves its
 * connections alone, so a connection's state needs no lock.  Replies to all
 * the commands one read delivered are encoded into one buffer and written
 * with one write.
 *
 * SMD_COMMANDS lists every command the transport knows, in the order of
 * d->cmds (daemon.c builds the statistics from it).
 */
#ifndef SAFEMAP_SERVER_NET_H
#define SAFEMAP_SERVER_NET_H

#include "daemon.h"

struct event_base;

/* Command flags. */
#define SMD_F_WRITE 1u   /* changes data: runs inside the store's write gate */
#define SMD_F_READ 2u    /* reads data */
#define SMD_F_DENYOOM 4u /* may add entries: refused over maxmemory */
#define SMD_F_FAST 8u    /* O(1) or O(log n) */
#define SMD_F_NOAUTH 16u /* allowed before AUTH */
#define SMD_F_ADMIN 32u  /* server administration */
#define SMD_F_MAP 64u    /* per-map: argv[1] names the map; smc_map_exec runs it */

/* X(id, name, arity, flags): arity as Redis gives it (N: exactly N words
 * with the name; -N: at least N). */
#define SMD_COMMANDS(X)                                                                            \
    X(PING, "ping", -1, SMD_F_FAST)                                                                \
    X(ECHO, "echo", 2, SMD_F_FAST)                                                                 \
    X(HELLO, "hello", -1, SMD_F_FAST | SMD_F_NOAUTH)                                               \
    X(AUTH, "auth", -2, SMD_F_FAST | SMD_F_NOAUTH)                                                 \
    X(INFO, "info", -1, 0)                                                                         \
    X(COMMAND, "command", -1, 0)                                                                   \
    X(CLIENT, "client", -2, 0)                                                                     \
    X(CONFIG, "config", -2, SMD_F_ADMIN)                                                           \
    X(SELECT, "select", 2, SMD_F_FAST)                                                             \
    X(DBSIZE, "dbsize", 1, SMD_F_FAST | SMD_F_READ)                                                \
    X(QUIT, "quit", -1, SMD_F_FAST | SMD_F_NOAUTH)                                                 \
    X(SAVE, "save", 1, SMD_F_ADMIN)                                                                \
    X(BGSAVE, "bgsave", -1, SMD_F_ADMIN)                                                           \
    X(LASTSAVE, "lastsave", 1, SMD_F_FAST)                                                         \
    X(SHUTDOWN, "shutdown", -1, SMD_F_ADMIN)                                                       \
    X(SM_CREATE, "sm.create", -4, SMD_F_WRITE | SMD_F_DENYOOM)                                     \
    X(SM_DROP, "sm.drop", 2, SMD_F_WRITE)                                                          \
    X(SM_LIST, "sm.list", 1, SMD_F_READ)                                                           \
    X(SM_PUT, "sm.put", -2, SMD_F_MAP | SMD_F_WRITE | SMD_F_DENYOOM | SMD_F_FAST)                  \
    X(SM_PUTB, "sm.putb", -2, SMD_F_MAP | SMD_F_WRITE | SMD_F_DENYOOM | SMD_F_FAST)                \
    X(SM_GET, "sm.get", -2, SMD_F_MAP | SMD_F_READ | SMD_F_FAST)                                   \
    X(SM_GETB, "sm.getb", -2, SMD_F_MAP | SMD_F_READ | SMD_F_FAST)                                 \
    X(SM_MGET, "sm.mget", -2, SMD_F_MAP | SMD_F_READ)                                              \
    X(SM_DEL, "sm.del", -2, SMD_F_MAP | SMD_F_WRITE | SMD_F_FAST)                                  \
    X(SM_EXISTS, "sm.exists", -2, SMD_F_MAP | SMD_F_READ | SMD_F_FAST)                             \
    X(SM_LEN, "sm.len", -2, SMD_F_MAP | SMD_F_READ | SMD_F_FAST)                                   \
    X(SM_SCAN, "sm.scan", -2, SMD_F_MAP | SMD_F_READ)                                              \
    X(SM_INFO, "sm.info", -2, SMD_F_MAP | SMD_F_READ)

#define SMD_X_ENUM(id, name, arity, flags) SMD_CMD_##id,
enum { SMD_COMMANDS(SMD_X_ENUM) SMD_NCMDS };
#undef SMD_X_ENUM

typedef struct smd_net smd_net;

/* Binds d->cfg.bind:d->cfg.port on base (the main thread's) and starts
 * d->cfg.threads workers; connections are accepted after smd_net_enable.  Returns 0 or a negative
 * code with a message in err. */
int smd_net_start(smd_net **out, smd_daemon *d, struct event_base *base, char *err, size_t errlen);
/* Starts accepting (the socket is bound, but not accepted from, until then). */
void smd_net_enable(smd_net *n);
/* Closes the listening socket: no new connections. */
void smd_net_stop_listening(smd_net *n);
/* Drains: every worker stops reading, sends the replies it owes (waiting
 * at most timeout_ms), closes its connections and ends; joins them all. */
void smd_net_drain(smd_net *n, int timeout_ms);
void smd_net_free(smd_net *n);

#endif
