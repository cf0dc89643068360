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

/* One batch question over the model files (every shard of a model). */
typedef struct {
    const char *segment;
    double min;
    int reach, json;
    uint64_t min_audience, min_seeds;
    st_model *models;
    int nmodels, loaded;
    uint32_t maxusers, k, nseg, want, seg;
    seed_list sl;
    cand_t *cands;
    float *scratch, *prior, *centroid, *top;
    uint32_t *idx;
} audience_job;

static void job_free(audience_job *j)
{
    for (int i = 0; i < j->loaded && i < j->nmodels; i++) st_model_free(&j->models[i]);
    st_free(j->models);
    st_free(j->scratch);
    st_free(j->prior);
    st_free(j->idx);
    st_free(j->top);
    st_free(j->cands);
    st_free(j->centroid);
    seeds_free(&j->sl);
}

/* Loads every file, checks they are shards of one model, and sizes the buffers. */
static int load_models(audience_job *j, char **paths)
{
    char err[ST_ERRLEN];
    j->models = st_calloc((size_t)j->nmodels, sizeof *j->models);
    if (!j->models) return st_cli_fail("audience", "out of memory");
    for (int i = 0; i < j->nmodels; i++, j->loaded++) {
        if (st_model_load(paths[i], &j->models[i], err) != 0) return st_cli_fail("audience", "%s", err);
        const st_model *m = &j->models[i];
        if (i > 0 && (m->k != j->k || m->segments != j->nseg || m->h.prior_weight != j->models[0].h.prior_weight)) {
            j->loaded++;
            return st_cli_fail("audience", "%s is not a shard of the same model as %s (other segments or rank)",
                               paths[i], paths[0]);
        }
        j->k = m->k;
        j->nseg = m->segments;
        if (m->users > j->maxusers) j->maxusers = m->users;
    }
    j->scratch = st_malloc(((size_t)j->maxusers + j->k + 1) * sizeof *j->scratch);
    j->prior = st_malloc(((size_t)j->nseg + 1) * sizeof *j->prior);
    j->idx = st_malloc((size_t)j->want * sizeof *j->idx);
    j->top = st_malloc((size_t)j->want * sizeof *j->top);
    j->cands = st_malloc((size_t)j->want * j->nmodels * sizeof *j->cands);
    j->centroid = st_malloc((size_t)j->k * sizeof *j->centroid);
    if (!j->scratch || !j->prior || !j->idx || !j->top || !j->cands || !j->centroid)
        return st_cli_fail("audience", "out of memory");
    st_score_prior(&j->models[0], j->prior);
    return ST_EXIT_OK;
}

/* The centroid of the known seeds, wherever they live, under the seed floor. */
static int seed_centroid(audience_job *j, const char *seeds_file, const char *seeds_list)
{
    char err[ST_ERRLEN];
    if (read_seeds(seeds_file, seeds_list, &j->sl, err) != 0) return st_cli_fail("audience", "%s", err);
    uint32_t k = j->k, n = j->sl.n, known = 0;
    float *rows = st_malloc(((size_t)n * k + 1) * sizeof *rows);
    uint32_t *seed_rows = st_malloc(((size_t)n + 1) * sizeof *seed_rows);
    if (!rows || !seed_rows) {
        st_free(rows);
        st_free(seed_rows);
        return st_cli_fail("audience", "out of memory");
    }
    for (uint32_t i = 0; i < n; i++) {
        for (int f = 0; f < j->nmodels; f++) {
            uint32_t u = st_idmap_find(&j->models[f].user_ids, j->sl.ids[i], strlen(j->sl.ids[i]));
            if (u == ST_NOT_FOUND) continue;
            int dup = 0;
            for (uint32_t q = 0; q < i && !dup; q++) dup = strcmp(j->sl.ids[q], j->sl.ids[i]) == 0;
            if (!dup) {
                float *row = rows + (size_t)known * k;
                memmove(row, st_model_user(&j->models[f], u, row), k * sizeof *rows);
                seed_rows[known] = known;
                known++;
            }
            break;
        }
    }
    char msg[256];
    int code = ST_EXIT_OK;
    if (st_privacy_seeds(known, n, j->min_seeds, msg, sizeof msg) != 0) code = st_cli_fail("audience", "%s", msg);
    else st_score_centroid(rows, k, seed_rows, known, j->centroid);
    st_free(rows);
    st_free(seed_rows);
    return code;
}

/* Each file's best want users (or its reach), merged into j->cands. */
static uint64_t scan_models(audience_job *j, uint64_t *total_reach)
{
    uint64_t ncand = 0;
    *total_reach = 0;
    for (int f = 0; f < j->nmodels; f++) {
        const st_model *m = &j->models[f];
        uint32_t got;
        if (j->segment) {
            *total_reach += st_score_reach(m, j->prior, j->seg, (float)j->min, j->scratch);
            if (j->reach) continue;
            got = st_score_audience(m, j->prior, j->seg, j->want, (float)j->min, j->scratch, j->idx, j->top);
        } else {
            st_score_all_users(m, j->centroid, j->scratch);
            /* Seeds are not their own look-alikes. */
            for (uint32_t i = 0; i < j->sl.n; i++) {
                uint32_t u = st_idmap_find(&m->user_ids, j->sl.ids[i], strlen(j->sl.ids[i]));
                if (u != ST_NOT_FOUND) j->scratch[u] = NAN;
            }
            if (!isinf(j->min) || j->min > 0)
                for (uint32_t u = 0; u < m->users; u++)
                    if (!(j->scratch[u] >= j->min)) j->scratch[u] = NAN;
            got = st_topk(j->scratch, m->users, j->want, NULL, 0, j->idx, j->top);
        }
        for (uint32_t i = 0; i < got; i++) j->cands[ncand++] = (cand_t){j->top[i], (uint32_t)f, j->idx[i]};
    }
    return ncand;
}

