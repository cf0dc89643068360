/* service: what a command handler (commands.c and the cmd_*.c families),
 * the HTTP API (api.c) and /metrics get from the server: the configuration,
 * the connection's session, the served model and scratch, and a small table
 * of operations (st_server_ops) for what only the server can do (apply a
 * write, reload the model, compact the journal, report its figures).
 *
 * Types only: no module defines a function declared here, so handlers reach
 * the server through the table it hands them and never link to server.c
 * (the serve layer's arrows go one way: server -> commands, api, metrics ->
 * served, stats -> model, score, resp).
 */
#ifndef STARLING_SERVICE_H
#define STARLING_SERVICE_H

#include <stdint.h>

#include "acl.h"
#include "journal.h"
#include "resp.h"
#include "served.h"
#include "slowlog.h"
#include "stats.h"

typedef struct {
    const char *model_path;
    const char *bind;        /* address for TCP; "127.0.0.1" */
    int port;                /* 0 = any free port (logged), -1 = no TCP */
    const char *unixsocket;  /* path, or NULL */
    int unixsocket_perm;     /* mode of the socket file, e.g. 0700 */
    int threads;             /* event loops; 0 = one per CPU */
    int heavy_threads;       /* workers for heavy commands */
    uint64_t maxclients;
    uint64_t max_request;    /* bytes of one request */
    uint64_t max_args;       /* arguments of one request */
    uint64_t output_limit;   /* bytes of replies pending for one client; past it the client is dropped */
    uint64_t max_count;      /* largest COUNT of AUDIENCE, LOOKALIKE, SIMILAR and range replies */
    double timeout;          /* close clients idle this many seconds; 0 = never */
    double shutdown_timeout; /* seconds SIGTERM waits for in-flight requests */
    const char *requirepass; /* the default user's password; NULL = none */
    const st_acl *acl;       /* users and rights (acl.h); requirepass is its default user */
    int protected_mode;      /* bound beyond loopback with no password: refuse non-loopback clients */
    double request_timeout;  /* cut a connection whose started request is not complete after this many s; 0 = never */
    uint64_t http_maxclients; /* HTTP connections at once, apart from maxclients (RESP) */
    int allow_reload_path;   /* MODEL RELOAD may name a file */
    int loglevel;
    const char *logfile;     /* NULL = stderr */
    const char *journal;     /* the journal file; NULL = none, and writes are refused */
    st_appendfsync appendfsync;
    uint64_t compact_min_bytes;   /* no automatic compaction below this journal size */
    uint64_t compact_percentage;  /* compact when the journal grew this % past its size after the last one; 0 = never */
    double forget_compact_delay;  /* compact this many seconds after a FORGET, to erase from the file too; 0 = never */
    uint64_t min_audience;   /* privacy floor: no audience or reach of fewer users is disclosed; 0 = none */
    uint64_t min_seeds;      /* privacy floor: LOOKALIKE needs this many known seeds */
    uint64_t segment_min_users; /* distinct users whose EVENTs on an unknown segment create it (segoverlay.h) */
    int enable_debug;        /* the DEBUG command (failure injection for tests) */
    /* HTTP (api.h): the JSON API, /metrics, /healthz, /readyz and the page. */
    const char *http_bind;   /* "127.0.0.1" */
    int http_port;           /* -1 = no HTTP (the default), 0 = any free port (logged) */
    double http_rate;        /* requests per second per client address; 0 = no limit */
    double http_burst;       /* requests an address may send at once before the rate applies */
    const char *const *http_allow_host;   /* names Host may carry besides loopback, IP literals and http_bind; "*" = any */
    int n_http_allow_host;
    const char *const *http_allow_origin; /* origins allowed cross-origin requests (CORS); "*" = any */
    int n_http_allow_origin;
    double slowlog_slower_than;  /* microseconds; commands slower go to the slow log; -1 = none, 0 = all */
    uint64_t slowlog_max_len;    /* entries the slow log keeps */
    const char *config_file;     /* the --config file, for CONFIG REWRITE; NULL = none */
    uint64_t config_changed;     /* CONFIG SET's parameters changed since start (cmd_config.c's rows) */
} st_server_config;

