/* commands: every protocol command, in one table, and the one call() path.
 *
 * What it is: the meaning of each request (docs/PROTOCOL.md is the reference
 * a client author reads; this file is what it describes). What it is not: a
 * connection or a thread; handlers get an st_ctx and append one reply to
 * ctx->out, and never block except MODEL RELOAD, which runs on the heavy pool.
 *
 * Users are looked up through find_user() alone, which returns a user's
 * vector and history wherever they live: the overlay of users changed
 * online (EVENT, FORGET: overlay.c) first, then the model file. A forgotten
 * user is unknown to every command. The commands that scan every user
 * (AUDIENCE, LOOKALIKE, REACH, s:<segment> ranges) score the model's rows,
 * leave out the rows the overlay hides, and add the overlay's users, from a
 * copy of the overlay taken when they start. Handlers that run on an event
 * loop (everything not flagged HEAVY) use the thread's scratch and never
 * allocate, except the writes; SEGMENTS and SCORE are the hot path the ad
 * server calls for every ad request.
 *
 * Writes go through st_server_write (server.c), which journals them before
 * they are visible; the handler records the record's seq in the session, and
 * under appendfsync always the connection's replies wait for the fdatasync
 * that covers it. Privacy floors: AUDIENCE, REACH, LOOKALIKE and the
 * s:<segment> score ranges never disclose fewer than --min-audience users,
 * and LOOKALIKE needs --min-seeds known seeds.
 *
 * The sorted-set views follow Redis's t_zset.c behaviour for a sorted set
 * whose members are the segments of u:<user> (scored by affinity) or the
 * users of s:<segment>: the same reply shapes, the same errors in the same
 * order of checks, ties ordered by member name like Redis.
 */
#include "commands.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "als.h"
#include "scan.h"
#include "score.h"
#include "util.h"

#ifndef STARLING_VERSION
#define STARLING_VERSION "0.1.0"
#endif

typedef void (*st_cmd_fn)(st_ctx *c);

/* The command table. One row per command or subcommand.
 *
 *   name     lower case; a subcommand is "container|sub" (e.g. "model|reload")
 *            and is found through its container's row, which has CONTAINER.
 *   fn       the handler. It may assume everything the table promises:
 *            the arity holds, the client is authenticated (unless NOAUTH).
 *   arity    as in Redis: n > 0 means exactly n arguments (the name
 *            included, and for a subcommand the container's name too);
 *            n < 0 means at least -n.
 *   flags    NOAUTH     allowed before AUTH when --requirepass is set
 *            HEAVY      runs on the heavy pool, never on an event loop
 *            HEAVY_SKEY runs on the heavy pool when its key is s:<segment>
 *                       (the range scores every user), on the loop otherwise
 *            CONTAINER  argv[1] names a subcommand ("container|sub" rows)
 *            WRITE      changes server state (COMMAND INFO reports it)
 *            FAST       O(1) or O(k): COMMAND INFO reports "fast"
 *            MULTIKEY   every argument from `key` on is a key (EXISTS, DEL)
 *            NOMODEL    runs before the first model is loaded (the others
 *                       answer -LOADING until then; ctx->model is NULL)
 *   key      position of the key argument for proxies (COMMAND INFO's first
 *            key); 0 = none. Keyed commands take one key, unless MULTIKEY.
 *   group, summary, complexity   for COMMAND DOCS and docs/PROTOCOL.md.
 *
 * Checklist: a new row needs its handler, a section in docs/PROTOCOL.md and,
 * for a new hot-path command, a case in tests/test_serve.py.
 */
enum {
    NOAUTH = 1u << 0,
    HEAVY = 1u << 1,
    HEAVY_SKEY = 1u << 2,
    CONTAINER = 1u << 3,
    WRITE = 1u << 4,
    FAST = 1u << 5,
    NOMODEL = 1u << 6,
    MULTIKEY = 1u << 7,
};

struct st_command {
    const char *name;
    st_cmd_fn fn;
    int arity;
    unsigned flags;
    int key;
    const char *group;
    const char *summary;
    const char *complexity;
};

static void cmd_ping(st_ctx *c);
static void cmd_echo(st_ctx *c);
static void cmd_quit(st_ctx *c);
static void cmd_auth(st_ctx *c);
static void cmd_hello(st_ctx *c);
static void cmd_select(st_ctx *c);
static void cmd_client_setname(st_ctx *c);
static void cmd_client_getname(st_ctx *c);
static void cmd_client_id(st_ctx *c);
static void cmd_command(st_ctx *c);
static void cmd_command_docs(st_ctx *c);
static void cmd_command_count(st_ctx *c);
static void cmd_command_info(st_ctx *c);
static void cmd_config_get(st_ctx *c);
static void cmd_info(st_ctx *c);
static void cmd_help(st_ctx *c);
static void cmd_segments(st_ctx *c);
static void cmd_score(st_ctx *c);
static void cmd_foldin(st_ctx *c);
static void cmd_audience(st_ctx *c);
static void cmd_lookalike(st_ctx *c);
static void cmd_reach(st_ctx *c);
static void cmd_similar(st_ctx *c);
static void cmd_explain(st_ctx *c);
static void cmd_model_info(st_ctx *c);
static void cmd_model_reload(st_ctx *c);
static void cmd_zrange(st_ctx *c);
static void cmd_zrevrange(st_ctx *c);
static void cmd_zrangebyscore(st_ctx *c);
static void cmd_zrevrangebyscore(st_ctx *c);
static void cmd_zscore(st_ctx *c);
static void cmd_zmscore(st_ctx *c);
static void cmd_zcount(st_ctx *c);
static void cmd_zcard(st_ctx *c);
static void cmd_exists(st_ctx *c);
static void cmd_type(st_ctx *c);
static void cmd_event(st_ctx *c);
static void cmd_forget(st_ctx *c);
static void cmd_history(st_ctx *c);
static void cmd_zincrby(st_ctx *c);
static void cmd_del(st_ctx *c);
static void cmd_journal_compact(st_ctx *c);
static void cmd_debug_io_fail_after(st_ctx *c);
static void cmd_debug_fsync_fail(st_ctx *c);

static const st_command commands[] = {
    /* targeting */
    {"segments", cmd_segments, -2, 0, 0, "targeting", "A user's best segments with their scores", "O(n k + n log COUNT)"},
    {"score", cmd_score, -3, FAST, 0, "targeting", "A user's score for each segment given", "O(k) per segment"},
    {"foldin", cmd_foldin, -3, 0, 0, "targeting", "Best segments for a user the model has never seen, from their engagement",
     "O(e k^2 + k^3 + n k)"},
    {"audience", cmd_audience, -4, HEAVY, 0, "targeting", "The best users for a segment", "O(m k + m log COUNT)"},
    {"lookalike", cmd_lookalike, -4, HEAVY, 0, "targeting", "Users closest to a seed list of users", "O(m k + m log COUNT)"},
    {"reach", cmd_reach, 4, HEAVY, 0, "targeting", "How many users score at least MIN on a segment", "O(m k)"},
    {"similar", cmd_similar, 4, 0, 0, "targeting", "Segments closest to a segment (cosine of factors)", "O(n k)"},
    {"explain", cmd_explain, -3, 0, 0, "targeting", "Which past segments of a user drive a score", "O(h k^2 + k^3)"},
    {"history", cmd_history, 2, 0, 0, "targeting", "The engagement the server holds for a user, by segment", "O(h)"},
    /* online writes */
    {"event", cmd_event, -4, WRITE, 0, "online", "Add an engagement event to a user and re-solve their vector",
     "O(h k^2 + k^3), then a journal write"},
    {"forget", cmd_forget, 2, WRITE, 0, "online", "Erase a user: vector, history, every reply", "O(1), then a journal write"},
    {"journal", NULL, -2, CONTAINER, 0, "server", "JOURNAL COMPACT", "O(1)"},
    {"journal|compact", cmd_journal_compact, 2, WRITE, 0, "server",
     "Compact the journal in the background (erased events leave the file)", "O(1); the compaction O(journal)"},
    {"journal|help", cmd_help, 2, 0, 0, "server", "The JOURNAL subcommands", "O(1)"},
    {"bgrewriteaof", cmd_journal_compact, 1, WRITE, 0, "server", "JOURNAL COMPACT, by the name Redis tools use",
     "O(1); the compaction O(journal)"},
    {"model", NULL, -2, CONTAINER, 0, "server", "MODEL INFO | MODEL RELOAD [path]", "O(1)"},
    {"model|info", cmd_model_info, 2, 0, 0, "server", "The served model's dimensions and provenance", "O(1)"},
    {"model|reload", cmd_model_reload, -2, HEAVY | WRITE, 0, "server", "Load and verify a model file, then swap it in",
     "O(size of the model file)"},
    {"model|help", cmd_help, 2, NOMODEL, 0, "server", "The MODEL subcommands", "O(1)"},
    /* sorted-set views */
    {"zrange", cmd_zrange, -4, HEAVY_SKEY, 1, "sorted-set", "Members of u:<user> or s:<segment> in a range",
     "O(N + N log M) for N members scored, M returned"},
    {"zrevrange", cmd_zrevrange, -4, HEAVY_SKEY, 1, "sorted-set", "Members in a rank range, highest score first",
     "O(N + N log M)"},
    {"zrangebyscore", cmd_zrangebyscore, -4, HEAVY_SKEY, 1, "sorted-set", "Members in a score range, lowest first",
     "O(N + N log M)"},
    {"zrevrangebyscore", cmd_zrevrangebyscore, -4, HEAVY_SKEY, 1, "sorted-set",
     "Members in a score range, highest first", "O(N + N log M)"},
    {"zscore", cmd_zscore, 3, FAST, 1, "sorted-set", "The score of one member", "O(k)"},
    {"zmscore", cmd_zmscore, -3, FAST, 1, "sorted-set", "The scores of several members", "O(k) per member"},
    {"zcount", cmd_zcount, 4, HEAVY_SKEY, 1, "sorted-set", "How many members score within a range", "O(N k)"},
    {"zcard", cmd_zcard, 2, FAST, 1, "sorted-set", "How many members the view has", "O(1)"},
    {"zincrby", cmd_zincrby, 4, WRITE, 1, "sorted-set", "EVENT for u:<user>: add engagement, reply the new score",
     "O(h k^2 + k^3), then a journal write"},
    {"exists", cmd_exists, -2, FAST | MULTIKEY, 1, "generic", "How many of the keys exist", "O(1) per key"},
    {"del", cmd_del, -2, WRITE | MULTIKEY, 1, "generic", "FORGET the users of u:<user> keys; how many existed",
     "O(1) per key, then journal writes"},
    {"unlink", cmd_del, -2, WRITE | MULTIKEY, 1, "generic", "DEL", "O(1) per key, then journal writes"},
    {"type", cmd_type, 2, FAST, 1, "generic", "zset for an existing view, none otherwise", "O(1)"},
    /* connection and server */
    {"ping", cmd_ping, -1, FAST | NOMODEL, 0, "connection", "PONG, or the message given", "O(1)"},
    {"echo", cmd_echo, 2, FAST | NOMODEL, 0, "connection", "The message given", "O(1)"},
    {"quit", cmd_quit, -1, NOAUTH | FAST | NOMODEL, 0, "connection", "Close the connection after replying", "O(1)"},
    {"auth", cmd_auth, -2, NOAUTH | FAST | NOMODEL, 0, "connection", "Authenticate with --requirepass", "O(1)"},
    {"hello", cmd_hello, -1, NOAUTH | FAST | NOMODEL, 0, "connection", "Handshake; protocol 2 only", "O(1)"},
    {"select", cmd_select, 2, FAST | NOMODEL, 0, "connection", "Database 0 is the only one", "O(1)"},
    {"client", NULL, -2, CONTAINER, 0, "connection", "CLIENT SETNAME | GETNAME | ID", "O(1)"},
    {"client|setname", cmd_client_setname, 3, FAST | NOMODEL, 0, "connection", "Name this connection", "O(1)"},
    {"client|getname", cmd_client_getname, 2, FAST | NOMODEL, 0, "connection", "This connection's name", "O(1)"},
    {"client|id", cmd_client_id, 2, FAST | NOMODEL, 0, "connection", "This connection's id", "O(1)"},
    {"client|help", cmd_help, 2, NOMODEL, 0, "connection", "The CLIENT subcommands", "O(1)"},
    {"command", cmd_command, -1, CONTAINER | NOMODEL, 0, "server", "Every command's name, arity, flags and key position",
     "O(commands)"},
    {"command|docs", cmd_command_docs, -2, NOMODEL, 0, "server", "Every command's summary, for clients' help", "O(commands)"},
    {"command|count", cmd_command_count, 2, NOMODEL, 0, "server", "How many commands there are", "O(1)"},
    {"command|info", cmd_command_info, -2, NOMODEL, 0, "server", "Name, arity, flags and keys of the commands given",
     "O(commands)"},
    {"command|help", cmd_help, 2, NOMODEL, 0, "server", "The COMMAND subcommands", "O(1)"},
    {"config", NULL, -2, CONTAINER, 0, "server", "CONFIG GET", "O(1)"},
    {"config|get", cmd_config_get, -3, NOMODEL, 0, "server", "Configuration values matching glob patterns", "O(parameters)"},
    {"config|help", cmd_help, 2, NOMODEL, 0, "server", "The CONFIG subcommands", "O(1)"},
    {"info", cmd_info, -1, NOMODEL, 0, "server", "Server, clients, memory, model, quality, persistence, stats, commandstats, latencystats",
     "O(commands)"},
    {"debug", NULL, -2, CONTAINER, 0, "server", "DEBUG IO-FAIL-AFTER | FSYNC-FAIL (with --enable-debug-command)", "O(1)"},
    {"debug|io-fail-after", cmd_debug_io_fail_after, 3, 0, 0, "server",
     "Fail journal writes as a full disk does after N more bytes (-1 = off)", "O(1)"},
    {"debug|fsync-fail", cmd_debug_fsync_fail, 3, 0, 0, "server", "Fail fsyncs (1) or not (0)", "O(1)"},
    {"debug|help", cmd_help, 2, NOMODEL, 0, "server", "The DEBUG subcommands", "O(1)"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])
