/* cli_batch: the batch forms of `starling segments`, `starling score` and
 * `starling audience`: many users (or every user, or every segment) from
 * one model load.
 *
 * Users are read from a file or stdin, one id per line, in chunks: the main
 * thread looks each one up (st_jmodel_user: with --journal, as the server
 * does) and copies their vector and history into the chunk, batch.c ranks
 * the chunk on --threads threads, and the main thread prints it in input
 * order; so memory stays bounded however many users come in, and stdin may
 * be a pipe. An unknown user is reported on stderr with its line number and
 * skipped. --all-users takes the model's users (then the online users, with
 * --journal) in scan order, the ones the journal hides left out, and ranks
 * them by sgemm blocks; --users ranks row by row, the scores bit for bit the
 * single-user form's.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "cli.h"
#include "privacy.h"
#include "score.h"
#include "util.h"

enum { CHUNK_ROWS = 8192 };

/* Users being answered: their ids, vectors and histories. */
typedef struct {
    uint32_t rows, k;
    char **names;
    float *X;
    uint64_t *hist_off, hist_cap;
    uint32_t *hist;
} user_chunk;

static void chunk_clear(user_chunk *c)
{
    for (uint32_t i = 0; i < c->rows; i++) st_free(c->names[i]);
    c->rows = 0;
    c->hist_off[0] = 0;
}

static void chunk_free(user_chunk *c)
{
    if (c->names) chunk_clear(c);
    st_free(c->names);
    st_free(c->X);
    st_free(c->hist_off);
    st_free(c->hist);
}

static int chunk_init(user_chunk *c, uint32_t k)
{
    memset(c, 0, sizeof *c);
    c->k = k;
    c->names = st_calloc(CHUNK_ROWS, sizeof *c->names);
    c->X = st_malloc((size_t)CHUNK_ROWS * k * sizeof *c->X);
    c->hist_off = st_calloc(CHUNK_ROWS + 1, sizeof *c->hist_off);
    return c->names && c->X && c->hist_off ? 0 : -1;
}

/* Appends a found user. -1 when memory ran out. */
static int chunk_add(user_chunk *c, const char *name, const st_juser *u, int with_hist)
{
    uint64_t h = c->hist_off[c->rows], n = with_hist ? u->hist_n : 0;
    if (h + n > c->hist_cap) {
        uint64_t cap = (h + n) * 2 + 1024;
        uint32_t *p = st_realloc(c->hist, cap * sizeof *p);
        if (!p) return -1;
        c->hist = p;
        c->hist_cap = cap;
    }
    if (!(c->names[c->rows] = st_strdup(name))) return -1;
    memcpy(c->X + (size_t)c->rows * c->k, u->x, c->k * sizeof *c->X);
    if (n) memcpy(c->hist + h, u->hist_seg, n * sizeof *c->hist);
    c->hist_off[++c->rows] = h + n;
    return 0;
}

/* Where the users come from: a file or stdin (line by line), or every row. */
typedef struct {
    const char *cmd, *path, *model, *journal;
    const char *noun, *missing; /* what the closing line counts */
    FILE *f;
    char *line;
    size_t cap;
    uint64_t lineno, row, unknown, answered;
    double t0; /* when the model was loaded */
} user_source;

/* The user on the next line (NULL at the end); blank lines are skipped. */
static const char *next_line(user_source *s)
{
    ssize_t n;
    while ((n = getline(&s->line, &s->cap, s->f)) >= 0) {
        s->lineno++;
        while (n > 0 && (s->line[n - 1] == '\n' || s->line[n - 1] == '\r' || s->line[n - 1] == ' ' ||
                         s->line[n - 1] == '\t'))
            s->line[--n] = '\0';
        if (n > 0) return s->line;
    }
    return NULL;
}

