/*
 * internal.h - what the library's source files share and users never see.
 *
 * Modules and their prefixes:
 *   alloc.c   alc_   the one door to memory
 *   check.c   chk_   check levels, misuse events and their remedies, error
 *                    details (sm_last_error), poisoning, SAFEMAP_CHECK and
 *                    SAFEMAP_DEBUG
 *   stats.c   reg_   the registry of live objects; sm_stats_read
 *   metrics.c met_   Prometheus text (sm_metrics_write); object labels
 *   profile.c        pprof heap profiles (sm_profile_write); static helpers
 *   map.c     sm_map_* (public) and static helpers
 *   pool.c    pool_  the pool, with slab.c, depot.c, tcache.c, sites.c and
 *                    report.c (pool_internal.h is their shared header; only
 *                    the pool_ functions below are for the rest of the library)
 *   epoch.c   ep_    epoch-based reclamation for the concurrent map
 *   cmap.c    sm_cmap_* (public), cmap_ (internal)
 */
#ifndef SM_INTERNAL_H
#define SM_INTERNAL_H

/* Public declarations get default visibility; everything else is hidden. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif
#include "safemap.h"
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sanitize.h"

#if defined(__GNUC__)
#define SM_LIKELY(x) __builtin_expect(!!(x), 1)
#define SM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SM_COLD __attribute__((noinline, cold))
#else
#define SM_COLD
#define SM_LIKELY(x) (x)
#define SM_UNLIKELY(x) (x)
#endif

/* SM_ASSERT(cond): an invariant or precondition the code relies on ("lock
 * held", a count).  Live in debug builds (no NDEBUG) and in sanitizer
 * builds, where a failure prints the condition and aborts; compiled out
 * (the condition not evaluated) in release builds. */
#if !defined(NDEBUG) || SM_HAVE_ASAN || SM_HAVE_TSAN
#define SM_ASSERT_ON 1
#define SM_ASSERT(cond) ((cond) ? (void)0 : chk_assert_fail(#cond, __FILE__, __LINE__, __func__))
#else
#define SM_ASSERT_ON 0
#define SM_ASSERT(cond) ((void)0)
#endif

/* ---- alloc.c ----------------------------------------------------------- */

/* Memory from the installed allocator; NULL on failure.  Every block is
 * counted, so that sm_set_allocator() can refuse to swap allocators while
 * the library holds memory. */
void *alc_alloc(size_t size, size_t align);
void alc_free(void *p, size_t size);

/* ---- check.c ----------------------------------------------------------- */

/* Resolves SM_CHECK_DEFAULT through SAFEMAP_CHECK; returns SM_CHECK_OFF,
 * SM_CHECK_CHEAP or SM_CHECK_FULL, or -1 for a value that is not a level. */
int chk_level(int requested);

/* What to do about an event of this code: the `remedy:` line of the
 * default handler's report (and of any handler that wants to print the
 * same report).  Never NULL. */
const char *chk_remedy(int code);

/* "off", "cheap", "full" ("default" for SM_CHECK_DEFAULT, "?" otherwise):
 * the one spelling of a level for reports, metrics and the CLI. */
const char *chk_level_name(int level);

/* Raises a misuse event and returns code: counts it once process-wide and,
 * when object_counts is not NULL, in the object's own counts
 * (object_counts[-code]); formats the detail once (printf-style); hands the
 * event to the installed handler.  The one way to raise an event. */
