/* cmd_segment: the segments added online (segoverlay.h) as the ranking
 * commands see them. A command numbers segments 0 .. n-1 for the model's
 * and n + j for added segment j (its position in the overlay, which never
 * changes while the model is served); these helpers look such a number up,
 * score it and name it, so that SEGMENTS, SCORE, AUDIENCE, REACH and the
 * s:<segment> views treat added segments as model segments. The writes
 * (SEGMENT ADD, SET, PARTIAL) are in cmd_write.c.
 */
#include <math.h>
#include <string.h>

#include "cmd.h"
#include "util.h"

static st_segov *segs(const st_served *sv) { return st_overlay_segments(sv->ov); }

uint32_t st_cmd_find_any_segment(const st_served *sv, const resp_arg *a)
{
    uint32_t s = st_idmap_find(&sv->m.segment_ids, a->ptr, a->len);
    if (s != ST_NOT_FOUND) return s;
    uint32_t j = st_segov_find(segs(sv), a->ptr, a->len);
    return j == ST_NOT_FOUND ? ST_NOT_FOUND : sv->m.segments + j;
}

int st_cmd_need_any_segment(st_ctx *c, const resp_arg *a, uint32_t *s)
{
    *s = st_cmd_find_any_segment(c->model, a);
    if (*s != ST_NOT_FOUND) return 0;
    resp_error(c->out, "ERR unknown segment '%.*s'", (int)(a->len > 128 ? 128 : a->len), a->ptr);
    return -1;
}

const float *st_cmd_segment_vector(st_ctx *c, uint32_t s, float *buf, float *add)
{
    const st_served *sv = c->model;
    const st_model *m = &sv->m;
    if (s < m->segments) {
        *add = (float)m->h.prior_weight * sv->prior[s];
        return m->V + (size_t)s * m->k;
    }
    *add = (float)m->h.prior_weight * st_segov_vector(segs(sv), s - m->segments, buf, NULL);
    return buf;
}

float st_cmd_segment_prior(st_ctx *c, uint32_t s)
{
    const st_served *sv = c->model;
    if (s < sv->m.segments) return sv->prior[s];
    return st_segov_vector(segs(sv), s - sv->m.segments, NULL, NULL);
}

float st_cmd_segment_score(st_ctx *c, const float *x, uint32_t s)
{
    const st_served *sv = c->model;
    const st_model *m = &sv->m;
    if (s < m->segments) return x ? st_score_one(m, sv->prior, x, s) : sv->prior[s];
    float *y = c->scratch->work, add;
    st_cmd_segment_vector(c, s, y, &add);
    return x ? st_dot(x, y, m->k) + add : st_cmd_segment_prior(c, s);
}

const char *st_cmd_segment_name(const st_served *sv, uint32_t s, size_t *len)
{
    if (s < sv->m.segments) return st_idmap_name(&sv->m.segment_ids, s, len);
    return st_segov_name(segs(sv), s - sv->m.segments, len);
}

/* Is added segment s among argv[from..to)? */
static int listed(st_ctx *c, int from, int to, uint32_t s)
{
    size_t len;
    const char *name = st_cmd_segment_name(c->model, s, &len);
    for (int i = from; i && i < to; i++)
        if (c->argv[i].len == len && memcmp(c->argv[i].ptr, name, len) == 0) return 1;
    return 0;
}

uint32_t st_cmd_merge_added(st_ctx *c, const float *x, uint32_t count, float fmin, int only_from, int only_to,
                            int ex_from, int ex_to, uint32_t got)
{
    const st_served *sv = c->model;
    uint32_t n = st_segov_count(segs(sv)), base = sv->m.segments;
    st_scratch *sc = c->scratch;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t s = base + j;
        if ((only_from && !listed(c, only_from, only_to, s)) || listed(c, ex_from, ex_to, s)) continue;
        float v = st_cmd_segment_score(c, x, s);
        if (!(v >= fmin)) continue;
        /* Insert into the best-first list: higher score, then lower index. */
        uint32_t at = got;
        while (at > 0 && (sc->top[at - 1] < v || (sc->top[at - 1] == v && sc->idx[at - 1] > s))) at--;
        if (at >= count) continue;
        uint32_t end = got < count ? got : count - 1;
        memmove(sc->idx + at + 1, sc->idx + at, (end - at) * sizeof *sc->idx);
        memmove(sc->top + at + 1, sc->top + at, (end - at) * sizeof *sc->top);
        sc->idx[at] = s;
        sc->top[at] = v;
        if (got < count) got++;
    }
    return got;
}

void st_cmd_added_segment_users(st_ctx *c, uint32_t s, float *out)
{
    const st_model *m = &c->model->m;
    float add;
    const float *y = st_cmd_segment_vector(c, s, c->scratch->ux, &add);
    st_score_all_users(m, y, out);
    for (uint32_t u = 0; u < m->users; u++) out[u] += add;
}
