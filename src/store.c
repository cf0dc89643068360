/* store: the served model's lifecycle, the online writes and the journal's
 * maintenance (store.h).
 *
 * Locks, in the order they nest: reload_lock (one reload or compaction at a
 * time; held while a file loads), write_lock (a change and its journal record
 * in the same order; held while a reload swaps models), model_lock (the
 * current model pointer and the reload figures; never held long), maint_lock
 * (the maintenance thread's state).
 */
#include "store.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

struct st_store {
    const st_server_config *cfg;
    void (*on_swap)(void *arg);
    void *on_swap_arg;
    pthread_mutex_t model_lock;
    st_served *model;
    atomic_uint_fast64_t model_gen;
    pthread_mutex_t reload_lock; /* one reload at a time; held while a file loads */
    uint64_t reloads, reload_failures; /* these three under model_lock, which is never held long */
    char last_reload_error[256];
    /* Online writes: the journal, and the lock that puts a change and its
     * record in the same order (held while a reload swaps models, too). */
    st_journal *journal;
    pthread_mutex_t write_lock;
    st_journal_info start_info; /* what the journal held at start */
    double start_seconds;
    uint64_t refused_writes;    /* under write_lock: refused since the last log line */
    double refused_logged_at;
    /* The maintenance thread: compactions. */
    pthread_t maint;
    int maint_started;
    pthread_mutex_t maint_lock;
    pthread_cond_t maint_cond;
    int maint_stop, compact_requested, compacting, broken_logged;
    uint64_t compact_base;      /* the journal's size after the last compaction (or at start) */
    double forget_pending_since; /* monotonic time a FORGET was first seen not yet compacted; 0 = none */
};

st_store *st_store_new(const st_server_config *cfg, void (*on_swap)(void *arg), void *arg)
{
    st_store *store = st_calloc(1, sizeof *store);
    if (!store) return NULL;
    store->cfg = cfg;
    store->on_swap = on_swap;
    store->on_swap_arg = arg;
    pthread_mutex_init(&store->model_lock, NULL);
    pthread_mutex_init(&store->reload_lock, NULL);
    pthread_mutex_init(&store->write_lock, NULL);
    pthread_mutex_init(&store->maint_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&store->maint_cond, &ca);
    pthread_condattr_destroy(&ca);
    return store;
}

void st_store_free(st_store *store)
{
    if (!store) return;
    if (store->maint_started) {
        pthread_mutex_lock(&store->maint_lock);
        store->maint_stop = 1;
        pthread_cond_signal(&store->maint_cond);
        pthread_mutex_unlock(&store->maint_lock);
        pthread_join(store->maint, NULL);
    }
    if (store->journal) {
        char why[ST_ERRLEN];
        if (st_journal_close(store->journal, why) != 0) st_log(ST_LOG_WARNING, "journal: %s", why);
    }
    st_served_release(store->model);
    pthread_mutex_destroy(&store->model_lock);
    pthread_mutex_destroy(&store->reload_lock);
    pthread_mutex_destroy(&store->write_lock);
    pthread_mutex_destroy(&store->maint_lock);
    pthread_cond_destroy(&store->maint_cond);
    st_free(store);
}

uint64_t st_store_generation(st_store *store) { return atomic_load(&store->model_gen); }

st_journal *st_store_journal(st_store *store)
{
    /* Set before the first model is published under model_lock. */
    pthread_mutex_lock(&store->model_lock);
    st_journal *j = store->model ? store->journal : NULL;
    pthread_mutex_unlock(&store->model_lock);
    return j;
}

void st_store_get_info(st_store *store, st_server_info *info)
{
    /* Not reload_lock: INFO on an event loop must not wait for a file to load. */
    pthread_mutex_lock(&store->model_lock);
    info->reloads = store->reloads;
    info->reload_failures = store->reload_failures;
    snprintf(info->last_reload_error, sizeof info->last_reload_error, "%s", store->last_reload_error);
    pthread_mutex_unlock(&store->model_lock);
    st_journal *j = st_store_journal(store);
    if (j) {
        st_journal_status js;
        st_journal_get_status(j, &js);
        info->journal = 1;
        info->journal_bytes = js.bytes;
        info->journal_lag_events = js.last_seq > js.durable_seq ? js.last_seq - js.durable_seq : 0;
        info->journal_lag_seconds = info->journal_lag_events ? st_now() - js.synced_at : 0;
        info->journal_write_failures = js.append_failures + js.fsync_failures;
    }
}

/* The served model with a reference for the caller, or NULL while the
 * first model is still loading. */
st_served *st_store_acquire(st_store *store)
{
    pthread_mutex_lock(&store->model_lock);
    st_served *s = store->model;
    if (s) atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&store->model_lock);
    return s;
}

