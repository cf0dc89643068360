/* server_write: the server's write, reload and maintenance path.
 *
 * Online writes (EVENT, FORGET) are prepared in the served model's overlay
 * with no lock held, then checked, journaled and made visible in one step
 * under the write lock, so the journal's order is the order changes were
 * applied in. A reload loads and verifies the new file, rebuilds its overlay
 * from the journal (catching up, under the write lock, with the records
 * appended meanwhile) and swaps it in. The maintenance thread compacts the
 * journal. INFO's and /metrics' figures are read here too. Handlers reach
 * all of it through st_srv_ops (service.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "notify.h"
#include "server_impl.h"
#include "util.h"

const st_server_ops st_srv_ops = {
    .write = st_srv_write,
    .reload = st_srv_reload,
    .compact = st_srv_compact,
    .get_info = st_srv_get_info,
    .sum_stats = st_srv_sum_stats,
    .get_journal = st_srv_get_journal,
    .lock_clients = st_srv_lock_clients,
    .clients = st_srv_clients,
    .update_config = st_srv_update_config,
    .reset_stats = st_srv_reset_stats,
};

/* The served model with a reference for the caller, or NULL while the
 * first model is still loading. */
st_served *st_srv_model_acquire(st_server *srv)
{
    pthread_mutex_lock(&srv->model_lock);
    st_served *s = srv->model;
    if (s) atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&srv->model_lock);
    return s;
}

void st_srv_wake_all(st_server *srv)
{
    for (int i = 0; i < srv->nloops; i++) {
        uint64_t one = 1;
        if (write(srv->loops[i].evfd, &one, sizeof one) < 0) { /* already signalled */
        }
    }
}

/* ---- the journal and the overlays ------------------------------------------ */


int st_srv_replay_record(const st_jrecord *r, void *vctx, char *err)
{
    replay_ctx *c = vctx;
    return st_overlay_replay(c->ov, c->info ? c->info->id : c->id, r, err);
}

/* Replays journal bytes [from, to) into ov and solves the users touched. */
static int replay_range(st_server *srv, st_overlay *ov, uint64_t from, uint64_t to, char *err)
{
    replay_ctx c = {.ov = ov, .id = st_journal_id(srv->journal)};
    st_journal_info info;
    if (st_journal_read(st_journal_path(srv->journal), from, to, st_srv_replay_record, &c, &info, err) != 0) return -1;
    return st_overlay_solve(ov, err);
}

/* What s's model says about this journal. A model trained with it holds its
 * records up to some seq, which replay skipped; if the journal ends before
 * that seq (an older copy was restored), new records must still come after
 * it, or the next reload would take them for records the model holds. */
void st_srv_check_lineage(st_server *srv, const st_served *s)
{
    uint64_t id, seq;
    st_overlay_lineage(s->ov, &id, &seq);
    if (!id) return;
    uint64_t jid = st_journal_id(srv->journal), last = st_journal_last_seq(srv->journal);
    if (id != jid) {
        st_log(ST_LOG_NOTICE, "model %s was trained with journal %016llx, not with this one (%016llx): every record "
                              "of this journal applies on top of it",
               s->path, (unsigned long long)id, (unsigned long long)jid);
        return;
    }
    st_log(ST_LOG_NOTICE, "model %s holds this journal's records up to seq %llu; later ones apply on top", s->path,
           (unsigned long long)seq);
    if (seq > last) {
        st_log(ST_LOG_WARNING, "model %s holds records up to seq %llu but the journal ends at seq %llu (an older "
                               "copy of it?): new records are numbered from %llu",
               s->path, (unsigned long long)seq, (unsigned long long)last, (unsigned long long)seq + 1);
        st_journal_raise_seq(srv->journal, seq);
    }
}

static int reload_failed(st_server *srv, st_served *s, const char *path, const char *err)
{
    if (s) st_served_release(s);
    pthread_mutex_lock(&srv->model_lock);
    srv->reload_failures++;
    /* INFO is open to every reader: for a file a client named, not why. */
    snprintf(srv->last_reload_error, sizeof srv->last_reload_error, "%s",
             path ? "a file named by MODEL RELOAD could not be loaded (see the log)" : err);
    pthread_mutex_unlock(&srv->model_lock);
    st_log(ST_LOG_WARNING, "reload failed, still serving the previous model: %s", err);
    return -1;
}

