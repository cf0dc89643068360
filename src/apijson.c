/* apijson: the JSON side of the HTTP API: command replies (RESP) read into
 * JSON and shaped per endpoint, a command's error mapped to its HTTP status,
 * and ids as JSON strings.
 *
 * api.c's route table names one shape per endpoint; a shape reads the
 * command's arguments (the call) and its reply, and never checks anything
 * the command has checked. Every function here is pure: no server state.
 */
#include "apijson.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* A JSON string of arbitrary bytes: as they are when valid UTF-8, else with
 * each offending byte replaced by U+FFFD. NULL only when out of memory. */
json_t *st_apijson_str(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j) return j;
    char *b = st_malloc(3 * n + 1);
    if (!b) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int valid = k > 0 && i + k <= n;
        for (size_t t = 1; valid && t < k; t++) valid = ((unsigned char)s[i + t] >> 6) == 2;
        if (valid && k > 1) {
            json_t *probe = json_stringn(s + i, k); /* overlong forms and surrogates */
            valid = probe != NULL;
            json_decref(probe);
        }
        if (valid) {
            memcpy(b + w, s + i, k);
            w += k;
            i += k;
        } else {
            memcpy(b + w, "\xef\xbf\xbd", 3);
            w += 3;
            i++;
        }
    }
    j = json_stringn(b, w);
    st_free(b);
    return j;
}

/* Reads one RESP2 value (our own replies: well-formed, but checked anyway)
 * into JSON: arrays, bulk and simple strings, integers, nil as null. NULL on
 * anything else. */
