/*
 * safemap.h - maps from int64_t keys to fixed-size arrays, and pools that
 * recycle those arrays.
 *
 * This is the whole public API.  Every object has the same lifetime:
 * create with sm_<noun>_new(), use, destroy with sm_<noun>_free().
 *
 * Errors.  Functions that can fail return 0 on success or a negative SM_E*
 * code.  A function that returns an error has changed nothing: the map or
 * pool is exactly as it was before the call.
 *
 * Misuse.  Lifecycle misuse (SM_ELAYOUT, SM_EDOUBLE, SM_EFOREIGN,
 * SM_ECORRUPT, SM_ESTALE, SM_EBUSY) is also reported as an event to the
 * handler installed with sm_set_handler().  The default handler prints a
 * report naming the object, its layout and the call and aborts; a custom
 * handler may return, and then the call returns the code.  SM_ENOENT,
 * SM_ENOMEM, SM_EINVAL and SM_EIO are plain return values and raise no
 * event; after SM_EINVAL or SM_EIO, sm_last_error() says what was wrong.
 *
 * Threads.  A map or pool may be used by one writer at a time; concurrent
 * mutation of one map is detected (SM_EBUSY) at SM_CHECK_CHEAP and above,
 * and several threads may read a map nobody writes (see Map below).
 * fork(): a child forked while other threads use pools may use every pool
 * it inherited (Get, Put, cycle, reports, free); the other threads' cached
 * arrays become idle arrays of the child's pools.
 * The global settings (handler, allocator) are meant to be set once at
 * start-up, before any map or pool exists.
 */
#ifndef SAFEMAP_H
#define SAFEMAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SAFEMAP_VERSION_MAJOR 0
#define SAFEMAP_VERSION_MINOR 1
#define SAFEMAP_VERSION_PATCH 0
#define SAFEMAP_VERSION_STRING "0.1.0"

/* The version of the library actually linked ("0.1.0"), which may differ
 * from the SAFEMAP_VERSION_* macros of the header compiled against. */
const char *sm_version(void);

/* ---- Errors ------------------------------------------------------------ */

enum {
    SM_OK = 0,
    SM_ENOENT = -1,   /* key absent */
    SM_ENOMEM = -2,   /* out of memory */
    SM_EINVAL = -3,   /* bad argument */
    SM_ELAYOUT = -4,  /* two layouts that must match differ */
    SM_EDOUBLE = -5,  /* array put back twice */
    SM_EFOREIGN = -6, /* pointer is not an array of this pool */
    SM_ECORRUPT = -7, /* poison overwritten, or an invariant broken */
    SM_ESTALE = -8,   /* iterator or handle used after the thing changed */
    SM_EBUSY = -9,    /* unsynchronised concurrent mutation detected */
    SM_EIO = -10      /* a write to a file or stream failed (errno says why) */
};

/* The name of an error code ("SM_ENOENT: key absent"); never NULL.  Unknown
 * codes give "unknown error". */
const char *sm_strerror(int code);

/* Why this thread's last call failed with SM_EINVAL or SM_EIO, naming the
 * argument or field ("sm_map_new: opts->layout.elem_align is 3, not a power
 * of two") or the file and errno's text; "" if no call on this thread has
 * failed so.  Like errno, a later successful call does not clear it: read it
 * right after the failure.  The string stays valid until this thread's next
 * failing call.  O(1); never fails. */
const char *sm_last_error(void);

/* Names given to maps and pools (sm_map_opts.name, sm_pool_opts.name) are
 * cut to SM_NAME_MAX - 1 bytes. */
#define SM_NAME_MAX 64

/* ---- Layouts ----------------------------------------------------------- */

/* What one array looks like: len elements of elem_size bytes, aligned to
 * elem_align.  Two layouts match when size, alignment and length are equal;
 * the name is for reports only.  A valid layout has elem_size >= 1, len >= 1,
 * elem_align a power of two <= 64 dividing elem_size, and
 * elem_size * len <= SM_MAX_ARRAY_BYTES. */
typedef struct sm_layout {
    size_t elem_size, elem_align, len;
    const char *name;
} sm_layout;

#define SM_MAX_ARRAY_BYTES ((size_t)1 << 20)

#ifdef __cplusplus
#define SM_LAYOUT(T, N) (sm_layout{sizeof(T), alignof(T), (N), #T "[" #N "]"})
#else
#define SM_LAYOUT(T, N) ((sm_layout){sizeof(T), _Alignof(T), (N), #T "[" #N "]"})
#endif

/* ---- Check levels ------------------------------------------------------ */

