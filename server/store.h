/*
 * store.h - safemapd's named maps: a registry from name to smc_map shared by
 * every worker thread, the RESP and HTTP transports and the persistence code.
 *
 * Lookups are frequent and creation is rare, so the registry is a small hash
 * table under a read-write lock, and each map is reference-counted: a
 * command takes a reference for its duration (smd_store_get ... _put), so
 * SM.DROP removes the name at once and the map is freed when the last
 * command using it ends.  The write gate lets a snapshot see one point in
 * time: every write command holds it shared, smd_store_pause() takes it
 * exclusively for the instant the snapshot starts (fork).
 */
#ifndef SAFEMAP_SERVER_STORE_H
#define SAFEMAP_SERVER_STORE_H

#include "command.h"

typedef struct smd_store smd_store;

int smd_store_new(smd_store **out);
void smd_store_free(smd_store *st); /* frees every map */

/* Adds a new, empty map.  Returns 0, SMD_EEXISTS (the name is taken),
 * SM_EINVAL (bad name or spec) or SM_ENOMEM; nothing changed on failure. */
#define SMD_EEXISTS (-100)
int smd_store_create(smd_store *st, const char *name, size_t n, const smc_spec *spec);

/* Removes a map by name.  Returns 0 or SM_ENOENT. */
int smd_store_drop(smd_store *st, const char *name, size_t n);

/* Looks a map up and takes a reference; NULL when absent.  Every non-NULL
 * result must be given back with smd_store_put. */
smc_map *smd_store_get(smd_store *st, const char *name, size_t n);
void smd_store_put(smd_store *st, smc_map *m);

/* Calls fn for every map (with a reference held during the call), in name
 * order, with no lock of the store held (fn may create or drop maps).
 * Stops at and returns fn's first nonzero value; SM_ENOMEM (fn not called)
 * when the list of maps cannot be allocated. */
int smd_store_each(smd_store *st, int (*fn)(smc_map *m, void *ctx), void *ctx);
size_t smd_store_count(smd_store *st);

/* A counter bumped by every smd_store_create and smd_store_drop that
 * succeeds (relaxed atomic).  A caller that caches smc_map references by
 * name revalidates them when it changes. */
uint64_t smd_store_generation(smd_store *st);

/* Installs the write observer on every map, present and future (the
 * append-only log). */
void smd_store_observe(smd_store *st, smc_write_fn fn, void *ctx);

/* The write gate: write commands (SM.CREATE and SM.DROP included) run
 * between gate_enter and gate_leave; pause/resume exclude them all.  The
 * gate prefers pause over new writes, so a thread must not enter it twice
 * (it could deadlock against a waiting pause). */
void smd_store_gate_enter(smd_store *st);
void smd_store_gate_leave(smd_store *st);
void smd_store_pause(smd_store *st);
void smd_store_resume(smd_store *st);

#endif