int chk_event(int code, _Atomic uint64_t *object_counts, const char *what, const void *object,
              const void *ptr, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

/* "SM_EDOUBLE" for SM_EDOUBLE, ...; NULL for a value that is not a code.
 * The one spelling of a code for events, metrics and the CLI. */
const char *chk_code_name(int code);

/* SM_ASSERT's failure: prints the condition and where, then aborts. */
#if defined(__GNUC__)
__attribute__((noreturn, cold))
#endif
void chk_assert_fail(const char *cond, const char *file, int line, const char *func);

/* The largest elem_align a layout may ask for: a cache line. */
#define CHK_MAX_ALIGN 64

/* chk_event() without per-object counts. */
int chk_raise(int code, const char *what, const void *object, const void *ptr, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* Failure details for sm_last_error().  chk_einval() records
 * "what: <formatted text>" for this thread and returns SM_EINVAL, e.g.
 *   return chk_einval("sm_map_new", "opts->layout.elem_align is %zu, not a "
 *                     "power of two", o->layout.elem_align);
 * Name the argument or field and say what was wrong with it.  chk_eio() does
 * the same for SM_EIO and appends strerror(errno) (errno is preserved).
 * Neither raises an event. */
#define CHK_ERROR_MAX 256
int chk_einval(const char *what, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int chk_eio(const char *what, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* 0, or SM_EINVAL with a detail naming the broken rule: chk_layout_check(l,
 * "sm_pool_new", "opts->layout") records e.g. "sm_pool_new:
 * opts->layout.len is 0".  chk_layout_valid(l) is the same with what
 * "sm_layout" and field "layout".  The rules: see sm_layout in safemap.h. */
int chk_layout_check(const sm_layout *l, const char *what, const char *field);
int chk_layout_valid(const sm_layout *l);
bool chk_layout_equal(const sm_layout *a, const sm_layout *b);
/* Writes "T[N] (elem 8 B, align 8)" into buf. */
void chk_layout_format(char *buf, size_t n, const sm_layout *l);

/* The byte written over vacated memory at SM_CHECK_FULL. */
#define CHK_POISON_BYTE 0xDB

/* Fills [p, p+n) with the poison byte and tells ASan/Valgrind it must not be
 * touched; chk_poison_intact() checks the bytes (temporarily lifting the
 * sanitizer mark); chk_unpoison() makes the range usable again. */
void chk_poison(void *p, size_t n);
void chk_unpoison(void *p, size_t n);
bool chk_poison_intact(const void *p, size_t n);

/* Process-wide counters behind sm_stats_read(). */
void alc_stats(size_t *bytes_held, uint64_t *allocs, uint64_t *frees);

/* ---- check.c: SAFEMAP_DEBUG --------------------------------------------- */

/* SAFEMAP_DEBUG, parsed once: a comma-separated list of name=value.
 *   trace=1        one line per pool cycle and per segment split or merge
 *   check=LEVEL    off, cheap or full (any case): the level SM_CHECK_DEFAULT
 *                  means (SAFEMAP_CHECK, when set, takes precedence)
 *   sample=N       at SM_CHECK_CHEAP record the call site of one Get/Put in
 *                  N (0: none); default CHK_SAMPLE_DEFAULT.  A recorded
 *                  Get and its array's Put cost about 2.4 us (backtrace()):
 *                  100000 keeps that near 0.5% of a 4.7 ns Get+Put pair
 *                  (1000 would add 50%; docs/safety.md has the numbers)
 * Names and values may be in any case and padded with blanks; an item not
 * understood (unknown name, sample=abc, sample=-1, an overflowing number)
 * is reported in one line on stderr and leaves its setting at the default. */
#define CHK_SAMPLE_DEFAULT 100000
typedef struct chk_debug {
    int trace;
    int check; /* SM_CHECK_DEFAULT when not given */
    unsigned sample;
} chk_debug;

const chk_debug *chk_debug_get(void);

/* Writes one trace line, "safemap: " + the formatted text, to stderr. */
void chk_trace(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* CLOCK_MONOTONIC in nanoseconds, for trace lines. */
uint64_t chk_now_ns(void);

/* Global misuse counts, by -code (chk_raise counts every event). */
void chk_misuse_counts(uint64_t out[SM_NCODES]);

/* ---- stats.c: live objects, for metrics and profiles -------------------- */

/* Maps and pools register at creation and leave at free.  The walkers hold
 * the registry lock while calling f, so f must not create or free objects.
 * seq numbers the maps (and, separately, the pools) in order of creation,
 * from 1: metrics and profiles label an unnamed object "map-3", which stays
 * the same from run to run where the address does not. */
void reg_map_add(sm_map *m);
void reg_map_del(sm_map *m);
void reg_pool_add(sm_pool *p);
void reg_pool_del(sm_pool *p);
void reg_each_map(void (*f)(sm_map *m, uint64_t seq, void *ctx), void *ctx);
void reg_each_pool(void (*f)(sm_pool *p, uint64_t seq, void *ctx), void *ctx);
void reg_counts(size_t *maps, size_t *pools);
/* For fork handlers: hold the registry lock across a fork, and walk the
 * pools while holding it (reg_each_pool takes the lock itself). */
void reg_hold(void);
void reg_release(void);
void reg_each_pool_held(void (*f)(sm_pool *p, uint64_t seq, void *ctx), void *ctx);

/* ---- metrics.c ----------------------------------------------------------- */

/* The label metrics and profiles give an object: its name when it has one,
 * else "<kind>-<seq>" ("map-3") with seq from the registry walk.  Writes at
 * most n bytes into buf and returns buf. */
const char *met_object_label(char *buf, size_t n, const char *kind, const char *name, uint64_t seq);

/* ---- epoch.c: when retired memory may be freed -------------------------- */

/* Read sections (ep_enter/ep_exit, inline) and retirement epochs are
 * declared in epoch.h, which only cmap.c and epoch.c include. */

/* ---- cmap.c: the concurrent map ----------------------------------------- */

/* Calls f for every live concurrent map, oldest first, with the name it was
 * created with (NULL when none: label it met_object_label(..., "cmap",
 * NULL, seq)) and its creation number (1, 2, ... among concurrent maps).
 * For metrics and profiles: sm_cmap_stats() gives the figures; f must not
 * create or free concurrent maps. */
void cmap_each(void (*f)(sm_cmap *cm, const char *name, uint64_t seq, void *ctx), void *ctx);

/* Faults the tests switch on to prove their checkers catch a broken map
 * (0 in normal use; any thread may set or clear them at any time, for
 * every concurrent map at once).  Off, they cost sm_cmap_get nothing (the
 * same instruction count): a reader tests them only when seq was odd or
 * its validation failed, a put once (then runs a copy compiled with them). */
enum {
    CMAP_FAULT_SKIP_VALIDATE = 1, /* a reader ignores seq: copies while it is
                                     odd, keeps a copy after it changed */
    CMAP_FAULT_LOCK_RETIRED = 2,  /* a put may rewrite a segment growth retired */
    CMAP_FAULT_YIELD = 4          /* a put yields between the directory load and the
                                     lock, and halfway through rewriting a value */
};
extern _Atomic int cmap_test_faults;

/* ---- map.c ------------------------------------------------------------- */

/* The name a map was created with (sm_map_opts.name, copied), or NULL. */
const char *map_name(const sm_map *m);

/* ---- pool.c ------------------------------------------------------------ */

/* The layout a pool was created with (for SM_ELAYOUT checks in the map). */
const sm_layout *pool_layout(const sm_pool *p);

/* The name given at creation (sm_pool_opts.name), or NULL. */
const char *pool_name(const sm_pool *p);

/* Users.  A pooled map calls pool_ref() at creation (SM_ENOMEM, SM_EINVAL;
 * on failure nothing changed) and pool_unref() when freed; sm_pool_close()
 * of a pool with users raises SM_EBUSY naming them and frees nothing.
 * user_name (may be NULL) is copied. */
int pool_ref(sm_pool *p, const void *user, const char *user_name);
void pool_unref(sm_pool *p, const void *user);

/* Arrays a pooled map holds.  pool_own() marks a LIVE array as held by a
 * map, so that sm_pool_put() of it raises SM_EDOUBLE naming the pool's
 * users; pool_disown() clears the mark before the map puts it back.  Both
 * return 0, SM_EINVAL (NULL), SM_EFOREIGN (not an array of p) or
 * SM_EDOUBLE (not LIVE, or already in that state), raising no event.  O(1),
 * no lock at SM_CHECK_OFF/CHEAP. */
int pool_own(sm_pool *p, void *array);
int pool_disown(sm_pool *p, void *array);

/* Checks the pool's invariants (slot states against free bits, counts,
 * where idle arrays are, the idle cap), stopping the pool's threads
 * briefly.  0, or SM_ECORRUPT with one line on stderr saying which.  For
 * tests, as sm_map_verify() is for maps.  O(slots). */
int pool_verify(sm_pool *p);

/* How often calls left the inline fast paths (for tests of the per-thread
 * caches): slow = calls that went out of line with a cache (no lock),
 * locked = Gets and Puts that took the pool's lock; caches = live thread
 * caches of the pool. */
typedef struct pool_counts {
    uint64_t slow, locked;
    size_t caches;
    bool inline_paths; /* the pool takes the inline fast paths at all */
} pool_counts;
void pool_counters(sm_pool *p, pool_counts *out);

/* One recorded Get call stack of a pool, with what it accounts for, for
 * heap profiles.  At SM_CHECK_CHEAP only sampled Gets are recorded, and the
 * counts are scaled by the sampling rate (estimates, as pprof expects). */
typedef struct pool_site {
    const void *const *pcs; /* return addresses, innermost first */
    int depth;
    uint64_t alloc_objects, alloc_bytes; /* Gets from this stack, ever */
    uint64_t inuse_objects, inuse_bytes; /* of those, not yet Put */
} pool_site;

/* Calls f for each recorded Get stack of p.  Runs under the pool's lock. */
void pool_each_site(sm_pool *p, void (*f)(const pool_site *site, void *ctx), void *ctx);

#endif /* SM_INTERNAL_H */