/* SM_CHECK_DEFAULT reads the SAFEMAP_CHECK environment variable ("off",
 * "cheap" or "full", in any case, blanks around it ignored) when the object
 * is created, then SAFEMAP_DEBUG's check=LEVEL, and means SM_CHECK_CHEAP
 * when neither is set.  A value that is not a level is ignored with a
 * one-line warning on stderr (once per process).
 *
 *   OFF    no checks beyond argument validation at creation.
 *   CHEAP  O(1) checks on every call: concurrent writers (SM_EBUSY), stale
 *          iterators (SM_ESTALE).  Costs at most a few percent.
 *   FULL   also poisons vacated slots and retired memory, keeps retired
 *          memory in quarantine before reuse and verifies its poison
 *          (SM_ECORRUPT), and tells AddressSanitizer, so that a stale
 *          pointer from sm_map_find() is reported at the faulting access. */
enum { SM_CHECK_DEFAULT, SM_CHECK_OFF, SM_CHECK_CHEAP, SM_CHECK_FULL };

/* ---- Misuse events ----------------------------------------------------- */

typedef struct sm_event {
    int code;           /* SM_ELAYOUT ... SM_EBUSY */
    const char *what;   /* the call that detected it, e.g. "sm_map_put" */
    const void *object; /* the map or pool */
    const void *ptr;    /* the array or value concerned, if any */
    const char *detail; /* one human-readable line: layouts, keys, sites */
} sm_event;

typedef void (*sm_handler)(const sm_event *ev, void *ctx);

/* Installs the misuse handler; NULL restores the default, which prints a
 * report to stderr and aborts.  The event and its strings live only for the
 * duration of the call. */
void sm_set_handler(sm_handler h, void *ctx);

/* ---- Memory ------------------------------------------------------------ */

/* Every byte the library takes goes through this allocator.  alloc returns
 * memory of at least size bytes aligned to align (a power of two), or NULL;
 * free receives the same size.  The library never asks for zeroed memory.
 *
 * sm_set_allocator() may only be called while the library holds no memory:
 * before the first map or pool is created, or after the last is freed (the
 * library keeps no memory of its own between objects).  It copies *a; NULL
 * restores the default (aligned_alloc / free). */
typedef struct sm_allocator {
    void *(*alloc)(size_t size, size_t align, void *ctx);
    void (*free)(void *p, size_t size, void *ctx);
    void *ctx;
} sm_allocator;

void sm_set_allocator(const sm_allocator *a);

/* ---- Pool -------------------------------------------------------------- */

/* A pool recycles arrays of one layout, as Go's sync.Pool does, with the
 * lifecycle checked.  Get and Put may be called from any thread, and an
 * array may be Put by a thread other than the one that got it; the fast
 * path is a per-thread cache with no lock.  Misuse (see docs/safety.md):
 * SM_EDOUBLE (put back twice), SM_EFOREIGN (not an array of this pool:
 * heap, stack, interior or another pool's pointer), SM_ECORRUPT (written
 * after Put; SM_CHECK_FULL).  Arrays are aligned to elem_align. */
typedef struct sm_pool sm_pool;
typedef void (*sm_hook)(void *array, void *ctx);

/* Zero the whole array (padding included): on every Get, or when it comes
 * back (fresh arrays are zeroed too). */
enum { SM_ZERO_ON_GET = 1u << 0, SM_ZERO_ON_PUT = 1u << 1 };

typedef struct sm_pool_opts {
    sm_layout layout;
    int check;      /* SM_CHECK_* */
    unsigned flags; /* SM_ZERO_ON_GET, SM_ZERO_ON_PUT */
    sm_hook on_new, on_get, on_put;
    void *hook_ctx;
    size_t max_idle_bytes; /* hard cap on idle memory; 0 means no cap */
    const char *name;      /* for reports, events, metrics and profiles; copied
                              at creation (at most SM_NAME_MAX - 1 bytes kept);
                              NULL: the pool is named by its address */
} sm_pool_opts;

/* Creates a pool.  Returns 0, SM_EINVAL (NULL argument, invalid layout,
 * unknown check level or flag; no event) or SM_ENOMEM.  *out is set only on
 * success.  Takes no slab memory until the first Get.
 *
 * Hooks run outside the pool's lock and may call the pool.  On Get: zeroing
 * (SM_ZERO_ON_GET), then on_new for an array never handed out before, then
 * on_get, just before the array is returned.  On Put: on_put once the array
 * is back, then zeroing (SM_ZERO_ON_PUT).  At SM_CHECK_FULL the idle array
 * holds poison, so Get re-applies the Put side (zeroing, on_put) before
 * on_get.  max_idle_bytes caps the arrays kept idle (thread caches
 * included): an array Put over the cap goes back to the allocator. */
int sm_pool_new(sm_pool **out, const sm_pool_opts *o);

