/* cli_serve: `starling serve`, options from the command line and a config
 * file, both read through the one option table below.
 *
 * The config file has one `name value` per line, with the same names as the
 * long options (`port 6400`, `requirepass "s3cret"`); `#` starts a comment;
 * a flag takes yes or no; `model PATH` names the model; `user NAME RIGHTS
 * PASSWORD` lines add users (acl.h), as lines of an --aclfile do. Options
 * on the command line override the file. Every problem is reported as
 * FILE:LINE.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "ann.h"
#include "cli.h"
#include "scan.h"
#include "server.h"
#include "util.h"

/* Takes the `user ...` lines out of a config file's text into acl (each
 * blanked, so line numbers hold for the rest). 0, or -1 after printing
 * FILE:LINE and the reason. */
static int take_users(const char *path, char *text, st_acl *acl)
{
    int ln = 1;
    for (char *line = text; *line; ln++) {
        char *eol = strchr(line, '\n');
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (strncasecmp(p, "user", 4) == 0 && (p[4] == ' ' || p[4] == '\t')) {
            char save = eol ? *eol : '\0', why[ST_ERRLEN];
            if (eol) *eol = '\0';
            int rc = st_acl_add_line(acl, p, why);
            memset(line, ' ', strlen(line));
            if (eol) *eol = save;
            if (rc != 0) {
                fprintf(stderr, "starling serve: %s:%d: %s\n", path, ln, why);
                return -1;
            }
        }
        if (!eol) break;
        line = eol + 1;
    }
    return 0;
}

/* A file holding passwords that others may read is worth a warning. */
static void check_secret_file(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077))
        fprintf(stderr, "starling serve: warning: %s holds passwords and is readable by group or others (mode %03o): "
                        "chmod 600 it\n",
                path, (unsigned)(st.st_mode & 0777));
}

/* Reads path into argv-style tokens "--name" "value" appended to out (room
 * for max), through st_cli_config. Returns the count, or -1 after printing
 * the problem. The tokens point into *text and names, which the caller frees. */
static int read_config(const char *path, const st_opt *opts, char **text, char (*names)[64], char **out, int max,
                       const char **model, st_acl *acl)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "starling serve: --config %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 0, len = 0;
    char *buf = NULL, tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *b = st_realloc(buf, cap);
            if (!b) {
                st_free(buf);
                fclose(f);
                fprintf(stderr, "starling serve: out of memory\n");
                return -1;
            }
            buf = b;
        }
        memcpy(buf + len, tmp, n);
        len += n;
        if (len > (1u << 20)) break;
    }
    fclose(f);
    if (!buf) buf = st_strdup("");
    if (!buf) return -1;
    buf[len] = '\0';
    *text = buf;
    int had = acl->n;
    if (take_users(path, buf, acl) != 0) return -1;
    if (acl->n > had || strstr(buf, "requirepass")) check_secret_file(path);
    char err[ST_ERRLEN];
    int count = st_cli_config(path, buf, opts, "model", model, names, out, max, err);
    if (count < 0) fprintf(stderr, "%s\n", err);
    return count;
}

/* The most names each of --http-allow-host and --http-allow-origin takes. */
#define SERVE_MAX_ALLOW 64

/* serve's settings while they are parsed (the config file, then the flags). */
typedef struct {
    st_server_config cfg;
    const char *config, *unixperm, *bind, *http_bind, *aclfile;
    int loglevel, threads, heavy, scan, port, allow_path, debug, fsync_policy, http_port, protected_mode, approx;
    double approx_recall;
    st_acl acl;
    const char *allow_host_v[SERVE_MAX_ALLOW], *allow_origin_v[SERVE_MAX_ALLOW];
    st_opt_list allow_host, allow_origin; /* --http-allow-host, --http-allow-origin */
} serve_args;

#define SERVE_NOPTS 50

