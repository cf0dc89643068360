/* cli_segments: `starling segments`: a user's best segments from a model file, ranked as the server ranks them.
 */
#include <jansson.h>

#include "cli.h"
#include "score.h"
#include "util.h"

int cli_segments(int argc, char **argv)
{
    uint64_t count = 10;
    int exclude_seen = 0, json = 0, calibrated = 0;
    const st_opt opts[] = {
        {"count", 'k', ST_OPT_U64, &count, "N", "how many segments", 0},
        {"exclude-seen", 0, ST_OPT_FLAG, &exclude_seen, NULL, "leave out segments the user engaged with in training", 0},
        {"calibrated", 0, ST_OPT_FLAG, &calibrated, NULL,
         "print the probability of engagement (the model's calibration) instead of the score", 0},
        {"json", 0, ST_OPT_FLAG, &json, NULL, "print JSON instead of SEGMENT<TAB>SCORE lines", 0},
        {0},
    };
    const st_cmd_doc doc = {"segments", "MODEL USER [-k N] [--exclude-seen] [--json]",
                            "Print a user's best segments, best first, one SEGMENT<TAB>SCORE line each.", NULL};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos != 2) return st_cli_usage(&doc, "expected MODEL and USER, got %d arguments", npos);
    if (count == 0 || count > 1000000) return st_cli_usage(&doc, "-k must be between 1 and 1000000");
    st_model m;
    uint32_t u = 0;
    if ((rc = st_cli_load_user("segments", pos[0], pos[1], &m, &u)) != ST_EXIT_OK) return rc;
    if (calibrated && (rc = st_cli_need_calibration("segments", pos[0], &m)) != ST_EXIT_OK) return rc;
    uint32_t want = count < m.segments ? (uint32_t)count : m.segments;
    float *scores = st_malloc((size_t)m.segments * sizeof *scores);
    float *prior = st_malloc((size_t)m.segments * sizeof *prior);
    uint32_t *idx = st_malloc(want * sizeof *idx);
    float *top = st_malloc(want * sizeof *top);
    if (!scores || !prior || !idx || !top) {
        st_free(prior);
        st_free(scores);
        st_free(idx);
        st_free(top);
        st_model_free(&m);
        return st_cli_fail("segments", "out of memory");
    }
    st_score_prior(&m, prior);
    float xbuf[1024];
    st_score_blend(&m, prior, st_model_user(&m, u, xbuf), scores);
    uint64_t h0 = m.hist_ptr[u], hn = m.hist_ptr[u + 1] - h0;
    uint32_t n = st_topk(scores, m.segments, want, exclude_seen ? m.hist_idx + h0 : NULL, exclude_seen ? hn : 0, idx,
                         top);
    if (json) {
        json_t *o = json_object(), *arr = json_array();
        json_object_set_new(o, "user", json_string(pos[1]));
        for (uint32_t i = 0; i < n; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "segment", json_string(st_idmap_name(&m.segment_ids, idx[i], NULL)));
            json_object_set_new(e, calibrated ? "probability" : "score",
                                json_real(calibrated ? st_score_calibrated(&m, top[i]) : top[i]));
            json_array_append_new(arr, e);
        }
        json_object_set_new(o, "segments", arr);
        char *s = json_dumps(o, JSON_PRESERVE_ORDER);
        if (s) puts(s);
        free(s);
        json_decref(o);
    } else {
        for (uint32_t i = 0; i < n; i++)
            printf(calibrated ? "%s\t%.6g\n" : "%s\t%.6f\n", st_idmap_name(&m.segment_ids, idx[i], NULL),
                   calibrated ? st_score_calibrated(&m, top[i]) : top[i]);
    }
    st_free(prior);
    st_free(scores);
    st_free(idx);
    st_free(top);
    st_model_free(&m);
    return ST_EXIT_OK;
}
