/*
 * safemap/typed.h - the typed front-end over safemap.h.  Included by
 * safemap.h; docs/typed.md has a walk-through.
 *
 * The untyped API passes arrays as void * and checks their layout at run
 * time.  The typed front-end puts the array type into every signature: a
 * map of double[8] takes and returns double (*)[8], so the compiler rejects
 * a double (*)[9] before the program runs.  Each macro below is used once at
 * file scope, ending with a semicolon, and defines a handle type and static
 * inline functions that compile to the untyped calls they wrap (no cost).
 * A `name *` is an `sm_map *` (or `sm_pool *`, `sm_cmap *`) underneath, so
 * the untyped functions accept it through a cast.
 *
 * ---- SM_TYPED_MAP(name, T, N): a map from int64_t to T[N] ----------------
 *
 * Types:
 *   name           the map (incomplete; used as name *)
 *   name_value     T[N], the value type
 *   name_iter      an iterator (a wrapped sm_iter)
 *   name_opts      creation options, all fields optional (zero = default):
 *                    T (*pool)[][N]     NULL: SM_INLINE storage; else values
 *                                       live in this typed pool (SM_POOLED),
 *                                       from pool_storage() of a pool made by
 *                                       SM_TYPED_POOL(pool, T, N)
 *                    int check          SM_CHECK_*
 *                    size_t capacity    entries to make room for
 *                    const char *name   for reports and metrics (copied)
 *                    int fixed_seed; uint64_t seed   reproducible hashing
 *
 * Functions, each as the sm_map_* call it wraps (safemap.h documents cost,
 * errors and what a failure leaves unchanged):
 *   int    name_new(name **out)                      sm_map_new, defaults
 *   int    name_new_opts(name **out, const name_opts *o)   sm_map_new
 *   void   name_free(name *m)                        sm_map_free
 *   int    name_put(name *m, int64_t key, const T (*value)[N])   sm_map_put
 *   int    name_get(const name *m, int64_t key, T (*out)[N])     sm_map_get
 *   T    (*name_find(name *m, int64_t key))[N]       sm_map_find
 *   T    (*name_upsert(name *m, int64_t key, int *inserted))[N]  sm_map_upsert
 *   int    name_del(name *m, int64_t key)            sm_map_del
 *   size_t name_len(const name *m)                   sm_map_len
 *   void   name_clear(name *m)                       sm_map_clear
 *   int    name_reserve(name *m, size_t n)           sm_map_reserve
 *   int    name_stats(const name *m, struct sm_map_stats *out)   sm_map_stats
 *   int    name_verify(const name *m)                sm_map_verify
 *   name_iter name_iterate(name *m)                  sm_map_iter
 *   int    name_next(name_iter *it, int64_t *key, T (**value)[N])  sm_iter_next:
 *          1 and the next entry (key or value may be NULL), 0 at the end,
 *          SM_ESTALE after a forbidden mutation
 *   int    name_each(name *m, int (*fn)(int64_t key, T (*value)[N], void *ctx),
 *                   void *ctx)                         sm_map_each: the fastest
 *          walk of a whole map; fn must not put or delete
 *
 *   SM_FOREACH(name, m, key, value) { ... }
 *          runs the block once per entry with `int64_t key` and
 *          `name_value *value` declared in it; break and continue work.
 *          Deleting the entry just visited is allowed (as for sm_iter_next);
 *          the loop ends early on SM_ESTALE, after the event is raised.
 *
 * ---- SM_TYPED_POOL(name, T, N): a pool of T[N] arrays --------------------
 *
 * Types:
 *   name           the pool (incomplete; used as name *)
 *   name_value     T[N]
 *   name_hooks     typed hooks: void (*on_new)(T (*array)[N], void *ctx),
 *                  on_get and on_put alike, and void *ctx passed to each.
 *                  The pool keeps a pointer to it: it must outlive the pool
 *                  (a static const object is the usual choice)
 *   name_opts      creation options, all fields optional (zero = default):
 *                    int check; unsigned flags (SM_ZERO_ON_GET, SM_ZERO_ON_PUT);
 *                    const name_hooks *hooks; size_t max_idle_bytes;
 *                    const char *name
 *
 * Functions, each as the sm_pool_* call it wraps:
 *   int    name_new(name **out)                      sm_pool_new, defaults
 *   int    name_new_opts(name **out, const name_opts *o)   sm_pool_new
 *   int    name_close(name *p)                       sm_pool_close: SM_EBUSY,
 *          freeing nothing, while a pooled map still draws on the pool
 *   void   name_free(name *p)                        sm_pool_free
 *   T    (*name_get(name *p))[N]                     sm_pool_get
 *   int    name_put(name *p, T (*array)[N])          sm_pool_put
 *   void   name_cycle(name *p)                       sm_pool_cycle
 *   int    name_stats(name *p, struct sm_pool_stats *out)   sm_pool_stats
 *   int    name_report(name *p, FILE *out)           sm_pool_report
 *   sm_handle name_handle(name *p, T (*array)[N])    sm_pool_handle
 *   T    (*name_resolve(name *p, sm_handle h))[N]    sm_pool_resolve
 *   T    (*name_storage(name *p))[][N]               the pool as name_opts.pool
 *          of a typed map of T[N]: a map's values come from a pool of the
 *          same T and N, or the program does not compile
 *
 * ---- SM_TYPED_CMAP(name, T, N): a concurrent map from int64_t to T[N] -----
 *
 * Types:
 *   name           the map (incomplete; a name * is an sm_cmap *)
 *   name_value     T[N]
 *   name_opts      creation options, all fields optional (zero = default):
 *                    T (*pool)[][N]   NULL: SM_INLINE; else SM_POOLED over
 *                                     this typed pool (pool_storage()), and
 *                                     find gives snapshots in read sections
 *                    int check; size_t capacity; const char *name;
 *                    int fixed_seed; uint64_t seed
 *
 * Functions, each as the sm_cmap_* call it wraps; any thread may call any
 * of them at any time, except name_free:
 *   int    name_new(name **out)                      sm_cmap_new, defaults
 *   int    name_new_opts(name **out, const name_opts *o)   sm_cmap_new
 *   void   name_free(name *cm)                       sm_cmap_free
 *   int    name_put(name *cm, int64_t key, const T (*value)[N])  sm_cmap_put
 *   int    name_get(name *cm, int64_t key, T (*out)[N])          sm_cmap_get
 *   int    name_del(name *cm, int64_t key)           sm_cmap_del
 *   int    name_update(name *cm, int64_t key,        sm_cmap_update, with fn
 *                      void (*fn)(T (*value)[N], int inserted, void *ctx),
 *                      void *ctx)                    called through a typed
 *                                                    shim (one extra call)
 *   size_t name_len(name *cm)                        sm_cmap_len
 *   int    name_read_begin(name *cm)                 sm_cmap_read_begin
 *   void   name_read_end(name *cm)                   sm_cmap_read_end
 *   const T (*name_find(name *cm, int64_t key))[N]   sm_cmap_find
 *   int    name_each(name *cm,                       sm_cmap_each, fn through
 *                    int (*fn)(int64_t key, const T (*value)[N], void *ctx),
 *                    void *ctx)                      a typed shim
 *   int    name_stats(name *cm, struct sm_cmap_stats *out)   sm_cmap_stats
 *   int    name_verify(name *cm)                     sm_cmap_verify
 *
 * ---- What the compiler checks ----------------------------------------------
 *
 * In C, passing a pointer to an array of another length (or element type)
 * is a constraint violation that compilers report only as a warning unless
 * told otherwise.  Each SM_TYPED_* macro therefore turns
 * -Wincompatible-pointer-types into an error (gcc and clang, by pragma) for
 * the rest of the translation unit: a wrong-length argument to put, get,
 * next, handle or pool put, a wrong-length pointer receiving find, upsert,
 * resolve or pool get, a hook or a cmap callback of the wrong type and a
 * pool of the wrong type all stop the build, with no flag needed.
 * (Per-name macros that _Generic their arguments cannot exist: a macro
 * cannot define a macro.)
 * In C++ these are type errors already.
 *
 * A row to put may be const or not.  ISO C before C23 has no implicit
 * conversion between a pointer to an array of T and one to an array of
 * const T, in either direction, so with gcc in C11 or C17 mode put takes
 * T (*)[N] and the SM_TYPED_* macros silence -Wdiscarded-array-qualifiers
 * (the note a const row would draw; put only reads it).  That also lets
 * other const-dropping conversions between pointers to arrays pass unnoted
 * in the rest of that file, such as a typed cmap's const find result
 * assigned to a non-const pointer; clang, C23 and C++ still reject those.
 * Under -Wpedantic, gcc before C23 still notes a const row passed to put;
 * clang, C23 and C++ take both without a word.
 *
 * Every function is static inline and marked unused, so a program that
 * uses a few of them compiles without warnings under -Wall -Wextra
 * -Wpedantic (tested with gcc and clang, C11 and C++17).
 */
