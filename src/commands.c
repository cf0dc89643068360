/* commands: every protocol command, in one table, and the one call() path.
 *
 * What it is: the meaning of each request (docs/PROTOCOL.md is the reference
 * a client author reads; this file is what it describes). What it is not: a
 * connection or a thread; handlers get an st_ctx and append one reply to
 * ctx->out, and never block except MODEL RELOAD, which runs on the heavy pool.
 *
 * Users are looked up through st_cmd_find_user() alone, which returns a user's
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
 *
 * This file: the table, the call path, and the commands about the table
 * (COMMAND, HELP, INFO and its per-command statistics); the handlers live in
 * their families' files and the helpers they share in cmd_util.c (cmd.h).
 */
#include "commands.h"

#include <ctype.h>
#include <malloc.h>
#include <stdio.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "util.h"
#include "version.h"

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
 *            R_READ, R_WRITE, R_ADMIN  the right (acl.h) the user needs;
 *                       a row with none needs only a signed-in connection
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
    R_READ = 1u << 8,
    R_WRITE = 1u << 9,
    R_ADMIN = 1u << 10,
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

static const st_command commands[] = {
    /* targeting */
    {"segments", cmd_segments, -2, R_READ, 0, "targeting", "A user's best segments with their scores", "O(n k + n log COUNT)"},
    {"score", cmd_score, -3, FAST | R_READ, 0, "targeting", "A user's score for each segment given", "O(k) per segment"},
    {"foldin", cmd_foldin, -3, R_READ, 0, "targeting", "Best segments for a user the model has never seen, from their engagement",
     "O(e k^2 + k^3 + n k)"},
    {"audience", cmd_audience, -4, HEAVY | R_READ, 0, "targeting", "The best users for a segment", "O(m k + m log COUNT)"},
    {"lookalike", cmd_lookalike, -4, HEAVY | R_READ, 0, "targeting", "Users closest to a seed list of users", "O(m k + m log COUNT)"},
    {"reach", cmd_reach, -4, HEAVY | R_READ, 0, "targeting",
     "How many users score at least MIN on a segment, or at each CURVE threshold in one pass", "O(m k)"},
    {"similar", cmd_similar, 4, R_READ, 0, "targeting", "The segments most engaged with next by a user who engaged with a segment", "O(k^3 + n k)"},
    {"explain", cmd_explain, -3, R_READ, 0, "targeting", "Which past segments of a user drive a score", "O(h k^2 + k^3)"},
    {"history", cmd_history, 2, R_READ, 0, "targeting", "The engagement the server holds for a user, by segment", "O(h)"},
    /* online writes */
    {"event", cmd_event, -4, WRITE | R_WRITE, 0, "online", "Add an engagement event to a user and re-solve their vector",
     "O(h k^2 + k^3), then a journal write"},
    {"forget", cmd_forget, 2, WRITE | R_WRITE, 0, "online", "Erase a user: vector, history, every reply", "O(1), then a journal write"},
    {"segment", NULL, -2, CONTAINER, 0, "online", "SEGMENT ADD | SEGMENT SET | SEGMENT PARTIAL", "O(1)"},
    {"segment|add", cmd_segment_add, -4, WRITE | R_WRITE, 0, "online",
     "Add a segment from a list of users (or users to one added before): its vector solved from its members",
     "O(nm k^2 + k^3), then a journal write"},
    {"segment|set", cmd_segment_set, -4, WRITE | R_WRITE, 0, "online",
     "Add or replace an added segment with a vector solved elsewhere (sharded deployments)", "O(k), then a journal write"},
    {"segment|partial", cmd_segment_partial, -4, R_WRITE, 0, "online",
     "This server's part of the system a segment's vector solves, for a solve over several shards", "O(nm k^2)"},
    {"segment|help", cmd_help, 2, 0, 0, "online", "The SEGMENT subcommands", "O(1)"},
    {"journal", NULL, -2, CONTAINER, 0, "server", "JOURNAL COMPACT", "O(1)"},
    {"journal|compact", cmd_journal_compact, 2, WRITE | R_ADMIN, 0, "server",
     "Compact the journal in the background (erased events leave the file)", "O(1); the compaction O(journal)"},
    {"journal|help", cmd_help, 2, 0, 0, "server", "The JOURNAL subcommands", "O(1)"},
    {"bgrewriteaof", cmd_journal_compact, 1, WRITE | R_ADMIN, 0, "server", "JOURNAL COMPACT, by the name Redis tools use",
     "O(1); the compaction O(journal)"},
    {"model", NULL, -2, CONTAINER, 0, "server", "MODEL INFO | MODEL RELOAD [path]", "O(1)"},
    {"model|info", cmd_model_info, 2, R_READ, 0, "server", "The served model's dimensions and provenance", "O(1)"},
    {"model|reload", cmd_model_reload, -2, HEAVY | WRITE | R_ADMIN, 0, "server", "Load and verify a model file, then swap it in",
     "O(size of the model file)"},
    {"model|help", cmd_help, 2, NOMODEL, 0, "server", "The MODEL subcommands", "O(1)"},
    /* sorted-set views */
    {"zrange", cmd_zrange, -4, HEAVY_SKEY | R_READ, 1, "sorted-set", "Members of u:<user> or s:<segment> in a range",
     "O(N + N log M) for N members scored, M returned"},
    {"zrevrange", cmd_zrevrange, -4, HEAVY_SKEY | R_READ, 1, "sorted-set", "Members in a rank range, highest score first",
     "O(N + N log M)"},
    {"zrangebyscore", cmd_zrangebyscore, -4, HEAVY_SKEY | R_READ, 1, "sorted-set", "Members in a score range, lowest first",
     "O(N + N log M)"},
    {"zrevrangebyscore", cmd_zrevrangebyscore, -4, HEAVY_SKEY | R_READ, 1, "sorted-set",
     "Members in a score range, highest first", "O(N + N log M)"},
    {"zscore", cmd_zscore, 3, FAST | R_READ, 1, "sorted-set", "The score of one member", "O(k)"},
    {"zmscore", cmd_zmscore, -3, FAST | R_READ, 1, "sorted-set", "The scores of several members", "O(k) per member"},
    {"zcount", cmd_zcount, 4, HEAVY_SKEY | R_READ, 1, "sorted-set", "How many members score within a range", "O(N k)"},
    {"zcard", cmd_zcard, 2, FAST | R_READ, 1, "sorted-set", "How many members the view has", "O(1)"},
    {"zincrby", cmd_zincrby, 4, WRITE | R_WRITE, 1, "sorted-set", "EVENT for u:<user>: add engagement, reply the new score",
     "O(h k^2 + k^3), then a journal write"},
    {"exists", cmd_exists, -2, FAST | MULTIKEY | R_READ, 1, "generic", "How many of the keys exist", "O(1) per key"},
    {"del", cmd_del, -2, WRITE | MULTIKEY | R_WRITE, 1, "generic", "FORGET the users of u:<user> keys; how many existed",
     "O(1) per key, then journal writes"},
    {"unlink", cmd_del, -2, WRITE | MULTIKEY | R_WRITE, 1, "generic", "DEL", "O(1) per key, then journal writes"},
    {"type", cmd_type, 2, FAST | R_READ, 1, "generic", "zset for an existing view, none otherwise", "O(1)"},
    {"dbsize", cmd_dbsize, 1, FAST | R_READ, 0, "generic", "How many u:<user> and s:<segment> keys exist", "O(1)"},
    {"scan", cmd_scan, -2, R_READ, 0, "generic", "Walk the u:<user> and s:<segment> keys from a cursor",
     "O(COUNT) per call"},
    {"time", cmd_time, 1, FAST | NOMODEL, 0, "server", "The server's clock: unix seconds and microseconds", "O(1)"},
    /* connection and server */
    {"ping", cmd_ping, -1, NOAUTH | FAST | NOMODEL, 0, "connection", "PONG, or the message given", "O(1)"},
    {"echo", cmd_echo, 2, FAST | NOMODEL, 0, "connection", "The message given", "O(1)"},
    {"quit", cmd_quit, -1, NOAUTH | FAST | NOMODEL, 0, "connection", "Close the connection after replying", "O(1)"},
    {"auth", cmd_auth, -2, NOAUTH | FAST | NOMODEL, 0, "connection", "Authenticate with --requirepass", "O(1)"},
    {"hello", cmd_hello, -1, NOAUTH | FAST | NOMODEL, 0, "connection", "Handshake: protocol 2 or 3, AUTH, SETNAME", "O(1)"},
    {"select", cmd_select, 2, FAST | NOMODEL, 0, "connection", "Database 0 is the only one", "O(1)"},
    {"client", NULL, -2, CONTAINER, 0, "connection",
     "CLIENT SETNAME | GETNAME | ID | SETINFO | INFO | LIST | KILL | REPLY | NO-EVICT | NO-TOUCH", "O(1)"},
    {"client|setname", cmd_client_setname, 3, FAST | NOMODEL, 0, "connection", "Name this connection", "O(1)"},
    {"client|getname", cmd_client_getname, 2, FAST | NOMODEL, 0, "connection", "This connection's name", "O(1)"},
    {"client|id", cmd_client_id, 2, FAST | NOMODEL, 0, "connection", "This connection's id", "O(1)"},
    {"client|setinfo", cmd_client_setinfo, 4, FAST | NOMODEL, 0, "connection", "Record the client library's name or version",
     "O(1)"},
    {"client|info", cmd_client_info, 2, NOMODEL, 0, "connection", "This connection, as a CLIENT LIST line", "O(1)"},
    {"client|list", cmd_client_list, -2, NOMODEL | R_ADMIN, 0, "connection", "Every connection, one line each",
     "O(connections)"},
    {"client|kill", cmd_client_kill, -3, NOMODEL | R_ADMIN, 0, "connection",
     "Close connections by address, ID, USER, LADDR, MAXAGE", "O(connections)"},
    {"client|reply", cmd_client_reply, 3, FAST | NOMODEL, 0, "connection", "Replies ON, OFF, or SKIP the next one", "O(1)"},
    {"client|no-evict", cmd_client_onoff, 3, FAST | NOMODEL, 0, "connection", "Accepted: nothing is evicted here", "O(1)"},
    {"client|no-touch", cmd_client_onoff, 3, FAST | NOMODEL, 0, "connection", "Accepted: no access times are kept",
     "O(1)"},
    {"client|help", cmd_help, 2, NOMODEL, 0, "connection", "The CLIENT subcommands", "O(1)"},
    {"command", cmd_command, -1, CONTAINER | NOMODEL, 0, "server", "Every command's name, arity, flags and key position",
     "O(commands)"},
    {"command|docs", cmd_command_docs, -2, NOMODEL, 0, "server", "Every command's summary, for clients' help", "O(commands)"},
    {"command|count", cmd_command_count, 2, NOMODEL, 0, "server", "How many commands there are", "O(1)"},
    {"command|info", cmd_command_info, -2, NOMODEL, 0, "server", "Name, arity, flags and keys of the commands given",
     "O(commands)"},
    {"command|help", cmd_help, 2, NOMODEL, 0, "server", "The COMMAND subcommands", "O(1)"},
    {"config", NULL, -2, CONTAINER, 0, "server", "CONFIG GET | SET | RESETSTAT | REWRITE", "O(1)"},
    {"config|set", cmd_config_set, -4, NOMODEL | R_ADMIN | WRITE, 0, "server",
     "Change settings that are safe to change while serving, all or none", "O(parameters)"},
    {"config|resetstat", cmd_config_resetstat, 2, NOMODEL | R_ADMIN | WRITE, 0, "server",
     "Reset the statistics INFO reports", "O(commands)"},
    {"config|rewrite", cmd_config_rewrite, 2, NOMODEL | R_ADMIN | WRITE, 0, "server",
     "Write the changed settings into the config file the server started with", "O(size of the file)"},
    {"config|get", cmd_config_get, -3, NOMODEL | R_ADMIN, 0, "server", "Configuration values matching glob patterns", "O(parameters)"},
    {"config|help", cmd_help, 2, NOMODEL, 0, "server", "The CONFIG subcommands", "O(1)"},
    {"info", cmd_info, -1, NOMODEL | R_READ, 0, "server", "Server, clients, memory, model, quality, persistence, stats, commandstats, latencystats",
     "O(commands)"},
    {"slowlog", NULL, -2, CONTAINER, 0, "server", "SLOWLOG GET | LEN | RESET", "O(1)"},
    {"slowlog|get", cmd_slowlog_get, -2, NOMODEL | R_ADMIN, 0, "server", "The newest slow log entries", "O(N)"},
    {"slowlog|len", cmd_slowlog_len, 2, NOMODEL | R_ADMIN, 0, "server", "How many entries the slow log holds", "O(1)"},
    {"slowlog|reset", cmd_slowlog_reset, 2, NOMODEL | R_ADMIN | WRITE, 0, "server", "Empty the slow log", "O(N)"},
    {"slowlog|help", cmd_help, 2, NOMODEL, 0, "server", "The SLOWLOG subcommands", "O(1)"},
    {"latency", NULL, -2, CONTAINER, 0, "server", "LATENCY LATEST | HISTOGRAM | RESET", "O(1)"},
    {"latency|latest", cmd_latency_latest, 2, NOMODEL | R_ADMIN, 0, "server", "The latest and worst slow command",
     "O(1)"},
    {"latency|histogram", cmd_latency_histogram, -2, NOMODEL | R_ADMIN, 0, "server",
     "Per-command latency histograms, as Redis 7 lays them out", "O(commands)"},
    {"latency|reset", cmd_latency_reset, -2, NOMODEL | R_ADMIN | WRITE, 0, "server", "Forget the latest slow command",
     "O(1)"},
    {"latency|help", cmd_help, 2, NOMODEL, 0, "server", "The LATENCY subcommands", "O(1)"},
    {"debug", NULL, -2, CONTAINER, 0, "server", "DEBUG IO-FAIL-AFTER | FSYNC-FAIL | FSYNC-DELAY (with --enable-debug-command)", "O(1)"},
    {"debug|io-fail-after", cmd_debug_io_fail_after, 3, R_ADMIN, 0, "server",
     "Fail journal writes as a full disk does after N more bytes (-1 = off)", "O(1)"},
    {"debug|fsync-fail", cmd_debug_fsync_fail, 3, R_ADMIN, 0, "server", "Fail fsyncs (1) or not (0)", "O(1)"},
    {"debug|fsync-delay", cmd_debug_fsync_delay, 3, R_ADMIN, 0, "server", "Make each fsync take N ms more (0 = off)",
     "O(1)"},
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

static void record(st_stats *stats, const st_command *cmd, uint64_t ns, int failed)
{
    st_stats_record(&stats->cmd[cmd - commands], ns, failed);
}

static void reject(st_stats *stats, const st_command *cmd)
{
    if (cmd) st_stat_bump(&stats->cmd[cmd - commands].rejected, 1);
}

/* ---- call ------------------------------------------------------------------ */

/* The right (acl.h) cmd needs; 0 = only a signed-in connection. */
static unsigned command_right(const st_command *cmd)
{
    return ((cmd->flags & R_READ) ? ST_RIGHT_READ : 0) | ((cmd->flags & R_WRITE) ? ST_RIGHT_WRITE : 0) |
           ((cmd->flags & R_ADMIN) ? ST_RIGHT_ADMIN : 0);
}

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

/* An error reply's code, counted for INFO errorstats. */
static void count_error(st_stats *stats, const char *reply, size_t len)
{
    if (len > 1 && reply[0] == '-') st_stat_bump(&stats->errors[st_error_slot(reply + 1, len - 1)], 1);
}

/* A command that ran past slowlog-log-slower-than goes to the slow log. */
static void slow(st_ctx *c, uint64_t ns)
{
    if (!c->slowlog) return;
    st_slowlog_record(c->slowlog, c->cfg->slowlog_slower_than, c->cfg->slowlog_max_len, ns / 1000, c->argc, c->argv,
                      c->session ? c->session->addr : "", c->session ? c->session->name : "");
}

static st_call_result call(st_ctx *c, st_stats *stats, const st_command **out_cmd, uint64_t *t0);

st_call_result st_call(st_ctx *c, st_stats *stats, const st_command **out_cmd, uint64_t *t0)
{
    size_t before = c->out->len;
    st_call_result r = call(c, stats, out_cmd, t0);
    if (r == ST_CALL_DONE && c->out->len > before) count_error(stats, c->out->buf + before, c->out->len - before);
    return r;
}

static st_call_result call(st_ctx *c, st_stats *stats, const st_command **out_cmd, uint64_t *t0)
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
    if (c->session && !(c->session->rights & ST_RIGHT_AUTHED) && !(cmd->flags & NOAUTH)) {
        reject(stats, cmd);
        resp_error(c->out, "NOAUTH Authentication required.");
        return ST_CALL_DONE;
    }
    unsigned need = command_right(cmd);
    if (c->session && need && !(c->session->rights & need)) {
        reject(stats, cmd);
        st_stat_bump(&stats->acl_denied, 1);
        resp_error(c->out, "NOPERM User %s has no permissions to run the '%s' command", c->session->user, cmd->name);
        return ST_CALL_DONE;
    }
    if (!c->model && !(cmd->flags & NOMODEL)) {
        reject(stats, cmd);
        resp_error(c->out, "LOADING starling is loading the model in memory");
        return ST_CALL_DONE;
    }
    if (c->session) atomic_store_explicit(&c->session->last_cmd, (int)(cmd - commands) + 1, memory_order_relaxed);
    uint64_t start = st_nanos();
    if ((cmd->flags & HEAVY) || ((cmd->flags & HEAVY_SKEY) && is_skey(&c->argv[1]))) {
        *out_cmd = cmd;
        *t0 = start;
        return ST_CALL_DEFER;
    }
    size_t before = c->out->len;
    cmd->fn(c);
    uint64_t ns = st_nanos() - start;
    record(stats, cmd, ns, c->out->len > before && c->out->buf[before] == '-');
    slow(c, ns);
    return ST_CALL_DONE;
}