/* ---- the journal and the overlays ------------------------------------------ */

typedef struct {
    st_overlay *ov;
    const st_journal_info *info; /* at start: the id is read before the first record */
    uint64_t id;
} replay_ctx;

static int replay_record(const st_jrecord *r, void *vctx, char *err)
{
    replay_ctx *c = vctx;
    return st_overlay_replay(c->ov, c->info ? c->info->id : c->id, r, err);
}

/* Replays journal bytes [from, to) into ov and solves the users touched. */
static int replay_range(st_store *store, st_overlay *ov, uint64_t from, uint64_t to, char *err)
{
    replay_ctx c = {.ov = ov, .id = st_journal_id(store->journal)};
    st_journal_info info;
    if (st_journal_read(st_journal_path(store->journal), from, to, replay_record, &c, &info, err) != 0) return -1;
    return st_overlay_solve(ov, err);
}

/* What s's model says about this journal. A model trained with it holds its
 * records up to some seq, which replay skipped; if the journal ends before
 * that seq (an older copy was restored), new records must still come after
 * it, or the next reload would take them for records the model holds. */
static void check_lineage(st_store *store, const st_served *s)
{
    uint64_t id, seq;
    st_overlay_lineage(s->ov, &id, &seq);
    if (!id) return;
    uint64_t jid = st_journal_id(store->journal), last = st_journal_last_seq(store->journal);
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
        st_journal_raise_seq(store->journal, seq);
    }
}

static int reload_failed(st_store *store, st_served *s, const char *err)
{
    if (s) st_served_release(s);
    pthread_mutex_lock(&store->model_lock);
    store->reload_failures++;
    snprintf(store->last_reload_error, sizeof store->last_reload_error, "%s", err);
    pthread_mutex_unlock(&store->model_lock);
    st_log(ST_LOG_WARNING, "reload failed, still serving the previous model: %s", err);
    pthread_mutex_unlock(&store->reload_lock);
    return -1;
}

int st_store_reload(st_store *store, const char *path, char *err)
{
    pthread_mutex_lock(&store->reload_lock); /* also keeps compactions out while the journal is read */
    char cur[4096];
    pthread_mutex_lock(&store->model_lock);
    snprintf(cur, sizeof cur, "%s", path ? path : store->model->path);
    pthread_mutex_unlock(&store->model_lock);
    st_served *s = st_served_load(cur, err);
    if (!s) return reload_failed(store, NULL, err);
    /* The online changes carry over: the journal is replayed against the
     * new model, first up to where it ends now (writes go on meanwhile),
     * then, holding writes, the little appended since. */
    uint64_t e1 = 0;
    char why[ST_ERRLEN];
    if (store->journal) {
        e1 = st_journal_end(store->journal);
        if (replay_range(store, s->ov, 0, e1, why) != 0) {
            st_seterr(err, "replaying the journal against %s: %s", cur, why);
            return reload_failed(store, s, err);
        }
        pthread_mutex_lock(&store->write_lock);
        uint64_t e2 = st_journal_end(store->journal);
        if (e2 > e1 && replay_range(store, s->ov, e1, e2, why) != 0) {
            pthread_mutex_unlock(&store->write_lock);
            st_seterr(err, "replaying the journal against %s: %s", cur, why);
            return reload_failed(store, s, err);
        }
    }
    pthread_mutex_lock(&store->model_lock);
    st_served *old = store->model;
    s->generation = old->generation + 1;
    store->model = s;
    atomic_store(&store->model_gen, s->generation);
    store->reloads++;
    store->last_reload_error[0] = '\0';
    pthread_mutex_unlock(&store->model_lock);
    if (store->journal) {
        check_lineage(store, s);
        pthread_mutex_unlock(&store->write_lock);
    }
    /* Loops pick the new model up before their next request; the old one
     * is unmapped when the last loop or job holding it lets go. */
    st_served_release(old);
    st_log(ST_LOG_NOTICE, "reloaded: now serving %s (generation %llu)", cur, (unsigned long long)s->generation);
    pthread_mutex_unlock(&store->reload_lock);
    store->on_swap(store->on_swap_arg); /* idle loops take the new model up now, not at their next event */
    return 0;
}