static void serve_args_init(serve_args *a)
{
    memset(a, 0, sizeof *a);
    st_server_config_default(&a->cfg);
    a->unixperm = "700";
    a->loglevel = ST_LOG_NOTICE;
    a->heavy = 1;
    a->approx_recall = 0.98;
    a->port = a->cfg.port;
    a->fsync_policy = (int)a->cfg.appendfsync;
    a->bind = a->cfg.bind;
    a->http_port = a->cfg.http_port;
    a->http_bind = a->cfg.http_bind;
    a->protected_mode = 0; /* yes: the first choice */
    st_acl_init(&a->acl);
    a->allow_host = (st_opt_list){a->allow_host_v, 0, SERVE_MAX_ALLOW};
    a->allow_origin = (st_opt_list){a->allow_origin_v, 0, SERVE_MAX_ALLOW};
}

/* The option table, pointing into a (opts: SERVE_NOPTS entries). */
static void serve_opts(serve_args *a, st_opt *opts)
{
    const st_opt table[] = {
        {"config", 'c', ST_OPT_STRING, &a->config, "FILE", "read settings from FILE (`name value` lines; flags override)", 0},
        {"port", 'p', ST_OPT_INT, &a->port, "PORT", "TCP port (0 = any free port, shown in the log; -1 = no TCP)", 0},
        {"bind", 0, ST_OPT_STRING, &a->bind, "ADDR", "address to listen on; anything but loopback exposes the server", 0},
        {"unixsocket", 0, ST_OPT_STRING, &a->cfg.unixsocket, "PATH", "also listen on a Unix socket", 0},
        {"unixsocketperm", 0, ST_OPT_STRING, &a->unixperm, "MODE", "octal mode of the Unix socket file", 0},
        {"threads", 't', ST_OPT_INT, &a->threads, "N", "event loops (0 = one per CPU)", 0},
        {"heavy-threads", 0, ST_OPT_INT, &a->heavy, "N", "workers for AUDIENCE, LOOKALIKE, REACH, s: ranges, reloads", 0},
        {"scan-threads", 0, ST_OPT_INT, &a->scan, "N",
         "threads one AUDIENCE, LOOKALIKE or REACH splits its scan of the users among (0 = one per CPU)", 0},
        {"requirepass", 0, ST_OPT_STRING, &a->cfg.requirepass, "SECRET",
         "clients must AUTH with SECRET first (prefer the config file: flags show in ps)", 0},
        {"aclfile", 0, ST_OPT_STRING, &a->aclfile, "FILE",
         "users and their rights: `user NAME read|write|admin|all PASSWORD` lines (also allowed in --config)", 0},
        {"protected-mode", 0, ST_OPT_CHOICE, &a->protected_mode, NULL,
         "bound beyond loopback with no password, serve loopback clients only", "yes|no"},
        {"request-timeout", 0, ST_OPT_DOUBLE, &a->cfg.request_timeout, "SECONDS",
         "cut a connection whose started request is not complete after this long (0 = never)", 0},
        {"http-maxclients", 0, ST_OPT_U64, &a->cfg.http_maxclients, "N",
         "HTTP connections at once, apart from --maxclients (RESP); past it only /healthz and /readyz", 0},
        {"maxclients", 0, ST_OPT_U64, &a->cfg.maxclients, "N", "connections at once; more are refused", 0},
        {"timeout", 0, ST_OPT_DOUBLE, &a->cfg.timeout, "SECONDS", "close a client idle this long (0 = never)", 0},
        {"max-request", 0, ST_OPT_U64, &a->cfg.max_request, "BYTES", "largest request; a larger one is a protocol error", 0},
        {"max-args", 0, ST_OPT_U64, &a->cfg.max_args, "N", "most arguments in one request", 0},
        {"output-limit", 0, ST_OPT_U64, &a->cfg.output_limit, "BYTES",
         "replies pending for one client past which it is dropped", 0},
        {"max-count", 0, ST_OPT_U64, &a->cfg.max_count, "N", "largest COUNT and range a reply may hold", 0},
        {"shutdown-timeout", 0, ST_OPT_DOUBLE, &a->cfg.shutdown_timeout, "SECONDS",
         "how long SIGTERM waits for in-flight requests", 0},
        {"allow-reload-path", 0, ST_OPT_FLAG, &a->allow_path, NULL,
         "let MODEL RELOAD name a file (otherwise it reloads the served path)", 0},
        {"http-port", 0, ST_OPT_INT, &a->http_port, "PORT",
         "also serve HTTP: the JSON API, /metrics, /healthz, /readyz and the page (0 = any free port; -1 = none)", 0},
        {"http-bind", 0, ST_OPT_STRING, &a->http_bind, "ADDR", "address of the HTTP port; anything but loopback exposes it",
         0},
        {"http-rate", 0, ST_OPT_DOUBLE, &a->cfg.http_rate, "N",
         "HTTP requests per second per client address, past which 429 (0 = no limit)", 0},
        {"http-burst", 0, ST_OPT_DOUBLE, &a->cfg.http_burst, "N",
         "HTTP requests an address may send at once before --http-rate applies (0 = the rate)", 0},
        {"http-allow-host", 0, ST_OPT_LIST, &a->allow_host, "NAME",
         "a name the HTTP Host header may carry besides loopback names, IP literals and --http-bind, else 421 "
         "(repeatable; * = any)",
         0},
        {"http-allow-origin", 0, ST_OPT_LIST, &a->allow_origin, "ORIGIN",
         "a site (scheme://host[:port]) whose pages may call the HTTP API, answered with CORS headers "
         "(repeatable; * = any)",
         0},
        {"loglevel", 0, ST_OPT_CHOICE, &a->loglevel, NULL, "log verbosity", "debug|verbose|notice|warning"},
        {"logfile", 0, ST_OPT_STRING, &a->cfg.logfile, "FILE", "append the log to FILE instead of stderr", 0},
        {"journal", 'j', ST_OPT_STRING, &a->cfg.journal, "FILE",
         "journal of online writes (EVENT, FORGET), replayed at start (none: writes are refused)", 0},
        {"appendfsync", 0, ST_OPT_CHOICE, &a->fsync_policy, NULL,
         "when a write is fsynced: before its reply, once a second, or when the kernel likes (as Redis)",
         "always|everysec|no"},
        {"compact-percentage", 0, ST_OPT_U64, &a->cfg.compact_percentage, "P",
         "compact the journal when it grew P% past its size after the last compaction (0 = never)", 0},
        {"compact-min-bytes", 0, ST_OPT_U64, &a->cfg.compact_min_bytes, "BYTES",
         "no automatic compaction of a journal smaller than this", 0},
        {"forget-compact-delay", 0, ST_OPT_DOUBLE, &a->cfg.forget_compact_delay, "SECONDS",
         "compact this long after a FORGET, so that the events it erased leave the file too (0 = never)", 0},
        {"min-audience", 0, ST_OPT_U64, &a->cfg.min_audience, "N",
         "privacy floor: AUDIENCE, REACH, LOOKALIKE and s: ranges never disclose fewer than N users (0 = none)", 0},
        {"min-seeds", 0, ST_OPT_U64, &a->cfg.min_seeds, "N", "privacy floor: LOOKALIKE needs N known seed users", 0},
        {"segment-min-users", 0, ST_OPT_U64, &a->cfg.segment_min_users, "N",
         "EVENTs of N distinct users on a segment the model does not know create it (replay counts the same way)", 0},
        {"slowlog-log-slower-than", 0, ST_OPT_DOUBLE, &a->cfg.slowlog_slower_than, "USEC",
         "SLOWLOG keeps commands slower than this (-1 = none, 0 = every command)", 0},
        {"slowlog-max-len", 0, ST_OPT_U64, &a->cfg.slowlog_max_len, "N", "entries SLOWLOG keeps", 0},
        {"approx", 0, ST_OPT_CHOICE, &a->approx, NULL,
         "the approximate index of AUDIENCE and LOOKALIKE: none built, built and used when a request says APPROX, "
         "or used unless a request says EXACT",
         "off|request|on"},
        {"approx-recall", 0, ST_OPT_DOUBLE, &a->approx_recall, "R",
         "recall@1000 the index's probe budget is chosen for at each load (0.5-1)", 0},
        {"enable-debug-command", 0, ST_OPT_FLAG, &a->debug, NULL,
         "allow DEBUG (injects write and fsync failures: for tests only)", 0},
        {0},
    };
    _Static_assert(sizeof table <= SERVE_NOPTS * sizeof(st_opt), "raise SERVE_NOPTS");
    memcpy(opts, table, sizeof table);
}

