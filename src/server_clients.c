/* server_clients: every connection of every loop, for CLIENT LIST, INFO and
 * KILL.
 *
 * Each loop owns its connections and is the only thread that reads their
 * sockets, changes their buffers or frees them. Another loop may still need
 * to see them (CLIENT LIST run on loop 0 lists loop 1's clients) or end them
 * (CLIENT KILL): the lists are linked and unlinked under one server-wide
 * client lock, which this file takes to walk them; the figures a list line
 * shows are published by the owning loop in relaxed atomics after each
 * service (st_srv_client_publish), so a reader never touches a buffer
 * another thread is changing. A kill only marks the connection and wakes its
 * loop through the loop's eventfd; the loop closes it (st_srv_reap_killed),
 * so a connection is never closed under the thread serving it.
 */
#include <stdio.h>
#include <unistd.h>

#include "server_impl.h"
#include "util.h"

void st_srv_client_publish(st_client *c)
{
    atomic_store_explicit(&c->pub_qbuf, c->in_len - c->in_start, memory_order_relaxed);
    atomic_store_explicit(&c->pub_icap, c->in_cap, memory_order_relaxed);
    atomic_store_explicit(&c->pub_obl, c->out.len - c->out_pos, memory_order_relaxed);
    atomic_store_explicit(&c->pub_omem, c->out.cap, memory_order_relaxed);
    atomic_store_explicit(&c->pub_active_ms, (uint64_t)(c->last_active * 1000.0), memory_order_relaxed);
    atomic_store_explicit(&c->pub_blocked, c->blocked, memory_order_relaxed);
}

void st_srv_lock_clients(st_server *srv, int on)
{
    if (on) pthread_mutex_lock(&srv->clients_lock);
    else pthread_mutex_unlock(&srv->clients_lock);
}

/* The coarse monotonic clock the loops keep last_active in. */
static double coarse_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void client_info(const st_client *c, double now, double now_coarse, st_client_info *ci)
{
    ci->id = c->sess.id;
    ci->sess = &c->sess;
    ci->fd = c->fd;
    ci->age = now - c->sess.created;
    ci->idle = now_coarse - (double)atomic_load_explicit(&c->pub_active_ms, memory_order_relaxed) / 1000.0;
    if (ci->idle < 0) ci->idle = 0;
    ci->qbuf = atomic_load_explicit(&c->pub_qbuf, memory_order_relaxed);
    uint64_t icap = atomic_load_explicit(&c->pub_icap, memory_order_relaxed);
    ci->qbuf_free = icap > ci->qbuf ? icap - ci->qbuf : 0;
    ci->obl = atomic_load_explicit(&c->pub_obl, memory_order_relaxed);
    ci->omem = atomic_load_explicit(&c->pub_omem, memory_order_relaxed);
    ci->tot_mem = sizeof *c + icap + ci->omem;
    int last = atomic_load_explicit(&c->sess.last_cmd, memory_order_relaxed);
    ci->cmd = last > 0 ? st_command_name((size_t)(last - 1)) : "NULL";
    ci->blocked = atomic_load_explicit(&c->pub_blocked, memory_order_relaxed);
    ci->is_http = c->is_http;
    ci->io_thread = c->loop->id;
}

uint64_t st_srv_clients(st_server *srv, st_client_fn fn, void *arg, int kill, uint64_t self_id, int *self_hit)
{
    uint64_t n = 0;
    double now = st_now(), now_coarse = coarse_now();
    if (self_hit) *self_hit = 0;
    pthread_mutex_lock(&srv->clients_lock);
    for (int i = 0; i < srv->nloops; i++) {
        st_loop *l = &srv->loops[i];
        int marked = 0;
        for (st_client *c = l->clients; c; c = c->next) {
            if (c->is_http) continue;
            st_client_info ci;
            client_info(c, now, now_coarse, &ci);
            if (!fn(arg, &ci)) continue;
            n++;
            if (!kill) continue;
            if (c->sess.id == self_id) {
                if (self_hit) *self_hit = 1;
                continue;
            }
            atomic_store(&c->kill, 1);
            marked = 1;
        }
        if (marked) {
            atomic_store(&l->kills, 1);
            uint64_t one = 1;
            if (write(l->evfd, &one, sizeof one) < 0) { /* a saturated counter still wakes the loop */
            }
        }
    }
    pthread_mutex_unlock(&srv->clients_lock);
    return n;
}