/* st_srv_reload with reload_lock held. */
static int reload_locked(st_server *srv, const char *path, char *err)
{
    char cur[4096];
    pthread_mutex_lock(&srv->model_lock);
    snprintf(cur, sizeof cur, "%s", path ? path : srv->model->path);
    pthread_mutex_unlock(&srv->model_lock);
    st_served *s = st_served_load(cur, err);
    if (!s) return reload_failed(srv, NULL, path, err);
    st_segov_set_min_users(st_overlay_segments(s->ov), (uint32_t)srv->cfg.segment_min_users);
    /* The online changes carry over: the journal is replayed against the
     * new model, first up to where it ends now (writes go on meanwhile),
     * then, holding writes, the little appended since. */
    uint64_t e1 = 0;
    char why[ST_ERRLEN];
    if (srv->journal) {
        e1 = st_journal_end(srv->journal);
        if (replay_range(srv, s->ov, 0, e1, why) != 0) {
            st_seterr(err, "replaying the journal against %s: %s", cur, why);
            return reload_failed(srv, s, path, err);
        }
        pthread_mutex_lock(&srv->write_lock);
        uint64_t e2 = st_journal_end(srv->journal);
        if (e2 > e1 && replay_range(srv, s->ov, e1, e2, why) != 0) {
            pthread_mutex_unlock(&srv->write_lock);
            st_seterr(err, "replaying the journal against %s: %s", cur, why);
            return reload_failed(srv, s, path, err);
        }
    }
    pthread_mutex_lock(&srv->model_lock);
    st_served *old = srv->model;
    s->generation = old->generation + 1;
    srv->model = s;
    atomic_store(&srv->model_gen, s->generation);
    srv->reloads++;
    srv->last_reload_error[0] = '\0';
    pthread_mutex_unlock(&srv->model_lock);
    if (srv->journal) {
        st_srv_check_lineage(srv, s);
        pthread_mutex_unlock(&srv->write_lock);
    }
    /* Loops pick the new model up before their next request; the old one
     * is freed when the last loop or job holding it lets go. */
    st_served_release(old);
    st_log(ST_LOG_NOTICE, "reloaded: now serving %s (generation %llu)", cur, (unsigned long long)s->generation);
    return 0;
}

int st_srv_reload(st_server *srv, const char *path, char *err)
{
    pthread_mutex_lock(&srv->reload_lock); /* also keeps compactions out while the journal is read */
    st_notify_reloading("reloading the model");
    int rc = reload_locked(srv, path, err);
    /* READY=1 either way: a failed reload leaves the previous model serving. */
    st_notify(rc == 0 ? "READY=1\nSTATUS=serving the reloaded model"
                      : "READY=1\nSTATUS=reload failed, serving the previous model");
    pthread_mutex_unlock(&srv->reload_lock);
    if (rc == 0) st_srv_wake_all(srv); /* idle loops take the new model up now, not at their next event */
    return rc;
}

void st_srv_lost_writes(st_server *srv)
{
    uint64_t none = 0;
    /* Every model served until the rebuilt one: a reload running meanwhile
     * may have replayed the lost writes too. */
    if (!atomic_compare_exchange_strong(&srv->tainted_gen, &none, UINT64_MAX)) return;
    pthread_mutex_lock(&srv->maint_lock);
    srv->rollback_requested = 1;
    pthread_cond_signal(&srv->maint_cond);
    pthread_mutex_unlock(&srv->maint_lock);
}

/* After a failed fdatasync under appendfsync always (maintenance thread):
 * the writes it may have lost leave the journal file, and the served model
 * is rebuilt from what is durable (the served path reloaded, the journal
 * replayed), so no write that was not made durable is ever seen. Until the
 * rebuilt model is served, every reply computed on the old one is withheld
 * (reply_saw_journal). Returns 0, or -1 to be tried again. */