/* Frees the pool and every array, idle or not.  Returns 0 (also for NULL),
 * or SM_EBUSY, at every level with an event naming the maps, when a pooled
 * map still uses the pool: then nothing is freed (free the maps first).  No
 * other thread may be using the pool.  At SM_CHECK_FULL idle arrays are
 * checked first (SM_ECORRUPT events), and arrays still handed out are
 * listed on stderr by the call stack of their Get, as sm_pool_report()
 * does (a report, not an event).  Afterwards the library holds no memory
 * for it, and the pool, its arrays and its handles must not be used again:
 * like a freed pointer, a freed pool cannot be detected.  O(slabs). */
int sm_pool_close(sm_pool *p);

/* sm_pool_close() for callers that do not look at the result. */
void sm_pool_free(sm_pool *p);

/* An array, or NULL when memory runs out (the pool is unchanged) or p is
 * NULL.  O(1); no lock when this thread's cache has one, whatever the
 * number of pools the thread uses.  At SM_CHECK_FULL an idle array found
 * written after its Put is withdrawn with an SM_ECORRUPT event and another
 * array is handed out: corruption never looks like out of memory. */
void *sm_pool_get(sm_pool *p);

/* Gives an array back.  Returns 0; SM_EINVAL for NULL (no event);
 * SM_EDOUBLE or SM_EFOREIGN (with an event at CHEAP and FULL; the code
 * alone at OFF), the array and pool unchanged.  SM_EDOUBLE also for an
 * array a pooled map still holds as a value (delete its key instead; the
 * event names the map).  At SM_CHECK_FULL, SM_ECORRUPT when an idle array
 * leaving quarantine to make room was found written after its Put: that
 * array is withdrawn (never handed out again) and named by the event, and
 * this array is taken back all the same.  Never fails for lack of memory.
 * O(1); at FULL also O(array size). */
int sm_pool_put(sm_pool *p, void *array);

/* The garbage-collection cycle: an idle array is given back to the
 * allocator at the second cycle after its Put, wherever it waits (other
 * threads' caches included); a slab goes back when all its arrays have.
 * Briefly stops the pool's other threads (membarrier).  O(idle arrays). */
void sm_pool_cycle(sm_pool *p);

/* A handle names one life of an array: sm_pool_resolve() returns the array
 * until it is Put back, and NULL ever after, and NULL in another pool.
 * sm_pool_handle() returns {0} (which resolves to NULL) for NULL arguments
 * or an idle array, and raises SM_EFOREIGN for a pointer that is not this
 * pool's.  Both O(1). */
typedef struct sm_handle {
    uint64_t bits;
} sm_handle;

sm_handle sm_pool_handle(sm_pool *p, const void *array);
void *sm_pool_resolve(sm_pool *p, sm_handle h);

/* ---- Map --------------------------------------------------------------- */

/* A map from int64_t keys (every value is a key) to arrays of one layout.
 *
 * Threads.  One writer at a time.  Any number of threads may read one map
 * at once (sm_map_get, sm_map_find, sm_map_len, sm_map_stats, iteration)
 * while nobody writes: reads, iterators included, write nothing shared.
 * At SM_CHECK_CHEAP and FULL two overlapping mutations are always detected:
 * one proceeds, the other returns SM_EBUSY (with an event) having changed
 * nothing.  A read overlapping a write is detected only at best (a relaxed
 * load of the writer's flag, as Go's map does): it may also return a torn
 * value or a stale miss, and, rarely, read memory already freed (retired
 * segments wait on a free list first, so it mostly reads stale memory).
 * For readers and writers at once, use sm_cmap below.
 *
 * Hashing.  Each map keys its hash with a seed drawn from getrandom() (see
 * sm_map_opts.fixed_seed), so keys cannot be chosen to collide without it.
 * Growth stays bounded even for keys chosen against a known seed: memory
 * O(entries), directory O(entries / segment), each call O(one segment)
 * (docs/map.md).  Iteration order follows the hash, so it differs between
 * maps and runs; an observer of it learns the order of hash prefixes, not
 * the seed. */
typedef struct sm_map sm_map;

/* Where values live.  SM_INLINE stores each array in the table itself: one
 * memory access per lookup, but a value moves when the table grows.
 * SM_POOLED stores a pointer to an array taken from a pool: values never
 * move. */
enum { SM_INLINE, SM_POOLED };

