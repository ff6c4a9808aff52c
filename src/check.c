/*
 * check.c - check levels, misuse events, and poison.
 *
 * Misuse is reported in one place.  chk_raise() formats the event and hands
 * it to the installed handler; the default handler prints a report that
 * names the call, the object and the detail (layouts, keys, call sites) and
 * aborts, as Go's runtime does for "concurrent map writes".  A custom handler
 * may return: every caller of chk_raise() has changed nothing yet, so the
 * public call can return the code with state intact.
 *
 * SAFEMAP_DEBUG is read once, on first use, like GODEBUG: see chk_debug in
 * internal.h for its items.
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
#include <time.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SM_HAVE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SM_HAVE_ASAN 1
#endif
#ifdef SM_HAVE_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SM_HAVE_VALGRIND 1
#endif
#endif

const char *sm_version(void)
{
    return SAFEMAP_VERSION_STRING;
}

const char *sm_strerror(int code)
{
    switch (code) {
    case SM_OK:
        return "SM_OK: success";
    case SM_ENOENT:
        return "SM_ENOENT: key absent";
    case SM_ENOMEM:
        return "SM_ENOMEM: out of memory";
    case SM_EINVAL:
        return "SM_EINVAL: bad argument";
    case SM_ELAYOUT:
        return "SM_ELAYOUT: two layouts that must match differ";
    case SM_EDOUBLE:
        return "SM_EDOUBLE: array put back twice";
    case SM_EFOREIGN:
        return "SM_EFOREIGN: pointer is not an array of this pool";
    case SM_ECORRUPT:
        return "SM_ECORRUPT: poison overwritten, or an invariant broken";
    case SM_ESTALE:
        return "SM_ESTALE: iterator or handle used after the thing changed";
    case SM_EBUSY:
        return "SM_EBUSY: unsynchronised concurrent mutation detected";
    case SM_EIO:
        return "SM_EIO: a write to a file or stream failed";
    default:
        return "unknown error";
    }
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
    const char *env = getenv("SAFEMAP_CHECK");
    if (env && strcmp(env, "off") == 0)
        return SM_CHECK_OFF;
    if (env && strcmp(env, "full") == 0)
        return SM_CHECK_FULL;
    if (env && strcmp(env, "cheap") == 0)
        return SM_CHECK_CHEAP;
    int debug = chk_debug_get()->check;
    return debug != SM_CHECK_DEFAULT ? debug : SM_CHECK_CHEAP;
}

/* ---- SAFEMAP_DEBUG ---------------------------------------------------- */

static chk_debug debug_opts = {0, SM_CHECK_DEFAULT, CHK_SAMPLE_DEFAULT};
static pthread_once_t debug_once = PTHREAD_ONCE_INIT;

static int level_named(const char *v, size_t n)
{
    if (n == 3 && strncmp(v, "off", 3) == 0)
        return SM_CHECK_OFF;
    if (n == 5 && strncmp(v, "cheap", 5) == 0)
        return SM_CHECK_CHEAP;
    if (n == 4 && strncmp(v, "full", 4) == 0)
        return SM_CHECK_FULL;
    return SM_CHECK_DEFAULT;
}

/* One "name=value" item; unknown names are ignored, as GODEBUG does. */
static void debug_item(const char *item, size_t n)
{
    const char *eq = memchr(item, '=', n);
    if (!eq)
        return;
    size_t klen = (size_t)(eq - item), vlen = n - klen - 1;
    const char *v = eq + 1;
    char num[24];
    size_t m = vlen < sizeof num - 1 ? vlen : sizeof num - 1;
    memcpy(num, v, m);
    num[m] = 0;
    if (klen == 5 && strncmp(item, "trace", 5) == 0)
        debug_opts.trace = atoi(num) != 0;
    else if (klen == 5 && strncmp(item, "check", 5) == 0)
        debug_opts.check = level_named(v, vlen);
    else if (klen == 6 && strncmp(item, "sample", 6) == 0)
        debug_opts.sample = (unsigned)strtoul(num, NULL, 10);
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

static void default_handler(const sm_event *ev, void *ctx)
{
    (void)ctx;
    fprintf(stderr,
            "safemap: %s\n"
            "  in:     %s\n"
            "  object: %p\n"
            "  ptr:    %p\n"
            "  detail: %s\n",
            sm_strerror(ev->code), ev->what, ev->object, ev->ptr, ev->detail);
    fflush(stderr);
    abort();
}

static sm_handler handler = default_handler;
static _Atomic uint64_t misuse_counts[SM_NCODES];
static void *handler_ctx;

void sm_set_handler(sm_handler h, void *ctx)
{
    handler = h ? h : default_handler;
    handler_ctx = h ? ctx : NULL;
}

int chk_raise(int code, const char *what, const void *object, const void *ptr, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (code < 0 && -code < SM_NCODES)
        atomic_fetch_add_explicit(&misuse_counts[-code], 1, memory_order_relaxed);
    sm_event ev = {code, what, object, ptr, detail};
    handler(&ev, handler_ctx);
    return code;
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
        return chk_einval(what, "%s.elem_align is %zu, not a power of two", field,
                          l->elem_align);
    if (l->elem_align > 64)
        return chk_einval(what, "%s.elem_align is %zu, more than 64", field, l->elem_align);
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
#ifdef SM_HAVE_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#ifdef SM_HAVE_VALGRIND
    VALGRIND_MAKE_MEM_UNDEFINED(p, n);
#endif
    memset(p, CHK_POISON_BYTE, n);
#ifdef SM_HAVE_ASAN
    ASAN_POISON_MEMORY_REGION(p, n);
#endif
#ifdef SM_HAVE_VALGRIND
    VALGRIND_MAKE_MEM_NOACCESS(p, n);
#endif
}

void chk_unpoison(void *p, size_t n)
{
#ifdef SM_HAVE_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#ifdef SM_HAVE_VALGRIND
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
#ifdef SM_HAVE_ASAN
    ASAN_POISON_MEMORY_REGION(q, n);
#endif
#ifdef SM_HAVE_VALGRIND
    VALGRIND_MAKE_MEM_NOACCESS(q, n);
#endif
    return intact;
}
