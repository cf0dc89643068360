/* Tests of the command layer without sockets: st_call on a served model.
 *
 * The contract checked here: once a thread's scratch and a connection's
 * reply buffer have grown, the hot-path commands (SEGMENTS with its options,
 * SCORE, FOLDIN, the u:<user> views) allocate nothing at all, counted by the
 * allocation wrappers every module uses, for users of the model file and
 * for users changed online (the overlay) alike. Also: a heavy command is
 * deferred, and every call is counted in the statistics. */
#include <stdlib.h>

#include "commands.h"
#include "overlay.h"
#include "server.h"
#include "small_model.h"
#include "synth.h"
#include "tap.h"
#include "train.h"
#include "util.h"

static st_ctx ctx;
static st_stats stats;
static resp_arg args[32];

/* Runs a command given as a space-separated string; returns the reply's
 * first byte ('-' for an error) and leaves the reply in ctx.out. */
static char run(char *line, st_call_result *res)
{
    int n = 0;
    for (char *tok = strtok(line, " "); tok && n < 32; tok = strtok(NULL, " ")) {
        args[n].ptr = tok;
        args[n].len = strlen(tok);
        n++;
    }
    ctx.argc = n;
    ctx.argv = args;
    ctx.out->len = 0;
    const st_command *cmd;
    uint64_t t0;
    st_call_result r = st_call(&ctx, &stats, &cmd, &t0);
    if (res) *res = r;
    return ctx.out->len ? ctx.out->buf[0] : 0;
}

/* The test's own model, made with the library (a synthetic log, trained
 * and saved): a failure here fails the test. */
static int make_model(const char *dir, const char *path, char *err)
{
    const small_model_spec spec = {.users = 500, .segments = 120, .events = 8000, .seed = 5, .factors = 12};
    return small_model_write(dir, &spec, path, err);
}

/* The served model and what a command runs with, made once by main. */
static st_served *sv;
static st_server_config cfg;
static st_scratch scratch;
static resp_out out;
static st_session session = {.id = 1, .rights = ST_RIGHT_ALL | ST_RIGHT_AUTHED};

/* The hot path (SEGMENTS, SCORE, FOLDIN, the u: views) never allocates
 * once its buffers have grown. Returns how many commands it runs per round. */
static size_t test_hot_path(void)
{
    const char *hot[] = {
        "SEGMENTS u000007",
        "SEGMENTS u000007 COUNT 20 MIN 0.1",
        "SEGMENTS u000007 COUNT 5 EXCLUDE interest:sports:00 interest:travel:00 UNSEEN",
        "SEGMENTS u000007 ONLY interest:sports:00 interest:travel:00 keyword:sports:01 COUNT 2",
        "SEGMENTS nobody COUNT 10",
        "SCORE u000007 interest:sports:00 keyword:travel:05 no-such-segment",
        "SCORE nobody interest:sports:00",
        "FOLDIN COUNT 5 interest:sports:00 2 keyword:sports:01 1 interest:sports:00 1",
        "ZSCORE u:u000007 interest:sports:00",
        "ZMSCORE u:u000007 interest:sports:00 keyword:travel:05",
        "ZREVRANGE u:u000007 0 9 WITHSCORES",
        "PING",
    };
    size_t nhot = sizeof hot / sizeof hot[0];
    char line[512];
    int answered = 1;
    /* Warm up: buffers grow to their working size. */
    for (size_t i = 0; i < nhot; i++) {
        snprintf(line, sizeof line, "%s", hot[i]);
        answered &= run(line, NULL) != '-';
    }
    ok(answered, "every hot-path command answers");
    long before = st_alloc_count();
    for (int rep = 0; rep < 200; rep++)
        for (size_t i = 0; i < nhot; i++) {
            snprintf(line, sizeof line, "%s", hot[i]);
            run(line, NULL);
        }
    long allocs = st_alloc_count() - before;
    ok(allocs == 0, "2,400 hot-path commands after warm-up: %ld allocations", allocs);
    return nhot;
}

/* Users changed online answer through the overlay, on the same hot
 * path, still without allocating. */
