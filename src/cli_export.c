/* cli_export: `starling export`: a model's factors (.npy), ids, history and hyper-parameters (model.json), for other tools.
 */

#include "cli.h"
#include "interop.h"
#include "util.h"

int cli_export(int argc, char **argv)
{
    const st_opt opts[] = {{0}};
    const st_cmd_doc doc = {
        "export", "MODEL DIR",
        "Write a model's factors and ids as files other tools read: DIR/user_factors.npy and\n"
        "DIR/segment_factors.npy (float32, one row per id, numpy.load reads them), DIR/users.txt and\n"
        "DIR/segments.txt (the ids in row order, one per line), DIR/history.csv (the training\n"
        "interactions) and DIR/model.json (the header). `starling import DIR` reads them back.",
        NULL};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos != 2) return st_cli_usage(&doc, "expected MODEL and DIR, got %d arguments", npos);
    st_model m;
    char err[ST_ERRLEN];
    if (st_model_load(pos[0], &m, err) != 0) return st_cli_fail("export", "%s", err);
    rc = st_export(&m, pos[1], err);
    st_model_free(&m);
    if (rc != 0) return st_cli_fail("export", "%s", err);
    return ST_EXIT_OK;
}