static int roll_back(st_server *srv)
{
    char err[ST_ERRLEN];
    uint64_t dropped = 0;
    pthread_mutex_lock(&srv->reload_lock);
    if (st_journal_rollback(srv->journal, &dropped, err) != 0)
        st_log(ST_LOG_WARNING, "journal: %s; they will be served (as a restart would replay them)", err);
    int rc = reload_locked(srv, NULL, err);
    pthread_mutex_unlock(&srv->reload_lock);
    if (rc != 0) {
        st_log(ST_LOG_WARNING, "journal: rebuilding the served model without the %llu writes a failed fsync lost "
                               "failed (%s): replies stay withheld; trying again",
               (unsigned long long)dropped, err);
        return -1;
    }
    /* Logged before the withheld replies are released, so whoever sees the rebuilt model
     * finds the log already saying why. */
    st_log(ST_LOG_WARNING, "journal: a failed fsync lost %llu writes; they were cut from the journal and the "
                           "served model was rebuilt without them; writes are refused (MISCONF) until a restart",
           (unsigned long long)dropped);
    atomic_store(&srv->tainted_gen, atomic_load(&srv->model_gen) - 1);
    st_srv_wake_all(srv);
    return 0;
}

int st_srv_write(st_server *srv, st_jrecord *r, st_scratch *sc, st_write_result *res, char *err)
{
    memset(res, 0, sizeof *res);
    if (!srv->journal)
        return st_seterr(err, "MISCONF this server has no journal, so a write would not survive a restart: start it "
                              "with --journal FILE");
    char why[ST_ERRLEN];
    st_overlay_change chg;
    /* Optimistic: the change is prepared (the user's vector solved, the
     * costly part) with no lock held, then checked, journaled and committed
     * under the write lock, and prepared again in the rare case another
     * write changed the same user, or a reload swapped models, meanwhile.
     * After a few such retries it is prepared under the lock. */
    for (int attempt = 0;; attempt++) {
        int locked = attempt >= 4;
        if (locked) pthread_mutex_lock(&srv->write_lock);
        st_served *sv = st_srv_model_acquire(srv);
        if (st_scratch_work(sc, st_overlay_work(sv->ov)) != 0) {
            if (locked) pthread_mutex_unlock(&srv->write_lock);
            st_served_release(sv);
            return st_seterr(err, "ERR out of memory");
        }
        if (st_overlay_prepare(sv->ov, r, sc->work, &chg, why) != 0) {
            st_overlay_discard(&chg);
            if (locked) pthread_mutex_unlock(&srv->write_lock);
            st_served_release(sv);
            return st_seterr(err, "ERR %s", why);
        }
        if (!locked) pthread_mutex_lock(&srv->write_lock);
        int ok = srv->model == sv ? st_overlay_check(sv->ov, &chg, why) : 0;
        if (ok < 0) {
            st_overlay_discard(&chg);
            pthread_mutex_unlock(&srv->write_lock);
            st_served_release(sv);
            return st_seterr(err, "ERR %s", why);
        }
        if (ok == 0) {
            st_overlay_discard(&chg);
            pthread_mutex_unlock(&srv->write_lock);
            st_served_release(sv);
            continue;
        }
        if (st_journal_append(srv->journal, r, why) != 0) {
            st_overlay_discard(&chg);
            /* Logged at most once a second: a full disk under load refuses
             * every write. */
            srv->refused_writes++;
            double now = st_now();
            if (now - srv->refused_logged_at >= 1.0) {
                st_log(ST_LOG_WARNING, "journal: %llu writes refused since the last message: %s",
                       (unsigned long long)srv->refused_writes, why);
                srv->refused_writes = 0;
                srv->refused_logged_at = now;
            }
            pthread_mutex_unlock(&srv->write_lock);
            st_served_release(sv);
            return st_seterr(err, "MISCONF Errors writing to the journal: %s; the write was not applied", why);
        }
        res->seq = r->seq;
        res->existed = chg.existed;
        res->known_segment = chg.known_segment;
        res->score = chg.kind == ST_JREC_EVENT ? chg.score : NAN;
        res->seg_members = chg.segchg.members;
        res->seg_used = chg.segchg.used;
        res->seg_visible = chg.segchg.visible;
        st_overlay_commit(sv->ov, &chg);
        pthread_mutex_unlock(&srv->write_lock);
        st_served_release(sv);
        return 0;
    }
}

