/*
 * test_pool_threads.c - the pool under threads.  Arrays may be Put from any
 * thread; cycles may run while other threads are in their fast paths; no
 * array is ever handed to two owners at once.  Built with -DSM_TSAN=ON this
 * is the ThreadSanitizer test of the pool.
 *
 * Each owner stamps an array with its own tag on Get and checks the stamp
 * before Put: two owners of one array would overwrite each other's stamps.
 */
#include "internal.h" /* pool_verify */
#include "safemap.h"
#include "support.h"
#include "testlib.h"

#include <pthread.h>
#include <stdatomic.h>

enum { LEN = 16 };

static sm_pool *pool_make(int check, size_t max_idle)
{
    sm_pool_opts o = {
        .layout = SM_LAYOUT(int64_t, LEN), .check = check, .max_idle_bytes = max_idle};
    sm_pool *p = NULL;
    CHECK_EQ(sm_pool_new(&p, &o), 0);
    return p;
}

static void stamp(int64_t *a, int64_t tag)
{
    for (int i = 0; i < LEN; i++)
        a[i] = tag + i;
}

static int stamped(const int64_t *a, int64_t tag)
{
    for (int i = 0; i < LEN; i++)
        if (a[i] != tag + i)
            return 0;
    return 1;
}

/* ---- Get in one thread, Put in another --------------------------------- */

enum { RING = 256 };

typedef struct handoff {
    sm_pool *p;
    size_t n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t *ring[RING];
    size_t head, tail;
    atomic_size_t bad;
} handoff;