void st_call_heavy(st_ctx *c, const st_command *cmd) { cmd->fn(c); }

size_t st_command_count(void) { return NCOMMANDS; }

const char *st_command_name(size_t i) { return i < NCOMMANDS ? commands[i].name : NULL; }

void st_call_finish(st_ctx *c, st_stats *stats, const st_command *cmd, uint64_t t0, const char *reply, size_t len)
{
    uint64_t ns = st_nanos() - t0;
    record(stats, cmd, ns, len == 0 || reply[0] == '-');
    if (len == 0) st_stat_bump(&stats->errors[0], 1); /* out of memory for the reply */
    else count_error(stats, reply, len);
    slow(c, ns);
}

/* HELP of a container: its subcommands, one line each. */
void cmd_help(st_ctx *c)
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

void cmd_command(st_ctx *c)
{
    int64_t n = 0;
    for (size_t i = 0; i < NCOMMANDS; i++) n += is_top(&commands[i]);
    resp_array(c->out, n);
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (is_top(&commands[i])) command_entry(c->out, &commands[i]);
}

void cmd_command_count(st_ctx *c)
{
    int64_t n = 0;
    for (size_t i = 0; i < NCOMMANDS; i++) n += is_top(&commands[i]);
    resp_int(c->out, n);
}

void cmd_command_info(st_ctx *c)
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
    resp_map(o, 4);
    st_cmd_kv_str(o, "summary", cmd->summary);
    st_cmd_kv_str(o, "since", "0.1.0");
    st_cmd_kv_str(o, "group", cmd->group);
    st_cmd_kv_str(o, "complexity", cmd->complexity);
}

