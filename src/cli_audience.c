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

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
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

/* What one run asks and what it holds, shared by the steps below. */
typedef struct {
    int nfiles, loaded;
    st_model *models;
    uint32_t k, nseg, seg, want;
    const char *segment;
    seed_list sl;
    float *centroid, *prior;
    double min;
    int reach, json;
    float *thresholds;
    uint32_t nt;
    uint64_t *curve, total_reach, ncand;
    cand_t *cands;
} aud_run;

/* Loads every file; they must be shards of one model. 0, or -1 (reported). */
static int load_files(aud_run *a, char **paths)
{
    char err[ST_ERRLEN];
    for (int i = 0; i < a->nfiles; i++, a->loaded++) {
        if (st_model_load(paths[i], &a->models[i], err) != 0) return st_cli_fail("audience", "%s", err), -1;
        const st_model *m = &a->models[i];
        if (i > 0 && (m->k != a->k || m->segments != a->nseg || m->h.prior_weight != a->models[0].h.prior_weight)) {
            a->loaded++;
            st_cli_fail("audience", "%s is not a shard of the same model as %s (other segments or rank)", paths[i],
                        paths[0]);
            return -1;
        }
        a->k = m->k;
        a->nseg = m->segments;
    }
    return 0;
}

/* The centroid of the known seeds, wherever they live, into a->centroid.
 * 0, or -1 (reported). */
static int seed_centroid(aud_run *a, const char *file, const char *list, uint64_t min_seeds)
{
    char err[ST_ERRLEN];
    if (read_seeds(file, list, &a->sl, err) != 0) return st_cli_fail("audience", "%s", err), -1;
    uint32_t k = a->k, known = 0, *iota = st_malloc(((size_t)a->sl.n + 1) * sizeof *iota);
    float *rows = st_malloc(((size_t)a->sl.n * k + 1) * sizeof *rows);
    if (!rows || !iota) {
        st_free(rows);
        st_free(iota);
        return st_cli_fail("audience", "out of memory"), -1;
    }
    for (uint32_t i = 0; i < a->sl.n; i++) {
        int dup = 0;
        for (uint32_t j = 0; j < i && !dup; j++) dup = strcmp(a->sl.ids[j], a->sl.ids[i]) == 0;
        for (int f = 0; f < a->nfiles && !dup; f++) {
            uint32_t u = st_idmap_find(&a->models[f].user_ids, a->sl.ids[i], strlen(a->sl.ids[i]));
            if (u == ST_NOT_FOUND) continue;
            float *row = rows + (size_t)known * k;
            memmove(row, st_model_user(&a->models[f], u, row), k * sizeof *rows);
            iota[known] = known;
            known++;
            break;
        }
    }
    if (known == 0 || known < min_seeds) {
        st_free(rows);
        st_free(iota);
        st_cli_fail("audience", "%u of the %u seeds are known users; look-alikes need at least %llu (the privacy floor, "
                                "--min-seeds)",
                    known, a->sl.n, (unsigned long long)(min_seeds ? min_seeds : 1));
        return -1;
    }
    st_score_centroid(rows, k, iota, known, a->centroid);
    st_free(rows);
    st_free(iota);
    return 0;
}

/* The smallest float at least v: comparing a float score with it is
 * comparing with v itself. */
static float float_at_least(double v)
{
    float f = (float)v;
    return (double)f < v ? nextafterf(f, INFINITY) : f;
}

/* One pass over each file (scan.c): its best users into a->cands, its
 * count at min into total_reach, or its curve into a->curve. 0, or -1. */
static int scan_files(aud_run *a)
{
    uint32_t *idx = st_malloc(((size_t)a->want + 1) * sizeof *idx), *ex = NULL;
    float *top = st_malloc(((size_t)a->want + 1) * sizeof *top);
    uint64_t *counts = st_calloc((size_t)a->nt + 1, sizeof *counts);
    int rc = idx && top && counts ? 0 : -1;
    for (int f = 0; f < a->nfiles && rc == 0; f++) {
        const st_model *m = &a->models[f];
        st_scan_query q = {.min = (float)a->min, .want = a->reach || a->nt ? 0 : a->want, .count = 1};
        st_scan_result res;
        if (a->segment) {
            q.x = m->V + (size_t)a->seg * a->k;
            q.add = (float)m->h.prior_weight * a->prior[a->seg];
        } else {
            /* Look-alikes: the seeds in this file are not their own. */
            q.x = a->centroid;
            q.add = -0.0f;
            q.min = float_at_least(a->min);
            st_free(ex);
            ex = st_malloc(((size_t)a->sl.n + 1) * sizeof *ex);
            if (!ex) {
                rc = -1;
                break;
            }
            for (uint32_t i = 0; i < a->sl.n; i++) {
                uint32_t u = st_idmap_find(&m->user_ids, a->sl.ids[i], strlen(a->sl.ids[i]));
                if (u != ST_NOT_FOUND) ex[q.nexclude++] = u;
            }
            qsort(ex, q.nexclude, sizeof *ex, cmp_u32);
            q.exclude = ex;
        }
        if (a->nt) {
            rc = st_scan_curve(m, &q, a->thresholds, a->nt, counts, &res);
            for (uint32_t c = 0; c < a->nt && rc == 0; c++) a->curve[c] += counts[c];
            continue;
        }
        rc = st_scan_best(m, &q, idx, top, &res);
        a->total_reach += res.matching;
        for (uint32_t i = 0; i < res.n && rc == 0; i++) a->cands[a->ncand++] = (cand_t){top[i], (uint32_t)f, idx[i]};
    }
    st_free(idx);
    st_free(top);
    st_free(counts);
    st_free(ex);
    if (rc != 0) st_cli_fail("audience", "out of memory");
    return rc;
}

