/* server_start: starting and stopping `starling serve`.
 *
 * The sockets, the loops and the heavy pool are set up here, the first
 * model is loaded while the sockets already answer (-LOADING), the journal
 * is opened and replayed, and the main thread then waits for signals
 * (SIGHUP reloads, SIGTERM and SIGINT drain and stop). The loops themselves
 * (connections, requests) are server.c's; writes and reloads
 * server_write.c's. The heavy pool's workers live here too: they only take
 * jobs from the queue and hand the replies back to the loop that asked.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <cblas.h>
#include <time.h>
#include <unistd.h>

#include "als.h"
#include "net.h"
#include "notify.h"
#include "privacy.h"
#include "score.h"
#include "server_impl.h"
#include "util.h"

void st_server_config_default(st_server_config *c)
{
    memset(c, 0, sizeof *c);
    c->bind = "127.0.0.1";
    c->port = 6400;
    c->unixsocket_perm = 0700;
    c->threads = 0;
    c->heavy_threads = 1;
    c->maxclients = 10000;
    c->max_request = 1u << 20;
    c->max_args = 65536;
    c->output_limit = 64u << 20;
    c->max_count = 100000;
    c->timeout = 0;
    c->shutdown_timeout = 10;
    c->loglevel = ST_LOG_NOTICE;
    c->appendfsync = ST_APPENDFSYNC_EVERYSEC;
    c->compact_min_bytes = 64u << 20;
    c->compact_percentage = 100;
    c->forget_compact_delay = 3600;
    c->min_audience = ST_PRIVACY_MIN_AUDIENCE;
    c->min_seeds = ST_PRIVACY_MIN_SEEDS;
    c->segment_min_users = ST_SEGMENT_MIN_USERS;
    c->http_bind = "127.0.0.1";
    c->http_port = -1;
    c->http_rate = 0;
    c->http_burst = 0;
    c->protected_mode = 1;
    c->request_timeout = 5;
    c->http_maxclients = 1000;
    c->slowlog_slower_than = 10000;
    c->slowlog_max_len = 128;
}

/* ---- the heavy pool ------------------------------------------------------- */

typedef struct {
    st_server *srv;
    st_scratch scratch;
} heavy_arg;

static void *heavy_main(void *arg)
{
    heavy_arg *h = arg;
    st_server *srv = h->srv;
    for (;;) {
        pthread_mutex_lock(&srv->q_lock);
        while (!srv->q_head && !srv->q_stop) pthread_cond_wait(&srv->q_cond, &srv->q_lock);
        st_job *j = srv->q_head;
        if (!j) {
            pthread_mutex_unlock(&srv->q_lock);
            break;
        }
        srv->q_head = j->next;
        if (!srv->q_head) srv->q_tail = NULL;
        srv->q_len--;
        pthread_mutex_unlock(&srv->q_lock);
        j->next = NULL;
        if (st_scratch_fit(&h->scratch, &j->model->m, 1, srv->cfg.max_args) != 0) {
            resp_error(&j->out, "ERR out of memory for this command");
        } else {
            st_ctx ctx = {.srv = srv,
                          .ops = &st_srv_ops,
                          .cfg = &srv->cfg,
                          .session = NULL,
                          .model = j->model,
                          .scratch = &h->scratch,
                          .out = &j->out,
                          .argc = j->argc,
                          .argv = j->argv,
                          .slowlog = &srv->slowlog};
            st_call_heavy(&ctx, j->cmd);
        }
        st_loop *l = j->loop;
        pthread_mutex_lock(&l->done_lock);
        j->next = l->done;
        l->done = j;
        pthread_mutex_unlock(&l->done_lock);
        uint64_t one = 1;
        if (write(l->evfd, &one, sizeof one) < 0) { /* a saturated counter still wakes the loop */
        }
    }
    st_scratch_free(&h->scratch);
    return NULL;
}