json_t *st_apijson_read(const char **pp, const char *end, int depth)
{
    const char *p = *pp;
    if (p >= end || depth > 8) return NULL;
    const char *crlf = memchr(p, '\r', (size_t)(end - p));
    if (!crlf || crlf + 1 >= end || crlf[1] != '\n') return NULL;
    char t = *p;
    char num[32];
    size_t nl = (size_t)(crlf - p - 1);
    if (t == '+') {
        *pp = crlf + 2;
        return st_apijson_str(p + 1, nl);
    }
    if (nl == 0 || nl >= sizeof num) return NULL;
    memcpy(num, p + 1, nl);
    num[nl] = '\0';
    char *e;
    long long v = strtoll(num, &e, 10);
    if (*e) return NULL;
    p = crlf + 2;
    if (t == ':') {
        *pp = p;
        return json_integer(v);
    }
    if (t == '$') {
        if (v < 0) {
            *pp = p;
            return json_null();
        }
        if ((uint64_t)v + 2 > (uint64_t)(end - p)) return NULL;
        *pp = p + v + 2;
        return st_apijson_str(p, (size_t)v);
    }
    if (t == '*') {
        if (v < 0) {
            *pp = p;
            return json_null();
        }
        json_t *a = json_array();
        for (long long i = 0; a && i < v; i++) {
            json_t *x = st_apijson_read(&p, end, depth + 1);
            if (!x || json_array_append_new(a, x) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        *pp = p;
        return a;
    }
    return NULL;
}

/* A score as sent (the shortest text that reads back as the float) as a
 * JSON number; printed with 9 significant digits, the text comes out the
 * same. */
static json_t *jscore(json_t *s)
{
    if (!json_is_string(s)) return json_null();
    double d = strtod(json_string_value(s), NULL);
    return isfinite(d) ? json_real(d) : json_null();
}

static json_t *arg_json(const st_api_call *c, int i) { return st_apijson_str(c->argv[i].ptr, c->argv[i].len); }

/* [name, score, name, score, ...] -> [{key: name, "score": score}, ...] */
static json_t *pairs(json_t *flat, const char *key)
{
    json_t *a = json_array();
    for (size_t i = 0; i + 1 < json_array_size(flat); i += 2) {
        json_t *e = json_object();
        json_object_set(e, key, json_array_get(flat, i));
        json_object_set_new(e, "score", jscore(json_array_get(flat, i + 1)));
        json_array_append_new(a, e);
    }
    return a;
}

static int has_arg(const st_api_call *c, const char *w)
{
    for (int i = 2; i < c->argc; i++)
        if (strcasecmp(c->argv[i].ptr, w) == 0) return 1;
    return 0;
}

json_t *st_apijson_segments(const st_api_call *c, json_t *r)
{
    json_t *o = json_object();
    if (strcasecmp(c->argv[0].ptr, "SEGMENTS") == 0) json_object_set_new(o, "user", arg_json(c, 1));
    json_object_set(o, "source", json_array_get(r, 0));
    if (strcasecmp(c->argv[0].ptr, "SEGMENTS") == 0 && has_arg(c, "CALIBRATED"))
        json_object_set_new(o, "calibrated", json_true());
    json_object_set_new(o, "segments", pairs(json_array_get(r, 1), "segment"));
    return o;
}

json_t *st_apijson_scores(const st_api_call *c, json_t *r)
{
    json_t *o = json_object(), *a = json_array(), *s = json_array_get(r, 1);
    json_object_set_new(o, "user", arg_json(c, 1));
    json_object_set(o, "source", json_array_get(r, 0));
    for (size_t i = 0; i < json_array_size(s); i++) {
        json_t *e = json_object();
        json_object_set_new(e, "segment", arg_json(c, (int)i + 2));
        json_object_set_new(e, "score", jscore(json_array_get(s, i)));
        json_array_append_new(a, e);
    }
    json_object_set_new(o, "scores", a);
    return o;
}

json_t *st_apijson_users(const st_api_call *c, json_t *r)
{
    json_t *o = json_object();
    if (strcasecmp(c->argv[0].ptr, "AUDIENCE") == 0) json_object_set_new(o, "segment", arg_json(c, 1));
    else json_object_set_new(o, "seeds", json_integer(c->argc - 3));
    json_object_set_new(o, "count", json_integer((json_int_t)json_array_size(r) / 2));
    json_object_set_new(o, "users", pairs(r, "user"));
    return o;
}

json_t *st_apijson_reach(const st_api_call *c, json_t *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "segment", arg_json(c, 1));
    if (strcasecmp(c->argv[2].ptr, "CURVE") != 0) {
        json_object_set_new(o, "min", json_real(strtod(c->argv[3].ptr, NULL)));
        json_object_set(o, "reach", r);
        return o;
    }
    /* [n1, n2, ...] beside the thresholds; nil (withheld) stays null */
    json_t *a = json_array();
    for (int i = 3; i < c->argc; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "min", json_real(strtod(c->argv[i].ptr, NULL)));
        json_object_set(e, "reach", json_array_get(r, (size_t)(i - 3)));
        json_array_append_new(a, e);
    }
    json_object_set_new(o, "curve", a);
    return o;
}

json_t *st_apijson_ok(const st_api_call *c, json_t *r)
{
    (void)c;
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_true());
    if (!json_is_string(r)) json_object_set(o, "reply", r);
    return o;
}

/* A value that reads whole as a finite number becomes one. */
static json_t *maybe_number(json_t *v)
{
    if (!json_is_string(v)) return json_incref(v);
    const char *s = json_string_value(v);
    char *e;
    if (!*s || isspace((unsigned char)*s)) return json_incref(v);
    double d = strtod(s, &e);
    if (*e || !isfinite(d)) return json_incref(v);
    if (d == floor(d) && fabs(d) < 9e15 && !strpbrk(s, ".eE")) return json_integer((json_int_t)d);
    return json_real(d);
}

/* MODEL INFO's flat map: numbers where the values are numbers (but not the
 * fingerprint or the path), META lines under "meta", and those starting
 * "eval." under "evaluation". */
