/* cli_audience: `starling audience`, the audience questions over every user
 * of a model or of all its shards, as a batch command.
 *
 * A proxy cannot gather an answer from every shard, so campaign tooling runs
 * this over the shard files instead: each shard gives its best N users (or
 * its reach count), and the results are merged. Over one unsharded model it
 * answers what AUDIENCE, LOOKALIKE and REACH answer on the server, with the
 * same privacy floors.
 *
 * With --journal, once per file and in the same order (the journal of the
 * server serving each shard), each file is read with its journal replayed
 * beside it as that server replays it (jinput.h, st_jmodel): the rows of users it
 * forgot or changed are hidden, the online users scanned after the file's
 * rows. Since twemproxy sends a user's writes to the shard that holds the
 * user, a journal with records of a user another given file holds, whose
 * own journal has none, was paired with the wrong file, and one journal
 * given for two files belongs to one of them only: both are refused.
 *
 * Each file is read in one pass split across threads (scan.h): scores and
 * the best users (or the count, or the counts at every threshold of a
 * reach curve) fused, the journal's hidden rows skipped and its online
 * users scanned after the file's rows, as the server's scans do.
 */
#include <jansson.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lookalike.h"
#include "model.h"
#include "privacy.h"
#include "scan.h"
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

/* Parses "T1,T2,..." into at most max thresholds; -1 on a bad number. */
static int parse_curve(const char *list, float *t, uint32_t max, uint32_t *n)
{
    char buf[64];
    *n = 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        double v;
        if (len == 0 || len >= sizeof buf || *n == max) return -1;
        memcpy(buf, p, len);
        buf[len] = '\0';
        if (st_parse_double(buf, &v) != 0 && strcmp(buf, "-inf") != 0) return -1;
        t[(*n)++] = strcmp(buf, "-inf") == 0 ? -INFINITY : (float)v;
        p += len + (p[len] == ',');
    }
    return *n > 0 ? 0 : -1;
}

/* One batch question over the model files (every shard of a model). */
typedef struct {
    const char *segment;
    double min;
    int reach, json, all_segments, threads;
    uint64_t min_audience, min_seeds;
    st_jmodel *models;
    int nmodels, loaded;
    uint32_t k, nseg, want, seg;
    seed_list sl;
    cand_t *cands;
    float *query, *top; /* query: LOOKALIKE's (k floats) */
    uint32_t *idx;
    float *segvec;     /* k: --segment added online (SEGMENT ADD/SET), from each file's journal in turn */
    float *thresholds; /* the reach curve's (nt); NULL: no curve */
    uint32_t nt;
    uint64_t *curve; /* nt counts, summed over the files */
} audience_job;

static void job_free(audience_job *j)
{
    for (int i = 0; i < j->loaded && i < j->nmodels; i++) st_jmodel_free(&j->models[i]);
    st_free(j->models);
    st_free(j->curve);
    st_free(j->idx);
    st_free(j->top);
    st_free(j->cands);
    st_free(j->query);
    st_free(j->segvec);
    seeds_free(&j->sl);
}

/* Records of users another file holds (the check in the design comment),
 * kept until every journal is replayed: the first few are enough to say. */
enum { MISPLACED_MAX = 16 };
typedef struct {
    audience_job *j;
    int file, n;
    int from[MISPLACED_MAX], owner[MISPLACED_MAX];
    char users[MISPLACED_MAX][256];
} misplaced_t;

static int note_misplaced(const st_jrecord *r, void *ctx, char *err)
{
    (void)err; /* never refuses: replay_journals decides once every journal is read */
    misplaced_t *mp = ctx;
    audience_job *j = mp->j;
    if (mp->n == MISPLACED_MAX ||
        st_idmap_find(&j->models[mp->file].m.user_ids, r->user, r->user_len) != ST_NOT_FOUND)
        return 0;
    for (int f = 0; f < j->nmodels; f++) {
        if (f == mp->file || st_idmap_find(&j->models[f].m.user_ids, r->user, r->user_len) == ST_NOT_FOUND) continue;
        snprintf(mp->users[mp->n], sizeof mp->users[0], "%.*s", (int)(r->user_len > 200 ? 200 : r->user_len), r->user);
        mp->from[mp->n] = mp->file;
        mp->owner[mp->n++] = f;
        break;
    }
    return 0;
}