_Static_assert(NCOMMANDS <= ST_MAX_COMMANDS, "raise ST_MAX_COMMANDS in server.h");

/* ---- lookup ---------------------------------------------------------------- */

#define INDEX_SLOTS 256 /* a power of two, well over twice the rows */
static int16_t name_index[INDEX_SLOTS]; /* row + 1, 0 = empty */

static uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)tolower((unsigned char)s[i])) * 16777619u;
    return h;
}

void st_commands_init(void)
{
    memset(name_index, 0, sizeof name_index);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        uint32_t h = name_hash(commands[i].name, strlen(commands[i].name)) & (INDEX_SLOTS - 1);
        while (name_index[h]) h = (h + 1) & (INDEX_SLOTS - 1);
        name_index[h] = (int16_t)(i + 1);
    }
}

static const st_command *find_name(const char *s, size_t n)
{
    uint32_t h = name_hash(s, n) & (INDEX_SLOTS - 1);
    while (name_index[h]) {
        const st_command *c = &commands[name_index[h] - 1];
        if (strlen(c->name) == n && strncasecmp(c->name, s, n) == 0) return c;
        h = (h + 1) & (INDEX_SLOTS - 1);
    }
    return NULL;
}

static const st_command *find_sub(const st_command *container, const resp_arg *sub)
{
    char key[64];
    size_t cl = strlen(container->name);
    if (cl + 1 + sub->len >= sizeof key) return NULL;
    memcpy(key, container->name, cl);
    key[cl] = '|';
    memcpy(key + cl + 1, sub->ptr, sub->len);
    return find_name(key, cl + 1 + sub->len);
}

uint64_t st_nanos(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- statistics -------------------------------------------------------------- */

static void bump(atomic_uint_fast64_t *a, uint64_t v)
{
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + v, memory_order_relaxed);
}

static int lat_bucket(uint64_t ns)
{
    if (ns < 32) return (int)ns;
    int msb = 63 - __builtin_clzll(ns);
    int b = 32 + (msb - 5) * 16 + (int)((ns >> (msb - 4)) & 15);
    return b < ST_LAT_BUCKETS ? b : ST_LAT_BUCKETS - 1;
}

/* The middle of a bucket, in nanoseconds. */
static double lat_value(int b)
{
    if (b < 32) return b;
    int msb = (b - 32) / 16 + 5, sub = (b - 32) % 16;
    double lo = (double)((uint64_t)(16 + sub) << (msb - 4)), width = (double)(1ull << (msb - 4));
    return lo + width / 2;
}

static void record(st_stats *stats, const st_command *cmd, uint64_t ns, int failed)
{
    st_cmdstat *s = &stats->cmd[cmd - commands];
    bump(&s->calls, 1);
    bump(&s->nanos, ns);
    if (failed) bump(&s->failed, 1);
    bump(&s->hist[lat_bucket(ns)], 1);
}

static void reject(st_stats *stats, const st_command *cmd)
{
    if (cmd) bump(&stats->cmd[cmd - commands].rejected, 1);
}

/* ---- call ------------------------------------------------------------------ */

static int is_skey(const resp_arg *a) { return a->len >= 2 && a->ptr[0] == 's' && a->ptr[1] == ':'; }

static void unknown_command(st_ctx *c)
{
    /* Redis's wording, with the first arguments quoted (at most 128 bytes). */
    char args[160];
    size_t w = 0;
    args[0] = '\0';
    for (int i = 1; i < c->argc && w < 128; i++) {
        int n = snprintf(args + w, sizeof args - w, "'%.*s' ", (int)(c->argv[i].len > 64 ? 64 : c->argv[i].len),
                         c->argv[i].ptr);
        if (n < 0) break;
        w += (size_t)n;
        if (w >= sizeof args) w = sizeof args - 1;
    }
    resp_error(c->out, "ERR unknown command '%.*s', with args beginning with: %s",
               (int)(c->argv[0].len > 64 ? 64 : c->argv[0].len), c->argv[0].ptr, args);
}

st_call_result st_call(st_ctx *c, st_stats *stats, const st_command **out_cmd, uint64_t *t0)
{
    const st_command *cmd = find_name(c->argv[0].ptr, c->argv[0].len);
    if (!cmd || strchr(cmd->name, '|')) {
        unknown_command(c);
        return ST_CALL_DONE;
    }
    if ((cmd->flags & CONTAINER) && (c->argc >= 2 || !cmd->fn)) {
        if (c->argc < 2) {
            reject(stats, cmd);
            resp_error(c->out, "ERR wrong number of arguments for '%s' command", cmd->name);
            return ST_CALL_DONE;
        }
        const st_command *sub = find_sub(cmd, &c->argv[1]);
        if (!sub) {
            reject(stats, cmd);
            char up[32];
            size_t n = strlen(cmd->name);
            for (size_t i = 0; i <= n && i < sizeof up; i++) up[i] = (char)toupper((unsigned char)cmd->name[i]);
            resp_error(c->out, "ERR unknown subcommand '%.*s'. Try %s HELP.",
                       (int)(c->argv[1].len > 64 ? 64 : c->argv[1].len), c->argv[1].ptr, up);
            return ST_CALL_DONE;
        }
        cmd = sub;
    }
    if ((cmd->arity > 0 && c->argc != cmd->arity) || (cmd->arity < 0 && c->argc < -cmd->arity)) {
        reject(stats, cmd);
        resp_error(c->out, "ERR wrong number of arguments for '%s' command", cmd->name);
        return ST_CALL_DONE;
    }
    if (c->session && !c->session->authed && !(cmd->flags & NOAUTH)) {
        reject(stats, cmd);
        resp_error(c->out, "NOAUTH Authentication required.");
        return ST_CALL_DONE;
    }
    if (!c->model && !(cmd->flags & NOMODEL)) {
        reject(stats, cmd);
        resp_error(c->out, "LOADING starling is loading the model in memory");
        return ST_CALL_DONE;
    }
    uint64_t start = st_nanos();
    if ((cmd->flags & HEAVY) || ((cmd->flags & HEAVY_SKEY) && is_skey(&c->argv[1]))) {
        *out_cmd = cmd;
        *t0 = start;
        return ST_CALL_DEFER;
    }
    size_t before = c->out->len;
    cmd->fn(c);
    record(stats, cmd, st_nanos() - start, c->out->len > before && c->out->buf[before] == '-');
    return ST_CALL_DONE;
}

void st_call_heavy(st_ctx *c, const st_command *cmd) { cmd->fn(c); }

size_t st_command_count(void) { return NCOMMANDS; }

const char *st_command_name(size_t i) { return i < NCOMMANDS ? commands[i].name : NULL; }

double st_latency_bucket_ns(int b) { return lat_value(b); }

void st_call_finish(st_stats *stats, const st_command *cmd, uint64_t t0, char first_byte)
{
    record(stats, cmd, st_nanos() - t0, first_byte == '-');
}

/* ---- argument helpers ------------------------------------------------------- */

static int is_word(const resp_arg *a, const char *w)
{
    size_t n = strlen(w);
    return a->len == n && strncasecmp(a->ptr, w, n) == 0;
}

/* Parses a whole integer argument; replies Redis's error and returns -1. */
static int arg_i64(st_ctx *c, const resp_arg *a, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(a->ptr, &end, 10);
    if (a->len == 0 || errno || end != a->ptr + a->len || isspace((unsigned char)a->ptr[0])) {
        resp_error(c->out, "ERR value is not an integer or out of range");
        return -1;
    }
    *out = v;
    return 0;
}

