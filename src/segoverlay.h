/* segoverlay: segments added online (SEGMENT ADD, SEGMENT SET, EVENTs on a
 * segment the model does not know), beside the model's read-only segment
 * factors.
 *
 * Legend: users m, segments n, rank k (of the model), members nm of one
 * added segment. An added segment is a name, its members (user ids, each
 * with a value r: 1 per SEGMENT ADD, the sum of event values for EVENTs) and
 * a vector y (k floats) solved against the user factors exactly as training
 * solves a segment's row in its half-step (implicit ALS, the model's own
 * confidence scheme, unobserved weight and regularisation; st_als_foldin on
 * the members' vectors with the Gram matrix U^T U of every model user):
 *   (U^T U + sum_i cm1_i u_i u_i^T + lambda I) y = sum_i (1 + cm1_i) u_i
 * Members the caller's lookup does not know (users unknown to the model and
 * forgotten users) are kept as members but not used in the solve; members
 * changed online use their online vectors. A segment becomes visible
 * (served) once it has a vector: at once for SEGMENT ADD and SEGMENT SET, and
 * for EVENTs once min_users distinct users engaged with it. SEGMENT ADD
 * re-solves at once; EVENTs each time the member count has doubled since
 * the last solve (amortised O(k^2) a member, not O(nm k^2) an event); a
 * FORGET of a member at once; a SEGMENT SET vector is never re-solved but
 * by a SEGMENT ADD. Replay solves each segment once, from all its members.
 *
 * Readers see visible segments by a dense position j = 0, 1, ... in the
 * order they became visible (positions never move); a caller that numbers
 * segments puts them after the model's: segment n + j.
 *
 * Concurrency: as the user overlay (overlay.h): readers copy under a read
 * lock; a change is prepared with no lock of the caller held (the solve),
 * then checked (the segment did not change since: a version per segment)
 * and committed by one writer at a time.
 *
 * Owns: the segments, their names, members, values and vectors, the user
 * Gram matrix (computed once, at the first solve). Never: does I/O, knows
 * the journal file or the user overlay (users are looked up through the
 * caller's function).
 */
#ifndef STARLING_SEGOVERLAY_H
#define STARLING_SEGOVERLAY_H

#include <stdint.h>

#include "journal.h"
#include "model.h"

typedef struct st_segov st_segov;

/* The default of --segment-min-users: distinct users whose EVENTs on an
 * unknown segment create it. */
#define ST_SEGMENT_MIN_USERS 20u

/* The vector of user id (k floats into x) and the sum of the user's
 * engagement values (for bm25's length norm): 1, or 0 when the user has no
 * vector (unknown to the model, or forgotten). */
typedef int (*st_segov_user_fn)(void *ctx, const char *id, uint32_t len, float *x, double *rowsum);

st_segov *st_segov_new(const st_model *m, char *err);
void st_segov_free(st_segov *g);
void st_segov_set_min_users(st_segov *g, uint32_t n);
/* Lends g its model's U^T U (k x k, st_lookalike_gram), so that a solve does
 * not compute a second copy; GU must outlive g. Without it, the first solve
 * computes one (the batch tools' overlays). Call before any solve. */
void st_segov_lend_gram(st_segov *g, const float *GU);
uint32_t st_segov_min_users(const st_segov *g);

/* ---- readers -------------------------------------------------------------- */

/* Visible segments (an atomic: 0 lets readers skip the lock). */
uint32_t st_segov_count(st_segov *g);
/* Position of a visible segment, or ST_NOT_FOUND. */
uint32_t st_segov_find(st_segov *g, const char *name, size_t len);
/* Name of visible segment j (valid while g lives). */
const char *st_segov_name(st_segov *g, uint32_t j, size_t *len);
/* Copies visible segment j's vector into y (k floats, may be NULL) and
 * returns its popularity prior q (from its member count, as st_score_prior
 * computes it for model segments); its member count into *members (may be
 * NULL). */
float st_segov_vector(st_segov *g, uint32_t j, float *y, uint32_t *members);
/* scores[j] = y_j . x + (float)prior_weight q_j (st_score_one's blend), or
 * q_j when x is NULL (a user answered from the prior), for the first
 * min(count, cap) visible segments; returns how many. Never allocates. */
