/*
 * check.c - check levels, misuse events, and poison.
 *
 * Misuse is reported in one place.  chk_raise() formats the event and hands
 * it to the installed handler; the default handler prints a report that
 * names the call, the object and the detail (layouts, keys, call sites) and
 * aborts, as Go's runtime does for "concurrent map writes"; its last line
 * is a remedy: what usually causes that event and how to find the culprit.
 * A custom handler may return: every caller of chk_raise() has changed
 * nothing yet, so the public call can return the code with state intact.
 *
 * Plain errors carry a detail too.  SM_EINVAL and SM_EIO raise no event,
 * but chk_einval() and chk_eio() leave a line in a thread-local buffer
 * naming the argument or file, which sm_last_error() returns, as errno and
 * strerror() would if they could say which argument.
 *
 * SAFEMAP_DEBUG is read once, on first use, like GODEBUG: see chk_debug in
 * internal.h for its items.  SAFEMAP_CHECK is read at every creation.  Both
 * are read leniently (any case, blanks ignored) and never silently: a value
 * not understood gets a one-line warning on stderr and the default stays.
 *
 * Poison is how SM_CHECK_FULL makes stale memory visible.  Vacated memory is
 * filled with CHK_POISON_BYTE, so that a later write through a stale pointer
 * can be found when the memory is taken back out of quarantine
 * (chk_poison_intact()).  When built with AddressSanitizer the same range is
 * marked poisoned, so ASan reports the faulting access itself, with its
 * stack; under Valgrind the range is marked no-access for memcheck.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char *sm_version(void)
{
    return SAFEMAP_VERSION_STRING;
}

/* The one table of codes: by -code, the name and what sm_strerror() says. */
static const struct {
    const char *name, *text;
} codes[SM_NCODES + 1] = {
    [-SM_OK] = {"SM_OK", "SM_OK: success"},
    [-SM_ENOENT] = {"SM_ENOENT", "SM_ENOENT: key absent"},
    [-SM_ENOMEM] = {"SM_ENOMEM", "SM_ENOMEM: out of memory"},
    [-SM_EINVAL] = {"SM_EINVAL", "SM_EINVAL: bad argument"},
    [-SM_ELAYOUT] = {"SM_ELAYOUT", "SM_ELAYOUT: two layouts that must match differ"},
    [-SM_EDOUBLE] = {"SM_EDOUBLE", "SM_EDOUBLE: array put back twice"},
    [-SM_EFOREIGN] = {"SM_EFOREIGN", "SM_EFOREIGN: pointer is not an array of this pool"},
    [-SM_ECORRUPT] = {"SM_ECORRUPT", "SM_ECORRUPT: poison overwritten, or an invariant broken"},
    [-SM_ESTALE] = {"SM_ESTALE", "SM_ESTALE: iterator or handle used after the thing changed"},
    [-SM_EBUSY] = {"SM_EBUSY", "SM_EBUSY: unsynchronised concurrent mutation detected"},
    [-SM_EIO] = {"SM_EIO", "SM_EIO: a write to a file or stream failed"},
};

const char *chk_code_name(int code)
{
    if (code > 0 || code <= -(int)(sizeof codes / sizeof codes[0]) || !codes[-code].name)
        return NULL;
    return codes[-code].name;
}

const char *sm_strerror(int code)
{
    return chk_code_name(code) ? codes[-code].text : "unknown error";
}

/* ---- Error details ------------------------------------------------------ */

/* The text behind this thread's last SM_EINVAL or SM_EIO, like errno: a
 * later success does not clear it, so read it right after the failing
 * call. */
static _Thread_local char last_error[CHK_ERROR_MAX];

const char *sm_last_error(void)
{
    return last_error;
}

static void error_record(const char *what, const char *fmt, va_list ap)
{
    int n = snprintf(last_error, sizeof last_error, "%s: ", what ? what : "safemap");
    if (n < 0 || (size_t)n >= sizeof last_error)
        return;
    vsnprintf(last_error + n, sizeof last_error - (size_t)n, fmt, ap);
}

int chk_einval(const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_record(what, fmt, ap);
    va_end(ap);
    return SM_EINVAL;
}

int chk_eio(const char *what, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    error_record(what, fmt, ap);
    va_end(ap);
    char reason[128] = "write failed";
    if (saved && strerror_r(saved, reason, sizeof reason) != 0)
        snprintf(reason, sizeof reason, "errno %d", saved);
    size_t n = strlen(last_error);
    snprintf(last_error + n, sizeof last_error - n, ": %s", reason);
    errno = saved;
    return SM_EIO;
}

