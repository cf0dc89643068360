/* cli_import: `starling import`: a model from factors trained elsewhere (.npy, text or JSON lines), with the interactions they came from.
 */
#include <string.h>

#include "cli.h"
#include "interop.h"
#include "util.h"

int cli_import(int argc, char **argv)
{
    st_import_spec spec;
    memset(&spec, 0, sizeof spec);
    st_read_opts_default(&spec.read);
    const char *out = NULL, *history = NULL;
    const st_opt opts[] = {
        {"output", 'o', ST_OPT_STRING, &out, "MODEL", "where to write the model (required)", 0},
        {"user-factors", 0, ST_OPT_STRING, &spec.user_factors, "FILE",
         "user factors: .npy (with --user-ids), or text lines `id,f1,f2,...`, `id,[f1,...]`, JSON lines", 0},
        {"segment-factors", 0, ST_OPT_STRING, &spec.segment_factors, "FILE", "segment factors, the same forms", 0},
        {"user-ids", 0, ST_OPT_STRING, &spec.user_ids, "FILE", "user ids for .npy factors, one per line, in row order",
         0},
        {"segment-ids", 0, ST_OPT_STRING, &spec.segment_ids, "FILE", "segment ids for .npy factors", 0},
        {"history", 0, ST_OPT_STRING, &history, "EVENTS",
         "the events the factors were trained on (for --exclude-seen, EXPLAIN, popularity)", 0},
        {0},
    };
    const st_cmd_doc doc = {
        "import", "[DIR] -o MODEL [options]",
        "Build a model from factors trained elsewhere: a directory written by `starling export`,\n"
        "or --user-factors and --segment-factors files (.npy with id lists, or text such as Spark\n"
        "MLlib ALS factors written as `id,[f1, f2, ...]` lines or JSON lines {\"id\":..,\"features\":[..]}).",
        "Without a history the model still scores, but has no training interactions to exclude\n"
        "and no popularity prior."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos > 1) return st_cli_usage(&doc, "at most one DIR");
    if (!out) return st_cli_usage(&doc, "-o MODEL is required");
    if (npos == 1) spec.dir = pos[0];
    if (!spec.dir && (!spec.user_factors || !spec.segment_factors))
        return st_cli_usage(&doc, "give an export DIR, or both --user-factors and --segment-factors");
    char *hist[1] = {(char *)history};
    if (history) {
        spec.history = hist;
        spec.nhistory = 1;
    }
    char err[ST_ERRLEN];
    if (st_import(&spec, out, err) != 0) return st_cli_fail("import", "%s", err);
    return ST_EXIT_OK;
}