static const st_cmd_doc serve_doc = {
    "serve", "MODEL [options]",
        "Serve a model over the Redis protocol (RESP2) on TCP and/or a Unix socket:\n"
        "SEGMENTS, SCORE, FOLDIN, AUDIENCE, LOOKALIKE, REACH, SIMILAR, EXPLAIN, HISTORY, MODEL,\n"
        "online writes with --journal (EVENT, FORGET, ZINCRBY, DEL), sorted-set views\n"
        "(ZRANGE u:<user> ...), and the housekeeping commands Redis tools expect. Any\n"
        "Redis client works: redis-cli -p 6400 SEGMENTS u000123\n"
        "With --http-port, the same commands as a JSON API, Prometheus /metrics, /healthz,\n"
        "/readyz and an audience-explorer page at http://127.0.0.1:PORT/.",
        "The model is read into the server's memory: deploy a new one by renaming it over the\n"
        "path (never by writing into the served file), then MODEL RELOAD or SIGHUP.\n"
        "Signals: SIGHUP reloads the model file (verified before it replaces the served one;\n"
        "the journal is replayed against it); SIGUSR1 reopens --logfile (for logrotate);\n"
        "SIGTERM and SIGINT answer the requests already received, then exit. Under systemd\n"
        "(Type=notify) it reports READY=1 once the model serves, and each reload and the stop.\n"
        "docs/PROTOCOL.md lists every command; docs/OPERATIONS.md covers running it (systemd,\n"
        "log rotation), and what each appendfsync policy guarantees."};

