/* segeval: how well LOOKALIKE and SIMILAR hold up, measured as an ad
 * platform uses them, on held-out engagement (`starling eval --lookalike`).
 *
 * Look-alikes. For each evaluated segment s: the seeds are a seeded share
 * (default 10%, at least one) of the users who have s in the model's
 * training history; the targets are the known users who engaged with s in
 * the held-out events only; the candidates are every model user without s in
 * training. Each ranker expands the seeds to N candidates; recall@N is the
 * share of targets among them, at N = |targets| (so 1 is perfect whatever
 * the segment's size) and N = 10 |targets|. A second protocol, members,
 * takes the segment's other training users as the targets and every user
 * but the seeds as a candidate: how well a seed sample is expanded back to
 * the segment it came from (the model has seen those users with the
 * segment; co-occurrence leaves the segment itself out). Rankers:
 *   model       LOOKALIKE as the server answers it (st_lookalike_scores: the
 *               seeds folded in as a segment, dot product with every user);
 *   active      the most active candidates (most segments in training), the
 *               same for every segment;
 *   co-occurrence  candidates scored by the segments they share with the
 *               seeds: sum over their training segments t != s of the seeds
 *               holding t, divided by sqrt(their segment count).
 *
 * Similar segments. For each evaluated segment s, the truth is the 10
 * segments most co-engaged with it in the engagement the model did not train
 * on (cosine of those user sets, at least 2 users in common): a known user's
 * held-out segments, and a cold user's every segment, folded in or held out
 * (SIMILAR never sees a user's fold-in). overlap@10 is the share of them
 * among a ranker's 10, and the model's gain over each ranker is the mean of
 * the per-segment differences, with its paired interval. Rankers: model (SIMILAR as served:
 * st_score_similar, the segments a user who engaged with s alone would be
 * ranked), the plain cosine of segment factors (SIMILAR before it), and
 * popularity (the 10 segments with the most training users).
 *
 * Offline and on the owner's own data: the privacy floors of serving do not
 * apply here. Owns nothing past a call. Never prints.
 */
#ifndef STARLING_SEGEVAL_H
#define STARLING_SEGEVAL_H

#include <stdint.h>

#include "ranking.h"
#include "model.h"

typedef struct {
    double seed_share;     /* of a segment's training users */
    uint32_t min_users;    /* evaluated segments have at least this many training users */
    uint32_t min_targets;  /* ... and this many held-out users (look-alikes), or co-engaged users (similar) */
    uint32_t max_segments; /* the segments with the most held-out users, at most */
    uint64_t seed;
    int threads;
} st_segeval_opts;

void st_segeval_opts_default(st_segeval_opts *o);

enum { ST_LAL_MODEL, ST_LAL_ACTIVE, ST_LAL_COOC, ST_LAL_RANKERS };
enum { ST_SIM_MODEL, ST_SIM_COSINE, ST_SIM_POPULARITY, ST_SIM_RANKERS };

typedef struct {
    uint32_t lal_segments;               /* segments evaluated */
    st_stat lal_recall[ST_LAL_RANKERS];   /* at N = |targets| */
    st_stat lal_recall10[ST_LAL_RANKERS]; /* at N = 10 |targets| */
    st_stat lal_members[ST_LAL_RANKERS];   /* members protocol, at N = |other members| */
    st_stat lal_members10[ST_LAL_RANKERS]; /* ... at N = 10 |other members| */
    double lal_seeds, lal_targets, lal_members_n; /* mean per segment */
    uint32_t sim_segments;
    st_stat sim_overlap[ST_SIM_RANKERS];  /* overlap@10 */
    st_stat sim_gain[ST_SIM_RANKERS];     /* the model's overlap@10 minus the ranker's, per segment */
    uint32_t sim_known_users, sim_cold_users; /* users whose unseen engagement makes the truth */
    uint32_t min_users, min_targets;      /* the bounds a segment met (st_segeval_opts) */
} st_segeval;

const char *st_lal_name(int r);
const char *st_sim_name(int r);

/* Whether LOOKALIKE (similar 0) or SIMILAR (similar 1) measured no segment
 * (1), and then why, as a sentence into out: the bounds no segment met, and
 * for LOOKALIKE without a known user's held-out segment, that a holdout split
 * measures it. 0 (out untouched) when it has figures. */
int st_segeval_why_empty(const st_segeval *g, int similar, char *out, size_t len);

/* Evaluates on the known and cold users of set against m (segeval.h's top
 * says what each one contributes). */
int st_segeval_run(const st_model *m, const st_eval_set *set, const st_segeval_opts *o, st_segeval *out, char *err);

#endif