int st_srv_compact(st_server *srv, char *err)
{
    if (!srv->journal) return st_seterr(err, "ERR this server has no journal (start it with --journal FILE)");
    pthread_mutex_lock(&srv->maint_lock);
    int busy = srv->compacting || srv->compact_requested;
    if (!busy) {
        srv->compact_requested = 1;
        pthread_cond_signal(&srv->maint_cond);
    }
    pthread_mutex_unlock(&srv->maint_lock);
    if (busy) return st_seterr(err, "ERR a journal compaction is already in progress");
    return 0;
}

void st_srv_get_journal(st_server *srv, st_server_journal_info *info)
{
    memset(info, 0, sizeof *info);
    /* Set before the first model is published (load_first_model). */
    pthread_mutex_lock(&srv->model_lock);
    st_journal *j = srv->model ? srv->journal : NULL;
    pthread_mutex_unlock(&srv->model_lock);
    if (!j) return;
    info->has_journal = 1;
    st_journal_get_status(j, &info->j);
    info->path = st_journal_path(j);
    info->policy = st_journal_policy(j);
    info->id = st_journal_id(j);
    pthread_mutex_lock(&srv->maint_lock);
    info->compacting = srv->compacting || srv->compact_requested;
    pthread_mutex_unlock(&srv->maint_lock);
    info->start_records = srv->start_info.records;
    info->start_torn_bytes = srv->start_info.torn_bytes;
    info->start_torn_at = srv->start_info.torn_at;
    info->start_seconds = srv->start_seconds;
}

/* Compacts on request (JOURNAL COMPACT), when the journal has grown by
 * compact-percentage since the last compaction (and is past
 * compact-min-bytes), and forget-compact-delay seconds after a FORGET, so
 * that what it erased leaves the file too. */
void *st_srv_maint_main(void *arg)
{
    st_server *srv = arg;
    const st_server_config *cfg = &srv->cfg;
    pthread_mutex_lock(&srv->maint_lock);
    while (!srv->maint_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        if (!srv->compact_requested) pthread_cond_timedwait(&srv->maint_cond, &srv->maint_lock, &ts);
        if (srv->maint_stop) break;
        if (srv->rollback_requested) {
            pthread_mutex_unlock(&srv->maint_lock);
            int rc = roll_back(srv);
            pthread_mutex_lock(&srv->maint_lock);
            srv->rollback_requested = rc != 0;
            continue;
        }
        const char *why = srv->compact_requested ? "requested" : NULL;
        st_journal_status js;
        st_journal_get_status(srv->journal, &js);
        double now = st_now();
        if (js.broken && !srv->broken_logged) {
            st_log(ST_LOG_WARNING, "journal: out of service (%s): writes are refused until the server is restarted; "
                                   "reads go on",
                   js.last_error);
            srv->broken_logged = 1;
        }
        int forgets = js.last_forget_seq > js.last_compaction.through_seq ||
                      (srv->start_info.forgets > 0 && js.compactions == 0);
        if (!forgets || cfg->forget_compact_delay <= 0) srv->forget_pending_since = 0;
        else if (srv->forget_pending_since == 0) srv->forget_pending_since = now;
        if (!why && cfg->compact_percentage && js.bytes >= cfg->compact_min_bytes && js.bytes > srv->compact_base &&
            js.bytes - srv->compact_base >= srv->compact_base / 100 * cfg->compact_percentage)
            why = "the journal grew past compact-percentage";
        if (!why && srv->forget_pending_since && now - srv->forget_pending_since >= cfg->forget_compact_delay)
            why = "erasing what FORGETs erased from the file (forget-compact-delay)";
        if (!why || js.broken) {
            srv->compact_requested = 0;
            continue;
        }
        srv->compacting = 1;
        srv->compact_requested = 0;
        pthread_mutex_unlock(&srv->maint_lock);
        st_log(ST_LOG_NOTICE, "journal: compaction started (%s)", why);
        st_journal_compaction c;
        char err[ST_ERRLEN];
        pthread_mutex_lock(&srv->reload_lock);
        int rc = st_journal_compact(srv->journal, &c, err);
        pthread_mutex_unlock(&srv->reload_lock);
        if (rc == 0)
            st_log(ST_LOG_NOTICE, "journal: compacted in %.3f s: %llu -> %llu bytes, %llu -> %llu records (%llu "
                                  "events of forgotten users and %llu older FORGETs dropped)",
                   c.seconds, (unsigned long long)c.bytes_before, (unsigned long long)c.bytes_after,
                   (unsigned long long)c.records_before, (unsigned long long)c.records_after,
                   (unsigned long long)c.events_erased, (unsigned long long)c.forgets_merged);
        else
            st_log(ST_LOG_WARNING, "journal: %s", err);
        pthread_mutex_lock(&srv->maint_lock);
        srv->compacting = 0;
        if (rc == 0) {
            srv->compact_base = c.bytes_after;
            srv->forget_pending_since = 0;
        } else if (srv->forget_pending_since) {
            srv->forget_pending_since = now; /* try again a delay later, not every second */
        }
    }
    pthread_mutex_unlock(&srv->maint_lock);
    return NULL;
}

