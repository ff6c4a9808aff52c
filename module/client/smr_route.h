/*
 * smr_route.h - one logical safemap spread over a Redis Cluster, as
 * sub-maps: the client side of the sharding convention of docs/module.md.
 *
 * A map too large for one node is split into S sub-maps named
 * "<map>{0}" ... "<map>{S-1}".  The braces are a Redis Cluster hash tag,
 * so sub-map i lives in slot CRC16("i") mod 16384, on whichever master
 * owns that slot; key k belongs to sub-map smr_route_submap(k, S) =
 * smr_route_mix(k) mod S.  Every client that uses the same S finds the same
 * sub-map for a key, whatever the cluster's shape; resharding moves slots
 * (and so whole sub-maps) between nodes without changing S.
 *
 * smr_route keeps the slot table (CLUSTER SLOTS) and one hiredis connection
 * per master, and runs batches of commands pipelined: each command goes to
 * its node, all nodes are written before any reply is read, and commands
 * answered with MOVED, ASK, TRYAGAIN, CLUSTERDOWN or a broken connection are
 * retried after the slot table is read again, until a deadline.  So a batch
 * rides through a failover: it waits for the replica to take over.
 *
 * Not thread-safe: one smr_route per thread.
 */
#ifndef SAFEMAP_SMR_ROUTE_H
#define SAFEMAP_SMR_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#define SMR_MAP_MAX 180 /* longest logical map name */

typedef struct smr_route smr_route;

/* The key's mix (splitmix64's finalizer) and its sub-map index. */
uint64_t smr_route_mix(int64_t key);
unsigned smr_route_submap(int64_t key, unsigned submaps);
/* Writes "<map>{idx}" to out (cap bytes).  Returns its length, or 0 when it
 * does not fit. */
size_t smr_route_submap_name(const char *map, unsigned idx, char *out, size_t cap);
/* Redis Cluster's slot of a key name (hash tags honoured). */
unsigned smr_route_keyslot(const char *key, size_t n);

/* Connects to the cluster through host:port (any node) and reads its slot
 * table.  submaps: S, 1..65536.  timeout_ms bounds each batch's retries.
 * Returns 0 or -1 (message in err). */
int smr_route_open(smr_route **out, const char *host, int port, const char *map, unsigned submaps,
                   int timeout_ms, char *err, size_t errlen);
void smr_route_close(smr_route *r);
/* Reads the slot table again (from any node that answers).  0 or -1. */
int smr_route_refresh(smr_route *r);
/* The last error of a failed call. */
const char *smr_route_error(const smr_route *r);

/* SM.CREATE on every sub-map (a sub-map that exists already is fine).
 * type: "int8" ... "double".  Returns 0 or -1. */
int smr_route_create(smr_route *r, const char *type, unsigned len, int pooled);
/* Bytes of one value (from SM.INFO of sub-map 0), or 0 on error. */
size_t smr_route_value_size(smr_route *r);

/* Pipelined SM.PUTB of keys[i] -> values + i*vsize, i < n.  0 or -1. */
int smr_route_putb(smr_route *r, size_t n, const int64_t *keys, const void *values, size_t vsize);
/* Pipelined SM.GETB: found[i] = 1 and values + i*vsize filled, or found[i]
 * = 0 when the key is absent.  0 or -1 (a value of the wrong size is an
 * error). */
int smr_route_getb(smr_route *r, size_t n, const int64_t *keys, void *values, size_t vsize,
                   unsigned char *found);
/* Sum of SM.LEN over the sub-maps, or -1. */
long long smr_route_len(smr_route *r);

#endif
