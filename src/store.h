/* store: the model being served and everything that changes it: the first
 * load, reloads, the online writes and their journal, and the journal's
 * maintenance thread (compactions).
 *
 * Reload loads and verifies the new file completely, replays the journal
 * into its overlay, then swaps it in under a short lock; readers hold a
 * reference (st_store_acquire) to the st_served they work with, so the old
 * model is unmapped when the last one lets go. A write (st_store_write) is
 * prepared in the overlay with no lock held, then checked, appended to the
 * journal and made visible under one write lock, so the journal's order is
 * the order changes were applied in. The maintenance thread compacts the
 * journal on request, as it grows, and after FORGETs.
 *
 * Owns: the current st_served and its generation, the journal, the reload,
 * write and maintenance locks. Never: sockets, loops, or a command's reply
 * (server.c hands these functions to handlers as st_server_ops).
 */
#ifndef STARLING_STORE_H
#define STARLING_STORE_H

#include "journal.h"
#include "served.h"
#include "services.h"

typedef struct st_store st_store;

/* A store for cfg (which must outlive it), with no model yet. on_swap(arg)
 * is called after a model is published (the first, and each reload), so
 * that idle readers take it up. NULL on out-of-memory. */
st_store *st_store_new(const st_server_config *cfg, void (*on_swap)(void *arg), void *arg);

/* Loads cfg->model_path, opens and replays the journal (--journal) into its
 * overlay, starts the maintenance thread, and publishes the model. Blocks.
 * 0, or -1 with err set. STARLING_TEST_LOAD_DELAY (seconds, at most 60)
 * delays the load, so that tests can see a server before its model. */
int st_store_load(st_store *store, char *err);

/* The served model with a reference for the caller (st_served_release), or
 * NULL while the first model is still loading. */
st_served *st_store_acquire(st_store *store);

/* The generation of the model published last (0 before the first). */
uint64_t st_store_generation(st_store *store);

/* The journal once a model is published (NULL before, or without one): for
 * the loops' group commit (st_journal_sync, st_journal_durable_seq). */
st_journal *st_store_journal(st_store *store);

/* The operations of st_server_ops (services.h), with the same contracts. */
int st_store_reload(st_store *store, const char *path, char *err);
int st_store_write(st_store *store, st_jrecord *r, st_scratch *sc, st_write_result *res, char *err);
int st_store_compact(st_store *store, char *err);
void st_store_get_journal(st_store *store, st_server_journal_info *info);

/* Fills the reload and journal fields of info (the rest is the server's). */
void st_store_get_info(st_store *store, st_server_info *info);

/* Stops the maintenance thread, closes the journal, releases the model and
 * frees the store. Call once no reader is left. NULL is ignored. */
void st_store_free(st_store *store);

#endif