/* The next scan row the journal does not hide (NULL at the end). */
static const char *next_row(user_source *s, const st_jmodel *jm)
{
    uint64_t rows = st_jmodel_rows(jm);
    while (s->row < rows) {
        uint64_t i = s->row++;
        if (i < jm->m.users && jm->view.hidden && jm->view.hidden[i]) continue;
        return st_jmodel_row_name(jm, i);
    }
    return NULL;
}

/* Fills c with the next users (up to CHUNK_ROWS); reports the unknown. 0,
 * or -1 when memory ran out. */
static int fill_chunk(user_source *s, st_jmodel *jm, user_chunk *c, int with_hist)
{
    chunk_clear(c);
    while (c->rows < CHUNK_ROWS) {
        const char *id = s->f ? next_line(s) : next_row(s, jm);
        if (!id) break;
        st_juser u;
        st_jmodel_user(jm, id, strlen(id), &u);
        if (!u.known) {
            s->unknown++;
            if (u.forgotten)
                fprintf(stderr, "starling %s: %s:%llu: unknown user '%s' (the journal %s forgot it)\n", s->cmd,
                        s->path, (unsigned long long)s->lineno, id, s->journal);
            else
                fprintf(stderr, "starling %s: %s:%llu: unknown user '%s' (not in %s)\n", s->cmd, s->path,
                        (unsigned long long)s->lineno, id, s->model);
            continue;
        }
        if (chunk_add(c, id, &u, with_hist) != 0) return -1;
    }
    s->answered += c->rows;
    return 0;
}

/* Loads the model (and replays the journal) and opens the users' source. */
static int open_source(user_source *s, st_jmodel *jm, const char *cmd, const char *model, const char *journal,
                       const char *users)
{
    memset(s, 0, sizeof *s);
    s->cmd = cmd;
    s->model = model;
    s->journal = journal;
    s->path = users ? (strcmp(users, "-") == 0 ? "stdin" : users) : "model";
    s->noun = "users";
    s->missing = "unknown";
    int rc = st_cli_model_load(cmd, model, jm);
    if (rc == ST_EXIT_OK && journal) rc = st_cli_model_replay(cmd, model, jm, journal, NULL, NULL, NULL);
    if (rc != ST_EXIT_OK) return rc;
    s->t0 = st_now();
    if (users) {
        s->f = strcmp(users, "-") == 0 ? stdin : fopen(users, "r");
        if (!s->f) return st_cli_fail(cmd, "--users %s: %s", users, strerror(errno));
    }
    return ST_EXIT_OK;
}

static int close_source(user_source *s, st_jmodel *jm, int rc)
{
    if (s->f && s->f != stdin) fclose(s->f);
    free(s->line);
    st_jmodel_free(jm);
    if (rc == ST_EXIT_OK && fflush(stdout) != 0) rc = st_cli_fail(s->cmd, "writing the output: %s", strerror(errno));
    if (rc == ST_EXIT_OK)
        fprintf(stderr, "starling %s: %llu %s answered in %.3f s after the model load, %llu %s\n", s->cmd,
                (unsigned long long)s->answered, s->noun, st_now() - s->t0, (unsigned long long)s->unknown,
                s->missing);
    return rc;
}