/* A COUNT value: 0..limit. */
static int arg_count(st_ctx *c, const resp_arg *a, uint64_t limit, uint32_t *out)
{
    uint64_t v;
    if (st_parse_u64(a->ptr, &v) != 0 || strlen(a->ptr) != a->len) {
        resp_error(c->out, "ERR COUNT must be a whole number >= 0");
        return -1;
    }
    if (v > limit) {
        resp_error(c->out, "ERR COUNT %llu is over the limit of %llu (--max-count)", (unsigned long long)v,
                   (unsigned long long)limit);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int arg_float(st_ctx *c, const resp_arg *a, const char *what, double *out)
{
    if (strlen(a->ptr) != a->len || st_parse_double(a->ptr, out) != 0) {
        resp_error(c->out, "ERR %s is not a valid number", what);
        return -1;
    }
    return 0;
}

/* The user behind an id: the vector and history answers use. `known` is 0
 * for a user the model has no vector for, or who was forgotten; answers
 * then use the prior. `online` says the vector and history come from the
 * overlay (copied into the thread's scratch: valid until the next
 * find_user on this thread). This is the one place users are looked up. */
typedef struct {
    int known;
    int online;
    const float *x;
    const uint32_t *hist_seg;
    const float *hist_r;
    uint32_t hist_n;
    uint32_t model_u; /* the model's row, or ST_NOT_FOUND */
    uint32_t slot;    /* the overlay's slot when online */
} user_view;

static user_view find_user(st_ctx *c, const char *id, size_t len)
{
    user_view v = {.model_u = ST_NOT_FOUND, .slot = UINT32_MAX};
    const st_served *sv = c->model;
    st_scratch *sc = c->scratch;
    int where = st_overlay_find(sv->ov, id, len, sc->ux, sc->hseg, sc->hr, &v.hist_n, &v.slot);
    if (where == ST_OV_FORGOTTEN) return v;
    if (where == ST_OV_LIVE) {
        v.known = v.online = 1;
        v.x = sc->ux;
        v.hist_seg = sc->hseg;
        v.hist_r = sc->hr;
        return v;
    }
    const st_model *m = &sv->m;
    uint32_t u = st_idmap_find(&m->user_ids, id, len);
    if (u == ST_NOT_FOUND) return v;
    v.known = 1;
    v.model_u = u;
    v.x = st_model_user(m, u, sc->user); /* int8 models: dequantized into the scratch */
    uint64_t h0 = m->hist_ptr[u];
    v.hist_seg = m->hist_idx + h0;
    v.hist_r = m->hist_val + h0;
    v.hist_n = (uint32_t)(m->hist_ptr[u + 1] - h0);
    return v;
}

static const char *user_source(const user_view *u) { return u->online ? "online" : u->known ? "model" : "prior"; }

static uint32_t find_segment(const st_served *sv, const resp_arg *a)
{
    return st_idmap_find(&sv->m.segment_ids, a->ptr, a->len);
}

static void bulk_segment(st_ctx *c, uint32_t s)
{
    size_t n;
    const char *name = st_idmap_name(&c->model->m.segment_ids, s, &n);
    resp_bulk(c->out, name, n);
}

/* Users in a scan: the model's rows, then the overlay's users (the copy in
 * the thread's scratch view). */
static const char *scan_user_name(const void *vctx, uint32_t i, size_t *len)
{
    const st_ctx *c = vctx;
    const st_model *m = &c->model->m;
    if (i < m->users) return st_idmap_name(&m->user_ids, i, len);
    const st_overlay_view *v = &c->scratch->view;
    *len = v->lens[i - m->users];
    return v->ids[i - m->users];
}

static void bulk_user(st_ctx *c, uint32_t u)
{
    size_t n;
    const char *name = scan_user_name(c, u, &n);
    resp_bulk(c->out, name, n);
}

/* In-place heap sort of indices, with their values moved alongside when vals
 * is not NULL (qsort may allocate; the hot path must not). */
static void sort_idx(uint32_t *a, float *vals, uint32_t n)
{
    for (uint32_t start = n / 2; n > 1;) {
        uint32_t root;
        if (start > 0) {
            root = --start;
        } else {
            n--;
            uint32_t t = a[0];
            a[0] = a[n];
            a[n] = t;
            if (vals) {
                float tv = vals[0];
                vals[0] = vals[n];
                vals[n] = tv;
            }
            root = 0;
        }
        for (;;) {
            uint32_t child = 2 * root + 1;
            if (child >= n) break;
            if (child + 1 < n && a[child + 1] > a[child]) child++;
            if (a[root] >= a[child]) break;
            uint32_t t = a[root];
            a[root] = a[child];
            a[child] = t;
            if (vals) {
                float tv = vals[root];
                vals[root] = vals[child];
                vals[child] = tv;
            }
            root = child;
        }
    }
}

/* Replies [seg, score, ...] for the selection idx/top. */
static void reply_segment_pairs(st_ctx *c, const uint32_t *idx, const float *top, uint32_t n)
{
    resp_array(c->out, 2 * (int64_t)n);
    for (uint32_t i = 0; i < n; i++) {
        bulk_segment(c, idx[i]);
        resp_score(c->out, top[i]);
    }
}

/* ---- targeting ------------------------------------------------------------------ */

static int is_segments_keyword(const resp_arg *a)
{
    return is_word(a, "COUNT") || is_word(a, "MIN") || is_word(a, "ONLY") || is_word(a, "EXCLUDE") ||
           is_word(a, "CALIBRATED") || is_word(a, "UNSEEN");
}

static void cmd_segments(st_ctx *c)
{
    st_served *sv = c->model;
    const st_model *m = &sv->m;
    st_scratch *sc = c->scratch;
    uint32_t count = 10;
    double min = -INFINITY;
    int calibrated = 0, unseen = 0, only_from = 0, only_to = 0, ex_from = 0, ex_to = 0;
    for (int i = 2; i < c->argc;) {
        const resp_arg *a = &c->argv[i];
        if (is_word(a, "COUNT") && i + 1 < c->argc) {
            if (arg_count(c, &c->argv[i + 1], m->segments, &count) != 0) return;
            i += 2;
        } else if (is_word(a, "MIN") && i + 1 < c->argc) {
            if (arg_float(c, &c->argv[i + 1], "MIN", &min) != 0) return;
            i += 2;
        } else if (is_word(a, "CALIBRATED")) {
            calibrated = 1;
            i++;
        } else if (is_word(a, "UNSEEN")) {
            unseen = 1;
            i++;
        } else if (is_word(a, "ONLY") || is_word(a, "EXCLUDE")) {
            int only = is_word(a, "ONLY");
            if (only ? only_from : ex_from) {
                resp_error(c->out, "ERR syntax error: %s given twice", only ? "ONLY" : "EXCLUDE");
                return;
            }
            int j = i + 1;
            while (j < c->argc && !is_segments_keyword(&c->argv[j])) j++;
            if (only) {
                only_from = i + 1;
                only_to = j;
            } else {
                ex_from = i + 1;
                ex_to = j;
            }
            i = j;
        } else {
            resp_error(c->out, "ERR syntax error at '%.*s': SEGMENTS user [COUNT k] [MIN score] [ONLY seg ...] "
                               "[EXCLUDE seg ...] [UNSEEN] [CALIBRATED]",
                       (int)(a->len > 64 ? 64 : a->len), a->ptr);
            return;
        }
    }
    if (calibrated && !(m->h.flags & ST_MODEL_CALIBRATED)) {
        resp_error(c->out, "ERR CALIBRATED: this model carries no calibration");
        return;
    }
    user_view u = find_user(c, c->argv[1].ptr, c->argv[1].len);
    /* Calibration is monotone when a > 0: rank on raw scores, then map the
     * survivors; MIN then applies to the calibrated value. A user answered
     * from the prior gets the model's probability for a user with no
     * history: the calibration of the blend alone, w q[s]. */
    int post_calibrate = calibrated;
    float *scores = sc->scores;
    uint32_t n = m->segments, got;
    if (only_from) {
        /* Only the segments listed: score them one by one. */
        uint32_t *segs = sc->segs, ns = 0;
        for (int i = only_from; i < only_to; i++) {
            uint32_t s = find_segment(sv, &c->argv[i]);
            if (s != ST_NOT_FOUND) segs[ns++] = s;
        }
        sort_idx(segs, NULL, ns);
        uint32_t w = 0;
        for (uint32_t i = 0; i < ns; i++)
            if (w == 0 || segs[w - 1] != segs[i]) segs[w++] = segs[i];
        ns = w;
        for (uint32_t i = 0; i < ns; i++) {
            uint32_t s = segs[i];
            scores[i] = u.known ? st_score_one(m, sv->prior, u.x, s) : sv->prior[s];
        }
        for (int i = ex_from; i && i < ex_to; i++) {
            uint32_t s = find_segment(sv, &c->argv[i]);
            for (uint32_t j = 0; j < ns && s != ST_NOT_FOUND; j++)
                if (segs[j] == s) scores[j] = NAN;
        }
        if (unseen)
            for (uint32_t h = 0; h < u.hist_n; h++)
                for (uint32_t j = 0; j < ns; j++)
                    if (segs[j] == u.hist_seg[h]) scores[j] = NAN;
        if (!post_calibrate && !isinf(min))
            for (uint32_t j = 0; j < ns; j++)
                if (!(scores[j] >= min)) scores[j] = NAN;
        got = st_topk(scores, ns, count, NULL, 0, sc->idx, sc->top);
        for (uint32_t i = 0; i < got; i++) sc->idx[i] = segs[sc->idx[i]];
    } else {
        /* EXCLUDE and UNSEEN mark the skip mask, which is cleared again below. */
        int any_skip = 0;
        for (int i = ex_from; i && i < ex_to; i++) {
            uint32_t s = find_segment(sv, &c->argv[i]);
            if (s != ST_NOT_FOUND) sc->skip[s] = any_skip = 1;
        }
        if (unseen)
            for (uint32_t h = 0; h < u.hist_n; h++) sc->skip[u.hist_seg[h]] = any_skip = 1;
        float fmin = post_calibrate ? -INFINITY : (float)min;
        if (u.known) {
            got = st_score_topk_segments(&sv->seg_index, u.x, count, fmin, any_skip ? sc->skip : NULL, sc->idx,
                                         sc->top, NULL);
        } else {
            /* The prior's ranking is fixed: walk it. */
            got = 0;
            for (uint32_t p = 0; p < n && got < count; p++) {
                uint32_t s = sv->prior_rank[p];
                if (sv->prior[s] < fmin) break;
                if (sc->skip[s]) continue;
                sc->idx[got] = s;
                sc->top[got++] = sv->prior[s];
            }
        }
        for (int i = ex_from; i && i < ex_to; i++) {
            uint32_t s = find_segment(sv, &c->argv[i]);
            if (s != ST_NOT_FOUND) sc->skip[s] = 0;
        }
        if (unseen)
            for (uint32_t h = 0; h < u.hist_n; h++) sc->skip[u.hist_seg[h]] = 0;
    }
    if (post_calibrate) {
        uint32_t w = 0;
        for (uint32_t i = 0; i < got; i++) {
            float base = u.known ? sc->top[i] : (float)m->h.prior_weight * sv->prior[sc->idx[i]];
            float p = (float)st_score_calibrated(m, base);
            if (p >= min) {
                sc->idx[w] = sc->idx[i];
                sc->top[w++] = p;
            }
        }
        got = w;
    }
    resp_array(c->out, 2);
    resp_simple(c->out, user_source(&u));
    reply_segment_pairs(c, sc->idx, sc->top, got);
}

static void cmd_score(st_ctx *c)
{
    st_served *sv = c->model;
    const st_model *m = &sv->m;
    /* A last argument CALIBRATED asks for probabilities, as SEGMENTS does
     * (a segment of that name is asked for anywhere but last). */
    int last = c->argc, calibrated = 0;
    if (c->argc >= 4 && is_word(&c->argv[c->argc - 1], "CALIBRATED")) {
        calibrated = 1;
        last--;
        if (!(m->h.flags & ST_MODEL_CALIBRATED)) {
            resp_error(c->out, "ERR CALIBRATED: this model carries no calibration");
            return;
        }
    }
    user_view u = find_user(c, c->argv[1].ptr, c->argv[1].len);
    resp_array(c->out, 2);
    resp_simple(c->out, user_source(&u));
    resp_array(c->out, last - 2);
    for (int i = 2; i < last; i++) {
        uint32_t s = find_segment(sv, &c->argv[i]);
        if (s == ST_NOT_FOUND) resp_null(c->out);
        else if (calibrated) /* a user answered from the prior: the blend alone, w q[s], as SEGMENTS */
            resp_score(c->out, (float)st_score_calibrated(m, u.known ? st_score_one(m, sv->prior, u.x, s)
                                                                      : (float)m->h.prior_weight * sv->prior[s]));
        else resp_score(c->out, u.known ? st_score_one(m, sv->prior, u.x, s) : sv->prior[s]);
    }
}

static void cmd_foldin(st_ctx *c)
{
    st_served *sv = c->model;
    const st_model *m = &sv->m;
    st_scratch *sc = c->scratch;
    uint32_t count = 10;
    int first = 1;
    if (is_word(&c->argv[1], "COUNT") && (c->argc - 1) % 2 == 0) {
        if (arg_count(c, &c->argv[2], m->segments, &count) != 0) return;
        first = 3;
    }
    if (c->argc - first < 2 || (c->argc - first) % 2 != 0) {
        resp_error(c->out, "ERR FOLDIN needs segment weight pairs: FOLDIN [COUNT k] seg weight [seg weight ...]");
        return;
    }
    uint32_t *segs = sc->segs, ns = 0;
    float *r = sc->vals;
    for (int i = first; i < c->argc; i += 2) {
        double w;
        if (strlen(c->argv[i + 1].ptr) != c->argv[i + 1].len || st_parse_double(c->argv[i + 1].ptr, &w) != 0 ||
            w < 0) {
            resp_error(c->out, "ERR weight '%.*s' of segment '%.*s' is not a number >= 0",
                       (int)(c->argv[i + 1].len > 32 ? 32 : c->argv[i + 1].len), c->argv[i + 1].ptr,
                       (int)(c->argv[i].len > 64 ? 64 : c->argv[i].len), c->argv[i].ptr);
            return;
        }
        uint32_t s = find_segment(sv, &c->argv[i]);
        if (s == ST_NOT_FOUND) continue; /* the model cannot use what it has not seen */
        segs[ns] = s;
        r[ns++] = (float)w;
    }
    /* Repeated segments add up, as repeated events do in training; zero
     * engagement is no interaction. */
    sort_idx(segs, r, ns);
    uint32_t w = 0;
    for (uint32_t i = 0; i < ns; i++) {
        if (w > 0 && segs[w - 1] == segs[i]) r[w - 1] += r[i];
        else {
            segs[w] = segs[i];
            r[w++] = r[i];
        }
    }
    ns = 0;
    for (uint32_t i = 0; i < w; i++)
        if (r[i] > 0) {
            segs[ns] = segs[i];
            r[ns++] = r[i];
        }
    float *scores = sc->scores;
    const char *source = "foldin";
    if (ns == 0) {
        memcpy(scores, sv->prior, (size_t)m->segments * sizeof *scores);
        source = "prior";
    } else {
        float *x = scores + m->segments; /* scratch rows hold n + k floats */
        if (st_score_foldin(m, sv->G, segs, r, ns, x, sc->work) != 0) {
            resp_error(c->out, "ERR fold-in failed: the system is not positive definite");
            return;
        }
    }
    uint32_t got = ns == 0 ? st_topk(scores, m->segments, count, NULL, 0, sc->idx, sc->top)
                           : st_score_topk_segments(&sv->seg_index, scores + m->segments, count, -INFINITY, NULL,
                                                    sc->idx, sc->top, NULL);
    resp_array(c->out, 2);
    resp_simple(c->out, source);
    reply_segment_pairs(c, sc->idx, sc->top, got);
}

static int need_segment(st_ctx *c, const resp_arg *a, uint32_t *s)
{
    *s = find_segment(c->model, a);
    if (*s != ST_NOT_FOUND) return 0;
    resp_error(c->out, "ERR unknown segment '%.*s'", (int)(a->len > 128 ? 128 : a->len), a->ptr);
    return -1;
}

/* ---- scans over every user ------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Copies the overlay into the thread's view and makes the scratch hold a
 * score per user (the model's rows, then the overlay's users) plus a
 * centroid. Returns the number of scan positions, or -1 (replied). Heavy
 * pool only: it allocates when the overlay grew. */
static int64_t scan_users(st_ctx *c)
{
    const st_model *m = &c->model->m;
    st_scratch *sc = c->scratch;
    if (st_overlay_snapshot(c->model->ov, &sc->view) != 0 ||
        st_scratch_rows(sc, (uint64_t)m->users + sc->view.n + m->k) != 0) {
        resp_error(c->out, "ERR out of memory");
        return -1;
    }
    return (int64_t)m->users + sc->view.n;
}

/* NaN for the model rows the overlay hides (changed or forgotten users). */
static void hide_rows(st_ctx *c, float *scores)
{
    const st_overlay_view *v = &c->scratch->view;
    if (!v->hidden) return;
    for (uint32_t u = 0; u < v->m; u++)
        if (v->hidden[u]) scores[u] = NAN;
}

/* Every user's blended score for segment s into scratch->scores (NaN for
 * positions that are no user); the count of positions, or -1 (replied). */
static int64_t scan_segment_users(st_ctx *c, uint32_t s)
{
    const st_served *sv = c->model;
    const st_model *m = &sv->m;
    int64_t n = scan_users(c);
    if (n < 0) return -1;
    st_scratch *sc = c->scratch;
    st_score_segment_users(m, sv->prior, s, sc->scores);
    hide_rows(c, sc->scores);
    const st_overlay_view *v = &sc->view;
    for (uint32_t i = 0; i < v->n; i++) sc->scores[m->users + i] = st_score_one(m, sv->prior, v->X + (size_t)i * m->k, s);
    return n;
}

/* Turns the scores under min into NaN; returns how many users are left. */
static uint64_t select_min(float *scores, uint64_t n, double min)
{
    uint64_t left = 0;
    float fmin = (float)min;
    int all = isinf(min) && min < 0;
    for (uint64_t i = 0; i < n; i++) {
        if (isnan(scores[i])) continue;
        if (all || scores[i] >= fmin) left++;
        else scores[i] = NAN;
    }
    return left;
}

/* The privacy floor on audiences: replies the error and returns 1 when
 * fewer than --min-audience users are selected. The count itself is not
 * disclosed: repeated queries could otherwise single users out. */
static int below_floor(st_ctx *c, uint64_t users)
{
    if (users >= c->cfg->min_audience) return 0;
    resp_error(c->out, "ERR audience below the privacy floor of %llu users (--min-audience): fewer users match",
               (unsigned long long)c->cfg->min_audience);
    return 1;
}

/* One pass over every user (scan.c) for the query x + add, the overlay's
 * view taken by scan_users: the best `want` into scratch idx/top, and with
 * count the users scoring at least min. 0, or -1 (replied). */
static int scan_best(st_ctx *c, const float *x, float add, double min, uint32_t want, int count,
                     const uint32_t *exclude, uint64_t nexclude, st_scan_result *res)
{
    const st_overlay_view *v = &c->scratch->view;
    st_scan_query q = {.x = x, .add = add, .min = (float)min, .want = want, .count = count, .skip = v->hidden,
                       .exclude = exclude, .nexclude = nexclude, .extra = v->X, .nextra = v->n};
    if (st_scan_best(&c->model->m, &q, c->scratch->idx, c->scratch->top, res) == 0) return 0;
    resp_error(c->out, "ERR out of memory");
    return -1;
}

static void reply_user_pairs(st_ctx *c, const uint32_t *idx, const float *top, uint32_t n)
{
    resp_array(c->out, 2 * (int64_t)n);
    for (uint32_t i = 0; i < n; i++) {
        bulk_user(c, idx[i]);
        resp_score(c->out, top[i]);
    }
}

static void cmd_audience(st_ctx *c)
{
    uint32_t s, count = 0;
    int have_count = 0;
    double min = -INFINITY;
    if (need_segment(c, &c->argv[1], &s) != 0) return;
    for (int i = 2; i < c->argc; i += 2) {
        if (i + 1 >= c->argc) {
            resp_error(c->out, "ERR syntax error: AUDIENCE seg COUNT n [MIN score]");
            return;
        }
        if (is_word(&c->argv[i], "COUNT")) {
            if (arg_count(c, &c->argv[i + 1], c->cfg->max_count, &count) != 0) return;
            have_count = 1;
        } else if (is_word(&c->argv[i], "MIN")) {
            if (arg_float(c, &c->argv[i + 1], "MIN", &min) != 0) return;
        } else {
            resp_error(c->out, "ERR syntax error: AUDIENCE seg COUNT n [MIN score]");
            return;
        }
    }
    if (!have_count) {
        resp_error(c->out, "ERR AUDIENCE needs COUNT n");
        return;
    }
    const st_model *m = &c->model->m;
    st_scan_result res;
    if (scan_users(c) < 0 ||
        scan_best(c, m->V + (size_t)s * m->k, (float)m->h.prior_weight * c->model->prior[s], min, count, 1, NULL, 0,
                  &res) != 0)
        return;
    if (below_floor(c, res.matching)) return;
    reply_user_pairs(c, c->scratch->idx, c->scratch->top, res.n);
}

/* The distinct known seeds: their vectors into *rows_out (k floats each,
 * from the model or the overlay) and their places in the scan in
 * *keys_out, sorted: place << 20 | argument, where the place is the model
 * row, or users + the overlay slot. Returns how many, or -1 (replied). */
static int64_t gather_seeds(st_ctx *c, float **rows_out, uint64_t **keys_out)
{
    const st_model *m = &c->model->m;
    uint32_t k = m->k, nargs = (uint32_t)(c->argc - 3);
    uint64_t *keys = st_malloc(((size_t)nargs + 1) * sizeof *keys);
    float *xs = st_malloc(((size_t)nargs * k + 1) * sizeof *xs);
    if (!keys || !xs) {
        st_free(keys);
        st_free(xs);
        resp_error(c->out, "ERR out of memory");
        return -1;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < nargs; i++) {
        user_view u = find_user(c, c->argv[3 + i].ptr, c->argv[3 + i].len);
        if (!u.known) continue;
        uint64_t place = u.online ? (uint64_t)m->users + u.slot : u.model_u;
        memcpy(xs + (size_t)i * k, u.x, k * sizeof *xs);
        keys[n++] = place << 20 | i;
    }
    qsort(keys, n, sizeof *keys, cmp_u64);
    uint32_t w = 0;
    for (uint32_t i = 0; i < n; i++)
        if (w == 0 || keys[w - 1] >> 20 != keys[i] >> 20) keys[w++] = keys[i];
    float *rows = st_malloc(((size_t)w * k + 1) * sizeof *rows);
    if (!rows) {
        st_free(keys);
        st_free(xs);
        resp_error(c->out, "ERR out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < w; i++)
        memcpy(rows + (size_t)i * k, xs + (size_t)(keys[i] & 0xfffff) * k, k * sizeof *rows);
    st_free(xs);
    *rows_out = rows;
    *keys_out = keys;
    return w;
}

static void cmd_lookalike(st_ctx *c)
{
    const st_model *m = &c->model->m;
    st_scratch *sc = c->scratch;
    uint32_t count, k = m->k;
    if (!is_word(&c->argv[1], "COUNT")) {
        resp_error(c->out, "ERR syntax error: LOOKALIKE COUNT n user [user ...]");
        return;
    }
    if (arg_count(c, &c->argv[2], c->cfg->max_count, &count) != 0) return;
    if (c->argc - 3 > (1 << 20)) {
        resp_error(c->out, "ERR too many seed users (at most 1048576)");
        return;
    }
    float *rows;
    uint64_t *keys;
    int64_t nseeds = gather_seeds(c, &rows, &keys);
    if (nseeds < 0) return;
    uint64_t floor = c->cfg->min_seeds ? c->cfg->min_seeds : 1;
    if ((uint64_t)nseeds < floor) {
        if (nseeds == 0 && floor == 1)
            resp_error(c->out, "ERR none of the %d seed users is in the model", c->argc - 3);
        else
            resp_error(c->out, "ERR %lld of the %d seeds are known users; look-alikes need at least %llu (the privacy "
                               "floor, --min-seeds)",
                       (long long)nseeds, c->argc - 3, (unsigned long long)floor);
        st_free(rows);
        st_free(keys);
        return;
    }
    int64_t n = scan_users(c);
    if (n < 0) {
        st_free(rows);
        st_free(keys);
        return;
    }
    /* The centroid of the seeds' vectors (summed in double), every user's
     * score against it; seeds are not their own look-alikes: their scan
     * positions (ascending, as keys are) are excluded. */
    uint32_t *iota = sc->segs;
    for (uint32_t i = 0; i < (uint32_t)nseeds; i++) iota[i] = i;
    float *centroid = sc->scores + n;
    st_score_centroid(rows, k, iota, (uint32_t)nseeds, centroid);
    const st_overlay_view *v = &sc->view;
    uint32_t *exclude = sc->segs, nexclude = 0;
    for (int64_t i = 0; i < nseeds; i++) {
        uint64_t place = keys[i] >> 20;
        if (place < m->users) {
            exclude[nexclude++] = (uint32_t)place;
            continue;
        }
        uint32_t slot = (uint32_t)(place - m->users), lo = 0, hi = v->n;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (v->slots[mid] < slot) lo = mid + 1;
            else hi = mid;
        }
        if (lo < v->n && v->slots[lo] == slot) exclude[nexclude++] = m->users + lo;
    }
    st_free(rows);
    st_free(keys);
    st_scan_result res;
    if (scan_best(c, centroid, -0.0f, -INFINITY, count, 0, exclude, nexclude, &res) != 0) return;
    uint32_t got = res.n;
    if (got < c->cfg->min_audience) {
        resp_error(c->out, "ERR only %u look-alikes: below the privacy floor of %llu (--min-audience)", got,
                   (unsigned long long)c->cfg->min_audience);
        return;
    }
    reply_user_pairs(c, sc->idx, sc->top, got);
}

static void cmd_reach(st_ctx *c)
{
    uint32_t s;
    double min;
    if (need_segment(c, &c->argv[1], &s) != 0) return;
    if (!is_word(&c->argv[2], "MIN")) {
        resp_error(c->out, "ERR syntax error: REACH seg MIN score");
        return;
    }
    if (arg_float(c, &c->argv[3], "MIN", &min) != 0) return;
    const st_model *m = &c->model->m;
    st_scan_result res;
    if (scan_users(c) < 0 ||
        scan_best(c, m->V + (size_t)s * m->k, (float)m->h.prior_weight * c->model->prior[s], min, 0, 1, NULL, 0,
                  &res) != 0)
        return;
    if (below_floor(c, res.matching)) return;
    resp_int(c->out, (int64_t)res.matching);
}

static void cmd_similar(st_ctx *c)
{
    uint32_t s, count;
    if (need_segment(c, &c->argv[1], &s) != 0) return;
    if (!is_word(&c->argv[2], "COUNT")) {
        resp_error(c->out, "ERR syntax error: SIMILAR seg COUNT n");
        return;
    }
    if (arg_count(c, &c->argv[3], c->model->m.segments, &count) != 0) return;
    st_scratch *sc = c->scratch;
    uint32_t got = st_score_similar(&c->model->m, c->model->seg_norms, s, count, sc->scores, sc->idx, sc->top);
    reply_segment_pairs(c, sc->idx, sc->top, got);
}

static void cmd_explain(st_ctx *c)
{
    st_served *sv = c->model;
    const st_model *m = &sv->m;
    st_scratch *sc = c->scratch;
    uint32_t s, count = 10;
    if (c->argc != 3 && !(c->argc == 5 && is_word(&c->argv[3], "COUNT"))) {
        resp_error(c->out, "ERR syntax error: EXPLAIN user seg [COUNT n]");
        return;
    }
    if (c->argc == 5 && arg_count(c, &c->argv[4], m->segments, &count) != 0) return;
    user_view u = find_user(c, c->argv[1].ptr, c->argv[1].len);
    if (!u.known) {
        resp_error(c->out, "ERR unknown user '%.*s': no history to explain (its scores come from the prior)",
                   (int)(c->argv[1].len > 128 ? 128 : c->argv[1].len), c->argv[1].ptr);
        return;
    }
    if (need_segment(c, &c->argv[2], &s) != 0) return;
    if (st_scratch_work(sc, st_score_explain_scratch(m, u.hist_n)) != 0) {
        resp_error(c->out, "ERR out of memory");
        return;
    }
    float *contrib = sc->scores; /* history length <= segments <= scratch rows */
    if (st_score_explain(m, sv->G, u.hist_seg, u.hist_r, u.hist_n, s, contrib, sc->work) != 0) {
        resp_error(c->out, "ERR explanation failed: the system is not positive definite");
        return;
    }
    double total = 0;
    for (uint32_t i = 0; i < u.hist_n; i++) total += contrib[i];
    uint32_t got = st_topk(contrib, u.hist_n, count, NULL, 0, sc->idx, sc->top);
    for (uint32_t i = 0; i < got; i++) sc->idx[i] = u.hist_seg[sc->idx[i]];
    resp_array(c->out, 2);
    resp_score(c->out, (float)total);
    reply_segment_pairs(c, sc->idx, sc->top, got);
}

static void kv_str(resp_out *o, const char *k, const char *v)
{
    resp_bulk_str(o, k);
    resp_bulk_str(o, v);
}

static void kv_int(resp_out *o, const char *k, int64_t v)
{
    resp_bulk_str(o, k);
    resp_int(o, v);
}

static void kv_num(resp_out *o, const char *k, double v)
{
    char b[64];
    snprintf(b, sizeof b, "%.17g", v);
    kv_str(o, k, b);
}

/* MODEL INFO: the model's provenance, then its hyper-parameters, then each
 * META line as "meta.<key>" (inputs, kind weights, and the evaluation
 * figures `starling eval -o` stores). */
static void cmd_model_info(st_ctx *c)
{
    st_served *sv = c->model;
    const st_model *m = &sv->m;
    const st_model_header *h = &m->h;
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)h->fingerprint);
    uint64_t jid, jseq;
    st_overlay_lineage(sv->ov, &jid, &jseq);
    char jids[32];
    snprintf(jids, sizeof jids, "%016llx", (unsigned long long)jid);
    int64_t nmeta = 0;
    for (size_t i = 0; i < m->meta_len; i++)
        nmeta += m->meta[i] == '\n' || (i + 1 == m->meta_len);
    int calibrated = (h->flags & ST_MODEL_CALIBRATED) != 0;
    resp_array(c->out, 2 * (14 + 13 + 2 + 2 * calibrated + nmeta));
    kv_str(c->out, "path", sv->path);
    kv_int(c->out, "generation", (int64_t)sv->generation);
    kv_int(c->out, "loaded_at", (int64_t)sv->loaded_at);
    kv_int(c->out, "users", m->users);
    kv_int(c->out, "segments", m->segments);
    kv_int(c->out, "factors", m->k);
    kv_int(c->out, "nnz", (int64_t)h->nnz);
    kv_int(c->out, "events", (int64_t)h->events);
    kv_int(c->out, "iterations", h->iterations);
    kv_num(c->out, "final_loss", h->final_loss);
    kv_str(c->out, "fingerprint", fp);
    kv_int(c->out, "created", h->created);
    kv_int(c->out, "calibrated", calibrated);
    kv_int(c->out, "file_bytes", (int64_t)h->file_bytes);
    kv_str(c->out, "journal_id", jid ? jids : "");
    kv_int(c->out, "journal_seq", (int64_t)jseq);
    kv_int(c->out, "iterations_asked", h->iterations_asked);
    kv_str(c->out, "user_factors", (h->flags & ST_MODEL_INT8) ? "int8" : "float32");
    kv_str(c->out, "solver", st_solver_name((st_solver)h->solver));
    kv_int(c->out, "cg_steps", h->cg_steps);
    kv_str(c->out, "confidence", st_conf_name((st_conf_scheme)h->confidence));
    kv_num(c->out, "alpha", h->alpha);
    kv_num(c->out, "eps", h->eps);
    kv_num(c->out, "lambda", h->lambda);
    kv_str(c->out, "regularization", st_reg_name((st_reg_scheme)h->regularization));
    kv_num(c->out, "unobserved_weight", h->unobserved_weight > 0 ? h->unobserved_weight : 1);
    kv_int(c->out, "seed", (int64_t)h->seed);
    kv_num(c->out, "half_life", h->half_life);
    kv_num(c->out, "prior_weight", h->prior_weight);
    kv_int(c->out, "threads", h->threads);
    if (calibrated) {
        kv_num(c->out, "calib_a", h->calib_a);
        kv_num(c->out, "calib_b", h->calib_b);
    }
    /* META is key=value lines; a line without '=' is a key with an empty value. */
    const char *p = m->meta, *end = m->meta + m->meta_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *eq = memchr(p, '=', (size_t)(le - p));
        const char *ke = eq ? eq : le;
        char key[160];
        int kn = snprintf(key, sizeof key, "meta.%.*s", (int)(ke - p > 150 ? 150 : ke - p), p);
        resp_bulk(c->out, key, (size_t)(kn < (int)sizeof key ? kn : (int)sizeof key - 1));
        if (eq) resp_bulk(c->out, eq + 1, (size_t)(le - eq - 1));
        else resp_bulk(c->out, "", 0);
        p = le + 1;
    }
}