/* Replays each file's journal; then refuses a pairing the check finds wrong. */
static int replay_journals(audience_job *j, char **paths, const st_opt_list *journals)
{
    misplaced_t *mp = st_calloc(1, sizeof *mp);
    if (!mp) return st_cli_fail("audience", "out of memory");
    mp->j = j;
    uint64_t *ids = st_calloc((size_t)journals->n + 1, sizeof *ids);
    int code = ids ? ST_EXIT_OK : st_cli_fail("audience", "out of memory");
    for (int i = 0; i < journals->n && code == ST_EXIT_OK; i++) {
        mp->file = i;
        code = st_cli_model_replay("audience", paths[i], &j->models[i], journals->v[i],
                                   j->nmodels > 1 ? note_misplaced : NULL, mp, &ids[i]);
        /* Every shard server has a journal of its own (a random id each). */
        for (int q = 0; q < i && code == ST_EXIT_OK; q++)
            if (ids[q] == ids[i])
                code = st_cli_fail("audience", "--journal %s and --journal %s are the same journal (%016llx), given "
                                               "for %s and %s: each shard server keeps a journal of its own; give "
                                               "each file its server's",
                                   journals->v[q], journals->v[i], (unsigned long long)ids[i], paths[q], paths[i]);
    }
    st_free(ids);
    for (int q = 0; q < mp->n && code == ST_EXIT_OK; q++) {
        int i = mp->from[q], f = mp->owner[q];
        st_juser u;
        st_jmodel_user(&j->models[f], mp->users[q], strlen(mp->users[q]), &u);
        /* The user's own journal has records of them too (a FORGET sent to
         * every shard, say): not a wrong pairing. */
        if (u.forgotten || (u.known && u.pos >= j->models[f].m.users)) continue;
        code = st_cli_fail("audience", "--journal %s (journal %d, paired with %s) has records of user '%s', whom %s "
                                       "holds, and %s has none: give one journal per model file, in the same order "
                                       "as the files",
                           journals->v[i], i + 1, paths[i], mp->users[q], paths[f], journals->v[f]);
    }
    st_free(mp);
    return code;
}

/* Loads every file (and its journal), checks they are shards of one model,
 * and sizes the buffers. */
static int load_models(audience_job *j, char **paths, const st_opt_list *journals)
{
    j->models = st_calloc((size_t)j->nmodels, sizeof *j->models);
    if (!j->models) return st_cli_fail("audience", "out of memory");
    for (int i = 0; i < j->nmodels; i++, j->loaded++) {
        int code = st_cli_model_load("audience", paths[i], &j->models[i]);
        if (code != ST_EXIT_OK) {
            j->loaded++;
            return code;
        }
        const st_model *m = &j->models[i].m;
        if (i > 0 && (m->k != j->k || m->segments != j->nseg || m->h.prior_weight != j->models[0].m.h.prior_weight ||
                      (m->h.flags & ST_MODEL_PRIOR_LINEAR) != (j->models[0].m.h.flags & ST_MODEL_PRIOR_LINEAR))) {
            j->loaded++;
            return st_cli_fail("audience", "%s is not a shard of the same model as %s (other segments or rank)",
                               paths[i], paths[0]);
        }
        j->k = m->k;
        j->nseg = m->segments;
    }
    int code = replay_journals(j, paths, journals);
    if (code != ST_EXIT_OK) return code;
    j->curve = st_calloc((size_t)j->nt + 1, sizeof *j->curve);
    j->idx = st_malloc((size_t)j->want * sizeof *j->idx);
    j->top = st_malloc((size_t)j->want * sizeof *j->top);
    j->cands = st_malloc((size_t)j->want * j->nmodels * sizeof *j->cands);
    j->query = st_malloc((size_t)j->k * sizeof *j->query);
    if (!j->curve || !j->idx || !j->top || !j->cands || !j->query) return st_cli_fail("audience", "out of memory");
    return ST_EXIT_OK;
}

