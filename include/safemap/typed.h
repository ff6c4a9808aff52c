/*
 * safemap/typed.h - typed front-end over safemap.h.  Included by safemap.h.
 *
 * SM_TYPED_MAP(name, T, N), at file scope, defines the handle type `name`
 * (an incomplete struct) and static inline functions over T (*)[N]:
 *
 *   int    name_new(name **out);                 inline storage, default checks
 *   void   name_free(name *m);
 *   int    name_put(name *m, int64_t key, const T (*value)[N]);
 *   int    name_get(const name *m, int64_t key, T (*out)[N]);
 *   T    (*name_find(name *m, int64_t key))[N];
 *   int    name_del(name *m, int64_t key);
 *   size_t name_len(const name *m);
 *
 * SM_TYPED_POOL(name, T, N) defines `name` and:
 *
 *   int    name_new(name **out);                 default checks, no hooks
 *   void   name_free(name *p);
 *   T    (*name_get(name *p))[N];
 *   int    name_put(name *p, T (*array)[N]);
 *
 * The array length is part of every parameter type, so passing a T (*)[N+1]
 * is a constraint violation: an error in C++ and under
 * -Werror=incompatible-pointer-types in C.
 */
#ifndef SAFEMAP_TYPED_H
#define SAFEMAP_TYPED_H

#ifdef __cplusplus
#define SM_TYPED_CAST_(P, T, N) (reinterpret_cast<T(*)[N]>(P))
#define SM_TYPED_ZERO_ {}
#else
#define SM_TYPED_ZERO_ {0}
#define SM_TYPED_CAST_(P, T, N) ((T(*)[N])(P))
#endif

#define SM_TYPED_MAP(name, T, N)                                                                   \
    typedef struct name name;                                                                      \
    static inline int name##_new(name **out)                                                       \
    {                                                                                              \
        sm_map_opts o = SM_TYPED_ZERO_;                                                            \
        o.layout = SM_LAYOUT(T, N);                                                                \
        return sm_map_new((sm_map **)(void *)out, &o);                                             \
    }                                                                                              \
    static inline void name##_free(name *m)                                                        \
    {                                                                                              \
        sm_map_free((sm_map *)(void *)m);                                                          \
    }                                                                                              \
    static inline int name##_put(name *m, int64_t key, const T(*value)[N])                         \
    {                                                                                              \
        return sm_map_put((sm_map *)(void *)m, key, value);                                        \
    }                                                                                              \
    static inline int name##_get(const name *m, int64_t key, T(*out)[N])                           \
    {                                                                                              \
        return sm_map_get((const sm_map *)(const void *)m, key, out);                              \
    }                                                                                              \
    static inline T(*name##_find(name *m, int64_t key))[N]                                         \
    {                                                                                              \
        return SM_TYPED_CAST_(sm_map_find((sm_map *)(void *)m, key), T, N);                        \
    }                                                                                              \
    static inline int name##_del(name *m, int64_t key)                                             \
    {                                                                                              \
        return sm_map_del((sm_map *)(void *)m, key);                                               \
    }                                                                                              \
    static inline size_t name##_len(const name *m)                                                 \
    {                                                                                              \
        return sm_map_len((const sm_map *)(const void *)m);                                        \
    }                                                                                              \
    typedef int name##_sm_typed_map_end_

#define SM_TYPED_POOL(name, T, N)                                                                  \
    typedef struct name name;                                                                      \
    static inline int name##_new(name **out)                                                       \
    {                                                                                              \
        sm_pool_opts o = SM_TYPED_ZERO_;                                                           \
        o.layout = SM_LAYOUT(T, N);                                                                \
        return sm_pool_new((sm_pool **)(void *)out, &o);                                           \
    }                                                                                              \
    static inline void name##_free(name *p)                                                        \
    {                                                                                              \
        sm_pool_free((sm_pool *)(void *)p);                                                        \
    }                                                                                              \
    static inline T(*name##_get(name *p))[N]                                                       \
    {                                                                                              \
        return SM_TYPED_CAST_(sm_pool_get((sm_pool *)(void *)p), T, N);                            \
    }                                                                                              \
    static inline int name##_put(name *p, T(*array)[N])                                            \
    {                                                                                              \
        return sm_pool_put((sm_pool *)(void *)p, array);                                           \
    }                                                                                              \
    typedef int name##_sm_typed_pool_end_

#endif /* SAFEMAP_TYPED_H */