static void cmd_model_reload(st_ctx *c)
{
    const char *path = NULL;
    if (c->argc > 3) {
        resp_error(c->out, "ERR wrong number of arguments for 'model|reload' command");
        return;
    }
    if (c->argc == 3) {
        if (!c->cfg->allow_reload_path) {
            resp_error(c->out, "ERR MODEL RELOAD with a path is disabled; the server reloads its own model file "
                               "unless started with --allow-reload-path");
            return;
        }
        path = c->argv[2].ptr;
        if (strlen(path) != c->argv[2].len) {
            resp_error(c->out, "ERR the path contains a NUL byte");
            return;
        }
    }
    char err[ST_ERRLEN];
    if (st_server_reload(c->srv, path, err) != 0) resp_error(c->out, "ERR reload failed, still serving the previous model: %s", err);
    else resp_simple(c->out, "OK");
}

/* ---- sorted-set views -------------------------------------------------------------- */

typedef struct {
    char kind; /* 'u', 's', or 0 for a key that does not exist */
    uint32_t idx;
    user_view u;
} view_key;

static view_key parse_key(st_ctx *c, const resp_arg *k)
{
    view_key v = {0};
    if (k->len < 2 || k->ptr[1] != ':') return v;
    if (k->ptr[0] == 'u') {
        v.u = find_user(c, k->ptr + 2, k->len - 2);
        if (v.u.known) v.kind = 'u';
    } else if (k->ptr[0] == 's') {
        v.idx = st_idmap_find(&c->model->m.segment_ids, k->ptr + 2, k->len - 2);
        if (v.idx != ST_NOT_FOUND) v.kind = 's';
    }
    return v;
}