static size_t test_online_users(void)
{
    char err[ST_ERRLEN], line[512];
    st_jrecord recs[] = {
        {.type = ST_JREC_EVENT, .user = "online-1", .user_len = 8, .segment = "interest:sports:00",
         .segment_len = 18, .weight = 2, .ts = 1e9},
        {.type = ST_JREC_EVENT, .user = "u000007", .user_len = 7, .segment = "keyword:travel:05", .segment_len = 17,
         .weight = 5, .ts = 1e9},
        {.type = ST_JREC_FORGET, .user = "u000009", .user_len = 7},
    };
    int applied = st_scratch_work(&scratch, st_overlay_work(sv->ov)) == 0;
    for (size_t i = 0; i < sizeof recs / sizeof recs[0]; i++) {
        st_overlay_change chg;
        applied &= st_overlay_prepare(sv->ov, &recs[i], scratch.work, &chg, err) == 0 && chg.kind != 0 &&
                   st_overlay_check(sv->ov, &chg, err) == 1;
        st_overlay_commit(sv->ov, &chg);
    }
    ok(applied, "two events and a FORGET applied to the overlay");
    snprintf(line, sizeof line, "SEGMENTS online-1 COUNT 3");
    run(line, NULL);
    ok(strstr(out.buf, "+online") != NULL, "a new user answers from the overlay (source online)");
    snprintf(line, sizeof line, "SEGMENTS u000009");
    run(line, NULL);
    ok(strstr(out.buf, "+prior") != NULL, "a forgotten user is unknown");
    snprintf(line, sizeof line, "EXISTS u:u000009 u:online-1 u:u000007");
    ok(run(line, NULL) == ':' && strncmp(out.buf, ":2", 2) == 0, "EXISTS: the forgotten user's key is gone");
    const char *online[] = {
        "SEGMENTS online-1",
        "SEGMENTS u000007 COUNT 5 UNSEEN",
        "SEGMENTS u000009 COUNT 5",
        "SCORE online-1 interest:sports:00 keyword:travel:05",
        "SCORE u000007 interest:sports:00",
        "ZSCORE u:online-1 interest:sports:00",
        "ZREVRANGE u:u000007 0 4 WITHSCORES",
        "HISTORY online-1",
        "HISTORY u000007",
    };
    size_t nonline = sizeof online / sizeof online[0];
    for (size_t i = 0; i < nonline; i++) {
        snprintf(line, sizeof line, "%s", online[i]);
        run(line, NULL);
    }
    long before = st_alloc_count();
    for (int rep = 0; rep < 200; rep++)
        for (size_t i = 0; i < nonline; i++) {
            snprintf(line, sizeof line, "%s", online[i]);
            run(line, NULL);
        }
    long allocs = st_alloc_count() - before;
    ok(allocs == 0, "1,800 hot-path commands on online and forgotten users: %ld allocations", allocs);
    return nonline;
}

/* The call path: heavy commands deferred, arity and authentication checked
 * before a handler runs, every call counted once (nhot and nonline: the
 * commands per round of the two tests above, 201 rounds each). */
static void test_call_path(size_t nhot, size_t nonline)
{
    char line[512];
    st_call_result r;
    snprintf(line, sizeof line, "AUDIENCE interest:sports:00 COUNT 10");
    run(line, &r);
    ok(r == ST_CALL_DEFER && out.len == 0, "AUDIENCE is deferred to the heavy pool, nothing written");
    snprintf(line, sizeof line, "ZRANGE s:interest:sports:00 0 9");
    run(line, &r);
    ok(r == ST_CALL_DEFER, "a range over s:<segment> is deferred");
    snprintf(line, sizeof line, "SCORE u000007");
    ok(run(line, &r) == '-' && r == ST_CALL_DONE, "wrong arity is answered on the spot");
    uint64_t calls = 0;
    for (int i = 0; i < ST_MAX_COMMANDS; i++) calls += atomic_load(&stats.cmd[i].calls);
    ok(calls == (uint64_t)(201 * nhot + 201 * nonline + 3), "every call counted once in the statistics (%llu)",
       (unsigned long long)calls);
}

static void stub_info(st_server *srv, st_server_info *info)
{
    (void)srv;
    memset(info, 0, sizeof *info);
}
static void stub_lock(st_server *srv, int on)
{
    (void)srv;
    (void)on;
}
static const st_server_ops stub_ops = {.get_info = stub_info, .lock_clients = stub_lock};

/* Roles: what a user with each right may run, AUTH with users, and the
 * connection closed after ST_AUTH_MAX_FAILURES wrong passwords. */
