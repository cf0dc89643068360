/* server_impl: the server's own structures, shared by its files alone.
 *
 * server.c (the loops, connections, the heavy pool, start and stop) and
 * server_write.c (online writes, reloads, journal maintenance, the figures
 * INFO and /metrics read) both work on struct st_server; nothing outside the
 * server module includes this header: handlers see the server only through
 * service.h's table of operations.
 */
#ifndef STARLING_SERVER_IMPL_H
#define STARLING_SERVER_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "api.h"
#include "commands.h"
#include "http.h"
#include "server.h"

#define READ_CHUNK (16u << 10)
#define OUT_SOFT (256u << 10)
#define IN_KEEP (2 * READ_CHUNK) /* input buffer an idle connection keeps */
#define OUT_KEEP (64u << 10)     /* output buffer past which a drained one is freed */
#define ST_PREAUTH_MAX_ARGS 10          /* arguments of a request before AUTH */
#define ST_PREAUTH_MAX_REQUEST (16u << 10) /* bytes of a request before AUTH */
#define HTTP_PROBE_SLOTS 16      /* HTTP connections past http-maxclients that may still ask /healthz, /readyz */

/* Connections that may only ask /healthz and /readyz: accepted past
 * http-maxclients, or from beyond loopback in protected mode. */
enum { PROBES_FULL = 1, PROBES_PROTECTED = 2 };
#define MAX_EVENTS 256
#define ST_RUN_ARGS 1024 /* arguments of all the requests of a run together */

typedef enum { H_LISTENER = 1, H_CLIENT, H_WAKE } handle_kind;

#define ST_HANDOFF_MAX 256 /* accepted connections waiting for the loop they were given to */

typedef struct st_listener {
    int kind;
    int fd;
    int is_unix;
    int is_http;
} st_listener;

typedef struct st_loop st_loop;
typedef struct st_job st_job;

typedef struct st_client {
    int kind; /* H_CLIENT: first, so an epoll pointer says what it points to */
    int fd;
    st_loop *loop;
    st_session sess;
    char *in;
    size_t in_len, in_cap, in_start;
    resp_parser parser;
    int is_http;       /* accepted on the HTTP port: http and call are used, not parser */
    int probes_only;   /* PROBES_FULL, PROBES_PROTECTED, or 0 */
    double req_started; /* loop time the incomplete request in the buffer started; 0 = none */
    http_parser http;
    st_api_call call;  /* the HTTP request's command, until its reply is translated */
    resp_out out;
    size_t out_pos;
    int blocked;   /* a heavy command is in flight */
    int dead;      /* closed while blocked: freed when the job returns */
    int discard_reply; /* the heavy command in flight's reply is dropped (CLIENT REPLY) */
    int syncing;   /* on the loop's list of replies waiting for an fdatasync */
    struct st_client *sync_prev, *sync_next;
    uint32_t events; /* registered epoll events */
    double last_active;
    /* What CLIENT LIST on another loop reads (server_clients.c): published
     * by the owning loop after each service, relaxed. */
    atomic_uint_fast64_t pub_qbuf, pub_icap, pub_obl, pub_omem, pub_active_ms;
    atomic_int pub_blocked;
    atomic_int kill; /* CLIENT KILL from any loop: the owning loop closes it */
    struct st_client *prev, *next;
} st_client;

struct st_job {
    st_job *next;
    st_client *c;
    st_loop *loop;
    st_served *model;
    const st_command *cmd;
    uint64_t t0;
    int argc;
    resp_arg *argv;
    resp_out out;
};

struct st_loop {
    int kind; /* H_WAKE: the loop's eventfd handle */
    int id;
    int epfd, evfd;
    pthread_t tid;
    st_server *srv;
    st_served *model;
    uint64_t model_gen;
    st_client *clients;
    uint64_t nclients;
    pthread_mutex_t done_lock;
    st_job *done;
    st_scratch scratch;
    st_stats stats;
    resp_out http_reply; /* the RESP reply of an HTTP request's command, before it becomes JSON */
    int draining;
    double drain_deadline;
    double now; /* coarse monotonic seconds, read once per wake-up (loop_time) */
    st_client *sync_wait; /* connections whose replies wait for the journal's fdatasync */
    uint64_t closed, trimmed_at; /* connections closed; the count at the last malloc_trim */
    atomic_int kills; /* some connection of this loop is marked by CLIENT KILL */
    /* Connections this loop serves or has been given (any loop reads it to
     * pick the least loaded), and those given to it by the loop that
     * accepted them, not yet taken up (under handoff_lock). */
    atomic_uint_fast64_t assigned;
    pthread_mutex_t handoff_lock;
    int nhandoff, handoff_closed;
    struct st_handoff {
        int fd, probes;
        struct st_listener *ls;
        char addr[64];
    } handoff[ST_HANDOFF_MAX];
    /* The run of pipelined SEGMENTS being served (process_input): its
     * requests' arguments and where each starts in the input. */
    st_run run;
    resp_arg run_args[ST_RUN_ARGS];
    size_t run_off[ST_RUN_MAX];
};

