/* server: `starling serve`, the Redis-protocol socket in front of a model.
 *
 * Threads: --threads event loops (epoll), each owning the connections it
 * accepted from the shared listening sockets; --heavy-threads workers that
 * run the commands that scan every user (AUDIENCE, LOOKALIKE, REACH, the
 * s:<segment> views) and MODEL RELOAD, so that those never hold up an event
 * loop; and the main thread, which only waits for signals (SIGHUP reloads,
 * SIGTERM and SIGINT drain and stop).
 *
 * The model: read into memory the server owns (st_model_read: a file
 * overwritten in place cannot reach it), wrapped in an st_served with
 * what the server derives from it once (the Gram matrix for fold-in, the
 * prior, segment norms). Reload loads and verifies the new file completely,
 * then swaps it in under a short lock; every loop and job holds a reference
 * to the st_served it works with, and the old one is freed when the last
 * reference goes, so a request never sees a model change under it.
 *
 * Online writes (EVENT, FORGET): with --journal, a write is applied by
 * st_server_write, which prepares the change in the served model's overlay
 * (the user's vector solved, no lock held), then under one write lock
 * checks it still applies, appends the record to the journal, and only then
 * makes the change visible; the journal's order is therefore the order
 * changes were applied in. Under appendfsync always, the replies of a
 * connection that wrote are held until one fdatasync, shared by every
 * connection of the loop iteration (group commit), covers its records; a
 * failed fdatasync stops the server before any held reply is sent. On
 * reload the new model's overlay is rebuilt from the journal (the records
 * appended meanwhile are caught up under the write lock), so online changes
 * and erasures carry over to every model served. A maintenance thread
 * compacts the journal on request, as it grows, and after FORGETs.
 *
 * HTTP (--http-port) is served by the same loops: a connection accepted on
 * the HTTP listener is parsed by http.c, and api.c turns each request into
 * the command that runs through the same call path as a RESP request's.
 *
 * Owns: sockets, connections, threads, the served model, the journal. Never:
 * parses the protocol (resp.c, http.c) or knows a command (commands.c, api.c).
 *
 * What command handlers see of the server is in service.h (the types and
 * the table of operations server.c hands them); the served model and the
 * scratch are served.h's; the counters stats.h's. server_write.c holds the
 * write, reload and maintenance path; net.c the listening sockets.
 */
#ifndef STARLING_SERVER_H
#define STARLING_SERVER_H

#include "log.h"
#include "service.h"

void st_server_config_default(st_server_config *c);

/* Opens the sockets, starts the threads, loads the model (meanwhile the
 * sockets answer: -LOADING over RESP, /readyz 503 over HTTP) and serves until
 * SIGTERM or SIGINT, then drains and returns 0. Returns -1 with err set when
 * it cannot start (sockets, threads, the model). Blocks. */
int st_serve(const st_server_config *cfg, char *err);

#endif
