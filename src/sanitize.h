/*
 * sanitize.h - which checking tool the library is built for, decided once.
 *
 * GCC says __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__; clang answers
 * __has_feature(address_sanitizer / thread_sanitizer).  Every source file
 * that behaves differently under a tool includes this header instead of
 * repeating the tests, and reads three flags, each 0 or 1:
 *
 *   SM_HAVE_ASAN      AddressSanitizer: poisoned memory is also marked for it
 *   SM_HAVE_TSAN      ThreadSanitizer: it does not model membarrier(2), so the
 *                     pool's fast paths take real fences instead
 *   SM_HAVE_VALGRIND  <valgrind/memcheck.h> is available: client requests
 *                     mark poisoned memory for memcheck (free when not under
 *                     valgrind)
 */
#ifndef SM_SANITIZE_H
#define SM_SANITIZE_H

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SM_HAVE_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define SM_HAVE_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(SM_HAVE_ASAN)
#define SM_HAVE_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(SM_HAVE_TSAN)
#define SM_HAVE_TSAN 1
#endif
#ifndef SM_HAVE_ASAN
#define SM_HAVE_ASAN 0
#endif
#ifndef SM_HAVE_TSAN
#define SM_HAVE_TSAN 0
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SM_HAVE_VALGRIND 1
#endif
#endif
#ifndef SM_HAVE_VALGRIND
#define SM_HAVE_VALGRIND 0
#endif

#if SM_HAVE_ASAN
#include <sanitizer/asan_interface.h>
#endif

#endif /* SM_SANITIZE_H */
