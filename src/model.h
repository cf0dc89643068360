/* model: the trained model and its file.
 *
 * Legend: users m, segments n, rank k, training nonzeros nnz.
 * A model is: user factors U (m x k), segment factors V (n x k), the two id
 * maps, the training history (the CSR of raw values r, for --exclude-seen,
 * EXPLAIN and fold-in of online events), segment popularity (users per
 * segment), the loss per iteration, free-form metadata (key=value lines), and
 * a fixed header with every hyper-parameter, the seed and the data's
 * fingerprint. docs/FORMAT.md documents every byte.
 *
 * Files are written atomically (temp file, fsync, rename, fsync the
 * directory) and loaded either by mmap, read-only, with no copy
 * (st_model_load, for the batch tools) or read into memory the model owns
 * (st_model_read, for the server, so that a file overwritten in place can
 * neither kill it with SIGBUS nor change what it serves). Every array of a
 * loaded model points into the mapping or that copy, so everything a loaded
 * model returns is valid until st_model_free. Every section's checksum is verified on load;
 * a bad file gets an error that says what is wrong and what to do, never a
 * crash.
 *
 * Checklist: when st_model_header or a section changes, bump
 * STARLING_FORMAT_VERSION and update docs/FORMAT.md and tests/test_model.c.
 */
#ifndef STARLING_MODEL_H
#define STARLING_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "als.h"
#include "idmap.h"

#define STARLING_MAGIC "STARLING"
#define STARLING_FORMAT_VERSION 4u
#define STARLING_FORMAT_OLDEST 1u /* version 1 is version 2 without int8 user factors */
/* Version 3 is version 2 with popularity-weighted missing data (the SMIS
 * section): a model without it is written as version 2, which older
 * starlings read; one with it is refused by them rather than served with the
 * wrong Gram matrix. Version 4 is version 3 with the linear popularity prior
 * (ST_MODEL_PRIOR_LINEAR): a model with it is written as version 4, one
 * without as before, so older starlings refuse only the models whose scores
 * they would compute differently. */
#define STARLING_FORMAT_UNIFORM 2u
#define STARLING_FORMAT_MISSING 3u
#define ST_SECTION_ALIGN 64

/* The fixed 256-byte header, little-endian, at offset 0. */
typedef struct {
    char magic[8];             /*   0 */
    uint32_t version;          /*   8 */
    uint32_t nsections;        /*  12 */
    uint64_t file_bytes;       /*  16 */
    uint32_t users;            /*  24 */
    uint32_t segments;         /*  28 */
    uint32_t factors;          /*  32 */
    uint32_t iterations;       /*  36 completed */
    uint64_t nnz;              /*  40 */
    uint64_t events;           /*  48 */
    uint64_t seed;             /*  56 */
    uint64_t fingerprint;      /*  64 XXH3-64 of the training matrix and ids */
    int64_t created;           /*  72 unix seconds */
    uint32_t threads;          /*  80 */
    uint32_t solver;           /*  84 st_solver */
    uint32_t cg_steps;         /*  88 */
    uint32_t confidence;       /*  92 st_conf_scheme */
    uint32_t regularization;   /*  96 st_reg_scheme */
    uint32_t flags;            /* 100 ST_MODEL_* */
    double lambda;             /* 104 */
    double alpha;              /* 112 */
    double eps;                /* 120 */
    double bm25_k1;            /* 128 */
    double bm25_b;             /* 136 */
    double reg_alpha0;         /* 144 */
    double reg_nu;             /* 152 */
    double half_life;          /* 160 seconds, 0 = none */
    double decay_now;          /* 168 NaN = newest event */
    double final_loss;         /* 176 objective after the last iteration */
    double bm25_mean_rowsum;   /* 184 */
    double init_scale;         /* 192 */
    double calib_a;            /* 200 calibrated = 1 / (1 + exp(-(a score + b))) */
    double calib_b;            /* 208 */
    double prior_weight;       /* 216 popularity-prior blend for cold users */
    uint32_t iterations_asked; /* 224 */
    uint32_t missing_weight;   /* 228 st_missing_scheme; 0 (files before it) = uniform */
    double unobserved_weight;  /* 232 of unobserved pairs; 0 (files before it) = 1 */
    double missing_exponent;   /* 240 e of the popularity scheme; 0 when uniform */
    uint64_t header_checksum;  /* 248 XXH3-64 of bytes 0..247 and the section table */
} st_model_header;