/* LOOKALIKE's query of the known seeds (rows, n x k) into j->query: the
 * seeds folded in as a segment against U^T U of every file's rows, as the
 * server of the unsharded model solves it (lookalike.h). */
static int seed_query(audience_job *j, const float *rows, uint32_t n)
{
    size_t kk = (size_t)j->k * j->k;
    double *acc = st_calloc(kk, sizeof *acc);
    float *G = st_malloc(kk * sizeof *G);
    uint64_t users = 0;
    int rc = acc && G ? 0 : -1;
    for (int f = 0; f < j->nmodels && rc == 0; f++) {
        rc = st_lookalike_gram_add(&j->models[f].m, acc);
        users += j->models[f].m.users;
    }
    for (size_t i = 0; i < kk && rc == 0; i++) G[i] = (float)acc[i];
    if (rc == 0 && st_lookalike_query(&j->models[0].m, users, G, rows, n, j->query) < 0) rc = -1;
    st_free(acc);
    st_free(G);
    return rc == 0 ? ST_EXIT_OK : st_cli_fail("audience", "out of memory");
}

/* The query of the known seeds, wherever they live, under the seed floor. */
static int lookalike_seeds(audience_job *j, const char *seeds_file, const char *seeds_list)
{
    char err[ST_ERRLEN];
    if (read_seeds(seeds_file, seeds_list, &j->sl, err) != 0) return st_cli_fail("audience", "%s", err);
    uint32_t k = j->k, n = j->sl.n, known = 0;
    float *rows = st_malloc(((size_t)n * k + 1) * sizeof *rows);
    if (!rows) return st_cli_fail("audience", "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        for (int f = 0; f < j->nmodels; f++) {
            st_juser u;
            st_jmodel_user(&j->models[f], j->sl.ids[i], strlen(j->sl.ids[i]), &u);
            if (u.forgotten) break; /* unknown, as on the server */
            if (!u.known) continue;
            int dup = 0;
            for (uint32_t q = 0; q < i && !dup; q++) dup = strcmp(j->sl.ids[q], j->sl.ids[i]) == 0;
            if (!dup) {
                memcpy(rows + (size_t)known * k, u.x, k * sizeof *rows);
                known++;
            }
            break;
        }
    }
    char msg[256];
    int code = ST_EXIT_OK;
    if (st_privacy_seeds(known, n, j->min_seeds, msg, sizeof msg) != 0) code = st_cli_fail("audience", "%s", msg);
    else code = seed_query(j, rows, known);
    st_free(rows);
    return code;
}

/* The positions of the seeds in file f's scan, ascending, into ex (sl.n
 * entries): seeds are not their own look-alikes. Returns how many. */
static uint64_t seed_positions(audience_job *j, int f, uint32_t *ex)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < j->sl.n; i++) {
        st_juser u;
        st_jmodel_user(&j->models[f], j->sl.ids[i], strlen(j->sl.ids[i]), &u);
        if (u.pos != UINT64_MAX) ex[n++] = (uint32_t)u.pos;
    }
    qsort(ex, n, sizeof *ex, st_cmp_u32);
    return n;
}

/* --segment that no model file has but the file's journal added (SEGMENT
 * ADD, SEGMENT SET, EVENTs past --segment-min-users at the default): its
 * vector into j->segvec and its blend into *add, as that file's server
 * serves it. -1 (said) when the journal has no such segment. */