/* ---- sockets ---------------------------------------------------------------- */

/* Listens on bind:port (port -1: not at all); the address and port bound
 * (the port chosen for port 0) go to addr and *bound. */
static int listen_tcp(st_listener *ls, const char *bind_addr, int port, const char *what, char *addr, size_t addrcap,
                      int *bound, char *err)
{
    ls->fd = -1;
    if (port < 0) return 0;
    return st_net_listen_tcp(bind_addr, port, what, addr, addrcap, bound, &ls->fd, err);
}

static int listen_unix(st_server *srv, char *err)
{
    const st_server_config *cfg = &srv->cfg;
    srv->unx.fd = -1;
    srv->unx.is_unix = 1;
    if (!cfg->unixsocket) return 0;
    return st_net_listen_unix(cfg->unixsocket, cfg->unixsocket_perm, &srv->unx.fd, err);
}

/* ---- start and stop ------------------------------------------------------- */

static int loop_init(st_server *srv, st_loop *l, int id, char *err)
{
    l->kind = H_WAKE;
    l->id = id;
    l->srv = srv;
    pthread_mutex_init(&l->done_lock, NULL);
    pthread_mutex_init(&l->handoff_lock, NULL);
    resp_out_init(&l->http_reply, srv->cfg.output_limit);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->evfd < 0) return st_seterr(err, "epoll/eventfd: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) != 0) return st_seterr(err, "epoll_ctl: %s", strerror(errno));
    /* Every loop waits on the shared listeners; EPOLLEXCLUSIVE wakes one
     * loop per connection instead of all of them. */
    st_listener *ls[3] = {&srv->tcp, &srv->unx, &srv->http};
    for (int i = 0; i < 3; i++) {
        if (ls[i]->fd < 0) continue;
        struct epoll_event le = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = ls[i]};
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, ls[i]->fd, &le) != 0)
            return st_seterr(err, "epoll_ctl: %s", strerror(errno));
    }
    /* No model yet: the loop takes it up when the first load publishes it. */
    l->model = st_srv_model_acquire(srv);
    l->model_gen = l->model ? l->model->generation : 0;
    if (l->model && st_scratch_fit(&l->scratch, &l->model->m, 0, srv->cfg.max_args) != 0)
        return st_seterr(err, "out of memory");
    return 0;
}

static void loop_destroy(st_loop *l)
{
    st_srv_take_handoffs(l, 1);
    st_srv_finish_jobs(l);
    if (l->epfd >= 0) close(l->epfd);
    if (l->evfd >= 0) close(l->evfd);
    st_served_release(l->model);
    st_scratch_free(&l->scratch);
    resp_out_free(&l->http_reply);
    pthread_mutex_destroy(&l->done_lock);
    pthread_mutex_destroy(&l->handoff_lock);
}

/* Loads the first model while the loops already answer (health checks,
 * and -LOADING or 503 for what needs a model), then publishes it. The
 * environment variable STARLING_TEST_LOAD_DELAY (seconds, at most 60) delays
 * the load, so that tests can see the server before its model is ready. */
