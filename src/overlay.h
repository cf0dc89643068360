/* overlay: the users changed online, beside the model they are served with.
 *
 * Legend: users m, segments n, rank k (of the model). A served model is
 * read-only (a mapping); EVENT and FORGET change users here instead. Each
 * user the overlay knows has a slot, found by id through a hash index:
 *   - updated: the model's history of the user (or none, for a user the
 *     model has never seen) plus the value of every event received since,
 *     and the vector solved from that history against the model's segment
 *     factors (st_score_foldin: the model's own confidence scheme and
 *     regularisation, an exact solve); the model's row, if any, is hidden;
 *   - forgotten: no history, no vector, the model's row hidden; events
 *     received after the FORGET start a new history from nothing.
 * An event's value is what training gives it: weight x the kind's weight
 * (the model's META kind_weights) x time decay towards the model's decay
 * reference (--now, or the newest training event: META decay_reference);
 * an event newer than the reference counts fully, as in training.
 *
 * A model trained with `starling train --journal` says in its META which
 * journal (journal_id) it holds up to which record (journal_seq): replay
 * skips those records, so nothing is applied twice. Records of any other
 * journal, or with a later seq, apply on top.
 *
 * Concurrency: readers (SEGMENTS on every event loop, scans on the heavy
 * pool) copy what they need under a read lock and never hold pointers into
 * a slot afterwards, except ids, which live as long as the overlay. A
 * change is prepared (the user's state copied under the read lock, the
 * history merged and the vector solved with no lock held) by any number of
 * writers at once; then, one writer at a time (the caller's lock), checked
 * (the user has not changed since: every commit bumps the slot's version),
 * journaled by the caller, and committed under the write lock, which only
 * swaps pointers and cannot fail. So nothing is applied that is not in the
 * journal, and the costly solve is outside every lock.
 *
 * Owns: the slots, their ids, histories and vectors, a hidden flag per model
 * row, fold-in scratch for replay. Never: does I/O, knows the journal file.
 */
#ifndef STARLING_OVERLAY_H
#define STARLING_OVERLAY_H

#include <stdint.h>

#include "journal.h"
#include "model.h"
#include "segoverlay.h"

typedef struct st_overlay st_overlay;

/* An overlay for model m (G = V^T V, prior: st_score_prior), empty. m, G
 * and prior must outlive it. NULL with err set on out-of-memory. */
st_overlay *st_overlay_new(const st_model *m, const float *G, const float *prior, char *err);
void st_overlay_free(st_overlay *o);

/* The journal and position the model holds records up to (from its META);
 * *id is 0 when the model was not trained with a journal. */
void st_overlay_lineage(const st_overlay *o, uint64_t *id, uint64_t *seq);

/* The value r an event adds to its (user, segment) pair (see above). */
double st_overlay_event_value(const st_overlay *o, double weight, const char *kind, uint32_t kind_len, double ts);

/* ---- readers --------------------------------------------------------------- */

enum { ST_OV_ABSENT = 0, ST_OV_FORGOTTEN = 1, ST_OV_LIVE = 2 };

/* Slots in use (0: nothing was changed, and readers may skip the lookup). */
uint64_t st_overlay_size(const st_overlay *o);

/* Looks id up. ST_OV_ABSENT: the model answers for this user.
 * ST_OV_FORGOTTEN: the user appears nowhere. ST_OV_LIVE: x (k floats)
 * receives the vector, and when seg is not NULL, seg and r (room for n
 * entries) the history and *hist_n its length; *slot (may be NULL) the
 * slot. Never allocates. */
int st_overlay_find(st_overlay *o, const char *id, size_t len, float *x, uint32_t *seg, float *r, uint32_t *hist_n,
                    uint32_t *slot);

/* Users the served model plus overlay answer for: m - hidden rows + live. */
uint64_t st_overlay_users(st_overlay *o);

/* Slot i, for SCAN's cursor (slots are never reused or reordered): -1 past
 * the last slot; else ST_OV_LIVE or ST_OV_FORGOTTEN, with its id (valid
 * while the overlay lives) and the model's row of the user (ST_NOT_FOUND for
 * a user the model does not have). */
int st_overlay_slot(st_overlay *o, uint32_t i, const char **id, uint32_t *len, uint32_t *model_u);

