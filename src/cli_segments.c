/* cli_segments: `starling segments`: a user's best segments from a model file, ranked as the server ranks them
 * (with --journal, as a server serving that model with that journal ranks them: jinput.h).
 */
#include <jansson.h>

#include "cli.h"
#include "score.h"
#include "util.h"

void st_cli_print_segments(const st_model *m, const char *user, const uint32_t *idx, const float *top, uint32_t n,
                           int calibrated, int json, int with_user)
{
    if (json) {
        json_t *o = json_object(), *arr = json_array();
        json_object_set_new(o, "user", json_string(user));
        for (uint32_t i = 0; i < n; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "segment", json_string(st_idmap_name(&m->segment_ids, idx[i], NULL)));
            json_object_set_new(e, calibrated ? "probability" : "score",
                                json_real(calibrated ? st_score_calibrated(m, top[i]) : top[i]));
            json_array_append_new(arr, e);
        }
        json_object_set_new(o, "segments", arr);
        char *s = json_dumps(o, JSON_PRESERVE_ORDER);
        if (s) puts(s);
        free(s);
        json_decref(o);
    } else {
        for (uint32_t i = 0; i < n; i++)
            printf(calibrated ? "%s%s%s\t%.6g\n" : "%s%s%s\t%.6f\n", with_user ? user : "", with_user ? "\t" : "",
                   st_idmap_name(&m->segment_ids, idx[i], NULL), calibrated ? st_score_calibrated(m, top[i]) : top[i]);
    }
}

int cli_segments(int argc, char **argv)
{
    uint64_t count = 10;
    int exclude_seen = 0, json = 0, calibrated = 0, all_users = 0, threads = 0;
    const char *users = NULL;
    const char *jv[1];
    st_opt_list journals = {jv, 0, 1};
    const st_opt opts[] = {
        {"count", 'k', ST_OPT_U64, &count, "N", "how many segments", 0},
        {"exclude-seen", 0, ST_OPT_FLAG, &exclude_seen, NULL,
         "leave out segments the user engaged with in training (and, with --journal, online)", 0},
        {"calibrated", 0, ST_OPT_FLAG, &calibrated, NULL,
         "print the probability of engagement (the model's calibration) instead of the score", 0},
        {"journal", 'j', ST_OPT_LIST, &journals, "FILE",
         "the journal of the server serving MODEL: answer as that server does (a user it forgot is unknown, "
         "online events count)",
         0},
        {"json", 0, ST_OPT_FLAG, &json, NULL, "print JSON instead of SEGMENT<TAB>SCORE lines", 0},
        {"users", 0, ST_OPT_STRING, &users, "FILE",
         "the users in FILE (- for stdin), one per line: USER<TAB>SEGMENT<TAB>SCORE lines, or a JSON line each "
         "with --json; unknown users are reported on stderr with their line and skipped",
         0},
        {"all-users", 0, ST_OPT_FLAG, &all_users, NULL,
         "every user of the model (and, with --journal, the online ones), by sgemm blocks", 0},
        {"threads", 't', ST_OPT_INT, &threads, "N", "threads for --users and --all-users (0 = one per CPU)", 0},
        {0},
    };
    const st_cmd_doc doc = {"segments",
                            "MODEL (USER | --users FILE|- | --all-users) [-k N] [--exclude-seen] [--journal FILE] "
                            "[--json]",
                            "Print a user's best segments, best first, one SEGMENT<TAB>SCORE line each.\n"
                            "--users and --all-users answer many users from one model load.",
                            "With --journal (read-only; a server may be appending to it), the answer is the\n"
                            "one a server started on MODEL with that journal gives: a user it forgot is an\n"
                            "unknown user, and a user with online events (EVENT, ZINCRBY) is scored from the\n"
                            "vector fold-in gives their history with those events. --exclude-seen then leaves\n"
                            "out the online engagements too. Pass it whenever MODEL is served with a journal."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (count == 0 || count > 1000000) return st_cli_usage(&doc, "-k must be between 1 and 1000000");
    if (threads < 0 || threads > 256) return st_cli_usage(&doc, "--threads must be between 0 and 256");
    if (users || all_users) {
        if (users && all_users) return st_cli_usage(&doc, "give --users or --all-users, not both");
        if (npos != 1) return st_cli_usage(&doc, "with --users or --all-users, expected MODEL alone");
        st_cli_batch b = {.model = pos[0], .journal = journals.n ? jv[0] : NULL, .users = users, .count = count,
                          .exclude_seen = exclude_seen, .calibrated = calibrated, .json = json,
                          .threads = threads ? threads : st_cpu_count()};
        return st_cli_batch_segments(&b);
    }
    if (npos != 2) return st_cli_usage(&doc, "expected MODEL and USER, got %d arguments", npos);
    st_jmodel cm;
    st_juser u;
    if ((rc = st_cli_load_user("segments", pos[0], journals.n ? jv[0] : NULL, pos[1], &cm, &u)) != ST_EXIT_OK)
        return rc;
    const st_model *m = &cm.m;
    if (calibrated && (rc = st_cli_need_calibration("segments", pos[0], m)) != ST_EXIT_OK) {
        st_jmodel_free(&cm);
        return rc;
    }
    uint32_t want = count < m->segments ? (uint32_t)count : m->segments;
    float *scores = st_malloc(((size_t)m->segments + 1) * sizeof *scores);
    uint32_t *idx = st_malloc(((size_t)want + 1) * sizeof *idx);
    float *top = st_malloc(((size_t)want + 1) * sizeof *top);
    if (!scores || !idx || !top) {
        rc = st_cli_fail("segments", "out of memory");
    } else {
        st_score_blend(m, cm.prior, u.x, scores);
        uint32_t n = st_topk(scores, m->segments, want, exclude_seen ? u.hist_seg : NULL, exclude_seen ? u.hist_n : 0,
                             idx, top);
        st_cli_print_segments(m, pos[1], idx, top, n, calibrated, json, 0);
    }
    st_free(scores);
    st_free(idx);
    st_free(top);
    st_jmodel_free(&cm);
    return rc;
}