static int added_segment(audience_job *j, const st_jmodel *cm, float *add)
{
    st_segov *g = cm->ov ? st_overlay_segments(cm->ov) : NULL;
    uint32_t pos = g ? st_segov_find(g, j->segment, strlen(j->segment)) : ST_NOT_FOUND;
    if (pos == ST_NOT_FOUND)
        return st_cli_fail("audience", "unknown segment '%s' (not in the model%s)", j->segment,
                           cm->ov ? ", nor added by its journal" : "; --journal reads segments added online"),
               -1;
    if (!j->segvec && !(j->segvec = st_malloc(j->k * sizeof *j->segvec)))
        return st_cli_fail("audience", "out of memory"), -1;
    *add = (float)cm->m.h.prior_weight * st_segov_vector(g, pos, j->segvec, NULL);
    return 0;
}

/* One pass over each file (scan.c): its best want users merged into
 * j->cands, its count at --min into *total_reach, or its reach curve added
 * to j->curve. Returns the candidates, or UINT64_MAX on out-of-memory
 * (said). */
static uint64_t scan_models(audience_job *j, uint64_t *total_reach)
{
    uint64_t ncand = 0, *counts = st_calloc((size_t)j->nt + 1, sizeof *counts);
    uint32_t *ex = j->segment ? NULL : st_malloc(((size_t)j->sl.n + 1) * sizeof *ex);
    int rc = counts && (j->segment || ex) ? 0 : -1;
    *total_reach = 0;
    for (int f = 0; f < j->nmodels && rc == 0; f++) {
        const st_jmodel *cm = &j->models[f];
        const st_model *m = &cm->m;
        st_scan_query q = {.min = (float)j->min, .want = j->reach || j->thresholds ? 0 : j->want, .count = 1,
                           .skip = cm->view.hidden, .extra = cm->view.X, .nextra = cm->view.n};
        if (j->segment && j->seg == ST_NOT_FOUND) {
            if (added_segment(j, cm, &q.add) != 0) {
                rc = -2;
                break;
            }
            q.x = j->segvec;
        } else if (j->segment) {
            q.x = m->V + (size_t)j->seg * j->k;
            q.add = (float)m->h.prior_weight * cm->prior[j->seg];
        } else {
            q.x = j->query;
            q.add = -0.0f;
            q.exclude = ex;
            q.nexclude = seed_positions(j, f, ex);
        }
        st_scan_result res;
        if (j->thresholds) {
            rc = st_scan_curve(m, &q, j->thresholds, j->nt, counts, &res);
            for (uint32_t c = 0; c < j->nt && rc == 0; c++) j->curve[c] += counts[c];
            continue;
        }
        rc = st_scan_best(m, &q, j->idx, j->top, &res);
        *total_reach += res.matching;
        for (uint32_t i = 0; i < res.n && rc == 0; i++) j->cands[ncand++] = (cand_t){j->top[i], (uint32_t)f, j->idx[i]};
    }
    st_free(counts);
    st_free(ex);
    if (rc == -2) return UINT64_MAX;
    if (rc != 0) return st_cli_fail("audience", "out of memory"), UINT64_MAX;
    return ncand;
}

/* The reach curve, each count under the privacy floor withheld as REACH
 * withholds it (st_privacy_audience). */
static void print_curve(const audience_job *j)
{
    st_scan_withhold(j->curve, j->nt, j->min_audience);
    json_t *arr = j->json ? json_array() : NULL;
    for (uint32_t c = 0; c < j->nt; c++) {
        int held = j->curve[c] == ST_SCAN_WITHHELD;
        if (!j->json) {
            if (held) printf("%.9g\twithheld\n", j->thresholds[c]);
            else printf("%.9g\t%llu\n", j->thresholds[c], (unsigned long long)j->curve[c]);
            continue;
        }
        json_t *e = json_object();
        json_object_set_new(e, "min", json_real(j->thresholds[c]));
        json_object_set_new(e, "reach", held ? json_null() : json_integer((json_int_t)j->curve[c]));
        json_array_append_new(arr, e);
    }
    if (!j->json) return;
    json_t *o = json_object();
    json_object_set_new(o, "segment", json_string(j->segment));
    json_object_set_new(o, "min_audience", json_integer((json_int_t)j->min_audience));
    json_object_set_new(o, "curve", arr);
    char *txt = json_dumps(o, JSON_PRESERVE_ORDER);
    if (txt) puts(txt);
    free(txt);
    json_decref(o);
}