typedef struct sm_map_opts {
    sm_layout layout;
    int storage;      /* SM_INLINE or SM_POOLED */
    sm_pool *pool;    /* SM_POOLED: the pool values come from */
    int check;        /* SM_CHECK_* */
    size_t capacity;  /* entries to reserve room for (as sm_map_reserve); 0 for none */
    const char *name; /* for reports, events, metrics and profiles; copied at
                         creation (at most SM_NAME_MAX - 1 bytes kept); NULL:
                         the map is named by its address */
    int fixed_seed;   /* 0 (the default): the hash is keyed by a secret seed
                         drawn at random for each map.  Nonzero: keyed by
                         `seed`, for reproducible tests and benchmarks only:
                         whoever knows the seed can choose colliding keys */
    uint64_t seed;
} sm_map_opts;

/* Creates a map.  Returns SM_EINVAL for a NULL argument, an invalid layout or
 * storage mode, SM_ELAYOUT (with an event) when the pool's layout differs
 * from the map's, SM_ENOMEM when memory runs out or the capacity could never
 * fit (at once, before anything is allocated).  *out is set only on
 * success.  Cost: O(capacity / segment size). */
int sm_map_new(sm_map **out, const sm_map_opts *o);

/* Frees the map and all its memory (a pooled map's arrays go back to its
 * pool).  NULL is a no-op.  Pointers into the map become invalid; an
 * iterator of it returns SM_ESTALE (with an event) at its next step, at
 * every check level, without touching the freed map. */
void sm_map_free(sm_map *m);

/* Inserts key or replaces its value, copying layout-size bytes from value.
 * Returns 0; SM_ENOMEM (nothing changed: every allocation an insert needs is
 * made before anything moves); SM_EINVAL (NULL value); SM_EBUSY; at
 * SM_CHECK_FULL, SM_ECORRUPT (with an event) when memory retired earlier was
 * found written through a stale pointer (that memory is withdrawn, never
 * reused; the put itself was done).  A pooled map's put returns the pool's
 * code when the pool refuses it an array.  Cost: O(1) expected; at most one
 * segment split, grown or rebuilt, plus rarely a directory doubling. */
int sm_map_put(sm_map *m, int64_t key, const void *value);

/* Copies key's value into out.  Returns 0, SM_ENOENT (out untouched),
 * SM_EINVAL (NULL out) or SM_EBUSY (a writer was seen inside the map: best
 * effort, see Threads above).  O(1) expected; writes nothing shared. */
int sm_map_get(const sm_map *m, int64_t key, void *out);

/* A pointer to key's value, or NULL if absent (or SM_EBUSY, as for get).
 *
 * SM_INLINE: valid until the next mutation of the map (put, upsert, del,
 * clear, reserve): any of them may move the value.  A write through a
 * pointer kept longer lands in another key's slot or in retired memory,
 * silently at OFF and CHEAP.  At FULL, vacated slots are poisoned and not
 * handed out again until their segment is rebuilt, and retired segments
 * are poisoned and quarantined (at least 8 segments and up to 8 MiB, no
 * more than the live segments take): a write into either is reported as
 * SM_ECORRUPT by the call that rebuilds, retires or lets go of that memory
 * (or by sm_map_verify), and by AddressSanitizer at the write itself when
 * the library is built with it.  A write after the memory left the
 * quarantine is not caught.
 *
 * SM_POOLED: the array never moves; valid until the key is deleted or the
 * map cleared or freed. */
void *sm_map_find(sm_map *m, int64_t key);

/* A pointer to key's value, inserting a zeroed value if absent.  Sets
 * *inserted (if not NULL) to 1 when it inserted, else 0 (also on failure).
 * Returns NULL when memory runs out (nothing changed), on SM_EBUSY, or at
 * SM_CHECK_FULL when the call found retired memory written (SM_ECORRUPT,
 * as for put; the entry was inserted).  Pointer lifetime as for
 * sm_map_find(). */
void *sm_map_upsert(sm_map *m, int64_t key, int *inserted);

/* Deletes key.  Returns 0, SM_ENOENT or SM_EBUSY (nothing changed); for a
 * pooled map, the pool's code (SM_EDOUBLE, SM_EFOREIGN, SM_ECORRUPT, with
 * its event) when the pool refuses the array given back: the key is gone
 * and the array is the pool's to withdraw.  Never moves another entry, so
 * deleting the entry an iterator has just returned does not disturb that
 * iterator; under-filled segments are merged by later puts, and deleting
 * the last entry gives the memory back at once.  Never fails for lack of
 * memory.  O(1) expected (the last entry: O(segments)). */
int sm_map_del(sm_map *m, int64_t key);

/* Number of entries.  O(1). */
size_t sm_map_len(const sm_map *m);

/* Deletes every entry and keeps the memory for reuse.  O(segments). */
void sm_map_clear(sm_map *m);

