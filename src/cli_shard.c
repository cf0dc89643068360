/* cli_shard: `starling shard`: a model split by user for serving behind twemproxy, with the matching nutcracker.yml
 * (with --journal, without the users the journal forgot: jinput.h).
 */
#include <string.h>

#include "cli.h"
#include "shard.h"
#include "util.h"

int cli_shard(int argc, char **argv)
{
    uint64_t shards = 2;
    const char *out = NULL, *hash_tag = NULL;
    int hash = 0, dist = 0, listen_port = 22121, port_base = 7001;
    const char *jv[1];
    st_opt_list journals = {jv, 0, 1};
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
        {"journal", 'j', ST_OPT_LIST, &journals, "FILE",
         "the journal of the server serving MODEL: leave out every user it forgot", 0},
        {0},
    };
    const st_cmd_doc doc = {
        "shard", "MODEL --shards N -o DIR [--journal FILE] [options]",
        "Split a model by user for serving behind twemproxy (nutcracker): user u goes to the\n"
        "shard twemproxy routes the key u:<u> to, every shard keeps all segments. Writes\n"
        "DIR/shard-<i>.model and the matching DIR/nutcracker.yml.",
        "Start one `starling serve DIR/shard-<i>.model --port <port-base + i>` per shard and\n"
        "`nutcracker -c DIR/nutcracker.yml`; docs/SCALING.md walks through it.\n\n"
        "With --journal (the journal of the server serving MODEL; read-only), no shard holds a\n"
        "user the journal forgot. Its online events are not folded in: retrain with `starling\n"
        "train --journal` first to keep them, since each shard server starts a journal of its own."};
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
    st_cli_erased e;
    if ((rc = st_cli_load_erased("shard", pos[0], journals.n ? jv[0] : NULL, &e)) != ST_EXIT_OK) return rc;
    uint64_t counts[64];
    rc = st_shard_write(e.m, &spec, out, listen_port, port_base, counts, err);
    st_cli_erased_free(&e);
    if (rc != 0) return st_cli_fail("shard", "%s", err);
    for (uint32_t s = 0; s < spec.shards; s++)
        printf("%s/shard-%u.model\t%llu users\n", out, s, (unsigned long long)counts[s]);
    printf("%s/nutcracker.yml\n", out);
    return ST_EXIT_OK;
}
