/*
 * http.h - safemapd's HTTP port: health, metrics, the REST API and its
 * OpenAPI description.
 *
 *   GET /health/live    200 while the process serves
 *   GET /health/ready   200 when loaded and accepting, 503 while starting
 *                       or draining
 *   GET /metrics        Prometheus text format
 *   GET /openapi.json   the OpenAPI 3.1 description of all of this
 *   /v1/maps, /v1/maps/{name}, /v1/maps/{name}/{key}   the REST API
 *
 * It runs on its own libevent base and thread (evhttp).  Routing and the
 * parsing of bodies and headers are in http_parse.h.  docs/http.md
 * describes the API; server/openapi.json is its exact description.
 */
#ifndef SAFEMAP_SERVER_HTTP_H
#define SAFEMAP_SERVER_HTTP_H

#include <stddef.h>

#include "daemon.h"

typedef struct smd_http smd_http;

/* The OpenAPI description (server/openapi.json), embedded at build time
 * by server/embed.cmake into a generated source file. */
extern const char smd_openapi_json[];
extern const size_t smd_openapi_json_len;

/* Binds d->cfg.bind:d->cfg.http_port and starts serving in a new thread.
 * Returns 0 or a negative code with a message in err. */
int smd_http_start(smd_http **out, smd_daemon *d, char *err, size_t errlen);
/* Stops accepting, finishes requests in flight, joins the thread. */
void smd_http_stop(smd_http *h);

#endif
