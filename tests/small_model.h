/* small_model: a small trained model for the C tests that need one: 300
 * synthetic users, 60 segments, rank 8, three ALS iterations; written to
 * DIR/m.model and loaded back (st_model_free it). */
#ifndef STARLING_SMALL_MODEL_H
#define STARLING_SMALL_MODEL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "synth.h"
#include "train.h"
#include "util.h"

/* The shape of a test model: a synthetic log of users x segments with
 * events rows (seed), trained at rank factors for three ALS iterations. */
typedef struct {
    uint64_t users, segments, events, seed;
    uint32_t factors;
} small_model_spec;

/* Writes the log to DIR/ev.csv and the trained model to path. Returns 0, or
 * -1 with err set. */
__attribute__((unused)) static int small_model_write(const char *dir, const small_model_spec *spec, const char *path,
                                                     char *err)
{
    char ev[512];
    snprintf(ev, sizeof ev, "%s/ev.csv", dir);
    st_synth_params sp;
    st_synth_params_default(&sp);
    sp.users = spec->users;
    sp.segments = spec->segments;
    sp.events = spec->events;
    if (spec->seed) sp.seed = spec->seed;
    st_read_opts ro;
    st_read_opts_default(&ro);
    st_weighting w;
    st_weighting_default(&w);
    st_interactions x;
    st_read_stats rs = {0};
    char *files[1] = {ev};
    if (st_synth_write(&sp, ev, err) != 0 || st_interactions_read(files, 1, &ro, &w, &x, &rs, err) != 0) return -1;
    st_trained t;
    memset(&t, 0, sizeof t);
    st_als_params_default(&t.params);
    t.params.factors = spec->factors;
    t.params.iterations = 3;
    int rc = st_train_run(&x, &t, NULL, err);
    float *pop = malloc((x.segments.count + 1) * sizeof *pop);
    if (rc == 0) {
        st_model m;
        st_train_model(&x, &t, "", pop, &m);
        rc = st_model_save(path, &m, err);
    }
    free(pop);
    st_trained_free(&t);
    st_interactions_free(&x);
    return rc;
}

/* 300 users, 60 segments, rank 8, written to DIR/m.model and loaded back
 * into out (st_model_free it). */
__attribute__((unused)) static int small_model(const char *dir, st_model *out)
{
    char path[512], err[ST_ERRLEN] = "";
    snprintf(path, sizeof path, "%s/m.model", dir);
    const small_model_spec spec = {.users = 300, .segments = 60, .events = 5000, .factors = 8};
    int rc = small_model_write(dir, &spec, path, err) == 0 && st_model_load(path, out, err) == 0 ? 0 : -1;
    if (rc != 0) printf("#   %s\n", err);
    return rc;
}

#endif
