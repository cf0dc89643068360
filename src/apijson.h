/* apijson: command replies to JSON for the HTTP API (api.c's shapes), and a
 * command's error reply to its HTTP status. */
#ifndef ST_APIJSON_H
#define ST_APIJSON_H

#include <jansson.h>
#include <stddef.h>

#include "api.h"

/* A JSON string of arbitrary bytes: as they are when valid UTF-8, else with
 * each offending byte replaced by U+FFFD. NULL only when out of memory. */
json_t *st_apijson_str(const char *s, size_t n);

/* Reads one RESP2 value at *pp (before end) into JSON: arrays, bulk and
 * simple strings, integers, nil as null; advances *pp past it. NULL on
 * anything else or past depth 8. */
json_t *st_apijson_read(const char **pp, const char *end, int depth);

/* The shapes: call is the command the route ran, reply its RESP reply read
 * by st_apijson_read. Each returns a new object (NULL when out of memory). */
json_t *st_apijson_segments(const st_api_call *call, json_t *reply); /* SEGMENTS, FOLDIN */
json_t *st_apijson_scores(const st_api_call *call, json_t *reply);   /* SCORE */
json_t *st_apijson_users(const st_api_call *call, json_t *reply);    /* AUDIENCE, LOOKALIKE */
json_t *st_apijson_reach(const st_api_call *call, json_t *reply);    /* REACH MIN, REACH CURVE */
json_t *st_apijson_ok(const st_api_call *call, json_t *reply);       /* EVENT, FORGET */
json_t *st_apijson_model(const st_api_call *call, json_t *reply);    /* MODEL INFO */
json_t *st_apijson_stats(const st_api_call *call, json_t *reply);    /* INFO */

/* The HTTP status for a command's error message m (without the leading
 * '-'): 501 unknown command, 404 unknown segment or user, 401, 403 (no
 * right, a privacy floor), 503 (loading, out of memory, writes refused),
 * else 400. */
int st_apijson_error_status(const char *m);

#endif