/* Makes room for n entries in total: splits segments until n entries spread
 * evenly would fill them to 5/8 of their limit, so that growing to n splits
 * no segment in the common case (a segment that draws well over its share of
 * keys may still split).  Entries do not change; pointers from
 * sm_map_find() into SM_INLINE storage become invalid when anything moved.
 * All or nothing: returns 0; SM_ENOMEM with nothing changed, at once for an
 * n this machine could never hold (more than its physical memory);
 * SM_EBUSY.  Cost: O(n). */
int sm_map_reserve(sm_map *m, size_t n);

/* Checks every internal invariant: directory ranges and the tags of grown
 * segments, segment depths, control bytes, every key in its home segment
 * with the overflow bits set on its way from its home group, counts, poison
 * in every free slot (SM_CHECK_FULL).  Returns 0 or SM_ECORRUPT (with an
 * event).  Cost: O(capacity). */
int sm_map_verify(const sm_map *m);

/* Iteration visits every entry once, in hash order.  Deleting the entry just
 * returned is allowed and disturbs no iterator standing on it; any other
 * mutation makes the next sm_iter_next() of every iterator return SM_ESTALE
 * (with an event) when checks are on (CHEAP, FULL).  Of two iterators, the
 * one whose entry was not the one deleted is reported the same way: each
 * keeps its promise or says it cannot.  An iterator writes only itself. */
typedef struct sm_iter {
    sm_map *map_;
    uint64_t version_;
    size_t dir_;
    size_t slot_;
    int64_t key_;
    int state_;
    uint32_t gen_idx_; /* the map's life, checked before the map is touched */
    uint64_t gen_;
} sm_iter;

sm_iter sm_map_iter(sm_map *m);

/* Returns 1 and sets *key and *value (either may be NULL) for the next entry,
 * 0 at the end, SM_ESTALE after a forbidden mutation or once the map has
 * been freed.  O(1) amortised; a whole pass is O(capacity). */
int sm_iter_next(sm_iter *it, int64_t *key, void **value);

/* Calls fn(key, value, ctx) for every entry, in the order an iterator
 * visits them: the fastest way to visit a whole map (one indirect call per
 * entry, the map's checks made once per segment rather than per entry).  fn
 * may read and write the value but must not put, delete or clear: at CHEAP
 * and FULL a mutation stops the walk with SM_ESTALE (with an event), at OFF
 * it is undefined.  A nonzero return from fn stops the walk and is
 * returned.  Returns 0, fn's value, SM_EINVAL (NULL argument), SM_EBUSY (a
 * writer was seen inside the map, as for sm_map_get) or SM_ESTALE.
 * Cost: O(capacity). */
typedef int (*sm_map_each_fn)(int64_t key, void *value, void *ctx);
int sm_map_each(sm_map *m, sm_map_each_fn fn, void *ctx);

/* ---- Concurrent map ---------------------------------------------------- */

/* sm_cmap is a map that any number of threads may use at once: every
 * function below may be called from any thread at any time, except
 * sm_cmap_free().  It maps the same keys to the same layouts as sm_map and
 * reports the same error codes; docs/cmap.md explains how it works.
 *
 *   Readers never lock and never wait for growth.  sm_cmap_get() copies the
 *   value out and checks that no writer changed the segment during the copy,
 *   retrying if one did, so it never returns a torn value or one that was
 *   never stored.  Segments are split, merged and the directory resized in
 *   fresh memory, published with one pointer store; a reader that was
 *   looking at the old memory notices and looks again.
 *   Writers exclude each other per segment, not per map.
 *   Memory that a reader may still be looking at is freed only after every
 *   read in progress when it was retired has finished (epoch-based
 *   reclamation; threads register themselves on first use, no call is
 *   needed).  The memory waiting for that is bounded: a writer that finds it
 *   over the bound waits for the readers of the moment to finish.
 *
 * sm_map_opts is the same as for sm_map.  With SM_POOLED storage values are
 * copy-on-write: a put or update fills a fresh array from the pool and
 * publishes it, and the replaced array goes back to the pool once its
 * readers have finished; so a pointer from sm_cmap_find() is a snapshot that
 * never changes while its read section lasts.  The check level controls the
 * misuse checks of read sections (see sm_cmap_read_begin). */
typedef struct sm_cmap sm_cmap;

/* Creates a concurrent map.  Returns 0, SM_EINVAL (NULL argument, invalid
 * layout or storage, SM_POOLED without a pool, unknown check level),
 * SM_ELAYOUT (with an event) when the pool's layout differs from the map's,
 * or SM_ENOMEM.  *out is set only on success.  Cost: O(capacity / segment
 * size). */
int sm_cmap_new(sm_cmap **out, const sm_map_opts *o);

/* Frees the map and all its memory, including memory still waiting for
 * readers; SM_POOLED arrays go back to the pool.  NULL is a no-op.  No other
 * thread may be using the map, and no pointer from sm_cmap_find() may be in
 * use. */
