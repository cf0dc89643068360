/* commands: the one table of protocol commands, and the call() path.
 *
 * server.c hands every parsed request to st_call, which finds the command,
 * checks arity and authentication, and either runs it on the calling event
 * loop or answers ST_CALL_DEFER for a heavy one; server.c then runs it on
 * the heavy pool with st_call_heavy and, back on the loop, completes it with
 * st_call_finish. Every command, wherever it runs, is timed by that one path
 * for INFO commandstats and latencystats. docs/PROTOCOL.md documents every
 * command.
 */
#ifndef STARLING_COMMANDS_H
#define STARLING_COMMANDS_H

#include <stdint.h>

#include "service.h"

typedef struct st_command st_command;

typedef enum { ST_CALL_DONE = 0, ST_CALL_DEFER = 1 } st_call_result;

/* Builds the name index; call once before serving. */
void st_commands_init(void);

/* Runs the request in ctx (argc >= 1). On ST_CALL_DONE the reply is in
 * ctx->out and the statistics are recorded. On ST_CALL_DEFER nothing was
 * written; *cmd and *t0 are what st_call_heavy and st_call_finish need. */
st_call_result st_call(st_ctx *ctx, st_stats *stats, const st_command **cmd, uint64_t *t0);

/* Runs a deferred command (on a heavy worker; ctx->session is NULL). */
void st_call_heavy(st_ctx *ctx, const st_command *cmd);

/* Records a deferred command's statistics once its reply (len bytes) is
 * back on the loop: its time, an error's code, and, when it was slow, a
 * slow log entry (ctx: the connection's, its arguments the job's copy;
 * ctx->session NULL when the connection is gone). */
void st_call_finish(st_ctx *ctx, st_stats *stats, const st_command *cmd, uint64_t t0, const char *reply, size_t len);

/* The command table, for /metrics: how many rows, and row i's name ("segments",
 * "model|info"); the indices are those of st_stats.cmd. */
size_t st_command_count(void);
const char *st_command_name(size_t i);

/* Failed AUTHs after which a connection is closed. */
#define ST_AUTH_MAX_FAILURES 3

#endif