/* The config file (`name value` lines) read into argv form and parsed first,
 * so that the command line overrides it. *model is set when it names one. */
static int parse_config(int argc, char **argv, st_opt *opts, char **text, const char **model, st_acl *acl)
{
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc) config = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0) config = argv[i] + 9;
    }
    if (!config) return ST_CLI_GO;
    enum { MAXF = 128 };
    char *fargv[MAXF + 1];
    static char names[MAXF / 2][64];
    fargv[0] = argv[0];
    int n = read_config(config, opts, text, names, fargv + 1, MAXF, model, acl);
    if (n < 0) return ST_EXIT_USAGE;
    char *fpos[MAXF + 1];
    int nfpos;
    return st_cli_parse(&serve_doc, opts, n + 1, fargv, fpos, &nfpos);
}

/* NULL when every --http-allow-host and --http-allow-origin value is one
 * the checks can match, else what is wrong. */
static const char *check_allow_lists(const serve_args *a)
{
    for (int i = 0; i < a->allow_host.n; i++) {
        const char *h = a->allow_host.v[i];
        if (!*h || strlen(h) > 253 || strpbrk(h, " \t/:@"))
            return "--http-allow-host takes a host name without a port or a scheme (or *), e.g. api.example.com";
    }
    for (int i = 0; i < a->allow_origin.n; i++) {
        const char *o = a->allow_origin.v[i];
        if (strcmp(o, "*") == 0 || strcmp(o, "null") == 0) continue;
        const char *host = strstr(o, "://");
        if (!host || host == o || !host[3] || strchr(host + 3, '/') || strpbrk(o, " \t") || strlen(o) > 256)
            return "--http-allow-origin takes an origin: scheme://host[:port] with no path or trailing slash "
                   "(or *), e.g. https://dashboard.example.com";
    }
    return NULL;
}