void sm_cmap_free(sm_cmap *cm);

/* Inserts key or replaces its value (layout-size bytes copied from value),
 * atomically for readers.  Returns 0, SM_EINVAL (NULL argument) or
 * SM_ENOMEM (nothing changed): memory ran out, or keys chosen to share a
 * long hash prefix (possible only to someone who knows the map's seed) fill
 * a segment already 8 levels deeper than the map needs, which is not split
 * further, so that no key pattern can blow up the directory.  Cost: O(1) expected, plus at most one
 * segment copied when the segment splits; may wait for readers when the
 * memory awaiting reclamation is over its bound.  Locks one segment. */
int sm_cmap_put(sm_cmap *cm, int64_t key, const void *value);

/* Copies key's value into out.  Returns 0, SM_ENOENT (out untouched, except
 * for values over SM_CMAP_COPY_MAX bytes, which are copied into out directly
 * and may leave it overwritten), SM_EINVAL (NULL argument) or SM_ENOMEM (the
 * first read section of a thread could not register it; nothing read).
 * Never locks, never waits for a split or a resize; retries while a writer
 * changes the same segment. */
int sm_cmap_get(sm_cmap *cm, int64_t key, void *out);

#define SM_CMAP_COPY_MAX 4096

/* Deletes key.  Returns 0, SM_ENOENT or SM_EINVAL (NULL map); SM_ENOMEM
 * only from a thread's first call to the map's functions, when its 64-byte
 * reader record cannot be had, or for SM_POOLED storage inside a read
 * section when memory for the record that holds the array until its readers
 * finish cannot be had (outside one it then waits for them instead).  A
 * merge that cannot get memory is skipped. */
int sm_cmap_del(sm_cmap *cm, int64_t key);

/* Atomic read-modify-write ("upsert").  Locks key's segment, then calls
 * fn(value, inserted, ctx) on a copy of the current value (inserted 0), or
 * on a zeroed value when key is absent (inserted 1), and stores the result
 * as one write: readers see the old value or the new one, never the zeros
 * of an insert or a partial update.  fn runs with the segment locked: it
 * must not call a writing sm_cmap function on this map (reads are fine).
 * Returns 0, SM_EINVAL (NULL argument) or SM_ENOMEM (nothing changed, fn
 * not called).  Cost: as sm_cmap_put plus fn. */
typedef void (*sm_cmap_update_fn)(void *value, int inserted, void *ctx);
int sm_cmap_update(sm_cmap *cm, int64_t key, sm_cmap_update_fn fn, void *ctx);

/* Number of entries.  O(1).  Exact when no writer is active; otherwise a
 * value the map had during the call, give or take the writes in flight. */
size_t sm_cmap_len(sm_cmap *cm);

/* Read sections.  Between sm_cmap_read_begin() and sm_cmap_read_end() on the
 * same thread, memory of the map that this thread can see is not freed.
 * Sections nest; they cost two atomic operations and never wait.  A thread
 * may call writing functions inside a section (they then never wait for
 * readers; reclamation is put off).  Keep sections short: memory retired
 * while one is open cannot be freed until it ends.
 *
 * sm_cmap_find() is valid only inside a section: with SM_POOLED storage it
 * returns key's array (NULL when absent), a snapshot that stays readable and
 * unchanged until the section ends, whatever writers do meanwhile.  With
 * SM_INLINE storage values are rewritten in place, so there is no stable
 * pointer to give: it returns NULL (use sm_cmap_get()).  O(1), no lock.
 *
 * What escapes a section, by check level: at SM_CHECK_CHEAP and FULL,
 * sm_cmap_find() outside a section (it then returns NULL) and an
 * sm_cmap_read_end() without its begin raise SM_ESTALE; at OFF they are not
 * reported.  A pointer kept past sm_cmap_read_end() points into an array
 * that goes back to the pool after the readers of the moment: at the pool's
 * SM_CHECK_FULL it is poisoned there, so a write through it is reported
 * (SM_ECORRUPT) and ASan reports any access; below FULL it is not detected.
 *
 * sm_cmap_read_begin returns 0, SM_EINVAL (NULL map) or SM_ENOMEM (the
 * thread's first section could not register it). */
int sm_cmap_read_begin(sm_cmap *cm);
void sm_cmap_read_end(sm_cmap *cm);
const void *sm_cmap_find(sm_cmap *cm, int64_t key);

/* Weakly consistent iteration: calls fn(key, value, ctx) for the entries of
 * the map, one segment at a time (each segment locked briefly while its
 * entries are copied out; readers are not held up, writers of that segment
 * only for the copy).  Every entry present for the whole call is visited
 * exactly once; an entry inserted or deleted during the call is visited at
 * most once.  fn runs with no lock held and may call any function of the
 * map.  A nonzero return from fn stops the walk and is returned.  Returns 0,
 * fn's nonzero value, SM_EINVAL (NULL argument) or SM_ENOMEM (a segment-sized
 * buffer could not be had; fn not called).  Cost: O(capacity). */
