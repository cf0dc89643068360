/* dist: training across the ranks of an MPI job (`mpirun -np N starling train ...`).
 *
 * Legend: ranks R, users m, segments n, rank k, nonzeros nnz.
 * Each rank reads its own part of the input (a byte range of the plain files,
 * every R-th line of gzip files), the ranks agree on global ids, and then each
 * owns a contiguous block of users and one of segments with their rows of
 * the matrix. Every half-step all-reduces the k x k Gram matrix and exchanges
 * only the factor rows each rank's nonzeros point at (a halo, planned once).
 * Rank 0 gathers the factors and the history and writes one model, the same
 * model a single process would write up to float rounding: every row starts
 * from the same id-derived random values and is solved the same way; only
 * the order of some sums differs.
 *
 * Owns: MPI (initialised on first use, finalised by st_dist_finalize).
 * Never: prints (the progress hook does, on rank 0).
 * Limits: every rank holds all ids (for the global id maps); counts passed
 * to MPI are ints, so one rank sends at most 2^31 pairs per phase.
 *
 * Built only when Open MPI's development files are installed (STARLING_MPI);
 * otherwise st_dist_compiled() is 0 and st_dist_train fails with a message.
 */
#ifndef STARLING_DIST_H
#define STARLING_DIST_H

#include "events.h"
#include "interactions.h"
#include "train.h"

/* 1 when this binary was built with MPI. */
int st_dist_compiled(void);

/* The number of ranks of the MPI job this process was started in (read from
 * the launcher's environment, so it works without initialising MPI); 1 when
 * it was not started by mpirun. */
int st_dist_launched(void);

typedef struct {
    int rank, ranks;
    uint64_t halo_bytes;      /* factor rows sent to other ranks per iteration */
    uint64_t allreduce_bytes; /* Gram matrices and scalars all-reduced per iteration */
    uint64_t formula_bytes;   /* the halo the formula in docs/SCALING.md predicts */
    double read_seconds, setup_seconds;
} st_dist_info;

/* Trains under MPI. Every rank passes the same paths and options. On rank 0
 * *x and *t come back as if one process had read and trained everything (x
 * with the global id maps and the whole history, t with all factors), for
 * the caller to save; on other ranks they come back empty and *is_root = 0.
 * stats is summed over ranks on rank 0. hooks->progress is called on every
 * rank after each iteration (print only on rank 0); the run stops when any
 * rank's hook asks to. Checkpoints are not supported. */
int st_dist_train(char **paths, int npaths, const st_read_opts *o, const st_weighting *w, st_trained *t,
                  st_interactions *x, st_read_stats *stats, const st_train_hooks *hooks, int *is_root,
                  st_dist_info *info, char *err);

/* Agrees on failure: returns non-zero on every rank when rc is non-zero on
 * any (a no-op returning rc without MPI). */
int st_dist_any_failed(int rc);

void st_dist_finalize(void);

#endif
