/* jinput: a server's journal as input to the offline tools.
 *
 * What the journal says about the data a model is made from: the users it
 * forgot (FORGET) must leave every model and every batch answer, and its
 * online events (EVENT) join the training data unless a later FORGET of
 * their user erased them. One set of rules, used by `starling train
 * --journal` (st_jinput_interactions) and by the batch commands that read a
 * model and must not show a forgotten user (st_jinput_forgotten).
 *
 * The rules: an event of the input files is dropped when the journal forgot
 * its user at all (a log line cannot be placed before or after a FORGET); a
 * journal event is kept unless a FORGET of its user comes later in the
 * journal. Both passes read one open file up to where the first ended: a
 * server may append meanwhile, and what it appends is for the next model.
 *
 * The batch commands that answer as a server does (`audience`, `segments`,
 * `score`) take the server's own path instead: st_jmodel replays the journal
 * into an overlay beside the model exactly as a server started on that
 * model and journal does (st_jinput_overlay; overlay.h has the rules), then
 * looks users up and scans them as the server's handlers do: a forgotten
 * user is unknown, a user changed online has the vector fold-in gives their
 * merged history, and a scan covers the model's rows less those the overlay
 * hides, then the online users in slot order (so ties break as on the
 * server). The commands that write a model (`export`, `shard`, `quantize`)
 * drop every user the journal forgot at any point (st_jinput_erase) and fold
 * no online event in: events stay in the journal, which applies on top of
 * the output as it did on top of the input.
 *
 * Every read is read-only (the file is never created, locked or cut) and
 * leaves out a torn last record, which is what a record a server is still
 * appending looks like.
 * Owns: the forgotten set (st_jinput_forgotten_free), an st_jmodel and an
 * st_jerased (their _free functions). Never prints.
 */
#ifndef STARLING_JINPUT_H
#define STARLING_JINPUT_H

#include <stdint.h>

#include "events.h"
#include "idmap.h"
#include "interactions.h"
#include "journal.h"
#include "overlay.h"

/* Users the journal forgot, each with the seq of its last FORGET. */
typedef struct {
    st_idmap users;
    uint64_t *seq;
    uint32_t cap;
} st_forgotten;

/* What reading a journal found and did. */
typedef struct {
    uint64_t id, last_seq;       /* the journal's id, and the last record read */
    uint64_t events, forgets;    /* records read */
    uint64_t added;              /* events added to the training data */
    uint64_t erased;             /* journal events erased by a later FORGET */
    uint64_t dropped;            /* input events of forgotten users dropped */
    uint64_t forgotten;          /* distinct users forgotten */
    uint64_t torn_bytes;         /* a torn last record, left out */
} st_jinput_use;

/* The users path forgot. 0, or -1 with err naming the file. */
int st_jinput_forgotten(const char *path, st_forgotten *f, st_jinput_use *use, char *err);
void st_jinput_forgotten_free(st_forgotten *f);

/* Is this user id forgotten? */
int st_jinput_is_forgotten(const st_forgotten *f, const char *user, size_t len);

/* Replays path into ov as a server started on ov's model with this
 * journal does (st_overlay_replay of every record with the journal's id,
 * then st_overlay_solve), read-only. check (may be NULL) sees every record
 * before it is applied; a non-zero return stops the replay with its err.
 * use (may be NULL) receives the journal's id, records, last seq and torn
 * bytes, and as forgotten the users the overlay counts so (st_overlay_stats;
 * added, erased and dropped stay 0). 0, or -1 with err naming the file (a
 * refusal of check is its own err). Allocates (the overlay grows). */
int st_jinput_overlay(const char *path, st_overlay *ov, st_jrecord_fn check, void *check_ctx, st_jinput_use *use,
                      char *err);

/* ---- a model beside its journal (`audience`, `segments`, `score`) ----------- */

/* A model file as a server started on it with a journal serves it. Owns
 * everything in it (st_jmodel_free). */
typedef struct {
    st_model m;
    float *prior;          /* n: st_score_prior */
    float *G;              /* k x k, once a journal is replayed (fold-in) */
    st_overlay *ov;        /* the users the journal changed or forgot; NULL without one */
    st_overlay_view view;  /* its online users, which a scan adds after the model's rows */
    float *xbuf, *ux, *hr; /* a user's vector (k) and online history (n), copied out */
    uint32_t *hseg;
    int loaded;
} st_jmodel;

/* A user as st_jmodel_user finds them: the journal first, then the file,
 * as the server's handlers look users up. x and the history are valid until
 * the next lookup in the same st_jmodel. */
typedef struct {
    int known;                /* 0: not in the model, or forgotten */
    int forgotten;            /* the journal forgot them (and nothing brought them back) */
    const float *x;           /* k */
    const uint32_t *hist_seg; /* hist_n segments, ascending */
    uint32_t hist_n;
    uint64_t pos;             /* their place in a scan, UINT64_MAX when unknown */
} st_juser;

/* Loads and verifies path (and computes the prior). 0, or -1 with err;
 * either way jm is for st_jmodel_free. */
int st_jmodel_load(const char *path, st_jmodel *jm, char *err);
/* Replays journal into a loaded jm with st_jinput_overlay (check and use
 * as there) and takes the copy scans use. 0, or -1 with err. */
int st_jmodel_replay(st_jmodel *jm, const char *journal, st_jrecord_fn check, void *check_ctx, st_jinput_use *use,
                     char *err);
void st_jmodel_free(st_jmodel *jm);

void st_jmodel_user(st_jmodel *jm, const char *id, size_t len, st_juser *u);

/* A scan's positions: the model's rows, then the online users. */
uint64_t st_jmodel_rows(const st_jmodel *jm);
const char *st_jmodel_row_name(const st_jmodel *jm, uint64_t i);
/* out (st_jmodel_rows floats): every user's blended score for segment s,
 * NaN for the rows the journal hides: what AUDIENCE and REACH scan. */
void st_jmodel_segment_scores(const st_jmodel *jm, uint32_t s, float *out);

/* ---- a model less the users a journal forgot (`export`, `shard`, `quantize`) - */

typedef struct {
    st_model m;       /* the source less the forgotten users; V, ids of segments, META are the source's */
    uint64_t dropped; /* users left out */
    float *U, *Usc, *hv;
    int8_t *Uq;
    uint64_t *hp;
    uint32_t *hi;
    st_idmap ids;
    int has_ids;
} st_jerased;

/* e->m: src without the rows, ids and histories of the users f holds, in
 * memory (src must outlive e). 0, or -1 with err (e is for
 * st_jerased_free either way). */
int st_jinput_erase(const st_model *src, const st_forgotten *f, st_jerased *e, char *err);
void st_jerased_free(st_jerased *e);

/* The interactions of the event files and the journal together, by the
 * rules above, weighted by w. 0, or -1 with err. */
int st_jinput_interactions(const char *journal, char **files, int nfiles, const st_read_opts *ro, const st_weighting *w,
                           st_interactions *x, st_read_stats *stats, st_jinput_use *use, char *err);

#endif