int st_store_write(st_store *store, st_jrecord *r, st_scratch *sc, st_write_result *res, char *err)
{
    memset(res, 0, sizeof *res);
    if (!store->journal)
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
        if (locked) pthread_mutex_lock(&store->write_lock);
        st_served *sv = st_store_acquire(store);
        if (st_scratch_work(sc, st_overlay_work(sv->ov)) != 0) {
            if (locked) pthread_mutex_unlock(&store->write_lock);
            st_served_release(sv);
            return st_seterr(err, "ERR out of memory");
        }
        if (st_overlay_prepare(sv->ov, r, sc->work, &chg, why) != 0) {
            st_overlay_discard(&chg);
            if (locked) pthread_mutex_unlock(&store->write_lock);
            st_served_release(sv);
            return st_seterr(err, "ERR %s", why);
        }
        if (!locked) pthread_mutex_lock(&store->write_lock);
        int ok = store->model == sv ? st_overlay_check(sv->ov, &chg, why) : 0;
        if (ok < 0) {
            st_overlay_discard(&chg);
            pthread_mutex_unlock(&store->write_lock);
            st_served_release(sv);
            return st_seterr(err, "ERR %s", why);
        }
        if (ok == 0) {
            st_overlay_discard(&chg);
            pthread_mutex_unlock(&store->write_lock);
            st_served_release(sv);
            continue;
        }
        if (st_journal_append(store->journal, r, why) != 0) {
            st_overlay_discard(&chg);
            /* Logged at most once a second: a full disk under load refuses
             * every write. */
            store->refused_writes++;
            double now = st_now();
            if (now - store->refused_logged_at >= 1.0) {
                st_log(ST_LOG_WARNING, "journal: %llu writes refused since the last message: %s",
                       (unsigned long long)store->refused_writes, why);
                store->refused_writes = 0;
                store->refused_logged_at = now;
            }
            pthread_mutex_unlock(&store->write_lock);
            st_served_release(sv);
            return st_seterr(err, "MISCONF Errors writing to the journal: %s; the write was not applied", why);
        }
        res->seq = r->seq;
        res->existed = chg.existed;
        res->known_segment = chg.known_segment;
        res->score = chg.kind == ST_JREC_EVENT ? chg.score : NAN;
        st_overlay_commit(sv->ov, &chg);
        pthread_mutex_unlock(&store->write_lock);
        st_served_release(sv);
        return 0;
    }
}

int st_store_compact(st_store *store, char *err)
{
    if (!store->journal) return st_seterr(err, "ERR this server has no journal (start it with --journal FILE)");
    pthread_mutex_lock(&store->maint_lock);
    int busy = store->compacting || store->compact_requested;
    if (!busy) {
        store->compact_requested = 1;
        pthread_cond_signal(&store->maint_cond);
    }
    pthread_mutex_unlock(&store->maint_lock);
    if (busy) return st_seterr(err, "ERR a journal compaction is already in progress");
    return 0;
}

void st_store_get_journal(st_store *store, st_server_journal_info *info)
{
    memset(info, 0, sizeof *info);
    /* Set before the first model is published (load_first_model). */
    pthread_mutex_lock(&store->model_lock);
    st_journal *j = store->model ? store->journal : NULL;
    pthread_mutex_unlock(&store->model_lock);
    if (!j) return;
    info->has_journal = 1;
    st_journal_get_status(j, &info->j);
    info->path = st_journal_path(j);
    info->policy = st_journal_policy(j);
    info->id = st_journal_id(j);
    pthread_mutex_lock(&store->maint_lock);
    info->compacting = store->compacting || store->compact_requested;
    pthread_mutex_unlock(&store->maint_lock);
    info->start_records = store->start_info.records;
    info->start_torn_bytes = store->start_info.torn_bytes;
    info->start_torn_at = store->start_info.torn_at;
    info->start_seconds = store->start_seconds;
}

/* Compacts on request (JOURNAL COMPACT), when the journal has grown by
 * compact-percentage since the last compaction (and is past
 * compact-min-bytes), and forget-compact-delay seconds after a FORGET, so
 * that what it erased leaves the file too. */