/* A flat map name -> [summary, since, group, complexity], as redis-cli reads it. */
void cmd_command_docs(st_ctx *c)
{
    if (c->argc == 2) {
        int64_t n = 0;
        for (size_t i = 0; i < NCOMMANDS; i++) n += is_top(&commands[i]);
        resp_map(c->out, n);
        for (size_t i = 0; i < NCOMMANDS; i++)
            if (is_top(&commands[i])) doc_entry(c->out, &commands[i]);
        return;
    }
    int64_t n = 0;
    for (int i = 2; i < c->argc; i++) {
        const st_command *cmd = find_name(c->argv[i].ptr, c->argv[i].len);
        n += cmd && is_top(cmd);
    }
    resp_map(c->out, n);
    for (int i = 2; i < c->argc; i++) {
        const st_command *cmd = find_name(c->argv[i].ptr, c->argv[i].len);
        if (cmd && is_top(cmd)) doc_entry(c->out, cmd);
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
        if (seen >= want) return st_latency_bucket_ns(b);
    }
    return st_latency_bucket_ns(ST_LAT_BUCKETS - 1);
}

static int want_section(st_ctx *c, const char *name, int in_default)
{
    if (c->argc == 1) return in_default;
    for (int i = 1; i < c->argc; i++) {
        if (st_cmd_is_word(&c->argv[i], name) || st_cmd_is_word(&c->argv[i], "all") || st_cmd_is_word(&c->argv[i], "everything")) return 1;
        if (st_cmd_is_word(&c->argv[i], "default") && in_default) return 1;
    }
    return 0;
}

