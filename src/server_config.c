/* server_config: what an administrator changes while the server runs:
 * CONFIG SET's values and CONFIG RESETSTAT's counters.
 *
 * The settings CONFIG SET may change are the ones the loops, the heavy pool
 * and the maintenance thread read from srv->cfg each time they use them
 * (cmd_config.c's table says which); they are stored here, under the
 * config lock, one aligned word each, so a reader sees the old value or
 * the new one. What was derived from them at start is derived again: the
 * HTTP rate limiter's rate and burst, the journal's fsync policy.
 *
 * Counters are per loop with a single writer (stats.h); a reset stores
 * zeros from this thread, so a bump racing with it may survive the reset
 * (it is then counted after it), which a counter can live with.
 */
#include <string.h>

#include "server_impl.h"

void st_srv_update_config(st_server *srv, void (*fn)(st_server_config *cfg, void *arg), void *arg)
{
    pthread_mutex_lock(&srv->cfg_lock);
    fn(&srv->cfg, arg);
    pthread_mutex_lock(&srv->limit.lock);
    srv->limit.rate = srv->cfg.http_rate;
    srv->limit.burst = srv->cfg.http_burst > 0 ? srv->cfg.http_burst : srv->cfg.http_rate;
    pthread_mutex_unlock(&srv->limit.lock);
    if (srv->journal) st_journal_set_policy(srv->journal, srv->cfg.appendfsync);
    pthread_mutex_unlock(&srv->cfg_lock);
}

static void zero(atomic_uint_fast64_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++) atomic_store_explicit(&a[i], 0, memory_order_relaxed);
}

void st_srv_reset_stats(st_server *srv)
{
    /* st_stats is made of counters alone (stats.h), so it is zeroed as an array of them. */
    _Static_assert(sizeof(st_stats) % sizeof(atomic_uint_fast64_t) == 0, "st_stats holds counters only");
    st_slowlog_reset(&srv->slowlog);
    for (int i = 0; i < srv->nloops; i++)
        zero((atomic_uint_fast64_t *)&srv->loops[i].stats, sizeof(st_stats) / sizeof(atomic_uint_fast64_t));
}
