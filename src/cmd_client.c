/* cmd_client: the connection as Redis clients and tools see it: HELLO and
 * the CLIENT subcommands (SETNAME, GETNAME, ID, SETINFO, INFO, LIST, KILL,
 * REPLY, NO-EVICT, NO-TOUCH).
 *
 * Clients send these on connect (go-redis 9, jedis 5, redis-py 5 and ioredis
 * send CLIENT SETINFO; redis-cli -3 sends HELLO 3) and operators use LIST and
 * KILL; they answer as Redis 7 answers, line formats included, so tools that
 * parse them read ours. A connection's name and library fields are changed
 * under the server's client lock, because CLIENT LIST on another event loop
 * reads them; LIST and KILL reach every loop's connections through
 * ctx->ops->clients, and a killed connection is closed by its own loop.
 * HTTP connections are not Redis clients: they are neither listed nor killed.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "util.h"
#include "version.h"

/* ---- names ----------------------------------------------------------------- */

static int printable(const resp_arg *a)
{
    for (size_t i = 0; i < a->len; i++)
        if (a->ptr[i] < '!' || a->ptr[i] > '~') return 0;
    return 1;
}

/* Copies a into dst (cap bytes) under the client lock. */
static void set_field(st_ctx *c, char *dst, size_t cap, const resp_arg *a)
{
    size_t n = a->len < cap ? a->len : cap - 1;
    c->ops->lock_clients(c->srv, 1);
    memcpy(dst, a->ptr, n);
    dst[n] = '\0';
    c->ops->lock_clients(c->srv, 0);
}

int st_cmd_set_name(st_ctx *c, const resp_arg *a)
{
    if (!printable(a)) {
        resp_error(c->out, "ERR Client names cannot contain spaces, newlines or special characters.");
        return -1;
    }
    if (a->len >= sizeof c->session->name) {
        resp_error(c->out, "ERR client name too long (at most %zu bytes)", sizeof c->session->name - 1);
        return -1;
    }
    set_field(c, c->session->name, sizeof c->session->name, a);
    return 0;
}

void cmd_client_setname(st_ctx *c)
{
    if (st_cmd_set_name(c, &c->argv[2]) == 0) resp_simple(c->out, "OK");
}

void cmd_client_getname(st_ctx *c)
{
    if (c->session->name[0]) resp_bulk_str(c->out, c->session->name);
    else resp_null(c->out);
}

void cmd_client_id(st_ctx *c) { resp_int(c->out, (int64_t)c->session->id); }

/* CLIENT SETINFO LIB-NAME name | LIB-VER version. */
void cmd_client_setinfo(st_ctx *c)
{
    const resp_arg *attr = &c->argv[2], *v = &c->argv[3];
    int is_name = st_cmd_is_word(attr, "LIB-NAME");
    if (!is_name && !st_cmd_is_word(attr, "LIB-VER")) {
        resp_error(c->out, "ERR Unrecognized option '%.*s'", (int)(attr->len > 64 ? 64 : attr->len), attr->ptr);
        return;
    }
    if (!printable(v) || v->len >= sizeof c->session->lib_name) {
        resp_error(c->out, "ERR %s cannot contain spaces, newlines or special characters (at most %zu bytes).",
                   is_name ? "lib-name" : "lib-ver", sizeof c->session->lib_name - 1);
        return;
    }
    if (is_name) set_field(c, c->session->lib_name, sizeof c->session->lib_name, v);
    else set_field(c, c->session->lib_ver, sizeof c->session->lib_ver, v);
    resp_simple(c->out, "OK");
}

/* CLIENT NO-EVICT and NO-TOUCH ON|OFF: nothing is evicted and nothing keeps
 * access times here, so both are accepted and change nothing. */
void cmd_client_onoff(st_ctx *c)
{
    if (st_cmd_is_word(&c->argv[2], "ON") || st_cmd_is_word(&c->argv[2], "OFF")) resp_simple(c->out, "OK");
    else resp_error(c->out, "ERR syntax error");
}

/* CLIENT REPLY ON|OFF|SKIP: the loop drops the replies (server.c). */
void cmd_client_reply(st_ctx *c)
{
    st_session *s = c->session;
    if (st_cmd_is_word(&c->argv[2], "ON")) {
        s->reply_off = s->reply_skip_next = 0;
        resp_simple(c->out, "OK");
    } else if (st_cmd_is_word(&c->argv[2], "OFF")) {
        s->reply_off = 1;
    } else if (st_cmd_is_word(&c->argv[2], "SKIP")) {
        if (!s->reply_off) s->reply_skip_next = 1;
    } else {
        resp_error(c->out, "ERR syntax error");
    }
}

/* ---- LIST, INFO, KILL ----------------------------------------------------------- */

/* Which connections a LIST or KILL means. */
typedef struct {
    st_text *t;            /* LIST, INFO: the lines */
    const resp_arg *ids;   /* ID id ...: nids ids, checked numbers */
    int nids;
    const resp_arg *addr, *laddr, *user;
    uint64_t id, self;     /* id: KILL ID; 0 = any */
    int64_t maxage;        /* KILL MAXAGE; 0 = any */
    int none;              /* TYPE master|replica|pubsub: nothing here is one */
    int skipme;
} client_filter;