/* What INFO's sections are written from. */
typedef struct {
    st_ctx *c;
    const st_server_info *si;
    const st_stats *stats; /* every thread's, summed */
    const st_served *sv;   /* NULL while the first model loads */
    const st_model *m;
} info_ctx;

static void info_server(st_text *t, const info_ctx *x)
{
    st_text_printf(t, "# Server\r\nstarling_version:%s\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n"
                "multiplexing_api:epoll\r\nprocess_id:%d\r\ntcp_port:%d\r\nunixsocket:%s\r\n"
                "uptime_in_seconds:%lld\r\nevent_loops:%llu\r\nheavy_threads:%llu\r\n\r\n",
            st_version, (int)getpid(), x->si->tcp_addr ? x->si->tcp_port : 0, x->si->unixsocket ? x->si->unixsocket : "",
            (long long)(st_now() - x->si->started), (unsigned long long)x->si->loops, (unsigned long long)x->si->heavy_threads);
}

static void info_clients(st_text *t, const info_ctx *x)
{
    st_text_printf(t, "# Clients\r\nconnected_clients:%llu\r\nblocked_clients:%llu\r\nmaxclients:%llu\r\n\r\n",
            (unsigned long long)x->si->clients, (unsigned long long)x->si->blocked_clients,
            (unsigned long long)x->c->cfg->maxclients);
}