typedef int (*sm_cmap_each_fn)(int64_t key, const void *value, void *ctx);
int sm_cmap_each(sm_cmap *cm, sm_cmap_each_fn fn, void *ctx);

/* Checks every internal invariant: directory ranges, segment depths, control
 * bytes, every key in its home segment and found by its probe, counts and
 * the length.  It locks every segment, so writers wait for it (readers do
 * not) and the length is checked exactly even while other threads write.
 * Returns 0, SM_ECORRUPT (with an event), SM_EINVAL for NULL, or SM_ENOMEM
 * (the thread's first read section could not register it).
 * Cost: O(capacity). */
int sm_cmap_verify(sm_cmap *cm);

/* ---- Statistics and diagnostics ---------------------------------------- */

/* Misuse events counted by code: misuse[-code], so misuse[-SM_EDOUBLE] is
 * the number of double Puts.  Indexes 0..3 (success, ENOENT, ENOMEM, EINVAL)
 * stay zero: those are return values, not events. */
#define SM_NCODES 11

/* A snapshot of one pool.  Counters are kept per thread on the hot path and
 * summed here, so taking a snapshot never stops the pool's threads; a
 * snapshot taken while other threads Get and Put is approximate by the
 * operations in flight. */
struct sm_pool_stats {
    sm_layout layout;
    int check;
    uint64_t gets, puts;             /* calls that handed out / took back an array */
    uint64_t news;                   /* arrays created (first Get of a fresh slot) */
    uint64_t frees;                  /* arrays whose memory went back (cycles, cap) */
    size_t live_arrays, idle_arrays; /* handed out now / kept for reuse now */
    size_t live_bytes, idle_bytes;
    size_t reserved_bytes; /* everything the pool holds from the allocator */
    uint64_t cycles;       /* sm_pool_cycle calls */
    uint64_t misuse[SM_NCODES];
};

/* Fills *out.  Returns 0 or SM_EINVAL (NULL argument).  O(threads). */
int sm_pool_stats(sm_pool *p, struct sm_pool_stats *out);

/* Writes the arrays handed out and not yet Put, grouped by the call stack
 * of their Get, largest group first.  Stacks are recorded for every Get at
 * SM_CHECK_FULL, and at SM_CHECK_CHEAP for one Get in N
 * (SAFEMAP_DEBUG=sample=N, default 100000: about 0.5% of a Get+Put pair, see
 * docs/safety.md), so there the groups are a sample and the last line
 * counts the rest; none at SM_CHECK_OFF.  The format, the first line
 * wrapped here (sm_pool_free() writes the same to stderr at SM_CHECK_FULL
 * when arrays are still out, with "leaked at sm_pool_free" instead of
 * "outstanding"):
 *
 *   safemap: pool 0x55d0c4f1e2a0 int64_t[16]: 32 arrays outstanding
 *       (4096 B); Get call sites: every Get recorded (SM_CHECK_FULL)
 *     20 arrays (2560 B) got at:
 *       #0 0x55d0c3a1c1d9 in load_batch+0x19 (app)
 *       #1 0x55d0c3a1c5e2 in main+0x42 (app)
 *     12 arrays (1536 B) got at:
 *       #0 0x55d0c3a1c209 in app+0x2209
 *       #1 0x55d0c3a1c5f1 in main+0x51 (app)
 *     0 arrays (0 B) whose Get was not recorded
 *
 * A frame is a return address, then "function+offset (module)", or
 * "module+offset" when the function has no dynamic symbol (static, or a
 * program linked without -rdynamic; `addr2line -f -e module offset` names
 * it).  Up to 16 frames, the caller of sm_pool_get() first.  The pool is
 * named by its sm_pool_opts.name, or else its layout's name.  Returns 0,
 * SM_EINVAL, SM_ENOMEM (nothing written) or SM_EIO (the stream reported a
 * write error, e.g. a full disk; the report is incomplete).
 * O(recorded stacks); the pool's lock is held only while they are copied. */
int sm_pool_report(sm_pool *p, FILE *out);

#define SM_PROBE_BUCKETS 16

/* A snapshot of one map.  The map must not be mutated during the call (the
 * same rule as any other read).  O(capacity) for the probe histogram. */
