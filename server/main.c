/*
 * main.c - safemapd: start-up, signals and shutdown.
 *
 * Start-up binds the RESP port first (so a port in use is reported at once,
 * before a long load), then loads the snapshot and log (persist.c), starts
 * the HTTP port (http.c) and only then accepts connections and reports
 * ready.  The main thread's event_base runs the listener, the signals and
 * the persistence timer.
 *
 * SIGTERM and SIGINT drain: the state becomes DRAINING (/health/ready says
 * 503), the daemon serves on for --shutdown-delay-ms, the listener closes, the workers finish the
 * commands they have read and send the replies they owe, then a final snapshot is written when
 * persistence is on, and the process exits 0.  A second signal while
 * draining exits at once (status 1).  SIGHUP reopens the log file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "config.h"
#include "daemon.h"
#include "net.h"
#ifdef SMD_HAVE_HTTP
#include "http.h"
#endif

#define DRAIN_TIMEOUT_MS 5000

static smd_daemon daemon_state;

typedef struct app {
    smd_daemon *d;
    struct event_base *base;
    smd_net *net;
#ifdef SMD_HAVE_HTTP
    smd_http *http;
#endif
} app;

static double now_real(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    app *a = arg;
    (void)what;
    int prev = atomic_exchange(&a->d->state, SMD_DRAINING);
    if (prev == SMD_DRAINING) {
        smd_log(SMD_LOG_WARN, "second stop signal while draining: exiting now", "signal=%d",
                (int)sig);
        _exit(1);
    }
    smd_log(SMD_LOG_INFO, "draining", "signal=%s delay_ms=%d", sig == SIGINT ? "SIGINT" : "SIGTERM",
            a->d->shutdown_delay_ms);
    if (a->d->shutdown_delay_ms > 0 && !atomic_load(&a->d->shutdown_now)) {
        /* Serve on while load balancers see /health/ready fail. */
        int ms = a->d->shutdown_delay_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        event_base_loopexit(a->base, &tv);
    } else {
        event_base_loopbreak(a->base);
    }
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    int rc = smd_log_reopen();
    if (rc != 0)
        smd_log(SMD_LOG_ERROR, "log reopen failed", "err=\"%s\"", strerror(-rc));
    else
        smd_log(SMD_LOG_INFO, "log reopened", NULL);
}

#ifdef SMD_HAVE_PERSIST
static void on_persist_tick(evutil_socket_t fd, short what, void *arg)
{
    app *a = arg;
    (void)fd;
    (void)what;
    if (a->d->persist)
        smd_persist_tick(a->d->persist);
}

static void persist_logger(int level, const char *msg, void *ctx)
{
    (void)ctx;
    smd_log(level, msg, "component=persist");
}
#endif

/* Raises the descriptor limit for maxclients; lowers maxclients when the
 * hard limit is too low, as Redis does. */
static void fit_nofile(smd_daemon *d)
{
    struct rlimit rl;
    rlim_t reserve = 64 + 4 * (rlim_t)d->cfg.threads;
    rlim_t want = (rlim_t)d->cfg.maxclients + reserve;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        rl.rlim_cur = old;
    if (rl.rlim_cur < want) {
        int fit = rl.rlim_cur > reserve ? (int)(rl.rlim_cur - reserve) : 1;
        smd_log(SMD_LOG_WARN, "maxclients lowered to fit the open-file limit",
                "maxclients=%d requested=%d nofile=%llu", fit, d->cfg.maxclients,
                (unsigned long long)rl.rlim_cur);
        d->cfg.maxclients = fit;
    }
}