#ifndef SAFEMAP_TYPED_H
#define SAFEMAP_TYPED_H

/* Conversions, written once for C and C++ (C++ users often build with
 * -Wold-style-cast; C users with -Wcast-qual).  A typed handle is the
 * untyped object: HANDLE_ and CHANDLE_ convert name * to sm_map * and the
 * like; CAST_ and CONST_CAST_ turn the library's void * into T (*)[N]. */
#ifdef __cplusplus
#define SM_TYPED_HANDLE_(type, p) (reinterpret_cast<type *>(p))
#define SM_TYPED_CHANDLE_(type, p) (reinterpret_cast<const type *>(p))
#define SM_TYPED_FROM_VOID_(type, p) (static_cast<type>(p))
#define SM_TYPED_UNCONST_(type, p) (const_cast<type *>(p))
#define SM_TYPED_CAST_(P, T, N) (static_cast<T(*)[N]>(P))
#define SM_TYPED_CONST_CAST_(P, T, N) (static_cast<const T(*)[N]>(P))
#define SM_TYPED_STORAGE_CAST_(P, T, N) (reinterpret_cast<T(*)[][N]>(P))
#define SM_TYPED_NULL_ nullptr
/* Options structs start zeroed, then have their layout set. */
#define SM_TYPED_OPTS_(type, var, T, N)                                                            \
    type var{};                                                                                    \
    var.layout = SM_LAYOUT(T, N)
