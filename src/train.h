/* train: from interactions to a trained model, the loop every caller shares.
 *
 * `starling train`, `eval` and `tune` all train through st_train_run: it
 * computes the confidences, initialises (or resumes) the factors, runs the
 * iterations, calls the progress hook after each one (which may stop the
 * run), and the checkpoint hook every N. st_train_model then assembles a
 * model that points at the trainer's arrays and the interactions (no copy),
 * ready for st_model_save or for scoring in memory.
 * Never: prints (the hooks do), reads files.
 */
#ifndef STARLING_TRAIN_H
#define STARLING_TRAIN_H

#include "als.h"
#include "interactions.h"
#include "model.h"

typedef struct {
    st_als_params params;
    uint32_t m, n, k;
    float *X, *Y;        /* owned, m x k and n x k */
    double *loss;        /* owned, one per completed iteration (room for params.iterations) */
    float *missing;      /* owned, n: rho of popularity-weighted missing data (als.h), or NULL */
    double weight;       /* m n + sum(c - 1): divides the loss into a per-weight figure */
    uint32_t iterations; /* completed */
    double seconds;      /* training time, without set-up */
    int stopped;         /* the progress hook asked to stop */
} st_trained;

typedef struct st_train_hooks {
    /* After each iteration; loss is the objective divided by the weight.
     * Return non-zero to stop after this iteration. May be NULL. */
    int (*progress)(void *ctx, const st_trained *t, double iter_seconds);
    /* Every checkpoint_every iterations (0 = never). */
    uint32_t checkpoint_every;
    int (*checkpoint)(void *ctx, const st_trained *t, char *err);
    void *ctx;
} st_train_hooks;

/* Trains t->params on x. When t->X and t->Y are already set (a resume) and
 * t->iterations > 0, training continues from them; otherwise they are
 * allocated and initialised from the seed. On failure t keeps what it has
 * (free it with st_trained_free). */
int st_train_run(const st_interactions *x, st_trained *t, const st_train_hooks *hooks, char *err);

void st_trained_free(st_trained *t);

/* Assembles a model over t and x; popularity (n floats) is filled here from
 * x and must outlive m. meta may be NULL. The model owns nothing; its
 * missing-data weights are t's, those the factors were trained with. */
void st_train_model(const st_interactions *x, const st_trained *t, const char *meta, float *popularity,
                    st_model *m);

#endif
