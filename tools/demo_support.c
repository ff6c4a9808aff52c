/*
 * demo_support.c - the plumbing behind `safemap demo`.
 *
 * The demo must show each bug doing its damage and then being caught, in
 * one process that keeps going, without itself doing anything undefined.
 * Three pieces make that possible:
 *
 *   - A misuse handler that prints the report the default handler would
 *     print and then returns instead of aborting.  By the library's
 *     contract the call then returns the code having changed nothing, so the
 *     demo can go on to the next bug.
 *   - An allocator that never really frees while the demo looks at stale
 *     pointers.  "Without checks" the demo reads and writes through a
 *     pointer into memory the map has retired; with the default allocator
 *     that memory could be back in malloc, and touching it would be the very
 *     use-after-free being shown.  With this allocator it stays the demo's,
 *     so the damage is real but the demo is well defined (and clean under
 *     valgrind and ASan).
 *   - Child processes with captured output: AddressSanitizer ends the
 *     process that makes a bad access, so that run happens in a fork and the
 *     parent prints ASan's report; the compile-time demo runs the system C
 *     compiler the same way.
 */
#include "demo.h"

#include "../src/internal.h" /* chk_remedy: the report's last line */

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- The misuse handler --------------------------------------------------- */

static int event_counts[SM_NCODES];

static void demo_handler(const sm_event *ev, void *ctx)
{
    (void)ctx;
    if (ev->code < 0 && -ev->code < SM_NCODES)
        event_counts[-ev->code]++;
    /* The default handler's report, word for word (less its note on
     * sm_set_handler, which this handler is), then a return. */
    printf("    safemap: %s\n"
           "      in:     %s\n"
           "      object: %p\n"
           "      ptr:    %p\n"
           "      detail: %s\n"
           "      remedy: %s\n",
           sm_strerror(ev->code), ev->what, ev->object, ev->ptr, ev->detail, chk_remedy(ev->code));
    fflush(stdout);
}

void demo_handler_install(void)
{
    sm_set_handler(demo_handler, NULL);
}

void demo_handler_remove(void)
{
    sm_set_handler(NULL, NULL);
}

int demo_events(int code)
{
    return code < 0 && -code < SM_NCODES ? event_counts[-code] : 0;
}

void demo_events_clear(void)
{
    memset(event_counts, 0, sizeof event_counts);
}

/* ---- An allocator that keeps what it is given back -------------------------- */

static void **kept;
static size_t kept_len, kept_cap;

static void *keep_alloc(size_t size, size_t align, void *ctx)
{
    (void)ctx;
    if (align < sizeof(void *))
        align = sizeof(void *);
    void *p = NULL;
    return posix_memalign(&p, align, size ? size : 1) == 0 ? p : NULL;
}

static void keep_free(void *p, size_t size, void *ctx)
{
    (void)size;
    (void)ctx;
    if (kept_len == kept_cap) {
        size_t cap = kept_cap ? 2 * kept_cap : 64;
        void **grown = realloc(kept, cap * sizeof *grown);
        if (!grown) {
            free(p); /* cannot keep it: give it back for real */
            return;
        }
        kept = grown;
        kept_cap = cap;
    }
    kept[kept_len++] = p;
}

void demo_keep_freed_begin(void)
{
    sm_allocator a = {keep_alloc, keep_free, NULL};
    sm_set_allocator(&a);
}

void demo_keep_freed_end(void)
{
    sm_set_allocator(NULL);
    for (size_t i = 0; i < kept_len; i++)
        free(kept[i]);
    free(kept);
    kept = NULL;
    kept_len = kept_cap = 0;
}

/* ---- A write ASan does not see -------------------------------------------- */

#if DEMO_ASAN
#define DEMO_NO_ASAN __attribute__((no_sanitize_address, noinline))
#elif defined(__GNUC__)
#define DEMO_NO_ASAN __attribute__((noinline))
#else
#define DEMO_NO_ASAN
#endif

DEMO_NO_ASAN void demo_write_unchecked(volatile int64_t *p, int64_t v)
{
    *p = v;
}

/* ---- Child processes ------------------------------------------------------ */

/* Reads fd to its end into a malloc'd string. */
static char *read_all(int fd)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (len + 1 == cap) {
            char *grown = realloc(buf, 2 * cap);
            if (!grown)
                break;
            buf = grown;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = 0;
    return buf;
}

/* Forks; the child gets the pipe as stdout and stderr and runs fn(ctx) (or
 * execs argv in dir when fn is NULL); the parent collects its output. */
static int run_captured(void (*fn)(void *ctx), void *ctx, char *const argv[], const char *dir,
                        char **out, int *status)
{
    int fds[2];
    fflush(stdout);
    fflush(stderr);
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        if (fn) {
            fn(ctx);
            fflush(stdout);
            _exit(0);
        }
        if (dir && chdir(dir) != 0)
            _exit(126);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    *out = read_all(fds[0]);
    close(fds[0]);
    while (waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
    if (!*out)
        return -1;
    return 0;
}

int demo_run_child(void (*fn)(void *ctx), void *ctx, char **out, int *status)
{
    return run_captured(fn, ctx, NULL, NULL, out, status);
}

int demo_run_command(char *const argv[], const char *dir, char **out, int *status)
{
    return run_captured(NULL, NULL, argv, dir, out, status);
}

void demo_print_indented(const char *indent, const char *text, int max_lines)
{
    int lines = 0;
    while (*text) {
        const char *end = strchr(text, '\n');
        size_t n = end ? (size_t)(end - text) : strlen(text);
        if (max_lines && lines == max_lines) {
            printf("%s...\n", indent);
            return;
        }
        size_t trimmed = strlen(indent);
        while (trimmed && indent[trimmed - 1] == ' ')
            trimmed--;
        if (n == 0) /* no trailing blanks on an empty line */
            printf("%.*s\n", (int)trimmed, indent);
        else
            printf("%s%.*s\n", indent, (int)n, text);
        lines++;
        text += n + (end != NULL);
    }
}

/* ---- Where safemap.h is --------------------------------------------------- */

static bool has_header(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    int n = snprintf(path, sizeof path, "%s/safemap.h", dir);
    return n > 0 && (size_t)n < sizeof path && stat(path, &st) == 0;
}

const char *demo_include_dir(char *buf, size_t n)
{
    const char *env = getenv("SAFEMAP_INCLUDE_DIR");
    if (env && *env && has_header(env)) {
        snprintf(buf, n, "%s", env);
        return buf;
    }
    /* Installed: <prefix>/bin/safemap next to <prefix>/include/safemap.h. */
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, n, "%s/../include", exe);
            if (has_header(buf))
                return buf;
        }
    }
#ifdef SM_TOOL_SOURCE_INCLUDE
    if (has_header(SM_TOOL_SOURCE_INCLUDE)) {
        snprintf(buf, n, "%s", SM_TOOL_SOURCE_INCLUDE);
        return buf;
    }
#endif
#ifdef SM_TOOL_INSTALL_INCLUDE
    if (has_header(SM_TOOL_INSTALL_INCLUDE)) {
        snprintf(buf, n, "%s", SM_TOOL_INSTALL_INCLUDE);
        return buf;
    }
#endif
    return NULL;
}