#else
#define SM_TYPED_HANDLE_(type, p) ((type *)(void *)(p))
#define SM_TYPED_CHANDLE_(type, p) ((const type *)(const void *)(p))
#define SM_TYPED_FROM_VOID_(type, p) ((type)(p))
#define SM_TYPED_UNCONST_(type, p) ((type *)(uintptr_t)(p))
#define SM_TYPED_CAST_(P, T, N) ((T(*)[N])(P))
/* Before C23 an array of const T is not a const-qualified type, so any cast
 * from const void * "discards const"; an integer in between does not. */
#define SM_TYPED_CONST_CAST_(P, T, N) ((const T(*)[N])(uintptr_t)(P))
#define SM_TYPED_STORAGE_CAST_(P, T, N) ((T(*)[][N])(void *)(P))
#define SM_TYPED_NULL_ NULL
#define SM_TYPED_OPTS_(type, var, T, N) type var = {.layout = SM_LAYOUT(T, N)}
#endif

#if defined(__GNUC__)
#define SM_TYPED_FN_ __attribute__((unused)) static inline
#else
#define SM_TYPED_FN_ static inline
#endif

/* SM_TYPED_IN_: the qualifier of put's row (see "What the compiler checks"). */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__cplusplus) &&                           \
    (!defined(__STDC_VERSION__) || __STDC_VERSION__ <= 201710L)
