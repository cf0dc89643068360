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

__attribute__((unused)) static int small_model(const char *dir, st_model *out)
{
    char ev[512], path[512], err[ST_ERRLEN];
    snprintf(ev, sizeof ev, "%s/ev.csv", dir);
    snprintf(path, sizeof path, "%s/m.model", dir);
    st_synth_params sp;
    st_synth_params_default(&sp);
    sp.users = 300;
    sp.segments = 60;
    sp.events = 5000;
    st_read_opts ro;
    st_read_opts_default(&ro);
    st_weighting w;
    st_weighting_default(&w);
    st_interactions x;
    st_read_stats rs = {0};
    char *files[1] = {ev};
    st_trained t;
    memset(&t, 0, sizeof t);
    st_als_params_default(&t.params);
    t.params.factors = 8;
    t.params.iterations = 3;
    if (st_synth_write(&sp, ev, err) != 0 || st_interactions_read(files, 1, &ro, &w, &x, &rs, err) != 0 ||
        st_train_run(&x, &t, NULL, err) != 0) {
        printf("#   %s\n", err);
        return -1;
    }
    float *pop = malloc((x.segments.count + 1) * sizeof *pop);
    st_model m;
    st_train_model(&x, &t, "", pop, &m);
    int rc = st_model_save(path, &m, err) == 0 && st_model_load(path, out, err) == 0 ? 0 : -1;
    if (rc != 0) printf("#   %s\n", err);
    free(pop);
    st_trained_free(&t);
    st_interactions_free(&x);
    return rc;
}

#endif
