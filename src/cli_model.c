/* cli_model: how the batch commands that read a model take a server's
 * journal (--journal): the option's checks, the messages, and what each
 * kind of command loads. jinput.c does the work: st_jmodel for the
 * commands that answer as the server does (`audience`, `segments`,
 * `score`), st_jinput_erase for the ones that write a model or its files
 * (`export`, `shard`, `quantize`). Every read of a journal is read-only.
 */
#include <string.h>

#include "cli.h"
#include "util.h"

int st_cli_journals(const st_cmd_doc *doc, const st_opt_list *journals, int nmodels)
{
    if (journals->n == 0 || journals->n == nmodels) return ST_CLI_GO;
    return st_cli_usage(doc, "%d model file%s and %d --journal: give one journal per model file, in the same order, or "
                             "none",
                        nmodels, nmodels == 1 ? "" : "s", journals->n);
}

/* A journal's error: the reader's messages name the file already. */
static int journal_fail(const char *cmd, const char *journal, const char *err)
{
    if (strncmp(err, journal, strlen(journal)) == 0) return st_cli_fail(cmd, "--journal %s", err);
    return st_cli_fail(cmd, "--journal %s: %s", journal, err);
}

/* A record a server is still appending looks torn: it is left out. */
static void report_torn(const char *cmd, const char *journal, uint64_t bytes)
{
    if (bytes)
        fprintf(stderr, "starling %s: journal %s: its last %llu bytes are a record still being written, or torn: left "
                        "out\n",
                cmd, journal, (unsigned long long)bytes);
}

int st_cli_model_load(const char *cmd, const char *path, st_jmodel *jm)
{
    char err[ST_ERRLEN];
    if (st_jmodel_load(path, jm, err) != 0) return st_cli_fail(cmd, "%s", err);
    return ST_EXIT_OK;
}

int st_cli_model_replay(const char *cmd, const char *path, st_jmodel *jm, const char *journal, st_jrecord_fn check,
                        void *ctx, uint64_t *id)
{
    char err[ST_ERRLEN];
    st_jinput_use use;
    if (st_jmodel_replay(jm, journal, check, ctx, &use, err) != 0) return journal_fail(cmd, journal, err);
    /* What was applied, on stderr: the operator's proof, and the server's warnings. */
    st_overlay_stats os;
    st_overlay_get_stats(jm->ov, &os);
    fprintf(stderr, "starling %s: journal %s (%016llx) up to seq %llu applied to %s: %llu events, %llu forgets (%llu "
                    "already in the model); %llu users changed online, %llu forgotten\n",
            cmd, journal, (unsigned long long)use.id, (unsigned long long)use.last_seq, path,
            (unsigned long long)use.events, (unsigned long long)use.forgets, (unsigned long long)os.skipped_in_model,
            (unsigned long long)os.live, (unsigned long long)os.forgotten);
    report_torn(cmd, journal, use.torn_bytes);
    if (id) *id = use.id;
    uint64_t lid, seq;
    st_overlay_lineage(jm->ov, &lid, &seq);
    if (lid == use.id && seq > use.last_seq)
        fprintf(stderr, "starling %s: %s holds records of journal %s up to seq %llu, but the journal ends at seq %llu "
                        "(an older copy of it?)\n",
                cmd, path, journal, (unsigned long long)seq, (unsigned long long)use.last_seq);
    return ST_EXIT_OK;
}

int st_cli_load_user(const char *cmd, const char *path, const char *journal, const char *user, st_jmodel *jm,
                     st_juser *u)
{
    int rc = st_cli_model_load(cmd, path, jm);
    if (rc == ST_EXIT_OK && journal) rc = st_cli_model_replay(cmd, path, jm, journal, NULL, NULL, NULL);
    if (rc == ST_EXIT_OK) {
        st_jmodel_user(jm, user, strlen(user), u);
        if (u->known) return ST_EXIT_OK;
        if (u->forgotten) rc = st_cli_fail(cmd, "unknown user '%s' (the journal %s forgot it)", user, journal);
        else rc = st_cli_fail(cmd, "unknown user '%s' (not in %s, which has %u users)", user, path, jm->m.users);
    }
    st_jmodel_free(jm);
    return rc;
}

int st_cli_need_calibration(const char *cmd, const char *path, const st_model *m)
{
    if (m->h.flags & ST_MODEL_CALIBRATED) return ST_EXIT_OK;
    return st_cli_fail(cmd, "--calibrated: %s has no calibration; fit one with `starling eval EVENTS --split SPEC -o "
                            "MODEL` or `starling tune ... -o MODEL`",
                       path);
}

int st_cli_load_erased(const char *cmd, const char *path, const char *journal, st_cli_erased *e)
{
    char err[ST_ERRLEN];
    memset(e, 0, sizeof *e);
    if (st_model_load(path, &e->src, err) != 0) return st_cli_fail(cmd, "%s", err);
    e->loaded = 1;
    e->m = &e->src;
    if (!journal) return ST_EXIT_OK;
    st_forgotten f;
    st_jinput_use use;
    int rc = ST_EXIT_OK;
    if (st_jinput_forgotten(journal, &f, &use, err) != 0) {
        rc = journal_fail(cmd, journal, err);
    } else {
        if (st_jinput_erase(&e->src, &f, &e->erased, err) != 0) rc = st_cli_fail(cmd, "%s", err);
        st_jinput_forgotten_free(&f);
    }
    if (rc != ST_EXIT_OK) {
        st_cli_erased_free(e);
        return rc;
    }
    e->m = &e->erased.m;
    fprintf(stderr, "starling %s: journal %s (%016llx) up to seq %llu forgot %llu users: %llu of them left out of %s's "
                    "%u users\n",
            cmd, journal, (unsigned long long)use.id, (unsigned long long)use.last_seq,
            (unsigned long long)use.forgotten, (unsigned long long)e->erased.dropped, path, e->src.users);
    report_torn(cmd, journal, use.torn_bytes);
    return ST_EXIT_OK;
}

void st_cli_erased_free(st_cli_erased *e)
{
    st_jerased_free(&e->erased);
    if (e->loaded) st_model_free(&e->src);
    memset(e, 0, sizeof *e);
}