static void *maint_main(void *arg)
{
    st_store *store = arg;
    const st_server_config *cfg = store->cfg;
    pthread_mutex_lock(&store->maint_lock);
    while (!store->maint_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        if (!store->compact_requested) pthread_cond_timedwait(&store->maint_cond, &store->maint_lock, &ts);
        if (store->maint_stop) break;
        const char *why = store->compact_requested ? "requested" : NULL;
        st_journal_status js;
        st_journal_get_status(store->journal, &js);
        double now = st_now();
        if (js.broken && !store->broken_logged) {
            st_log(ST_LOG_WARNING, "journal: out of service (%s): writes are refused until the server is restarted; "
                                   "reads go on",
                   js.last_error);
            store->broken_logged = 1;
        }
        int forgets = js.last_forget_seq > js.last_compaction.through_seq ||
                      (store->start_info.forgets > 0 && js.compactions == 0);
        if (!forgets || cfg->forget_compact_delay <= 0) store->forget_pending_since = 0;
        else if (store->forget_pending_since == 0) store->forget_pending_since = now;
        if (!why && cfg->compact_percentage && js.bytes >= cfg->compact_min_bytes && js.bytes > store->compact_base &&
            js.bytes - store->compact_base >= store->compact_base / 100 * cfg->compact_percentage)
            why = "the journal grew past compact-percentage";
        if (!why && store->forget_pending_since && now - store->forget_pending_since >= cfg->forget_compact_delay)
            why = "erasing what FORGETs erased from the file (forget-compact-delay)";
        if (!why || js.broken) {
            store->compact_requested = 0;
            continue;
        }
        store->compacting = 1;
        store->compact_requested = 0;
        pthread_mutex_unlock(&store->maint_lock);
        st_log(ST_LOG_NOTICE, "journal: compaction started (%s)", why);
        st_journal_compaction c;
        char err[ST_ERRLEN];
        pthread_mutex_lock(&store->reload_lock);
        int rc = st_journal_compact(store->journal, &c, err);
        pthread_mutex_unlock(&store->reload_lock);
        if (rc == 0)
            st_log(ST_LOG_NOTICE, "journal: compacted in %.3f s: %llu -> %llu bytes, %llu -> %llu records (%llu "
                                  "events of forgotten users and %llu older FORGETs dropped)",
                   c.seconds, (unsigned long long)c.bytes_before, (unsigned long long)c.bytes_after,
                   (unsigned long long)c.records_before, (unsigned long long)c.records_after,
                   (unsigned long long)c.events_erased, (unsigned long long)c.forgets_merged);
        else
            st_log(ST_LOG_WARNING, "journal: %s", err);
        pthread_mutex_lock(&store->maint_lock);
        store->compacting = 0;
        if (rc == 0) {
            store->compact_base = c.bytes_after;
            store->forget_pending_since = 0;
        } else if (store->forget_pending_since) {
            store->forget_pending_since = now; /* try again a delay later, not every second */
        }
    }
    pthread_mutex_unlock(&store->maint_lock);
    return NULL;
}


/* Loads the first model while the loops already answer (health checks,
 * and -LOADING or 503 for what needs a model), then publishes it. The
 * environment variable STARLING_TEST_LOAD_DELAY (seconds, at most 60) delays
 * the load, so that tests can see the server before its model is ready. */
int st_store_load(st_store *store, char *err)
{
    const char *delay = getenv("STARLING_TEST_LOAD_DELAY");
    double d = delay ? atof(delay) : 0;
    if (d > 0 && d <= 60) {
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    st_served *s = st_served_load(store->cfg->model_path, err);
    if (!s) return -1;
    s->generation = 1;
    /* The journal is replayed into the model's overlay before either is
     * visible: until then every command that needs a model, writes
     * included, answers -LOADING. */
    const st_server_config *cfg = store->cfg;
    if (cfg->journal) {
        double t0 = st_now();
        replay_ctx rc_ctx = {.ov = s->ov, .info = &store->start_info};
        store->journal = st_journal_open(cfg->journal, cfg->appendfsync, replay_record, &rc_ctx, &store->start_info, err);
        if (!store->journal) {
            st_served_release(s);
            return -1;
        }
        char why[ST_ERRLEN];
        if (st_overlay_solve(s->ov, why) != 0) {
            st_seterr(err, "%s: %s", cfg->journal, why);
            st_served_release(s);
            return -1;
        }
        store->start_seconds = st_now() - t0;
        const st_journal_info *ji = &store->start_info;
        st_overlay_stats os;
        st_overlay_get_stats(s->ov, &os);
        st_log(ST_LOG_NOTICE, "journal %s (%016llx, appendfsync %s): %llu records replayed in %.3f s (%llu events, "
                              "%llu forgets; %llu already in the model); %llu users online, %llu forgotten",
               cfg->journal, (unsigned long long)ji->id, st_appendfsync_name(cfg->appendfsync),
               (unsigned long long)ji->records, store->start_seconds, (unsigned long long)ji->events,
               (unsigned long long)ji->forgets, (unsigned long long)os.skipped_in_model, (unsigned long long)os.live,
               (unsigned long long)os.forgotten);
        if (ji->torn_bytes)
            st_log(ST_LOG_WARNING, "journal %s: the last record was torn (a write cut short by a crash): dropped %llu "
                                   "bytes at byte %llu; it was never acknowledged under appendfsync always",
                   cfg->journal, (unsigned long long)ji->torn_bytes, (unsigned long long)ji->torn_at);
        check_lineage(store, s);
        store->compact_base = ji->end;
        if (pthread_create(&store->maint, NULL, maint_main, store) != 0) {
            st_seterr(err, "cannot start the journal's maintenance thread");
            st_served_release(s);
            return -1;
        }
        store->maint_started = 1;
    }
    pthread_mutex_lock(&store->model_lock);
    store->model = s;
    atomic_store(&store->model_gen, 1);
    pthread_mutex_unlock(&store->model_lock);
    store->on_swap(store->on_swap_arg);
    return 0;
}
