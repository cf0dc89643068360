/* server: `starling serve`, the Redis-protocol socket in front of a model.
 *
 * Threads: --threads event loops (epoll), each owning the connections it
 * accepted from the shared listening sockets; --heavy-threads workers that
 * run the commands that scan every user (AUDIENCE, LOOKALIKE, REACH, the
 * s:<segment> views) and MODEL RELOAD, so that those never hold up an event
 * loop; and the main thread, which only waits for signals (SIGHUP reloads,
 * SIGTERM and SIGINT drain and stop).
 *
 * The model: mapped read-only (st_model_load), wrapped in an st_served with
 * what the server derives from it once (the Gram matrix for fold-in, the
 * prior, segment norms). Reload loads and verifies the new file completely,
 * then swaps it in under a short lock; every loop and job holds a reference
 * to the st_served it works with, and the old one is unmapped when the last
 * reference goes, so a request never sees a model change under it.
 *
 * Online writes (EVENT, FORGET): with --journal, a write is applied by
 * st_server_write, which prepares the change in the served model's overlay
 * (the user's vector solved, no lock held), then under one write lock
 * checks it still applies, appends the record to the journal, and only then
 * makes the change visible; the journal's order is therefore the order
 * changes were applied in. Under appendfsync always, the replies of a
 * connection that wrote are held until one fdatasync, shared by every
 * connection of the loop iteration (group commit), covers its records; a
 * failed fdatasync stops the server before any held reply is sent. On
 * reload the new model's overlay is rebuilt from the journal (the records
 * appended meanwhile are caught up under the write lock), so online changes
 * and erasures carry over to every model served. A maintenance thread
 * compacts the journal on request, as it grows, and after FORGETs.
 *
 * HTTP (--http-port) is served by the same loops: a connection accepted on
 * the HTTP listener is parsed by http.c, and api.c turns each request into
 * the command that runs through the same call path as a RESP request's.
 *
 * Owns: sockets, connections, threads, the served model, the journal. Never:
 * parses the protocol (resp.c, http.c) or knows a command (commands.c, api.c).
 *
 * The types below the config are shared with commands.c, which reads them;
 * only server.c changes them (besides the per-thread scratch and stats, which
 * belong to the thread that runs the command).
 */
#ifndef STARLING_SERVER_H
#define STARLING_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "journal.h"
#include "model.h"
#include "overlay.h"
#include "resp.h"
#include "score.h"

enum { ST_LOG_DEBUG = 0, ST_LOG_VERBOSE = 1, ST_LOG_NOTICE = 2, ST_LOG_WARNING = 3 };

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
    const char *requirepass; /* NULL = no AUTH needed */
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
    int enable_debug;        /* the DEBUG command (failure injection for tests) */
    /* HTTP (api.h): the JSON API, /metrics, /healthz, /readyz and the page. */
    const char *http_bind;   /* "127.0.0.1" */
    int http_port;           /* -1 = no HTTP (the default), 0 = any free port (logged) */
    double http_rate;        /* requests per second per client address; 0 = no limit */
    double http_burst;       /* requests an address may send at once before the rate applies */
} st_server_config;

void st_server_config_default(st_server_config *c);

/* Opens the sockets, starts the threads, loads the model (meanwhile the
 * sockets answer: -LOADING over RESP, /readyz 503 over HTTP) and serves until
 * SIGTERM or SIGINT, then drains and returns 0. Returns -1 with err set when
 * it cannot start (sockets, threads, the model). Blocks. */
int st_serve(const st_server_config *cfg, char *err);

/* Writes one log line if level >= the configured level. Thread-safe. */
void st_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- shared with commands.c ---------------------------------------------- */

/* A model as served: the mapping plus what is derived from it at load. */
typedef struct st_served {
    st_model m;
    float *G;         /* V^T V, k x k, for fold-in and explanations */
    float *prior;     /* n: the popularity prior q (st_score_prior), for the blend and unknown users */
    uint32_t *prior_rank; /* n: segment indices by q, best first */
    float *seg_norms; /* n: |V[s]| */
    st_segment_index seg_index; /* segments by norm, for pruned SEGMENTS */
    st_overlay *ov;   /* users changed online, for this model (empty until the journal is replayed) */
    char path[4096];
    uint64_t generation; /* 1 for the first model, +1 per reload */
    double loaded_at;    /* unix seconds */
    atomic_long refs;
    /* Online quality since this model was loaded: of the EVENTs on a segment
     * the user had not engaged with before, how many were in the user's top
     * 10 and top 50 of not-yet-engaged segments just before, by the model's
     * ranking and by popularity's (commands.c, online_quality). */
    atomic_uint_fast64_t q_new, q_repeat, q_hit10, q_hit50, q_pop10, q_pop50;
} st_served;

/* Loads and verifies path and derives what serving needs (the Gram matrix,
 * the prior and its ranking, segment norms, the segment index and an empty
 * overlay). The result has one reference, the caller's; NULL with err set
 * on failure. */
st_served *st_served_load(const char *path, char *err);
/* Drops one reference; the last one unmaps the model and frees the rest. */
void st_served_release(st_served *s);

/* Per-thread buffers that handlers reuse, so the SEGMENTS and SCORE paths
 * never allocate: server.c sizes them when a thread takes up a model. */