/* NULL when the settings hold together, else what is wrong. */
static const char *serve_check(const serve_args *a, long *perm)
{
    const st_server_config *cfg = &a->cfg;
    char *end;
    *perm = strtol(a->unixperm, &end, 8);
    if (*end || *perm < 0 || *perm > 0777) return "--unixsocketperm must be an octal mode such as 700";
    if (a->port < -1 || a->port > 65535) return "--port must be between 0 and 65535 (-1 for no TCP)";
    if (a->http_port < -1 || a->http_port > 65535) return "--http-port must be between 0 and 65535 (-1 for no HTTP)";
    if (!(cfg->http_rate >= 0) || !(cfg->http_burst >= 0)) return "--http-rate and --http-burst must be >= 0";
    if (a->threads < 0 || a->threads > 256) return "--threads must be between 0 and 256";
    if (a->heavy < 1 || a->heavy > 256) return "--heavy-threads must be between 1 and 256";
    if (a->scan < 0 || a->scan > 256) return "--scan-threads must be between 0 and 256";
    if (!(a->approx_recall >= 0.5 && a->approx_recall <= 1)) return "--approx-recall must be between 0.5 and 1";
    if (cfg->maxclients < 1) return "--maxclients must be at least 1";
    if (cfg->max_request < 64 || cfg->max_request > (1ull << 30)) return "--max-request must be between 64 and 1073741824";
    if (cfg->max_args < 2 || cfg->max_args > 1000000) return "--max-args must be between 2 and 1000000";
    if (cfg->output_limit < 1024) return "--output-limit must be at least 1024";
    if (cfg->max_count < 1 || cfg->max_count > 100000000) return "--max-count must be between 1 and 100000000";
    if (cfg->timeout < 0) return "--timeout must be >= 0";
    if (cfg->shutdown_timeout < 0) return "--shutdown-timeout must be >= 0";
    if (cfg->requirepass && !*cfg->requirepass) return "--requirepass must not be empty";
    if (cfg->journal && !*cfg->journal) return "--journal must name a file";
    if (cfg->forget_compact_delay < 0) return "--forget-compact-delay must be >= 0";
    if (!(cfg->request_timeout >= 0)) return "--request-timeout must be >= 0";
    if (cfg->http_maxclients < 1) return "--http-maxclients must be at least 1";
    return check_allow_lists(a);
}

int cli_serve(int argc, char **argv)
{
    serve_args a;
    serve_args_init(&a);
    st_opt opts[SERVE_NOPTS];
    serve_opts(&a, opts);
    char *text = NULL;
    const char *model = NULL;
    int rc = parse_config(argc, argv, opts, &text, &model, &a.acl);
    if (rc != ST_CLI_GO) {
        st_free(text);
        st_acl_free(&a.acl);
        return rc;
    }
    char *pos[argc > 0 ? argc : 1];
    int npos;
    rc = st_cli_parse(&serve_doc, opts, argc, argv, pos, &npos);
    char err[ST_ERRLEN];
    if (rc == ST_CLI_GO && a.aclfile) {
        if (st_acl_load_file(&a.acl, a.aclfile, err) != 0) {
            fprintf(stderr, "starling serve: --aclfile %s\n", err);
            rc = ST_EXIT_USAGE;
        } else {
            check_secret_file(a.aclfile);
        }
    }
    if (rc != ST_CLI_GO) {
        st_free(text);
        st_acl_free(&a.acl);
        return rc;
    }
    if (npos == 1) model = pos[0];
    long perm = 0;
    const char *bad = npos > 1 ? "expected one MODEL" : !model ? "a MODEL is required (or `model PATH` in --config)"
                                                               : serve_check(&a, &perm);
    if (bad) {
        st_free(text);
        st_acl_free(&a.acl);
        return st_cli_usage(&serve_doc, "%s", bad);
    }
    st_server_config cfg = a.cfg;
    cfg.model_path = model;
    cfg.bind = a.bind;
    cfg.port = a.port;
    cfg.http_port = a.http_port;
    cfg.http_bind = a.http_bind;
    cfg.unixsocket_perm = (int)perm;
    cfg.threads = a.threads;
    cfg.heavy_threads = a.heavy;
    st_scan_set_threads(a.scan);
    st_ann_set_mode(a.approx, a.approx_recall);
    cfg.allow_reload_path = a.allow_path;
    cfg.loglevel = a.loglevel;
    cfg.appendfsync = (st_appendfsync)a.fsync_policy;
    cfg.enable_debug = a.debug;
    cfg.protected_mode = a.protected_mode == 0;
    cfg.http_allow_host = a.allow_host.v;
    cfg.n_http_allow_host = a.allow_host.n;
    cfg.http_allow_origin = a.allow_origin.v;
    cfg.n_http_allow_origin = a.allow_origin.n;
    cfg.config_file = a.config;
    a.acl.requirepass = cfg.requirepass;
    cfg.acl = &a.acl;
    rc = st_serve(&cfg, err);
    st_free(text);
    st_acl_free(&a.acl);
    if (rc != 0) return st_cli_fail("serve", "%s", err);
    return ST_EXIT_OK;
}
