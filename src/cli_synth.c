/* cli_synth: `starling synth`: the built-in synthetic ad-engagement log (synth.h). */
#include <string.h>

#include "cli.h"
#include "synth.h"
#include "util.h"

int cli_synth(int argc, char **argv)
{
    st_synth_params p;
    st_synth_params_default(&p);
    const char *out = NULL, *end = NULL;
    const st_opt opts[] = {
        {"output", 'o', ST_OPT_STRING, &out, "EVENTS", "where to write the log (.gz compresses, - for stdout)", 0},
        {"users", 0, ST_OPT_U64, &p.users, "N", "number of users", 0},
        {"segments", 0, ST_OPT_U64, &p.segments, "N", "number of segments", 0},
        {"events", 0, ST_OPT_U64, &p.events, "N", "number of events (exact)", 0},
        {"seed", 0, ST_OPT_U64, &p.seed, "S", "random seed: the same seed writes the same bytes", 0},
        {"truth", 0, ST_OPT_STRING, &p.truth_path, "FILE", "also write the planted user-segment affinities here", 0},
        {"window-days", 0, ST_OPT_DOUBLE, &p.window_days, "D", "days the timestamps span", 0},
        {"end", 0, ST_OPT_STRING, &end, "TIME", "end of the window (unix seconds or ISO 8601; default 2026-01-01)", 0},
        {"pairs", 0, ST_OPT_FLAG, &p.pairs, NULL,
         "write distinct user,segment,count pairs (counts 1-50) instead of events; --events counts pairs", 0},
        {0},
    };
    const st_cmd_doc doc = {
        "synth", "-o EVENTS [options]",
        "Write a deterministic synthetic ad-engagement log: a taxonomy of segments,\n"
        "users with sparse planted interests, power-law activity, event kinds at\n"
        "ad-funnel ratios (impression, click, follow, conversion), timestamps.",
        "Output columns: user,segment,weight,kind,timestamp. With --truth, a CSV of\n"
        "user,segment,affinity (each user's affinities sum to 1)."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos) return st_cli_usage(&doc, "unexpected argument '%s'", pos[0]);
    if (!out) return st_cli_usage(&doc, "-o EVENTS is required");
    if (end) {
        double t;
        if (st_parse_timestamp(end, strlen(end), &t) != 0)
            return st_cli_usage(&doc, "--end: '%s' is not a time (unix seconds or ISO 8601)", end);
        p.end = (int64_t)t;
    }
    const char *bad = st_synth_check(&p);
    if (bad) return st_cli_usage(&doc, "%s", bad);
    char err[ST_ERRLEN];
    double t0 = st_now();
    if (st_synth_write(&p, out, err) != 0) return st_cli_fail("synth", "%s", err);
    if (strcmp(out, "-") != 0)
        fprintf(stderr, "wrote %llu events of %llu users over %llu segments to %s in %.1f s\n",
                (unsigned long long)p.events, (unsigned long long)(p.users < p.events ? p.users : p.events),
                (unsigned long long)p.segments, out, st_now() - t0);
    return ST_EXIT_OK;
}