/* Members of the view: segments, or every user (the model's and online). */
static uint64_t view_card(st_ctx *c, const view_key *k)
{
    return k->kind == 'u' ? c->model->m.segments : k->kind == 's' ? st_overlay_users(c->model->ov) : 0;
}

static const char *segment_name(const void *ctx, uint32_t i, size_t *len)
{
    return st_idmap_name(ctx, i, len);
}

/* Every member's score into scratch->scores, NaN for positions that are no
 * member; returns the number of positions, or -1 (replied). s: keys run on
 * the heavy pool (HEAVY_SKEY), which may allocate for the scan. */
static int64_t view_scores(st_ctx *c, const view_key *k)
{
    const st_served *sv = c->model;
    if (k->kind == 'u') {
        st_score_blend(&sv->m, sv->prior, k->u.x, c->scratch->scores);
        return sv->m.segments;
    }
    return scan_segment_users(c, k->idx);
}

static uint32_t view_topk(st_ctx *c, const view_key *k, uint32_t n, uint32_t want, int rev)
{
    st_scratch *sc = c->scratch;
    if (k->kind == 'u')
        return st_topk_members(sc->scores, n, want, rev, segment_name, &c->model->m.segment_ids, sc->idx, sc->top);
    return st_topk_members(sc->scores, n, want, rev, scan_user_name, c, sc->idx, sc->top);
}

/* The score of one member, or 0 when the member is not in the view. */
static int view_score(st_ctx *c, const view_key *k, const resp_arg *member, float *score)
{
    const st_served *sv = c->model;
    const st_model *m = &sv->m;
    if (k->kind == 'u') {
        uint32_t s = st_idmap_find(&m->segment_ids, member->ptr, member->len);
        if (s == ST_NOT_FOUND) return 0;
        *score = st_score_one(m, sv->prior, k->u.x, s);
        return 1;
    }
    if (k->kind == 's') {
        user_view u = find_user(c, member->ptr, member->len);
        if (!u.known) return 0;
        *score = st_score_one(m, sv->prior, u.x, k->idx);
        return 1;
    }
    return 0;
}

/* A score bound as Redis parses it: "(x" is exclusive, inf and -inf work. */
typedef struct {
    double min, max;
    int minex, maxex;
} score_range;

static int parse_bound(const resp_arg *a, double *v, int *ex)
{
    const char *p = a->ptr;
    *ex = 0;
    if (*p == '(') {
        *ex = 1;
        p++;
    }
    /* strtod's grammar, as Redis uses it: "(" alone is an exclusive 0. */
    char *end;
    double d = strtod(p, &end);
    if (end != a->ptr + a->len || isnan(d)) return -1;
    *v = d;
    return 0;
}

/* Compares in float: a bound copied from a reply (the shortest text that
 * reads back as the score's float) then selects exactly that score, as the
 * same text does in Redis, which stores the text's double. */
/* Parses a [min, max] pair; replies Redis's error and returns -1. */
static int parse_range(st_ctx *c, const resp_arg *lo, const resp_arg *hi, score_range *r)
{
    if (parse_bound(lo, &r->min, &r->minex) == 0 && parse_bound(hi, &r->max, &r->maxex) == 0) return 0;
    resp_error(c->out, "ERR min or max is not a float");
    return -1;
}

static int in_range(const score_range *r, float v)
{
    float lo = (float)r->min, hi = (float)r->max;
    if (r->minex ? !(v > lo) : !(v >= lo)) return 0;
    if (r->maxex ? !(v < hi) : !(v <= hi)) return 0;
    return 1;
}

/* Replies members idx[from..to) with their scores when withscores. */
static void reply_members(st_ctx *c, const view_key *k, const uint32_t *idx, const float *top, uint32_t from,
                          uint32_t to, int withscores)
{
    resp_array(c->out, (int64_t)(to - from) * (withscores ? 2 : 1));
    for (uint32_t i = from; i < to; i++) {
        size_t n;
        const char *name =
            k->kind == 'u' ? st_idmap_name(&c->model->m.segment_ids, idx[i], &n) : scan_user_name(c, idx[i], &n);
        resp_bulk(c->out, name, n);
        if (withscores) resp_score(c->out, top[i]);
    }
}

static int too_many(st_ctx *c, uint64_t want)
{
    if (want <= c->cfg->max_count) return 0;
    resp_error(c->out, "ERR the range holds %llu members, more than one reply may (%llu, --max-count)",
               (unsigned long long)want, (unsigned long long)c->cfg->max_count);
    return 1;
}

enum { BY_RANK, BY_SCORE, BY_LEX };

/* The shared body of ZRANGE, ZREVRANGE, ZRANGEBYSCORE and ZREVRANGEBYSCORE:
 * key at argv[1], the two range arguments at argv[2..3], options from
 * argv[4]. `by` and `rev` come from the command, or from ZRANGE's options.
 * The users of s:<segment> are an audience: the privacy floor applies to
 * all of them (by rank) or to those in the score range. */