static int load_first_model(st_server *srv, char *err)
{
    const char *delay = getenv("STARLING_TEST_LOAD_DELAY");
    double d = delay ? atof(delay) : 0;
    if (d > 0 && d <= 60) {
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    st_served *s = st_served_load(srv->cfg.model_path, err);
    if (!s) return -1;
    s->generation = 1;
    st_segov_set_min_users(st_overlay_segments(s->ov), (uint32_t)srv->cfg.segment_min_users);
    /* The journal is replayed into the model's overlay before either is
     * visible: until then every command that needs a model, writes
     * included, answers -LOADING. */
    const st_server_config *cfg = &srv->cfg;
    if (cfg->journal) {
        double t0 = st_now();
        replay_ctx rc_ctx = {.ov = s->ov, .info = &srv->start_info};
        srv->journal = st_journal_open(cfg->journal, cfg->appendfsync, st_srv_replay_record, &rc_ctx, &srv->start_info, err);
        if (!srv->journal) {
            st_served_release(s);
            return -1;
        }
        char why[ST_ERRLEN];
        if (st_overlay_solve(s->ov, why) != 0) {
            st_seterr(err, "%s: %s", cfg->journal, why);
            st_served_release(s);
            return -1;
        }
        srv->start_seconds = st_now() - t0;
        const st_journal_info *ji = &srv->start_info;
        st_overlay_stats os;
        st_overlay_get_stats(s->ov, &os);
        st_log(ST_LOG_NOTICE, "journal %s (%016llx, appendfsync %s): %llu records replayed in %.3f s (%llu events, "
                              "%llu forgets; %llu already in the model); %llu users online, %llu forgotten",
               cfg->journal, (unsigned long long)ji->id, st_appendfsync_name(cfg->appendfsync),
               (unsigned long long)ji->records, srv->start_seconds, (unsigned long long)ji->events,
               (unsigned long long)ji->forgets, (unsigned long long)os.skipped_in_model, (unsigned long long)os.live,
               (unsigned long long)os.forgotten);
        if (ji->torn_bytes)
            st_log(ST_LOG_WARNING, "journal %s: the last record was torn (a write cut short by a crash): dropped %llu "
                                   "bytes at byte %llu; it was never acknowledged under appendfsync always",
                   cfg->journal, (unsigned long long)ji->torn_bytes, (unsigned long long)ji->torn_at);
        st_srv_check_lineage(srv, s);
        srv->compact_base = ji->end;
        if (pthread_create(&srv->maint, NULL, st_srv_maint_main, srv) != 0) {
            st_seterr(err, "cannot start the journal's maintenance thread");
            st_served_release(s);
            return -1;
        }
        srv->maint_started = 1;
    }
    pthread_mutex_lock(&srv->model_lock);
    srv->model = s;
    atomic_store(&srv->model_gen, 1);
    pthread_mutex_unlock(&srv->model_lock);
    st_srv_wake_all(srv);
    return 0;
}

/* A server for cfg, its locks made, nothing started. */
static st_server *server_new(const st_server_config *cfg)
{
    st_server *srv = st_calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->cfg = *cfg;
    if (srv->cfg.threads <= 0) srv->cfg.threads = st_cpu_count();
    if (srv->cfg.heavy_threads <= 0) srv->cfg.heavy_threads = 1;
    srv->tcp.kind = srv->unx.kind = srv->http.kind = H_LISTENER;
    srv->tcp.fd = srv->unx.fd = srv->http.fd = -1;
    srv->http.is_http = 1;
    st_ratelimit_init(&srv->limit, cfg->http_rate, cfg->http_burst > 0 ? cfg->http_burst : cfg->http_rate);
    if (!srv->cfg.acl) {
        st_acl_init(&srv->own_acl);
        srv->own_acl.requirepass = cfg->requirepass;
        srv->cfg.acl = &srv->own_acl;
    }
    resp_limits_default(&srv->lim);
    srv->lim.max_args = (uint32_t)srv->cfg.max_args;
    srv->lim.max_request = srv->cfg.max_request;
    if (srv->lim.max_inline > srv->cfg.max_request) srv->lim.max_inline = (uint32_t)srv->cfg.max_request;
    /* Before AUTH (as Redis since CVE-2021-32675): a few arguments, a few KiB. */
    srv->lim_preauth = srv->lim;
    if (st_acl_required(srv->cfg.acl)) {
        srv->lim_preauth.max_args = ST_PREAUTH_MAX_ARGS;
        srv->lim_preauth.max_request = ST_PREAUTH_MAX_REQUEST;
        srv->lim_preauth.max_inline = ST_PREAUTH_MAX_REQUEST;
    }
    pthread_mutex_init(&srv->model_lock, NULL);
    pthread_mutex_init(&srv->clients_lock, NULL);
    st_slowlog_init(&srv->slowlog);
    pthread_mutex_init(&srv->cfg_lock, NULL);
    pthread_mutex_init(&srv->reload_lock, NULL);
    pthread_mutex_init(&srv->q_lock, NULL);
    pthread_cond_init(&srv->q_cond, NULL);
    pthread_mutex_init(&srv->write_lock, NULL);
    pthread_mutex_init(&srv->maint_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->maint_cond, &ca);
    pthread_condattr_destroy(&ca);
    srv->started = st_now();
    srv->started_unix = (double)time(NULL);
    return srv;
}

/* Stops the maintenance thread, closes the journal and the sockets, and
 * frees the server (the loops and workers have stopped). */
static void server_free(st_server *srv)
{
    if (srv->maint_started) {
        pthread_mutex_lock(&srv->maint_lock);
        srv->maint_stop = 1;
        pthread_cond_signal(&srv->maint_cond);
        pthread_mutex_unlock(&srv->maint_lock);
        pthread_join(srv->maint, NULL);
    }
    if (srv->journal) {
        char why[ST_ERRLEN];
        if (st_journal_close(srv->journal, why) != 0) st_log(ST_LOG_WARNING, "journal: %s", why);
    }
    if (srv->tcp.fd >= 0) close(srv->tcp.fd);
    if (srv->http.fd >= 0) close(srv->http.fd);
    if (srv->unx.fd >= 0) {
        close(srv->unx.fd);
        unlink(srv->cfg.unixsocket);
    }
    st_served_release(srv->model);
    st_free(srv->loops);
    st_free(srv->heavy);
    pthread_mutex_destroy(&srv->model_lock);
    pthread_mutex_destroy(&srv->clients_lock);
    st_slowlog_free(&srv->slowlog);
    pthread_mutex_destroy(&srv->cfg_lock);
    pthread_mutex_destroy(&srv->reload_lock);
    pthread_mutex_destroy(&srv->q_lock);
    pthread_cond_destroy(&srv->q_cond);
    pthread_mutex_destroy(&srv->write_lock);
    pthread_mutex_destroy(&srv->maint_lock);
    pthread_cond_destroy(&srv->maint_cond);
    st_ratelimit_destroy(&srv->limit);
    st_free(srv);
}

/* Sockets first, the model last: the port answers health checks while a
 * large model loads (load_first_model). */
static int open_listeners(st_server *srv, char *err)
{
    const st_server_config *cfg = &srv->cfg;
    if (listen_tcp(&srv->tcp, cfg->bind, cfg->port, "--bind", srv->tcp_addr, sizeof srv->tcp_addr, &srv->tcp_port,
                   err) != 0 ||
        listen_unix(srv, err) != 0 ||
        listen_tcp(&srv->http, cfg->http_bind, cfg->http_port, "--http-bind", srv->http_addr, sizeof srv->http_addr,
                   &srv->http_port, err) != 0)
        return -1;
    if (srv->tcp.fd < 0 && srv->unx.fd < 0 && srv->http.fd < 0)
        return st_seterr(err, "nothing to listen on: give a --port, a --unixsocket or an --http-port");
    /* Protected mode (as Redis's): listening beyond loopback with no
     * password, only loopback clients are served. */
    int exposed = (srv->tcp.fd >= 0 && !st_net_is_loopback(cfg->bind)) ||
                  (srv->http.fd >= 0 && !st_net_is_loopback(cfg->http_bind));
    if (exposed && !st_acl_required(cfg->acl)) {
        if (cfg->protected_mode) {
            srv->protected_mode = 1;
            st_log(ST_LOG_WARNING, "protected mode: listening beyond loopback with no password, so only loopback "
                                   "clients are served; set a password (requirepass or users) or start with "
                                   "--protected-mode no");
        } else {
            st_log(ST_LOG_WARNING, "listening beyond loopback with no password and protected mode off: anyone who "
                                   "can reach this address can read every user's segments, write and erase");
        }
    }
    return 0;
}

/* "host:port" in URL form ([v6]:port). */
static void url_host(char *out, size_t len, const char *addr, int port)
{
    int bracket = strchr(addr, ':') != NULL;
    snprintf(out, len, "%s%s%s:%d", bracket ? "[" : "", addr, bracket ? "]" : "", port);
}

/* Loads the first model (the sockets answering meanwhile) and logs where the
 * server listens. */
static int load_and_announce(st_server *srv, char *err)
{
    const st_server_config *cfg = &srv->cfg;
    char where[256] = "", host[160];
    if (srv->tcp.fd >= 0) snprintf(where, sizeof where, "; until then RESP port %d answers -LOADING", srv->tcp_port);
    if (srv->http.fd >= 0) {
        size_t n = strlen(where);
        url_host(host, sizeof host, srv->http_addr, srv->http_port);
        snprintf(where + n, sizeof where - n, "%s http://%s/readyz says loading", n ? " and" : "; until then", host);
    }
    st_log(ST_LOG_NOTICE, "loading the model %s%s", cfg->model_path, where);
    if (load_first_model(srv, err) != 0) return -1;
    if (srv->tcp.fd >= 0)
        st_log(ST_LOG_NOTICE, "ready to accept connections on tcp %s:%d", srv->tcp_addr, srv->tcp_port);
    if (srv->unx.fd >= 0) st_log(ST_LOG_NOTICE, "ready to accept connections on unix %s", cfg->unixsocket);
    if (srv->http.fd >= 0) {
        url_host(host, sizeof host, srv->http_addr, srv->http_port);
        st_log(ST_LOG_NOTICE, "ready to accept HTTP connections on http://%s/", host);
    }
    st_log(ST_LOG_NOTICE, "%d event loops, %d heavy workers, pid %d", srv->nloops, srv->nheavy, (int)getpid());
    return 0;
}

/* The main thread's life once serving: SIGHUP reloads, SIGUSR1 reopens the
 * log file (logrotate), SIGTERM and SIGINT end it. The service manager hears
 * of each (notify.h). */
static void wait_for_signals(st_server *srv, const sigset_t *sigs)
{
    st_notifyf("READY=1\nSTATUS=serving %s", srv->cfg.model_path);
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(sigs, &si);
        char why[ST_ERRLEN];
        if (sig == SIGHUP) {
            st_log(ST_LOG_NOTICE, "SIGHUP: reloading the model");
            st_srv_reload(srv, NULL, why);
        } else if (sig == SIGUSR1) {
            int rc = st_log_reopen(why);
            if (rc < 0) st_log(ST_LOG_WARNING, "SIGUSR1: %s; still writing to the old file", why);
            else st_log(ST_LOG_NOTICE, "SIGUSR1: %s", rc ? "log file reopened" : "the log is stderr: nothing to reopen");
        } else if (sig == SIGTERM || sig == SIGINT) {
            st_notifyf("STOPPING=1\nSTATUS=%s: finishing in-flight requests", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            st_log(ST_LOG_NOTICE, "%s: finishing in-flight requests (at most %g s), then exiting",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT", srv->cfg.shutdown_timeout);
            return;
        }
    }
}

/* The loops and the heavy workers, started; how many of each in *loops and *heavy. */
static int start_threads(st_server *srv, heavy_arg *hargs, int *heavy, int *loops, char *err)
{
    *heavy = *loops = 0;
    for (int i = 0; i < srv->nheavy; i++) {
        hargs[i].srv = srv;
        if (pthread_create(&srv->heavy[i], NULL, heavy_main, &hargs[i]) != 0) break;
        (*heavy)++;
    }
    for (int i = 0; i < srv->nloops && *heavy == srv->nheavy; i++) {
        if (pthread_create(&srv->loops[i].tid, NULL, st_srv_loop_main, &srv->loops[i]) != 0) break;
        (*loops)++;
    }
    if (*loops < srv->nloops) return st_seterr(err, "cannot start threads");
    return 0;
}

static void stop_threads(st_server *srv, int heavy, int loops)
{
    for (int i = 0; i < loops; i++) pthread_join(srv->loops[i].tid, NULL);
    pthread_mutex_lock(&srv->q_lock);
    srv->q_stop = 1;
    pthread_cond_broadcast(&srv->q_cond);
    pthread_mutex_unlock(&srv->q_lock);
    for (int i = 0; i < heavy; i++) pthread_join(srv->heavy[i], NULL);
}

/* Threads started before ours (OpenBLAS starts its pool when the library
 * loads) do not block the signals, and the kernel hands a process signal to
 * any thread that does not block it while the main thread is busy (say,
 * between a reload and its next sigwaitinfo): with the default action, a
 * SIGTERM or SIGHUP landing there would kill the process unhandled. A
 * handler instead passes it on to the main thread, which waits for it. */
static pthread_t signal_thread;

static void forward_signal(int sig)
{
    pthread_kill(signal_thread, sig); /* async-signal-safe */
}

static void forward_signals(const sigset_t *sigs)
{
    signal_thread = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    for (int sig = 1; sig < 32; sig++)
        if (sigismember(sigs, sig) == 1) sigaction(sig, &sa, NULL);
}

int st_serve(const st_server_config *cfg, char *err)
{
    if (st_log_open(cfg->loglevel, cfg->logfile, err) != 0) return -1;
    /* BLAS inside a request must not start threads of its own: the loops
     * and workers are the parallelism. */
    openblas_set_num_threads(1);
    /* A connection's large request or reply buffer goes back to the system
     * when the connection shrinks it, not into an arena. */
    st_alloc_fixed_mmap_threshold();
    st_commands_init();
    st_server *srv = server_new(cfg);
    if (!srv) {
        st_log_close();
        return st_seterr(err, "out of memory");
    }
    int rc = -1;
    if (open_listeners(srv, err) != 0) goto out;
    /* Signals go to the main thread only: block them before any thread
     * starts (threads inherit the mask), then wait for them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    forward_signals(&sigs);
    signal(SIGPIPE, SIG_IGN);
    srv->nloops = srv->cfg.threads;
    srv->loops = st_calloc((size_t)srv->nloops, sizeof *srv->loops);
    srv->nheavy = srv->cfg.heavy_threads;
    srv->heavy = st_calloc((size_t)srv->nheavy, sizeof *srv->heavy);
    heavy_arg *hargs = st_calloc((size_t)srv->nheavy, sizeof *hargs);
    if (!srv->loops || !srv->heavy || !hargs) {
        st_free(hargs);
        st_seterr(err, "out of memory");
        goto out;
    }
    for (int i = 0; i < srv->nloops; i++) srv->loops[i].epfd = srv->loops[i].evfd = -1;
    int ok = 1;
    for (int i = 0; i < srv->nloops && ok; i++) ok = loop_init(srv, &srv->loops[i], i, err) == 0;
    if (ok) {
        int heavy, loops;
        if (start_threads(srv, hargs, &heavy, &loops, err) == 0 && load_and_announce(srv, err) == 0) {
            rc = 0;
            wait_for_signals(srv, &sigs);
        }
        atomic_store(&srv->stopping, 1);
        st_srv_wake_all(srv);
        stop_threads(srv, heavy, loops);
    }
    st_free(hargs);
    for (int i = 0; i < srv->nloops; i++)
        if (srv->loops[i].srv) loop_destroy(&srv->loops[i]);
out:
    server_free(srv);
    if (rc == 0) st_log(ST_LOG_NOTICE, "bye");
    st_log_close();
    return rc;
}