/* The curve, each count under the privacy floor withheld as REACH does. */
static void print_curve(const aud_run *a, uint64_t floor)
{
    st_scan_withhold(a->curve, a->nt, floor);
    json_t *arr = a->json ? json_array() : NULL;
    for (uint32_t c = 0; c < a->nt; c++) {
        int held = a->curve[c] == ST_SCAN_WITHHELD;
        if (!a->json) {
            if (held) printf("%.9g\twithheld\n", a->thresholds[c]);
            else printf("%.9g\t%llu\n", a->thresholds[c], (unsigned long long)a->curve[c]);
            continue;
        }
        json_t *e = json_object();
        json_object_set_new(e, "min", json_real(a->thresholds[c]));
        json_object_set_new(e, "reach", held ? json_null() : json_integer((json_int_t)a->curve[c]));
        json_array_append_new(arr, e);
    }
    if (!a->json) return;
    json_t *o = json_object();
    json_object_set_new(o, "segment", json_string(a->segment));
    json_object_set_new(o, "min_audience", json_integer((json_int_t)floor));
    json_object_set_new(o, "curve", arr);
    char *txt = json_dumps(o, JSON_PRESERVE_ORDER);
    if (txt) puts(txt);
    free(txt);
    json_decref(o);
}

static void print_users(const aud_run *a)
{
    json_t *arr = a->json ? json_array() : NULL;
    for (uint64_t i = 0; i < a->ncand; i++) {
        const char *id = st_idmap_name(&a->models[a->cands[i].file].user_ids, a->cands[i].idx, NULL);
        if (a->json) {
            json_t *e = json_object();
            json_object_set_new(e, "user", json_string(id));
            json_object_set_new(e, "score", json_real(a->cands[i].score));
            json_array_append_new(arr, e);
        } else {
            printf("%s\t%.9g\n", id, a->cands[i].score);
        }
    }
    if (!a->json) return;
    json_t *o = json_object();
    if (a->segment) json_object_set_new(o, "segment", json_string(a->segment));
    json_object_set_new(o, "users", arr);
    char *txt = json_dumps(o, JSON_PRESERVE_ORDER);
    if (txt) puts(txt);
    free(txt);
    json_decref(o);
}

/* After the scans: the privacy floors, then the answer. An exit code. */
static int answer(aud_run *a, uint64_t min_audience)
{
    if (a->nt) {
        print_curve(a, min_audience);
        return ST_EXIT_OK;
    }
    if (a->segment && a->total_reach < min_audience)
        return st_cli_fail("audience", "only %llu users score at least %g on '%s': below the privacy floor of %llu "
                                       "(--min-audience)",
                           (unsigned long long)a->total_reach, a->min, a->segment, (unsigned long long)min_audience);
    if (a->reach) {
        if (a->json)
            printf("{\"segment\": \"%s\", \"min\": %g, \"reach\": %llu}\n", a->segment, a->min,
                   (unsigned long long)a->total_reach);
        else printf("%llu\n", (unsigned long long)a->total_reach);
        return ST_EXIT_OK;
    }
    qsort(a->cands, a->ncand, sizeof *a->cands, cand_cmp);
    if (a->ncand > a->want) a->ncand = a->want;
    if (!a->segment && a->ncand < min_audience)
        return st_cli_fail("audience", "only %llu look-alikes: below the privacy floor of %llu (--min-audience)",
                           (unsigned long long)a->ncand, (unsigned long long)min_audience);
    print_users(a);
    return ST_EXIT_OK;
}