/* Bytes as Redis's *_human fields show them: 1.50K, 12.34M, 1.02G. */
static void human(char *buf, size_t cap, double b)
{
    static const char unit[] = "BKMGTP";
    int u = 0;
    while (b >= 1024 && u < 5) {
        b /= 1024;
        u++;
    }
    if (u == 0) snprintf(buf, cap, "%.0fB", b);
    else snprintf(buf, cap, "%.2f%c", b, unit[u]);
}

static atomic_uint_fast64_t used_memory_peak; /* the most used_memory INFO has seen */

static void info_memory(st_text *t, const info_ctx *x)
{
    /* used_memory: what malloc has handed out (glibc's count; 0 under another
     * allocator); the model is a file mapping and shows in RSS, not here.
     * mem_allocator says whether the once-a-second trim of freed pages runs
     * (libc) or is skipped because glibc's allocator is not in use (other:
     * a sanitizer's, a preloaded one). */
    struct mallinfo2 mi = mallinfo2();
    uint64_t used = (uint64_t)mi.uordblks, peak = atomic_load(&used_memory_peak);
    while (used > peak && !atomic_compare_exchange_weak(&used_memory_peak, &peak, used)) {
    }
    if (used > peak) peak = used;
    size_t rss = st_current_rss();
    char h_used[32], h_peak[32], h_rss[32], h_model[32];
    human(h_used, sizeof h_used, (double)used);
    human(h_peak, sizeof h_peak, (double)peak);
    human(h_rss, sizeof h_rss, (double)rss);
    uint64_t model = x->m ? x->m->h.file_bytes : 0;
    human(h_model, sizeof h_model, (double)model);
    st_text_printf(t,
                   "# Memory\r\nused_memory:%llu\r\nused_memory_human:%s\r\nused_memory_rss:%zu\r\n"
                   "used_memory_rss_human:%s\r\nused_memory_peak:%llu\r\nused_memory_peak_human:%s\r\n"
                   "used_memory_model_mapped:%llu\r\nused_memory_model_mapped_human:%s\r\nmaxmemory:0\r\n"
                   "maxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\nmem_fragmentation_ratio:%.2f\r\n"
                   "mem_allocator:%s\r\nallocator_trims:%llu\r\n\r\n",
                   (unsigned long long)used, h_used, rss, h_rss, (unsigned long long)peak, h_peak,
                   (unsigned long long)model, h_model, used ? (double)rss / (double)used : 0.0, st_allocator_name(),
                   (unsigned long long)st_trim_count());
}