/* What a scan over every user needs, copied at one instant. */
typedef struct {
    uint32_t m, k;
    uint8_t *hidden;    /* m flags: 1 = the model's row is not this user's any more; NULL = none is hidden */
    uint32_t n;         /* live slots ... */
    float *X;           /* ... their vectors, n x k */
    const char **ids;   /* ... ids (valid while the overlay lives) */
    uint32_t *lens;
    uint32_t *slots;    /* ... and slot numbers, ascending */
    uint64_t cap, cap_m;
} st_overlay_view;

/* Fills v (growing its arrays; the heavy pool may allocate). -1 on
 * out-of-memory. Free with st_overlay_view_free. */
int st_overlay_snapshot(st_overlay *o, st_overlay_view *v);
void st_overlay_view_free(st_overlay_view *v);

/* ---- writers -------------------------------------------------------------------- */

typedef struct {
    int kind;            /* 0 nothing to apply, ST_JREC_EVENT, ST_JREC_FORGET */
    int existed;         /* the user appeared in replies before this change */
    int known_segment;   /* EVENT: the model knows the segment */
    float score;         /* EVENT: the user's new score for the segment (when known) */
    uint32_t slot;       /* the slot, or UINT32_MAX for a new one */
    uint64_t version;    /* the slot's version the change was prepared from */
    const char *user;    /* r's user (valid while r is) */
    uint32_t user_len;
    char *id;            /* a new slot's id */
    uint32_t id_len, model_u, seg;
    uint32_t hist_n, *hist_seg;
    float *hist_r, *x;
    st_segov_change segchg; /* SEGMENT, SEGVEC, or an EVENT on a segment the model does not know */
} st_overlay_change;

/* The segments added online beside this overlay's model (segoverlay.h):
 * SEGMENT and SEGVEC records, and EVENTs on segments the model does not
 * know, go there; their members' vectors are looked up here (an online
 * user's vector, a model row, none for forgotten and unknown users). */
st_segov *st_overlay_segments(st_overlay *o);
/* st_segov_partial with this overlay's lookup of members' vectors. */
int st_overlay_segment_partial(st_overlay *o, const char *ids, uint64_t bytes, double *A, double *b,
                               uint32_t *members, uint32_t *used, char *err);

/* Floats of work st_overlay_prepare needs. */
uint64_t st_overlay_work(const st_overlay *o);

/* Prepares the change record r makes (an EVENT, a FORGET, a SEGMENT or a
 * SEGVEC; a SEGMENT or SEGVEC naming a segment of the model is refused, as
 * is a SEGMENT none of whose members has a vector) from the
 * user's state now, without making it visible; any number of writers may
 * prepare at once, while others commit. work: st_overlay_work floats.
 * 0 (chg->kind is 0 when there is nothing to apply: a segment the model
 * does not know, or a zero value), or -1 with err on out-of-memory or a
 * failed solve. Either way chg must go to st_overlay_commit or
 * st_overlay_discard. */
int st_overlay_prepare(st_overlay *o, const st_jrecord *r, float *work, st_overlay_change *chg, char *err);

/* One writer at a time (the caller serialises checks and commits): 1 when
 * the user is as the change was prepared from (it can be committed), 0 when
 * another commit changed them since (discard and prepare again), -1 with
 * err on out-of-memory making room for a new slot. */
int st_overlay_check(st_overlay *o, st_overlay_change *chg, char *err);

/* Makes a checked change visible (under the write lock) and frees what it
 * replaced. Never fails. */
void st_overlay_commit(st_overlay *o, st_overlay_change *chg);

/* Frees a prepared change that will not be committed. */
void st_overlay_discard(st_overlay_change *chg);

/* Replay: applies a journal record of journal `journal_id` to the
 * histories without solving (unless the model already holds it), for a
 * fresh overlay not yet visible to readers; st_overlay_solve then solves
 * every user replay touched, once. -1 with err on out-of-memory. */
int st_overlay_replay(st_overlay *o, uint64_t journal_id, const st_jrecord *r, char *err);
int st_overlay_solve(st_overlay *o, char *err);

/* Figures for INFO. */
typedef struct {
    uint64_t slots, live, forgotten, hidden_rows, replayed, skipped_in_model, unknown_segment;
} st_overlay_stats;
void st_overlay_get_stats(st_overlay *o, st_overlay_stats *s);

#endif