struct sm_map_stats {
    sm_layout layout;
    int storage, check;
    size_t len;              /* entries */
    size_t capacity;         /* slots in live segments */
    size_t segments;         /* live segments */
    size_t free_segments;    /* retired and kept for reuse (quarantine included) */
    size_t bytes;            /* held from the allocator: segments, directory, map */
    unsigned global_depth;   /* the directory has 2^global_depth entries */
    double load;             /* len / capacity */
    uint64_t splits, merges; /* segment splits and merges */
    uint64_t rebuilds;       /* segments rebuilt clean (stale overflow bits, TOMBs) */
    uint64_t dir_doublings, dir_halvings;
    uint64_t probe[SM_PROBE_BUCKETS]; /* entries by how many groups of 15 slots past
                                         their home group they sit (what a lookup
                                         of them reads): 0, 1, ..., 14, 15 or more */
    uint64_t misuse[SM_NCODES];
    size_t grown_segments;     /* live segments grown past the usual size because
                                  their keys would not split (chosen keys) */
    size_t withdrawn_segments; /* found written after retirement (SM_CHECK_FULL);
                                  never reused, freed with the map */
    uint64_t grows;            /* segments grown instead of split */
};

/* Fills *out.  Returns 0 or SM_EINVAL (NULL argument). */
int sm_map_stats(const sm_map *m, struct sm_map_stats *out);

/* A snapshot of one concurrent map (counters read without stopping anyone,
 * so approximate while writers run). */
struct sm_cmap_stats {
    sm_layout layout;
    int storage, check;
    size_t len;
    size_t capacity;       /* slots in live segments */
    size_t segments;       /* live segments */
    size_t bytes;          /* held from the allocator: segments, directory,
                              memory awaiting reclamation, free segments
                              kept for reuse, the map */
    unsigned global_depth; /* the directory has 2^global_depth entries */
    uint64_t splits, merges, rebuilds, dir_doublings, dir_halvings;
    uint64_t read_retries;    /* reads that ran again: a writer overlapped */
    size_t limbo_bytes;       /* retired, waiting for readers to finish */
    size_t limbo_objects;     /* segments, directories and pooled arrays waiting */
    size_t limbo_peak_bytes;  /* the most that ever waited */
    size_t limbo_bound_bytes; /* over this, writers wait for readers */
    uint64_t reclaimed;       /* retired objects freed after their grace period */
    uint64_t grace_waits;     /* times a writer waited for readers */
    uint64_t misuse[SM_NCODES];
};

/* Fills *out.  Returns 0 or SM_EINVAL (NULL argument).  O(1). */
int sm_cmap_stats(sm_cmap *cm, struct sm_cmap_stats *out);

/* Process-wide totals: Go's runtime.MemStats for safemap.  Reads only
 * counters (no object is walked), so it is cheap and safe from any thread. */
struct sm_stats {
    size_t pools, maps;         /* live objects */
    size_t bytes_held;          /* held from the allocator now */
    uint64_t allocs, frees;     /* allocator calls since start */
    uint64_t misuse[SM_NCODES]; /* events raised, all objects */
};

void sm_stats_read(struct sm_stats *out);

/* Writes a heap profile of every live pool to path, in the gzip-compressed
 * profile.proto format that `go tool pprof` reads: sample types
 * alloc_objects/count, alloc_space/bytes, inuse_objects/count and
 * inuse_space/bytes, one sample per recorded Get call stack (every Get at
 * SM_CHECK_FULL, one in SAFEMAP_DEBUG's sample=N at SM_CHECK_CHEAP, counts
 * scaled by N).  The gzip stream uses stored blocks, so the library needs no
 * zlib.  Samples are labelled with the pool's name, or "pool-2" for the
 * second pool created when it has none.  Returns 0; SM_EINVAL (NULL or
 * empty path); SM_ENOMEM (out of memory: no file is created); SM_EIO (the
 * file cannot be created, e.g. a missing directory, or a write to it failed,
 * e.g. a full disk: a partly written regular file is removed; errno and
 * sm_last_error() say why). */
int sm_profile_write(const char *path);

/* Writes Prometheus text exposition (format 0.0.4) for the process, every
 * live pool, every live map and every live concurrent map: names
 * safemap_*, base units, _total counters, HELP and TYPE lines (the names
 * are listed in docs/diagnostics.md).  Each object is labelled by its name,
 * or by its creation number among its kind ("pool-2", "map-3", "cmap-1")
 * when it has none.  The stream is flushed.  No sm_map may be mutated
 * during the call; pools and concurrent maps may be in use.  Returns 0;
 * SM_EINVAL (NULL stream); SM_ENOMEM (out of memory: nothing written);
 * SM_EIO (the stream reported a write error: part of the text may have
 * been written; errno and sm_last_error() say why). */
int sm_metrics_write(FILE *out);

#ifdef __cplusplus
}
#endif

#include "safemap/typed.h"

#endif /* SAFEMAP_H */