static void info_keyspace(st_text *t, const info_ctx *x)
{
    st_text_printf(t, "# Keyspace\r\n");
    if (x->sv)
        st_text_printf(t, "db0:keys=%llu,expires=0,avg_ttl=0\r\n",
                       (unsigned long long)(st_overlay_users(x->sv->ov) + x->m->segments));
    st_text_printf(t, "\r\n");
}

static void info_errorstats(st_text *t, const info_ctx *x)
{
    st_text_printf(t, "# Errorstats\r\n");
    for (int i = 0; i < ST_ERROR_CODES; i++) {
        uint64_t n = atomic_load_explicit(&x->stats->errors[i], memory_order_relaxed);
        if (n) st_text_printf(t, "errorstat_%s:count=%llu\r\n", st_error_codes[i], (unsigned long long)n);
    }
    st_text_printf(t, "\r\n");
}

static void info_model(st_text *t, const info_ctx *x)
{
    if (!x->sv) {
        st_text_printf(t, "# Model\r\nmodel_loaded:0\r\nmodel_path:%s\r\n\r\n", x->c->cfg->model_path);

        return;
    }
    st_text_printf(t,
            "# Model\r\nmodel_loaded:1\r\nmodel_path:%s\r\nmodel_generation:%llu\r\nmodel_loaded_at:%lld\r\nmodel_users:%u\r\n"
            "model_segments:%u\r\nmodel_factors:%u\r\nmodel_nnz:%llu\r\nmodel_fingerprint:%016llx\r\n"
            "model_created:%lld\r\nmodel_calibrated:%d\r\nmodel_reloads:%llu\r\nmodel_reload_failures:%llu\r\n"
            "model_last_reload_error:%s\r\n\r\n",
            x->sv->path, (unsigned long long)x->sv->generation, (long long)x->sv->loaded_at, x->m->users, x->m->segments, x->m->k,
            (unsigned long long)x->m->h.nnz, (unsigned long long)x->m->h.fingerprint, (long long)x->m->h.created,
            (x->m->h.flags & ST_MODEL_CALIBRATED) ? 1 : 0, (unsigned long long)x->si->reloads,
            (unsigned long long)x->si->reload_failures, x->si->last_reload_error);
}

static void info_quality(st_text *t, const info_ctx *x)
{
    if (!x->sv) return;
    /* Online quality since the model was loaded (online_quality). */
    uint64_t n = atomic_load_explicit(&x->sv->q_new, memory_order_relaxed);
    double d = n ? (double)n : 1.0;
    st_text_printf(t,
            "# Quality\r\nonline_new_engagements:%llu\r\nonline_repeat_engagements:%llu\r\n"
            "online_hit_rate_top10:%.4f\r\nonline_hit_rate_top50:%.4f\r\n"
            "online_popularity_hit_rate_top10:%.4f\r\nonline_popularity_hit_rate_top50:%.4f\r\n\r\n",
            (unsigned long long)n, (unsigned long long)atomic_load_explicit(&x->sv->q_repeat, memory_order_relaxed),
            (double)atomic_load_explicit(&x->sv->q_hit10, memory_order_relaxed) / d,
            (double)atomic_load_explicit(&x->sv->q_hit50, memory_order_relaxed) / d,
            (double)atomic_load_explicit(&x->sv->q_pop10, memory_order_relaxed) / d,
            (double)atomic_load_explicit(&x->sv->q_pop50, memory_order_relaxed) / d);
}