static void zrange_generic(st_ctx *c, int by, int rev, int zrange_syntax)
{
    int withscores = 0, have_limit = 0;
    int64_t offset = 0, limit = -1;
    for (int i = 4; i < c->argc; i++) {
        const resp_arg *a = &c->argv[i];
        int left = c->argc - i - 1;
        if (is_word(a, "WITHSCORES")) withscores = 1;
        else if (is_word(a, "LIMIT") && left >= 2) {
            if (arg_i64(c, &c->argv[i + 1], &offset) != 0 || arg_i64(c, &c->argv[i + 2], &limit) != 0) return;
            have_limit = 1;
            i += 2;
        } else if (zrange_syntax && is_word(a, "BYSCORE")) by = BY_SCORE;
        else if (zrange_syntax && is_word(a, "BYLEX")) by = BY_LEX;
        else if (zrange_syntax && is_word(a, "REV")) rev = 1;
        else {
            resp_error(c->out, "ERR syntax error");
            return;
        }
    }
    if (have_limit && by == BY_RANK) {
        resp_error(c->out, "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
        return;
    }
    if (withscores && by == BY_LEX) {
        resp_error(c->out, "ERR syntax error, WITHSCORES not supported in combination with BYLEX");
        return;
    }
    if (by == BY_LEX) {
        resp_error(c->out, "ERR BYLEX is not supported: these sorted sets are ordered by score");
        return;
    }
    int64_t start = 0, stop = 0;
    score_range r = {0};
    if (by == BY_RANK) {
        if (arg_i64(c, &c->argv[2], &start) != 0 || arg_i64(c, &c->argv[3], &stop) != 0) return;
    } else {
        /* Reversed score ranges are written max first. */
        if (parse_range(c, rev ? &c->argv[3] : &c->argv[2], rev ? &c->argv[2] : &c->argv[3], &r) != 0) return;
    }
    view_key k = parse_key(c, &c->argv[1]);
    if (!k.kind) {
        resp_array(c->out, 0);
        return;
    }
    st_scratch *sc = c->scratch;
    int64_t n = view_scores(c, &k);
    if (n < 0) return;
    float *scores = sc->scores;
    uint32_t npos = (uint32_t)n;
    if (by == BY_RANK) {
        int64_t card = (int64_t)select_min(scores, npos, -INFINITY);
        if (k.kind == 's' && below_floor(c, (uint64_t)card)) return;
        /* Redis's index arithmetic, exactly. */
        if (start < 0) start += card;
        if (stop < 0) stop += card;
        if (start < 0) start = 0;
        if (start > stop || start >= card) {
            resp_array(c->out, 0);
            return;
        }
        if (stop >= card) stop = card - 1;
        if (too_many(c, (uint64_t)(stop - start + 1))) return;
        uint32_t got = view_topk(c, &k, npos, (uint32_t)stop + 1, rev);
        reply_members(c, &k, sc->idx, sc->top, (uint32_t)start, got, withscores);
        return;
    }
    uint32_t matching = 0;
    for (uint32_t i = 0; i < npos; i++) {
        if (in_range(&r, scores[i])) matching++;
        else scores[i] = NAN;
    }
    if (k.kind == 's' && below_floor(c, matching)) return;
    /* A negative offset gives nothing and a negative count everything, as
     * in Redis. */
    if (offset < 0 || limit == 0 || (uint64_t)offset >= matching) {
        resp_array(c->out, 0);
        return;
    }
    uint64_t want = matching;
    if (limit > 0 && (uint64_t)offset + (uint64_t)limit < want) want = (uint64_t)offset + (uint64_t)limit;
    if (too_many(c, want - (uint64_t)offset)) return;
    uint32_t got = view_topk(c, &k, npos, (uint32_t)want, rev);
    reply_members(c, &k, sc->idx, sc->top, (uint32_t)offset, got, withscores);
}

static void cmd_zrange(st_ctx *c) { zrange_generic(c, BY_RANK, 0, 1); }
static void cmd_zrevrange(st_ctx *c) { zrange_generic(c, BY_RANK, 1, 0); }
static void cmd_zrangebyscore(st_ctx *c) { zrange_generic(c, BY_SCORE, 0, 0); }
static void cmd_zrevrangebyscore(st_ctx *c) { zrange_generic(c, BY_SCORE, 1, 0); }

static void cmd_zscore(st_ctx *c)
{
    view_key k = parse_key(c, &c->argv[1]);
    float s;
    if (k.kind && view_score(c, &k, &c->argv[2], &s)) resp_score(c->out, s);
    else resp_null(c->out);
}

static void cmd_zmscore(st_ctx *c)
{
    view_key k = parse_key(c, &c->argv[1]);
    resp_array(c->out, c->argc - 2);
    for (int i = 2; i < c->argc; i++) {
        float s;
        if (k.kind && view_score(c, &k, &c->argv[i], &s)) resp_score(c->out, s);
        else resp_null(c->out);
    }
}

static void cmd_zcount(st_ctx *c)
{
    score_range r;
    if (parse_range(c, &c->argv[2], &c->argv[3], &r) != 0) return;
    view_key k = parse_key(c, &c->argv[1]);
    if (!k.kind) {
        resp_int(c->out, 0);
        return;
    }
    int64_t npos = view_scores(c, &k);
    if (npos < 0) return;
    int64_t n = 0;
    for (int64_t i = 0; i < npos; i++) n += in_range(&r, c->scratch->scores[i]);
    if (k.kind == 's' && below_floor(c, (uint64_t)n)) return;
    resp_int(c->out, n);
}

static void cmd_zcard(st_ctx *c)
{
    view_key k = parse_key(c, &c->argv[1]);
    resp_int(c->out, (int64_t)view_card(c, &k));
}

static void cmd_exists(st_ctx *c)
{
    int64_t n = 0;
    for (int i = 1; i < c->argc; i++) n += parse_key(c, &c->argv[i]).kind != 0;
    resp_int(c->out, n);
}

static void cmd_type(st_ctx *c) { resp_simple(c->out, parse_key(c, &c->argv[1]).kind ? "zset" : "none"); }

/* ---- online writes ------------------------------------------------------------------ */

/* An id a write may store: not empty, no NUL byte, and short enough for one
 * journal record. Replies the error and returns -1 otherwise. */
static int arg_id(st_ctx *c, const resp_arg *a, const char *what)
{
    if (a->len == 0 || memchr(a->ptr, '\0', a->len)) {
        resp_error(c->out, "ERR the %s id must not be empty or contain a NUL byte", what);
        return -1;
    }
    if (a->len > ST_JOURNAL_MAX_RECORD / 4) {
        resp_error(c->out, "ERR the %s id is longer than %u bytes", what, ST_JOURNAL_MAX_RECORD / 4);
        return -1;
    }
    return 0;
}

/* An event's weight: a finite number >= 0, as in an event log. */
static int arg_weight(st_ctx *c, const resp_arg *a, double *w)
{
    if (strlen(a->ptr) != a->len || st_parse_double(a->ptr, w) != 0 || *w < 0) {
        resp_error(c->out, "ERR weight '%.*s' is not a number >= 0 (engagement only adds up; FORGET erases)",
                   (int)(a->len > 32 ? 32 : a->len), a->ptr);
        return -1;
    }
    return 0;
}

static double unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Applies and journals r. On success the connection's replies from here
 * on wait for r's record to be durable (under appendfsync always); on
 * failure the error is replied. */
static int do_write(st_ctx *c, st_jrecord *r, st_write_result *res)
{
    char err[ST_ERRLEN];
    if (st_server_write(c->srv, r, c->scratch, res, err) != 0) {
        resp_error(c->out, "%s", err);
        return -1;
    }
    if (c->session && res->seq > c->session->journal_wait) c->session->journal_wait = res->seq;
    return 0;
}

static st_jrecord event_record(const resp_arg *user, const resp_arg *seg, double weight, const resp_arg *kind,
                               double ts)
{
    st_jrecord r = {.type = ST_JREC_EVENT,
                    .user = user->ptr,
                    .user_len = (uint32_t)user->len,
                    .segment = seg->ptr,
                    .segment_len = (uint32_t)seg->len,
                    .kind = kind && kind->len ? kind->ptr : NULL,
                    .kind_len = kind ? (uint32_t)kind->len : 0,
                    .weight = weight,
                    .ts = ts};
    return r;
}

/* Before an EVENT is applied: was its segment among the user's best 10 and
 * 50 segments not yet engaged with, as SEGMENTS ... UNSEEN ranks them, and
 * among the 10 and 50 most popular of those? Counted on the served model
 * (INFO quality, /metrics): how well the rankings predicted what happened. */
static void online_quality(st_ctx *c, const resp_arg *user, const resp_arg *seg)
{
    st_served *sv = c->model;
    st_scratch *sc = c->scratch;
    uint32_t s = find_segment(sv, seg);
    if (s == ST_NOT_FOUND) return;
    user_view u = find_user(c, user->ptr, user->len);
    for (uint32_t h = 0; h < u.hist_n; h++)
        if (u.hist_seg[h] == s) {
            atomic_fetch_add_explicit(&sv->q_repeat, 1, memory_order_relaxed);
            return;
        }
    for (uint32_t h = 0; h < u.hist_n; h++) sc->skip[u.hist_seg[h]] = 1;
    /* Popularity (the prior's order), and the model's ranking: the same for
     * a user answered from the prior. */
    uint32_t pop = UINT32_MAX, mod = UINT32_MAX, ahead = 0;
    for (uint32_t p = 0; p < sv->m.segments && ahead < 50; p++) {
        uint32_t t = sv->prior_rank[p];
        if (t == s) {
            pop = ahead;
            break;
        }
        ahead += !sc->skip[t];
    }
    if (!u.known) {
        mod = pop;
    } else {
        uint32_t got = st_score_topk_segments(&sv->seg_index, u.x, 50, -INFINITY, sc->skip, sc->idx, sc->top, NULL);
        for (uint32_t i = 0; i < got; i++)
            if (sc->idx[i] == s) mod = i;
    }
    for (uint32_t h = 0; h < u.hist_n; h++) sc->skip[u.hist_seg[h]] = 0;
    atomic_fetch_add_explicit(&sv->q_new, 1, memory_order_relaxed);
    if (mod < 10) atomic_fetch_add_explicit(&sv->q_hit10, 1, memory_order_relaxed);
    if (mod < 50) atomic_fetch_add_explicit(&sv->q_hit50, 1, memory_order_relaxed);
    if (pop < 10) atomic_fetch_add_explicit(&sv->q_pop10, 1, memory_order_relaxed);
    if (pop < 50) atomic_fetch_add_explicit(&sv->q_pop50, 1, memory_order_relaxed);
}

static void cmd_event(st_ctx *c)
{
    double weight, ts = NAN;
    const resp_arg *kind = NULL;
    if (arg_id(c, &c->argv[1], "user") != 0 || arg_id(c, &c->argv[2], "segment") != 0 ||
        arg_weight(c, &c->argv[3], &weight) != 0)
        return;
    for (int i = 4; i < c->argc; i += 2) {
        const resp_arg *a = &c->argv[i];
        if (i + 1 < c->argc && is_word(a, "KIND")) {
            kind = &c->argv[i + 1];
            if (kind->len && arg_id(c, kind, "kind") != 0) return;
        } else if (i + 1 < c->argc && is_word(a, "TS")) {
            if (st_parse_timestamp(c->argv[i + 1].ptr, c->argv[i + 1].len, &ts) != 0) {
                resp_error(c->out, "ERR TS '%.*s' is not a time (unix seconds or ISO 8601)",
                           (int)(c->argv[i + 1].len > 40 ? 40 : c->argv[i + 1].len), c->argv[i + 1].ptr);
                return;
            }
        } else {
            resp_error(c->out, "ERR syntax error at '%.*s': EVENT user seg weight [KIND kind] [TS time]",
                       (int)(a->len > 64 ? 64 : a->len), a->ptr);
            return;
        }
    }
    /* The time of receipt when none is given: training with a half-life
     * needs one, and replay must weigh the event as it was weighed now. */
    if (isnan(ts)) ts = unix_now();
    if (weight > 0) online_quality(c, &c->argv[1], &c->argv[2]);
    st_jrecord r = event_record(&c->argv[1], &c->argv[2], weight, kind, ts);
    st_write_result res;
    if (do_write(c, &r, &res) == 0) resp_simple(c->out, "OK");
}

static void cmd_zincrby(st_ctx *c)
{
    const resp_arg *key = &c->argv[1];
    if (key->len < 2 || key->ptr[0] != 'u' || key->ptr[1] != ':') {
        resp_error(c->out, "ERR ZINCRBY takes u:<user> keys (the users of s:<segment> change through their own "
                           "events)");
        return;
    }
    resp_arg user = {key->ptr + 2, key->len - 2};
    double weight;
    if (strlen(c->argv[2].ptr) != c->argv[2].len || st_parse_double(c->argv[2].ptr, &weight) != 0) {
        resp_error(c->out, "ERR value is not a valid float");
        return;
    }
    if (arg_id(c, &user, "user") != 0 || arg_id(c, &c->argv[3], "segment") != 0 ||
        arg_weight(c, &c->argv[2], &weight) != 0)
        return;
    st_jrecord r = event_record(&user, &c->argv[3], weight, NULL, unix_now());
    st_write_result res;
    if (do_write(c, &r, &res) != 0) return;
    uint32_t s = find_segment(c->model, &c->argv[3]);
    if (!isnan(res.score)) {
        resp_score(c->out, res.score);
    } else if (s != ST_NOT_FOUND) { /* a zero increment: the score as it is */
        user_view u = find_user(c, user.ptr, user.len);
        resp_score(c->out, u.known ? st_score_one(&c->model->m, c->model->prior, u.x, s) : c->model->prior[s]);
    } else {
        resp_null(c->out); /* journaled for the next training; this model has no such segment */
    }
}

static void cmd_forget(st_ctx *c)
{
    if (arg_id(c, &c->argv[1], "user") != 0) return;
    st_jrecord r = {.type = ST_JREC_FORGET, .user = c->argv[1].ptr, .user_len = (uint32_t)c->argv[1].len};
    st_write_result res;
    if (do_write(c, &r, &res) == 0) resp_simple(c->out, "OK");
}

/* DEL and UNLINK: FORGET for every u:<user> key; the reply counts the users
 * that appeared in replies before. Other keys do not exist, as in Redis,
 * except s:<segment>, which a client cannot delete. */
static void cmd_del(st_ctx *c)
{
    for (int i = 1; i < c->argc; i++) {
        const resp_arg *k = &c->argv[i];
        if (k->len >= 2 && k->ptr[0] == 's' && k->ptr[1] == ':') {
            resp_error(c->out, "ERR s:<segment> keys cannot be deleted: segments come from the model");
            return;
        }
        resp_arg user = {k->ptr + 2, k->len - 2};
        if (k->len >= 2 && k->ptr[0] == 'u' && k->ptr[1] == ':' && arg_id(c, &user, "user") != 0) return;
    }
    int64_t existed = 0, done = 0;
    for (int i = 1; i < c->argc; i++) {
        const resp_arg *k = &c->argv[i];
        if (k->len < 2 || k->ptr[0] != 'u' || k->ptr[1] != ':') continue;
        st_jrecord r = {.type = ST_JREC_FORGET, .user = k->ptr + 2, .user_len = (uint32_t)k->len - 2};
        st_write_result res;
        char err[ST_ERRLEN];
        if (st_server_write(c->srv, &r, c->scratch, &res, err) != 0) {
            if (done) resp_error(c->out, "%s (the %lld keys before it were deleted)", err, (long long)done);
            else resp_error(c->out, "%s", err);
            return;
        }
        if (c->session && res.seq > c->session->journal_wait) c->session->journal_wait = res.seq;
        existed += res.existed;
        done++;
    }
    resp_int(c->out, existed);
}

/* What the server holds about a user: the engagement by segment behind their
 * vector (the model's training history, plus what EVENT added). */
static void cmd_history(st_ctx *c)
{
    user_view u = find_user(c, c->argv[1].ptr, c->argv[1].len);
    resp_array(c->out, 2);
    resp_simple(c->out, u.known ? user_source(&u) : "none");
    resp_array(c->out, 2 * (int64_t)u.hist_n);
    for (uint32_t i = 0; u.known && i < u.hist_n; i++) {
        bulk_segment(c, u.hist_seg[i]);
        resp_score(c->out, u.hist_r[i]);
    }
}

static void cmd_journal_compact(st_ctx *c)
{
    char err[ST_ERRLEN];
    if (st_server_compact(c->srv, err) != 0) resp_error(c->out, "%s", err);
    else resp_simple(c->out, "Background journal compaction started");
}

/* ---- DEBUG: failure injection for tests ------------------------------------------ */

static int debug_allowed(st_ctx *c)
{
    if (c->cfg->enable_debug) return 1;
    resp_error(c->out, "ERR DEBUG command not allowed: start the server with --enable-debug-command (it can make "
                       "writes fail; for tests only)");
    return 0;
}

static void cmd_debug_io_fail_after(st_ctx *c)
{
    int64_t n;
    if (!debug_allowed(c) || arg_i64(c, &c->argv[2], &n) != 0) return;
    st_io_fail_after(n < 0 ? -1 : n);
    resp_simple(c->out, "OK");
}

static void cmd_debug_fsync_fail(st_ctx *c)
{
    int64_t on;
    if (!debug_allowed(c) || arg_i64(c, &c->argv[2], &on) != 0) return;
    st_io_fail_fsync(on != 0);
    resp_simple(c->out, "OK");
}

/* ---- connection -------------------------------------------------------------------- */

static void cmd_ping(st_ctx *c)
{
    if (c->argc > 2) resp_error(c->out, "ERR wrong number of arguments for 'ping' command");
    else if (c->argc == 2) resp_bulk(c->out, c->argv[1].ptr, c->argv[1].len);
    else resp_raw(c->out, "+PONG\r\n", 7);
}

static void cmd_echo(st_ctx *c) { resp_bulk(c->out, c->argv[1].ptr, c->argv[1].len); }

static void cmd_quit(st_ctx *c)
{
    resp_simple(c->out, "OK");
    if (c->session) c->session->close_after_reply = 1;
}

/* Compares in time that depends only on the lengths, not on where the
 * first difference is. */
static int secret_equal(const char *a, size_t la, const char *b, size_t lb)
{
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++) d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

int st_auth_check(const st_server_config *cfg, const char *secret, size_t len)
{
    if (!cfg->requirepass) return 1;
    return secret_equal(secret, len, cfg->requirepass, strlen(cfg->requirepass));
}

/* Checks AUTH's [user] password; replies the error and returns -1 on failure. */
static int check_auth(st_ctx *c, const resp_arg *user, const resp_arg *pass)
{
    const char *want = c->cfg->requirepass;
    if (!want) {
        resp_error(c->out, "ERR AUTH <password> called without any password configured for the default user. Are you "
                           "sure your configuration is correct?");
        return -1;
    }
    if ((user && !is_word(user, "default")) || !secret_equal(pass->ptr, pass->len, want, strlen(want))) {
        resp_error(c->out, "WRONGPASS invalid username-password pair or user is disabled.");
        return -1;
    }
    c->session->authed = 1;
    return 0;
}

static void cmd_auth(st_ctx *c)
{
    if (c->argc > 3) {
        resp_error(c->out, "ERR syntax error");
        return;
    }
    if (check_auth(c, c->argc == 3 ? &c->argv[1] : NULL, &c->argv[c->argc - 1]) == 0) resp_simple(c->out, "OK");
}

static int valid_client_name(const resp_arg *a)
{
    for (size_t i = 0; i < a->len; i++)
        if (a->ptr[i] < '!' || a->ptr[i] > '~') return 0;
    return 1;
}

static int set_name(st_ctx *c, const resp_arg *a)
{
    if (!valid_client_name(a)) {
        resp_error(c->out, "ERR Client names cannot contain spaces, newlines or special characters.");
        return -1;
    }
    if (a->len >= sizeof c->session->name) {
        resp_error(c->out, "ERR client name too long (at most %zu bytes)", sizeof c->session->name - 1);
        return -1;
    }
    memcpy(c->session->name, a->ptr, a->len);
    c->session->name[a->len] = '\0';
    return 0;
}

static void cmd_hello(st_ctx *c)
{
    if (c->argc >= 2) {
        int64_t ver;
        char *end;
        ver = strtoll(c->argv[1].ptr, &end, 10);
        if (c->argv[1].len == 0 || end != c->argv[1].ptr + c->argv[1].len) {
            resp_error(c->out, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (ver != 2) {
            /* RESP3 replies would break proxies that only parse RESP2. */
            resp_error(c->out, "NOPROTO unsupported protocol version");
            return;
        }
    }
    const resp_arg *name = NULL;
    for (int i = 2; i < c->argc; i++) {
        if (is_word(&c->argv[i], "AUTH") && i + 2 < c->argc) {
            if (check_auth(c, &c->argv[i + 1], &c->argv[i + 2]) != 0) return;
            i += 2;
        } else if (is_word(&c->argv[i], "SETNAME") && i + 1 < c->argc) {
            name = &c->argv[++i];
        } else {
            resp_error(c->out, "ERR Syntax error in HELLO option '%.*s'", (int)(c->argv[i].len > 64 ? 64 : c->argv[i].len),
                       c->argv[i].ptr);
            return;
        }
    }
    if (!c->session->authed) {
        resp_error(c->out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
                           "<proto> AUTH <user> <pass> option can be used to authenticate the client and select the "
                           "RESP protocol version at the same time");
        return;
    }
    if (name && set_name(c, name) != 0) return;
    resp_array(c->out, 14);
    kv_str(c->out, "server", "starling");
    kv_str(c->out, "version", STARLING_VERSION);
    kv_int(c->out, "proto", 2);
    kv_int(c->out, "id", (int64_t)c->session->id);
    kv_str(c->out, "mode", "standalone");
    kv_str(c->out, "role", "master");
    resp_bulk_str(c->out, "modules");
    resp_array(c->out, 0);
}

static void cmd_select(st_ctx *c)
{
    int64_t db;
    if (arg_i64(c, &c->argv[1], &db) != 0) return;
    if (db != 0) resp_error(c->out, "ERR DB index is out of range");
    else resp_simple(c->out, "OK");
}

static void cmd_client_setname(st_ctx *c)
{
    if (set_name(c, &c->argv[2]) == 0) resp_simple(c->out, "OK");
}

static void cmd_client_getname(st_ctx *c)
{
    if (c->session->name[0]) resp_bulk_str(c->out, c->session->name);
    else resp_null(c->out);
}

static void cmd_client_id(st_ctx *c) { resp_int(c->out, (int64_t)c->session->id); }

/* HELP of a container: its subcommands, one line each. */
static void cmd_help(st_ctx *c)
{
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "%.*s|", (int)(c->argv[0].len > 20 ? 20 : c->argv[0].len), c->argv[0].ptr);
    for (int i = 0; i < n; i++) prefix[i] = (char)tolower((unsigned char)prefix[i]);
    int64_t count = 0;
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strncmp(commands[i].name, prefix, (size_t)n) == 0) count++;
    resp_array(c->out, count);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strncmp(commands[i].name, prefix, (size_t)n) != 0) continue;
        char line[256];
        char up[32];
        const char *sub = commands[i].name + n;
        size_t j = 0;
        for (; sub[j] && j < sizeof up - 1; j++) up[j] = (char)toupper((unsigned char)sub[j]);
        up[j] = '\0';
        snprintf(line, sizeof line, "%s: %s", up, commands[i].summary);
        resp_simple(c->out, line);
    }
}