int cli_audience(int argc, char **argv)
{
    const char *segment = NULL, *seeds_file = NULL, *seeds_list = NULL, *curve = NULL;
    uint64_t count = 100, min_audience = 100, min_seeds = 100;
    double min = -INFINITY;
    int reach = 0, json = 0, threads = 0;
    const st_opt opts[] = {
        {"segment", 's', ST_OPT_STRING, &segment, "SEGMENT", "the best users for this segment (AUDIENCE)", 0},
        {"lookalike", 0, ST_OPT_STRING, &seeds_file, "FILE", "users closest to the seeds in FILE, one per line", 0},
        {"seeds", 0, ST_OPT_STRING, &seeds_list, "U1,U2,...", "the same with the seeds given inline", 0},
        {"count", 'n', ST_OPT_U64, &count, "N", "how many users", 0},
        {"min", 0, ST_OPT_DOUBLE, &min, "SCORE", "only users scoring at least this (default none)", 0},
        {"reach", 0, ST_OPT_FLAG, &reach, NULL, "print how many users score at least --min on --segment (REACH)", 0},
        {"curve", 0, ST_OPT_STRING, &curve, "T1,T2,...",
         "the reach curve of --segment: how many users score at least each threshold, in one pass", 0},
        {"min-audience", 0, ST_OPT_U64, &min_audience, "N",
         "privacy floor: refuse to disclose an audience or reach smaller than N users", 0},
        {"min-seeds", 0, ST_OPT_U64, &min_seeds, "N", "privacy floor: refuse seed lists of fewer than N known users",
         0},
        {"threads", 't', ST_OPT_INT, &threads, "N", "threads that scan the users (0 = one per CPU)", 0},
        {"json", 0, ST_OPT_FLAG, &json, NULL, "print JSON instead of USER<TAB>SCORE lines", 0},
        {0},
    };
    const st_cmd_doc doc = {
        "audience",
        "MODEL... (--segment S | --lookalike FILE | --seeds U,...) [-n N] [--min SCORE] [--reach | --curve T,...]",
        "Audiences over every user of a model, or of all the shards `starling shard` wrote (give\n"
        "every shard file): the best users for a segment, the look-alikes of a seed list, the\n"
        "reach of a segment at a score, or its reach curve. The answer is the one an unsharded\n"
        "server gives.",
        "Ties between equal scores go to the earlier file, then the earlier user in it. The same\n"
        "privacy floors as the server: no audience or reach below --min-audience users (a curve\n"
        "says 'withheld' for such a point), no look-alikes of fewer than --min-seeds known seeds.\n"
        "Each file is read once, by every thread at once: scores and top users fused in one pass."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos < 1) return st_cli_usage(&doc, "give the model, or every shard of it");
    int modes = (segment != NULL) + (seeds_file != NULL || seeds_list != NULL);
    if (modes != 1 || (seeds_file && seeds_list)) return st_cli_usage(&doc, "give one of --segment, --lookalike or --seeds");
    if ((reach || curve) && !segment) return st_cli_usage(&doc, "--reach and --curve need --segment");
    if (reach && curve) return st_cli_usage(&doc, "give --reach or --curve, not both");
    if (count < 1 || count > 10000000) return st_cli_usage(&doc, "-n must be between 1 and 10000000");
    if (threads < 0 || threads > 1024) return st_cli_usage(&doc, "--threads must be between 0 and 1024");
    float thresholds[1024];
    aud_run a = {.nfiles = npos, .segment = segment, .want = (uint32_t)count, .min = min, .reach = reach, .json = json,
                 .thresholds = thresholds};
    if (curve && parse_curve(curve, thresholds, 1024, &a.nt) != 0)
        return st_cli_usage(&doc, "--curve takes up to 1024 comma-separated scores, not '%s'", curve);
    st_scan_set_threads(threads);
    a.models = st_calloc((size_t)npos, sizeof *a.models);
    if (!a.models) return st_cli_fail("audience", "out of memory");
    int code = ST_EXIT_ERROR;
    if (load_files(&a, pos) != 0) goto done;
    a.prior = st_malloc(((size_t)a.nseg + 1) * sizeof *a.prior);
    a.centroid = st_malloc(((size_t)a.k + 1) * sizeof *a.centroid);
    a.cands = st_malloc(((size_t)a.want * npos + 1) * sizeof *a.cands);
    a.curve = st_calloc((size_t)a.nt + 1, sizeof *a.curve);
    if (!a.prior || !a.centroid || !a.cands || !a.curve) {
        st_cli_fail("audience", "out of memory");
        goto done;
    }
    if (segment) {
        a.seg = st_idmap_find(&a.models[0].segment_ids, segment, strlen(segment));
        if (a.seg == ST_NOT_FOUND) {
            st_cli_fail("audience", "unknown segment '%s'", segment);
            goto done;
        }
    } else if (seed_centroid(&a, seeds_file, seeds_list, min_seeds) != 0) {
        goto done;
    }
    st_score_prior(&a.models[0], a.prior);
    if (scan_files(&a) == 0) code = answer(&a, min_audience);
done:
    for (int i = 0; i < a.loaded && i < npos; i++) st_model_free(&a.models[i]);
    st_free(a.models);
    st_free(a.prior);
    st_free(a.centroid);
    st_free(a.cands);
    st_free(a.curve);
    seeds_free(&a.sl);
    return code;
}