uint32_t st_segov_scores(st_segov *g, const float *x, float *scores, uint32_t cap);

/* ---- writers -------------------------------------------------------------- */

typedef struct {
    int apply;            /* 0: nothing to commit */
    int visible;          /* the segment has a vector after the change */
    int added;            /* a SEGMENT or SEGVEC: visible whatever its member count */
    int kind;             /* the record's type */
    uint32_t entry;       /* the segment's entry, or UINT32_MAX for a new one */
    uint64_t version;
    char *name;           /* a new entry's name */
    uint32_t name_len;
    uint32_t nnew;        /* members added: ids packed as in a SEGMENT record */
    char *new_ids;
    uint64_t new_bytes;
    float *new_vals;
    uint32_t upd_member;  /* EVENT on a member already there: its index, + value */
    float upd_val;
    float *y;             /* the vector (k), when visible */
    uint32_t members, used, unknown; /* after the change: members, used in the solve, without a vector */
    uint32_t nre;         /* FORGET: served segments the user is a member of, re-solved without them */
    uint32_t *re_entry;
    uint64_t *re_version;
    float *re_y;          /* nre x k */
} st_segov_change;

/* Prepares the change of r: a SEGMENT, a SEGVEC, or an EVENT (value v, on a
 * segment the model does not know). users: the lookup of member vectors.
 * 0, or -1 with err (out of memory, a failed solve, a SEGVEC of the wrong
 * rank). Either way chg goes to st_segov_commit or st_segov_discard. */
int st_segov_prepare(st_segov *g, const st_jrecord *r, double v, st_segov_user_fn users, void *ctx,
                     st_segov_change *chg, char *err);
/* Prepares what a FORGET of user does here: every served segment the user
 * is a member of is solved again without them (they stay a member; every
 * later solve leaves a forgotten user out too). 0, or -1 with err. */
int st_segov_prepare_forget(st_segov *g, const char *user, uint32_t len, st_segov_user_fn users, void *ctx,
                            st_segov_change *chg, char *err);
/* 1 when the segment is as chg was prepared from, 0 when it changed since
 * (prepare again), -1 with err on out-of-memory making room. */
int st_segov_check(st_segov *g, st_segov_change *chg, char *err);
/* Makes a checked change visible; never fails. */
void st_segov_commit(st_segov *g, st_segov_change *chg);
void st_segov_discard(st_segov_change *chg);

/* Replay, for a table not yet visible to readers: applies r's members
 * (value v for an EVENT) without solving; st_segov_solve then solves every
 * segment replay touched that has a vector or enough users. */
int st_segov_replay(st_segov *g, const st_jrecord *r, double v, char *err);
int st_segov_solve(st_segov *g, st_segov_user_fn users, void *ctx, char *err);

/* The solve itself, for tests and tools: y from the vectors X (nu x k,
 * row-major) of the nu members with one, their values r and rowsums,
 * against the user Gram matrix GU; members: every member (bm25's idf counts
 * them all). */
int st_segov_solve_vector(const st_model *m, const float *GU, const float *X, const float *r,
                          const double *rowsum, uint32_t nu, uint32_t members, float *y, char *err);

/* A shard's part of a segment's system, for a solve over several shards
 * (docs/SCALING.md): for the distinct users of the packed list ids (n of
 * them, value 1 each, as SEGMENT ADD gives them) that users finds,
 *   A = U^T U + sum_i cm1_i u_i u_i^T,   b = sum_i (1 + cm1_i) u_i
 * (A: k x k, b: k), U being this model's users; *members: distinct users
 * listed, *used: those with a vector. Summed over shards, A + lambda I with
 * st_als_row_lambda(params, used, users) is the system SEGMENT ADD solves
 * on one server. 0, or -1 with err on out-of-memory. */
int st_segov_partial(st_segov *g, const char *ids, uint64_t bytes, st_segov_user_fn users, void *ctx, double *A,
                     double *b, uint32_t *members, uint32_t *used, char *err);
/* The Gram matrix U^T U of the model's users (k x k); int8 rows dequantized. */
int st_segov_user_gram(const st_model *m, float *GU, char *err);

typedef struct {
    uint64_t visible, pending, members;
} st_segov_stats;
void st_segov_get_stats(st_segov *g, st_segov_stats *s);

#endif