static int arg_eq(const resp_arg *a, const char *s) { return a->len == strlen(s) && memcmp(a->ptr, s, a->len) == 0; }

static int matches(const client_filter *f, const st_client_info *ci)
{
    if (f->none) return 0;
    if (f->id && ci->id != f->id) return 0;
    if (f->addr && !arg_eq(f->addr, ci->sess->addr)) return 0;
    if (f->laddr && !arg_eq(f->laddr, ci->sess->laddr)) return 0;
    if (f->user && !arg_eq(f->user, ci->sess->user)) return 0;
    if (f->maxage && ci->age < (double)f->maxage) return 0;
    if (f->skipme && ci->id == f->self) return 0;
    if (f->nids) {
        int hit = 0;
        for (int i = 0; i < f->nids && !hit; i++) hit = strtoull(f->ids[i].ptr, NULL, 10) == ci->id;
        if (!hit) return 0;
    }
    return 1;
}

/* One line of CLIENT LIST, in Redis 8's layout (fields Redis has and
 * starling does not, pub/sub, MULTI and WATCH, are there with their idle
 * values); io-thread is the event loop serving the connection. */
static void client_line(st_text *t, const st_client_info *ci)
{
    const st_session *s = ci->sess;
    st_text_printf(t,
                   "id=%llu addr=%s laddr=%s fd=%d name=%s age=%lld idle=%lld flags=%s db=0 sub=0 psub=0 ssub=0 "
                   "multi=-1 watch=0 qbuf=%llu qbuf-free=%llu argv-mem=0 multi-mem=0 rbs=%llu rbp=0 obl=%llu oll=0 "
                   "omem=%llu tot-mem=%llu events=r cmd=%s user=%s redir=-1 resp=%d lib-name=%s lib-ver=%s io-thread=%d\n",
                   (unsigned long long)ci->id, s->addr, s->laddr, ci->fd, s->name, (long long)ci->age,
                   (long long)ci->idle, ci->blocked ? "b" : "N", (unsigned long long)ci->qbuf,
                   (unsigned long long)ci->qbuf_free, (unsigned long long)(ci->qbuf + ci->qbuf_free),
                   (unsigned long long)ci->obl, (unsigned long long)ci->omem, (unsigned long long)ci->tot_mem, ci->cmd,
                   s->user, s->resp, s->lib_name, s->lib_ver, ci->io_thread);
}

static int list_one(void *arg, const st_client_info *ci)
{
    client_filter *f = arg;
    if (!matches(f, ci)) return 0;
    client_line(f->t, ci);
    return 1;
}

static void reply_text(st_ctx *c, st_text *t)
{
    if (t->buf) resp_bulk(c->out, t->buf, t->len);
    else resp_bulk(c->out, "", 0);
    st_free(t->buf);
}

void cmd_client_info(st_ctx *c)
{
    st_text t = {0};
    client_filter f = {.t = &t, .id = c->session->id};
    c->ops->clients(c->srv, list_one, &f, 0, 0, NULL);
    reply_text(c, &t);
}

static int check_ids(st_ctx *c, const resp_arg *ids, int n)
{
    for (int i = 0; i < n; i++) {
        char *end;
        unsigned long long v = strtoull(ids[i].ptr, &end, 10);
        if (ids[i].len == 0 || end != ids[i].ptr + ids[i].len || v == 0 || ids[i].ptr[0] == '-') {
            resp_error(c->out, "ERR Invalid client ID");
            return -1;
        }
    }
    return 0;
}

/* TYPE's value: normal matches every connection, the others none. */
static int client_type(st_ctx *c, const resp_arg *a, int *none)
{
    if (st_cmd_is_word(a, "normal")) *none = 0;
    else if (st_cmd_is_word(a, "master") || st_cmd_is_word(a, "replica") || st_cmd_is_word(a, "slave") ||
             st_cmd_is_word(a, "pubsub"))
        *none = 1;
    else {
        resp_error(c->out, "ERR Unknown client type '%.*s'", (int)(a->len > 64 ? 64 : a->len), a->ptr);
        return -1;
    }
    return 0;
}

/* CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id [id ...]] */
void cmd_client_list(st_ctx *c)
{
    st_text t = {0};
    client_filter f = {.t = &t};
    for (int i = 2; i < c->argc; i++) {
        if (st_cmd_is_word(&c->argv[i], "TYPE") && i + 1 < c->argc) {
            if (client_type(c, &c->argv[++i], &f.none) != 0) return;
        } else if (st_cmd_is_word(&c->argv[i], "ID") && i + 1 < c->argc) {
            f.ids = &c->argv[i + 1];
            f.nids = c->argc - i - 1;
            if (check_ids(c, f.ids, f.nids) != 0) return;
            break;
        } else {
            resp_error(c->out, "ERR syntax error");
            return;
        }
    }
    c->ops->clients(c->srv, list_one, &f, 0, 0, NULL);
    reply_text(c, &t);
}

