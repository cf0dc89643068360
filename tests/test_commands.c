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
#include "tap.h"
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

int main(void)
{
    const char *bin = getenv("STARLING");
    const char *dir = tap_tmpdir();
    char cmd[2048], path[512];
    snprintf(path, sizeof path, "%s/m.model", dir);
    snprintf(cmd, sizeof cmd,
             "'%s' synth -o '%s/ev.csv' --users 500 --segments 120 --events 8000 --seed 5 2>/dev/null && "
             "'%s' train '%s/ev.csv' -o '%s' --factors 12 --iterations 3 -q",
             bin ? bin : "./starling", dir, bin ? bin : "./starling", dir, path);
    if (system(cmd) != 0) {
        printf("1..0 # SKIP cannot make a model with %s\n", bin ? bin : "./starling");
        return 0;
    }
    char err[ST_ERRLEN];
    st_served *sv = st_served_load(path, err);
    ok(sv != NULL, "model loaded and served");
    if (!sv) {
        printf("#   %s\n", err);
        return tap_done();
    }
    st_commands_init();
    st_server_config cfg;
    st_server_config_default(&cfg);
    st_scratch scratch = {0};
    ok(st_scratch_fit(&scratch, &sv->m, 0, cfg.max_args) == 0, "scratch sized for the model");
    resp_out out;
    resp_out_init(&out, cfg.output_limit);
    st_session session = {.id = 1, .authed = 1};
    ctx = (st_ctx){.cfg = &cfg, .session = &session, .model = sv, .scratch = &scratch, .out = &out};

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

    /* Users changed online answer through the overlay, on the same hot
     * path, still without allocating. */
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
    before = st_alloc_count();
    for (int rep = 0; rep < 200; rep++)
        for (size_t i = 0; i < nonline; i++) {
            snprintf(line, sizeof line, "%s", online[i]);
            run(line, NULL);
        }
    allocs = st_alloc_count() - before;
    ok(allocs == 0, "1,800 hot-path commands on online and forgotten users: %ld allocations", allocs);

    st_call_result r;
    snprintf(line, sizeof line, "AUDIENCE interest:sports:00 COUNT 10");
    run(line, &r);
    ok(r == ST_CALL_DEFER && out.len == 0, "AUDIENCE is deferred to the heavy pool, nothing written");
    snprintf(line, sizeof line, "ZRANGE s:interest:sports:00 0 9");
    run(line, &r);
    ok(r == ST_CALL_DEFER, "a range over s:<segment> is deferred");
    snprintf(line, sizeof line, "SCORE u000007");
    ok(run(line, &r) == '-' && r == ST_CALL_DONE, "wrong arity is answered on the spot");
    session.authed = 0;
    cfg.requirepass = "x";
    snprintf(line, sizeof line, "SEGMENTS u000007");
    ok(run(line, NULL) == '-' && strncmp(out.buf, "-NOAUTH", 7) == 0, "NOAUTH before AUTH");
    uint64_t calls = 0;
    for (int i = 0; i < ST_MAX_COMMANDS; i++) calls += atomic_load(&stats.cmd[i].calls);
    ok(calls == (uint64_t)(201 * nhot + 201 * nonline + 3), "every call counted once in the statistics (%llu)",
       (unsigned long long)calls);

    resp_out_free(&out);
    st_scratch_free(&scratch);
    st_served_release(sv);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
    return tap_done();
}