/* ---- COMMAND, CONFIG, INFO ------------------------------------------------------------ */

static void command_entry(resp_out *o, const st_command *cmd)
{
    resp_array(o, 10);
    resp_bulk_str(o, cmd->name);
    resp_int(o, cmd->arity);
    int nflags = 1 + !!(cmd->flags & FAST) + !!(cmd->flags & NOAUTH);
    resp_array(o, nflags);
    resp_simple(o, (cmd->flags & WRITE) ? "write" : "readonly");
    if (cmd->flags & FAST) resp_simple(o, "fast");
    if (cmd->flags & NOAUTH) resp_simple(o, "no_auth");
    int last = cmd->key ? ((cmd->flags & MULTIKEY) ? -1 : cmd->key) : 0;
    resp_int(o, cmd->key);
    resp_int(o, last);
    resp_int(o, cmd->key ? 1 : 0);
    resp_array(o, 0); /* ACL categories */
    resp_array(o, 0); /* tips */
    resp_array(o, 0); /* key specifications */
    int64_t subs = 0;
    size_t nl = strlen(cmd->name);
    if (cmd->flags & CONTAINER)
        for (size_t i = 0; i < NCOMMANDS; i++)
            if (strncmp(commands[i].name, cmd->name, nl) == 0 && commands[i].name[nl] == '|') subs++;
    resp_array(o, subs);
    for (size_t i = 0; subs && i < NCOMMANDS; i++)
        if (strncmp(commands[i].name, cmd->name, nl) == 0 && commands[i].name[nl] == '|') command_entry(o, &commands[i]);
}

static int is_top(const st_command *cmd) { return strchr(cmd->name, '|') == NULL; }

static void cmd_command(st_ctx *c)
{
    int64_t n = 0;
    for (size_t i = 0; i < NCOMMANDS; i++) n += is_top(&commands[i]);
    resp_array(c->out, n);
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (is_top(&commands[i])) command_entry(c->out, &commands[i]);
}

static void cmd_command_count(st_ctx *c)
{
    int64_t n = 0;
    for (size_t i = 0; i < NCOMMANDS; i++) n += is_top(&commands[i]);
    resp_int(c->out, n);
}

static void cmd_command_info(st_ctx *c)
{
    resp_array(c->out, c->argc - 2);
    for (int i = 2; i < c->argc; i++) {
        const st_command *cmd = find_name(c->argv[i].ptr, c->argv[i].len);
        if (cmd && is_top(cmd)) command_entry(c->out, cmd);
        else resp_null_array(c->out);
    }
}

static void doc_entry(resp_out *o, const st_command *cmd)
{
    resp_bulk_str(o, cmd->name);
    resp_array(o, 8);
    kv_str(o, "summary", cmd->summary);
    kv_str(o, "since", "0.1.0");
    kv_str(o, "group", cmd->group);
    kv_str(o, "complexity", cmd->complexity);
}

/* A flat map name -> [summary, since, group, complexity], as redis-cli reads it. */
static void cmd_command_docs(st_ctx *c)
{
    if (c->argc == 2) {
        int64_t n = 0;
        for (size_t i = 0; i < NCOMMANDS; i++) n += is_top(&commands[i]);
        resp_array(c->out, 2 * n);
        for (size_t i = 0; i < NCOMMANDS; i++)
            if (is_top(&commands[i])) doc_entry(c->out, &commands[i]);
        return;
    }
    int64_t n = 0;
    for (int i = 2; i < c->argc; i++) {
        const st_command *cmd = find_name(c->argv[i].ptr, c->argv[i].len);
        n += cmd && is_top(cmd);
    }
    resp_array(c->out, 2 * n);
    for (int i = 2; i < c->argc; i++) {
        const st_command *cmd = find_name(c->argv[i].ptr, c->argv[i].len);
        if (cmd && is_top(cmd)) doc_entry(c->out, cmd);
    }
}

static void cmd_config_get(st_ctx *c)
{
    const st_server_config *f = c->cfg;
    char port[16], maxclients[32], timeout[32], maxreq[32], maxargs[32], outlim[32], maxcount[32], threads[16],
        heavy[16], shut[32], minaud[32], minseeds[32], cminb[32], cpct[32], fdelay[32], http_port[16], http_rate[32],
        http_burst[32];
    st_server_info si;
    st_server_get_info(c->srv, &si);
    snprintf(port, sizeof port, "%d", si.tcp_addr ? si.tcp_port : f->port); /* the bound port, for --port 0 */
    snprintf(maxclients, sizeof maxclients, "%llu", (unsigned long long)f->maxclients);
    snprintf(timeout, sizeof timeout, "%g", f->timeout);
    snprintf(maxreq, sizeof maxreq, "%llu", (unsigned long long)f->max_request);
    snprintf(maxargs, sizeof maxargs, "%llu", (unsigned long long)f->max_args);
    snprintf(outlim, sizeof outlim, "%llu", (unsigned long long)f->output_limit);
    snprintf(maxcount, sizeof maxcount, "%llu", (unsigned long long)f->max_count);
    snprintf(threads, sizeof threads, "%d", f->threads);
    snprintf(heavy, sizeof heavy, "%d", f->heavy_threads);
    snprintf(shut, sizeof shut, "%g", f->shutdown_timeout);
    snprintf(minaud, sizeof minaud, "%llu", (unsigned long long)f->min_audience);
    snprintf(minseeds, sizeof minseeds, "%llu", (unsigned long long)f->min_seeds);
    snprintf(cminb, sizeof cminb, "%llu", (unsigned long long)f->compact_min_bytes);
    snprintf(cpct, sizeof cpct, "%llu", (unsigned long long)f->compact_percentage);
    snprintf(fdelay, sizeof fdelay, "%g", f->forget_compact_delay);
    snprintf(http_port, sizeof http_port, "%d", si.http_addr ? si.http_port : f->http_port);
    snprintf(http_rate, sizeof http_rate, "%g", f->http_rate);
    snprintf(http_burst, sizeof http_burst, "%g", f->http_burst > 0 ? f->http_burst : f->http_rate);
    static const char *levels[] = {"debug", "verbose", "notice", "warning"};
    /* requirepass is never shown. save, appendonly and appendfsync answer
     * the tools (redis-benchmark) that ask about persistence. */
    const char *params[][2] = {
        {"bind", f->bind},
        {"port", port},
        {"unixsocket", f->unixsocket ? f->unixsocket : ""},
        {"maxclients", maxclients},
        {"timeout", timeout},
        {"max-request", maxreq},
        {"max-args", maxargs},
        {"output-limit", outlim},
        {"max-count", maxcount},
        {"threads", threads},
        {"heavy-threads", heavy},
        {"shutdown-timeout", shut},
        {"allow-reload-path", f->allow_reload_path ? "yes" : "no"},
        {"loglevel", levels[f->loglevel & 3]},
        {"model", f->model_path},
        {"http-port", http_port},
        {"http-bind", f->http_bind ? f->http_bind : ""},
        {"http-rate", http_rate},
        {"http-burst", http_burst},
        {"databases", "1"},
        {"save", ""},
        {"appendonly", f->journal ? "yes" : "no"},
        {"appendfsync", st_appendfsync_name(f->appendfsync)},
        {"journal", f->journal ? f->journal : ""},
        {"compact-min-bytes", cminb},
        {"compact-percentage", cpct},
        {"forget-compact-delay", fdelay},
        {"min-audience", minaud},
        {"min-seeds", minseeds},
        {"enable-debug-command", f->enable_debug ? "yes" : "no"},
    };
    size_t np = sizeof params / sizeof params[0];
    int64_t n = 0;
    for (size_t p = 0; p < np; p++)
        for (int i = 2; i < c->argc; i++)
            if (fnmatch(c->argv[i].ptr, params[p][0], FNM_CASEFOLD) == 0) {
                n++;
                break;
            }
    resp_array(c->out, 2 * n);
    for (size_t p = 0; p < np; p++)
        for (int i = 2; i < c->argc; i++)
            if (fnmatch(c->argv[i].ptr, params[p][0], FNM_CASEFOLD) == 0) {
                kv_str(c->out, params[p][0], params[p][1]);
                break;
            }
}