static int start(app *a, char *err, size_t errlen)
{
    smd_daemon *d = a->d;
    if (smd_cmdstats_init(d) != 0 || smd_store_new(&d->store) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (smd_net_start(&a->net, d, a->base, err, errlen) != 0)
        return -1;
#ifdef SMD_HAVE_PERSIST
    smd_persist_set_logger(persist_logger, NULL);
    char perr[1024] = "";
    int rc = smd_persist_open(&d->persist, d->store, d->cfg.dir, d->cfg.appendfsync,
                              d->cfg.appendonly, perr, sizeof perr);
    if (rc != 0) {
        d->persist = NULL;
        snprintf(err, errlen, "cannot load the data in '%.1000s': %.900s", d->cfg.dir, perr);
        return -1;
    }
    smd_persist_info pi;
    memset(&pi, 0, sizeof pi);
    smd_persist_info_get(d->persist, &pi);
    smd_log(SMD_LOG_INFO, "data loaded", "dir=\"%s\" maps=%zu entries=%llu seconds=%.3f",
            d->cfg.dir, smd_store_count(d->store), (unsigned long long)pi.loaded_entries,
            pi.load_seconds);
#else
    smd_log(SMD_LOG_WARN, "built without persistence: data is not saved", NULL);
#endif
#ifdef SMD_HAVE_HTTP
    char herr[512] = "";
    if (smd_http_start(&a->http, d, herr, sizeof herr) != 0) {
        a->http = NULL;
        snprintf(err, errlen, "cannot start HTTP on %s:%d: %s", d->cfg.bind, d->cfg.http_port,
                 herr);
        return -1;
    }
#endif
    return 0;
}

static int stop(app *a)
{
    smd_daemon *d = a->d;
    int status = 0;
    atomic_store(&d->state, SMD_DRAINING);
    smd_net_stop_listening(a->net);
    smd_net_drain(a->net, DRAIN_TIMEOUT_MS);
#ifdef SMD_HAVE_PERSIST
    if (d->persist && atomic_load(&d->shutdown_save) >= 0) {
        char err[1024] = "";
        double t0 = now_real();
        if (smd_persist_save(d->persist, err, sizeof err) != 0) {
            smd_log(SMD_LOG_ERROR, "final snapshot failed", "err=\"%s\"", err);
            status = 1;
        } else {
            smd_log(SMD_LOG_INFO, "final snapshot written", "seconds=%.3f", now_real() - t0);
        }
    }
#endif
#ifdef SMD_HAVE_HTTP
    if (a->http)
        smd_http_stop(a->http);
    a->http = NULL;
#endif
#ifdef SMD_HAVE_PERSIST
    smd_persist_close(d->persist);
    d->persist = NULL;
#endif
    smd_net_free(a->net);
    a->net = NULL;
    atomic_store(&d->state, SMD_STOPPED);
    if (d->store)
        smd_store_free(d->store);
    d->store = NULL;
    smd_cmdstats_free(d);
    return status;
}

int main(int argc, char **argv)
{
    smd_daemon *d = &daemon_state;
    char err[2048];
    smd_config_defaults(d);
    int rc = smd_config_parse(d, argc, argv, err, sizeof err);
    if (rc == SMD_CONFIG_EXIT)
        return 0;
    if (rc != SMD_CONFIG_RUN) {
        fprintf(stderr, "safemapd: %s\n", err);
        return 2;
    }
    if ((rc = smd_log_open(d->cfg.logfile)) != 0) {
        fprintf(stderr, "safemapd: --logfile: cannot open '%s': %s\n", d->cfg.logfile,
                strerror(-rc));
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    fit_nofile(d);
    d->start_time = now_real();
    atomic_store(&d->state, SMD_STARTING);
    smd_log(SMD_LOG_INFO, "starting",
            "version=%s pid=%ld bind=%s port=%d http_port=%d threads=%d dir=\"%s\"", SMD_VERSION,
            (long)getpid(), d->cfg.bind, d->cfg.port, d->cfg.http_port, d->cfg.threads, d->cfg.dir);

    app a = {.d = d};
    a.base = event_base_new();
    if (!a.base) {
        smd_log(SMD_LOG_ERROR, "cannot create the event loop", NULL);
        return 1;
    }
    struct event *ev_term = evsignal_new(a.base, SIGTERM, on_stop_signal, &a);
    struct event *ev_int = evsignal_new(a.base, SIGINT, on_stop_signal, &a);
    struct event *ev_hup = evsignal_new(a.base, SIGHUP, on_hup, NULL);
    if (!ev_term || !ev_int || !ev_hup || event_add(ev_term, NULL) || event_add(ev_int, NULL) ||
        event_add(ev_hup, NULL)) {
        smd_log(SMD_LOG_ERROR, "cannot install signal handlers", NULL);
        return 1;
    }
    if (start(&a, err, sizeof err) != 0) {
        smd_log(SMD_LOG_ERROR, "start-up failed", "err=\"%s\"", err);
        fprintf(stderr, "safemapd: %s\n", err);
        atomic_store(&d->shutdown_save, -1); /* nothing to save over what is on disk */
        stop(&a);
        return 1;
    }
    struct event *ev_tick = NULL;
#ifdef SMD_HAVE_PERSIST
    struct timeval tick = {0, 100000};
    ev_tick = event_new(a.base, -1, EV_PERSIST, on_persist_tick, &a);
    if (ev_tick)
        event_add(ev_tick, &tick);
#endif
    int expected = SMD_STARTING;
    /* A signal during start-up already asked for the drain. */
    if (atomic_compare_exchange_strong(&d->state, &expected, SMD_READY)) {
        smd_net_enable(a.net);
        smd_log(SMD_LOG_INFO, "ready", "bind=%s port=%d http_port=%d threads=%d", d->cfg.bind,
                d->cfg.port, d->cfg.http_port, d->cfg.threads);
        event_base_dispatch(a.base);
    }
    int status = stop(&a);
    if (ev_tick)
        event_free(ev_tick);
    event_free(ev_term);
    event_free(ev_int);
    event_free(ev_hup);
    event_base_free(a.base);
    smd_log(SMD_LOG_INFO, "stopped", "status=%d", status);
    return status;
}