int st_cli_batch_segments(const st_cli_batch *b)
{
    st_jmodel jm;
    user_source src;
    int rc = open_source(&src, &jm, "segments", b->model, b->journal, b->users);
    if (rc == ST_EXIT_OK && b->calibrated) rc = st_cli_need_calibration("segments", b->model, &jm.m);
    const st_model *m = &jm.m;
    uint32_t want = rc == ST_EXIT_OK && b->count < m->segments ? (uint32_t)b->count : m->segments;
    user_chunk c = {0};
    uint32_t *idx = NULL, *got = NULL;
    float *score = NULL;
    if (rc == ST_EXIT_OK) {
        idx = st_malloc((size_t)CHUNK_ROWS * want * sizeof *idx + 1);
        score = st_malloc((size_t)CHUNK_ROWS * want * sizeof *score + 1);
        got = st_malloc(CHUNK_ROWS * sizeof *got);
        if (chunk_init(&c, m->k) != 0 || !idx || !score || !got) rc = st_cli_fail("segments", "out of memory");
    }
    while (rc == ST_EXIT_OK) {
        if (fill_chunk(&src, &jm, &c, b->exclude_seen) != 0) {
            rc = st_cli_fail("segments", "out of memory");
            break;
        }
        if (c.rows == 0) break;
        st_batch_rows r = {c.X, c.rows, b->exclude_seen ? c.hist_off : NULL, c.hist};
        if (st_batch_segments(m, jm.prior, &r, want, b->users == NULL, b->threads, idx, score, got) != 0) {
            rc = st_cli_fail("segments", "out of memory");
            break;
        }
        for (uint32_t i = 0; i < c.rows; i++)
            st_cli_print_segments(m, c.names[i], idx + (size_t)i * want, score + (size_t)i * want, got[i],
                                  b->calibrated, b->json, 1);
    }
    chunk_free(&c);
    st_free(idx);
    st_free(score);
    st_free(got);
    return close_source(&src, &jm, rc);
}

/* Appends {name: id, vname: v} to arr. */
static void json_add(json_t *arr, const char *name, const char *id, const char *vname, double v)
{
    json_t *e = json_object();
    json_object_set_new(e, name, json_string(id));
    json_object_set_new(e, vname, json_real(v));
    json_array_append_new(arr, e);
}

/* Prints {name: id, list: arr} on one line (arr is taken over). */
static void json_line(const char *name, const char *id, const char *list, json_t *arr)
{
    json_t *o = json_object();
    json_object_set_new(o, name, json_string(id));
    json_object_set_new(o, list, arr);
    char *js = json_dumps(o, JSON_PRESERVE_ORDER);
    if (js) puts(js);
    free(js);
    json_decref(o);
}

/* One user's scores for the segments asked (segs, n of them), printed. */
static void print_scores(const st_jmodel *jm, const st_cli_batch *b, const uint32_t *segs, const char *user,
                         const float *x)
{
    const st_model *m = &jm->m;
    json_t *arr = b->json ? json_array() : NULL;
    for (int i = 0; i < b->nsegments; i++) {
        float sc = st_score_one(m, jm->prior, x, segs[i]);
        double v = b->calibrated ? st_score_calibrated(m, sc) : sc;
        if (b->json) json_add(arr, "segment", b->segments[i], b->calibrated ? "probability" : "score", v);
        else printf(b->calibrated ? "%s\t%s\t%.6g\n" : "%s\t%s\t%.6f\n", user, b->segments[i], v);
    }
    if (b->json) json_line("user", user, "scores", arr);
}

int st_cli_batch_score(const st_cli_batch *b)
{
    st_jmodel jm;
    user_source src;
    int rc = open_source(&src, &jm, "score", b->model, b->journal, b->users);
    if (rc == ST_EXIT_OK && b->calibrated) rc = st_cli_need_calibration("score", b->model, &jm.m);
    uint32_t *segs = st_malloc(((size_t)b->nsegments + 1) * sizeof *segs);
    if (!segs && rc == ST_EXIT_OK) rc = st_cli_fail("score", "out of memory");
    for (int i = 0; i < b->nsegments && rc == ST_EXIT_OK; i++) {
        segs[i] = st_idmap_find(&jm.m.segment_ids, b->segments[i], strlen(b->segments[i]));
        if (segs[i] == ST_NOT_FOUND)
            rc = st_cli_fail("score", "unknown segment '%s' (not in %s, which has %u segments)", b->segments[i],
                             b->model, jm.m.segments);
    }
    user_chunk c = {0};
    if (rc == ST_EXIT_OK && chunk_init(&c, jm.m.k) != 0) rc = st_cli_fail("score", "out of memory");
    while (rc == ST_EXIT_OK) {
        if (fill_chunk(&src, &jm, &c, 0) != 0) rc = st_cli_fail("score", "out of memory");
        if (rc != ST_EXIT_OK || c.rows == 0) break;
        for (uint32_t i = 0; i < c.rows; i++) print_scores(&jm, b, segs, c.names[i], c.X + (size_t)i * c.k);
    }
    chunk_free(&c);
    st_free(segs);
    return close_source(&src, &jm, rc);
}