/* ---- SAFEMAP_CHECK and SAFEMAP_DEBUG ----------------------------------- */

/* Both variables are read leniently and never silently: case and blanks
 * around a value do not matter ("FULL", " full " mean full), and anything
 * else is reported on stderr in one line naming the value and what is used
 * instead, then ignored.  A typo must not quietly turn a FULL test run into
 * a CHEAP one. */

static const char *const level_names[] = {
    [SM_CHECK_OFF] = "off", [SM_CHECK_CHEAP] = "cheap", [SM_CHECK_FULL] = "full"};

const char *chk_level_name(int level)
{
    if (level >= SM_CHECK_OFF && level <= SM_CHECK_FULL)
        return level_names[level];
    return level == SM_CHECK_DEFAULT ? "default" : "?";
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* [*v, *v + *n) without leading and trailing blanks. */
static void trim(const char **v, size_t *n)
{
    while (*n && is_blank((*v)[0]))
        (*v)++, (*n)--;
    while (*n && is_blank((*v)[*n - 1]))
        (*n)--;
}

static bool word_is(const char *v, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(v, word, n) == 0;
}

/* SM_CHECK_OFF, _CHEAP or _FULL for a level's name, -1 for anything else. */
static int level_parse(const char *v, size_t n)
{
    trim(&v, &n);
    for (int level = SM_CHECK_OFF; level <= SM_CHECK_FULL; level++)
        if (word_is(v, n, level_names[level]))
            return level;
    return -1;
}

/* A whole decimal number in [0, max], else false: no sign, no other
 * characters, no overflow ("-1" and "99999999999" are refused). */
static bool number_parse(const char *v, size_t n, uint64_t max, uint64_t *out)
{
    trim(&v, &n);
    if (n == 0)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        unsigned d = (unsigned)(v[i] - '0');
        if (x > (max - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *out = x;
    return true;
}

static void env_warn(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static void env_warn(const char *fmt, ...)
{
    char line[CHK_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "safemap: warning: %s\n", line);
}

static atomic_flag check_warned = ATOMIC_FLAG_INIT;

/* SAFEMAP_CHECK is read at every creation (a test may change it between
 * objects); a value that is not a level is reported once per process. */
static int level_from_env(void)
{
    const char *env = getenv("SAFEMAP_CHECK");
    if (!env)
        return -1;
    size_t n = strlen(env);
    const char *v = env;
    trim(&v, &n);
    if (n == 0)
        return -1;
    int level = level_parse(v, n);
    if (level < 0 && !atomic_flag_test_and_set(&check_warned))
        env_warn("SAFEMAP_CHECK=\"%.64s\" is not off, cheap or full; ignored", env);
    return level;
}

int chk_level(int requested)
{
    switch (requested) {
    case SM_CHECK_OFF:
    case SM_CHECK_CHEAP:
    case SM_CHECK_FULL:
        return requested;
    case SM_CHECK_DEFAULT:
        break;
    default:
        return -1;
    }
    int level = level_from_env();
    if (level >= 0)
        return level;
    int debug = chk_debug_get()->check;
    return debug != SM_CHECK_DEFAULT ? debug : SM_CHECK_CHEAP;
}

static chk_debug debug_opts = {0, SM_CHECK_DEFAULT, CHK_SAMPLE_DEFAULT};
static pthread_once_t debug_once = PTHREAD_ONCE_INIT;

/* One "name=value" item (names case-insensitive too); anything not
 * understood is reported and leaves the setting at its default. */
static void debug_item(const char *item, size_t n)
{
    const char *whole = item;
    size_t whole_n = n;
    trim(&whole, &whole_n);
    if (whole_n == 0)
        return; /* "trace=1,,sample=7" or a trailing comma */
    const char *eq = memchr(item, '=', n);
    if (!eq) {
        env_warn("SAFEMAP_DEBUG item \"%.*s\" is not name=value; ignored", (int)whole_n, whole);
        return;
    }
    const char *key = item, *v = eq + 1;
    size_t klen = (size_t)(eq - item), vlen = n - klen - 1;
    trim(&key, &klen);
    uint64_t x;
    if (word_is(key, klen, "trace")) {
        if (number_parse(v, vlen, 1, &x))
            debug_opts.trace = (int)x;
        else
            env_warn("SAFEMAP_DEBUG item \"%.*s\": trace is 0 or 1; ignored", (int)whole_n, whole);
    } else if (word_is(key, klen, "check")) {
        int level = level_parse(v, vlen);
        if (level >= 0)
            debug_opts.check = level;
        else
            env_warn("SAFEMAP_DEBUG item \"%.*s\": check is off, cheap or full; ignored",
                     (int)whole_n, whole);
    } else if (word_is(key, klen, "sample")) {
        if (number_parse(v, vlen, UINT32_MAX, &x))
            debug_opts.sample = (unsigned)x;
        else
            env_warn("SAFEMAP_DEBUG item \"%.*s\": sample is a whole number from 0 to %u; "
                     "keeping sample=%u",
                     (int)whole_n, whole, (unsigned)UINT32_MAX, (unsigned)CHK_SAMPLE_DEFAULT);
    } else {
        env_warn("SAFEMAP_DEBUG item \"%.*s\": unknown name (trace, check and sample are "
                 "known); ignored",
                 (int)whole_n, whole);
    }
}

static void debug_parse(void)
{
    const char *env = getenv("SAFEMAP_DEBUG");
    while (env && *env) {
        const char *end = strchr(env, ',');
        size_t n = end ? (size_t)(end - env) : strlen(env);
        debug_item(env, n);
        env += n + (end != NULL);
    }
}

const chk_debug *chk_debug_get(void)
{
    pthread_once(&debug_once, debug_parse);
    return &debug_opts;
}

uint64_t chk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void chk_trace(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "safemap: %s\n", line);
}

/* What to do about each event, the last line of the default report: how
 * to find the culprit, or how to fix the usual cause. */
static const char *const remedies[SM_NCODES] = {
    [-SM_ELAYOUT] = "create the map with the pool's layout: the same SM_LAYOUT(T, N) for both",
    [-SM_EDOUBLE] = "an array was Put twice, or Put after being handed on; run with "
                    "SAFEMAP_CHECK=full to record Get/Put call sites (at cheap, "
                    "SAFEMAP_DEBUG=sample=1 records every one), and link with -rdynamic for "
                    "function names",
    [-SM_EFOREIGN] = "give sm_pool_put only what this pool's sm_pool_get returned, at its "
                     "start; run with SAFEMAP_CHECK=full to record Get/Put call sites, and "
                     "link with -rdynamic for function names",
    [-SM_ECORRUPT] = "memory was written after it was given back (a pointer kept too long); "
                     "build the library and program with -DSM_ASAN=ON (AddressSanitizer) to "
                     "stop at the faulting write, or run under valgrind; SAFEMAP_CHECK=full "
                     "records the Get/Put call sites; link with -rdynamic for function names",
    [-SM_ESTALE] = "while iterating, delete only the entry just returned; for any other "
                   "change, finish or restart the iteration; a handle resolves only until "
                   "its array is Put",
    [-SM_EBUSY] = "two threads used one map at once with at least one writing: guard it "
                  "with a lock, or give each thread its own map",
};

const char *chk_remedy(int code)
{
    const char *remedy = code < 0 && -code < SM_NCODES ? remedies[-code] : NULL;
    return remedy ? remedy : "see docs/safety.md";
}

static void default_handler(const sm_event *ev, void *ctx)
{
    (void)ctx;
    fprintf(stderr,
            "safemap: %s\n"
            "  in:     %s\n"
            "  object: %p\n"
            "  ptr:    %p\n"
            "  detail: %s\n"
            "  remedy: %s; sm_set_handler() installs a handler that returns the error "
            "instead of aborting\n",
            sm_strerror(ev->code), ev->what, ev->object, ev->ptr, ev->detail, chk_remedy(ev->code));
    fflush(stderr);
    abort();
}

/* The longest event detail kept (longer ones are cut). */
#define CHK_DETAIL_MAX 512

static sm_handler handler = default_handler;
static _Atomic uint64_t misuse_counts[SM_NCODES];
static void *handler_ctx;

void sm_set_handler(sm_handler h, void *ctx)
{
    handler = h ? h : default_handler;
    handler_ctx = h ? ctx : NULL;
}

/* Counts, formats once, hands to the handler: every event goes this way. */
static int raise_v(int code, _Atomic uint64_t *object_counts, const char *what, const void *object,
                   const void *ptr, const char *fmt, va_list ap)
{
    char detail[CHK_DETAIL_MAX];
    vsnprintf(detail, sizeof detail, fmt, ap);
    if (code < 0 && -code < SM_NCODES) {
        atomic_fetch_add_explicit(&misuse_counts[-code], 1, memory_order_relaxed);
        if (object_counts)
            atomic_fetch_add_explicit(&object_counts[-code], 1, memory_order_relaxed);
    }
    sm_event ev = {code, what, object, ptr, detail};
    handler(&ev, handler_ctx);
    return code;
}

int chk_event(int code, _Atomic uint64_t *object_counts, const char *what, const void *object,
              const void *ptr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    raise_v(code, object_counts, what, object, ptr, fmt, ap);
    va_end(ap);
    return code;
}

int chk_raise(int code, const char *what, const void *object, const void *ptr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    raise_v(code, NULL, what, object, ptr, fmt, ap);
    va_end(ap);
    return code;
}

void chk_assert_fail(const char *cond, const char *file, int line, const char *func)
{
    fprintf(stderr, "safemap: internal assertion failed: %s\n  at %s:%d in %s\n", cond, file, line,
            func);
    fflush(stderr);
    abort();
}

void chk_misuse_counts(uint64_t out[SM_NCODES])
{
    for (int i = 0; i < SM_NCODES; i++)
        out[i] = atomic_load_explicit(&misuse_counts[i], memory_order_relaxed);
}

static bool is_pow2(size_t x)
{
    return x && (x & (x - 1)) == 0;
}

int chk_layout_check(const sm_layout *l, const char *what, const char *field)
{
    if (!field)
        field = "layout";
    if (!l)
        return chk_einval(what, "%s is NULL", field);
    if (l->elem_size == 0)
        return chk_einval(what, "%s.elem_size is 0", field);
    if (l->len == 0)
        return chk_einval(what, "%s.len is 0", field);
    if (!is_pow2(l->elem_align))
        return chk_einval(what, "%s.elem_align is %zu, not a power of two", field, l->elem_align);
    if (l->elem_align > CHK_MAX_ALIGN)
        return chk_einval(what, "%s.elem_align is %zu, more than %d", field, l->elem_align,
                          CHK_MAX_ALIGN);
    if (l->elem_size % l->elem_align)
        return chk_einval(what, "%s.elem_size %zu is not a multiple of elem_align %zu", field,
                          l->elem_size, l->elem_align);
    if (l->len > SM_MAX_ARRAY_BYTES / l->elem_size)
        return chk_einval(what, "%s is %zu x %zu B, more than SM_MAX_ARRAY_BYTES (%zu)", field,
                          l->len, l->elem_size, (size_t)SM_MAX_ARRAY_BYTES);
    return 0;
}

int chk_layout_valid(const sm_layout *l)
{
    return chk_layout_check(l, "sm_layout", NULL);
}

bool chk_layout_equal(const sm_layout *a, const sm_layout *b)
{
    return a->elem_size == b->elem_size && a->elem_align == b->elem_align && a->len == b->len;
}

void chk_layout_format(char *buf, size_t n, const sm_layout *l)
{
    snprintf(buf, n, "%s (%zu x %zu B, align %zu)", l->name ? l->name : "?", l->len, l->elem_size,
             l->elem_align);
}

void chk_poison(void *p, size_t n)
{
    /* The range may already be marked (a retired segment's vacated slots):
     * lift the marks so that the fill itself is not reported. */
#if SM_HAVE_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#if SM_HAVE_VALGRIND
    VALGRIND_MAKE_MEM_UNDEFINED(p, n);
#endif
    memset(p, CHK_POISON_BYTE, n);
#if SM_HAVE_ASAN
    ASAN_POISON_MEMORY_REGION(p, n);
#endif
#if SM_HAVE_VALGRIND
    VALGRIND_MAKE_MEM_NOACCESS(p, n);
#endif
}

void chk_unpoison(void *p, size_t n)
{
#if SM_HAVE_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#if SM_HAVE_VALGRIND
    VALGRIND_MAKE_MEM_DEFINED(p, n);
#endif
    (void)p;
    (void)n;
}

bool chk_poison_intact(const void *p, size_t n)
{
    void *q = (void *)(uintptr_t)p;
    chk_unpoison(q, n);
    const unsigned char *b = p;
    bool intact = true;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != CHK_POISON_BYTE) {
            intact = false;
            break;
        }
    }
#if SM_HAVE_ASAN
    ASAN_POISON_MEMORY_REGION(q, n);
#endif
#if SM_HAVE_VALGRIND
    VALGRIND_MAKE_MEM_NOACCESS(q, n);
#endif
    return intact;
}