#define SM_TYPED_IN_
#define SM_TYPED_STRICT_                                                                           \
    _Pragma("GCC diagnostic error \"-Wincompatible-pointer-types\"")                               \
        _Pragma("GCC diagnostic ignored \"-Wdiscarded-array-qualifiers\"")
#elif defined(__GNUC__) && !defined(__cplusplus)
#define SM_TYPED_IN_ const
#define SM_TYPED_STRICT_ _Pragma("GCC diagnostic error \"-Wincompatible-pointer-types\"")
#else
#define SM_TYPED_IN_ const
#define SM_TYPED_STRICT_
#endif

/* The options of a typed map and a typed cmap (name_opts), and their copy
 * into the sm_map_opts o: the same for both, so written once. */
#define SM_TYPED_MAP_OPTS_FIELDS_(T, N)                                                            \
    T(*pool)[][N];                                                                                 \
    int check;                                                                                     \
    size_t capacity;                                                                               \
    const char *name;                                                                              \
    int fixed_seed;                                                                                \
    uint64_t seed;
#define SM_TYPED_MAP_OPTS_COPY_(o, to)                                                             \
    do {                                                                                           \
        (o).storage = (to)->pool ? SM_POOLED : SM_INLINE;                                          \
        (o).pool = SM_TYPED_HANDLE_(sm_pool, (to)->pool);                                          \
        (o).check = (to)->check;                                                                   \
        (o).capacity = (to)->capacity;                                                             \
        (o).name = (to)->name;                                                                     \
        (o).fixed_seed = (to)->fixed_seed;                                                         \
        (o).seed = (to)->seed;                                                                     \
    } while (0)

/* A name unique to the line, for the loop variables of SM_FOREACH. */
#define SM_TYPED_CAT2_(a, b) a##b
#define SM_TYPED_CAT_(a, b) SM_TYPED_CAT2_(a, b)
#define SM_TYPED_ID_(x) SM_TYPED_CAT_(sm_foreach_##x##_, __LINE__)

/* Three nested loops, because C declares one type per for-statement: the
 * iterator, the key, and the value.  The outer two run once; `once` is
 * cleared when the innermost loop ends, by exhaustion or by break. */
