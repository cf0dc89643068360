/* cli_audience: `starling audience`, the audience questions over every user
 * of a model or of all its shards, as a batch command.
 *
 * A proxy cannot gather an answer from every shard, so campaign tooling runs
 * this over the shard files instead: each shard gives its best N users (or
 * its reach count), and the results are merged. Over one unsharded model it
 * answers what AUDIENCE, LOOKALIKE and REACH answer on the server, with the
 * same privacy floors.
 */
#include <jansson.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "privacy.h"
#include "score.h"
#include "util.h"

typedef struct {
    float score;
    uint32_t file, idx;
} cand_t;

/* Best first: higher score, then the earlier file, then the lower index. */
static int cand_cmp(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

typedef struct {
    char *text;  /* the ids point into it */
    char **ids;
    uint32_t n;
} seed_list;

static void seeds_free(seed_list *s)
{
    st_free(s->text);
    st_free(s->ids);
    memset(s, 0, sizeof *s);
}

/* Reads seed ids: one per line of path, or comma-separated in list. */
static int read_seeds(const char *path, const char *list, seed_list *out, char *err)
{
    memset(out, 0, sizeof *out);
    char *text = NULL;
    if (path) {
        FILE *f = fopen(path, "r");
        if (!f) return st_seterr(err, "%s: cannot open: %s", path, strerror(errno));
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        text = st_malloc(len > 0 ? (size_t)len + 1 : 1);
        if (!text || (len > 0 && fread(text, 1, (size_t)len, f) != (size_t)len)) {
            fclose(f);
            st_free(text);
            return st_seterr(err, "%s: cannot read", path);
        }
        text[len > 0 ? len : 0] = '\0';
        fclose(f);
    } else {
        text = st_strdup(list);
        if (!text) return st_seterr(err, "out of memory");
    }
    uint32_t cap = 1;
    for (char *p = text; *p; p++) cap += *p == '\n' || *p == ',';
    out->ids = st_calloc(cap, sizeof *out->ids);
    out->text = text;
    if (!out->ids) {
        seeds_free(out);
        return st_seterr(err, "out of memory");
    }
    char *save = NULL;
    const char *sep = path ? "\r\n" : ",";
    for (char *t = strtok_r(text, sep, &save); t; t = strtok_r(NULL, sep, &save))
        if (*t) out->ids[out->n++] = t;
    return 0;
}

int cli_audience(int argc, char **argv)
{
    const char *segment = NULL, *seeds_file = NULL, *seeds_list = NULL;
    uint64_t count = 100, min_audience = ST_PRIVACY_MIN_AUDIENCE, min_seeds = ST_PRIVACY_MIN_SEEDS;
    double min = -INFINITY;
    int reach = 0, json = 0;
    const st_opt opts[] = {
        {"segment", 's', ST_OPT_STRING, &segment, "SEGMENT", "the best users for this segment (AUDIENCE)", 0},
        {"lookalike", 0, ST_OPT_STRING, &seeds_file, "FILE", "users closest to the seeds in FILE, one per line", 0},
        {"seeds", 0, ST_OPT_STRING, &seeds_list, "U1,U2,...", "the same with the seeds given inline", 0},
        {"count", 'n', ST_OPT_U64, &count, "N", "how many users", 0},
        {"min", 0, ST_OPT_DOUBLE, &min, "SCORE", "only users scoring at least this (default none)", 0},
        {"reach", 0, ST_OPT_FLAG, &reach, NULL, "print how many users score at least --min on --segment (REACH)", 0},
        {"min-audience", 0, ST_OPT_U64, &min_audience, "N",
         "privacy floor: refuse to disclose an audience or reach smaller than N users", 0},
        {"min-seeds", 0, ST_OPT_U64, &min_seeds, "N", "privacy floor: refuse seed lists of fewer than N known users",
         0},
        {"json", 0, ST_OPT_FLAG, &json, NULL, "print JSON instead of USER<TAB>SCORE lines", 0},
        {0},
    };
    const st_cmd_doc doc = {
        "audience", "MODEL... (--segment S | --lookalike FILE | --seeds U,...) [-n N] [--min SCORE] [--reach]",
        "Audiences over every user of a model, or of all the shards `starling shard` wrote (give\n"
        "every shard file): the best users for a segment, the look-alikes of a seed list, or the\n"
        "reach of a segment at a score. The answer is the one an unsharded server gives.",
        "Ties between equal scores go to the earlier file, then the earlier user in it. The same\n"
        "privacy floors as the server: no audience or reach below --min-audience users, no\n"
        "look-alikes of fewer than --min-seeds known seeds."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos < 1) return st_cli_usage(&doc, "give the model, or every shard of it");
    int modes = (segment != NULL) + (seeds_file != NULL || seeds_list != NULL);
    if (modes != 1 || (seeds_file && seeds_list)) return st_cli_usage(&doc, "give one of --segment, --lookalike or --seeds");
    if (reach && !segment) return st_cli_usage(&doc, "--reach needs --segment");
    if (count < 1 || count > 10000000) return st_cli_usage(&doc, "-n must be between 1 and 10000000");

    char err[ST_ERRLEN];
    st_model *models = st_calloc((size_t)npos, sizeof *models);
    seed_list sl = {0};
    cand_t *cands = NULL;
    float *scratch = NULL, *prior = NULL, *centroid = NULL;
    uint32_t *idx = NULL, *seed_rows = NULL;
    float *top = NULL;
    int code = ST_EXIT_ERROR, loaded = 0;
    if (!models) return st_cli_fail("audience", "out of memory");
    uint32_t maxusers = 0, k = 0, nseg = 0;
    for (int i = 0; i < npos; i++, loaded++) {
        if (st_model_load(pos[i], &models[i], err) != 0) {
            st_cli_fail("audience", "%s", err);
            goto done;
        }
        if (i > 0 && (models[i].k != k || models[i].segments != nseg ||
                      models[i].h.prior_weight != models[0].h.prior_weight)) {
            st_cli_fail("audience", "%s is not a shard of the same model as %s (other segments or rank)", pos[i],
                        pos[0]);
            loaded++;
            goto done;
        }
        k = models[i].k;
        nseg = models[i].segments;
        if (models[i].users > maxusers) maxusers = models[i].users;
    }
    uint32_t want = (uint32_t)count;
    scratch = st_malloc(((size_t)maxusers + k + 1) * sizeof *scratch);
    prior = st_malloc(((size_t)nseg + 1) * sizeof *prior);
    idx = st_malloc((size_t)want * sizeof *idx);
    top = st_malloc((size_t)want * sizeof *top);
    cands = st_malloc((size_t)want * npos * sizeof *cands);
    centroid = st_malloc((size_t)k * sizeof *centroid);
    if (!scratch || !prior || !idx || !top || !cands || !centroid) {
        st_cli_fail("audience", "out of memory");
        goto done;
    }
    uint32_t seg = 0;
    if (segment) {
        seg = st_idmap_find(&models[0].segment_ids, segment, strlen(segment));
        if (seg == ST_NOT_FOUND) {
            st_cli_fail("audience", "unknown segment '%s'", segment);
            goto done;
        }
    } else {
        if (read_seeds(seeds_file, seeds_list, &sl, err) != 0) {
            st_cli_fail("audience", "%s", err);
            goto done;
        }
        /* The centroid of the known seeds, wherever they live. */
        float *rows = st_malloc(((size_t)sl.n * k + 1) * sizeof *rows);
        seed_rows = st_malloc(((size_t)sl.n + 1) * sizeof *seed_rows);
        if (!rows || !seed_rows) {
            st_free(rows);
            st_cli_fail("audience", "out of memory");
            goto done;
        }
        uint32_t known = 0;
        for (uint32_t i = 0; i < sl.n; i++) {
            for (int f = 0; f < npos; f++) {
                uint32_t u = st_idmap_find(&models[f].user_ids, sl.ids[i], strlen(sl.ids[i]));
                if (u == ST_NOT_FOUND) continue;
                int dup = 0;
                for (uint32_t j = 0; j < i && !dup; j++) dup = strcmp(sl.ids[j], sl.ids[i]) == 0;
                if (!dup) {
                    float *row = rows + (size_t)known * k;
                    memmove(row, st_model_user(&models[f], u, row), k * sizeof *rows);
                    seed_rows[known] = known;
                    known++;
                }
                break;
            }
        }
        char msg[256];
        if (st_privacy_seeds(known, sl.n, min_seeds, msg, sizeof msg) != 0) {
            st_free(rows);
            st_cli_fail("audience", "%s", msg);
            goto done;
        }
        st_score_centroid(rows, k, seed_rows, known, centroid);
        st_free(rows);
    }
    st_score_prior(&models[0], prior);
    uint64_t total_reach = 0, ncand = 0;
    for (int f = 0; f < npos; f++) {
        const st_model *m = &models[f];
        uint32_t got;
        if (segment) {
            total_reach += st_score_reach(m, prior, seg, (float)min, scratch);
            if (reach) continue;
            got = st_score_audience(m, prior, seg, want, (float)min, scratch, idx, top);
        } else {
            st_score_all_users(m, centroid, scratch);
            /* Seeds are not their own look-alikes. */
            for (uint32_t i = 0; i < sl.n; i++) {
                uint32_t u = st_idmap_find(&m->user_ids, sl.ids[i], strlen(sl.ids[i]));
                if (u != ST_NOT_FOUND) scratch[u] = NAN;
            }
            if (!isinf(min) || min > 0)
                for (uint32_t u = 0; u < m->users; u++)
                    if (!(scratch[u] >= min)) scratch[u] = NAN;
            got = st_topk(scratch, m->users, want, NULL, 0, idx, top);
        }
        for (uint32_t i = 0; i < got; i++) cands[ncand++] = (cand_t){top[i], (uint32_t)f, idx[i]};
    }
    char floor_msg[256];
    if (segment && st_privacy_audience(total_reach, min_audience, floor_msg, sizeof floor_msg) != 0) {
        st_cli_fail("audience", "'%s' at %g: %s", segment, min, floor_msg);
        goto done;
    }
    if (reach) {
        if (json) printf("{\"segment\": \"%s\", \"min\": %g, \"reach\": %llu}\n", segment, min,
                         (unsigned long long)total_reach);
        else printf("%llu\n", (unsigned long long)total_reach);
        code = ST_EXIT_OK;
        goto done;
    }
    qsort(cands, ncand, sizeof *cands, cand_cmp);
    if (ncand > want) ncand = want;
    if (!segment && st_privacy_audience(ncand, min_audience, floor_msg, sizeof floor_msg) != 0) {
        st_cli_fail("audience", "look-alikes: %s", floor_msg);
        goto done;
    }
    json_t *arr = json ? json_array() : NULL;
    for (uint64_t i = 0; i < ncand; i++) {
        const char *id = st_idmap_name(&models[cands[i].file].user_ids, cands[i].idx, NULL);
        if (json) {
            json_t *e = json_object();
            json_object_set_new(e, "user", json_string(id));
            json_object_set_new(e, "score", json_real(cands[i].score));
            json_array_append_new(arr, e);
        } else {
            printf("%s\t%.9g\n", id, cands[i].score);
        }
    }
    if (json) {
        json_t *o = json_object();
        if (segment) json_object_set_new(o, "segment", json_string(segment));
        json_object_set_new(o, "users", arr);
        char *s = json_dumps(o, JSON_PRESERVE_ORDER);
        if (s) puts(s);
        free(s);
        json_decref(o);
    }
    code = ST_EXIT_OK;
done:
    for (int i = 0; i < loaded && i < npos; i++) st_model_free(&models[i]);
    st_free(models);
    st_free(scratch);
    st_free(prior);
    st_free(idx);
    st_free(top);
    st_free(cands);
    st_free(centroid);
    st_free(seed_rows);
    seeds_free(&sl);
    return code;
}
