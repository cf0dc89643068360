/* cli_score: `starling score`: a user's scores for the segments given, as the server's SCORE (with --journal, as a
 * server serving the model with that journal: jinput.h).
 */
#include <string.h>

#include "cli.h"
#include "score.h"
#include "util.h"

int cli_score(int argc, char **argv)
{
    int calibrated = 0, json = 0;
    const char *jv[1], *users = NULL;
    st_opt_list journals = {jv, 0, 1};
    const st_opt opts[] = {
        {"calibrated", 0, ST_OPT_FLAG, &calibrated, NULL,
         "print the probability of engagement (the model's calibration) instead of the score", 0},
        {"journal", 'j', ST_OPT_LIST, &journals, "FILE",
         "the journal of the server serving MODEL: answer as that server does (a user it forgot is unknown, "
         "online events count)",
         0},
        {"users", 0, ST_OPT_STRING, &users, "FILE",
         "the users in FILE (- for stdin), one per line, instead of USER: USER<TAB>SEGMENT<TAB>SCORE lines; unknown "
         "users are reported on stderr with their line and skipped",
         0},
        {"json", 0, ST_OPT_FLAG, &json, NULL,
         "with --users, a JSON line per user: {\"user\", \"scores\": [{\"segment\", \"score\"}]}", 0},
        {0},
    };
    const st_cmd_doc doc = {"score", "MODEL (USER | --users FILE|-) SEGMENT... [--calibrated] [--journal FILE] [--json]",
                            "Print the user's score for each segment, in the order asked, one\n"
                            "SEGMENT<TAB>SCORE line each; --users scores many users from one model load.",
                            "A score is U[user] . V[segment] + w q[segment], w the model's prior weight\n"
                            "(0 unless `starling eval`/`tune` fitted it) and q the popularity prior. With\n"
                            "--calibrated, 1 / (1 + exp(-(a score + b))): a probability an ad server can\n"
                            "multiply by a bid (docs/EVALUATION.md). With --journal (read-only), the score a\n"
                            "server started on MODEL with that journal gives: a user it forgot is an unknown\n"
                            "user, a user with online events is scored from their folded-in vector."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (users) {
        if (npos < 2) return st_cli_usage(&doc, "expected MODEL and at least one SEGMENT with --users");
        st_cli_batch b = {.model = pos[0], .journal = journals.n ? jv[0] : NULL, .users = users, .segments = pos + 1,
                          .nsegments = npos - 1, .calibrated = calibrated, .json = json};
        return st_cli_batch_score(&b);
    }
    if (json) return st_cli_usage(&doc, "--json goes with --users");
    if (npos < 3) return st_cli_usage(&doc, "expected MODEL, USER and at least one SEGMENT");
    st_jmodel cm;
    st_juser u;
    if ((rc = st_cli_load_user("score", pos[0], journals.n ? jv[0] : NULL, pos[1], &cm, &u)) != ST_EXIT_OK) return rc;
    const st_model *m = &cm.m;
    if (calibrated) rc = st_cli_need_calibration("score", pos[0], m);
    /* Check every segment before printing anything. */
    for (int i = 2; i < npos && rc == ST_EXIT_OK; i++)
        if (st_idmap_find(&m->segment_ids, pos[i], strlen(pos[i])) == ST_NOT_FOUND)
            rc = st_cli_fail("score", "unknown segment '%s' (not in %s, which has %u segments)", pos[i], pos[0],
                             m->segments);
    for (int i = 2; i < npos && rc == ST_EXIT_OK; i++) {
        uint32_t s = st_idmap_find(&m->segment_ids, pos[i], strlen(pos[i]));
        float sc = st_score_one(m, cm.prior, u.x, s);
        if (calibrated) printf("%s\t%.6g\n", pos[i], st_score_calibrated(m, sc));
        else printf("%s\t%.6f\n", pos[i], sc);
    }
    st_jmodel_free(&cm);
    return rc;
}