static int kill_one(void *arg, const st_client_info *ci) { return matches(arg, ci); }

/* KILL's filters (the new form): ID, ADDR, LADDR, USER, SKIPME, TYPE,
 * MAXAGE. Replies the error and returns -1 on a bad one. */
static int kill_filters(st_ctx *c, client_filter *f)
{
    for (int i = 2; i < c->argc; i += 2) {
        const resp_arg *k = &c->argv[i];
        if (i + 1 >= c->argc) {
            resp_error(c->out, "ERR syntax error");
            return -1;
        }
        const resp_arg *v = &c->argv[i + 1];
        if (st_cmd_is_word(k, "ID")) {
            if (check_ids(c, v, 1) != 0) return -1;
            f->id = strtoull(v->ptr, NULL, 10);
        } else if (st_cmd_is_word(k, "ADDR")) {
            f->addr = v;
        } else if (st_cmd_is_word(k, "LADDR")) {
            f->laddr = v;
        } else if (st_cmd_is_word(k, "USER")) {
            f->user = v;
        } else if (st_cmd_is_word(k, "TYPE")) {
            if (client_type(c, v, &f->none) != 0) return -1;
        } else if (st_cmd_is_word(k, "SKIPME") && (st_cmd_is_word(v, "yes") || st_cmd_is_word(v, "no"))) {
            f->skipme = st_cmd_is_word(v, "yes");
        } else if (st_cmd_is_word(k, "MAXAGE")) {
            if (st_cmd_arg_i64(c, v, &f->maxage) != 0) return -1;
        } else {
            resp_error(c->out, "ERR syntax error");
            return -1;
        }
    }
    return 0;
}

/* CLIENT KILL ip:port (the old form: +OK, or an error when no connection
 * has that address), or CLIENT KILL filter value ... (the number killed;
 * SKIPME yes by default). Killing one's own connection closes it after the
 * reply. */
void cmd_client_kill(st_ctx *c)
{
    client_filter f = {.self = c->session->id, .skipme = 1};
    int old = c->argc == 3;
    if (old) {
        f.addr = &c->argv[2];
        f.skipme = 0;
    } else if (kill_filters(c, &f) != 0) {
        return;
    }
    int self = 0;
    uint64_t n = c->ops->clients(c->srv, kill_one, &f, 1, c->session->id, &self);
    if (self) c->session->close_after_reply = 1;
    if (!old) resp_int(c->out, (int64_t)n);
    else if (n) resp_simple(c->out, "OK");
    else resp_error(c->out, "ERR No such client");
}

/* ---- HELLO --------------------------------------------------------------------- */

/* HELLO [protover [AUTH user pass] [SETNAME name]]: 2 or 3; with 3 the
 * connection's replies use RESP3's maps, doubles and nulls from here on. */
void cmd_hello(st_ctx *c)
{
    int64_t ver = 0;
    if (c->argc >= 2) {
        char *end;
        ver = strtoll(c->argv[1].ptr, &end, 10);
        if (c->argv[1].len == 0 || end != c->argv[1].ptr + c->argv[1].len) {
            resp_error(c->out, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (ver != 2 && ver != 3) {
            resp_error(c->out, "NOPROTO unsupported protocol version");
            return;
        }
    }
    const resp_arg *name = NULL;
    for (int i = 2; i < c->argc; i++) {
        if (st_cmd_is_word(&c->argv[i], "AUTH") && i + 2 < c->argc) {
            if (st_cmd_check_auth(c, &c->argv[i + 1], &c->argv[i + 2]) != 0) return;
            i += 2;
        } else if (st_cmd_is_word(&c->argv[i], "SETNAME") && i + 1 < c->argc) {
            name = &c->argv[++i];
        } else {
            resp_error(c->out, "ERR Syntax error in HELLO option '%.*s'", (int)(c->argv[i].len > 64 ? 64 : c->argv[i].len),
                       c->argv[i].ptr);
            return;
        }
    }
    if (!(c->session->rights & ST_RIGHT_AUTHED)) {
        resp_error(c->out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
                           "<proto> AUTH <user> <pass> option can be used to authenticate the client and select the "
                           "RESP protocol version at the same time");
        return;
    }
    if (name && st_cmd_set_name(c, name) != 0) return;
    if (ver) {
        c->ops->lock_clients(c->srv, 1);
        c->session->resp = (int)ver;
        c->ops->lock_clients(c->srv, 0);
        c->out->proto = (int)ver;
    }
    resp_map(c->out, 7);
    st_cmd_kv_str(c->out, "server", "starling");
    st_cmd_kv_str(c->out, "version", st_version);
    st_cmd_kv_int(c->out, "proto", c->session->resp);
    st_cmd_kv_int(c->out, "id", (int64_t)c->session->id);
    st_cmd_kv_str(c->out, "mode", "standalone");
    st_cmd_kv_str(c->out, "role", "master");
    resp_bulk_str(c->out, "modules");
    resp_array(c->out, 0);
}