/* What a connection's commands can see and set. */
typedef struct {
    uint64_t id;
    unsigned rights;       /* acl.h: ST_RIGHT_* of the user signed in, with ST_RIGHT_AUTHED */
    char user[ST_ACL_NAME_MAX + 1]; /* the user signed in ("default" before any AUTH) */
    uint32_t auth_failures; /* failed AUTHs on this connection */
    int close_after_reply; /* QUIT, or an error that ends the connection */
    char name[129];        /* CLIENT SETNAME; empty when none */
    uint64_t journal_wait; /* replies not yet sent depend on journal records up to this seq */
    char addr[64];
    char laddr[64];        /* the local address the connection came in on */
    double created;
    /* Redis compatibility (CLIENT, HELLO): the name fields above and the
     * library's below are written by the connection's own loop under the
     * server's client lock (ops->lock_clients) and read by CLIENT LIST on
     * any loop under it. */
    int resp;              /* protocol version of replies: 2, or 3 after HELLO 3 */
    char lib_name[129], lib_ver[129]; /* CLIENT SETINFO */
    int reply_off;         /* CLIENT REPLY OFF: replies are dropped */
    int reply_skip_next;   /* CLIENT REPLY SKIP: the next command's reply is dropped */
    int reply_skip;        /* ... this command's reply is dropped */
    atomic_int last_cmd;   /* the command table's row + 1 of the last command; 0 = none */
} st_session;

/* One connection as CLIENT LIST shows it, copied under the client lock. */
typedef struct {
    uint64_t id;
    const st_session *sess; /* valid only inside the callback */
    int fd;
    double age, idle;       /* seconds */
    uint64_t qbuf, qbuf_free, obl, omem, tot_mem;
    const char *cmd;        /* the last command run ("NULL" before any) */
    int blocked, is_http;
    int io_thread;          /* the event loop serving it (Redis 8's io-thread field) */
} st_client_info;

/* Called for each connection by ops->clients; a nonzero return from a
 * kill filter marks the connection to be closed. */
typedef int (*st_client_fn)(void *arg, const st_client_info *ci);

typedef struct st_server st_server;

/* Server-wide figures for INFO. */
typedef struct {
    double started;        /* monotonic seconds */
    double started_unix;
    uint64_t clients, blocked_clients, loops, heavy_threads, heavy_queued;
    uint64_t reloads, reload_failures;
    char last_reload_error[256];
    const char *tcp_addr;
    int tcp_port;
    const char *unixsocket;
    uint64_t maxclients, http_clients; /* http_clients: of clients, those on the HTTP port */
    const char *http_addr;
    int http_port;
    int journal;                 /* online writes are journaled (--journal, once the model is loaded) */
    uint64_t journal_bytes;      /* the journal file's size */
    uint64_t journal_lag_events; /* writes appended to the journal but not yet fdatasync'ed */
    double journal_lag_seconds;  /* while there are such writes: seconds since the last fdatasync; else 0 */
    uint64_t journal_write_failures; /* failed appends and fdatasyncs since start */
    int journal_broken;              /* a failed fdatasync: writes refused (MISCONF) until restart */
    uint64_t journal_rolled_back;    /* writes a failed fdatasync lost, undone (appendfsync always) */
} st_server_info;

/* What an online write did. */
typedef struct {
    uint64_t seq;       /* the journal record's */
    int existed;        /* the user appeared in replies before */
    int known_segment;  /* EVENT: the served model knows the segment */
    float score;        /* EVENT: the user's new score for it; NaN when nothing changed (unknown segment, zero value) */
    uint32_t seg_members, seg_used; /* SEGMENT: its members after the write, those its vector was solved from */
    int seg_visible;    /* SEGMENT, SEGVEC, EVENT on a segment the model does not know: the segment is served */
} st_write_result;

/* The journal and what was replayed at start, for INFO. has_journal is 0
 * without one. */