#define SM_FOREACH(name, m, key, value)                                                            \
    for (name##_iter SM_TYPED_ID_(it) = name##_iterate(m),                                         \
                     *SM_TYPED_ID_(once) = &SM_TYPED_ID_(it);                                      \
         SM_TYPED_ID_(once); SM_TYPED_ID_(once) = SM_TYPED_NULL_)                                  \
        for (int64_t key = 0; SM_TYPED_ID_(once); SM_TYPED_ID_(once) = SM_TYPED_NULL_)             \
            for (name##_value *value = SM_TYPED_NULL_;                                             \
                 name##_next(&SM_TYPED_ID_(it), &key, &value) == 1;)

#define SM_TYPED_MAP(NAME, T, N)                                                                   \
    SM_TYPED_STRICT_                                                                               \
    typedef struct NAME NAME;                                                                      \
    typedef T NAME##_value[N];                                                                     \
    typedef struct NAME##_iter {                                                                   \
        sm_iter base_;                                                                             \
    } NAME##_iter;                                                                                 \
    typedef struct NAME##_opts {                                                                   \
        SM_TYPED_MAP_OPTS_FIELDS_(T, N)                                                            \
    } NAME##_opts;                                                                                 \
    struct NAME##_each_call_ {                                                                     \
        int (*fn)(int64_t key, T (*value)[N], void *ctx);                                          \
        void *ctx;                                                                                 \
    };                                                                                             \
    SM_TYPED_FN_ int NAME##_each_typed_(int64_t key, void *value, void *call)                      \
    {                                                                                              \
        const struct NAME##_each_call_ *c =                                                        \
            SM_TYPED_FROM_VOID_(const struct NAME##_each_call_ *, call);                           \
        return c->fn(key, SM_TYPED_CAST_(value, T, N), c->ctx);                                    \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_new(NAME **out)                                                        \
    {                                                                                              \
        SM_TYPED_OPTS_(sm_map_opts, o, T, N);                                                      \
        return sm_map_new(SM_TYPED_HANDLE_(sm_map *, out), &o);                                    \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_new_opts(NAME **out, const NAME##_opts *to)                            \
    {                                                                                              \
        if (!to)                                                                                   \
            return sm_map_new(SM_TYPED_HANDLE_(sm_map *, out), SM_TYPED_NULL_);                    \
        SM_TYPED_OPTS_(sm_map_opts, o, T, N);                                                      \
        SM_TYPED_MAP_OPTS_COPY_(o, to);                                                            \
        return sm_map_new(SM_TYPED_HANDLE_(sm_map *, out), &o);                                    \
    }                                                                                              \
    SM_TYPED_FN_ void NAME##_free(NAME *m)                                                         \
    {                                                                                              \
        sm_map_free(SM_TYPED_HANDLE_(sm_map, m));                                                  \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_put(NAME *m, int64_t key, SM_TYPED_IN_ T(*value)[N])                   \
    {                                                                                              \
        return sm_map_put(SM_TYPED_HANDLE_(sm_map, m), key, value);                                \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_get(const NAME *m, int64_t key, T(*out)[N])                            \
    {                                                                                              \
        return sm_map_get(SM_TYPED_CHANDLE_(sm_map, m), key, out);                                 \
    }                                                                                              \
    SM_TYPED_FN_ T(*NAME##_find(NAME *m, int64_t key))[N]                                          \
    {                                                                                              \
        return SM_TYPED_CAST_(sm_map_find(SM_TYPED_HANDLE_(sm_map, m), key), T, N);                \
    }                                                                                              \
    SM_TYPED_FN_ T(*NAME##_upsert(NAME *m, int64_t key, int *inserted))[N]                         \
    {                                                                                              \
        return SM_TYPED_CAST_(sm_map_upsert(SM_TYPED_HANDLE_(sm_map, m), key, inserted), T, N);    \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_del(NAME *m, int64_t key)                                              \
    {                                                                                              \
        return sm_map_del(SM_TYPED_HANDLE_(sm_map, m), key);                                       \
    }                                                                                              \
    SM_TYPED_FN_ size_t NAME##_len(const NAME *m)                                                  \
    {                                                                                              \
        return sm_map_len(SM_TYPED_CHANDLE_(sm_map, m));                                           \
    }                                                                                              \
    SM_TYPED_FN_ void NAME##_clear(NAME *m)                                                        \
    {                                                                                              \
        sm_map_clear(SM_TYPED_HANDLE_(sm_map, m));                                                 \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_reserve(NAME *m, size_t n)                                             \
    {                                                                                              \
        return sm_map_reserve(SM_TYPED_HANDLE_(sm_map, m), n);                                     \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_stats(const NAME *m, struct sm_map_stats *out)                         \
    {                                                                                              \
        return sm_map_stats(SM_TYPED_CHANDLE_(sm_map, m), out);                                    \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_verify(const NAME *m)                                                  \
    {                                                                                              \
        return sm_map_verify(SM_TYPED_CHANDLE_(sm_map, m));                                        \
    }                                                                                              \
    SM_TYPED_FN_ NAME##_iter NAME##_iterate(NAME *m)                                               \
    {                                                                                              \
        NAME##_iter it;                                                                            \
        it.base_ = sm_map_iter(SM_TYPED_HANDLE_(sm_map, m));                                       \
        return it;                                                                                 \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_next(NAME##_iter *it, int64_t *key, T(**value)[N])                     \
    {                                                                                              \
        void *v = SM_TYPED_NULL_;                                                                  \
        int rc = sm_iter_next(it ? &it->base_ : SM_TYPED_NULL_, key, value ? &v : SM_TYPED_NULL_); \
        if (rc == 1 && value)                                                                      \
            *value = SM_TYPED_CAST_(v, T, N);                                                      \
        return rc;                                                                                 \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_each(NAME *m, int (*fn)(int64_t key, T(*value)[N], void *ctx),         \
                                 void *ctx)                                                        \
    {                                                                                              \
        struct NAME##_each_call_ call = {fn, ctx};                                                 \
        return sm_map_each(SM_TYPED_HANDLE_(sm_map, m), fn ? NAME##_each_typed_ : SM_TYPED_NULL_,  \
                           &call);                                                                 \
    }                                                                                              \
    typedef int NAME##_sm_typed_map_end_

#define SM_TYPED_POOL(NAME, T, N)                                                                  \
    SM_TYPED_STRICT_                                                                               \
    typedef struct NAME NAME;                                                                      \
    typedef T NAME##_value[N];                                                                     \
    typedef struct NAME##_hooks {                                                                  \
        void (*on_new)(T(*array)[N], void *ctx);                                                   \
        void (*on_get)(T(*array)[N], void *ctx);                                                   \
        void (*on_put)(T(*array)[N], void *ctx);                                                   \
        void *ctx;                                                                                 \
    } NAME##_hooks;                                                                                \
    typedef struct NAME##_opts {                                                                   \
        int check;                                                                                 \
        unsigned flags;                                                                            \
        const NAME##_hooks *hooks;                                                                 \
        size_t max_idle_bytes;                                                                     \
        const char *name;                                                                          \
    } NAME##_opts;                                                                                 \
    /* The pool's hook_ctx is the name_hooks; these call the typed hooks. */                       \
    SM_TYPED_FN_ void NAME##_on_new_(void *array, void *hooks)                                     \
    {                                                                                              \
        const NAME##_hooks *h = SM_TYPED_FROM_VOID_(const NAME##_hooks *, hooks);                  \
        h->on_new(SM_TYPED_CAST_(array, T, N), h->ctx);                                            \
    }                                                                                              \
    SM_TYPED_FN_ void NAME##_on_get_(void *array, void *hooks)                                     \
    {                                                                                              \
        const NAME##_hooks *h = SM_TYPED_FROM_VOID_(const NAME##_hooks *, hooks);                  \
        h->on_get(SM_TYPED_CAST_(array, T, N), h->ctx);                                            \
    }                                                                                              \
    SM_TYPED_FN_ void NAME##_on_put_(void *array, void *hooks)                                     \
    {                                                                                              \
        const NAME##_hooks *h = SM_TYPED_FROM_VOID_(const NAME##_hooks *, hooks);                  \
        h->on_put(SM_TYPED_CAST_(array, T, N), h->ctx);                                            \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_new(NAME **out)                                                        \
    {                                                                                              \
        SM_TYPED_OPTS_(sm_pool_opts, o, T, N);                                                     \
        return sm_pool_new(SM_TYPED_HANDLE_(sm_pool *, out), &o);                                  \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_new_opts(NAME **out, const NAME##_opts *to)                            \
    {                                                                                              \
        if (!to)                                                                                   \
            return sm_pool_new(SM_TYPED_HANDLE_(sm_pool *, out), SM_TYPED_NULL_);                  \
        SM_TYPED_OPTS_(sm_pool_opts, o, T, N);                                                     \
        o.check = to->check;                                                                       \
        o.flags = to->flags;                                                                       \
        o.max_idle_bytes = to->max_idle_bytes;                                                     \
        o.name = to->name;                                                                         \
        if (to->hooks) {                                                                           \
            o.on_new = to->hooks->on_new ? NAME##_on_new_ : SM_TYPED_NULL_;                        \
            o.on_get = to->hooks->on_get ? NAME##_on_get_ : SM_TYPED_NULL_;                        \
            o.on_put = to->hooks->on_put ? NAME##_on_put_ : SM_TYPED_NULL_;                        \
            o.hook_ctx = SM_TYPED_UNCONST_(NAME##_hooks, to->hooks);                               \
        }                                                                                          \
        return sm_pool_new(SM_TYPED_HANDLE_(sm_pool *, out), &o);                                  \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_close(NAME *p)                                                         \
    {                                                                                              \
        return sm_pool_close(SM_TYPED_HANDLE_(sm_pool, p));                                        \
    }                                                                                              \
    SM_TYPED_FN_ void NAME##_free(NAME *p)                                                         \
    {                                                                                              \
        sm_pool_free(SM_TYPED_HANDLE_(sm_pool, p));                                                \
    }                                                                                              \
    SM_TYPED_FN_ T(*NAME##_get(NAME *p))[N]                                                        \
    {                                                                                              \
        return SM_TYPED_CAST_(sm_pool_get(SM_TYPED_HANDLE_(sm_pool, p)), T, N);                    \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_put(NAME *p, T(*array)[N])                                             \
    {                                                                                              \
        return sm_pool_put(SM_TYPED_HANDLE_(sm_pool, p), array);                                   \
    }                                                                                              \
    SM_TYPED_FN_ void NAME##_cycle(NAME *p)                                                        \
    {                                                                                              \
        sm_pool_cycle(SM_TYPED_HANDLE_(sm_pool, p));                                               \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_stats(NAME *p, struct sm_pool_stats *out)                              \
    {                                                                                              \
        return sm_pool_stats(SM_TYPED_HANDLE_(sm_pool, p), out);                                   \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_report(NAME *p, FILE *out)                                             \
    {                                                                                              \
        return sm_pool_report(SM_TYPED_HANDLE_(sm_pool, p), out);                                  \
    }                                                                                              \
    SM_TYPED_FN_ sm_handle NAME##_handle(NAME *p, T(*array)[N])                                    \
    {                                                                                              \
        return sm_pool_handle(SM_TYPED_HANDLE_(sm_pool, p), array);                                \
    }                                                                                              \
    SM_TYPED_FN_ T(*NAME##_resolve(NAME *p, sm_handle h))[N]                                       \
    {                                                                                              \
        return SM_TYPED_CAST_(sm_pool_resolve(SM_TYPED_HANDLE_(sm_pool, p), h), T, N);             \
    }                                                                                              \
    SM_TYPED_FN_ T(*NAME##_storage(NAME *p))[][N]                                                  \
    {                                                                                              \
        return SM_TYPED_STORAGE_CAST_(p, T, N);                                                    \
    }                                                                                              \
    typedef int NAME##_sm_typed_pool_end_

#define SM_TYPED_CMAP(NAME, T, N)                                                                  \
    SM_TYPED_STRICT_                                                                               \
    typedef struct NAME NAME;                                                                      \
    typedef T NAME##_value[N];                                                                     \
    typedef struct NAME##_opts {                                                                   \
        SM_TYPED_MAP_OPTS_FIELDS_(T, N)                                                            \
    } NAME##_opts;                                                                                 \
    /* A typed callback and its context, on the caller's stack for one call. */                    \
    struct NAME##_update_call_ {                                                                   \
        void (*fn)(T(*value)[N], int inserted, void *ctx);                                         \
        void *ctx;                                                                                 \
    };                                                                                             \
    struct NAME##_each_call_ {                                                                     \
        int (*fn)(int64_t key, const T (*value)[N], void *ctx);                                    \
        void *ctx;                                                                                 \
    };                                                                                             \
    SM_TYPED_FN_ void NAME##_update_typed_(void *value, int inserted, void *call)                  \
    {                                                                                              \
        const struct NAME##_update_call_ *c =                                                      \
            SM_TYPED_FROM_VOID_(const struct NAME##_update_call_ *, call);                         \
        c->fn(SM_TYPED_CAST_(value, T, N), inserted, c->ctx);                                      \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_each_typed_(int64_t key, const void *value, void *call)                \
    {                                                                                              \
        const struct NAME##_each_call_ *c =                                                        \
            SM_TYPED_FROM_VOID_(const struct NAME##_each_call_ *, call);                           \
        return c->fn(key, SM_TYPED_CONST_CAST_(value, T, N), c->ctx);                              \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_new(NAME **out)                                                        \
    {                                                                                              \
        SM_TYPED_OPTS_(sm_map_opts, o, T, N);                                                      \
        return sm_cmap_new(SM_TYPED_HANDLE_(sm_cmap *, out), &o);                                  \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_new_opts(NAME **out, const NAME##_opts *to)                            \
    {                                                                                              \
        if (!to)                                                                                   \
            return sm_cmap_new(SM_TYPED_HANDLE_(sm_cmap *, out), SM_TYPED_NULL_);                  \
        SM_TYPED_OPTS_(sm_map_opts, o, T, N);                                                      \
        SM_TYPED_MAP_OPTS_COPY_(o, to);                                                            \
        return sm_cmap_new(SM_TYPED_HANDLE_(sm_cmap *, out), &o);                                  \
    }                                                                                              \
    SM_TYPED_FN_ void NAME##_free(NAME *cm)                                                        \
    {                                                                                              \
        sm_cmap_free(SM_TYPED_HANDLE_(sm_cmap, cm));                                               \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_put(NAME *cm, int64_t key, SM_TYPED_IN_ T(*value)[N])                  \
    {                                                                                              \
        return sm_cmap_put(SM_TYPED_HANDLE_(sm_cmap, cm), key, value);                             \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_get(NAME *cm, int64_t key, T(*out)[N])                                 \
    {                                                                                              \
        return sm_cmap_get(SM_TYPED_HANDLE_(sm_cmap, cm), key, out);                               \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_del(NAME *cm, int64_t key)                                             \
    {                                                                                              \
        return sm_cmap_del(SM_TYPED_HANDLE_(sm_cmap, cm), key);                                    \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_update(NAME *cm, int64_t key,                                          \
                                   void (*fn)(T(*value)[N], int inserted, void *ctx), void *ctx)   \
    {                                                                                              \
        struct NAME##_update_call_ call = {fn, ctx};                                               \
        return sm_cmap_update(SM_TYPED_HANDLE_(sm_cmap, cm), key,                                  \
                              fn ? NAME##_update_typed_ : SM_TYPED_NULL_, &call);                  \
    }                                                                                              \
    SM_TYPED_FN_ size_t NAME##_len(NAME *cm)                                                       \
    {                                                                                              \
        return sm_cmap_len(SM_TYPED_HANDLE_(sm_cmap, cm));                                         \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_read_begin(NAME *cm)                                                   \
    {                                                                                              \
        return sm_cmap_read_begin(SM_TYPED_HANDLE_(sm_cmap, cm));                                  \
    }                                                                                              \
    SM_TYPED_FN_ void NAME##_read_end(NAME *cm)                                                    \
    {                                                                                              \
        sm_cmap_read_end(SM_TYPED_HANDLE_(sm_cmap, cm));                                           \
    }                                                                                              \
    SM_TYPED_FN_ const T(*NAME##_find(NAME *cm, int64_t key))[N]                                   \
    {                                                                                              \
        return SM_TYPED_CONST_CAST_(sm_cmap_find(SM_TYPED_HANDLE_(sm_cmap, cm), key), T, N);       \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_each(NAME *cm, int (*fn)(int64_t key, const T(*value)[N], void *ctx),  \
                                 void *ctx)                                                        \
    {                                                                                              \
        struct NAME##_each_call_ call = {fn, ctx};                                                 \
        return sm_cmap_each(SM_TYPED_HANDLE_(sm_cmap, cm),                                         \
                            fn ? NAME##_each_typed_ : SM_TYPED_NULL_, &call);                      \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_stats(NAME *cm, struct sm_cmap_stats *out)                             \
    {                                                                                              \
        return sm_cmap_stats(SM_TYPED_HANDLE_(sm_cmap, cm), out);                                  \
    }                                                                                              \
    SM_TYPED_FN_ int NAME##_verify(NAME *cm)                                                       \
    {                                                                                              \
        return sm_cmap_verify(SM_TYPED_HANDLE_(sm_cmap, cm));                                      \
    }                                                                                              \
    typedef int NAME##_sm_typed_cmap_end_

#endif /* SAFEMAP_TYPED_H */