static void *producer(void *arg)
{
    handoff *h = arg;
    for (size_t i = 0; i < h->n; i++) {
        int64_t *a = sm_pool_get(h->p);
        if (!a) {
            atomic_fetch_add(&h->bad, 1);
            continue;
        }
        stamp(a, (int64_t)i * 1000);
        pthread_mutex_lock(&h->mu);
        while (h->tail - h->head == RING)
            pthread_cond_wait(&h->cv, &h->mu);
        h->ring[h->tail++ % RING] = a;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    handoff *h = arg;
    for (size_t i = 0; i < h->n; i++) {
        pthread_mutex_lock(&h->mu);
        while (h->tail == h->head)
            pthread_cond_wait(&h->cv, &h->mu);
        int64_t *a = h->ring[h->head++ % RING];
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        if (!stamped(a, (int64_t)i * 1000))
            atomic_fetch_add(&h->bad, 1);
        if (sm_pool_put(h->p, a) != 0)
            atomic_fetch_add(&h->bad, 1);
    }
    return NULL;
}

static void test_get_in_one_thread_put_in_another(void)
{
    int levels[] = {SM_CHECK_CHEAP, SM_CHECK_FULL};
    for (int l = 0; l < 2; l++) {
        ev_install();
        handoff h = {.p = pool_make(levels[l], 0),
                     .n = tl_scaled(tl_under_valgrind ? 5000 : 200000),
                     .mu = PTHREAD_MUTEX_INITIALIZER,
                     .cv = PTHREAD_COND_INITIALIZER};
        atomic_init(&h.bad, 0);
        pthread_t a, b;
        pthread_create(&a, NULL, producer, &h);
        pthread_create(&b, NULL, consumer, &h);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        CHECK_EQ(atomic_load(&h.bad), 0);
        CHECK_EQ(ev_count(), 0);
        CHECK_EQ(pool_verify(h.p), 0);
        sm_pool_free(h.p);
        sm_set_handler(NULL, NULL);
    }
}

/* ---- many threads, random churn, cycles and handles meanwhile ---------- */

typedef struct churn {
    sm_pool *p;
    int id;
    size_t rounds;
    atomic_int *stop;
    atomic_size_t *bad;
} churn;

static void *churn_thread(void *arg)
{
    churn *c = arg;
    rng r = {(uint64_t)c->id * 7919 + 1};
    int64_t *held[64];
    sm_handle hs[64];
    int n = 0;
    for (size_t i = 0; i < c->rounds; i++) {
        if (n < 64 && (n == 0 || rng_below(&r, 2))) {
            int64_t *a = sm_pool_get(c->p);
            if (!a) {
                atomic_fetch_add(c->bad, 1);
                continue;
            }
            stamp(a, (int64_t)c->id << 32 | (int64_t)i);
            hs[n] = sm_pool_handle(c->p, a);
            held[n++] = a;
        } else {
            int k = (int)rng_below(&r, (uint64_t)n);
            int64_t *a = held[k];
            if (a[1] - a[0] != 1 || (a[0] >> 32) != c->id || sm_pool_resolve(c->p, hs[k]) != a)
                atomic_fetch_add(c->bad, 1);
            if (sm_pool_put(c->p, a) != 0)
                atomic_fetch_add(c->bad, 1);
            if (sm_pool_resolve(c->p, hs[k]) != NULL)
                atomic_fetch_add(c->bad, 1);
            held[k] = held[--n];
            hs[k] = hs[n];
        }
    }
    while (n)
        sm_pool_put(c->p, held[--n]);
    return NULL;
}

static void *cycler(void *arg)
{
    churn *c = arg;
    while (!atomic_load(c->stop)) {
        sm_pool_cycle(c->p);
        sched_yield();
    }
    return NULL;
}

static void run_churn(int check, size_t max_idle)
{
    ev_install();
    enum { T = 4 };
    atomic_int stop;
    atomic_size_t bad;
    atomic_init(&stop, 0);
    atomic_init(&bad, 0);
    sm_pool *p = pool_make(check, max_idle);
    churn c[T + 1];
    pthread_t t[T + 1];
    size_t rounds = tl_scaled(tl_under_valgrind ? 3000 : check == SM_CHECK_FULL ? 30000 : 300000);
    for (int i = 0; i <= T; i++)
        c[i] = (churn){p, i + 1, rounds, &stop, &bad};
    pthread_create(&t[T], NULL, cycler, &c[T]);
    for (int i = 0; i < T; i++)
        pthread_create(&t[i], NULL, churn_thread, &c[i]);
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    atomic_store(&stop, 1);
    pthread_join(t[T], NULL);
    CHECK_EQ(atomic_load(&bad), 0);
    CHECK_EQ(ev_count(), 0);
    CHECK_EQ(pool_verify(p), 0);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

static void test_threads_churn_while_cycling(void)
{
    run_churn(SM_CHECK_CHEAP, 0);
}

static void test_threads_churn_under_a_cap(void)
{
    run_churn(SM_CHECK_CHEAP, 20 * LEN * sizeof(int64_t));
}

static void test_threads_churn_at_full(void)
{
    run_churn(SM_CHECK_FULL, 0);
}

/* ---- a double Put from two threads at once is caught once -------------- */

typedef struct racer {
    sm_pool *p;
    int64_t **arrays;
    size_t n;
    atomic_int *go;
    size_t doubles;
} racer;

static void *race_put(void *arg)
{
    racer *r = arg;
    while (!atomic_load(r->go))
        ;
    for (size_t i = 0; i < r->n; i++)
        r->doubles += sm_pool_put(r->p, r->arrays[i]) == SM_EDOUBLE;
    return NULL;
}

static void test_same_array_put_by_two_threads(void)
{
    /* Unsynchronised double Put is a data race in the caller; the pool may
     * not catch both at once, but must never hand an array out twice.  Here
     * the two Puts are ordered by a lock, so exactly one fails. */
    ev_install();
    sm_pool *p = pool_make(SM_CHECK_CHEAP, 0);
    enum { N = 1000 };
    int64_t **v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++)
        v[i] = sm_pool_get(p);
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    atomic_int go;
    atomic_init(&go, 1);
    size_t doubles = 0;
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&mu);
        CHECK_EQ(sm_pool_put(p, v[i]), 0);
        pthread_mutex_unlock(&mu);
    }
    racer r = {p, v, N, &go, 0};
    pthread_t t;
    pthread_create(&t, NULL, race_put, &r);
    pthread_join(t, NULL);
    doubles = r.doubles;
    CHECK_EQ(doubles, N);
    CHECK_EQ(ev_count(), N);
    CHECK_EQ(pool_verify(p), 0);
    free(v);
    sm_pool_free(p);
    sm_set_handler(NULL, NULL);
}

int main(int argc, char **argv)
{
    tl_init(argc, argv);
    RUN(test_get_in_one_thread_put_in_another);
    RUN(test_threads_churn_while_cycling);
    RUN(test_threads_churn_under_a_cap);
    RUN(test_threads_churn_at_full);
    RUN(test_same_array_put_by_two_threads);
    return tl_finish();
}