static void print_users(const audience_job *j, uint64_t ncand)
{
    json_t *arr = j->json ? json_array() : NULL;
    for (uint64_t i = 0; i < ncand; i++) {
        const char *id = st_jmodel_row_name(&j->models[j->cands[i].file], j->cands[i].idx);
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
        j->seg = st_idmap_find(&j->models[0].m.segment_ids, j->segment, strlen(j->segment));
    } else {
        int code = lookalike_seeds(j, seeds_file, seeds_list);
        if (code != ST_EXIT_OK) return code;
    }
    uint64_t total_reach, ncand = scan_models(j, &total_reach);
    if (ncand == UINT64_MAX) return ST_EXIT_ERROR;
    if (j->thresholds) {
        print_curve(j);
        return ST_EXIT_OK;
    }
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

/* The checks of the arguments: ST_CLI_GO, or a usage error, said. */
static int check_args(const st_cmd_doc *doc, const audience_job *j, int npos, const char *seeds_file,
                      const char *seeds_list, const char *curve, uint64_t count, int threads,
                      const st_opt_list *journals)
{
    if (npos < 1) return st_cli_usage(doc, "give the model, or every shard of it");
    if (j->all_segments && (npos != 1 || j->segment || seeds_file || seeds_list || j->reach))
        return st_cli_usage(doc, "--all-segments takes one model and none of --segment, --lookalike, --seeds, --reach");
    int modes = (j->segment != NULL) + (seeds_file != NULL || seeds_list != NULL) + j->all_segments;
    if (modes != 1 || (seeds_file && seeds_list))
        return st_cli_usage(doc, "give one of --segment, --lookalike, --seeds or --all-segments");
    if ((j->reach || curve) && !j->segment) return st_cli_usage(doc, "--reach and --curve need --segment");
    if (j->reach && curve) return st_cli_usage(doc, "give --reach or --curve, not both");
    if (count < 1 || count > 10000000) return st_cli_usage(doc, "-n must be between 1 and 10000000");
    if (threads < 0 || threads > 1024) return st_cli_usage(doc, "--threads must be between 0 and 1024");
    return st_cli_journals(doc, journals, npos);
}

int cli_audience(int argc, char **argv)
{
    audience_job j;
    memset(&j, 0, sizeof j);
    const char *seeds_file = NULL, *seeds_list = NULL, *curve = NULL;
    uint64_t count = 100;
    float thresholds[1024];
    j.min_audience = ST_PRIVACY_MIN_AUDIENCE;
    j.min_seeds = ST_PRIVACY_MIN_SEEDS;
    j.min = -INFINITY;
    const char **jv = st_calloc((size_t)(argc > 0 ? argc : 1), sizeof *jv);
    if (!jv) return st_cli_fail("audience", "out of memory");
    st_opt_list journals = {jv, 0, argc > 0 ? argc : 1};
    const st_opt opts[] = {
        {"segment", 's', ST_OPT_STRING, &j.segment, "SEGMENT", "the best users for this segment (AUDIENCE)", 0},
        {"lookalike", 0, ST_OPT_STRING, &seeds_file, "FILE", "users closest to the seeds in FILE, one per line", 0},
        {"seeds", 0, ST_OPT_STRING, &seeds_list, "U1,U2,...", "the same with the seeds given inline", 0},
        {"count", 'n', ST_OPT_U64, &count, "N", "how many users", 0},
        {"min", 0, ST_OPT_DOUBLE, &j.min, "SCORE", "only users scoring at least this (default none)", 0},
        {"reach", 0, ST_OPT_FLAG, &j.reach, NULL, "print how many users score at least --min on --segment (REACH)", 0},
        {"curve", 0, ST_OPT_STRING, &curve, "T1,T2,...",
         "the reach curve of --segment: how many users score at least each threshold, in one pass", 0},
        {"min-audience", 0, ST_OPT_U64, &j.min_audience, "N",
         "privacy floor: refuse to disclose an audience or reach smaller than N users", 0},
        {"min-seeds", 0, ST_OPT_U64, &j.min_seeds, "N", "privacy floor: refuse seed lists of fewer than N known users",
         0},
        {"journal", 'j', ST_OPT_LIST, &journals, "FILE",
         "the journal of the server serving the model; with shards, once per shard file, in the same order", 0},
        {"json", 0, ST_OPT_FLAG, &j.json, NULL, "print JSON instead of USER<TAB>SCORE lines", 0},
        {"all-segments", 0, ST_OPT_FLAG, &j.all_segments, NULL,
         "every segment's best -n users, by sgemm blocks: SEGMENT<TAB>USER<TAB>SCORE lines, or a JSON line per "
         "segment; a segment under the --min-audience floor is left out (said on stderr)",
         0},
        {"threads", 't', ST_OPT_INT, &j.threads, "N",
         "threads that scan the users, or rank the segments of --all-segments (0 = one per CPU)", 0},
        {0},
    };
    const st_cmd_doc doc = {
        "audience",
        "MODEL... (--segment S | --lookalike FILE | --seeds U,... | --all-segments) [-n N] [--min SCORE] "
        "[--reach | --curve T,...] [--threads N] "
        "[--journal FILE]...",
        "Audiences over every user of a model, or of all the shards `starling shard` wrote (give\n"
        "every shard file): the best users for a segment, the look-alikes of a seed list, the\n"
        "reach of a segment at a score, or its reach curve. The answer is the one an unsharded\n"
        "server gives.",
        "Ties between equal scores go to the earlier file, then the earlier user in it. The same\n"
        "privacy floors as the server: no audience or reach below --min-audience users (a curve\n"
        "says 'withheld' for such a point), no look-alikes of fewer than --min-seeds known seeds.\n"
        "Each file is read once, by every thread at once: scores and top users fused in one pass.\n\n"
        "--journal: whenever the model (or each shard) is served with a journal, pass it (one\n"
        "per file, in the order of the files; read-only, a server may be appending to it).\n"
        "The answer is then the one a server started on the model and journal gives: no user\n"
        "the journal forgot, and the users it changed online scored from their new vectors."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc == ST_CLI_GO) rc = check_args(&doc, &j, npos, seeds_file, seeds_list, curve, count, j.threads, &journals);
    if (rc == ST_CLI_GO && curve) {
        if (parse_curve(curve, thresholds, 1024, &j.nt) != 0)
            rc = st_cli_usage(&doc, "--curve takes up to 1024 comma-separated scores, not '%s'", curve);
        j.thresholds = thresholds;
    }
    if (rc != ST_CLI_GO) {
        st_free(jv);
        return rc;
    }
    if (j.all_segments) {
        st_cli_batch b = {.model = pos[0], .journal = journals.n ? jv[0] : NULL, .count = count, .min = j.min,
                          .min_audience = j.min_audience, .json = j.json,
                          .threads = j.threads ? j.threads : st_cpu_count()};
        st_free(jv);
        return st_cli_batch_audiences(&b);
    }
    j.want = (uint32_t)count;
    st_scan_set_threads(j.threads);
    j.nmodels = npos;
    int code = load_models(&j, pos, &journals);
    if (code == ST_EXIT_OK) code = answer(&j, seeds_file, seeds_list);
    job_free(&j);
    st_free(jv);
    return code;
}
