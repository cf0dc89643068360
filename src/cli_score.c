/* cli_score: `starling score`: a user's scores for the segments given, as the server's SCORE.
 */
#include <string.h>

#include "cli.h"
#include "score.h"
#include "util.h"

int cli_score(int argc, char **argv)
{
    int calibrated = 0;
    const st_opt opts[] = {
        {"calibrated", 0, ST_OPT_FLAG, &calibrated, NULL,
         "print the probability of engagement (the model's calibration) instead of the score", 0},
        {0},
    };
    const st_cmd_doc doc = {"score", "MODEL USER SEGMENT... [--calibrated]",
                            "Print the user's score for each segment, in the order asked, one\n"
                            "SEGMENT<TAB>SCORE line each.",
                            "A score is U[user] . V[segment] + w q[segment], w the model's prior weight\n"
                            "(0 unless `starling eval`/`tune` fitted it) and q the popularity prior. With\n"
                            "--calibrated, 1 / (1 + exp(-(a score + b))): a probability an ad server can\n"
                            "multiply by a bid (docs/EVALUATION.md)."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos < 3) return st_cli_usage(&doc, "expected MODEL, USER and at least one SEGMENT");
    st_model m;
    uint32_t u = 0;
    if ((rc = st_cli_load_user("score", pos[0], pos[1], &m, &u)) != ST_EXIT_OK) return rc;
    if (calibrated && (rc = st_cli_need_calibration("score", pos[0], &m)) != ST_EXIT_OK) return rc;
    /* Check every segment before printing anything. */
    for (int i = 2; i < npos; i++) {
        if (st_idmap_find(&m.segment_ids, pos[i], strlen(pos[i])) == ST_NOT_FOUND) {
            st_cli_fail("score", "unknown segment '%s' (not in %s, which has %u segments)", pos[i], pos[0],
                        m.segments);
            st_model_free(&m);
            return ST_EXIT_ERROR;
        }
    }
    float xbuf[1024];
    const float *x = st_model_user(&m, u, xbuf);
    float *prior = st_malloc((size_t)m.segments * sizeof *prior);
    if (!prior) {
        st_model_free(&m);
        return st_cli_fail("score", "out of memory");
    }
    st_score_prior(&m, prior);
    for (int i = 2; i < npos; i++) {
        uint32_t s = st_idmap_find(&m.segment_ids, pos[i], strlen(pos[i]));
        float sc = st_score_one(&m, prior, x, s);
        if (calibrated) printf("%s\t%.6g\n", pos[i], st_score_calibrated(&m, sc));
        else printf("%s\t%.6f\n", pos[i], sc);
    }
    st_free(prior);
    st_model_free(&m);
    return ST_EXIT_OK;
}