static void info_persistence(st_text *t, const info_ctx *x)
{
    st_server_journal_info ji;
    x->c->ops->get_journal(x->c->srv, &ji);
    st_overlay_stats os = {0};
    if (x->sv) st_overlay_get_stats(x->sv->ov, &os); /* no model yet: nothing online */
    const st_journal_status *js = &ji.j;
    const st_journal_compaction *lc = &js->last_compaction;
    st_text_printf(t,
            "# Persistence\r\naof_enabled:%d\r\njournal_enabled:%d\r\njournal_path:%s\r\njournal_id:%016llx\r\n"
            "appendfsync:%s\r\njournal_status:%s\r\naof_last_write_status:%s\r\njournal_rolled_back_writes:%llu\r\n"
            "journal_bytes:%llu\r\njournal_records:%llu\r\n"
            "journal_last_seq:%llu\r\njournal_durable_seq:%llu\r\njournal_appends:%llu\r\n"
            "journal_append_failures:%llu\r\njournal_fsyncs:%llu\r\njournal_fsync_failures:%llu\r\n"
            "journal_last_fsync_usec:%.0f\r\njournal_last_error:%s\r\njournal_compaction_in_progress:%d\r\n"
            "journal_compactions:%llu\r\njournal_compaction_failures:%llu\r\n"
            "journal_last_compaction_bytes:%llu->%llu\r\njournal_last_compaction_erased_events:%llu\r\n"
            "journal_start_records:%llu\r\njournal_start_torn_bytes:%llu\r\njournal_start_seconds:%.3f\r\n"
            "online_users:%llu\r\nforgotten_users:%llu\r\nhidden_model_rows:%llu\r\n"
            "records_already_in_model:%llu\r\nevents_unknown_segment:%llu\r\n",
            ji.has_journal, ji.has_journal, ji.has_journal ? ji.path : "", (unsigned long long)ji.id,
            ji.has_journal ? st_appendfsync_name(ji.policy) : "", !ji.has_journal ? "none" : js->broken ? "broken" : "ok",
            js->broken ? "err" : "ok", (unsigned long long)js->rolled_back, (unsigned long long)js->bytes, (unsigned long long)js->records, (unsigned long long)js->last_seq,
            (unsigned long long)js->durable_seq, (unsigned long long)js->appends,
            (unsigned long long)js->append_failures, (unsigned long long)js->fsyncs,
            (unsigned long long)js->fsync_failures, js->last_fsync_seconds * 1e6, js->last_error, ji.compacting,
            (unsigned long long)js->compactions, (unsigned long long)js->compaction_failures,
            (unsigned long long)lc->bytes_before, (unsigned long long)lc->bytes_after,
            (unsigned long long)lc->events_erased, (unsigned long long)ji.start_records,
            (unsigned long long)ji.start_torn_bytes, ji.start_seconds, (unsigned long long)os.live,
            (unsigned long long)os.forgotten, (unsigned long long)os.hidden_rows,
            (unsigned long long)os.skipped_in_model, (unsigned long long)os.unknown_segment);
    st_segov_stats ss = {0};
    if (x->sv) st_segov_get_stats(st_overlay_segments(x->sv->ov), &ss);
    st_text_printf(t, "added_segments:%llu\r\npending_segments:%llu\r\nadded_segment_members:%llu\r\n\r\n",
                   (unsigned long long)ss.visible, (unsigned long long)ss.pending, (unsigned long long)ss.members);
}

static void info_stats(st_text *t, const info_ctx *x)
{
#define S(f) (unsigned long long)atomic_load_explicit(&x->stats->f, memory_order_relaxed)
    uint64_t errors = 0;
    for (int i = 0; i < ST_ERROR_CODES; i++) errors += atomic_load_explicit(&x->stats->errors[i], memory_order_relaxed);
    st_text_printf(t,
            "# Stats\r\ntotal_connections_received:%llu\r\nrejected_connections:%llu\r\n"
            "total_commands_processed:%llu\r\ntotal_net_input_bytes:%llu\r\ntotal_net_output_bytes:%llu\r\n"
            "protocol_errors:%llu\r\noutput_limit_disconnections:%llu\r\nidle_timeout_disconnections:%llu\r\n"
            "heavy_queue_length:%llu\r\nacl_access_denied_auth:%llu\r\nacl_access_denied_cmd:%llu\r\n"
            "cross_protocol_attempts:%llu\r\nrequest_timeout_disconnections:%llu\r\nprotected_mode_refusals:%llu\r\n"
            "total_error_replies:%llu\r\n\r\n",
            S(connections), S(rejected_connections), S(commands), S(net_in), S(net_out), S(protocol_errors),
            S(dropped_output), S(idle_closed), (unsigned long long)x->si->heavy_queued, S(auth_failures),
            S(acl_denied), S(cross_protocol), S(request_timeouts), S(protected_refused), (unsigned long long)errors);
#undef S
}

static void info_commandstats(st_text *t, const info_ctx *x)
{
    st_text_printf(t, "# Commandstats\r\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const st_cmdstat *s = &x->stats->cmd[i];
        uint64_t calls = atomic_load_explicit(&s->calls, memory_order_relaxed),
                 rej = atomic_load_explicit(&s->rejected, memory_order_relaxed);
        if (calls == 0 && rej == 0) continue;
        double usec = (double)atomic_load_explicit(&s->nanos, memory_order_relaxed) / 1000.0;
        st_text_printf(t, "cmdstat_%s:calls=%llu,usec=%.0f,usec_per_call=%.2f,rejected_calls=%llu,failed_calls=%llu\r\n",
                commands[i].name, (unsigned long long)calls, usec, calls ? usec / (double)calls : 0.0,
                (unsigned long long)rej,
                (unsigned long long)atomic_load_explicit(&s->failed, memory_order_relaxed));
    }
    st_text_printf(t, "\r\n");
}

