/* cli_info: `starling info`: a model's header, its checks and its card (the evaluation figures in its META).
 */
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "util.h"

static void print_time(FILE *f, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    char buf[64];
    if (gmtime_r(&tt, &tm) && strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm))
        fprintf(f, "%s", buf);
    else
        fprintf(f, "%lld", (long long)t);
}

int cli_info(int argc, char **argv)
{
    int json = 0;
    const st_opt opts[] = {
        {"json", 0, ST_OPT_FLAG, &json, NULL, "print the header as JSON", 0},
        {0},
    };
    const st_cmd_doc doc = {"info", "MODEL [--json]",
                            "Print a model's header: dimensions, hyper-parameters, seed, data fingerprint,\n"
                            "training loss, and the sections of the file (verifying every checksum).",
                            NULL};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos != 1) return st_cli_usage(&doc, "expected one MODEL, got %d arguments", npos);
    st_model m;
    char err[ST_ERRLEN];
    if (st_model_load(pos[0], &m, err) != 0) return st_cli_fail("info", "%s", err);
    const st_model_header *h = &m.h;
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "path", json_string(pos[0]));
        json_object_set_new(o, "format_version", json_integer(h->version));
        json_object_set_new(o, "users", json_integer(h->users));
        json_object_set_new(o, "segments", json_integer(h->segments));
        json_object_set_new(o, "factors", json_integer(h->factors));
        json_object_set_new(o, "user_factors", json_string((h->flags & ST_MODEL_INT8) ? "int8" : "float32"));
        json_object_set_new(o, "nnz", json_integer((json_int_t)h->nnz));
        json_object_set_new(o, "events", json_integer((json_int_t)h->events));
        json_object_set_new(o, "iterations", json_integer(h->iterations));
        json_object_set_new(o, "solver", json_string(st_solver_name((st_solver)h->solver)));
        json_object_set_new(o, "cg_steps", json_integer(h->cg_steps));
        json_object_set_new(o, "confidence", json_string(st_conf_name((st_conf_scheme)h->confidence)));
        json_object_set_new(o, "alpha", json_real(h->alpha));
        json_object_set_new(o, "eps", json_real(h->eps));
        json_object_set_new(o, "lambda", json_real(h->lambda));
        json_object_set_new(o, "regularization", json_string(st_reg_name((st_reg_scheme)h->regularization)));
        json_object_set_new(o, "unobserved_weight", json_real(h->unobserved_weight > 0 ? h->unobserved_weight : 1));
        json_object_set_new(o, "missing_weight", json_string(st_missing_name((st_missing_scheme)h->missing_weight)));
        json_object_set_new(o, "missing_exponent", json_real(h->missing_exponent));
        json_object_set_new(o, "seed", json_integer((json_int_t)h->seed));
        json_object_set_new(o, "prior_weight", json_real(h->prior_weight));
        json_object_set_new(o, "prior_shape", json_string(st_prior_shape_name(h->flags & ST_MODEL_PRIOR_LINEAR)));
        char fp[32];
        snprintf(fp, sizeof fp, "%016llx", (unsigned long long)h->fingerprint);
        json_object_set_new(o, "fingerprint", json_string(fp));
        json_object_set_new(o, "created", json_integer(h->created));
        json_object_set_new(o, "final_loss", json_real(h->final_loss));
        json_object_set_new(o, "file_bytes", json_integer((json_int_t)h->file_bytes));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s) puts(s);
        free(s);
        json_decref(o);
        st_model_free(&m);
        return ST_EXIT_OK;
    }
    printf("model          %s\n", pos[0]);
    printf("format         starling model, version %u, %llu bytes, %u sections (checksums verified)\n", h->version,
           (unsigned long long)h->file_bytes, h->nsections);
    printf("users          %u\n", h->users);
    printf("segments       %u\n", h->segments);
    printf("factors        %u (user factors %s)\n", h->factors,
           (h->flags & ST_MODEL_INT8) ? "int8 with a scale per row" : "float32");
    printf("interactions   %llu distinct pairs from %llu events\n", (unsigned long long)h->nnz,
           (unsigned long long)h->events);
    printf("fingerprint    %016llx\n", (unsigned long long)h->fingerprint);
    printf("created        ");
    print_time(stdout, h->created);
    printf("\n");
    printf("iterations     %u of %u\n", h->iterations, h->iterations_asked);
    printf("solver         %s", st_solver_name((st_solver)h->solver));
    if (h->solver == ST_SOLVER_CG) printf(" (%u steps)", h->cg_steps);
    printf("\n");
    printf("confidence     %s, c = 1 + %g ", st_conf_name((st_conf_scheme)h->confidence), h->alpha);
    if (h->confidence == ST_CONF_LOG) printf("log(1 + r / %g)\n", h->eps);
    else if (h->confidence == ST_CONF_BM25) printf("bm25(r; k1 %g, b %g)\n", h->bm25_k1, h->bm25_b);
    else printf("r\n");
    printf("regularization %s, lambda %g", st_reg_name((st_reg_scheme)h->regularization), h->lambda);
    if (h->regularization == ST_REG_FREQUENCY) printf(" (n + %g N)^%g", h->reg_alpha0, h->reg_nu);
    printf("\n");
    if (h->unobserved_weight > 0 && h->unobserved_weight != 1) printf("unobserved     weight %g\n", h->unobserved_weight);
    if (h->missing_weight == ST_MISSING_POPULARITY)
        printf("unobserved     weighted by segment popularity, exponent %g\n", h->missing_exponent);
    if (h->half_life > 0) {
        printf("time decay     half-life %g s, relative to ", h->half_life);
        if (isnan(h->decay_now)) printf("the newest event\n");
        else {
            print_time(stdout, (int64_t)h->decay_now);
            printf("\n");
        }
    }
    printf("seed           %llu\n", (unsigned long long)h->seed);
    printf("threads        %u (0 = every CPU)\n", h->threads);
    printf("final loss     %.6f\n", h->final_loss);
    if (h->flags & ST_MODEL_CALIBRATED) printf("calibration    p = 1 / (1 + exp(-(%g score + %g)))\n", h->calib_a, h->calib_b);
    if (h->prior_weight != 0)
        printf("prior weight   %g (score = U.V + w %s)\n", h->prior_weight,
               h->flags & ST_MODEL_PRIOR_LINEAR ? "pop / max pop" : "log(1 + pop) / log(1 + max pop)");
    if (m.meta_len) {
        printf("metadata\n");
        const char *p = m.meta, *end = m.meta + m.meta_len;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            printf("  %.*s\n", (int)(le - p), p);
            p = le + 1;
        }
    }
    st_model_free(&m);
    return ST_EXIT_OK;
}
