/* cli_serve: `starling serve`, options from the command line and a config
 * file, both read through the one option table below.
 *
 * The config file has one `name value` per line, with the same names as the
 * long options (`port 6400`, `requirepass "s3cret"`); `#` starts a comment;
 * a flag takes yes or no; `model PATH` names the model. Options on the
 * command line override the file. Every problem is reported as FILE:LINE.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "scan.h"
#include "server.h"
#include "util.h"

/* Reads path into argv-style tokens "--name" "value" appended to out (room
 * for max), through st_cli_config. Returns the count, or -1 after printing
 * the problem. The tokens point into *text and names, which the caller frees. */
static int read_config(const char *path, const st_opt *opts, char **text, char (*names)[64], char **out, int max,
                       const char **model)
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
    char err[ST_ERRLEN];
    int count = st_cli_config(path, buf, opts, "model", model, names, out, max, err);
    if (count < 0) fprintf(stderr, "%s\n", err);
    return count;
}

int cli_serve(int argc, char **argv)
{
    st_server_config cfg;
    st_server_config_default(&cfg);
    const char *config = NULL, *unixperm = "700";
    int loglevel = ST_LOG_NOTICE, threads = 0, heavy = 1, scan = 0, port = cfg.port, allow_path = 0, debug = 0;
    int fsync_policy = (int)cfg.appendfsync;
    const char *bind = cfg.bind;
    int http_port = cfg.http_port;
    const char *http_bind = cfg.http_bind;
    const st_opt opts[] = {
        {"config", 'c', ST_OPT_STRING, &config, "FILE", "read settings from FILE (`name value` lines; flags override)", 0},
        {"port", 'p', ST_OPT_INT, &port, "PORT", "TCP port (0 = any free port, shown in the log; -1 = no TCP)", 0},
        {"bind", 0, ST_OPT_STRING, &bind, "ADDR", "address to listen on; anything but loopback exposes the server", 0},
        {"unixsocket", 0, ST_OPT_STRING, &cfg.unixsocket, "PATH", "also listen on a Unix socket", 0},
        {"unixsocketperm", 0, ST_OPT_STRING, &unixperm, "MODE", "octal mode of the Unix socket file", 0},
        {"threads", 't', ST_OPT_INT, &threads, "N", "event loops (0 = one per CPU)", 0},
        {"heavy-threads", 0, ST_OPT_INT, &heavy, "N", "workers for AUDIENCE, LOOKALIKE, REACH, s: ranges, reloads", 0},
        {"scan-threads", 0, ST_OPT_INT, &scan, "N",
         "threads one AUDIENCE, LOOKALIKE or REACH splits its scan of the users among (0 = one per CPU)", 0},
        {"requirepass", 0, ST_OPT_STRING, &cfg.requirepass, "SECRET",
         "clients must AUTH with SECRET first (prefer the config file: flags show in ps)", 0},
        {"maxclients", 0, ST_OPT_U64, &cfg.maxclients, "N", "connections at once; more are refused", 0},
        {"timeout", 0, ST_OPT_DOUBLE, &cfg.timeout, "SECONDS", "close a client idle this long (0 = never)", 0},
        {"max-request", 0, ST_OPT_U64, &cfg.max_request, "BYTES", "largest request; a larger one is a protocol error", 0},
        {"max-args", 0, ST_OPT_U64, &cfg.max_args, "N", "most arguments in one request", 0},
        {"output-limit", 0, ST_OPT_U64, &cfg.output_limit, "BYTES",
         "replies pending for one client past which it is dropped", 0},
        {"max-count", 0, ST_OPT_U64, &cfg.max_count, "N", "largest COUNT and range a reply may hold", 0},
        {"shutdown-timeout", 0, ST_OPT_DOUBLE, &cfg.shutdown_timeout, "SECONDS",
         "how long SIGTERM waits for in-flight requests", 0},
        {"allow-reload-path", 0, ST_OPT_FLAG, &allow_path, NULL,
         "let MODEL RELOAD name a file (otherwise it reloads the served path)", 0},
        {"http-port", 0, ST_OPT_INT, &http_port, "PORT",
         "also serve HTTP: the JSON API, /metrics, /healthz, /readyz and the page (0 = any free port; -1 = none)", 0},
        {"http-bind", 0, ST_OPT_STRING, &http_bind, "ADDR", "address of the HTTP port; anything but loopback exposes it",
         0},
        {"http-rate", 0, ST_OPT_DOUBLE, &cfg.http_rate, "N",
         "HTTP requests per second per client address, past which 429 (0 = no limit)", 0},
        {"http-burst", 0, ST_OPT_DOUBLE, &cfg.http_burst, "N",
         "HTTP requests an address may send at once before --http-rate applies (0 = the rate)", 0},
        {"loglevel", 0, ST_OPT_CHOICE, &loglevel, NULL, "log verbosity", "debug|verbose|notice|warning"},
        {"logfile", 0, ST_OPT_STRING, &cfg.logfile, "FILE", "append the log to FILE instead of stderr", 0},
        {"journal", 'j', ST_OPT_STRING, &cfg.journal, "FILE",
         "journal of online writes (EVENT, FORGET), replayed at start (none: writes are refused)", 0},
        {"appendfsync", 0, ST_OPT_CHOICE, &fsync_policy, NULL,
         "when a write is fsynced: before its reply, once a second, or when the kernel likes (as Redis)",
         "always|everysec|no"},
        {"compact-percentage", 0, ST_OPT_U64, &cfg.compact_percentage, "P",
         "compact the journal when it grew P% past its size after the last compaction (0 = never)", 0},
        {"compact-min-bytes", 0, ST_OPT_U64, &cfg.compact_min_bytes, "BYTES",
         "no automatic compaction of a journal smaller than this", 0},
        {"forget-compact-delay", 0, ST_OPT_DOUBLE, &cfg.forget_compact_delay, "SECONDS",
         "compact this long after a FORGET, so that the events it erased leave the file too (0 = never)", 0},
        {"min-audience", 0, ST_OPT_U64, &cfg.min_audience, "N",
         "privacy floor: AUDIENCE, REACH, LOOKALIKE and s: ranges never disclose fewer than N users (0 = none)", 0},
        {"min-seeds", 0, ST_OPT_U64, &cfg.min_seeds, "N", "privacy floor: LOOKALIKE needs N known seed users", 0},
        {"enable-debug-command", 0, ST_OPT_FLAG, &debug, NULL,
         "allow DEBUG (injects write and fsync failures: for tests only)", 0},
        {0},
    };
    const st_cmd_doc doc = {
        "serve", "MODEL [options]",
        "Serve a model over the Redis protocol (RESP2) on TCP and/or a Unix socket:\n"
        "SEGMENTS, SCORE, FOLDIN, AUDIENCE, LOOKALIKE, REACH, SIMILAR, EXPLAIN, HISTORY, MODEL,\n"
        "online writes with --journal (EVENT, FORGET, ZINCRBY, DEL), sorted-set views\n"
        "(ZRANGE u:<user> ...), and the housekeeping commands Redis tools expect. Any\n"
        "Redis client works: redis-cli -p 6400 SEGMENTS u000123\n"
        "With --http-port, the same commands as a JSON API, Prometheus /metrics, /healthz,\n"
        "/readyz and an audience-explorer page at http://127.0.0.1:PORT/.",
        "Signals: SIGHUP reloads the model file (verified before it replaces the served one;\n"
        "the journal is replayed against it); SIGTERM and SIGINT answer the requests already\n"
        "received, then exit. docs/PROTOCOL.md lists every command; docs/OPERATIONS.md covers\n"
        "running it, and what each appendfsync policy guarantees."};
    /* The config file first, so that the command line overrides it. */
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc) config = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0) config = argv[i] + 9;
    }
    char *text = NULL;
    const char *model = NULL;
    if (config) {
        enum { MAXF = 128 };
        char *fargv[MAXF + 1];
        static char names[MAXF / 2][64];
        fargv[0] = argv[0];
        int n = read_config(config, opts, &text, names, fargv + 1, MAXF, &model);
        if (n < 0) {
            st_free(text);
            return ST_EXIT_USAGE;
        }
        char *fpos[MAXF + 1];
        int nfpos;
        int rc = st_cli_parse(&doc, opts, n + 1, fargv, fpos, &nfpos);
        if (rc != ST_CLI_GO) {
            st_free(text);
            return rc;
        }
    }
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) {
        st_free(text);
        return rc;
    }
    if (npos == 1) model = pos[0];
    if (npos > 1 || !model) {
        st_free(text);
        return st_cli_usage(&doc, npos > 1 ? "expected one MODEL, got %d" : "a MODEL is required (or `model PATH` in --config)", npos);
    }
    char *end;
    long perm = strtol(unixperm, &end, 8);
    const char *bad = NULL;
    if (*end || perm < 0 || perm > 0777) bad = "--unixsocketperm must be an octal mode such as 700";
    else if (port < -1 || port > 65535) bad = "--port must be between 0 and 65535 (-1 for no TCP)";
    else if (http_port < -1 || http_port > 65535) bad = "--http-port must be between 0 and 65535 (-1 for no HTTP)";
    else if (!(cfg.http_rate >= 0) || !(cfg.http_burst >= 0)) bad = "--http-rate and --http-burst must be >= 0";
    else if (threads < 0 || threads > 256) bad = "--threads must be between 0 and 256";
    else if (heavy < 1 || heavy > 256) bad = "--heavy-threads must be between 1 and 256";
    else if (scan < 0 || scan > 256) bad = "--scan-threads must be between 0 and 256";
    else if (cfg.maxclients < 1) bad = "--maxclients must be at least 1";
    else if (cfg.max_request < 64 || cfg.max_request > (1ull << 30)) bad = "--max-request must be between 64 and 1073741824";
    else if (cfg.max_args < 2 || cfg.max_args > 1000000) bad = "--max-args must be between 2 and 1000000";
    else if (cfg.output_limit < 1024) bad = "--output-limit must be at least 1024";
    else if (cfg.max_count < 1 || cfg.max_count > 100000000) bad = "--max-count must be between 1 and 100000000";
    else if (cfg.timeout < 0) bad = "--timeout must be >= 0";
    else if (cfg.shutdown_timeout < 0) bad = "--shutdown-timeout must be >= 0";
    else if (cfg.requirepass && !*cfg.requirepass) bad = "--requirepass must not be empty";
    else if (cfg.journal && !*cfg.journal) bad = "--journal must name a file";
    else if (cfg.forget_compact_delay < 0) bad = "--forget-compact-delay must be >= 0";
    if (bad) {
        st_free(text);
        return st_cli_usage(&doc, "%s", bad);
    }
    cfg.model_path = model;
    cfg.bind = bind;
    cfg.port = port;
    cfg.http_port = http_port;
    cfg.http_bind = http_bind;
    cfg.unixsocket_perm = (int)perm;
    cfg.threads = threads;
    cfg.heavy_threads = heavy;
    cfg.allow_reload_path = allow_path;
    cfg.loglevel = loglevel;
    cfg.appendfsync = (st_appendfsync)fsync_policy;
    cfg.enable_debug = debug;
    st_scan_set_threads(scan);
    char err[ST_ERRLEN];
    rc = st_serve(&cfg, err);
    st_free(text);
    if (rc != 0) return st_cli_fail("serve", "%s", err);
    return ST_EXIT_OK;
}
