/* interop: models in and out of starling.
 *
 * Export writes a model as files other tools read: the factors as NumPy .npy
 * arrays (float32, C order), the ids as text (one per line, in row order),
 * the training history as CSV, and the header as JSON. Import builds a model
 * from factors trained elsewhere: .npy files with id lists, or text lines of
 * `id, f1, f2, ...` (CSV or TSV; `id, [f1, f2, ...]` and JSON lines
 * {"id": ..., "features": [...]} as Spark MLlib's ALS factors are commonly
 * written), optionally with the events they were trained on (for
 * --exclude-seen, EXPLAIN and popularity).
 *
 * Owns: nothing between calls. Never: prints.
 */
#ifndef STARLING_INTEROP_H
#define STARLING_INTEROP_H

#include <stdint.h>

#include "events.h"
#include "model.h"

/* Writes rows x cols float32 values as a .npy file (atomically). */
int st_npy_write(const char *path, const float *data, uint64_t rows, uint32_t cols, char *err);

/* Reads a 2-D .npy array of float32 or float64 (C or Fortran order) into a
 * newly allocated row-major float32 array (free with st_free). */
int st_npy_read(const char *path, float **data, uint64_t *rows, uint32_t *cols, char *err);

/* Writes DIR/{user_factors.npy, segment_factors.npy, users.txt, segments.txt,
 * history.csv, model.json}, creating DIR if needed. */
int st_export(const st_model *m, const char *dir, char *err);

typedef struct {
    const char *dir;             /* an export directory: every file below is taken from it */
    const char *user_factors;    /* .npy, or text lines with the id first */
    const char *segment_factors;
    const char *user_ids;        /* with .npy factors: one id per line */
    const char *segment_ids;
    char **history;              /* event files the factors were trained on, or NULL */
    int nhistory;
    st_read_opts read;
} st_import_spec;

/* Parses a text factors file (the forms above) and reports its shape; for
 * tests and the fuzzer. */
int st_factors_check_text(const char *path, uint64_t *rows, uint32_t *k, char *err);

/* Builds a model from spec and writes it to out. */
int st_import(const st_import_spec *spec, const char *out, char *err);

#endif