typedef struct {
    int has_journal;
    st_journal_status j;
    const char *path;
    st_appendfsync policy;
    uint64_t id;
    int compacting;
    uint64_t start_records, start_torn_bytes, start_torn_at;
    double start_seconds;
} st_server_journal_info;

/* The server's services, through which handlers reach it. Each takes the
 * st_server the table came with (ctx->srv). */
typedef struct {
    /* Applies an EVENT or FORGET record (seq is assigned here) to the served
     * model's overlay and appends it to the journal: the change is prepared
     * with no lock held (sc's work buffer; may allocate to grow it), then
     * checked, journaled and made visible in one step under the write lock.
     * When this returns 0 the change is visible and the record is in the
     * journal (durable under appendfsync always once an fdatasync covers it:
     * the connection's replies wait for that through session->journal_wait).
     * -1 with err: no journal, the journal could not take the record (a full
     * disk: err starts with "MISCONF"), or out of memory; nothing was applied. */
    int (*write)(st_server *srv, st_jrecord *r, st_scratch *sc, st_write_result *res, char *err);
    /* Loads path (or the current model's path when NULL), verifies it, rebuilds
     * its overlay from the journal and swaps it in. Serialised; blocks while
     * loading. 0, or -1 with err set and the current model unchanged. */
    int (*reload)(st_server *srv, const char *path, char *err);
    /* Asks the maintenance thread to compact the journal now. 0, or -1 with err
     * when there is no journal or a compaction is already running. */
    int (*compact)(st_server *srv, char *err);
    /* Server-wide figures for INFO and /metrics. */
    void (*get_info)(st_server *srv, st_server_info *info);
    /* Every thread's statistics summed into out. */
    void (*sum_stats)(st_server *srv, st_stats *out);
    /* The journal and what was replayed at start. */
    void (*get_journal)(st_server *srv, st_server_journal_info *info);
    /* Takes (on = 1) or releases (0) the lock under which connections'
     * names are changed and listed. Held briefly; never across a command. */
    void (*lock_clients)(st_server *srv, int on);
    /* Calls fn for every RESP connection of every loop, under the client
     * lock (fn must not call back into the server). With kill set, each
     * connection fn returns nonzero for is marked to be closed by its own
     * loop soon after (the caller's own connection, self_id, is not marked:
     * *self_hit says it matched). Returns how many fn accepted. */
    uint64_t (*clients)(st_server *srv, st_client_fn fn, void *arg, int kill, uint64_t self_id, int *self_hit);
    /* CONFIG SET: calls fn on the server's configuration under its lock
     * (fn stores the new values), then applies what depends on them (the
     * HTTP rate limiter, the journal's fsync policy). */
    void (*update_config)(st_server *srv, void (*fn)(st_server_config *cfg, void *arg), void *arg);
    /* CONFIG RESETSTAT: every loop's counters and latency histograms to zero. */
    void (*reset_stats)(st_server *srv);
} st_server_ops;

/* Requests of one command that a connection pipelined and the server read
 * in one go (a run of SEGMENTS): each is still run through st_call in
 * order, with its own checks, statistics and reply, but the handler of the
 * first may do the work of all of them at once (they cannot see each
 * other's effects: no other command runs between them), which the others
 * then find done. */
#define ST_RUN_MAX 32
typedef struct {
    uint64_t id;                /* differs from every earlier run's on this thread */
    int n;                      /* requests in the run, 2..ST_RUN_MAX */
    int at;                     /* the one being run */
    int argc[ST_RUN_MAX];
    resp_arg *argv[ST_RUN_MAX]; /* each valid for the whole run */
} st_run;

/* Everything a command handler gets. In the heavy pool, session is NULL. */
typedef struct {
    st_server *srv;
    const st_server_ops *ops; /* srv's services */
    const st_server_config *cfg;
    st_session *session;
    st_served *model;
    st_scratch *scratch;
    resp_out *out;
    int argc;
    resp_arg *argv;
    st_stats *stats; /* the loop's counters; NULL in the heavy pool */
    st_slowlog *slowlog; /* the server's slow log; NULL = none (tests) */
    const st_run *run;   /* the pipelined run this request is part of; NULL = alone */
} st_ctx;

#endif
