/*
 * demo.h - what the `safemap` tool's files share.
 *
 *   safemap.c        main: subcommands, help, and the workload behind
 *                    `stats`, `metrics`, `profile` and `report`
 *   cost.c           `safemap cost`: each check level's cost, measured
 *   demo_bugs.c      `safemap demo`: four classic bugs, each shown doing
 *                    its damage without checks and then caught
 *   demo_support.c   the demo's plumbing: a misuse handler that prints the
 *                    report and returns, child processes whose output is
 *                    captured (AddressSanitizer runs, the compiler), an
 *                    allocator that keeps freed memory readable
 */
#ifndef SM_TOOL_DEMO_H
#define SM_TOOL_DEMO_H

#include "safemap.h"

#include <stdbool.h>
#include <stddef.h>

/* Whether this program was built with AddressSanitizer (clang spells it
 * __has_feature, gcc __SANITIZE_ADDRESS__). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DEMO_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(DEMO_ASAN)
#define DEMO_ASAN 1
#endif
#ifndef DEMO_ASAN
#define DEMO_ASAN 0
#endif

/* `safemap demo [N]`: runs every bug, or bug N.  Returns the exit status:
 * 0 when each bug was caught as expected. */
int demo_main(int argc, char **argv);

/* `safemap cost [--quick]`: prints a table of ns per map and pool operation
 * at each check level.  Returns the exit status. */
int cost_main(int argc, char **argv);

/* ---- demo_support.c ------------------------------------------------------ */

/* The misuse handler the demo installs: prints the event as the default
 * handler does (indented), counts it, and returns, so the call returns the
 * code and the demo goes on. */
void demo_handler_install(void);
void demo_handler_remove(void);
/* Events seen with this code since the last demo_events_clear(). */
int demo_events(int code);
void demo_events_clear(void);

/* An allocator for the library that keeps every block it is given back
 * (until demo_keep_freed_end()), so that the demo can read through a
 * pointer the library has retired without touching freed memory.  Only
 * while the library holds no memory (see sm_set_allocator). */
void demo_keep_freed_begin(void);
void demo_keep_freed_end(void);

/* Writes v through p from code that AddressSanitizer does not instrument,
 * as a library built without ASan would: the write reaches memory that ASan
 * knows is poisoned, and only safemap's own poison check can see it. */
void demo_write_unchecked(volatile int64_t *p, int64_t v);

/* Runs fn(ctx) in a forked child whose stdout and stderr are captured.
 * Returns 0 and sets *out (a NUL-terminated malloc'd string; the caller
 * frees it) and *status (as from waitpid), or -1 when fork or pipe fail. */
int demo_run_child(void (*fn)(void *ctx), void *ctx, char **out, int *status);

/* Runs argv (argv[0] looked up in PATH) in directory dir, capturing its
 * output like demo_run_child.  *status is 127 << 8 when it cannot be
 * executed. */
int demo_run_command(char *const argv[], const char *dir, char **out, int *status);

/* Prints text with each line prefixed by indent; at most max_lines lines
 * (0: all), then "..." when some were left out. */
void demo_print_indented(const char *indent, const char *text, int max_lines);

/* The directory holding safemap.h for the compile demo: $SAFEMAP_INCLUDE_DIR,
 * the installed tree next to this program (bin/../include), or the source
 * tree it was built from.  NULL when none has the header.  buf holds it. */
const char *demo_include_dir(char *buf, size_t n);

#endif /* SM_TOOL_DEMO_H */