static void test_rights(void)
{
    char err[ST_ERRLEN] = "";
    st_acl acl;
    st_acl_init(&acl);
    err[0] = '\0';
    ok(st_acl_add_line(&acl, "user adserver read s3cret", err) == 0 &&
           st_acl_add_line(&acl, "user pipeline write \"pipe-pass\"", err) == 0 &&
           st_acl_add_line(&acl, "user ops admin,read opspass", err) == 0,
       "users parse: %s", err);
    ok(st_acl_add_line(&acl, "user adserver read again", err) != 0 && strstr(err, "twice"), "a user defined twice is refused");
    ok(st_acl_add_line(&acl, "user x readwrite p", err) != 0 && strstr(err, "rights"), "unknown rights are refused: %s", err);
    ok(st_acl_add_line(&acl, "user default all p", err) != 0, "`default` cannot be redefined");
    acl.requirepass = "x";
    cfg.requirepass = "x";
    cfg.acl = &acl;
    session.rights = st_acl_initial_rights(&acl);
    ctx.ops = &stub_ops; /* CONFIG GET asks for the bound port */
    char line[256];
    snprintf(line, sizeof line, "SEGMENTS u000007");
    ok(run(line, NULL) == '-' && strncmp(out.buf, "-NOAUTH", 7) == 0, "NOAUTH before AUTH");
    snprintf(line, sizeof line, "PING");
    ok(run(line, NULL) == '+', "PING runs before AUTH");
    struct {
        const char *auth, *cmd;
        char first;
        const char *what;
    } cases[] = {
        {"AUTH adserver s3cret", "SEGMENTS u000007", '*', "a read user runs SEGMENTS"},
        {NULL, "FORGET u000007", '-', "a read user cannot FORGET"},
        {NULL, "EVENT u000007 interest:sports:00 1", '-', "a read user cannot EVENT"},
        {NULL, "CONFIG GET maxclients", '-', "a read user cannot CONFIG GET"},
        {NULL, "MODEL RELOAD", '-', "a read user cannot MODEL RELOAD"},
        {NULL, "CLIENT SETNAME x", '+', "a read user names its connection"},
        {"AUTH pipeline pipe-pass", "SEGMENTS u000007", '-', "a write user cannot read segments"},
        {NULL, "JOURNAL COMPACT", '-', "a write user cannot compact the journal"},
        {"AUTH ops opspass", "CONFIG GET maxclients", '*', "an admin user runs CONFIG GET"},
        {NULL, "FORGET u000007", '-', "an admin (and read) user without write cannot FORGET"},
        {"AUTH x", "CONFIG GET port", '*', "the default user (requirepass) has every right"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].auth) {
            snprintf(line, sizeof line, "%s", cases[i].auth);
            ok(run(line, NULL) == '+', "%s: OK", cases[i].auth);
        }
        snprintf(line, sizeof line, "%s", cases[i].cmd);
        char got = run(line, NULL);
        int noperm = out.len > 7 && strncmp(out.buf, "-NOPERM", 7) == 0;
        ok(got == cases[i].first && (cases[i].first != '-' || noperm == (strstr(cases[i].what, "cannot") != NULL)),
           "%s (%.*s)", cases[i].what, (int)strcspn(out.buf, "\r"), out.buf);
    }
    session.close_after_reply = 0;
    for (int i = 1; i <= ST_AUTH_MAX_FAILURES; i++) {
        snprintf(line, sizeof line, "AUTH adserver wrong%d", i);
        ok(run(line, NULL) == '-' && strncmp(out.buf, "-WRONGPASS", 10) == 0 &&
               session.close_after_reply == (i == ST_AUTH_MAX_FAILURES),
           "wrong password %d: WRONGPASS%s", i, i == ST_AUTH_MAX_FAILURES ? ", and the connection closes" : "");
    }
    cfg.acl = NULL;
    ctx.ops = NULL;
    st_acl_free(&acl);
}

int main(void)
{
    const char *dir = tap_tmpdir();
    char path[512], err0[ST_ERRLEN];
    snprintf(path, sizeof path, "%s/m.model", dir);
    if (!ok(make_model(dir, path, err0) == 0, "the test's model is made (synth, train, save)")) {
        printf("#   %s\n", err0);
        return tap_done();
    }
    char err[ST_ERRLEN] = "";
    sv = st_served_load(path, err);
    ok(sv != NULL, "model loaded and served");
    if (!sv) {
        printf("#   %s\n", err);
        return tap_done();
    }
    st_commands_init();
    st_server_config_default(&cfg);
    ok(st_scratch_fit(&scratch, &sv->m, 0, cfg.max_args) == 0, "scratch sized for the model");
    resp_out_init(&out, cfg.output_limit);
    ctx = (st_ctx){.cfg = &cfg, .session = &session, .model = sv, .scratch = &scratch, .out = &out};

    size_t nhot = test_hot_path();
    size_t nonline = test_online_users();
    test_call_path(nhot, nonline);
    test_rights();

    resp_out_free(&out);
    st_scratch_free(&scratch);
    st_served_release(sv);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
    return tap_done();
}
