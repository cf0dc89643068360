/* The client matrix's hiredis client: hiredis_client PLAN.json
 *
 * A small C program on Debian's libhiredis (0.14) that runs the plan
 * tests/test_clients.py writes (host, port, passwords, commands, sorted-set
 * views, the read user's commands) and prints one JSON line per step, in the
 * form tests/clients/redis_py.py prints. Every command goes through
 * redisCommandArgv, as a C program sends commands hiredis has no helper for;
 * AUTH is sent first with the password, then as `AUTH user password` on a
 * second connection. jansson (a build dependency already) reads the plan and
 * writes the lines. Not part of the server: built by the test only when
 * hiredis is installed.
 */
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

enum { MAX_ARGS = 64 };

/* A reply as JSON (a new reference); errors are the caller's to handle. */
static json_t *reply_json(const redisReply *r)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        return json_stringn(r->str, r->len);
    case REDIS_REPLY_INTEGER:
        return json_integer(r->integer);
    case REDIS_REPLY_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; i < r->elements; i++)
            json_array_append_new(a, reply_json(r->element[i]));
        return a;
    }
    default:
        return json_null();
    }
}

/* ZREVRANGE ... WITHSCORES as [member, score] pairs, the form the views use. */
static json_t *pairs(json_t *flat)
{
    json_t *a = json_array();
    for (size_t i = 0; i + 1 < json_array_size(flat); i += 2)
        json_array_append_new(a, json_pack("[OO]", json_array_get(flat, i), json_array_get(flat, i + 1)));
    json_decref(flat);
    return a;
}

/* Sends one command (argc strings) and prints its step line; 0, or -1 when the
 * connection failed. */
static int step(redisContext *c, const char *name, size_t i, int argc, const char **argv, int as_pairs)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (!r) {
        fprintf(stderr, "hiredis_client: %s step %zu: %s\n", name, i, c->errstr);
        return -1;
    }
    json_t *line = json_pack("{sssI}", "step", name, "i", (json_int_t)i);
    if (r->type == REDIS_REPLY_ERROR)
        json_object_set_new(line, "error", json_stringn(r->str, r->len));
    else
        json_object_set_new(line, "reply", as_pairs ? pairs(reply_json(r)) : reply_json(r));
    char *text = json_dumps(line, JSON_COMPACT);
    printf("%s\n", text);
    free(text);
    json_decref(line);
    freeReplyObject(r);
    return 0;
}

/* Runs a list of commands (arrays of strings) as one step kind. */
static int run_list(redisContext *c, const char *name, json_t *list)
{
    size_t i;
    json_t *cmd;
    json_array_foreach(list, i, cmd) {
        const char *argv[MAX_ARGS];
        int argc = 0;
        for (size_t k = 0; k < json_array_size(cmd) && argc < MAX_ARGS; k++)
            argv[argc++] = json_string_value(json_array_get(cmd, k));
        if (step(c, name, i, argc, argv, 0) < 0)
            return -1;
    }
    return 0;
}

/* The views, each as the Redis command that answers it (hiredis has no helpers). */
static int run_views(redisContext *c, json_t *views)
{
    size_t i;
    json_t *v;
    json_array_foreach(views, i, v) {
        const char *op = json_string_value(json_array_get(v, 0));
        const char *argv[MAX_ARGS];
        int argc = 0;
        static const struct { const char *op, *cmd; } names[] = {
            {"zrevrange", "ZREVRANGE"}, {"zscore", "ZSCORE"}, {"zcard", "ZCARD"},
            {"exists", "EXISTS"}, {"type", "TYPE"},
        };
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
            if (strcmp(op, names[k].op) == 0)
                argv[argc++] = names[k].cmd;
        if (argc == 0) {
            fprintf(stderr, "hiredis_client: unknown view %s\n", op);
            return -1;
        }
        for (size_t k = 1; k < json_array_size(v) && argc < MAX_ARGS - 1; k++)
            argv[argc++] = json_string_value(json_array_get(v, k));
        int zrev = strcmp(op, "zrevrange") == 0;
        if (zrev)
            argv[argc++] = "WITHSCORES";
        if (step(c, "view", i, argc, argv, zrev) < 0)
            return -1;
    }
    return 0;
}

/* A connection authenticated with AUTH password, or AUTH user password. */
static redisContext *connect_as(json_t *plan, const char *user, const char *password)
{
    struct timeval tv = {30, 0};
    redisContext *c = redisConnectWithTimeout(json_string_value(json_object_get(plan, "host")),
                                              (int)json_integer_value(json_object_get(plan, "port")), tv);
    if (!c || c->err) {
        fprintf(stderr, "hiredis_client: connect: %s\n", c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *r = user ? redisCommand(c, "AUTH %s %s", user, password) : redisCommand(c, "AUTH %s", password);
    int fine = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
    if (!fine)
        fprintf(stderr, "hiredis_client: AUTH failed: %s\n", r ? r->str : c->errstr);
    freeReplyObject(r);
    if (!fine) {
        redisFree(c);
        return NULL;
    }
    return c;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: hiredis_client PLAN.json\n");
        return 2;
    }
    json_error_t jerr;
    json_t *plan = json_load_file(argv[1], 0, &jerr);
    if (!plan) {
        fprintf(stderr, "hiredis_client: %s:%d: %s\n", argv[1], jerr.line, jerr.text);
        return 1;
    }
    int rc = 1;
    redisContext *c = connect_as(plan, NULL, json_string_value(json_object_get(plan, "password")));
    redisContext *u = connect_as(plan, json_string_value(json_object_get(plan, "user")),
                                 json_string_value(json_object_get(plan, "user_password")));
    if (c && u && run_list(c, "cmd", json_object_get(plan, "commands")) == 0 &&
        run_views(c, json_object_get(plan, "views")) == 0 &&
        run_list(u, "user", json_object_get(plan, "user_commands")) == 0)
        rc = 0;
    redisFree(c);
    redisFree(u);
    json_decref(plan);
    return rc;
}