typedef struct {
    float *scores;  /* max(m, n) */
    uint32_t *idx;  /* max(m, n) */
    float *top;     /* max(m, n) */
    uint64_t cap_rows;
    float *work;    /* fold-in / explain / look-alike scratch */
    uint64_t cap_work;
    uint32_t *segs; /* per-argument lists (ONLY, FOLDIN, seeds) */
    float *vals;
    uint64_t cap_args;
    uint8_t *skip;  /* n: segments to leave out (EXCLUDE, UNSEEN); all 0 between requests */
    uint64_t cap_skip;
    float *ux;      /* k: a vector copied out of the overlay */
    uint64_t cap_ux;
    uint32_t *hseg; /* n: a history copied out of the overlay */
    float *hr;
    uint64_t cap_hist;
    st_overlay_view view; /* the heavy pool's copy of the overlay for a scan */
    float *user;    /* k: a user's vector dequantized from an int8 model */
    uint32_t cap_user;
} st_scratch;

/* Sizes s for model m (every user too when all_users, as the heavy pool
 * needs) and requests within cfg's limits; allocates only what must grow.
 * 0, or -1 on out-of-memory. */
int st_scratch_fit(st_scratch *s, const st_model *m, int all_users, const st_server_config *cfg);
/* Makes s->work hold at least n floats (allocates only to grow); 0, or -1
 * on out-of-memory. server.c sizes the rest for each model it serves. */
int st_scratch_work(st_scratch *s, uint64_t n);
/* Makes s->scores, idx and top hold at least rows entries (the heavy pool's
 * scans over model and online users); 0, or -1 on out-of-memory. */
int st_scratch_rows(st_scratch *s, uint64_t rows);
void st_scratch_free(st_scratch *s);

/* Command statistics, kept per thread; single writer, so updates are plain
 * relaxed loads and stores, and INFO sums them from any thread. Latencies go
 * to a log-linear histogram of nanoseconds: exact below 32 ns, then 16
 * buckets per power of two (about 6% wide). */
#define ST_MAX_COMMANDS 64
#define ST_LAT_BUCKETS (32 + 40 * 16)
typedef struct {
    atomic_uint_fast64_t calls, nanos, failed, rejected;
    atomic_uint_fast64_t hist[ST_LAT_BUCKETS];
} st_cmdstat;

#define ST_HTTP_CODES 20 /* HTTP responses are counted per status code (api.h: st_api_codes) */
typedef struct {
    st_cmdstat cmd[ST_MAX_COMMANDS];
    atomic_uint_fast64_t connections, rejected_connections, commands, protocol_errors;
    atomic_uint_fast64_t net_in, net_out, dropped_output, idle_closed;
    atomic_uint_fast64_t http_connections, http_codes[ST_HTTP_CODES];
} st_stats;

/* What a connection's commands can see and set. */
typedef struct {
    uint64_t id;
    int authed;
    int close_after_reply; /* QUIT, or an error that ends the connection */
    char name[129];        /* CLIENT SETNAME; empty when none */
    uint64_t journal_wait; /* replies not yet sent depend on journal records up to this seq */
    char addr[64];
    double created;
} st_session;

typedef struct st_server st_server;

/* Everything a command handler gets. In the heavy pool, session is NULL. */
typedef struct {
    st_server *srv;
    const st_server_config *cfg;
    st_session *session;
    st_served *model;
    st_scratch *scratch;
    resp_out *out;
    int argc;
    resp_arg *argv;
} st_ctx;

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
} st_server_info;

void st_server_get_info(st_server *srv, st_server_info *info);

/* Sums every thread's statistics into out. */
void st_server_sum_stats(st_server *srv, st_stats *out);

/* Loads path (or the current model's path when NULL), verifies it, rebuilds
 * its overlay from the journal and swaps it in. Serialised; blocks while
 * loading. 0, or -1 with err set and the current model unchanged. */
int st_server_reload(st_server *srv, const char *path, char *err);

/* What an online write did. */
typedef struct {
    uint64_t seq;       /* the journal record's */
    int existed;        /* the user appeared in replies before */
    int known_segment;  /* EVENT: the served model knows the segment */
    float score;        /* EVENT: the user's new score for it; NaN when nothing changed (unknown segment, zero value) */
} st_write_result;

/* Applies an EVENT or FORGET record (seq is assigned here) to the served
 * model's overlay and appends it to the journal: the change is prepared
 * with no lock held (sc's work buffer; may allocate to grow it), then
 * checked, journaled and made visible in one step under the write lock.
 * When this returns 0 the change is visible and the record is in the
 * journal (durable under appendfsync always once an fdatasync covers it:
 * the connection's replies wait for that through session->journal_wait).
 * -1 with err: no journal, the journal could not take the record (a full
 * disk: err starts with "MISCONF"), or out of memory; nothing was applied. */
int st_server_write(st_server *srv, st_jrecord *r, st_scratch *sc, st_write_result *res, char *err);

/* Asks the maintenance thread to compact the journal now. 0, or -1 with err
 * when there is no journal or a compaction is already running. */
int st_server_compact(st_server *srv, char *err);

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
void st_server_get_journal(st_server *srv, st_server_journal_info *info);

#endif