#define ST_MODEL_CALIBRATED 1u /* calib_a, calib_b are fitted */
#define ST_MODEL_INT8 2u       /* user factors are int8 with a scale per row (UQ8 , UQSC) */
#define ST_MODEL_PRIOR_LINEAR 4u /* the prior q is popularity / max popularity, not its log (score.h) */
#define ST_MODEL_FLAGS (ST_MODEL_CALIBRATED | ST_MODEL_INT8 | ST_MODEL_PRIOR_LINEAR)

/* The prior's shape by name, as every output says it: "linear" or "log". */
static inline const char *st_prior_shape_name(int linear) { return linear ? "linear" : "log"; }

/* One entry of the section table that follows the header. */
typedef struct {
    char tag[4];
    uint32_t flags;
    uint64_t offset; /* from the start of the file, a multiple of 64 */
    uint64_t bytes;
    uint64_t checksum; /* XXH3-64 of the section's bytes */
} st_section;

typedef struct {
    st_model_header h;
    uint32_t users, segments, k;
    const float *U, *V;       /* U is NULL when the user factors are int8 */
    const int8_t *Uq;         /* m x k, when h.flags has ST_MODEL_INT8 */
    const float *Uscale;      /* m: row u is Uq[u] * Uscale[u] */
    st_idmap user_ids, segment_ids;
    const uint64_t *hist_ptr; /* m+1 */
    const uint32_t *hist_idx; /* nnz */
    const float *hist_val;    /* nnz */
    const float *popularity;  /* n: users per segment in training */
    const float *missing;     /* n: rho_s, segment s's unobserved pairs weigh w0 rho_s (als.h); NULL = uniform */
    const double *loss;       /* h.iterations values */
    const char *meta;         /* key=value lines, meta_len bytes, not NUL-terminated */
    size_t meta_len;
    /* A loaded model owns its mapping; a model assembled by the trainer owns
     * nothing (the trainer frees its own arrays). */
    void *map;
    size_t map_len;
    int map_owned; /* 1: map is memory read from the file (st_model_read), 0: a file mapping */
} st_model;

/* Fills h's hyper-parameter fields from p (and the magic and version). */
void st_model_header_from_params(st_model_header *h, const st_als_params *p);
/* The inverse, for resuming and fold-in. */
void st_model_params(const st_model_header *h, st_als_params *p);

/* Writes m to path atomically. The header's counts, sizes, checksums and
 * file_bytes are computed here; the hyper-parameters are taken from m->h. */
int st_model_save(const char *path, const st_model *m, char *err);

/* Maps and verifies path. On failure m is left empty and err says what is
 * wrong with which file, and what to do. */
int st_model_load(const char *path, st_model *m, char *err);
/* The same checks, but path is read into a 64-byte aligned allocation that m
 * owns (RSS grows by the file's size; later changes to the file do not reach
 * m). A file that shrinks while being read is an error, one rewritten
 * meanwhile fails its checksums. */
int st_model_read(const char *path, st_model *m, char *err);

void st_model_free(st_model *m);

/* User u's factor vector: a pointer into U, or for an int8 model the row
 * dequantized (x_i = q_i * scale, in float) into buf (k floats). Every score
 * of an int8 user is computed from exactly these floats. */
const float *st_model_user(const st_model *m, uint32_t u, float *buf);

/* Quantizes rows of X (rows x k) to int8 with a symmetric scale per row:
 * scale = max |x_i| / 127, q_i = round(x_i / scale). */
void st_model_quantize(const float *X, uint64_t rows, uint32_t k, int8_t *q, float *scale);

/* The Gram matrix every fold-in of a user against m->V uses: V^T V, or
 * V^T diag(rho) V for a popularity-weighted model (k x k). -1 when out of
 * memory. */
int st_model_gram(const st_model *m, float *G);

/* Looks a meta value up ("key=value" lines); copies at most outlen-1 bytes.
 * Returns 0 when found. */
int st_model_meta(const st_model *m, const char *key, char *out, size_t outlen);

#endif
