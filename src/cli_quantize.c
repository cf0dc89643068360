/* cli_quantize: `starling quantize`: a model with int8 user factors (a quarter of the bytes); with --journal, without
 * the users the journal forgot (jinput.h).
 */

#include "cli.h"
#include "util.h"

int cli_quantize(int argc, char **argv)
{
    const char *out = NULL;
    const char *jv[1];
    st_opt_list journals = {jv, 0, 1};
    const st_opt opts[] = {
        {"output", 'o', ST_OPT_STRING, &out, "MODEL", "where to write the int8 model (required)", 0},
        {"journal", 'j', ST_OPT_LIST, &journals, "FILE",
         "the journal of the server serving MODEL: leave out every user it forgot", 0},
        {0},
    };
    const st_cmd_doc doc = {"quantize", "MODEL -o OUT [--journal FILE]",
                            "Write a copy of MODEL whose user factors are int8 with a scale per row: a quarter of\n"
                            "the bytes per user. Every score is computed from the dequantized values.",
                            "With --journal (read-only; a server may be appending to it), OUT leaves out every\n"
                            "user the journal forgot. Online events are not folded in: serve OUT with the same\n"
                            "journal and they apply on top of it, as they did on top of MODEL."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos != 1) return st_cli_usage(&doc, "expected one MODEL");
    if (!out) return st_cli_usage(&doc, "-o OUT is required");
    st_cli_erased e;
    if ((rc = st_cli_load_erased("quantize", pos[0], journals.n ? jv[0] : NULL, &e)) != ST_EXIT_OK) return rc;
    const st_model m = *e.m;
    char err[ST_ERRLEN];
    if (m.Uq) {
        st_cli_erased_free(&e);
        return st_cli_fail("quantize", "%s already has int8 user factors", pos[0]);
    }
    int8_t *q = st_malloc((size_t)m.users * m.k + 1);
    float *scale = st_malloc(((size_t)m.users + 1) * sizeof *scale);
    if (!q || !scale) {
        st_free(q);
        st_free(scale);
        st_cli_erased_free(&e);
        return st_cli_fail("quantize", "out of memory");
    }
    st_model_quantize(m.U, m.users, m.k, q, scale);
    st_model qm = m;
    qm.map = NULL;
    qm.U = NULL;
    qm.Uq = q;
    qm.Uscale = scale;
    rc = st_model_save(out, &qm, err);
    st_free(q);
    st_free(scale);
    st_cli_erased_free(&e);
    if (rc != 0) return st_cli_fail("quantize", "%s", err);
    return ST_EXIT_OK;
}