/* INFO text: "key:value" lines under "# Section" headings, CRLF-terminated. */
typedef struct {
    char *buf;
    size_t len, cap;
} text;

static void tprintf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tprintf(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (t->buf && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 8192;
        while (cap < t->len + (size_t)n + 1) cap *= 2;
        char *b = st_realloc(t->buf, cap);
        if (!b) return;
        t->buf = b;
        t->cap = cap;
    }
}

static double percentile(const st_cmdstat *s, double q)
{
    uint64_t total = 0;
    for (int b = 0; b < ST_LAT_BUCKETS; b++) total += atomic_load_explicit(&s->hist[b], memory_order_relaxed);
    if (total == 0) return 0;
    uint64_t want = (uint64_t)ceil(q * (double)total), seen = 0;
    if (want == 0) want = 1;
    for (int b = 0; b < ST_LAT_BUCKETS; b++) {
        seen += atomic_load_explicit(&s->hist[b], memory_order_relaxed);
        if (seen >= want) return lat_value(b);
    }
    return lat_value(ST_LAT_BUCKETS - 1);
}

static int want_section(st_ctx *c, const char *name, int in_default)
{
    if (c->argc == 1) return in_default;
    for (int i = 1; i < c->argc; i++) {
        if (is_word(&c->argv[i], name) || is_word(&c->argv[i], "all") || is_word(&c->argv[i], "everything")) return 1;
        if (is_word(&c->argv[i], "default") && in_default) return 1;
    }
    return 0;
}

static void cmd_info(st_ctx *c)
{
    st_server_info si;
    st_server_get_info(c->srv, &si);
    st_stats *stats = st_malloc(sizeof *stats);
    if (!stats) {
        resp_error(c->out, "ERR out of memory");
        return;
    }
    st_server_sum_stats(c->srv, stats);
    text t = {0};
    const st_served *sv = c->model; /* NULL while the first model loads */
    const st_model *m = sv ? &sv->m : NULL;
    double uptime = st_now() - si.started;
    if (want_section(c, "server", 1)) {
        tprintf(&t, "# Server\r\nstarling_version:%s\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n"
                    "multiplexing_api:epoll\r\nprocess_id:%d\r\ntcp_port:%d\r\nunixsocket:%s\r\n"
                    "uptime_in_seconds:%lld\r\nevent_loops:%llu\r\nheavy_threads:%llu\r\n\r\n",
                STARLING_VERSION, (int)getpid(), si.tcp_addr ? si.tcp_port : 0, si.unixsocket ? si.unixsocket : "",
                (long long)uptime, (unsigned long long)si.loops, (unsigned long long)si.heavy_threads);
    }
    if (want_section(c, "clients", 1)) {
        tprintf(&t, "# Clients\r\nconnected_clients:%llu\r\nblocked_clients:%llu\r\nmaxclients:%llu\r\n\r\n",
                (unsigned long long)si.clients, (unsigned long long)si.blocked_clients,
                (unsigned long long)c->cfg->maxclients);
    }
    if (want_section(c, "memory", 1)) {
        /* mem_allocator says whether the once-a-second trim of freed pages runs
         * (libc) or is skipped because glibc's allocator is not in use (other:
         * a sanitizer's, a preloaded one). */
        size_t rss = st_current_rss();
        tprintf(&t, "# Memory\r\nused_memory_rss:%zu\r\nused_memory_rss_human:%.2fM\r\nmem_allocator:%s\r\n"
                    "allocator_trims:%llu\r\n\r\n",
                rss, (double)rss / 1048576.0, st_allocator_name(), (unsigned long long)st_trim_count());
    }
    if (want_section(c, "model", 1) && !sv) {
        tprintf(&t, "# Model\r\nmodel_loaded:0\r\nmodel_path:%s\r\n\r\n", c->cfg->model_path);
    } else if (want_section(c, "model", 1)) {
        tprintf(&t,
                "# Model\r\nmodel_loaded:1\r\nmodel_path:%s\r\nmodel_generation:%llu\r\nmodel_loaded_at:%lld\r\nmodel_users:%u\r\n"
                "model_segments:%u\r\nmodel_factors:%u\r\nmodel_nnz:%llu\r\nmodel_fingerprint:%016llx\r\n"
                "model_created:%lld\r\nmodel_calibrated:%d\r\nmodel_reloads:%llu\r\nmodel_reload_failures:%llu\r\n"
                "model_last_reload_error:%s\r\n\r\n",
                sv->path, (unsigned long long)sv->generation, (long long)sv->loaded_at, m->users, m->segments, m->k,
                (unsigned long long)m->h.nnz, (unsigned long long)m->h.fingerprint, (long long)m->h.created,
                (m->h.flags & ST_MODEL_CALIBRATED) ? 1 : 0, (unsigned long long)si.reloads,
                (unsigned long long)si.reload_failures, si.last_reload_error);
    }
    if (want_section(c, "quality", 1) && sv) {
        /* Online quality since the model was loaded (online_quality). */
        uint64_t n = atomic_load_explicit(&sv->q_new, memory_order_relaxed);
        double d = n ? (double)n : 1.0;
        tprintf(&t,
                "# Quality\r\nonline_new_engagements:%llu\r\nonline_repeat_engagements:%llu\r\n"
                "online_hit_rate_top10:%.4f\r\nonline_hit_rate_top50:%.4f\r\n"
                "online_popularity_hit_rate_top10:%.4f\r\nonline_popularity_hit_rate_top50:%.4f\r\n\r\n",
                (unsigned long long)n, (unsigned long long)atomic_load_explicit(&sv->q_repeat, memory_order_relaxed),
                (double)atomic_load_explicit(&sv->q_hit10, memory_order_relaxed) / d,
                (double)atomic_load_explicit(&sv->q_hit50, memory_order_relaxed) / d,
                (double)atomic_load_explicit(&sv->q_pop10, memory_order_relaxed) / d,
                (double)atomic_load_explicit(&sv->q_pop50, memory_order_relaxed) / d);
    }
    if (want_section(c, "persistence", 1)) {
        st_server_journal_info ji;
        st_server_get_journal(c->srv, &ji);
        st_overlay_stats os = {0};
        if (sv) st_overlay_get_stats(sv->ov, &os); /* no model yet: nothing online */
        const st_journal_status *js = &ji.j;
        const st_journal_compaction *lc = &js->last_compaction;
        tprintf(&t,
                "# Persistence\r\naof_enabled:%d\r\njournal_enabled:%d\r\njournal_path:%s\r\njournal_id:%016llx\r\n"
                "appendfsync:%s\r\njournal_status:%s\r\njournal_bytes:%llu\r\njournal_records:%llu\r\n"
                "journal_last_seq:%llu\r\njournal_durable_seq:%llu\r\njournal_appends:%llu\r\n"
                "journal_append_failures:%llu\r\njournal_fsyncs:%llu\r\njournal_fsync_failures:%llu\r\n"
                "journal_last_fsync_usec:%.0f\r\njournal_last_error:%s\r\njournal_compaction_in_progress:%d\r\n"
                "journal_compactions:%llu\r\njournal_compaction_failures:%llu\r\n"
                "journal_last_compaction_bytes:%llu->%llu\r\njournal_last_compaction_erased_events:%llu\r\n"
                "journal_start_records:%llu\r\njournal_start_torn_bytes:%llu\r\njournal_start_seconds:%.3f\r\n"
                "online_users:%llu\r\nforgotten_users:%llu\r\nhidden_model_rows:%llu\r\n"
                "records_already_in_model:%llu\r\nevents_unknown_segment:%llu\r\n\r\n",
                ji.has_journal, ji.has_journal, ji.has_journal ? ji.path : "", (unsigned long long)ji.id,
                ji.has_journal ? st_appendfsync_name(ji.policy) : "", !ji.has_journal ? "none" : js->broken ? "broken" : "ok",
                (unsigned long long)js->bytes, (unsigned long long)js->records, (unsigned long long)js->last_seq,
                (unsigned long long)js->durable_seq, (unsigned long long)js->appends,
                (unsigned long long)js->append_failures, (unsigned long long)js->fsyncs,
                (unsigned long long)js->fsync_failures, js->last_fsync_seconds * 1e6, js->last_error, ji.compacting,
                (unsigned long long)js->compactions, (unsigned long long)js->compaction_failures,
                (unsigned long long)lc->bytes_before, (unsigned long long)lc->bytes_after,
                (unsigned long long)lc->events_erased, (unsigned long long)ji.start_records,
                (unsigned long long)ji.start_torn_bytes, ji.start_seconds, (unsigned long long)os.live,
                (unsigned long long)os.forgotten, (unsigned long long)os.hidden_rows,
                (unsigned long long)os.skipped_in_model, (unsigned long long)os.unknown_segment);
    }
    if (want_section(c, "stats", 1)) {
#define S(f) (unsigned long long)atomic_load_explicit(&stats->f, memory_order_relaxed)
        tprintf(&t,
                "# Stats\r\ntotal_connections_received:%llu\r\nrejected_connections:%llu\r\n"
                "total_commands_processed:%llu\r\ntotal_net_input_bytes:%llu\r\ntotal_net_output_bytes:%llu\r\n"
                "protocol_errors:%llu\r\noutput_limit_disconnections:%llu\r\nidle_timeout_disconnections:%llu\r\n"
                "heavy_queue_length:%llu\r\n\r\n",
                S(connections), S(rejected_connections), S(commands), S(net_in), S(net_out), S(protocol_errors),
                S(dropped_output), S(idle_closed), (unsigned long long)si.heavy_queued);
#undef S
    }
    if (want_section(c, "commandstats", 0)) {
        tprintf(&t, "# Commandstats\r\n");
        for (size_t i = 0; i < NCOMMANDS; i++) {
            const st_cmdstat *s = &stats->cmd[i];
            uint64_t calls = atomic_load_explicit(&s->calls, memory_order_relaxed),
                     rej = atomic_load_explicit(&s->rejected, memory_order_relaxed);
            if (calls == 0 && rej == 0) continue;
            double usec = (double)atomic_load_explicit(&s->nanos, memory_order_relaxed) / 1000.0;
            tprintf(&t, "cmdstat_%s:calls=%llu,usec=%.0f,usec_per_call=%.2f,rejected_calls=%llu,failed_calls=%llu\r\n",
                    commands[i].name, (unsigned long long)calls, usec, calls ? usec / (double)calls : 0.0,
                    (unsigned long long)rej,
                    (unsigned long long)atomic_load_explicit(&s->failed, memory_order_relaxed));
        }
        tprintf(&t, "\r\n");
    }
    if (want_section(c, "latencystats", 0)) {
        tprintf(&t, "# Latencystats\r\n");
        for (size_t i = 0; i < NCOMMANDS; i++) {
            const st_cmdstat *s = &stats->cmd[i];
            if (atomic_load_explicit(&s->calls, memory_order_relaxed) == 0) continue;
            tprintf(&t, "latency_percentiles_usec_%s:p50=%.3f,p99=%.3f,p99.9=%.3f\r\n", commands[i].name,
                    percentile(s, 0.50) / 1000.0, percentile(s, 0.99) / 1000.0, percentile(s, 0.999) / 1000.0);
        }
        tprintf(&t, "\r\n");
    }
    if (t.buf) resp_bulk(c->out, t.buf, t.len >= 2 ? t.len - 2 : t.len);
    else resp_bulk(c->out, "", 0);
    st_free(t.buf);
    st_free(stats);
}
