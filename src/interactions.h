/* interactions: the sparse user x segment matrix built from events.
 *
 * Legend: users m (rows), segments n (columns), nonzeros nnz.
 * Owns: the two id maps and the matrix stored once by row (CSR, users x
 * segments) and once by column (CSC, kept as the CSR of the transpose), with
 * u32 indices and u64 offsets. The values, the aggregated engagement r of each
 * (user, segment) pair (the sum over its events of weight x kind weight x time
 * decay), are kept once, in the CSR: the CSC holds the structure only
 * (by_segment.data is NULL), which is all the trainer needs of it. Pairs whose
 * r is 0 are dropped: they are not interactions.
 * Never: applies confidence (that is the trainer's, see als.h).
 *
 * Building: st_builder_add for every event, then st_builder_finish. The
 * builder keeps one (key, value) pair per distinct (user, segment) plus a
 * bounded tail of new events, compacting (sort + merge duplicates, in place)
 * whenever the tail fills, so memory follows distinct pairs, not events.
 */
#ifndef STARLING_INTERACTIONS_H
#define STARLING_INTERACTIONS_H

#include <stdint.h>

#include "events.h"
#include "idmap.h"

typedef struct {
    uint32_t rows, cols;
    uint64_t nnz;
    uint64_t *indptr;  /* rows+1 */
    uint32_t *indices; /* nnz, sorted within a row */
    float *data;       /* nnz */
} st_csr;

typedef struct {
    st_idmap users, segments;
    st_csr by_user;    /* m x n */
    st_csr by_segment; /* n x m, structure only: data is NULL */
    uint64_t events;   /* events accepted */
    double newest;     /* the newest timestamp seen when decaying relative to it (has_newest) */
    int has_newest;
} st_interactions;

/* How events become values. */
typedef struct {
    int nkinds;
    char **kind_names;     /* owned by the caller */
    double *kind_weights;
    double default_kind_weight; /* kinds not listed, and events without a kind */
    double half_life;      /* seconds; 0 = no time decay */
    double now;            /* decay reference; NAN = the newest event seen */
    int has_now;
} st_weighting;

void st_weighting_default(st_weighting *w);

/* Parses "click=1,conversion=20" into w (allocating the name and weight
 * arrays; free with st_weighting_free). Returns -1 with a reason. */
int st_weighting_parse_kinds(st_weighting *w, const char *spec, char *err);
void st_weighting_free(st_weighting *w);

/* The weight one kind gets (exposed for tests). */
double st_weighting_kind(const st_weighting *w, const char *kind, size_t len);

typedef struct st_builder st_builder;

st_builder *st_builder_new(const st_weighting *w, char *err);
void st_builder_free(st_builder *b);

/* Adds one event. Fails on out-of-memory, too many ids, or a missing
 * timestamp when decay is on (the message names FILE:LINE). */
int st_builder_add(st_builder *b, const st_event *ev, char *err);

/* An st_event_fn that adds to the builder passed as ctx. */
int st_builder_add_cb(const st_event *ev, void *ctx, char *err);

/* Moves the result into *out (which the caller frees with
 * st_interactions_free) and frees the builder. Fails with "no events" when
 * nothing was added, or when every value was zero. */
int st_builder_finish(st_builder *b, st_interactions *out, char *err);

/* The same, but an empty result (no events, or only zero values) is not an
 * error: for one part of an input shared by several readers. */
int st_builder_finish_any(st_builder *b, st_interactions *out, char *err);

/* Time decay relative to the newest event, when the newest event is known
 * only across several builders: st_builder_newest gives this builder's (0
 * when it saw no timestamp), st_builder_set_newest raises it before finish. */
int st_builder_newest(const st_builder *b, double *t);
void st_builder_set_newest(st_builder *b, double t);

/* Sorts parallel (key, value) arrays by key in place and merges equal keys
 * (summing values in double). Returns the number of distinct keys. */
size_t st_pairs_sort_merge(uint64_t *keys, float *vals, size_t n);

void st_interactions_free(st_interactions *x);

/* Reads every file (or "-") with o, weights events by w and builds x.
 * stats accumulates over the files. Fails on the first bad file or line (in
 * stop mode), or with "no events in ..." when nothing was read. */
int st_interactions_read(char **paths, int npaths, const st_read_opts *o, const st_weighting *w,
                         st_interactions *x, st_read_stats *stats, char *err);

/* Transposes a CSR (rows x cols) into a new CSR (cols x rows); indices within
 * each output row come out sorted. With with_data = 0 only the structure is
 * built (out->data = NULL). Allocates; -1 on out-of-memory. */
int st_csr_transpose(const st_csr *a, st_csr *out, int with_data, char *err);
void st_csr_free(st_csr *a);

/* XXH3-64 over the matrix and the ids: the fingerprint recorded in a model. */
uint64_t st_interactions_fingerprint(const st_interactions *x);

#endif