struct st_server {
    st_server_config cfg;
    st_listener tcp, unx, http;
    char tcp_addr[64], http_addr[64];
    int tcp_port, http_port;
    st_ratelimit limit;
    atomic_uint_fast64_t nclients_http, nclients_resp; /* the two budgets: http-maxclients and maxclients */
    resp_limits lim, lim_preauth; /* requests after AUTH, and before it */
    int protected_mode;           /* in force: bound beyond loopback with no password */
    st_acl own_acl;               /* the users when the config gave none: requirepass alone */
    atomic_uint_fast64_t tainted_gen; /* models up to this generation hold writes a failed fdatasync lost; 0 = none */
    st_loop *loops;
    int nloops;
    pthread_mutex_t model_lock;
    st_served *model;
    atomic_uint_fast64_t model_gen;
    pthread_mutex_t reload_lock; /* one reload at a time; held while a file loads */
    uint64_t reloads, reload_failures; /* these three under model_lock, which is never held long */
    char last_reload_error[256];
    pthread_mutex_t q_lock;
    pthread_cond_t q_cond;
    st_job *q_head, *q_tail;
    uint64_t q_len;
    int q_stop;
    pthread_t *heavy;
    int nheavy;
    atomic_uint_fast64_t nclients, next_client_id, blocked;
    /* Taken to link and unlink connections on any loop's list and to change
     * their names, so CLIENT LIST and KILL on one loop can walk them all. */
    pthread_mutex_t clients_lock;
    pthread_mutex_t cfg_lock; /* CONFIG SET's stores (server_config.c) */
    st_slowlog slowlog;
    atomic_int stopping;
    double started, started_unix;
    /* Online writes: the journal, and the lock that puts a change and its
     * record in the same order (held while a reload swaps models, too). */
    st_journal *journal;
    pthread_mutex_t write_lock;
    st_journal_info start_info; /* what the journal held at start */
    double start_seconds;
    uint64_t refused_writes;    /* under write_lock: refused since the last log line */
    double refused_logged_at;
    /* The maintenance thread: compactions. */
    pthread_t maint;
    int maint_started;
    pthread_mutex_t maint_lock;
    pthread_cond_t maint_cond;
    int maint_stop, compact_requested, compacting, broken_logged, rollback_requested;
    uint64_t compact_base;      /* the journal's size after the last compaction (or at start) */
    double forget_pending_since; /* monotonic time a FORGET was first seen not yet compacted; 0 = none */
};

/* ---- server.c -------------------------------------------------------------- */

/* An event loop's thread (arg: its st_loop): serves its connections until
 * the server stops and its connections have drained. */
void *st_srv_loop_main(void *arg);

/* Hands the replies of the loop's finished heavy jobs to their connections. */
void st_srv_finish_jobs(st_loop *l);
void st_srv_take_handoffs(st_loop *l, int close_all);

/* Closes the connections of l that CLIENT KILL marked (l's own thread). */
void st_srv_reap_killed(st_loop *l);

/* ---- server_clients.c ------------------------------------------------------ */

/* Publishes what CLIENT LIST shows of c (its own loop's thread). */
void st_srv_client_publish(st_client *c);

/* The client-lock and listing operations of st_srv_ops (service.h). */
void st_srv_lock_clients(st_server *srv, int on);
uint64_t st_srv_clients(st_server *srv, st_client_fn fn, void *arg, int kill, uint64_t self_id, int *self_hit);

/* ---- server_config.c ------------------------------------------------------ */

void st_srv_update_config(st_server *srv, void (*fn)(st_server_config *cfg, void *arg), void *arg);
void st_srv_reset_stats(st_server *srv);

/* ---- server_write.c ------------------------------------------------------ */

/* The table handlers get as ctx->ops. */
extern const st_server_ops st_srv_ops;

/* The served model with a reference for the caller, or NULL while the first
 * model is still loading. */
st_served *st_srv_model_acquire(st_server *srv);

/* Wakes every loop (each takes a new model up at once). */
void st_srv_wake_all(st_server *srv);

/* Replays journal records into an overlay (st_journal_read's callback). */
typedef struct {
    st_overlay *ov;
    const st_journal_info *info; /* at start: the id is read before the first record */
    uint64_t id;
} replay_ctx;
int st_srv_replay_record(const st_jrecord *r, void *vctx, char *err);

/* A failed fdatasync under appendfsync always: taints the served model and
 * asks the maintenance thread to cut the lost writes off the journal and
 * serve a model rebuilt without them. Once; later calls do nothing. */
void st_srv_lost_writes(st_server *srv);

/* Warns when the journal is older than what the model s was trained with. */
void st_srv_check_lineage(st_server *srv, const st_served *s);

/* The maintenance thread: compactions on request, by growth, after FORGETs. */
void *st_srv_maint_main(void *arg);

/* The operations of st_srv_ops (service.h documents each). */
int st_srv_reload(st_server *srv, const char *path, char *err);
int st_srv_write(st_server *srv, st_jrecord *r, st_scratch *sc, st_write_result *res, char *err);
int st_srv_compact(st_server *srv, char *err);
void st_srv_get_journal(st_server *srv, st_server_journal_info *info);
void st_srv_get_info(st_server *srv, st_server_info *info);
void st_srv_sum_stats(st_server *srv, st_stats *out);

#endif