static void print_users(const audience_job *j, uint64_t ncand)
{
    json_t *arr = j->json ? json_array() : NULL;
    for (uint64_t i = 0; i < ncand; i++) {
        const char *id = st_idmap_name(&j->models[j->cands[i].file].user_ids, j->cands[i].idx, NULL);
        if (j->json) {
            json_t *e = json_object();
            json_object_set_new(e, "user", json_string(id));
            json_object_set_new(e, "score", json_real(j->cands[i].score));
            json_array_append_new(arr, e);
        } else {
            printf("%s\t%.9g\n", id, j->cands[i].score);
        }
    }
    if (j->json) {
        json_t *o = json_object();
        if (j->segment) json_object_set_new(o, "segment", json_string(j->segment));
        json_object_set_new(o, "users", arr);
        char *s = json_dumps(o, JSON_PRESERVE_ORDER);
        if (s) puts(s);
        free(s);
        json_decref(o);
    }
}

/* Runs the question once the models are loaded. */
static int answer(audience_job *j, const char *seeds_file, const char *seeds_list)
{
    if (j->segment) {
        j->seg = st_idmap_find(&j->models[0].segment_ids, j->segment, strlen(j->segment));
        if (j->seg == ST_NOT_FOUND) return st_cli_fail("audience", "unknown segment '%s'", j->segment);
    } else {
        int code = seed_centroid(j, seeds_file, seeds_list);
        if (code != ST_EXIT_OK) return code;
    }
    uint64_t total_reach, ncand = scan_models(j, &total_reach);
    char floor_msg[256];
    if (j->segment && st_privacy_audience(total_reach, j->min_audience, floor_msg, sizeof floor_msg) != 0)
        return st_cli_fail("audience", "'%s' at %g: %s", j->segment, j->min, floor_msg);
    if (j->reach) {
        if (j->json)
            printf("{\"segment\": \"%s\", \"min\": %g, \"reach\": %llu}\n", j->segment, j->min,
                   (unsigned long long)total_reach);
        else printf("%llu\n", (unsigned long long)total_reach);
        return ST_EXIT_OK;
    }
    qsort(j->cands, ncand, sizeof *j->cands, cand_cmp);
    if (ncand > j->want) ncand = j->want;
    if (!j->segment && st_privacy_audience(ncand, j->min_audience, floor_msg, sizeof floor_msg) != 0)
        return st_cli_fail("audience", "look-alikes: %s", floor_msg);
    print_users(j, ncand);
    return ST_EXIT_OK;
}

int cli_audience(int argc, char **argv)
{
    audience_job j;
    memset(&j, 0, sizeof j);
    const char *seeds_file = NULL, *seeds_list = NULL;
    uint64_t count = 100;
    j.min_audience = ST_PRIVACY_MIN_AUDIENCE;
    j.min_seeds = ST_PRIVACY_MIN_SEEDS;
    j.min = -INFINITY;
    const st_opt opts[] = {
        {"segment", 's', ST_OPT_STRING, &j.segment, "SEGMENT", "the best users for this segment (AUDIENCE)", 0},
        {"lookalike", 0, ST_OPT_STRING, &seeds_file, "FILE", "users closest to the seeds in FILE, one per line", 0},
        {"seeds", 0, ST_OPT_STRING, &seeds_list, "U1,U2,...", "the same with the seeds given inline", 0},
        {"count", 'n', ST_OPT_U64, &count, "N", "how many users", 0},
        {"min", 0, ST_OPT_DOUBLE, &j.min, "SCORE", "only users scoring at least this (default none)", 0},
        {"reach", 0, ST_OPT_FLAG, &j.reach, NULL, "print how many users score at least --min on --segment (REACH)", 0},
        {"min-audience", 0, ST_OPT_U64, &j.min_audience, "N",
         "privacy floor: refuse to disclose an audience or reach smaller than N users", 0},
        {"min-seeds", 0, ST_OPT_U64, &j.min_seeds, "N", "privacy floor: refuse seed lists of fewer than N known users",
         0},
        {"json", 0, ST_OPT_FLAG, &j.json, NULL, "print JSON instead of USER<TAB>SCORE lines", 0},
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
    int modes = (j.segment != NULL) + (seeds_file != NULL || seeds_list != NULL);
    if (modes != 1 || (seeds_file && seeds_list))
        return st_cli_usage(&doc, "give one of --segment, --lookalike or --seeds");
    if (j.reach && !j.segment) return st_cli_usage(&doc, "--reach needs --segment");
    if (count < 1 || count > 10000000) return st_cli_usage(&doc, "-n must be between 1 and 10000000");
    j.want = (uint32_t)count;
    j.nmodels = npos;
    int code = load_models(&j, pos);
    if (code == ST_EXIT_OK) code = answer(&j, seeds_file, seeds_list);
    job_free(&j);
    return code;
}
