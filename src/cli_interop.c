/* cli_interop: `starling export` and `starling import`: models to and from
 * files other tools read and write (NumPy .npy, text, JSON). */
#include <string.h>

#include "cli.h"
#include "interop.h"
#include "model.h"
#include "shard.h"
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

int cli_shard(int argc, char **argv)
{
    uint64_t shards = 2;
    const char *out = NULL, *hash_tag = NULL;
    int hash = 0, dist = 0, listen_port = 22121, port_base = 7001;
    const st_opt opts[] = {
        {"shards", 0, ST_OPT_U64, &shards, "N", "number of shards (1 to 64)", 0},
        {"output", 'o', ST_OPT_STRING, &out, "DIR", "where to write shard-<i>.model and nutcracker.yml (required)", 0},
        {"hash", 0, ST_OPT_CHOICE, &hash, NULL, "twemproxy's key hash",
         "fnv1a_64|fnv1_64|fnv1a_32|fnv1_32|md5|crc32a|one_at_a_time"},
        {"distribution", 0, ST_OPT_CHOICE, &dist, NULL, "twemproxy's distribution", "ketama|modula"},
        {"hash-tag", 0, ST_OPT_STRING, &hash_tag, "XY", "twemproxy hash_tag: two characters, e.g. {} (default none)",
         0},
        {"listen", 0, ST_OPT_INT, &listen_port, "PORT", "the proxy's port in nutcracker.yml", 0},
        {"port-base", 0, ST_OPT_INT, &port_base, "PORT", "shard i listens on PORT + i in nutcracker.yml", 0},
        {0},
    };
    const st_cmd_doc doc = {
        "shard", "MODEL --shards N -o DIR [options]",
        "Split a model by user for serving behind twemproxy (nutcracker): user u goes to the\n"
        "shard twemproxy routes the key u:<u> to, every shard keeps all segments. Writes\n"
        "DIR/shard-<i>.model and the matching DIR/nutcracker.yml.",
        "Start one `starling serve DIR/shard-<i>.model --port <port-base + i>` per shard and\n"
        "`nutcracker -c DIR/nutcracker.yml`; docs/SCALING.md walks through it."};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos != 1) return st_cli_usage(&doc, "expected one MODEL");
    if (!out) return st_cli_usage(&doc, "-o DIR is required");
    char err[ST_ERRLEN];
    st_shard_spec spec;
    if (st_shard_spec_init(&spec, shards > 64 ? 0 : (uint32_t)shards, err) != 0) return st_cli_usage(&doc, "%s", err);
    spec.hash = hash;
    spec.dist = dist ? ST_DIST_MODULA : ST_DIST_KETAMA;
    if (hash_tag) {
        if (strlen(hash_tag) != 2) return st_cli_usage(&doc, "--hash-tag must be two characters, e.g. {}");
        memcpy(spec.hash_tag, hash_tag, 3);
    }
    if (listen_port < 1 || listen_port > 65535 || port_base < 1 || port_base + (int)shards > 65536)
        return st_cli_usage(&doc, "ports must be between 1 and 65535");
    st_model m;
    if (st_model_load(pos[0], &m, err) != 0) return st_cli_fail("shard", "%s", err);
    uint64_t counts[64];
    rc = st_shard_write(&m, &spec, out, listen_port, port_base, counts, err);
    if (rc != 0) {
        st_model_free(&m);
        return st_cli_fail("shard", "%s", err);
    }
    for (uint32_t s = 0; s < spec.shards; s++)
        printf("%s/shard-%u.model\t%llu users\n", out, s, (unsigned long long)counts[s]);
    printf("%s/nutcracker.yml\n", out);
    st_model_free(&m);
    return ST_EXIT_OK;
}

int cli_quantize(int argc, char **argv)
{
    const char *out = NULL;
    const st_opt opts[] = {
        {"output", 'o', ST_OPT_STRING, &out, "MODEL", "where to write the int8 model (required)", 0},
        {0},
    };
    const st_cmd_doc doc = {"quantize", "MODEL -o OUT",
                            "Write a copy of MODEL whose user factors are int8 with a scale per row: a quarter of\n"
                            "the bytes per user. Every score is computed from the dequantized values.",
                            NULL};
    char *pos[argc > 0 ? argc : 1];
    int npos, rc = st_cli_parse(&doc, opts, argc, argv, pos, &npos);
    if (rc != ST_CLI_GO) return rc;
    if (npos != 1) return st_cli_usage(&doc, "expected one MODEL");
    if (!out) return st_cli_usage(&doc, "-o OUT is required");
    st_model m;
    char err[ST_ERRLEN];
    if (st_model_load(pos[0], &m, err) != 0) return st_cli_fail("quantize", "%s", err);
    if (m.Uq) {
        st_model_free(&m);
        return st_cli_fail("quantize", "%s already has int8 user factors", pos[0]);
    }
    int8_t *q = st_malloc((size_t)m.users * m.k + 1);
    float *scale = st_malloc(((size_t)m.users + 1) * sizeof *scale);
    if (!q || !scale) {
        st_free(q);
        st_free(scale);
        st_model_free(&m);
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
    st_model_free(&m);
    if (rc != 0) return st_cli_fail("quantize", "%s", err);
    return ST_EXIT_OK;
}
