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
 * Owns: the forgotten set (st_jinput_forgotten_free). Never prints.
 */
#ifndef STARLING_JINPUT_H
#define STARLING_JINPUT_H

#include <stdint.h>

#include "events.h"
#include "idmap.h"
#include "interactions.h"

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

/* The interactions of the event files and the journal together, by the
 * rules above, weighted by w. 0, or -1 with err. */
int st_jinput_interactions(const char *journal, char **files, int nfiles, const st_read_opts *ro, const st_weighting *w,
                           st_interactions *x, st_read_stats *stats, st_jinput_use *use, char *err);

#endif