/* ---- info ---------------------------------------------------------------- */

void st_srv_get_info(st_server *srv, st_server_info *info)
{
    memset(info, 0, sizeof *info);
    info->started = srv->started;
    info->started_unix = srv->started_unix;
    info->clients = atomic_load(&srv->nclients);
    info->blocked_clients = atomic_load(&srv->blocked);
    info->loops = (uint64_t)srv->nloops;
    info->heavy_threads = (uint64_t)srv->nheavy;
    pthread_mutex_lock(&srv->q_lock);
    info->heavy_queued = srv->q_len;
    pthread_mutex_unlock(&srv->q_lock);
    /* Not reload_lock: INFO on an event loop must not wait for a file to load. */
    pthread_mutex_lock(&srv->model_lock);
    info->reloads = srv->reloads;
    info->reload_failures = srv->reload_failures;
    snprintf(info->last_reload_error, sizeof info->last_reload_error, "%s", srv->last_reload_error);
    pthread_mutex_unlock(&srv->model_lock);
    info->tcp_addr = srv->tcp.fd >= 0 ? srv->tcp_addr : NULL;
    info->tcp_port = srv->tcp_port;
    info->unixsocket = srv->unx.fd >= 0 ? srv->cfg.unixsocket : NULL;
    info->maxclients = srv->cfg.maxclients;
    info->http_clients = atomic_load(&srv->nclients_http);
    info->http_addr = srv->http.fd >= 0 ? srv->http_addr : NULL;
    info->http_port = srv->http_port;
    /* srv->journal is set before the first model is published under
     * model_lock, so it is safe to read once a model has been seen. */
    pthread_mutex_lock(&srv->model_lock);
    st_journal *j = srv->model ? srv->journal : NULL;
    pthread_mutex_unlock(&srv->model_lock);
    if (j) {
        st_journal_status js;
        st_journal_get_status(j, &js);
        info->journal = 1;
        info->journal_bytes = js.bytes;
        info->journal_lag_events = js.last_seq > js.durable_seq ? js.last_seq - js.durable_seq : 0;
        info->journal_lag_seconds = info->journal_lag_events ? st_now() - js.synced_at : 0;
        info->journal_write_failures = js.append_failures + js.fsync_failures;
        info->journal_broken = js.broken;
        info->journal_rolled_back = js.rolled_back;
    }
}

void st_srv_sum_stats(st_server *srv, st_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < srv->nloops; i++) st_stats_add(out, &srv->loops[i].stats);
}