json_t *st_apijson_model(const st_api_call *c, json_t *r)
{
    (void)c;
    json_t *o = json_object(), *meta = json_object(), *ev = json_object();
    for (size_t i = 0; i + 1 < json_array_size(r); i += 2) {
        json_t *k = json_array_get(r, i), *v = json_array_get(r, i + 1);
        if (!json_is_string(k)) continue;
        const char *key = json_string_value(k);
        if (strncmp(key, "meta.eval.", 10) == 0) json_object_set_new(ev, key + 10, maybe_number(v));
        else if (strncmp(key, "meta.", 5) == 0) json_object_set(meta, key + 5, v);
        else if (strcmp(key, "fingerprint") == 0 || strcmp(key, "path") == 0) json_object_set(o, key, v);
        else json_object_set_new(o, key, maybe_number(v));
    }
    json_object_set_new(o, "meta", meta);
    json_object_set_new(o, "evaluation", ev);
    return o;
}

/* INFO's text: {"section": {"key": value}}, and "commands": {"name": {calls,
 * usec, ..., p50, p99, p99.9}} from commandstats and latencystats. */
json_t *st_apijson_stats(const st_api_call *c, json_t *r)
{
    (void)c;
    json_t *o = json_object(), *cmds = json_object(), *sec = NULL;
    const char *p = json_string_value(r), *end = p ? p + strlen(p) : NULL;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        if (n && p[n - 1] == '\r') n--;
        char line[512];
        if (n >= sizeof line) n = sizeof line - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        p = le + 1;
        if (line[0] == '#') {
            char name[64];
            size_t i = 0;
            for (const char *s = line + 1; *s && i + 1 < sizeof name; s++)
                if (*s != ' ') name[i++] = (char)tolower((unsigned char)*s);
            name[i] = '\0';
            sec = NULL;
            if (strcmp(name, "commandstats") != 0 && strcmp(name, "latencystats") != 0) {
                sec = json_object();
                json_object_set_new(o, name, sec);
            }
            continue;
        }
        char *colon = strchr(line, ':');
        if (!colon) continue;
        *colon = '\0';
        const char *key = line, *val = colon + 1;
        const char *cmd = NULL;
        if (strncmp(key, "cmdstat_", 8) == 0) cmd = key + 8;
        else if (strncmp(key, "latency_percentiles_usec_", 25) == 0) cmd = key + 25;
        if (cmd) {
            json_t *e = json_object_get(cmds, cmd);
            if (!e) {
                e = json_object();
                json_object_set_new(cmds, cmd, e);
            }
            /* a=1,b=2 */
            char *save = NULL, *v = (char *)val;
            for (char *kv = strtok_r(v, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(kv, '=');
                if (!eq) continue;
                *eq = '\0';
                json_t *s = json_string(eq + 1);
                json_object_set_new(e, kv, maybe_number(s));
                json_decref(s);
            }
        } else if (sec) {
            json_t *s = st_apijson_str(val, strlen(val));
            json_object_set_new(sec, key, maybe_number(s));
            json_decref(s);
        }
    }
    json_object_set_new(o, "commands", cmds);
    return o;
}

/* The HTTP status for a command's error reply. */
int st_apijson_error_status(const char *m)
{
    static const struct {
        const char *prefix;
        int status;
    } map[] = {
        {"ERR unknown command", 501}, {"ERR unknown subcommand", 501}, {"ERR unknown segment", 404},
        {"ERR unknown user", 404},    {"ERR none of the", 404},        {"NOAUTH", 401},
        {"WRONGPASS", 401},           {"LOADING", 503},                {"ERR out of memory", 503},
        {"NOPERM", 403}, /* the user lacks the right (acl.h) */
        {"MISCONF", 503}, /* writes refused: no journal, or it cannot be written */
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strncmp(m, map[i].prefix, strlen(map[i].prefix)) == 0) return map[i].status;
    /* Refused by policy, not by the request's form: --min-audience, --min-seeds. */
    if (strstr(m, "privacy floor")) return 403;
    return 400;
}