static void info_latencystats(st_text *t, const info_ctx *x)
{
    st_text_printf(t, "# Latencystats\r\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const st_cmdstat *s = &x->stats->cmd[i];
        if (atomic_load_explicit(&s->calls, memory_order_relaxed) == 0) continue;
        st_text_printf(t, "latency_percentiles_usec_%s:p50=%.3f,p99=%.3f,p99.9=%.3f\r\n", commands[i].name,
                percentile(s, 0.50) / 1000.0, percentile(s, 0.99) / 1000.0, percentile(s, 0.999) / 1000.0);
    }
    st_text_printf(t, "\r\n");
}

static void info_approx(st_text *t, const info_ctx *x) { st_cmd_info_approx(t, x->sv); }

/* INFO's sections, in order: name, in the default set or only when asked
 * (INFO commandstats, INFO all), and the writer. */
static const struct {
    const char *name;
    int in_default;
    void (*write)(st_text *t, const info_ctx *x);
} info_sections[] = {
    {"server", 1, info_server},           {"clients", 1, info_clients}, {"memory", 1, info_memory},
    {"model", 1, info_model},             {"quality", 1, info_quality}, {"persistence", 1, info_persistence},
    {"stats", 1, info_stats},             {"commandstats", 0, info_commandstats},
    {"latencystats", 0, info_latencystats}, {"errorstats", 0, info_errorstats},
    {"keyspace", 1, info_keyspace},       {"approx", 1, info_approx},
};

void cmd_info(st_ctx *c)
{
    st_server_info si;
    c->ops->get_info(c->srv, &si);
    st_stats *stats = st_malloc(sizeof *stats);
    if (!stats) {
        resp_error(c->out, "ERR out of memory");
        return;
    }
    c->ops->sum_stats(c->srv, stats);
    st_text t = {0};
    info_ctx x = {.c = c, .si = &si, .stats = stats, .sv = c->model, .m = c->model ? &c->model->m : NULL};
    for (size_t i = 0; i < sizeof info_sections / sizeof info_sections[0]; i++)
        if (want_section(c, info_sections[i].name, info_sections[i].in_default)) info_sections[i].write(&t, &x);
    if (t.buf) resp_bulk(c->out, t.buf, t.len >= 2 ? t.len - 2 : t.len);
    else resp_bulk(c->out, "", 0);
    st_free(t.buf);
    st_free(stats);
}

/* ---- LATENCY HISTOGRAM ------------------------------------------------------------ */

static int histogram_wanted(const st_ctx *c, const char *name)
{
    if (c->argc == 2) return 1;
    for (int i = 2; i < c->argc; i++)
        if (st_cmd_is_word(&c->argv[i], name)) return 1;
    return 0;
}

/* One command's histogram as Redis 7 lays it out: calls, then cumulative
 * counts at powers of two of microseconds (only where the count grows). */
static void histogram_entry(resp_out *o, const char *name, const st_cmdstat *s)
{
    uint64_t at[64] = {0}, calls = atomic_load_explicit(&s->calls, memory_order_relaxed);
    for (int b = 0; b < ST_LAT_BUCKETS; b++) {
        uint64_t n = atomic_load_explicit(&s->hist[b], memory_order_relaxed);
        if (!n) continue;
        double us = st_latency_bucket_ns(b) / 1000.0;
        int k = 0;
        while (k < 63 && (double)(UINT64_C(1) << k) < us) k++;
        at[k] += n;
    }
    int64_t nonzero = 0;
    for (int k = 0; k < 64; k++) nonzero += at[k] != 0;
    resp_bulk_str(o, name);
    resp_map(o, 2);
    resp_bulk_str(o, "calls");
    resp_int(o, (int64_t)calls);
    resp_bulk_str(o, "histogram_usec");
    resp_map(o, nonzero);
    uint64_t cum = 0;
    for (int k = 0; k < 64; k++) {
        if (!at[k]) continue;
        cum += at[k];
        resp_int(o, (int64_t)(UINT64_C(1) << k));
        resp_int(o, (int64_t)cum);
    }
}

/* LATENCY HISTOGRAM [command ...]: every command called so far, or those
 * named ("segments", "client|list"). */
void cmd_latency_histogram(st_ctx *c)
{
    st_stats *stats = st_malloc(sizeof *stats);
    if (!stats) {
        resp_error(c->out, "ERR out of memory");
        return;
    }
    c->ops->sum_stats(c->srv, stats);
    size_t n = NCOMMANDS;
    int64_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += atomic_load_explicit(&stats->cmd[i].calls, memory_order_relaxed) && histogram_wanted(c, commands[i].name);
    resp_map(c->out, k);
    for (size_t i = 0; i < n; i++)
        if (atomic_load_explicit(&stats->cmd[i].calls, memory_order_relaxed) && histogram_wanted(c, commands[i].name))
            histogram_entry(c->out, commands[i].name, &stats->cmd[i]);
    st_free(stats);
}
