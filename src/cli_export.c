/* cli_export: `starling export`: a model's factors (.npy), ids, history and hyper-parameters (model.json), for other tools
 * (with --journal, without the users the journal forgot: jinput.h).
 */

#include "cli.h"
#include "interop.h"
#include "util.h"

int cli_export(int argc, char **argv)
{
    const char *jv[1];
    st_opt_list journals = {jv, 0, 1};
    const st_opt opts[] = {
        {"journal", 'j', ST_OPT_LIST, &journals, "FILE",
         "the journal of the server serving MODEL: leave out every user it forgot", 0},
        {0},
    };
    const st_cmd_doc doc = {
        "export", "MODEL DIR [--journal FILE]",
        "Write a model's factors and ids as files other tools read: DIR/user_factors.npy and\n"
        "DIR/segment_factors.npy (float32, one row per id, numpy.load reads them), DIR/users.txt and\n"
        "DIR/segments.txt (the ids in row order, one per line), DIR/history.csv (the training\n"
        "interactions) and DIR/model.json (the header). `starling import DIR` reads them back.",
        "With --journal (read-only; a server may be appending to it), every user the journal\n"
        "forgot is left out: no row, id or history line of theirs is written (the files\n"
        "describe a model without them). Online events are not folded in; they stay in the\n"
        "journal. Pass it whenever MODEL is served with a journal."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos != 2) return st_cli_usage(&doc, "expected MODEL and DIR, got %d arguments", npos);
    st_cli_erased e;
    if ((rc = st_cli_load_erased("export", pos[0], journals.n ? jv[0] : NULL, &e)) != ST_EXIT_OK) return rc;
    char err[ST_ERRLEN];
    rc = st_export(e.m, pos[1], err);
    st_cli_erased_free(&e);
    if (rc != 0) return st_cli_fail("export", "%s", err);
    return ST_EXIT_OK;
}
