/* served: a model as the server serves it, and the per-thread scratch that
 * command handlers reuse.
 *
 * Shared state of the serve layer: below the command families, the HTTP API
 * and the loops, above the model and scoring modules. An st_served is the
 * model (read into memory of its own) plus what serving derives from it once at load (the Gram
 * matrix for fold-in, the popularity prior and its ranking, the segment
 * index for pruned SEGMENTS, the overlay of users changed online); it is
 * reference-counted, so a reload can swap models while requests still hold
 * the old one. Owns: those derived tables and the scratch buffers, and with
 * serve --approx the approximate index (ann.h), built after the load on a
 * thread of its own that holds a reference meanwhile. Never: touches a
 * socket or the journal.
 */
#ifndef STARLING_SERVED_H
#define STARLING_SERVED_H

#include <stdatomic.h>
#include <stdint.h>

#include "model.h"
#include "overlay.h"
#include "score.h"
#include "segindex.h"

struct st_ann;

/* A model as served: the model plus what is derived from it at load. */
typedef struct st_served {
    st_model m;
    float *G;         /* V^T V, k x k, for fold-in and explanations */
    float *GU;        /* U^T U of the file's rows, k x k, for LOOKALIKE's seed solve (lookalike.h) */
    float *prior;     /* n: the popularity prior q (st_score_prior), for the blend and unknown users */
    uint32_t *prior_rank; /* n: segment indices by q, best first */
    float *seg_norms; /* n: |V[s]| */
    st_segment_index seg_index; /* the pruned top-k SEGMENTS answers from */
    st_overlay *ov;   /* users changed online, for this model (empty until the journal is replayed) */
    char path[4096];
    uint64_t generation; /* 1 for the first model, +1 per reload */
    double loaded_at;    /* unix seconds */
    atomic_long refs;
    /* Online quality since this model was loaded: of the EVENTs on a segment
     * the user had not engaged with before, how many were in the user's top
     * 10 and top 50 of not-yet-engaged segments just before, by the model's
     * ranking and by popularity's (commands.c, online_quality). */
    atomic_uint_fast64_t q_new, q_repeat, q_hit10, q_hit50, q_pop10, q_pop50;
    /* The approximate index: NULL until its build is done (or when none is
     * built); then set once and kept until the model is freed. The counts:
     * scans it answered, of those the ones its bound proved exact, and
     * scans asked for it that the exact scan answered (no index yet, or a
     * privacy floor the probed users alone could not show was met). */
    _Atomic(struct st_ann *) ann;
    atomic_uint_fast64_t approx_queries, approx_exact, approx_fallbacks;
} st_served;

/* Loads and verifies path and derives what serving needs (the Gram matrix,
 * the prior and its ranking, segment norms, the segment index and an empty
 * overlay). The result has one reference, the caller's; NULL with err set
 * on failure. */
st_served *st_served_load(const char *path, char *err);
/* Drops one reference; the last one frees the model and the rest. */
void st_served_release(st_served *s);

/* Per-thread buffers that handlers reuse, so the SEGMENTS and SCORE paths
 * never allocate: server.c sizes them when a thread takes up a model. */
typedef struct {
    float *scores;  /* max(m, n) */
    uint32_t *idx;  /* max(m, n) */
    float *top;     /* max(m, n) */
    uint64_t cap_rows;
    float *work;    /* fold-in / explain / look-alike scratch */
    uint64_t cap_work;
    uint32_t *segs; /* per-argument lists (ONLY, FOLDIN, seeds) */
    float *vals;
    uint64_t cap_args;
    uint8_t *skip;  /* n: segments to leave out (EXCLUDE, UNSEEN); all 0 between requests */
    uint64_t cap_skip;
    float *ux;      /* k: a vector copied out of the overlay */
    uint64_t cap_ux;
    uint32_t *hseg; /* n: a history copied out of the overlay */
    float *hr;
    uint64_t cap_hist;
    st_overlay_view view; /* the heavy pool's copy of the overlay for a scan */
    float *user;    /* k: a user's vector dequantized from an int8 model */
    uint32_t cap_user;
    struct st_seg_run *seg_run; /* a SEGMENTS run's answers (cmd_target.c): one block */
} st_scratch;

/* Sizes s for model m (every user too when all_users, as the heavy pool
 * needs) and requests of at most max_args arguments; allocates only what must grow.
 * 0, or -1 on out-of-memory. */
int st_scratch_fit(st_scratch *s, const st_model *m, int all_users, uint64_t max_args);
/* Makes s->work hold at least n floats (allocates only to grow); 0, or -1
 * on out-of-memory. server.c sizes the rest for each model it serves. */
int st_scratch_work(st_scratch *s, uint64_t n);
/* Makes s->scores, idx and top hold at least rows entries (the heavy pool's
 * scans over model and online users); 0, or -1 on out-of-memory. */
int st_scratch_rows(st_scratch *s, uint64_t rows);
void st_scratch_free(st_scratch *s);

#endif