/* Every scan row's vector in one matrix (*owned when copied: int8 rows
 * dequantized, the online users after the model's). */
static const float *scan_matrix(const st_jmodel *jm, uint64_t rows, float **owned)
{
    const st_model *m = &jm->m;
    *owned = NULL;
    if (m->U && rows == m->users) return m->U;
    float *U = st_malloc((size_t)rows * m->k * sizeof *U + 1);
    if (!U) return NULL;
    for (uint32_t u = 0; u < m->users; u++) {
        float *row = U + (size_t)u * m->k;
        const float *x = st_model_user(m, u, row);
        if (x != row) memcpy(row, x, m->k * sizeof *row);
    }
    if (rows > m->users) memcpy(U + (size_t)m->users * m->k, jm->view.X, (rows - m->users) * m->k * sizeof *U);
    *owned = U;
    return U;
}

static void print_audience(const st_jmodel *jm, const st_cli_batch *b, uint32_t s, const uint32_t *idx,
                           const float *score, uint32_t n)
{
    const char *seg = st_idmap_name(&jm->m.segment_ids, s, NULL);
    json_t *arr = b->json ? json_array() : NULL;
    for (uint32_t i = 0; i < n; i++) {
        const char *id = st_jmodel_row_name(jm, idx[i]);
        if (b->json) json_add(arr, "user", id, "score", score[i]);
        else printf("%s\t%s\t%.9g\n", seg, id, score[i]);
    }
    if (b->json) json_line("segment", seg, "users", arr);
}

int st_cli_batch_audiences(const st_cli_batch *b)
{
    st_jmodel jm;
    user_source src;
    int rc = open_source(&src, &jm, "audience", b->model, b->journal, NULL);
    src.noun = "segments";
    src.missing = "left out by the privacy floor";
    const st_model *m = &jm.m;
    uint64_t rows = rc == ST_EXIT_OK ? st_jmodel_rows(&jm) : 0;
    uint32_t want = rows < b->count ? (uint32_t)rows : (uint32_t)b->count, n = m->segments;
    float *owned = NULL, *score = NULL;
    const float *U = rc == ST_EXIT_OK ? scan_matrix(&jm, rows, &owned) : NULL;
    uint32_t *idx = NULL, *got = NULL;
    uint64_t *reach = NULL;
    if (rc == ST_EXIT_OK) {
        idx = st_malloc((size_t)n * want * sizeof *idx + 1);
        score = st_malloc((size_t)n * want * sizeof *score + 1);
        got = st_malloc((size_t)n * sizeof *got + 1);
        reach = st_malloc((size_t)n * sizeof *reach + 1);
        if (!U || !idx || !score || !got || !reach ||
            st_batch_audiences(m, jm.prior, U, rows, jm.view.hidden, m->users, want, (float)b->min, b->threads, idx,
                               score, got, reach) != 0)
            rc = st_cli_fail("audience", "out of memory");
    }
    for (uint32_t s = 0; s < n && rc == ST_EXIT_OK; s++) {
        char msg[256];
        if (st_privacy_audience(reach[s], b->min_audience, msg, sizeof msg) != 0) {
            fprintf(stderr, "starling audience: '%s' at %g: %s: left out\n", st_idmap_name(&m->segment_ids, s, NULL),
                    b->min, msg);
            src.unknown++;
            continue;
        }
        print_audience(&jm, b, s, idx + (size_t)s * want, score + (size_t)s * want, got[s]);
        src.answered++;
    }
    st_free(owned);
    st_free(idx);
    st_free(score);
    st_free(got);
    st_free(reach);
    return close_source(&src, &jm, rc);
}
